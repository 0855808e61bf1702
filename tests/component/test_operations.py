"""The operator's API as curl (and the console and CLI) see it: stats, browse, one-message
actions and connections, through the HTTP function over moto."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from conftest_http import HttpApi

from mqless import wiring
from mqless.domain.access.principals import Principal
from mqless.domain.access.users import EVERYTHING
from mqless.domain.push.pushes import Connection
from mqless.domain.queues import counting
from mqless.storage import keys
from mqless_cli.cfn import Stack
from tests.component.shared_stack import (  # noqa: F401 - fixtures: one moto for the module
    shared_dynamodb,
    shared_kms,
    shared_settings,
    shared_stack,
)


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


def _send(api: HttpApi, queue: str, body: str, **fields: Any) -> str:
    reply = api.post(f"/queues/{queue}/messages", {"body": body, **fields})
    assert reply.status == 201, reply.text
    message_id: str = reply.json["message_id"]
    return message_id


def test_queue_stats_count_states_age_and_dead_letters(api: HttpApi) -> None:
    # Given a queue with a dead-letter queue: one message visible, one leased, one delayed ten
    # minutes
    api.put("/queues/orders", {"max_receive_count": 1})
    _send(api, "orders", "a")
    _send(api, "orders", "b")
    _send(api, "orders", "later", delay_seconds=600)
    [leased] = api.post("/queues/orders/receive", {"max_messages": 1}).json["messages"]
    assert leased

    # When its stats are read
    stats = api.get("/queues/orders/stats")

    # Then they count one of each, exactly; the oldest is under a minute old; the dead-letter queue
    # is named and empty; no consumers
    assert stats.status == 200
    assert {k: stats.json[k] for k in ("visible", "in_flight", "delayed")} == {
        "visible": 1,
        "in_flight": 1,
        "delayed": 1,
    }
    assert 0 <= stats.json["oldest_age_seconds"] < 60
    assert stats.json["dead_letter_queue"] == "orders.dlq"
    assert stats.json["dead_letter_visible"] == 0
    assert (stats.json["consumers"], stats.json["approximate"]) == (0, False)


def test_an_empty_queue_has_no_oldest_age_and_a_missing_one_is_404(api: HttpApi) -> None:
    # Given an empty queue
    api.put("/queues/empty", {})
    # When its stats, and a missing queue's, are read
    # Then it has no oldest age, and the missing one is a 404 queue_not_found problem
    assert api.get("/queues/empty/stats").json["oldest_age_seconds"] is None
    assert api.get("/queues/nope/stats").is_problem(404, "queue_not_found")


def test_counts_are_bounded_and_say_so(api: HttpApi, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given seven messages, and counts bounded at five
    for i in range(7):
        _send(api, "deep", str(i))
    # (a count reads at most COUNT_BOUND references: here 5, so that 7 messages pass it)
    monkeypatch.setattr(counting, "COUNT_BOUND", 5)

    # When the queue's stats are read
    stats = api.get("/queues/deep/stats").json

    # Then they show five visible, marked approximate
    assert (stats["visible"], stats["approximate"]) == (5, True)


def test_overview_lists_queues_topics_and_connections(api: HttpApi) -> None:
    # Given a queue with a message, a subscription feeding it from shop.>, and a JSON connection
    # subscribed live to shop.>
    api.put("/queues/eu-orders", {})
    _send(api, "eu-orders", "x")
    api.put("/topics/shop.%3E/subscriptions/eu", {"queue": "eu-orders"})
    sessions = wiring.sessions()
    sessions.open(Connection("c1"), Principal(id="test-admin", grants=EVERYTHING))
    info = sessions.info("c1")
    assert info is not None
    sessions.subscribe(info, "live", "/topic/shop.>")

    # When the overview is read
    overview = api.get("/stats")

    # Then it lists the queue's count, the topic with its subscription and live subscriber, and one
    # connection, untruncated; the connections list shows it with its subscription
    assert overview.status == 200
    by_name = {q["name"]: q for q in overview.json["queues"]}
    assert by_name["eu-orders"]["visible"] == 1
    assert overview.json["topics"] == [
        {
            "pattern": "shop.>",
            "subscriptions": [{"name": "eu", "queue": "eu-orders"}],
            "live_subscribers": 1,
        }
    ]
    assert overview.json["connections"] == 1
    assert overview.json["truncated"] is False
    listed = api.get("/connections").json["connections"]
    assert [(c["id"], c["protocol"], c["subscriptions"]) for c in listed] == [("c1", "json", 1)]


def test_browse_pages_through_messages_without_leasing_them(api: HttpApi) -> None:
    # Given eight messages sent one after the other to a queue (spread over its shards)
    ids = []
    for i in range(8):
        ids.append(_send(api, "jobs", f"job {i}", attributes={"n": str(i)}))
        time.sleep(0.002)  # ids are time-ordered: distinct milliseconds keep send order

    # When an operator browses them three at a time
    first = api.get("/queues/jobs/messages?limit=3")
    second = api.get(f"/queues/jobs/messages?limit=3&cursor={first.json['cursor']}")
    third = api.get(f"/queues/jobs/messages?limit=3&cursor={second.json['cursor']}")

    # Then the pages hold every message once, in send order (as the README promises)
    assert first.status == second.status == third.status == 200
    seen = first.json["messages"] + second.json["messages"] + third.json["messages"]
    assert [m["message_id"] for m in seen] == ids
    assert [m["body"] for m in seen] == [f"job {i}" for i in range(8)]
    assert all(m["state"] == "visible" and m["receive_count"] == 0 for m in seen)
    assert third.json["cursor"] is None
    # nothing was leased: a consumer still gets all eight
    got = api.post("/queues/jobs/receive", {"max_messages": 10}).json["messages"]
    assert len(got) == 8


def test_browse_refuses_a_forged_cursor_and_bad_limits(api: HttpApi) -> None:
    # Given a queue
    api.put("/queues/jobs", {})
    # When it is browsed with a forged cursor, a limit of 0, and one of 101
    # Then each is a 400
    assert api.get("/queues/jobs/messages?cursor=bm9wZQ").is_problem(400, "invalid_request")
    assert api.get("/queues/jobs/messages?limit=0").status == 400
    assert api.get("/queues/jobs/messages?limit=101").status == 400


def test_one_message_can_be_deleted(api: HttpApi) -> None:
    # Given two messages
    keep = _send(api, "jobs", "keep")
    drop = _send(api, "jobs", "drop")

    # When one is deleted by id, twice
    deleted = api.delete(f"/queues/jobs/messages/{drop}")
    again = api.delete(f"/queues/jobs/messages/{drop}")

    # Then the first delete is a 204, the second a 404 message_not_found, and the other message is
    # left alone
    assert deleted.status == 204
    assert again.is_problem(404, "message_not_found")
    left = api.get("/queues/jobs/messages").json["messages"]
    assert [m["message_id"] for m in left] == [keep]


def test_a_message_moves_or_copies_to_another_queue(api: HttpApi) -> None:
    # Given two messages in inbox, one with an attribute
    moved = _send(api, "inbox", "move me", attributes={"k": "v"})
    copied = _send(api, "inbox", "copy me")

    # When one is moved to archive and the other copied there
    move = api.post(f"/queues/inbox/messages/{moved}/move", {"to": "archive"})
    copy = api.post(f"/queues/inbox/messages/{copied}/move", {"to": "archive", "copy": True})

    # Then archive holds both, the attribute kept, and inbox only the copied one
    assert (move.status, move.json) == (200, {"message_id": moved})
    assert copy.status == 200
    archive = api.post("/queues/archive/receive", {"max_messages": 10}).json["messages"]
    assert sorted(m["body"] for m in archive) == ["copy me", "move me"]
    assert {m["body"]: m["attributes"] for m in archive}["move me"] == {"k": "v"}
    inbox = api.get("/queues/inbox/messages").json["messages"]
    assert [m["body"] for m in inbox] == ["copy me"]
    # ...moving a message to its own queue is a 400;
    assert api.post(f"/queues/inbox/messages/{copied}/move", {"to": "inbox"}).status == 400
    # a message id no queue holds is not found; one that is no message id at all is refused
    unknown = str(uuid.UUID(int=uuid.UUID(copied).int ^ (1 << 90)))
    assert api.post(f"/queues/inbox/messages/{unknown}/move", {"to": "x"}).is_problem(
        404, "message_not_found"
    )
    assert api.post("/queues/inbox/messages/nope/move", {"to": "x"}).is_problem(
        400, "invalid_request"
    )


def test_fifo_messages_can_be_browsed_deleted_and_moved(api: HttpApi) -> None:
    # Given two messages in one group of a FIFO queue
    first = _send(api, "jobs.fifo", "1", group_id="g")
    second = _send(api, "jobs.fifo", "2", group_id="g")

    # When they are browsed, the first deleted and the second moved to another FIFO queue
    # Then browsing shows their group, the delete and the move succeed, and the other queue delivers
    # the second
    assert [m["group_id"] for m in api.get("/queues/jobs.fifo/messages").json["messages"]] == [
        "g",
        "g",
    ]
    assert api.delete(f"/queues/jobs.fifo/messages/{first}").status == 204
    assert api.post(f"/queues/jobs.fifo/messages/{second}/move", {"to": "other.fifo"}).status == 200
    got = api.post("/queues/other.fifo/receive", {}).json["messages"]
    assert [m["body"] for m in got] == ["2"]


def test_a_tampered_body_is_browsed_as_unreadable(
    api: HttpApi, stack: Stack, dynamodb: Any
) -> None:
    # Given a message whose sealed body had one bit flipped in its log item
    message_id = _send(api, "jobs", "secret")
    kept = _send(api, "jobs", "intact")
    table = stack.environment("HttpApiFunction")["MESSAGES_TABLE"]
    item_id, slot = keys.locate(message_id)
    [key] = [
        {"pk": item["pk"], "sk": item["sk"]}
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
        if item["sk"] == {"S": item_id} and item["pk"]["S"].startswith("L#jobs#")
    ]
    stored = dynamodb.get_item(TableName=table, Key=key)["Item"]["b"]
    bodies = stored.get("L", [stored])  # a lone body is `b` itself
    altered = bytearray(bodies[slot]["B"])
    altered[-1] ^= 1
    bodies[slot] = {"B": bytes(altered)}
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET b = :b",
        ExpressionAttributeValues={":b": {"L": bodies}},
    )

    # When an operator browses the queue
    browsed = api.get("/queues/jobs/messages").json["messages"]

    # Then the altered message is listed as unreadable, the other one as it was sent
    by_id = {m["message_id"]: m for m in browsed}
    assert (by_id[message_id]["body"], by_id[message_id]["error"][:10]) == (None, "integrity:")
    assert (by_id[kept]["body"], by_id[kept]["error"]) == ("intact", None)
