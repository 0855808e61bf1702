"""A FIFO queue's index segments as stored: their layout, the types read from them, and
their encoding (docs/storage-engine.md, "FIFO queues"; the FIFO index is `groups.py`).

Segment `seq` is `pk = F#<queue>#<seq mod shards>`, `sk = S#<seq>`. A segment holds up to
10 references in the order they were appended (at most what one receive takes, and under
1 KB with their tags), and per reference, as a standard segment does (`storage.segments`):
`r` the reference, `u` when it is free (-1: settled), `t` its lease token, `n` its receive
count, `e` its body's expiry, `w` a dead letter's reason; and `g` its group's tag (48 bits
of the group name's SHA-256: groups whose tags collide are served one after the other).
A reference to the queue's own log names its shard (`q<n>`), any other log its index in
`l`; `z` marks a segment closed with fewer than 10, `x` its expiry (21 days from when it
was made).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mqless.domain.models import MAX_RETENTION_SECONDS
from mqless.storage import keys
from mqless.storage.segments import Entry, NewRef, Ref, entries_from_item

MAX_REFS: Final = 10  # what one receive takes at most; 10 tagged references stay under 1 KB
MAX_SEGMENT_BYTES: Final = 1000  # every write of a segment then bills 1 WRU
TAG_BYTES: Final = 6
SEGMENT_LIFETIME_SECONDS: Final = MAX_RETENTION_SECONDS + 7 * 24 * 60 * 60


def group_tag(group: str) -> int:
    """The tag a group's references carry (48 bits of SHA-256: a number of 8 bytes)."""
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:TAG_BYTES], "big")


@dataclass(frozen=True)
class GroupedRef:
    """A reference to append to a FIFO queue, with its group."""

    new: NewRef
    group: str


@dataclass(frozen=True)
class FifoEntry(Entry):
    """A reference in a FIFO segment, with its state (a standard entry's) and its group's
    tag."""

    tag: int = field(kw_only=True)

    def gone(self, now_ms: int) -> bool:
        """Settled, or expired and not leased: it will never be delivered, and its group's
        next message may go."""
        return self.settled or (self.free_at(now_ms) and self.expired(now_ms))


@dataclass(frozen=True)
class FifoSegment:
    queue: str
    shards: int
    seq: int
    entries: tuple[FifoEntry, ...]
    logs: tuple[str, ...] = ()
    closed: bool = False  # takes no more references, though it holds fewer than 10

    @property
    def shard(self) -> int:
        return self.seq % self.shards

    @property
    def full(self) -> bool:
        """Whether it will never hold more references than it does now."""
        return self.closed or len(self.entries) >= MAX_REFS

    def passable(self, now_ms: int) -> bool:
        """Whether the floor may move past it: full, and nothing in it will be delivered."""
        return self.full and all(e.gone(now_ms) for e in self.entries)


@dataclass(frozen=True)
class Cursor:
    floor: int = 0
    hint: int = 0
    hint_made_at: int = 0  # epoch s; 0: no segment made yet


@dataclass
class AppendReport:
    appended: int = 0
    duplicates: int = 0
    segments: list[int] = field(default_factory=list)


def segment_key(queue: str, shards: int, seq: int) -> dict[str, str]:
    """The key of segment `seq` of a FIFO queue of `shards` shards."""
    return {"pk": keys.fifo_partition(queue, seq % shards), "sk": keys.segment_key(seq)}


def own_shard(queue: str, log: str) -> int | None:
    """The shard of `log` if it is this queue's own log (most references): stored as `q<n>`
    instead of a name in `l`, which would cost a FIFO segment the name of every log shard."""
    prefix = keys.queue_log(queue, 0)[:-1]
    rest = log[len(prefix) :] if log.startswith(prefix) else ""
    return int(rest) if rest.isascii() and rest.isdigit() else None


def ref_text(queue: str, ref: Ref, logs: list[str]) -> str:
    shard = own_shard(queue, ref.log)
    where = f"q{shard}" if shard is not None else str(logs.index(ref.log))
    return f"{where}.{ref.item}.{ref.slot}.{ref.mac}"


def entry_values(queue: str, refs: Sequence[GroupedRef], logs: list[str]) -> dict[str, list[Any]]:
    """Per attribute of a segment's entries (`r`, `u`, `t`, `n`, `e`, `g`, `w`), the values
    of these new references, in order; `logs` names the other logs referenced."""
    return {
        "r": [ref_text(queue, r.new.ref, logs) for r in refs],
        "u": [r.new.visible_at for r in refs],
        "t": [0] * len(refs),
        "n": [r.new.count for r in refs],
        "e": [r.new.expires_at for r in refs],
        "g": [group_tag(r.group) for r in refs],
        # always there (even all empty): appending to a list needs the list
        "w": [r.new.reason for r in refs],
    }


def _parse_ref(queue: str, text: str, logs: Sequence[str]) -> Ref:
    where, item_id, slot, mac = (text.split(".") + [""])[:4]
    log = keys.queue_log(queue, int(where[1:])) if where.startswith("q") else logs[int(where)]
    return Ref(log, item_id, int(slot), mac)


def starts_afresh(tail: FifoSegment, refs: Sequence[GroupedRef]) -> bool:
    """Whether to close a (non-empty) tail rather than fill it: the batch does not fit its
    room but fits a new segment."""
    if not tail.entries:
        return False
    fresh = FifoSegment(tail.queue, tail.shards, tail.seq + 1, ())
    return fitting(tail, refs) < len(refs) and fitting(fresh, refs) == len(refs)


def closes_early(held: int, batch: int) -> bool:
    """Whether a write of a stream batch of `batch` references that leaves a segment
    holding `held` closes it too, though it has room left: when the room is less than the
    batch, the next (stream batches of a queue are much alike) would likely not fit either,
    and closing then would take a write of its own (1 WRU), as it did for about one stream
    batch in two under `mqless dev`. A batch that would have fit goes into the next
    segment instead: one write either way. A batch larger than a segment fills the room it
    finds (it could not start a segment of its own anyway), so it leaves its last one
    open: segments stay full."""
    return batch <= MAX_REFS and 0 < MAX_REFS - held < batch


def fitting(segment: FifoSegment, refs: Sequence[GroupedRef]) -> int:
    """How many of `refs` fit in the segment (by count, and by bytes under 1 KB)."""
    size = _segment_bytes(segment)
    known = set(segment.logs)
    count = 0
    for grouped in refs:
        if len(segment.entries) + count >= MAX_REFS:
            break
        new = grouped.new
        extra = _entry_bytes(new.ref, new.reason)
        if own_shard(segment.queue, new.ref.log) is None and new.ref.log not in known:
            extra += len(new.ref.log.encode()) + 1
        if size + extra > MAX_SEGMENT_BYTES and count + len(segment.entries) > 0:
            break
        known.add(new.ref.log)
        size += extra
        count += 1
    return count


def _segment_bytes(segment: FifoSegment) -> int:
    """What DynamoDB counts for a segment item (attribute names and values), a bound."""
    partition = keys.fifo_partition(segment.queue, segment.shard)
    size = 2 + len(partition.encode()) + 2 + len(keys.segment_key(segment.seq)) + 8 * 3 + 8
    for log in segment.logs:
        size += len(log.encode()) + 1
    for entry in segment.entries:
        size += _entry_bytes(entry.ref, entry.reason)
    return size


def _entry_bytes(ref: Ref, reason: str) -> int:
    # ref text (`q<n>.` + 26 + `.<slot>.` + its MAC) + a list element each for r, u (a lease's
    # end: up to 8 bytes), t (up to 6), n (up to 3), e (6), g (8) and w (its reason)
    text = 4 + len(ref.item) + 1 + len(str(ref.slot)) + 1 + len(ref.mac)
    return text + 1 + 9 + 7 + 4 + 7 + 9 + len(reason.encode()) + 1


def segment_from_item(queue: str, shards: int, item: Mapping[str, Any]) -> FifoSegment:
    """A FIFO segment, as read from its item: a standard segment's columns, and `g`."""
    tags = [int(v) for v in item.get("g", [])]

    def entry(*, slot: int, **fields: Any) -> FifoEntry:
        return FifoEntry(slot=slot, **fields, tag=tags[slot] if slot < len(tags) else 0)

    logs, entries = entries_from_item(item, lambda text, logs: _parse_ref(queue, text, logs), entry)
    return FifoSegment(
        queue=queue,
        shards=shards,
        seq=keys.segment_seq(str(item["sk"])),
        entries=entries,
        logs=logs,
        closed=bool(item.get("z")),
    )
