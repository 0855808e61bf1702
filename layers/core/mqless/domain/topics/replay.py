"""Replay: a durable subscription created with a `start` (the oldest retained message, or a
time) also gets what the topic's log still holds from then on.

The dispatch function delivers it the messages published from `live_from` on (its creation
plus the time every dispatcher's cached view of the subscriptions takes to see it); what
was published before `live_from` is read from the log (`replay_shard`, one Query per topic
shard) and referred to its queue before the first of those, so it gets each message once,
in publish order per topic shard (docs/storage-engine.md, "Replay").

One worker replays a shard at a time (a conditional claim on the subscription's item,
`storage/subscriptions.py`); every REPLAY_CHUNK log items it records how far it went, so a
worker that stops (its Lambda timed out, or past its deadline: it hands the shard back) is
resumed there, not from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mqless.domain.clock import Clock
from mqless.domain.errors import Conflict
from mqless.domain.models import QueueConfig
from mqless.domain.topics.routing import (
    CACHE_SECONDS,
    MatchingSubscriptions,
    matcher,
    opened_bodies,
    selected,
)
from mqless.domain.topics.subscription import Subscription, describe
from mqless.storage import keys
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import Item
from mqless.storage.log import LogItem, LogStore
from mqless.storage.sealing import BodyCipher
from mqless.storage.subscriptions import SubscriptionStore

TOPIC_SHARDS = 4  # a topic's log is spread over this many partitions, each replayed alone
# a replaying subscription's live part starts this long after its creation: by then every
# dispatcher's cached view of the subscriptions (CACHE_SECONDS) has seen it, a second of
# clock difference between Lambda instances included
REPLAY_JOIN_MS = int(CACHE_SECONDS * 1000) + 1000
# how long after `live_from` a publish stamped before it is taken to be in the log
REPLAY_SETTLE_MS = 2000
REPLAY_CLAIM_MS = 60_000  # a topic shard's replay taken by one worker, for at most this long
REPLAY_CHUNK = 100  # log items read per index append and position recorded
REPLAY_BUDGET_MS = 15_000  # a PUT's replay stops after this; the dispatch function resumes it
REPLAY_DISPATCH_BUDGET_MS = 30_000  # a dispatch function's, after which its batch is retried

Found = list[tuple[Item, list[int]]]


class Replayer(Protocol):
    """Refers published bodies read back from a topic's log to a queue (`indexing.py`)."""

    def append_replayed(
        self, target: QueueConfig, items: Sequence[tuple[Item, list[int]]]
    ) -> int: ...


class _ReplayPaused(Exception):
    """A replay handed its shard back at its deadline (the next worker resumes it)."""


class Replay:
    """Replays of new durable subscriptions, shard by shard."""

    def __init__(
        self,
        store: SubscriptionStore,
        log: LogStore,
        queues: QueueRegistry,
        cipher: BodyCipher,
        clock: Clock,
        matching: MatchingSubscriptions,
        replayer: Callable[[], Callable[[], Replayer] | None],
    ) -> None:
        self._store = store
        self._log = log
        self._queues = queues
        self._cipher = cipher
        self._clock = clock
        self._matching = matching
        # set after construction: the indexer that refers messages is built from the topics
        self._replayer = replayer

    def joined(self, subscription: Subscription, item: LogItem) -> bool:
        """Whether a replaying subscription gets this new log item as it is published.

        From `live_from` on, yes, once the item's topic shard is replayed (the first such
        item replays it: the replayed references go before its own). Before it, the replay
        delivers it; one that reaches the dispatch function after its shard's replay (a
        write that lagged its id's time) goes too, and the index append skips it if the
        replay had found it already.
        """
        _, _, shard = keys.parse_log_partition(item.partition)
        pending = str(shard) in subscription.replaying
        if keys.id_time_ms(item.item) < (subscription.live_from or 0):
            return not pending
        if pending:
            # bounded below the dispatch function's 60 s: a long replay is resumed by the
            # retried batch rather than cut by a timeout
            deadline = self._clock.now_ms() + REPLAY_DISPATCH_BUDGET_MS
            self.replay_shard(subscription, shard, deadline_ms=deadline)
            if str(shard) in subscription.replaying:  # handed back: this item must wait
                raise Conflict(
                    f"{describe(subscription.topic, subscription.name)}: "
                    f"topic shard {shard} is still being replayed; retry"
                )
        return True

    def finish(self, subscription: Subscription) -> Subscription:
        """Replay what a new subscription's topic still holds, once the dispatch function
        delivers the rest (`live_from`) and what was published before it is in the log.

        A shard a dispatcher is replaying (a publish after `live_from` reached it first)
        is left to it; so is everything if this process cannot refer messages."""
        if self._replayer() is None:
            return subscription
        wait_ms = (subscription.live_from or 0) + REPLAY_SETTLE_MS - self._clock.now_ms()
        if wait_ms > 0:
            self._clock.sleep(wait_ms / 1000)
        deadline = self._clock.now_ms() + REPLAY_BUDGET_MS
        for shard in sorted(subscription.replaying, key=int):
            try:
                self.replay_shard(subscription, int(shard), deadline_ms=deadline)
            except Conflict:
                continue
        return self._store.find(subscription.topic, subscription.name) or subscription

    def replay_shard(
        self, subscription: Subscription, shard: int, *, deadline_ms: int | None = None
    ) -> None:
        """Refer what one shard of the topic's log holds from the subscription's start up to
        `live_from` (filter and selector applied) to its queue, then mark the shard done.

        One worker at a time (a conditional claim); Conflict while another holds it (the
        dispatch function's batch is retried), nothing if it is done already. Every
        REPLAY_CHUNK log items it records how far it went, so a worker that stops (its
        Lambda timed out, or past `deadline_ms`: it hands the shard back) is resumed there.
        """
        if self._replayer() is None:
            return
        now = self._clock.now_ms()
        claim = now + REPLAY_CLAIM_MS
        claimed = self._store.claim_shard(subscription, shard, now_ms=now, until_ms=claim)
        if claimed is None:
            self._claim_refused(subscription, shard)
            return
        target = self._queues.find(subscription.queue)
        chosen = matcher(subscription)
        position = claimed.resume_after
        found: Found = []
        read = 0
        try:
            for image in self._log.topic_items(
                subscription.topic,
                shard,
                subscription.replay_from or 0,
                subscription.live_from or 0,
                after=position,
            ):
                read += 1
                position = str(image["sk"])
                # DynamoDB's TTL deletes expired items late: what has expired is not replayed
                if target is not None and int(image.get("x", 0)) > now // 1000:
                    item = self._log.log_item(image)
                    opened = opened_bodies(self._cipher, subscription.topic, item, now)
                    slots = selected(opened, chosen)
                    if slots:
                        found.append((image, slots))
                if read % REPLAY_CHUNK == 0:
                    claim = self._record(
                        subscription, shard, target, found, claim, position, deadline_ms
                    )
                    found = []
            self._record(subscription, shard, target, found, claim, position, None, done=True)
        except _ReplayPaused:
            return
        self._replayed(subscription, shard)

    def _claim_refused(self, subscription: Subscription, shard: int) -> None:
        """A claim refused: the shard is done (noted), or another worker holds it
        (Conflict), or the subscription is gone or made again (nothing to do)."""
        current = self._store.find(subscription.topic, subscription.name)
        if current is None or current.created_at != subscription.created_at:
            return
        if str(shard) in current.replaying:
            raise Conflict(
                f"{describe(subscription.topic, subscription.name)}: "
                f"topic shard {shard} is being replayed; retry"
            )
        self._replayed(subscription, shard)

    def _record(
        self,
        subscription: Subscription,
        shard: int,
        target: QueueConfig | None,
        found: Found,
        claim: int,
        position: str | None,
        deadline_ms: int | None,
        *,
        done: bool = False,
    ) -> int:
        """Refer what was found, then note how far the replay went (or that it is done,
        or, past the deadline, hand the shard back: `_ReplayPaused`); the claim held from
        now on. Conflict if the claim was lost."""
        replayer = self._replayer()
        if found and target is not None and replayer is not None:
            replayer().append_replayed(target, found)
        now_ms = self._clock.now_ms()
        stop = not done and deadline_ms is not None and now_ms >= deadline_ms
        next_claim = None if done else (0 if stop else now_ms + REPLAY_CLAIM_MS)
        if not self._store.note_progress(
            subscription, shard, claim=claim, position=position, next_claim=next_claim
        ):
            raise Conflict(f"topic shard {shard}'s replay was taken over")
        if stop:
            raise _ReplayPaused(shard)
        return claim if next_claim is None else next_claim

    def _replayed(self, subscription: Subscription, shard: int) -> None:
        """Note in the subscription and the cached view that a shard's replay is done."""
        subscription.replaying.pop(str(shard), None)
        self._matching.replayed(subscription, shard)
