"""Logs: where message bodies sit, written once and never rewritten.

`pk = L#<queue>#<shard>` (a queue's own sends) or `T#<topic>#<shard>` (a topic's
publishes), `sk = <item id>`. An item holds one or more sealed bodies (`b`, one per
message, in order) that share the item's key, its data key id (`k`) and its expiry (`x`,
DynamoDB's TTL: the item is removed for free when its retention ends). Optional: `v` the
moment each body may first be delivered (delays), `g` the FIFO group of every body in it
(or, an item whose bodies are of several groups that share its log shard, a list: each
body's),
`p` each body's priority (-1: none; only on items where a sender gave one): the dispatch
function indexes a body into its priority's lane without opening it.

DynamoDB bills every byte of an item, names and type overheads included, so the common
case is stored tight: a lone body is `b` itself, not a list of one (a list costs 3 bytes
and 1 per element), and the data key id is its 8 bytes, not 16 hex digits. Items written
before (a list of one, a hex id) read the same.

A *reference item* (`f` instead of `b`) holds no body: it points at bodies of other log
items (a dead letter, a redrive, a move or copy), with the receive count and reason each
keeps. Its stream record is what makes the dispatch function index those bodies into the
queue whose log it is in, so only the dispatch function ever appends to an index.

The KMS-encrypted data key (about 180 bytes) is not repeated in every item: it is stored
once under `pk = K#<destination>`, `sk = <key id>`, the key id being its hash.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.clock import Clock, SystemClock
from mqless.domain.errors import IntegrityError
from mqless.domain.models import MAX_RETENTION_SECONDS
from mqless.storage import keys
from mqless.storage.dynamo import (
    Item,
    batch_get,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.storage.log_writes import write_in_rounds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_ITEM_BYTES: Final = 390 * 1024  # DynamoDB's 400 KB item limit, with room for names
ITEM_OVERHEAD: Final = 160  # keys, names and numbers of a log item (a bound)
BODY_OVERHEAD: Final = 12  # per body in an item: list entry, visible_at (a bound)
KEY_SECONDS: Final = MAX_RETENTION_SECONDS + 2 * 24 * 60 * 60


@dataclass(frozen=True)
class Body:
    """A sealed body to write: its ciphertext and the encrypted data key that opens it."""

    ciphertext: bytes
    encrypted_key: bytes
    visible_at: int = 0
    priority: int | None = None


@dataclass(frozen=True)
class NewLogItem:
    """A log item to write: `keys.message_id(item_id, j)` is body j's message id; `group`
    the FIFO group of every body, or each body's."""

    partition: str
    item_id: str
    bodies: tuple[Body, ...]
    expires_at: int
    group: str | Sequence[str] | None = None


@dataclass(frozen=True)
class Source:
    """A body pointed at by a reference item, with the state it keeps where it goes."""

    log: str
    item: str
    slot: int
    count: int = 0
    reason: str = ""
    mac: str = ""  # the reference's MAC in the queue whose log this is (`refs.py`)
    priority: int | None = None  # the body's, so that it is indexed in its lane there


@dataclass(frozen=True)
class LogItem:
    """A log item as read."""

    partition: str
    item: str
    bodies: tuple[bytes, ...]
    encrypted_key: bytes
    expires_at: int
    group: str | None = None  # the FIFO group of every body (None: none, or several)
    visible_at: tuple[int, ...] = ()
    sources: tuple[Source, ...] = ()
    priorities: tuple[int, ...] = ()  # per body, -1: none (empty: none has one)
    groups: tuple[str, ...] = ()  # per body, where the bodies are of several groups

    def group_of(self, slot: int) -> str | None:
        """The FIFO group body `slot` was sent in, None if none."""
        if self.groups:
            return self.groups[slot] if slot < len(self.groups) else None
        return self.group

    def priority(self, slot: int) -> int | None:
        """The priority body `slot` was sent with, None if none."""
        value = self.priorities[slot] if slot < len(self.priorities) else -1
        return None if value < 0 else value


def key_id(encrypted_key: bytes) -> str:
    """A short, stable name for a KMS-encrypted data key."""
    return hashlib.sha256(encrypted_key).hexdigest()[:16]


class LogStore:
    """DynamoDB adapter for logs and the data keys they use; takes its client as an argument."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Clock | None = None
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._keys_written: set[tuple[str, str]] = set()
        self._keys_read: dict[tuple[str, str], bytes] = {}

    # ---- writing ----------------------------------------------------------------------

    def put(
        self,
        partition: str,
        item_id: str,
        bodies: Sequence[Body],
        *,
        expires_at: int,
        group: str | Sequence[str] | None = None,
    ) -> None:
        """Write one log item: bodies sealed under one data key (`keys.message_id(item_id, j)`
        is body j's message id); `group`: the FIFO group of every body, or each body's."""
        self.put_many([NewLogItem(partition, item_id, tuple(bodies), expires_at, group)])

    def put_many(
        self,
        items: Sequence[NewLogItem],
        *,
        unwritten: Callable[[set[str]], None] = lambda _: None,
    ) -> None:
        """Write log items: one PutItem for one, else BatchWriteItem (billed the same, per
        item) in rounds of at most one item a log partition (`log_writes.py`). If a write
        fails, `unwritten` hears the ids of the items certainly not written first."""
        wire = [to_wire(self._item(new)) for new in items]
        write_in_rounds(
            self._db,
            self._table,
            [(new.partition, item) for new, item in zip(items, wire, strict=True)],
            unwritten,
        )

    def _item(self, new: NewLogItem) -> dict[str, Any]:
        """A new log item as stored (its data key remembered first, once per process)."""
        bodies = new.bodies
        if not 1 <= len(bodies) <= keys.SLOTS_PER_ITEM:
            raise ValueError(f"a log item holds 1 to {keys.SLOTS_PER_ITEM} bodies")
        encrypted = {b.encrypted_key for b in bodies}
        if len(encrypted) != 1:
            raise ValueError("the bodies of one log item share one data key")
        (encrypted_key,) = encrypted
        self._remember_key(_destination(new.partition), encrypted_key)
        item: dict[str, Any] = {
            "pk": new.partition,
            "sk": new.item_id,
            "b": bodies[0].ciphertext if len(bodies) == 1 else [b.ciphertext for b in bodies],
            "k": bytes.fromhex(key_id(encrypted_key)),
            "x": new.expires_at,
            "g": group_attribute(new.group, len(bodies)),
        }
        if any(b.visible_at for b in bodies):
            item["v"] = [b.visible_at for b in bodies]
        if any(b.priority is not None for b in bodies):
            item["p"] = priorities_attribute([b.priority for b in bodies])
        return item

    def append_references(
        self,
        partition: str,
        sources: Sequence[Source],
        *,
        now_ms: int,
        expires_at: int,
        group: str | None = None,
    ) -> str:
        """Write a reference item: bodies of other items, to be indexed where this log is."""
        item_id = keys.new_item_id(now_ms)
        item = {
            "pk": partition,
            "sk": item_id,
            "f": [_pointer(s) for s in sources],
            "x": expires_at,
            "g": group,
        }
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(item))
        return item_id

    def _remember_key(self, destination: str, encrypted_key: bytes) -> None:
        name = (destination, key_id(encrypted_key))
        with self._lock:
            if name in self._keys_written:
                return
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(
                    {
                        "pk": keys.data_key_partition(destination),
                        "sk": name[1],
                        "k": encrypted_key,
                        # a key seals for minutes; what it sealed lives at most the longest
                        # retention: then the key item goes too (DynamoDB's TTL, for free)
                        "x": self._clock.now_ms() // 1000 + KEY_SECONDS,
                    }
                ),
            )
        with self._lock:
            self._keys_written.add(name)
            self._keys_read[name] = encrypted_key

    # ---- reading -----------------------------------------------------------------------

    def items(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LogItem]:
        """Log items by (partition, item id); missing ones (expired, never written) are absent.

        Eventually consistent first (half the price); what is missing is asked again
        strongly consistent, since a body is written before anything can reference it."""
        keys_wanted = list(dict.fromkeys(wanted))
        found: dict[tuple[str, str], LogItem] = {}
        for consistent in (False, True):
            missing = [k for k in keys_wanted if k not in found]
            for start in range(0, len(missing), 100):
                batch = missing[start : start + 100]
                for raw in self._batch_get(batch, consistent):
                    item = from_wire(raw)
                    log_item = self.log_item(item)
                    found[(log_item.partition, log_item.item)] = log_item
        return found

    def topic_items(
        self, topic: str, shard: int, from_ms: int, before_ms: int, *, after: str | None = None
    ) -> Iterator[Item]:
        """The log items of one shard of a topic written from `from_ms` up to `before_ms`
        (and after the item `after`, if given), in publish order (their ids sort as their
        times), strongly consistent, page by page."""
        low = keys.first_id_at(from_ms)
        if after is not None:
            low = max(low, keys.next_id(after))
        high = keys.last_id_before(before_ms)
        if before_ms <= from_ms or low > high:
            return iter(())
        return partition_items(
            self._db, self._table, keys.topic_log(topic, shard), between=(low, high)
        )

    def encrypted_key(self, destination: str, name: str) -> bytes:
        """The KMS-encrypted data key a log item names (read once per process)."""
        cache_key = (destination, name)
        with self._lock:
            hit = self._keys_read.get(cache_key)
        if hit is not None:
            return hit
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.data_key_partition(destination), "sk": name}),
                ConsistentRead=True,
            )
        if "Item" not in found:
            raise IntegrityError(f"data key {name} of {destination!r} is missing")
        blob = bytes(from_wire(found["Item"])["k"])
        if key_id(blob) != name:
            raise IntegrityError(f"data key {name} of {destination!r} is not the one named")
        with self._lock:
            self._keys_read[cache_key] = blob
        return blob

    def _batch_get(self, wanted: list[tuple[str, str]], consistent: bool) -> list[dict[str, Any]]:
        keys = [to_wire({"pk": pk, "sk": sk}) for pk, sk in wanted]
        return batch_get(self._db, self._table, keys, consistent=consistent)[0]

    def log_item(self, item: Item) -> LogItem:
        """A log item from its stored image (a read, or a stream record's NewImage)."""
        partition = str(item["pk"])
        destination = _destination(partition)
        sources = tuple(
            Source(str(f[0]), str(f[1]), int(f[2]), int(f[3]), str(f[4]), str(f[5]), priority)
            for f in item.get("f") or []
            if len(f) >= 6
            for priority in [pointer_priority(f)]
        )
        encrypted_key = b""
        if "k" in item:
            named = item["k"]
            try:
                encrypted_key = self.encrypted_key(
                    destination, named.hex() if isinstance(named, bytes) else str(named)
                )
            except IntegrityError:
                # its bodies fail authentication one by one (no key opens them), and the
                # items read with it are not held back
                encrypted_key = b""
        stored_group = item.get("g")
        return LogItem(
            partition=partition,
            item=str(item["sk"]),
            bodies=bodies_of(item),
            encrypted_key=encrypted_key,
            expires_at=int(item.get("x", 0)),
            group=None if isinstance(stored_group, list) else stored_group,
            groups=tuple(str(g) for g in stored_group) if isinstance(stored_group, list) else (),
            visible_at=tuple(int(v) for v in item.get("v") or []),
            sources=sources,
            priorities=tuple(int(v) for v in item.get("p") or []),
        )


def group_attribute(group: str | Sequence[str] | None, bodies: int) -> str | list[str] | None:
    """`g` of a log item: one group for every body (the common case, and items written
    before), or a list of each body's where they differ."""
    if group is None or isinstance(group, str):
        return group
    if len(group) != bodies:
        raise ValueError("a log item's groups are one per body")
    return group[0] if len(set(group)) == 1 else list(group)


def priorities_attribute(priorities: Sequence[int | None]) -> list[int]:
    """`p` of a log item: each body's priority, -1 for none."""
    return [-1 if p is None else p for p in priorities]


def _pointer(source: Source) -> list[object]:
    pointer: list[object] = [
        source.log,
        source.item,
        source.slot,
        source.count,
        source.reason,
        source.mac,
    ]
    if source.priority is not None:  # pointers without one stay as they were
        pointer.append(source.priority)
    return pointer


def pointer_priority(pointer: Sequence[object]) -> int | None:
    """The priority a reference item's pointer carries (its 7th element), None if none."""
    if len(pointer) < 7:
        return None
    value = int(str(pointer[6]))
    return value if value >= 0 else None


def bodies_of(item: Item) -> tuple[bytes, ...]:
    """The sealed bodies of a stored log item: `b` is a lone body, or a list of them."""
    stored = item.get("b")
    if isinstance(stored, bytes | bytearray):
        return (bytes(stored),)
    return tuple(bytes(b) for b in stored or [])


def _destination(partition: str) -> str:
    """The holder a log's bodies are sealed for: `/queue/<name>` or `/topic/<name>`."""
    kind, destination, _ = keys.parse_log_partition(partition)
    return f"/{kind}/{destination}"
