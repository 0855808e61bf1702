"""Operations: the overview, a queue's stats, presence, open connections, history."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from mqless import wiring
from mqless.domain import names
from mqless.domain.access.principals import EVERY_DESTINATION, Action
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

router = Router()


MAX_OVERVIEW_QUEUES = 100


@router.get("/stats", summary="Every queue's counts, topics and connections", tags=["operations"])
def overview() -> Overview:
    principal = caller(router)
    queues = wiring.queue_service()
    sessions = wiring.sessions()
    stats = {}
    configs = queues.list_queues(principal)
    for config in configs[:MAX_OVERVIEW_QUEUES]:
        consumers = len(sessions.consumers.consumers(config.name))
        stats[config.name] = queues.stats(principal, config.name, consumers=consumers)
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
    topics = [
        TopicStats(
            pattern=pattern,
            subscriptions=durable.get(pattern, []),
            live_subscribers=live.get(pattern, 0),
        )
        for pattern in sorted(set(live) | set(durable))
    ]
    sees_all = wiring.policy().permits(principal, Action.ADMIN, EVERY_DESTINATION)
    return Overview(
        queues=list(stats.values()),
        truncated=len(configs) > MAX_OVERVIEW_QUEUES,
        topics=topics,
        connections=sessions.live.count_connections() if sees_all else None,
    )


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
