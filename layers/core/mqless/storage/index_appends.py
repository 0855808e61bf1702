"""Appending references to a standard queue's index: what the dispatch function does with
a stream batch's new log items, and what dead letters, redrives, moves and copies do.

Only the dispatch function appends (in stream order); an append is conditional on the
segment's length, so concurrent appenders never overwrite each other, and a retried stream
batch does not append a reference twice.

The references of one log item (a batch sent together) are never split over two segments:
an item that does not fit whole in the last segment's room starts the next one, and the
last is *closed* (`z`) in the same write (or one of its own). A closed segment takes no more
(appends are also conditional on `z` being absent), so a segment has a successor only once
it is full or closed, and a read that shows it so shows every reference it will hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.errors import Throttled
from mqless.storage import keys
from mqless.storage.dynamo import put_if_absent
from mqless.storage.segment_writes import OPEN_AT_LENGTH, SegmentChanged, update_segment
from mqless.storage.segments import (
    MAX_REFS,
    NewRef,
    Segment,
    fitting,
    logs_of,
    ref_text,
    tail_refs,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_APPEND_ATTEMPTS: Final = 20
DEDUP_LOOKBACK: Final = 2  # segments read back for refs a retried batch appended already


class _Contended(Exception):
    """An append lost a race with another appender."""


ReadTail = Callable[[str, int, int], list[Segment]]
"""(queue, shard, count): the shard's last `count` segments, newest first, strongly
consistent (`IndexStore.tail`)."""


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


class SegmentAppender:
    """Appends references to a standard queue's shards; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, read_tail: ReadTail) -> None:
        self._db = dynamodb
        self._table = table_name
        self._tail = read_tail

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
            recent = self._tail(queue, shard, count)
            held = sum(len(s.entries) for s in recent)
            if len(recent) < count or held >= refs + MAX_REFS:
                return recent
            count *= 2  # segments closed by bytes hold fewer references

    def _fill(self, segment: Segment, refs: Sequence[NewRef]) -> int:
        """Append what fits to an existing segment; returns how many refs went in."""
        logs = logs_of(segment)
        count = fitting(segment, logs, refs)
        if count == 0:
            self._close(segment)
            return 0
        taken = refs[:count]
        new_logs = [r.ref.log for r in taken if r.ref.log not in logs]
        new_logs = list(dict.fromkeys(new_logs))
        all_logs = logs + new_logs
        values: dict[str, Any] = {
            ":r": [ref_text(r.ref, all_logs) for r in taken],
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
        self._update_or_contend(segment, update, values)
        return count

    def _close(self, segment: Segment) -> None:
        """Take no more references into the segment (the next log item does not fit whole in
        its room), so that a successor may be made: one write, then batches align again."""
        self._update_or_contend(segment, "SET z = :yes", {":yes": 1, ":len": len(segment.entries)})

    def _put_segment(self, queue: str, shard: int, seq: int, refs: Sequence[NewRef]) -> int:
        empty = Segment(queue, shard, seq, ())
        count = fitting(empty, [], refs)
        taken = refs[:count]
        logs = list(dict.fromkeys(r.ref.log for r in taken))
        item: dict[str, Any] = {
            "pk": keys.index_partition(queue, shard),
            "sk": keys.segment_key(seq),
            "l": logs,
            "r": [ref_text(r.ref, logs) for r in taken],
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

    def _update_or_contend(self, segment: Segment, update: str, values: dict[str, Any]) -> None:
        """Fill or close `segment` as the appender read it (open, at its length)."""
        try:
            update_segment(
                self._db,
                self._table,
                segment.queue,
                segment.shard,
                segment.seq,
                (update, OPEN_AT_LENGTH, values),
            )
        except SegmentChanged as exc:
            raise _Contended from exc
