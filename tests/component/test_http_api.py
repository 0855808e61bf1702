"""The HTTP API as a curl user sees it: status codes and JSON bodies, through the handler.

Every request goes through functions/http_api/app.py's lambda_handler as an HTTP API
payload-v2 event for the route template.yaml declares, over moto tables built from it.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
from conftest_http import HttpApi, Reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqless import wiring
from mqless.domain.queues.receipts import Lease
from mqless.domain.queues.service import QueueService
from mqless_cli.cfn import Stack
from tests.component.shared_stack import (  # noqa: F401 - fixtures: one moto for the module
    shared_dynamodb,
    shared_kms,
    shared_settings,
    shared_stack,
)
from tests.lambda_support import http_event

# the functions' boto3 clients are made once for the module (tests/component/conftest.py)
pytestmark = pytest.mark.usefixtures("wiring_clients_kept")

KIB = 1024
Q = "/queues/orders"


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


def send(api: HttpApi, queue: str = "orders", **message: Any) -> str:
    reply = api.post(f"/queues/{queue}/messages", {"body": "hello", **message})
    assert reply.status == 201, reply.text
    message_id: str = reply.json["message_id"]
    return message_id


def receive(api: HttpApi, queue: str = "orders", **options: Any) -> list[dict[str, Any]]:
    reply = api.post(f"/queues/{queue}/receive", options)
    assert reply.status == 200, reply.text
    messages: list[dict[str, Any]] = reply.json["messages"]
    return messages


def counts(api: HttpApi, queue: str = "orders") -> dict[str, int]:
    reply = api.get(f"/queues/{queue}")
    assert reply.status == 200, reply.text
    found: dict[str, int] = reply.json["counts"]
    assert found.pop("approximate") is False  # exact below the count bound
    return found


# ---- queue admin ------------------------------------------------------------------------------


def test_put_queue_creates_with_201_then_replaces_with_200(api: HttpApi) -> None:
    # Given no queue named orders
    # When it is PUT, then PUT again with other settings
    created = api.put(Q, {"visibility_timeout": 45, "max_receive_count": 3})
    replaced = api.put(Q, {"visibility_timeout": 90})
    # Then the first creates it (201), the second replaces its settings (200)
    assert created.status == 201, created.text
    assert created.json["visibility_timeout"] == 45
    assert created.json["max_receive_count"] == 3
    assert created.json["dead_letter_queue"] == "orders.dlq"
    assert replaced.status == 200, replaced.text
    assert replaced.json["visibility_timeout"] == 90
    assert replaced.json["created_at"] == created.json["created_at"]
    assert api.get(Q).json["visibility_timeout"] == 90


def test_put_queue_without_a_body_creates_it_with_defaults(api: HttpApi) -> None:
    # Given no queue named orders
    # When a queue is PUT the way `curl -X PUT .../queues/orders` does it
    reply = api.put(Q)
    # Then it is created with the defaults
    assert reply.status == 201, reply.text
    assert reply.json["visibility_timeout"] == 30
    assert reply.json["max_receive_count"] == 10


def test_list_queues_shows_a_queue_and_its_dead_letter_queue(api: HttpApi) -> None:
    # Given a queue created with defaults
    assert api.put(Q, {}).status == 201
    # When the queues are listed
    reply = api.get("/queues")
    # Then both it and the dead-letter queue made for it are there
    assert reply.status == 200
    by_name = {q["name"]: q for q in reply.json["queues"]}
    assert set(by_name) == {"orders", "orders.dlq"}
    assert by_name["orders"]["fifo"] is False
    assert by_name["orders.dlq"]["dead_letter_queue"] is None


def test_get_queue_counts_follow_send_receive_and_ack(api: HttpApi) -> None:
    # Given an empty queue
    assert api.put(Q, {}).status == 201
    assert counts(api) == {"visible": 0, "in_flight": 0, "delayed": 0}
    # When two messages are sent (one delayed), one is received, then acked
    send(api)
    send(api, body="later", delay_seconds=600)
    after_send = counts(api)
    (message,) = receive(api)
    after_receive = counts(api)
    assert api.post(f"{Q}/ack", {"receipts": [message["receipt"]]}).status == 200
    after_ack = counts(api)
    # Then the counts move with them
    assert after_send == {"visible": 1, "in_flight": 0, "delayed": 1}
    assert after_receive == {"visible": 0, "in_flight": 1, "delayed": 1}
    assert after_ack == {"visible": 0, "in_flight": 0, "delayed": 1}


def test_delete_queue_answers_204_then_the_queue_is_gone(api: HttpApi) -> None:
    # Given a queue with a message
    send(api)
    # When it is deleted
    reply = api.delete(Q)
    # Then 204 with no body, and the queue is not found afterwards
    assert reply.status == 204
    assert reply.text == ""
    assert api.get(Q).is_problem(404, "queue_not_found")
    assert api.delete(Q).is_problem(404, "queue_not_found")


def test_purge_deletes_every_message_and_says_how_many(api: HttpApi) -> None:
    # Given three messages
    for _ in range(3):
        send(api)
    # When the queue is purged
    reply = api.post(f"{Q}/purge")
    # Then all three are gone
    assert reply.status == 200
    assert reply.json == {"purged": 3}
    assert counts(api) == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert receive(api) == []


def test_redrive_moves_dead_letters_back_to_their_queue(api: HttpApi) -> None:
    # Given a queue that dead-letters after one delivery, and a message that failed once
    assert api.put(Q, {"max_receive_count": 1}).status == 201
    message_id = send(api, body="poison")
    (first,) = receive(api)
    assert api.post(f"{Q}/nack", {"receipts": [first["receipt"]]}).status == 200
    assert receive(api) == []  # the second delivery is over the limit: dead-lettered
    (dead,) = receive(api, "orders.dlq", visibility_timeout=0)
    # When the dead-letter queue is redriven
    reply = api.post("/queues/orders.dlq/redrive", {})
    # Then the message is back on orders, counted afresh
    assert dead["message_id"] == message_id
    assert dead["source_queue"] == "orders"
    assert "max_receive_count" in dead["dead_letter_reason"]
    assert reply.status == 200, reply.text
    assert reply.json == {"moved": 1, "failed": []}
    (back,) = receive(api)
    assert back["message_id"] == message_id
    assert back["body"] == "poison"
    assert back["receive_count"] == 1


def test_redrive_of_a_queue_that_is_not_a_dead_letter_queue_is_409_and_changes_nothing(
    api: HttpApi,
) -> None:
    # Given live messages on orders, one of them received once and given back
    assert api.put(Q, {}).status == 201
    for body in ("a", "b"):
        send(api, body=body)
    (taken,) = receive(api, max_messages=1)
    assert api.post(f"{Q}/nack", {"receipts": [taken["receipt"]]}).status == 200
    # When orders itself is redriven, twice (what the issue saw dead-letter live messages)
    replies = [api.post(f"{Q}/redrive", {}) for _ in range(2)]
    # Then each is refused with a problem that says why
    for reply in replies:
        assert reply.is_problem(409, "not_a_dead_letter_queue"), reply.text
        assert "'orders' is not a dead-letter queue" in reply.json["message"]
    # ...and nothing moved or was counted: both messages are there, received once in all
    assert counts(api) == {"visible": 2, "in_flight": 0, "delayed": 0}
    assert counts(api, "orders.dlq") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert sorted(m["receive_count"] for m in receive(api, max_messages=10)) == [1, 2]


# ---- sending ---------------------------------------------------------------------------------


def test_send_answers_201_with_a_message_id(api: HttpApi) -> None:
    # Given no queue named orders
    # When a message is sent to a queue that does not exist yet
    reply = api.post(f"{Q}/messages", {"body": "hello"})
    # Then it is accepted, and the queue now exists
    assert reply.status == 201, reply.text
    assert reply.json["message_id"]
    assert reply.json["duplicate"] is False
    assert counts(api)["visible"] == 1


def test_fifo_send_numbers_a_group_and_drops_a_repeat(api: HttpApi) -> None:
    # Given the name of a FIFO queue (it ends in .fifo)
    # When two messages go to a FIFO group, then the second again with its dedup id
    first = api.post("/queues/orders.fifo/messages", {"body": "a", "group_id": "g"})
    second = api.post(
        "/queues/orders.fifo/messages", {"body": "b", "group_id": "g", "dedup_id": "d"}
    )
    repeat = api.post(
        "/queues/orders.fifo/messages", {"body": "c", "group_id": "g", "dedup_id": "d"}
    )
    # Then they are sequenced (increasing, exact as JSON numbers in JavaScript too) and the
    # repeat is accepted as a duplicate of the second
    assert (first.status, second.status, repeat.status) == (201, 201, 201)
    assert 0 < first.json["sequence"] < second.json["sequence"] < 2**53
    assert repeat.json["duplicate"] is True
    assert repeat.json["message_id"] == second.json["message_id"]


def test_send_accepts_exactly_256_kib(api: HttpApi) -> None:
    # Given a body of exactly 256 KiB, the largest allowed
    # When it is sent
    reply = api.post(f"{Q}/messages", {"body": "x" * (256 * KIB)})
    # Then it is stored (201)
    assert reply.status == 201, reply.text[:300]


def test_send_of_256_kib_plus_one_is_413(api: HttpApi) -> None:
    # Given a queue, and a body of 256 KiB and one byte
    assert api.put(Q, {}).status == 201
    # When the body one byte over the limit is sent
    reply = api.post(f"{Q}/messages", {"body": "x" * (256 * KIB + 1)})
    # Then it is refused as too large, and nothing is stored
    assert reply.is_problem(413, "payload_too_large"), reply.text[:300]
    received = api.post(f"{Q}/receive", {})
    assert (received.status, received.json["messages"]) == (200, [])


def test_json_body_that_api_gateway_base64_encoded_is_accepted(api: HttpApi) -> None:
    # Given a request whose content type made API Gateway base64-encode the body
    event = http_event(
        "POST", f"{Q}/messages", route="/queues/{name}/messages", raw_body=b'{"body": "hi"}'
    )
    # When it is invoked
    reply = api.invoke(event)
    # Then it is read like any JSON body
    assert reply.status == 201, reply.text
    assert receive(api)[0]["body"] == "hi"


def test_body_flagged_base64_that_is_not_is_a_400(api: HttpApi) -> None:
    # Given a request flagged as base64 whose body is not base64
    event = http_event("POST", f"{Q}/messages", route="/queues/{name}/messages", raw_body=b"{}")
    event["body"] = "not base64 at all!"
    # When it is invoked
    # Then it is a 400 invalid_request problem, not a 500
    assert api.invoke(event).is_problem(400, "invalid_request")


# ---- batches ---------------------------------------------------------------------------------


def test_batch_reports_each_entry_and_a_bad_one_fails_alone(api: HttpApi) -> None:
    # Given a batch with a good entry, invalid base64 flagged binary, a standard-queue
    # dedup id, and another good entry
    entries = [
        {"id": "ok1", "body": "one"},
        {"id": "badb64", "body": "***", "binary": True},
        {"id": "dedup", "body": "two", "dedup_id": "d-1"},
        {"id": "ok2", "body": "three"},
    ]
    # When it is sent
    reply = api.post(f"{Q}/messages/batch", {"entries": entries})
    # Then the good entries are stored and each bad one fails on its own, saying why
    assert reply.status == 200, reply.text
    assert [e["id"] for e in reply.json["successful"]] == ["ok1", "ok2"]
    failed = {f["id"]: f for f in reply.json["failed"]}
    assert set(failed) == {"badb64", "dedup"}
    assert failed["badb64"]["error"] == "invalid_request"
    assert "base64" in failed["badb64"]["message"]
    assert "dedup_id" in failed["dedup"]["message"]
    assert sorted(m["body"] for m in receive(api, max_messages=10)) == ["one", "three"]


def test_batch_with_repeated_ids_is_refused_whole(api: HttpApi) -> None:
    # Given a queue, and a batch whose repeated id sits on an entry that would fail on its own
    assert api.put(Q, {}).status == 201
    entries = [{"id": "a", "body": "***", "binary": True}, {"id": "a", "body": "x"}]
    # When it is sent
    reply = api.post(f"{Q}/messages/batch", {"entries": entries})
    # Then the whole batch is refused, and nothing is stored
    assert reply.is_problem(400, "invalid_request"), reply.text
    assert "unique" in reply.json["message"]
    received = api.post(f"{Q}/receive", {})
    assert (received.status, received.json["messages"]) == (200, [])


def test_batch_of_eleven_is_refused(api: HttpApi) -> None:
    # Given a batch of eleven entries, one over the limit of ten
    entries = [{"id": f"e{i}", "body": "x"} for i in range(11)]
    # When it is sent
    # Then it is a 400 invalid_request problem
    assert api.post(f"{Q}/messages/batch", {"entries": entries}).is_problem(400, "invalid_request")


# ---- receiving and settling ------------------------------------------------------------------


def test_receive_returns_body_attributes_and_a_receipt(api: HttpApi) -> None:
    # Given a message with headers
    message_id = send(
        api,
        body='{"order": 7}',
        attributes={"event": "created", "tenant": "acme"},
        content_type="application/json",
        correlation_id="corr-7",
        reply_to="orders.replies",
    )
    # When it is received
    (message,) = receive(api, max_messages=10)
    # Then everything sent comes back, with a receipt and its first delivery count
    assert message["message_id"] == message_id
    assert message["body"] == '{"order": 7}'
    assert message["binary"] is False
    assert message["attributes"] == {"event": "created", "tenant": "acme"}
    assert message["content_type"] == "application/json"
    assert message["correlation_id"] == "corr-7"
    assert message["reply_to"] == "orders.replies"
    assert message["receive_count"] == 1
    assert message["receipt"].startswith("r2.")


def test_binary_body_round_trips_byte_for_byte(api: HttpApi) -> None:
    # Given every byte value, sent base64-encoded with binary: true
    raw = bytes(range(256)) * 4
    send(api, body=base64.b64encode(raw).decode(), binary=True)
    # When it is received
    (message,) = receive(api)
    # Then the same bytes come back, still flagged binary
    assert message["binary"] is True
    assert base64.b64decode(message["body"]) == raw


def test_long_poll_returns_at_once_when_a_message_is_waiting(api: HttpApi) -> None:
    # Given a message waiting in the queue
    send(api)
    # When a receive long-polls for up to 20 seconds
    started = time.monotonic()
    messages = receive(api, wait_seconds=20)
    # Then it returns the message at once, not at the end of the wait
    assert len(messages) == 1
    assert time.monotonic() - started < 5


def test_receive_without_a_body_takes_one_message(api: HttpApi) -> None:
    # Given two messages
    send(api)
    send(api)
    # When a receive carries no body at all
    reply = api.post(f"{Q}/receive")
    # Then the defaults apply: one message, no waiting
    assert reply.status == 200, reply.text
    assert len(reply.json["messages"]) == 1


def test_fifo_group_is_delivered_in_order_one_at_a_time(api: HttpApi) -> None:
    # Given three messages in one FIFO group and one in another
    for body in ("a1", "a2", "a3"):
        send(api, "orders.fifo", body=body, group_id="a")
    send(api, "orders.fifo", body="b1", group_id="b")
    # When consumers receive, acking what they get
    first = receive(api, "orders.fifo", max_messages=10)
    blocked = receive(api, "orders.fifo", max_messages=10)
    head = next(m for m in first if m["group_id"] == "a")
    assert api.post("/queues/orders.fifo/ack", {"receipts": [head["receipt"]]}).status == 200
    after_ack = receive(api, "orders.fifo", max_messages=10)
    # Then each group has one message in flight, its oldest, and the next follows the ack
    assert sorted(m["body"] for m in first) == ["a1", "b1"]
    assert blocked == []
    assert [m["body"] for m in after_ack] == ["a2"]


def test_receive_from_an_unknown_queue_is_404(api: HttpApi) -> None:
    # Given no queue named nowhere
    # When a receive asks for it
    reply = api.post("/queues/nowhere/receive", {})
    # Then it is a 404 queue_not_found problem that names the queue
    assert reply.is_problem(404, "queue_not_found"), reply.text
    assert "nowhere" in reply.json["message"]


def test_ack_answers_200_then_409_stale_receipt(api: HttpApi) -> None:
    # Given a received message
    send(api)
    (message,) = receive(api)
    receipt = message["receipt"]
    # When it is acked twice
    first = api.post(f"{Q}/ack", {"receipts": [receipt]})
    again = api.post(f"{Q}/ack", {"receipts": [receipt]})
    # Then the first deletes it and the second is refused as stale, as a problem
    assert first.status == 200, first.text
    assert first.json == {"acked": [receipt], "failed": []}
    assert again.is_problem(409, "stale_receipt"), again.text
    assert again.json["acked"] == []
    assert again.json["failed"][0]["error"] == "stale_receipt"
    assert counts(api) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_receipt_of_an_expired_lease_cannot_ack_the_new_one(api: HttpApi) -> None:
    # Given a message whose first lease ran out and which was received again
    send(api)
    (first,) = receive(api, visibility_timeout=0)
    (second,) = receive(api, visibility_timeout=600)
    # When the first consumer acks late
    late = api.post(f"{Q}/ack", {"receipts": [first["receipt"]]})
    # Then it is refused as stale and the second consumer's lease is intact
    assert late.is_problem(409, "stale_receipt"), late.text
    assert counts(api)["in_flight"] == 1
    assert api.post(f"{Q}/ack", {"receipts": [second["receipt"]]}).status == 200


def test_ack_with_one_live_and_one_stale_receipt_acks_the_live_one(api: HttpApi) -> None:
    # Given two received messages, one of them already acked
    send(api)
    send(api)
    first, second = receive(api, max_messages=2)
    assert api.post(f"{Q}/ack", {"receipts": [first["receipt"]]}).status == 200
    # When both are acked together
    reply = api.post(f"{Q}/ack", {"receipts": [first["receipt"], second["receipt"]]})
    # Then it succeeds for the live one and reports the stale one
    assert reply.status == 200, reply.text
    assert reply.json["acked"] == [second["receipt"]]
    assert [f["error"] for f in reply.json["failed"]] == ["stale_receipt"]


@pytest.mark.parametrize(
    "receipt",
    ["garbage", "r2.!!!", Lease("other", 0, "s", "0", 0, 1).encode(lambda data: b"\0" * 32)],
    ids=["not-a-receipt", "bad-base64", "other-queue"],
)
def test_ack_with_a_malformed_receipt_is_400(api: HttpApi, receipt: str) -> None:
    # Given a queue with a message, and a receipt that is not one (garbage, bad base64, or a receipt
    # for another queue)
    send(api)
    # When that receipt is acked
    reply = api.post(f"{Q}/ack", {"receipts": [receipt]})
    # Then it is a 400 invalid_request problem listing the receipt as failed
    assert reply.is_problem(400, "invalid_request"), reply.text
    assert reply.json["failed"][0]["id"] == receipt


def test_receive_with_ack_acknowledges_the_receipts_and_returns_the_next_message(
    api: HttpApi,
) -> None:
    # Given two messages, the first received
    send(api, body="first")
    send(api, body="second")
    (first,) = receive(api)
    # When the next receive carries the first's receipt in `ack`
    reply = api.post(f"{Q}/receive", {"max_messages": 1, "ack": [first["receipt"]]})
    # Then the first is acked, reported as a batch ack reports it, and the other comes back
    assert reply.status == 200, reply.text
    assert reply.json["acked"] == [first["receipt"]]
    assert reply.json["failed"] == []
    assert [m["body"] for m in reply.json["messages"]] == (
        ["second"] if first["body"] == "first" else ["first"]
    )
    assert counts(api) == {"visible": 0, "in_flight": 1, "delayed": 0}


def test_receive_with_a_stale_ack_answers_200_with_that_entry_failed(api: HttpApi) -> None:
    # Given a message received and acked, and another waiting
    send(api)
    (first,) = receive(api)
    assert api.post(f"{Q}/ack", {"receipts": [first["receipt"]]}).status == 200
    send(api, body="next")
    # When a receive acks the first's receipt again
    reply = api.post(f"{Q}/receive", {"ack": [first["receipt"]]})
    # Then the receive succeeds, the receipt alone is reported stale
    assert reply.status == 200, reply.text
    assert reply.json["acked"] == []
    assert [(f["id"], f["error"]) for f in reply.json["failed"]] == [
        (first["receipt"], "stale_receipt")
    ]
    assert [m["body"] for m in reply.json["messages"]] == ["next"]


def test_receive_with_a_malformed_ack_receipt_reports_it_and_still_receives(
    api: HttpApi,
) -> None:
    # Given a waiting message
    send(api)
    # When a receive carries a receipt this broker never gave out
    reply = api.post(f"{Q}/receive", {"ack": ["garbage"]})
    # Then that entry fails as in a batch ack (invalid_request), and the message comes back
    assert reply.status == 200, reply.text
    assert [(f["id"], f["error"]) for f in reply.json["failed"]] == [("garbage", "invalid_request")]
    assert len(reply.json["messages"]) == 1


@pytest.mark.parametrize(
    "ack",
    [[], ["r"] * 11, [7], "r2.x"],
    ids=["empty", "eleven", "not-a-string", "not-a-list"],
)
def test_receive_with_an_ack_that_is_not_1_to_10_receipts_is_400(api: HttpApi, ack: Any) -> None:
    # Given a waiting message
    send(api)
    # When a receive carries an `ack` that is not a list of 1-10 receipts
    reply = api.post(f"{Q}/receive", {"ack": ack})
    # Then it is refused as a problem, and nothing was leased
    assert reply.is_problem(400, "invalid_request"), reply.text
    assert counts(api) == {"visible": 1, "in_flight": 0, "delayed": 0}


def test_receive_without_ack_reports_no_acks(api: HttpApi) -> None:
    # Given a waiting message
    send(api)
    # When it is received as before
    reply = api.post(f"{Q}/receive", {})
    # Then the answer's ack fields are empty
    assert (reply.json["acked"], reply.json["failed"]) == ([], [])


def test_nacked_message_comes_back_with_receive_count_2(api: HttpApi) -> None:
    # Given a received message
    message_id = send(api)
    (first,) = receive(api)
    # When it is nacked
    reply = api.post(f"{Q}/nack", {"receipts": [first["receipt"]]})
    # Then it is delivered again, as its second delivery, under a new receipt
    assert reply.status == 200, reply.text
    assert reply.json == {"released": [first["receipt"]], "failed": []}
    (again,) = receive(api)
    assert again["message_id"] == message_id
    assert again["receive_count"] == 2
    assert again["receipt"] != first["receipt"]


def test_nack_with_a_delay_holds_the_message_back(api: HttpApi) -> None:
    # Given a received message
    send(api)
    (message,) = receive(api)
    # When it is nacked with a delay of 300 seconds
    reply = api.post(f"{Q}/nack", {"receipts": [message["receipt"]], "delay_seconds": 300})
    # Then the nack succeeds and the message is not delivered at once
    assert reply.status == 200, reply.text
    assert receive(api) == []


def test_visibility_zero_makes_the_message_visible_again(api: HttpApi) -> None:
    # Given a message leased for 10 minutes
    send(api)
    (message,) = receive(api, visibility_timeout=600)
    assert receive(api) == []
    # When its visibility is set to 0
    reply = api.post(f"{Q}/visibility", {"receipts": [message["receipt"]], "visibility_timeout": 0})
    # Then it can be received again at once
    assert reply.status == 200, reply.text
    assert reply.json == {"changed": [message["receipt"]], "failed": []}
    (again,) = receive(api)
    assert again["receive_count"] == 2


def test_visibility_extends_a_short_lease(api: HttpApi) -> None:
    # Given a message leased for no time at all
    send(api)
    (message,) = receive(api, visibility_timeout=0)
    # When its lease is extended
    reply = api.post(
        f"{Q}/visibility", {"receipts": [message["receipt"]], "visibility_timeout": 600}
    )
    # Then nobody else receives it meanwhile, and the receipt still acks it
    assert reply.status == 200, reply.text
    assert receive(api) == []
    assert api.post(f"{Q}/ack", {"receipts": [message["receipt"]]}).status == 200


# ---- client mistakes are 4xx JSON problems ----------------------------------------------------

BAD_REQUESTS: list[tuple[str, str, str, Any, int, str]] = [
    # id, method, path, body (str: raw text), status, error
    ("invalid-json", "POST", f"{Q}/messages", '{"body": ', 400, "invalid_request"),
    ("not-an-object", "POST", f"{Q}/messages", [1, 2], 400, "invalid_request"),
    ("no-body", "POST", f"{Q}/messages", None, 400, "invalid_request"),
    ("body-not-a-string", "POST", f"{Q}/messages", {"body": 123}, 400, "invalid_request"),
    (
        "attributes-not-strings",
        "POST",
        f"{Q}/messages",
        {"body": "x", "attributes": {"a": 1}},
        400,
        "invalid_request",
    ),
    (
        "extra-field",
        "POST",
        f"{Q}/messages",
        {"body": "x", "importance": 9},
        400,
        "invalid_request",
    ),
    (
        "delay-too-long",
        "POST",
        f"{Q}/messages",
        {"body": "x", "delay_seconds": 14 * 24 * 60 * 60 + 1},  # over 900 s is scheduled
        400,
        "invalid_request",
    ),
    (
        "lone-surrogate-attribute",
        "POST",
        f"{Q}/messages",
        '{"body": "x", "attributes": {"k": "\\ud800"}}',
        400,
        "invalid_request",
    ),
    (
        "group-on-fifo-missing",
        "POST",
        "/queues/orders.fifo/messages",
        {"body": "x"},
        400,
        "invalid_request",
    ),
    ("bad-queue-name", "PUT", "/queues/bad$name", {}, 400, "invalid_request"),
    ("queue-name-too-long", "PUT", "/queues/" + "q" * 81, {}, 400, "invalid_request"),
    (
        "send-bad-queue-name",
        "POST",
        "/queues/no*stars/messages",
        {"body": "x"},
        400,
        "invalid_request",
    ),
    ("unknown-setting", "PUT", Q, {"colour": "blue"}, 400, "invalid_request"),
    ("setting-wrong-type", "PUT", Q, {"visibility_timeout": "soon"}, 400, "invalid_request"),
    ("own-dead-letter-queue", "PUT", Q, {"dead_letter_queue": "orders"}, 400, "invalid_request"),
    ("wait-too-long", "POST", f"{Q}/receive", {"wait_seconds": 21}, 400, "invalid_request"),
    ("wait-negative", "POST", f"{Q}/receive", {"wait_seconds": -1}, 400, "invalid_request"),
    ("max-messages-11", "POST", f"{Q}/receive", {"max_messages": 11}, 400, "invalid_request"),
    ("receive-extra-field", "POST", f"{Q}/receive", {"timeout": 5}, 400, "invalid_request"),
    ("no-receipts", "POST", f"{Q}/ack", {"receipts": []}, 400, "invalid_request"),
    ("receipts-not-a-list", "POST", f"{Q}/ack", {"receipts": "r1.x"}, 400, "invalid_request"),
    (
        "nack-negative-delay",
        "POST",
        f"{Q}/nack",
        {"receipts": ["r1.x"], "delay_seconds": -1},
        400,
        "invalid_request",
    ),
    (
        "visibility-missing",
        "POST",
        f"{Q}/visibility",
        {"receipts": ["r1.x"]},
        400,
        "invalid_request",
    ),
    ("redrive-zero", "POST", f"{Q}/redrive", {"max_messages": 0}, 400, "invalid_request"),
    ("receive-unknown-queue", "POST", "/queues/nowhere/receive", {}, 404, "queue_not_found"),
    ("get-unknown-queue", "GET", "/queues/nowhere", None, 404, "queue_not_found"),
    ("purge-unknown-queue", "POST", "/queues/nowhere/purge", None, 404, "queue_not_found"),
    ("unknown-route", "GET", "/topics", None, 404, "no_such_route"),
    ("unknown-method", "PATCH", f"{Q}/messages", {}, 404, "no_such_route"),
    (
        "too-large",
        "POST",
        f"{Q}/messages",
        {"body": "x" * (256 * KIB + 1)},
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_client_mistake_is_a_4xx_json_problem(
    api: HttpApi, method: str, path: str, body: Any, status: int, error: str
) -> None:
    # Given a queue named orders
    assert api.put(Q, {}).status == 201
    # When a malformed or impossible request is made
    if isinstance(body, str):
        reply = api.request(method, path, raw_body=body)
    else:
        reply = api.request(method, path, body)
    # Then the answer is a JSON problem with the right status and code, saying what is wrong
    assert reply.is_problem(status, error), f"{reply.status} {reply.text[:300]}"
    assert set(reply.json) <= {"error", "message", "details"}


def test_invalid_field_problem_names_the_field(api: HttpApi) -> None:
    # Given a receive with wait_seconds over its limit of 20
    # When it is sent
    reply = api.post(f"{Q}/receive", {"wait_seconds": 21})
    # Then it is a 400 whose problem's message and details name the field
    assert reply.is_problem(400, "invalid_request"), reply.text[:300]
    assert reply.json["message"].startswith("wait_seconds:")
    assert reply.json["details"][0]["field"] == "wait_seconds"


# ---- the API describes itself -----------------------------------------------------------------


def test_openapi_document_is_openapi_3_1_with_every_route(api: HttpApi, stack: Stack) -> None:
    # Given the API's routes in template.yaml
    # When the document is fetched
    reply = api.get("/openapi.json")
    document = reply.json
    # Then it is a valid OpenAPI 3.1 document describing every template route but itself
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert document["openapi"].startswith("3.1.")
    OpenAPI.model_validate(document)
    documented = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    }
    # the console is a page, not an API operation
    hidden = {"GET /openapi.json", "GET /console", "GET /console/{file}"}
    routes = {f"{r.method} {r.path}" for r in stack.http_routes()} - hidden
    assert documented == routes


def test_openapi_document_describes_errors_as_problems(api: HttpApi) -> None:
    # Given the API
    # When its OpenAPI document is fetched
    document = api.get("/openapi.json").json
    schemas = document["components"]["schemas"]
    # Then the Problem schema is there, with the two fields every error carries
    assert {"error", "message"} <= set(schemas["Problem"]["required"])
    # Every operation points its errors at it, and none promises Powertools' 422 shape
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method} {path}"
            assert "422" not in responses, where
            error_schema = responses["default"]["content"]["application/json"]["schema"]
            assert error_schema == {"$ref": "#/components/schemas/Problem"}, where
    # ... and every reference resolves
    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_openapi_document_says_every_route_needs_a_bearer_token(api: HttpApi) -> None:
    # Given the API
    # When its OpenAPI document is fetched
    document = api.get("/openapi.json").json

    # Then it asks for a bearer token on every route, and is valid OpenAPI
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    OpenAPI.model_validate(document)


def test_openapi_document_gives_response_bodies_their_models(api: HttpApi) -> None:
    # Given the API
    # When its OpenAPI document is fetched
    paths = api.get("/openapi.json").json["paths"]

    def schema(path: str, method: str, status: str) -> Any:
        return paths[path][method]["responses"][status]["content"]["application/json"]["schema"]

    # Then a queue, a sent message and an ack each have their response model
    assert schema("/queues/{name}", "put", "201") == {"$ref": "#/components/schemas/QueueView"}
    assert schema("/queues/{name}/messages", "post", "201") == {
        "$ref": "#/components/schemas/SendMessageResponse"
    }
    assert schema("/queues/{name}/ack", "post", "200") == {
        "$ref": "#/components/schemas/AckResponse"
    }


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


# ---- no input ever makes it fail: property tests ----------------------------------------------

POST_ROUTES = [
    "messages",
    "messages/batch",
    "receive",
    "ack",
    "nack",
    "visibility",
    "purge",
    "redrive",
]
# (method, path under /queues/<name>): every route with a body, PUT included
BODY_ROUTES = [("POST", f"/{route}") for route in POST_ROUTES] + [("PUT", "")]
QUEUES = ["orders", "orders.fifo", "orders.dlq", "nowhere"]
FIELDS = [
    "body",
    "binary",
    "attributes",
    "content_type",
    "correlation_id",
    "reply_to",
    "delay_seconds",
    "ttl_seconds",
    "group_id",
    "dedup_id",
    "entries",
    "id",
    "max_messages",
    "wait_seconds",
    "visibility_timeout",
    "receipts",
    "destination",
    "max_receive_count",
    "dead_letter_queue",
    "retention_seconds",
]
# any text, lone surrogates included: JSON can carry them ("\ud800") though they are not text
text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=20)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
receipts = st.builds(
    lambda queue, place, token: Lease(queue, 0, "s", place, 0, token).encode(
        lambda data: b"\0" * 32
    ),
    st.sampled_from(QUEUES),
    st.from_regex(r"[0-9]{1,10}", fullmatch=True),
    st.integers(0, 2**31 - 1),
)
field_values = st.one_of(
    json_values,
    st.lists(receipts, min_size=1, max_size=3),
    st.lists(
        st.fixed_dictionaries({"id": st.text(max_size=5), "body": st.text(max_size=5)}), max_size=3
    ),
)
shaped_bodies = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=4)
PROPERTY_SETTINGS = settings(
    max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def fast_api(api: HttpApi, service: QueueService, monkeypatch: pytest.MonkeyPatch) -> HttpApi:
    """The API over the broker on a manual clock: long polls return without real waiting."""
    monkeypatch.setattr(wiring, "queue_service", lambda: service)
    assert api.put(Q, {}).status == 201
    send(api)
    assert api.post("/queues/orders.fifo/messages", {"body": "f", "group_id": "g"}).status == 201
    return api


def _assert_no_5xx(reply: Reply, route: tuple[str, str], body: Any) -> None:
    assert reply.status < 500, f"{route} {body!r}: {reply.status} {reply.text[:300]}"
    if reply.status >= 400:
        assert reply.is_problem(reply.status, reply.json["error"]), reply.text[:300]


@PROPERTY_SETTINGS
@given(route=st.sampled_from(BODY_ROUTES), queue=st.sampled_from(QUEUES), body=json_values)
def test_any_json_value_to_a_route_is_never_a_5xx(
    fast_api: HttpApi, route: tuple[str, str], queue: str, body: Any
) -> None:
    # Given any JSON value as the body of any route with a body, on any kind of queue
    method, suffix = route
    # When it is sent
    reply = fast_api.request(method, f"/queues/{queue}{suffix}", raw_body=json.dumps(body))
    # Then the answer is never a 5xx, and any error is a JSON problem
    _assert_no_5xx(reply, route, body)


@PROPERTY_SETTINGS
@given(route=st.sampled_from(BODY_ROUTES), queue=st.sampled_from(QUEUES), body=shaped_bodies)
def test_any_object_of_known_fields_to_a_route_is_never_a_5xx(
    fast_api: HttpApi, route: tuple[str, str], queue: str, body: dict[str, Any]
) -> None:
    # Given an object of known fields with any values, to any route with a body, on any kind of
    # queue
    method, suffix = route
    # When it is sent
    reply = fast_api.request(method, f"/queues/{queue}{suffix}", raw_body=json.dumps(body))
    # Then the answer is never a 5xx, and any error is a JSON problem
    _assert_no_5xx(reply, route, body)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(BODY_ROUTES), raw=st.text(max_size=60))
def test_any_string_as_a_body_is_never_a_5xx(
    fast_api: HttpApi, route: tuple[str, str], raw: str
) -> None:
    # Given any string (JSON or not) as the body of any route with a body
    method, suffix = route
    # When it is sent
    reply = fast_api.request(method, f"/queues/orders{suffix}", raw_body=raw)
    # Then the answer is never a 5xx, and any error is a JSON problem
    _assert_no_5xx(reply, route, raw)


def test_overlapping_requests_keep_their_own_route(api: HttpApi) -> None:
    # `mqless dev` resolves requests on threads with one resolver; Lambda never overlaps.
    import sys
    from concurrent.futures import ThreadPoolExecutor

    # Given four queues, each holding a message named after it
    for name in ("a", "b", "c", "d"):
        send(api, name, body=name)

    def peek(name: str) -> tuple[int, str]:
        reply = api.get(f"/queues/{name}/messages")
        return reply.status, reply.json["messages"][0]["body"] if reply.status == 200 else ""

    # When 200 peeks at them overlap on 16 threads that switch as often as possible
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(peek, ["a", "b", "c", "d"] * 50))
    finally:
        sys.setswitchinterval(interval)

    # Then each peek got its own queue's message
    assert results == [(200, n) for n in ["a", "b", "c", "d"] * 50]


# ---- JSON no parser can hold: a 400, never a 500 (issue 11, finding 8) ----------------------

UNPARSABLE = {
    "nested 100,000 deep": "[" * 100_000,
    "nested in a field": '{"body": "x", "attributes": ' + "[" * 5_000 + "}",
    "a 5,000-digit integer": '{"delay_seconds": ' + "9" * 5_000 + "}",
    "a 5,000-digit integer alone": "1" * 5_000,
}
PATH_VALUES = {
    "name": "orders",
    "sub": "audit",
    "principal_id": "svc",
    "message_id": "0190f6b6-5d5c-7000-8000-000000000000",
    "key_id": "0123456789abcdef01234567",
    "file": "app.js",
}


def _template_routes(stack: Stack) -> list[tuple[str, str]]:
    """Every route of the template, its path parameters filled in."""
    routes = []
    for route in stack.http_routes():
        path = route.path
        for name, value in PATH_VALUES.items():
            path = path.replace("{" + name + "}", value)
        routes.append((route.method, path))
    return sorted(set(routes))


@pytest.mark.parametrize("raw", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
def test_json_nested_too_deep_or_with_huge_integers_is_a_400_on_every_route(
    api: HttpApi, stack: Stack, raw: str
) -> None:
    # Given a queue, and every route the template declares
    assert api.put(Q, {}).status == 201
    for method, path in _template_routes(stack):
        # When a body Python's JSON parser cannot hold (it raises RecursionError or, over
        # 4,300 digits, ValueError) is sent to it
        reply = api.request(method, path, raw_body=raw)
        # Then no route fails: one that reads a body says it is not valid JSON
        assert reply.status < 500, f"{method} {path}: {reply.status} {reply.text[:200]}"
        if reply.status == 400:
            assert reply.is_problem(400, "invalid_request"), reply.text[:200]
    for method, path in (("POST", f"{Q}/messages"), ("PUT", Q), ("PUT", "/access/principals/x")):
        reply = api.request(method, path, raw_body=raw)
        assert reply.is_problem(400, "invalid_request"), f"{path}: {reply.text[:200]}"
        assert reply.json["message"].startswith("request body is not valid JSON")


def test_patch_changes_only_the_settings_it_names_where_put_replaces_them_all(
    api: HttpApi,
) -> None:
    # Given a queue made with a 60 s visibility timeout, 3 deliveries and a 2-day retention
    made = {"visibility_timeout": 60, "max_receive_count": 3, "retention_seconds": 172800}
    assert api.put("/queues/tuned", made).status == 201

    # When only max_receive_count is patched
    patched = api.patch("/queues/tuned", {"max_receive_count": 5})

    # Then it changes and every other setting keeps its value
    assert patched.status == 200, patched.text
    settings = api.get("/queues/tuned").json
    assert {k: settings[k] for k in (*made, "dead_letter_queue")} == {
        "visibility_timeout": 60,
        "max_receive_count": 5,
        "retention_seconds": 172800,
        "dead_letter_queue": "tuned.dlq",
    }
    # while a PUT with the same body replaces the rest with their defaults
    api.put("/queues/tuned", {"max_receive_count": 5})
    assert api.get("/queues/tuned").json["visibility_timeout"] == 30


def test_patch_of_a_missing_queue_is_404_and_bad_settings_are_400(api: HttpApi) -> None:
    # Given no queue named nowhere
    # When it is patched
    # Then it is a 404 queue_not_found problem, and the patch did not create it
    assert api.patch("/queues/nowhere", {"delay_seconds": 5}).is_problem(404, "queue_not_found")
    assert api.get("/queues/nowhere").status == 404  # nothing was created
    # Given a queue with default settings
    api.put("/queues/tuned", {})
    # When it is patched with an out-of-range delay, or an unknown field
    # Then each is a 400 invalid_request problem, and its delay is unchanged
    assert api.patch("/queues/tuned", {"delay_seconds": 901}).is_problem(400, "invalid_request")
    assert api.patch("/queues/tuned", {"colour": "red"}).is_problem(400, "invalid_request")
    assert api.get("/queues/tuned").json["delay_seconds"] == 0


def test_durable_subscription_with_a_bad_selector_is_400_and_a_good_one_filters(
    api: HttpApi,
) -> None:
    # Given a queue for a durable subscription
    assert api.put("/queues/eu-orders", {}).status == 201

    # When it is declared with a malformed selector
    bad = api.put("/topics/orders/subscriptions/eu", {"queue": "eu-orders", "selector": "region ="})

    # Then the answer is a 400 problem naming the position, and nothing was saved
    assert bad.is_problem(400, "invalid_selector"), bad.text
    assert bad.json["message"].startswith("invalid selector at position 9:")
    assert api.get("/topics/orders/subscriptions").json["subscriptions"] == []

    # When it is declared with a good one and messages of two regions are published
    good = api.put(
        "/topics/orders/subscriptions/eu", {"queue": "eu-orders", "selector": "region = 'eu'"}
    )
    assert good.status == 201 and good.json["selector"] == "region = 'eu'"
    for region in ("us", "eu"):
        published = api.post(
            "/topics/orders/messages", {"body": region, "attributes": {"region": region}}
        )
        assert published.status == 201, published.text

    # Then the subscription's queue holds the matching one only
    assert [m["body"] for m in receive(api, "eu-orders", max_messages=10)] == ["eu"]


def test_presence_counts_a_queue_consumer_and_a_topic_subscriber_while_they_are_there(
    api: HttpApi,
) -> None:
    # Given nobody consuming yet
    from mqless.domain.access.principals import Action, Grant, Principal
    from mqless.domain.push.pushes import Connection

    admin = Principal(
        id="test-admin",
        kind="api_key",
        grants=(Grant(pattern=">", actions=(Action.SEND, Action.RECEIVE, Action.ADMIN)),),
    )

    assert api.get("/queues/orders/presence").json == {"queue": "orders", "consumers": 0}
    assert api.put("/queues/audit", {}).status == 201
    assert api.put("/topics/shop.>/subscriptions/audit", {"queue": "audit"}).status == 201

    # When a WebSocket client subscribes to the queue, to the topic, and durably to the topic
    sessions = wiring.sessions()
    sessions.open(Connection("c1"), admin)
    info = sessions.info("c1")
    assert info is not None
    sessions.subscribe(info, "q", "/queue/orders")
    sessions.subscribe(info, "t", "/topic/shop.*")
    sessions.subscribe(info, "d", "/topic/shop.>", durable="audit")

    # Then presence counts each where it consumes
    assert api.get("/queues/orders/presence").json == {"queue": "orders", "consumers": 1}
    topic = api.get("/topics/shop.orders/presence")
    assert topic.status == 200, topic.text
    assert topic.json == {
        "topic": "shop.orders",
        "consumers": 2,
        "live_subscribers": 1,
        "durable_subscriptions": [{"name": "audit", "queue": "audit", "consumers": 1}],
    }

    # When the connection goes / Then nobody is counted any more
    sessions.close("c1")
    assert api.get("/queues/orders/presence").json["consumers"] == 0
    assert api.get("/topics/shop.orders/presence").json["consumers"] == 0


def test_presence_of_a_bad_name_is_400(api: HttpApi) -> None:
    # Given / When a topic name that is a pattern, and a queue name with a space
    topic = api.get("/topics/shop.*/presence")
    queue = api.get("/queues/no%20spaces/presence")
    # Then both are 400 problems
    assert topic.is_problem(400, "invalid_request"), topic.text
    assert queue.status == 400, queue.text
