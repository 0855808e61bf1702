"""An invocation's metrics flush (`observability.DestinationMetrics`), as CloudWatch reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
