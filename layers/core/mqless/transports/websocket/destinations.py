"""Destinations as WebSocket clients name them, and the connections' temporary queues.

`/queue/NAME` and `/topic/NAME` name a queue or a topic (ActiveMQ wildcards in topic
subscriptions). Temporary queues (request/reply, as ActiveMQ): `/temp-queue/<name>` is
the real queue `temp-queue.<16 hex of SHA-256 of the connection id>.<name>`, made by the
broker on the connection's first use (no `create` right, no quota, no dead-letter queue),
recorded on the connection (`TMPQ#`, `storage/connections.py`) and deleted when it
closes. A `reply_to` naming one reaches its receiver as `/remote-temp-queue/<queue>`.
Only the connection whose hash the name holds may subscribe to it, by any name; sending
to it (or, for its owner, receiving) still needs the grant on the real name, as
ActiveMQ's temp-destination entry: `send` (and `receive`) on `temp-queue.>`. A send never
re-creates one that has gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from mqless.domain import names
from mqless.domain.errors import Forbidden, InvalidRequest
from mqless.domain.messages import NewMessage
from mqless.storage.connection_store import ConnectionStore
from mqless.storage.connections import ConnectionInfo

if TYPE_CHECKING:
    from mqless.domain.queues.service import QueueService

TEMP_QUEUE: Final = "/temp-queue/"
REMOTE_TEMP_QUEUE: Final = "/remote-temp-queue/"

Kind = Literal["queue", "topic"]


def split_destination(destination: str) -> tuple[Kind, str]:
    """`/topic/a.b` -> ("topic", "a.b"); `/queue/x` -> ("queue", "x");
    `/remote-temp-queue/temp-queue.<owner>.x` -> ("queue", "temp-queue.<owner>.x")."""
    prefixes: tuple[tuple[Kind, str], ...] = (
        ("topic", "/topic/"),
        ("queue", "/queue/"),
        ("queue", REMOTE_TEMP_QUEUE),
    )
    for kind, prefix in prefixes:
        if destination.startswith(prefix) and len(destination) > len(prefix):
            name = destination[len(prefix) :]
            if prefix == REMOTE_TEMP_QUEUE and not names.is_temp_queue(name):
                break
            return kind, name
    raise InvalidRequest(
        f"destination {destination[:100]!r} must be /queue/NAME or /topic/NAME (or "
        "/temp-queue/NAME, or the /remote-temp-queue/... a reply-to named)"
    )


class Destinations:
    """What a connection's destination names mean, its temporary queues made on first use."""

    def __init__(self, connections: ConnectionStore, queues: QueueService) -> None:
        self._connections = connections
        self._queues = queues

    def resolve(
        self, info: ConnectionInfo, destination: str, *, receiving: bool
    ) -> tuple[Kind, str]:
        """A destination's kind and real name; `/temp-queue/x` is the connection's own
        temporary queue (made on first use). Only the connection that made a temporary
        queue may receive from it, by whatever name it is reached."""
        connection_id = info.connection.id
        if destination.startswith(TEMP_QUEUE):
            name = names.temp_queue_name(connection_id, destination[len(TEMP_QUEUE) :])
            if not self._queues.has_queue(name):
                # recorded first: a queue the connection made is always found when it goes
                self._connections.add_temp_queue(connection_id, name)
                self._queues.open_temporary(name)
            return "queue", name
        kind, name = split_destination(destination)
        owned = name.startswith(names.temp_queue_owner(connection_id))
        if receiving and kind == "queue" and names.is_temp_queue(name) and not owned:
            raise Forbidden(
                f"temporary queue {name!r} belongs to another connection: only the "
                "connection that made it may receive from it"
            )
        return kind, name

    def with_reply_to(self, info: ConnectionInfo, message: NewMessage) -> NewMessage:
        """A message as its receiver gets it: a `reply_to` of `/temp-queue/x` (made now if
        new) becomes `/remote-temp-queue/<real name>`, a destination the receiver can send
        to, as ActiveMQ rewrites it; any other value travels unchanged."""
        if message.reply_to is None or not message.reply_to.startswith(TEMP_QUEUE):
            return message
        _, name = self.resolve(info, message.reply_to, receiving=False)
        return message.model_copy(update={"reply_to": REMOTE_TEMP_QUEUE + name})
