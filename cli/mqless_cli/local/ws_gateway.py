"""A WebSocket API gateway on loopback that behaves like API Gateway's WebSocket APIs.

The API, its routes, integrations and route responses come from the template
(`Stack.websocket_apis()`); the functions run in this process through `FunctionHost`.
What API Gateway does, and so this gateway too:

- A `CUSTOM` `$connect` route runs its Lambda REQUEST authorizer first, with the handshake's
  headers and query string: a missing identity source refuses the upgrade with 401 uninvoked,
  an IAM policy that does not allow `execute-api:Invoke` on the route's ARN with 403, the
  function raising `Unauthorized` with 401, any other failure with 500. The authorizer's
  `principalId` and context become `requestContext.authorizer` of every event of the
  connection (`$connect`, messages, `$disconnect`).
- `$connect` runs while the upgrade request waits. A non-2xx `statusCode` refuses the upgrade
  with that HTTP status; a crashed function refuses it with 502. A `Sec-WebSocket-Protocol`
  header in the function's response is echoed in the handshake; if the function returns none,
  the handshake completes without one, whatever the client offered.
- Messages are text frames: a binary frame closes the connection with 1003; a frame over
  32 KB or a message over 128 KB closes it with 1009 (websockets enforces both limits while
  parsing, through `max_size=(message, fragment)`). Each message is routed by the API's route
  selection expression (`$request.body.<path>`); non-JSON or unmatched messages go to
  `$default`, and with no `$default` the client gets a `Forbidden` error frame. A function that
  fails gets the client an `Internal server error` frame. A two-way route (one with a
  RouteResponse) sends the function's body back.
- Under `--realism`, a message route waits at most `integration_timeout_s` for its function
  (29 s on AWS: "Integration timeout | 50 milliseconds - 29 seconds", API Gateway Developer
  Guide, *Quotas for configuring and running a WebSocket API*); then the client gets an
  `Endpoint request timed out` error frame (what AWS sends) and the connection stays open,
  while the function runs on to its own Timeout, as Lambda's does (what it posts still
  arrives). `$connect` is not limited here.
- `$disconnect` runs after the socket is closed, with `disconnectStatusCode` and
  `disconnectReason`; from the moment the socket closes, the `@connections` operations
  (`post`, `get`, `delete`) answer `ConnectionGone` (API Gateway's 410 GoneException).
- Idle connections close after 10 minutes, all connections after 2 hours (close 1001).

Functions run in a thread pool, never on the event loop; one connection's messages are handled
one after the other, in the order they arrived. `post`/`get`/`delete` are called from other
threads (the HTTP gateway serves them as the `@connections` API).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import copy
import http
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from mqless_cli.cfn import Authorizer, Stack, WebSocketApi, WebSocketRoute
from mqless_cli.local.authorizers import InvalidResponse, identity_values, outcome, verdict
from mqless_cli.local.functions import FunctionError, FunctionHost, IntegrationTimedOut
from mqless_cli.local.http_gateway import ConnectionGone

if TYPE_CHECKING:
    from mqless_cli.billing import Meter

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "ConnectionGone",
    "WebSocketGateway",
    "evaluate_selection_expression",
    "select_route",
]

MAX_FRAME_BYTES = 32 * 1024
"""API Gateway's WebSocket frame size quota (32 KB)."""
MAX_MESSAGE_BYTES = 128 * 1024
"""API Gateway's WebSocket message payload quota (128 KB), also the @connections POST limit."""
IDLE_TIMEOUT_SECONDS = 10 * 60.0
MAX_CONNECTION_SECONDS = 2 * 60 * 60.0
INTEGRATION_TIMEOUT_SECONDS = 29.0

_AUTHORIZER_FAILED = '{"message":"Internal Server Error"}'
# disconnectReason as API Gateway words it, for the codes whose wording is known; else the
# close frame's own reason.
_DISCONNECT_REASONS = {
    1000: "Connection Closed Normally",
    1001: "Going away",
    1005: "Client-side close frame status not set",
}


class _Missing:
    """A selection expression path that the message does not have."""


_MISSING = _Missing()

_BODY_VARIABLE = re.compile(
    r"\$\{request\.body\.(?P<braced>[^}]+)\}"
    r"|\$request\.body\.(?P<bare>[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+|\[\d+\])*)"
)
_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _lookup(document: Any, path: str) -> Any:
    """Follow a `a.b[0].c` path into parsed JSON; _MISSING where it leads nowhere."""
    value = document
    for name, index in _PATH_STEP.findall(path):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return _MISSING
    return value


def evaluate_selection_expression(expression: str, body: str) -> str | None:
    """The route key a route selection expression gives for a message; None if it cannot.

    `$request.body.<path>` and `${request.body.<path>}` are replaced by the (stringified) value
    at that JSON path of the message; `\\$` is a literal dollar sign. A message that is not JSON
    (nesting or numbers past what the parser holds included), or lacks a path the expression
    uses, gives None.
    """
    document: Any = _MISSING
    if _BODY_VARIABLE.search(expression):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            # not JSON, or JSON nested deeper (or a number longer) than the parser holds:
            # either way the message selects no route, and the socket must not close 1011
            return None
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = _lookup(document, match.group("braced") or match.group("bare"))
        if value is _MISSING:
            missing = True
            return ""
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    key = _BODY_VARIABLE.sub(substitute, expression)
    return None if missing else key.replace("\\$", "$")


def select_route(expression: str, body: str, route_keys: Sequence[str]) -> str | None:
    """The route a message takes: the matching custom route, else `$default`, else None."""
    key = evaluate_selection_expression(expression, body)
    if key is not None and key in route_keys and key not in ("$connect", "$disconnect"):
        return key
    return "$default" if "$default" in route_keys else None


def _new_id() -> str:
    """An id shaped like API Gateway's connection/request ids (e.g. `L0SM9cOFvHcCIhw=`)."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _millis() -> int:
    return time.time_ns() // 1_000_000


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _error_frame(message: str, connection_id: str, request_id: str) -> str:
    """API Gateway's error frame, spacing included."""
    return (
        f'{{"message": {json.dumps(message)}, "connectionId":{json.dumps(connection_id)}, '
        f'"requestId":{json.dumps(request_id)}}}'
    )


def _route_response(result: Any) -> str | None:
    """What a two-way route sends back for a function's result (None: nothing)."""
    if result is None:
        return None
    if isinstance(result, dict) and ("statusCode" in result or "body" in result):
        body = result.get("body")
        if body is None:
            return None
        if result.get("isBase64Encoded") and isinstance(body, str):
            return base64.b64decode(body).decode("utf-8", errors="replace")
        return body if isinstance(body, str) else json.dumps(body)
    return result if isinstance(result, str) else json.dumps(result)


def _header(headers: Any, name: str) -> str | None:
    """A response header from a function's `headers`/`multiValueHeaders`, case-insensitively."""
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if str(key).lower() == name.lower():
                if isinstance(value, list):
                    return ",".join(str(item) for item in value) if value else None
                return str(value)
    return None


@dataclass
class _Pending:
    """A handshake whose `$connect` succeeded, waiting for the upgrade to complete."""

    connection_id: str
    connected_at: int
    source_ip: str
    user_agent: str
    domain: str
    subprotocol: str | None
    authorizer: dict[str, Any] | None = None
    """What the `$connect` authorizer said: `requestContext.authorizer` of every event."""


@dataclass
class _Connection:
    """An open WebSocket connection, as the @connections API sees it."""

    id: str
    socket: ServerConnection
    connected_at: int
    source_ip: str
    user_agent: str
    domain: str
    last_active: int
    authorizer: dict[str, Any] | None = None
    opened: float = field(default_factory=time.monotonic)
    last_active_monotonic: float = field(default_factory=time.monotonic)
    closing: tuple[int, str] | None = None
    """Set when the gateway closes the connection: the close code and the reason to report."""

    def touch(self) -> None:
        self.last_active = _millis()
        self.last_active_monotonic = time.monotonic()


class WebSocketGateway:
    """The template's WebSocket API served on `ws://host:port` (any path, e.g. `/{stage}`)."""

    def __init__(
        self,
        stack: Stack,
        functions: FunctionHost,
        *,
        host: str = "127.0.0.1",
        port: int = 8081,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        max_connection_seconds: float = MAX_CONNECTION_SECONDS,
        workers: int = 32,
        run_authorizers: bool = True,
        meter: Meter | None = None,
        integration_timeout_s: float | None = None,
    ) -> None:
        """`run_authorizers=False` opens every connection as if `$connect` had no authorizer.
        `meter` is told of every message in and out and of connection time, as billed.
        `integration_timeout_s`: how long a message route waits for its function (None:
        until it returns)."""
        self.meter = meter
        self.integration_timeout_s = integration_timeout_s
        apis = stack.websocket_apis()
        if not apis:
            raise ValueError(
                "the template declares no AWS::ApiGatewayV2::Api of ProtocolType WEBSOCKET"
            )
        self.api: WebSocketApi = apis[0]
        self._stack = stack
        self._functions = functions
        self._routes: dict[str, WebSocketRoute] = {
            key: route._replace(
                function=route.function if route.function in functions.specs else None,
                authorizer=route.authorizer if run_authorizers else None,
            )
            for key, route in self.api.routes.items()
        }
        self._host = host
        self._port = port
        self.idle_timeout = idle_timeout
        self.max_connection_seconds = max_connection_seconds
        self._workers = workers
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._pending: dict[ServerConnection, _Pending] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._startup_error: BaseException | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self._host}:{self._port}"

    @property
    def stage(self) -> str:
        return self.api.stage or "$default"

    def start(self) -> None:
        """Serve on a daemon thread's event loop; return once listening."""
        if self._thread is not None:
            raise RuntimeError("the WebSocket gateway is already started")
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="ws-function"
        )
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="ws-gateway", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            self._pool.shutdown()
            raise self._startup_error

    def stop(self) -> None:
        """Close every connection (each one's `$disconnect` runs), then the server."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._serve())
        except BaseException as error:  # reported to start()'s caller
            self._startup_error = error
            loop.close()
            ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        self._loop_thread = threading.get_ident()
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._loop = None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> Server:
        return await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._connect,
            process_response=self._forget_refused,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            # $connect runs inside the handshake: allow it the integration timeout
            open_timeout=INTEGRATION_TIMEOUT_SECONDS + 5,
            # API Gateway does not ping clients; clients keep connections alive themselves
            ping_interval=None,
            max_size=(MAX_MESSAGE_BYTES, MAX_FRAME_BYTES),
            write_limit=4 * MAX_MESSAGE_BYTES,
            server_header=None,
        )

    async def _shutdown(self) -> None:
        server = self._server
        if server is None:
            return
        with self._lock:
            for connection in self._connections.values():
                connection.closing = connection.closing or (1001, _DISCONNECT_REASONS[1001])
        server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="Going away")
        await server.wait_closed()

    # ---- the @connections API (any thread) ------------------------------------------------

    def post(self, connection_id: str, data: bytes) -> None:
        """Send `data` to the client (a text frame; fragments of <= 32 KB past that size)."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"Message too long: {len(data)} bytes, the limit is {MAX_MESSAGE_BYTES}"
            )
        self._call(self._post(connection_id, bytes(data)))
        if self.meter is not None:
            self.meter.record_websocket_message("out", len(data))

    def get(self, connection_id: str) -> dict[str, Any]:
        """The connection's description, as GetConnection returns it."""
        connection = self._live(connection_id)
        return {
            "ConnectedAt": _iso(connection.connected_at),
            "Identity": {"SourceIp": connection.source_ip, "UserAgent": connection.user_agent},
            "LastActiveAt": _iso(connection.last_active),
        }

    def delete(self, connection_id: str) -> None:
        """Close the connection (1000); its `$disconnect` follows."""
        self._call(self._delete(connection_id))

    def connection_ids(self) -> list[str]:
        """The ids of the open connections."""
        with self._lock:
            return [c.id for c in self._connections.values() if c.closing is None]

    def _call(self, coroutine: Any) -> None:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise ConnectionGone("the WebSocket gateway is not running")
        if threading.get_ident() == self._loop_thread:
            coroutine.close()
            raise RuntimeError("@connections calls must not come from the gateway's own loop")
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(
            timeout=INTEGRATION_TIMEOUT_SECONDS
        )

    def _live(self, connection_id: str) -> _Connection:
        with self._lock:
            connection = self._connections.get(connection_id)
        if connection is None or connection.closing is not None:
            raise ConnectionGone(connection_id)
        return connection

    async def _post(self, connection_id: str, data: bytes) -> None:
        connection = self._live(connection_id)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            message: bytes | list[bytes] = data  # not text: it can only go as a binary frame
            text = False
        else:
            text = True
            message = (
                data
                if len(data) <= MAX_FRAME_BYTES
                else [
                    data[start : start + MAX_FRAME_BYTES]
                    for start in range(0, len(data), MAX_FRAME_BYTES)
                ]
            )
        try:
            await connection.socket.send(message, text=text)
        except ConnectionClosed:
            raise ConnectionGone(connection_id) from None
        connection.touch()

    async def _delete(self, connection_id: str) -> None:
        connection = self._live(connection_id)
        connection.closing = (1000, _DISCONNECT_REASONS[1000])
        # The close handshake goes on in the background; the caller is answered at once.
        asyncio.get_running_loop().create_task(connection.socket.close(CloseCode.NORMAL_CLOSURE))

    # ---- events ---------------------------------------------------------------------------

    def _context(
        self,
        *,
        route_key: str,
        event_type: str,
        connection_id: str,
        connected_at: int,
        source_ip: str,
        user_agent: str,
        domain: str,
    ) -> dict[str, Any]:
        now = _millis()
        request_id = _new_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "requestId": request_id,
            "domainName": domain,
            "connectionId": connection_id,
            "apiId": self.api.api_id,
        }

    def _connection_context(
        self, connection: _Connection, route_key: str, event_type: str
    ) -> dict[str, Any]:
        context = self._context(
            route_key=route_key,
            event_type=event_type,
            connection_id=connection.id,
            connected_at=connection.connected_at,
            source_ip=connection.source_ip,
            user_agent=connection.user_agent,
            domain=connection.domain,
        )
        if connection.authorizer is not None:
            context["authorizer"] = copy.deepcopy(connection.authorizer)
        return context

    async def _invoke(
        self,
        function: str,
        event: dict[str, Any],
        summary: Callable[[Any], str],
        wait_s: float | None = None,
    ) -> Any:
        """Run a function on the pool; FunctionError if it raised (IntegrationTimedOut if it
        had not answered within `wait_s`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            lambda: self._functions.invoke(function, event, summary=summary, wait_s=wait_s),
        )

    # ---- $connect (inside the handshake) --------------------------------------------------

    async def _connect(self, socket: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None  # not an upgrade: websockets answers 426
        connection_id = _new_id()
        connected_at = _millis()
        source_ip = str(socket.remote_address[0]) if socket.remote_address else ""
        user_agent = request.headers.get("User-Agent", "")
        domain = request.headers.get("Host", f"{self._host}:{self._port}")
        pending = _Pending(connection_id, connected_at, source_ip, user_agent, domain, None)
        route = self._routes.get("$connect")
        if route is not None and route.authorizer is not None:
            refusal = await self._authorize(
                route.authorizer, self._connect_event(socket, request, pending), pending
            )
            if refusal is not None:
                return refusal
        if route is not None and route.function is not None:
            event = self._connect_event(socket, request, pending)
            try:
                result = await self._invoke(
                    route.function, event, lambda r: f"WS $connect {connection_id} -> {_status(r)}"
                )
            except FunctionError:
                return _refusal(http.HTTPStatus.BAD_GATEWAY, '{"message": "Internal server error"}')
            status = _status(result)
            if not 200 <= status < 300:
                body = result.get("body") if isinstance(result, dict) else None
                return _refusal(status, body if isinstance(body, str) else "")
            if isinstance(result, dict):
                pending.subprotocol = _header(result.get("headers"), "Sec-WebSocket-Protocol")
                if pending.subprotocol is None:
                    pending.subprotocol = _header(
                        result.get("multiValueHeaders"), "Sec-WebSocket-Protocol"
                    )
        self._pending[socket] = pending
        return None

    async def _authorize(
        self, authorizer: Authorizer, event: dict[str, Any], pending: _Pending
    ) -> Response | None:
        """Run the `$connect` authorizer: None to go on (`pending` now holds what it said),
        else the refusal API Gateway answers the handshake with."""
        query = event.get("queryStringParameters", {})
        values = identity_values(
            authorizer.identity_sources,
            headers=event["headers"],
            query=query,
            context=event["requestContext"],
        )
        if values is None:
            return _refusal(http.HTTPStatus.UNAUTHORIZED, '{"message":"Unauthorized"}')
        if authorizer.function is None or authorizer.function not in self._functions.specs:
            return _refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, _AUTHORIZER_FAILED)
        resource = (
            f"arn:{self._stack.ref('AWS::Partition')}:execute-api:{self._stack.region}:"
            f"{self._stack.account_id}:{self.api.api_id}/{self.stage}/$connect"
        )
        request = copy.deepcopy(
            {
                "type": "REQUEST",
                "methodArn": resource,
                "headers": event["headers"],
                "multiValueHeaders": event["multiValueHeaders"],
                "queryStringParameters": query,
                "multiValueQueryStringParameters": event.get("multiValueQueryStringParameters", {}),
                "stageVariables": {},
                "requestContext": event["requestContext"],
            }
        )
        connection_id = pending.connection_id
        try:
            response = await self._invoke(
                authorizer.function,
                request,
                lambda r: (
                    f"WS authorize {connection_id} -> {outcome(r, simple=False, resource=resource)}"
                ),
            )
        except FunctionError as failure:
            if (
                str(failure.error) == "Unauthorized"
            ):  # Lambda's errorMessage, as API Gateway reads it
                return _refusal(http.HTTPStatus.UNAUTHORIZED, '{"message":"Unauthorized"}')
            return _refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, _AUTHORIZER_FAILED)
        try:
            found = verdict(response, simple=False, resource=resource)
        except InvalidResponse:
            return _refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, _AUTHORIZER_FAILED)
        if not found.allowed:
            return _refusal(http.HTTPStatus.FORBIDDEN, '{"message":"Forbidden"}')
        pending.authorizer = {"principalId": found.principal_id or "", **found.context}
        return None

    def _connect_event(
        self, socket: ServerConnection, request: Request, pending: _Pending
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        local_port = socket.local_address[1] if socket.local_address else self._port
        for name, value in (
            ("X-Forwarded-For", pending.source_ip),
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
        event["requestContext"] = self._context(
            route_key="$connect",
            event_type="CONNECT",
            connection_id=pending.connection_id,
            connected_at=pending.connected_at,
            source_ip=pending.source_ip,
            user_agent=pending.user_agent,
            domain=pending.domain,
        )
        if pending.authorizer is not None:
            event["requestContext"]["authorizer"] = copy.deepcopy(pending.authorizer)
        event["isBase64Encoded"] = False
        return event

    def _select_subprotocol(
        self, socket: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """The subprotocol `$connect` returned, if any (API Gateway does not choose one)."""
        pending = self._pending.get(socket)
        return Subprotocol(pending.subprotocol) if pending and pending.subprotocol else None

    def _forget_refused(
        self, socket: ServerConnection, request: Request, response: Response
    ) -> None:
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._pending.pop(socket, None)

    # ---- an open connection -----------------------------------------------------------------

    async def _handle(self, socket: ServerConnection) -> None:
        pending = self._pending.pop(socket)
        connection = _Connection(
            id=pending.connection_id,
            socket=socket,
            connected_at=pending.connected_at,
            source_ip=pending.source_ip,
            user_agent=pending.user_agent,
            domain=pending.domain,
            last_active=pending.connected_at,
            authorizer=pending.authorizer,
        )
        with self._lock:
            self._connections[connection.id] = connection
        if self.meter is not None:
            self.meter.connection_opened(connection.id)
        watchdog = asyncio.get_running_loop().create_task(self._watch(connection))
        try:
            async for message in socket:
                if connection.closing is not None:
                    break
                if not isinstance(message, str):
                    connection.closing = (1003, "Binary frames are not supported")
                    await socket.close(CloseCode.UNSUPPORTED_DATA, connection.closing[1])
                    break
                connection.touch()
                await self._message(connection, message)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            if connection.closing is None and socket.state is State.OPEN:
                # only an unexpected failure of this handler leaves the socket open here
                connection.closing = (1011, "Internal server error")
                await socket.close(CloseCode.INTERNAL_ERROR, "Internal server error")
            await socket.wait_closed()
            with self._lock:
                self._connections.pop(connection.id, None)
            if self.meter is not None:
                self.meter.connection_closed(connection.id)
            await self._disconnect(connection)

    async def _watch(self, connection: _Connection) -> None:
        """Close the connection when idle too long or open too long (1001, as AWS does)."""
        while True:
            deadline = min(
                connection.last_active_monotonic + self.idle_timeout,
                connection.opened + self.max_connection_seconds,
            )
            wait = deadline - time.monotonic()
            if wait <= 0:
                connection.closing = connection.closing or (1001, _DISCONNECT_REASONS[1001])
                await connection.socket.close(CloseCode.GOING_AWAY, "Going away")
                return
            await asyncio.sleep(wait)

    async def _message(self, connection: _Connection, body: str) -> None:
        if self.meter is not None:
            self.meter.record_websocket_message("in", len(body.encode()))
        route_key = select_route(self.api.route_selection_expression, body, list(self._routes))
        context = self._connection_context(connection, route_key or "$default", "MESSAGE")
        context["messageId"] = _new_id()
        if route_key is None:
            await self._send_frame(
                connection, _error_frame("Forbidden", connection.id, context["requestId"])
            )
            return
        route = self._routes[route_key]
        if route.function is None:
            return
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        try:
            result = await self._invoke(
                route.function,
                event,
                lambda _: f"WS {route_key} {connection.id}",
                wait_s=self.integration_timeout_s,
            )
        except IntegrationTimedOut:
            frame = _error_frame("Endpoint request timed out", connection.id, context["requestId"])
            await self._send_frame(connection, frame)
            return
        except FunctionError:
            frame = _error_frame("Internal server error", connection.id, context["requestId"])
            await self._send_frame(connection, frame)
            return
        if route.two_way:
            reply = _route_response(result)
            if reply is not None:
                await self._send_frame(connection, reply)

    async def _send_frame(self, connection: _Connection, text: str) -> None:
        if self.meter is not None:  # route responses and error frames are messages too
            self.meter.record_websocket_message("out", len(text.encode()))
        with contextlib.suppress(ConnectionClosed):  # closing already: nothing to tell
            await connection.socket.send(text)

    async def _disconnect(self, connection: _Connection) -> None:
        code, reason = _close_status(connection)
        route = self._routes.get("$disconnect")
        if route is None or route.function is None:
            return
        context = self._connection_context(connection, "$disconnect", "DISCONNECT")
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
        headers = {
            "Host": connection.domain,
            "x-api-key": "",
            "X-Forwarded-For": "",
            "x-restapi": "",
        }
        event = {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }
        # A failure is reported by the function host; API Gateway ignores $disconnect's outcome.
        with contextlib.suppress(FunctionError):
            await self._invoke(
                route.function, event, lambda _: f"WS $disconnect {connection.id} ({code})"
            )


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


def _close_status(connection: _Connection) -> tuple[int, str]:
    """The disconnectStatusCode and disconnectReason of a closed connection."""
    if connection.closing is not None:
        return connection.closing
    protocol = connection.socket.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if sent is not None and (received is None or not protocol.close_rcvd_then_sent):
        frame = sent  # the gateway closed first (a limit, a protocol error)
    elif received is not None:
        frame = received
    else:
        return 1006, "Connection Closed Abnormally"
    code = int(frame.code)
    return code, frame.reason or _DISCONNECT_REASONS.get(code, "")
