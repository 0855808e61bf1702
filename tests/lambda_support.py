"""Build API Gateway events and a Lambda context the way the AWS services do."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def authorizer_context(principal: str, grants: list[dict[str, Any]]) -> dict[str, str]:
    """What the mqless authorizer puts in a request's context for this principal."""
    return {
        "principal": principal,
        "kind": "api_key",
        "grants": json.dumps(grants, separators=(",", ":")),
    }


ADMIN = authorizer_context(
    "test-admin", [{"pattern": ">", "actions": ["send", "receive", "admin"]}]
)
"""An administrator of everything: what the tests act as unless they say otherwise."""


def websocket_authorizer(context: dict[str, str] | None = ADMIN) -> dict[str, Any]:
    """`requestContext.authorizer` of a `$connect` the WebSocket authorizer allowed."""
    if context is None:
        return {}
    return {"principalId": context["principal"] or "unauthenticated", **context}


_ROUTE_KEYS = {"CONNECT": "$connect", "MESSAGE": "$default", "DISCONNECT": "$disconnect"}


def websocket_event(
    kind: str,
    connection_id: str,
    body: str | None = None,
    *,
    authorizer: dict[str, str] | None = ADMIN,
    **headers: str,
) -> dict[str, Any]:
    """A WebSocket API event (`kind` CONNECT, MESSAGE or DISCONNECT) as API Gateway sends it.

    A CONNECT carries what the authorizer allowed (`authorizer`; None: no authorizer context).
    """
    context: dict[str, Any] = {
        "connectionId": connection_id,
        "eventType": kind,
        "routeKey": _ROUTE_KEYS[kind],
    }
    if kind == "CONNECT" and authorizer is not None:
        context["authorizer"] = websocket_authorizer(authorizer)
    event: dict[str, Any] = {"requestContext": context}
    if body is not None:
        event["body"] = body
    if headers:
        event["headers"] = headers
    return event


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "mqless-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mqless-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 29_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def http_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    route: str | None = None,
    headers: dict[str, str] | None = None,
    raw_body: str | bytes | None = None,
    authorizer: dict[str, str] | None = ADMIN,
) -> dict[str, Any]:
    """An HTTP API payload-format-2.0 event; `body` is sent as JSON unless `raw_body` is given.

    A query string in `path` (`/x?a=1`) becomes rawQueryString and queryStringParameters.
    `authorizer` is the Lambda authorizer's context (None: a route without an authorizer).
    """
    path, _, query = path.partition("?")
    encoded = False
    if raw_body is not None:
        if isinstance(raw_body, bytes):
            text: str | None = base64.b64encode(raw_body).decode()
            encoded = True
        else:
            text = raw_body
    else:
        text = None if body is None else json.dumps(body)
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route or path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "api.local", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "api.local",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": request_id,
            "routeKey": f"{method} {route or path}",
            "stage": "$default",
            "time": "27/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1795737600000,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = {"lambda": dict(authorizer)}
    if query:
        event["queryStringParameters"] = {
            k: ",".join(v) for k, v in urllib.parse.parse_qs(query).items()
        }
    return event


@dataclass
class RecordingTraceProvider:
    """Stands in for the X-Ray recorder behind Powertools' Tracer: keeps every annotation
    and metadata value a traced handler would have sent to X-Ray, as (key, value)."""

    recorded: list[tuple[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[Any]:
        yield self

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.recorded.append((key, value))

    def put_annotation(self, key: str, value: Any) -> None:
        self.recorded.append((key, value))

    def holding(self, secret: str) -> list[str]:
        """The keys of recorded values in which `secret` appears."""
        return [key for key, value in self.recorded if secret in repr(value)]
