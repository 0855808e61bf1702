"""CloudWatch's part of EMF under `mqless dev`: the functions' metric documents become
metrics in moto's CloudWatch, so GET /history reads the same figures as on AWS.

On AWS, CloudWatch Logs extracts the metrics from the EMF log lines the functions print:
no PutMetricData request is made or billed. This does the same by handing each document
to moto's CloudWatch backend directly, not through a boto3 client, so that the live bill
(which observes every request moto serves) counts no request either.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

Series = tuple[str, str, str, list[tuple[str, str]], list[float]]
"""One metric of an EMF document: (namespace, name, unit, dimensions as (name, value) pairs,
its values)."""


def emf_series(document: Mapping[str, Any]) -> Iterator[Series]:
    """Each metric an EMF document holds, by EMF's rules: every dimension set of a
    directive is a metric of its own; a metric's value is a number or a list of them."""
    for directive in (document.get("_aws") or {}).get("CloudWatchMetrics") or []:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str):
            continue
        measured: list[tuple[str, str, list[float]]] = []  # (name, unit, values)
        for metric in directive.get("Metrics") or []:
            name = metric.get("Name")
            value = document.get(name)
            values = value if isinstance(value, list) else [value]
            numbers = [float(v) for v in values if isinstance(v, int | float)]
            if numbers:
                measured.append((name, metric.get("Unit", "None"), numbers))
        for dimension_set in directive.get("Dimensions") or [[]]:
            dimensions = [(name, str(document[name])) for name in dimension_set if name in document]
            for name, unit, numbers in measured:
                yield namespace, name, unit, dimensions, numbers


def emf_metric_data(document: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(namespace, PutMetricData-shaped entries) of an EMF document's metrics (`emf_series`)."""
    millis = (document.get("_aws") or {}).get("Timestamp")
    # moto keeps naive UTC datetimes
    when = (
        datetime.fromtimestamp(millis / 1000, UTC).replace(tzinfo=None)
        if isinstance(millis, int | float)
        else None
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for namespace, name, unit, dimensions, numbers in emf_series(document):
        entry: dict[str, Any] = {
            "MetricName": name,
            "Values": numbers,
            "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions],
            "Unit": unit,
        }
        if when is not None:
            entry["Timestamp"] = when
        found.setdefault(namespace, []).append(entry)
    return list(found.items())


class EmfToCloudWatch:
    """Feeds EMF documents to moto's CloudWatch in this process (started by LocalCloud).

    Values are kept as one statistic set per metric and minute (what CloudWatch stores at
    one-minute resolution), not one data point per document: moto's GetMetricData scans
    every point it holds for every period it answers, and a busy `mqless dev` would
    otherwise make each chart refresh slower than the last.
    """

    def __init__(self, account_id: str, region: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        self._backend = cloudwatch_backends[account_id][region]
        self._lock = threading.Lock()
        self._minutes: dict[tuple[str, str, tuple[tuple[str, str], ...], str, datetime], Any] = {}

    @classmethod
    def in_this_process(cls) -> EmfToCloudWatch:
        """The CloudWatch of the moto that LocalCloud started (its account and region)."""
        from moto.core.models import DEFAULT_ACCOUNT_ID

        from mqless_cli.local.cloud import REGION

        return cls(DEFAULT_ACCOUNT_ID, REGION)

    def __call__(self, document: Mapping[str, Any]) -> None:
        """Add a document's values (`emf_series`): every document of every invocation passes
        here, so no PutMetricData entries are built for values only added up."""
        aws = document.get("_aws") or {}
        millis = aws.get("Timestamp")
        # the minute it falls in (moto keeps naive UTC datetimes); none: the current one
        minute = (
            _EPOCH + timedelta(minutes=millis // 60_000)
            if isinstance(millis, int | float)
            else datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
        )
        with self._lock:
            for namespace, name, unit, dimensions, numbers in emf_series(document):
                key = (namespace, name, tuple(sorted(dimensions)), unit, minute)
                self._add(key, dimensions, numbers)

    def _add(
        self,
        key: tuple[str, str, tuple[tuple[str, str], ...], str, datetime],
        dimensions: list[tuple[str, str]],
        values: list[float],
    ) -> None:
        """Values of a metric (namespace, name, sorted dimensions, unit, minute)."""
        namespace, name, _, unit, minute = key
        found = self._minutes.get(key)
        if found is not None:
            found.sum += sum(values)
            found.min = min(found.min, *values)
            found.max = max(found.max, *values)
            found.sample_count += len(values)
            return
        statistics = {
            "Sum": sum(values),
            "Minimum": min(values),
            "Maximum": max(values),
            "SampleCount": len(values),
        }
        self._backend.put_metric_data(
            namespace,
            [
                {
                    "MetricName": name,
                    "StatisticValues": statistics,
                    "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions],
                    "Unit": unit,
                    "Timestamp": minute,
                }
            ],
        )
        self._minutes[key] = self._backend.metric_data[-1]
        # only the current minutes are added to: forget older ones' handles
        for old in [k for k in self._minutes if k[-1] < minute - timedelta(minutes=2)]:
            del self._minutes[old]


_EPOCH: Final = datetime(1970, 1, 1)
