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
  one per message. The documents are written here, line for line as Powertools' EMF
  provider prints them; under `mqless dev` they are handed over in-process with their
  lines (`hand_emf_over`), not printed and parsed back.
- `audit`: a structured `audit` log event for every administrative action: who, what,
  on which destination, when.
- `instrumented`: the decorator every handler wears.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

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
            return 0  # most invocations of some functions (authorizer, sweeps of nothing)
        documents = _Documents(self._namespace)
        documents.add_counts(counts)
        documents.add_gauges(gauges)
        documents.add_latencies(latencies)
        return documents.write()


EmfHandOver = Callable[[dict[str, Any], str], None]
_hand_over: EmfHandOver | None = None


def hand_emf_over(to: EmfHandOver | None) -> EmfHandOver | None:
    """`mqless dev`'s hook: each EMF document, and the line it is printed as on AWS, is
    handed to `to` in this process instead of printed (None: printed again, as on AWS);
    returns the hook it replaces, to be put back.

    The dev runtime feeds its CloudWatch and its bill from them; printing the line only to
    parse it back cost more than writing it.
    """
    global _hand_over
    previous, _hand_over = _hand_over, to
    return previous


def _write(document: dict[str, Any], line: str) -> None:
    to = _hand_over
    if to is None:
        print(line)  # what Powertools prints: CloudWatch Logs extracts the metrics
    else:
        to(document, line)


class _Document:
    """One EMF document, laid out as Powertools' `serialize_metric_set` lays it out."""

    __slots__ = ("_dimensions", "_sets", "_metrics")

    def __init__(self, dimensions: dict[str, str], sets: list[list[str]]) -> None:
        self._dimensions = dimensions
        self._sets = sets
        self._metrics: dict[str, tuple[str, list[float]]] = {}  # name: (unit, values)

    def __bool__(self) -> bool:
        return bool(self._metrics)

    def add(self, name: str, unit: str, value: float) -> bool:
        """Add a value; whether the document is full (Powertools then prints it at once)."""
        found = self._metrics.get(name)
        if found is None:
            found = self._metrics[name] = (unit, [])
        found[1].append(float(value))
        return len(found[1]) == _EMF_MOST or len(self._metrics) == _EMF_MOST

    def take(self, namespace: str, timestamp: int) -> dict[str, Any]:
        """The EMF document, its metrics taken out of this one (its dimensions kept)."""
        metrics, self._metrics = self._metrics, {}
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": self._sets,
                        "Metrics": [
                            {"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()
                        ],
                    }
                ],
            },
            **self._dimensions,
        }
        for name, (_, values) in metrics.items():
            document[name] = values
        return document


_EMF_MOST: Final = 100  # metrics per document, and values per metric, EMF holds
_SERVICE: Final = {"service": "mqless"}
_COUNT: Final = MetricUnit.Count.value
_MILLISECONDS: Final = MetricUnit.Milliseconds.value


class _Documents:
    """The EMF documents of one flush: one per destination, and one of the service's totals.

    Counters and latencies go in one document per destination whose second dimension set
    (service alone) makes CloudWatch count them in the totals too, so no document of totals
    repeats them; gauges go in documents of their own, as their total is their sum (one
    value), not each queue's level.

    Written here, not through Powertools' providers (building and serializing those was
    most of a flush's cost), to the byte as Powertools writes them: the same keys in the same
    order, each value a list of floats, one compact JSON line per document, in the same
    order; a document whose latencies reach 100 values is printed as Powertools prints it
    then, at once and with spaces, and not again.
    """

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._by_destination: dict[tuple[str, str, bool], _Document] = {}
        self._totals: _Document | None = None

    @property
    def _total(self) -> _Document:
        if self._totals is None:
            self._totals = _Document(dict(_SERVICE), [["service"]])
        return self._totals

    def _of(self, kind: str, destination: str, *, counted: bool) -> _Document:
        found = self._by_destination.get((kind, destination, counted))
        if found is None:
            sets = [[kind, "service"], ["service"]] if counted else [[kind, "service"]]
            found = _Document({kind: destination, **_SERVICE}, sets)
            self._by_destination[(kind, destination, counted)] = found
        return found

    def add_counts(self, counts: dict[tuple[str, str, str], float]) -> None:
        for (kind, destination, name), value in sorted(counts.items()):
            if destination:
                self._of(kind, destination, counted=True).add(name, _COUNT, value)
            else:  # counted for the service alone (Connections)
                self._total.add(name, _COUNT, value)

    def add_gauges(self, gauges: dict[tuple[str, str, str], float]) -> None:
        totals: dict[str, float] = {}
        for (kind, destination, name), value in sorted(gauges.items()):
            self._of(kind, destination, counted=False).add(name, _COUNT, value)
            totals[name] = totals.get(name, 0) + value  # all of them together
        for name, value in sorted(totals.items()):
            self._total.add(name, _COUNT, value)

    def add_latencies(self, latencies: dict[tuple[str, str], list[float]]) -> None:
        for (kind, destination), values in sorted(latencies.items()):
            document = self._of(kind, destination, counted=True)
            for value in values[:_EMF_MOST]:  # EMF holds at most 100 values per metric
                if document.add(LATENCY, _MILLISECONDS, value):
                    # Powertools prints a full document at once (with spaces, whether metrics
                    # are disabled or not), and goes on with it empty
                    full = document.take(self._namespace, _now_ms())
                    _write(full, json.dumps(full))

    def write(self) -> int:
        """Print (or hand over) every document left; how many."""
        every = [*self._by_destination.values(), *([self._totals] if self._totals else [])]
        documents = [d for d in every if d]
        if documents and not is_metrics_disabled():
            timestamp = _now_ms()
            for each in documents:
                document = each.take(self._namespace, timestamp)
                _write(document, json.dumps(document, separators=(",", ":")))
        return len(documents)


def _now_ms() -> int:
    return int(time.time() * 1000)


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

        @functools.wraps(handler)
        def maybe_traced(event: Any, context: Any) -> Any:
            # off outside Lambda (tests, `mqless dev`): its subsegment would record nothing
            return run(event, context) if tracer.disabled else traced(event, context)

        wrapped = logger.inject_lambda_context(
            maybe_traced, correlation_id_path=correlation_id_path
        )
        return cast(Handler, wrapped)

    return wrap
