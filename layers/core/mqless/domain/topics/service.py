"""Topics: publish once, deliver to durable subscriptions (topic pattern -> queue, filtered).

A publish writes its bodies once, into the topic's log (`T#<topic>#<shard>`), whatever
the number of subscribers. The messages table's stream hands each new log item to the
dispatch function, whose indexer (`indexing.py`) asks `routes` which queues should get
which of its bodies: the item is opened once (attributes are sealed, and the filter
policies read them), and each matching subscription's queue gets a reference to the body
in its index. Nothing is copied and nothing is sealed again: a body stays bound to the
topic that holds it. Live subscribers are pushed the same bodies (`sessions.py`).

`TopicService` is the entry point: publishing and routing here; durable subscriptions in
`subscriptions.py` (stored by `storage/subscriptions.py`), their replay in `replay.py`,
matching them to a topic in `routing.py`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from aws_lambda_powertools import Logger

from mqless.domain import models
from mqless.domain.access.principals import Action, AllowAll, Policy, Principal
from mqless.domain.access.quotas import Quotas
from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError, InvalidRequest, PayloadTooLarge
from mqless.domain.messages import NewMessage, SendResult
from mqless.domain.models import EntryFailure, QueueConfig
from mqless.domain.topics.patterns import validate_topic_name, validate_topic_pattern
from mqless.domain.topics.replay import TOPIC_SHARDS, Replay, Replayer
from mqless.domain.topics.routing import MatchingSubscriptions, opened_bodies, selected
from mqless.domain.topics.subscription import Subscription, SubscriptionSettings
from mqless.domain.topics.subscriptions import DurableSubscriptions
from mqless.observability import metrics
from mqless.storage import keys
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import Item
from mqless.storage.log import BODY_OVERHEAD, ITEM_OVERHEAD, MAX_ITEM_BYTES, Body, LogStore
from mqless.storage.sealing import BodyCipher, Headers, Holder, seal_many
from mqless.storage.subscriptions import SubscriptionStore

logger = Logger(service="mqless", child=True)

TOPIC_MESSAGE_SECONDS = 24 * 60 * 60  # kept a day when no subscription's queue needs longer


def published_topic(item: Item) -> str:
    """The topic a published log item is held by: the one its partition key names."""
    pk = str(item.get("pk", ""))
    try:
        kind, topic, _ = keys.parse_log_partition(pk)
    except InvalidRequest:
        kind = ""
    if kind != "topic":
        raise IntegrityError(f"not a published message: partition {pk[:100]!r}")
    return topic


class TopicService:
    """Publishing to topics and managing durable subscriptions."""

    def __init__(
        self,
        *,
        subscriptions: SubscriptionStore,
        log: LogStore,
        queues: QueueRegistry,
        cipher: BodyCipher,
        clock: Clock,
        policy: Policy | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._log = log
        self._queues = queues
        self._cipher = cipher
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self._replayer: Callable[[], Replayer] | None = None
        self._matching = MatchingSubscriptions(subscriptions.all, clock)
        self._replay = Replay(
            subscriptions, log, queues, cipher, clock, self._matching, lambda: self._replayer
        )
        self._durable = DurableSubscriptions(
            subscriptions,
            queues,
            clock,
            self._policy,
            quotas or Quotas(self._policy),
            self._matching,
            self._replay,
        )

    def replay_with(self, replayer: Callable[[], Replayer]) -> None:
        """Where replayed messages are referred to their queues (the indexer, made on use)."""
        self._replayer = replayer

    # ---- publishing ---------------------------------------------------------------------

    def publish(self, principal: Principal, topic: str, message: NewMessage) -> SendResult:
        """Write one topic message into the topic's log; the dispatch function delivers it."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)
        _check_topic_message(message)
        (result,) = self._store(topic, [message])
        metrics.count("Sent", topic=topic)
        return result

    def publish_advisory(self, topic: str, message: NewMessage) -> SendResult:
        """Publish a message the broker itself makes (`presence.py`): nobody's grants apply."""
        validate_topic_name(topic)
        (result,) = self._store(topic, [message])
        return result

    def matching(self, topic: str) -> list[Subscription]:
        """The durable subscriptions a message published to `topic` goes to."""
        return [subscription for subscription, _, _ in self._matching.of(topic)]

    def publish_batch(
        self, principal: Principal, topic: str, entries: Sequence[tuple[str, NewMessage]]
    ) -> tuple[list[tuple[str, SendResult]], list[EntryFailure]]:
        """Publish up to 10 messages in one request (as few log items as their size allows);
        each entry succeeds or fails alone."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)
        if not 1 <= len(entries) <= models.MAX_BATCH:
            raise InvalidRequest(f"a batch holds 1 to {models.MAX_BATCH} entries")
        failed: list[EntryFailure] = []
        accepted: list[tuple[str, NewMessage]] = []
        for entry_id, message in entries:
            try:
                _check_topic_message(message)
            except (InvalidRequest, PayloadTooLarge) as exc:
                failed.append(EntryFailure(id=entry_id, error=exc.code, message=exc.message))
                continue
            accepted.append((entry_id, message))
        done: list[tuple[str, SendResult]] = []
        if accepted:
            results = self._store(topic, [m for _, m in accepted])
            done = [(entry_id, r) for (entry_id, _), r in zip(accepted, results, strict=True)]
            metrics.count("Sent", topic=topic, value=len(done))
        return done, failed

    def _store(self, topic: str, messages: Sequence[NewMessage]) -> list[SendResult]:
        now = self._clock.now_ms()
        keep = self._retention_of(topic)
        results: list[SendResult] = []
        for chunk in _chunks(messages, keep, now):
            item_id = keys.new_item_id(now)
            ids = [keys.message_id(item_id, j) for j in range(len(chunk))]
            sealed = seal_many(
                self._cipher,
                [(Headers.of(m), m.body, i) for m, i in zip(chunk, ids, strict=True)],
                holder=Holder.topic(topic),
            )
            self._log.put(
                keys.topic_log(topic, random.randrange(TOPIC_SHARDS)),
                item_id,
                # each body's priority, for subscription queues with priority lanes
                [
                    Body(s.ciphertext, s.encrypted_key, priority=m.priority)
                    for s, m in zip(sealed, chunk, strict=True)
                ],
                expires_at=_expiry(chunk[0], keep, now),
            )
            results.extend(SendResult(message_id=i) for i in ids)
        return results

    def _retention_of(self, topic: str) -> int:
        """How long a published body must stay: the longest retention of the queues it may
        go to (a subscription's queue holds a reference, not a copy); a day if none."""
        longest = 0
        for subscription in self.matching(topic):
            queue = self._queues.find(subscription.queue)
            if queue is not None:
                longest = max(longest, queue.retention_seconds)
        return longest or TOPIC_MESSAGE_SECONDS

    def check_publish(self, principal: Principal, topic: str) -> None:
        """Forbidden unless `principal` may publish to `topic` (for frames held until later)."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)

    def check_receive(self, principal: Principal, pattern: str) -> None:
        """A live subscriber may receive from every topic `pattern` matches (or Forbidden)."""
        validate_topic_pattern(pattern)
        self._policy.check(principal, Action.RECEIVE, pattern)

    # ---- durable subscriptions (`subscriptions.py`) ---------------------------------------

    def resume(
        self, principal: Principal, topic: str, name: str, selector: str | None = None
    ) -> Subscription | None:
        """What a consumer subscribing durably as `name` attaches to (`DurableSubscriptions`)."""
        return self._durable.resume(principal, topic, name, selector)

    def subscribe(
        self,
        principal: Principal,
        topic: str,
        name: str,
        settings: SubscriptionSettings,
        *,
        as_consumer: bool = False,
    ) -> tuple[Subscription, bool]:
        """Create a durable subscription, or replace one; (subscription, created)
        (`DurableSubscriptions.subscribe`)."""
        return self._durable.subscribe(principal, topic, name, settings, as_consumer=as_consumer)

    def unsubscribe(
        self, principal: Principal, topic: str, name: str, *, as_consumer: bool = False
    ) -> None:
        """Delete a durable subscription (`DurableSubscriptions.unsubscribe`)."""
        self._durable.unsubscribe(principal, topic, name, as_consumer=as_consumer)

    def subscriptions(self, principal: Principal, topic: str | None = None) -> list[Subscription]:
        """Durable subscriptions the principal administers, all or those of `topic`."""
        return self._durable.subscriptions(principal, topic)

    # ---- routing (the dispatch function's indexer) ---------------------------------------

    def routes(self, topic: str, image: Item) -> list[tuple[QueueConfig, list[int]]]:
        """Which queues get which bodies of a new log item of `topic` (`indexing.TopicRoutes`):
        every matching subscription's, filter policies read from the opened attributes. A
        body that fails authentication goes nowhere (logged; retrying cannot help)."""
        matching = self._matching.of(topic)
        if not matching:
            return []
        item = self._log.log_item(image)
        opened = opened_bodies(self._cipher, topic, item, self._clock.now_ms())
        by_queue: dict[str, tuple[QueueConfig, set[int]]] = {}
        for matcher in matching:
            subscription = matcher[0]
            if subscription.live_from is not None and not self._replay.joined(subscription, item):
                continue
            queue = self._queues.find(subscription.queue)
            if queue is None:
                logger.warning(
                    "subscription's queue is gone; message not delivered to it",
                    extra={"subscription": subscription.name, "queue": subscription.queue},
                )
                continue
            bodies = selected(opened, matcher)
            if bodies:
                by_queue.setdefault(queue.name, (queue, set()))[1].update(bodies)
        return [(queue, sorted(bodies)) for queue, bodies in by_queue.values()]


def _check_topic_message(message: NewMessage) -> None:
    message.check_size()
    if message.group_id or message.dedup_id or message.delay_seconds:
        raise InvalidRequest("group_id, dedup_id and delay_seconds are for queues, not topics")


def _expiry(message: NewMessage, keep: int, now_ms: int) -> int:
    lifetime = keep if message.ttl_seconds is None else min(keep, message.ttl_seconds)
    return now_ms // 1000 + lifetime


def _chunks(messages: Sequence[NewMessage], keep: int, now_ms: int) -> list[list[NewMessage]]:
    """Messages that share a log item: consecutive, one expiry, within the item size."""
    chunks: list[list[NewMessage]] = []
    size = ITEM_OVERHEAD
    for message in messages:
        length = len(message.body) + len(Headers.of(message).encode()) + 33 + BODY_OVERHEAD
        if (
            chunks
            and len(chunks[-1]) < keys.SLOTS_PER_ITEM
            and size + length <= MAX_ITEM_BYTES
            and _expiry(chunks[-1][0], keep, now_ms) == _expiry(message, keep, now_ms)
        ):
            chunks[-1].append(message)
            size += length
            continue
        chunks.append([message])
        size = ITEM_OVERHEAD + length
    return chunks
