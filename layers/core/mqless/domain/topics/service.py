"""Topics: publish once, deliver to durable subscriptions (topic pattern -> queue, filtered).

A publish writes its bodies once, into the topic's log (`T#<topic>#<shard>`), whatever
the number of subscribers. The messages table's stream hands each new log item to the
dispatch function, whose indexer (`indexing.py`) asks `routes` which queues should get
which of its bodies: the item is opened once (attributes are sealed, and the filter
policies read them), and each matching subscription's queue gets a reference to the body
in its index. Nothing is copied and nothing is sealed again: a body stays bound to the
topic that holds it. Live subscribers are pushed the same bodies (`sessions.py`).

Replay: a durable subscription created with a `start` (the oldest retained message, or a
time) also gets what the topic's log still holds from then on. The dispatch function
delivers it the messages published from `live_from` on (its creation plus the time every
dispatcher's cached view of the subscriptions takes to see it); what was published before
`live_from` is read from the log (`_replay_shard`, one Query per topic shard) and referred to
its queue before the first of those, so it gets each message once, in publish order per
topic shard (docs/storage-engine.md, "Replay").
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from mqless.domain import models, names, selectors
from mqless.domain.access.principals import Action, AllowAll, Policy, Principal
from mqless.domain.access.quotas import Quota, Quotas
from mqless.domain.clock import Clock
from mqless.domain.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from mqless.domain.models import EntryFailure, NewMessage, QueueConfig, SendResult
from mqless.domain.selectors import MAX_SELECTOR_LENGTH, Lookup, Selector, message_lookup
from mqless.domain.topics.patterns import (
    FilterPolicy,
    TopicIndex,
    validate_topic_name,
    validate_topic_pattern,
)
from mqless.observability import audit, metrics
from mqless.storage import keys, quotas
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import (
    Item,
    from_wire,
    is_condition_failure,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.storage.log import (
    BODY_OVERHEAD,
    ITEM_OVERHEAD,
    MAX_ITEM_BYTES,
    Body,
    LogItem,
    LogStore,
)
from mqless.storage.sealing import BodyCipher, Headers, Holder, open_logged, seal_many

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(service="mqless", child=True)

SUBSCRIPTION_PARTITION = "SUBSCRIPTION"
TOPIC_MESSAGE_SECONDS = 24 * 60 * 60  # kept a day when no subscription's queue needs longer
TOPIC_SHARDS = 4  # a topic's log is spread over this many partitions
CACHE_SECONDS = 5.0
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
START_OLDEST = "oldest"
START_NOW = "now"


class Subscription(BaseModel):
    """A durable subscription: messages published to topics matching `topic` go to `queue`."""

    topic: str
    name: str
    queue: str
    filter_policy: dict[str, Any] | None = None
    selector: str | None = None
    created_at: int = 0
    owner: str | None = Field(
        default=None,
        description="The principal that created it: it may delete it without admin rights.",
    )
    replay_from: int | None = Field(
        default=None,
        description="Replay: messages the topic still held that were published at or after "
        "this time (epoch ms; 0: the oldest retained) were delivered to it when it was "
        "created; null: it gets what is published from its creation on.",
    )
    live_from: int | None = Field(
        default=None,
        description="Replay: messages published from this time (epoch ms) on are delivered "
        "as published; those before it were read from the topic's log.",
    )
    replaying: dict[str, int] = Field(
        default_factory=dict,
        description="Replay: the topic log shards whose retained messages are still to be "
        "delivered (empty once the replay is done).",
    )


class Replayer(Protocol):
    """Refers published bodies read back from a topic's log to a queue (`indexing.py`)."""

    def append_replayed(
        self, target: QueueConfig, items: Sequence[tuple[Item, list[int]]]
    ) -> int: ...


_Matcher = tuple["Subscription", FilterPolicy | None, Selector | None]


class SubscriptionSettings(BaseModel):
    queue: str = Field(description="The standard queue that receives matching messages.")
    filter_policy: dict[str, Any] | None = Field(
        default=None,
        description="SNS-style attribute filter policy; null delivers every message.",
    )
    selector: str | None = Field(
        default=None,
        description="JMS message selector (SQL-92 subset, as ActiveMQ's) the messages "
        "must match, beside the filter policy; null delivers every message.",
        max_length=MAX_SELECTOR_LENGTH,
    )
    start: str | None = Field(
        default=None,
        description='Replay, for a new subscription of one topic: "oldest" delivers every '
        "message the topic's log still holds, an ISO-8601 time (with its zone, e.g. "
        '"2026-12-07T00:00:00Z") those published at or after it, before the ones published '
        'from now on; "now" or null: only those. Ignored when the subscription exists.',
        max_length=64,
    )


def parse_start(start: str | None, now_ms: int) -> int | None:
    """A subscription's start as epoch ms (0: the oldest retained), or None for "now"."""
    if start is None or start == START_NOW:
        return None
    if start == START_OLDEST:
        return 0
    try:
        when = datetime.fromisoformat(start)
        at = int(when.timestamp() * 1000) if when.tzinfo is not None else None
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(
            f"start {start[:64]!r} is not {START_OLDEST!r}, {START_NOW!r} or an ISO-8601 time "
            "such as '2026-12-07T00:00:00Z'"
        ) from exc
    if at is None:
        raise InvalidRequest(f"start {start!r} needs a time zone (Z or +hh:mm)")
    if at > now_ms:
        raise InvalidRequest(f"start {start!r} is in the future")
    return max(at, 0)


class DispatchReport(BaseModel):
    delivered: int = 0
    duplicates: int = 0
    filtered: int = 0
    unreadable: int = 0  # failed authentication: fanned out to no one


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
        dynamodb: DynamoDBClient,
        messages_table: str,
        destinations_table: str,
        queues: QueueRegistry,
        cipher: BodyCipher,
        clock: Clock,
        policy: Policy | None = None,
        quotas: Quotas | None = None,
        log: LogStore | None = None,
    ) -> None:
        self._db = dynamodb
        self._messages = messages_table
        self._log = log or LogStore(dynamodb, messages_table, clock)
        self._destinations = destinations_table
        self._queues = queues
        self._cipher = cipher
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self._quotas = quotas or Quotas(self._policy)
        self._lock = threading.Lock()
        self._index: tuple[int, TopicIndex, dict[tuple[str, str], _Matcher]] | None = None
        self._replayer: Callable[[], Replayer] | None = None

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
        return [subscription for subscription, _, _ in self._matching(topic)]

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
        for subscription, _, _ in self._matching(topic):
            queue = self._queues.find(subscription.queue)
            if queue is not None:
                longest = max(longest, queue.retention_seconds)
        return longest or TOPIC_MESSAGE_SECONDS

    # ---- durable subscriptions ----------------------------------------------------------

    def check_publish(self, principal: Principal, topic: str) -> None:
        """Forbidden unless `principal` may publish to `topic` (for frames held until later)."""
        validate_topic_name(topic)
        self._policy.check(principal, Action.SEND, topic)

    def check_receive(self, principal: Principal, pattern: str) -> None:
        """A live subscriber may receive from every topic `pattern` matches (or Forbidden)."""
        validate_topic_pattern(pattern)
        self._policy.check(principal, Action.RECEIVE, pattern)

    def resume(
        self, principal: Principal, topic: str, name: str, selector: str | None = None
    ) -> Subscription | None:
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
            settings = SubscriptionSettings(queue=name, selector=selector)
            return self._reattach(principal, existing, settings)
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
        selectors.check(settings.selector)  # a bad selector: 400, naming the position
        replay_from = parse_start(settings.start, self._clock.now_ms())
        if replay_from is not None:
            if any(word in ("*", ">") for word in topic.split(".")):
                raise InvalidRequest(
                    "start replays one topic's log: subscribe to a topic name, not a pattern"
                )
            # replaying hands over what was published before: the right to subscribe to it
            self._policy.check(principal, Action.RECEIVE, topic)
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
            created = self._create(principal, topic, name, settings, replay_from)
            if created is None:
                continue
            self._audit_save(principal, created, created=True)
            if created.replaying:
                created = self._finish_replay(created)
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
            selector=saved.selector,
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
        if (settings.selector or None) != existing.selector:
            differs.append(f"its selector is {existing.selector!r}, not {settings.selector!r}")
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
        self,
        principal: Principal,
        topic: str,
        name: str,
        settings: SubscriptionSettings,
        replay_from: int | None = None,
    ) -> Subscription | None:
        """A new subscription owned by and charged to `principal`; None if one exists."""
        now = self._clock.now_ms()
        replay: dict[str, Any] = {}
        if replay_from is not None:
            replay = {
                "replay_from": replay_from,
                "live_from": now + REPLAY_JOIN_MS,
                "replaying": {str(shard): 0 for shard in range(TOPIC_SHARDS)},
            }
        subscription = Subscription(
            topic=topic,
            name=name,
            queue=settings.queue,
            filter_policy=settings.filter_policy,
            selector=selectors.check(settings.selector),
            created_at=now,
            owner=principal.id,
            **replay,
        )
        charge = self._quotas.charge(principal, Quota.SUBSCRIPTIONS, 1, _what(topic, name))
        item = {
            **_key(topic, name),
            "kind": "subscription",
            **subscription.model_dump(),
            "charged_to": None if charge is None else charge.principal_id,
            # per topic shard, the last log item a replay went past (where the next resumes)
            **({"replay_at": {}} if replay else {}),
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
        sets, removes = ["#queue = :queue"], []
        if settings.filter_policy is not None:
            sets.append("#filter = :filter")
            values[":filter"] = settings.filter_policy
        else:
            removes.append("#filter")
        selector = selectors.check(settings.selector)
        if selector is not None:
            sets.append("#selector = :selector")
            values[":selector"] = selector
        else:
            removes.append("#selector")
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            with translated_errors():
                updated = self._db.update_item(
                    TableName=self._destinations,
                    Key=to_wire(_key(existing.topic, existing.name)),
                    UpdateExpression=update,
                    ConditionExpression="created_at = :created",
                    ExpressionAttributeNames={
                        "#queue": "queue",
                        "#filter": "filter_policy",
                        "#selector": "selector",
                    },
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

    # ---- routing (the dispatch function's indexer) ---------------------------------------

    def routes(self, topic: str, image: Item) -> list[tuple[QueueConfig, list[int]]]:
        """Which queues get which bodies of a new log item of `topic` (`indexing.TopicRoutes`):
        every matching subscription's, filter policies read from the opened attributes. A
        body that fails authentication goes nowhere (logged; retrying cannot help)."""
        matching = self._matching(topic)
        if not matching:
            return []
        item = self._log.log_item(image)
        opened = self._opened(topic, item)
        by_queue: dict[str, tuple[QueueConfig, set[int]]] = {}
        for matcher in matching:
            subscription = matcher[0]
            if subscription.live_from is not None and not self._joined(subscription, item):
                continue
            queue = self._queues.find(subscription.queue)
            if queue is None:
                logger.warning(
                    "subscription's queue is gone; message not delivered to it",
                    extra={"subscription": subscription.name, "queue": subscription.queue},
                )
                continue
            bodies = _selected(opened, matcher)
            if bodies:
                by_queue.setdefault(queue.name, (queue, set()))[1].update(bodies)
        return [(queue, sorted(bodies)) for queue, bodies in by_queue.values()]

    # ---- replay ---------------------------------------------------------------------------

    def _joined(self, subscription: Subscription, item: LogItem) -> bool:
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
            self._replay_shard(subscription, shard, deadline_ms=deadline)
            if str(shard) in subscription.replaying:  # handed back: this item must wait
                raise Conflict(
                    f"durable subscription {subscription.name!r} of {subscription.topic!r}: "
                    f"topic shard {shard} is still being replayed; retry"
                )
        return True

    def _finish_replay(self, subscription: Subscription) -> Subscription:
        """Replay what a new subscription's topic still holds, once the dispatch function
        delivers the rest (`live_from`) and what was published before it is in the log.

        A shard a dispatcher is replaying (a publish after `live_from` reached it first)
        is left to it; so is everything if this process cannot refer messages."""
        if self._replayer is None:
            return subscription
        wait_ms = (subscription.live_from or 0) + REPLAY_SETTLE_MS - self._clock.now_ms()
        if wait_ms > 0:
            self._clock.sleep(wait_ms / 1000)
        deadline = self._clock.now_ms() + REPLAY_BUDGET_MS
        for shard in sorted(subscription.replaying, key=int):
            try:
                self._replay_shard(subscription, int(shard), deadline_ms=deadline)
            except Conflict:
                continue
        return self._find(subscription.topic, subscription.name) or subscription

    def _replay_shard(
        self, subscription: Subscription, shard: int, *, deadline_ms: int | None = None
    ) -> None:
        """Refer what one shard of the topic's log holds from the subscription's start up to
        `live_from` (filter and selector applied) to its queue, then mark the shard done.

        One worker at a time (a conditional claim); Conflict while another holds it (the
        dispatch function's batch is retried), nothing if it is done already. Every
        REPLAY_CHUNK log items it records how far it went (`replay_at`), so a worker that
        stops (its Lambda timed out, or past `deadline_ms`: it hands the shard back) is
        resumed there, not from the start.
        """
        if self._replayer is None:
            return
        now = self._clock.now_ms()
        claim = now + REPLAY_CLAIM_MS
        key = to_wire(_key(subscription.topic, subscription.name))
        names_ = {"#r": "replaying", "#a": "replay_at", "#s": str(shard)}
        try:
            with translated_errors():
                claimed = self._db.update_item(
                    TableName=self._destinations,
                    Key=key,
                    UpdateExpression="SET #r.#s = :claim",
                    ConditionExpression="#r.#s < :now AND created_at = :created",
                    ExpressionAttributeNames={"#r": "replaying", "#s": str(shard)},
                    ExpressionAttributeValues=to_wire(
                        {":claim": claim, ":now": now, ":created": subscription.created_at}
                    ),
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            current = self._find(subscription.topic, subscription.name)
            if current is None or current.created_at != subscription.created_at:
                return
            if str(shard) in current.replaying:
                raise Conflict(
                    f"durable subscription {subscription.name!r} of {subscription.topic!r}: "
                    f"topic shard {shard} is being replayed; retry"
                ) from exc
            self._replayed(subscription, shard)
            return
        positions = from_wire(claimed["Attributes"]).get("replay_at") or {}
        position = str(positions.get(str(shard)) or "") or None

        def record(found: list[tuple[Item, list[int]]], *, done: bool = False) -> None:
            """Refer what was found, then note how far the replay went (or that it is done,
            or, past the deadline, hand the shard back); Conflict if the claim was lost."""
            nonlocal claim
            if found and found_queue is not None:
                self._replayer_of().append_replayed(found_queue, found)
            now_ms = self._clock.now_ms()
            stop = not done and deadline_ms is not None and now_ms >= deadline_ms
            values: dict[str, Any] = {":claim": claim}
            if done:
                update = "REMOVE #r.#s, #a.#s"
            else:
                values[":at"] = position or ""
                values[":next"] = 0 if stop else now_ms + REPLAY_CLAIM_MS
                update = "SET #r.#s = :next, #a.#s = :at"
            try:
                with translated_errors():
                    self._db.update_item(
                        TableName=self._destinations,
                        Key=key,
                        UpdateExpression=update,
                        ConditionExpression="#r.#s = :claim",
                        ExpressionAttributeNames=names_,
                        ExpressionAttributeValues=to_wire(values),
                    )
            except ClientError as exc:
                if is_condition_failure(exc):
                    raise Conflict(f"topic shard {shard}'s replay was taken over") from exc
                raise
            if stop:
                raise _ReplayPaused(shard)
            if not done:
                claim = int(values[":next"])

        found_queue = self._queues.find(subscription.queue)
        matcher = _matcher(subscription)
        found: list[tuple[Item, list[int]]] = []
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
                if found_queue is not None and int(image.get("x", 0)) > now // 1000:
                    opened = self._opened(subscription.topic, self._log.log_item(image))
                    slots = _selected(opened, matcher)
                    if slots:
                        found.append((image, slots))
                if read % REPLAY_CHUNK == 0:
                    record(found)
                    found = []
            record(found, done=True)
        except _ReplayPaused:
            return
        self._replayed(subscription, shard)

    def _replayer_of(self) -> Replayer:
        assert self._replayer is not None  # checked before the claim
        return self._replayer()

    def _replayed(self, subscription: Subscription, shard: int) -> None:
        """Note in the cached view that a shard's replay is done."""
        key = (subscription.topic, subscription.name)
        subscription.replaying.pop(str(shard), None)
        with self._lock:
            if self._index is not None and key in self._index[2]:
                cached = self._index[2][key][0]
                cached.replaying.pop(str(shard), None)

    def _opened(self, topic: str, item: LogItem) -> list[tuple[dict[str, str], Lookup] | None]:
        """Each body's attributes and selector lookup; None for one that fails
        authentication (logged: delivered to no one, as retrying cannot help)."""
        now = self._clock.now_ms()
        opened_bodies: list[tuple[dict[str, str], Lookup] | None] = []
        for slot in range(len(item.bodies)):
            try:
                opened = open_logged(self._cipher, item, slot, now_ms=now)
            except IntegrityError as exc:
                logger.error(
                    "published message failed authentication; delivered to no one",
                    extra={
                        "topic": topic,
                        "message_id": keys.message_id(item.item, slot),
                        "reason": exc.message,
                    },
                )
                opened_bodies.append(None)
                continue
            lookup = message_lookup(
                message_id=keys.message_id(item.item, slot),
                sent_at=keys.id_time_ms(item.item),
                attributes=opened.headers.attributes,
                correlation_id=opened.headers.correlation_id,
                priority=opened.headers.priority,
            )
            opened_bodies.append((dict(opened.headers.attributes), lookup))
        return opened_bodies

    def _matching(self, topic: str) -> list[_Matcher]:
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
            by_key[key] = _matcher(subscription)
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
            values.setdefault("selector", None)
            found.append(
                Subscription.model_validate(
                    {k: v for k, v in values.items() if k not in ("pk", "sk", "kind")}
                )
            )
        return found


class _ReplayPaused(Exception):
    """A replay handed its shard back at its deadline (the next worker resumes it)."""


def _matcher(subscription: Subscription) -> _Matcher:
    """A subscription with its filter policy and selector parsed."""
    policy = (
        None
        if subscription.filter_policy is None
        else FilterPolicy.parse(subscription.filter_policy)
    )
    selector = None if subscription.selector is None else selectors.parse(subscription.selector)
    return subscription, policy, selector


def _selected(
    opened: Sequence[tuple[dict[str, str], Lookup] | None], matcher: _Matcher
) -> list[int]:
    """The slots of a log item whose bodies a subscription's filter and selector take."""
    _, policy, selector = matcher
    return [
        slot
        for slot, body in enumerate(opened)
        if body is not None
        and (policy is None or policy.matches(body[0]))
        and (selector is None or selector.matches(body[1]))
    ]


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


def _key(topic: str, name: str) -> dict[str, str]:
    return {"pk": SUBSCRIPTION_PARTITION, "sk": f"{topic}#{name}"}


def _subscription(values: Item) -> Subscription:
    values.setdefault("filter_policy", None)
    values.setdefault("selector", None)
    return Subscription.model_validate(values)


def _what(topic: str, name: str) -> str:
    return f"durable subscription {name!r} of {topic!r}"
