"""Routes of the HTTP API (Powertools resolver with pydantic validation and OpenAPI)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from mqless import __version__, runtime
from mqless.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    MqlessError,
    NotFound,
    PayloadTooLarge,
    Throttled,
)
from mqless.http.models import (
    AckRequest,
    AckResponse,
    BatchResultEntry,
    MessageOut,
    NackRequest,
    NackResponse,
    Problem,
    PurgeResponse,
    QueueList,
    QueueView,
    ReceiveRequest,
    ReceiveResponse,
    RedriveRequest,
    SendBatchRequest,
    SendBatchResponse,
    SendMessageRequest,
    SendMessageResponse,
    VisibilityRequest,
    VisibilityResponse,
)
from mqless.models import EntryFailure, QueueSettings, RedriveResult
from mqless.principals import ANONYMOUS, Principal

logger = Logger(service="mqless", child=True)

app = APIGatewayHttpResolver(enable_validation=True)

QueueName = Annotated[
    str, Path(description="Queue name: 1-80 of A-Z a-z 0-9 _ . - (`.fifo` = FIFO).")
]

# One mapping from the core's exceptions to HTTP statuses; the most specific class wins.
_STATUS: list[tuple[type[MqlessError], HTTPStatus]] = [
    (InvalidRequest, HTTPStatus.BAD_REQUEST),
    (Forbidden, HTTPStatus.FORBIDDEN),
    (NotFound, HTTPStatus.NOT_FOUND),
    (Conflict, HTTPStatus.CONFLICT),
    (PayloadTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (Throttled, HTTPStatus.TOO_MANY_REQUESTS),
]


def _problem(status: int, code: str, message: str, **extra: Any) -> Response[str]:
    headers = {"Retry-After": [str(extra.pop("retry_after"))]} if "retry_after" in extra else None
    body = Problem(error=code, message=message, details=extra.pop("details", None))
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
        headers=headers,
    )


def status_of(exc: MqlessError) -> int:
    """The HTTP status for a core error."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return int(status)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR)


@app.exception_handler(MqlessError)
def _core_error(exc: MqlessError) -> Response[str]:
    status = status_of(exc)
    if status >= 500:
        logger.exception("core error", extra={"code": exc.code})
    if isinstance(exc, Throttled):
        return _problem(status, exc.code, exc.message, retry_after=exc.retry_after_seconds)
    return _problem(status, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[str]:
    details = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
        details.append({"field": ".".join(loc) or "body", "problem": str(error.get("msg", ""))})
    if details and details[0]["problem"].startswith("JSON decode error"):
        return _problem(400, "invalid_request", "request body is not valid JSON")
    first = details[0] if details else {"field": "body", "problem": "invalid"}
    return _problem(
        400, "invalid_request", f"{first['field']}: {first['problem']}", details=details
    )


@app.not_found
def _no_route(exc: NotFoundError) -> Response[str]:
    path = app.current_event.raw_path if app.current_event else "?"
    return _problem(404, "no_such_route", f"no route for {path}")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    logger.exception("unhandled error")
    return _problem(500, "internal_error", "the broker failed; the request may be retried")


def _principal() -> Principal:
    """The caller, from the authorizer context once authentication is configured."""
    return ANONYMOUS


def _json(status: int, model: Any) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump_json(),
    )


def _settled(done: list[str], failed: list[EntryFailure], model: Any, field: str) -> Response[str]:
    """200 unless every receipt failed; then the first failure's status (409 stale, 400 bad)."""
    status = 200
    if failed and not done:
        status = 409 if failed[0].error == "stale_receipt" else 400
    return _json(status, model(**{field: done, "failed": failed}))


# ---- queue admin ------------------------------------------------------------------------


@app.get("/queues", summary="List queues", tags=["queues"])
def list_queues() -> QueueList:
    configs = runtime.queue_service().list_queues(_principal())
    return QueueList(queues=[QueueView.of(c) for c in configs])


@app.put(
    "/queues/<name>",
    summary="Create a queue or replace its settings",
    tags=["queues"],
    responses={200: {"description": "Settings replaced"}, 201: {"description": "Created"}},
)
def put_queue(name: QueueName, settings: Annotated[QueueSettings, Body()]) -> Response[str]:
    config, created = runtime.queue_service().put_queue(_principal(), name, settings)
    return _json(201 if created else 200, QueueView.of(config))


@app.get("/queues/<name>", summary="A queue's settings and counts", tags=["queues"])
def get_queue(name: QueueName) -> QueueView:
    config, counts = runtime.queue_service().get_queue(_principal(), name)
    return QueueView.of(config, counts)


@app.delete(
    "/queues/<name>",
    summary="Delete a queue and its messages",
    tags=["queues"],
    responses={204: {"description": "Deleted"}},
)
def delete_queue(name: QueueName) -> Response[str]:
    runtime.queue_service().delete_queue(_principal(), name)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@app.post("/queues/<name>/purge", summary="Delete every message", tags=["queues"])
def purge(name: QueueName) -> PurgeResponse:
    return PurgeResponse(purged=runtime.queue_service().purge(_principal(), name))


@app.post(
    "/queues/<name>/redrive",
    summary="Move messages from a dead-letter queue back to their source",
    tags=["queues"],
)
def redrive(name: QueueName, request: Annotated[RedriveRequest, Body()]) -> RedriveResult:
    return runtime.queue_service().redrive(
        _principal(), name, max_messages=request.max_messages, destination=request.destination
    )


# ---- messages ------------------------------------------------------------------------------


@app.post(
    "/queues/<name>/messages",
    summary="Send a message",
    tags=["messages"],
    responses={201: {"description": "Accepted"}},
)
def send(name: QueueName, request: Annotated[SendMessageRequest, Body()]) -> Response[str]:
    result = runtime.queue_service().send(_principal(), name, request.to_message())
    return _json(201, SendMessageResponse(**result.model_dump()))


@app.post(
    "/queues/<name>/messages/batch",
    summary="Send up to 10 messages; each entry succeeds or fails on its own",
    tags=["messages"],
)
def send_batch(name: QueueName, request: Annotated[SendBatchRequest, Body()]) -> SendBatchResponse:
    entries = []
    decode_failures: list[EntryFailure] = []
    for entry in request.entries:
        try:
            entries.append((entry.id, entry.to_message()))
        except MqlessError as exc:
            decode_failures.append(EntryFailure(id=entry.id, error=exc.code, message=exc.message))
    if entries:
        done, failed = runtime.queue_service().send_batch(_principal(), name, entries)
    else:
        done, failed = [], []
    return SendBatchResponse(
        successful=[BatchResultEntry(id=i, **r.model_dump()) for i, r in done],
        failed=decode_failures + failed,
    )


@app.post("/queues/<name>/receive", summary="Lease up to 10 messages", tags=["messages"])
def receive(name: QueueName, request: Annotated[ReceiveRequest, Body()]) -> ReceiveResponse:
    deliveries = runtime.queue_service().receive(
        _principal(),
        name,
        max_messages=request.max_messages,
        wait_seconds=request.wait_seconds,
        visibility_timeout=request.visibility_timeout,
    )
    return ReceiveResponse(messages=[MessageOut.of(d) for d in deliveries])


@app.post("/queues/<name>/ack", summary="Acknowledge (delete) leased messages", tags=["messages"])
def ack(name: QueueName, request: Annotated[AckRequest, Body()]) -> Response[str]:
    done, failed = runtime.queue_service().ack(_principal(), name, request.receipts)
    return _settled(done, failed, AckResponse, "acked")


@app.post(
    "/queues/<name>/nack",
    summary="Release leased messages now or after a delay",
    tags=["messages"],
)
def nack(name: QueueName, request: Annotated[NackRequest, Body()]) -> Response[str]:
    done, failed = runtime.queue_service().nack(
        _principal(), name, request.receipts, request.delay_seconds
    )
    return _settled(done, failed, NackResponse, "released")


@app.post("/queues/<name>/visibility", summary="Extend or shorten leases", tags=["messages"])
def visibility(name: QueueName, request: Annotated[VisibilityRequest, Body()]) -> Response[str]:
    done, failed = runtime.queue_service().change_visibility(
        _principal(), name, request.receipts, request.visibility_timeout
    )
    return _settled(done, failed, VisibilityResponse, "changed")


# ---- the API describing itself --------------------------------------------------------------


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    document = app.get_openapi_json_schema(
        title="mqless",
        version=__version__,
        description="Queues with acks, redelivery, dead letters and FIFO groups, "
        'serverless on AWS. Errors are JSON problems: {"error", "message"}.',
    )
    # Every route may answer with a problem body; say so once for all of them.
    parsed = json.loads(document)
    parsed.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
        Problem.model_json_schema()
    )
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(parsed)
    )
