"""Appending references to a FIFO queue's index: what the dispatch function does with a
stream batch's new log items (docs/storage-engine.md, "Finding the tail").

References are only appended, at the tail, and a new segment is made only after the one
before it is full (read strongly consistent): a full segment shows every reference it will
ever hold, so a reader uses segments up to the first missing or not full one. The appender
finds the tail from the tail it last used (for 10 minutes) or the cursor's hint, walking
forward with strongly consistent reads. A segment lives (TTL) 21 days from when it was
made, 7 past the longest retention, and the hint moves to a new segment whenever it is an
hour old or 64 segments behind: a segment missing between the hint and the tail was made
over 21 days ago with everything around it, all expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from mqless.domain.clock import Clock
from mqless.domain.errors import Throttled
from mqless.storage import keys
from mqless.storage.dynamo import conditional_write, put_if_absent, to_wire
from mqless.storage.fifo_segments import (
    MAX_REFS,
    SEGMENT_LIFETIME_SECONDS,
    AppendReport,
    Cursor,
    FifoSegment,
    GroupedRef,
    closes_early,
    entry_values,
    fitting,
    own_shard,
    segment_key,
    starts_afresh,
)
from mqless.storage.segment_writes import OPEN_AT_LENGTH, SegmentChanged, SegmentUpdate
from mqless.storage.segments import tail_refs

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HINT_MAX_AGE_SECONDS: Final = 60 * 60
HINT_MAX_LAG: Final = 64  # segments the cursor's hint may fall behind the tail
TAIL_MEMORY_SECONDS: Final = 10 * 60  # how long an appender trusts the tail it last used
MAX_APPEND_ATTEMPTS: Final = 20


class FifoReads(Protocol):
    """What an appender reads and writes a FIFO queue's segments with (`FifoIndex`)."""

    def cursor(self, queue: str, *, consistent: bool = False) -> Cursor: ...

    def segments(
        self, queue: str, shards: int, seqs: Iterable[int], *, consistent: bool = False
    ) -> dict[int, FifoSegment]: ...

    def write_segment(self, queue: str, shards: int, seq: int, write: SegmentUpdate) -> None: ...


class FifoAppender:
    """Appends references to FIFO queues' tails; remembers, per queue, the tail it last used
    and the cursor's hint as it last read or wrote it."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Clock, index: FifoReads
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock
        self._index = index
        self._lock = threading.Lock()
        # how long ago a tail was used is a duration in this process: monotonic, not the
        # (possibly skewed, possibly stepped) broker clock
        # queue: (tail seq, how many refs it and the one before it held after our write,
        # whether that write closed it, when we wrote it)
        self._tails: dict[str, tuple[int, int, int, bool, float]] = {}
        # queue: the cursor's hint and when its segment was made, as last read or written:
        # moving the hint is a conditional write, billed even when its condition fails
        self._hints: dict[str, tuple[int, int]] = {}

    def saw_cursor(self, queue: str, cursor: Cursor) -> None:
        """Remember the cursor's hint as just read."""
        with self._lock:
            self._hints[queue] = (cursor.hint, cursor.hint_made_at)

    def forget(self, queue: str) -> None:
        """Forget the queue's tail and hint (it is being deleted)."""
        self._forget(queue)
        with self._lock:
            self._hints.pop(queue, None)

    def append(self, queue: str, shards: int, refs: Sequence[GroupedRef]) -> AppendReport:
        """Append references in order at the tail, filling the last segment first; one
        still waiting in the last segments (a retried stream batch) is not appended again."""
        report = AppendReport()
        pending = list(refs)
        for _ in range(MAX_APPEND_ATTEMPTS):
            seen = _Seen(self._index, queue, shards)
            seq, tail, before = self.tail(
                queue, shards, behind=self._behind(queue, len(pending)), seen=seen
            )
            recent = [s for s in (before, tail) if s is not None]
            recent += self._earlier(seen, seq - 2, len(pending), recent)
            waiting, settled = tail_refs(recent)
            fresh = [r for r in pending if not r.new.appended_already(waiting, settled)]
            report.duplicates += len(pending) - len(fresh)
            pending = fresh
            if not pending:
                return report
            try:
                self._write(queue, shards, seq, tail, before, pending, report)
                return report
            except SegmentChanged:
                self._forget(queue)  # another appender got there first: find the tail again
        raise Throttled(f"could not append to FIFO queue {queue!r}: too much contention")

    def _write(
        self,
        queue: str,
        shards: int,
        seq: int,
        tail: FifoSegment | None,
        before: FifoSegment | None,
        pending: list[GroupedRef],
        report: AppendReport,
    ) -> None:
        """Append `pending` at the tail found (`seq`: where the next reference goes)."""
        prior = len(before.entries) if before is not None else 0
        batch = len(pending)
        if tail is not None and starts_afresh(tail, pending):
            # a batch that does not fit the tail's room but fits a segment of its own
            # closes the tail (one write, as filling it would be) and starts one: the
            # segments stay aligned with the stream batches, so the next batch is again
            # one write
            self._close(tail)
            prior = len(tail.entries)
        elif tail is not None:
            taken, closed = self._fill(tail, pending, batch)
            prior = len(tail.entries) + taken
            if taken:
                report.appended += taken
                report.segments.append(tail.seq)
                pending = pending[taken:]
                self._remember(
                    queue, tail.seq, prior, len(before.entries) if before else 0, closed=closed
                )
        if tail is not None:
            seq = tail.seq + 1
        while pending:
            taken, closed = self._put_segment(queue, shards, seq, pending, batch)
            report.appended += taken
            report.segments.append(seq)
            pending = pending[taken:]
            self._remember(queue, seq, taken, prior, closed=closed)
            self._move_hint(queue, seq)
            prior = taken
            seq += 1

    def _earlier(
        self, seen: _Seen, newest: int, refs: int, recent: Sequence[FifoSegment]
    ) -> list[FifoSegment]:
        """Segments from `newest` down, newest first, until they and `recent` hold `refs`
        references and a segment more: a retried stream batch's references, appended after
        everything else of the queue, are all among them (the last two segments alone miss
        them when the batch filled more than that)."""
        held = sum(len(s.entries) for s in recent)
        earlier: list[FifoSegment] = []
        while held < refs + MAX_REFS and newest >= 0:
            if newest not in seen.asked:
                seen.read(range(max(0, newest - -(-refs // MAX_REFS)), newest + 1))
            segment = seen.found.get(newest)
            if segment is None:
                break  # a hole: older than any stream batch still retried
            earlier.append(segment)
            held += len(segment.entries)
            newest -= 1
        return earlier

    def tail(
        self, queue: str, shards: int, *, behind: int = 0, seen: _Seen | None = None
    ) -> tuple[int, FifoSegment | None, FifoSegment | None]:
        """(where the next reference goes, that segment if it exists (and so is not full),
        the segment before it), strongly consistent: from the tail this process last used,
        else from the cursor's hint, forward to the first segment missing or not full. The
        first read also takes the `behind` segments before those two (into `seen`)."""
        seen = seen if seen is not None else _Seen(self._index, queue, shards)
        remembered = self._remembered(queue)
        starts = [remembered] if remembered is not None else []
        for start in [*starts, None]:
            asked_cursor = start is None
            if start is None:
                start = self._index.cursor(queue, consistent=True).hint
            first = max(start - 1 - behind, 0)
            found = seen.read(range(first, start + 2))
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
                    found |= seen.read(range(seq, seq + 4))
                    read_to = seq + 4
                segment = found.get(seq)
                if segment is None:
                    return seq, None, previous
                if not segment.full:
                    return seq, segment, previous
                previous = segment
                seq += 1
        raise AssertionError("unreachable: the cursor is always asked last")

    def _fill(
        self, segment: FifoSegment, refs: Sequence[GroupedRef], batch: int
    ) -> tuple[int, bool]:
        """Append what fits to the tail segment; how many went in, and whether the write
        closed it: only a full or closed segment may have a successor (see the module doc),
        so one that cannot take the next reference (by bytes) is closed in the same write,
        as is one left with less room than the stream batch (`closes_early`)."""
        count = fitting(segment, refs)
        if count == 0:
            self._close(segment)
            return 0, True
        held = len(segment.entries) + count
        closing = (count < len(refs) and held < MAX_REFS) or closes_early(held, batch)
        taken = refs[:count]
        logs = list(segment.logs)
        new_logs = list(
            dict.fromkeys(
                r.new.ref.log
                for r in taken
                if own_shard(segment.queue, r.new.ref.log) is None and r.new.ref.log not in logs
            )
        )
        all_logs = logs + new_logs
        entries = entry_values(segment.queue, taken, all_logs)
        values: dict[str, Any] = {f":{k}": v for k, v in entries.items()}
        values[":len"] = len(segment.entries)
        update = "SET " + ", ".join(f"{k} = list_append({k}, :{k})" for k in entries)
        if new_logs:
            update += ", l = list_append(l, :l)"
            values[":l"] = new_logs
        if closing:
            update += ", z = :yes"
            values[":yes"] = 1
        self._index.write_segment(
            segment.queue, segment.shards, segment.seq, (update, OPEN_AT_LENGTH, values)
        )
        return count, closing

    def _close(self, segment: FifoSegment) -> None:
        """Take no more references into the segment, so that a successor may be made."""
        self._index.write_segment(
            segment.queue,
            segment.shards,
            segment.seq,
            ("SET z = :yes", OPEN_AT_LENGTH, {":yes": 1, ":len": len(segment.entries)}),
        )

    def _put_segment(
        self, queue: str, shards: int, seq: int, refs: Sequence[GroupedRef], batch: int
    ) -> tuple[int, bool]:
        """Make segment `seq` with what fits of `refs`; how many went in, and if closed."""
        count = fitting(FifoSegment(queue, shards, seq, ()), refs)
        taken = refs[:count]
        # closed when the rest does not fit by bytes, or the next batch likely will not
        closed = (count < len(refs) and count < MAX_REFS) or closes_early(count, batch)
        logs = list(
            dict.fromkeys(r.new.ref.log for r in taken if own_shard(queue, r.new.ref.log) is None)
        )
        item: dict[str, Any] = {
            **segment_key(queue, shards, seq),
            "l": logs,
            **entry_values(queue, taken, logs),
            # counted from when it is made, never from its references (see the module doc)
            "x": self._clock.now_ms() // 1000 + SEGMENT_LIFETIME_SECONDS,
        }
        if closed:
            item["z"] = 1
        if not put_if_absent(self._db, self._table, item):
            raise SegmentChanged
        return count, closed

    def _move_hint(self, queue: str, seq: int) -> None:
        """Point the cursor's hint at a segment just made, if the hint is an hour old or far
        behind (see the module doc: this is what keeps appenders clear of TTL holes)."""
        now = self._clock.now_ms() // 1000
        with self._lock:
            known = self._hints.get(queue)
        if known is None:
            self._index.cursor(queue, consistent=True)  # a read is cheaper than a refused write
            with self._lock:
                known = self._hints.get(queue)
        if known is not None and not _hint_due(known, seq, now):
            return
        moved = conditional_write(
            self._db.update_item,
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
        if moved is None:
            self._index.cursor(queue, consistent=True)  # another appender moved it: learn where
            return
        with self._lock:
            self._hints[queue] = (seq, now)

    def _behind(self, queue: str, refs: int) -> int:
        """How many segments before the last two the tail's read should also take: those
        `_earlier` will want (then it reads nothing more: one BatchGetItem where it was
        two), judged from what this process last wrote there. None when no tail is known
        (the read starts at the cursor's hint, maybe far behind)."""
        with self._lock:
            found = self._tails.get(queue)
        if found is None or time.monotonic() - found[-1] > TAIL_MEMORY_SECONDS:
            return 0
        _, held, prior, closed, _ = found
        if held >= MAX_REFS or closed:  # full: the next is the tail, empty
            prior, held = held, 0
        wanting = refs + MAX_REFS - prior - held  # references `_earlier` must find
        return -(-wanting // MAX_REFS) if wanting > 0 else 0

    def _remember(self, queue: str, seq: int, held: int, prior: int, *, closed: bool) -> None:
        """The tail this process last wrote, how many references it and the one before it
        held then, and whether it closed it."""
        with self._lock:
            self._tails[queue] = (seq, held, prior, closed, time.monotonic())

    def _remembered(self, queue: str) -> int | None:
        with self._lock:
            found = self._tails.get(queue)
        if found is None or time.monotonic() - found[-1] > TAIL_MEMORY_SECONDS:
            return None
        return found[0]

    def _forget(self, queue: str) -> None:
        with self._lock:
            self._tails.pop(queue, None)


def _hint_due(known: tuple[int, int], seq: int, now: int) -> bool:
    """Whether the cursor's hint (as known) should move to segment `seq`, just made."""
    hint, made_at = known
    if made_at == 0:
        return True  # no hint yet
    return hint < seq and (made_at < now - HINT_MAX_AGE_SECONDS or hint <= seq - HINT_MAX_LAG)


class _Seen:
    """The segments one attempt of an append read (strongly consistent), and which numbers
    it asked for: the tail's read and `_earlier` share them."""

    def __init__(self, index: FifoReads, queue: str, shards: int) -> None:
        self._index = index
        self._queue = queue
        self._shards = shards
        self.found: dict[int, FifoSegment] = {}
        self.asked: set[int] = set()

    def read(self, seqs: Iterable[int]) -> dict[int, FifoSegment]:
        """These segments (those that exist), read once in this attempt."""
        wanted = list(seqs)
        new = [s for s in wanted if s not in self.asked]
        if new:
            self.found |= self._index.segments(self._queue, self._shards, new, consistent=True)
            self.asked.update(new)
        return {s: self.found[s] for s in wanted if s in self.found}
