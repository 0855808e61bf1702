"""A property of the whole broker (issue 11): whatever a batch of messages holds, every
message it accepts and a subscriber can be sent reaches that subscriber, and nothing
else breaks.

Each example sends a few messages, with attribute names and values drawn from all of
Unicode (NUL, line breaks, lone surrogates, the reserved names included), over HTTP to a
topic and to one queue per kind of subscriber, then runs one stream batch's dispatch.
Subscribers of every kind wait: JSON, STOMP 1.0, 1.1 and 1.2 clients, each with a live
subscription to the topic and a push subscription to its own queue.

The oracle, written from the rules rather than from the code:
- a send is accepted if and only if its attribute names and values and text fields hold
  SQS's character set (names: no control character, no ':', not reserved);
- an accepted message is representable for every subscriber but STOMP 1.0, which cannot
  carry a line break (CR or LF) in any header;
- a live subscriber gets exactly the accepted messages it can be sent, each as sent; a
  push consumer gets exactly those of its queue, first time (not
  redelivered), and its queue's dead-letter queue holds exactly the others, each with
  an `undeliverable` reason; no client gets an ERROR and no connection is closed.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mqless import wiring
from mqless.domain.messages import BROKER_HEADERS
from mqless.observability import metrics
from mqless.storage.dynamo import from_wire, to_wire
from mqless.transports.dispatch import _Batch, deliver
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.stomp_frames import Frame, decode_frames
from tests.component.conftest import Aws, RecordingPusher
from tests.component.conftest_http import HttpApi
from tests.lambda_support import websocket_event

pytestmark = pytest.mark.usefixtures("wiring_clients_kept")  # no test throttles or retries

KINDS = ("json", "1.0", "1.1", "1.2")  # a JSON client, and STOMP clients of each version
SUBPROTOCOL = {"1.0": "v10.stomp", "1.1": "v11.stomp", "1.2": "v12.stomp"}
# SQS's characters (the XML 1.0 Char production); a name also loses TAB, LF, CR and ':'
NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
NOT_NAME = re.compile("[\x00-\x1f:\ud800-\udfff\ufffe\uffff]")
EXAMPLES = itertools.count()


@pytest.fixture(autouse=True)
def pusher(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingPusher]:
    assert aws.stack is not None
    for name, value in aws.stack.environment("WebSocketFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    recording = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recording)
    yield recording
    wiring.reset()
    metrics.flush()


@pytest.fixture
def api(aws: Aws) -> HttpApi:
    assert aws.stack is not None
    return HttpApi(aws.stack.http_routes())


# ---- what is sent -----------------------------------------------------------------------

# Text from all of Unicode, leaning on the characters the rules are about; st.one_of picks
# a branch evenly, so repeating one weights it: most messages are accepted, and many of
# those hold a line break that STOMP 1.0 cannot carry.
awkward = st.sampled_from(["\x00", "\x01", "\x1f", "\t", "\n", "\r", "\ufffe", "\ud800", ":"])
any_char = st.one_of(
    st.characters(), st.characters(categories=["Cs"]), awkward, st.sampled_from("a-.é𝄞")
)
any_text = st.text(any_char, max_size=8)
allowed_text = st.text(
    st.one_of(st.characters(exclude_categories=["Cc", "Cs"]), st.sampled_from("\t\n\r")),
    max_size=8,
)
with_a_line_break = st.builds(
    lambda before, eol, after: before + eol + after,
    allowed_text,
    st.sampled_from(["\n", "\r\n", "\r"]),
    allowed_text,
)
texts = st.one_of(allowed_text, allowed_text, with_a_line_break, any_text)
allowed_name = st.from_regex(r"[a-z][a-z0-9.-]{0,7}", fullmatch=True)
names = st.one_of(
    allowed_name,
    allowed_name,
    allowed_name,
    st.text(any_char, min_size=1, max_size=8),
    st.sampled_from(["mqless-body-encoding", "MQLESS-X", "destination", "message-id", "a:b"]),
)


@dataclass(frozen=True)
class Message:
    body: str
    attributes: dict[str, str]
    content_type: str | None
    correlation_id: str | None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"body": self.body, "attributes": self.attributes}
        if self.content_type is not None:
            fields["content_type"] = self.content_type
        if self.correlation_id is not None:
            fields["correlation_id"] = self.correlation_id
        return fields

    @property
    def texts(self) -> list[str]:
        """What travels as header values."""
        optional = [self.content_type, self.correlation_id]
        return [*self.attributes.values(), *(t for t in optional if t is not None)]

    def accepted(self) -> bool:
        """The rules of issue 11: refused at the door if no subscriber could be sent it."""
        for name in self.attributes:
            if NOT_NAME.search(name) or name.lower().startswith("mqless-"):
                return False
            if name in BROKER_HEADERS:
                return False
        return not any(NOT_TEXT.search(text) for text in self.texts)

    def representable(self, kind: str) -> bool:
        """STOMP 1.0 frames have no escaping: no line break in any header."""
        return kind != "1.0" or not any("\r" in t or "\n" in t for t in self.texts)


messages = st.builds(
    Message,
    body=st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    attributes=st.dictionaries(names, texts, max_size=3),
    content_type=st.none() | texts,
    correlation_id=st.none() | texts,
)


# ---- the clients --------------------------------------------------------------------------


def _event(kind: str, connection_id: str, body: str | None = None, **headers: str) -> None:
    handle_event(websocket_event(kind, connection_id, body, **headers))


def _stomp(connection_id: str, command: str, headers: list[tuple[str, str]]) -> None:
    lines = [command] + [f"{name}:{value}" for name, value in headers]
    _event("MESSAGE", connection_id, "\n".join(lines) + "\n\n\x00")


def subscribe(kind: str, connection_id: str, destination: str, *, push: bool) -> None:
    if kind == "json":
        _event("CONNECT", connection_id)
        frame: dict[str, Any] = {"action": "subscribe", "destination": destination, "id": "s"}
        if push:
            frame["ack"] = "client-individual"
        _event("MESSAGE", connection_id, json.dumps(frame))
        return
    _event("CONNECT", connection_id, **{"Sec-WebSocket-Protocol": SUBPROTOCOL[kind]})
    _stomp(connection_id, "CONNECT", [("accept-version", kind), ("host", "/")])
    headers = [("destination", destination)]
    if kind != "1.0":
        headers.append(("id", "s"))  # STOMP 1.0 subscriptions need no id
    if push:
        headers.append(("ack", "client" if kind == "1.0" else "client-individual"))
    _stomp(connection_id, "SUBSCRIBE", headers)


@dataclass(frozen=True)
class Received:
    message_id: str
    body: str
    attributes: dict[str, str]
    content_type: str | None
    correlation_id: str | None
    redelivered: bool


def received(pusher: RecordingPusher, kind: str, connection_id: str) -> list[Received]:
    """What the client was pushed, read the way a client of its kind reads it."""
    if kind == "json":
        return [
            Received(
                f["message_id"],
                f["body"],
                f["attributes"],
                f["content_type"],
                f["correlation_id"],
                f["redelivered"],
            )
            for f in pusher.json_frames(connection_id)
            if f["type"] == "message"
        ]
    frames: list[Frame] = [
        f for text in pusher.posts.get(connection_id, []) for f in decode_frames(text, version=kind)
    ]
    assert [f.command for f in frames if f.command != "MESSAGE"] == ["CONNECTED"]
    broker = {"destination", "message-id", "subscription", "ack", "redelivered", "timestamp"}
    broker |= {"content-type", "correlation-id"}
    return [
        Received(
            f.header("message-id") or "",
            f.body.decode(),
            {k: v for k, v in f.headers if k not in broker},
            f.header("content-type"),
            f.header("correlation-id"),
            f.header("redelivered") == "true",
        )
        for f in frames
        if f.command == "MESSAGE"
    ]


def as_sent(message: Message, message_id: str) -> Received:
    return Received(
        message_id,
        message.body,
        message.attributes,
        message.content_type,
        message.correlation_id,
        False,
    )


# ---- the property -----------------------------------------------------------------------


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(messages, min_size=1, max_size=4))
def test_every_accepted_representable_message_reaches_every_subscriber_and_nothing_breaks(
    api: HttpApi, pusher: RecordingPusher, aws: Aws, batch: list[Message]
) -> None:
    n = next(EXAMPLES)
    topic, queue = f"prop{n}.news", {kind: f"prop{n}-{kind.replace('.', '')}" for kind in KINDS}
    live = {kind: f"live-{n}-{kind}" for kind in KINDS}
    push = {kind: f"push-{n}-{kind}" for kind in KINDS}
    # Given subscribers of every kind: live on the topic, and a push consumer per queue
    for kind in KINDS:
        subscribe(kind, live[kind], f"/topic/{topic}", push=False)
        subscribe(kind, push[kind], f"/queue/{queue[kind]}", push=True)
    # When every message is published to the topic and sent to each queue over HTTP
    sent: list[tuple[Message, str]] = []  # accepted, with the topic message's id
    ids: dict[str, list[tuple[Message, str]]] = {kind: [] for kind in KINDS}
    for message in batch:
        reply = api.post(f"/topics/{topic}/messages", message.fields())
        # Then each send is accepted exactly when the rules say so, and refused as a 400
        if not message.accepted():
            event("a message refused at the door")
            assert reply.is_problem(400, "invalid_request"), (message, reply.text)
            continue
        event(
            "a message STOMP 1.0 cannot carry"
            if not message.representable("1.0")
            else "a message every subscriber can be sent"
        )
        assert reply.status == 201, (message, reply.text)
        sent.append((message, reply.json["message_id"]))
        for kind in KINDS:
            queued = api.post(f"/queues/{queue[kind]}/messages", message.fields())
            assert queued.status == 201, queued.text
            ids[kind].append((message, queued.json["message_id"]))
    # When one stream batch brings the topic's messages and wakes every queue
    batch_of_stream = _Batch()
    batch_of_stream.published = _published(aws, topic)
    batch_of_stream.queues = set(queue.values())
    deliver(batch_of_stream)
    try:
        for kind in KINDS:
            # Then each live subscriber got what it can be sent, as sent (messages sent in
            # the same millisecond may come in either order)
            want = [as_sent(m, i) for m, i in sent if m.representable(kind)]
            got = received(pusher, kind, live[kind])
            assert sorted(got, key=_key) == sorted(want, key=_key), kind
            # and each push consumer got what it can be sent, first time, as sent
            want = [as_sent(m, i) for m, i in ids[kind] if m.representable(kind)]
            got = received(pusher, kind, push[kind])
            assert sorted(got, key=_key) == sorted(want, key=_key), kind
            # and exactly the others wait in its dead-letter queue, saying why
            dead = _dead_letters(api, queue[kind])
            unsendable = {i for m, i in ids[kind] if not m.representable(kind)}
            assert {d["message_id"] for d in dead} == unsendable, kind
            assert all(d["dead_letter_reason"].startswith("undeliverable") for d in dead)
        # and nothing else broke: no connection was closed
        assert pusher.closed == []
    finally:
        for connection_id in [*live.values(), *push.values()]:
            _event("DISCONNECT", connection_id)


def _key(item: Received) -> str:
    return item.message_id


def _published(aws: Aws, topic: str) -> list[dict[str, Any]]:
    """The topic's log items (every shard of its log), as the stream's images carry them."""
    page = aws.dynamodb.scan(
        TableName=aws.settings.messages_table,
        FilterExpression="begins_with(pk, :t)",
        ExpressionAttributeValues=to_wire({":t": f"T#{topic}#"}),
        ConsistentRead=True,
    )
    return [from_wire(i) for i in page["Items"]]


def _dead_letters(api: HttpApi, queue: str) -> list[dict[str, Any]]:
    reply = api.post(f"/queues/{queue}.dlq/receive", {"max_messages": 10})
    if reply.status == 404:  # never needed: created on the first dead letter
        return []
    assert reply.status == 200, reply.text
    found: list[dict[str, Any]] = reply.json["messages"]
    return found
