"""Metrics per destination (CloudWatch EMF) and audit events, as an operator reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest_http import HttpApi

from mqless import observability, runtime
from mqless.clock import ManualClock
from mqless.models import NewMessage, QueueSettings
from mqless.observability import metrics
from mqless.principals import ANONYMOUS
from mqless.queues import QueueService
from tests.component.conftest import Aws
from tests.lambda_support import RecordingTraceProvider


@pytest.fixture(autouse=True)
def _fresh_metrics() -> None:
    metrics.flush()


def _emf(captured: str) -> list[dict[str, Any]]:
    documents = []
    for line in captured.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def test_queue_traffic_is_counted_per_queue(broker: QueueService, clock: ManualClock) -> None:
    broker.put_queue(ANONYMOUS, "orders", QueueSettings(max_receive_count=1))
    broker.send(ANONYMOUS, "orders", NewMessage(body=b"a"))
    broker.send_batch(
        ANONYMOUS, "orders", [("1", NewMessage(body=b"b")), ("2", NewMessage(body=b"c"))]
    )
    first = broker.receive(ANONYMOUS, "orders", max_messages=3)
    broker.ack(ANONYMOUS, "orders", [first[0].receipt])
    broker.nack(ANONYMOUS, "orders", [first[1].receipt])
    clock.advance(31)  # the third one's lease runs out: its next receive is over the limit
    broker.receive(ANONYMOUS, "orders", max_messages=3)

    counts = metrics.snapshot()

    def of(name: str) -> float:
        return counts.get(("Queue", "orders", name), 0)

    assert (of("Sent"), of("Delivered"), of("Acked"), of("Nacked")) == (3, 3, 1, 1)
    assert of("DeadLettered") == 2  # both went over max_receive_count = 1


def test_flush_writes_one_emf_document_per_destination_and_a_total(
    broker: QueueService, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.send(ANONYMOUS, "a", NewMessage(body=b"x"))
    broker.send(ANONYMOUS, "b", NewMessage(body=b"y"))
    broker.send(ANONYMOUS, "b", NewMessage(body=b"z"))
    [delivery] = broker.receive(ANONYMOUS, "a")
    assert delivery
    capsys.readouterr()

    written = metrics.flush()
    documents = _emf(capsys.readouterr().out)

    assert written == len(documents) == 3
    by_queue = {d.get("Queue"): d for d in documents}
    assert (by_queue["a"]["Sent"], by_queue["b"]["Sent"]) == ([1.0], [2.0])
    assert by_queue["a"]["Delivered"] == [1.0]
    [latency] = by_queue["a"]["PublishToDeliverLatency"]
    assert 0 <= latency < 60_000
    total = by_queue[None]
    assert (total["Sent"], total["Delivered"], total["service"]) == ([3.0], [1.0], "mqless")
    directive = total["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "mqless"
    assert directive["Dimensions"] == [["service"]]
    assert by_queue["a"]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Queue", "service"]]
    assert metrics.flush() == 0  # nothing left


def test_admin_actions_leave_an_audit_trail(
    broker: QueueService, caplog: pytest.LogCaptureFixture
) -> None:
    broker.put_queue(ANONYMOUS, "orders", QueueSettings())
    broker.send(ANONYMOUS, "orders", NewMessage(body=b"x"))
    broker.purge(ANONYMOUS, "orders")
    broker.delete_queue(ANONYMOUS, "orders")

    audits = [r.audit for r in caplog.records if r.getMessage() == "audit"]  # type: ignore[attr-defined]

    assert [(a["action"], a["destination"], a["principal"]) for a in audits] == [
        ("queue.create", "orders", "anonymous"),
        ("queue.purge", "orders", "anonymous"),
        ("queue.delete", "orders", "anonymous"),
    ]
    assert audits[1]["purged"] == 1
    assert all(isinstance(a["at"], int) for a in audits)


def test_an_unknown_metric_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.count("Sennt", queue="q")


def test_the_sweep_measures_every_dead_letter_queue(
    broker: QueueService, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.put_queue(ANONYMOUS, "orders", QueueSettings(max_receive_count=1))
    broker.send(ANONYMOUS, "orders", NewMessage(body=b"poison"))
    broker.receive(ANONYMOUS, "orders")
    clock.advance(31)
    broker.sweep()  # over the limit: dead-lettered, then the depths are measured
    capsys.readouterr()

    metrics.flush()
    documents = _emf(capsys.readouterr().out)

    by_queue = {d.get("Queue"): d for d in documents}
    assert by_queue["orders.dlq"]["DeadLetterDepth"] == [1.0]
    assert by_queue[None]["DeadLetterDepth"] == [1.0]
    assert "orders" not in by_queue or "DeadLetterDepth" not in by_queue["orders"]


def test_the_sweep_measures_every_queues_depth_and_their_sum(
    broker: QueueService, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two queues holding two messages and one (one of them leased)
    broker.send(ANONYMOUS, "eu", NewMessage(body=b"1"))
    broker.send(ANONYMOUS, "eu", NewMessage(body=b"2"))
    broker.send(ANONYMOUS, "us", NewMessage(body=b"3"))
    broker.receive(ANONYMOUS, "eu", max_messages=1)
    capsys.readouterr()

    # When the sweeper runs (once a minute), and its metrics are flushed
    broker.sweep()
    metrics.flush()
    documents = _emf(capsys.readouterr().out)

    # Then each queue's depth is a gauge (the console's depth chart), the total their sum
    by_queue = {d.get("Queue"): d for d in documents}
    assert by_queue["eu"]["Depth"] == [2.0]
    assert by_queue["us"]["Depth"] == [1.0]
    assert by_queue[None]["Depth"] == [3.0]
    assert "DeadLetterDepth" not in by_queue["eu"]


def test_traces_of_the_http_function_hold_no_issued_token_and_no_body(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the HTTP function with its environment from the template, traced by a
    # recorder standing in for X-Ray
    assert aws.stack is not None
    for name, value in aws.stack.environment("HttpApiFunction").items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    provider = RecordingTraceProvider()
    monkeypatch.setattr(observability.tracer, "provider", provider)
    api = HttpApi(aws.stack.http_routes())
    # When an admin issues a key, and a message is sent and received
    assert api.put("/access/principals/billing", {"grants": []}).status == 201
    issued = api.post("/access/principals/billing/keys", {})
    token = issued.json["token"]
    api.post("/queues/orders/messages", {"body": "card 4111-1111-1111-1111"})
    received = api.post("/queues/orders/receive", {}).json["messages"]
    # Then the caller got both, and the traces hold neither
    assert received[0]["body"] == "card 4111-1111-1111-1111"
    assert provider.recorded, "the requests ran in traced subsegments"
    assert provider.holding(token) == []
    assert provider.holding("4111-1111") == []
    runtime.reset()
