"""Message priority (JMS 0-9) as a user sees it: a queue made with `max_priority` has a lane
per priority and delivers higher priorities first (over HTTP and to push consumers), in
send order within a priority; other queues keep a message's priority on it and deliver as
they always did. Bad priorities are refused before anything is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest_http import HttpApi

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.push.pushes import Connection
from mqless.domain.queues.service import QueueService
from mqless.storage.lane_marks import LANE_QUIET_MS
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.json_protocol import handle_text
from mqless.transports.websocket.sessions import Sessions
from mqless_cli.billing import Meter, observing_moto
from mqless_cli.cfn import Stack
from tests.component.conftest import RecordingPusher
from tests.component.shared_stack import (  # noqa: F401 - fixtures: one moto for the module
    shared_dynamodb,
    shared_kms,
    shared_settings,
    shared_stack,
)
from tests.lambda_support import websocket_event

pytestmark = pytest.mark.usefixtures("wiring_clients_kept")  # no test throttles or retries

# one send after another, in the order of this list: (body, priority)
MIXED = [
    ("a4", 4),
    ("b0", 0),
    ("c9", 9),
    ("d4", 4),
    ("e7", 7),
    ("f0", 0),
    ("g9", 9),
    ("h", None),  # sent without a priority: JMS's default, 4
    ("i7", 7),
    ("j1", 1),
]


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


def _send(api: HttpApi, queue: str, body: str, priority: int | None = None) -> None:
    fields: dict[str, Any] = {"body": body}
    if priority is not None:
        fields["priority"] = priority
    reply = api.post(f"/queues/{queue}/messages", fields)
    assert reply.status == 201, reply.text


def _receive(api: HttpApi, queue: str, max_messages: int = 10) -> list[dict[str, Any]]:
    reply = api.post(f"/queues/{queue}/receive", {"max_messages": max_messages})
    assert reply.status == 200, reply.text
    messages: list[dict[str, Any]] = reply.json["messages"]
    return messages


def _ack(api: HttpApi, queue: str, messages: list[dict[str, Any]]) -> None:
    reply = api.post(f"/queues/{queue}/ack", {"receipts": [m["receipt"] for m in messages]})
    assert reply.status == 200, reply.text


# ---- HTTP receive ----------------------------------------------------------------------------


def test_mixed_priorities_are_received_highest_first_and_in_send_order_within_one(
    api: HttpApi,
) -> None:
    # Given a queue with every JMS priority told apart, and ten messages sent one by one
    # with mixed priorities
    assert api.put("/queues/jobs", {"max_priority": 9}).json["max_priority"] == 9
    for body, priority in MIXED:
        _send(api, "jobs", body, priority)

    # When a consumer receives ten
    received = _receive(api, "jobs")

    # Then the highest priority comes first, and equal priorities in the order they were
    # sent (the one sent without a priority counts as 4, and says it had none)
    assert [m["body"] for m in received] == ["c9", "g9", "e7", "i7", "a4", "d4", "h", "j1"] + [
        "b0",
        "f0",
    ]
    assert [m["priority"] for m in received] == [9, 9, 7, 7, 4, 4, None, 1, 0, 0]


def test_a_high_priority_message_sent_after_a_low_priority_backlog_is_received_first(
    api: HttpApi,
) -> None:
    # Given a queue with priorities holding 60 messages of priority 0 (six index segments)
    api.put("/queues/backlog", {"max_priority": 9})
    for n in range(60):
        _send(api, "backlog", f"low-{n}", 0)

    # When a message of priority 8 is sent after them
    _send(api, "backlog", "urgent", 8)

    # Then the next receive of one message gets it, not the oldest of the backlog
    [first] = _receive(api, "backlog", max_messages=1)
    assert (first["body"], first["priority"]) == ("urgent", 8)
    # and a batch fills up from the highest lane that has messages, then the lower ones
    _ack(api, "backlog", [first])
    _send(api, "backlog", "soon", 5)
    batch = _receive(api, "backlog")
    assert len(batch) == 10 and batch[0]["body"] == "soon"
    assert all(m["body"].startswith("low-") for m in batch[1:])


def test_priorities_above_max_priority_count_as_max_priority(api: HttpApi) -> None:
    # Given a queue that tells apart priorities 0, 1 and 2 (RabbitMQ's x-max-priority: 2)
    api.put("/queues/coarse", {"max_priority": 2})
    # When messages of priorities 9, 0, 2 and 5 are sent in that order
    for body, priority in [("p9", 9), ("p0", 0), ("p2", 2), ("p5", 5)]:
        _send(api, "coarse", body, priority)
    # Then 9, 2 and 5 share the top lane, in send order, before 0
    assert [m["body"] for m in _receive(api, "coarse")] == ["p9", "p2", "p5", "p0"]


def test_a_queue_without_max_priority_keeps_priorities_on_messages_and_send_order(
    api: HttpApi,
) -> None:
    # Given a queue made without max_priority
    assert api.put("/queues/plain", {}).json["max_priority"] is None
    # When messages with priorities are sent to it (ActiveMQ without prioritizedMessages)
    for body, priority in [("first", 0), ("second", 9), ("third", None)]:
        _send(api, "plain", body, priority)
    # Then they are received in send order, each with the priority it was sent with
    received = _receive(api, "plain")
    assert [(m["body"], m["priority"]) for m in received] == [
        ("first", 0),
        ("second", 9),
        ("third", None),
    ]


@pytest.mark.parametrize("priority", [10, -1, "x", "7", 2.5, True])
def test_a_priority_outside_0_to_9_is_refused_with_400(api: HttpApi, priority: object) -> None:
    # Given a queue with priorities
    api.put("/queues/strict", {"max_priority": 9})
    # When a message is sent with a priority that is not a whole number 0-9
    reply = api.post("/queues/strict/messages", {"body": "x", "priority": priority})
    # Then it is refused as a client mistake, and nothing is stored
    assert reply.is_problem(400, "invalid_request"), reply.text
    assert "priority" in reply.json["message"] + json.dumps(reply.json.get("details"))
    assert _receive(api, "strict") == []


def test_max_priority_is_refused_on_fifo_queues_and_outside_1_to_9(api: HttpApi) -> None:
    # Given a FIFO queue name and a standard one
    # (SQS FIFO has no priority: a group's order is its send order)
    # When the FIFO queue is made with max_priority, and the standard one with 10 or 0
    fifo = api.put("/queues/ledger.fifo", {"max_priority": 4})
    # Then each is a 400 invalid_request problem, the FIFO one naming FIFO
    assert fifo.is_problem(400, "invalid_request")
    assert "FIFO" in fifo.json["message"]
    assert api.put("/queues/wide", {"max_priority": 10}).is_problem(400, "invalid_request")
    assert api.put("/queues/wide", {"max_priority": 0}).is_problem(400, "invalid_request")


def test_priority_lanes_share_the_default_eight_shards(api: HttpApi) -> None:
    # Given the default of eight shards for a queue
    # When queues with 10, 4 and 2 priority lanes are made without naming shards
    ten = api.put("/queues/lanes-10", {"max_priority": 9}).json["shards"]
    four = api.put("/queues/lanes-4", {"max_priority": 3}).json["shards"]
    two = api.put("/queues/lanes-2", {"max_priority": 1}).json["shards"]
    # Then each lane gets its share of 8 (at least 1): a receive that looks through every
    # lane reads about as many partitions as a queue without priorities
    assert (ten, four, two) == (1, 2, 4)
    # and an operator who wants more per lane names them
    assert api.put("/queues/lanes-wide", {"max_priority": 9, "shards": 4}).json["shards"] == 4


def test_max_priority_is_fixed_when_a_queue_is_made(api: HttpApi) -> None:
    # Given a queue made with 5 priority lanes
    api.put("/queues/fixed", {"max_priority": 4})
    # When an operator tries to change them, or to take them away
    changed = api.patch("/queues/fixed", {"max_priority": 9})
    removed = api.put("/queues/fixed", {"max_priority": None})
    # Then both are refused (its messages wait in the lanes it has); other settings change,
    # and a replace that does not name max_priority keeps it
    assert changed.is_problem(409, "conflict"), changed.text
    assert removed.is_problem(409, "conflict"), removed.text
    kept = api.put("/queues/fixed", {"visibility_timeout": 12})
    assert (kept.status, kept.json["max_priority"]) == (200, 4)


def test_browsing_shows_each_message_s_priority(api: HttpApi) -> None:
    # Given a queue with priorities holding a message of priority 6 and one without
    api.put("/queues/peek", {"max_priority": 9})
    _send(api, "peek", "six", 6)
    _send(api, "peek", "none")
    # When an operator browses it
    browsed = api.get("/queues/peek/messages").json["messages"]
    # Then each shows the priority it was sent with (oldest first: browsing is in send order)
    assert [(m["body"], m["priority"]) for m in browsed] == [("six", 6), ("none", None)]


def test_a_durable_subscription_queue_with_priorities_orders_what_a_topic_publishes(
    api: HttpApi,
) -> None:
    # Given a queue with priorities that subscribes to a topic
    api.put("/queues/feed", {"max_priority": 9})
    assert api.put("/topics/news/subscriptions/feed", {"queue": "feed"}).status in (200, 201)
    # When the topic publishes messages of priorities 0, 9 and 5
    for body, priority in [("minor", 0), ("breaking", 9), ("update", 5)]:
        reply = api.post("/topics/news/messages", {"body": body, "priority": priority})
        assert reply.status == 201, reply.text
    # Then the subscription's queue delivers them highest first
    assert [m["body"] for m in _receive(api, "feed")] == ["breaking", "update", "minor"]


# ---- dead letters and redrive -----------------------------------------------------------


def test_a_redriven_message_goes_back_into_its_priority_lane(api: HttpApi) -> None:
    # Given a queue with priorities that dead-letters at the second delivery, and a
    # message of priority 8 that failed there
    api.put("/queues/work", {"max_priority": 9, "max_receive_count": 1, "visibility_timeout": 0})
    _send(api, "work", "failed", 8)
    [failed] = _receive(api, "work")
    assert _receive(api, "work") == []  # its second delivery dead-letters it
    [dead] = _receive(api, "work.dlq")
    assert (dead["body"], dead["priority"]) == ("failed", 8)
    api.post("/queues/work.dlq/nack", {"receipts": [dead["receipt"]]})
    # and a backlog of priority 2 sent since
    for n in range(12):
        _send(api, "work", f"later-{n}", 2)

    # When it is redriven back to its queue
    assert api.post("/queues/work.dlq/redrive", {}).json["moved"] == 1

    # Then it is the first a consumer receives there, its priority still on it
    [first] = _receive(api, "work", max_messages=1)
    assert (first["body"], first["priority"]) == ("failed", 8)


def test_a_queue_deleted_and_made_again_delivers_into_lanes_its_first_receive_marked_empty(
    api: HttpApi,
) -> None:
    # Given a queue with priorities that took a message of priority 9, deleted and made
    # again at once (its lane marks go with it)
    api.put("/queues/again", {"max_priority": 9})
    _send(api, "again", "before", 9)
    _ack(api, "again", _receive(api, "again"))
    assert api.delete("/queues/again").status == 204
    api.put("/queues/again", {"max_priority": 9})
    # and a first receive that finds every lane of the new queue empty, and marks them so
    assert _receive(api, "again") == []

    # When a message of priority 9 is sent to it
    _send(api, "again", "after", 9)

    # Then it is received: its lane was marked in use again before it was appended
    assert [m["body"] for m in _receive(api, "again")] == ["after"]


# ---- push consumers ----------------------------------------------------------------------


def _frame(sessions: Sessions, connection_id: str, **frame: Any) -> None:
    info = sessions.info(connection_id)
    assert info is not None
    handle_text(sessions, info, json.dumps(frame))


def _pushed(pusher: RecordingPusher, connection_id: str) -> list[dict[str, Any]]:
    return [f for f in pusher.json_frames(connection_id) if f["type"] == "message"]


def _send_direct(broker: QueueService, queue: str, body: str, priority: int | None) -> None:
    broker.send(ANONYMOUS, queue, NewMessage(body=body.encode(), priority=priority))
    clock = broker._clock
    assert isinstance(clock, ManualClock)
    clock.advance(0.001)


def test_a_push_consumer_gets_the_highest_priority_first_among_messages_not_yet_pushed(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a queue with priorities holding three low-priority messages and one urgent one
    broker.put_queue(ANONYMOUS, "tasks", QueueSettings(max_priority=9))
    for body, priority in [("low-1", 1), ("low-2", 1), ("low-3", 1), ("urgent-1", 9)]:
        _send_direct(broker, "tasks", body, priority)

    # When a client-individual consumer with prefetch 2 subscribes
    sessions.open(Connection("c1"), ANONYMOUS)
    _frame(
        sessions,
        "c1",
        action="subscribe",
        destination="/queue/tasks",
        id="s1",
        ack="client-individual",
        prefetch=2,
    )
    # Then it gets the urgent one first, then the oldest low one, each frame with its priority
    first = _pushed(pusher, "c1")
    assert [(m["body"], m["priority"]) for m in first] == [("urgent-1", 9), ("low-1", 1)]

    # When another urgent message comes while it holds those two, and it acks one
    _send_direct(broker, "tasks", "urgent-2", 8)
    sessions.pump("tasks")
    _frame(sessions, "c1", action="ack", id=first[0]["ack"])
    # Then the freed credit goes to the urgent message, not to the older low ones
    assert [m["body"] for m in _pushed(pusher, "c1")][2:] == ["urgent-2"]


def test_json_publish_frames_carry_a_priority_and_a_bad_one_gets_an_error_frame(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a queue with priorities and a JSON WebSocket producer
    broker.put_queue(ANONYMOUS, "mail", QueueSettings(max_priority=9))
    sessions.open(Connection("p1"), ANONYMOUS)
    # When it publishes a message of priority 1, one of priority 9, and one of priority 10
    for body, priority in [("low", 1), ("high", 9), ("bad", 10)]:
        _frame(
            sessions,
            "p1",
            action="publish",
            destination="/queue/mail",
            body=body,
            priority=priority,
            receipt=body,
        )
    # Then the third gets an error frame (the connection stays), the others a receipt
    frames = pusher.json_frames("p1")
    [error] = [f for f in frames if f["type"] == "error"]
    assert error["error"] == "invalid_request" and "priority" in error["message"]
    assert [f["receipt"] for f in frames if f["type"] == "receipt"] == ["low", "high"]
    # and a consumer receives the priority 9 message first
    received = broker.receive(ANONYMOUS, "mail", max_messages=10)
    assert [(d.body, d.priority) for d in received] == [(b"high", 9), (b"low", 1)]


def test_a_selector_on_jms_priority_sees_the_priority_a_message_was_sent_with(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a queue without priorities holding messages of priorities 2, 7 and none
    for body, priority in [("p2", 2), ("p7", 7), ("none", None)]:
        _send_direct(broker, "picky", body, priority)
    # When a consumer subscribes with a selector on JMSPriority
    sessions.open(Connection("c1"), ANONYMOUS)
    _frame(
        sessions,
        "c1",
        action="subscribe",
        destination="/queue/picky",
        id="s1",
        selector="JMSPriority > 5",
    )
    # Then only the message sent with priority 7 is pushed to it
    assert [m["body"] for m in _pushed(pusher, "c1")] == ["p7"]


# ---- STOMP -----------------------------------------------------------------------------------


@pytest.fixture
def stomp_wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)


def _stomp(connection_id: str, frame: str) -> None:
    handle_event(websocket_event("MESSAGE", connection_id, frame))


def _stomp_connect(connection_id: str) -> None:
    handle_event(
        websocket_event("CONNECT", connection_id, **{"Sec-WebSocket-Protocol": "v12.stomp"})
    )
    _stomp(connection_id, "CONNECT\naccept-version:1.2\nhost:/\n\n\x00")


@pytest.mark.parametrize("priority", ["10", "-1", "x", ""])
def test_a_stomp_send_with_a_bad_priority_gets_an_error_frame_and_stores_nothing(
    stomp_wired: None, pusher: RecordingPusher, broker: QueueService, priority: str
) -> None:
    # Given a queue with priorities and a STOMP connection
    broker.put_queue(ANONYMOUS, "orders", QueueSettings(max_priority=9))
    _stomp_connect("s1")
    # When it sends with a priority header that is not 0-9
    _stomp("s1", f"SEND\ndestination:/queue/orders\npriority:{priority}\n\nhi\x00")
    # Then it gets an ERROR naming the header, and the queue holds nothing
    errors = [f for f in pusher.stomp_frames("s1") if f.command == "ERROR"]
    assert errors and "priority" in (errors[0].header("message") or "")
    assert broker.receive(ANONYMOUS, "orders") == []


def test_a_stomp_priority_header_orders_delivery_and_is_on_the_message_frame(
    stomp_wired: None, pusher: RecordingPusher, broker: QueueService
) -> None:
    # Given a queue with priorities and a STOMP producer
    broker.put_queue(ANONYMOUS, "orders", QueueSettings(max_priority=9))
    _stomp_connect("p1")
    # When it sends a message of priority 3 and then one of priority 6
    _stomp("p1", "SEND\ndestination:/queue/orders\npriority:3\n\nlater\x00")
    _stomp("p1", "SEND\ndestination:/queue/orders\npriority:6\n\nsooner\x00")
    # and a STOMP consumer subscribes
    _stomp_connect("c1")
    _stomp("c1", "SUBSCRIBE\ndestination:/queue/orders\nid:0\nack:client\n\n\x00")
    # Then it gets the priority 6 message first, each MESSAGE with its priority header
    messages = [f for f in pusher.stomp_frames("c1") if f.command == "MESSAGE"]
    assert [(f.body, f.header("priority")) for f in messages] == [
        (b"sooner", "6"),
        (b"later", "3"),
    ]


# ---- what lanes cost a receive that finds nothing ------------------------------------------


def test_an_empty_receive_on_a_quiet_drained_priority_queue_reads_only_its_lane_marks(
    broker: QueueService,
) -> None:
    # Given a queue of 10 priority lanes x 8 shards, used and drained
    broker.put_queue(ANONYMOUS, "quiet", QueueSettings(max_priority=9))
    for priority in (0, 4, 9):
        _send_direct(broker, "quiet", f"p{priority}", priority)
    taken = broker.receive(ANONYMOUS, "quiet", max_messages=10)
    broker.ack(ANONYMOUS, "quiet", [d.receipt for d in taken])
    # and nothing appended to it for longer than the lanes' quiet time (one receive then
    # finds the lanes it used empty and marks them so)
    clock = broker._clock
    assert isinstance(clock, ManualClock)
    clock.advance(LANE_QUIET_MS / 1000 + 1)
    assert broker.receive(ANONYMOUS, "quiet") == []

    # When a consumer receives again and finds nothing
    meter = Meter()
    with observing_moto(meter):
        assert broker.receive(ANONYMOUS, "quiet") == []
    # Then it read one item, the lane marks (strongly consistent: 1 read unit), and no lane
    usage = meter.usage()
    requests = {k: v for k, v in usage.requests.items() if k.startswith("dynamodb:")}
    assert requests == {"dynamodb:GetItem": 1}

    # When a message is sent to a lane marked empty
    _send_direct(broker, "quiet", "back", 4)
    # Then the next receive finds it
    assert [d.body for d in broker.receive(ANONYMOUS, "quiet")] == [b"back"]
