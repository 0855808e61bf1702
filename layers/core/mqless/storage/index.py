"""A standard queue's index: the DynamoDB adapter that reads a shard's segments and its
cursor, takes tickets, leases and settles references, appends, purges and deletes.

The layout, the types read from it and their encoding are `segments.py`; the conditional
writes that lease and settle are built in `segment_writes.py` (whole: `whole_writes.py`),
appends are `index_appends.py`, a priority queue's lane marks `lane_marks.py`. Callers
name the index's vocabulary (`Ref`, `Segment`, `Entry`, ...) through this module.

Every write here is one UpdateItem or PutItem of one segment of under 1 KB: 1 WRU, shared
by every reference it touches (a receive that acknowledges leases of the segment it leases
from settles them in its lease's write: `claim`).

The cursor's floor (every segment below it is settled) is moved forward lazily, several
segments at a time (`advance_floor`). Its ticket dispenser is used only by receivers that
compete (`domain/queues/racing.py`): a ticket is one UpdateItem (ALL_NEW), two receivers
never get the same positions, and it fails only where its receiver asked for positions
below the shard's end as it read it and the dispenser is there already.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mqless.domain.errors import Throttled
from mqless.storage import keys, lane_marks
from mqless.storage.dynamo import (
    batch_get,
    conditional_write,
    drop_partition,
    from_wire,
    to_wire,
    translated_errors,
)
from mqless.storage.index_appends import MAX_APPEND_ATTEMPTS, AppendReport, SegmentAppender
from mqless.storage.lane_marks import LaneMarks
from mqless.storage.segment_wire import segment_from_wire
from mqless.storage.segment_writes import (
    SegmentChanged,
    SegmentUpdate,
    claim_update,
    holds_update,
    raise_floor,
    segment_written,
    settle_any_update,
    update_segment,
)
from mqless.storage.segments import (
    SETTLED,
    Cursor,
    Hold,
    NewRef,
    Segment,
    cursor_from_item,
    segment_key,
)
from mqless.storage.whole_writes import whole_claim, whole_holds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Freeings:
    """When this process last wrote what may make a reference of a shard free (an append,
    a released or shortened lease; in a FIFO queue, shard 0 for the whole queue, also a
    settlement: it frees the group's next message), as a stamp that only grows. Every
    IndexStore and FifoIndex of the process shares it (the dispatch function's appends, the
    receivers' releases): a receiver that found a shard empty knows by it whether that can
    still hold. Writes of other processes are not in it: a receiver's memory of an empty
    shard is short for them (`domain/queues/shard_memory.py`, `fifo_leases.py`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamps = itertools.count(1)
        self._last: dict[tuple[str, int], int] = {}

    def stamp(self, queue: str, shard: int) -> int:
        with self._lock:
            return self._last.get((queue, shard), 0)

    def wrote(self, queue: str, shard: int) -> None:
        with self._lock:
            self._last[(queue, shard)] = next(self._stamps)


FREEINGS = Freeings()
RELEASES = Freeings()
"""The same, for writes that may free a reference already in a full segment: a lease that
ends or ends sooner (a release, a nack, a delay, a hand-back), not an append (appends fill
only the tail). What a push consumer's look passed as held stays held until one of these,
or until a lease or delay it saw ends (`domain/queues/shard_memory.py`)."""


class IndexStore:
    """DynamoDB adapter for queue indexes; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name
        self._appender = SegmentAppender(dynamodb, table_name, self.tail)

    # ---- reading ----------------------------------------------------------------------

    def segments(
        self,
        queue: str,
        shard: int,
        start: int = 0,
        *,
        limit: int = 4,
        consistent: bool = False,
    ) -> list[Segment]:
        """Up to `limit` segments from `start` on, in order (eventually consistent by default:
        a lease is conditional, so a stale view costs a retry, never a double delivery)."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :p AND sk >= :s",
                ExpressionAttributeValues=to_wire(
                    {":p": keys.index_partition(queue, shard), ":s": keys.segment_key(start)}
                ),
                Limit=limit,
                ConsistentRead=consistent,
            )
        return [segment_from_wire(queue, shard, i) for i in page.get("Items", [])]

    def freeing_stamp(self, queue: str, shard: int) -> int:
        """A stamp of this process's last write that may have freed a reference of the shard
        (an append, a release): the same stamp later means no such write was made here since
        (other processes' writes are not counted)."""
        return FREEINGS.stamp(queue, shard)

    def release_stamp(self, queue: str, shard: int) -> int:
        """A stamp of this process's last write that may have freed a reference of the shard
        in a segment before its tail (a lease that ends or ends sooner): `RELEASES`."""
        return RELEASES.stamp(queue, shard)

    def segment(self, queue: str, shard: int, seq: int) -> Segment | None:
        """One segment, strongly consistent."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(segment_key(queue, shard, seq)),
                ConsistentRead=True,
            )
        return segment_from_wire(queue, shard, found["Item"]) if "Item" in found else None

    def tail(self, queue: str, shard: int, count: int = 1) -> list[Segment]:
        """The last `count` segments, newest first (strongly consistent)."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                ExpressionAttributeValues=to_wire(
                    {":p": keys.index_partition(queue, shard), ":s": keys.SEGMENT}
                ),
                ScanIndexForward=False,
                Limit=count,
                ConsistentRead=True,
            )
        return [segment_from_wire(queue, shard, i) for i in page.get("Items", [])]

    def floor(self, queue: str, shard: int, *, consistent: bool = False) -> int:
        """The first segment that may hold an unsettled reference."""
        return self.cursor(queue, shard, consistent=consistent).floor

    def cursors(self, queue: str, shards: Sequence[int]) -> dict[int, Cursor]:
        """The cursors of these shards, read together (one BatchGetItem per 100 shards,
        eventually consistent, billed as the same reads one by one). A shard whose key
        DynamoDB still left unprocessed after a few tries is not in the answer."""
        shard_of = {keys.index_partition(queue, shard): shard for shard in shards}
        wanted = [to_wire({"pk": pk, "sk": keys.CURSOR}) for pk in shard_of]
        items, left = batch_get(self._db, self._table, wanted, tries=4)
        found: dict[int, Cursor] = {}
        for raw in items:
            item = from_wire(raw)
            found[shard_of[str(item["pk"])]] = cursor_from_item(item)
        unread = {str(from_wire(key)["pk"]) for key in left}
        for pk, shard in shard_of.items():
            if pk not in unread:
                found.setdefault(shard, Cursor())  # no item yet: a new shard's
        return found

    def cursor(self, queue: str, shard: int, *, consistent: bool = False) -> Cursor:
        """The shard's cursor (floor and ticket dispenser)."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.index_partition(queue, shard), "sk": keys.CURSOR}),
                ConsistentRead=consistent,
            )
        return cursor_from_item(from_wire(found["Item"])) if "Item" in found else Cursor()

    def take_positions(
        self,
        queue: str,
        shard: int,
        count: int,
        *,
        first: int,
        now_ms: int,
        floor_hint: int | None = None,
        below: int | None = None,
    ) -> tuple[int, Cursor] | None:
        """Take `count` positions from the shard's dispenser (which starts at `first` the
        first time); returns the first position taken and the cursor after the write.
        `floor_hint`: a floor the receiver read settled below, carried by the same write.
        `below`: only if the dispenser is below this position (the end of the shard as the
        receiver read it); None if it is not (nothing was taken: no one's positions move).

        One UpdateItem, with no condition but `below`: it never fails otherwise, and
        concurrent receivers get disjoint positions."""
        update = "SET d = if_not_exists(d, :first) + :n, k = :now"
        values: dict[str, Any] = {":first": first, ":n": count, ":now": now_ms}
        if floor_hint is not None:
            update += ", g = :g"
            values[":g"] = floor_hint
        condition: dict[str, str] = {}
        if below is not None:
            condition["ConditionExpression"] = "attribute_not_exists(d) OR d < :below"
            values[":below"] = below
        response = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire({"pk": keys.index_partition(queue, shard), "sk": keys.CURSOR}),
            UpdateExpression=update,
            ExpressionAttributeValues=to_wire(values),
            ReturnValues="ALL_NEW",
            **condition,  # type: ignore[arg-type]
        )
        if response is None:
            return None
        cursor = cursor_from_item(from_wire(response.get("Attributes", {})))
        return int(cursor.dispensed or 0) - count, cursor

    def move_dispenser(self, queue: str, shard: int, to: int) -> None:
        """Point the dispenser at `to` (back to the tail after it ran past it, or up to the
        floor after a purge); unconditional, as a ticket is."""
        with translated_errors():
            self._db.update_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.index_partition(queue, shard), "sk": keys.CURSOR}),
                UpdateExpression="SET d = :to",
                ExpressionAttributeValues=to_wire({":to": to}),
            )

    # ---- lane marks (queues with priorities: `lane_marks.py`) ----------------------------

    def lane_marks(self, queue: str) -> LaneMarks:
        """A priority queue's lane marks, strongly consistent."""
        return lane_marks.read_lane_marks(self._db, self._table, queue)

    def mark_lane_used(self, queue: str, lane: int, now_ms: int) -> None:
        """Mark a lane in use (before appending to it)."""
        lane_marks.mark_lane_used(self._db, self._table, queue, lane, now_ms)

    def mark_lane_empty(self, queue: str, lane: int, used_seen: int) -> bool:
        """Mark a lane empty while its in-use mark is still `used_seen`; False if not."""
        return lane_marks.mark_lane_empty(self._db, self._table, queue, lane, used_seen)

    # ---- appending (the dispatch function, and moves: `index_appends.py`) ----------------

    def append(self, queue: str, shard: int, refs: Sequence[NewRef]) -> AppendReport:
        """Append references in order, filling the last segment first; a reference already
        waiting in one of the last segments (a retried stream batch) is not appended again."""
        try:
            return self._appender.append(queue, shard, refs)
        finally:
            FREEINGS.wrote(queue, shard)

    # ---- leasing and settling ----------------------------------------------------------------

    def claim(
        self,
        segment: Segment,
        slots: Sequence[int],
        *,
        now_ms: int,
        until_ms: int,
        token: int,
        settle: Sequence[int] = (),
        acks: Sequence[Hold] = (),
    ) -> Segment | None:
        """Lease `slots` (each must still be free at `now_ms`) under `token` until `until_ms`,
        and settle `settle` (refs found expired) and `acks` (leases acknowledged in the same
        request: "ack and take the next") in the same write; None if any was taken, or any
        of `acks` is no longer its lease (nothing changed: which, the caller finds out)."""
        if not slots and not settle and not acks:
            return segment
        whole = whole_claim(segment, slots, settle, now_ms, until_ms, token, acks)
        if whole is not None:  # the lists at once, the same write (`whole_writes.py`)
            written = self._written(segment.queue, segment.shard, segment.seq, whole[0])
            return whole[1] if written else None
        write = claim_update(slots, settle, now_ms, until_ms, token, acks)
        return self._conditional_update(segment.queue, segment.shard, segment.seq, write)

    def set_until(
        self,
        queue: str,
        shard: int,
        seq: int,
        holds: Sequence[Hold],
        until: int,
        *,
        release: bool = False,
        uncount: bool = False,
    ) -> bool:
        """Settle (`until` = SETTLED), release or extend leased refs, each only while its
        lease is still the one named; False if any of them is not (a stale receipt).
        `release` ends the lease (its receipts are stale from now on); `uncount` also takes
        it back out of the receive count (it delivered to no one). The segment is not asked
        back (an ack's every write: nothing reads it)."""
        write = whole_holds(holds, until, release=release, uncount=uncount) or holds_update(
            holds, until, release=release, uncount=uncount
        )
        try:
            return self._written(queue, shard, seq, write)
        finally:
            if release or until != SETTLED:
                FREEINGS.wrote(queue, shard)  # a lease that ends, or ends sooner, frees
                RELEASES.wrote(queue, shard)

    def settle_any(self, queue: str, shard: int, seq: int, slots: Sequence[int]) -> Segment | None:
        """Settle refs whatever their lease (an operator's delete or purge); None if one
        of them was settled already."""
        return self._conditional_update(queue, shard, seq, settle_any_update(slots))

    def purge(self, queue: str, shard: int) -> int:
        """Settle every reference of a shard; returns how many were unsettled.

        The floor moves up to the last segment, and that segment's references are settled
        one by one: the dispatch function may still fill it, and what it appends after the
        purge must stay visible."""
        for _ in range(MAX_APPEND_ATTEMPTS):
            last = self.tail(queue, shard)
            if not last:
                return 0
            tail = last[0]
            purged = 0
            start = self.floor(queue, shard, consistent=True)
            while start < tail.seq:
                page = self.segments(queue, shard, start, limit=16, consistent=True)
                page = [p for p in page if p.seq < tail.seq]
                purged += sum(1 for p in page for e in p.entries if not e.settled)
                if not page:
                    break
                start = page[-1].seq + 1
            open_slots = [e.slot for e in tail.entries if not e.settled]
            if open_slots and self.settle_any(queue, shard, tail.seq, open_slots) is None:
                continue  # one was settled meanwhile: look again
            self.advance_floor(queue, shard, tail.seq)
            return purged + len(open_slots)
        raise Throttled(f"could not purge {queue!r}: too much contention")

    def drop(self, queue: str, shard: int) -> None:
        """Delete a shard's segments and cursor (the queue is being deleted)."""
        drop_partition(self._db, self._table, keys.index_partition(queue, shard))

    # ---- the cursor ---------------------------------------------------------------------------

    def advance_floor(self, queue: str, shard: int, to: int) -> bool:
        """Move the floor up to `to` (never down); False if it was there already."""
        return raise_floor(self._db, self._table, keys.index_partition(queue, shard), to)

    # ---- plumbing -------------------------------------------------------------------------

    def _written(self, queue: str, shard: int, seq: int, write: SegmentUpdate) -> bool:
        """Make a conditional update of a segment that needs no answer; whether it was made."""
        return segment_written(self._db, self._table, segment_key(queue, shard, seq), write)

    def _conditional_update(
        self, queue: str, shard: int, seq: int, write: SegmentUpdate
    ) -> Segment | None:
        try:
            return update_segment(self._db, self._table, queue, shard, seq, write)
        except SegmentChanged:
            return None
