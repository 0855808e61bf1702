"""The events API Gateway's WebSocket APIs send their route functions.

`request_context` is every event's `requestContext`; `connect_event` the `$connect` event
(the handshake's headers and query string), `disconnect_event` the `$disconnect` one.
Message events are `{"requestContext", "body", "isBase64Encoded"}`, built where they are routed.
"""

from __future__ import annotations

import base64
import copy
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import Request

__all__ = ["connect_event", "disconnect_event", "millis", "new_id", "request_context"]


def new_id() -> str:
    """An id shaped like API Gateway's connection/request ids (e.g. `L0SM9cOFvHcCIhw=`)."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def millis() -> int:
    return time.time_ns() // 1_000_000


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def request_context(
    *,
    api_id: str,
    stage: str,
    route_key: str,
    event_type: str,
    connection_id: str,
    connected_at: int,
    source_ip: str,
    user_agent: str,
    domain: str,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    """An event's `requestContext` (a fresh request id, the time now); `authorizer`: what
    the `$connect` authorizer said, if it ran."""
    now = millis()
    request_id = new_id()
    context = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": connected_at,
        "requestTimeEpoch": now,
        "identity": {"sourceIp": source_ip, "userAgent": user_agent},
        "requestId": request_id,
        "domainName": domain,
        "connectionId": connection_id,
        "apiId": api_id,
    }
    if authorizer is not None:
        context["authorizer"] = copy.deepcopy(authorizer)
    return context


def connect_event(
    request: Request, *, source_ip: str, local_port: int, context: dict[str, Any]
) -> dict[str, Any]:
    """The `$connect` event for the handshake `request` (`context`: its requestContext)."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers.raw_items():
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    for name, value in (
        ("X-Forwarded-For", source_ip),
        ("X-Forwarded-Port", str(local_port)),
        ("X-Forwarded-Proto", "http"),
    ):
        headers.setdefault(name, value)
        multi_headers.setdefault(name, [value])
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": multi_headers,
    }
    query = parse_qsl(urlsplit(request.path).query, keep_blank_values=True)
    if query:
        event["queryStringParameters"] = dict(query)
        multi_query: dict[str, list[str]] = {}
        for name, value in query:
            multi_query.setdefault(name, []).append(value)
        event["multiValueQueryStringParameters"] = multi_query
    event["requestContext"] = context
    event["isBase64Encoded"] = False
    return event


def disconnect_event(domain: str, context: dict[str, Any]) -> dict[str, Any]:
    """The `$disconnect` event (`context`: its requestContext, with the close status)."""
    headers = {
        "Host": domain,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
