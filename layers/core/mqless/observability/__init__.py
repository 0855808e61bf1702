"""Logs, traces, metrics and audit events, one set for every function.

- `logger`: Powertools Logger, structured JSON; handlers add the correlation ids
  (request id, connection id) and the core logs message ids with what it does.
- `tracer`: Powertools Tracer (X-Ray, active tracing in template.yaml); it switches itself
  off outside Lambda (tests, `mqless dev`). Traces record timings and AWS calls, never
  what a handler returns or raises: responses carry issued API keys and decrypted
  bodies, which must not leave the customer managed key for X-Ray.
- `metrics`: per-destination counters, flushed once per invocation as CloudWatch EMF
  (namespace "mqless"), and gauges the sweeper measures (each queue's depth, and
  dead-letter queues' again as DeadLetterDepth). Counters and latencies: one document per
  destination with two dimension sets, `Queue` (or `Topic`) with `service`, and `service`
  alone, so CloudWatch extracts both the destination's metric and the total (which the
  template's alarms and dashboard read) from one log line; the totals' own document holds
  only the gauges' sums and counters of no destination. CloudWatch Logs bills the bytes
  ingested ($0.50/GB): a document of totals beside each destination's doubled them.
  Counting in memory and flushing once keeps a busy invocation to a few log lines, not
  one per message.
- `audit`: a structured `audit` log event for every administrative action: who, what,
  on which destination, when.
- `instrumented`: the decorator every handler wears.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from mqless.domain.clock import SystemClock

logger = Logger(service="mqless")
# botocore alone: every AWS call the core makes goes through it, and patching everything the
# X-Ray SDK knows imports each of those libraries that is installed (requests, httpx,
# sqlite3, ...) into every cold start for nothing
tracer = Tracer(service="mqless", patch_modules=("botocore",))

NAMESPACE: Final = "mqless"
COUNTS: Final = frozenset(
    {
        "Sent",
        "Delivered",
        "Acked",
        "Nacked",
        "Redelivered",
        "DeadLettered",
        "Undeliverable",
        "Expired",
        "Connections",
    }
)
LATENCY: Final = "PublishToDeliverLatency"
# levels measured now (last value wins): every queue's depth, and dead-letter queues' again
# under their own name (the alarm reads it)
GAUGES: Final = frozenset({"Depth", "DeadLetterDepth"})
_FLUSH_AT: Final = 90  # distinct (destination, metric) entries held before a flush

Handler = TypeVar("Handler", bound=Callable[..., Any])


class DestinationMetrics:
    """Counts and latencies per destination, held until `flush` writes them as EMF."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self._namespace = namespace
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], float] = {}
        self._latencies: dict[tuple[str, str], list[float]] = {}
        self._gauges: dict[tuple[str, str, str], float] = {}
        self._idle = _IdleDocuments(namespace)

    def gauge(self, name: str, value: float, *, queue: str) -> None:
        """Record a level (a dead-letter queue's depth, say) as measured now."""
        if name not in GAUGES:
            raise ValueError(f"unknown gauge {name!r}")
        with self._lock:
            self._gauges[("Queue", queue, name)] = value

    def count(
        self, name: str, *, queue: str | None = None, topic: str | None = None, value: float = 1
    ) -> None:
        """Add to a counter of a queue (or topic); `Connections` may have neither."""
        if name not in COUNTS:
            raise ValueError(f"unknown metric {name!r}")
        kind, destination = _dimension(queue, topic)
        with self._lock:
            key = (kind, destination, name)
            self._counts[key] = self._counts.get(key, 0) + value
            full = len(self._counts) >= _FLUSH_AT
        if full:
            self.flush()

    def latency(
        self, milliseconds: float, *, queue: str | None = None, topic: str | None = None
    ) -> None:
        """Record a publish-to-deliver latency."""
        kind, destination = _dimension(queue, topic)
        with self._lock:
            self._latencies.setdefault((kind, destination), []).append(max(0.0, milliseconds))

    def snapshot(self) -> dict[tuple[str, str, str], float]:
        """The counters not yet flushed (what tests look at)."""
        with self._lock:
            return dict(self._counts)

    def flush(self) -> int:
        """Write what was recorded as EMF log lines; returns how many documents."""
        with self._lock:
            counts, self._counts = self._counts, {}
            latencies, self._latencies = self._latencies, {}
            gauges, self._gauges = self._gauges, {}
        if not counts and not latencies and not gauges:
            return 0
        documents = _Documents(self._idle)
        try:
            documents.add_counts(counts)
            documents.add_gauges(gauges)
            documents.add_latencies(latencies)
            return documents.flush()
        finally:
            documents.give_back()


class _IdleDocuments:
    """EMF documents (Powertools `EphemeralMetrics`) written and cleared, for the next flush.

    A new one costs ~70 µs (Powertools lists its unit and resolution enums for each), and a
    flush, one per invocation, needs one per destination: a cleared one is the same as new
    (no metrics, no dimensions, the same namespace and service).
    """

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._idle: list[EphemeralMetrics] = []

    def take(self) -> EphemeralMetrics:
        try:
            return self._idle.pop()  # atomic: flushes run on many threads in `mqless dev`
        except IndexError:
            return EphemeralMetrics(namespace=self._namespace, service="mqless")

    def give_back(self, document: EphemeralMetrics) -> None:
        document.clear_metrics()
        self._idle.append(document)


class _Documents:
    """The EMF documents of one flush: one per destination, and one of the service's totals.

    Counters and latencies go in one document per destination whose second dimension set
    (service alone) makes CloudWatch count them in the totals too, so no document of totals
    repeats them; gauges go in documents of their own, as their total is their sum (one
    value), not each queue's level.
    """

    def __init__(self, idle: _IdleDocuments) -> None:
        self._idle = idle
        self._by_destination: dict[tuple[str, str, bool], EphemeralMetrics] = {}
        self._total = idle.take()

    def _of(self, kind: str, destination: str, *, counted: bool) -> EphemeralMetrics:
        found = self._by_destination.get((kind, destination, counted))
        if found is None:
            found = self._idle.take()
            found.add_dimension(name=kind, value=destination)
            if counted:
                found.add_dimensions(service="mqless")
            self._by_destination[(kind, destination, counted)] = found
        return found

    def add_counts(self, counts: dict[tuple[str, str, str], float]) -> None:
        for (kind, destination, name), value in sorted(counts.items()):
            if destination:
                self._of(kind, destination, counted=True).add_metric(
                    name=name, unit=MetricUnit.Count, value=value
                )
            else:  # counted for the service alone (Connections)
                self._total.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def add_gauges(self, gauges: dict[tuple[str, str, str], float]) -> None:
        totals: dict[str, float] = {}
        for (kind, destination, name), value in sorted(gauges.items()):
            self._of(kind, destination, counted=False).add_metric(
                name=name, unit=MetricUnit.Count, value=value
            )
            totals[name] = totals.get(name, 0) + value  # all of them together
        for name, value in sorted(totals.items()):
            self._total.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def add_latencies(self, latencies: dict[tuple[str, str], list[float]]) -> None:
        for (kind, destination), values in sorted(latencies.items()):
            for value in values[:100]:  # EMF holds at most 100 values per metric
                self._of(kind, destination, counted=True).add_metric(
                    name=LATENCY, unit=MetricUnit.Milliseconds, value=value
                )

    def flush(self) -> int:
        # Powertools flushes a document by itself once a metric holds 100 values: those
        # left empty have nothing more to write
        documents = [m for m in [*self._by_destination.values(), self._total] if m.metric_set]
        for metrics in documents:
            metrics.flush_metrics()
        return len(documents)

    def give_back(self) -> None:
        """Hand every document of this flush back, cleared (written or not)."""
        for document in [*self._by_destination.values(), self._total]:
            self._idle.give_back(document)


def _dimension(queue: str | None, topic: str | None) -> tuple[str, str]:
    if queue is not None:
        return "Queue", queue
    if topic is not None:
        return "Topic", topic
    return "", ""


metrics = DestinationMetrics()


def audit(action: str, principal: str, destination: str | None = None, **details: Any) -> None:
    """Log an administrative action as a structured `audit` event."""
    logger.info(
        "audit",
        extra={
            "audit": {
                "action": action,
                "principal": principal,
                "destination": destination,
                "at": SystemClock().now_ms(),
                **details,
            }
        },
    )


def instrumented(*, correlation_id_path: str | None = None) -> Callable[[Handler], Handler]:
    """Logger context (and correlation id), X-Ray segment, and a metrics flush at the end."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                metrics.flush()

        # Powertools would store the response (tokens, bodies) and the exception as
        # segment metadata by default; template.yaml also sets the env vars to false.
        traced = tracer.capture_lambda_handler(run, capture_response=False, capture_error=False)
        wrapped = logger.inject_lambda_context(traced, correlation_id_path=correlation_id_path)
        return cast(Handler, wrapped)

    return wrap
