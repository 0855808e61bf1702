"""An invocation's metrics flush (`observability.DestinationMetrics`), as CloudWatch reads it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics

from mqless import observability
from mqless.observability import DestinationMetrics


def _documents(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def test_a_document_written_for_one_queue_carries_nothing_of_it_into_the_next_flush(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a flush of one queue's counts and latency, and a connection count
    metrics = DestinationMetrics()
    metrics.count("Sent", queue="orders", value=3)
    metrics.latency(12.0, queue="orders")
    metrics.count("Connections")
    metrics.flush()
    capsys.readouterr()

    # When the next invocation counts another queue's acks and flushes
    metrics.count("Acked", queue="invoices", value=2)
    metrics.flush()
    [document] = _documents(capsys.readouterr().out)

    # Then its one document is that queue's alone: its dimensions, its metric, nothing else
    assert document["Queue"] == "invoices" and document["Acked"] == [2.0]
    assert "orders" not in json.dumps(document)
    assert "Sent" not in document and "Connections" not in document
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["Queue", "service"], ["service"]]
    assert [m["Name"] for m in directive["Metrics"]] == ["Acked"]


def _powertools_prints(
    documents: list[tuple[dict[str, str], bool, list[tuple[str, str, float]]]],
) -> None:
    """Print what Powertools' own EMF provider prints for each document: (its dimension, whether
    it counts in the service's totals too, its metrics), in turn."""
    for dimension, counted, values in documents:
        provider = EphemeralMetrics(namespace="mqless", service="mqless")
        for name, value in dimension.items():
            provider.add_dimension(name=name, value=value)
        if counted:
            provider.add_dimensions(service="mqless")
        for name, unit, value in values:
            provider.add_metric(name=name, unit=unit, value=value)
        if provider.metric_set:  # 100 values of one metric are printed as the 100th comes
            provider.flush_metrics()


def _without_timestamps(out: str) -> list[str]:
    return re.sub(r'"Timestamp": ?[0-9]+', '"Timestamp":0', out).splitlines()


def test_each_document_is_printed_as_powertools_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given counts of two queues and a topic, a connection, depths, and latencies: 100 of one
    # queue (a full document, which Powertools prints at once) and two of another
    metrics = DestinationMetrics()
    metrics.count("Sent", queue="orders", value=3)
    metrics.count("Acked", queue="orders")
    metrics.count("Delivered", queue="invoices", value=100)
    metrics.count("Sent", topic="prices")
    metrics.count("Connections")
    metrics.gauge("Depth", 4, queue="orders")
    metrics.gauge("DeadLetterDepth", 2, queue="orders.dlq")
    metrics.gauge("Depth", 2, queue="orders.dlq")
    latencies = [float(n) for n in range(100)]
    for value in latencies:
        metrics.latency(value, queue="invoices")
    metrics.latency(7.5, queue="orders")
    metrics.latency(12, queue="orders")

    # When they are flushed
    metrics.flush()
    ours = _without_timestamps(capsys.readouterr().out)

    # Then the lines printed are Powertools' own for the same documents, byte for byte (but
    # the time): CloudWatch extracts the metrics from them, and the dev bill counts their bytes
    _powertools_prints(
        [
            (
                {"Queue": "invoices"},
                True,
                [("Delivered", "Count", 100)]
                + [("PublishToDeliverLatency", "Milliseconds", v) for v in latencies],
            ),
            (
                {"Queue": "orders"},
                True,
                [
                    ("Acked", "Count", 1),
                    ("Sent", "Count", 3),
                    ("PublishToDeliverLatency", "Milliseconds", 7.5),
                    ("PublishToDeliverLatency", "Milliseconds", 12),
                ],
            ),
            ({"Topic": "prices"}, True, [("Sent", "Count", 1)]),
            ({"Queue": "orders"}, False, [("Depth", "Count", 4)]),
            (
                {"Queue": "orders.dlq"},
                False,
                [("DeadLetterDepth", "Count", 2), ("Depth", "Count", 2)],
            ),
            (
                {},
                False,
                [
                    ("Connections", "Count", 1),
                    ("DeadLetterDepth", "Count", 2),
                    ("Depth", "Count", 6),
                ],
            ),
        ]
    )
    assert ours == _without_timestamps(capsys.readouterr().out)
    assert len(ours) == 6


def test_under_mqless_dev_each_document_is_handed_over_with_the_line_aws_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the hook `mqless dev` installs, taking each EMF document and its line
    handed: list[tuple[dict[str, Any], str]] = []
    metrics = DestinationMetrics()
    metrics.count("Sent", queue="orders", value=2)
    metrics.latency(3.0, queue="orders")
    metrics.count("Connections")

    # When an invocation's metrics are flushed under it, and once more without it (AWS)
    observability.hand_emf_over(lambda document, line: handed.append((document, line)))
    try:
        metrics.flush()
    finally:
        observability.hand_emf_over(None)
    in_dev = capsys.readouterr().out
    metrics.count("Sent", queue="orders", value=2)
    metrics.latency(3.0, queue="orders")
    metrics.count("Connections")
    metrics.flush()
    printed = capsys.readouterr().out

    # Then under it nothing is printed, and each document is handed over with the very line
    # printed on AWS (the bill counts its bytes), and as that line reads back
    assert in_dev == ""
    lines = [line for _, line in handed]
    assert _without_timestamps("\n".join(lines)) == _without_timestamps(printed)
    assert [document for document, _ in handed] == [json.loads(line) for line in lines]
    assert [d.get("Queue") for d, _ in handed] == ["orders", None]
