"""STOMP sessions over the WebSocket API, frame by frame, as the ws function sees them.

Each test drives `websocket.handle_event` with API Gateway's events ($connect with the
offered subprotocols, one $default per WebSocket message, $disconnect) and reads the
frames the server posted back to each connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.models import NewMessage
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from mqless.transports.websocket.stomp_frames import Frame
from tests.component.conftest import RecordingPusher
from tests.lambda_support import websocket_event


@pytest.fixture(autouse=True)
def _wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)


def _open(connection_id: str, offer: str = "v12.stomp") -> dict[str, Any]:
    result: dict[str, Any] = handle_event(
        websocket_event("CONNECT", connection_id, **{"Sec-WebSocket-Protocol": offer})
    )
    return result


def _say(connection_id: str, command: str, body: str = "", **headers: str) -> None:
    # content_type= is content-type:, as STOMP spells it; upper-case names stay as given
    names = {k: k if k.isupper() else k.replace("_", "-") for k in headers}
    lines = [command] + [f"{names[k]}:{v}" for k, v in headers.items()]
    handle_event(
        websocket_event("MESSAGE", connection_id, "\n".join(lines) + "\n\n" + body + "\x00")
    )


def _session(connection_id: str, version: str = "1.2") -> None:
    _open(connection_id, {"1.2": "v12.stomp", "1.1": "v11.stomp", "1.0": "v10.stomp"}[version])
    _say(connection_id, "CONNECT", accept_version=version, host="/")


def _got(pusher: RecordingPusher, connection_id: str, command: str | None = None) -> list[Frame]:
    frames = pusher.stomp_frames(connection_id)
    return [f for f in frames if command is None or f.command == command]


def _sub(connection_id: str, destination: str, sub_id: str = "0", **headers: str) -> None:
    _say(connection_id, "SUBSCRIBE", id=sub_id, destination=destination, **headers)


def test_connect_negotiates_the_subprotocol_the_version_and_heart_beats(
    pusher: RecordingPusher,
) -> None:
    response = _open("c1", "v10.stomp, v11.stomp, v12.stomp")
    _say("c1", "CONNECT", accept_version="1.0,1.1,1.2", heart_beat="10000,10000", host="/")

    assert response["headers"] == {"Sec-WebSocket-Protocol": "v12.stomp"}
    [connected] = _got(pusher, "c1")
    assert connected.command == "CONNECTED"
    assert connected.header("version") == "1.2"
    # the server sends no beats and asks for one every five minutes
    assert connected.header("heart-beat") == "0,300000"


def test_a_client_without_a_stomp_subprotocol_is_served_json_unless_it_sends_connect(
    pusher: RecordingPusher,
) -> None:
    response = handle_event(websocket_event("CONNECT", "plain"))
    _say("plain", "STOMP", accept_version="1.2")

    assert "headers" not in response
    assert _got(pusher, "plain")[0].command == "CONNECTED"


def test_queue_subscriber_gets_sent_messages_with_their_headers_and_acks_them(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    _session("c1")
    _sub("c1", "/queue/orders", ack="client-individual", receipt="sub-1")
    _say(
        "c1",
        "SEND",
        "hello\nworld",
        destination="/queue/orders",
        content_type="text/plain",
        correlation_id="corr-1",
        reply_to="/queue/replies",
        x_custom="a:b",
        receipt="send-1",
    )
    sessions.pump("orders")  # the stream record's doing when deployed

    receipts = [f.header("receipt-id") for f in _got(pusher, "c1", "RECEIPT")]
    [message] = _got(pusher, "c1", "MESSAGE")
    assert receipts == ["sub-1", "send-1"]
    assert message.body == b"hello\nworld"
    assert message.header("destination") == "/queue/orders"
    assert message.header("subscription") == "0"
    assert message.header("content-type") == "text/plain"
    assert message.header("correlation-id") == "corr-1"
    assert message.header("reply-to") == "/queue/replies"
    assert message.header("x-custom") == "a:b"  # escaped on the wire, restored here
    assert message.header("redelivered") == "false"
    assert message.header("message-id") and message.header("ack")

    _say("c1", "ACK", id=message.header("ack") or "", receipt="ack-1")

    assert _got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "ack-1"
    _, counts = broker.get_queue(ANONYMOUS, "orders")
    assert (counts.visible, counts.in_flight) == (0, 0)


def test_nack_redelivers_the_message(pusher: RecordingPusher, sessions: Sessions) -> None:
    _session("c1")
    _sub("c1", "/queue/q", ack="client-individual")
    _say("c1", "SEND", "again", destination="/queue/q")
    sessions.pump("q")
    [first] = _got(pusher, "c1", "MESSAGE")

    _say("c1", "NACK", id=first.header("ack") or "")

    [_, second] = _got(pusher, "c1", "MESSAGE")
    assert second.header("message-id") == first.header("message-id")
    assert second.header("redelivered") == "true"
    assert second.body == b"again"


def test_prefetch_headers_limit_unacked_messages(
    pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    for i in range(6):
        broker.send(ANONYMOUS, "deep", NewMessage(body=str(i).encode()))
        clock.advance(0.001)
    _session("amq")
    _session("rabbit")

    _sub("amq", "/queue/deep", ack="client", **{"activemq.prefetchSize": "2"})
    _sub("rabbit", "/queue/deep", ack="client", **{"prefetch-count": "3"})

    assert len(_got(pusher, "amq", "MESSAGE")) == 2
    assert len(_got(pusher, "rabbit", "MESSAGE")) == 3


def test_stomp_1_1_acks_by_message_id_and_subscription(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    _session("old", version="1.1")
    _sub("old", "/queue/v11", sub_id="sub-a", ack="client")
    _say("old", "SEND", "x", destination="/queue/v11")
    sessions.pump("v11")
    [message] = _got(pusher, "old", "MESSAGE")
    assert message.header("ack") is None  # 1.1 has no ack header

    _say(
        "old",
        "ACK",
        subscription="sub-a",
        message_id=message.header("message-id") or "",
        receipt="r",
    )

    assert _got(pusher, "old", "RECEIPT")[-1].header("receipt-id") == "r"
    _, counts = broker.get_queue(ANONYMOUS, "v11")
    assert counts.in_flight == 0


def test_transactions_hold_sends_and_acks_until_commit(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    _session("c1")
    _say("c1", "BEGIN", transaction="tx1")
    _say("c1", "SEND", "one", destination="/queue/tx", transaction="tx1")
    _say("c1", "SEND", "two", destination="/queue/tx", transaction="tx1")
    before = broker.list_queues(ANONYMOUS)  # not even created yet

    _say("c1", "COMMIT", transaction="tx1", receipt="done")
    _, after = broker.get_queue(ANONYMOUS, "tx")

    assert before == []
    assert after.visible == 2
    assert _got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "done"

    # An ACK inside a transaction waits for COMMIT too
    _sub("c1", "/queue/tx", ack="client-individual", prefetch_count="1")
    [message] = _got(pusher, "c1", "MESSAGE")
    _say("c1", "BEGIN", transaction="tx2")
    _say("c1", "ACK", id=message.header("ack") or "", transaction="tx2")
    _, held = broker.get_queue(ANONYMOUS, "tx")
    _say("c1", "COMMIT", transaction="tx2")
    _, acked = broker.get_queue(ANONYMOUS, "tx")
    assert (held.visible + held.in_flight, acked.visible + acked.in_flight) == (2, 1)


def test_abort_and_disconnect_drop_held_frames(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    _session("c1")
    _say("c1", "BEGIN", transaction="t")
    _say("c1", "SEND", "never", destination="/queue/dropped", transaction="t")
    _say("c1", "ABORT", transaction="t")
    _say("c1", "BEGIN", transaction="u")
    _say("c1", "SEND", "never either", destination="/queue/dropped", transaction="u")
    handle_event(websocket_event("DISCONNECT", "c1"))

    assert broker.list_queues(ANONYMOUS) == []
    # a COMMIT of an aborted transaction is an error (and the session ends)
    _session("c2")
    _say("c2", "BEGIN", transaction="t")
    _say("c2", "ABORT", transaction="t")
    _say("c2", "COMMIT", transaction="t")
    [error] = _got(pusher, "c2", "ERROR")
    assert "has not begun" in (error.header("message") or "")
    assert "c2" in pusher.closed


def test_held_bodies_are_stored_encrypted(sessions: Sessions, aws: Any) -> None:
    _session("c1")
    _say("c1", "BEGIN", transaction="t")
    _say("c1", "SEND", "secret payload", destination="/queue/x", transaction="t")

    scan = aws.dynamodb.scan(TableName=aws.settings.destinations_table)
    assert b"secret payload" not in repr(scan).encode()


def test_a_malformed_frame_gets_an_error_and_only_that_connection_closes(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    _session("bad")
    _session("good")
    _sub("good", "/topic/news")

    handle_event(
        websocket_event("MESSAGE", "bad", "SEND\ndestination:/queue/x\nbad\\xheader:1\n\nx\x00")
    )
    _say("good", "SEND", "still here", destination="/topic/news", receipt="ok")

    [error] = _got(pusher, "bad", "ERROR")
    assert "escape" in (error.header("message") or "")
    assert pusher.closed == ["bad"]
    assert sessions.info("bad") is None
    assert _got(pusher, "good", "RECEIPT")[-1].header("receipt-id") == "ok"


@pytest.mark.parametrize(
    ("frame", "complaint"),
    [
        ("SUBSCRIBE\nid:1\ndestination:/exchange/x\n\n\x00", "must be /queue/NAME or /topic/NAME"),
        ("SUBSCRIBE\nid:1\ndestination:/queue/q\nselector:a = = 1\n\n\x00", "at position 5"),
        ("SUBSCRIBE\nid:1\ndestination:/queue/q\nactivemq.prefetchSize:0\n\n\x00", "prefetch"),
        ("SUBSCRIBE\nid:1\ndestination:/queue/q\nack:sometimes\n\n\x00", "ack must be"),
        ("SEND\ndestination:/queue/q\ncontent-length:99\n\nshort\x00", "content-length"),
        ("SEND\ndestination:/queue/q\nAMQ_SCHEDULED_DELAY:soon\n\nx\x00", "AMQ_SCHEDULED_DELAY"),
        ("UNSUBSCRIBE\nid:nope\n\n\x00", "no subscription"),
        ("ACK\n\n\x00", "'id'"),
        ("CONNECT\naccept-version:1.2\n\n\x00", "already connected"),
        ("MESSAGE\ndestination:/queue/q\n\n\x00", "not a frame a client may send"),
    ],
)
def test_client_mistakes_get_a_useful_error_then_the_socket_closes(
    pusher: RecordingPusher, frame: str, complaint: str
) -> None:
    _session("c1")
    handle_event(websocket_event("MESSAGE", "c1", frame.replace("RECEIPT_ID", "r")))

    [error] = _got(pusher, "c1", "ERROR")
    assert complaint in (error.header("message") or "")
    assert pusher.closed == ["c1"]


def test_a_frame_before_connect_is_refused(pusher: RecordingPusher) -> None:
    _open("c1")
    _say("c1", "SEND", "x", destination="/queue/q", receipt="r-9")

    [error] = _got(pusher, "c1", "ERROR")
    assert "CONNECT first" in (error.header("message") or "")
    assert error.header("receipt-id") == "r-9"


def test_an_ack_for_a_message_no_longer_held_is_an_error_that_keeps_the_session(
    pusher: RecordingPusher,
) -> None:
    _session("c1")
    _sub("c1", "/queue/q", ack="client-individual")

    _say("c1", "ACK", id="5.0.00000000:0")
    _say("c1", "SEND", "after", destination="/queue/q", receipt="alive")

    [error] = _got(pusher, "c1", "ERROR")
    assert "not in flight" in (error.header("message") or "")
    assert pusher.closed == []
    assert _got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "alive"


def test_heart_beats_are_accepted_and_ignored(pusher: RecordingPusher) -> None:
    _session("c1")
    handle_event(websocket_event("MESSAGE", "c1", "\n"))
    handle_event(websocket_event("MESSAGE", "c1", "\r\n\n"))

    assert [f.command for f in _got(pusher, "c1")] == ["CONNECTED"]
    assert pusher.closed == []


def test_disconnect_answers_its_receipt_releases_leases_and_closes(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    _session("c1")
    _sub("c1", "/queue/held", ack="client-individual")
    _say("c1", "SEND", "x", destination="/queue/held")
    sessions.pump("held")

    _say("c1", "DISCONNECT", receipt="bye")

    assert _got(pusher, "c1")[-1] == Frame("RECEIPT", (("receipt-id", "bye"),))
    assert pusher.closed == ["c1"]
    _, counts = broker.get_queue(ANONYMOUS, "held")
    assert (counts.visible, counts.in_flight) == (1, 0)


def test_send_headers_become_message_fields(
    pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    _session("c1")
    _say(
        "c1",
        "SEND",
        "grouped",
        destination="/queue/jobs.fifo",
        JMSXGroupID="g1",
        persistent="true",
        priority="4",
        color="blue",
    )
    _say("c1", "SEND", "later", destination="/queue/delayed", AMQ_SCHEDULED_DELAY="1500")

    [fifo] = broker.receive(ANONYMOUS, "jobs.fifo")
    assert (fifo.group_id, fifo.attributes) == ("g1", {"color": "blue"})
    assert broker.receive(ANONYMOUS, "delayed") == []
    clock.advance(2)
    assert [d.body for d in broker.receive(ANONYMOUS, "delayed")] == [b"later"]


def test_topic_messages_reach_live_stomp_and_json_subscribers(
    pusher: RecordingPusher, sessions: Sessions, aws: Any
) -> None:
    _session("stomp")
    handle_event(websocket_event("CONNECT", "json"))
    _sub("stomp", "/topic/prices.*", ack="client-individual")
    handle_event(
        websocket_event(
            "MESSAGE", "json", '{"action":"subscribe","destination":"/topic/prices.>","id":"j"}'
        )
    )
    _say("stomp", "SEND", "42", destination="/topic/prices.acme", currency="EUR")

    published = [
        i
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("T#")
    ]
    from mqless.storage.dynamo import from_wire

    sent = sessions.push_published([from_wire(i) for i in published])

    [message] = _got(pusher, "stomp", "MESSAGE")
    json_message = pusher.json_frames("json")[-1]
    assert sent == 2
    assert message.header("destination") == "/topic/prices.acme"
    assert message.header("currency") == "EUR"
    assert json_message["body"] == "42" and json_message["subscription"] == "j"
    # a topic message needs no ack; acking it anyway is accepted
    _say("stomp", "ACK", id=message.header("ack") or "", receipt="fine")
    assert _got(pusher, "stomp", "RECEIPT")[-1].header("receipt-id") == "fine"


def test_a_durable_subscription_keeps_messages_while_the_subscriber_is_away(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, aws: Any
) -> None:
    topics: TopicService = sessions._topics
    _session("c1")
    _sub(
        "c1", "/topic/audit.>", ack="client-individual", **{"activemq.subscriptionName": "auditor"}
    )
    _say("c1", "DISCONNECT")

    # While nobody is connected, a message is published (and indexed for the subscription)
    topics.publish(ANONYMOUS, "audit.login", NewMessage(body=b"who"))

    # When the subscriber comes back under the same subscription name
    _session("c2")
    _sub(
        "c2", "/topic/audit.>", ack="client-individual", **{"activemq.subscriptionName": "auditor"}
    )

    [message] = _got(pusher, "c2", "MESSAGE")
    assert message.body == b"who"
    assert message.header("destination") == "/topic/audit.login"

    # UNSUBSCRIBE naming the subscription deletes it
    _say("c2", "UNSUBSCRIBE", id="0", **{"activemq.subscriptionName": "auditor"})
    assert topics.subscriptions(ANONYMOUS) == []


def test_the_first_of_repeated_headers_wins(pusher: RecordingPusher, broker: QueueService) -> None:
    _session("c1")
    handle_event(
        websocket_event(
            "MESSAGE",
            "c1",
            "SEND\ndestination:/queue/first\ndestination:/queue/second\n"
            "colour:red\ncolour:blue\n\nx\x00",
        )
    )

    [delivery] = broker.receive(ANONYMOUS, "first")
    assert delivery.attributes == {"colour": "red"}
    assert [q.name for q in broker.list_queues(ANONYMOUS)] == ["first", "first.dlq"]


def test_a_nul_inside_a_body_with_content_length_arrives_whole(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    _session("c1")
    _sub("c1", "/queue/nul")
    body = "before\x00after"
    handle_event(
        websocket_event(
            "MESSAGE",
            "c1",
            f"SEND\ndestination:/queue/nul\ncontent-length:{len(body)}\n\n{body}\x00",
        )
    )
    sessions.pump("nul")

    [message] = _got(pusher, "c1", "MESSAGE")
    assert message.body == body.encode()


@contextlib.contextmanager
def _connection_reads(aws: Any) -> Iterator[list[tuple[str, str, str]]]:
    """Every read of a connection's, subscription's or consumer's item while the block runs:
    (operation, partition, sort key or "" for a query)."""
    reads: list[tuple[str, str, str]] = []

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "GetItem":
            pk, sk = params["Key"]["pk"]["S"], params["Key"]["sk"]["S"]
            if pk.startswith("CONN#") or sk.startswith("C#"):
                reads.append(("GetItem", pk, sk))
        elif model.name == "Query":
            pk = params["ExpressionAttributeValues"][":p"]["S"]
            if pk.startswith("CONN#"):
                reads.append(("Query", pk, ""))

    events = aws.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb", note)
    try:
        yield reads
    finally:
        events.unregister("before-parameter-build.dynamodb", note)


def test_an_ack_reads_its_connection_subscription_and_consumer_in_one_request(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, aws: Any
) -> None:
    # Given a client-individual subscriber that holds a message
    _session("c1")
    _sub("c1", "/queue/q", ack="client-individual")
    _say("c1", "SEND", "x", destination="/queue/q")
    sessions.pump("q")
    [message] = _got(pusher, "c1", "MESSAGE")

    # When it ACKs the message
    with _connection_reads(aws) as reads:
        _say("c1", "ACK", id=message.header("ack") or "", receipt="done")

    # Then the message is acked, and the connection, the subscription and the consumer
    # were read fresh in one request (not one each)
    assert _got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "done"
    _, counts = broker.get_queue(ANONYMOUS, "q")
    assert (counts.visible, counts.in_flight) == (0, 0)
    assert reads == [("Query", "CONN#c1", "")]


def test_an_ack_after_unsubscribe_in_the_same_message_is_refused_as_unsubscribed(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a client-individual subscriber that holds a message
    _session("c1")
    _sub("c1", "/queue/q", ack="client-individual")
    _say("c1", "SEND", "x", destination="/queue/q")
    sessions.pump("q")
    [message] = _got(pusher, "c1", "MESSAGE")

    # When one WebSocket message carries UNSUBSCRIBE and then an ACK of that message
    frames = f"UNSUBSCRIBE\nid:0\n\n\x00ACK\nid:{message.header('ack')}\n\n\x00"
    handle_event(websocket_event("MESSAGE", "c1", frames))

    # Then the ACK finds no subscription (the one read with the connection is gone), the
    # session stays, and the message went back to the queue
    [error] = _got(pusher, "c1", "ERROR")
    assert "no subscription '0'" in (error.header("message") or "")
    assert pusher.closed == []
    _, counts = broker.get_queue(ANONYMOUS, "q")
    assert (counts.visible, counts.in_flight) == (1, 0)


def test_a_subscription_past_those_read_with_the_connection_is_still_acked(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a connection with 12 client-individual subscriptions (more than are read with
    # the connection), and a message held by the one whose id sorts last
    _session("c1")
    for n in range(12):
        _sub("c1", f"/queue/q{n}", sub_id=f"s{n:02d}", ack="client-individual")
    _say("c1", "SEND", "x", destination="/queue/q11")
    sessions.pump("q11")
    [message] = _got(pusher, "c1", "MESSAGE")
    assert message.header("subscription") == "s11"

    # When it is ACKed
    _say("c1", "ACK", id=message.header("ack") or "", receipt="done")

    # Then it is acked like any other
    assert _got(pusher, "c1", "ERROR") == []
    assert _got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "done"
    _, counts = broker.get_queue(ANONYMOUS, "q11")
    assert (counts.visible, counts.in_flight) == (0, 0)


def test_expires_is_measured_against_the_broker_clock(
    pusher: RecordingPusher, sessions: Sessions, clock: ManualClock
) -> None:
    # Given a broker whose clock is a day ahead of the host's wall clock, and two messages
    # sent over STOMP: one expiring a minute from now on that clock, one in an hour
    clock.advance(24 * 60 * 60)
    _session("c1")
    _say("c1", "SEND", "soon", destination="/queue/q", expires=str(clock.now_ms() + 60_000))
    _say("c1", "SEND", "later", destination="/queue/q", expires=str(clock.now_ms() + 3_600_000))

    # When two minutes pass on the broker's clock and a consumer subscribes
    clock.advance(120)
    _sub("c1", "/queue/q")
    sessions.pump("q")

    # Then only the message whose expiry is still ahead arrives
    assert [m.body for m in _got(pusher, "c1", "MESSAGE")] == [b"later"]
