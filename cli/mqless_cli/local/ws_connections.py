"""The open WebSocket connections, and the `@connections` API over them.

`post`, `get` and `delete` are called from other threads (the HTTP gateway serves them as
the `@connections` API); they run on the gateway's event loop. From the moment a socket
closes, they answer `ConnectionGone` (API Gateway's 410 GoneException).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from mqless_cli.local.ws_events import millis
from mqless_cli.local.ws_limits import (
    INTEGRATION_TIMEOUT_SECONDS,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
)

if TYPE_CHECKING:
    from mqless_cli.billing import Meter

__all__ = ["DISCONNECT_REASONS", "Connection", "ConnectionGone", "ConnectionRegistry"]

# disconnectReason as API Gateway words it, for the codes whose wording is known; else the
# close frame's own reason.
DISCONNECT_REASONS = {
    1000: "Connection Closed Normally",
    1001: "Going away",
    1005: "Client-side close frame status not set",
}


class ConnectionGone(Exception):
    """The connection is closed or never existed (API Gateway's 410 GoneException)."""


@dataclass
class Connection:
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
        self.last_active = millis()
        self.last_active_monotonic = time.monotonic()

    def close_status(self) -> tuple[int, str]:
        """The disconnectStatusCode and disconnectReason of the closed connection."""
        if self.closing is not None:
            return self.closing
        protocol = self.socket.protocol
        sent, received = protocol.close_sent, protocol.close_rcvd
        if sent is not None and (received is None or not protocol.close_rcvd_then_sent):
            frame = sent  # the gateway closed first (a limit, a protocol error)
        elif received is not None:
            frame = received
        else:
            return 1006, "Connection Closed Abnormally"
        code = int(frame.code)
        return code, frame.reason or DISCONNECT_REASONS.get(code, "")


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class ConnectionRegistry:
    """The gateway's open connections by id; the @connections operations (any thread)."""

    def __init__(self, meter: Meter | None = None) -> None:
        """`meter` is told of every message posted, as billed."""
        self.meter = meter
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # ---- the gateway's side (its event loop) ----------------------------------------------

    def serve_from(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The @connections calls run on `loop`, the calling thread's (None: not running)."""
        self._loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else self._loop_thread

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._connections[connection.id] = connection

    def remove(self, connection_id: str) -> None:
        with self._lock:
            self._connections.pop(connection_id, None)

    def close_all(self, code: int, reason: str) -> None:
        """Mark every connection as closed by the gateway with `code` (unless already)."""
        with self._lock:
            for connection in self._connections.values():
                connection.closing = connection.closing or (code, reason)

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

    def _live(self, connection_id: str) -> Connection:
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
        connection.closing = (1000, DISCONNECT_REASONS[1000])
        # The close handshake goes on in the background; the caller is answered at once.
        asyncio.get_running_loop().create_task(connection.socket.close(CloseCode.NORMAL_CLOSURE))
