"""Queue push consumers over the WebSocket JSON protocol: credit, acks, sharing, release.

The pushes land in a RecordingPusher (API Gateway's @connections stand-in); the queue is
the real one over moto, so leases, receive counts and dead letters are the queue's own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqless import assembly, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock, SystemClock
from mqless.domain.models import NewMessage, QueueSettings
from mqless.domain.push.consumers import QueueConsumers
from mqless.domain.queues.service import QueueService
from mqless.storage.deliveries import DeliveryRecords
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import to_wire
from mqless.transports.dispatch import handle_batch
from mqless.transports.websocket.json_protocol import handle_text
from mqless.transports.websocket.outbound import Connection
from mqless.transports.websocket.sessions import Sessions
from tests.component.conftest import Aws, RecordingPusher
from tests.component.test_push_costs import _dispatch
from tests.inline_dispatch import INLINE_DISPATCH
from tests.lambda_support import FakeLambdaContext


def _connect(sessions: Sessions, connection_id: str) -> None:
    sessions.open(Connection(connection_id), ANONYMOUS)


def _frame(sessions: Sessions, connection_id: str, **frame: Any) -> None:
    info = sessions.info(connection_id)
    assert info is not None
    handle_text(sessions, info, json.dumps(frame))


def _messages(pusher: RecordingPusher, connection_id: str) -> list[dict[str, Any]]:
    return [f for f in pusher.json_frames(connection_id) if f["type"] == "message"]


def _send(broker: QueueService, queue: str, *bodies: str) -> None:
    # a millisecond apart: standard queues order by send time, ties in any order
    clock = broker._clock
    for body in bodies:
        broker.send(ANONYMOUS, queue, NewMessage(body=body.encode()))
        assert isinstance(clock, ManualClock)
        clock.advance(0.001)


def _counts(broker: QueueService, queue: str) -> tuple[int, int]:
    config, counts = broker.get_queue(ANONYMOUS, queue)
    return counts.visible, counts.in_flight


def _subscribe(sessions: Sessions, connection_id: str, queue: str, **options: Any) -> None:
    _frame(
        sessions,
        connection_id,
        action="subscribe",
        destination=f"/queue/{queue}",
        id=options.pop("id", "s1"),
        **options,
    )


def test_a_subscriber_gets_at_most_prefetch_messages_until_it_acks(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "c1")
    _send(broker, "jobs", "m1", "m2", "m3", "m4", "m5")

    # When a client-individual subscriber with prefetch 2 joins a queue of five
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=2)
    first = _messages(pusher, "c1")
    # and more pumps come (new messages, the sweeper) before it acks
    sessions.pump("jobs")
    sessions.pump("jobs")
    still = _messages(pusher, "c1")
    # Then it holds the two oldest, in order, each with an ack id
    assert [m["body"] for m in first] == ["m1", "m2"]
    assert still == first
    assert all(m["ack"] and m["destination"] == "/queue/jobs" for m in first)
    assert _counts(broker, "jobs") == (3, 2)

    # When it acks one, the freed credit pulls the next message at once
    _frame(sessions, "c1", action="ack", id=first[0]["ack"], receipt="r1")
    frames = pusher.json_frames("c1")
    assert {"type": "receipt", "receipt": "r1"} in frames
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m1", "m2", "m3"]
    assert _counts(broker, "jobs") == (2, 2)


def test_a_consumer_holding_more_than_64_messages_gets_more_as_it_acks(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a client-individual subscriber with prefetch 100 holding 100 of 150 messages
    # (one producer: they sit in one shard of the queue, behind each other)
    _connect(sessions, "c1")
    _send(broker, "jobs", *(f"m{n:03d}" for n in range(150)))
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=100)
    held = _messages(pusher, "c1")
    assert len(held) == 100

    # When it acks twenty of them
    for message in held[:20]:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    # Then the messages after the ones it holds came to it, in order (the hundred leased
    # ones in front of them did not hide them)
    more = [m["body"] for m in _messages(pusher, "c1")[100:]]
    assert more == [f"m{n:03d}" for n in range(100, 100 + len(more))]
    assert len(more) >= 10
    assert _counts(broker, "jobs")[1] > 80


def test_a_saturated_consumer_with_a_large_prefetch_is_refilled_ten_at_a_time(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a client-individual subscriber with prefetch 100 holding 100 of 130 messages
    _connect(sessions, "c1")
    _send(broker, "jobs", *(f"m{n:03d}" for n in range(130)))
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=100)
    held = _messages(pusher, "c1")
    assert len(held) == 100

    # When it acks nine of them
    for message in held[:9]:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    # Then nothing new comes yet (nine pushes of one message each would cost nine pumps)
    assert len(_messages(pusher, "c1")) == 100

    # When it acks the tenth
    _frame(sessions, "c1", action="ack", id=held[9]["ack"])
    # Then the next ten come, in order, and it holds 100 again
    assert [m["body"] for m in _messages(pusher, "c1")[100:]] == [
        f"m{n:03d}" for n in range(100, 110)
    ]
    assert _counts(broker, "jobs") == (20, 100)


def test_acks_of_a_consumer_with_room_left_do_not_read_the_queue(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, aws: Aws
) -> None:
    # Given a client-individual subscriber with prefetch 10 holding the only three messages
    _connect(sessions, "c1")
    _send(broker, "jobs", "a", "b", "c")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=10)
    held = _messages(pusher, "c1")
    queries: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        queries.append(str(params["ExpressionAttributeValues"][":p"]["S"]))

    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.Query", note)
    try:
        # When it acks all three
        for message in held:
            _frame(sessions, "c1", action="ack", id=message["ack"])
    finally:
        aws.dynamodb.meta.events.unregister("provide-client-params.dynamodb.Query", note)
    # Then every ack was taken, and no ack read the queue's index looking for more (the
    # queue had nothing a pump could give it that the last pump had not)
    assert _counts(broker, "jobs") == (0, 0)
    assert [p for p in queries if p.startswith("I#")] == []
    assert len(_messages(pusher, "c1")) == 3


def test_a_nack_redelivers_and_counts_the_attempt(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "c1")
    _send(broker, "jobs", "once")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "c1")

    # When the consumer nacks it
    _frame(sessions, "c1", action="nack", id=first["ack"])

    # Then the same message comes back to it, marked redelivered, with a new ack id
    second = _messages(pusher, "c1")[-1]
    assert (second["message_id"], second["body"]) == (first["message_id"], "once")
    assert (second["redelivered"], second["receive_count"]) == (True, 2)
    assert second["ack"] != first["ack"]
    assert (first["redelivered"], first["receive_count"]) == (False, 1)


def test_a_nack_with_a_delay_holds_the_message_back(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    _connect(sessions, "c1")
    _send(broker, "jobs", "later")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "c1")

    _frame(sessions, "c1", action="nack", id=first["ack"], delay_seconds=60)
    assert len(_messages(pusher, "c1")) == 1
    clock.advance(61)
    sessions.pump_all()  # what the sweeper does on its schedule

    assert [m["body"] for m in _messages(pusher, "c1")] == ["later", "later"]


def test_competing_subscribers_share_a_queue(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "a")
    _connect(sessions, "b")
    _subscribe(sessions, "a", "work", ack="client-individual", prefetch=2)
    _subscribe(sessions, "b", "work", ack="client-individual", prefetch=2)

    # When four messages arrive and the stream wakes the pump
    _send(broker, "work", "1", "2", "3", "4")
    sessions.pump("work")

    # Then each subscriber holds two, and no message went to both
    got_a = {m["body"] for m in _messages(pusher, "a")}
    got_b = {m["body"] for m in _messages(pusher, "b")}
    assert len(got_a) == len(got_b) == 2
    assert got_a | got_b == {"1", "2", "3", "4"}


def test_a_disconnect_gives_its_messages_to_the_other_subscriber_at_once(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "a")
    _send(broker, "work", "x", "y")
    _subscribe(sessions, "a", "work", ack="client", prefetch=5)
    assert len(_messages(pusher, "a")) == 2
    _connect(sessions, "b")
    _subscribe(sessions, "b", "work", ack="client-individual", prefetch=5)
    assert _messages(pusher, "b") == []

    # When a's connection closes ($disconnect) without acking
    sessions.close("a")

    # Then b gets both now, not after the visibility timeout, marked redelivered
    got = _messages(pusher, "b")
    assert sorted(m["body"] for m in got) == ["x", "y"]
    assert all(m["redelivered"] for m in got)
    assert sessions.info("a") is None


def test_a_connection_found_gone_during_a_push_loses_its_leases(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "a")
    _connect(sessions, "b")
    _subscribe(sessions, "a", "work", ack="client-individual", prefetch=5, id="sa")
    _subscribe(sessions, "b", "work", ack="client-individual", prefetch=1, id="sb")
    # a's socket died without API Gateway's $disconnect reaching us
    pusher.gone.add("a")

    _send(broker, "work", "1", "2", "3")
    for _ in range(3):
        sessions.pump("work")

    # Then nothing is stuck with a: b holds one, the rest wait in the queue, a is forgotten
    assert len(_messages(pusher, "b")) == 1
    assert _counts(broker, "work") == (2, 1)
    assert sessions.info("a") is None


def test_auto_ack_deletes_what_was_pushed(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "c1")
    _send(broker, "feed", *[f"m{i}" for i in range(25)])

    _subscribe(sessions, "c1", "feed")  # ack: auto (the default)

    got = _messages(pusher, "c1")
    assert [m["body"] for m in got] == [f"m{i}" for i in range(25)]
    assert all("ack" not in m for m in got)
    assert _counts(broker, "feed") == (0, 0)
    # leased in rounds of 10, pushed together: one post after the `subscribed` answer
    assert len(pusher.posts["c1"]) == 2


def test_client_mode_acks_everything_up_to_the_acked_message(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "c1")
    _send(broker, "jobs", "1", "2", "3", "4")
    _subscribe(sessions, "c1", "jobs", ack="client", prefetch=4)
    got = _messages(pusher, "c1")

    # When the client acks the third message (cumulative ack)
    _frame(sessions, "c1", action="ack", id=got[2]["ack"])

    # Then the first three are gone, the fourth is still held
    assert _counts(broker, "jobs") == (0, 1)
    # and acking the first again says it is no longer in flight
    _frame(sessions, "c1", action="ack", id=got[0]["ack"])
    error = pusher.json_frames("c1")[-1]
    assert error["type"] == "error" and error["error"] == "not_in_flight"


def test_a_lease_that_runs_out_frees_credit_and_a_late_ack_is_refused(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    broker.put_queue(ANONYMOUS, "slow", QueueSettings(visibility_timeout=30))
    _connect(sessions, "c1")
    _send(broker, "slow", "m")
    _subscribe(sessions, "c1", "slow", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "c1")

    # When the consumer holds it past the visibility timeout and the sweeper runs
    clock.advance(31)
    sessions.pump_all()

    # Then it is delivered again (same consumer: it has credit again)
    second = _messages(pusher, "c1")[-1]
    assert second["message_id"] == first["message_id"] and second["receive_count"] == 2
    # and the ack for the first delivery is refused; the second one works
    _frame(sessions, "c1", action="ack", id=first["ack"])
    assert pusher.json_frames("c1")[-1]["error"] == "not_in_flight"
    _frame(sessions, "c1", action="ack", id=second["ack"], receipt="ok")
    assert pusher.json_frames("c1")[-1] == {"type": "receipt", "receipt": "ok"}
    assert _counts(broker, "slow") == (0, 0)


def test_several_messages_share_a_post_within_the_32_kb_frame(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "small")
    _send(broker, "tiny", *[f"m{i}" for i in range(10)])
    _subscribe(sessions, "small", "tiny", ack="client-individual", prefetch=10)
    posts = [json.loads(p) for p in pusher.posts["small"]]
    assert [p["type"] for p in posts] == ["subscribed", "batch"]
    assert len(posts[1]["frames"]) == 10

    _connect(sessions, "big")
    _send(broker, "large", *["x" * 12_000 for _ in range(5)])
    _subscribe(sessions, "big", "large", ack="client-individual", prefetch=5)
    big_posts = pusher.posts["big"][1:]
    # 12 KB bodies: two fit in one 32 KB frame, so five take three posts
    assert [len(p.encode()) <= 32 * 1024 for p in big_posts] == [True, True, True]
    assert len(_messages(pusher, "big")) == 5


def test_a_new_message_on_the_stream_wakes_the_pump(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    indexer = assembly.build_indexer(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, SystemClock()),
        topics=sessions._topics,
        time=SystemClock(),
    )
    monkeypatch.setattr(wiring, "indexer", lambda: indexer)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=5)
    _send(broker, "jobs", "via stream")
    assert _messages(pusher, "c1") == []

    # When the dispatch function gets the message's log INSERT record (twice, as a retried
    # stream batch would: it is indexed once)
    [logged] = [
        i
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("L#jobs#")
    ]
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": logged["pk"], "sk": logged["sk"]},
            "NewImage": logged,
            "SequenceNumber": "1",
            "StreamViewType": "NEW_IMAGE",
        },
    }
    response = handle_batch({"Records": [record, {**record, "eventID": "2"}]}, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert [m["body"] for m in _messages(pusher, "c1")] == ["via stream"]


def test_a_pump_stops_at_its_budget_and_wakes_itself_through_the_stream(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, aws: Any, clock: ManualClock
) -> None:
    small = Sessions(
        dynamodb=aws.dynamodb,
        table_name=aws.settings.destinations_table,
        live=sessions.live,
        consumers=QueueConsumers(
            aws.dynamodb, aws.settings.destinations_table, broker, pusher, clock, budget=5
        ),
        queues=broker,
        topics=sessions._topics,
        pusher=pusher,
        cipher=sessions._cipher,
        clock=clock,
        log=sessions._log,
    )
    _connect(small, "c1")
    _send(broker, "bulk", *[str(i) for i in range(8)])

    _subscribe(small, "c1", "bulk")

    assert len(_messages(pusher, "c1")) == 5
    markers = aws.dynamodb.query(
        TableName=aws.settings.messages_table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues=to_wire({":p": "W#bulk"}),
    )["Items"]
    assert len(markers) == 1  # its INSERT record brings the dispatch function back
    small.pump("bulk")
    assert len(_messages(pusher, "c1")) == 8


def test_unsubscribing_releases_what_the_subscription_held(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "c1")
    _send(broker, "jobs", "a", "b")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=5)
    assert _counts(broker, "jobs") == (0, 2)

    _frame(sessions, "c1", action="unsubscribe", id="s1", receipt="bye")

    assert pusher.json_frames("c1")[-1] == {"type": "unsubscribed", "id": "s1", "receipt": "bye"}
    assert _counts(broker, "jobs") == (2, 0)


def test_subscription_mistakes_get_error_frames(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "jobs", ack="client-individual")
    _subscribe(sessions, "c1", "jobs")  # same id again
    _frame(sessions, "c1", action="subscribe", destination="/queue/bad name", id="s2")
    _frame(sessions, "c1", action="ack", id="not-an-ack-id")
    _frame(sessions, "c1", action="ack", id="3.0.0a0b0c0d:nosuch")
    _frame(sessions, "c1", action="unsubscribe", id="nosuch")

    errors = [f for f in pusher.json_frames("c1") if f["type"] == "error"]
    assert [e["error"] for e in errors] == [
        "conflict",
        "invalid_request",
        "invalid_request",
        "not_in_flight",
        "invalid_request",
    ]
    assert "already in use" in errors[0]["message"]
    assert "invalid queue name" in errors[1]["message"]


def test_messages_sent_over_the_socket_reach_queue_subscribers(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    _connect(sessions, "producer")
    _connect(sessions, "consumer")
    _subscribe(sessions, "consumer", "chat")
    _frame(
        sessions,
        "producer",
        action="publish",
        destination="/queue/chat",
        body="hi",
        attributes={"k": "v"},
        receipt="sent",
    )
    sessions.pump("chat")  # the stream's doing when deployed

    [message] = _messages(pusher, "consumer")
    assert (message["body"], message["attributes"]) == ("hi", {"k": "v"})
    assert pusher.json_frames("producer")[0]["receipt"] == "sent"


def test_a_ping_keeps_the_connection_and_is_answered(
    sessions: Sessions, pusher: RecordingPusher
) -> None:
    _connect(sessions, "c1")
    _frame(sessions, "c1", action="ping")
    _frame(sessions, "c1", action="ping", receipt="p")

    assert pusher.json_frames("c1") == [{"type": "pong"}, {"type": "pong", "receipt": "p"}]


def test_a_cumulative_ack_settles_every_earlier_message_however_close_they_were_pushed(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given 25 messages pushed to a client-mode consumer in one pump: three rounds of
    # leases (10, 10, 5), all within one millisecond of the clock
    _connect(sessions, "c1")
    _send(broker, "jobs", *[f"m{i}" for i in range(25)])
    _subscribe(sessions, "c1", "jobs", ack="client", prefetch=25)
    got = _messages(pusher, "c1")
    assert [m["body"] for m in got] == [f"m{i}" for i in range(25)]

    # When it acks the last one (cumulative: that one and every earlier one)
    _frame(sessions, "c1", action="ack", id=got[-1]["ack"], receipt="r")

    # Then all 25 are settled, whichever round they came in
    assert pusher.json_frames("c1")[-1] == {"type": "receipt", "receipt": "r"}
    assert _counts(broker, "jobs") == (0, 0)


def test_a_consumer_is_pushed_everything_waiting_past_what_one_look_at_the_index_reads(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given 50 messages sent in batches of 10 (their references fill index segments of 12:
    # a lease round of 10 ends at the fourth segment, two references short)
    for start in range(0, 50, 10):
        entries = [(f"e{i}", NewMessage(body=f"m{i}".encode())) for i in range(start, start + 10)]
        broker.send_batch(ANONYMOUS, "deep", entries)
    _connect(sessions, "c1")

    # When an auto-ack consumer subscribes
    _subscribe(sessions, "c1", "deep")

    # Then its first pump pushes all 50, none left waiting for a later pump
    assert len(_messages(pusher, "c1")) == 50
    assert _counts(broker, "deep") == (0, 0)


def test_two_pumps_racing_for_one_consumer_push_no_more_than_its_prefetch(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 3 and six messages, and a second pump
    # (another Lambda instance) that runs whole while the first one is leasing: both
    # counted the same free credit
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "race", ack="client", prefetch=3)
    _send(broker, "race", *[f"m{i}" for i in range(6)])
    receive = broker.receive
    raced: list[bool] = []

    def receive_after_a_racing_pump(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            sessions.pump("race")
        return receive(*args, **kwargs)

    monkeypatch.setattr(broker, "receive", receive_after_a_racing_pump)

    # When the first pump goes on after the second one pushed
    sessions.pump("race")

    # Then the consumer holds three, not six: the first pump lost its record to the second
    # and gave its three back, uncounted
    got = _messages(pusher, "c1")
    assert [m["body"] for m in got] == ["m0", "m1", "m2"]
    assert _counts(broker, "race") == (3, 3)
    # and once it acks them it gets the others as first deliveries
    monkeypatch.setattr(broker, "receive", receive)
    _frame(sessions, "c1", action="ack", id=got[-1]["ack"])
    rest = _messages(pusher, "c1")[3:]
    assert [(m["body"], m["receive_count"]) for m in rest] == [("m3", 1), ("m4", 1), ("m5", 1)]


def test_a_consumer_whose_push_failed_is_fed_again_at_the_next_pump(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a consumer whose pushes fail (API Gateway erred) when its messages arrive
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "flaky", ack="client-individual", prefetch=2)
    _send(broker, "flaky", "a", "b")
    pusher.broken.add("c1")
    with pytest.raises(Exception, match="gateway failed"):
        sessions.pump("flaky")
    assert _counts(broker, "flaky") == (2, 0)  # given back

    # When API Gateway recovers and the next pump comes
    pusher.broken.clear()
    sessions.pump("flaky")

    # Then the consumer gets both: the failed push did not keep its credit
    assert [m["body"] for m in _messages(pusher, "c1")] == ["a", "b"]


def test_subscribing_again_with_the_same_id_starts_with_the_whole_prefetch(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a consumer that held two messages and unsubscribed (they went back)
    _connect(sessions, "c1")
    _send(broker, "jobs", "m1", "m2", "m3")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=2)
    _frame(sessions, "c1", action="unsubscribe", id="s1")
    assert _counts(broker, "jobs") == (3, 0)

    # When it subscribes again under the same id
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=2)

    # Then it is pushed two again (its earlier deliveries hold nothing), and acks work
    again = _messages(pusher, "c1")[2:]
    assert [(m["body"], m["redelivered"]) for m in again] == [("m1", True), ("m2", True)]
    _frame(sessions, "c1", action="ack", id=again[0]["ack"], receipt="ok")
    assert pusher.json_frames("c1")[-2] == {"type": "receipt", "receipt": "ok"}
    assert _messages(pusher, "c1")[-1]["body"] == "m3"


def test_a_nack_pulls_the_next_message_and_leaves_the_refused_one_to_others(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a consumer with prefetch 1 holding the first of two messages
    _connect(sessions, "a")
    _send(broker, "jobs", "one", "two")
    _subscribe(sessions, "a", "jobs", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "a")

    # When it nacks it
    _frame(sessions, "a", action="nack", id=first["ack"])

    # Then its freed credit takes the next message, not the one it refused
    assert [m["body"] for m in _messages(pusher, "a")] == ["one", "two"]
    # and the refused one goes at once to a consumer that has credit, redelivered
    _connect(sessions, "b")
    _subscribe(sessions, "b", "jobs", ack="client-individual", prefetch=1)
    [again] = _messages(pusher, "b")
    assert (again["body"], again["redelivered"], again["receive_count"]) == ("one", True, 2)


@pytest.mark.parametrize("ack", ["client", "client-individual"])
def test_a_fifo_consumer_acks_messages_of_groups_named_with_separators(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, ack: str
) -> None:
    # Given a FIFO queue with two messages in each of three groups, two of them named with
    # the characters a delivery record separates its fields with
    groups = ["a.b,c", "x:y", "plain"]
    for group in groups:
        for n in (1, 2):
            broker.send(
                ANONYMOUS, "f.fifo", NewMessage(body=f"{group}/{n}".encode(), group_id=group)
            )
    _connect(sessions, "c1")

    # When a consumer takes what it is pushed and acks it as its mode says, until no more come
    _subscribe(sessions, "c1", "f.fifo", ack=ack, prefetch=10)
    got: list[dict[str, Any]] = []
    while new := _messages(pusher, "c1")[len(got) :]:
        got += new
        for message in new if ack == "client-individual" else new[-1:]:
            _frame(sessions, "c1", action="ack", id=message["ack"])

    # Then every message came once, each group in order, and every ack was taken
    assert [m["body"] for m in got if m["body"].startswith("a.b,c")] == ["a.b,c/1", "a.b,c/2"]
    assert sorted(m["body"] for m in got) == sorted(f"{g}/{n}" for g in groups for n in (1, 2))
    assert [f for f in pusher.json_frames("c1") if f["type"] == "error"] == []
    assert _counts(broker, "f.fifo") == (0, 0)


def test_messages_indexed_while_a_client_consumer_is_full_are_pushed_after_its_ack(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2 holding two messages (its producer
    # sends to shard 7 of the queue's 8: every random draw is the highest)
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "full", ack="client", prefetch=2)
    _send(broker, "full", "m1", "m2")
    sessions.pump("full", indexed=frozenset({7}))
    first = _messages(pusher, "c1")
    assert [m["body"] for m in first] == ["m1", "m2"]

    # When a third is indexed and the dispatch function pumps it (the consumer has no
    # credit: it is marked owed), then the consumer acks the two it holds
    _send(broker, "full", "m3")
    sessions.pump("full", indexed=frozenset({7}))
    assert len(_messages(pusher, "c1")) == 2
    _frame(sessions, "c1", action="ack", id=first[-1]["ack"])

    # Then the ack's pump pushes the third at once (no sweeper needed)
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m1", "m2", "m3"]
    assert _counts(broker, "full") == (0, 1)


def test_an_ack_between_a_pumps_credit_read_and_its_owed_mark_is_not_missed(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2 holding two messages, and a third
    # message indexed (shard 7) while it is full
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "racy", ack="client", prefetch=2)
    _send(broker, "racy", "m1", "m2")
    sessions.pump("racy", indexed=frozenset({7}))
    first = _messages(pusher, "c1")
    assert len(first) == 2
    _send(broker, "racy", "m3")

    # When the dispatch function's pump has counted no credit, and the consumer's ack
    # lands just before the pump marks it owed (so the ack sees no mark and pumps nothing)
    mark = QueueConsumers._mark_owed
    acked: list[bool] = []

    def ack_first(self: QueueConsumers, consumer: Any) -> Any:
        if not acked:
            acked.append(True)
            _frame(sessions, "c1", action="ack", id=first[-1]["ack"])
            assert len(_messages(pusher, "c1")) == 2  # the ack pumped nothing
        return mark(self, consumer)

    monkeypatch.setattr(QueueConsumers, "_mark_owed", ack_first)
    sessions.pump("racy", indexed=frozenset({7}))

    # Then the pump's mark returns the ack's watermark and it feeds the consumer again:
    # the third message is pushed by that pump
    assert acked == [True]
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m1", "m2", "m3"]
    assert _counts(broker, "racy") == (0, 1)


def test_the_dispatch_functions_pump_is_told_the_shards_it_indexed(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the dispatch function wired to these sessions, and a client-mode consumer
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    indexer = assembly.build_indexer(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, SystemClock()),
        topics=sessions._topics,
        time=SystemClock(),
    )
    monkeypatch.setattr(wiring, "indexer", lambda: indexer)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "told", ack="client", prefetch=1)
    _send(broker, "told", "via stream")
    pumped: list[frozenset[int] | None] = []
    pump = QueueConsumers.pump

    def spy(self: QueueConsumers, queue: str, *, indexed: frozenset[int] | None = None) -> Any:
        pumped.append(indexed)
        return pump(self, queue, indexed=indexed)

    monkeypatch.setattr(QueueConsumers, "pump", spy)

    # When the dispatch function gets the message's log INSERT record
    [logged] = [
        i
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("L#told#")
    ]
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": logged["pk"], "sk": logged["sk"]},
            "NewImage": logged,
            "SequenceNumber": "1",
            "StreamViewType": "NEW_IMAGE",
        },
    }
    assert handle_batch({"Records": [record]}, FakeLambdaContext()) == {"batchItemFailures": []}

    # Then the message is pushed by a pump that knows the shard it was indexed in (it
    # looks there, not at every shard, before marking the consumer owed)
    assert [m["body"] for m in _messages(pusher, "c1")] == ["via stream"]
    shard = int(logged["pk"]["S"].rsplit("#", 1)[1])
    assert pumped == [frozenset({shard})]


def test_a_pump_that_loses_its_record_race_feeds_the_consumer_what_it_gave_back(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 3 and two messages waiting in shard 7
    # (every random draw is the highest)
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "race", ack="client", prefetch=3)
    _send(broker, "race", "m1", "m2")

    # When two dispatch pumps count the same credit: the first leases m1 and m2, and
    # before it writes its record a third message arrives, whose pump leases it and
    # writes that seq first; the first gives m1 and m2 back
    put = DeliveryRecords.put
    raced: list[bool] = []

    def other_pump_first(self: DeliveryRecords, *args: Any, **kwargs: Any) -> bool:
        if not raced:
            raced.append(True)
            _send(broker, "race", "m3")
            sessions.pump("race", indexed=frozenset({7}))
            assert [m["body"] for m in _messages(pusher, "c1")] == ["m3"]
        return put(self, *args, **kwargs)

    monkeypatch.setattr(DeliveryRecords, "put", other_pump_first)
    sessions.pump("race", indexed=frozenset({7}))

    # Then the losing pump counts the consumer's credit again (the winner's record holds
    # one of three) and pushes it the two it gave back, at once: no ack, no sweeper
    assert raced == [True]
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m3", "m1", "m2"]
    assert _counts(broker, "race") == (0, 3)


def test_a_consumer_without_credit_gets_nothing_leased_in_the_append_and_the_rest_on_ack(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2 holding two messages
    dispatch = _dispatch(aws, sessions, monkeypatch)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "credit", ack="client", prefetch=2)
    with INLINE_DISPATCH.paused():
        _send(broker, "credit", "m1", "m2")
    dispatch()
    held = _messages(pusher, "c1")
    assert [m["body"] for m in held] == ["m1", "m2"]

    # When a third arrives through the dispatch function
    with INLINE_DISPATCH.paused():
        _send(broker, "credit", "m3")
    assert dispatch() == {"batchItemFailures": []}

    # Then it is not leased to the consumer (it stays visible), and its ack brings it
    assert len(_messages(pusher, "c1")) == 2
    assert _counts(broker, "credit") == (1, 2)
    _frame(sessions, "c1", action="ack", id=held[-1]["ack"])
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m1", "m2", "m3"]
    assert _messages(pusher, "c1")[-1]["receive_count"] == 1


def test_messages_leased_in_the_append_to_a_consumer_that_left_go_to_another(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two consumers of a queue, and the dispatch function choosing c1 (the first in
    # its shuffled order) to append the new messages leased to
    dispatch = _dispatch(aws, sessions, monkeypatch)
    monkeypatch.setattr("random.shuffle", lambda items: items.sort(key=lambda c: c.tag))
    _connect(sessions, "c1")
    _connect(sessions, "c2")
    _subscribe(sessions, "c1", "left", ack="client", prefetch=5)
    _subscribe(sessions, "c2", "left", ack="client", prefetch=5)

    # When c1's connection goes between the dispatch function's read of the consumers and
    # its post (the append leased them to c1)
    with INLINE_DISPATCH.paused():
        _send(broker, "left", "m1", "m2")
    plan = sessions.plan_push
    monkeypatch.setattr(
        sessions, "plan_push", lambda queue: (plan(queue), pusher.gone.add("c1"))[0]
    )
    assert dispatch() == {"batchItemFailures": []}

    # Then c1 got nothing, and both went to c2 (given back when c1's post failed, and
    # counted as a delivery as a nack is)
    assert _messages(pusher, "c1") == []
    assert sorted(m["body"] for m in _messages(pusher, "c2")) == ["m1", "m2"]
    assert _counts(broker, "left") == (0, 2)


def test_two_dispatch_invocations_that_plan_the_same_credit_push_it_once(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2, and two dispatch invocations (two
    # stream shards) that both read its credit (2) before either appends
    dispatch = _dispatch(aws, sessions, monkeypatch)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "twice", ack="client", prefetch=2)
    first_plan = sessions.plan_push("twice")
    assert first_plan is not None
    with INLINE_DISPATCH.paused():
        _send(broker, "twice", "m1", "m2")
    assert dispatch() == {"batchItemFailures": []}  # the other invocation, done first
    assert len(_messages(pusher, "c1")) == 2
    with INLINE_DISPATCH.paused():
        _send(broker, "twice", "m3", "m4")
    monkeypatch.setattr(sessions, "plan_push", lambda queue: first_plan)

    # When the first invocation appends its messages leased on that credit and pushes them
    assert dispatch() == {"batchItemFailures": []}

    # Then its record loses (the seq is taken), its messages go back unpushed: the
    # consumer never holds more than its prefetch, and its ack brings them
    held = _messages(pusher, "c1")
    assert [m["body"] for m in held] == ["m1", "m2"]
    assert _counts(broker, "twice") == (2, 2)
    _frame(sessions, "c1", action="ack", id=held[-1]["ack"])
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m1", "m2", "m3", "m4"]


def test_a_stream_batch_handed_over_again_pushes_nothing_twice(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a consumer pushed two messages that the dispatch function appended leased
    dispatch = _dispatch(aws, sessions, monkeypatch)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "again", ack="client", prefetch=5)
    with INLINE_DISPATCH.paused():
        _send(broker, "again", "m1", "m2")
    logged = [
        i
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("L#again#")
    ]
    dispatch()
    assert len(_messages(pusher, "c1")) == 2

    # When Lambda hands the same stream batch over again (a retry)
    records = [
        {
            "eventID": str(n),
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"pk": i["pk"], "sk": i["sk"]},
                "NewImage": i,
                "SequenceNumber": str(n),
                "StreamViewType": "NEW_IMAGE",
            },
        }
        for n, i in enumerate(logged)
    ]
    assert handle_batch({"Records": records}, FakeLambdaContext()) == {"batchItemFailures": []}

    # Then nothing is appended or pushed again
    assert len(_messages(pusher, "c1")) == 2
    assert _counts(broker, "again") == (0, 2)
