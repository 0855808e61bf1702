"""Topics: publish once, fan out to durable subscriptions (topic pattern -> queue, filtered).

A publish writes one item (`pk = T#<topic>`), whatever the number of subscribers. The
messages table's stream hands it to the dispatch function, which opens it once (its
attributes are sealed, and the filter policies need them) and copies it into each matching
subscription's queue, sealed again for that queue (`sealing.py`: a sealed block opens only
where it is held) with cached data keys, so no KMS call per message or subscriber. A copy
is a conditional put keyed by the message id, so a stream retry never delivers a message
twice to one subscription.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from mqless import models, names
from mqless.clock import Clock
from mqless.dynamo import (
    Item,
    is_condition_failure,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.errors import IntegrityError, InvalidRequest, NotFound, PayloadTooLarge
from mqless.models import EntryFailure, NewMessage, SendResult
from mqless.observability import audit, metrics
from mqless.principals import Action, AllowAll, Policy, Principal
from mqless.queues import BodyCipher, sealed_message
from mqless.registry import QueueRegistry
from mqless.sealing import Holder, open_item, reseal
from mqless.store import MessageStore, standard_key
from mqless.topics import FilterPolicy, TopicIndex, validate_topic_name, validate_topic_pattern

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(service="mqless", child=True)

SUBSCRIPTION_PARTITION = "SUBSCRIPTION"
TOPIC_MESSAGE_SECONDS = 24 * 60 * 60  # a published item only has to live until dispatched
CACHE_SECONDS = 5.0


class Subscription(BaseModel):
    """A durable subscription: messages published to topics matching `topic` go to `queue`."""

    topic: str
    name: str
    queue: str
    filter_policy: dict[str, Any] | None = None
    created_at: int = 0


_Matcher = tuple["Subscription", FilterPolicy | None]


class SubscriptionSettings(BaseModel):
    queue: str = Field(description="The standard queue that receives matching messages.")
    filter_policy: dict[str, Any] | None = Field(
        default=None,
        description="SNS-style attribute filter policy; null delivers every message.",
    )


class DispatchReport(BaseModel):
    delivered: int = 0
    duplicates: int = 0
    filtered: int = 0
    unreadable: int = 0  # failed authentication: fanned out to no one


def published_topic(item: Item) -> str:
    """The topic a published item is held by: the one its partition key names."""
    pk = str(item.get("pk", ""))
    if not pk.startswith("T#"):
        raise IntegrityError(f"not a published message: partition {pk[:100]!r}")
    return pk[2:]


class TopicService:
    """Publishing to topics and managing durable subscriptions."""

    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        messages_table: str,
        destinations_table: str,
        queues: QueueRegistry,
        cipher: BodyCipher,
        clock: Clock,
        policy: Policy | None = None,
    ) -> None:
        self._db = dynamodb
        self._messages = messages_table
        self._store = MessageStore(dynamodb, messages_table)
        self._destinations = destinations_table
        self._queues = queues
        self._cipher = cipher
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self._lock = threading.Lock()
        self._index: tuple[int, TopicIndex, dict[tuple[str, str], _Matcher]] | None = None

    # ---- publishing ---------------------------------------------------------------------

    def publish(self, principal: Principal, topic: str, message: NewMessage) -> SendResult:
        """Write one topic message; the dispatch function fans it out."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)
        item = self._topic_item(topic, message)
        self._store.put(item)
        metrics.count("Sent", topic=topic)
        return SendResult(message_id=item["id"])

    def publish_batch(
        self, principal: Principal, topic: str, entries: Sequence[tuple[str, NewMessage]]
    ) -> tuple[list[tuple[str, SendResult]], list[EntryFailure]]:
        """Publish up to 10 messages in one request; each entry succeeds or fails alone."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)
        if not 1 <= len(entries) <= models.MAX_BATCH:
            raise InvalidRequest(f"a batch holds 1 to {models.MAX_BATCH} entries")
        done: list[tuple[str, SendResult]] = []
        failed: list[EntryFailure] = []
        items: list[Item] = []
        for entry_id, message in entries:
            try:
                item = self._topic_item(topic, message)
            except (InvalidRequest, PayloadTooLarge) as exc:
                failed.append(EntryFailure(id=entry_id, error=exc.code, message=exc.message))
                continue
            items.append(item)
            done.append((entry_id, SendResult(message_id=item["id"])))
        if items:
            self._store.put_many(items)  # retries what DynamoDB leaves unprocessed
            metrics.count("Sent", topic=topic, value=len(items))
        return done, failed

    def _topic_item(self, topic: str, message: NewMessage) -> Item:
        message.check_size()
        if message.group_id or message.dedup_id or message.delay_seconds:
            raise InvalidRequest("group_id, dedup_id and delay_seconds are for queues, not topics")
        now = self._clock.now_ms()
        item = sealed_message(self._cipher, message, holder=Holder.topic(topic), now_ms=now)
        item.update(
            pk=f"T#{topic}",
            sk=standard_key(str(item["id"])),
            ttl=message.ttl_seconds,
            expires_at=now // 1000 + TOPIC_MESSAGE_SECONDS,
        )
        return item

    # ---- durable subscriptions ----------------------------------------------------------

    def check_publish(self, principal: Principal, topic: str) -> None:
        """Forbidden unless `principal` may publish to `topic` (for frames held until later)."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)

    def check_receive(self, principal: Principal, pattern: str) -> None:
        """A live subscriber may receive from every topic `pattern` matches (or Forbidden)."""
        validate_topic_pattern(pattern)
        self._policy.check(principal, Action.RECEIVE, pattern)

    def subscribe(
        self,
        principal: Principal,
        topic: str,
        name: str,
        settings: SubscriptionSettings,
        *,
        as_consumer: bool = False,
    ) -> tuple[Subscription, bool]:
        """Create or replace a durable subscription; returns (subscription, created).

        An operator needs `admin` on the topic and `send` on the queue it feeds; a consumer
        making its own durable subscription (STOMP, as on ActiveMQ) needs `receive` on both.
        """
        validate_topic_pattern(topic)
        names.validate_queue_name(name)
        names.validate_queue_name(settings.queue)
        if as_consumer:
            self._policy.check(principal, Action.RECEIVE, topic)
            self._policy.check(principal, Action.RECEIVE, settings.queue)
        else:
            self._policy.check(principal, Action.ADMIN, topic)
            self._policy.check(principal, Action.SEND, settings.queue)
        if names.is_fifo(settings.queue):
            raise InvalidRequest("durable subscriptions deliver to standard queues only")
        if settings.filter_policy is not None:
            FilterPolicy.parse(settings.filter_policy)
        self._queues.get(settings.queue)  # the queue must exist: QueueNotFound otherwise
        subscription = Subscription(
            topic=topic,
            name=name,
            queue=settings.queue,
            filter_policy=settings.filter_policy,
            created_at=self._clock.now_ms(),
        )
        with translated_errors():
            old = self._db.put_item(
                TableName=self._destinations,
                Item=to_wire(
                    {
                        "pk": SUBSCRIPTION_PARTITION,
                        "sk": f"{topic}#{name}",
                        "kind": "subscription",
                        **subscription.model_dump(),
                    }
                ),
                ReturnValues="ALL_OLD",
            )
        self._forget()
        audit(
            "subscription.save",
            principal.id,
            topic,
            subscription=name,
            queue=settings.queue,
            filter_policy=settings.filter_policy,
        )
        return subscription, "Attributes" not in old

    def unsubscribe(
        self, principal: Principal, topic: str, name: str, *, as_consumer: bool = False
    ) -> None:
        """Delete a durable subscription (its queue and messages stay); `admin` on the
        topic, or `receive` for the consumer that made it."""
        validate_topic_pattern(topic)
        self._policy.check(principal, Action.RECEIVE if as_consumer else Action.ADMIN, topic)
        if as_consumer:
            # a consumer may drop a durable subscription only if it may consume its queue
            found = next((s for s in self._load() if (s.topic, s.name) == (topic, name)), None)
            if found is None:
                raise NotFound(f"topic {topic!r} has no subscription {name!r}")
            self._policy.check(principal, Action.RECEIVE, found.queue)
        with translated_errors():
            old = self._db.delete_item(
                TableName=self._destinations,
                Key=to_wire({"pk": SUBSCRIPTION_PARTITION, "sk": f"{topic}#{name}"}),
                ReturnValues="ALL_OLD",
            )
        self._forget()
        if "Attributes" not in old:
            raise NotFound(f"topic {topic!r} has no subscription {name!r}")
        audit("subscription.delete", principal.id, topic, subscription=name)

    def subscriptions(self, principal: Principal, topic: str | None = None) -> list[Subscription]:
        """Durable subscriptions, all (those the principal administers) or those declared on
        `topic` (a name or pattern)."""
        if topic is not None:
            self._policy.check(principal, Action.ADMIN, topic)
        found = [s for s in self._load() if self._policy.permits(principal, Action.ADMIN, s.topic)]
        return [s for s in found if topic is None or s.topic == topic]

    # ---- fan-out (the dispatch function) ------------------------------------------------

    def fan_out(self, item: Item) -> DispatchReport:
        """Copy one published topic message into every matching subscription's queue."""
        report = DispatchReport()
        topic = published_topic(item)
        # a malformed image fails here, matching subscriptions or not (and is retried, then
        # reported by the stream mapping); a tampered one is skipped below
        message_id, sent_at = str(item["id"]), int(item["sent_at"])
        matching = self._matching(topic)
        if not matching:
            return report
        try:
            # once per message, whatever the number of subscriptions
            opened = open_item(
                self._cipher, item, holder=Holder.topic(topic), now_ms=self._clock.now_ms()
            )
        except IntegrityError as exc:
            # retrying cannot help, and a raise would hold up the stream behind it
            logger.error(
                "published message failed authentication; not fanned out",
                extra={"topic": topic, "message_id": message_id, "reason": exc.message},
            )
            report.unreadable += 1
            return report
        attributes = opened.headers.attributes
        for subscription, policy in matching:
            if policy is not None and not policy.matches(attributes):
                report.filtered += 1
                continue
            queue = self._queues.find(subscription.queue)
            if queue is None:
                logger.warning(
                    "subscription's queue is gone; message not delivered to it",
                    extra={"subscription": subscription.name, "queue": subscription.queue},
                )
                continue
            now = self._clock.now_ms()
            lifetime = queue.retention_seconds
            if item.get("ttl") is not None:
                lifetime = min(lifetime, int(item["ttl"]))
            copy = {k: v for k, v in item.items() if k not in ("pk", "sk", "ttl", "expires_at")}
            copy = reseal(self._cipher, copy, opened, target=Holder.queue(queue.name))
            copy.update(
                pk=f"Q#{queue.name}",
                sk=standard_key(message_id),
                vq=queue.name,
                visible_at=now + queue.delay_seconds * 1000,
                receive_count=0,
                expires_at=sent_at // 1000 + lifetime,
                subscription=subscription.name,
            )
            try:
                with translated_errors():
                    self._db.put_item(
                        TableName=self._messages,
                        Item=to_wire(copy),
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                report.delivered += 1
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                report.duplicates += 1  # a stream retry: this subscription has it already
        return report

    def _matching(self, topic: str) -> list[tuple[Subscription, FilterPolicy | None]]:
        index, by_key = self._cached_index()
        return [by_key[key] for key in sorted(index.match(topic))]

    def _cached_index(self) -> tuple[TopicIndex, dict[tuple[str, str], _Matcher]]:
        now = self._clock.now_ms()
        with self._lock:
            if self._index is not None and now - self._index[0] < CACHE_SECONDS * 1000:
                return self._index[1], self._index[2]
        index = TopicIndex()
        by_key: dict[tuple[str, str], _Matcher] = {}
        for subscription in self._load():
            key = (subscription.topic, subscription.name)
            index.add(subscription.topic, key)
            # policies are parsed once per cache refresh, not once per message
            policy = (
                None
                if subscription.filter_policy is None
                else FilterPolicy.parse(subscription.filter_policy)
            )
            by_key[key] = (subscription, policy)
        with self._lock:
            self._index = (now, index, by_key)
        return index, by_key

    def _forget(self) -> None:
        with self._lock:
            self._index = None

    def _load(self) -> list[Subscription]:
        found: list[Subscription] = []
        for values in partition_items(self._db, self._destinations, SUBSCRIPTION_PARTITION):
            values.setdefault("filter_policy", None)
            found.append(
                Subscription.model_validate(
                    {k: v for k, v in values.items() if k not in ("pk", "sk", "kind")}
                )
            )
        return found
