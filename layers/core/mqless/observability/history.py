"""Rates and depth over the last hour, and totals, read back from CloudWatch.

The functions already count what happens to each queue and topic in EMF documents
(observability.py): CloudWatch turns those log lines into metrics at no request cost, and
the sweeper adds each queue's depth once a minute. This module reads them with
GetMetricData (one request for every series of a view), so the console's charts cost
nothing per message: only the read, about $0.01 per 1,000 series fetched.

`mqless dev` feeds the same EMF documents to its moto CloudWatch (mqless_cli.local), so
this code reads the same figures there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from mqless.domain import names
from mqless.domain.access.principals import EVERY_DESTINATION, Action, Policy, Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest
from mqless.domain.topics.patterns import validate_topic_name
from mqless.observability import NAMESPACE
from mqless.storage.destinations import QueueRegistry

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

PERIOD_S: Final = 60
WINDOW_S: Final = 3600
SERVICE: Final = "mqless"  # Powertools' `service` dimension on every document
# CloudWatch keeps 1-hour data points 455 days: totals reach back that far at most
RETENTION_S: Final = 455 * 86400
# a topic has no creation time: its totals (and the overall ones) cover the last 15 days,
# as long as CloudWatch keeps 1-minute data
RECENT_S: Final = 15 * 86400
MAX_TOPICS: Final = 100
MAX_SOURCES: Final = 20  # a dead-letter queue's sources whose dead letters it counts
# series name -> (metric, statistic); counters are summed per minute, depth is a level
COUNTERS: Final = {
    "sent": "Sent",
    "delivered": "Delivered",
    "acked": "Acked",
    "dead_lettered": "DeadLettered",
}
DEPTH: Final = "Depth"


class Totals(BaseModel):
    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True)

    sent: int
    delivered: int
    acked: int
    dead_lettered: int


class History(BaseModel):
    """A queue's, a topic's or every destination's figures, minute by minute."""

    model_config = ConfigDict(defer_build=True)

    queue: str | None = None
    topic: str | None = None
    period_seconds: int = Field(description="Each point covers this many seconds.")
    timestamps: list[int] = Field(description="Start of each point (epoch ms), oldest first.")
    rates: dict[str, list[float]] = Field(
        description="Per second, averaged over each point: sent (enqueued; on a dead-letter "
        "queue, the dead letters arriving too), delivered (dequeued), acked, dead_lettered."
    )
    depth: list[int | None] = Field(
        description="Messages held (visible + in flight + delayed) as the sweeper measured "
        "them, each minute; null where it did not measure (topics: always null)."
    )
    totals: Totals
    totals_since: int = Field(
        description="Epoch ms the totals count from: the queue's creation (at most 455 days "
        "back, CloudWatch's retention), else 15 days back."
    )
    dead_letters_from: list[str] = Field(
        default_factory=list,
        description="The queues whose dead letters this one receives (counted as sent).",
    )
    topics: dict[str, int] = Field(
        default_factory=dict,
        description="Overall view only: messages published to each topic since "
        "totals_since (the first 100 topics the caller administers).",
    )


class HistoryService:
    """Reads the functions' own metrics back for the console and `GET /history`."""

    def __init__(
        self,
        cloudwatch: CloudWatchClient,
        registry: QueueRegistry,
        policy: Policy,
        clock: Clock,
    ) -> None:
        self._cloudwatch = cloudwatch
        self._registry = registry
        self._policy = policy
        self._clock = clock

    def history(
        self, principal: Principal, *, queue: str | None = None, topic: str | None = None
    ) -> History:
        """The last hour per minute, and totals, of a queue, a topic or (neither) the broker."""
        if queue is not None and topic is not None:
            raise InvalidRequest("ask for a queue's history or a topic's, not both")
        now_ms = self._clock.now_ms()
        # the last hour of whole minutes, this (partial) minute included
        end_s = (now_ms // 1000 // PERIOD_S + 1) * PERIOD_S
        since_ms, dimensions, sources = self._scope(principal, queue, topic, now_ms)
        # the totals: one data point covering [since, end), in whole hours (what CloudWatch
        # asks of periods that reach past 63 days)
        span_s = max(3600, -(-(end_s - since_ms // 1000) // 3600) * 3600)
        topic_names = self._topics(principal) if queue is None and topic is None else []
        queries = _queries(dimensions, sources, topic_names, span_s)
        hourly = self._fetch(queries, end_s - WINDOW_S, end_s, PERIOD_S)
        totals = self._fetch(
            [q for q in queries if q["MetricStat"]["Period"] == span_s],
            end_s - span_s,
            end_s,
            span_s,
        )
        starts = list(range(end_s - WINDOW_S, end_s, PERIOD_S))
        arriving = ["r_sent", *(f"rd_{n}" for n in range(len(sources)))]

        def per_minute(key: str, start: int) -> float:
            ids = arriving if key == "sent" else [f"r_{key}"]
            return sum(hourly.get(i, {}).get(start, 0.0) for i in ids)

        rates = {key: [round(per_minute(key, t) / PERIOD_S, 3) for t in starts] for key in COUNTERS}
        depth_points = hourly.get("depth", {})
        depth = [int(depth_points[t]) if t in depth_points else None for t in starts]
        counted = {key: sum(totals.get(f"t_{key}", {}).values()) for key in COUNTERS}
        counted["sent"] += sum(sum(totals.get(f"td_{n}", {}).values()) for n in range(len(sources)))
        return History(
            queue=queue,
            topic=topic,
            period_seconds=PERIOD_S,
            timestamps=[t * 1000 for t in starts],
            rates=rates,
            depth=depth,
            totals=Totals(**{key: int(value) for key, value in counted.items()}),
            dead_letters_from=sources,
            # a queue's creation; else the start of the span (data before it is none)
            totals_since=since_ms if queue is not None else (end_s - span_s) * 1000,
            topics={
                name: int(sum(totals.get(f"p_{n}", {}).values()))
                for n, name in enumerate(topic_names)
            },
        )

    def _scope(
        self, principal: Principal, queue: str | None, topic: str | None, now_ms: int
    ) -> tuple[int, list[dict[str, str]], list[str]]:
        """Check that `principal` administers what it asks about; since when its figures
        count, the metric dimensions that select it, and (a dead-letter queue) its sources."""
        since_ms = now_ms - RECENT_S * 1000
        dimensions: list[dict[str, str]] = []
        sources: list[str] = []
        if queue is not None:
            names.validate_queue_name(queue)
            self._policy.check(principal, Action.ADMIN, queue)
            config = self._registry.get(queue)  # NotFound: no such queue
            since_ms = max(config.created_at, now_ms - RETENTION_S * 1000)
            dimensions = [{"Name": "Queue", "Value": queue}]
            # dead letters arrive without a send: a dead-letter queue's enqueued figures are
            # its sources' DeadLettered counts added to its own
            sources = [c.name for c in self._registry.list() if c.dead_letter_queue == queue]
            sources = sources[:MAX_SOURCES]
        elif topic is not None:
            validate_topic_name(topic)
            self._policy.check(principal, Action.ADMIN, topic)
            dimensions = [{"Name": "Topic", "Value": topic}]
        else:
            self._policy.check(principal, Action.ADMIN, EVERY_DESTINATION)
        dimensions.append({"Name": "service", "Value": SERVICE})
        return since_ms, dimensions, sources

    def _topics(self, principal: Principal) -> list[str]:
        """Topics with a `Sent` metric (published to) that the caller administers."""
        found: set[str] = set()
        paginator = self._cloudwatch.get_paginator("list_metrics")
        pages = paginator.paginate(
            Namespace=NAMESPACE, MetricName="Sent", Dimensions=[{"Name": "Topic"}]
        )
        for page in pages:
            for metric in page.get("Metrics", []):
                for dimension in metric.get("Dimensions", []):
                    if dimension.get("Name") == "Topic" and dimension.get("Value"):
                        found.add(dimension["Value"])
        allowed = [t for t in sorted(found) if self._policy.permits(principal, Action.ADMIN, t)]
        return allowed[:MAX_TOPICS]

    def _fetch(
        self, queries: Sequence[Mapping[str, Any]], start_s: int, end_s: int, period_s: int
    ) -> dict[str, dict[int, float]]:
        """Each query's points by their start (epoch s); only those of `period_s`."""
        wanted = [q for q in queries if q["MetricStat"]["Period"] == period_s]
        found: dict[str, dict[int, float]] = {}
        for chunk in range(0, len(wanted), 500):  # GetMetricData takes 500 queries a call
            request: dict[str, Any] = {
                "MetricDataQueries": wanted[chunk : chunk + 500],
                "StartTime": datetime.fromtimestamp(start_s, UTC),
                "EndTime": datetime.fromtimestamp(end_s, UTC),
                "ScanBy": "TimestampAscending",
            }
            while True:
                page = self._cloudwatch.get_metric_data(**request)
                for result in page.get("MetricDataResults", []):
                    points = found.setdefault(result["Id"], {})
                    for when, value in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=False
                    ):
                        start = int(when.timestamp()) // period_s * period_s
                        points[start] = points.get(start, 0.0) + float(value)
                token = page.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        return found


def _queries(
    dimensions: list[dict[str, str]], sources: list[str], topic_names: list[str], span_s: int
) -> list[dict[str, Any]]:
    """The metric queries of a history: per minute (`r_`, `rd_`, depth) and over the whole
    span (`t_`, `td_`, `p_`), for the destination, its dead-letter sources and the topics."""
    queries: list[dict[str, Any]] = []
    for key, metric in COUNTERS.items():
        queries.append(_query(f"r_{key}", metric, dimensions, PERIOD_S, "Sum"))
        queries.append(_query(f"t_{key}", metric, dimensions, span_s, "Sum"))
    queries.append(_query("depth", DEPTH, dimensions, PERIOD_S, "Maximum"))
    for n, source in enumerate(sources):
        source_dims = [
            {"Name": "Queue", "Value": source},
            {"Name": "service", "Value": SERVICE},
        ]
        queries.append(_query(f"rd_{n}", "DeadLettered", source_dims, PERIOD_S, "Sum"))
        queries.append(_query(f"td_{n}", "DeadLettered", source_dims, span_s, "Sum"))
    for n, name in enumerate(topic_names):
        topic_dims = [{"Name": "Topic", "Value": name}, {"Name": "service", "Value": SERVICE}]
        queries.append(_query(f"p_{n}", "Sent", topic_dims, span_s, "Sum"))
    return queries


def _query(
    query_id: str, metric: str, dimensions: list[dict[str, str]], period_s: int, stat: str
) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
            "Period": period_s,
            "Stat": stat,
        },
        "ReturnData": True,
    }
