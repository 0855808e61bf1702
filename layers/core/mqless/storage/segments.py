"""A queue's index segments as stored: their layout, the types read from them, and their
encoding (docs/storage-engine.md, "Items").

`pk = I#<queue>#<shard>`; segments `sk = S#<seq>` (dense, from 0) and the cursor `sk = C`.
A segment holds up to 10 references (what one receive takes at most, and a batch of 10 sent
together: such a batch is leased with one write and settled with one) and, per reference,
four numbers:

- `u`: 0 or a moment (ms) from which the reference is free to lease (a delay, the end of a
  lease, a nack's delay); -1 once it is settled for good (acked, expired, dead-lettered,
  purged, deleted).
- `t`: the token of its current lease (random, 31 bits; 0 before the first lease). A
  receipt names it; settling with a token that is no longer there changes nothing.
- `n`: how many times it was leased.
- `e`: when its body expires (epoch s): an expired reference is settled, never delivered,
  and counted nowhere, without reading its body.

`l` lists the logs its references name (a reference names its log by its index there), `w`
the dead letters' reasons, `x` the segment's expiry. The references of one log item (a batch
sent together) are never split over two segments (`fitting`); a segment closed (`z`) with
fewer than 10 takes no more.

The cursor holds `f`, the floor (every segment below it is settled), and the shard's ticket
dispenser, used only by receivers that compete (`leases.py`): `d`, the next *position* to
hand out (a position is `seq * 10 + slot`), `k`, when a ticket was last taken (ms), and `g`,
a floor a ticket carried (see `cursor_from_item`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from mqless.storage import keys

SETTLED: Final = -1
MAX_REFS: Final = 10  # a receive's most, and a send batch's: batches of 10 fill segments whole
MAX_SEGMENT_BYTES: Final = 1000  # stay under 1 KB: every update then bills 1 WRU


@dataclass(frozen=True)
class Ref:
    """Where a body sits: a log partition, an item of it, and the body's slot in the item;
    `mac` vouches that the broker put this reference in this queue (`refs.py`)."""

    log: str
    item: str
    slot: int
    mac: str = ""

    @property
    def message_id(self) -> str:
        return keys.message_id(self.item, self.slot)


@dataclass(frozen=True)
class NewRef:
    """A reference to append, with the state it starts with."""

    ref: Ref
    expires_at: int  # epoch s: when the body is gone (the segment's TTL covers it)
    visible_at: int = 0  # ms: not leasable before (a delay)
    count: int = 0  # receive count it carries (a dead letter keeps its count)
    reason: str = ""  # why it is here (dead letters: the reason and the source queue)
    lease: tuple[int, int] | None = None
    """(until ms, token): appended leased, to the push consumer the dispatch function
    feeds it to (its receive count 1): the append is the lease, no write of its own."""
    original: bool = False
    """From the body's own log item (a send or a publish), not a reference item: appended
    once ever, so one found in the tail even settled came from a redelivered stream batch
    (Lambda hands records over at least once). A reference item's may come back after it
    was settled (a redrive, a move back)."""

    def appended_already(self, waiting: set[Ref], settled: set[Ref]) -> bool:
        """Whether this reference is in the tail already (`waiting`, `settled`: its refs)."""
        return self.ref in waiting or (self.original and self.ref in settled)


class _HoldsEntries(Protocol):
    @property
    def entries(self) -> Sequence[Entry]: ...


def tail_refs(segments: Sequence[_HoldsEntries]) -> tuple[set[Ref], set[Ref]]:
    """The refs of the last segments: (still waiting, settled)."""
    waiting = {e.ref for s in segments for e in s.entries if not e.settled}
    settled = {e.ref for s in segments for e in s.entries if e.settled}
    return waiting, settled


@dataclass(frozen=True)
class Entry:
    """A reference in a segment, with its state."""

    slot: int  # position in the segment
    ref: Ref
    until: int
    token: int
    count: int
    reason: str = ""
    expires_at: int = 0

    @property
    def settled(self) -> bool:
        return self.until == SETTLED

    def free_at(self, now_ms: int) -> bool:
        return 0 <= self.until <= now_ms

    def expired(self, now_ms: int) -> bool:
        return 0 < self.expires_at <= now_ms // 1000


SomeEntry = TypeVar("SomeEntry", bound=Entry)
"""An entry of a standard segment, or of a FIFO one (with its group's tag)."""


@dataclass(frozen=True)
class Segment:
    queue: str
    shard: int
    seq: int
    entries: tuple[Entry, ...]
    expires_at: int = 0
    logs: tuple[str, ...] = ()
    closed: bool = False  # takes no more references, though it holds fewer than MAX_REFS

    @property
    def settled(self) -> bool:
        return all(e.settled for e in self.entries)

    @property
    def full(self) -> bool:
        """Whether it will never hold more references than it does now (only a full segment
        has a successor; a read that shows it full shows every reference it will hold)."""
        return self.closed or len(self.entries) >= MAX_REFS

    @property
    def end(self) -> int:
        """The position after its last reference, or the next segment's first if it is full
        (a closed segment's empty places are no one's: tickets skip them)."""
        return position(self.seq + 1, 0) if self.full else position(self.seq, len(self.entries))


@dataclass(frozen=True)
class Hold:
    """A lease on one reference, as a receipt names it."""

    slot: int
    token: int


@dataclass(frozen=True)
class Cursor:
    """A shard's cursor: the floor, and the ticket dispenser competing receivers use."""

    floor: int = 0  # every segment below it is settled
    dispensed: int | None = None  # the next position a ticket hands out (None: never used)
    ticket_at: int = 0  # ms: when a ticket was last taken (0: never)


def position(seq: int, slot: int) -> int:
    """A reference's place in its shard, as tickets count: `seq * MAX_REFS + slot`."""
    return seq * MAX_REFS + slot


def new_token() -> int:
    """A lease token: random, never 0 (0 means 'never leased')."""
    return int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1


def logs_of(segment: Segment) -> list[str]:
    """The logs a segment's references name, in their order in `l`."""
    # stored refs name logs by their index in `l`: only ever add to it
    return list(segment.logs)


def ref_text(ref: Ref, logs: list[str]) -> str:
    """A reference as stored, naming its log by its index in `logs`."""
    return f"{logs.index(ref.log)}.{ref.item}.{ref.slot}.{ref.mac}"


def parse_ref(text: str, logs: Sequence[str]) -> Ref:
    """A reference as stored (`<log index>.<item id>.<slot>.<mac>`)."""
    index, item_id, slot, mac = (text.split(".") + [""])[:4]
    return Ref(logs[int(index)], item_id, int(slot), mac)


def fitting(segment: Segment, logs: list[str], refs: Sequence[NewRef]) -> int:
    """How many of `refs` fit in the segment (by count, and by bytes under 1 KB)."""
    size = _segment_bytes(segment)
    known = list(logs)
    count = 0
    for new in refs:
        if len(segment.entries) + count >= MAX_REFS:
            break
        extra = _entry_bytes(new.visible_at, new.count, new.reason)
        if new.ref.log not in known:
            extra += len(new.ref.log) + 1
        if size + extra > MAX_SEGMENT_BYTES and count + len(segment.entries) > 0:
            break
        known.append(new.ref.log)
        size += extra
        count += 1
    return _at_item_boundary(refs, count, keep_split=not segment.entries)


def _at_item_boundary(refs: Sequence[NewRef], count: int, *, keep_split: bool) -> int:
    """`count`, lowered so that the references of one log item (a batch sent together) are
    not split over two segments: a receive of the batch then leases, and an ack settles,
    one segment (one write) rather than two. An item larger than a whole segment is split
    (`keep_split`: nothing fitted before it)."""
    if count >= len(refs) or count == 0:
        return count
    cut = count
    item = (refs[cut].ref.log, refs[cut].ref.item)
    while cut > 0 and (refs[cut - 1].ref.log, refs[cut - 1].ref.item) == item:
        cut -= 1
    return count if cut == 0 and keep_split else cut


def _segment_bytes(segment: Segment) -> int:
    """What DynamoDB counts for a segment item (attribute names and values), a bound."""
    queue_bytes = len(keys.index_partition(segment.queue, segment.shard).encode())
    size = 2 + queue_bytes + 2 + len(keys.segment_key(segment.seq)) + 8 * 3 + 8 + 2
    for log in logs_of(segment):
        size += len(log.encode()) + 1
    for entry in segment.entries:
        size += _entry_bytes(entry.until, entry.count, entry.reason)
    return size


def _entry_bytes(until: int, count: int, reason: str) -> int:
    # ref text (~3 + 26 + 3 + 12 for its MAC) + list overheads, u (up to 8), t (up to 6),
    # n (up to 3), e (7)
    return 45 + 1 + 9 + 7 + 4 + 7 + (len(reason.encode()) + 1 if reason else 0)


def segment_key(queue: str, shard: int, seq: int) -> dict[str, str]:
    """The key of segment `seq` of a standard queue's shard."""
    return {"pk": keys.index_partition(queue, shard), "sk": keys.segment_key(seq)}


def cursor_from_item(item: dict[str, Any]) -> Cursor:
    """A shard's cursor, as read from its item."""
    return Cursor(
        # `g`: a floor racing receivers write with their tickets, unconditionally; it may go
        # back (a hint from an older read), never past an unsettled segment (every hint was
        # read settled and full, which is for good), so the floor is the higher of the two
        floor=max(int(item.get("f", 0)), int(item.get("g", 0))),
        dispensed=int(item["d"]) if "d" in item else None,
        ticket_at=int(item.get("k", 0)),
    )


def segment_from_item(queue: str, shard: int, item: Mapping[str, Any]) -> Segment:
    """A segment, as read from its item."""
    logs, entries = entries_from_item(item, parse_ref, Entry)
    return Segment(
        queue=queue,
        shard=shard,
        seq=keys.segment_seq(str(item["sk"])),
        entries=entries,
        expires_at=int(item.get("x", 0)),
        logs=logs,
        closed="z" in item,
    )


def entries_from_item(
    item: Mapping[str, Any],
    parse: Callable[[str, Sequence[str]], Ref],
    entry: Callable[..., SomeEntry],
) -> tuple[tuple[str, ...], tuple[SomeEntry, ...]]:
    """A segment item's logs (`l`) and its references with their state (`r u t n e w`),
    one column per field, read alike for standard and FIFO segments; `parse` reads a
    reference (a FIFO segment names its own queue's log by shard), `entry` makes each
    (Entry's fields by name; a FIFO segment's adds the group's tag by slot). A slot past
    the end of `w` or `e` (written before they existed) has no reason and no expiry."""
    logs = [str(v) for v in item.get("l", [])]
    until = [int(v) for v in item.get("u", [])]
    tokens = [int(v) for v in item.get("t", [])]
    counts = [int(v) for v in item.get("n", [])]
    expiry = [int(v) for v in item.get("e", [])]
    reasons = [str(v) for v in item.get("w", [])]
    entries = tuple(
        entry(
            slot=slot,
            ref=parse(str(text), logs),
            until=until[slot],
            token=tokens[slot],
            count=counts[slot],
            reason=reasons[slot] if slot < len(reasons) else "",
            expires_at=expiry[slot] if slot < len(expiry) else 0,
        )
        for slot, text in enumerate(item.get("r", []))
    )
    return tuple(logs), entries
