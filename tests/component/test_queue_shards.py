"""A queue's `shards` setting as an operator sees it over HTTP: it spreads a queue over more
partitions, grows without losing a message, and never changes under a FIFO queue's groups."""

from __future__ import annotations

import pytest
from conftest_http import HttpApi

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues import sending
from mqless.domain.queues.service import QueueService
from mqless_cli.cfn import Stack
from tests.component.conftest import RawItems
from tests.component.shared_stack import (  # noqa: F401 - fixtures: one moto for the module
    shared_dynamodb,
    shared_kms,
    shared_settings,
    shared_stack,
)


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


def _send(api: HttpApi, queue: str, body: str, **fields: object) -> None:
    reply = api.post(f"/queues/{queue}/messages", {"body": body, **fields})
    assert reply.status == 201, reply.text


def _receive_all(api: HttpApi, queue: str) -> list[str]:
    bodies: list[str] = []
    while True:
        reply = api.post(f"/queues/{queue}/receive", {"max_messages": 10})
        assert reply.status == 200, reply.text
        messages = reply.json["messages"]
        if not messages:
            return bodies
        bodies += [m["body"] for m in messages]
        receipts = [m["receipt"] for m in messages]
        assert api.post(f"/queues/{queue}/ack", {"receipts": receipts}).status == 200


def test_a_queue_made_with_defaults_has_eight_shards_and_can_be_made_with_more(
    api: HttpApi,
) -> None:
    # Given queue names not used yet
    # When queues are made with default settings, with 16 shards, and with 65
    # Then they have 8 and 16 shards, and 65 (over the limit of 64) is a 400 invalid_request problem
    assert api.put("/queues/plain", {}).json["shards"] == 8
    assert api.put("/queues/hot", {"shards": 16}).json["shards"] == 16
    assert api.put("/queues/too-hot", {"shards": 65}).is_problem(400, "invalid_request")


def test_a_fifo_queue_made_without_shards_has_16_and_a_standard_one_8(api: HttpApi) -> None:
    # Given a FIFO queue and a standard queue made without naming shards
    api.put("/queues/ledger.fifo", {})
    api.put("/queues/ledger", {})
    # When an operator reads their settings
    fifo, standard = api.get("/queues/ledger.fifo").json, api.get("/queues/ledger").json
    # Then the FIFO queue's segments rotate over 16 partition keys (its ceiling with 30
    # groups is past 3,000 messages/s), the standard queue's over 8 (~415 messages/s each)
    assert (fifo["shards"], standard["shards"]) == (16, 8)


def test_growing_a_queue_keeps_every_waiting_message_receivable(api: HttpApi) -> None:
    # Given a one-shard queue holding three messages
    api.put("/queues/growing", {"shards": 1})
    for body in ("a", "b", "c"):
        _send(api, "growing", body)

    # When it grows to eight shards and more messages are sent
    grown = api.put("/queues/growing", {"shards": 8})
    assert (grown.status, grown.json["shards"]) == (200, 8)
    for body in ("d", "e"):
        _send(api, "growing", body)

    # Then every message, from before and after, is received once
    assert sorted(_receive_all(api, "growing")) == ["a", "b", "c", "d", "e"]


def test_shards_never_shrink_and_a_replace_that_leaves_them_out_keeps_them(
    api: HttpApi,
) -> None:
    # Given a queue with 8 shards holding a message
    api.put("/queues/wide", {"shards": 8})
    _send(api, "wide", "kept")

    # When its settings are replaced without naming shards
    replaced = api.put("/queues/wide", {"visibility_timeout": 90})
    # Then it keeps its 8
    assert (replaced.status, replaced.json["shards"]) == (200, 8)
    # When fewer shards are asked for
    refused = api.put("/queues/wide", {"shards": 2, "visibility_timeout": 5})
    # Then it is refused (409: shards never shrink), changing nothing; the message is still there
    assert refused.is_problem(409, "conflict")
    assert "never shrink" in refused.json["message"]
    settings = api.get("/queues/wide").json
    assert (settings["shards"], settings["visibility_timeout"]) == (8, 90)
    assert _receive_all(api, "wide") == ["kept"]


def test_a_fifo_queues_shards_are_fixed_so_a_group_stays_in_order(api: HttpApi) -> None:
    # Given a FIFO queue with a group's first message waiting
    api.put("/queues/pay.fifo", {"shards": 2})
    _send(api, "pay.fifo", "first", group_id="acct-7")

    # When an operator asks for more shards, it is refused
    refused = api.put("/queues/pay.fifo", {"shards": 4})
    assert refused.is_problem(409, "conflict")
    assert "fixed" in refused.json["message"]

    # Then the group still delivers in order, one at a time
    _send(api, "pay.fifo", "second", group_id="acct-7")
    [first] = api.post("/queues/pay.fifo/receive", {"max_messages": 10}).json["messages"]
    assert first["body"] == "first"
    api.post("/queues/pay.fifo/ack", {"receipts": [first["receipt"]]})
    [second] = api.post("/queues/pay.fifo/receive", {"max_messages": 10}).json["messages"]
    assert second["body"] == "second"


def test_a_warm_producer_spreads_over_the_new_shards_once_its_queue_grows(
    broker: QueueService, raw_items: RawItems, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a producer (one warm function instance) that has sent to a one-shard queue
    broker.put_queue(ANONYMOUS, "widening", QueueSettings(shards=1))
    broker.send(ANONYMOUS, "widening", NewMessage(body=b"before"))
    monkeypatch.setattr(sending.random, "randrange", lambda n: n - 1)  # the draw: the last

    # When the queue grows to 64 shards and the same producer sends again
    broker.put_queue(ANONYMOUS, "widening", QueueSettings(shards=64))
    broker.send(ANONYMOUS, "widening", NewMessage(body=b"after"))

    # Then its new message went to a shard drawn among the 64, not the one it had
    logs = {str(item["pk"]) for item in raw_items("widening") if str(item["pk"]).startswith("L#")}
    assert logs == {"L#widening#0", "L#widening#63"}
