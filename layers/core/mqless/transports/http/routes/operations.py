"""Operations: the overview, a queue's stats, presence, open connections, history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from mqless import wiring
from mqless.domain import names
from mqless.domain.access.principals import EVERY_DESTINATION, Action, Principal
from mqless.domain.models import QueueStats
from mqless.domain.topics.patterns import validate_topic_name
from mqless.observability.history import History
from mqless.transports.http.models.operations import (
    ConnectionList,
    ConnectionView,
    DurablePresenceView,
    Overview,
    QueuePresence,
    TopicPresenceView,
    TopicStats,
)
from mqless.transports.http.routes.common import QueueName, TopicName, caller

if TYPE_CHECKING:
    from mqless.transports.websocket.sessions import Sessions

router = Router()


MAX_OVERVIEW_QUEUES = 100
"""Queues a page of /stats counts at most: each costs about one read per index shard."""


@router.get(
    "/stats",
    summary="A page of the queues' counts, the topics and the connections",
    description="Queues by name, `limit` a page (each costs about one eventually consistent "
    "read per index shard, its dead-letter queue's included); `cursor` from the last page "
    "for the next. `limit=0`: only the topics and connections.",
    tags=["operations"],
)
def overview(
    limit: Annotated[
        int, Query(ge=0, le=MAX_OVERVIEW_QUEUES, description="Queues per page.")
    ] = MAX_OVERVIEW_QUEUES,
    cursor: Annotated[
        str | None, Query(max_length=80, description="From the last page: the next one.")
    ] = None,
    name: Annotated[
        str | None, Query(max_length=80, description="Only queues whose name contains this.")
    ] = None,
) -> Overview:
    principal = caller(router)
    sessions = wiring.sessions()
    page = wiring.queue_service().stats_page(
        principal,
        limit=limit,
        after=cursor,
        name_contains=name,
        # a count a poll shows for 2 s: eventually consistent (half the read units)
        consumers=lambda queue: len(sessions.consumers.consumers(queue, consistent=False)),
    )
    sees_all = wiring.policy().permits(principal, Action.ADMIN, EVERY_DESTINATION)
    return Overview(
        queues=page.queues,
        truncated=page.more,
        cursor=page.cursor,
        total=page.total,
        topics=_topics(principal, sessions),
        connections=sessions.live.count_connections() if sees_all else None,
    )


def _topics(principal: Principal, sessions: Sessions) -> list[TopicStats]:
    """Every topic pattern the principal administers with live or durable subscribers."""
    live = {
        pattern: count
        for pattern, count in sessions.live.live_counts().items()
        if wiring.policy().permits(principal, Action.ADMIN, pattern)
    }
    durable: dict[str, list[dict[str, str]]] = {}
    for subscription in wiring.topic_service().subscriptions(principal):
        durable.setdefault(subscription.topic, []).append(
            {"name": subscription.name, "queue": subscription.queue}
        )
    return [
        TopicStats(
            pattern=pattern,
            subscriptions=durable.get(pattern, []),
            live_subscribers=live.get(pattern, 0),
        )
        for pattern in sorted(set(live) | set(durable))
    ]


@router.get("/queues/<name>/stats", summary="A queue's counts and health", tags=["operations"])
def queue_stats(name: QueueName) -> QueueStats:
    consumers = len(wiring.sessions().consumers.consumers(name))
    return wiring.queue_service().stats(caller(router), name, consumers=consumers)


@router.get(
    "/queues/<name>/presence", summary="How many consumers a queue has now", tags=["presence"]
)
def queue_presence(name: QueueName) -> QueuePresence:
    """Anyone who may receive from the queue may ask (an unknown queue has none)."""
    names.validate_queue_name(name)
    wiring.policy().check(caller(router), Action.RECEIVE, name)
    return QueuePresence(queue=name, consumers=wiring.sessions().presence.queue(name))


@router.get(
    "/topics/<name>/presence", summary="How many subscribers a topic has now", tags=["presence"]
)
def topic_presence(name: TopicName) -> TopicPresenceView:
    """Anyone who may receive from the topic may ask."""
    topic = unquote(name)
    validate_topic_name(topic)
    wiring.policy().check(caller(router), Action.RECEIVE, topic)
    found = wiring.sessions().presence.topic(topic)
    return TopicPresenceView(
        topic=topic,
        consumers=found.consumers,
        live_subscribers=found.live_subscribers,
        durable_subscriptions=[
            DurablePresenceView(name=d.name, queue=d.queue, consumers=d.consumers)
            for d in found.durable
        ],
    )


@router.get("/connections", summary="Open WebSocket connections", tags=["operations"])
def connections() -> ConnectionList:
    wiring.policy().check(caller(router), Action.ADMIN, EVERY_DESTINATION)
    found = wiring.sessions().live.list_connections()
    return ConnectionList(connections=[ConnectionView(**c) for c in found])


ConnectionId = Annotated[
    str, Path(max_length=128, description="A connection's id, as GET /connections lists it.")
]


@router.delete(
    "/connections/<connection_id>",
    summary="Close a WebSocket connection (its leases go back to their queues at once)",
    tags=["operations"],
    responses={204: {"description": "Closed", "content": {}}},
)
def close_connection(connection_id: ConnectionId) -> Response[str]:
    principal = caller(router)
    wiring.policy().check(principal, Action.ADMIN, EVERY_DESTINATION)
    wiring.sessions().close_by_operator(unquote(connection_id), by=principal.id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@router.get(
    "/history",
    summary="Rates and depth over the last hour, and totals, of a queue, a topic or all",
    description="From the functions' CloudWatch metrics (GetMetricData): per-minute rates "
    "of sent (enqueued), delivered (dequeued), acked and dead-lettered messages, the depth "
    "the sweeper measures each minute, and totals since the queue was created (topics and "
    "the overall view: the last 15 days). Without `queue` or `topic`: every destination "
    "together, for those who administer everything.",
    tags=["operations"],
)
def history(
    queue: Annotated[str | None, Query(max_length=80, description="A queue's figures.")] = None,
    topic: Annotated[
        str | None, Query(max_length=250, description="A topic's figures (publish counts).")
    ] = None,
) -> History:
    return wiring.history().history(caller(router), queue=queue, topic=topic)
