"""Topics: publish, and the durable subscriptions declared on a topic or pattern."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from mqless import wiring
from mqless.domain.topics.subscription import Subscription, SubscriptionSettings
from mqless.transports.http.models.sending import (
    BatchResultEntry,
    SendBatchRequest,
    SendBatchResponse,
    SendMessageResponse,
)
from mqless.transports.http.models.topics import SubscriptionList
from mqless.transports.http.routes.common import (
    TopicName,
    caller,
    content,
    decoded_entries,
    json_response,
    sent,
)
from mqless.transports.send_request import SendMessageRequest

router = Router()


@router.post(
    "/topics/<name>/messages",
    summary="Publish a message to a topic (written once, fanned out to subscriptions)",
    tags=["topics"],
    responses={201: content(SendMessageResponse, "Published")},
)
def publish(name: TopicName, request: Annotated[SendMessageRequest, Body()]) -> Response[str]:
    return sent(router, "topic", unquote(name), request)


@router.post(
    "/topics/<name>/messages/batch",
    summary="Publish up to 10 messages; each entry succeeds or fails on its own",
    tags=["topics"],
)
def publish_batch(
    name: TopicName, request: Annotated[SendBatchRequest, Body()]
) -> SendBatchResponse:
    principal = caller(router)
    wiring.topic_service().check_publish(principal, unquote(name))
    entries, decode_failures = decoded_entries(request)
    done, failed = (
        wiring.topic_service().publish_batch(principal, unquote(name), entries)
        if entries
        else ([], [])
    )
    return SendBatchResponse(
        successful=[BatchResultEntry(id=i, **r.model_dump()) for i, r in done],
        failed=decode_failures + failed,
    )


@router.get(
    "/topics/<name>/subscriptions",
    summary="Durable subscriptions declared on a topic or pattern",
    tags=["topics"],
)
def list_subscriptions(name: TopicName) -> SubscriptionList:
    found = wiring.topic_service().subscriptions(caller(router), unquote(name))
    return SubscriptionList(subscriptions=found)


@router.put(
    "/topics/<name>/subscriptions/<sub>",
    summary="Create or replace a durable subscription (topic or pattern -> queue)",
    tags=["topics"],
    responses={
        200: content(Subscription, "Replaced"),
        201: content(Subscription, "Created"),
    },
)
def put_subscription(
    name: TopicName,
    sub: Annotated[str, Path(description="Subscription name (like a queue name).")],
    settings: Annotated[SubscriptionSettings, Body()],
) -> Response[str]:
    found, created = wiring.topic_service().subscribe(caller(router), unquote(name), sub, settings)
    return json_response(201 if created else 200, found)


@router.delete(
    "/topics/<name>/subscriptions/<sub>",
    summary="Delete a durable subscription (its queue stays)",
    tags=["topics"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_subscription(name: TopicName, sub: str) -> Response[str]:
    wiring.topic_service().unsubscribe(caller(router), unquote(name), sub)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")
