"""Queue administration: list, create, change, read, delete, purge, redrive."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from mqless import wiring
from mqless.domain.models import QueueSettings, RedriveResult
from mqless.transports.http.models.queues import PurgeResponse, QueueList, QueueView, RedriveRequest
from mqless.transports.http.routes.common import QueueName, caller, content, json_response

router = Router()


@router.get("/queues", summary="List queues", tags=["queues"])
def list_queues() -> QueueList:
    configs = wiring.queue_service().list_queues(caller(router))
    return QueueList(queues=[QueueView.of(c) for c in configs])


@router.put(
    "/queues/<name>",
    summary="Create a queue or replace its settings",
    tags=["queues"],
    responses={
        200: content(QueueView, "Settings replaced"),
        201: content(QueueView, "Created"),
    },
)
def put_queue(
    name: QueueName, settings: Annotated[QueueSettings | None, Body()] = None
) -> Response[str]:
    # `curl -X PUT .../queues/orders` with no body creates the queue with defaults
    config, created = wiring.queue_service().put_queue(
        caller(router), name, settings or QueueSettings()
    )
    return json_response(201 if created else 200, QueueView.of(config))


@router.patch(
    "/queues/<name>",
    summary="Change some of a queue's settings",
    description="Only the settings in the body change; the others keep their values (SQS's "
    "SetQueueAttributes). PUT replaces them all.",
    tags=["queues"],
)
def update_queue(name: QueueName, changes: Annotated[QueueSettings, Body()]) -> QueueView:
    return QueueView.of(wiring.queue_service().update_queue(caller(router), name, changes))


@router.get("/queues/<name>", summary="A queue's settings and counts", tags=["queues"])
def get_queue(name: QueueName) -> QueueView:
    config, counts = wiring.queue_service().get_queue(caller(router), name)
    return QueueView.of(config, counts)


@router.delete(
    "/queues/<name>",
    summary="Delete a queue and its messages",
    tags=["queues"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_queue(name: QueueName) -> Response[str]:
    wiring.queue_service().delete_queue(caller(router), name)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@router.post("/queues/<name>/purge", summary="Delete every message", tags=["queues"])
def purge(name: QueueName) -> PurgeResponse:
    return PurgeResponse(purged=wiring.queue_service().purge(caller(router), name))


@router.post(
    "/queues/<name>/redrive",
    summary="Move messages from a dead-letter queue back to their source",
    tags=["queues"],
)
def redrive(
    name: QueueName, request: Annotated[RedriveRequest | None, Body()] = None
) -> RedriveResult:
    request = request or RedriveRequest()
    return wiring.queue_service().redrive(
        caller(router), name, max_messages=request.max_messages, destination=request.destination
    )
