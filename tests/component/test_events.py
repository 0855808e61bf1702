"""The sample events in events/ are real-shaped, cover every route and work with the handlers.

Each file is fed to its function's lambda_handler the way `sam local invoke -e` would, with
the function's environment from template.yaml and its tables and key in moto.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest_http import EVENTS, HttpApi, Reply, load_function

from mqless_cli.template import Stack
from tests.lambda_support import FakeLambdaContext

HTTP_EVENTS = sorted(p for p in EVENTS.glob("*.json") if "requestContext" in p.read_text())
SCHEDULE_EVENTS = sorted(p for p in EVENTS.glob("*.json") if "aws.scheduler" in p.read_text())


def load(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def body_of(event: dict[str, Any]) -> Any:
    return json.loads(event["body"])


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """The same request with another JSON body (content-length kept honest)."""
    changed = copy.deepcopy(event)
    changed["body"] = json.dumps(body, separators=(",", ":"))
    changed["headers"]["content-length"] = str(len(changed["body"].encode()))
    return changed


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


@pytest.fixture
def seeded(api: HttpApi) -> HttpApi:
    """`orders` (with its dead-letter queue `orders.dlq`) holding one message."""
    assert api.post("/queues/orders/messages", {"body": "seed"}).status == 201
    return api


# ---- the files themselves -------------------------------------------------------------------


def test_every_event_file_is_an_http_or_a_schedule_event() -> None:
    # Given every file in events/
    files = sorted(EVENTS.glob("*.json"))
    # Then each is one of the two kinds the functions take, and named <route>_<case>.json
    assert files, "events/ is empty"
    assert sorted(HTTP_EVENTS + SCHEDULE_EVENTS) == files
    for path in files:
        assert re.fullmatch(r"[a-z]+_[a-z_]+\.json", path.name), path.name


@pytest.mark.parametrize("path", HTTP_EVENTS, ids=lambda p: p.stem)
def test_http_event_is_shaped_like_api_gateway_payload_v2(path: Path) -> None:
    # Given a sample HTTP API event
    event = load(path)
    context = event["requestContext"]
    method, route = event["routeKey"].split(" ", 1)
    # Then it carries what API Gateway sends, consistently
    assert event["version"] == "2.0"
    assert context["routeKey"] == event["routeKey"]
    assert context["http"]["method"] == method
    assert context["http"]["path"] == event["rawPath"]
    assert context["stage"] == "$default"
    assert event["headers"]["host"] == context["domainName"]
    assert context["domainName"].startswith(context["apiId"] + ".execute-api.")
    assert isinstance(context["timeEpoch"], int)
    assert event["isBase64Encoded"] is False
    # ... path parameters that the route's placeholders take from rawPath
    names = re.findall(r"\{(\w+)\}", route)
    pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route)) + "$"
    match = re.match(pattern, event["rawPath"])
    assert match is not None
    # (decoded, as API Gateway hands them over: `orders.%3E` arrives as `orders.>`)
    decoded = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    assert event.get("pathParameters", {}) == decoded
    assert sorted(event.get("pathParameters", {})) == sorted(names)
    # ... and a JSON body whose content-length is its size
    if "body" in event:
        json.loads(event["body"])
        assert event["headers"]["content-type"] == "application/json"
        assert int(event["headers"]["content-length"]) == len(event["body"].encode())


def test_every_template_route_has_a_sample_event(stack: Stack) -> None:
    # Given the HTTP routes template.yaml declares
    routes = {f"{r.method} {r.path}" for r in stack.http_routes()}
    # When the sample events' route keys are collected
    sampled = {load(p)["routeKey"] for p in HTTP_EVENTS}
    # Then every route has one, and no sample names a route the template lacks
    assert routes - sampled == set()
    assert sampled - routes == set()


def test_schedule_event_targets_a_function_the_template_schedules(stack: Stack) -> None:
    # Given the sample schedule event and the template's schedules
    (path,) = SCHEDULE_EVENTS
    event = load(path)
    scheduled = {s.function for s in stack.schedules() if s.enabled}
    # Then it is EventBridge Scheduler's default payload, for the sweeper's schedule
    assert "SweeperFunction" in scheduled
    assert event["source"] == "aws.scheduler"
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"][0].startswith("arn:aws:scheduler:")
    assert event["detail"] == "{}"


# ---- invoking the HTTP function with each file ---------------------------------------------


def _stale(reply: Reply) -> bool:
    # the sample receipts are well formed but their leases never existed
    return reply.is_problem(409, "stale_receipt") and reply.json["failed"][0]["error"] == (
        "stale_receipt"
    )


def _created(reply: Reply) -> bool:
    return reply.status == 201 and bool(reply.json["message_id"])


EXPECTED: dict[str, Callable[[Reply], bool]] = {
    "queues_list": lambda r: (
        r.status == 200 and {"orders", "orders.dlq"} <= {q["name"] for q in r.json["queues"]}
    ),
    "queue_get": lambda r: r.status == 200 and r.json["counts"]["visible"] == 1,
    "queue_delete": lambda r: r.status == 204 and r.text == "",
    "messages_send": _created,
    "messages_send_binary": _created,
    "messages_send_fifo": lambda r: _created(r) and r.json["sequence"] == 1,
    "messages_batch": lambda r: (
        r.status == 200
        and [e["id"] for e in r.json["successful"]] == ["first", "second", "third"]
        and r.json["failed"] == []
    ),
    "messages_receive": lambda r: (
        r.status == 200 and [m["body"] for m in r.json["messages"]] == ["seed"]
    ),
    "messages_ack": _stale,
    "messages_nack": _stale,
    "messages_visibility": _stale,
    "queue_purge": lambda r: r.status == 200 and r.json == {"purged": 1},
    "queue_redrive": lambda r: r.status == 200 and r.json == {"moved": 0, "failed": []},
    "openapi_get": lambda r: r.status == 200 and r.json["openapi"].startswith("3.1"),
    "topic_publish": _created,
    "topic_publish_batch": lambda r: (
        r.status == 200 and [e["id"] for e in r.json["successful"]] == ["a", "b"]
    ),
    "subscriptions_list": lambda r: r.status == 200 and r.json == {"subscriptions": []},
    "subscription_put": lambda r: (
        r.status == 201 and r.json["queue"] == "orders" and r.json["topic"] == "orders.>"
    ),
    # the sample names a subscription that was never made
    "subscription_delete": lambda r: r.is_problem(404, "not_found"),
}


@pytest.mark.parametrize(
    "path", [p for p in HTTP_EVENTS if p.stem != "queue_put"], ids=lambda p: p.stem
)
def test_http_event_gets_the_expected_answer(seeded: HttpApi, path: Path) -> None:
    # Given `orders` exists and holds a message
    # When the sample event is invoked
    reply = seeded.invoke(load(path))
    # Then the function answers as a user of that route expects
    assert EXPECTED[path.stem](reply), f"{path.stem}: {reply.status} {reply.text[:500]}"


def test_every_http_event_has_an_expectation() -> None:
    assert {p.stem for p in HTTP_EVENTS} == set(EXPECTED) | {"queue_put"}


def test_queue_put_event_creates_the_queue_with_its_settings(api: HttpApi) -> None:
    # Given no queue yet
    event = load(EVENTS / "queue_put.json")
    # When the sample PUT is invoked twice
    first = api.invoke(event)
    again = api.invoke(event)
    # Then it creates the queue with the sample's settings, then replaces them
    assert first.status == 201, first.text
    assert again.status == 200, again.text
    settings = body_of(event)
    assert {k: first.json[k] for k in settings} == settings
    assert first.json["name"] == "orders"


@pytest.mark.parametrize(
    ("stem", "field"),
    [("messages_ack", "acked"), ("messages_nack", "released"), ("messages_visibility", "changed")],
)
def test_settle_event_with_a_live_receipt_succeeds(api: HttpApi, stem: str, field: str) -> None:
    # Given a message sent and received with the sample events
    assert api.invoke(load(EVENTS / "messages_send.json")).status == 201
    received = api.invoke(load(EVENTS / "messages_receive.json"))
    (message,) = received.json["messages"]
    # When the sample settle event carries that delivery's receipt
    event = load(EVENTS / f"{stem}.json")
    reply = api.invoke(with_body(event, {**body_of(event), "receipts": [message["receipt"]]}))
    # Then it succeeds for that receipt
    assert reply.status == 200, reply.text
    assert reply.json[field] == [message["receipt"]]
    assert reply.json["failed"] == []


def test_received_sample_message_keeps_what_was_sent(api: HttpApi) -> None:
    # Given the sample message and the sample binary message sent
    for stem in ("messages_send", "messages_send_binary"):
        assert api.invoke(load(EVENTS / f"{stem}.json")).status == 201
    # When the sample long poll receives them
    received = api.invoke(load(EVENTS / "messages_receive.json")).json["messages"]
    # Then body, binary flag, headers and ids are as sent
    by_body = {m["body"]: m for m in received}
    for stem in ("messages_send", "messages_send_binary"):
        sent = body_of(load(EVENTS / f"{stem}.json"))
        got = by_body[sent["body"]]
        assert got["binary"] is sent.get("binary", False)
        assert got["attributes"] == sent["attributes"]
        assert got["content_type"] == sent["content_type"]
        assert got["correlation_id"] == sent.get("correlation_id")
        assert got["receive_count"] == 1


# ---- the sweeper ---------------------------------------------------------------------------


def test_sweeper_takes_the_schedule_event(function_env: dict[str, str]) -> None:
    # Given the sweeper function loaded as Lambda loads it
    handler = load_function("sweeper").lambda_handler
    # When the sample schedule event invokes it
    report = handler(load(EVENTS / "sweeper_schedule.json"), FakeLambdaContext())
    # Then it reports its sweep
    assert report == {"queues": 0, "dead_lettered": 0, "expired": 0, "errors": [], "pushed": 0}
