"""Counting a queue's messages for the operator (visible, in flight, delayed, the oldest
message's age, the dead-letter depth), from bounded reads of its references.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from mqless.domain import names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.models import QueueConfig, QueueCounts, QueueStats
from mqless.domain.queues.parts import QueueParts
from mqless.storage import keys
from mqless.storage.segments import Ref, Segment

COUNT_BOUND: Final = 1000  # references a count reads at most per queue


class MessageCounter:
    """Counts of a queue's unsettled references, exact up to COUNT_BOUND read."""

    def __init__(self, parts: QueueParts) -> None:
        self._registry = parts.registry
        self._index = parts.index
        self._clock = parts.clock
        self._policy = parts.policy
        self._leases = parts.leases

    def counts(
        self, config: QueueConfig, *, read: Mapping[int, Sequence[Segment]] | None = None
    ) -> QueueCounts:
        """Visible, in flight and delayed, exact up to COUNT_BOUND references read.

        `read`: standard shards whose every segment from the floor on the caller has just
        read (strongly consistent) and left unchanged, as the sweep does; they are counted
        from those segments, not read again."""
        now = self._clock.now_ms()
        visible = in_flight = delayed = 0
        read_refs = 0
        bounded = False
        for shard in config.index_shards():
            states = (
                self._states_in(read[shard], now)
                if read is not None and shard in read and not config.fifo
                else self.states(config, shard)
            )
            for until, count, _ in states:
                read_refs += 1
                if read_refs > COUNT_BOUND:
                    bounded = True
                    break
                if 0 <= until <= now:
                    visible += 1
                elif count > 0:
                    in_flight += 1
                else:
                    delayed += 1
            if bounded:
                break
        return QueueCounts(
            visible=visible, in_flight=in_flight, delayed=delayed, approximate=bounded
        )

    def states(self, config: QueueConfig, shard: int) -> Iterable[tuple[int, int, Ref]]:
        """(until, receive count, ref) of every unsettled reference of a shard, in order."""
        if config.fifo:
            # one sequence for the whole queue: shard 0 stands for it
            sequence = self._leases.fifo_segments(config, limit=None) if shard == 0 else ()
            for fifo in sequence:
                now = self._clock.now_ms()
                for e in fifo.entries:
                    if not e.gone(now):
                        yield e.until, e.count, e.ref
            return
        start = self._leases.floor(config.name, shard)
        while True:
            segments = self._index.segments(config.name, shard, start, limit=8)
            yield from self._states_in(segments, self._clock.now_ms())
            if len(segments) < 8:
                return
            start = segments[-1].seq + 1

    @staticmethod
    def _states_in(segments: Iterable[Segment], now: int) -> Iterable[tuple[int, int, Ref]]:
        """(until, receive count, ref) of the unsettled references of these segments."""
        for segment in segments:
            for entry in segment.entries:
                if not entry.settled and not entry.expired(now):
                    yield entry.until, entry.count, entry.ref

    def stats(self, principal: Principal, name: str, *, consumers: int = 0) -> QueueStats:
        """Counts, the oldest message's age and the dead-letter depth, from bounded reads."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        now = self._clock.now_ms()
        counts = self.counts(config)
        oldest = self._oldest_visible_ms(config, now)
        dlq_visible: int | None = None
        approximate = counts.approximate
        if config.dead_letter_queue:
            dlq = self._registry.find(config.dead_letter_queue)
            if dlq is not None:
                dlq_counts = self.counts(dlq)
                dlq_visible = dlq_counts.visible
                approximate = approximate or dlq_counts.approximate
        return QueueStats(
            name=name,
            fifo=config.fifo,
            visible=counts.visible,
            in_flight=counts.in_flight,
            delayed=counts.delayed,
            oldest_age_seconds=None if oldest is None else max(0, (now - oldest) // 1000),
            dead_letter_queue=config.dead_letter_queue,
            dead_letter_visible=dlq_visible,
            consumers=consumers,
            approximate=approximate,
        )

    def _oldest_visible_ms(self, config: QueueConfig, now: int) -> int | None:
        """When the oldest visible message was sent (among the first 100 per shard)."""
        oldest: int | None = None
        for shard in config.index_shards():
            for read, (until, _, ref) in enumerate(self.states(config, shard)):
                if read >= 100:
                    break
                if 0 <= until <= now:
                    sent = keys.id_time_ms(ref.item)
                    oldest = sent if oldest is None else min(oldest, sent)
        return oldest
