"""Opening a WebSocket connection: all that `$connect` does once the caller is known.

Kept apart from `connections.py` so that `$connect` (a WebSocket function's usual first
event after a cold start) loads the connection store alone, not the queue, topic and push
services that a connection's frames use (issue 18's cold start).
"""

from __future__ import annotations

from mqless.domain.access.principals import Principal
from mqless.domain.push.pushes import Connection
from mqless.observability import metrics
from mqless.storage.connection_store import ConnectionStore


def open_connection(live: ConnectionStore, connection: Connection, principal: Principal) -> None:
    """Store a new connection with its principal and grants, and count it."""
    live.connect(
        connection.id,
        principal,
        protocol=connection.protocol,
        version=connection.version,
    )
    metrics.count("Connections")
