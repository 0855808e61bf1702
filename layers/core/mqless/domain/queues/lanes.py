"""Priority lanes: the order a receive looks at a priority queue's index shards in.

A receive fills its batch from the highest lane that has messages, then the lower ones.
Lanes marked empty since their last use are left out, so a receive that finds nothing
reads the marks (1 RRU) and the lanes in use, not every lane's every shard.
"""

from __future__ import annotations

import random
import threading
from typing import Final

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.leases import SCAN_SEGMENTS
from mqless.domain.queues.shard_memory import ShardMemory
from mqless.storage import keys
from mqless.storage.index import IndexStore
from mqless.storage.lane_marks import LANE_QUIET_MS, LaneMarks

LANE_MARKS_CACHE_MS: Final = 2_000  # lane marks that skip no lane are kept this long
LANE_RECHECK_MS: Final = 60_000  # a quiet lane found holding messages is looked at again after


class PriorityLanes:
    """Which lanes of a priority queue to read, highest first; marks drained ones empty."""

    def __init__(self, index: IndexStore, clock: Clock, memory: ShardMemory) -> None:
        self._index = index
        self._clock = clock
        self._memory = memory
        self._lock = threading.Lock()
        self._held: dict[tuple[str, int], int] = {}  # quiet lanes seen not empty, when
        self._marks: dict[str, tuple[LaneMarks, int]] = {}  # (marks, when read) per queue

    def order(self, config: QueueConfig) -> list[int]:
        """A priority queue's index shards in the order to look at them: its lanes highest
        first, each lane's shards from where this process last found messages. Lanes
        marked empty since their last use are left out."""
        marks = self._lane_marks(config.name)
        home = self._memory.home(config.name)
        start = home % keys.MAX_SHARDS if home is not None else random.randrange(config.shards)
        start = start if start < config.shards else 0
        order: list[int] = []
        for lane in reversed(range(config.lanes)):
            if marks.skippable(lane) or self._drained(config, lane, marks):
                continue
            order += [
                keys.lane_shard(lane, (start + i) % config.shards) for i in range(config.shards)
            ]
        return order

    def _lane_marks(self, queue: str) -> LaneMarks:
        """A queue's lane marks, read strongly consistent; kept for LANE_MARKS_CACHE_MS only
        while they skip no lane. Marks that skip a lane are read again every time: an
        appender marks the lane in use before its append wakes a push pump, and the pump
        must see that mark, not a copy from before it."""
        now = self._clock.now_ms()
        with self._lock:
            cached = self._marks.get(queue)
        if cached is not None and now - cached[1] < LANE_MARKS_CACHE_MS:
            return cached[0]
        marks = self._index.lane_marks(queue)
        if not any(marks.skippable(lane) for lane in marks.emptied):
            with self._lock:
                self._marks[queue] = (marks, now)
        return marks

    def _drained(self, config: QueueConfig, lane: int, marks: LaneMarks) -> bool:
        """Whether a lane that no appender has marked for LANE_QUIET_MS holds nothing
        unsettled in any shard (then marked empty: skipped until its next use). Every
        append to it was made that long before these reads, so they show it."""
        now = self._clock.now_ms()
        used = marks.used.get(lane, 0)
        with self._lock:
            held_at = self._held.get((config.name, lane), -LANE_RECHECK_MS)
        if now - used < LANE_QUIET_MS or now - held_at < LANE_RECHECK_MS:
            return False
        for base in range(config.shards):
            shard = keys.lane_shard(lane, base)
            segments = self._index.segments(
                config.name, shard, self._memory.floor(config.name, shard), limit=SCAN_SEGMENTS
            )
            holding = any(not e.settled and not e.expired(now) for s in segments for e in s.entries)
            if holding or len(segments) >= SCAN_SEGMENTS:
                with self._lock:
                    self._held[(config.name, lane)] = now
                return False
        with self._lock:
            self._marks.pop(config.name, None)  # it skips a lane from now on
        return self._index.mark_lane_empty(config.name, lane, used)
