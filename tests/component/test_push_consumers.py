"""Queue push consumers over the WebSocket JSON protocol: credit, acks, sharing, release.

The pushes land in a RecordingPusher (API Gateway's @connections stand-in); the queue is
the real one over moto, so leases, receive counts and dead letters are the queue's own.
Each test reads what a user sees: the frames each connection is posted, the queue's counts
as `GET /queues/{name}` shows them, and the open connections as `GET /connections` lists
them. Where a test's point is a race between two Lambda invocations, it makes the race
happen by running the other invocation from inside a step of the first (a patched internal
step): there is no public way to interleave them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.push.pushes import Connection
from mqless.domain.queues.service import QueueService
from mqless.storage.deliveries import DeliveryRecords
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.storage.log import LogStore
from mqless.storage.push_consumers import PushConsumers
from mqless.transports.websocket.json_protocol import handle_text
from mqless.transports.websocket.sessions import Sessions
from mqless_cli.billing import Meter, observing_moto
from tests.call_counts import count_calls
from tests.component.conftest import Aws, RecordingPusher, build_sessions
from tests.component.dispatch_function import DispatchFunction
from tests.inline_dispatch import INLINE_DISPATCH

Send = Callable[..., None]


@pytest.fixture
def send(broker: QueueService, clock: ManualClock) -> Send:
    """send(queue, *bodies): each body sent to the queue, a millisecond apart (standard
    queues order by send time, ties in any order)."""

    def send_bodies(queue: str, *bodies: str) -> None:
        for body in bodies:
            broker.send(ANONYMOUS, queue, NewMessage(body=body.encode()))
            clock.advance(0.001)

    return send_bodies


@pytest.fixture
def dispatch(aws: Aws, sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> DispatchFunction:
    """The dispatch function wired to the test's sessions, handed stream records by hand."""
    return DispatchFunction(aws, sessions, monkeypatch)


def _connect(sessions: Sessions, connection_id: str) -> None:
    sessions.open(Connection(connection_id), ANONYMOUS)


def _frame(sessions: Sessions, connection_id: str, **frame: Any) -> None:
    info = sessions.info(connection_id)
    assert info is not None
    handle_text(sessions, info, json.dumps(frame))


def _messages(pusher: RecordingPusher, connection_id: str) -> list[dict[str, Any]]:
    return [f for f in pusher.json_frames(connection_id) if f["type"] == "message"]


def _bodies(pusher: RecordingPusher, connection_id: str) -> list[str]:
    return [m["body"] for m in _messages(pusher, connection_id)]


def _counts(broker: QueueService, queue: str) -> tuple[int, int]:
    """(visible, in flight): the queue's counts as `GET /queues/{name}` shows them."""
    _, counts = broker.get_queue(ANONYMOUS, queue)
    return counts.visible, counts.in_flight


def _connections(sessions: Sessions) -> list[str]:
    """The open connections, as `GET /connections` lists them."""
    return sorted(c["id"] for c in sessions.live.list_connections())


def _full_consumer(
    sessions: Sessions, pusher: RecordingPusher, send: Send, messages: int
) -> list[dict[str, Any]]:
    """Connection `c1`, subscribed client-individual with prefetch 100 to `jobs` after
    `messages` (`m000`, `m001`, ...) were sent there: the 100 it holds."""
    _connect(sessions, "c1")
    send("jobs", *(f"m{n:03d}" for n in range(messages)))
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=100)
    held = _messages(pusher, "c1")
    assert len(held) == 100
    return held


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
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a queue of five messages
    _connect(sessions, "c1")
    send("jobs", "m1", "m2", "m3", "m4", "m5")

    # When a client-individual subscriber with prefetch 2 joins it
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=2)
    first = _messages(pusher, "c1")
    # and more pumps come (new messages, the sweeper) before it acks
    sessions.pump("jobs")
    sessions.pump("jobs")
    still = _messages(pusher, "c1")
    # Then it holds the two oldest, in order, each with an ack id
    assert [m["body"] for m in first] == ["m1", "m2"]
    assert still == first
    assert [m["destination"] for m in first] == ["/queue/jobs"] * 2
    assert [bool(m["ack"]) for m in first] == [True, True]
    assert _counts(broker, "jobs") == (3, 2)

    # When it acks one
    _frame(sessions, "c1", action="ack", id=first[0]["ack"], receipt="r1")
    # Then the ack is receipted, and the freed credit pulls the next message at once
    assert {"type": "receipt", "receipt": "r1"} in pusher.json_frames("c1")
    assert _bodies(pusher, "c1") == ["m1", "m2", "m3"]
    assert _counts(broker, "jobs") == (2, 2)


def test_a_consumer_holding_more_than_64_messages_gets_more_as_it_acks(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-individual subscriber with prefetch 100 holding 100 of 150 messages
    # (one producer: they sit in one shard of the queue, behind each other)
    held = _full_consumer(sessions, pusher, send, 150)

    # When it acks half of them
    for message in held[:50]:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    # Then the messages after the ones it holds came to it, in order (the hundred leased
    # ones in front of them did not hide them)
    more = [m["body"] for m in _messages(pusher, "c1")[100:]]
    assert more == [f"m{n:03d}" for n in range(100, 100 + len(more))]
    assert len(more) == 50
    assert _counts(broker, "jobs")[1] == 100


def test_a_saturated_consumer_with_a_large_prefetch_is_refilled_half_its_prefetch_at_a_time(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-individual subscriber with prefetch 100 holding 100 of 160 messages
    held = _full_consumer(sessions, pusher, send, 160)

    # When it acks 49 of them
    for message in held[:49]:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    # Then nothing new comes yet (a pump costs the same few requests whatever it refills)
    assert len(_messages(pusher, "c1")) == 100

    # When it acks the 50th
    _frame(sessions, "c1", action="ack", id=held[49]["ack"])
    # Then the next fifty come, in order, and it holds 100 again
    assert [m["body"] for m in _messages(pusher, "c1")[100:]] == [
        f"m{n:03d}" for n in range(100, 150)
    ]
    assert _counts(broker, "jobs") == (10, 100)


def test_a_lone_consumers_refill_of_fifty_reads_their_bodies_at_once_not_ten_at_a_time(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-individual subscriber with prefetch 100 holding 100 of 160 messages,
    # the only consumer of its queue, that acked 49 of them
    held = _full_consumer(sessions, pusher, send, 160)
    for message in held[:49]:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    posts = len(pusher.posts["c1"])

    # When it acks the 50th (half its prefetch is free: the refill)
    meter = Meter()
    with observing_moto(meter):
        _frame(sessions, "c1", action="ack", id=held[49]["ack"])
    requests = meter.usage().requests

    # Then the next fifty come, in order, in one push, and it holds 100 again
    assert [m["body"] for m in _messages(pusher, "c1")[100:]] == [
        f"m{n:03d}" for n in range(100, 150)
    ]
    assert len(pusher.posts["c1"]) == posts + 1
    assert _counts(broker, "jobs") == (10, 100)
    # and their bodies were read in one request, in one look at the queue's index, not in
    # five, a receive of ten at a time (5 body reads and 9 queries before)
    assert requests.get("dynamodb:BatchGetItem", 0) == 1
    assert requests.get("dynamodb:Query", 0) <= 7, requests


def test_a_full_consumer_acking_in_order_gets_pushes_of_fifty_and_its_acks_read_no_records(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send, aws: Aws
) -> None:
    """What the acks read is the point (counting what the consumer holds would query its
    delivery records on every ack): it is metered as AWS bills it."""
    # Given a client-individual subscriber with prefetch 100 holding 100 of 300 messages
    held = _full_consumer(sessions, pusher, send, 300)
    fill_posts = len(pusher.posts["c1"])

    # When it acks every message it gets, one ack frame each, in the order they came
    meter = Meter()
    with observing_moto(meter):
        acked = 0
        while acked < len(held):
            _frame(sessions, "c1", action="ack", id=held[acked]["ack"])
            acked += 1
            held = _messages(pusher, "c1")
    used = meter.usage()

    # Then it got all 300 in order, the 200 after the first 100 in pushes of 50
    assert [m["body"] for m in held] == [f"m{n:03d}" for n in range(300)]
    assert _counts(broker, "jobs") == (0, 0)
    refills = [json.loads(text) for text in pusher.posts["c1"][fill_posts:]]
    assert [len(post["frames"]) if post["type"] == "batch" else 1 for post in refills] == [50] * 4
    # and no ack read the consumer's records to count what it holds (a query of up to 16
    # records, 1 unit or more, on each of the 300 acks): what was read beside the
    # consumer's connection (1 unit an ack) is what the 4 pumps read (the consumers and
    # its records), and its owed mark at the refill points of its first fill
    consumer_partition = f"{aws.settings.destinations_table} QC#jobs"
    assert used.partition_read_units[consumer_partition] <= 3 * 4


def test_a_full_consumer_acking_out_of_push_order_is_still_refilled_half_at_a_time(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-individual subscriber with prefetch 100 holding 100 of 160 messages
    held = _full_consumer(sessions, pusher, send, 160)

    # When it acks 49 of them from the 50th back to the 2nd (out of the order pushed,
    # the first of them the 50th pushed)
    for message in held[49:0:-1]:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    # Then nothing new comes yet (a push of one after the 50th would be the first of fifty)
    assert len(_messages(pusher, "c1")) == 100

    # When it acks a 50th
    _frame(sessions, "c1", action="ack", id=held[0]["ack"])
    # Then the next fifty come in one push, and it holds 100 again
    assert [m["body"] for m in _messages(pusher, "c1")[100:]] == [
        f"m{n:03d}" for n in range(100, 150)
    ]
    assert _counts(broker, "jobs") == (10, 100)


def test_acks_of_a_consumer_with_room_left_do_not_read_the_queue(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send, aws: Aws
) -> None:
    """What the acks read is the point (a read the consumer could not profit by is billed
    all the same): it is metered as AWS bills it (`mqless_cli.billing`, as test_costs.py)."""
    # Given a client-individual subscriber with prefetch 10 holding the only three messages
    _connect(sessions, "c1")
    send("jobs", "a", "b", "c")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=10)
    held = _messages(pusher, "c1")

    # When it acks all three
    meter = Meter()
    with observing_moto(meter):
        for message in held:
            _frame(sessions, "c1", action="ack", id=message["ack"])

    # Then every ack was taken, and nothing more came
    assert _counts(broker, "jobs") == (0, 0)
    assert len(_messages(pusher, "c1")) == 3
    # and no ack read the queue's index looking for more (the queue had nothing a pump
    # could give it that the last pump had not): not one read unit billed on it
    index = f"{aws.settings.messages_table} I#jobs#"
    assert [p for p in meter.usage().partition_read_units if p.startswith(index)] == []


def test_a_nack_redelivers_and_counts_the_attempt(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-individual consumer with prefetch 1 holding a message
    _connect(sessions, "c1")
    send("jobs", "once")
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
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    clock: ManualClock,
) -> None:
    # Given a client-individual consumer with prefetch 1 holding a message
    _connect(sessions, "c1")
    send("jobs", "later")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "c1")

    # When it nacks it with a delay of 60 seconds
    _frame(sessions, "c1", action="nack", id=first["ack"], delay_seconds=60)
    # Then the message does not come back at once
    assert _bodies(pusher, "c1") == ["later"]

    # When the delay has passed and the sweeper runs
    clock.advance(61)
    sessions.pump_all()  # what the sweeper does on its schedule
    # Then it comes back
    assert _bodies(pusher, "c1") == ["later", "later"]


def test_competing_subscribers_share_a_queue(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given two client-individual subscribers of a queue, each with prefetch 2
    _connect(sessions, "a")
    _connect(sessions, "b")
    _subscribe(sessions, "a", "work", ack="client-individual", prefetch=2)
    _subscribe(sessions, "b", "work", ack="client-individual", prefetch=2)

    # When four messages arrive and the stream wakes the pump
    send("work", "1", "2", "3", "4")
    sessions.pump("work")

    # Then each subscriber holds two, and no message went to both
    got_a, got_b = _bodies(pusher, "a"), _bodies(pusher, "b")
    assert (len(got_a), len(got_b)) == (2, 2)
    assert sorted(got_a + got_b) == ["1", "2", "3", "4"]


def test_a_disconnect_gives_its_messages_to_the_other_subscriber_at_once(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-mode subscriber holding both messages of a queue, and a second
    # subscriber that got none
    _connect(sessions, "a")
    send("work", "x", "y")
    _subscribe(sessions, "a", "work", ack="client", prefetch=5)
    assert len(_messages(pusher, "a")) == 2
    _connect(sessions, "b")
    _subscribe(sessions, "b", "work", ack="client-individual", prefetch=5)
    assert _messages(pusher, "b") == []

    # When a's connection closes ($disconnect) without acking
    sessions.close("a")

    # Then b gets both now, not after the visibility timeout, marked redelivered, and a
    # is no longer listed among the open connections
    got = sorted((m["body"], m["redelivered"]) for m in _messages(pusher, "b"))
    assert got == [("x", True), ("y", True)]
    assert _connections(sessions) == ["b"]


def test_a_connection_found_gone_during_a_push_loses_its_leases(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given two subscribers of a queue, and a's socket dead without API Gateway's
    # $disconnect reaching us (a post to it answers GoneException)
    _connect(sessions, "a")
    _connect(sessions, "b")
    _subscribe(sessions, "a", "work", ack="client-individual", prefetch=5, id="sa")
    _subscribe(sessions, "b", "work", ack="client-individual", prefetch=1, id="sb")
    pusher.gone.add("a")

    # When three messages arrive and the pump runs for each
    send("work", "1", "2", "3")
    for _ in range(3):
        sessions.pump("work")

    # Then nothing is stuck with a: b holds one, the rest wait in the queue, and a is no
    # longer listed among the open connections
    assert len(_messages(pusher, "b")) == 1
    assert _counts(broker, "work") == (2, 1)
    assert _connections(sessions) == ["b"]


def test_auto_ack_deletes_what_was_pushed(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a queue of 25 messages
    _connect(sessions, "c1")
    send("feed", *[f"m{i}" for i in range(25)])

    # When a subscriber joins in auto ack mode (the default)
    _subscribe(sessions, "c1", "feed")

    # Then it gets all 25, in order, none with an ack id, and the queue is empty
    got = _messages(pusher, "c1")
    assert [m["body"] for m in got] == [f"m{i}" for i in range(25)]
    assert [m for m in got if "ack" in m] == []
    assert _counts(broker, "feed") == (0, 0)
    # leased in rounds of 10, pushed together: one post after the `subscribed` answer
    assert len(pusher.posts["c1"]) == 2


def test_client_mode_acks_everything_up_to_the_acked_message(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a client-mode subscriber holding four messages
    _connect(sessions, "c1")
    send("jobs", "1", "2", "3", "4")
    _subscribe(sessions, "c1", "jobs", ack="client", prefetch=4)
    got = _messages(pusher, "c1")

    # When the client acks the third message (cumulative ack)
    _frame(sessions, "c1", action="ack", id=got[2]["ack"])

    # Then the first three are gone, the fourth is still held
    assert _counts(broker, "jobs") == (0, 1)
    # When it acks the first again
    _frame(sessions, "c1", action="ack", id=got[0]["ack"])
    # Then an error says it is no longer in flight
    error = pusher.json_frames("c1")[-1]
    assert (error["type"], error["error"]) == ("error", "not_in_flight")


def test_a_lease_that_runs_out_frees_credit_and_a_late_ack_is_refused(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    clock: ManualClock,
) -> None:
    # Given a queue with a 30 s visibility timeout, and a consumer with prefetch 1
    # holding its one message
    broker.put_queue(ANONYMOUS, "slow", QueueSettings(visibility_timeout=30))
    _connect(sessions, "c1")
    send("slow", "m")
    _subscribe(sessions, "c1", "slow", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "c1")

    # When the consumer holds it past the visibility timeout and the sweeper runs
    clock.advance(31)
    sessions.pump_all()

    # Then it is delivered again (same consumer: it has credit again)
    second = _messages(pusher, "c1")[-1]
    assert (second["message_id"], second["receive_count"]) == (first["message_id"], 2)
    # When it acks the first delivery
    _frame(sessions, "c1", action="ack", id=first["ack"])
    # Then that ack is refused
    assert pusher.json_frames("c1")[-1]["error"] == "not_in_flight"
    # When it acks the second delivery
    _frame(sessions, "c1", action="ack", id=second["ack"], receipt="ok")
    # Then that one is taken, and the queue is empty
    assert pusher.json_frames("c1")[-1] == {"type": "receipt", "receipt": "ok"}
    assert _counts(broker, "slow") == (0, 0)


def test_several_messages_share_a_post_within_the_32_kb_frame(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a queue of ten small messages
    _connect(sessions, "small")
    send("tiny", *[f"m{i}" for i in range(10)])
    # When a consumer with prefetch 10 subscribes
    _subscribe(sessions, "small", "tiny", ack="client-individual", prefetch=10)
    # Then all ten come in one WebSocket message (a batch frame), after the `subscribed`
    posts = [json.loads(p) for p in pusher.posts["small"]]
    assert [p["type"] for p in posts] == ["subscribed", "batch"]
    assert len(posts[1]["frames"]) == 10

    # Given a queue of five messages of 12 KB
    _connect(sessions, "big")
    send("large", *["x" * 12_000 for _ in range(5)])
    # When a consumer with prefetch 5 subscribes
    _subscribe(sessions, "big", "large", ack="client-individual", prefetch=5)
    # Then two fit in one 32 KB frame, so the five take three posts, none over 32 KB
    sizes = [len(p.encode()) for p in pusher.posts["big"][1:]]
    assert len(sizes) == 3, sizes
    assert max(sizes) <= 32 * 1024, sizes
    assert len(_messages(pusher, "big")) == 5


def test_a_new_message_on_the_stream_wakes_the_pump(
    sessions: Sessions, pusher: RecordingPusher, send: Send, dispatch: DispatchFunction
) -> None:
    # Given a subscriber of a queue, and a message sent to it that nothing pushed yet
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=5)
    send("jobs", "via stream")
    assert _messages(pusher, "c1") == []

    # When the dispatch function gets the message's log INSERT record (twice, as a retried
    # stream batch would: it is indexed once)
    [record] = dispatch.new_records()
    response = dispatch.hand_over([record, {**record, "eventID": "again"}])

    # Then the batch succeeds, and the subscriber is pushed the message once
    assert response == {"batchItemFailures": []}
    assert _bodies(pusher, "c1") == ["via stream"]


def test_a_pump_stops_at_its_budget_and_wakes_itself_through_the_stream(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    aws: Aws,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given sessions whose pumps lease at most 5 messages each (a budget), the dispatch
    # function wired to them, and 8 messages it has handled (nobody consumed them then)
    cipher = EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock)
    small = Sessions(
        dynamodb=aws.dynamodb,
        table_name=aws.settings.destinations_table,
        live=sessions.live,
        consumers=assembly.build_queue_consumers(
            aws.dynamodb, aws.settings.destinations_table, broker, pusher, clock, budget=5
        ),
        queues=broker,
        topics=assembly.build_topic_service(
            aws.settings, dynamodb=aws.dynamodb, kms=aws.kms, cipher=cipher, time=clock
        ),
        pusher=pusher,
        cipher=cipher,
        clock=clock,
        log=LogStore(aws.dynamodb, aws.settings.messages_table),
    )
    dispatch = DispatchFunction(aws, small, monkeypatch)
    _connect(small, "c1")
    send("bulk", *[str(i) for i in range(8)])
    assert dispatch() == {"batchItemFailures": []}

    # When an auto-ack consumer subscribes
    _subscribe(small, "c1", "bulk")
    # Then its first pump stops at 5
    assert len(_messages(pusher, "c1")) == 5

    # When the stream hands the dispatch function what was written since
    assert dispatch() == {"batchItemFailures": []}
    # Then that was one record, the pump's wake-up marker for the queue, and the pump it
    # brings pushes the other 3
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in dispatch.last] == ["W#bulk"]
    assert len(_messages(pusher, "c1")) == 8


def test_unsubscribing_releases_what_the_subscription_held(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a subscriber holding both messages of a queue
    _connect(sessions, "c1")
    send("jobs", "a", "b")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=5)
    assert _counts(broker, "jobs") == (0, 2)

    # When it unsubscribes
    _frame(sessions, "c1", action="unsubscribe", id="s1", receipt="bye")

    # Then it is told so, and both messages are back in the queue at once
    assert pusher.json_frames("c1")[-1] == {"type": "unsubscribed", "id": "s1", "receipt": "bye"}
    assert _counts(broker, "jobs") == (2, 0)


def test_subscription_mistakes_get_error_frames(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a subscriber
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "jobs", ack="client-individual")
    # When it subscribes again under the same id, names a bad queue, acks with an id that
    # is not one, acks a message it does not hold, and unsubscribes an unknown id
    _subscribe(sessions, "c1", "jobs")
    _frame(sessions, "c1", action="subscribe", destination="/queue/bad name", id="s2")
    _frame(sessions, "c1", action="ack", id="not-an-ack-id")
    _frame(sessions, "c1", action="ack", id="3.0.0a0b0c0d:nosuch")
    _frame(sessions, "c1", action="unsubscribe", id="nosuch")

    # Then each mistake gets its error frame
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
    # Given a subscriber of a queue, and another connection
    _connect(sessions, "producer")
    _connect(sessions, "consumer")
    _subscribe(sessions, "consumer", "chat")
    # When the other publishes a message to the queue with attributes, asking a receipt
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

    # Then the subscriber gets it with its attributes, and the publisher its receipt
    [message] = _messages(pusher, "consumer")
    assert (message["body"], message["attributes"]) == ("hi", {"k": "v"})
    assert pusher.json_frames("producer")[0]["receipt"] == "sent"


def test_a_ping_keeps_the_connection_and_is_answered(
    sessions: Sessions, pusher: RecordingPusher
) -> None:
    # Given a connection
    _connect(sessions, "c1")
    # When it pings, once without and once with a receipt
    _frame(sessions, "c1", action="ping")
    _frame(sessions, "c1", action="ping", receipt="p")
    # Then each ping is answered, and the connection stays listed
    assert _connections(sessions) == ["c1"]
    assert pusher.json_frames("c1") == [{"type": "pong"}, {"type": "pong", "receipt": "p"}]


def test_a_cumulative_ack_settles_every_earlier_message_however_close_they_were_pushed(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given 25 messages pushed to a client-mode consumer in one pump: three rounds of
    # leases (10, 10, 5), all within one millisecond of the clock
    _connect(sessions, "c1")
    send("jobs", *[f"m{i}" for i in range(25)])
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
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 3 and six messages, and a second pump
    # (another Lambda instance) that runs whole while the first one is leasing: both
    # counted the same free credit
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "race", ack="client", prefetch=3)
    send("race", *[f"m{i}" for i in range(6)])
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
    # When it acks them
    monkeypatch.setattr(broker, "receive", receive)
    _frame(sessions, "c1", action="ack", id=got[-1]["ack"])
    # Then it gets the others as first deliveries
    rest = _messages(pusher, "c1")[3:]
    assert [(m["body"], m["receive_count"]) for m in rest] == [("m3", 1), ("m4", 1), ("m5", 1)]


def test_a_consumer_whose_push_failed_is_fed_again_at_the_next_pump(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a consumer whose pushes fail (API Gateway erred) when its messages arrive
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "flaky", ack="client-individual", prefetch=2)
    send("flaky", "a", "b")
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
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a consumer that held two messages and unsubscribed (they went back)
    _connect(sessions, "c1")
    send("jobs", "m1", "m2", "m3")
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=2)
    _frame(sessions, "c1", action="unsubscribe", id="s1")
    assert _counts(broker, "jobs") == (3, 0)

    # When it subscribes again under the same id
    _subscribe(sessions, "c1", "jobs", ack="client-individual", prefetch=2)

    # Then it is pushed two again (its earlier deliveries hold nothing)
    again = _messages(pusher, "c1")[2:]
    assert [(m["body"], m["redelivered"]) for m in again] == [("m1", True), ("m2", True)]
    # When it acks one of them
    _frame(sessions, "c1", action="ack", id=again[0]["ack"], receipt="ok")
    # Then the ack is taken, and the credit it frees brings the third message
    assert pusher.json_frames("c1")[-2] == {"type": "receipt", "receipt": "ok"}
    assert _messages(pusher, "c1")[-1]["body"] == "m3"


def test_a_nack_pulls_the_next_message_and_leaves_the_refused_one_to_others(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, send: Send
) -> None:
    # Given a consumer with prefetch 1 holding the first of two messages
    _connect(sessions, "a")
    send("jobs", "one", "two")
    _subscribe(sessions, "a", "jobs", ack="client-individual", prefetch=1)
    [first] = _messages(pusher, "a")

    # When it nacks it
    _frame(sessions, "a", action="nack", id=first["ack"])

    # Then its freed credit takes the next message, not the one it refused
    assert _bodies(pusher, "a") == ["one", "two"]
    # When a second consumer with credit subscribes
    _connect(sessions, "b")
    _subscribe(sessions, "b", "jobs", ack="client-individual", prefetch=1)
    # Then the refused message goes to it at once, redelivered
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
    bodies = [m["body"] for m in got]
    by_group = {g: [b for b in bodies if b.startswith(f"{g}/")] for g in groups}
    assert by_group == {g: [f"{g}/1", f"{g}/2"] for g in groups}
    assert len(bodies) == 6
    assert [f for f in pusher.json_frames("c1") if f["type"] == "error"] == []
    assert _counts(broker, "f.fifo") == (0, 0)


def test_messages_indexed_while_a_client_consumer_is_full_are_pushed_after_its_ack(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2 holding two messages (its producer
    # sends to shard 7 of the queue's 8: every random draw is the highest)
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "full", ack="client", prefetch=2)
    send("full", "m1", "m2")
    sessions.pump("full", indexed=frozenset({7}))
    first = _messages(pusher, "c1")
    assert [m["body"] for m in first] == ["m1", "m2"]

    # When a third is indexed and the dispatch function pumps it (the consumer has no
    # credit: it is marked owed), then the consumer acks the two it holds
    send("full", "m3")
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
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2 holding two messages, and a third
    # message indexed (shard 7) while it is full
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "racy", ack="client", prefetch=2)
    send("racy", "m1", "m2")
    sessions.pump("racy", indexed=frozenset({7}))
    first = _messages(pusher, "c1")
    assert len(first) == 2
    send("racy", "m3")

    # When the dispatch function's pump has counted no credit, and the consumer's ack
    # lands just before the pump marks it owed (so the ack sees no mark and pumps nothing):
    # the ack is run from inside the pump's marking step, the one place the race can be
    # made to happen
    mark = PushConsumers.mark_owed
    acked: list[bool] = []

    def ack_first(self: PushConsumers, consumer: Any) -> Any:
        if not acked:
            acked.append(True)
            _frame(sessions, "c1", action="ack", id=first[-1]["ack"])
            assert len(_messages(pusher, "c1")) == 2  # the ack pumped nothing
        return mark(self, consumer)

    monkeypatch.setattr(PushConsumers, "mark_owed", ack_first)
    sessions.pump("racy", indexed=frozenset({7}))

    # Then the pump's mark returns the ack's watermark and it feeds the consumer again:
    # the third message is pushed by that pump
    assert acked == [True]
    assert [m["body"] for m in _messages(pusher, "c1")] == ["m1", "m2", "m3"]
    assert _counts(broker, "racy") == (0, 1)


def test_an_individual_ack_that_reads_no_owed_mark_before_a_pump_raises_it_is_not_missed(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-individual consumer with prefetch 20 (refill step 2) holding 20
    # messages pushed together, and a 21st message indexed (shard 7) while it is full
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "racy", ack="client-individual", prefetch=20)
    send("racy", *(f"m{n:02d}" for n in range(20)))
    sessions.pump("racy", indexed=frozenset({7}))
    first = _messages(pusher, "c1")
    assert len(first) == 20
    send("racy", "m20")

    # When the dispatch function's pump has counted no credit, and the consumer acks two
    # messages (a refill step) just before the pump marks it owed, so that the second
    # ack finds no mark and pumps nothing: the acks run from inside the pump's marking
    # step, the one place the race can be made to happen
    raise_owed = PushConsumers.raise_owed
    acked: list[bool] = []

    def ack_first(self: PushConsumers, consumer: Any, below: int) -> Any:
        if not acked:
            acked.append(True)
            for message in first[:2]:
                _frame(sessions, "c1", action="ack", id=message["ack"])
            assert len(_messages(pusher, "c1")) == 20  # the acks pumped nothing
        return raise_owed(self, consumer, below)

    monkeypatch.setattr(PushConsumers, "raise_owed", ack_first)
    sessions.pump("racy", indexed=frozenset({7}))

    # Then the pump, once its mark is up, counts the consumer again and pushes it the 21st
    assert acked == [True]
    assert [m["body"] for m in _messages(pusher, "c1")][20:] == ["m20"]
    assert _counts(broker, "racy") == (0, 19)


def test_the_dispatch_functions_pump_looks_in_the_shards_it_indexed_instead_of_marking_owed(
    sessions: Sessions,
    pusher: RecordingPusher,
    send: Send,
    aws: Aws,
    dispatch: DispatchFunction,
) -> None:
    """What the pump writes is the point (a consumer marked owed costs a write, and makes
    its next ack pump): it is metered as AWS bills it (`mqless_cli.billing`)."""
    # Given a client-mode consumer with prefetch 1, and a message sent that it was not
    # pushed yet
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "told", ack="client", prefetch=1)
    send("told", "via stream")

    # When the dispatch function gets the message's log INSERT record
    meter = Meter()
    with observing_moto(meter):
        assert dispatch() == {"batchItemFailures": []}

    # Then the message is pushed, and the pump, which leaves the consumer without credit,
    # looked at the shard it had indexed (nothing left there) instead of marking the
    # consumer owed: the consumer's partition got one write, the push's delivery record
    assert _bodies(pusher, "c1") == ["via stream"]
    consumers = f"{aws.settings.destinations_table} QC#told"
    assert meter.usage().partition_write_units[consumers] == 1


@pytest.mark.parametrize(
    ("ack", "prefetch"),
    [
        ("client", 3),
        # STOMP's default prefetch: every ack counts the consumer's holding
        ("client-individual", 10),
        # acks decide their refill from their records (`credit.by_record`)
        ("client-individual", 20),
    ],
)
def test_a_pump_that_loses_its_record_race_pushes_what_it_leased_under_the_next_seq(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
    ack: str,
    prefetch: int,
) -> None:
    """The shape of a durable subscriber joining a replay (tests/e2e/test_replay_dev.py):
    the subscribe's pump pushes the replayed messages while the dispatch function's pump
    of one published just after races it for the consumer's first record."""
    # Given a consumer acking by hand and two messages waiting in shard 7 (every random
    # draw is the highest)
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "race", ack=ack, prefetch=prefetch)
    send("race", "m1", "m2")

    # When two dispatch pumps count the same credit: the first leases m1 and m2, and
    # before it writes its record a third message arrives, whose pump leases it and
    # writes that seq first
    raced, handed_back = _pumps_race_for_a_record(sessions, pusher, broker, send, monkeypatch)

    # Then the losing pump counts the consumer's credit again (the winner's record holds
    # one message), finds room for the two it leased and pushes them at once under the
    # next record: nothing went back to the queue to be leased again
    assert raced == [True]
    pushed = _messages(pusher, "c1")
    assert [m["body"] for m in pushed] == ["m3", "m1", "m2"]
    assert handed_back == []
    assert _counts(broker, "race") == (0, 3)
    # and each of them is acked by its own ack id
    for message in pushed:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    assert _counts(broker, "race") == (0, 0)


@pytest.mark.parametrize("ack", ["client", "client-individual"])
def test_a_pump_that_loses_its_record_race_keeps_what_the_consumer_still_has_room_for(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
    ack: str,
) -> None:
    # Given a consumer acking by hand with prefetch 2 and two messages waiting in shard 7
    # (every random draw is the highest)
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "race", ack=ack, prefetch=2)
    send("race", "m1", "m2")

    # When two pumps count the same credit: the first leases m1 and m2, and before it
    # writes its record a third message arrives, whose pump leases it and writes that
    # seq first
    raced, handed_back = _pumps_race_for_a_record(sessions, pusher, broker, send, monkeypatch)

    # Then the losing pump, counted again, has room for one of its two: it pushes the
    # older under the next record and gives back only the other (one index write), not
    # both to lease one of them again
    assert raced == [True]
    pushed = _messages(pusher, "c1")
    assert [(m["body"], m["receive_count"]) for m in pushed] == [("m3", 1), ("m1", 1)]
    assert handed_back == [1]
    assert _counts(broker, "race") == (1, 2)
    # and when it acks them, it gets the one given back, as a first delivery
    for message in pushed:
        _frame(sessions, "c1", action="ack", id=message["ack"])
    rest = _messages(pusher, "c1")[2:]
    assert [(m["body"], m["receive_count"]) for m in rest] == [("m2", 1)]
    _frame(sessions, "c1", action="ack", id=rest[0]["ack"])
    assert _counts(broker, "race") == (0, 0)


def test_a_consumer_without_credit_gets_nothing_leased_in_the_append_and_the_rest_on_ack(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    dispatch: DispatchFunction,
) -> None:
    # Given a client-mode consumer with prefetch 2 holding two messages (the dispatch
    # function pushed them)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "credit", ack="client", prefetch=2)
    with INLINE_DISPATCH.paused():
        send("credit", "m1", "m2")
    dispatch()
    held = _messages(pusher, "c1")
    assert [m["body"] for m in held] == ["m1", "m2"]

    # When a third arrives through the dispatch function
    with INLINE_DISPATCH.paused():
        send("credit", "m3")
    assert dispatch() == {"batchItemFailures": []}

    # Then it is not leased to the consumer (it stays visible)
    assert len(_messages(pusher, "c1")) == 2
    assert _counts(broker, "credit") == (1, 2)
    # When the consumer acks what it holds
    _frame(sessions, "c1", action="ack", id=held[-1]["ack"])
    # Then the third comes, as its first delivery
    assert [(m["body"], m["receive_count"]) for m in _messages(pusher, "c1")[2:]] == [("m3", 1)]


def test_messages_leased_in_the_append_to_a_consumer_that_left_go_to_another(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    dispatch: DispatchFunction,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two consumers of a queue, and the dispatch function choosing c1 (the first in
    # its shuffled order) to append the new messages leased to
    monkeypatch.setattr("random.shuffle", lambda items: items.sort(key=lambda c: c.tag))
    _connect(sessions, "c1")
    _connect(sessions, "c2")
    _subscribe(sessions, "c1", "left", ack="client", prefetch=5)
    _subscribe(sessions, "c2", "left", ack="client", prefetch=5)

    # When c1's connection goes between the dispatch function's read of the consumers and
    # its post (the append leased them to c1)
    with INLINE_DISPATCH.paused():
        send("left", "m1", "m2")
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
    send: Send,
    dispatch: DispatchFunction,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 2, and two dispatch invocations (two
    # stream shards) that both read its credit (2) before either appends
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "twice", ack="client", prefetch=2)
    first_plan = sessions.plan_push("twice")
    assert first_plan is not None
    with INLINE_DISPATCH.paused():
        send("twice", "m1", "m2")
    assert dispatch() == {"batchItemFailures": []}  # the other invocation, done first
    assert len(_messages(pusher, "c1")) == 2
    with INLINE_DISPATCH.paused():
        send("twice", "m3", "m4")
    monkeypatch.setattr(sessions, "plan_push", lambda queue: first_plan)

    # When the first invocation appends its messages leased on that credit and pushes them
    assert dispatch() == {"batchItemFailures": []}

    # Then its record loses (the seq is taken), its messages go back unpushed: the
    # consumer never holds more than its prefetch
    held = _messages(pusher, "c1")
    assert [m["body"] for m in held] == ["m1", "m2"]
    assert _counts(broker, "twice") == (2, 2)
    # When the consumer acks what it holds
    _frame(sessions, "c1", action="ack", id=held[-1]["ack"])
    # Then the ack brings the other two
    assert _bodies(pusher, "c1") == ["m1", "m2", "m3", "m4"]


def test_a_stream_batch_handed_over_again_pushes_nothing_twice(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    dispatch: DispatchFunction,
) -> None:
    # Given a consumer pushed two messages that the dispatch function appended leased
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "again", ack="client", prefetch=5)
    with INLINE_DISPATCH.paused():
        send("again", "m1", "m2")
    assert dispatch() == {"batchItemFailures": []}
    assert len(_messages(pusher, "c1")) == 2

    # When Lambda hands the same stream batch over again (a retry)
    assert dispatch.hand_over(dispatch.last) == {"batchItemFailures": []}

    # Then nothing is appended or pushed again
    assert len(_messages(pusher, "c1")) == 2
    assert _counts(broker, "again") == (0, 2)


def test_a_consumer_fed_only_by_the_dispatch_function_still_gets_what_waits_behind_its_acks(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    dispatch: DispatchFunction,
) -> None:
    # Given a client-individual consumer with prefetch 10 that keeps up: 200 messages came
    # through the dispatch function ten at a time, each ten leased to it in the append and
    # acked before the next (no pump leased any: twenty settled segments lie in front)
    _connect(sessions, "c1")
    _subscribe(sessions, "c1", "kept", ack="client-individual", prefetch=10)
    for batch in range(20):
        with INLINE_DISPATCH.paused():
            send("kept", *(f"m{batch * 10 + n:03d}" for n in range(10)))
        dispatch()
        for message in _messages(pusher, "c1")[batch * 10 :]:
            _frame(sessions, "c1", action="ack", id=message["ack"])
    assert len(_messages(pusher, "c1")) == 200
    # and ten more it holds, and five that arrive while it has no credit
    with INLINE_DISPATCH.paused():
        send("kept", *(f"m{n:03d}" for n in range(200, 210)))
    dispatch()
    held = _messages(pusher, "c1")[200:]
    assert len(held) == 10
    with INLINE_DISPATCH.paused():
        send("kept", *(f"m{n:03d}" for n in range(210, 215)))
    dispatch()
    assert _counts(broker, "kept") == (5, 10)

    # When it acks the ten it holds
    for message in held:
        _frame(sessions, "c1", action="ack", id=message["ack"])

    # Then the five that waited came to it (not a minute later, when the sweeper ran)
    assert [m["body"] for m in _messages(pusher, "c1")[210:]] == [
        f"m{n:03d}" for n in range(210, 215)
    ]


def test_a_stream_batch_for_a_queue_nobody_is_pushed_reads_its_consumers_once(
    broker: QueueService,
    send: Send,
    dispatch: DispatchFunction,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a queue read over HTTP only (no push consumer) whose first batch the dispatch
    # function has handled
    with INLINE_DISPATCH.paused():
        send("quiet", "m1")
    assert dispatch() == {"batchItemFailures": []}
    reads = count_calls(monkeypatch, PushConsumers, "of_queue")
    before = meter.usage()

    # When the stream brings it another batch
    with INLINE_DISPATCH.paused():
        send("quiet", "m2", "m3")
    assert dispatch() == {"batchItemFailures": []}

    # Then the dispatch function read the queue's consumers once (the strongly consistent
    # read after the append, 1 unit), not also before it to plan a push (another half)
    used = meter.usage() - before
    assert reads() == 1
    consumers = f"{aws.settings.destinations_table} QC#quiet"
    assert used.partition_read_units.get(consumers) == 1
    # and the messages wait for a receive
    assert _counts(broker, "quiet") == (3, 0)


def test_a_consumer_that_subscribes_in_another_container_is_pushed_the_next_batch(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    dispatch: DispatchFunction,
    aws: Aws,
    clock: ManualClock,
) -> None:
    # Given the dispatch function handled a batch for a queue that had no push consumer
    with INLINE_DISPATCH.paused():
        send("joined", "before")
    assert dispatch() == {"batchItemFailures": []}

    # When a consumer subscribes through another container (its pump takes what waits),
    # then two more batches arrive
    other = build_sessions(aws, broker, clock, pusher)  # another container's
    _connect(other, "c1")
    _subscribe(other, "c1", "joined", prefetch=10)
    assert _bodies(pusher, "c1") == ["before"]
    with INLINE_DISPATCH.paused():
        send("joined", "next")
    assert dispatch() == {"batchItemFailures": []}
    with INLINE_DISPATCH.paused():
        send("joined", "last")
    assert dispatch() == {"batchItemFailures": []}

    # Then the dispatch function pushed each as it came (no sweeper involved)
    assert _bodies(pusher, "c1") == ["before", "next", "last"]
    assert _counts(broker, "joined") == (0, 0)  # auto acks: each settled as it went out


def _pumps_race_for_a_record(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[bool], list[int]]:
    """Pump queue `race`'s shard 7 for consumer c1 while, just before the pump writes its
    delivery record, a message m3 is sent and another pump pushes it under that record's
    seq first; (whether the race happened, the size of each hand-back of leases)."""
    settle = broker.settle_leases
    handed_back: list[int] = []

    def noted(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("outcome") == "hand_back":
            handed_back.append(len(args[2]))
        return settle(*args, **kwargs)

    monkeypatch.setattr(broker, "settle_leases", noted)
    put = DeliveryRecords.put
    raced: list[bool] = []

    def other_pump_first(self: DeliveryRecords, *args: Any, **kwargs: Any) -> bool:
        if not raced:
            raced.append(True)
            send("race", "m3")
            sessions.pump("race", indexed=frozenset({7}))
            assert [m["body"] for m in _messages(pusher, "c1")] == ["m3"]
        return put(self, *args, **kwargs)

    monkeypatch.setattr(DeliveryRecords, "put", other_pump_first)
    sessions.pump("race", indexed=frozenset({7}))
    return raced, handed_back
