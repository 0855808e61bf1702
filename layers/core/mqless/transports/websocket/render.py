"""Rendering for WebSocket clients: pushes as JSON or STOMP frames, packed posts; errors as
a STOMP ERROR or JSON error frame.

A `Push` (`domain/push/pushes.py`) is one message for one subscription of one connection;
the push domain is given `render` as its `Renderer`. `render` turns a list of pushes into
the text of as few WebSocket messages as the 32 KB frame allows (API Gateway bills a
WebSocket message per 32 KB, and each post is a call): JSON clients get one `message`
frame, or a `batch` frame holding several; STOMP clients get MESSAGE frames, several
concatenated in one WebSocket message, which STOMP's framing (NUL-terminated frames)
allows and stompjs's parser reads. A push the connection cannot be sent is set
aside with the reason (`Rendered.refused`); the caller decides its fate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from mqless.domain.messages import BROKER_HEADERS, RESERVED_PREFIX
from mqless.domain.push.pushes import FRAME_BYTES, Connection, Push, Rendered
from mqless.transports.websocket.stomp_frames import Frame, encode_frame

MESSAGE_BYTES: Final = 128 * 1024  # the most one WebSocket message (one post) carries


def json_frame(push: Push) -> dict[str, Any]:
    """The JSON protocol's `message` frame."""
    frame: dict[str, Any] = {
        "type": "message",
        "subscription": push.subscription,
        "destination": push.destination,
        "message_id": push.message_id,
        "body": base64.b64encode(push.body).decode() if push.binary else push.body.decode(),
        "binary": push.binary,
        "attributes": push.attributes,
        "content_type": push.content_type,
        "correlation_id": push.correlation_id,
        "reply_to": push.reply_to,
        "sent_at": push.sent_at,
        "receive_count": push.receive_count,
        "redelivered": push.receive_count > 1,
    }
    if push.ack is not None:
        frame["ack"] = push.ack
    if push.group_id is not None:
        frame["group_id"] = push.group_id
    if push.priority is not None:
        frame["priority"] = push.priority
    return frame


def stomp_frame(push: Push, version: str) -> Frame:
    """A STOMP MESSAGE frame, headers named as ActiveMQ names them."""
    headers: list[tuple[str, str]] = [
        ("destination", push.destination),
        ("message-id", push.message_id),
        ("subscription", push.subscription),
    ]
    if push.ack is not None and version == "1.2":
        headers.append(("ack", push.ack))
    headers.append(("redelivered", "true" if push.receive_count > 1 else "false"))
    headers.append(("timestamp", str(push.sent_at)))
    body = push.body
    if push.binary:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            # API Gateway carries text only: send the octets as base64 and say so
            body = base64.b64encode(body)
            headers.append(("mqless-body-encoding", "base64"))
    if push.content_type is not None:
        headers.append(("content-type", push.content_type))
    if push.correlation_id is not None:
        headers.append(("correlation-id", push.correlation_id))
    if push.reply_to is not None:
        headers.append(("reply-to", push.reply_to))
    if push.group_id is not None:
        headers.append(("JMSXGroupID", push.group_id))
    if push.priority is not None:
        headers.append(("priority", str(push.priority)))
    # Sends refuse these names; a message stored before they were refused must still not
    # pass for the broker's own headers.
    headers.extend(
        (name, value)
        for name, value in sorted(push.attributes.items())
        if name not in BROKER_HEADERS
        and not name.lower().startswith(RESERVED_PREFIX)
        # an attribute named priority (an HTTP sender's) gives way to the message's own
        and not (name == "priority" and push.priority is not None)
    )
    return Frame("MESSAGE", tuple(headers), body)


def error_reply(*, stomp: bool, code: str, message: str) -> bytes:
    """An error told to a client in its protocol: a STOMP ERROR frame (the message in its
    `message` header) or a JSON error frame."""
    if stomp:
        return encode_frame(Frame("ERROR", (("message", message),))).encode()
    return json.dumps({"type": "error", "error": code, "message": message}).encode()


def render(connection: Connection, pushes: Sequence[Push]) -> Rendered:
    """The WebSocket messages that carry `pushes`, packed within FRAME_BYTES each.

    Each push is rendered on its own: one that this connection cannot be sent (a header
    its STOMP version cannot carry, a message over API Gateway's 128 KB) is refused with
    the reason and costs its neighbours nothing. A single message larger than a frame
    travels alone.
    """
    texts: list[str] = []
    refused: dict[int, str] = {}
    for index, push in enumerate(pushes):
        try:
            text = _text(connection, push)
        except ValueError as exc:  # encode_frame's refusal, or a body that is not UTF-8
            refused[index] = f"undeliverable to {_reader(connection)}: {exc}"
            continue
        size = len(text.encode())
        if size > MESSAGE_BYTES:
            refused[index] = (
                f"undeliverable to {_reader(connection)}: it takes {size} bytes, over the "
                f"{MESSAGE_BYTES}-byte WebSocket message limit of API Gateway; receive it "
                "over HTTP"
            )
            continue
        texts.append(text)
    if connection.protocol == "stomp":
        messages = _pack(texts, lambda group: "".join(group), overhead=0, separator=0)
    else:
        messages = _pack(
            texts,
            lambda group: (
                group[0]
                if len(group) == 1
                else '{"type":"batch","frames":[' + ",".join(group) + "]}"
            ),
            overhead=len('{"type":"batch","frames":[]}'),
            separator=1,
        )
    return Rendered(messages, refused)


def _text(connection: Connection, push: Push) -> str:
    if connection.protocol == "stomp":
        return encode_frame(stomp_frame(push, connection.version), version=connection.version)
    return json.dumps(json_frame(push), separators=(",", ":"))


def _reader(connection: Connection) -> str:
    if connection.protocol == "stomp":
        return f"a STOMP {connection.version} subscriber"
    return "a JSON subscriber"


def _pack(
    texts: Iterable[str], join: Callable[[list[str]], str], *, overhead: int, separator: int
) -> list[str]:
    messages: list[str] = []
    group: list[str] = []
    size = overhead
    for text in texts:
        length = len(text.encode())
        if group and size + separator + length > FRAME_BYTES:
            messages.append(join(group))
            group, size = [], overhead
        size += length + (separator if group else 0)
        group.append(text)
    if group:
        messages.append(join(group))
    return messages
