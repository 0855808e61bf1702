"""The WebSocket JSON protocol: client frames in, server frames out over @connections.

Client frames (a discriminated union on `action`):
  {"action": "subscribe", "destination": "/topic/orders.*", "id": "s1"}
  {"action": "unsubscribe", "id": "s1"}
  {"action": "publish", "destination": "/topic/orders.created" | "/queue/orders",
   "body": "...", "attributes": {...}, "receipt": "r-1"}
Server frames: {"type": "message", ...}, {"type": "receipt", "receipt": ...},
{"type": "error", "error": code, "message": ...}.
Live topic subscriptions are pushed by the dispatch function; queue push consumers and
STOMP are not served yet (a clear error frame says so).
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mqless import runtime
from mqless.dynamo import Item
from mqless.envelope import Sealed
from mqless.errors import InvalidRequest, MqlessError
from mqless.http.models import SendMessageRequest
from mqless.models import NewMessage
from mqless.principals import ANONYMOUS

logger = Logger(service="mqless", child=True)

MAX_FRAME_BYTES = 32 * 1024  # one API Gateway WebSocket frame


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["subscribe"]
    destination: Annotated[str, Field(description="`/topic/<name or pattern>`")]
    id: Annotated[str, Field(min_length=1, max_length=128)]


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["unsubscribe"]
    id: Annotated[str, Field(min_length=1, max_length=128)]


class Publish(SendMessageRequest):
    action: Literal["publish"]
    destination: str
    receipt: Annotated[str | None, Field(max_length=128)] = None

    def to_message(self) -> NewMessage:
        fields = self.model_dump(exclude={"action", "destination", "receipt"})
        return SendMessageRequest.model_validate(fields).to_message()


ClientFrame = Annotated[Subscribe | Unsubscribe | Publish, Field(discriminator="action")]
_frames: TypeAdapter[Subscribe | Unsubscribe | Publish] = TypeAdapter(ClientFrame)


def split_destination(destination: str) -> tuple[str, str]:
    """`/topic/a.b` -> ("topic", "a.b"); `/queue/x` -> ("queue", "x")."""
    for kind in ("topic", "queue"):
        prefix = f"/{kind}/"
        if destination.startswith(prefix) and len(destination) > len(prefix):
            return kind, destination[len(prefix) :]
    raise InvalidRequest(f"destination {destination[:100]!r} must be /topic/NAME or /queue/NAME")


def handle_event(event: dict[str, Any]) -> dict[str, Any]:
    """One API Gateway WebSocket event ($connect, $default, $disconnect)."""
    context = event.get("requestContext", {})
    connection_id = str(context.get("connectionId", ""))
    kind = context.get("eventType")
    live = runtime.live_subscriptions()
    if kind == "CONNECT":
        live.connect(connection_id, ANONYMOUS.id)
        return {"statusCode": 200}
    if kind == "DISCONNECT":
        dropped = live.disconnect(connection_id)
        logger.info("connection closed", extra={"connection_id": connection_id, "subs": dropped})
        return {"statusCode": 200}
    reply = handle_message(connection_id, event.get("body") or "")
    if reply is not None:
        runtime.pusher().post(connection_id, json.dumps(reply).encode())
    return {"statusCode": 200}


def handle_message(connection_id: str, text: str) -> dict[str, Any] | None:
    """Act on one client frame; the answer frame (None when there is nothing to say)."""
    try:
        try:
            frame = _frames.validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidRequest(f"{where or 'frame'}: {first.get('msg')}") from exc
        return _act(connection_id, frame)
    except MqlessError as exc:
        return {"type": "error", "error": exc.code, "message": exc.message}


def _act(connection_id: str, frame: Subscribe | Unsubscribe | Publish) -> dict[str, Any] | None:
    live = runtime.live_subscriptions()
    if isinstance(frame, Subscribe):
        kind, name = split_destination(frame.destination)
        if kind == "queue":
            raise InvalidRequest(
                "queue push consumers are not available yet; receive from queues over HTTP"
            )
        live.subscribe(connection_id, frame.id, name)
        return {"type": "subscribed", "id": frame.id, "destination": frame.destination}
    if isinstance(frame, Unsubscribe):
        if not live.unsubscribe(connection_id, frame.id):
            raise InvalidRequest(f"no subscription {frame.id!r} on this connection")
        return {"type": "unsubscribed", "id": frame.id}
    kind, name = split_destination(frame.destination)
    message = frame.to_message()
    if kind == "topic":
        result = runtime.topic_service().publish(ANONYMOUS, name, message)
    else:
        result = runtime.queue_service().send(ANONYMOUS, name, message)
    if frame.receipt is None:
        return None
    return {"type": "receipt", "receipt": frame.receipt, "message_id": result.message_id}


def push_topic_message(item: Item) -> int:
    """Send a published topic message to every live subscriber; returns frames sent."""
    topic = str(item["origin"])
    live = runtime.live_subscriptions()
    targets = live.matching(topic)
    if not targets:
        return 0
    body = runtime.cipher().decrypt(
        Sealed(ciphertext=item["body"], encrypted_key=item["dk"]),
        destination=topic,
        message_id=str(item["id"]),
    )
    binary = bool(item.get("bin", False))
    message = {
        "type": "message",
        "destination": f"/topic/{topic}",
        "message_id": str(item["id"]),
        "body": base64.b64encode(body).decode() if binary else body.decode(),
        "binary": binary,
        "attributes": dict(item.get("attrs") or {}),
        "content_type": item.get("ctype"),
        "correlation_id": item.get("corr"),
        "reply_to": item.get("reply"),
        "sent_at": int(item["sent_at"]),
    }
    pusher = runtime.pusher()
    sent = 0
    gone: set[str] = set()
    for connection_id, subscription_id in targets:
        if connection_id in gone:
            continue
        data = json.dumps({**message, "subscription": subscription_id}).encode()
        if pusher.post(connection_id, data):
            sent += 1
        else:
            gone.add(connection_id)
    for connection_id in gone:
        live.disconnect(connection_id)  # closed without $disconnect reaching us: tidy up
    return sent
