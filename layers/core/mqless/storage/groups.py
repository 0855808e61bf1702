"""A FIFO queue's index: one sequence of segments for the whole queue, each reference
tagged with its group (docs/storage-engine.md, "FIFO queues").

Segment `seq` is `pk = F#<queue>#<seq mod shards>`, `sk = S#<seq>`: consecutive segments
rotate over the queue's shards, so the load spreads evenly whatever the groups, and a
stream batch's references (any groups) share one segment. The layout and its encoding are
`fifo_segments.py`; appending (the dispatch function) is `fifo_appends.py`; this module is
the adapter that reads segments, leases and settles references, purges and deletes.

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

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.clock import Clock, SystemClock
from mqless.domain.errors import Throttled
from mqless.storage import keys
from mqless.storage.dynamo import (
    batch_get,
    drop_partition,
    from_wire,
    to_wire,
    translated_errors,
)
from mqless.storage.fifo_appends import MAX_APPEND_ATTEMPTS, FifoAppender
from mqless.storage.fifo_segments import (
    AppendReport,
    Cursor,
    FifoSegment,
    GroupedRef,
    segment_from_item,
    segment_key,
)
from mqless.storage.index import FREEINGS
from mqless.storage.segment_writes import (
    SegmentChanged,
    SegmentUpdate,
    claim_update,
    holds_update,
    raise_floor,
    segment_written,
    settle_any_update,
    updated_segment_item,
)
from mqless.storage.segments import Hold

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_BATCH_GET: Final = 100


class FifoIndex:
    """DynamoDB adapter for FIFO queues' segments; takes its client as an argument."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Clock | None = None
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._appender = FifoAppender(dynamodb, table_name, clock or SystemClock(), self)

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
        self._appender.saw_cursor(queue, cursor)
        return cursor

    def segments(
        self, queue: str, shards: int, seqs: Iterable[int], *, consistent: bool = False
    ) -> dict[int, FifoSegment]:
        """The segments of these numbers that exist (one BatchGetItem per 100)."""
        wanted = [self._key(queue, shards, s) for s in dict.fromkeys(seqs)]
        items, _ = batch_get(self._db, self._table, wanted, consistent=consistent)
        found: dict[int, FifoSegment] = {}
        for raw in items:
            segment = segment_from_item(queue, shards, from_wire(raw))
            found[segment.seq] = segment
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
        first_count: int | None = None,
        limit: int | None = None,
    ) -> Iterator[FifoSegment]:
        """Segments from `start` on, in order, as far as a reader may use them: up to the
        first one missing or not full (included). One missing behind a segment that exists,
        or behind the tail `hint`, and still missing when read strongly consistent, was
        removed by its TTL (every reference in it long expired): it comes as an empty closed
        segment. Reads `first_count` segments (else `first_read`), then `first_read` times
        2, 4, ... each time, `limit` in all."""
        seq = start
        page = first_read
        count = first_count or first_read
        while limit is None or seq - start < limit:
            count = count if limit is None else min(count, start + limit - seq)
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
            count = page

    def segment(self, queue: str, shards: int, seq: int) -> FifoSegment | None:
        """One segment, strongly consistent."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table, Key=self._key(queue, shards, seq), ConsistentRead=True
            )
        return (
            segment_from_item(queue, shards, from_wire(found["Item"])) if "Item" in found else None
        )

    # ---- appending (the dispatch function: `fifo_appends.py`) ---------------------------

    def append(self, queue: str, shards: int, refs: Sequence[GroupedRef]) -> AppendReport:
        """Append references in order at the tail, filling the last segment first; one
        still waiting in the last segments (a retried stream batch) is not appended again."""
        try:
            return self._appender.append(queue, shards, refs)
        finally:
            FREEINGS.wrote(queue, 0)

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
        acks: Sequence[Hold] = (),
    ) -> FifoSegment | None:
        """Lease `slots` (each must still be free at `now_ms`) under `token` until `until_ms`,
        and settle `settle` (refs found expired and free) and `acks` (leases acknowledged,
        each only while current) in the same write; None if any of them was taken
        meanwhile, or an ack was stale (nothing written)."""
        if not slots and not settle and not acks:
            return segment
        write = claim_update(slots, settle, now_ms, until_ms, token, acks)
        try:
            return self._quiet_update(segment, write)
        finally:
            if settle or acks:
                FREEINGS.wrote(segment.queue, 0)  # the next messages of those groups

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
    ) -> bool:
        """Settle (`until` = SETTLED), release or extend leased refs, each only while its
        lease is the one named; False if any of them is not (a stale receipt: nothing
        written). `release` makes the lease's receipts stale; `uncount` also takes the lease
        back out of the receive count (it delivered to no one)."""
        write = holds_update(holds, until, release=release, uncount=uncount)
        try:
            return self._written(queue, shards, seq, write)
        finally:
            FREEINGS.wrote(queue, 0)  # settled (the group's next is free) or released

    def settle_any(self, queue: str, shards: int, seq: int, slots: Sequence[int]) -> bool:
        """Settle refs whatever their lease (an operator's delete or move, a purge); False
        if one of them was settled already (nothing written)."""
        try:
            return self._written(queue, shards, seq, settle_any_update(slots))
        finally:
            FREEINGS.wrote(queue, 0)  # the next messages of those groups

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
            seq, tail, before = self._appender.tail(queue, shards)
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
            if open_slots and not self.settle_any(queue, shards, last.seq, open_slots):
                continue  # one was settled meanwhile: look again
            self.advance_floor(queue, last.seq)
            return purged + len(open_slots)
        raise Throttled(f"could not purge {queue!r}: too much contention")

    def drop(self, queue: str, shard: int) -> None:
        """Delete one shard's segments (and, shard 0, the cursor): the queue is being deleted."""
        drop_partition(self._db, self._table, keys.fifo_partition(queue, shard))
        self._appender.forget(queue)

    # ---- plumbing ---------------------------------------------------------------------------

    def _key(self, queue: str, shards: int, seq: int) -> dict[str, Any]:
        return to_wire(segment_key(queue, shards, seq))

    def _quiet_update(self, segment: FifoSegment, write: SegmentUpdate) -> FifoSegment | None:
        """Make `write` to `segment`; the segment after it, or None if its condition failed
        (nothing was written)."""
        key = segment_key(segment.queue, segment.shards, segment.seq)
        try:
            item = updated_segment_item(self._db, self._table, key, write)
        except SegmentChanged:
            return None
        return segment_from_item(segment.queue, segment.shards, item)

    def _written(self, queue: str, shards: int, seq: int, write: SegmentUpdate) -> bool:
        """Make `write` to one segment, with no answer; whether it was made."""
        return segment_written(self._db, self._table, segment_key(queue, shards, seq), write)

    def write_segment(self, queue: str, shards: int, seq: int, write: SegmentUpdate) -> None:
        """Make `write` to one existing segment, with no answer; SegmentChanged if its
        condition failed (nothing was written)."""
        if not self._written(queue, shards, seq, write):
            raise SegmentChanged
