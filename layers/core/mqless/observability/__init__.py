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
  one per message. Powertools' EMF provider builds and serializes each document; under
  `mqless dev` the document and its line are handed over in-process (`hand_emf_over`),
  not printed and parsed back.
- `audit`: a structured `audit` log event for every administrative action: who, what,
  on which destination, when.
- `instrumented`: the decorator every handler wears.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
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
            return 0
        documents = _Documents(self._namespace)
        documents.add_counts(counts)
        documents.add_gauges(gauges)
        documents.add_latencies(latencies)
        return documents.flush()


class _Documents:
    """The EMF documents of one flush: one per destination, and one of the service's totals.

    Counters and latencies go in one document per destination whose second dimension set
    (service alone) makes CloudWatch count them in the totals too, so no document of totals
    repeats them; gauges go in documents of their own, as their total is their sum (one
    value), not each queue's level.
    """

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._by_destination: dict[tuple[str, str, bool], EphemeralMetrics] = {}
        # made when first needed: most flushes (one queue's counters) have no totals document,
        # and a Powertools provider costs more to build than the rest of such a flush
        self._totals: EphemeralMetrics | None = None

    @property
    def _total(self) -> EphemeralMetrics:
        if self._totals is None:
            self._totals = _PROVIDERS.take(self._namespace)
        return self._totals

    def _of(self, kind: str, destination: str, *, counted: bool) -> EphemeralMetrics:
        found = self._by_destination.get((kind, destination, counted))
        if found is None:
            found = _PROVIDERS.take(self._namespace)
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
        every = [*self._by_destination.values(), *([self._totals] if self._totals else [])]
        documents = [m for m in every if m.metric_set]
        if not is_metrics_disabled():
            for metrics in documents:
                # as Powertools' flush_metrics writes it, but handed over under `mqless dev`
                document = cast(dict[str, Any], metrics.serialize_metric_set())
                _write(document, json.dumps(document, separators=(",", ":")))
        _PROVIDERS.give_back(self._namespace, every)
        return len(documents)


EmfHandOver = Callable[[dict[str, Any], str], None]
_hand_over: EmfHandOver | None = None


def hand_emf_over(to: EmfHandOver | None) -> EmfHandOver | None:
    """`mqless dev`'s hook: each EMF document a flush writes, and the line it is printed as
    on AWS, is handed to `to` in this process instead of printed (None: printed, as on
    AWS); returns the hook it replaces, to be put back.

    The dev runtime feeds its CloudWatch and its bill from them: printing the line only to
    parse it back cost more than writing it. (A document Powertools prints by itself, once
    a metric holds 100 values, is printed and read back as before.)
    """
    global _hand_over
    previous, _hand_over = _hand_over, to
    return previous


def _write(document: dict[str, Any], line: str) -> None:
    to = _hand_over
    if to is None:
        print(line)  # what Powertools' flush_metrics prints: CloudWatch extracts the metrics
    else:
        to(document, line)


class _Providers:
    """Powertools providers, blank, kept per thread for the next flush: every invocation
    flushes, and building a provider costs more than the rest of a one-queue flush."""

    _KEPT: Final = 16

    def __init__(self) -> None:
        self._idle = threading.local()

    def _pool(self, namespace: str) -> list[EphemeralMetrics]:
        pools: dict[str, list[EphemeralMetrics]] | None = getattr(self._idle, "pools", None)
        if pools is None:
            pools = self._idle.pools = {}
        return pools.setdefault(namespace, [])

    def take(self, namespace: str) -> EphemeralMetrics:
        pool = self._pool(namespace)
        return pool.pop() if pool else EphemeralMetrics(namespace=namespace, service="mqless")

    def give_back(self, namespace: str, providers: list[EphemeralMetrics]) -> None:
        pool = self._pool(namespace)
        for provider in providers[: max(0, self._KEPT - len(pool))]:
            provider.clear_metrics()  # written or not (metrics disabled), it goes back blank
            pool.append(provider)


_PROVIDERS = _Providers()


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
