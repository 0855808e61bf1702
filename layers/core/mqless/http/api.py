"""Routes of the HTTP API (Powertools resolver with pydantic validation and OpenAPI)."""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Mapping
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from mqless import __version__, names, runtime
from mqless.access import PrincipalView
from mqless.apikeys import IssuedKey
from mqless.auth import http_caller
from mqless.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    MqlessError,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    Throttled,
    Unauthorized,
)
from mqless.history import History
from mqless.http import console
from mqless.http.models import (
    AckRequest,
    AckResponse,
    BatchResultEntry,
    BrowseResponse,
    ConnectionList,
    ConnectionView,
    DurablePresenceView,
    KeyList,
    KeyRequest,
    MessageOut,
    MoveRequest,
    MoveResponse,
    NackRequest,
    NackResponse,
    Overview,
    PrincipalList,
    PrincipalRequest,
    Problem,
    PurgeResponse,
    QueueList,
    QueuePresence,
    QueueView,
    ReceiveRequest,
    ReceiveResponse,
    RedriveRequest,
    SendBatchRequest,
    SendBatchResponse,
    SendMessageRequest,
    SendMessageResponse,
    SubscriptionList,
    TopicPresenceView,
    TopicStats,
    VisibilityRequest,
    VisibilityResponse,
)
from mqless.models import EntryFailure, NewMessage, QueueSettings, QueueStats, RedriveResult
from mqless.principals import EVERY_DESTINATION, Action, Principal
from mqless.pubsub import Subscription, SubscriptionSettings
from mqless.topics import validate_topic_name

logger = Logger(service="mqless", child=True)


class PerThreadResolver(APIGatewayHttpResolver):
    """Powertools' HTTP resolver, keeping the request being resolved per thread.

    Powertools keeps the current event and route context on the resolver (and on its base
    class), which is right for Lambda, where one process handles one event at a time. The
    local runtime (`mqless dev`) serves requests on threads with one resolver; without
    this, overlapping requests read or clear each other's route arguments.
    """

    _local = threading.local()

    @property  # type: ignore[override]
    def current_event(self) -> APIGatewayProxyEventV2:
        event: APIGatewayProxyEventV2 = self._local.event
        return event

    @current_event.setter
    def current_event(self, event: APIGatewayProxyEventV2) -> None:
        self._local.event = event

    @property
    def lambda_context(self) -> Any:
        return getattr(self._local, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, context: Any) -> None:
        self._local.lambda_context = context

    @property
    def context(self) -> dict[str, Any]:
        found: dict[str, Any] | None = getattr(self._local, "context", None)
        if found is None:
            found = self._local.context = {}
        return found

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._local.context = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self._local.event = self._to_proxy_event(dict(event))
        self._local.lambda_context = context
        self._local.context = {}
        return super().resolve(event, context)


def client_json(text: str) -> Any:
    """A request body parsed as JSON; what the parser cannot hold is a JSONDecodeError.

    `json.loads` raises RecursionError for deep nesting (`[` x 100,000) and a plain
    ValueError for an integer over Python's 4,300-digit limit; Powertools turns only a
    JSONDecodeError into a validation error (our 400), so both become one.
    """
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise json.JSONDecodeError("nested too deeply", text, 0) from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise json.JSONDecodeError("a number has more than 4,300 digits", text, 0) from exc


app = PerThreadResolver(enable_validation=True, json_body_deserializer=client_json)

QueueName = Annotated[
    str, Path(description="Queue name: 1-80 of A-Z a-z 0-9 _ . - (`.fifo` = FIFO).")
]
MessageId = Annotated[str, Path(max_length=100, description="The message's id.")]

# One mapping from the core's exceptions to HTTP statuses; the most specific class wins.
_STATUS: list[tuple[type[MqlessError], HTTPStatus]] = [
    (InvalidRequest, HTTPStatus.BAD_REQUEST),
    (Unauthorized, HTTPStatus.UNAUTHORIZED),
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
    if isinstance(exc, QuotaExceeded):
        details = [{"quota": exc.quota, "limit": exc.limit}]
        return _problem(status, exc.code, exc.message, details=details)
    return _problem(status, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[str]:
    details = []
    for error in exc.errors():
        # Powertools puts the whole body at ("body",); a field of it at ("body", name, ...)
        loc = [str(p) for p in error.get("loc", ())]
        field = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "request body"
        problem = str(error.get("msg", "")).removeprefix("Value error, ")
        details.append({"field": field, "problem": problem})
    if details and details[0]["problem"].startswith("JSON decode error"):
        why = (exc.errors()[0].get("ctx") or {}).get("error")
        message = "request body is not valid JSON" + (f": {why}" if why else "")
        return _problem(400, "invalid_request", message[:300])
    first = details[0] if details else {"field": "request body", "problem": "invalid"}
    return _problem(
        400, "invalid_request", f"{first['field']}: {first['problem']}", details=details
    )


@app.not_found
def _no_route(exc: NotFoundError) -> Response[str]:
    path = app.current_event.raw_path if app.current_event else "?"
    return _problem(404, "no_such_route", f"no route for {path}")


def _unreadable_body() -> bool:
    """The event says its body is base64 but it does not decode to UTF-8 text."""
    try:
        app.current_event.decoded_body  # noqa: B018 - decoding is the check
    except (binascii.Error, UnicodeDecodeError):
        return True
    return False


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    # Powertools decodes a base64 body before validation and lets a bad one escape as a
    # plain ValueError; that is the client's mistake, not ours.
    if isinstance(exc, ValueError) and _unreadable_body():
        return _problem(400, "invalid_request", "request body is not base64-encoded UTF-8 text")
    logger.exception("unhandled error")
    return _problem(500, "internal_error", "the broker failed; the request may be retried")


def _principal() -> Principal:
    """The caller, from the authorizer's context (Unauthorized when there is none)."""
    return http_caller(
        app.current_event.raw_event,
        required=runtime.auth_required(),
        iam=runtime.iam_principals().principal,
        now_s=runtime.clock().now_ms() / 1000,
    )


def _json(status: int, model: Any) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump_json(),
    )


def _settled(done: list[str], failed: list[EntryFailure], model: Any, field: str) -> Response[str]:
    """200 unless every receipt failed; then the first failure's status (409 stale, 400 bad).

    A total failure is an error response, so it is a problem body too (`error`, `message`),
    with the per-receipt results alongside.
    """
    result = model(**{field: done, "failed": failed})
    if not failed or done:
        return _json(200, result)
    first = failed[0]
    status = 409 if first.error == "stale_receipt" else 400
    problem = Problem(error=first.error, message=first.message).model_dump(exclude_none=True)
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({**problem, **result.model_dump(mode="json")}, separators=(",", ":")),
    )


def _content(model: type[Any], description: str) -> OpenAPIResponse:
    """An OpenAPI response whose body is `model` (for routes that return a raw Response)."""
    return {"description": description, "content": {"application/json": {"model": model}}}


# ---- queue admin ------------------------------------------------------------------------


@app.get("/queues", summary="List queues", tags=["queues"])
def list_queues() -> QueueList:
    configs = runtime.queue_service().list_queues(_principal())
    return QueueList(queues=[QueueView.of(c) for c in configs])


@app.put(
    "/queues/<name>",
    summary="Create a queue or replace its settings",
    tags=["queues"],
    responses={
        200: _content(QueueView, "Settings replaced"),
        201: _content(QueueView, "Created"),
    },
)
def put_queue(
    name: QueueName, settings: Annotated[QueueSettings | None, Body()] = None
) -> Response[str]:
    # `curl -X PUT .../queues/orders` with no body creates the queue with defaults
    config, created = runtime.queue_service().put_queue(
        _principal(), name, settings or QueueSettings()
    )
    return _json(201 if created else 200, QueueView.of(config))


@app.patch(
    "/queues/<name>",
    summary="Change some of a queue's settings",
    description="Only the settings in the body change; the others keep their values (SQS's "
    "SetQueueAttributes). PUT replaces them all.",
    tags=["queues"],
)
def update_queue(name: QueueName, changes: Annotated[QueueSettings, Body()]) -> QueueView:
    return QueueView.of(runtime.queue_service().update_queue(_principal(), name, changes))


@app.get("/queues/<name>", summary="A queue's settings and counts", tags=["queues"])
def get_queue(name: QueueName) -> QueueView:
    config, counts = runtime.queue_service().get_queue(_principal(), name)
    return QueueView.of(config, counts)


@app.delete(
    "/queues/<name>",
    summary="Delete a queue and its messages",
    tags=["queues"],
    responses={204: {"description": "Deleted", "content": {}}},
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
def redrive(
    name: QueueName, request: Annotated[RedriveRequest | None, Body()] = None
) -> RedriveResult:
    request = request or RedriveRequest()
    return runtime.queue_service().redrive(
        _principal(), name, max_messages=request.max_messages, destination=request.destination
    )


# ---- messages ------------------------------------------------------------------------------


@app.post(
    "/queues/<name>/messages",
    summary="Send a message",
    tags=["messages"],
    responses={201: _content(SendMessageResponse, "Accepted")},
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
    principal = _principal()
    runtime.queue_service().check_send(principal, name)  # refused: 403 whatever the entries
    entries, decode_failures = _decoded_entries(request)
    if entries:
        done, failed = runtime.queue_service().send_batch(principal, name, entries)
    else:
        done, failed = [], []
    return SendBatchResponse(
        successful=[BatchResultEntry(id=i, **r.model_dump()) for i, r in done],
        failed=decode_failures + failed,
    )


def _decoded_entries(
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


@app.post("/queues/<name>/receive", summary="Lease up to 10 messages", tags=["messages"])
def receive(
    name: QueueName, request: Annotated[ReceiveRequest | None, Body()] = None
) -> ReceiveResponse:
    # every field has a default, so a bare `curl -X POST .../receive` is a valid receive
    request = request or ReceiveRequest()
    service = runtime.queue_service()
    if request.ack is None:
        deliveries = service.receive(
            _principal(),
            name,
            max_messages=request.max_messages,
            wait_seconds=request.wait_seconds,
            visibility_timeout=request.visibility_timeout,
        )
        return ReceiveResponse(messages=[MessageOut.of(d) for d in deliveries])
    # ack and take the next: a stale receipt fails alone, as in a batch ack; the receive
    # answers 200 whatever the acks did
    result = service.ack_and_receive(
        _principal(),
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


@app.post(
    "/queues/<name>/ack",
    summary="Acknowledge (delete) leased messages",
    tags=["messages"],
    responses={200: _content(AckResponse, "Acknowledged (failed lists any that were not)")},
)
def ack(name: QueueName, request: Annotated[AckRequest, Body()]) -> Response[str]:
    done, failed = runtime.queue_service().ack(_principal(), name, request.receipts)
    return _settled(done, failed, AckResponse, "acked")


@app.post(
    "/queues/<name>/nack",
    summary="Release leased messages now or after a delay",
    tags=["messages"],
    responses={200: _content(NackResponse, "Released (failed lists any that were not)")},
)
def nack(name: QueueName, request: Annotated[NackRequest, Body()]) -> Response[str]:
    done, failed = runtime.queue_service().nack(
        _principal(), name, request.receipts, request.delay_seconds
    )
    return _settled(done, failed, NackResponse, "released")


@app.post(
    "/queues/<name>/visibility",
    summary="Extend or shorten leases",
    tags=["messages"],
    responses={200: _content(VisibilityResponse, "Changed (failed lists any that were not)")},
)
def visibility(name: QueueName, request: Annotated[VisibilityRequest, Body()]) -> Response[str]:
    done, failed = runtime.queue_service().change_visibility(
        _principal(), name, request.receipts, request.visibility_timeout
    )
    return _settled(done, failed, VisibilityResponse, "changed")


# ---- topics --------------------------------------------------------------------------------

TopicName = Annotated[
    str,
    Path(
        description="Topic: segments of A-Z a-z 0-9 _ - joined by `.` (patterns may use "
        "`*` for one segment and a final `>` for the rest; percent-encode them)."
    ),
]


@app.post(
    "/topics/<name>/messages",
    summary="Publish a message to a topic (written once, fanned out to subscriptions)",
    tags=["topics"],
    responses={201: _content(SendMessageResponse, "Published")},
)
def publish(name: TopicName, request: Annotated[SendMessageRequest, Body()]) -> Response[str]:
    result = runtime.topic_service().publish(_principal(), unquote(name), request.to_message())
    return _json(201, SendMessageResponse(**result.model_dump()))


@app.post(
    "/topics/<name>/messages/batch",
    summary="Publish up to 10 messages; each entry succeeds or fails on its own",
    tags=["topics"],
)
def publish_batch(
    name: TopicName, request: Annotated[SendBatchRequest, Body()]
) -> SendBatchResponse:
    principal = _principal()
    runtime.topic_service().check_publish(principal, unquote(name))
    entries, decode_failures = _decoded_entries(request)
    done, failed = (
        runtime.topic_service().publish_batch(principal, unquote(name), entries)
        if entries
        else ([], [])
    )
    return SendBatchResponse(
        successful=[BatchResultEntry(id=i, **r.model_dump()) for i, r in done],
        failed=decode_failures + failed,
    )


@app.get(
    "/topics/<name>/subscriptions",
    summary="Durable subscriptions declared on a topic or pattern",
    tags=["topics"],
)
def list_subscriptions(name: TopicName) -> SubscriptionList:
    found = runtime.topic_service().subscriptions(_principal(), unquote(name))
    return SubscriptionList(subscriptions=found)


@app.put(
    "/topics/<name>/subscriptions/<sub>",
    summary="Create or replace a durable subscription (topic or pattern -> queue)",
    tags=["topics"],
    responses={
        200: _content(Subscription, "Replaced"),
        201: _content(Subscription, "Created"),
    },
)
def put_subscription(
    name: TopicName,
    sub: Annotated[str, Path(description="Subscription name (like a queue name).")],
    settings: Annotated[SubscriptionSettings, Body()],
) -> Response[str]:
    found, created = runtime.topic_service().subscribe(_principal(), unquote(name), sub, settings)
    return _json(201 if created else 200, found)


@app.delete(
    "/topics/<name>/subscriptions/<sub>",
    summary="Delete a durable subscription (its queue stays)",
    tags=["topics"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_subscription(name: TopicName, sub: str) -> Response[str]:
    runtime.topic_service().unsubscribe(_principal(), unquote(name), sub)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


# ---- operations: stats, browse, one-message actions, connections -----------------------------

MAX_OVERVIEW_QUEUES = 100


@app.get("/stats", summary="Every queue's counts, topics and connections", tags=["operations"])
def overview() -> Overview:
    principal = _principal()
    queues = runtime.queue_service()
    sessions = runtime.sessions()
    stats = {}
    configs = queues.list_queues(principal)
    for config in configs[:MAX_OVERVIEW_QUEUES]:
        consumers = len(sessions.consumers.consumers(config.name))
        stats[config.name] = queues.stats(principal, config.name, consumers=consumers)
    live = {
        pattern: count
        for pattern, count in sessions.live.live_counts().items()
        if runtime.policy().permits(principal, Action.ADMIN, pattern)
    }
    durable: dict[str, list[dict[str, str]]] = {}
    for subscription in runtime.topic_service().subscriptions(principal):
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
    sees_all = runtime.policy().permits(principal, Action.ADMIN, EVERY_DESTINATION)
    return Overview(
        queues=list(stats.values()),
        truncated=len(configs) > MAX_OVERVIEW_QUEUES,
        topics=topics,
        connections=sessions.live.count_connections() if sees_all else None,
    )


@app.get("/queues/<name>/stats", summary="A queue's counts and health", tags=["operations"])
def queue_stats(name: QueueName) -> QueueStats:
    consumers = len(runtime.sessions().consumers.consumers(name))
    return runtime.queue_service().stats(_principal(), name, consumers=consumers)


@app.get("/queues/<name>/presence", summary="How many consumers a queue has now", tags=["presence"])
def queue_presence(name: QueueName) -> QueuePresence:
    """Anyone who may receive from the queue may ask (an unknown queue has none)."""
    names.validate_queue_name(name)
    runtime.policy().check(_principal(), Action.RECEIVE, name)
    return QueuePresence(queue=name, consumers=runtime.sessions().presence.queue(name))


@app.get(
    "/topics/<name>/presence", summary="How many subscribers a topic has now", tags=["presence"]
)
def topic_presence(name: TopicName) -> TopicPresenceView:
    """Anyone who may receive from the topic may ask."""
    topic = unquote(name)
    validate_topic_name(topic)
    runtime.policy().check(_principal(), Action.RECEIVE, topic)
    found = runtime.sessions().presence.topic(topic)
    return TopicPresenceView(
        topic=topic,
        consumers=found.consumers,
        live_subscribers=found.live_subscribers,
        durable_subscriptions=[
            DurablePresenceView(name=d.name, queue=d.queue, consumers=d.consumers)
            for d in found.durable
        ],
    )


@app.get(
    "/queues/<name>/messages",
    summary="Browse messages without leasing them",
    tags=["operations"],
)
def browse(
    name: QueueName,
    limit: Annotated[int, Query(ge=1, le=100, description="Messages per page.")] = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="From the last page.")] = None,
) -> BrowseResponse:
    messages, next_cursor = runtime.queue_service().browse(
        _principal(), name, limit=limit, cursor=cursor
    )
    return BrowseResponse(messages=messages, cursor=next_cursor)


@app.delete(
    "/queues/<name>/messages/<message_id>",
    summary="Delete one message",
    tags=["operations"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_message(name: QueueName, message_id: MessageId) -> Response[str]:
    runtime.queue_service().delete_message(_principal(), name, message_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@app.post(
    "/queues/<name>/messages/<message_id>/move",
    summary="Move or copy one message to another queue",
    tags=["operations"],
)
def move_message(
    name: QueueName, message_id: MessageId, request: Annotated[MoveRequest, Body()]
) -> MoveResponse:
    moved = runtime.queue_service().move_message(
        _principal(), name, message_id, to=request.to, copy=request.copy_only
    )
    return MoveResponse(message_id=moved)


@app.get("/connections", summary="Open WebSocket connections", tags=["operations"])
def connections() -> ConnectionList:
    runtime.policy().check(_principal(), Action.ADMIN, EVERY_DESTINATION)
    found = runtime.sessions().live.list_connections()
    return ConnectionList(connections=[ConnectionView(**c) for c in found])


ConnectionId = Annotated[
    str, Path(max_length=128, description="A connection's id, as GET /connections lists it.")
]


@app.delete(
    "/connections/<connection_id>",
    summary="Close a WebSocket connection (its leases go back to their queues at once)",
    tags=["operations"],
    responses={204: {"description": "Closed", "content": {}}},
)
def close_connection(connection_id: ConnectionId) -> Response[str]:
    principal = _principal()
    runtime.policy().check(principal, Action.ADMIN, EVERY_DESTINATION)
    runtime.sessions().close_by_operator(unquote(connection_id), by=principal.id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@app.get(
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
    return runtime.history().history(_principal(), queue=queue, topic=topic)


# ---- access control: principals and API keys (admin of everything) -------------------------

PrincipalId = Annotated[
    str, Path(max_length=128, description="1-128 of A-Z a-z 0-9 _ . @ : + = , -")
]
KeyId = Annotated[str, Path(max_length=64, description="The key's id (24 hex digits).")]


@app.get("/access/principals", summary="List principals and their grants", tags=["access"])
def list_principals() -> PrincipalList:
    return PrincipalList(principals=runtime.access().list_principals(_principal()))


@app.put(
    "/access/principals/<principal_id>",
    summary="Create a principal or replace its grants",
    tags=["access"],
    responses={
        200: _content(PrincipalView, "Grants replaced"),
        201: _content(PrincipalView, "Created"),
    },
)
def put_principal(
    principal_id: PrincipalId, request: Annotated[PrincipalRequest, Body()]
) -> Response[str]:
    view, created = runtime.access().put_principal(
        _principal(), unquote(principal_id), request.grants
    )
    return _json(201 if created else 200, view)


@app.get("/access/principals/<principal_id>", summary="A principal's grants", tags=["access"])
def get_principal(principal_id: PrincipalId) -> PrincipalView:
    return runtime.access().get_principal(_principal(), unquote(principal_id))


@app.delete(
    "/access/principals/<principal_id>",
    summary="Delete a principal and revoke its API keys",
    tags=["access"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_principal(principal_id: PrincipalId) -> Response[str]:
    runtime.access().delete_principal(_principal(), unquote(principal_id))
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@app.post(
    "/access/principals/<principal_id>/keys",
    summary="Issue an API key (its token is shown only in this response)",
    tags=["access"],
    responses={201: _content(IssuedKey, "Issued")},
)
def issue_key(
    principal_id: PrincipalId, request: Annotated[KeyRequest | None, Body()] = None
) -> Response[str]:
    ttl = (request or KeyRequest()).ttl_seconds
    issued = runtime.access().issue_key(_principal(), unquote(principal_id), ttl_seconds=ttl)
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=issued.model_dump_json(),
        headers={"Cache-Control": ["no-store"]},
    )


@app.get("/access/keys", summary="List API keys (never their secrets)", tags=["access"])
def list_keys(
    principal: Annotated[
        str | None, Query(max_length=128, description="Only this principal's keys.")
    ] = None,
) -> KeyList:
    return KeyList(keys=runtime.access().list_keys(_principal(), principal))


@app.delete(
    "/access/keys/<key_id>",
    summary="Revoke an API key",
    tags=["access"],
    responses={204: {"description": "Revoked", "content": {}}},
)
def revoke_key(key_id: KeyId) -> Response[str]:
    runtime.access().revoke_key(_principal(), key_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


# ---- the web console -------------------------------------------------------------------------

console.register(app)


# ---- the API describing itself --------------------------------------------------------------


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    document = app.get_openapi_json_schema(
        title="mqless",
        version=__version__,
        description="Queues with acks, redelivery, dead letters and FIFO groups, "
        'serverless on AWS. Errors are JSON problems: {"error", "message"}.',
    )
    document = json.dumps(_with_problems(json.loads(document)))
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)


def _with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Say what errors really look like: a Problem with a 4xx/5xx, never Powertools' 422."""
    problem = {
        "description": "An error: a JSON problem saying what is wrong",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    gateway = {"$ref": "#/components/schemas/GatewayError"}
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    refused = {
        "401": "No credentials: API Gateway's own answer, before any function runs",
        "403": "Credentials refused (API Gateway), or an action the grants do not allow (a "
        "Problem with error `forbidden`), or a creation over the principal's quota "
        "(`quota_exceeded`)",
    }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = problem
            for status, description in refused.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"anyOf": [gateway, problem_ref]}}},
                }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = Problem.model_json_schema()
    schemas["GatewayError"] = {
        "type": "object",
        "description": "API Gateway's own error body (authorizer refusals): no `error` code.",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    }
    # every documented route needs a bearer token (the console and this document do not,
    # and are not listed)
    document["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An mqless API key (mqk_...) or a JWT from the configured issuer. "
            "Without one API Gateway answers 401; with one it refuses, 403.",
        }
    }
    document["security"] = [{"bearer": []}]
    return document


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Handle one HTTP API event. Bodies are JSON whatever the content type says.

    `curl -d` labels its body application/x-www-form-urlencoded, which Powertools would
    parse as a form; this API has no form endpoints, so such bodies are read as JSON.
    """
    headers = event.get("headers") or {}
    content_type = str(headers.get("content-type", "")).lower()
    if event.get("body") and not content_type.startswith("application/json"):
        event = {**event, "headers": {**headers, "content-type": "application/json"}}
    result: dict[str, Any] = app.resolve(event, context)
    return result
