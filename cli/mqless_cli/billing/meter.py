"""The meter: usage in the units AWS bills, gathered from the observers, and its price.

Observers report as requests happen: the moto observer (`moto_observer.py`) reports
DynamoDB capacity and every other AWS request, the local gateways report API Gateway
requests, WebSocket messages and connections, the function host reports Lambda
invocations. `Meter.usage()` is a snapshot; the difference of two snapshots is what
happened in between, and `price()` turns it into dollars at `prices.PRICES`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mqless_cli.billing.dynamodb import (
    PARTITION_READ_UNITS_PER_SECOND,
    PARTITION_WRITE_UNITS_PER_SECOND,
    Capacity,
)
from mqless_cli.billing.prices import PRICES, Prices

GIB = 1024**3  # CloudWatch bills ingested logs per GB

Tally = dict[str, float]
"""Amounts by name (a dict that `Usage` adds to and subtracts)."""


def _add(tally: Tally, name: str, amount: float) -> None:
    tally[name] = tally.get(name, 0) + amount


@dataclass
class Usage:
    """What was used, in billed units. Subtract an earlier snapshot to get an interval."""

    requests: Tally = field(default_factory=dict)
    """AWS API requests by `service:Operation` (DynamoDB, KMS, DynamoDB Streams...)."""
    write_units: Tally = field(default_factory=dict)
    """DynamoDB write units by table (`table`) or index (`table/index`)."""
    read_units: Tally = field(default_factory=dict)
    """DynamoDB read units by table or index."""
    failed_conditions: Tally = field(default_factory=dict)
    """Writes refused by their condition (billed all the same), by table."""
    partition_write_units: Tally = field(default_factory=dict)
    """Write units by `table[/index] pk-value`: one partition takes 1,000 a second."""
    partition_read_units: Tally = field(default_factory=dict)
    """Read units by `table[/index] pk-value`: one partition takes 3,000 a second."""
    http_requests: Tally = field(default_factory=dict)
    """API Gateway HTTP API: `calls` and billed `units` (512 KB each)."""
    websocket_messages: Tally = field(default_factory=dict)
    """API Gateway WebSocket: `in`/`out` messages and their billed 32 KB units (`*_units`)."""
    connection_seconds: float = 0.0
    lambda_invocations: Tally = field(default_factory=dict)
    lambda_gb_seconds: Tally = field(default_factory=dict)
    lambda_milliseconds: Tally = field(default_factory=dict)
    app_metrics: Tally = field(default_factory=dict)
    """The functions' own CloudWatch counters (mqless: Sent, Acked...)."""
    metric_log_bytes: float = 0.0
    """CloudWatch Logs bytes of the functions' EMF documents (event bytes + 26 each)."""

    def __add__(self, other: Usage) -> Usage:
        values: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, dict):
                values[item.name] = {k: mine.get(k, 0) + theirs.get(k, 0) for k in {*mine, *theirs}}
            else:
                values[item.name] = mine + theirs
        return Usage(**values)

    def __sub__(self, earlier: Usage) -> Usage:
        values: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            mine, theirs = getattr(self, item.name), getattr(earlier, item.name)
            if isinstance(mine, dict):
                delta = {k: v - theirs.get(k, 0) for k, v in mine.items()}
                values[item.name] = {k: v for k, v in delta.items() if v}
            else:
                values[item.name] = mine - theirs
        return Usage(**values)

    # ---- DynamoDB -------------------------------------------------------------------

    def base_write_units(self) -> float:
        return sum(v for k, v in self.write_units.items() if "/" not in k)

    def index_write_units(self) -> float:
        return sum(v for k, v in self.write_units.items() if "/" in k)

    def total_read_units(self) -> float:
        return sum(self.read_units.values())

    def count(self, service: str, operation: str | None = None) -> int:
        """Requests to a service (or one operation of it)."""
        return sum(
            int(n)
            for name, n in self.requests.items()
            if name.partition(":")[0] == service
            and (operation is None or name.partition(":")[2] == operation)
        )

    def hottest_partition(self) -> tuple[str, float, float]:
        """(partition, write units, read units) of the partition key that limits throughput
        first, weighing writes against 1,000 and reads against 3,000 units a second."""
        keys = set(self.partition_write_units) | set(self.partition_read_units)
        if not keys:
            return "", 0.0, 0.0

        def load(key: str) -> float:
            return (
                self.partition_write_units.get(key, 0) / PARTITION_WRITE_UNITS_PER_SECOND
                + self.partition_read_units.get(key, 0) / PARTITION_READ_UNITS_PER_SECOND
            )

        hottest = max(keys, key=load)
        return (
            hottest,
            self.partition_write_units.get(hottest, 0.0),
            self.partition_read_units.get(hottest, 0.0),
        )

    def is_empty(self) -> bool:
        return not (
            self.requests
            or self.http_requests
            or self.websocket_messages
            or self.lambda_invocations
            or self.connection_seconds
        )


def ceiling_per_second(write_units: float, read_units: float, per: float) -> float:
    """The most `per`-sized steps a second one partition takes, given the units it bills for
    `per` of them (inf when it bills none)."""
    load = (
        write_units / PARTITION_WRITE_UNITS_PER_SECOND
        + read_units / PARTITION_READ_UNITS_PER_SECOND
    )
    return math.inf if load <= 0 else per / load


class Meter:
    """Thread-safe usage counters; every observer reports here."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._usage = Usage()
        self._open: dict[str, float] = {}

    def record_request(self, service: str, operation: str) -> None:
        with self._lock:
            _add(self._usage.requests, f"{service}:{operation}", 1)

    def record_dynamodb(
        self, operation: str, charges: Sequence[Capacity], *, failed_conditions: int = 0
    ) -> None:
        """One DynamoDB request and what it billed."""
        with self._lock:
            usage = self._usage
            _add(usage.requests, f"dynamodb:{operation}", 1)
            for charge in charges:
                where = charge.table if charge.index is None else f"{charge.table}/{charge.index}"
                partition = f"{where} {charge.partition}"
                if charge.write_units:
                    _add(usage.write_units, where, charge.write_units)
                    _add(usage.partition_write_units, partition, charge.write_units)
                if charge.read_units:
                    _add(usage.read_units, where, charge.read_units)
                    _add(usage.partition_read_units, partition, charge.read_units)
            if failed_conditions:
                table = charges[0].table if charges else ""
                _add(usage.failed_conditions, table, failed_conditions)

    def record_http_request(self, size: int, prices: Prices = PRICES) -> None:
        """One HTTP API request of `size` bytes."""
        with self._lock:
            _add(self._usage.http_requests, "calls", 1)
            _add(self._usage.http_requests, "units", _units(size, prices.http_api_request_bytes))

    def record_websocket_message(self, direction: str, size: int, prices: Prices = PRICES) -> None:
        """One WebSocket message, `in` (from a client) or `out` (to it, @connections too)."""
        with self._lock:
            _add(self._usage.websocket_messages, direction, 1)
            units = _units(size, prices.websocket_message_bytes)
            _add(self._usage.websocket_messages, f"{direction}_units", units)

    def connection_opened(self, connection_id: str) -> None:
        with self._lock:
            self._open[connection_id] = self._clock()

    def connection_closed(self, connection_id: str) -> None:
        with self._lock:
            opened = self._open.pop(connection_id, None)
            if opened is not None:
                self._usage.connection_seconds += self._clock() - opened

    def record_invocation(self, function: str, memory_mb: int, milliseconds: float) -> None:
        """One Lambda invocation; billed duration is rounded up to the millisecond."""
        billed_ms = max(1, math.ceil(milliseconds))
        with self._lock:
            _add(self._usage.lambda_invocations, function, 1)
            _add(self._usage.lambda_milliseconds, function, billed_ms)
            _add(self._usage.lambda_gb_seconds, function, memory_mb / 1024 * billed_ms / 1000)

    def record_app_metric(self, name: str, value: float) -> None:
        with self._lock:
            _add(self._usage.app_metrics, name, value)

    def record_metric_log(self, event_bytes: int, prices: Prices = PRICES) -> None:
        """One EMF document a function printed: a log event CloudWatch Logs ingests."""
        with self._lock:
            self._usage.metric_log_bytes += event_bytes + prices.log_event_overhead_bytes

    def usage(self) -> Usage:
        """A snapshot; open connections count up to now."""
        with self._lock:
            now = self._clock()
            snapshot = Usage(
                **{f.name: _copy(getattr(self._usage, f.name)) for f in dataclasses.fields(Usage)}
            )
            snapshot.connection_seconds += sum(now - opened for opened in self._open.values())
            return snapshot


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


@dataclass(frozen=True)
class Bill:
    """Dollars per line of the AWS bill."""

    lines: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.lines.values())

    def per(self, count: float, scale: float = 1_000_000) -> Bill:
        """The same bill for `scale` of something `count` of which were measured."""
        factor = scale / count if count else 0.0
        return Bill({name: dollars * factor for name, dollars in self.lines.items()})


def price(usage: Usage, prices: Prices = PRICES, *, connection_minutes: bool = True) -> Bill:
    """What `usage` costs at list prices (connection minutes optional: they depend on how
    long clients stay connected, not on the messages)."""
    lines = {
        "DynamoDB writes": sum(usage.write_units.values()) * prices.dynamodb_write_unit,
        "DynamoDB reads": usage.total_read_units() * prices.dynamodb_read_unit,
        "API Gateway HTTP": usage.http_requests.get("units", 0) * prices.http_api_request,
        "API Gateway WebSocket": (
            usage.websocket_messages.get("in_units", 0)
            + usage.websocket_messages.get("out_units", 0)
        )
        * prices.websocket_message,
        "Lambda requests": sum(usage.lambda_invocations.values()) * prices.lambda_request,
        "Lambda duration": sum(usage.lambda_gb_seconds.values()) * prices.lambda_gb_second,
        "KMS": usage.count("kms") * prices.kms_request,
        "CloudWatch Logs (EMF metrics)": usage.metric_log_bytes / GIB * prices.cloudwatch_logs_gb,
    }
    if connection_minutes:
        lines["API Gateway connection minutes"] = (
            usage.connection_seconds / 60 * prices.websocket_connection_minute
        )
    return Bill(lines)


@dataclass(frozen=True)
class SqsWork:
    """The same work done with SQS (and SNS for a topic): what it bills."""

    requests: int
    dollars: float


def sqs_reference(
    messages: int,
    body_bytes: int,
    *,
    batch: int = 1,
    fifo: bool = False,
    subscribers: int = 0,
    prices: Prices = PRICES,
) -> SqsWork:
    """SQS's bill to send, receive and delete `messages` bodies of `body_bytes`, `batch` per
    request (at most 10); a topic (`subscribers` > 0) publishes once to SNS, which delivers
    to each subscriber's queue for free, and each queue receives and deletes."""
    batch = min(max(1, batch), prices.sqs_batch)
    batches = math.ceil(messages / batch)
    payload_requests = max(1, math.ceil(body_bytes * batch / prices.sqs_request_bytes))
    per_request = prices.sqs_fifo_request if fifo else prices.sqs_standard_request
    consume = batches * (payload_requests + 1)  # receive (the payload) + delete
    if subscribers:
        publish = batches * payload_requests
        requests = publish + subscribers * consume
        dollars = publish * prices.sns_publish_request + subscribers * consume * per_request
        return SqsWork(requests, dollars)
    requests = batches * payload_requests + consume
    return SqsWork(requests, requests * per_request)
