"""The dispatch function's count of a consumer's credit, kept by its container from one
stream batch to the next (`domain/push/remembered_credit.py`): what it saves, and that a
push by another container in between never takes the consumer past its prefetch."""

from __future__ import annotations

import json

import pytest

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.push.pushes import Connection
from mqless.domain.queues.service import QueueService
from mqless.transports.websocket.json_protocol import handle_text
from mqless.transports.websocket.sessions import Sessions
from mqless_cli.billing import Meter
from tests.component.conftest import Aws, RecordingPusher, build_sessions
from tests.component.dispatch_function import DispatchFunction
from tests.inline_dispatch import INLINE_DISPATCH


def _subscribe(sessions: Sessions, queue: str, prefetch: int) -> None:
    """Connection c1 subscribes to `queue` client-individual (each test's consumer)."""
    sessions.open(Connection("c1"), ANONYMOUS)
    info = sessions.info("c1")
    assert info is not None
    frame = {
        "action": "subscribe",
        "destination": f"/queue/{queue}",
        "id": "s1",
        "ack": "client-individual",
        "prefetch": prefetch,
    }
    handle_text(sessions, info, json.dumps(frame))


def _send(broker: QueueService, clock: ManualClock, queue: str, *bodies: str) -> None:
    """Send `bodies` without indexing them: the next dispatch() is their stream batch."""
    with INLINE_DISPATCH.paused():
        for body in bodies:
            broker.send(ANONYMOUS, queue, NewMessage(body=body.encode()))
            clock.advance(0.001)


def _bodies(pusher: RecordingPusher) -> list[str]:
    return [f["body"] for f in pusher.json_frames("c1") if f["type"] == "message"]


def test_a_stream_batch_after_a_push_that_left_room_counts_no_records(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    clock: ManualClock,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-individual consumer with prefetch 100 that this dispatch container
    # pushed two messages (it holds two: room for far more than a batch)
    dispatch = DispatchFunction(aws, sessions, monkeypatch)
    _subscribe(sessions, "roomy", prefetch=100)
    _send(broker, clock, "roomy", "m1", "m2")
    assert dispatch() == {"batchItemFailures": []}
    _send(broker, clock, "roomy", "m3", "m4")
    start = meter.usage()

    # When the next stream batch of two arrives
    assert dispatch() == {"batchItemFailures": []}
    used = meter.usage() - start

    # Then the two are pushed, and the batch read two queries: the consumers and the
    # index's tail; the consumer's records were not read again
    assert _bodies(pusher) == ["m1", "m2", "m3", "m4"]
    assert used.requests.get("dynamodb:Query", 0) == 2


def test_a_push_by_another_container_between_two_batches_keeps_the_prefetch(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    clock: ManualClock,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a consumer with prefetch 13 that this container pushed two messages (its count:
    # 2 held, room for 11), then another dispatch container (another stream shard) pushed
    # it ten more, which this container did not see
    dispatch = DispatchFunction(aws, sessions, monkeypatch)
    _subscribe(sessions, "shared", prefetch=13)
    _send(broker, clock, "shared", "m01", "m02")
    assert dispatch() == {"batchItemFailures": []}
    other = build_sessions(aws, broker, clock, pusher)
    monkeypatch.setattr(wiring, "sessions", lambda: other)
    _send(broker, clock, "shared", *(f"m{n:02d}" for n in range(3, 13)))
    assert dispatch() == {"batchItemFailures": []}
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    assert len(_bodies(pusher)) == 12
    _send(broker, clock, "shared", "m13", "m14")

    # When this container gets the next stream batch
    assert dispatch() == {"batchItemFailures": []}

    # Then the consumer holds its prefetch and no more (its count was behind: the push it
    # leased on lost its record's seq and was counted again), and the last message waits
    pushed = _bodies(pusher)
    assert pushed == [f"m{n:02d}" for n in range(1, 14)]
    _, counts = broker.get_queue(ANONYMOUS, "shared")
    assert (counts.visible, counts.in_flight) == (1, 13)
