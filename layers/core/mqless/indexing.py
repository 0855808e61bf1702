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

Appends are idempotent (a retried stream batch appends nothing twice) and grouped: one
index write per queue shard per batch (a FIFO queue: per queue, whatever the groups),
however many messages the batch brings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aws_lambda_powertools import Logger

from mqless.clock import Clock
from mqless.dynamo import Item
from mqless.errors import InvalidRequest
from mqless.models import QueueConfig
from mqless.refs import Mac, genuine, signed
from mqless.storage import keys
from mqless.storage.groups import FifoIndex, GroupedRef
from mqless.storage.index import IndexStore, NewRef, Ref
from mqless.storage.log import bodies_of

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
        standard: dict[tuple[str, int], list[NewRef]] = {}
        fifo: dict[str, tuple[QueueConfig, list[GroupedRef]]] = {}
        for item in items:
            try:
                kind, destination, shard = keys.parse_log_partition(str(item.get("pk", "")))
            except InvalidRequest:
                continue
            if kind == "topic":
                for target, bodies in self._topics.routes(destination, item):
                    refs = self._topic_refs(item, target, bodies)
                    into = keys.shard_of(str(item["pk"]), target.shards)
                    standard.setdefault((target.name, into), []).extend(refs)
                continue
            config = self._queues.find(destination)
            if config is None:
                report.skipped += 1
                continue
            refs = self._queue_refs(item, config.name)
            if config.fifo:
                # in stream order, whatever the group: a group's messages come from one log
                # shard, so the stream brings them in the order they were sent
                group = str(item.get("g") or "")
                grouped = fifo.setdefault(config.name, (config, []))[1]
                grouped.extend(GroupedRef(ref, group) for ref in refs)
            else:
                standard.setdefault((config.name, min(shard, config.shards - 1)), []).extend(refs)
        for (queue, shard), refs in standard.items():
            plan = (push or {}).get(queue)
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
        for queue, (config, grouped) in fifo.items():
            fifo_appended = self._fifo.append(queue, config.shards, grouped)
            report.appended += fifo_appended.appended
            report.duplicates += fifo_appended.duplicates
            report.queues.add(queue)
        return report

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
        the order given, into the queue shards the dispatch function would use for them."""
        by_shard: dict[int, list[NewRef]] = {}
        for item, bodies in items:
            into = keys.shard_of(str(item["pk"]), target.shards)
            by_shard.setdefault(into, []).extend(self._topic_refs(item, target, bodies))
        appended = 0
        for shard, refs in by_shard.items():
            appended += self._index.append(target.name, shard, refs).appended
        return appended

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

    def _queue_refs(self, item: Item, queue: str) -> list[NewRef]:
        """The references a queue's log item brings: its bodies, or (a reference item) the
        bodies it points at, each only if the broker signed it for this queue."""
        expires = int(item.get("x", 0))
        sources: Sequence[Sequence[object]] = item.get("f") or []
        if not sources:
            visible = [int(v) for v in item.get("v") or []]
            return [
                NewRef(
                    signed(self._mac, queue, Ref(str(item["pk"]), str(item["sk"]), j)),
                    expires,
                    visible_at=visible[j] if j < len(visible) else 0,
                    original=True,
                )
                for j in range(len(bodies_of(item)))
            ]
        refs = []
        for source in sources:
            ref = Ref(str(source[0]), str(source[1]), int(str(source[2])), str(source[5]))
            if not genuine(self._mac, queue, ref):
                logger.error(
                    "a reference item names a body the broker did not refer to this queue",
                    extra={"queue": queue, "item": str(item.get("sk"))},
                )
                continue
            refs.append(NewRef(ref, expires, count=int(str(source[3])), reason=str(source[4])))
        return refs
