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

from mqless import models, names, quotas
from mqless.clock import Clock
from mqless.dynamo import (
    Item,
    from_wire,
    is_condition_failure,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from mqless.models import EntryFailure, NewMessage, SendResult
from mqless.observability import audit, metrics
from mqless.principals import Action, AllowAll, Policy, Principal
from mqless.queues import BodyCipher, sealed_message
from mqless.quotas import Quota, Quotas
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
    owner: str | None = Field(
        default=None,
        description="The principal that created it: it may delete it without admin rights.",
    )


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
        quotas: Quotas | None = None,
    ) -> None:
        self._db = dynamodb
        self._messages = messages_table
        self._store = MessageStore(dynamodb, messages_table)
        self._destinations = destinations_table
        self._queues = queues
        self._cipher = cipher
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self._quotas = quotas or Quotas(self._policy)
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

    def resume(self, principal: Principal, topic: str, name: str) -> Subscription | None:
        """What a consumer subscribing durably as `name` (its queue too) to `topic` attaches to.

        The existing subscription (Conflict if it feeds another queue), or None if there is
        none and the consumer may create it: `create` on the topic (Forbidden otherwise),
        within its quota. Writes nothing, so a refusal leaves no queue behind.
        """
        validate_topic_pattern(topic)
        names.validate_queue_name(name)
        self._policy.check(principal, Action.RECEIVE, topic)
        self._policy.check(principal, Action.RECEIVE, name)
        existing = self._find(topic, name)
        if existing is not None:
            return self._reattach(principal, existing, SubscriptionSettings(queue=name))
        self._policy.check(principal, Action.CREATE, topic)
        charge = self._quotas.charge(principal, Quota.SUBSCRIPTIONS, 1, _what(topic, name))
        if charge is not None:
            used = quotas.used(self._db, self._destinations, principal.id)[charge.quota]
            if used + charge.count > charge.limit:
                raise charge.refused()  # early: the transaction in `subscribe` is what holds
        return None

    def subscribe(
        self,
        principal: Principal,
        topic: str,
        name: str,
        settings: SubscriptionSettings,
        *,
        as_consumer: bool = False,
    ) -> tuple[Subscription, bool]:
        """Create a durable subscription, or replace one (operators); (subscription, created).

        An operator needs `admin` on the topic and `send` on the queue it feeds, and may
        replace any subscription of the topic (its owner stays). A consumer making its own
        durable subscription (STOMP and JSON `durable`, as on ActiveMQ) needs `receive` on
        both, and `create` on the topic for a new one; naming one that exists reattaches to
        it and never changes it (Conflict if the request would). The creator is its owner
        and is charged for it (quotas.py).
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
        # conditional writes only: whatever another request does meanwhile, a write that
        # would act on what it did not read fails and is looked at again
        for _ in range(3):
            existing = self._find(topic, name)
            if existing is not None and as_consumer:
                return self._reattach(principal, existing, settings), False
            if existing is not None:
                replaced = self._replace(existing, settings)
                if replaced is None:
                    continue
                self._audit_save(principal, replaced, created=False)
                return replaced, False
            if as_consumer:
                self._policy.check(principal, Action.CREATE, topic)
            created = self._create(principal, topic, name, settings)
            if created is None:
                continue
            self._audit_save(principal, created, created=True)
            return created, True
        raise Conflict(f"durable subscription {name!r} of {topic!r} is changing; retry")

    def unsubscribe(
        self, principal: Principal, topic: str, name: str, *, as_consumer: bool = False
    ) -> None:
        """Delete a durable subscription (its queue and messages stay): `admin` on the topic,
        or, for a consumer (`receive` on the topic), being its owner."""
        validate_topic_pattern(topic)
        self._policy.check(principal, Action.RECEIVE if as_consumer else Action.ADMIN, topic)
        condition: dict[str, Any] = {"ConditionExpression": "attribute_exists(pk)"}
        if not self._policy.permits(principal, Action.ADMIN, topic):
            condition = {
                "ConditionExpression": "attribute_exists(pk) AND #owner = :me",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": to_wire({":me": principal.id}),
            }
        try:
            with translated_errors():
                old = self._db.delete_item(
                    TableName=self._destinations,
                    Key=to_wire(_key(topic, name)),
                    ReturnValues="ALL_OLD",
                    **condition,
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if self._find(topic, name) is None:
                raise NotFound(f"topic {topic!r} has no subscription {name!r}") from exc
            raise Forbidden(
                f"{principal.id!r} may not delete durable subscription {name!r} of {topic!r}: "
                f"only its owner or an admin of {topic!r} may"
            ) from exc
        self._forget()
        charged_to = from_wire(old["Attributes"]).get("charged_to")
        if charged_to:
            quotas.credit(self._db, self._destinations, str(charged_to), Quota.SUBSCRIPTIONS)
        audit("subscription.delete", principal.id, topic, subscription=name)

    def _audit_save(self, principal: Principal, saved: Subscription, *, created: bool) -> None:
        audit(
            "subscription.save",
            principal.id,
            saved.topic,
            subscription=saved.name,
            queue=saved.queue,
            filter_policy=saved.filter_policy,
            owner=saved.owner,
            created=created,
        )

    def _reattach(
        self, principal: Principal, existing: Subscription, settings: SubscriptionSettings
    ) -> Subscription:
        """`existing`, if a consumer's request matches it; Conflict saying what differs."""
        # who may not see the subscription is not told where it delivers
        sees = principal.id == existing.owner or self._policy.permits(
            principal, Action.ADMIN, existing.topic
        )
        differs = []
        if existing.queue != settings.queue:
            where = f"queue {existing.queue!r}" if sees else "another queue"
            differs.append(f"it delivers to {where}, not {settings.queue!r}")
        if settings.filter_policy is not None and settings.filter_policy != existing.filter_policy:
            differs.append("its filter policy differs")
        if differs:
            raise Conflict(
                f"durable subscription {existing.name!r} of {existing.topic!r} exists and "
                f"{'; '.join(differs)}: subscribing by its name reattaches to it and never "
                "changes it (unsubscribe it first, or choose another name)"
            )
        return existing

    def _find(self, topic: str, name: str) -> Subscription | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._destinations, Key=to_wire(_key(topic, name)), ConsistentRead=True
            )
        return _subscription(from_wire(found["Item"])) if "Item" in found else None

    def _create(
        self, principal: Principal, topic: str, name: str, settings: SubscriptionSettings
    ) -> Subscription | None:
        """A new subscription owned by and charged to `principal`; None if one exists."""
        subscription = Subscription(
            topic=topic,
            name=name,
            queue=settings.queue,
            filter_policy=settings.filter_policy,
            created_at=self._clock.now_ms(),
            owner=principal.id,
        )
        charge = self._quotas.charge(principal, Quota.SUBSCRIPTIONS, 1, _what(topic, name))
        item = {
            **_key(topic, name),
            "kind": "subscription",
            **subscription.model_dump(),
            "charged_to": None if charge is None else charge.principal_id,
        }
        if not quotas.put_new(self._db, self._destinations, [item], charge):
            return None
        self._forget()
        return subscription

    def _replace(
        self, existing: Subscription, settings: SubscriptionSettings
    ) -> Subscription | None:
        """`existing` with the new queue and filter; None if it changed since it was read."""
        values: dict[str, Any] = {":queue": settings.queue, ":created": existing.created_at}
        update = "SET #queue = :queue REMOVE #filter"
        if settings.filter_policy is not None:
            update = "SET #queue = :queue, #filter = :filter"
            values[":filter"] = settings.filter_policy
        try:
            with translated_errors():
                updated = self._db.update_item(
                    TableName=self._destinations,
                    Key=to_wire(_key(existing.topic, existing.name)),
                    UpdateExpression=update,
                    ConditionExpression="created_at = :created",
                    ExpressionAttributeNames={"#queue": "queue", "#filter": "filter_policy"},
                    ExpressionAttributeValues=to_wire(values),
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return None
            raise
        self._forget()
        return _subscription(from_wire(updated["Attributes"]))

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


def _key(topic: str, name: str) -> dict[str, str]:
    return {"pk": SUBSCRIPTION_PARTITION, "sk": f"{topic}#{name}"}


def _subscription(values: Item) -> Subscription:
    values.setdefault("filter_policy", None)
    return Subscription.model_validate(values)


def _what(topic: str, name: str) -> str:
    return f"durable subscription {name!r} of {topic!r}"
