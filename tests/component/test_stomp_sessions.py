"""STOMP sessions over the WebSocket API, frame by frame, as the ws function sees them.

Each test drives `websocket.handle_event` with API Gateway's events ($connect with the
offered subprotocols, one $default per WebSocket message, $disconnect) and reads what a
user sees: the frames the server posted back to each connection, what another consumer
gets, and the queue's counts and the open connections as an administrator sees them
(`GET /queues/{name}`, `GET /connections`).
"""

from __future__ import annotations

from typing import Any

import pytest

from mqless import assembly, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.storage.deliveries import DeliveryRecords
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from mqless.transports.websocket.stomp_frames import Frame
from mqless_cli.billing import Meter, observing_moto
from tests.call_counts import count_calls
from tests.component.conftest import Aws, RecordingPusher, build_sessions
from tests.component.dispatch_function import DispatchFunction
from tests.lambda_support import websocket_event
from tests.stomp_frames_sent import got, open_connection, say, stomp_session


@pytest.fixture(autouse=True)
def _wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)


@pytest.fixture
def topics(aws: Aws, clock: ManualClock) -> TopicService:
    """The topic service as the HTTP function builds it (durable subscriptions: what
    `GET /subscriptions` lists)."""
    return assembly.build_topic_service(
        aws.settings, dynamodb=aws.dynamodb, kms=aws.kms, time=clock
    )


def _sub(connection_id: str, destination: str, sub_id: str = "0", **headers: str) -> None:
    say(connection_id, "SUBSCRIBE", id=sub_id, destination=destination, **headers)


def _receipts(pusher: RecordingPusher, connection_id: str) -> list[str | None]:
    return [f.header("receipt-id") for f in got(pusher, connection_id, "RECEIPT")]


def _error_message(pusher: RecordingPusher, connection_id: str) -> str:
    """The message of the one ERROR frame the connection got."""
    [error] = got(pusher, connection_id, "ERROR")
    return error.header("message") or ""


def _counts(broker: QueueService, queue: str) -> tuple[int, int]:
    """(visible, in flight): the queue's counts as `GET /queues/{name}` shows them."""
    _, counts = broker.get_queue(ANONYMOUS, queue)
    return counts.visible, counts.in_flight


def _connections(sessions: Sessions) -> list[str]:
    """The open connections, as `GET /connections` lists them."""
    return sorted(c["id"] for c in sessions.live.list_connections())


def test_connect_negotiates_the_subprotocol_the_version_and_heart_beats(
    pusher: RecordingPusher,
) -> None:
    # Given a client offering STOMP 1.0, 1.1 and 1.2 as WebSocket subprotocols
    response = open_connection("c1", "v10.stomp, v11.stomp, v12.stomp")
    # When it sends CONNECT accepting all three, asking for heart-beats every 10 s
    say("c1", "CONNECT", accept_version="1.0,1.1,1.2", heart_beat="10000,10000", host="/")

    # Then the handshake picks the newest subprotocol, and CONNECTED says version 1.2
    assert response["headers"] == {"Sec-WebSocket-Protocol": "v12.stomp"}
    [connected] = got(pusher, "c1")
    assert (connected.command, connected.header("version")) == ("CONNECTED", "1.2")
    # and the server sends no beats and asks for one every five minutes
    assert connected.header("heart-beat") == "0,300000"


def test_a_client_without_a_stomp_subprotocol_is_served_json_unless_it_sends_connect(
    pusher: RecordingPusher,
) -> None:
    # Given a client that offered no subprotocol (the handshake names none)
    response = handle_event(websocket_event("CONNECT", "plain"))
    # When its first frame is a STOMP frame
    say("plain", "STOMP", accept_version="1.2")

    # Then it is served STOMP
    assert "headers" not in response
    assert [f.command for f in got(pusher, "plain")] == ["CONNECTED"]


def test_queue_subscriber_gets_sent_messages_with_their_headers_and_acks_them(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a client-individual subscriber of a queue
    stomp_session("c1")
    _sub("c1", "/queue/orders", ack="client-individual", receipt="sub-1")

    # When a SEND with headers of every kind reaches the queue (and the stream wakes the pump)
    say(
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

    # Then both receipts came, and the MESSAGE carries the body and every header
    [message] = got(pusher, "c1", "MESSAGE")
    assert _receipts(pusher, "c1") == ["sub-1", "send-1"]
    assert message.body == b"hello\nworld"
    assert message.header("destination") == "/queue/orders"
    assert message.header("subscription") == "0"
    assert message.header("content-type") == "text/plain"
    assert message.header("correlation-id") == "corr-1"
    assert message.header("reply-to") == "/queue/replies"
    assert message.header("x-custom") == "a:b"  # escaped on the wire, restored here
    assert message.header("redelivered") == "false"
    assert message.header("message-id") and message.header("ack")

    # When it ACKs the message
    say("c1", "ACK", id=message.header("ack") or "", receipt="ack-1")

    # Then the ACK's receipt comes and the queue holds nothing, visible or in flight
    assert _receipts(pusher, "c1")[-1] == "ack-1"
    assert _counts(broker, "orders") == (0, 0)


def test_nack_redelivers_the_message(pusher: RecordingPusher, sessions: Sessions) -> None:
    # Given a client-individual subscriber holding a message
    stomp_session("c1")
    _sub("c1", "/queue/q", ack="client-individual")
    say("c1", "SEND", "again", destination="/queue/q")
    sessions.pump("q")
    [first] = got(pusher, "c1", "MESSAGE")

    # When it NACKs it
    say("c1", "NACK", id=first.header("ack") or "")

    # Then the same message comes again, marked redelivered
    [_, second] = got(pusher, "c1", "MESSAGE")
    assert second.header("message-id") == first.header("message-id")
    assert (second.header("redelivered"), second.body) == ("true", b"again")


def test_prefetch_headers_limit_unacked_messages(
    pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue of six messages and two STOMP sessions
    for i in range(6):
        broker.send(ANONYMOUS, "deep", NewMessage(body=str(i).encode()))
        clock.advance(0.001)
    stomp_session("amq")
    stomp_session("rabbit")

    # When they subscribe in client mode with ActiveMQ's and RabbitMQ's prefetch headers
    _sub("amq", "/queue/deep", ack="client", **{"activemq.prefetchSize": "2"})
    _sub("rabbit", "/queue/deep", ack="client", **{"prefetch-count": "3"})

    # Then each holds as many unacked messages as its header says
    assert len(got(pusher, "amq", "MESSAGE")) == 2
    assert len(got(pusher, "rabbit", "MESSAGE")) == 3


def test_stomp_1_1_acks_by_message_id_and_subscription(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a STOMP 1.1 client-mode subscriber holding a message (1.1 has no ack header)
    stomp_session("old", version="1.1")
    _sub("old", "/queue/v11", sub_id="sub-a", ack="client")
    say("old", "SEND", "x", destination="/queue/v11")
    sessions.pump("v11")
    [message] = got(pusher, "old", "MESSAGE")
    assert message.header("ack") is None

    # When it ACKs by subscription and message-id, as 1.1 does
    say(
        "old",
        "ACK",
        subscription="sub-a",
        message_id=message.header("message-id") or "",
        receipt="r",
    )

    # Then the receipt comes and nothing is in flight any more
    assert _receipts(pusher, "old")[-1] == "r"
    assert _counts(broker, "v11") == (0, 0)


def test_transactions_hold_sends_and_acks_until_commit(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a transaction holding two SENDs
    stomp_session("c1")
    say("c1", "BEGIN", transaction="tx1")
    say("c1", "SEND", "one", destination="/queue/tx", transaction="tx1")
    say("c1", "SEND", "two", destination="/queue/tx", transaction="tx1")
    # (the queue is not even created yet)
    assert broker.list_queues(ANONYMOUS) == []

    # When it is committed
    say("c1", "COMMIT", transaction="tx1", receipt="done")

    # Then both messages are in the queue, and the COMMIT's receipt came
    assert _counts(broker, "tx") == (2, 0)
    assert _receipts(pusher, "c1")[-1] == "done"

    # Given a subscriber holding one of them, and an ACK of it inside a transaction
    _sub("c1", "/queue/tx", ack="client-individual", prefetch_count="1")
    [message] = got(pusher, "c1", "MESSAGE")
    say("c1", "BEGIN", transaction="tx2")
    say("c1", "ACK", id=message.header("ack") or "", transaction="tx2")
    # Then before COMMIT the message is still held
    assert _counts(broker, "tx") == (1, 1)
    # When the transaction is committed
    say("c1", "COMMIT", transaction="tx2")
    # Then the ACK takes effect: one message is left, now pushed on the credit it freed
    assert [m.body for m in got(pusher, "c1", "MESSAGE")] == [b"one", b"two"]
    assert _counts(broker, "tx") == (0, 1)


def test_abort_and_disconnect_drop_held_frames(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a SEND held in a transaction that is aborted, and one in a transaction left
    # open when the client disconnects
    stomp_session("c1")
    say("c1", "BEGIN", transaction="t")
    say("c1", "SEND", "never", destination="/queue/dropped", transaction="t")
    say("c1", "ABORT", transaction="t")
    say("c1", "BEGIN", transaction="u")
    say("c1", "SEND", "never either", destination="/queue/dropped", transaction="u")
    # When the connection ends
    handle_event(websocket_event("DISCONNECT", "c1"))
    # Then neither SEND reached anything: no queue was made
    assert broker.list_queues(ANONYMOUS) == []

    # When another client COMMITs a transaction it aborted
    stomp_session("c2")
    say("c2", "BEGIN", transaction="t")
    say("c2", "ABORT", transaction="t")
    say("c2", "COMMIT", transaction="t")
    # Then that is an error, and the session ends
    assert "has not begun" in _error_message(pusher, "c2")
    assert pusher.closed == ["c2"]


def test_held_bodies_are_stored_encrypted(sessions: Sessions, aws: Aws) -> None:
    """What is stored is the point here (no user sees a held SEND until COMMIT): the table
    of connections and transactions is read as someone with read access to it could."""
    # Given a session with a transaction open
    stomp_session("c1")
    say("c1", "BEGIN", transaction="t")
    # When a SEND is held in it
    say("c1", "SEND", "secret payload", destination="/queue/x", transaction="t")
    # Then the body is nowhere in the table in clear
    scan = aws.dynamodb.scan(TableName=aws.settings.destinations_table)
    assert scan["Items"] != []
    assert b"secret payload" not in repr(scan).encode()


def test_a_malformed_frame_gets_an_error_and_only_that_connection_closes(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given two sessions, one of them subscribed to a topic
    stomp_session("bad")
    stomp_session("good")
    _sub("good", "/topic/news")

    # When one sends a frame with an invalid escape in a header, and the other a SEND
    handle_event(
        websocket_event("MESSAGE", "bad", "SEND\ndestination:/queue/x\nbad\\xheader:1\n\nx\x00")
    )
    say("good", "SEND", "still here", destination="/topic/news", receipt="ok")

    # Then the first gets an ERROR about the escape and is closed and forgotten; the other
    # is served as before
    assert "escape" in _error_message(pusher, "bad")
    assert pusher.closed == ["bad"]
    assert _connections(sessions) == ["good"]
    assert _receipts(pusher, "good") == ["ok"]


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
    ids=[
        "unknown destination kind",
        "bad selector",
        "prefetch 0",
        "unknown ack mode",
        "short body",
        "bad scheduled delay",
        "unknown subscription",
        "ACK without id",
        "second CONNECT",
        "server frame",
    ],
)
def test_client_mistakes_get_a_useful_error_then_the_socket_closes(
    pusher: RecordingPusher, frame: str, complaint: str
) -> None:
    # Given a connected session
    stomp_session("c1")
    # When it sends a frame it should not
    handle_event(websocket_event("MESSAGE", "c1", frame))
    # Then one ERROR says what is wrong, and the socket is closed
    assert complaint in _error_message(pusher, "c1")
    assert pusher.closed == ["c1"]


def test_a_frame_before_connect_is_refused(pusher: RecordingPusher) -> None:
    # Given a STOMP WebSocket that has not sent CONNECT
    open_connection("c1")
    # When it sends a SEND asking for a receipt
    say("c1", "SEND", "x", destination="/queue/q", receipt="r-9")
    # Then an ERROR tells it to CONNECT first, naming the receipt it asked for
    [error] = got(pusher, "c1", "ERROR")
    assert "CONNECT first" in (error.header("message") or "")
    assert error.header("receipt-id") == "r-9"


def test_an_ack_for_a_message_no_longer_held_is_an_error_that_keeps_the_session(
    pusher: RecordingPusher,
) -> None:
    # Given a client-individual subscriber holding nothing
    stomp_session("c1")
    _sub("c1", "/queue/q", ack="client-individual")

    # When it ACKs an id no message is held under, then sends
    say("c1", "ACK", id="5.0.00000000:0")
    say("c1", "SEND", "after", destination="/queue/q", receipt="alive")

    # Then the ERROR says it is not in flight, and the session goes on
    assert "not in flight" in _error_message(pusher, "c1")
    assert pusher.closed == []
    assert _receipts(pusher, "c1") == ["alive"]


def test_heart_beats_are_accepted_and_ignored(pusher: RecordingPusher) -> None:
    # Given a connected session
    stomp_session("c1")
    # When it sends heart-beats (a bare EOL, and CRLF then LF)
    handle_event(websocket_event("MESSAGE", "c1", "\n"))
    handle_event(websocket_event("MESSAGE", "c1", "\r\n\n"))
    # Then nothing is answered and the socket stays open
    assert [f.command for f in got(pusher, "c1")] == ["CONNECTED"]
    assert pusher.closed == []


def test_disconnect_answers_its_receipt_releases_leases_and_closes(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a client-individual subscriber holding a message
    stomp_session("c1")
    _sub("c1", "/queue/held", ack="client-individual")
    say("c1", "SEND", "x", destination="/queue/held")
    sessions.pump("held")
    assert len(got(pusher, "c1", "MESSAGE")) == 1

    # When it sends DISCONNECT asking for a receipt
    say("c1", "DISCONNECT", receipt="bye")

    # Then the receipt is its last frame, the socket is closed, and the message it held is
    # back in the queue at once
    assert got(pusher, "c1")[-1] == Frame("RECEIPT", (("receipt-id", "bye"),))
    assert pusher.closed == ["c1"]
    assert _counts(broker, "held") == (1, 0)


def test_send_headers_become_message_fields(
    pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    # Given a connected session
    stomp_session("c1")
    # When it sends a grouped message to a FIFO queue, and one with a scheduled delay
    say(
        "c1",
        "SEND",
        "grouped",
        destination="/queue/jobs.fifo",
        JMSXGroupID="g1",
        persistent="true",
        priority="4",
        color="blue",
    )
    say("c1", "SEND", "later", destination="/queue/delayed", AMQ_SCHEDULED_DELAY="1500")

    # Then a receiver gets the group id, and the other headers as attributes (STOMP's own
    # persistent and priority are not attributes)
    [fifo] = broker.receive(ANONYMOUS, "jobs.fifo")
    assert (fifo.group_id, fifo.attributes) == ("g1", {"color": "blue"})
    # and the delayed message only once its delay has passed
    assert broker.receive(ANONYMOUS, "delayed") == []
    clock.advance(2)
    assert [d.body for d in broker.receive(ANONYMOUS, "delayed")] == [b"later"]


def test_topic_messages_reach_live_stomp_and_json_subscribers(
    pusher: RecordingPusher, sessions: Sessions, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a STOMP subscriber of prices.* and a JSON subscriber of prices.>
    dispatch = DispatchFunction(aws, sessions, monkeypatch)
    stomp_session("stomp")
    handle_event(websocket_event("CONNECT", "json"))
    _sub("stomp", "/topic/prices.*", ack="client-individual")
    handle_event(
        websocket_event(
            "MESSAGE", "json", '{"action":"subscribe","destination":"/topic/prices.>","id":"j"}'
        )
    )
    # When a message is sent to prices.acme and the dispatch function gets its record
    say("stomp", "SEND", "42", destination="/topic/prices.acme", currency="EUR")
    assert dispatch() == {"batchItemFailures": []}

    # Then each subscriber gets it once, in its own protocol, with its headers
    [message] = got(pusher, "stomp", "MESSAGE")
    assert message.header("destination") == "/topic/prices.acme"
    assert message.header("currency") == "EUR"
    [json_message] = [f for f in pusher.json_frames("json") if f["type"] == "message"]
    assert (json_message["body"], json_message["subscription"]) == ("42", "j")
    # When the STOMP subscriber acks it (a topic message needs no ack)
    say("stomp", "ACK", id=message.header("ack") or "", receipt="fine")
    # Then that is accepted
    assert _receipts(pusher, "stomp")[-1] == "fine"


def test_a_durable_subscription_keeps_messages_while_the_subscriber_is_away(
    pusher: RecordingPusher, topics: TopicService
) -> None:
    # Given a durable subscriber of audit.> that disconnected
    durable = {"activemq.subscriptionName": "auditor"}
    stomp_session("c1")
    _sub("c1", "/topic/audit.>", ack="client-individual", **durable)
    say("c1", "DISCONNECT")
    # and a message published to audit.login while nobody is connected
    stomp_session("producer")
    say("producer", "SEND", "who", destination="/topic/audit.login")

    # When the subscriber comes back under the same subscription name
    stomp_session("c2")
    _sub("c2", "/topic/audit.>", ack="client-individual", **durable)

    # Then it gets the message published while it was away
    [message] = got(pusher, "c2", "MESSAGE")
    assert message.body == b"who"
    assert message.header("destination") == "/topic/audit.login"

    # When it UNSUBSCRIBEs naming the subscription
    assert [s.name for s in topics.subscriptions(ANONYMOUS)] == ["auditor"]
    say("c2", "UNSUBSCRIBE", id="0", **durable)
    # Then the subscription is deleted (GET /subscriptions lists none)
    assert topics.subscriptions(ANONYMOUS) == []


def test_the_first_of_repeated_headers_wins(pusher: RecordingPusher, broker: QueueService) -> None:
    # Given a connected session
    stomp_session("c1")
    # When it sends a SEND naming two destinations and two colours
    handle_event(
        websocket_event(
            "MESSAGE",
            "c1",
            "SEND\ndestination:/queue/first\ndestination:/queue/second\n"
            "colour:red\ncolour:blue\n\nx\x00",
        )
    )
    # Then the message went to the first destination only, with the first colour
    [delivery] = broker.receive(ANONYMOUS, "first")
    assert delivery.attributes == {"colour": "red"}
    assert [q.name for q in broker.list_queues(ANONYMOUS)] == ["first", "first.dlq"]


def test_a_nul_inside_a_body_with_content_length_arrives_whole(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given a subscriber of a queue
    stomp_session("c1")
    _sub("c1", "/queue/nul")
    # When a SEND's body holds a NUL and its content-length covers the whole body
    body = "before\x00after"
    handle_event(
        websocket_event(
            "MESSAGE",
            "c1",
            f"SEND\ndestination:/queue/nul\ncontent-length:{len(body)}\n\n{body}\x00",
        )
    )
    sessions.pump("nul")
    # Then the subscriber gets the whole body
    [message] = got(pusher, "c1", "MESSAGE")
    assert message.body == body.encode()


def test_an_ack_reads_its_connection_subscription_and_consumer_in_one_request(
    pusher: RecordingPusher,
    sessions: Sessions,
    broker: QueueService,
    aws: Aws,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the ACK costs is the point (how many reads API Gateway's request pays for): it
    is metered as AWS bills it (`mqless_cli.billing`, as test_costs.py does)."""
    # Given a client-individual subscriber that holds a message
    stomp_session("c1")
    _sub("c1", "/queue/q", ack="client-individual")
    say("c1", "SEND", "x", destination="/queue/q")
    sessions.pump("q")
    [message] = got(pusher, "c1", "MESSAGE")

    # When it ACKs the message, through a function instance that never read the connection
    # (the one that did remembers it: test_stomp_function_instances.py)
    another = build_sessions(aws, broker, clock, pusher)
    monkeypatch.setattr(wiring, "sessions", lambda: another)
    meter = Meter()
    with observing_moto(meter):
        say("c1", "ACK", id=message.header("ack") or "", receipt="done")
    used = meter.usage()

    # Then the message is acked
    assert _receipts(pusher, "c1")[-1] == "done"
    assert _counts(broker, "q") == (0, 0)
    # and the connection, its subscription and its consumer were read fresh in one request:
    # one query of the connection's partition (no read of each), beside the query of the
    # consumer's delivery records (which the ack id names) and the two writes of the ack
    table = aws.settings.destinations_table
    assert used.requests == {"dynamodb:Query": 2, "dynamodb:UpdateItem": 2}
    assert sorted(used.partition_read_units) == [f"{table} CONN#c1", f"{table} QC#q"]


def test_an_ack_after_unsubscribe_in_the_same_message_is_refused_as_unsubscribed(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a client-individual subscriber that holds a message
    stomp_session("c1")
    _sub("c1", "/queue/q", ack="client-individual")
    say("c1", "SEND", "x", destination="/queue/q")
    sessions.pump("q")
    [message] = got(pusher, "c1", "MESSAGE")

    # When one WebSocket message carries UNSUBSCRIBE and then an ACK of that message
    frames = f"UNSUBSCRIBE\nid:0\n\n\x00ACK\nid:{message.header('ack')}\n\n\x00"
    handle_event(websocket_event("MESSAGE", "c1", frames))

    # Then the ACK finds no subscription (the one read with the connection is gone), the
    # session stays, and the message went back to the queue
    assert "no subscription '0'" in _error_message(pusher, "c1")
    assert pusher.closed == []
    assert _counts(broker, "q") == (1, 0)


def test_a_subscription_past_those_read_with_the_connection_is_still_acked(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a connection with 12 client-individual subscriptions (more than are read with
    # the connection), and a message held by the one whose id sorts last
    stomp_session("c1")
    for n in range(12):
        _sub("c1", f"/queue/q{n}", sub_id=f"s{n:02d}", ack="client-individual")
    say("c1", "SEND", "x", destination="/queue/q11")
    sessions.pump("q11")
    [message] = got(pusher, "c1", "MESSAGE")
    assert message.header("subscription") == "s11"

    # When it is ACKed
    say("c1", "ACK", id=message.header("ack") or "", receipt="done")

    # Then it is acked like any other
    assert got(pusher, "c1", "ERROR") == []
    assert _receipts(pusher, "c1")[-1] == "done"
    assert _counts(broker, "q11") == (0, 0)


def _hundred_pushed_of_300(
    broker: QueueService, pusher: RecordingPusher, queue: str, **settings: Any
) -> list[Frame]:
    """300 messages sent to a one-shard `queue`, and the first 100 of them pushed to c1, a
    client-individual subscriber with a prefetch of 100 (ten index segments leased)."""
    broker.put_queue(ANONYMOUS, queue, QueueSettings(shards=1, **settings))
    for start in range(0, 300, 10):
        entries = [(f"e{i}", NewMessage(body=b"x")) for i in range(start, start + 10)]
        broker.send_batch(ANONYMOUS, queue, entries)
    stomp_session("c1")
    _sub("c1", f"/queue/{queue}", ack="client-individual", **{"activemq.prefetchSize": "100"})
    return got(pusher, "c1", "MESSAGE")


def test_a_message_nacked_behind_the_leased_segments_a_look_passed_is_the_next_pushed(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given 300 messages waiting in one shard and a client-individual subscriber with a
    # prefetch of 100, pushed the first 100, whose ack of the 50th pushed 50 more (that
    # pump's look began past the leased segments, and the next would begin there too)
    first = _hundred_pushed_of_300(broker, pusher, "nacked")
    for message in first[:50]:
        say("c1", "ACK", id=message.header("ack") or "")
    assert len(got(pusher, "c1", "MESSAGE")) == 150

    # When it NACKs one of the leased ones, then acks the others of its push
    say("c1", "NACK", id=first[60].header("ack") or "")
    for message in first[50:60] + first[61:100]:
        say("c1", "ACK", id=message.header("ack") or "")

    # Then the refused message is among the next pushed (the oldest free one), not left
    # behind the run the earlier look passed
    later = [m.header("message-id") for m in got(pusher, "c1", "MESSAGE")[150:]]
    assert first[60].header("message-id") in later
    assert got(pusher, "c1", "ERROR") == []


def test_messages_whose_leases_ran_out_behind_the_segments_a_look_passed_are_pushed_again(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, clock: ManualClock
) -> None:
    # Given 300 messages waiting in one shard and a client-individual subscriber with a
    # prefetch of 100, pushed the first 100, whose ack of the 50th pushed 50 more (that
    # pump's look began past the leased segments, and the next would begin there too)
    first = _hundred_pushed_of_300(broker, pusher, "lapsed", visibility_timeout=1)
    for message in first[:50]:
        say("c1", "ACK", id=message.header("ack") or "")
    assert len(got(pusher, "c1", "MESSAGE")) == 150

    # When their one-second leases run out unacked (sooner than the look's memory of the
    # run would lapse) and the sweeper's pump comes
    clock.advance(1.5)
    sessions.pump("lapsed")

    # Then the oldest of them are pushed again first, not the messages after the run
    again = [m.header("message-id") for m in got(pusher, "c1", "MESSAGE")[150:]]
    assert again[:10] == [m.header("message-id") for m in first[50:60]]


def test_expires_is_measured_against_the_broker_clock(
    pusher: RecordingPusher, sessions: Sessions, clock: ManualClock
) -> None:
    # Given a broker whose clock is a day ahead of the host's wall clock, and two messages
    # sent over STOMP: one expiring a minute from now on that clock, one in an hour
    clock.advance(24 * 60 * 60)
    stomp_session("c1")
    say("c1", "SEND", "soon", destination="/queue/q", expires=str(clock.now_ms() + 60_000))
    say("c1", "SEND", "later", destination="/queue/q", expires=str(clock.now_ms() + 3_600_000))

    # When two minutes pass on the broker's clock and a consumer subscribes
    clock.advance(120)
    _sub("c1", "/queue/q")
    sessions.pump("q")

    # Then only the message whose expiry is still ahead arrives
    assert [m.body for m in got(pusher, "c1", "MESSAGE")] == [b"later"]


def test_the_ack_that_refills_a_full_consumer_reads_the_queues_index_once_a_round(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, aws: Aws
) -> None:
    """What the refill costs is the point: metered as AWS bills it (`mqless_cli.billing`)."""
    # Given 300 messages waiting in one shard, and a client-individual subscriber with a
    # prefetch of 100, pushed the first 100 (ten index segments leased past the floor)
    first = _hundred_pushed_of_300(broker, pusher, "deep")
    assert len(first) == 100
    for message in first[:49]:
        say("c1", "ACK", id=message.header("ack") or "")

    # When it acks the 50th, freeing the credit that held the other 200 back
    meter = Meter()
    with observing_moto(meter):
        say("c1", "ACK", id=first[49].header("ack") or "")
    used = meter.usage()

    # Then 50 more are pushed, and the pump read the shard's index in one look (a lone
    # consumer's pump takes what one push carries, not a receive's ten a look): three
    # pages of four segments, 0.5 read units each, beginning past the leased ones, where
    # the look before found them held (five looks of a page each before)
    assert len(got(pusher, "c1", "MESSAGE")) == 150
    index = f"{aws.settings.messages_table} I#deep#0"
    assert used.partition_read_units[index] == 3 * 0.5


def test_an_ack_that_refills_its_subscriber_reads_its_delivery_records_once(
    pusher: RecordingPusher,
    sessions: Sessions,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-individual subscriber with STOMP's default prefetch (10), pushed 10 of
    # the 20 messages waiting
    for start in range(0, 20, 10):
        entries = [(f"e{i}", NewMessage(body=b"x")) for i in range(start, start + 10)]
        broker.send_batch(ANONYMOUS, "refilled", entries)
    stomp_session("c1")
    _sub("c1", "/queue/refilled", ack="client-individual")
    first = got(pusher, "c1", "MESSAGE")
    assert len(first) == 10
    reads = count_calls(monkeypatch, DeliveryRecords, "recent")

    # When it ACKs the first
    say("c1", "ACK", id=first[0].header("ack") or "")

    # Then the next message is pushed at once, and its delivery records were read once: the
    # ACK counted what it holds, and the refill after it took that count
    assert len(got(pusher, "c1", "MESSAGE")) == 11
    assert got(pusher, "c1", "ERROR") == []
    assert reads() == 1
