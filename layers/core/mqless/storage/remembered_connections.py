"""What one process (one Lambda container) remembers of the WebSocket connections whose
frames it handled, so that a STOMP SEND or ACK needs no read of its connection (issue 14:
that read was ~2 of a stompjs message's ~8 AWS requests).

On AWS any container may handle a connection's next frame, and its state may change in
another one. So a container keeps only what cannot be stale in a way that matters, for at
most `REMEMBER_SECONDS` after it read it (then the connection is read again, with its first
subscriptions, in one query):

- The connection's `#META` item once its STOMP session is connected: principal, grants,
  when its credential expires and which API key it came from, protocol and version. None of
  it changes for the connection's life: API Gateway authorizes once, at `$connect`, and
  CONNECT comes once. Before CONNECT, and on a JSON connection (which a CONNECT would turn
  into a STOMP one), every frame reads it.
- Credential expiry is checked on every frame against the remembered expiry, which is the
  stored one: not delayed.
- A connection ends (DISCONNECT, `$disconnect`, an operator's DELETE, the sweep closing the
  connections of a revoked or expired key, a post that found it gone) by deleting its items
  and closing its socket, and API Gateway delivers no frame of a closed socket: whichever
  container ended it, no other serves a frame of it from memory. Revoking a key therefore
  still takes effect at the next sweep (up to a minute), as before. Only if closing the
  socket failed after the items were deleted could a container that remembers it act on
  its frames, and for at most `REMEMBER_SECONDS` (before: refused at once).
- Queue subscriptions' records (`SUB#`, kind queue): each names one incarnation of a push
  consumer (its queue, and the epoch drawn on SUBSCRIBE that keys its delivery records)
  with what settling needs of it, none of which changes while it exists. Another container
  may UNSUBSCRIBE it, or UNSUBSCRIBE and SUBSCRIBE again under the same id. An ACK settles
  by a conditional write of the delivery record its ack id names, under the remembered
  epoch's keys, so:
  - after a new SUBSCRIBE, the new incarnation's ack ids name records the remembered one
    does not have: not in flight, and `Sessions.settle` reads the subscription again and
    settles with what it finds;
  - after an UNSUBSCRIBE (its leases went back to the queue at once), the ACK of one of its
    messages is refused as stale ("the message went back to the queue"), where a fresh read
    says "no subscription" - for `REMEMBER_SECONDS` after this container read it;
  - a `client` consumer's watermark is written only while its epoch is the remembered one
    (`PushConsumers.advance`): an old incarnation never moves a new one's.
  Topic subscriptions are not remembered (an ACK of a topic message reads its record).

The memory is per process (one `ConnectionStore`): what this process changes (subscribing,
unsubscribing, closing) it updates at once.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Final

from mqless.storage.connections import ConnectionInfo
from mqless.storage.dynamo import Item

# the sweep's period: a connection whose socket outlived its items is refused within it
REMEMBER_SECONDS: Final = 60
# at most this many connections remembered (a few hundred bytes each): the oldest go first
MAX_REMEMBERED: Final = 10_000


@dataclasses.dataclass
class _Remembered:
    read_at_ms: int
    info: ConnectionInfo  # without subscriptions
    queue_subscriptions: dict[str, Item]


class RememberedConnections:
    """The connections this process read lately, in the state no other process changes."""

    def __init__(self) -> None:
        self._known: dict[str, _Remembered] = {}
        self._lock = threading.Lock()

    def get(self, connection_id: str, now_ms: int) -> ConnectionInfo | None:
        """The connection as remembered (with its remembered queue subscriptions), if it
        was read less than `REMEMBER_SECONDS` ago."""
        with self._lock:
            known = self._known.get(connection_id)
            if known is None:
                return None
            if now_ms - known.read_at_ms >= REMEMBER_SECONDS * 1000:
                del self._known[connection_id]
                return None
            subscriptions = dict(known.queue_subscriptions)
        return dataclasses.replace(known.info, subscriptions=subscriptions, remembered=True)

    def read(self, info: ConnectionInfo | None, now_ms: int) -> None:
        """Remember a connection as just read (with the subscriptions read with it), if
        nothing of what a frame needs of it can change any more."""
        if info is None or not (info.stomp_connected and info.connection.protocol == "stomp"):
            return
        subscriptions = {
            sid: record
            for sid, record in (info.subscriptions or {}).items()
            if record.get("kind") == "queue"
        }
        bare = dataclasses.replace(info, subscriptions=None, remembered=False)
        with self._lock:
            self._known.pop(info.connection.id, None)
            while len(self._known) >= MAX_REMEMBERED:
                del self._known[next(iter(self._known))]
            self._known[info.connection.id] = _Remembered(now_ms, bare, subscriptions)

    def saw(self, connection_id: str, subscription_id: str, record: Item | None) -> None:
        """A subscription of the connection as read or written here (None: there is none)."""
        with self._lock:
            known = self._known.get(connection_id)
            if known is None:
                return
            if record is not None and record.get("kind") == "queue":
                known.queue_subscriptions[subscription_id] = dict(record)
            else:
                known.queue_subscriptions.pop(subscription_id, None)

    def forget(self, connection_id: str) -> None:
        with self._lock:
            self._known.pop(connection_id, None)
