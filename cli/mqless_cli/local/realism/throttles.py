"""Throttles: DynamoDB per-partition limits over a sliding second, and a share of DynamoDB and
KMS requests throttled whatever the load, answered before moto sees the request."""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mqless_cli.billing.dynamodb import Capacity, item_size, query_read
from mqless_cli.billing.moto_observer import (
    _charges,
    _schema,
    _touched,
    body_text,
    dynamodb_backend,
)
from mqless_cli.local.realism.settings import Realism, RealismReport

log = logging.getLogger(__name__)


_WRITES = frozenset(("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"))
_READS = frozenset(("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"))
_KMS_THROTTLED = (
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
)


class PartitionThroughput:
    """Units each partition key consumed over the last second, table and index apart."""

    def __init__(self, write_limit: float, read_limit: float) -> None:
        self.write_limit = write_limit
        self.read_limit = read_limit
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str | None, str], deque[tuple[float, float, float]]] = (
            defaultdict(deque)
        )

    def record_dynamodb(
        self, operation: str, charges: Sequence[Capacity], *, failed_conditions: int = 0
    ) -> None:
        """What a request consumed."""
        now = time.monotonic()
        with self._lock:
            for charge in charges:
                key = (charge.table, charge.index, charge.partition)
                self._used[key].append((now, charge.write_units, charge.read_units))

    def over(self, keys: Sequence[tuple[str, str | None, str]], *, write: bool) -> bool:
        """Whether any of these partitions has used its second's worth already."""
        now = time.monotonic()
        limit = self.write_limit if write else self.read_limit
        with self._lock:
            for key in keys:
                used = self._used.get(key)
                if not used:
                    continue
                while used and used[0][0] < now - 1.0:
                    used.popleft()
                total = sum(w if write else r for _, w, r in used)
                if total >= limit:
                    return True
        return False


def _error(type_name: str, message: str, **extra: Any) -> tuple[int, dict[str, str], str]:
    body = json.dumps({"__type": type_name, "message": message, **extra})
    return 400, {"Content-Type": "application/x-amz-json-1.0"}, body


def _partitions(backend: Any, operation: str, params: dict[str, Any], touched: Any) -> list[Any]:
    """The (table, index, partition key value) a request touches, as the meter names them."""
    if operation == "Query":
        found = _query_partition(backend, params)
        return [found] if found is not None else []
    return [(t.schema.name, None, t.schema.partition(t.key)) for t in touched]


def _consumed(
    backend: Any, operation: str, params: dict[str, Any], touched: Any, result: Any
) -> list[Capacity]:
    """What an answered request consumed, as the bill counts it; a Query by the items it
    returned (the bill's own capture of what moto read is not re-entrant)."""
    if result is None:
        return []
    status, _, body = result
    if operation == "Query":
        found = _query_partition(backend, params)
        schema = _schema(backend, params.get("TableName", ""))
        if found is None or schema is None or not 200 <= int(status) < 300:
            return []
        items = json.loads(body_text(body) or "{}").get("Items", [])
        consistent = bool(params.get("ConsistentRead"))
        _, index, partition = found
        return [
            query_read(
                schema, index, partition, [item_size(i) for i in items], consistent=consistent
            )
        ]
    if operation == "Scan":
        return []
    charges, _ = _charges(backend, operation, params, touched, [], status, body)
    return charges


_EQUALS = re.compile(r"([#\w.]+)\s*=\s*(:\w+)")


def _query_partition(backend: Any, params: dict[str, Any]) -> Any:
    table = params.get("TableName", "")
    schema = _schema(backend, table)
    if schema is None:
        return None
    index = params.get("IndexName")
    hash_key = schema.index(index).hash_key if index else schema.hash_key
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    for name, placeholder in _EQUALS.findall(params.get("KeyConditionExpression", "")):
        if names.get(name, name) == hash_key and placeholder in values:
            value = values[placeholder]
            return (table, index, str(next(iter(value.values()))))
    return None


@contextmanager
def faulty_aws(realism: Realism, report: RealismReport) -> Iterator[None]:
    """While the block runs, in-process moto throttles as `realism` says."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    throttles = _Throttles(realism, report)

    def process_request(self: Any, request: Any) -> Any:
        return throttles.answer(request, lambda: original(self, request))

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        if BotocoreStubber.process_request is process_request:
            BotocoreStubber.process_request = original  # type: ignore[method-assign]


class _Throttles:
    """Decides, request by request, whether AWS would have throttled it."""

    def __init__(self, realism: Realism, report: RealismReport) -> None:
        self._realism = realism
        self._report = report
        self._throughput = PartitionThroughput(realism.partition_wcu, realism.partition_rcu)
        self._draw = random.Random(realism.seed)
        self._draw_lock = threading.Lock()

    def _chance(self, rate: float) -> bool:
        with self._draw_lock:
            return self._draw.random() < rate

    def answer(self, request: Any, send: Callable[[], Any]) -> Any:
        """A throttling error where AWS would give one; otherwise what `send()` answers."""
        realism = self._realism
        prefix, _, operation = body_text(request.headers.get("X-Amz-Target")).partition(".")
        if prefix == "TrentService":
            if realism.kms_throttle and self._chance(realism.kms_throttle):
                self._report.count("kms_throttled")
                return _error("ThrottlingException", _KMS_THROTTLED)
            return send()
        if prefix != "DynamoDB_20120810":
            return send()
        if realism.dynamodb_throttle and self._chance(realism.dynamodb_throttle):
            self._report.count("throttled_anyway")
            return _error(
                "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "Throughput exceeds the current throughput limit for your account.",
            )
        write = operation in _WRITES
        if not realism.throttle or (not write and operation not in _READS):
            return send()
        return self._within_partition_limits(request, operation, write, send)

    def _within_partition_limits(
        self, request: Any, operation: str, write: bool, send: Callable[[], Any]
    ) -> Any:
        """Throttle a request whose partitions used their second's units; count what it used."""
        params = json.loads(body_text(request.body) or "{}")
        backend = dynamodb_backend(request)
        touched = [] if operation in ("Query", "Scan") else _touched(backend, operation, params)
        if self._throughput.over(_partitions(backend, operation, params, touched), write=write):
            self._report.count("throttled_writes" if write else "throttled_reads")
            kind = "Write" if write else "Read"
            return _error(
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "Throughput exceeds the current capacity for one or more partitions of your "
                "table or index.",
                ThrottlingReasons=[{"reason": f"Table{kind}KeyRangeThroughputExceeded"}],
            )
        result = send()
        self._throughput.record_dynamodb(
            operation, _consumed(backend, operation, params, touched, result)
        )
        return result
