"""Metrics per destination (CloudWatch EMF) and audit events, as an operator reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest_http import HttpApi

import mqless
from mqless import observability, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.observability import metrics
from mqless_cli.local.metrics import emf_metric_data
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
    # Given a queue that dead-letters after one receive
    broker.put_queue(ANONYMOUS, "orders", QueueSettings(max_receive_count=1))
    # When three are sent (one, then a batch of two) and received, one acked, one nacked, and the
    # queue received from again once the third's lease ran out
    broker.send(ANONYMOUS, "orders", NewMessage(body=b"a"))
    broker.send_batch(
        ANONYMOUS, "orders", [("1", NewMessage(body=b"b")), ("2", NewMessage(body=b"c"))]
    )
    first = broker.receive(ANONYMOUS, "orders", max_messages=3)
    broker.ack(ANONYMOUS, "orders", [first[0].receipt])
    broker.nack(ANONYMOUS, "orders", [first[1].receipt])
    clock.advance(31)  # the third one's lease runs out: its next receive is over the limit
    broker.receive(ANONYMOUS, "orders", max_messages=3)

    # Then the queue's metrics count 3 sent, 3 delivered, 1 acked, 1 nacked and 2 dead-lettered
    counts = metrics.snapshot()

    def of(name: str) -> float:
        return counts.get(("Queue", "orders", name), 0)

    assert (of("Sent"), of("Delivered"), of("Acked"), of("Nacked")) == (3, 3, 1, 1)
    assert of("DeadLettered") == 2  # both went over max_receive_count = 1


def _extracted(documents: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """What CloudWatch makes of EMF documents: values per (metric, dimensions)."""
    found: dict[tuple[str, str], list[float]] = {}
    for document in documents:
        for _, entries in emf_metric_data(document):
            for entry in entries:
                where = ",".join(f"{d['Name']}={d['Value']}" for d in entry["Dimensions"])
                found.setdefault((entry["MetricName"], where), []).extend(entry["Values"])
    return found


def test_flush_writes_one_emf_document_per_destination_that_counts_in_the_totals_too(
    broker: QueueService, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given sends to two queues and a receive from one
    broker.send(ANONYMOUS, "a", NewMessage(body=b"x"))
    broker.send(ANONYMOUS, "b", NewMessage(body=b"y"))
    broker.send(ANONYMOUS, "b", NewMessage(body=b"z"))
    [delivery] = broker.receive(ANONYMOUS, "a")
    assert delivery
    capsys.readouterr()

    # When the invocation's metrics are flushed
    written = metrics.flush()
    documents = _emf(capsys.readouterr().out)

    # Then there is one document per queue and none of totals: each queue's document has a
    # second dimension set, the service alone, from which CloudWatch takes the totals that
    # the alarms and the dashboard read (a separate document doubled the log bytes)
    assert written == len(documents) == 2
    by_queue = {d.get("Queue"): d for d in documents}
    assert (by_queue["a"]["Sent"], by_queue["b"]["Sent"]) == ([1.0], [2.0])
    assert by_queue["a"]["Delivered"] == [1.0]
    [latency] = by_queue["a"]["PublishToDeliverLatency"]
    assert 0 <= latency < 60_000
    directive = by_queue["a"]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "mqless"
    assert directive["Dimensions"] == [["Queue", "service"], ["service"]]
    extracted = _extracted(documents)
    assert sum(extracted[("Sent", "service=mqless")]) == 3.0
    assert extracted[("Sent", "Queue=b,service=mqless")] == [2.0]
    assert extracted[("Delivered", "service=mqless")] == [1.0]
    assert extracted[("PublishToDeliverLatency", "service=mqless")] == [latency]
    assert metrics.flush() == 0  # nothing left


def test_successive_flushes_of_one_queues_counters_build_one_metrics_provider_in_all(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Powertools metrics providers that are counted as they are built (each costs more
    # than the rest of such a flush, and every invocation flushes)
    built: list[object] = []

    class Counted(observability.EphemeralMetrics):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            built.append(self)

    monkeypatch.setattr(observability, "EphemeralMetrics", Counted)

    # When two invocations in turn, on one thread (a Lambda instance's), count an
    # acknowledgement on a queue, each flushing its metrics
    def invocations() -> None:
        for queue in ("orders", "orders", "invoices"):
            metrics.count("Acked", queue=queue)
            metrics.flush()

    worker = threading.Thread(target=invocations)
    worker.start()
    worker.join()

    # Then each wrote its queue's document alone, with no dimension left from the one before
    documents = _emf(capsys.readouterr().out)
    assert [(d["Queue"], d["Acked"]) for d in documents] == [
        ("orders", [1.0]),
        ("orders", [1.0]),
        ("invoices", [1.0]),
    ]
    assert {d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0] for d in documents} == {"Queue"}
    assert all(set(d) == {"_aws", "Queue", "service", "Acked"} for d in documents)
    # and one provider was built in all: none for totals they had none of, none anew
    assert len(built) == 1


def test_admin_actions_leave_an_audit_trail(
    broker: QueueService, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a queue created, with a message
    broker.put_queue(ANONYMOUS, "orders", QueueSettings())
    broker.send(ANONYMOUS, "orders", NewMessage(body=b"x"))
    # When it is purged and deleted
    broker.purge(ANONYMOUS, "orders")
    broker.delete_queue(ANONYMOUS, "orders")

    # Then the audit log has the create, the purge (of 1 message) and the delete, each with its
    # queue, principal and time
    audits = [r.audit for r in caplog.records if r.getMessage() == "audit"]  # type: ignore[attr-defined]

    assert [(a["action"], a["destination"], a["principal"]) for a in audits] == [
        ("queue.create", "orders", "anonymous"),
        ("queue.purge", "orders", "anonymous"),
        ("queue.delete", "orders", "anonymous"),
    ]
    assert audits[1]["purged"] == 1
    assert all(isinstance(a["at"], int) for a in audits)


def test_an_unknown_metric_name_is_a_programming_error() -> None:
    # Given a misspelt metric name
    # When it is counted
    # Then it raises ValueError: unknown metric
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.count("Sennt", queue="q")


def test_the_sweep_measures_every_dead_letter_queue(
    broker: QueueService, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a message that a sweep dead-lettered (over its receive limit)
    broker.put_queue(ANONYMOUS, "orders", QueueSettings(max_receive_count=1))
    broker.send(ANONYMOUS, "orders", NewMessage(body=b"poison"))
    broker.receive(ANONYMOUS, "orders")
    clock.advance(31)
    broker.sweep()  # over the limit: dead-lettered, then the depths are measured
    capsys.readouterr()

    # When the metrics are flushed
    metrics.flush()
    documents = _emf(capsys.readouterr().out)

    # Then the dead-letter queue's depth is emitted for it and in the total, and none for the source
    # queue
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
    wiring.reset()
    provider = RecordingTraceProvider()
    monkeypatch.setattr(observability.tracer, "provider", provider)
    monkeypatch.setattr(observability.tracer, "disabled", False)  # on, as in Lambda
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
    wiring.reset()


def test_in_lambda_the_tracer_traces_aws_calls_and_loads_no_library_the_core_does_not_call(
    tmp_path: Any,
) -> None:
    # Given a fresh interpreter with the environment Lambda gives a traced function
    root = Path(mqless.__file__).resolve().parent.parent
    lambda_env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(root),
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "AWS_LAMBDA_FUNCTION_NAME": "mqless-http_api",
        "AWS_REGION": "us-east-1",
        "_X_AMZN_TRACE_ID": f"Root=1-00000000-{'0' * 24};Parent={'0' * 16};Sampled=1",
    }
    probe = (
        "import json, sys, mqless.observability\n"
        "from aws_xray_sdk.core.patcher import _PATCHED_MODULES as patched\n"
        "loaded = {'requests', 'httpx', 'sqlite3'} & set(sys.modules)\n"
        "print(json.dumps({'traced': sorted(patched), 'loaded': sorted(loaded)}))"
    )
    # When the functions' observability module is imported there (every handler imports it)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=lambda_env, capture_output=True, text=True, check=True
    )
    # Then AWS calls (botocore) are traced, and no other library the X-Ray SDK could patch
    # was imported into the cold start
    assert json.loads(done.stdout) == {"traced": ["botocore"], "loaded": []}
