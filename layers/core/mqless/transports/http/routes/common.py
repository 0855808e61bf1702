"""What every route module shares: the caller, path parameters, JSON responses."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from mqless import wiring
from mqless.domain.access.principals import Principal
from mqless.domain.errors import MqlessError
from mqless.domain.messages import NewMessage
from mqless.domain.models import EntryFailure
from mqless.transports.http.caller import http_caller
from mqless.transports.http.models.problem import Problem
from mqless.transports.http.models.sending import SendBatchRequest, SendMessageResponse

if TYPE_CHECKING:  # the scheduler's package loads with the first scheduled send
    from mqless.domain.scheduling.rules import Kind
    from mqless.transports.send_request import SendMessageRequest

QueueName = Annotated[
    str, Path(description="Queue name: 1-80 of A-Z a-z 0-9 _ . - (`.fifo` = FIFO).")
]
MessageId = Annotated[str, Path(max_length=100, description="The message's id.")]
TopicName = Annotated[
    str,
    Path(
        description="Topic: segments of A-Z a-z 0-9 _ - joined by `.` (patterns may use "
        "`*` for one segment and a final `>` for the rest; percent-encode them)."
    ),
]


def caller(router: Router) -> Principal:
    """The caller of the request `router` is resolving, from the authorizer's context.

    Unauthorized when there is none. An included router reads the event from the resolver
    that included it.
    """
    return http_caller(
        router.current_event.raw_event,
        required=wiring.auth_required(),
        # built with the first IAM caller: the authentication and principals' modules it
        # loads (~4 ms CPU cold) are nothing any other caller's request uses (issue 18)
        iam=lambda user_arn: wiring.iam_principals().principal(user_arn),
        now_s=wiring.clock().now_ms() / 1000,
    )


def sent(router: Router, kind: Kind, name: str, request: SendMessageRequest) -> Response[str]:
    """201 with what a send (or a publish) of `request` to `name` did: sent now, or delayed
    within 15 minutes (the log item's own delay), by the queue (topic) service; on a
    schedule by the scheduler, which loads with the first scheduled one, as on the
    WebSocket API (its modules, ~3 ms CPU cold, are nothing a plain send uses: issue 18)."""
    message, rule = request.to_scheduled()
    principal = caller(router)
    if rule is not None:
        result = wiring.scheduler().send(principal, kind, name, message, rule)
    elif kind == "topic":
        result = wiring.topic_service().publish(principal, name, message)
    else:
        result = wiring.queue_service().send(principal, name, message)
    return json_response(201, SendMessageResponse(**result.model_dump()))


def json_response(status: int, model: Any) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump_json(),
    )


def settled(done: list[str], failed: list[EntryFailure], model: Any, field: str) -> Response[str]:
    """200 unless every receipt failed; then the first failure's status (409 stale, 400 bad).

    A total failure is an error response, so it is a problem body too (`error`, `message`),
    with the per-receipt results alongside.
    """
    result = model(**{field: done, "failed": failed})
    if not failed or done:
        return json_response(200, result)
    first = failed[0]
    status = 409 if first.error == "stale_receipt" else 400
    problem = Problem(error=first.error, message=first.message).model_dump(exclude_none=True)
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({**problem, **result.model_dump(mode="json")}, separators=(",", ":")),
    )


def content(model: type[Any], description: str) -> OpenAPIResponse:
    """An OpenAPI response whose body is `model` (for routes that return a raw Response)."""
    return {"description": description, "content": {"application/json": {"model": model}}}


def decoded_entries(
    request: SendBatchRequest,
) -> tuple[list[tuple[str, NewMessage]], list[EntryFailure]]:
    """Decode each entry's body; an entry that does not decode fails alone."""
    entries: list[tuple[str, NewMessage]] = []
    failures: list[EntryFailure] = []
    for entry in request.entries:
        try:
            entries.append((entry.id, entry.to_message()))
        except MqlessError as exc:
            failures.append(EntryFailure(id=entry.id, error=exc.code, message=exc.message))
    return entries, failures
