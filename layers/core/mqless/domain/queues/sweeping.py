"""The sweeper's round: over-limit messages dead-lettered without waiting for receivers,
expired references settled, floors moved past settled segments, and every queue's depth
published (the console's chart, the "DLQ not empty" alarm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from aws_lambda_powertools import Logger

from mqless.domain import names
from mqless.domain.errors import MqlessError
from mqless.domain.models import QueueConfig
from mqless.domain.queues.counting import MessageCounter
from mqless.domain.queues.dead_letters import DeadLetters
from mqless.domain.queues.leases import Taken
from mqless.domain.queues.parts import QueueParts
from mqless.observability import metrics
from mqless.storage.fifo_segments import FifoEntry, FifoSegment
from mqless.storage.segments import SETTLED, Entry, Segment

logger = Logger(service="mqless", child=True)

SWEEP_SEGMENTS: Final = 16

# a queue's shards the sweep read to their end and changed nothing in: their segments
_Seen = dict[int, Sequence[Segment]]


@dataclass
class SweepReport:
    queues: int = 0
    dead_lettered: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)
    # every queue the sweep listed, swept or not (the budget may end it first): what feeds
    # their push consumers next goes over this list rather than listing the queues again
    listed: list[str] = field(default_factory=list)


class Sweeper:
    """One sweep over every queue, within a time budget."""

    def __init__(
        self, parts: QueueParts, *, counter: MessageCounter, dead_letters: DeadLetters
    ) -> None:
        self._registry = parts.registry
        self._log = parts.log
        self._index = parts.index
        self._fifo = parts.fifo
        self._clock = parts.clock
        self._leases = parts.leases
        self._counter = counter
        self._dead_letters = dead_letters

    def sweep(self, *, budget_ms: int = 50_000) -> SweepReport:
        """Dead-letter over-limit messages without waiting for receivers, and move floors."""
        report = SweepReport()
        start = self._clock.now_ms()
        configs = self._registry.list()
        report.listed = [config.name for config in configs]
        seen: dict[str, _Seen] = {}
        for config in configs:
            if self._clock.now_ms() - start > budget_ms:
                break
            report.queues += 1
            seen[config.name] = {}
            try:
                self._sweep_queue(config, report, seen[config.name])
            except Exception as exc:  # one queue's trouble must not starve the next ones
                logger.exception("sweeping a queue failed", extra={"queue": config.name})
                reason = exc.message if isinstance(exc, MqlessError) else type(exc).__name__
                report.errors.append(f"{config.name}: {reason}")
        self._measure_depths(report, configs, seen)
        return report

    def _measure_depths(
        self, report: SweepReport, configs: Sequence[QueueConfig], seen: dict[str, _Seen]
    ) -> None:
        """Publish every queue's depth (the console's depth chart), and every dead-letter
        queue's as `DeadLetterDepth` too (the alarm's "DLQ not empty").

        One bounded read of each queue's references per sweep: a cost per queue and
        minute, none per message. A shard the sweep has just read whole and left as it
        was is counted from that read (half a cold sweep's queries were these re-reads)."""
        dead_letter_queues = {c.dead_letter_queue for c in configs if c.dead_letter_queue}
        # a queue the sweep could not read is reported once, not again for its depth
        failed = {error.split(": ", 1)[0] for error in report.errors}
        for config in configs:
            try:
                counts = self._counter.counts(config, read=seen.get(config.name))
            except Exception as exc:
                logger.exception("measuring a queue failed", extra={"queue": config.name})
                if config.name not in failed:
                    report.errors.append(f"{config.name}: {type(exc).__name__}")
                continue
            depth = counts.visible + counts.in_flight + counts.delayed
            metrics.gauge("Depth", depth, queue=config.name)
            if config.name in dead_letter_queues or names.is_dead_letter_name(config.name):
                metrics.gauge("DeadLetterDepth", depth, queue=config.name)

    def _sweep_queue(self, config: QueueConfig, report: SweepReport, seen: _Seen) -> None:
        if config.fifo:
            self._sweep_fifo(config, report)
            return
        shards = config.index_shards()
        self._leases.read_floors(config.name, shards)
        for shard in shards:
            self._sweep_shard(config, shard, report, seen)

    def _sweep_shard(
        self, config: QueueConfig, shard: int, report: SweepReport, seen: _Seen
    ) -> None:
        """Settle expired references and dead-letter over-limit ones of a shard's oldest
        segments (one write per segment), and move its floor past settled ones. A shard
        read to its end and left unchanged (past a floor moved over settled segments, which
        count nothing) goes into `seen`."""
        floor = self._leases.floor(config.name, shard)
        segments = self._index.segments(
            config.name, shard, floor, limit=SWEEP_SEGMENTS, consistent=True
        )
        limit = config.max_receive_count
        settled = 0
        changed = False
        for segment in segments:
            now = self._clock.now_ms()
            free = [e for e in segment.entries if e.free_at(now)]
            expired = [e.slot for e in free if e.expired(now)]
            if expired and self._index.claim(
                segment, [], now_ms=now, until_ms=now, token=0, settle=expired
            ):
                report.expired += len(expired)
                metrics.count("Expired", queue=config.name, value=len(expired))
            over = [e for e in free if not e.expired(now) and limit and e.count >= limit]
            if over and limit is not None:
                report.dead_lettered += self._dead_letter_entries(config, segment, over, limit)
            changed = changed or bool(expired) or bool(over)
            if (
                segment.seq == floor + settled
                and segment.full
                and (segment.settled or all(e.settled or e.expired(now) for e in segment.entries))
            ):
                settled += 1
        if settled:
            self._leases.advance_floor(config.name, shard, floor + settled)
        if not changed and len(segments) < SWEEP_SEGMENTS:
            seen[shard] = segments

    def _dead_letter_entries(
        self, config: QueueConfig, segment: Segment, entries: Sequence[Entry], limit: int
    ) -> int:
        fresh = self._index.segment(segment.queue, segment.shard, segment.seq) or segment
        taken = self._leases.take_entries(config, fresh, entries, 30_000)
        return self._dead_letter_taken(config, taken, limit)

    def _sweep_fifo(self, config: QueueConfig, report: SweepReport) -> None:
        """Settle expired free references and dead-letter over-limit heads of a FIFO queue's
        oldest segments (one write per segment and per dead letter), and move its floor."""
        floor, _ = self._leases.fifo_floor(config.name)
        limit = config.max_receive_count
        blocked: set[int] = set()
        passable = 0
        for segment in self._leases.fifo_segments(config, consistent=True, limit=SWEEP_SEGMENTS):
            now = self._clock.now_ms()
            expired = [e.slot for e in segment.entries if not e.settled and e.gone(now)]
            over: list[FifoEntry] = []
            for entry in segment.entries:
                if entry.tag in blocked or entry.settled:
                    continue
                blocked.add(entry.tag)  # the group's head: only it may be dead-lettered
                if entry.gone(now):
                    continue  # settled below; the group's next head waits for the next sweep
                if entry.free_at(now) and limit is not None and entry.count >= limit:
                    over.append(entry)
            if expired and self._fifo.claim(
                segment, [], now_ms=now, until_ms=now, token=0, settle=expired
            ):
                report.expired += len(expired)
                metrics.count("Expired", queue=config.name, value=len(expired))
                segment = self._fifo.segment(config.name, config.shards, segment.seq) or segment
            if over and limit is not None:
                report.dead_lettered += self._dead_letter_heads(config, segment, over, limit)
            if passable == segment.seq - floor and (
                segment.passable(now)
                or not over
                and all(e.settled or e.gone(now) for e in segment.entries)
                and segment.full
            ):
                passable += 1
        if passable:
            self._leases.advance_fifo_floor(config.name, floor + passable)

    def _dead_letter_heads(
        self, config: QueueConfig, segment: FifoSegment, heads: Sequence[FifoEntry], limit: int
    ) -> int:
        taken = self._leases.take_fifo_entries(config, segment, heads, 30_000)
        return self._dead_letter_taken(config, taken, limit)

    def _dead_letter_taken(self, config: QueueConfig, taken: Sequence[Taken], limit: int) -> int:
        """Dead-letter over-limit messages just leased; how many were moved."""
        items = self._log.items((t.ref.log, t.ref.item) for t in taken)
        moved = 0
        for t in taken:
            item = items.get((t.ref.log, t.ref.item))
            if item is None:
                self._leases.set_until(config, [t.lease], SETTLED)
                continue
            reason = f"max_receive_count exceeded ({limit} deliveries)"
            moved += self._dead_letters.dead_letter(config, t, item, reason, t.count - 1)
        return moved
