"""Presence: how many consumers a destination has now, over HTTP and as advisory topics.

A queue's consumers are its push consumers (WebSocket subscriptions, STOMP or JSON; a
durable topic subscription's subscriber is a push consumer of its queue). A topic's are its
live subscribers whose pattern matches it, and the push consumers of the durable
subscriptions that match it. HTTP receivers come and go with each request and are not
counted (SQS has no notion of them either).

Advisories, as ActiveMQ names them: whenever a push consumer or a live topic subscription
starts or stops, the broker publishes to `ActiveMQ.Advisory.Consumer.Queue.<queue>` or
`ActiveMQ.Advisory.Consumer.Topic.<pattern>` a message whose `consumerCount` header
(attribute) is the destination's count after the change and whose `advisoryType` is
`ConsumerInfo` (started) or `RemoveInfo` (stopped); its body is the same as JSON. It is
published only when someone listens (a live subscription whose pattern starts with
`ActiveMQ.`, or a durable one, matches the advisory topic): otherwise a subscribe costs no
write for it, and one query of the few live subscriptions under `ActiveMQ.`. Advisories for advisory
topics are not made, and none for a name too long for a topic name.
"""

from __future__ import annotations

import json
from collections.abc import Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

from aws_lambda_powertools import Logger

from mqless.domain.errors import InvalidRequest
from mqless.domain.messages import NewMessage
from mqless.domain.topics.patterns import validate_topic_name

if TYPE_CHECKING:
    from mqless.domain.push.consumers import QueueConsumers
    from mqless.domain.topics.service import TopicService

logger = Logger(service="mqless", child=True)

ADVISORY_PREFIX: Final = "ActiveMQ.Advisory."
CONSUMER_ADVISORY: Final = ADVISORY_PREFIX + "Consumer."
LISTENER_PREFIX: Final = "ActiveMQ."  # live subscriptions that may listen to advisories
Kind = Literal["Queue", "Topic"]


class LiveMatches(Protocol):
    def match(self, topic: str) -> Sized:
        """The live subscriptions whose pattern matches `topic`."""


class LiveSubscribers(Protocol):
    """What presence reads of the live topic subscriptions (the WebSocket transport's)."""

    def index(self, prefix: str | None = None) -> LiveMatches:
        """Every live subscription (or those whose pattern starts with `prefix`)."""

    def live_counts(self) -> dict[str, int]:
        """Live subscriptions per topic pattern."""


def advisory_topic(kind: Kind, name: str) -> str | None:
    """The advisory topic of a destination; None where none is made (see above)."""
    if name.startswith(ADVISORY_PREFIX):
        return None
    topic = f"{CONSUMER_ADVISORY}{kind}.{name}"
    try:
        validate_topic_name(topic)
    except InvalidRequest:
        return None  # a wildcard pattern, or longer than a topic name may be
    return topic


@dataclass(frozen=True)
class DurablePresence:
    name: str
    queue: str
    consumers: int


@dataclass(frozen=True)
class TopicPresence:
    topic: str
    live_subscribers: int
    durable: tuple[DurablePresence, ...]

    @property
    def consumers(self) -> int:
        return self.live_subscribers + sum(d.consumers for d in self.durable)


class Presence:
    """Counts consumers and announces changes on advisory topics."""

    def __init__(
        self, live: LiveSubscribers, consumers: QueueConsumers, topics: TopicService
    ) -> None:
        self._live = live
        self._consumers = consumers
        self._topics = topics

    def queue(self, queue: str) -> int:
        """The queue's push consumers now (one read of its consumer partition)."""
        return len(self._consumers.consumers(queue))

    def topic(self, topic: str) -> TopicPresence:
        """The topic's live subscribers and durable subscriptions (with their consumers)."""
        live = len(self._live.index().match(topic))
        durable = tuple(
            DurablePresence(s.name, s.queue, self.queue(s.queue))
            for s in self._topics.matching(topic)
        )
        return TopicPresence(topic=topic, live_subscribers=live, durable=durable)

    def changed(self, kind: Kind, name: str, *, started: bool) -> None:
        """Announce a consumer that started or stopped, if anyone listens. Never raises:
        an advisory lost is logged, and the subscribe or unsubscribe stands."""
        advisory = advisory_topic(kind, name)
        if advisory is None:
            return
        try:
            # only subscriptions under `ActiveMQ.` are read (not the whole live partition), so
            # a `>` subscriber neither costs this read nor makes advisories on its own
            listening = self._live.index(prefix=LISTENER_PREFIX).match(advisory)
            if not listening and not self._topics.matching(advisory):
                return
            count = self.queue(name) if kind == "Queue" else self._live_count(name)
            event = "ConsumerInfo" if started else "RemoveInfo"
            destination = f"/{kind.lower()}/{name}"
            body = {"destination": destination, "consumerCount": count, "advisoryType": event}
            message = NewMessage(
                body=json.dumps(body).encode(),
                content_type="application/json",
                attributes={"consumerCount": str(count), "advisoryType": event},
            )
            self._topics.publish_advisory(advisory, message)
        except Exception:
            logger.exception("an advisory could not be published", extra={"topic": advisory})

    def _live_count(self, pattern: str) -> int:
        """Live subscriptions to exactly this pattern (a durable subscription's subscriber
        is a consumer of its queue, announced as the queue's)."""
        return self._live.live_counts().get(pattern, 0)
