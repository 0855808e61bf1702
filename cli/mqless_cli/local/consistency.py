"""moto with DynamoDB's eventually consistent reads: a read may return an item as it was
up to `max_lag_ms` ago.

moto answers every read with the current item, strongly consistent or not. DynamoDB does
not: "the responses may not reflect the results of a recently completed write operation"
(Developer Guide, "DynamoDB read consistency"); its FAQ used to put the bound at
"consistency across all copies of data is usually reached within a second". Code that
races on conditional writes after an eventually consistent read (competing receivers do)
therefore loses more races on AWS than under moto. `lagging_reads` brings that back for
benchmarks and tests: every write's image before it is kept for a while, and an
eventually consistent GetItem, BatchGetItem or Query is answered with each item as it was
at a moment drawn uniformly from the last `max_lag_ms` (each read its own moment, as each
read may reach another replica). Strongly consistent reads and all writes, conditions
included, see the current item, as on DynamoDB.

What it does not model: an item deleted since that moment is missing from a Query's
answer (it comes back for a GetItem), and a Query's `Limit` counts items as they are now.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mqless_cli.billing.moto_observer import body_text, dynamodb_backend

WireItem = dict[str, Any]
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
_READS = ("GetItem", "BatchGetItem", "Query")


@dataclass
class LagReport:
    """What the model did: reads it answered from the past, and how many of them found an
    item older than the current one."""

    reads: int = 0
    stale_items: int = 0


@dataclass
class _History:
    """Per item, (when, image before) of every write since `keep_ms` ago, oldest first."""

    keep_ms: float
    writes: dict[tuple[str, str], list[tuple[float, WireItem | None]]] = field(default_factory=dict)

    def note(self, key: tuple[str, str], at: float, before: WireItem | None) -> None:
        entries = self.writes.setdefault(key, [])
        entries.append((at, before))
        while entries and entries[0][0] < at - self.keep_ms:
            entries.pop(0)

    def as_of(self, key: tuple[str, str], moment: float, now: WireItem | None) -> WireItem | None:
        """The item as it was at `moment`: the image before the first write after it."""
        for at, before in self.writes.get(key, ()):
            if at > moment:
                return before
        return now


@contextmanager
def lagging_reads(max_lag_ms: float, *, seed: int | None = None) -> Iterator[LagReport]:
    """While the block runs, eventually consistent reads of in-process moto's DynamoDB may
    answer with items as they were up to `max_lag_ms` ago."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    history = _History(keep_ms=max_lag_ms + 1_000)
    report = LagReport()
    lock = threading.RLock()
    draw = random.Random(seed)

    def process_request(self: Any, request: Any) -> Any:
        operation = _dynamodb_operation(request)
        if operation is None or max_lag_ms <= 0:
            return original(self, request)
        params = json.loads(body_text(request.body) or "{}")
        with lock:
            if operation in _WRITES:
                backend = dynamodb_backend(request)
                named = [(k, _image(backend, k)) for k in _written_keys(backend, operation, params)]
                result = original(self, request)
                if result is not None and 200 <= int(result[0]) < 300:
                    at = _now_ms()
                    for key, before in named:
                        history.note(key, at, before)
                return result
            result = original(self, request)
            if operation not in _READS or result is None or not 200 <= int(result[0]) < 300:
                return result
            lag = draw.uniform(0, max_lag_ms)
            backend = dynamodb_backend(request)
            return _answer_from_the_past(result, backend, operation, params, history, lag, report)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        yield report
    finally:
        if BotocoreStubber.process_request is process_request:
            BotocoreStubber.process_request = original  # type: ignore[method-assign]


# ---- answering from the past ------------------------------------------------------------


def _answer_from_the_past(
    result: Any,
    backend: Any,
    operation: str,
    params: dict[str, Any],
    history: _History,
    lag_ms: float,
    report: LagReport,
) -> Any:
    """The answer an eventually consistent read gets `lag_ms` ago (a consistent one as is)."""
    if operation in ("GetItem", "Query") and params.get("ConsistentRead"):
        return result
    status, headers, body = result
    document = json.loads(body_text(body) or "{}")
    past = _Past(backend, history, _now_ms() - lag_ms, report)
    if operation == "GetItem":
        past.get_item(document, params)
    elif operation == "Query":
        past.query(document, params)
    else:
        past.batch_get_item(document, params)
    if not past.changed:
        return result
    text = json.dumps(document)
    headers = dict(headers)
    headers.pop("content-length", None)
    headers.pop("Content-Length", None)
    if "x-amz-crc32" in headers:  # botocore checks DynamoDB answers against it
        headers["x-amz-crc32"] = str(zlib.crc32(text.encode()))
    return status, headers, text


class _Past:
    """Rewrites a read's answer to what the table held at `moment` (ms)."""

    def __init__(self, backend: Any, history: _History, moment: float, report: LagReport) -> None:
        self._backend = backend
        self._history = history
        self._moment = moment
        self._report = report
        self.changed = False

    def _then(self, table: str, item: WireItem | None, key: WireItem) -> WireItem | None:
        then = self._history.as_of(_identity(self._backend, table, key), self._moment, item)
        if then is not item:
            self.changed = True
            self._report.stale_items += 1
        return then

    def get_item(self, document: dict[str, Any], params: dict[str, Any]) -> None:
        self._report.reads += 1
        then = self._then(params["TableName"], document.get("Item"), params["Key"])
        document.pop("Item", None)
        if then is not None:
            document["Item"] = _projected(then, params)

    def query(self, document: dict[str, Any], params: dict[str, Any]) -> None:
        self._report.reads += 1
        table = params["TableName"]
        items = []
        for item in document.get("Items", []):
            then = self._then(table, item, _key_of(self._backend, table, item))
            if then is not None:
                items.append(_projected(then, params))
        document["Items"] = items
        document["Count"] = len(items)

    def batch_get_item(self, document: dict[str, Any], params: dict[str, Any]) -> None:
        """Each table's keys as of then, unless that table's read is consistent."""
        responses = document.get("Responses", {})
        for table, spec in params.get("RequestItems", {}).items():
            if spec.get("ConsistentRead"):
                continue
            self._report.reads += 1
            found = {_identity(self._backend, table, i): i for i in responses.get(table, [])}
            answered = []
            for key in spec.get("Keys", []):
                then = self._then(table, found.get(_identity(self._backend, table, key)), key)
                if then is not None:
                    answered.append(_projected(then, spec))
            responses[table] = answered


def _projected(item: WireItem, params: dict[str, Any]) -> WireItem:
    """Only the plain top-level names a ProjectionExpression asks for (what mqless uses)."""
    projection = params.get("ProjectionExpression")
    if not projection:
        return item
    aliases = params.get("ExpressionAttributeNames", {})
    names = [aliases.get(n.strip(), n.strip()) for n in projection.split(",")]
    return {n: item[n] for n in names if n in item}


# ---- moto's side ----------------------------------------------------------------------------


def _dynamodb_operation(request: Any) -> str | None:
    prefix, _, operation = body_text(request.headers.get("X-Amz-Target")).partition(".")
    return operation if prefix == "DynamoDB_20120810" else None


def _written_keys(backend: Any, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    named: list[tuple[str, WireItem]] = []
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        table = params.get("TableName", "")
        named.append((table, params.get("Key") or _key_of(backend, table, params.get("Item", {}))))
    elif operation == "BatchWriteItem":
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                for action, body in request.items():
                    key = body.get("Key") if action == "DeleteRequest" else None
                    named.append((table, key or _key_of(backend, table, body.get("Item", {}))))
    else:  # TransactWriteItems
        for entry in params.get("TransactItems", []):
            for action, body in entry.items():
                if action == "ConditionCheck":
                    continue
                table = body.get("TableName", "")
                named.append((table, body.get("Key") or _key_of(backend, table, body["Item"])))
    return [_identity(backend, table, key) for table, key in named]


def _key_of(backend: Any, table: str, item: WireItem) -> WireItem:
    found = backend.tables.get(table)
    if found is None:
        return {}
    names = [found.hash_key_attr] + ([found.range_key_attr] if found.range_key_attr else [])
    return {n: item[n] for n in names if n in item}


def _identity(backend: Any, table: str, key: WireItem) -> tuple[str, str]:
    return table, json.dumps(_key_of(backend, table, key), sort_keys=True)


def _image(backend: Any, key: tuple[str, str]) -> WireItem | None:
    table, text = key
    try:
        item = backend.get_item(table, json.loads(text))
    except Exception:  # a missing table or a malformed key: moto answers the request
        return None
    return None if item is None else dict(item.to_json()["Attributes"])


def _now_ms() -> float:
    return time.monotonic() * 1000
