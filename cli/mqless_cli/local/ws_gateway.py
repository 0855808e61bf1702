"""A WebSocket API gateway on loopback that behaves like API Gateway's WebSocket APIs.

The API, its routes, integrations and route responses come from the template
(`Stack.websocket_apis()`); the functions run in this process through `FunctionHost`.
This module holds the server loop and a connection's life; what else API Gateway does lives
beside it:

- `ws_handshake.py`: `$connect` runs (after its Lambda REQUEST authorizer, for a `CUSTOM`
  route) while the upgrade request waits; a non-2xx `statusCode` refuses the upgrade with
  that HTTP status; a crashed function refuses it with 502.
- `ws_routes.py`: each message's route (the route selection expression), error frames and
  two-way route responses. Messages are text frames: a binary frame closes the connection
  with 1003; a frame or message over the quotas of `ws_limits.py` closes it with 1009. A
  function that fails gets the client an `Internal server error` frame.
- Under `--realism`, a message route waits at most `integration_timeout_s` for its function
  (29 s on AWS: "Integration timeout | 50 milliseconds - 29 seconds", API Gateway Developer
  Guide, *Quotas for configuring and running a WebSocket API*); then the client gets an
  `Endpoint request timed out` error frame (what AWS sends) and the connection stays open,
  while the function runs on to its own Timeout, as Lambda's does (what it posts still
  arrives). `$connect` is not limited here.
- `$disconnect` runs after the socket is closed, with `disconnectStatusCode` and
  `disconnectReason` (`ws_events.py` builds every event); from the moment the socket closes,
  the `@connections` operations (`ws_connections.py`) answer `ConnectionGone` (API
  Gateway's 410 GoneException).
- Idle connections close after 10 minutes, all connections after 2 hours (close 1001).

Functions run in a thread pool, never on the event loop; one connection's messages are handled
one after the other, in the order they arrived. `post`/`get`/`delete` are called from other
threads (the HTTP gateway serves them as the `@connections` API).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from mqless_cli.cfn import Stack, WebSocketApi, WebSocketRoute
from mqless_cli.local.functions import FunctionError, FunctionHost, IntegrationTimedOut
from mqless_cli.local.ws_connections import DISCONNECT_REASONS, Connection, ConnectionRegistry
from mqless_cli.local.ws_events import disconnect_event, new_id, request_context
from mqless_cli.local.ws_handshake import ConnectHandshake
from mqless_cli.local.ws_limits import (
    IDLE_TIMEOUT_SECONDS,
    INTEGRATION_TIMEOUT_SECONDS,
    MAX_CONNECTION_SECONDS,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
)
from mqless_cli.local.ws_routes import error_frame, route_response, select_route

if TYPE_CHECKING:
    from mqless_cli.billing import Meter

__all__ = ["WebSocketGateway"]


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
        self.connections = ConnectionRegistry(meter)
        """The open connections; the `@connections` API over them."""
        self._handshake = self._connect_handshake()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._startup_error: BaseException | None = None

    def _connect_handshake(self) -> ConnectHandshake:
        """Runs the `$connect` route (its authorizer first) inside each upgrade request."""
        stack, api_id = self._stack, self.api.api_id
        return ConnectHandshake(
            self._routes.get("$connect"),
            api_id=api_id,
            stage=self.stage,
            method_arn=(
                f"arn:{stack.ref('AWS::Partition')}:execute-api:{stack.region}:"
                f"{stack.account_id}:{api_id}/{self.stage}/$connect"
            ),
            functions=self._functions.specs,
            invoke=self._invoke,
            address=lambda: (self._host, self._port),
        )

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
        self.connections.serve_from(loop)
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._loop = None
            self.connections.serve_from(None)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> Server:
        return await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._handshake.connect,
            process_response=self._handshake.forget_refused,
            select_subprotocol=self._handshake.select_subprotocol,
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
        self.connections.close_all(1001, DISCONNECT_REASONS[1001])
        server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="Going away")
        await server.wait_closed()

    # ---- the @connections API (any thread; `ConnectionRegistry` does the work) ------------

    def post(self, connection_id: str, data: bytes) -> None:
        """Send `data` to the client (a text frame; fragments of <= 32 KB past that size)."""
        self.connections.post(connection_id, data)

    def get(self, connection_id: str) -> dict[str, Any]:
        """The connection's description, as GetConnection returns it."""
        return self.connections.get(connection_id)

    def delete(self, connection_id: str) -> None:
        """Close the connection (1000); its `$disconnect` follows."""
        self.connections.delete(connection_id)

    # ---- events ---------------------------------------------------------------------------

    def _connection_context(
        self, connection: Connection, route_key: str, event_type: str
    ) -> dict[str, Any]:
        return request_context(
            api_id=self.api.api_id,
            stage=self.stage,
            route_key=route_key,
            event_type=event_type,
            connection_id=connection.id,
            connected_at=connection.connected_at,
            source_ip=connection.source_ip,
            user_agent=connection.user_agent,
            domain=connection.domain,
            authorizer=connection.authorizer,
        )

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

    # ---- an open connection -----------------------------------------------------------------

    async def _handle(self, socket: ServerConnection) -> None:
        pending = self._handshake.opened(socket)
        connection = Connection(
            id=pending.connection_id,
            socket=socket,
            connected_at=pending.connected_at,
            source_ip=pending.source_ip,
            user_agent=pending.user_agent,
            domain=pending.domain,
            last_active=pending.connected_at,
            authorizer=pending.authorizer,
        )
        self.connections.add(connection)
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
            self.connections.remove(connection.id)
            if self.meter is not None:
                self.meter.connection_closed(connection.id)
            await self._disconnect(connection)

    async def _watch(self, connection: Connection) -> None:
        """Close the connection when idle too long or open too long (1001, as AWS does)."""
        while True:
            deadline = min(
                connection.last_active_monotonic + self.idle_timeout,
                connection.opened + self.max_connection_seconds,
            )
            wait = deadline - time.monotonic()
            if wait <= 0:
                connection.closing = connection.closing or (1001, DISCONNECT_REASONS[1001])
                await connection.socket.close(CloseCode.GOING_AWAY, "Going away")
                return
            await asyncio.sleep(wait)

    async def _message(self, connection: Connection, body: str) -> None:
        if self.meter is not None:
            self.meter.record_websocket_message("in", len(body.encode()))
        route_key = select_route(self.api.route_selection_expression, body, list(self._routes))
        context = self._connection_context(connection, route_key or "$default", "MESSAGE")
        context["messageId"] = new_id()
        if route_key is None:
            await self._send_frame(
                connection, error_frame("Forbidden", connection.id, context["requestId"])
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
            frame = error_frame("Endpoint request timed out", connection.id, context["requestId"])
            await self._send_frame(connection, frame)
            return
        except FunctionError:
            frame = error_frame("Internal server error", connection.id, context["requestId"])
            await self._send_frame(connection, frame)
            return
        if route.two_way:
            reply = route_response(result)
            if reply is not None:
                await self._send_frame(connection, reply)

    async def _send_frame(self, connection: Connection, text: str) -> None:
        if self.meter is not None:  # route responses and error frames are messages too
            self.meter.record_websocket_message("out", len(text.encode()))
        with contextlib.suppress(ConnectionClosed):  # closing already: nothing to tell
            await connection.socket.send(text)

    async def _disconnect(self, connection: Connection) -> None:
        code, reason = connection.close_status()
        route = self._routes.get("$disconnect")
        if route is None or route.function is None:
            return
        context = self._connection_context(connection, "$disconnect", "DISCONNECT")
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
        event = disconnect_event(connection.domain, context)
        # A failure is reported by the function host; API Gateway ignores $disconnect's outcome.
        with contextlib.suppress(FunctionError):
            await self._invoke(
                route.function, event, lambda _: f"WS $disconnect {connection.id} ({code})"
            )
