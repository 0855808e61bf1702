"""The live bill's pieces: counting the functions' metrics, and when a line is printed."""

from __future__ import annotations

import io
import json

import pytest

from mqless_cli.billing.dynamodb import Capacity
from mqless_cli.billing.live import LiveBill, record_metrics
from mqless_cli.billing.meter import Meter, price
from mqless_cli.local.console import Console


def emf(dimensions: list[list[str]], **values: object) -> dict[str, object]:
    metrics = [{"Name": name, "Unit": "Count"} for name in values]
    return {
        "_aws": {"CloudWatchMetrics": [{"Dimensions": dimensions, "Metrics": metrics}]},
        "service": "mqless",
        **values,
    }


def test_only_the_totals_document_is_counted_not_each_destination_again() -> None:
    """Given two queues' documents (Queue + service) and the totals' document (service alone)
    When the three are recorded
    Then the app metrics are the totals' values alone, not the queues' again
    """
    meter = Meter()
    # mqless flushes one document per queue and one of totals (dimension `service` only)
    record_metrics(meter, emf([["Queue", "service"]], Sent=[2.0]))
    record_metrics(meter, emf([["Queue", "service"]], Sent=[3.0]))
    record_metrics(meter, emf([["service"]], Sent=[5.0], Acked=4))

    assert meter.usage().app_metrics == {"Sent": 5.0, "Acked": 4.0}


def test_a_destinations_document_that_also_counts_in_the_totals_is_counted_once() -> None:
    # Given a queue's counters in one document with two dimension sets, Queue + service and
    # service alone (CloudWatch extracts the queue's metric and the total from it), and a
    # gauge's document of totals beside
    meter = Meter()
    # When they are recorded
    record_metrics(meter, emf([["Queue", "service"], ["service"]], Sent=[2.0], Acked=1))
    record_metrics(meter, emf([["Queue", "service"], ["service"]], Sent=[3.0]))
    record_metrics(meter, emf([["Queue", "service"]], Depth=[7.0]))

    # Then each counter is counted once, as the total's sum; the queue's own gauge is not
    assert meter.usage().app_metrics == {"Sent": 5.0, "Acked": 1.0}


def test_a_period_without_clients_prints_no_line_even_if_a_schedule_ran() -> None:
    """Given a minute with a scheduled sweep (an invocation and its reads) and no client request
    When the bill ticks
    Then no line is printed, yet the document still counts the invocation
    """
    meter, lines = Meter(), []
    bill = LiveBill(meter, lines.append)
    # a scheduled sweep: a Lambda invocation and its reads, no client request
    meter.record_invocation("SweeperFunction", 512, 40)
    meter.record_dynamodb("Query", [Capacity("t", None, "QUEUES", read_units=0.5)])

    bill.tick()

    assert lines == []
    assert bill.document()["last_period"]["requests"]["lambda_invocations"] == 1


def test_a_period_with_requests_but_no_messages_prints_units_and_dollars() -> None:
    """Given a minute with one HTTP request and a 1 RRU read, but no message
    When the bill ticks
    Then one line gives the units and requests and the dollars they cost
    """
    meter, lines = Meter(), []
    bill = LiveBill(meter, lines.append)
    meter.record_http_request(100)
    meter.record_dynamodb("GetItem", [Capacity("t", None, "a", read_units=1)])

    bill.tick()

    # 1 RRU ($0.125/M) + 1 HTTP request ($1/M) = $0.000001125
    assert lines == ["bill  last min: DynamoDB 0.0 WRU 1.0 RRU  HTTP 1  WS 0  Lambda 0  $0.000001"]


def test_every_emf_document_is_billed_as_the_log_event_it_is() -> None:
    # Given a queue's document and the totals' document, as a function prints them
    meter = Meter()
    documents = [emf([["Queue", "service"]], Sent=[2.0]), emf([["service"]], Sent=[2.0])]
    printed = [len(json.dumps(d, separators=(",", ":")).encode()) for d in documents]

    # When both are counted
    for document in documents:
        record_metrics(meter, document)

    # Then CloudWatch Logs' bytes are their UTF-8 bytes plus 26 per event, at $0.50 per GB
    usage = meter.usage()
    assert usage.metric_log_bytes == sum(printed) + 2 * 26
    dollars = price(usage).lines["CloudWatch Logs (EMF metrics)"]
    assert dollars == pytest.approx(usage.metric_log_bytes / 1024**3 * 0.50)


def test_an_emf_document_is_billed_by_the_line_the_function_printed() -> None:
    # Given the console handing the functions' EMF documents to the bill, as `mqless dev`
    # does, and a document printed with spaces (not in Powertools' compact form)
    meter = Meter()
    console = Console(io.StringIO())
    console.metrics = lambda document, line: record_metrics(meter, document, line)
    line = json.dumps(emf([["Queue", "service"]], Sent=[2.0]), separators=(", ", ": "))

    # When a function prints it
    console.function_output(line)

    # Then CloudWatch Logs' bytes are those of the line as printed (plus 26 for the event)
    assert meter.usage().metric_log_bytes == len(line.encode()) + 26
