"""The WebSocket API's `@connections` management API, as the HTTP gateway serves it.

`POST`/`GET`/`DELETE /@connections/{id}` reach the WebSocket gateway's live sockets, with the
statuses and error types API Gateway answers (410 GoneException, 413
PayloadTooLargeException), so the unchanged boto3 `apigatewaymanagementapi` client works
against it, over HTTP or answered in process (`answer_in_process`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSResponse, HTTPHeaders

from mqless_cli.local.http_payload import JSON_TYPE, Reply
from mqless_cli.local.ws_connections import ConnectionGone

__all__ = ["CONNECTIONS_PATH", "Connections", "answer_in_process", "manage"]

CONNECTIONS_PATH = re.compile(r"^(?:/[^/@]+)?/@connections/(?P<id>[^/?]+)$")
"""`[/{stage}]/@connections/{connection_id}`."""


class Connections(Protocol):
    """The @connections operations the WebSocket gateway provides."""

    def post(self, connection_id: str, data: bytes) -> None: ...

    def get(self, connection_id: str) -> dict[str, Any]: ...

    def delete(self, connection_id: str) -> None: ...


def manage(connections: Connections | None, method: str, connection_id: str, body: bytes) -> Reply:
    """The @connections API: POST sends, GET describes, DELETE closes."""
    json_type = dict(JSON_TYPE)
    if connections is None:
        return Reply(404, json_type, [], b'{"message":"No WebSocket API is running"}')
    try:
        if method == "POST":
            connections.post(unquote(connection_id), body)
            return Reply(200, json_type, [], b"")
        if method == "GET":
            info = connections.get(unquote(connection_id))
            return Reply(200, json_type, [], json.dumps(_wire_connection(info)).encode())
        if method == "DELETE":
            connections.delete(unquote(connection_id))
            return Reply(204, json_type, [], b"")
    except ConnectionGone:
        return Reply(
            410, {**json_type, "x-amzn-errortype": "GoneException"}, [], b'{"message":null}'
        )
    except ValueError as exc:
        return Reply(
            413,
            {**json_type, "x-amzn-errortype": "PayloadTooLargeException"},
            [],
            json.dumps({"message": str(exc)}).encode(),
        )
    return Reply(405, json_type, [], b'{"message":"Method Not Allowed"}')


def _wire_connection(info: dict[str, Any]) -> dict[str, Any]:
    """GetConnection's JSON as API Gateway sends it (botocore reads these lower-case names)."""
    identity = info.get("Identity", {})
    return {
        "connectedAt": info.get("ConnectedAt"),
        "lastActiveAt": info.get("LastActiveAt"),
        "identity": {"sourceIp": identity.get("SourceIp"), "userAgent": identity.get("UserAgent")},
    }


def answer_in_process(
    request: Any, gateway_url: str, connections: Connections | None
) -> AWSResponse | None:
    """A botocore request's answer if it is an @connections call to the gateway at
    `gateway_url`, without the round trip through a socket; else None (not ours).

    The client is the unchanged boto3 `apigatewaymanagementapi` client and the answer
    the one the HTTP route gives (status, headers, body), so it parses the same way
    (410 GoneException, 413 PayloadTooLargeException).
    """
    parts = urlsplit(str(request.url))
    if f"{parts.scheme}://{parts.netloc}" != gateway_url:
        return None
    found = CONNECTIONS_PATH.match(parts.path)
    if found is None:
        return None
    body = request.body or b""
    if not isinstance(body, bytes):
        body = body.read() if hasattr(body, "read") else str(body).encode()
    reply = manage(connections, str(request.method), found.group("id"), body)
    headers = HTTPHeaders()
    for name, value in {**reply.headers, "content-length": str(len(reply.body))}.items():
        headers[name] = value
    return AWSResponse(str(request.url), reply.status, headers, _RawBody(reply.body))


class _RawBody(io.BytesIO):
    """A response body as botocore reads it (`stream()`), for in-process answers."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()
