"""A queue's messages: send, receive, ack, nack, visibility; browse, delete and move one."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from mqless import wiring
from mqless.transports.http.models.messages import (
    AckRequest,
    AckResponse,
    BrowseResponse,
    MessageOut,
    MoveRequest,
    MoveResponse,
    NackRequest,
    NackResponse,
    ReceiveRequest,
    ReceiveResponse,
    VisibilityRequest,
    VisibilityResponse,
)
from mqless.transports.http.models.sending import (
    BatchResultEntry,
    SendBatchRequest,
    SendBatchResponse,
    SendMessageResponse,
)
from mqless.transports.http.routes.common import (
    MessageId,
    QueueName,
    caller,
    content,
    decoded_entries,
    sent,
    settled,
)
from mqless.transports.send_request import SendMessageRequest

router = Router()


@router.post(
    "/queues/<name>/messages",
    summary="Send a message",
    tags=["messages"],
    responses={201: content(SendMessageResponse, "Accepted")},
)
def send(name: QueueName, request: Annotated[SendMessageRequest, Body()]) -> Response[str]:
    return sent(router, "queue", name, request)


@router.post(
    "/queues/<name>/messages/batch",
    summary="Send up to 10 messages; each entry succeeds or fails on its own",
    tags=["messages"],
)
def send_batch(name: QueueName, request: Annotated[SendBatchRequest, Body()]) -> SendBatchResponse:
    principal = caller(router)
    wiring.queue_service().check_send(principal, name)  # refused: 403 whatever the entries
    entries, decode_failures = decoded_entries(request)
    if entries:
        done, failed = wiring.queue_service().send_batch(principal, name, entries)
    else:
        done, failed = [], []
    return SendBatchResponse(
        successful=[BatchResultEntry(id=i, **r.model_dump()) for i, r in done],
        failed=decode_failures + failed,
    )


@router.post("/queues/<name>/receive", summary="Lease up to 10 messages", tags=["messages"])
def receive(
    name: QueueName, request: Annotated[ReceiveRequest | None, Body()] = None
) -> ReceiveResponse:
    # every field has a default, so a bare `curl -X POST .../receive` is a valid receive
    request = request or ReceiveRequest()
    service = wiring.queue_service()
    if request.ack is None:
        deliveries = service.receive(
            caller(router),
            name,
            max_messages=request.max_messages,
            wait_seconds=request.wait_seconds,
            visibility_timeout=request.visibility_timeout,
        )
        return ReceiveResponse(messages=[MessageOut.of(d) for d in deliveries])
    # ack and take the next: a stale receipt fails alone, as in a batch ack; the receive
    # answers 200 whatever the acks did
    result = service.ack_and_receive(
        caller(router),
        name,
        request.ack,
        max_messages=request.max_messages,
        wait_seconds=request.wait_seconds,
        visibility_timeout=request.visibility_timeout,
    )
    return ReceiveResponse(
        messages=[MessageOut.of(d) for d in result.messages],
        acked=result.acked,
        failed=result.failed,
    )


@router.post(
    "/queues/<name>/ack",
    summary="Acknowledge (delete) leased messages",
    tags=["messages"],
    responses={200: content(AckResponse, "Acknowledged (failed lists any that were not)")},
)
def ack(name: QueueName, request: Annotated[AckRequest, Body()]) -> Response[str]:
    done, failed = wiring.queue_service().ack(caller(router), name, request.receipts)
    return settled(done, failed, AckResponse, "acked")


@router.post(
    "/queues/<name>/nack",
    summary="Release leased messages now or after a delay",
    tags=["messages"],
    responses={200: content(NackResponse, "Released (failed lists any that were not)")},
)
def nack(name: QueueName, request: Annotated[NackRequest, Body()]) -> Response[str]:
    done, failed = wiring.queue_service().nack(
        caller(router), name, request.receipts, request.delay_seconds
    )
    return settled(done, failed, NackResponse, "released")


@router.post(
    "/queues/<name>/visibility",
    summary="Extend or shorten leases",
    tags=["messages"],
    responses={200: content(VisibilityResponse, "Changed (failed lists any that were not)")},
)
def visibility(name: QueueName, request: Annotated[VisibilityRequest, Body()]) -> Response[str]:
    done, failed = wiring.queue_service().change_visibility(
        caller(router), name, request.receipts, request.visibility_timeout
    )
    return settled(done, failed, VisibilityResponse, "changed")


@router.get(
    "/queues/<name>/messages",
    summary="Browse messages without leasing them",
    tags=["operations"],
)
def browse(
    name: QueueName,
    limit: Annotated[int, Query(ge=1, le=100, description="Messages per page.")] = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="From the last page.")] = None,
) -> BrowseResponse:
    messages, next_cursor = wiring.queue_service().browse(
        caller(router), name, limit=limit, cursor=cursor
    )
    return BrowseResponse(messages=messages, cursor=next_cursor)


@router.delete(
    "/queues/<name>/messages/<message_id>",
    summary="Delete one message",
    tags=["operations"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_message(name: QueueName, message_id: MessageId) -> Response[str]:
    wiring.queue_service().delete_message(caller(router), name, message_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@router.post(
    "/queues/<name>/messages/<message_id>/move",
    summary="Move or copy one message to another queue",
    tags=["operations"],
)
def move_message(
    name: QueueName, message_id: MessageId, request: Annotated[MoveRequest, Body()]
) -> MoveResponse:
    moved = wiring.queue_service().move_message(
        caller(router), name, message_id, to=request.to, copy=request.copy_only
    )
    return MoveResponse(message_id=moved)
