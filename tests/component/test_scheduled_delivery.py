"""Scheduled delivery beyond the 15-minute delay (ActiveMQ's AMQ_SCHEDULED_* headers).

Everything goes through the functions' entry points with the template's environment: the
HTTP function (sends, an admin's list and cancel), the WebSocket function (STOMP SEND,
JSON publish) and the sweeper function, which fires what falls due. Time is a manual
clock: the tests move it, and the sweeper runs when a test says so (every minute on AWS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mqless import wiring
from mqless.domain.clock import ManualClock
from mqless.storage.schedules import ScheduleStore
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.stomp_frames import Frame
from tests.component.conftest import Aws, RecordingPusher
from tests.component.conftest_http import HttpApi, Reply, load_function
from tests.inline_dispatch import INLINE_DISPATCH
from tests.lambda_support import FakeLambdaContext, authorizer_context, http_event, websocket_event

pytestmark = pytest.mark.usefixtures("wiring_clients_kept")  # no test throttles or retries

MINUTE = 60
HOUR = 60 * MINUTE
START_MS = 1_800_000_000_000  # 2027-01-15 08:00:00 UTC: a whole hour


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture(autouse=True)
def pusher(
    aws: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingPusher]:
    """The functions' environment from the template (grants enforced), the manual clock
    everywhere, and WebSocket posts recorded."""
    assert aws.stack is not None
    for name, value in aws.stack.environment("WebSocketFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    recording = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recording)
    monkeypatch.setattr(wiring, "clock", lambda: clock)
    INLINE_DISPATCH.serve(aws.settings, clock)
    yield recording
    wiring.reset()


@pytest.fixture
def api(aws: Aws) -> HttpApi:
    assert aws.stack is not None
    return HttpApi(aws.stack.http_routes())


@pytest.fixture
def sweeper() -> Any:
    return load_function("sweeper").lambda_handler


def sweep(sweeper: Any) -> dict[str, Any]:
    """One run of the sweeper function, as EventBridge Scheduler runs it each minute."""
    report: dict[str, Any] = sweeper({}, FakeLambdaContext())
    assert report["errors"] == []
    return report


def receive_bodies(api: HttpApi, queue: str) -> list[str]:
    """What a receiver gets now (each acked, so it is not seen again)."""
    reply = api.post(f"/queues/{queue}/receive", {"max_messages": 10})
    assert reply.status == 200, reply.text
    messages = reply.json["messages"]
    if messages:
        receipts = [m["receipt"] for m in messages]
        assert api.post(f"/queues/{queue}/ack", {"receipts": receipts}).status == 200
    return [m["body"] for m in messages]


def advance_to(clock: ManualClock, seconds_after_start: float) -> None:
    clock._now = START_MS + int(seconds_after_start * 1000)


def stomp_session(connection_id: str) -> None:
    handle_event(
        websocket_event("CONNECT", connection_id, **{"Sec-WebSocket-Protocol": "v12.stomp"})
    )
    stomp(connection_id, "CONNECT", **{"accept-version": "1.2", "host": "/"})


def stomp(connection_id: str, command: str, body: str = "", **headers: str) -> None:
    lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
    handle_event(
        websocket_event("MESSAGE", connection_id, "\n".join(lines) + "\n\n" + body + "\x00")
    )


def frames(pusher: RecordingPusher, connection_id: str, command: str) -> list[Frame]:
    return [f for f in pusher.stomp_frames(connection_id) if f.command == command]


def as_(api: HttpApi, who: dict[str, str], method: str, url: str, body: Any = None) -> Reply:
    route, params = api.route_of(method, url.partition("?")[0])
    event = http_event(method, url, body, route=route, authorizer=who)
    if params:
        event["pathParameters"] = params
    return api.invoke(event)


# ---- a delay beyond 15 minutes --------------------------------------------------------------


def test_a_message_delayed_an_hour_is_not_receivable_at_59_minutes_and_is_at_60(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a message sent over HTTP with a one-hour delay
    sent = api.post("/queues/later/messages", {"body": "in an hour", "delay_seconds": HOUR})
    assert sent.status == 201, sent.text
    # When the sweeper runs every minute up to 59 minutes later
    for minute in range(1, 60):
        advance_to(clock, minute * MINUTE)
        sweep(sweeper)
    # Then nobody can receive it at 59 minutes, nor at 59 minutes 59 seconds
    assert receive_bodies(api, "later") == []
    advance_to(clock, HOUR - 1)
    assert receive_bodies(api, "later") == []
    # And at 60 minutes it is there, exactly on time (not at the next sweep)
    advance_to(clock, HOUR)
    assert receive_bodies(api, "later") == ["in an hour"]


def test_a_scheduled_message_keeps_its_priority_in_a_queue_with_priority_lanes(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a queue with priority lanes, and an urgent message scheduled an hour ahead
    assert api.put("/queues/urgent-later", {"max_priority": 9}).status == 201
    sent = api.post(
        "/queues/urgent-later/messages",
        {"body": "urgent", "priority": 9, "delay_seconds": HOUR},
    )
    assert sent.status == 201, sent.text
    # When the sweeper fires it at the hour, while a low-priority message waits already
    assert api.post("/queues/urgent-later/messages", {"body": "low", "priority": 1}).status == 201
    advance_to(clock, HOUR)
    sweep(sweeper)
    # Then it arrives with its priority, before the low one
    got = api.post("/queues/urgent-later/receive", {"max_messages": 10})
    assert [(m["body"], m["priority"]) for m in got.json["messages"]] == [
        ("urgent", 9),
        ("low", 1),
    ]


def test_a_stomp_send_with_an_hour_long_amq_scheduled_delay_is_delivered_after_an_hour(
    api: HttpApi, clock: ManualClock, sweeper: Any, pusher: RecordingPusher
) -> None:
    # Given a STOMP client that sends with AMQ_SCHEDULED_DELAY of one hour (ActiveMQ's header)
    stomp_session("c1")
    stomp(
        "c1",
        "SEND",
        "reminder",
        destination="/queue/reminders",
        AMQ_SCHEDULED_DELAY=str(HOUR * 1000),
        receipt="r1",
    )
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["r1"]
    # When the sweeper runs at 59 and 60 minutes
    advance_to(clock, 59 * MINUTE)
    sweep(sweeper)
    # Then the message is not there before the hour, and is at the hour
    assert receive_bodies(api, "reminders") == []
    advance_to(clock, HOUR)
    sweep(sweeper)
    assert receive_bodies(api, "reminders") == ["reminder"]


def test_a_json_publish_with_a_long_delay_is_scheduled_too(
    api: HttpApi, clock: ManualClock, sweeper: Any, pusher: RecordingPusher
) -> None:
    # Given a JSON WebSocket client that publishes to a queue with a two-hour delay
    handle_event(websocket_event("CONNECT", "j1"))
    handle_event(
        websocket_event(
            "MESSAGE",
            "j1",
            json.dumps(
                {
                    "action": "publish",
                    "destination": "/queue/jsonlater",
                    "body": "hi",
                    "delay_seconds": 2 * HOUR,
                    "receipt": "p1",
                }
            ),
        )
    )
    [answer] = pusher.json_frames("j1")
    assert answer["type"] == "receipt", answer
    # When the sweeper runs an hour later and two hours later
    advance_to(clock, HOUR)
    sweep(sweeper)
    assert receive_bodies(api, "jsonlater") == []
    advance_to(clock, 2 * HOUR)
    sweep(sweeper)
    # Then it is delivered at two hours, carrying ActiveMQ's scheduledJobId
    reply = api.post("/queues/jsonlater/receive", {})
    [message] = reply.json["messages"]
    assert message["body"] == "hi"
    assert message["attributes"]["scheduledJobId"] == answer["message_id"]


# ---- repeats and cron --------------------------------------------------------------------


def test_repeat_n_delivers_n_plus_one_times_a_period_apart(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a message to deliver after 20 minutes and then 2 more times, 20 minutes apart
    sent = api.post(
        "/queues/ticks/messages",
        {"body": "tick", "delay_seconds": 20 * MINUTE, "period_seconds": 20 * MINUTE, "repeat": 2},
    )
    assert sent.status == 201, sent.text
    # When the sweeper runs every minute for 80 minutes, and a receiver looks each minute
    received_at: list[int] = []
    for minute in range(1, 80 + 1):
        advance_to(clock, minute * MINUTE)
        sweep(sweeper)
        received_at += [minute] * len(receive_bodies(api, "ticks"))
    # Then it was received 3 times (repeat 2 + 1), at 20, 40 and 60 minutes
    assert received_at == [20, 40, 60]


def test_a_cron_schedule_fires_at_the_cron_times(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a message scheduled with the cron expression "10,35 * * * *" (10 and 35 minutes
    # past every hour), sent at 08:00 UTC
    sent = api.post("/queues/halfhourly/messages", {"body": "report", "cron": "10,35 * * * *"})
    assert sent.status == 201, sent.text
    # When the sweeper runs every minute for 80 minutes
    received_at: list[int] = []
    for minute in range(1, 80 + 1):
        advance_to(clock, minute * MINUTE)
        sweep(sweeper)
        received_at += [minute] * len(receive_bodies(api, "halfhourly"))
    # Then it was delivered at 08:10, 08:35 and 09:10
    assert received_at == [10, 35, 70]


def test_cron_with_delay_period_and_repeat_delivers_each_series_after_each_cron_time(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given ActiveMQ's example: at every cron time ("*/30 * * * *": on the hour and half
    # hour), deliver after 1 minute and then once more a minute later
    stomp_session("c2")
    stomp(
        "c2",
        "SEND",
        "burst",
        destination="/queue/bursts",
        AMQ_SCHEDULED_CRON="*/30 * * * *",
        AMQ_SCHEDULED_DELAY="60000",
        AMQ_SCHEDULED_PERIOD="60000",
        AMQ_SCHEDULED_REPEAT="1",
    )
    # When the sweeper runs every minute for 65 minutes
    received_at: list[int] = []
    for minute in range(1, 65 + 1):
        advance_to(clock, minute * MINUTE)
        sweep(sweeper)
        received_at += [minute] * len(receive_bodies(api, "bursts"))
    # Then each series came 1 and 2 minutes after its cron time (08:30, 09:00)
    assert received_at == [31, 32, 61, 62]


# ---- an admin's list and cancel ------------------------------------------------------------


def test_an_admin_lists_a_queues_scheduled_messages_with_their_next_delivery_time(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a repeating schedule (in 1 h, then every hour, twice more) and a one-shot in 3 h
    repeating = api.post(
        "/queues/plans/messages",
        {
            "body": "every hour",
            "delay_seconds": HOUR,
            "period_seconds": HOUR,
            "repeat": 2,
            "attributes": {"kind": "repeating"},
        },
    ).json["message_id"]
    once = api.post("/queues/plans/messages", {"body": "once", "delay_seconds": 3 * HOUR})
    # When an admin lists the queue's scheduled messages
    listed = api.get("/queues/plans/scheduled")
    # Then both are there, soonest first, with their next delivery time and rule
    assert listed.status == 200, listed.text
    first, second = listed.json["scheduled"]
    assert first["schedule_id"] == repeating
    assert first["next_delivery_at"] == START_MS + HOUR * 1000
    assert (first["period_ms"], first["repeat"], first["repeats_left"]) == (HOUR * 1000, 2, 2)
    assert (first["body"], first["attributes"]) == ("every hour", {"kind": "repeating"})
    assert second["schedule_id"] == once.json["message_id"]
    assert second["next_delivery_at"] == START_MS + 3 * HOUR * 1000
    # And after the first delivery the repeating one shows its next time
    advance_to(clock, HOUR)
    sweep(sweeper)
    [after, _] = api.get("/queues/plans/scheduled").json["scheduled"]
    assert after["next_delivery_at"] == START_MS + 2 * HOUR * 1000
    assert after["repeats_left"] == 1


def test_cancelling_a_schedule_stops_its_deliveries(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a message repeated every hour, delivered once already
    schedule_id = api.post(
        "/queues/nagging/messages",
        {"body": "nag", "delay_seconds": HOUR, "period_seconds": HOUR, "repeat": 5},
    ).json["message_id"]
    advance_to(clock, HOUR)
    sweep(sweeper)
    assert receive_bodies(api, "nagging") == ["nag"]
    # When an admin cancels it
    cancelled = api.delete(f"/queues/nagging/scheduled/{schedule_id}")
    assert cancelled.status == 204, cancelled.text
    # Then it is no longer listed, and nothing more is delivered
    assert api.get("/queues/nagging/scheduled").json["scheduled"] == []
    for hour in range(2, 8):
        advance_to(clock, hour * HOUR)
        sweep(sweeper)
        assert receive_bodies(api, "nagging") == []
    # And cancelling it again says it is not there
    assert api.delete(f"/queues/nagging/scheduled/{schedule_id}").is_problem(
        404, "schedule_not_found"
    )


def test_a_topics_scheduled_message_reaches_its_durable_subscription_when_due(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a durable subscription of news.> into a queue, and a publish scheduled for 1 h
    assert api.put("/queues/news-inbox", {}).status == 201
    assert api.put("/topics/news.%3E/subscriptions/inbox", {"queue": "news-inbox"}).status == 201
    sent = api.post("/topics/news.eu/messages", {"body": "headline", "delay_seconds": HOUR})
    assert sent.status == 201, sent.text
    assert [s["schedule_id"] for s in api.get("/topics/news.eu/scheduled").json["scheduled"]] == [
        sent.json["message_id"]
    ]
    # When the sweeper runs just before the hour and at the hour
    advance_to(clock, HOUR - 1)
    sweep(sweeper)
    assert receive_bodies(api, "news-inbox") == []
    advance_to(clock, HOUR)
    sweep(sweeper)
    # Then the subscription's queue has it (a topic delivers when published: at the sweep)
    assert receive_bodies(api, "news-inbox") == ["headline"]


def test_only_a_principal_with_admin_may_list_or_cancel_schedules(
    api: HttpApi, clock: ManualClock
) -> None:
    # Given a scheduled message, and a principal who may send and receive but not administer
    schedule_id = api.post(
        "/queues/orders/messages", {"body": "x", "delay_seconds": 2 * HOUR}
    ).json["message_id"]
    worker = authorizer_context("worker", [{"pattern": "orders", "actions": ["send", "receive"]}])
    admin = authorizer_context("ops", [{"pattern": "orders", "actions": ["admin"]}])
    # When the worker lists or cancels
    listed = as_(api, worker, "GET", "/queues/orders/scheduled")
    cancelled = as_(api, worker, "DELETE", f"/queues/orders/scheduled/{schedule_id}")
    # Then both are refused with 403 naming who and what, and the schedule stays
    assert listed.is_problem(403, "forbidden"), listed.text
    assert cancelled.is_problem(403, "forbidden"), cancelled.text
    assert "'worker' may not admin 'orders'" in listed.json["message"]
    # While an admin of the queue may do both
    assert [
        s["schedule_id"]
        for s in as_(api, admin, "GET", "/queues/orders/scheduled").json["scheduled"]
    ] == [schedule_id]
    assert as_(api, admin, "DELETE", f"/queues/orders/scheduled/{schedule_id}").status == 204


def test_a_principal_that_may_not_send_cannot_schedule(api: HttpApi) -> None:
    # Given a principal who may only receive from orders
    reader = authorizer_context("reader", [{"pattern": "orders", "actions": ["receive"]}])
    # When it sends a scheduled message
    reply = as_(api, reader, "POST", "/queues/orders/messages", {"body": "x", "cron": "0 * * * *"})
    # Then it is refused, and nothing is scheduled
    assert reply.is_problem(403, "forbidden"), reply.text
    assert api.get("/queues/orders/scheduled").json["scheduled"] == []


# ---- ActiveMQ's scheduler management topic -------------------------------------------------

MANAGEMENT = "/topic/ActiveMQ.Scheduler.Management"


def test_browse_on_the_scheduler_management_topic_sends_copies_to_the_reply_to(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given two scheduled messages, one for a queue and one for a topic
    to_queue = api.post(
        "/queues/jobs/messages", {"body": "queued job", "delay_seconds": 2 * HOUR}
    ).json["message_id"]
    to_topic = api.post("/topics/alerts/messages", {"body": "topic job", "cron": "0 6 * * *"}).json[
        "message_id"
    ]
    # When an admin's STOMP client sends BROWSE to ActiveMQ.Scheduler.Management, as an
    # ActiveMQ client does, with a reply-to queue
    stomp_session("admin")
    stomp(
        "admin",
        "SEND",
        "",
        destination=MANAGEMENT,
        AMQ_SCHEDULER_ACTION="BROWSE",
        **{"reply-to": "/queue/browsed", "receipt": "b"},
    )
    assert [f.header("receipt-id") for f in frames(pusher, "admin", "RECEIPT")] == ["b"]
    # Then the reply-to queue holds a copy of each, with its id and rule in ActiveMQ's headers
    reply = api.post("/queues/browsed/receive", {"max_messages": 10})
    copies = {m["attributes"]["scheduledJobId"]: m for m in reply.json["messages"]}
    assert set(copies) == {to_queue, to_topic}
    assert copies[to_queue]["body"] == "queued job"
    assert copies[to_queue]["attributes"]["AMQ_SCHEDULED_DELAY"] == str(2 * HOUR * 1000)
    assert copies[to_topic]["attributes"]["AMQ_SCHEDULED_CRON"] == "0 6 * * *"
    assert copies[to_topic]["attributes"]["scheduledDestination"] == "/topic/alerts"
    # And nothing was delivered or removed: both are still pending
    assert len(api.get("/queues/jobs/scheduled").json["scheduled"]) == 1


def test_remove_and_removeall_on_the_management_topic_cancel_schedules(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given three scheduled messages in two queues
    first = api.post("/queues/a/messages", {"body": "1", "delay_seconds": 2 * HOUR})
    api.post("/queues/a/messages", {"body": "2", "delay_seconds": 3 * HOUR})
    api.post("/queues/b/messages", {"body": "3", "cron": "0 6 * * *"})
    stomp_session("ops")
    # When REMOVE names the first one's scheduledJobId
    stomp(
        "ops",
        "SEND",
        "",
        destination=MANAGEMENT,
        AMQ_SCHEDULER_ACTION="REMOVE",
        scheduledJobId=first.json["message_id"],
    )
    # Then only it is gone
    assert [s["body"] for s in api.get("/queues/a/scheduled").json["scheduled"]] == ["2"]
    # And REMOVEALL removes the rest
    stomp("ops", "SEND", "", destination=MANAGEMENT, AMQ_SCHEDULER_ACTION="REMOVEALL")
    assert api.get("/queues/a/scheduled").json["scheduled"] == []
    assert api.get("/queues/b/scheduled").json["scheduled"] == []
    assert frames(pusher, "ops", "ERROR") == []


def test_management_acts_only_on_destinations_the_sender_administers(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given a scheduled message in orders, and a client who may send to and receive from
    # orders but not administer it
    schedule_id = api.post(
        "/queues/orders/messages", {"body": "x", "delay_seconds": 2 * HOUR}
    ).json["message_id"]
    worker = authorizer_context("worker", [{"pattern": "orders", "actions": ["send", "receive"]}])
    handle_event(
        websocket_event(
            "CONNECT", "w", authorizer=worker, **{"Sec-WebSocket-Protocol": "v12.stomp"}
        )
    )
    stomp("w", "CONNECT", **{"accept-version": "1.2", "host": "/"})
    # When it sends REMOVE for that schedule
    stomp(
        "w",
        "SEND",
        "",
        destination=MANAGEMENT,
        AMQ_SCHEDULER_ACTION="REMOVE",
        scheduledJobId=schedule_id,
    )
    # Then it gets an ERROR (as if there were no such schedule), and the schedule stays
    [error] = frames(pusher, "w", "ERROR")
    assert "no pending schedule" in (error.header("message") or "")
    assert [s["schedule_id"] for s in api.get("/queues/orders/scheduled").json["scheduled"]] == [
        schedule_id
    ]


# ---- firing once ------------------------------------------------------------------------------


def test_two_sweeps_at_the_same_moment_deliver_a_scheduled_message_once(
    api: HttpApi, clock: ManualClock, sweeper: Any
) -> None:
    # Given a message scheduled for 1 h
    api.post("/queues/once/messages", {"body": "one", "delay_seconds": HOUR})
    # When the sweeper runs twice at the hour (a retried or overlapping invocation)
    advance_to(clock, HOUR)
    first = sweep(sweeper)
    second = sweep(sweeper)
    # Then it was fired by one of them only, and received once
    assert (first["scheduled_fired"], second["scheduled_fired"]) == (1, 0)
    assert receive_bodies(api, "once") == ["one"]
    assert receive_bodies(api, "once") == []


def test_a_destination_another_sweep_is_firing_is_left_to_it(
    api: HttpApi, clock: ManualClock, sweeper: Any, aws: Aws
) -> None:
    # Given a message scheduled for 1 h, and, at the hour, another sweep (an overlapping
    # invocation) that holds the queue's schedules while it fires them
    api.post("/queues/contended/messages", {"body": "one", "delay_seconds": HOUR})
    advance_to(clock, HOUR)
    store = ScheduleStore(aws.dynamodb, aws.settings.messages_table)
    held = store.hold("/queue/contended", now_ms=clock.now_ms(), until_ms=clock.now_ms() + 110_000)
    assert held is not None
    # When this sweep runs meanwhile
    report = sweep(sweeper)
    # Then it sends nothing (the other one does)
    assert report["scheduled_fired"] == 0
    assert receive_bodies(api, "contended") == []
    # And once that hold has run out (its sweep died without sending), a sweep sends it
    advance_to(clock, HOUR + 2 * MINUTE)
    assert sweep(sweeper)["scheduled_fired"] == 1
    assert receive_bodies(api, "contended") == ["one"]


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"repeat": 3}, "period_seconds"),
        ({"delay_seconds": 15 * 24 * HOUR}, "delay_seconds"),
    ],
    ids=[
        "cron-out-of-range",
        "cron-three-fields",
        "negative-delay",
        "repeat-without-period",
        "delay-over-14-days",
    ],
)
def test_a_bad_schedule_over_http_is_a_400_naming_the_field(
    api: HttpApi, fields: dict[str, Any], named: str
) -> None:
    # Given a send whose schedule is wrong
    # When it is sent
    reply = api.post("/queues/orders/messages", {"body": "x", **fields})
    # Then it is a 400 JSON problem that names the field, and nothing is scheduled
    assert reply.is_problem(400, "invalid_request"), reply.text
    assert named in reply.text
    assert api.get("/queues/orders/scheduled").json["scheduled"] == []


def test_a_delay_longer_than_the_queues_retention_is_refused(api: HttpApi) -> None:
    # Given a queue that keeps messages for one hour
    assert api.put("/queues/short", {"retention_seconds": HOUR}).status == 201
    # When a message is sent to it with a two-hour delay
    reply = api.post("/queues/short/messages", {"body": "x", "delay_seconds": 2 * HOUR})
    # Then it is refused, saying why
    assert reply.is_problem(400, "invalid_request"), reply.text
    assert "retention" in reply.json["message"]


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"AMQ_SCHEDULED_CRON": "0 25 * * *"}, "AMQ_SCHEDULED_CRON"),
        ({"AMQ_SCHEDULED_DELAY": "-5"}, "AMQ_SCHEDULED_DELAY"),
        ({"AMQ_SCHEDULED_REPEAT": "two"}, "AMQ_SCHEDULED_REPEAT"),
        ({"AMQ_SCHEDULED_REPEAT": "2", "AMQ_SCHEDULED_PERIOD": "10"}, "AMQ_SCHEDULED_PERIOD"),
    ],
    ids=["cron-hour-25", "negative-delay", "repeat-not-a-number", "period-under-a-second"],
)
def test_a_bad_schedule_header_gets_a_stomp_error_naming_it(
    api: HttpApi, pusher: RecordingPusher, headers: dict[str, str], named: str
) -> None:
    # Given a STOMP session
    stomp_session("bad")
    # When it sends with a bad scheduling header
    stomp("bad", "SEND", "x", destination="/queue/orders", **headers)
    # Then it gets an ERROR naming the header, and nothing is scheduled or sent
    [error] = frames(pusher, "bad", "ERROR")
    assert named in (error.header("message") or ""), error
    assert api.get("/queues/orders/scheduled").json["scheduled"] == []
    assert api.get("/queues/orders").is_problem(404, "queue_not_found")


def test_cancelling_a_schedule_that_is_not_there_is_a_404_and_writes_nothing(
    api: HttpApi, aws: Aws
) -> None:
    # Given a queue that never had a scheduled message
    assert api.put("/queues/quiet", {}).status == 201
    before = aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
    # When an admin cancels a schedule id there
    reply = api.delete("/queues/quiet/scheduled/01a21b70-add4-766f-996c-ce8548f7ff55")
    # Then it is a 404 problem, and the messages table is as it was (no cursor made for it)
    assert reply.is_problem(404, "schedule_not_found"), reply.text
    assert aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"] == before


def test_a_batch_entry_with_a_schedule_fails_alone(api: HttpApi) -> None:
    # Given a batch of two entries, one with a cron schedule
    # When it is sent
    reply = api.post(
        "/queues/mixed/messages/batch",
        {"entries": [{"id": "a", "body": "now"}, {"id": "b", "body": "x", "cron": "0 6 * * *"}]},
    )
    # Then the plain one is sent and the scheduled one fails, saying to send it alone
    assert reply.status == 200, reply.text
    assert [e["id"] for e in reply.json["successful"]] == ["a"]
    [failed] = reply.json["failed"]
    assert (failed["id"], failed["error"]) == ("b", "invalid_request")
    assert "alone" in failed["message"]
