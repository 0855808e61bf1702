"""A FIFO queue's index: one sequence of segments for the whole queue, each reference
tagged with its group (docs/storage-engine.md, "FIFO queues").

Segment `seq` is `pk = F#<queue>#<seq mod shards>`, `sk = S#<seq>`: consecutive segments
rotate over the queue's shards, so the load spreads evenly whatever the groups, and a
stream batch's references (any groups) share one segment. A segment holds up to 10
references in the order they were appended (at most what one receive takes, and under
1 KB with their tags), and per reference, as a standard segment does (`storage.index`):
`r` the reference, `u` when it is free (-1: settled), `t` its lease token, `n` its receive
count, `e` its body's expiry, `w` a dead letter's reason; and `g` its group's tag (48 bits
of the group name's SHA-256: groups whose tags collide are served one after the other).

Which reference of a group may be leased is decided by the reader (`fifo_leases.py`): the
group's first one not settled, and only while it is free. Here are the rules that make
that safe without any group state:
- references are only appended, at the tail, and a new segment is made only after the one
  before it is full (read strongly consistent): a full segment shows every reference it
  will ever hold, so a reader uses segments up to the first missing or not full one;
- the appender finds the tail from the tail it last used (for 10 minutes) or the cursor's
  hint, walking forward with strongly consistent reads. A segment lives (TTL) 21 days from
  when it was made, 7 past the longest retention, and the hint moves to a new segment
  whenever it is an hour old or 64 segments behind: a segment missing between the hint
  and the tail was made over 21 days ago with everything around it, all expired.

The cursor `pk = F#<queue>#0`, `sk = C` holds `f`, the floor (every segment below it is
settled), `h` the hint and `a` when the hint's segment was made (epoch s).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from mqless.domain.clock import Clock, SystemClock
from mqless.domain.errors import Throttled
from mqless.domain.models import MAX_RETENTION_SECONDS
from mqless.storage import keys
from mqless.storage.dynamo import (
    from_wire,
    is_condition_failure,
    put_if_absent,
    to_wire,
    translated_errors,
)
from mqless.storage.index import (
    SETTLED,
    Entry,
    Hold,
    NewRef,
    Ref,
    claim_update,
    holds_update,
    raise_floor,
    tail_refs,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_REFS: Final = 10  # what one receive takes at most; 10 tagged references stay under 1 KB
MAX_SEGMENT_BYTES: Final = 1000  # every write of a segment then bills 1 WRU
TAG_BYTES: Final = 6
SEGMENT_LIFETIME_SECONDS: Final = MAX_RETENTION_SECONDS + 7 * 24 * 60 * 60
HINT_MAX_AGE_SECONDS: Final = 60 * 60
HINT_MAX_LAG: Final = 64  # segments the cursor's hint may fall behind the tail
TAIL_MEMORY_SECONDS: Final = 10 * 60  # how long an appender trusts the tail it last used
MAX_APPEND_ATTEMPTS: Final = 20
LOOKBACK: Final = 2  # segments read back for refs a retried stream batch appended already
MAX_BATCH_GET: Final = 100


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


class FifoIndex:
    """DynamoDB adapter for FIFO queues' segments; takes its client as an argument."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Clock | None = None
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        # how long ago a tail was used is a duration in this process: monotonic, not the
        # (possibly skewed, possibly stepped) broker clock
        self._tails: dict[str, tuple[int, float]] = {}  # queue: (tail seq, when we used it)
        # queue: the cursor's hint and when its segment was made, as last read or written:
        # moving the hint is a conditional write, billed even when its condition fails
        self._hints: dict[str, tuple[int, int]] = {}

    # ---- reading ----------------------------------------------------------------------

    def cursor(self, queue: str, *, consistent: bool = False) -> Cursor:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.fifo_partition(queue, 0), "sk": keys.CURSOR}),
                ConsistentRead=consistent,
            )
        cursor = Cursor()
        if "Item" in found:
            item = from_wire(found["Item"])
            cursor = Cursor(int(item.get("f", 0)), int(item.get("h", 0)), int(item.get("a", 0)))
        with self._lock:
            self._hints[queue] = (cursor.hint, cursor.hint_made_at)
        return cursor

    def segments(
        self, queue: str, shards: int, seqs: Iterable[int], *, consistent: bool = False
    ) -> dict[int, FifoSegment]:
        """The segments of these numbers that exist (one BatchGetItem per 100)."""
        wanted = list(dict.fromkeys(seqs))
        found: dict[int, FifoSegment] = {}
        for start in range(0, len(wanted), MAX_BATCH_GET):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [self._key(queue, shards, s) for s in wanted[start : start + 100]],
                    "ConsistentRead": consistent,
                }
            }
            for _ in range(8):
                with translated_errors():
                    response = self._db.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self._table, []):
                    segment = _segment(queue, shards, from_wire(raw))
                    found[segment.seq] = segment
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def ordered(
        self,
        queue: str,
        shards: int,
        start: int,
        *,
        hint: int = 0,
        consistent: bool = False,
        first_read: int = 4,
        limit: int | None = None,
    ) -> Iterator[FifoSegment]:
        """Segments from `start` on, in order, as far as a reader may use them: up to the
        first one missing or not full (included). One missing behind a segment that exists,
        or behind the tail `hint`, and still missing when read strongly consistent, was
        removed by its TTL (every reference in it long expired): it comes as an empty closed
        segment. Reads `first_read` segments, then twice as many each time, `limit` in all."""
        seq = start
        page = first_read
        while limit is None or seq - start < limit:
            count = page if limit is None else min(page, start + limit - seq)
            found = self.segments(queue, shards, range(seq, seq + count), consistent=consistent)
            last = max(found, default=-1)
            for at in range(seq, seq + count):
                segment = found.get(at)
                if segment is None and (at < last or at < hint):
                    segment = self.segment(queue, shards, at) or FifoSegment(
                        queue, shards, at, (), closed=True
                    )
                if segment is None:
                    return
                yield segment
                if not segment.full:
                    return
            seq += count
            page *= 2

    def segment(self, queue: str, shards: int, seq: int) -> FifoSegment | None:
        """One segment, strongly consistent."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table, Key=self._key(queue, shards, seq), ConsistentRead=True
            )
        return _segment(queue, shards, from_wire(found["Item"])) if "Item" in found else None

    # ---- appending (the dispatch function) ----------------------------------------------

    def append(self, queue: str, shards: int, refs: Sequence[GroupedRef]) -> AppendReport:
        """Append references in order at the tail, filling the last segment first; one
        still waiting in the last segments (a retried stream batch) is not appended again."""
        report = AppendReport()
        pending = list(refs)
        for _ in range(MAX_APPEND_ATTEMPTS):
            seq, tail, before = self._tail(queue, shards)
            recent = [s for s in (before, tail) if s is not None]
            recent += self._earlier(queue, shards, seq - 1, len(pending), recent)
            waiting, settled = tail_refs(recent)
            fresh = [r for r in pending if not r.new.appended_already(waiting, settled)]
            report.duplicates += len(pending) - len(fresh)
            pending = fresh
            if not pending:
                return report
            try:
                if tail is not None and _starts_afresh(tail, pending):
                    # a batch that does not fit the tail's room but fits a segment of its
                    # own closes the tail (one write, as filling it would be) and starts
                    # one: the segments stay aligned with the stream batches, so the next
                    # batch is again one write
                    self._close(tail)
                elif tail is not None:
                    taken = self._fill(tail, pending)
                    if taken:
                        report.appended += taken
                        report.segments.append(tail.seq)
                        pending = pending[taken:]
                        self._remember(queue, tail.seq)
                if tail is not None:
                    seq = tail.seq + 1
                while pending:
                    taken = self._put_segment(queue, shards, seq, pending)
                    report.appended += taken
                    report.segments.append(seq)
                    pending = pending[taken:]
                    self._remember(queue, seq)
                    self._move_hint(queue, seq)
                    seq += 1
                return report
            except _Contended:
                self._forget(queue)  # another appender got there first: find the tail again
        raise Throttled(f"could not append to FIFO queue {queue!r}: too much contention")

    def _earlier(
        self, queue: str, shards: int, below: int, refs: int, recent: Sequence[FifoSegment]
    ) -> list[FifoSegment]:
        """Segments before `below`, newest first, until they and `recent` hold `refs`
        references and a segment more: a retried stream batch's references, appended after
        everything else of the queue, are all among them (the last two segments alone miss
        them when the batch filled more than that)."""
        held = sum(len(s.entries) for s in recent)
        earlier: list[FifoSegment] = []
        while held < refs + MAX_REFS and below > 0:
            first = max(0, below - 1 - -(-refs // MAX_REFS))
            found = self.segments(queue, shards, range(first, below), consistent=True)
            if not found:
                break  # a hole: older than any stream batch still retried
            for segment in sorted(found.values(), key=lambda s: -s.seq):
                earlier.append(segment)
                held += len(segment.entries)
            below = first
        return earlier

    def _tail(self, queue: str, shards: int) -> tuple[int, FifoSegment | None, FifoSegment | None]:
        """(where the next reference goes, that segment if it exists (and so is not full),
        the segment before it), strongly consistent: from the tail this process last used,
        else from the cursor's hint, forward to the first segment missing or not full."""
        remembered = self._remembered(queue)
        starts = [remembered] if remembered is not None else []
        for start in [*starts, None]:
            asked_cursor = start is None
            if start is None:
                start = self.cursor(queue, consistent=True).hint
            first = max(start - 1, 0)
            found = self.segments(queue, shards, range(first, start + 2), consistent=True)
            if start not in found and not asked_cursor:
                # gone meanwhile (21 days old, or the queue was deleted and made again by
                # the time this process comes back to it): ask the cursor
                continue
            previous = found.get(start - 1)
            read_to = start + 2
            seq = start
            while True:
                if seq >= read_to:
                    # a start behind the tail usually trails it by a few segments
                    found |= self.segments(queue, shards, range(seq, seq + 4), consistent=True)
                    read_to = seq + 4
                segment = found.get(seq)
                if segment is None:
                    return seq, None, previous
                if not segment.full:
                    return seq, segment, previous
                previous = segment
                seq += 1
        raise AssertionError("unreachable: the cursor is always asked last")

    def _fill(self, segment: FifoSegment, refs: Sequence[GroupedRef]) -> int:
        """Append what fits to the tail segment; how many went in. A segment that cannot take
        the next reference (its bytes, not its count, are full) is closed in the same write:
        only a full or closed segment may have a successor (see the module doc)."""
        count = _fitting(segment, refs)
        closing = count < len(refs)
        if count == 0:
            self._close(segment)
            return 0
        taken = refs[:count]
        logs = list(segment.logs)
        new_logs = list(
            dict.fromkeys(
                r.new.ref.log
                for r in taken
                if _own_shard(segment.queue, r.new.ref.log) is None and r.new.ref.log not in logs
            )
        )
        all_logs = logs + new_logs
        values: dict[str, Any] = {
            ":r": [_ref_text(segment.queue, r.new.ref, all_logs) for r in taken],
            ":u": [r.new.visible_at for r in taken],
            ":t": [0] * count,
            ":n": [r.new.count for r in taken],
            ":e": [r.new.expires_at for r in taken],
            ":g": [group_tag(r.group) for r in taken],
            ":w": [r.new.reason for r in taken],
            ":len": len(segment.entries),
        }
        update = (
            "SET r = list_append(r, :r), u = list_append(u, :u), t = list_append(t, :t), "
            "n = list_append(n, :n), e = list_append(e, :e), g = list_append(g, :g), "
            "w = list_append(w, :w)"
        )
        if new_logs:
            update += ", l = list_append(l, :l)"
            values[":l"] = new_logs
        if closing and len(segment.entries) + count < MAX_REFS:
            update += ", z = :yes"
            values[":yes"] = 1
        self._update_or_contend(
            segment, update, "size(r) = :len AND attribute_not_exists(z)", values
        )
        return count

    def _close(self, segment: FifoSegment) -> None:
        """Take no more references into the segment, so that a successor may be made."""
        self._update_or_contend(
            segment,
            "SET z = :yes",
            "size(r) = :len AND attribute_not_exists(z)",
            {":yes": 1, ":len": len(segment.entries)},
        )

    def _update_or_contend(
        self, segment: FifoSegment, update: str, condition: str, values: dict[str, Any]
    ) -> None:
        try:
            self._update(segment.queue, segment.shards, segment.seq, update, condition, values)
        except _Refused as exc:
            raise _Contended from exc

    def _put_segment(self, queue: str, shards: int, seq: int, refs: Sequence[GroupedRef]) -> int:
        count = _fitting(FifoSegment(queue, shards, seq, ()), refs)
        taken = refs[:count]
        # made closed when the rest does not fit by bytes: its successor comes next
        closed = count < len(refs) and count < MAX_REFS
        logs = list(
            dict.fromkeys(r.new.ref.log for r in taken if _own_shard(queue, r.new.ref.log) is None)
        )
        item: dict[str, Any] = {
            **from_wire(self._key(queue, shards, seq)),
            "l": logs,
            "r": [_ref_text(queue, r.new.ref, logs) for r in taken],
            "u": [r.new.visible_at for r in taken],
            "t": [0] * count,
            "n": [r.new.count for r in taken],
            "e": [r.new.expires_at for r in taken],
            "g": [group_tag(r.group) for r in taken],
            # always there (even all empty): appending to a list needs the list
            "w": [r.new.reason for r in taken],
            # counted from when it is made, never from its references (see the module doc)
            "x": self._clock.now_ms() // 1000 + SEGMENT_LIFETIME_SECONDS,
        }
        if closed:
            item["z"] = 1
        if not put_if_absent(self._db, self._table, item):
            raise _Contended
        return count

    def _move_hint(self, queue: str, seq: int) -> None:
        """Point the cursor's hint at a segment just made, if the hint is an hour old or far
        behind (see the module doc: this is what keeps appenders clear of TTL holes)."""
        now = self._clock.now_ms() // 1000
        with self._lock:
            known = self._hints.get(queue)
        if known is None:
            self.cursor(queue, consistent=True)  # a read is cheaper than a refused write
            with self._lock:
                known = self._hints.get(queue)
        if known is not None and not _hint_due(known, seq, now):
            return
        try:
            with translated_errors():
                self._db.update_item(
                    TableName=self._table,
                    Key=to_wire({"pk": keys.fifo_partition(queue, 0), "sk": keys.CURSOR}),
                    UpdateExpression="SET h = :seq, a = :now",
                    ConditionExpression=(
                        "attribute_not_exists(h) OR (h < :seq AND (a < :old OR h <= :behind))"
                    ),
                    ExpressionAttributeValues=to_wire(
                        {
                            ":seq": seq,
                            ":now": now,
                            ":old": now - HINT_MAX_AGE_SECONDS,
                            ":behind": seq - HINT_MAX_LAG,
                        }
                    ),
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            self.cursor(queue, consistent=True)  # another appender moved it: learn where
            return
        with self._lock:
            self._hints[queue] = (seq, now)

    # ---- leasing and settling ---------------------------------------------------------------

    def claim(
        self,
        segment: FifoSegment,
        slots: Sequence[int],
        *,
        now_ms: int,
        until_ms: int,
        token: int,
        settle: Sequence[int] = (),
    ) -> FifoSegment | None:
        """Lease `slots` (each must still be free at `now_ms`) under `token` until `until_ms`,
        and settle `settle` (refs found expired and free) in the same write; None if any of
        them was taken meanwhile."""
        if not slots and not settle:
            return segment
        update, condition, values = claim_update(slots, settle, now_ms, until_ms, token)
        return self._quiet_update(segment, update, condition, values)

    def set_until(
        self,
        queue: str,
        shards: int,
        seq: int,
        holds: Sequence[Hold],
        until: int,
        *,
        release: bool = False,
        uncount: bool = False,
    ) -> FifoSegment | None:
        """Settle (`until` = SETTLED), release or extend leased refs, each only while its
        lease is the one named; None if any of them is not (a stale receipt). `release`
        makes the lease's receipts stale; `uncount` also takes the lease back out of the
        receive count (it delivered to no one)."""
        update, condition, values = holds_update(holds, until, release=release, uncount=uncount)
        return self._quiet_update(FifoSegment(queue, shards, seq, ()), update, condition, values)

    def settle_any(
        self, queue: str, shards: int, seq: int, slots: Sequence[int]
    ) -> FifoSegment | None:
        """Settle refs whatever their lease (an operator's delete or move, a purge); None if
        one of them was settled already."""
        empty = FifoSegment(queue, shards, seq, ())
        return self._quiet_update(
            empty,
            "SET " + ", ".join(f"u[{s}] = :done" for s in slots),
            " AND ".join(f"u[{s}] <> :done" for s in slots),
            {":done": SETTLED},
        )

    # ---- the floor, purge, delete --------------------------------------------------------

    def advance_floor(self, queue: str, to: int) -> bool:
        """Move the floor up to `to` (never down); False if it was there already."""
        return raise_floor(self._db, self._table, keys.fifo_partition(queue, 0), to)

    def purge(self, queue: str, shards: int) -> int:
        """Settle every reference of the queue; returns how many were unsettled.

        The floor moves up to the tail segment, whose references are settled one by one:
        the dispatch function may still fill it, and what it appends after the purge must
        stay."""
        for _ in range(MAX_APPEND_ATTEMPTS):
            seq, tail, before = self._tail(queue, shards)
            last = tail or before
            if last is None:
                return 0
            start = self.cursor(queue, consistent=True).floor
            purged = 0
            while start < last.seq:
                stop = min(start + MAX_BATCH_GET, last.seq)
                found = self.segments(queue, shards, range(start, stop), consistent=True)
                purged += sum(1 for s in found.values() for e in s.entries if not e.settled)
                start = stop
            open_slots = [e.slot for e in last.entries if not e.settled]
            if open_slots and self.settle_any(queue, shards, last.seq, open_slots) is None:
                continue  # one was settled meanwhile: look again
            self.advance_floor(queue, last.seq)
            return purged + len(open_slots)
        raise Throttled(f"could not purge {queue!r}: too much contention")

    def drop(self, queue: str, shard: int) -> None:
        """Delete one shard's segments (and, shard 0, the cursor): the queue is being deleted."""
        from mqless.storage.index import drop_partition

        drop_partition(self._db, self._table, keys.fifo_partition(queue, shard))
        self._forget(queue)
        with self._lock:
            self._hints.pop(queue, None)

    # ---- plumbing ---------------------------------------------------------------------------

    def _key(self, queue: str, shards: int, seq: int) -> dict[str, Any]:
        return to_wire(
            {"pk": keys.fifo_partition(queue, seq % shards), "sk": keys.segment_key(seq)}
        )

    def _remember(self, queue: str, seq: int) -> None:
        with self._lock:
            self._tails[queue] = (seq, time.monotonic())

    def _remembered(self, queue: str) -> int | None:
        with self._lock:
            found = self._tails.get(queue)
        if found is None or time.monotonic() - found[1] > TAIL_MEMORY_SECONDS:
            return None
        return found[0]

    def _forget(self, queue: str) -> None:
        with self._lock:
            self._tails.pop(queue, None)

    def _quiet_update(
        self, segment: FifoSegment, update: str, condition: str, values: dict[str, Any]
    ) -> FifoSegment | None:
        try:
            return self._update(
                segment.queue, segment.shards, segment.seq, update, condition, values
            )
        except _Refused:
            return None

    def _update(
        self,
        queue: str,
        shards: int,
        seq: int,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> FifoSegment:
        try:
            with translated_errors():
                response = self._db.update_item(
                    TableName=self._table,
                    Key=self._key(queue, shards, seq),
                    UpdateExpression=update,
                    ConditionExpression=f"attribute_exists(pk) AND ({condition})",
                    ExpressionAttributeValues=to_wire(values),
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise _Refused from exc
            raise
        return _segment(queue, shards, from_wire(response.get("Attributes", {})))


class _Contended(Exception):
    """An append lost a race with another appender."""


class _Refused(Exception):
    """A conditional write found the segment changed."""


# ---- references as stored ---------------------------------------------------------------------


def _own_shard(queue: str, log: str) -> int | None:
    """The shard of `log` if it is this queue's own log (most references): stored as `q<n>`
    instead of a name in `l`, which would cost a FIFO segment the name of every log shard."""
    prefix = keys.queue_log(queue, 0)[:-1]
    rest = log[len(prefix) :] if log.startswith(prefix) else ""
    return int(rest) if rest.isascii() and rest.isdigit() else None


def _ref_text(queue: str, ref: Ref, logs: list[str]) -> str:
    shard = _own_shard(queue, ref.log)
    where = f"q{shard}" if shard is not None else str(logs.index(ref.log))
    return f"{where}.{ref.item}.{ref.slot}.{ref.mac}"


def _parse_ref(queue: str, text: str, logs: Sequence[str]) -> Ref:
    where, item_id, slot, mac = (text.split(".") + [""])[:4]
    log = keys.queue_log(queue, int(where[1:])) if where.startswith("q") else logs[int(where)]
    return Ref(log, item_id, int(slot), mac)


def _hint_due(known: tuple[int, int], seq: int, now: int) -> bool:
    """Whether the cursor's hint (as known) should move to segment `seq`, just made."""
    hint, made_at = known
    if made_at == 0:
        return True  # no hint yet
    return hint < seq and (made_at < now - HINT_MAX_AGE_SECONDS or hint <= seq - HINT_MAX_LAG)


def _starts_afresh(tail: FifoSegment, refs: Sequence[GroupedRef]) -> bool:
    """Whether to close a (non-empty) tail rather than fill it: the batch does not fit its
    room but fits a new segment."""
    if not tail.entries:
        return False
    fresh = FifoSegment(tail.queue, tail.shards, tail.seq + 1, ())
    return _fitting(tail, refs) < len(refs) and _fitting(fresh, refs) == len(refs)


def _fitting(segment: FifoSegment, refs: Sequence[GroupedRef]) -> int:
    """How many of `refs` fit in the segment (by count, and by bytes under 1 KB)."""
    size = _segment_bytes(segment)
    known = set(segment.logs)
    count = 0
    for grouped in refs:
        if len(segment.entries) + count >= MAX_REFS:
            break
        new = grouped.new
        extra = _entry_bytes(new.ref, new.reason)
        if _own_shard(segment.queue, new.ref.log) is None and new.ref.log not in known:
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


def _segment(queue: str, shards: int, item: Mapping[str, Any]) -> FifoSegment:
    logs = [str(v) for v in item.get("l", [])]
    refs = [str(v) for v in item.get("r", [])]
    until = [int(v) for v in item.get("u", [])]
    tokens = [int(v) for v in item.get("t", [])]
    counts = [int(v) for v in item.get("n", [])]
    expiry = [int(v) for v in item.get("e", [])]
    tags = [int(v) for v in item.get("g", [])]
    reasons = [str(v) for v in item.get("w", [])]
    entries = tuple(
        FifoEntry(
            slot=slot,
            ref=_parse_ref(queue, text, logs),
            tag=tags[slot] if slot < len(tags) else 0,
            until=until[slot],
            token=tokens[slot],
            count=counts[slot],
            reason=reasons[slot] if slot < len(reasons) else "",
            expires_at=expiry[slot] if slot < len(expiry) else 0,
        )
        for slot, text in enumerate(refs)
    )
    return FifoSegment(
        queue=queue,
        shards=shards,
        seq=keys.segment_seq(str(item["sk"])),
        entries=entries,
        logs=tuple(logs),
        closed=bool(item.get("z")),
    )


__all__ = [
    "AppendReport",
    "Cursor",
    "FifoEntry",
    "FifoIndex",
    "FifoSegment",
    "GroupedRef",
    "group_tag",
]
