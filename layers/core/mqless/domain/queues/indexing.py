"""Indexing: what the dispatch function does with new log items (storage engine v2).

The stream hands the dispatch function every new log item in the order it was written
(per partition key). For each it appends references to the queue indexes that should
deliver it:
- a queue's own log item (`L#<queue>#<shard>`): its bodies, into the queue's index shard
  of the same number (a FIFO queue: into its one sequence, tagged with their group);
- a reference item in a queue's log (a dead letter, a redrive, a move): the bodies it
  points at, with the receive count and reason each keeps;
- a topic's log item (`T#<topic>#<shard>`): its bodies, into the index of every durable
  subscription's queue whose pattern and filter policy match (`TopicRoutes`).

A queue with priorities (`max_priority`) has a lane per priority, each its own index
shards (`keys.lane_shard`): a body goes into its priority's lane (the log item's `p`, a
reference item's pointer). Before appending, the dispatch function reads the queue's lane
marks and marks in use each lane it appends to that is marked empty or was last marked
over 5 minutes ago (`IndexStore.mark_lane_used`), so that receives that skip lanes found
empty look there again.

Appends are idempotent (a retried stream batch appends nothing twice) and grouped: one
index write per queue shard per batch (a FIFO queue: per queue, whatever the groups),
however many messages the batch brings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aws_lambda_powertools import Logger

from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest
from mqless.domain.models import QueueConfig
from mqless.domain.queues.refs import Mac, genuine, signed
from mqless.storage import keys
from mqless.storage.dynamo import Item
from mqless.storage.fifo_segments import GroupedRef
from mqless.storage.groups import FifoIndex
from mqless.storage.index import IndexStore
from mqless.storage.lane_marks import LANE_MARK_EVERY_MS
from mqless.storage.log import bodies_of, pointer_priority
from mqless.storage.segments import NewRef, Ref

logger = Logger(service="mqless", child=True)


class TopicRoutes(Protocol):
    """Which queues get which bodies of a published log item (patterns, filter policies)."""

    def routes(self, topic: str, image: Item) -> list[tuple[QueueConfig, list[int]]]: ...


class Queues(Protocol):
    def find(self, name: str) -> QueueConfig | None: ...


@dataclass
class PushLease:
    """Leases the dispatch function makes in the append itself, for the push consumer it
    feeds a queue's new messages to: up to `credit` of them, until `until`, as `token`."""

    credit: int
    until: int
    token: int
    leased: list[tuple[NewRef, int, int, int]] = field(default_factory=list)
    """(reference, shard, segment, slot) of each appended leased."""
    appended: int = 0  # references of the queue appended by this batch, leased or not


@dataclass
class IndexReport:
    queues: set[str] = field(default_factory=set)
    shards: dict[str, set[int]] = field(default_factory=dict)
    """The standard queues' shards that references were appended to."""
    appended: int = 0
    duplicates: int = 0
    skipped: int = 0  # log items of queues that no longer exist


@dataclass
class _Placed:
    """A stream batch's references, by where they are appended."""

    standard: dict[tuple[str, int], list[NewRef]] = field(default_factory=dict)
    lanes_used: dict[str, set[int]] = field(default_factory=dict)  # a priority queue's lanes
    fifo: dict[str, tuple[QueueConfig, list[GroupedRef]]] = field(default_factory=dict)


class Indexer:
    """Appends references to queue indexes for new log items, in stream order."""

    def __init__(
        self,
        *,
        queues: Queues,
        index: IndexStore,
        fifo: FifoIndex,
        topics: TopicRoutes,
        clock: Clock,
        mac: Mac,
    ) -> None:
        self._queues = queues
        self._index = index
        self._fifo = fifo
        self._topics = topics
        self._clock = clock
        self._mac = mac

    def index(
        self, items: Iterable[Item], *, push: dict[str, PushLease] | None = None
    ) -> IndexReport:
        """Index the new log items of one stream batch (images in stream order); `push`:
        standard queues whose first new messages are appended leased (`PushLease`)."""
        report = IndexReport()
        placed = _Placed()
        for item in items:
            self._place(item, placed, report)
        for queue, lanes in placed.lanes_used.items():
            self._mark_lanes(queue, lanes)
        for (queue, shard), refs in placed.standard.items():
            self._append_standard(queue, shard, refs, (push or {}).get(queue), report)
        for queue, (config, grouped) in placed.fifo.items():
            fifo_appended = self._fifo.append(queue, config.shards, grouped)
            report.appended += fifo_appended.appended
            report.duplicates += fifo_appended.duplicates
            report.queues.add(queue)
        return report

    def _place(self, item: Item, placed: _Placed, report: IndexReport) -> None:
        """Sort one log item's references by where they are appended (a standard queue's
        shard or lane, a FIFO queue); a topic's go to its routes' queues."""
        try:
            kind, destination, shard = keys.parse_log_partition(str(item.get("pk", "")))
        except InvalidRequest:
            return
        if kind == "topic":
            for target, bodies in self._topics.routes(destination, item):
                for lane, into, ref in self._topic_placed(item, target, bodies):
                    if target.max_priority is not None:
                        placed.lanes_used.setdefault(target.name, set()).add(lane)
                    placed.standard.setdefault((target.name, into), []).append(ref)
            return
        config = self._queues.find(destination)
        if config is None:
            report.skipped += 1
            return
        sent = self._queue_refs(item, config.name)
        if config.max_priority is not None:
            base = min(shard, config.shards - 1)
            for ref, priority in sent:
                lane = config.lane_of(priority)
                placed.lanes_used.setdefault(config.name, set()).add(lane)
                placed.standard.setdefault((config.name, keys.lane_shard(lane, base)), []).append(
                    ref
                )
            return
        if config.fifo:
            # in stream order, whatever the group: a group's messages come from one log
            # shard, so the stream brings them in the order they were sent
            grouped = placed.fifo.setdefault(config.name, (config, []))[1]
            groups = _groups(item, len(sent))
            grouped.extend(
                GroupedRef(ref, group) for (ref, _), group in zip(sent, groups, strict=True)
            )
        else:
            placed.standard.setdefault((config.name, min(shard, config.shards - 1)), []).extend(
                ref for ref, _ in sent
            )

    def _append_standard(
        self,
        queue: str,
        shard: int,
        refs: list[NewRef],
        plan: PushLease | None,
        report: IndexReport,
    ) -> None:
        """Append a standard queue shard's references, the first leased to a push consumer
        where `plan` asks for it."""
        if plan is not None:
            refs = self._leased(refs, plan)
        appended = self._index.append(queue, shard, refs)
        if plan is not None:
            plan.appended += appended.appended
            plan.leased += [(r, shard, seq, slot) for r, seq, slot in appended.leased]
        report.appended += appended.appended
        report.duplicates += appended.duplicates
        report.queues.add(queue)
        report.shards.setdefault(queue, set()).add(shard)

    def _leased(self, refs: Sequence[NewRef], plan: PushLease) -> list[NewRef]:
        """The references with the plan's leases on the first it may take: a new message
        of the queue's own, visible now, not expiring (a delayed message, a dead letter
        or a redrive goes the ordinary way: its receive count and reason matter)."""
        now_s = self._clock.now_ms() // 1000
        marked: list[NewRef] = []
        for ref in refs:
            if (
                plan.credit > 0
                and ref.original
                and ref.count == 0
                and not ref.reason
                and ref.visible_at == 0
                and ref.expires_at > now_s
            ):
                plan.credit -= 1
                ref = replace(ref, lease=(plan.until, plan.token))
            marked.append(ref)
        return marked

    def append_replayed(self, target: QueueConfig, items: Sequence[tuple[Item, list[int]]]) -> int:
        """Refer bodies a replay read back from a topic's log to `target` (`pubsub.py`), in
        the order given, into the queue shards (and priority lanes) the dispatch function
        would use for them."""
        by_shard: dict[int, list[NewRef]] = {}
        lanes: set[int] = set()
        for item, bodies in items:
            for lane, into, ref in self._topic_placed(item, target, bodies):
                if target.max_priority is not None:
                    lanes.add(lane)
                by_shard.setdefault(into, []).append(ref)
        if lanes:
            self._mark_lanes(target.name, lanes)
        appended = 0
        for shard, refs in by_shard.items():
            appended += self._index.append(target.name, shard, refs).appended
        return appended

    def _topic_placed(
        self, item: Item, target: QueueConfig, bodies: Sequence[int]
    ) -> list[tuple[int, int, NewRef]]:
        """A published item's references for a subscription's queue, each with its priority
        lane and the index shard it goes to (the topic shard's, in that lane): what the
        dispatch function and a replay both append."""
        into = keys.shard_of(str(item["pk"]), target.shards)
        priorities = _priorities(item)
        published = self._topic_refs(item, target, bodies)
        placed = []
        for j, ref in zip(bodies, published, strict=True):
            lane = target.lane_of(priorities.get(j))
            placed.append((lane, keys.lane_shard(lane, into), ref))
        return placed

    def _mark_lanes(self, queue: str, lanes: set[int]) -> None:
        """Mark in use, before appending to them, the lanes that are marked empty or were
        last marked over LANE_MARK_EVERY_MS ago (a receive marks a lane empty only after
        twice that): one strongly consistent read a stream batch, a write a lane now and
        then. The marks are read, not remembered: a queue made again under the same name
        starts with none."""
        marks = self._index.lane_marks(queue)
        now = self._clock.now_ms()
        for lane in sorted(lanes):
            if marks.skippable(lane) or now - marks.used.get(lane, 0) >= LANE_MARK_EVERY_MS:
                self._index.mark_lane_used(queue, lane, now)

    def _topic_refs(self, item: Item, target: QueueConfig, bodies: Sequence[int]) -> list[NewRef]:
        now = self._clock.now_ms()
        sent_ms = keys.id_time_ms(str(item["sk"]))
        expires = min(int(item.get("x", 0)), sent_ms // 1000 + target.retention_seconds)
        visible = now + target.delay_seconds * 1000 if target.delay_seconds else 0
        return [
            NewRef(
                signed(self._mac, target.name, Ref(str(item["pk"]), str(item["sk"]), j)),
                expires,
                visible_at=visible,
                original=True,
            )
            for j in bodies
        ]

    def _queue_refs(self, item: Item, queue: str) -> list[tuple[NewRef, int | None]]:
        """The references a queue's log item brings, each with its body's priority: its
        bodies, or (a reference item) the bodies it points at, each only if the broker
        signed it for this queue."""
        expires = int(item.get("x", 0))
        sources: Sequence[Sequence[object]] = item.get("f") or []
        if not sources:
            visible = [int(v) for v in item.get("v") or []]
            priorities = _priorities(item)
            return [
                (
                    NewRef(
                        signed(self._mac, queue, Ref(str(item["pk"]), str(item["sk"]), j)),
                        expires,
                        visible_at=visible[j] if j < len(visible) else 0,
                        original=True,
                    ),
                    priorities.get(j),
                )
                for j in range(len(bodies_of(item)))
            ]
        refs: list[tuple[NewRef, int | None]] = []
        for source in sources:
            ref = Ref(str(source[0]), str(source[1]), int(str(source[2])), str(source[5]))
            if not genuine(self._mac, queue, ref):
                logger.error(
                    "a reference item names a body the broker did not refer to this queue",
                    extra={"queue": queue, "item": str(item.get("sk"))},
                )
                continue
            refs.append(
                (
                    NewRef(ref, expires, count=int(str(source[3])), reason=str(source[4])),
                    pointer_priority(source),
                )
            )
        return refs


def _groups(item: Item, count: int) -> list[str]:
    """The FIFO group of each of a log item's first `count` references: `g`, one for all
    (a reference item's, and most items'), or a list of each body's."""
    stored = item.get("g")
    if isinstance(stored, list):
        return [str(g) for g in stored[:count]] + [""] * (count - len(stored))
    return [str(stored or "")] * count


def _priorities(item: Item) -> dict[int, int]:
    """Body slot -> priority, of the bodies of a log item sent with one (`p`)."""
    return {j: int(v) for j, v in enumerate(item.get("p") or []) if int(v) >= 0}
