"""Bodies of the operations routes (issue #5): the overview, connections, presence."""

from __future__ import annotations

from pydantic import Field

from mqless.domain.models import QueueStats
from mqless.transports.http.models.body import Body


class TopicStats(Body):
    pattern: str
    subscriptions: list[dict[str, str]] = Field(
        description="Durable subscriptions declared on this pattern: name and queue."
    )
    live_subscribers: int


class Overview(Body):
    queues: list[QueueStats] = Field(
        description="One page of the queues the caller administers, by name (`limit` of them)."
    )
    truncated: bool = Field(description="More queues follow this page (ask for `cursor`'s).")
    cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page; null on the last page.",
    )
    total: int = Field(
        default=0, description="How many queues there are in all (of the `name` asked for)."
    )
    topics: list[TopicStats]
    connections: int | None = Field(
        description="Open WebSocket connections; null unless the caller administers everything."
    )


class SubscriptionRef(Body):
    """One subscription of a connection, as its client named it."""

    id: str = Field(description="The client's subscription id.")
    kind: str = Field(description="topic (live) or queue (push consumer)")
    destination: str = Field(description="`/topic/<pattern>` or `/queue/<name>`")


class ConnectionView(Body):
    id: str
    protocol: str
    principal: str
    connected_at: int = Field(description="Epoch milliseconds.")
    subscriptions: int = Field(description="How many subscriptions (subscribed_to lists them).")
    subscribed_to: list[SubscriptionRef] = Field(default_factory=list)


class ConnectionList(Body):
    connections: list[ConnectionView]


class QueuePresence(Body):
    queue: str
    consumers: int = Field(
        description="Push consumers now (WebSocket subscriptions, STOMP or JSON; the "
        "subscriber of a durable topic subscription counts on its queue)."
    )


class DurablePresenceView(Body):
    name: str
    queue: str
    consumers: int = Field(description="Push consumers of the subscription's queue now.")


class TopicPresenceView(Body):
    topic: str
    consumers: int = Field(
        description="Live subscribers plus the consumers of the durable subscriptions."
    )
    live_subscribers: int = Field(description="Live subscriptions whose pattern matches the topic.")
    durable_subscriptions: list[DurablePresenceView] = Field(
        description="Durable subscriptions whose pattern matches the topic."
    )
