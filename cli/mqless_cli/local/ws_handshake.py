"""The `$connect` handshake: its Lambda REQUEST authorizer and how `$connect`'s answer is read.

- A `CUSTOM` `$connect` route runs its authorizer first, with the handshake's headers and
  query string: a missing identity source refuses the upgrade with 401 uninvoked, an IAM
  policy that does not allow `execute-api:Invoke` on the route's ARN with 403, the function
  raising `Unauthorized` with 401, any other failure with 500. The authorizer's
  `principalId` and context become `requestContext.authorizer` of every event of the
  connection.
- A non-2xx `statusCode` from `$connect` refuses the upgrade with that HTTP status. A
  `Sec-WebSocket-Protocol` header in its response is echoed in the handshake; if it
  returns none, the handshake completes without one, whatever the client offered.
"""

from __future__ import annotations

import copy
import http
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from mqless_cli.cfn import Authorizer, WebSocketRoute
from mqless_cli.local.authorizers import InvalidResponse, identity_values, outcome, verdict
from mqless_cli.local.functions import FunctionError
from mqless_cli.local.ws_events import connect_event, millis, new_id, request_context

__all__ = ["ConnectHandshake", "Pending"]

_AUTHORIZER_FAILED = '{"message":"Internal Server Error"}'

Invoke = Callable[[str, dict[str, Any], Callable[[Any], str]], Awaitable[Any]]
"""Runs a function off the event loop: (name, event, summary) -> its result."""


@dataclass
class Pending:
    """A handshake whose `$connect` succeeded, waiting for the upgrade to complete."""

    connection_id: str
    connected_at: int
    source_ip: str
    user_agent: str
    domain: str
    subprotocol: str | None
    authorizer: dict[str, Any] | None = None
    """What the `$connect` authorizer said: `requestContext.authorizer` of every event."""


class ConnectHandshake:
    """Runs `$connect` for each upgrade request and keeps what it said until the upgrade
    completes (websockets' `process_request`, `process_response`, `select_subprotocol`)."""

    def __init__(
        self,
        route: WebSocketRoute | None,
        *,
        api_id: str,
        stage: str,
        method_arn: str,
        functions: Container[str],
        invoke: Invoke,
        address: Callable[[], tuple[str, int]],
    ) -> None:
        """`route`: the `$connect` route, if any; `method_arn`: its ARN, the resource its
        authorizer's policy must allow; `functions`: the names of the functions this stack
        runs; `address`: the gateway's host and port (known once it listens)."""
        self._route = route
        self._api_id = api_id
        self._stage = stage
        self._method_arn = method_arn
        self._functions = functions
        self._invoke = invoke
        self._address = address
        self._pending: dict[ServerConnection, Pending] = {}

    async def connect(self, socket: ServerConnection, request: Request) -> Response | None:
        """None to complete the upgrade, else the answer that refuses it."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None  # not an upgrade: websockets answers 426
        host, port = self._address()
        pending = Pending(
            connection_id=new_id(),
            connected_at=millis(),
            source_ip=str(socket.remote_address[0]) if socket.remote_address else "",
            user_agent=request.headers.get("User-Agent", ""),
            domain=request.headers.get("Host", f"{host}:{port}"),
            subprotocol=None,
        )
        route = self._route
        if route is not None and route.authorizer is not None:
            refused = await _authorize(
                route.authorizer,
                self._event(socket, request, pending),
                pending,
                method_arn=self._method_arn,
                invoke=self._invoke,
                functions=self._functions,
            )
            if refused is not None:
                return refused
        if route is not None and route.function is not None:
            refused = await self._run_connect(route.function, socket, request, pending)
            if refused is not None:
                return refused
        self._pending[socket] = pending
        return None

    async def _run_connect(
        self, function: str, socket: ServerConnection, request: Request, pending: Pending
    ) -> Response | None:
        event = self._event(socket, request, pending)
        connection_id = pending.connection_id
        try:
            result = await self._invoke(
                function, event, lambda r: f"WS $connect {connection_id} -> {_status(r)}"
            )
        except FunctionError:
            return _refusal(http.HTTPStatus.BAD_GATEWAY, '{"message": "Internal server error"}')
        return _accept_or_refuse(result, pending)

    def _event(
        self, socket: ServerConnection, request: Request, pending: Pending
    ) -> dict[str, Any]:
        return connect_event(
            request,
            source_ip=pending.source_ip,
            local_port=socket.local_address[1] if socket.local_address else self._address()[1],
            context=request_context(
                api_id=self._api_id,
                stage=self._stage,
                route_key="$connect",
                event_type="CONNECT",
                connection_id=pending.connection_id,
                connected_at=pending.connected_at,
                source_ip=pending.source_ip,
                user_agent=pending.user_agent,
                domain=pending.domain,
                authorizer=pending.authorizer,
            ),
        )

    def select_subprotocol(
        self, socket: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """The subprotocol `$connect` returned, if any (API Gateway does not choose one)."""
        pending = self._pending.get(socket)
        return Subprotocol(pending.subprotocol) if pending and pending.subprotocol else None

    def forget_refused(
        self, socket: ServerConnection, request: Request, response: Response
    ) -> None:
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._pending.pop(socket, None)

    def opened(self, socket: ServerConnection) -> Pending:
        """What `$connect` said of the connection whose upgrade just completed."""
        return self._pending.pop(socket)


async def _authorize(
    authorizer: Authorizer,
    event: dict[str, Any],
    pending: Pending,
    *,
    method_arn: str,
    invoke: Invoke,
    functions: Container[str],
) -> Response | None:
    """Run the `$connect` authorizer: None to go on (`pending` now holds what it said),
    else the refusal API Gateway answers the handshake with. `functions`: the names of
    the functions this stack runs."""
    values = identity_values(
        authorizer.identity_sources,
        headers=event["headers"],
        query=event.get("queryStringParameters", {}),
        context=event["requestContext"],
    )
    if values is None:
        return _refusal(http.HTTPStatus.UNAUTHORIZED, '{"message":"Unauthorized"}')
    if authorizer.function is None or authorizer.function not in functions:
        return _refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, _AUTHORIZER_FAILED)
    connection_id = pending.connection_id
    try:
        response = await invoke(
            authorizer.function,
            _authorizer_request(event, method_arn),
            lambda r: (
                f"WS authorize {connection_id} -> {outcome(r, simple=False, resource=method_arn)}"
            ),
        )
    except FunctionError as failure:
        if str(failure.error) == "Unauthorized":  # Lambda's errorMessage, as API Gateway reads it
            return _refusal(http.HTTPStatus.UNAUTHORIZED, '{"message":"Unauthorized"}')
        return _refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, _AUTHORIZER_FAILED)
    try:
        found = verdict(response, simple=False, resource=method_arn)
    except InvalidResponse:
        return _refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, _AUTHORIZER_FAILED)
    if not found.allowed:
        return _refusal(http.HTTPStatus.FORBIDDEN, '{"message":"Forbidden"}')
    pending.authorizer = {"principalId": found.principal_id or "", **found.context}
    return None


def _authorizer_request(event: dict[str, Any], method_arn: str) -> dict[str, Any]:
    """The REQUEST event a WebSocket API sends its `$connect` authorizer."""
    return copy.deepcopy(
        {
            "type": "REQUEST",
            "methodArn": method_arn,
            "headers": event["headers"],
            "multiValueHeaders": event["multiValueHeaders"],
            "queryStringParameters": event.get("queryStringParameters", {}),
            "multiValueQueryStringParameters": event.get("multiValueQueryStringParameters", {}),
            "stageVariables": {},
            "requestContext": event["requestContext"],
        }
    )


def _accept_or_refuse(result: Any, pending: Pending) -> Response | None:
    """Read `$connect`'s answer: the refusal if it is not a 2xx, else None (`pending` now
    holds the subprotocol it chose, if any)."""
    answered = _status(result)
    if not 200 <= answered < 300:
        body = result.get("body") if isinstance(result, dict) else None
        return _refusal(answered, body if isinstance(body, str) else "")
    if isinstance(result, dict):
        pending.subprotocol = _header(result.get("headers"), "Sec-WebSocket-Protocol")
        if pending.subprotocol is None:
            pending.subprotocol = _header(result.get("multiValueHeaders"), "Sec-WebSocket-Protocol")
    return None


def _header(headers: Any, name: str) -> str | None:
    """A response header from a function's `headers`/`multiValueHeaders`, case-insensitively."""
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if str(key).lower() == name.lower():
                if isinstance(value, list):
                    return ",".join(str(item) for item in value) if value else None
                return str(value)
    return None


def _status(result: Any) -> int:
    """The HTTP status a Lambda proxy result stands for (no statusCode: accepted, 200)."""
    if isinstance(result, dict) and "statusCode" in result:
        try:
            return int(result["statusCode"])
        except (TypeError, ValueError):
            return 502
    return 200


def _refusal(status: int, body: str) -> Response:
    """An HTTP answer that refuses the upgrade with `status` (any integer status)."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    payload = body.encode()
    headers = Headers(
        [
            ("Connection", "close"),
            ("Content-Length", str(len(payload))),
            ("Content-Type", "application/json" if body.startswith("{") else "text/plain"),
        ]
    )
    return Response(status, reason, headers, payload)
