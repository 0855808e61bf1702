"""Counting a queue's messages for the operator (visible, in flight, delayed, the oldest
message's age, the dead-letter depth), from bounded reads of its references.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from mqless.domain import names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.models import QueueConfig, QueueCounts, QueueStats
from mqless.domain.queues.parts import QueueParts
from mqless.storage import keys
from mqless.storage.segments import Ref, Segment

COUNT_BOUND: Final = 1000  # references a count reads at most per queue
OLDEST_SCAN: Final = 100  # references per shard among which the oldest visible one is found


@dataclass(frozen=True)
class StatsPage:
    """One page of the overview: its queues' stats, whether more follow, where the next
    page starts (None: this is the last, or it is empty) and how many queues there are."""

    queues: list[QueueStats]
    more: bool
    cursor: str | None
    total: int


class _Tally:
    """Counts of the references a read passes (up to COUNT_BOUND), and, when `oldest`, when
    the oldest visible one among the first OLDEST_SCAN of each shard was sent."""

    def __init__(self, now: int, *, oldest: bool) -> None:
        self.now = now
        self.visible = self.in_flight = self.delayed = self.read = 0
        self.bounded = False
        self.oldest: int | None = None
        self._wants_oldest = oldest

    def see(self, position: int, until: int, count: int, ref: Ref) -> bool:
        """Take the shard's `position`th reference in; whether the shard is worth reading on."""
        if not self.bounded:
            self.read += 1
            self.bounded = self.read > COUNT_BOUND
        visible = 0 <= until <= self.now
        if visible and self._wants_oldest and position < OLDEST_SCAN:
            sent = keys.id_time_ms(ref.item)
            self.oldest = sent if self.oldest is None else min(self.oldest, sent)
        if self.bounded:
            return self._wants_oldest and position + 1 < OLDEST_SCAN
        if visible:
            self.visible += 1
        elif count > 0:
            self.in_flight += 1
        else:
            self.delayed += 1
        return True

    def counts(self) -> QueueCounts:
        return QueueCounts(
            visible=self.visible,
            in_flight=self.in_flight,
            delayed=self.delayed,
            approximate=self.bounded,
        )


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
        tally = _Tally(now, oldest=False)
        for shard in config.index_shards():
            states = (
                self._states_in(read[shard], now)
                if read is not None and shard in read and not config.fifo
                else self.states(config, shard)
            )
            self._read_shard(tally, states)
            if tally.bounded:
                break
        return tally.counts()

    def _survey(self, config: QueueConfig) -> _Tally:
        """Counts and the oldest visible message, from one read of each shard (its floor
        first: the shards' floors are read together, one request, not one per shard)."""
        shards = config.index_shards()
        if not config.fifo:
            self._leases.read_floors(config.name, shards)
        tally = _Tally(self._clock.now_ms(), oldest=True)
        for shard in shards:
            self._read_shard(tally, self.states(config, shard))
        return tally

    @staticmethod
    def _read_shard(tally: _Tally, states: Iterable[tuple[int, int, Ref]]) -> None:
        for position, (until, count, ref) in enumerate(states):
            if not tally.see(position, until, count, ref):
                return

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
        return self._stats(self._registry.get(name), consumers, {}, {})

    def page(
        self,
        configs: Sequence[QueueConfig],
        *,
        limit: int,
        after: str | None,
        consumers: Callable[[str], int],
        known: Mapping[str, QueueConfig],
    ) -> StatsPage:
        """The stats of the first `limit` of these queues by name after `after`, each read
        once: a dead-letter queue on the page is read once for its row and its source's.
        `known`: queues' settings just listed (a dead-letter queue's, not read again)."""
        rest = sorted((c for c in configs if after is None or c.name > after), key=_name)
        shown = rest[:limit]
        surveys: dict[str, _Tally] = {}
        return StatsPage(
            queues=[self._stats(c, consumers(c.name), surveys, known) for c in shown],
            more=len(rest) > limit,
            cursor=shown[-1].name if shown and len(rest) > limit else None,
            total=len(configs),
        )

    def _stats(
        self,
        config: QueueConfig,
        consumers: int,
        surveys: dict[str, _Tally],
        known: Mapping[str, QueueConfig],
    ) -> QueueStats:
        """A queue's stats; `surveys`: the reads of queues made for this page so far."""
        survey = self._survey_once(config, surveys)
        dlq_visible: int | None = None
        approximate = survey.bounded
        if config.dead_letter_queue:
            dlq = known.get(config.dead_letter_queue) or self._registry.find(
                config.dead_letter_queue
            )
            if dlq is not None:
                dlq_survey = self._survey_once(dlq, surveys)
                dlq_visible = dlq_survey.visible
                approximate = approximate or dlq_survey.bounded
        oldest = survey.oldest
        return QueueStats(
            name=config.name,
            fifo=config.fifo,
            visible=survey.visible,
            in_flight=survey.in_flight,
            delayed=survey.delayed,
            oldest_age_seconds=None if oldest is None else max(0, (survey.now - oldest) // 1000),
            dead_letter_queue=config.dead_letter_queue,
            dead_letter_visible=dlq_visible,
            consumers=consumers,
            approximate=approximate,
        )

    def _survey_once(self, config: QueueConfig, surveys: dict[str, _Tally]) -> _Tally:
        if config.name not in surveys:
            surveys[config.name] = self._survey(config)
        return surveys[config.name]


def _name(config: QueueConfig) -> str:
    return config.name
