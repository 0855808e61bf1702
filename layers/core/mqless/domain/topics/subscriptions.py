"""Managing durable subscriptions: operators create and replace them, consumers attach to
their own (STOMP and JSON `durable`, as on ActiveMQ), owners and admins delete them.

Every write is conditional (`storage/subscriptions.py`): whatever another request does
meanwhile, a write that would act on what it did not read fails and is looked at again.
The creator owns a subscription and is charged for it (`quotas.py`).
"""

from __future__ import annotations

from typing import Any

from mqless.domain import names, selectors
from mqless.domain.access.principals import Action, Policy, Principal
from mqless.domain.access.quotas import Quota, Quotas
from mqless.domain.clock import Clock
from mqless.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from mqless.domain.topics.filter_policies import FilterPolicy
from mqless.domain.topics.patterns import validate_topic_pattern
from mqless.domain.topics.replay import REPLAY_JOIN_MS, TOPIC_SHARDS, Replay
from mqless.domain.topics.routing import MatchingSubscriptions
from mqless.domain.topics.subscription import (
    Subscription,
    SubscriptionSettings,
    describe,
    parse_start,
)
from mqless.domain.wildcards import has_wildcard
from mqless.observability import audit
from mqless.storage.destinations import QueueRegistry
from mqless.storage.subscriptions import SubscriptionStore

WRITE_ATTEMPTS = 3


class DurableSubscriptions:
    """Durable subscriptions: create, replace, attach, delete, list."""

    def __init__(
        self,
        store: SubscriptionStore,
        queues: QueueRegistry,
        clock: Clock,
        policy: Policy,
        quotas: Quotas,
        matching: MatchingSubscriptions,
        replay: Replay,
    ) -> None:
        self._store = store
        self._queues = queues
        self._clock = clock
        self._policy = policy
        self._quotas = quotas
        self._matching = matching
        self._replay = replay

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
        existing = self._store.find(topic, name)
        if existing is not None:
            settings = SubscriptionSettings(queue=name, selector=selector)
            return self._reattach(principal, existing, settings)
        self._policy.check(principal, Action.CREATE, topic)
        charge = self._quotas.charge(principal, Quota.SUBSCRIPTIONS, 1, describe(topic, name))
        if charge is not None:
            used = self._store.subscriptions_charged(principal.id)
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
        replay_from = self._checked(principal, topic, name, settings, as_consumer=as_consumer)
        for _ in range(WRITE_ATTEMPTS):
            existing = self._store.find(topic, name)
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
                created = self._replay.finish(created)
            return created, True
        raise Conflict(f"{describe(topic, name)} is changing; retry")

    def _checked(
        self,
        principal: Principal,
        topic: str,
        name: str,
        settings: SubscriptionSettings,
        *,
        as_consumer: bool,
    ) -> int | None:
        """Refuse a subscribe the principal may not make or that cannot be made (the names,
        the queue, the filter, the selector, the start); where its replay starts, if any."""
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
            if has_wildcard(topic):
                raise InvalidRequest(
                    "start replays one topic's log: subscribe to a topic name, not a pattern"
                )
            # replaying hands over what was published before: the right to subscribe to it
            self._policy.check(principal, Action.RECEIVE, topic)
        self._queues.get(settings.queue)  # the queue must exist: QueueNotFound otherwise
        return replay_from

    def unsubscribe(
        self, principal: Principal, topic: str, name: str, *, as_consumer: bool = False
    ) -> None:
        """Delete a durable subscription (its queue and messages stay): `admin` on the topic,
        or, for a consumer (`receive` on the topic), being its owner."""
        validate_topic_pattern(topic)
        self._policy.check(principal, Action.RECEIVE if as_consumer else Action.ADMIN, topic)
        admin = self._policy.permits(principal, Action.ADMIN, topic)
        removed = self._store.delete(topic, name, owner=None if admin else principal.id)
        if removed is None:
            if self._store.find(topic, name) is None:
                raise NotFound(f"topic {topic!r} has no subscription {name!r}")
            raise Forbidden(
                f"{principal.id!r} may not delete durable subscription {name!r} of {topic!r}: "
                f"only its owner or an admin of {topic!r} may"
            )
        self._matching.forget()
        if removed.charged_to:
            self._store.credit(removed.charged_to)
        audit("subscription.delete", principal.id, topic, subscription=name)

    def subscriptions(self, principal: Principal, topic: str | None = None) -> list[Subscription]:
        """Durable subscriptions, all (those the principal administers) or those declared on
        `topic` (a name or pattern)."""
        if topic is not None:
            self._policy.check(principal, Action.ADMIN, topic)
        found = [
            s for s in self._store.all() if self._policy.permits(principal, Action.ADMIN, s.topic)
        ]
        return [s for s in found if topic is None or s.topic == topic]

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
        charge = self._quotas.charge(principal, Quota.SUBSCRIPTIONS, 1, describe(topic, name))
        if not self._store.create(subscription, charge):
            return None
        self._matching.forget()
        return subscription

    def _replace(
        self, existing: Subscription, settings: SubscriptionSettings
    ) -> Subscription | None:
        """`existing` with the new queue and filter; None if it changed since it was read."""
        selector = selectors.check(settings.selector)
        replaced = self._store.replace(existing, settings.queue, settings.filter_policy, selector)
        if replaced is not None:
            self._matching.forget()
        return replaced
