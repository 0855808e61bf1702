"""Rates, depth and totals read back from the functions' own metrics (GET /history), and
an operator closing a WebSocket connection (DELETE /connections/{id}), through the HTTP
function over moto.

CloudWatch's part is played as on AWS: the EMF documents the functions print become
metrics (here through mqless dev's EmfToCloudWatch, which hands them to moto's CloudWatch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest_http import HttpApi

from mqless import wiring
from mqless.domain.access.principals import Principal
from mqless.domain.access.users import EVERYTHING
from mqless.domain.push.pushes import Connection
from mqless.observability import metrics
from mqless_cli.cfn import Stack
from mqless_cli.local.metrics import EmfToCloudWatch
from tests.component.conftest import RecordingPusher
from tests.lambda_support import authorizer_context, http_event

READER = authorizer_context("reader", [{"pattern": "orders", "actions": ["send", "receive"]}])


@pytest.fixture
def pusher(function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RecordingPusher:
    recording = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recording)
    return recording


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack, pusher: RecordingPusher) -> HttpApi:
    return HttpApi(stack.http_routes())


@pytest.fixture
def cloudwatch(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Call it to have CloudWatch ingest the EMF lines printed so far (as CloudWatch Logs
    does on AWS)."""
    metrics.flush()
    capsys.readouterr()
    ingest = EmfToCloudWatch.in_this_process()

    def ingest_printed() -> None:
        metrics.flush()  # what a handler's end does: the sweep below is not a handler
        for line in capsys.readouterr().out.splitlines():
            if line.startswith("{") and '"_aws"' in line:
                ingest(json.loads(line))

    yield ingest_printed


def _as(api: HttpApi, who: dict[str, str], method: str, url: str) -> Any:
    route, params = api.route_of(method, url.partition("?")[0])
    event = http_event(method, url, None, route=route, authorizer=who)
    if params:
        event["pathParameters"] = params
    return api.invoke(event)


def test_a_queues_history_shows_this_minutes_rates_its_depth_and_totals_since_creation(
    api: HttpApi, cloudwatch: Any
) -> None:
    # Given a queue that dead-letters at the first redelivery: two messages sent, one
    # received and acked, the other received and then over its limit; a third waiting
    assert api.put("/queues/orders", {"max_receive_count": 1}).status == 201
    for body in ("a", "b"):
        assert api.post("/queues/orders/messages", {"body": body}).status == 201
    [first] = api.post("/queues/orders/receive", {"max_messages": 1}).json["messages"]
    assert api.post("/queues/orders/ack", {"receipts": [first["receipt"]]}).status == 200
    received = api.post("/queues/orders/receive", {"max_messages": 1, "visibility_timeout": 0})
    assert len(received.json["messages"]) == 1
    assert api.post("/queues/orders/receive", {"max_messages": 1}).json["messages"] == []
    assert api.post("/queues/orders/messages", {"body": "c"}).status == 201
    wiring.queue_service().sweep()  # the schedule measures every queue's depth
    cloudwatch()

    # When its history is asked for
    reply = api.get("/history?queue=orders")

    # Then the totals count what happened since it was created
    assert reply.status == 200, reply.text
    history = reply.json
    assert history["queue"] == "orders"
    assert history["totals"] == {"sent": 3, "delivered": 2, "acked": 1, "dead_lettered": 1}
    # and the last hour is 60 one-minute points, oldest first, this minute last, per second
    assert history["period_seconds"] == 60
    assert len(history["timestamps"]) == 60
    assert history["timestamps"] == sorted(history["timestamps"])
    assert history["rates"]["sent"][-1] == round(3 / 60, 3)
    assert history["rates"]["acked"][-1] == round(1 / 60, 3)
    assert sum(history["rates"]["sent"][:-1]) == 0
    # and the depth the sweep measured (the one waiting message); none before it measured
    assert history["depth"][-1] == 1
    assert history["depth"][0] is None
    created = api.get("/queues/orders").json["created_at"]
    assert history["totals_since"] <= created


def test_a_dead_letter_queues_history_counts_the_dead_letters_arriving_as_enqueued(
    api: HttpApi, cloudwatch: Any
) -> None:
    # Given a message dead-lettered from `orders` to `orders.dlq`, and one sent to the DLQ
    assert api.put("/queues/orders", {"max_receive_count": 1}).status == 201
    assert api.post("/queues/orders/messages", {"body": "poison"}).status == 201
    received = api.post("/queues/orders/receive", {"visibility_timeout": 0}).json["messages"]
    assert len(received) == 1
    assert api.post("/queues/orders/receive", {}).json["messages"] == []
    assert api.post("/queues/orders.dlq/messages", {"body": "direct"}).status == 201
    cloudwatch()

    # When the dead-letter queue's history is asked for
    reply = api.get("/history?queue=orders.dlq")

    # Then both arrivals are enqueued ones, and it says whose dead letters it receives
    assert reply.status == 200, reply.text
    assert reply.json["totals"]["sent"] == 2
    assert reply.json["rates"]["sent"][-1] == round(2 / 60, 3)
    assert reply.json["dead_letters_from"] == ["orders"]


def test_the_overall_history_counts_every_queue_and_each_topics_publishes(
    api: HttpApi, cloudwatch: Any
) -> None:
    # Given two queues sent to and a topic published to twice
    for queue in ("eu", "us"):
        assert api.post(f"/queues/{queue}/messages", {"body": "x"}).status == 201
    for body in ("1", "2"):
        assert api.post("/topics/shop.orders/messages", {"body": body}).status == 201
    cloudwatch()

    # When the history of everything, then the topic's, is asked for
    overall = api.get("/history")
    topic = api.get("/history?topic=shop.orders")

    # Then the overall totals count both queues' and the topic's sends, and list the topic
    assert overall.status == 200, overall.text
    assert overall.json["queue"] is None and overall.json["topic"] is None
    assert overall.json["totals"]["sent"] == 4
    assert overall.json["topics"] == {"shop.orders": 2}
    # and the topic's history holds its publish count
    assert topic.status == 200, topic.text
    assert topic.json["totals"]["sent"] == 2
    assert topic.json["rates"]["sent"][-1] == round(2 / 60, 3)


def test_history_refuses_what_it_cannot_answer(api: HttpApi, cloudwatch: Any) -> None:
    # Given a queue, orders
    api.put("/queues/orders", {})

    # When the history is asked for what it cannot answer
    # Then each is refused with a problem:
    # a queue that does not exist
    assert api.get("/history?queue=nope").is_problem(404, "queue_not_found")
    # a queue and a topic at once, or a malformed name
    assert api.get("/history?queue=orders&topic=a.b").is_problem(400, "invalid_request")
    assert api.get("/history?queue=no%20spaces").is_problem(400, "invalid_request")
    assert api.get("/history?topic=a..b").is_problem(400, "invalid_request")
    # a principal without admin on the queue, or on everything for the overall view
    assert _as(api, READER, "GET", "/history?queue=orders").is_problem(403, "forbidden")
    assert _as(api, READER, "GET", "/history").is_problem(403, "forbidden")


def test_connections_list_their_subscriptions_by_name(api: HttpApi) -> None:
    # Given a WebSocket connection with a live topic subscription and a queue consumer
    sessions = wiring.sessions()
    sessions.open(Connection("c1"), Principal(id="ops", grants=EVERYTHING))
    info = sessions.info("c1")
    assert info is not None
    sessions.subscribe(info, "live", "/topic/shop.>")
    sessions.subscribe(info, "work", "/queue/orders")

    # When the connections are listed
    [listed] = api.get("/connections").json["connections"]

    # Then each subscription is named by its destination
    assert listed["principal"] == "ops" and listed["subscriptions"] == 2
    assert sorted((s["id"], s["kind"], s["destination"]) for s in listed["subscribed_to"]) == [
        ("live", "topic", "/topic/shop.>"),
        ("work", "queue", "/queue/orders"),
    ]


def test_an_admin_closes_a_connection_and_its_leases_go_back(
    api: HttpApi, pusher: RecordingPusher
) -> None:
    # Given a connection consuming a queue, holding the lease of its one message
    assert api.post("/queues/orders/messages", {"body": "held"}).status == 201
    sessions = wiring.sessions()
    sessions.open(Connection("c1"), Principal(id="ops", grants=EVERYTHING))
    info = sessions.info("c1")
    assert info is not None
    sessions.subscribe(info, "work", "/queue/orders", ack="client")
    sessions.pump("orders")
    assert api.get("/queues/orders/stats").json["in_flight"] == 1

    # When a principal without admin tries to close it, then an admin does
    refused = _as(api, READER, "DELETE", "/connections/c1")
    closed = api.delete("/connections/c1")

    # Then the first is refused and changes nothing; the second closes the socket, lists
    # the connection no more and makes its message visible again at once
    assert refused.is_problem(403, "forbidden")
    assert closed.status == 204, closed.text
    assert pusher.closed == ["c1"]
    assert api.get("/connections").json["connections"] == []
    stats = api.get("/queues/orders/stats").json
    assert (stats["visible"], stats["in_flight"]) == (1, 0)
    # and closing it again says there is no such connection
    assert api.delete("/connections/c1").is_problem(404, "not_found")


def test_mqless_dev_keeps_one_statistic_set_per_metric_and_minute(
    api: HttpApi, cloudwatch: Any
) -> None:
    # Given mqless dev's CloudWatch
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.models import DEFAULT_ACCOUNT_ID

    ingest = EmfToCloudWatch.in_this_process()
    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    held = len(backend.metric_data)
    now_ms = int(time.time() // 60 * 60 * 1000)  # the start of this minute: all in one
    # When it is handed 50 documents within one minute, each counting 2 sent for queue busy
    for n in range(50):
        ingest(
            {
                "_aws": {
                    "Timestamp": now_ms + n,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "mqless",
                            "Dimensions": [["Queue", "service"]],
                            "Metrics": [{"Name": "Sent", "Unit": "Count"}],
                        }
                    ],
                },
                "Queue": "busy",
                "service": "mqless",
                "Sent": [2.0],
            }
        )

    # Then it holds one data point for them, and the history counts every one of them
    assert len(backend.metric_data) == held + 1
    assert api.put("/queues/busy", {}).status == 201
    history = api.get("/history?queue=busy").json
    assert round(sum(history["rates"]["sent"]) * 60) == 100
