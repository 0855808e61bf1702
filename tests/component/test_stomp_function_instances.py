"""One STOMP connection's frames handled by several WebSocket function instances, as on AWS.

An instance remembers a connected session's connection (`storage/remembered_connections.py`)
so that its SENDs and ACKs read nothing of it; another instance may meanwhile change the
connection's subscriptions or end it. Each instance here is its own `Sessions` (its own
memory) over the same tables; the tests route each WebSocket message to one of them, and
read what a user sees: the frames posted back, and the queue's counts.
"""

from __future__ import annotations

import pytest

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage.remembered_connections import REMEMBER_SECONDS
from mqless.transports.websocket.sessions import Sessions
from mqless.transports.websocket.stomp_frames import Frame
from mqless_cli.billing import Meter, observing_moto
from tests.component.conftest import Aws, RecordingPusher, build_sessions
from tests.stomp_frames_sent import got, say, stomp_session


class Instances:
    """The WebSocket function's instances: `on(n)` routes the next events to instance n."""

    def __init__(self, first: Sessions) -> None:
        self.all = [first]
        self.current = first

    def on(self, n: int) -> Sessions:
        self.current = self.all[n]
        return self.current


@pytest.fixture
def instances(
    sessions: Sessions,
    aws: Aws,
    broker: QueueService,
    clock: ManualClock,
    pusher: RecordingPusher,
    monkeypatch: pytest.MonkeyPatch,
) -> Instances:
    """Two instances of the WebSocket function (the first is the `sessions` fixture)."""
    found = Instances(sessions)
    found.all.append(build_sessions(aws, broker, clock, pusher))
    monkeypatch.setattr(wiring, "sessions", lambda: found.current)
    monkeypatch.setattr(wiring, "connection_store", lambda: found.current.live)
    return found


def _counts(broker: QueueService, queue: str) -> tuple[int, int]:
    """(visible, in flight): the queue's counts as `GET /queues/{name}` shows them."""
    _, counts = broker.get_queue(ANONYMOUS, queue)
    return counts.visible, counts.in_flight


def _receives(sessions: Sessions, pusher: RecordingPusher, queue: str, body: str) -> Frame:
    """A message sent to `queue` and pushed: the MESSAGE frame it reached the client as."""
    say("c1", "SEND", body, destination=f"/queue/{queue}")
    sessions.pump(queue)
    return next(f for f in got(pusher, "c1", "MESSAGE") if f.body == body.encode())


def test_a_connected_sessions_sends_and_acks_read_nothing_of_its_connection(
    instances: Instances, pusher: RecordingPusher, broker: QueueService, aws: Aws
) -> None:
    # Given a client-individual subscriber, connected through this instance
    sessions = instances.on(0)
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/q", ack="client-individual")
    table = aws.settings.destinations_table

    # When it SENDs a message, and ACKs it once it is pushed
    meter = Meter()
    with observing_moto(meter):
        say("c1", "SEND", "x", destination="/queue/q", receipt="sent")
    sent = meter.usage()
    sessions.pump("q")
    [message] = got(pusher, "c1", "MESSAGE")
    meter = Meter()
    with observing_moto(meter):
        say("c1", "ACK", id=message.header("ack") or "", receipt="acked")
    acked = meter.usage()

    # Then both are done, and neither read the connection's partition
    assert [f.header("receipt-id") for f in got(pusher, "c1", "RECEIPT")] == ["sent", "acked"]
    assert _counts(broker, "q") == (0, 0)
    assert f"{table} CONN#c1" not in sent.partition_read_units
    assert f"{table} CONN#c1" not in acked.partition_read_units
    assert acked.requests == {"dynamodb:Query": 1, "dynamodb:UpdateItem": 2}


def test_another_instance_reads_the_connection_once_with_its_subscriptions(
    instances: Instances, pusher: RecordingPusher, broker: QueueService, aws: Aws
) -> None:
    # Given a subscriber connected through instance 0, holding two messages
    sessions = instances.on(0)
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/q", ack="client-individual")
    first = _receives(sessions, pusher, "q", "one")
    second = _receives(sessions, pusher, "q", "two")
    table = aws.settings.destinations_table

    # When instance 1, which never saw the connection, gets its two ACKs
    instances.on(1)
    reads = []
    for message in (first, second):
        meter = Meter()
        with observing_moto(meter):
            say("c1", "ACK", id=message.header("ack") or "")
        reads.append(meter.usage().partition_read_units.get(f"{table} CONN#c1", 0))

    # Then both are acked; the first read the connection with its subscriptions (one
    # request), the second nothing of it
    assert _counts(broker, "q") == (0, 0)
    assert reads[0] > 0
    assert reads[1] == 0
    assert got(pusher, "c1", "ERROR") == []


def test_an_ack_for_a_subscription_made_again_in_another_instance_is_settled(
    instances: Instances, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a subscriber whose subscription "0" instance 0 remembers (it acked through it)
    sessions = instances.on(0)
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/a", ack="client-individual")
    old = _receives(sessions, pusher, "a", "on a")
    say("c1", "ACK", id=old.header("ack") or "")
    # and instance 1 then gets UNSUBSCRIBE and a new SUBSCRIBE with the same id, of queue b
    other = instances.on(1)
    say("c1", "UNSUBSCRIBE", id="0")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/b", ack="client-individual")
    new = _receives(other, pusher, "b", "on b")

    # When instance 0 gets the ACK of queue b's message
    instances.on(0)
    say("c1", "ACK", id=new.header("ack") or "", receipt="acked")

    # Then it is acked, as the new subscription's
    assert got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "acked"
    assert got(pusher, "c1", "ERROR") == []
    assert _counts(broker, "b") == (0, 0)


def test_a_cumulative_ack_of_an_unsubscribed_incarnation_leaves_the_new_ones_acks_working(
    instances: Instances, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a `client` subscriber holding a message, its subscription remembered by
    # instance 0
    sessions = instances.on(0)
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/q", ack="client")
    old = _receives(sessions, pusher, "q", "first")
    # and instance 1 then gets UNSUBSCRIBE (the message goes back) and SUBSCRIBE again
    other = instances.on(1)
    say("c1", "UNSUBSCRIBE", id="0")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/q", ack="client")
    other.pump("q")
    again = got(pusher, "c1", "MESSAGE")[-1]
    assert again.body == b"first"

    # When instance 0 gets an ACK of the old delivery, and then the ACK of the new one
    instances.on(0)
    say("c1", "ACK", id=old.header("ack") or "")
    say("c1", "ACK", id=again.header("ack") or "", receipt="acked")

    # Then the old one is refused (the session stays) and the new one acks the message
    [error] = got(pusher, "c1", "ERROR")
    assert "not in flight" in (error.header("message") or "")
    assert pusher.closed == []
    assert got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "acked"
    assert _counts(broker, "q") == (0, 0)


def test_an_ack_after_unsubscribe_in_another_instance_is_refused_and_the_message_kept(
    instances: Instances, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a client-individual subscriber holding a message, its subscription remembered
    # by instance 0, and unsubscribed through instance 1 (the message went back)
    sessions = instances.on(0)
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/q", ack="client-individual")
    held = _receives(sessions, pusher, "q", "held")
    instances.on(1)
    say("c1", "UNSUBSCRIBE", id="0")

    # When instance 0 gets the ACK of that message
    instances.on(0)
    say("c1", "ACK", id=held.header("ack") or "")

    # Then the ACK is refused with an ERROR, the session stays, and the message waits in
    # the queue for the next consumer
    assert len(got(pusher, "c1", "ERROR")) == 1
    assert pusher.closed == []
    assert _counts(broker, "q") == (1, 0)


def test_a_connection_ended_in_another_instance_is_refused_within_the_remembering_bound(
    instances: Instances, pusher: RecordingPusher, broker: QueueService, clock: ManualClock
) -> None:
    # Given a session instance 0 remembers, whose items instance 1 deleted without its
    # socket being closed (closing it failed)
    instances.on(0)
    stomp_session("c1")
    say("c1", "SEND", "x", destination="/queue/q")
    instances.on(1).live.disconnect("c1")

    # When its next frame reaches instance 0 once the remembering bound has passed
    clock.advance(REMEMBER_SECONDS)
    instances.on(0)
    say("c1", "SEND", "y", destination="/queue/q")

    # Then it is refused as a frame of an unknown connection, and the socket closed
    [error] = got(pusher, "c1", "ERROR")
    assert (error.header("message") or "").startswith("not connected")
    assert pusher.closed == ["c1"]
    assert _counts(broker, "q") == (1, 0)


def test_a_transaction_begun_in_one_instance_holds_frames_another_instance_gets(
    instances: Instances, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a queue, and a session whose BEGIN reached instance 0
    broker.put_queue(ANONYMOUS, "q", QueueSettings())
    instances.on(0)
    stomp_session("c1")
    say("c1", "BEGIN", transaction="t1")

    # When its SEND in that transaction reaches instance 1, and its COMMIT instance 0
    instances.on(1)
    say("c1", "SEND", "held", destination="/queue/q", transaction="t1")
    held = _counts(broker, "q")
    instances.on(0)
    say("c1", "COMMIT", transaction="t1", receipt="committed")

    # Then the message was held until the COMMIT, and then sent
    assert held == (0, 0)
    assert got(pusher, "c1", "RECEIPT")[-1].header("receipt-id") == "committed"
    assert got(pusher, "c1", "ERROR") == []
    assert _counts(broker, "q") == (1, 0)
