"""The live bill of `mqless dev`: a console line per active minute and a JSON summary.

"Messages" are what the functions themselves count in their CloudWatch metrics (the
`Sent` counter of mqless's EMF documents): the bill per million messages is the whole
bill of the minute divided by the messages sent in it, as AWS would charge it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mqless_cli.billing.meter import Meter, Usage, ceiling_per_second, price, sqs_reference
from mqless_cli.billing.prices import PRICES_AS_OF, REGION

SENT = "Sent"
ACKED = "Acked"


def record_metrics(meter: Meter, document: Mapping[str, Any], line: str | None = None) -> None:
    """Count a function's EMF document: its bytes as a log event CloudWatch Logs ingests
    (every document: `line`, as printed, else as Powertools prints it), and its counters
    where CloudWatch counts them in the totals (a dimension set of the service alone), so
    that nothing is counted twice."""
    # Powertools prints compact JSON, one document a line
    printed = line if line is not None else json.dumps(document, separators=(",", ":"))
    meter.record_metric_log(len(printed.encode()))
    directives = document.get("_aws", {}).get("CloudWatchMetrics", [])
    for directive in directives:
        # a directive counts in the totals if one of its dimension sets is the service alone
        # (a destination's counters carry that set beside their own: observability.py)
        sets = directive.get("Dimensions") or [[]]
        if not any(set(group) <= {"service"} for group in sets):
            continue
        for metric in directive.get("Metrics", []):
            value = document.get(metric.get("Name"))
            if isinstance(value, int | float):
                meter.record_app_metric(metric["Name"], float(value))
            elif isinstance(value, list):
                meter.record_app_metric(metric["Name"], float(sum(value)))


def client_activity(usage: Usage) -> bool:
    """Whether any client called in: requests or WebSocket messages (schedules alone are
    not activity worth a line)."""
    return bool(usage.http_requests.get("calls") or usage.websocket_messages)


def summary(usage: Usage) -> dict[str, Any]:
    """What `usage` bills, per line and per million messages sent, beside SQS."""
    bill = price(usage)
    sent = usage.app_metrics.get(SENT, 0.0)
    partition, wru, rru = usage.hottest_partition()
    sqs = sqs_reference(1_000_000, 0)
    per_message = sent or 0.0

    def each(value: float) -> float | None:
        return value / per_message if per_message else None

    return {
        "messages": {"sent": sent, "acked": usage.app_metrics.get(ACKED, 0.0)},
        "dollars": bill.total,
        "lines": bill.lines,
        "per_million_messages": bill.per(sent).total if sent else None,
        "sqs_per_million_messages": sqs.dollars,
        "dynamodb": {
            "write_units_table": usage.base_write_units(),
            "write_units_index": usage.index_write_units(),
            "read_units": usage.total_read_units(),
            "failed_conditions": sum(usage.failed_conditions.values()),
            "write_units_per_message": each(sum(usage.write_units.values())),
            "read_units_per_message": each(usage.total_read_units()),
            "hottest_partition": partition,
            "hottest_partition_write_units": wru,
            "hottest_partition_read_units": rru,
            "ceiling_messages_per_second": (
                ceiling_per_second(wru, rru, sent) if sent and (wru or rru) else None
            ),
        },
        "requests": {
            "dynamodb": usage.count("dynamodb"),
            "kms": usage.count("kms"),
            "http_api": usage.http_requests.get("calls", 0),
            "websocket_messages_in": usage.websocket_messages.get("in", 0),
            "websocket_messages_out": usage.websocket_messages.get("out", 0),
            "lambda_invocations": sum(usage.lambda_invocations.values()),
        },
        "connection_minutes": usage.connection_seconds / 60,
        "lambda_duration_note": "GB-seconds from local durations (moto in-process), not AWS's",
    }


def bill_line(usage: Usage) -> str:
    """One console line for a minute's usage."""
    bill = price(usage)
    sent = usage.app_metrics.get(SENT, 0.0)
    wru = sum(usage.write_units.values())
    rru = usage.total_read_units()
    websocket = usage.websocket_messages.get("in", 0) + usage.websocket_messages.get("out", 0)
    requests = (
        f"HTTP {usage.http_requests.get('calls', 0):,.0f}  WS {websocket:,.0f}  "
        f"Lambda {sum(usage.lambda_invocations.values()):,.0f}"
    )
    failed = sum(usage.failed_conditions.values())
    failures = f"  {failed:,.0f} failed conditions" if failed else ""
    if not sent:
        return (
            f"bill  last min: DynamoDB {wru:,.1f} WRU {rru:,.1f} RRU{failures}  {requests}  "
            f"${bill.total:.6f}"
        )
    sqs = sqs_reference(1_000_000, 0).dollars
    return (
        f"bill  last min: {sent:,.0f} msgs  DynamoDB {wru / sent:.1f} WRU/msg "
        f"{rru / sent:.1f} RRU/msg{failures}  {requests}  "
        f"${bill.per(sent).total:.2f} per million msgs (SQS ${sqs:.2f})"
    )


class LiveBill:
    """Takes the meter's reading every `period` seconds: prints a line for each period in
    which clients were active, and keeps the last period for `document()`."""

    def __init__(
        self,
        meter: Meter,
        write_line: Callable[[str], None],
        *,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._meter = meter
        self._write_line = write_line
        self._period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._last_reading = meter.usage()
        self._last_period = Usage()
        self._started = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="live-bill", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def tick(self) -> None:
        """Close a period: print its line if clients were active in it."""
        reading = self._meter.usage()
        with self._lock:
            period, self._last_reading = reading - self._last_reading, reading
            self._last_period = period
        if client_activity(period):
            self._write_line(bill_line(period))

    def document(self) -> dict[str, Any]:
        """The JSON of `GET /_local/bill`: since start, and the last full period."""
        with self._lock:
            last = self._last_period
        return {
            "region": REGION,
            "prices_as_of": PRICES_AS_OF,
            "period_seconds": self._period,
            "since_start_seconds": self._clock() - self._started,
            "since_start": summary(self._meter.usage()),
            "last_period": summary(last),
        }

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.tick()
