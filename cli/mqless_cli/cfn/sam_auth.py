"""What SAM and ApiGatewayV2 declare about Lambda authorizers, shared by HTTP and WebSocket
APIs: an authorizer, the identity sources it needs, and the function an ARN names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from mqless_cli.cfn.loader import Json, TemplateError, as_sequence, as_text

# The function a Lambda ARN or API Gateway invocation URI names (an alias/version may follow).
LAMBDA_FUNCTION = re.compile(r"arn:[^:]+:lambda:[^:]*:[^:]*:function:(?P<name>[^/:]+)")


# An ApiGatewayV2 identity source: route.request.header.X, $request.querystring.x, context.x...
IDENTITY_SOURCE = re.compile(
    r"\$?(?:route\.)?(?:request\.)?(?P<location>header|querystring|stageVariables|context)"
    r"\.(?P<name>.+)"
)


class IdentitySource(NamedTuple):
    """One part of a request that an authorizer needs: ``("header", "Authorization")``.

    ``location`` is ``header``, ``querystring``, ``stageVariables`` or ``context``.
    """

    location: str
    name: str


@dataclass(frozen=True)
class Authorizer:
    """A Lambda (REQUEST) authorizer, as API Gateway runs it in front of a route."""

    name: str
    function: str | None
    """Logical id of the authorizer's function; None if it is no Lambda function of the template."""
    identity_sources: tuple[IdentitySource, ...] = ()
    """Checked before the function runs: one missing or empty means 401, uninvoked."""
    ttl_seconds: int = 0
    """How long a response is cached per identity-source values (0: not cached)."""
    simple_responses: bool = False
    """HTTP APIs: the function answers ``{"isAuthorized": ...}`` rather than an IAM policy."""
    payload_format_version: str = "2.0"


def identity_sources(value: Json, where: str) -> tuple[IdentitySource, ...]:
    """An ApiGatewayV2 ``IdentitySource`` (a list, or one comma-separated string) as a tuple."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else as_sequence(value, where)
    sources = []
    for item in items:
        text = as_text(item, where).strip()
        match = IDENTITY_SOURCE.fullmatch(text)
        if match is None:
            raise TemplateError(f"{where}: {text!r} is not an identity source")
        sources.append(IdentitySource(match.group("location"), match.group("name")))
    return tuple(sources)
