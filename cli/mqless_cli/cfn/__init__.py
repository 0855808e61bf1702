"""template.yaml as the local runtime and the tests read it, in four steps:

- `loader`: YAML/JSON text -> plain values, short-form tags in their long form;
- `intrinsics`: bound to parameter values, conditions and intrinsic functions resolved;
- `sam`: what the template declares for the local runtime (`Stack`: functions, routes,
  authorizers, stream sources, schedules), with `sam_auth` (Lambda authorizers) and
  `sam_websocket` (WebSocket APIs read from their ApiGatewayV2 resources);
- `provision`: the stateful resources (keys, aliases, tables) created through boto3.
"""

from __future__ import annotations

from mqless_cli.cfn.intrinsics import BoundTemplate
from mqless_cli.cfn.loader import (
    CfnLoader,
    Json,
    Template,
    TemplateError,
    load_template,
    parse_template,
)
from mqless_cli.cfn.provision import provision
from mqless_cli.cfn.sam import HttpRoute, Schedule, Stack, StreamSource
from mqless_cli.cfn.sam_auth import Authorizer, IdentitySource
from mqless_cli.cfn.sam_websocket import WebSocketApi, WebSocketRoute

__all__ = [
    "Authorizer",
    "BoundTemplate",
    "CfnLoader",
    "HttpRoute",
    "IdentitySource",
    "Json",
    "Schedule",
    "Stack",
    "StreamSource",
    "Template",
    "TemplateError",
    "WebSocketApi",
    "WebSocketRoute",
    "load_template",
    "parse_template",
    "provision",
]
