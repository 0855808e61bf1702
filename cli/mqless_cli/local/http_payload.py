"""What an HTTP API sends its functions and how it reads their answers (payload format 2.0).

`request_event` is the event a route's function gets for a request, `authorizer_event` the
REQUEST event its Lambda authorizer gets; `reply_from` maps a function's return value to the
HTTP answer the way HTTP APIs map it (a dict with `statusCode`, or anything else as a 200
JSON body).
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from mqless_cli.cfn import HttpRoute

__all__ = [
    "JSON_TYPE",
    "Reply",
    "authorizer_event",
    "reply_from",
    "request_event",
    "server_error",
]

JSON_TYPE = {"content-type": "application/json"}
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "+json",
    "+xml",
)


@dataclass
class Reply:
    """An HTTP answer: status, headers, `set-cookie` values and body."""

    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes


def server_error() -> Reply:
    return Reply(500, dict(JSON_TYPE), [], b'{"message":"Internal Server Error"}')


def _is_text(content_type: str) -> bool:
    lowered = content_type.lower()
    return not lowered or any(t in lowered for t in _TEXT_TYPES)


def _merged_headers(headers: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Headers lower-cased, repeated ones joined by commas; cookies apart, one per item."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged, cookies


def _query_parameters(query: str) -> dict[str, str]:
    """The query string's parameters, repeated ones joined by commas."""
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def _event_body(body: bytes, content_type: str) -> tuple[str | None, bool]:
    """The event's `body` (None: no body) and `isBase64Encoded`: text as text, the rest in
    base64."""
    if not body:
        return None, False
    if _is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), True


def _request_context(
    *,
    account_id: str,
    method: str,
    raw_path: str,
    route_key: str,
    headers: dict[str, str],
    source_ip: str,
) -> dict[str, Any]:
    """The event's `requestContext` (a fresh request id, the time now); `headers` merged."""
    now = datetime.now(UTC)
    return {
        "accountId": account_id,
        "apiId": "local",
        "domainName": headers.get("host", "localhost"),
        "domainPrefix": headers.get("host", "localhost").split(".")[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }


def request_event(
    *,
    account_id: str,
    method: str,
    raw_path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: HttpRoute,
    params: dict[str, str],
    source_ip: str,
) -> dict[str, Any]:
    """The HTTP API payload-format-2.0 event for this request."""
    merged, cookies = _merged_headers(headers)
    query_params = _query_parameters(query)
    text_body, encoded = _event_body(body, merged.get("content-type", ""))
    route_key = f"{route.method} {route.path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": merged,
        "requestContext": _request_context(
            account_id=account_id,
            method=method,
            raw_path=raw_path,
            route_key=route_key,
            headers=merged,
            source_ip=source_ip,
        ),
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if query_params:
        event["queryStringParameters"] = query_params
    if params:
        event["pathParameters"] = params
    if text_body is not None:
        event["body"] = text_body
    return event


def authorizer_event(event: dict[str, Any], values: list[str], resource: str) -> dict[str, Any]:
    """The payload-format-2.0 REQUEST event an HTTP API sends its Lambda authorizer, for the
    route's `event`; `values`: the identity sources' values, `resource`: the route's ARN."""
    return copy.deepcopy(
        {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": resource,
            "identitySource": values,
            "routeKey": event["routeKey"],
            "rawPath": event["rawPath"],
            "rawQueryString": event["rawQueryString"],
            "cookies": event.get("cookies", []),
            "headers": event["headers"],
            "queryStringParameters": event.get("queryStringParameters", {}),
            "requestContext": event["requestContext"],
            "pathParameters": event.get("pathParameters", {}),
            "stageVariables": {},
        }
    )


def reply_from(result: Any) -> Reply:
    """Map a function's return value the way HTTP APIs do for payload format 2.0."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(name).lower()] = ",".join(str(v) for v in values)
        raw = result.get("body")
        if raw is None:
            body = b""
        elif result.get("isBase64Encoded"):
            body = base64.b64decode(str(raw))
        else:
            body = str(raw).encode()
        return Reply(int(result["statusCode"]), headers, list(result.get("cookies") or []), body)
    if isinstance(result, str):
        return Reply(200, dict(JSON_TYPE), [], result.encode())
    return Reply(200, dict(JSON_TYPE), [], json.dumps(result).encode())
