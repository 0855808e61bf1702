"""A queue's index: segments of references to bodies, with each reference's delivery state.

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

Every write here is one UpdateItem or PutItem of one segment of under 1 KB: 1 WRU, shared
by every reference it touches (a receive that acknowledges leases of the segment it leases
from settles them in its lease's write: `claim`). Leases and settlements are conditional
per reference, so two consumers never hold the same reference, and writes to other
references of the same segment never make them fail. Only the dispatch function appends
(in stream order); an append is conditional on the segment's length, so concurrent
appenders never overwrite each other, and a retried stream batch does not append a
reference twice.

The references of one log item (a batch sent together) are never split over two segments:
an item that does not fit whole in the last segment's room starts the next one, and the
last is *closed* (`z`) in the same write (or one of its own). A closed segment takes no more
(appends are also conditional on `z` being absent), so a segment has a successor only once
it is full or closed, and a read that shows it so shows every reference it will hold.

The cursor holds `f`, the floor: every segment below it is settled. It is moved forward
lazily, several segments at a time (`advance_floor`). It also holds the shard's ticket
dispenser, used only by receivers that compete (`racing.py`): `d`, the next *position* to
hand out (a position is `seq * 10 + slot`), and `k`, when a ticket was last taken (ms). A
ticket is one unconditional UpdateItem (ALL_NEW): it cannot fail, and two receivers never
get the same positions. A ticket may carry `g`, a floor its receiver read (see `_cursor`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from botocore.exceptions import ClientError

from mqless.domain.errors import Throttled
from mqless.storage import keys
from mqless.storage.dynamo import (
    batch_write,
    from_wire,
    is_condition_failure,
    put_if_absent,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SETTLED: Final = -1
MAX_REFS: Final = 10  # a receive's most, and a send batch's: batches of 10 fill segments whole
MAX_SEGMENT_BYTES: Final = 1000  # stay under 1 KB: every update then bills 1 WRU
MAX_APPEND_ATTEMPTS: Final = 20
DEDUP_LOOKBACK: Final = 2  # segments read back for refs a retried batch appended already


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
class LaneMarks:
    """A priority queue's lane marks: per lane, when an appender last marked it in use
    (ms) and when a receiver last found it empty (ms; 0: never). A lane is skipped by
    receives while it is marked empty after its last use (`empty_after_use`)."""

    used: dict[int, int] = field(default_factory=dict)
    emptied: dict[int, int] = field(default_factory=dict)

    def skippable(self, lane: int) -> bool:
        return self.emptied.get(lane, 0) > self.used.get(lane, 0)


LANE_MARK_EVERY_MS: Final = 5 * 60_000
"""An appender marks a lane in use before appending to it when its mark is older than 5
minutes (or the lane is marked empty): one write per lane per 5 minutes, whatever the
traffic, and a read of the marks per stream batch."""
LANE_QUIET_MS: Final = 2 * LANE_MARK_EVERY_MS
"""A receiver marks a lane empty only when no appender has marked it for this long: every
append since was then made over 5 minutes before the receiver's read, which shows it."""


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


@dataclass
class AppendReport:
    appended: int = 0
    duplicates: int = 0
    segments: list[int] = field(default_factory=list)
    leased: list[tuple[NewRef, int, int]] = field(default_factory=list)
    """The references appended leased (`NewRef.lease`), with their segment and slot."""


def _until(ref: NewRef) -> int:
    return ref.visible_at if ref.lease is None else ref.lease[0]


def _token(ref: NewRef) -> int:
    return 0 if ref.lease is None else ref.lease[1]


def _count(ref: NewRef) -> int:
    return ref.count if ref.lease is None else ref.count + 1


def _note_leased(report: AppendReport, appended: Sequence[NewRef], seq: int, first: int) -> None:
    report.leased += [(r, seq, first + i) for i, r in enumerate(appended) if r.lease is not None]


def new_token() -> int:
    """A lease token: random, never 0 (0 means 'never leased')."""
    return int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1


def claim_update(
    slots: Sequence[int],
    settle: Sequence[int],
    now_ms: int,
    until_ms: int,
    token: int,
    acks: Sequence[Hold] = (),
) -> tuple[str, str, dict[str, Any]]:
    """The update, condition and values that lease `slots` of a segment (standard or FIFO)
    under `token` until `until_ms` and settle `settle`, each only while free at `now_ms`,
    and settle `acks` (leases acknowledged in the same request), each only while its lease
    is the one named and not settled. The slots of the three must not overlap."""
    sets: list[str] = []
    conditions: list[str] = []
    values: dict[str, Any] = {":zero": 0, ":now": now_ms}
    if slots:
        values.update({":until": until_ms, ":tok": token, ":one": 1})
    for slot in slots:
        sets.append(f"u[{slot}] = :until, t[{slot}] = :tok, n[{slot}] = n[{slot}] + :one")
        conditions.append(f"u[{slot}] BETWEEN :zero AND :now")
    if settle or acks:
        values[":done"] = SETTLED
    for slot in settle:
        sets.append(f"u[{slot}] = :done")
        conditions.append(f"u[{slot}] BETWEEN :zero AND :now")
    for number, hold in enumerate(acks):
        sets.append(f"u[{hold.slot}] = :done")
        conditions.append(f"t[{hold.slot}] = :a{number} AND u[{hold.slot}] <> :done")
        values[f":a{number}"] = hold.token
    return "SET " + ", ".join(sets), " AND ".join(conditions), values


def holds_update(
    holds: Sequence[Hold], until: int, *, release: bool = False, uncount: bool = False
) -> tuple[str, str, dict[str, Any]]:
    """The update, condition and values that set leased refs of a segment (standard or
    FIFO) to `until` (SETTLED, a new lease end), each only while its lease is the one named
    and not settled. `release` also ends the lease (its receipts go stale); `uncount` also
    takes it back out of the receive count (it delivered to no one)."""
    sets: list[str] = []
    conditions: list[str] = []
    values: dict[str, Any] = {":v": until, ":done": SETTLED}
    if uncount:
        values[":one"] = 1
    if release or uncount:
        values[":none"] = 0
    for index, hold in enumerate(holds):
        sets.append(f"u[{hold.slot}] = :v")
        if release or uncount:
            sets.append(f"t[{hold.slot}] = :none")
        if uncount:
            sets.append(f"n[{hold.slot}] = n[{hold.slot}] - :one")
        conditions.append(f"t[{hold.slot}] = :t{index} AND u[{hold.slot}] <> :done")
        values[f":t{index}"] = hold.token
    return "SET " + ", ".join(sets), " AND ".join(conditions), values


class IndexStore:
    """DynamoDB adapter for queue indexes; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

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
        return [_segment(queue, shard, from_wire(i)) for i in page.get("Items", [])]

    def segment(self, queue: str, shard: int, seq: int) -> Segment | None:
        """One segment, strongly consistent."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(
                    {"pk": keys.index_partition(queue, shard), "sk": keys.segment_key(seq)}
                ),
                ConsistentRead=True,
            )
        return _segment(queue, shard, from_wire(found["Item"])) if "Item" in found else None

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
        return [_segment(queue, shard, from_wire(i)) for i in page.get("Items", [])]

    def floor(self, queue: str, shard: int, *, consistent: bool = False) -> int:
        """The first segment that may hold an unsettled reference."""
        return self.cursor(queue, shard, consistent=consistent).floor

    def cursor(self, queue: str, shard: int, *, consistent: bool = False) -> Cursor:
        """The shard's cursor (floor and ticket dispenser)."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.index_partition(queue, shard), "sk": keys.CURSOR}),
                ConsistentRead=consistent,
            )
        return _cursor(from_wire(found["Item"])) if "Item" in found else Cursor()

    def take_positions(
        self,
        queue: str,
        shard: int,
        count: int,
        *,
        first: int,
        now_ms: int,
        floor_hint: int | None = None,
    ) -> tuple[int, Cursor]:
        """Take `count` positions from the shard's dispenser (which starts at `first` the
        first time); returns the first position taken and the cursor after the write.
        `floor_hint`: a floor the receiver read settled below, carried by the same write.

        One UpdateItem with no condition: it never fails, and concurrent receivers get
        disjoint positions."""
        update = "SET d = if_not_exists(d, :first) + :n, k = :now"
        values: dict[str, Any] = {":first": first, ":n": count, ":now": now_ms}
        if floor_hint is not None:
            update += ", g = :g"
            values[":g"] = floor_hint
        with translated_errors():
            response = self._db.update_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.index_partition(queue, shard), "sk": keys.CURSOR}),
                UpdateExpression=update,
                ExpressionAttributeValues=to_wire(values),
                ReturnValues="ALL_NEW",
            )
        cursor = _cursor(from_wire(response.get("Attributes", {})))
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

    # ---- lane marks (queues with priorities) ---------------------------------------------

    def lane_marks(self, queue: str) -> LaneMarks:
        """A priority queue's lane marks, strongly consistent (1 RRU): a mark written
        before an append must be seen by the receive the append wakes."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.index_partition(queue, 0), "sk": keys.LANE_MARKS}),
                ConsistentRead=True,
            )
        item = from_wire(found.get("Item", {}))
        marks = LaneMarks()
        for name, value in item.items():
            if name[:1] in ("a", "e") and name[1:].isdigit():
                into = marks.used if name[0] == "a" else marks.emptied
                into[int(name[1:])] = int(value)
        return marks

    def mark_lane_used(self, queue: str, lane: int, now_ms: int) -> None:
        """Mark a lane in use (before appending to it): one unconditional write."""
        with translated_errors():
            self._db.update_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.index_partition(queue, 0), "sk": keys.LANE_MARKS}),
                UpdateExpression=f"SET a{lane} = :now",
                ExpressionAttributeValues=to_wire({":now": now_ms}),
            )

    def mark_lane_empty(self, queue: str, lane: int, used_seen: int) -> bool:
        """Mark a lane empty: only while its in-use mark is still `used_seen` (0: none),
        so that an appender's mark since wins (False). The empty mark is `used_seen + 1`,
        not a clock: any later in-use mark is higher, whatever the clocks."""
        if used_seen:
            condition, values = f"a{lane} = :seen", {":seen": used_seen, ":e": used_seen + 1}
        else:
            condition, values = f"attribute_not_exists(a{lane})", {":e": 1}
        try:
            with translated_errors():
                self._db.update_item(
                    TableName=self._table,
                    Key=to_wire({"pk": keys.index_partition(queue, 0), "sk": keys.LANE_MARKS}),
                    UpdateExpression=f"SET e{lane} = :e",
                    ConditionExpression=condition,
                    ExpressionAttributeValues=to_wire(values),
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    # ---- appending (the dispatch function, and moves) -----------------------------------

    def append(self, queue: str, shard: int, refs: Sequence[NewRef]) -> AppendReport:
        """Append references in order, filling the last segment first; a reference already
        waiting in one of the last segments (a retried stream batch) is not appended again."""
        report = AppendReport()
        pending = list(refs)
        for _ in range(MAX_APPEND_ATTEMPTS):
            recent = self._recent(queue, shard, len(pending))
            # a body may come back after it was settled here (a redrive, a move back); its
            # own log item's reference never does (`NewRef.original`)
            waiting, settled = tail_refs(recent)
            fresh = [r for r in pending if not r.appended_already(waiting, settled)]
            report.duplicates += len(pending) - len(fresh)
            pending = fresh
            if not pending:
                return report
            last = recent[0] if recent else None
            try:
                if last is not None and not last.full:
                    taken = self._fill(last, pending)
                    if taken:
                        report.appended += taken
                        report.segments.append(last.seq)
                        _note_leased(report, pending[:taken], last.seq, len(last.entries))
                        pending = pending[taken:]
                seq = last.seq + 1 if last is not None else 0
                while pending:
                    taken = self._put_segment(queue, shard, seq, pending)
                    report.appended += taken
                    report.segments.append(seq)
                    _note_leased(report, pending[:taken], seq, 0)
                    pending = pending[taken:]
                    seq += 1
                return report
            except _Contended:
                continue  # another appender got there first: read the tail again
        raise Throttled(f"could not append to the index of {queue!r}: too much contention")

    def _recent(self, queue: str, shard: int, refs: int) -> list[Segment]:
        """The last segments, newest first, enough to hold `refs` references and a segment
        more. A retried stream batch's references were appended after everything else of
        its shard, so all of those it appended already are among them: the last
        DEDUP_LOOKBACK segments alone miss them when the batch filled more than that."""
        count = DEDUP_LOOKBACK + -(-refs // MAX_REFS)
        while True:
            recent = self.tail(queue, shard, count)
            held = sum(len(s.entries) for s in recent)
            if len(recent) < count or held >= refs + MAX_REFS:
                return recent
            count *= 2  # segments closed by bytes hold fewer references

    def _fill(self, segment: Segment, refs: Sequence[NewRef]) -> int:
        """Append what fits to an existing segment; returns how many refs went in."""
        logs = _logs_of(segment)
        count = _fitting(segment, logs, refs)
        if count == 0:
            self._close(segment)
            return 0
        taken = refs[:count]
        new_logs = [r.ref.log for r in taken if r.ref.log not in logs]
        new_logs = list(dict.fromkeys(new_logs))
        all_logs = logs + new_logs
        values: dict[str, Any] = {
            ":r": [_ref_text(r.ref, all_logs) for r in taken],
            ":u": [_until(r) for r in taken],
            ":t": [_token(r) for r in taken],
            ":n": [_count(r) for r in taken],
            ":e": [r.expires_at for r in taken],
            ":x": max([segment.expires_at, *(r.expires_at for r in taken)]),
            ":len": len(segment.entries),
        }
        update = "SET r = list_append(r, :r), u = list_append(u, :u), t = list_append(t, :t), "
        update += "n = list_append(n, :n), e = list_append(e, :e), x = :x"
        if new_logs:
            update += ", l = list_append(l, :l)"
            values[":l"] = new_logs
        reasons = [r.reason for r in taken]
        if any(reasons) or any(e.reason for e in segment.entries):
            update += ", w = :w"
            values[":w"] = [e.reason for e in segment.entries] + reasons
        if count < len(refs) and len(segment.entries) + count < MAX_REFS:
            # the next log item does not fit whole: closed in the same write, so that the
            # successor the rest goes to is made only after its predecessor takes no more
            update += ", z = :yes"
            values[":yes"] = 1
        self._conditional_update(
            segment.queue, segment.shard, segment.seq, update, _OPEN_AT_LENGTH, values
        )
        return count

    def _close(self, segment: Segment) -> None:
        """Take no more references into the segment (the next log item does not fit whole in
        its room), so that a successor may be made: one write, then batches align again."""
        self._conditional_update(
            segment.queue,
            segment.shard,
            segment.seq,
            "SET z = :yes",
            _OPEN_AT_LENGTH,
            {":yes": 1, ":len": len(segment.entries)},
        )

    def _put_segment(self, queue: str, shard: int, seq: int, refs: Sequence[NewRef]) -> int:
        empty = Segment(queue, shard, seq, ())
        count = _fitting(empty, [], refs)
        taken = refs[:count]
        logs = list(dict.fromkeys(r.ref.log for r in taken))
        item: dict[str, Any] = {
            "pk": keys.index_partition(queue, shard),
            "sk": keys.segment_key(seq),
            "l": logs,
            "r": [_ref_text(r.ref, logs) for r in taken],
            "u": [_until(r) for r in taken],
            "t": [_token(r) for r in taken],
            "n": [_count(r) for r in taken],
            "e": [r.expires_at for r in taken],
            "x": max(r.expires_at for r in taken),
        }
        if any(r.reason for r in taken):
            item["w"] = [r.reason for r in taken]
        if count < len(refs) and count < MAX_REFS:
            item["z"] = 1  # made closed: the next log item does not fit whole in its room
        if not put_if_absent(self._db, self._table, item):
            raise _Contended
        return count

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
        update, condition, values = claim_update(slots, settle, now_ms, until_ms, token, acks)
        return self._conditional_update(
            segment.queue, segment.shard, segment.seq, update, condition, values, quiet=True
        )

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
    ) -> Segment | None:
        """Settle (`until` = SETTLED), release or extend leased refs, each only while its
        lease is still the one named; None if any of them is not (a stale receipt).
        `release` ends the lease (its receipts are stale from now on); `uncount` also takes
        it back out of the receive count (it delivered to no one)."""
        update, condition, values = holds_update(holds, until, release=release, uncount=uncount)
        return self._conditional_update(queue, shard, seq, update, condition, values, quiet=True)

    def settle_any(self, queue: str, shard: int, seq: int, slots: Sequence[int]) -> Segment | None:
        """Settle refs whatever their lease (an operator's delete or purge); None if one
        of them was settled already."""
        sets = [f"u[{s}] = :done" for s in slots]
        conditions = [f"u[{s}] <> :done" for s in slots]
        return self._conditional_update(
            queue,
            shard,
            seq,
            "SET " + ", ".join(sets),
            " AND ".join(conditions),
            {":done": SETTLED},
            quiet=True,
        )

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

    def _conditional_update(
        self,
        queue: str,
        shard: int,
        seq: int,
        update: str,
        condition: str,
        values: dict[str, Any],
        *,
        quiet: bool = False,
    ) -> Segment | None:
        try:
            with translated_errors():
                response = self._db.update_item(
                    TableName=self._table,
                    Key=to_wire(
                        {"pk": keys.index_partition(queue, shard), "sk": keys.segment_key(seq)}
                    ),
                    UpdateExpression=update,
                    ConditionExpression=f"attribute_exists(pk) AND ({condition})",
                    ExpressionAttributeValues=to_wire(values),
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if quiet:
                return None
            raise _Contended from exc
        return _segment(queue, shard, from_wire(response.get("Attributes", {})))


# a fill or a close applies only to the segment as the appender read it, and never to a
# closed one: a closed segment's successor may exist, and a reference appended behind it
# could already be below the floor, or behind the dispenser
_OPEN_AT_LENGTH: Final = "size(r) = :len AND attribute_not_exists(z)"


class _Contended(Exception):
    """An append lost a race with another appender."""


def drop_partition(client: Any, table: str, partition: str) -> None:
    """Delete every item of a partition, 25 per request."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": to_wire({":p": partition}),
        "ProjectionExpression": "pk, sk",
    }
    while True:
        with translated_errors():
            page = client.query(**kwargs)
        batch_write(client, table, [{"DeleteRequest": {"Key": k}} for k in page.get("Items", [])])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _logs_of(segment: Segment) -> list[str]:
    # stored refs name logs by their index in `l`: only ever add to it
    return list(segment.logs)


def _ref_text(ref: Ref, logs: list[str]) -> str:
    return f"{logs.index(ref.log)}.{ref.item}.{ref.slot}.{ref.mac}"


def parse_ref(text: str, logs: Sequence[str]) -> Ref:
    """A reference as stored (`<log index>.<item id>.<slot>.<mac>`)."""
    index, item_id, slot, mac = (text.split(".") + [""])[:4]
    return Ref(logs[int(index)], item_id, int(slot), mac)


def _fitting(segment: Segment, logs: list[str], refs: Sequence[NewRef]) -> int:
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
    for log in _logs_of(segment):
        size += len(log.encode()) + 1
    for entry in segment.entries:
        size += _entry_bytes(entry.until, entry.count, entry.reason)
    return size


def _entry_bytes(until: int, count: int, reason: str) -> int:
    # ref text (~3 + 26 + 3 + 12 for its MAC) + list overheads, u (up to 8), t (up to 6),
    # n (up to 3), e (7)
    return 45 + 1 + 9 + 7 + 4 + 7 + (len(reason.encode()) + 1 if reason else 0)


def _cursor(item: dict[str, Any]) -> Cursor:
    return Cursor(
        # `g`: a floor racing receivers write with their tickets, unconditionally; it may go
        # back (a hint from an older read), never past an unsettled segment (every hint was
        # read settled and full, which is for good), so the floor is the higher of the two
        floor=max(int(item.get("f", 0)), int(item.get("g", 0))),
        dispensed=int(item["d"]) if "d" in item else None,
        ticket_at=int(item.get("k", 0)),
    )


def _segment(queue: str, shard: int, item: dict[str, Any]) -> Segment:
    logs = [str(v) for v in item.get("l", [])]
    refs = [str(v) for v in item.get("r", [])]
    until = [int(v) for v in item.get("u", [])]
    tokens = [int(v) for v in item.get("t", [])]
    counts = [int(v) for v in item.get("n", [])]
    expiry = [int(v) for v in item.get("e", [])]
    reasons = [str(v) for v in item.get("w", [])] or [""] * len(refs)
    entries = []
    for slot, text in enumerate(refs):
        entries.append(
            Entry(
                slot=slot,
                ref=parse_ref(text, logs),
                until=until[slot],
                token=tokens[slot],
                count=counts[slot],
                reason=reasons[slot] if slot < len(reasons) else "",
                expires_at=expiry[slot] if slot < len(expiry) else 0,
            )
        )
    return Segment(
        queue=queue,
        shard=shard,
        seq=keys.segment_seq(str(item["sk"])),
        entries=tuple(entries),
        expires_at=int(item.get("x", 0)),
        logs=tuple(logs),
        closed="z" in item,
    )


__all__ = [
    "SETTLED",
    "AppendReport",
    "Cursor",
    "Entry",
    "Hold",
    "IndexStore",
    "LaneMarks",
    "NewRef",
    "Ref",
    "Segment",
    "new_token",
    "position",
    "replace",
]


def raise_floor(db: DynamoDBClient, table: str, pk: str, to: int) -> bool:
    """Move the floor in the cursor of partition `pk` up to `to`, never down (one
    conditional update); False if it was there already. Standard shards and FIFO queues
    keep their floors alike."""
    try:
        with translated_errors():
            db.update_item(
                TableName=table,
                Key=to_wire({"pk": pk, "sk": keys.CURSOR}),
                UpdateExpression="SET f = :to",
                ConditionExpression="attribute_not_exists(f) OR f < :to",
                ExpressionAttributeValues=to_wire({":to": to}),
            )
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True
