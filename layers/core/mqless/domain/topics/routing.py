"""Which durable subscriptions a published message goes to: the subscriptions indexed by
pattern (cached for a few seconds), their filter policies and selectors parsed once, and
each body's opened attributes matched against them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from aws_lambda_powertools import Logger

from mqless.domain import selectors
from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError
from mqless.domain.selectors import Lookup, Selector, message_lookup
from mqless.domain.topics.filter_policies import FilterPolicy
from mqless.domain.topics.patterns import TopicIndex
from mqless.domain.topics.subscription import Subscription
from mqless.storage import keys
from mqless.storage.log import LogItem
from mqless.storage.sealing import BodyCipher, open_logged

logger = Logger(service="mqless", child=True)

CACHE_SECONDS = 5.0

Matcher = tuple[Subscription, FilterPolicy | None, Selector | None]
OpenedBody = tuple[dict[str, str], Lookup] | None
"""A body's attributes and selector lookup; None for one that failed authentication."""


def matcher(subscription: Subscription) -> Matcher:
    """A subscription with its filter policy and selector parsed."""
    policy = (
        None
        if subscription.filter_policy is None
        else FilterPolicy.parse(subscription.filter_policy)
    )
    selector = None if subscription.selector is None else selectors.parse(subscription.selector)
    return subscription, policy, selector


def selected(opened: Sequence[OpenedBody], chosen: Matcher) -> list[int]:
    """The slots of a log item whose bodies a subscription's filter and selector take."""
    _, policy, selector = chosen
    return [
        slot
        for slot, body in enumerate(opened)
        if body is not None
        and (policy is None or policy.matches(body[0]))
        and (selector is None or selector.matches(body[1]))
    ]


def opened_bodies(cipher: BodyCipher, topic: str, item: LogItem, now_ms: int) -> list[OpenedBody]:
    """Each body's attributes and selector lookup; None for one that fails authentication
    (logged: delivered to no one, as retrying cannot help)."""
    opened_bodies: list[OpenedBody] = []
    for slot in range(len(item.bodies)):
        try:
            opened = open_logged(cipher, item, slot, now_ms=now_ms)
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


class MatchingSubscriptions:
    """Every durable subscription indexed by pattern, read again after CACHE_SECONDS (or
    once forgotten, after a change this process made)."""

    def __init__(self, load: Callable[[], list[Subscription]], clock: Clock) -> None:
        self._load = load
        self._clock = clock
        self._lock = threading.Lock()
        self._index: tuple[int, TopicIndex, dict[tuple[str, str], Matcher]] | None = None

    def of(self, topic: str) -> list[Matcher]:
        """The subscriptions (with their parsed filters) a message to `topic` goes to."""
        index, by_key = self._cached()
        return [by_key[key] for key in sorted(index.match(topic))]

    def forget(self) -> None:
        with self._lock:
            self._index = None

    def replayed(self, subscription: Subscription, shard: int) -> None:
        """Note in the cached view that a shard's replay is done."""
        key = (subscription.topic, subscription.name)
        with self._lock:
            if self._index is not None and key in self._index[2]:
                cached = self._index[2][key][0]
                cached.replaying.pop(str(shard), None)

    def _cached(self) -> tuple[TopicIndex, dict[tuple[str, str], Matcher]]:
        now = self._clock.now_ms()
        with self._lock:
            if self._index is not None and now - self._index[0] < CACHE_SECONDS * 1000:
                return self._index[1], self._index[2]
        index = TopicIndex()
        by_key: dict[tuple[str, str], Matcher] = {}
        for subscription in self._load():
            key = (subscription.topic, subscription.name)
            index.add(subscription.topic, key)
            # policies are parsed once per cache refresh, not once per message
            by_key[key] = matcher(subscription)
        with self._lock:
            self._index = (now, index, by_key)
        return index, by_key
