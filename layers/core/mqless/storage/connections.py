"""WebSocket connections as stored: every key and item shape of their partitions.

All in the destinations table (the reads and writes are `connection_store.py`'s and
`transactions.py`'s):
- `CONN#<id>` holds a connection: `#META` (principal, grants, protocol, STOMP version and
  session state), its subscriptions (`SUB#<id>`: a topic pattern, or the queue a push
  consumer reads, with a copy of what settling needs of the consumer's record), the
  temporary queues it made (`TMPQ#<queue>`, deleted when it closes) and its open STOMP
  transactions (`TX#<name>`, their held frames `TXOP#<name>#<position>`);
- `CONNECTIONS` lists open connections (`<id>`), for operators;
- `CREDENTIALS` lists connections by when their credential expires
  (`EXP#<epoch s>#<connection>`) and by the API key that opened them
  (`KEY#<key id>#<connection>`), with a marker per key revoked in the last minutes
  (`REVOKED#<key id>`), so the sweep finds the connections to close with keyed queries;
- `TEMPQUEUES` lists temporary queues by when their connection has surely ended
  (`<epoch s>#<connection>#<queue>`: API Gateway's 2-hour limit);
- `LIVE` lists every live topic subscription (`<pattern>#<connection>#<id>`, with the
  connection's protocol), so the dispatch function finds who matches a topic in one query.
Names a client chose (transactions) enter a key length-prefixed (`<length>:<name>`), so no
name can end where another's prefix begins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from mqless.domain.access.principals import Grant, Principal, parse_grants
from mqless.domain.push.pushes import Connection
from mqless.domain.topics.patterns import TopicIndex
from mqless.storage.dynamo import Item

META: Final = "#META"
SUBSCRIPTION: Final = "SUB#"
TEMP_QUEUE: Final = "TMPQ#"
TRANSACTION: Final = "TX#"
LIVE_PARTITION: Final = "LIVE"
CONNECTIONS_PARTITION: Final = "CONNECTIONS"
CREDENTIALS_PARTITION: Final = "CREDENTIALS"
TEMP_QUEUES_PARTITION: Final = "TEMPQUEUES"
CONNECTION_SECONDS: Final = 3 * 60 * 60  # API Gateway closes connections after 2 hours
CONNECTION_MAX_SECONDS: Final = 2 * 60 * 60  # ... and no connection outlives that
# A revoked key's marker outlives the authorizer's cached answers for the key (at most
# 5 minutes), so a connection opened from such an answer is closed by a later sweep too.
REVOKED_MARKER_SECONDS: Final = 10 * 60


# ---- keys -------------------------------------------------------------------------------


def connection_partition(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def meta_key(connection_id: str) -> dict[str, str]:
    return {"pk": connection_partition(connection_id), "sk": META}


def listed_key(connection_id: str) -> dict[str, str]:
    """A connection's entry in the operators' list of connections."""
    return {"pk": CONNECTIONS_PARTITION, "sk": connection_id}


def subscription_key(connection_id: str, subscription_id: str) -> dict[str, str]:
    return {"pk": connection_partition(connection_id), "sk": SUBSCRIPTION + subscription_id}


def temp_queue_key(connection_id: str, queue: str) -> dict[str, str]:
    return {"pk": connection_partition(connection_id), "sk": TEMP_QUEUE + queue}


def temp_queue_index_sort_key(due_s: int, connection_id: str, queue: str) -> str:
    return f"{due_s:012d}#{connection_id}#{queue}"


def transaction_key(connection_id: str, transaction: str) -> dict[str, str]:
    return {"pk": connection_partition(connection_id), "sk": TRANSACTION + _tag(transaction)}


def held_frames_prefix(transaction: str) -> str:
    return f"TXOP#{_tag(transaction)}#"


def held_frame_key(connection_id: str, transaction: str, position: int) -> dict[str, str]:
    sort_key = f"{held_frames_prefix(transaction)}{position:06d}"
    return {"pk": connection_partition(connection_id), "sk": sort_key}


def held_frame_id(connection_id: str, transaction: str, position: int) -> str:
    """What a held SEND's seal is bound to (its associated data)."""
    return f"{connection_id}/{_tag(transaction)}/{position}"


def live_sort_key(pattern: str, connection_id: str, subscription_id: str) -> str:
    return f"{pattern}#{connection_id}#{subscription_id}"


def credential_sort_keys(meta: Mapping[str, Any], connection_id: str) -> list[str]:
    """The `CREDENTIALS` items of a connection, from its `#META` item."""
    keys = []
    if meta.get("credential_expires_at") is not None:
        keys.append(f"EXP#{int(meta['credential_expires_at']):012d}#{connection_id}")
    if meta.get("key_id"):
        keys.append(f"KEY#{meta['key_id']}#{connection_id}")
    return keys


def expired_credentials_range(now_s: int) -> tuple[str, str]:
    """The `CREDENTIALS` sort keys of every credential expired at or before `now_s`
    ("$" sorts after "#")."""
    return "EXP#", f"EXP#{now_s:012d}$"


def revoked_markers_range() -> tuple[str, str]:
    return "REVOKED#", "REVOKED$"


def revoked_key_id(marker_sort_key: str) -> str:
    return marker_sort_key[len("REVOKED#") :]


def key_connections_range(key_id: str) -> tuple[str, str]:
    """The `CREDENTIALS` sort keys of the connections an API key opened."""
    return f"KEY#{key_id}#", f"KEY#{key_id}$"


def credential_connection(sort_key: str) -> str:
    """The connection an `EXP#...` or `KEY#...` item names."""
    return sort_key.split("#", 2)[2]


def due_temp_queues_range(now_s: int) -> tuple[str, str]:
    """The `TEMPQUEUES` sort keys of temporary queues due at or before `now_s`."""
    return "0", f"{now_s:012d}$"


def temp_queue_index_entry(sort_key: str) -> tuple[str, str]:
    """(connection, queue) of a `TEMPQUEUES` sort key."""
    _due, connection_id, queue = sort_key.split("#", 2)
    return connection_id, queue


def revoked_key_marker(key_id: str, now_ms: int) -> dict[str, Any]:
    """The item that tells the sweep to close the connections an API key opened."""
    return {
        "pk": CREDENTIALS_PARTITION,
        "sk": f"REVOKED#{key_id}",
        "expires_at": now_ms // 1000 + REVOKED_MARKER_SECONDS,
    }


def _tag(name: str) -> str:
    return f"{len(name)}:{name}"


# ---- item shapes ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionInfo:
    """A connection's `#META` item."""

    connection: Connection
    principal: str
    stomp_connected: bool = False
    kind: str = "connection"
    grants: tuple[Grant, ...] = ()
    credential_expires_at: int | None = None
    """When the key or JWT the connection authenticated with expires (epoch seconds)."""
    key_id: str | None = None
    """The API key the connection authenticated with (revoking it closes the connection)."""
    subscriptions: Mapping[str, dict[str, Any]] | None = field(default=None, compare=False)
    """Subscription records read in the same request as the connection, or (`remembered`)
    the queue subscriptions this process last read or wrote; dropped (None) by whoever
    changes the connection's subscriptions while still holding it. One not found here is
    read on its own: there may be more than were read, or a newer one."""
    remembered: bool = field(default=False, compare=False)
    """Served from this process's memory of the connection (`connection_store.py`), not
    read by this invocation: its subscriptions may have changed in another process since."""

    @property
    def acting_as(self) -> Principal:
        """The principal that authenticated this connection, with the grants it had then."""
        return Principal(
            id=self.principal,
            kind=self.kind,
            grants=self.grants,
            expires_at=self.credential_expires_at,
            key_id=self.key_id,
        )


@dataclass(frozen=True)
class EndedCredential:
    """A connection whose credential stopped working: expired, or a revoked key."""

    connection_id: str
    kind: str  # the principal's: `jwt`, `api_key`
    revoked: bool
    index_key: str


@dataclass(frozen=True)
class OrphanedTempQueue:
    """A temporary queue whose connection has surely ended (API Gateway's 2-hour limit)."""

    connection_id: str
    queue: str
    index_key: str


@dataclass(frozen=True)
class LiveTarget:
    """A live topic subscription that a published message goes to."""

    connection: Connection
    subscription: str
    ack: str
    selector: str | None = None  # checked when it subscribed (`selectors.py`)


@dataclass(frozen=True)
class Disconnected:
    """What a closed connection held."""

    subscriptions: list[dict[str, Any]]
    temp_queues: list[str]


class LiveIndex:
    """Live topic subscriptions by pattern, as read at one moment."""

    def __init__(self, index: TopicIndex[LiveTarget]) -> None:
        self._index = index

    def match(self, topic: str) -> list[LiveTarget]:
        return sorted(self._index.match(topic), key=lambda t: (t.connection.id, t.subscription))


def meta_item(
    connection_id: str, principal: Principal, record: Mapping[str, Any]
) -> dict[str, Any]:
    """A new connection's `#META` item: `record` (protocol, times) and who it acts as."""
    meta: dict[str, Any] = {
        **meta_key(connection_id),
        **record,
        "kind": principal.kind,
        "grants": [g.model_dump(mode="json") for g in principal.grants],
    }
    if principal.expires_at is not None:
        meta["credential_expires_at"] = principal.expires_at
    if principal.key_id is not None:
        meta["key_id"] = principal.key_id
    return meta


def connection_info(connection_id: str, meta: Item, subscriptions: list[Item]) -> ConnectionInfo:
    """A connection as its `#META` item (and the subscriptions read with it) record it."""
    return ConnectionInfo(
        connection=Connection.stored(connection_id, meta),
        principal=str(meta["principal"]),
        stomp_connected=bool(meta.get("stomp_connected", False)),
        kind=str(meta.get("kind", "connection")),
        grants=parse_grants(list(meta.get("grants") or [])),
        credential_expires_at=optional_int(meta.get("credential_expires_at")),
        key_id=None if meta.get("key_id") is None else str(meta["key_id"]),
        subscriptions={s["id"]: s for s in map(subscription_record, subscriptions)},
    )


def live_target(item: Item) -> LiveTarget:
    return LiveTarget(
        connection=Connection.stored(str(item["connection"]), item),
        subscription=str(item["subscription"]),
        ack=str(item.get("ack", "auto")),
        selector=None if item.get("selector") is None else str(item["selector"]),
    )


def subscription_record(item: Item) -> dict[str, Any]:
    """A `SUB#` item with its `id` and `kind` (topic or queue) filled in."""
    return {
        **item,
        "id": str(item["sk"])[len(SUBSCRIPTION) :],
        "kind": str(item.get("kind", "topic")),
    }


def destination_of(record: Mapping[str, Any]) -> str:
    """A subscription's destination as its client named it (`/topic/...`, `/queue/...`)."""
    if record["kind"] == "queue":
        return str(record.get("destination") or f"/queue/{record.get('queue', '')}")
    return f"/topic/{record.get('pattern', '')}"


def optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
