"""The WebSocket JSON protocol: client frames in, server frames out.

Client frames (a discriminated union on `action`; every one may carry a `receipt`):
  {"action": "subscribe", "destination": "/topic/orders.*" | "/queue/jobs", "id": "s1",
   "ack": "auto" | "client" | "client-individual", "prefetch": 10, "durable": "name",
   "start": "oldest"}
  {"action": "unsubscribe", "id": "s1"}
  {"action": "publish", "destination": "/topic/orders.created" | "/queue/jobs",
   "body": "...", "attributes": {...}, ...the fields of an HTTP send...}
  {"action": "ack", "id": "<the message's ack>"}
  {"action": "nack", "id": "<the message's ack>", "delay_seconds": 0}
  {"action": "ping"}  (keeps an idle connection open: API Gateway closes it after 10 min)
`/temp-queue/<name>` in `destination` or `reply_to` is the connection's temporary queue,
as in STOMP (`sessions.py`): a receiver gets `reply_to` as `/remote-temp-queue/<queue>`.
Server frames: `message` (or `batch`, several messages in one WebSocket message),
`subscribed`, `unsubscribed`, `receipt`, `pong`, `error`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mqless.domain import models
from mqless.domain.errors import InvalidRequest, MqlessError, StaleReceipt
from mqless.domain.ids import MAX_CLIENT_ID
from mqless.domain.messages import NewMessage
from mqless.domain.push.consumer import DEFAULT_PREFETCH, MAX_PREFETCH, AckMode
from mqless.domain.push.feeding import PushPlan
from mqless.storage.connections import ConnectionInfo
from mqless.storage.schedules import Rule
from mqless.transports.send_request import SendMessageRequest
from mqless.transports.websocket.sessions import Sessions, Settle

SubscriptionId = Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_ID)]
ReceiptId = Annotated[str | None, Field(max_length=128)]


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["subscribe"]
    destination: Annotated[str, Field(description="`/topic/<name or pattern>` or `/queue/<name>`")]
    id: SubscriptionId
    ack: AckMode = "auto"
    prefetch: Annotated[int, Field(ge=1, le=MAX_PREFETCH)] = DEFAULT_PREFETCH
    durable: Annotated[
        str | None,
        Field(description="Topics: name a durable subscription (and its queue) to resume."),
    ] = None
    selector: Annotated[
        str | None,
        Field(
            description="A JMS message selector (SQL-92 subset, as ActiveMQ's): only the "
            "messages it selects are delivered; a bad one is refused with an error frame."
        ),
    ] = None
    start: Annotated[
        str | None,
        Field(
            description='A new durable subscription: "oldest" (every message the topic '
            'still holds), an ISO-8601 time (those published at or after it) or "now" '
            "(the default), before the ones published from now on.",
            max_length=64,
        ),
    ] = None
    receipt: ReceiptId = None


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["unsubscribe"]
    id: SubscriptionId
    receipt: ReceiptId = None


class Publish(SendMessageRequest):
    action: Literal["publish"]
    destination: str
    receipt: ReceiptId = None

    def to_message(self) -> NewMessage:
        fields = self.model_dump(exclude={"action", "destination", "receipt"})
        return SendMessageRequest.model_validate(fields).to_message()

    def to_scheduled(self) -> tuple[NewMessage, Rule | None]:
        """The message and its schedule, if the frame asks for one (fields as HTTP's)."""
        fields = self.model_dump(exclude={"action", "destination", "receipt"})
        return SendMessageRequest.model_validate(fields).to_scheduled()


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["ack"]
    id: Annotated[str, Field(min_length=1, max_length=200, description="The message's `ack`.")]
    receipt: ReceiptId = None


class Nack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["nack"]
    id: Annotated[str, Field(min_length=1, max_length=200, description="The message's `ack`.")]
    delay_seconds: Annotated[int, Field(ge=0, le=models.MAX_VISIBILITY_SECONDS)] = 0
    receipt: ReceiptId = None


class Ping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["ping"]
    receipt: ReceiptId = None


ClientFrame = Subscribe | Unsubscribe | Publish | Ack | Nack | Ping
_frames: TypeAdapter[ClientFrame] = TypeAdapter(
    Annotated[ClientFrame, Field(discriminator="action")]
)


def parse_frame(text: str) -> ClientFrame:
    """A client frame, or InvalidRequest saying what is wrong with it."""
    try:
        return _frames.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        # clipped: a field name or tag can be as long as the frame, and is echoed here
        where = ".".join(_clip(str(p), 64) for p in first.get("loc", ()))
        message = f"{_clip(where, 200) or 'frame'}: {_clip(first.get('msg'), 300)}"
        raise InvalidRequest(message) from exc


def handle_text(sessions: Sessions, info: ConnectionInfo, text: str) -> None:
    """Act on one WebSocket message of a JSON connection and answer it."""
    receipt: str | None = None
    to_pump: str | None = None
    counted: PushPlan | None = None  # what an ack counted its consumer holding
    try:
        frame = parse_frame(text)
        receipt = frame.receipt
        reply, to_pump, counted = _act(sessions, info, frame)
    except MqlessError as exc:
        reply = {"type": "error", "error": exc.code, "message": exc.message}
        if receipt is not None:
            reply["receipt"] = receipt
    if reply is not None:
        sessions.pusher.post(info.connection.id, json.dumps(reply).encode())
    if to_pump is not None:
        sessions.try_pump(to_pump, planned=counted)


def _act(
    sessions: Sessions, info: ConnectionInfo, frame: ClientFrame
) -> tuple[dict[str, Any] | None, str | None, PushPlan | None]:
    """(the answer frame, the queue to feed after answering, what an ack counted its
    consumer holding: the pump counts no credit again)."""
    if isinstance(frame, Subscribe):
        queue = sessions.subscribe(
            info,
            frame.id,
            frame.destination,
            ack=frame.ack,
            prefetch=frame.prefetch,
            durable=frame.durable,
            selector=frame.selector,
            start=frame.start,
        )
        reply = {"type": "subscribed", "id": frame.id, "destination": frame.destination}
        return _with_receipt(reply, frame.receipt), queue, None
    if isinstance(frame, Unsubscribe):
        queue = sessions.unsubscribe(info, frame.id)
        return _with_receipt({"type": "unsubscribed", "id": frame.id}, frame.receipt), queue, None
    if isinstance(frame, Ping):
        return _with_receipt({"type": "pong"}, frame.receipt), None, None
    if isinstance(frame, Publish):
        message, rule = frame.to_scheduled()
        result = sessions.send(info, frame.destination, message, rule)
        if frame.receipt is None:
            return None, None, None
        reply = {"type": "receipt", "receipt": frame.receipt, "message_id": result.message_id}
        return reply, None, None
    nack = isinstance(frame, Nack)
    settle = Settle(
        ack_id=frame.id,
        nack=nack,
        delay_seconds=frame.delay_seconds if isinstance(frame, Nack) else 0,
    )
    report, queue = sessions.settle(info, settle)
    if report.stale:
        stale = StaleReceipt(
            f"{frame.id!r} was not {'nacked' if nack else 'acked'}: its lease had expired "
            "and the message went back to the queue"
        )
        error = {"type": "error", "error": stale.code, "message": stale.message}
        return _with_receipt(error, frame.receipt), queue, report.counted
    if frame.receipt is None:
        return None, queue, report.counted
    return {"type": "receipt", "receipt": frame.receipt}, queue, report.counted


def _with_receipt(reply: dict[str, Any], receipt: str | None) -> dict[str, Any]:
    return reply if receipt is None else {**reply, "receipt": receipt}


def _clip(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 3] + "..."
