"""One bad message, name or queue never hurts anyone else (issue 11, findings 1 and 12).

What cannot be represented is refused at the door, naming what is wrong: attribute names
and values and the text fields hold SQS's character set (no NUL or other C0 control
character but TAB, LF and CR), attribute names travel as STOMP headers (no control
character, no ':'), the `mqless-` prefix and the headers the broker sets itself are
reserved, and client ids that become storage keys have a length limit.

What is accepted but still cannot be carried to one particular subscriber (a line break
in a header, for a STOMP 1.0 client; a message over API Gateway's 128 KB) costs only
that message and that subscriber: a queue's push consumer has the message dead-lettered
with the reason and its neighbours go out untouched; a live topic subscriber skips it.
One failing queue or connection never stops the sweeper, a pump or a stream batch.

Everything goes through the functions' entry points (HTTP API events, WebSocket events)
over one moto per module, with pushes recorded instead of posted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mqless import wiring
from mqless.domain.access.principals import Principal
from mqless.domain.access.users import EVERYTHING
from mqless.domain.messages import NewMessage
from mqless.domain.queues.service import QueueService
from mqless.observability import metrics
from mqless.storage.dynamo import from_wire, to_wire
from mqless.transports.dispatch import _Batch, deliver
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.stomp_frames import Frame
from tests.component.conftest import Aws, RecordingPusher
from tests.component.conftest_http import HttpApi, Reply
from tests.lambda_support import websocket_event

pytestmark = pytest.mark.usefixtures("wiring_clients_kept")  # no test throttles or retries

ROOT = Principal(id="root", kind="api_key", grants=EVERYTHING)
SUBPROTOCOL = {"1.0": "v10.stomp", "1.1": "v11.stomp", "1.2": "v12.stomp"}


@pytest.fixture(autouse=True)
def pusher(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingPusher]:
    """Every test: empty tables, the functions' environment, pushes recorded."""
    assert aws.stack is not None
    for name, value in aws.stack.environment("WebSocketFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    recording = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recording)
    metrics.snapshot()  # counters of earlier tests are not ours: start from none
    metrics.flush()
    yield recording
    wiring.reset()


@pytest.fixture
def api(aws: Aws) -> HttpApi:
    assert aws.stack is not None
    return HttpApi(aws.stack.http_routes())


# ---- clients --------------------------------------------------------------------------------


def stomp(connection_id: str, version: str = "1.2") -> None:
    """Open a STOMP session of this version."""
    handle_event(
        websocket_event(
            "CONNECT", connection_id, **{"Sec-WebSocket-Protocol": SUBPROTOCOL[version]}
        )
    )
    say(connection_id, "CONNECT", [("accept-version", version), ("host", "/")])


def say(connection_id: str, command: str, headers: list[tuple[str, str]], body: str = "") -> None:
    """One STOMP frame, headers written as given (escape them yourself)."""
    lines = [command] + [f"{name}:{value}" for name, value in headers]
    text = "\n".join(lines) + "\n\n" + body + "\x00"
    handle_event(websocket_event("MESSAGE", connection_id, text))


def got(pusher: RecordingPusher, connection_id: str, command: str) -> list[Frame]:
    return [f for f in pusher.stomp_frames(connection_id) if f.command == command]


def json_client(connection_id: str) -> None:
    handle_event(websocket_event("CONNECT", connection_id))


def json_say(connection_id: str, **frame: Any) -> None:
    handle_event(websocket_event("MESSAGE", connection_id, json.dumps(frame)))


def json_got(pusher: RecordingPusher, connection_id: str, kind: str) -> list[dict[str, Any]]:
    return [f for f in pusher.json_frames(connection_id) if f["type"] == kind]


def send(api: HttpApi, queue: str, body: str = "hello", **fields: Any) -> Reply:
    return api.post(f"/queues/{queue}/messages", {"body": body, **fields})


def sent(api: HttpApi, queue: str, body: str = "hello", **fields: Any) -> str:
    reply = send(api, queue, body, **fields)
    assert reply.status == 201, reply.text
    message_id: str = reply.json["message_id"]
    return message_id


def dead_letters(api: HttpApi, queue: str) -> list[dict[str, Any]]:
    reply = api.post(f"/queues/{queue}/receive", {"max_messages": 10})
    assert reply.status == 200, reply.text
    found: list[dict[str, Any]] = reply.json["messages"]
    return found


def publish_and_dispatch(aws: Aws, topic: str, *messages: NewMessage) -> None:
    """Publish, then hand the stream's topic records to the dispatch step, as one batch."""
    for message in messages:
        wiring.topic_service().publish(ROOT, topic, message)
    page = aws.dynamodb.scan(
        TableName=aws.settings.messages_table,
        FilterExpression="begins_with(pk, :t)",
        ExpressionAttributeValues=to_wire({":t": "T#"}),
        ConsistentRead=True,
    )
    batch = _Batch()
    batch.published = sorted((from_wire(i) for i in page["Items"]), key=lambda i: str(i["sk"]))
    deliver(batch)


# ---- the issue's reproduction ------------------------------------------------------------


def test_the_issues_poison_is_refused_and_a_stomp_consumer_gets_its_neighbours(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given three good messages on orders.p1
    good = [sent(api, "orders.p1", f"good {n}") for n in range(3)]
    # When the poison of the issue is sent (an attribute holding NUL)
    poison = send(api, "orders.p1", "p", attributes={"x": "a\u0000b"})
    # and a STOMP 1.2 client subscribes to the queue
    stomp("c1")
    say("c1", "SUBSCRIBE", [("id", "0"), ("destination", "/queue/orders.p1")])
    # Then the poison was refused, naming the attribute and what it holds
    assert poison.is_problem(400, "invalid_request"), poison.text
    assert "'x'" in poison.json["message"] and "U+0000" in poison.json["message"]
    # and the consumer got every good message, first time, and nothing was dead-lettered
    messages = got(pusher, "c1", "MESSAGE")
    assert sorted(m.header("message-id") or "" for m in messages) == sorted(good)
    assert {m.header("redelivered") for m in messages} == {"false"}
    assert dead_letters(api, "orders.p1.dlq") == []


# ---- refused at the door: what no subscriber could be sent -------------------------------

REFUSED_SENDS = [
    # (label, the send's fields, what the problem's message must name)
    ("nul in a value", {"attributes": {"x": "a\u0000b"}}, ["'x'", "U+0000"]),
    ("escape in a value", {"attributes": {"colour": "\u001b[31mred"}}, ["'colour'", "U+001B"]),
    ("noncharacter in a value", {"attributes": {"x": "\ufffe"}}, ["'x'", "U+FFFE"]),
    ("colon in a name", {"attributes": {"a:b": "v"}}, ["'a:b'", "':'"]),
    ("line feed in a name", {"attributes": {"a\nb": "v"}}, ["'a\\nb'", "U+000A"]),
    ("tab in a name", {"attributes": {"a\tb": "v"}}, ["'a\\tb'", "U+0009"]),
    ("nul in content_type", {"content_type": "text/plain\u0000"}, ["content_type", "U+0000"]),
    ("bell in correlation_id", {"correlation_id": "c\u0007"}, ["correlation_id", "U+0007"]),
    ("nul in reply_to", {"reply_to": "\u0000"}, ["reply_to", "U+0000"]),
    ("reserved prefix", {"attributes": {"mqless-body-encoding": "base64"}}, ["'mqless-"]),
    ("reserved prefix, any case", {"attributes": {"MQLess-Trace": "1"}}, ["'MQLess-Trace'"]),
    ("a header the broker sets", {"attributes": {"message-id": "mine"}}, ["'message-id'"]),
    ("another one", {"attributes": {"destination": "/queue/x"}}, ["'destination'"]),
]


@pytest.mark.parametrize(
    ("fields", "named"),
    [case[1:] for case in REFUSED_SENDS],
    ids=[case[0] for case in REFUSED_SENDS],
)
def test_a_send_holding_what_cannot_be_represented_is_refused_naming_it(
    api: HttpApi, fields: dict[str, Any], named: list[str]
) -> None:
    # Given a queue
    sent(api, "orders")
    # When a message is sent with a field no subscriber could be sent
    reply = send(api, "orders", "body", **fields)
    # Then it is a 400 whose message names the field and the character (or the rule)
    assert reply.is_problem(400, "invalid_request"), reply.text
    for part in named:
        assert part in reply.json["message"], reply.json["message"]
    # and nothing was stored
    assert len(dead_letters(api, "orders")) == 1


def test_a_fifo_group_id_holding_a_control_character_is_refused(api: HttpApi) -> None:
    # Given a group id holding SOH, and a dedup id holding NUL
    # When each is sent to a FIFO queue
    reply = send(api, "orders.fifo", group_id="g\u0001", dedup_id="d")
    other = send(api, "orders.fifo", group_id="g", dedup_id="d\u0000")
    # Then each is a 400 invalid_request problem naming its field
    assert reply.is_problem(400, "invalid_request") and "group_id" in reply.json["message"]
    assert other.is_problem(400, "invalid_request") and "dedup_id" in other.json["message"]


def test_what_sqs_accepts_is_accepted_and_delivered_as_sent(api: HttpApi) -> None:
    # Given attribute values and names at the edges of what is allowed
    attributes = {
        "lines": "one\ntwo\r\nthree\tfour",
        "controls": "\u007f\u0085\u009f",
        "wide": "日本 🎉 \U0010fffd",
        "name.with-every_thing+=/@ 空": "v",
    }
    # When they are sent
    sent(api, "orders", attributes=attributes, correlation_id="a\tb", content_type="x\ny")
    # Then a receiver gets them back exactly
    [message] = dead_letters(api, "orders")
    assert message["attributes"] == attributes
    assert (message["correlation_id"], message["content_type"]) == ("a\tb", "x\ny")


def test_a_batch_entry_holding_a_control_character_fails_alone(api: HttpApi) -> None:
    # Given a batch of a good entry and one whose attribute value is NUL
    # When it is sent
    reply = api.post(
        "/queues/orders/messages/batch",
        {
            "entries": [
                {"id": "good", "body": "fine"},
                {"id": "bad", "body": "x", "attributes": {"x": "\u0000"}},
            ]
        },
    )
    # Then the good entry is stored, and the bad one fails alone as invalid_request naming its
    # attribute
    assert reply.status == 200, reply.text
    assert [e["id"] for e in reply.json["successful"]] == ["good"]
    [failure] = reply.json["failed"]
    assert failure["id"] == "bad" and failure["error"] == "invalid_request"
    assert "'x'" in failure["message"]


def test_a_json_publish_holding_what_cannot_be_represented_gets_an_error_frame(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given a queue and a JSON WebSocket client
    assert api.put("/queues/orders", {}).status == 201
    json_client("j1")
    # When it publishes an attribute holding NUL to the queue, and the reserved mqless-body-encoding
    # attribute to a topic
    json_say("j1", action="publish", destination="/queue/orders", body="b", attributes={"x": "\0"})
    json_say(
        "j1",
        action="publish",
        destination="/topic/news",
        body="b",
        attributes={"mqless-body-encoding": "base64"},
    )
    # Then it gets an invalid_request error frame for each, naming what is wrong, and nothing is
    # dead-lettered
    first, second = json_got(pusher, "j1", "error")
    assert first["error"] == "invalid_request" and "'x'" in first["message"]
    assert second["error"] == "invalid_request" and "mqless-" in second["message"]
    assert dead_letters(api, "orders") == []


@pytest.mark.parametrize(
    ("header", "named"),
    [
        (("x", "a\u0001b"), "'x'"),
        (("mqless-body-encoding", "base64"), "'mqless-body-encoding'"),
        (("message-id", "forged"), "'message-id'"),
        (("timestamp", "0"), "'timestamp'"),
        (("a\\cb", "v"), "'a:b'"),  # STOMP 1.2 escapes ':' in a name as \c
    ],
    ids=["control character", "reserved prefix", "message-id", "timestamp", "colon in name"],
)
def test_a_stomp_send_holding_what_cannot_be_represented_gets_an_error_naming_it(
    pusher: RecordingPusher, api: HttpApi, header: tuple[str, str], named: str
) -> None:
    # Given a queue and a STOMP 1.2 session
    assert api.put("/queues/orders", {}).status == 201
    stomp("c1")
    # When it sends a header that cannot be an attribute
    say("c1", "SEND", [("destination", "/queue/orders"), header], "body")
    # Then an ERROR names it, and nothing was stored
    [error] = got(pusher, "c1", "ERROR")
    assert named in (error.header("message") or ""), error.header("message")
    assert dead_letters(api, "orders") == []


# ---- isolated: what one subscriber cannot be sent costs only that message ---------------


def test_a_message_a_stomp_1_0_consumer_cannot_carry_is_dead_lettered_alone(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given three messages, the middle one with a line break in an attribute (SQS takes it;
    # STOMP 1.0 has no escaping, so no 1.0 frame can carry it)
    first = sent(api, "orders", "first")
    odd = sent(api, "orders", "odd", attributes={"note": "line one\nline two"})
    last = sent(api, "orders", "last")
    # When a STOMP 1.0 client subscribes to the queue
    stomp("old", "1.0")
    say("old", "SUBSCRIBE", [("destination", "/queue/orders"), ("ack", "client")])
    # Then the one it cannot be sent is counted
    assert metrics.snapshot()[("Queue", "orders", "Undeliverable")] == 1
    # and it gets the two others, first time (not redelivered)
    messages = got(pusher, "old", "MESSAGE")
    assert [m.header("message-id") for m in messages] == [first, last]
    assert {m.header("redelivered") for m in messages} == {"false"}
    # and the odd one waits in the dead-letter queue, intact, with the reason
    [dead] = dead_letters(api, "orders.dlq")
    assert (dead["message_id"], dead["source_queue"]) == (odd, "orders")
    assert dead["attributes"] == {"note": "line one\nline two"}
    reason = dead["dead_letter_reason"]
    assert reason.startswith("undeliverable") and "'note'" in reason and "STOMP 1.0" in reason
    # and nothing else happened to the queue: the two are in flight, nothing is left over
    assert api.get("/queues/orders").json["counts"]["in_flight"] == 2


def test_a_cumulative_ack_past_a_message_set_aside_settles_its_neighbours_and_only_them(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given a STOMP 1.0 client-mode consumer that was pushed the two messages around one it
    # cannot carry (that one went to the dead-letter queue)
    first = sent(api, "orders", "first")
    odd = sent(api, "orders", "odd", attributes={"note": "line one\nline two"})
    last = sent(api, "orders", "last")
    stomp("old", "1.0")
    say("old", "SUBSCRIBE", [("destination", "/queue/orders"), ("ack", "client")])
    assert [m.header("message-id") for m in got(pusher, "old", "MESSAGE")] == [first, last]
    # When it acks the last one by its id (STOMP 1.0: cumulative, every earlier one too)
    say("old", "ACK", [("message-id", last), ("receipt", "acked")])
    # Then both are settled with no error (the one set aside was never its to ack), and the
    # dead letter stays where it is
    assert got(pusher, "old", "ERROR") == []
    assert [r.header("receipt-id") for r in got(pusher, "old", "RECEIPT")] == ["acked"]
    assert api.get("/queues/orders").json["counts"]["in_flight"] == 0
    assert [d["message_id"] for d in dead_letters(api, "orders.dlq")] == [odd]


def test_when_setting_a_message_aside_fails_its_neighbours_still_go_out(
    api: HttpApi, pusher: RecordingPusher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a message STOMP 1.0 cannot carry between two others, and DynamoDB failing the
    # dead-letter move
    def failing(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("DynamoDB erred")

    monkeypatch.setattr(QueueService, "dead_letter_undeliverable", failing)
    first = sent(api, "orders", "first")
    sent(api, "orders", "odd", attributes={"note": "a\nb"})
    last = sent(api, "orders", "last")
    # When a STOMP 1.0 consumer subscribes
    stomp("old", "1.0")
    say("old", "SUBSCRIBE", [("destination", "/queue/orders"), ("ack", "client")])
    # Then the other two go out all the same, and the odd one waits out its lease
    assert [m.header("message-id") for m in got(pusher, "old", "MESSAGE")] == [first, last]
    assert api.get("/queues/orders").json["counts"]["in_flight"] == 3


def test_a_json_consumer_gets_what_a_stomp_1_0_consumer_could_not_carry(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given a message whose attribute holds a line break (which a STOMP 1.0 header cannot carry)
    odd = sent(api, "orders", "odd", attributes={"note": "line one\nline two"})
    # When a JSON client subscribes to its queue
    json_client("j1")
    json_say("j1", action="subscribe", destination="/queue/orders", id="s1")
    # Then it gets the message, its attribute as sent, and nothing is dead-lettered
    [message] = json_got(pusher, "j1", "message")
    assert (message["message_id"], message["attributes"]) == (odd, {"note": "line one\nline two"})
    assert api.get("/queues/orders.dlq").status == 404 or dead_letters(api, "orders.dlq") == []


def test_a_poison_stored_before_sends_were_checked_costs_only_itself(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given the issue's queue as it was: three good messages and one holding NUL, stored
    # before the door refused it (built here without validation, as it was then)
    good = [sent(api, "orders.p1", f"good {n}") for n in range(3)]
    poison = NewMessage.model_construct(body=b"p", binary=False, attributes={"x": "a\x00b"})
    wiring.queue_service().send(ROOT, "orders.p1", poison)
    # When a STOMP 1.2 client subscribes to the queue
    stomp("c1")
    say(
        "c1",
        "SUBSCRIBE",
        [("id", "0"), ("destination", "/queue/orders.p1"), ("ack", "client-individual")],
    )
    # Then it gets the three good messages first time, and only the poison is dead-lettered
    messages = got(pusher, "c1", "MESSAGE")
    assert sorted(m.header("message-id") or "" for m in messages) == sorted(good)
    assert {m.header("redelivered") for m in messages} == {"false"}
    [dead] = dead_letters(api, "orders.p1.dlq")
    assert dead["body"] == "p" and "NUL" in dead["dead_letter_reason"]
    # and acking the good ones works as ever
    for message in messages:
        say("c1", "ACK", [("id", message.header("ack") or ""), ("receipt", "r")])
    assert [r.header("receipt-id") for r in got(pusher, "c1", "RECEIPT")] == ["r"] * 3
    assert api.get("/queues/orders.p1").json["counts"]["in_flight"] == 0


def test_a_message_over_the_websocket_limit_is_dead_lettered_and_its_neighbours_pushed(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given a 200 KiB message between two small ones (HTTP takes 256 KiB; a WebSocket
    # message, 128 KB)
    small = sent(api, "big", "small")
    large = sent(api, "big", "x" * 200 * 1024)
    after = sent(api, "big", "after")
    # When a push consumer subscribes
    json_client("j1")
    json_say("j1", action="subscribe", destination="/queue/big", id="s1", ack="client")
    # Then it gets the small ones, and the large one waits in the dead-letter queue
    assert [m["message_id"] for m in json_got(pusher, "j1", "message")] == [small, after]
    [dead] = dead_letters(api, "big.dlq")
    assert dead["message_id"] == large and "131072-byte" in dead["dead_letter_reason"]


def test_a_fifo_group_goes_on_past_a_message_its_consumer_cannot_carry(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given a FIFO group whose first message has a line break in an attribute
    odd = sent(api, "jobs.fifo", "odd", group_id="g", attributes={"note": "a\nb"})
    nxt = sent(api, "jobs.fifo", "next", group_id="g")
    # When a STOMP 1.0 consumer subscribes
    stomp("old", "1.0")
    say("old", "SUBSCRIBE", [("destination", "/queue/jobs.fifo"), ("ack", "client")])
    # Then the odd one is dead-lettered and the group's next message follows at once
    assert [m.header("message-id") for m in got(pusher, "old", "MESSAGE")] == [nxt]
    [dead] = dead_letters(api, "jobs.dlq.fifo")
    assert dead["message_id"] == odd


def test_a_topic_message_one_live_subscriber_cannot_carry_is_skipped_for_it_alone(
    aws: Aws, pusher: RecordingPusher
) -> None:
    # Given live subscribers of every kind on one topic, the STOMP 1.0 one listed first
    stomp("a-stomp10", "1.0")
    say("a-stomp10", "SUBSCRIBE", [("destination", "/topic/news")])
    stomp("b-stomp12")
    say("b-stomp12", "SUBSCRIBE", [("id", "n"), ("destination", "/topic/news")])
    json_client("c-json")
    json_say("c-json", action="subscribe", destination="/topic/news", id="n")
    # When one stream batch brings a message with a line break in a header, and another
    publish_and_dispatch(
        aws,
        "news",
        NewMessage(body=b"odd", attributes={"note": "a\nb"}),
        NewMessage(body=b"plain", attributes={"note": "ab"}),
    )
    # Then the 1.2 and JSON subscribers get both, the 1.0 one gets the one it can read
    assert [m.body for m in got(pusher, "b-stomp12", "MESSAGE")] == [b"odd", b"plain"]
    assert [m["body"] for m in json_got(pusher, "c-json", "message")] == ["odd", "plain"]
    assert [m.body for m in got(pusher, "a-stomp10", "MESSAGE")] == [b"plain"]
    # and the skip is counted for the topic
    assert metrics.snapshot()[("Topic", "news", "Undeliverable")] == 1


# ---- guarded: one failing queue or connection stops nothing else -------------------------


def test_the_sweeper_goes_on_past_a_queue_it_cannot_sweep(api: HttpApi, aws: Aws) -> None:
    # Given a queue holding an item damaged by someone with write access to the table
    sent(api, "a-damaged")
    [segment] = [
        i
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("I#a-damaged#") and i["sk"]["S"].startswith("S#")
    ]
    aws.dynamodb.update_item(
        TableName=aws.settings.messages_table,
        Key={"pk": segment["pk"], "sk": segment["sk"]},
        UpdateExpression="SET n = :bad",
        ExpressionAttributeValues=to_wire({":bad": "oops"}),
    )
    # and, later in the sweeper's round, a message over its queue's receive limit
    assert api.put("/queues/b-healthy", {"max_receive_count": 1}).status == 201
    over = sent(api, "b-healthy")
    api.post("/queues/b-healthy/receive", {"visibility_timeout": 0})
    # When the sweeper runs
    report = wiring.queue_service().sweep()
    # Then the damaged queue is reported, and the healthy one was swept all the same
    assert report.errors == ["a-damaged: ValueError"]
    assert report.dead_lettered == 1
    assert [m["message_id"] for m in dead_letters(api, "b-healthy.dlq")] == [over]


def test_feeding_every_queue_goes_on_past_a_queue_whose_consumer_fails(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given two queues with a push consumer each, the first one's connection failing
    for connection, queue in (("broken", "a-first"), ("fine", "b-second")):
        json_client(connection)
        json_say(connection, action="subscribe", destination=f"/queue/{queue}", id="s")
        sent(api, queue, f"for {connection}")
    pusher.broken.add("broken")
    # When the sweeper feeds every queue's consumers
    report = wiring.sessions().pump_all()
    # Then the failure is reported, and the second queue's consumer was fed
    assert report.errors == ["a-first: ClientError"]
    assert [m["body"] for m in json_got(pusher, "fine", "message")] == ["for fine"]
    # and the first queue's message went back to wait for its consumer
    assert api.get("/queues/a-first").json["counts"]["visible"] == 1


def test_one_consumer_whose_post_fails_does_not_hold_back_the_others(
    api: HttpApi, pusher: RecordingPusher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue with two consumers, the first in line failing, and four messages
    monkeypatch.setattr("mqless.domain.push.feeding.random.shuffle", lambda items: None)
    for connection, prefetch in (("a-broken", 2), ("b-fine", 10)):
        json_client(connection)
        json_say(
            connection,
            action="subscribe",
            destination="/queue/shared",
            id="s",
            ack="client-individual",
            prefetch=prefetch,
        )
    bodies = [f"m{n}" for n in range(4)]
    for body in bodies:
        sent(api, "shared", body)
    pusher.broken.add("a-broken")
    # When the queue is pumped (as a stream record makes it)
    wiring.sessions().try_pump("shared")
    # Then the other consumer gets every message at once, none stuck in a failed lease
    assert sorted(m["body"] for m in json_got(pusher, "b-fine", "message")) == bodies
    counts = api.get("/queues/shared").json["counts"]
    assert (counts["visible"], counts["in_flight"]) == (0, 4)


def test_one_live_subscriber_whose_post_fails_costs_the_others_nothing(
    aws: Aws, pusher: RecordingPusher
) -> None:
    # Given two JSON clients subscribed to a topic, posts to one of them failing
    for connection in ("a-broken", "b-fine"):
        json_client(connection)
        json_say(connection, action="subscribe", destination="/topic/news", id="n")
    pusher.broken.add("a-broken")

    # When two messages are published and dispatched
    publish_and_dispatch(aws, "news", NewMessage(body=b"one"), NewMessage(body=b"two"))

    # Then the other gets both
    assert [m["body"] for m in json_got(pusher, "b-fine", "message")] == ["one", "two"]


def test_a_stream_batch_feeds_every_queue_even_when_one_pump_fails(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # (dispatch already pumped each queue on its own: this pins it)
    # Given two queues, each with a message and a JSON consumer, posts to the first consumer failing
    for connection, queue in (("broken", "a-first"), ("fine", "b-second")):
        json_client(connection)
        json_say(connection, action="subscribe", destination=f"/queue/{queue}", id="s")
        sent(api, queue, f"for {connection}")
    pusher.broken.add("broken")
    # When one stream batch names both queues
    batch = _Batch()
    batch.queues = {"a-first", "b-second"}

    deliver(batch)

    # Then the second queue's consumer gets its message
    assert [m["body"] for m in json_got(pusher, "fine", "message")] == ["for fine"]


# ---- limits on client ids that become storage keys ---------------------------------------

TOO_LONG = "s" * 998  # the issue's SUBSCRIBE id: with the connection, over a 1,024-byte key
LONGEST = "\U0001d11e" * 128  # 128 characters of 4 UTF-8 bytes: the longest id allowed


def _refused(pusher: RecordingPusher, connection_id: str, *named: str) -> None:
    [error] = got(pusher, connection_id, "ERROR")
    message = error.header("message") or ""
    for part in named:
        assert part in message, message
    assert connection_id in pusher.closed


@pytest.mark.parametrize(
    ("version", "command", "headers", "named"),
    [
        ("1.2", "SUBSCRIBE", [("id", TOO_LONG), ("destination", "/queue/q")], "'id'"),
        ("1.2", "UNSUBSCRIBE", [("id", TOO_LONG)], "'id'"),
        ("1.2", "BEGIN", [("transaction", TOO_LONG)], "'transaction'"),
        ("1.2", "COMMIT", [("transaction", TOO_LONG)], "'transaction'"),
        (
            "1.2",
            "SEND",
            [("destination", "/queue/q"), ("transaction", TOO_LONG)],
            "'transaction'",
        ),
        ("1.1", "ACK", [("message-id", "m"), ("subscription", TOO_LONG)], "'subscription'"),
        ("1.0", "UNSUBSCRIBE", [("destination", "/queue/" + TOO_LONG)], "'destination'"),
    ],
    ids=["subscribe", "unsubscribe", "begin", "commit", "send", "ack 1.1", "unsubscribe 1.0"],
)
def test_a_stomp_id_over_the_limit_gets_an_error_naming_the_header_and_the_limit(
    pusher: RecordingPusher,
    aws: Aws,
    version: str,
    command: str,
    headers: list[tuple[str, str]],
    named: str,
) -> None:
    # Given a STOMP session
    stomp("c1", version)
    # When a frame carries an id longer than the limit
    say("c1", command, headers)
    # Then an ERROR names the header and the limit, the session ends, nothing is kept
    _refused(pusher, "c1", f"{command} header {named}", "characters long", "limit is 128")
    items = aws.dynamodb.scan(TableName=aws.settings.destinations_table)["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith(("QC#", "CONN#c1"))]


def test_a_stomp_1_0_subscription_named_by_a_long_destination_is_refused(
    pusher: RecordingPusher,
) -> None:
    # Given a STOMP 1.0 session
    # STOMP 1.0 needs no id: the destination names the subscription
    stomp("c1", "1.0")
    # When it subscribes to a destination of 207 characters
    say("c1", "SUBSCRIBE", [("destination", "/topic/" + "a" * 200)])
    # Then an ERROR frame names the destination
    [error] = got(pusher, "c1", "ERROR")
    assert "destination" in (error.header("message") or "")


def test_a_durable_subscription_name_that_is_no_queue_name_is_refused_naming_the_header(
    pusher: RecordingPusher,
) -> None:
    # Given a STOMP 1.2 session
    stomp("c1")
    # When it subscribes to a topic durably, under a name of 81 characters (longer than a queue name
    # may be)
    say(
        "c1",
        "SUBSCRIBE",
        [("id", "0"), ("destination", "/topic/t"), ("activemq.subscriptionName", "x" * 81)],
    )
    # Then an ERROR names the header, and the session ends
    _refused(pusher, "c1", "'activemq.subscriptionName'")


def test_a_json_subscription_id_over_the_limit_gets_an_error_frame(
    pusher: RecordingPusher,
) -> None:
    # Given a JSON WebSocket client
    json_client("j1")
    # When it subscribes with an id of 129 characters
    json_say("j1", action="subscribe", destination="/queue/q", id="s" * 129)
    # Then an invalid_request error frame names the id and the limit of 128
    [error] = json_got(pusher, "j1", "error")
    assert error["error"] == "invalid_request"
    assert "id" in error["message"] and "128" in error["message"]


def test_the_longest_ids_fit_every_key_they_become_part_of(
    api: HttpApi, pusher: RecordingPusher, aws: Aws
) -> None:
    # Given a STOMP session subscribing with the longest id there may be (a push consumer
    # in client-individual mode: its slots have the longest keys), and a durable one
    stomp("c1")
    say(
        "c1",
        "SUBSCRIBE",
        [("id", LONGEST), ("destination", "/queue/q"), ("ack", "client-individual")],
    )
    say(
        "c1",
        "SUBSCRIBE",
        [("id", LONGEST[1:]), ("destination", "/topic/" + "t" * 80)],
    )
    # When a message is sent in the longest-named transaction, committed, pushed and acked
    say("c1", "BEGIN", [("transaction", LONGEST)])
    say("c1", "SEND", [("destination", "/queue/q"), ("transaction", LONGEST)], "hello")
    say("c1", "COMMIT", [("transaction", LONGEST), ("receipt", "committed")])
    wiring.sessions().pump("q")  # the stream record's doing when deployed
    [message] = got(pusher, "c1", "MESSAGE")
    say("c1", "ACK", [("id", message.header("ack") or ""), ("receipt", "acked")])
    # Then every step worked: no ERROR, the message came and went
    assert got(pusher, "c1", "ERROR") == []
    assert message.header("subscription") == LONGEST and message.body == b"hello"
    assert [r.header("receipt-id") for r in got(pusher, "c1", "RECEIPT")] == [
        "committed",
        "acked",
    ]
    assert api.get("/queues/q").json["counts"] == {
        "visible": 0,
        "in_flight": 0,
        "delayed": 0,
        "approximate": False,
    }
