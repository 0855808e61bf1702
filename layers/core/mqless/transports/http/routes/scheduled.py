"""Scheduled messages (ActiveMQ's scheduler: BROWSE and REMOVE) of queues and topics."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mqless import wiring
from mqless.transports.http.models.scheduled import ScheduledList
from mqless.transports.http.routes.common import QueueName, TopicName, caller

router = Router()


ScheduleId = Annotated[str, Path(max_length=100, description="The schedule's id (the send's).")]


@router.get(
    "/queues/<name>/scheduled",
    summary="List a queue's scheduled messages, soonest first",
    tags=["operations"],
)
def list_queue_schedules(name: QueueName) -> ScheduledList:
    return ScheduledList(scheduled=wiring.scheduler().list(caller(router), "queue", name))


@router.delete(
    "/queues/<name>/scheduled/<schedule_id>",
    summary="Cancel a scheduled message (its deliveries not yet sent)",
    tags=["operations"],
    responses={204: {"description": "Cancelled", "content": {}}},
)
def cancel_queue_schedule(name: QueueName, schedule_id: ScheduleId) -> Response[str]:
    wiring.scheduler().cancel(caller(router), "queue", name, schedule_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@router.get(
    "/topics/<name>/scheduled",
    summary="List a topic's scheduled messages, soonest first",
    tags=["operations"],
)
def list_topic_schedules(name: TopicName) -> ScheduledList:
    return ScheduledList(scheduled=wiring.scheduler().list(caller(router), "topic", unquote(name)))


@router.delete(
    "/topics/<name>/scheduled/<schedule_id>",
    summary="Cancel a scheduled topic message (its deliveries not yet sent)",
    tags=["operations"],
    responses={204: {"description": "Cancelled", "content": {}}},
)
def cancel_topic_schedule(name: TopicName, schedule_id: ScheduleId) -> Response[str]:
    wiring.scheduler().cancel(caller(router), "topic", unquote(name), schedule_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")
