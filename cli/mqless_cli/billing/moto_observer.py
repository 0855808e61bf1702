"""Bill what moto serves: each AWS request at moto's boundary, DynamoDB by its item images.

moto runs in this process. Every request a boto3 client sends reaches
`BotocoreStubber.process_request`; the observer wraps it. For a DynamoDB request it reads
from moto's backend the images of the items the request names before moto applies it and
again after, all under one lock (so no other request runs in between: `mqless dev`
serialises moto's requests the same way), and bills them by `dynamodb.py`'s rules. On a
table without secondary indexes an image is only what the rules read there, the key
attributes and the item's size, sized from moto's stored values (`stored_sizes`)
rather than written out as JSON. A
Query or Scan bills the items it read before any filter or projection: moto's
`Table.query`/`Table.scan` are wrapped to see them. Any other service's request (KMS,
DynamoDB Streams) is counted by operation.

Pointed at real AWS instead, the same `Meter` would take DynamoDB's own
`ConsumedCapacity` (ReturnConsumedCapacity=INDEXES) per request; only this observer is
moto's.

Why it is long: its three parts (item images, what each request bills, the capture inside
moto's Query and Scan) share the request's private shapes (`_Touch`, `_Read`) and one lock.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mqless_cli.billing.dynamodb import (
    Capacity,
    SizedKeys,
    TableSchema,
    WireItem,
    item_read,
    item_write,
    key_of,
    query_read,
    unapplied_write,
)
from mqless_cli.billing.meter import Meter
from mqless_cli.billing.stored_sizes import stored_item_size

_SERVICES = {"DynamoDB_20120810": "dynamodb", "DynamoDBStreams_20120810": "dynamodbstreams"}
_TRENT = "TrentService"  # KMS's JSON target prefix
_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/")
_lock = threading.RLock()
_local = threading.local()


@dataclass(frozen=True)
class _Read:
    """Items a Query or Scan read (before filters), captured inside moto."""

    table: str
    index: str | None
    partition: str
    sizes: tuple[int, ...]


@contextmanager
def observing_moto(meter: Meter) -> Iterator[None]:
    """Report every request moto serves to `meter` while the block runs."""
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.dynamodb.models.table import Table

    original_request = BotocoreStubber.process_request
    original_query, original_scan = Table.query, Table.scan
    active = True

    def process_request(self: Any, request: Any) -> Any:
        if not active:
            return original_request(self, request)
        return _observe(meter, request, lambda: original_request(self, request))

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    Table.query = _capturing(original_query, _query_read)  # type: ignore[method-assign]
    Table.scan = _capturing(original_scan, _scan_read)  # type: ignore[method-assign]
    try:
        yield
    finally:
        active = False
        # Someone may have wrapped ours meanwhile (atomic_requests): leave theirs in place,
        # ours passes everything through from now on.
        if BotocoreStubber.process_request is process_request:
            BotocoreStubber.process_request = original_request  # type: ignore[method-assign]
        Table.query, Table.scan = original_query, original_scan  # type: ignore[method-assign]


def _observe(meter: Meter, request: Any, send: Callable[[], Any]) -> Any:
    service, operation = _target(request)
    if service != "dynamodb":
        result = send()
        if result is not None and service:
            meter.record_request(service, operation)
        return result
    with _lock:
        params = json.loads(body_text(request.body) or "{}")
        backend = dynamodb_backend(request)
        touched = _touched(backend, operation, params)
        _local.reads = []
        try:
            result = send()
            reads: list[_Read] = _local.reads
        finally:
            _local.reads = None
        if result is None:
            return None
        status, _, body = result
        charges, failed = _charges(backend, operation, params, touched, reads, status, body)
        meter.record_dynamodb(operation, charges, failed_conditions=failed)
        return result


def _target(request: Any) -> tuple[str, str]:
    target = body_text(request.headers.get("X-Amz-Target"))
    prefix, _, operation = target.partition(".")
    if prefix == _TRENT:
        return "kms", operation
    return _SERVICES.get(prefix, ""), operation


def body_text(body: Any) -> str:
    """A header or body moto hands over (bytes, str or None) as text."""
    if body is None:
        return ""
    return body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)


def dynamodb_backend(request: Any) -> Any:
    """The moto DynamoDB backend a request goes to (its account and region)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.iam.models import get_account_id_from

    authorization = request.headers.get("Authorization")
    found = _CREDENTIAL.search(body_text(authorization)) if authorization else None
    access_key, region = (found.group(1), found.group(2)) if found else ("", "us-east-1")
    return dynamodb_backends[get_account_id_from(access_key)][region]


# ---- item images ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Touch:
    """One item a write names: its table's schema, its key, and its image before."""

    action: str
    schema: TableSchema
    key: dict[str, Any]
    before: WireItem | None


_schemas: dict[tuple[str, Any], TableSchema] = {}


def _schema(backend: Any, table_name: str) -> TableSchema | None:
    table = backend.tables.get(table_name)
    if table is None:
        return None
    cache_key = (table.table_arn, table.created_at)
    found = _schemas.get(cache_key)
    if found is None:
        found = TableSchema.from_description(table.describe()["TableDescription"])
        _schemas[cache_key] = found
    return found


def _stored(backend: Any, table_name: str, key: Mapping[str, Any]) -> Any:
    """The moto Item stored under `key` (None if there is none), as `backend.get_item`
    finds it, without its validation and copies: None, too, where it would refuse the key
    (a key attribute missing or malformed). No partition is made by looking."""
    # the fixes' own reading of an item by its key (imported here: the fixes import billing)
    from mqless_cli.local.moto_fixes.items import key_of, stored

    table = backend.tables.get(table_name)
    if table is None:
        return None
    try:
        found = key_of(table, dict(key))
    except Exception:  # a malformed key: moto refuses the request
        return None
    return None if found is None else stored(table, *found)


def _image(schema: TableSchema, backend: Any, key: Mapping[str, Any]) -> WireItem | None:
    """The item stored under `key` as the rules read it: the whole item in wire format, or
    on a table without indexes its key attributes and its size (`SizedKeys`)."""
    item = _stored(backend, schema.name, key)
    if item is None:
        return None
    if schema.indexes:
        return dict(item.to_json()["Attributes"])
    keys = {n: {item.attrs[n].type: item.attrs[n].value} for n in schema.keys if n in item.attrs}
    return SizedKeys(keys, stored_item_size(item))


def _touched(backend: Any, operation: str, params: dict[str, Any]) -> list[_Touch]:
    """The items a request names, with their images before it runs."""
    named: list[tuple[str, str, Mapping[str, Any]]] = []  # (action, table, key or item)
    if operation in ("PutItem", "UpdateItem", "DeleteItem", "GetItem"):
        named.append((operation, params.get("TableName", ""), params))
    elif operation == "BatchWriteItem":
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                for action, body in request.items():
                    named.append((action, table, body))
    elif operation == "BatchGetItem":
        for table, spec in params.get("RequestItems", {}).items():
            named.extend(("Get", table, {"Key": key}) for key in spec.get("Keys", []))
    elif operation in ("TransactWriteItems", "TransactGetItems"):
        for entry in params.get("TransactItems", []):
            for action, body in entry.items():
                named.append((action, body.get("TableName", ""), body))
    touched = []
    for action, table, body in named:
        schema = _schema(backend, table)
        if schema is None:
            continue
        key = body.get("Key") or key_of(schema, body.get("Item", {}))
        touched.append(_Touch(action, schema, dict(key), _image(schema, backend, key)))
    return touched


# ---- what each request bills ---------------------------------------------------------


def _charges(
    backend: Any,
    operation: str,
    params: dict[str, Any],
    touched: Sequence[_Touch],
    reads: Sequence[_Read],
    status: int,
    body: Any,
) -> tuple[list[Capacity], int]:
    """(capacity billed, failed conditions) of one answered DynamoDB request."""
    error = _error(status, body)
    if error is None:
        return _answered_charges(backend, operation, params, touched, reads), 0
    code, reasons = error
    if code == "ConditionalCheckFailedException" and touched:
        t = touched[0]
        return [unapplied_write(t.schema, t.before, t.key)], 1
    if code == "TransactionCanceledException" and operation == "TransactWriteItems":
        # a cancelled transaction still bills both underlying writes of every item
        failed = sum(1 for r in reasons if r.get("Code") == "ConditionalCheckFailed")
        return [unapplied_write(t.schema, t.before, t.key, transactional=True) for t in touched], (
            failed
        )
    return [], 0  # validation errors and the like are not billed


def _answered_charges(
    backend: Any,
    operation: str,
    params: dict[str, Any],
    touched: Sequence[_Touch],
    reads: Sequence[_Read],
) -> list[Capacity]:
    """The capacity a request that succeeded bills: its reads, or each write it applied."""
    consistent = bool(params.get("ConsistentRead"))
    if operation in ("Query", "Scan"):
        return [_read_capacity(backend, r, consistent) for r in reads]
    if operation == "GetItem":
        t = touched[0]
        return [item_read(t.schema, t.before, t.key, consistent=consistent)]
    if operation == "BatchGetItem":
        specs = params.get("RequestItems", {})
        return [
            item_read(
                t.schema,
                t.before,
                t.key,
                consistent=bool(specs.get(t.schema.name, {}).get("ConsistentRead")),
            )
            for t in touched
        ]
    if operation == "TransactGetItems":
        return [
            item_read(t.schema, t.before, t.key, consistent=True, transactional=True)
            for t in touched
        ]
    transactional = operation == "TransactWriteItems"
    charges: list[Capacity] = []
    for t in touched:
        if t.action == "ConditionCheck":
            charges.append(unapplied_write(t.schema, t.before, t.key, transactional=True))
            continue
        after = _image(t.schema, backend, t.key)
        charges.extend(item_write(t.schema, t.before, after, transactional=transactional))
    return charges


def _error(status: int, body: Any) -> tuple[str, list[dict[str, Any]]] | None:
    if 200 <= int(status) < 300:
        return None
    try:
        document = json.loads(body_text(body))
    except ValueError:
        return "", []
    code = str(document.get("__type", "")).rpartition("#")[2]
    return code, list(document.get("CancellationReasons") or [])


def _read_capacity(backend: Any, read: _Read, consistent: bool) -> Capacity:
    schema = _schema(backend, read.table)
    assert schema is not None  # moto just read from it
    return query_read(schema, read.index, read.partition, read.sizes, consistent=consistent)


# ---- inside moto: what a Query or Scan read --------------------------------------------


def _capturing(original: Callable[..., Any], describe: Callable[..., Any]) -> Any:
    """Wrap Table.query/scan: run without filter and projection, note every item read,
    then filter and project as moto does."""
    signature = inspect.signature(original)
    filter_arg = "filter_expression"
    projection_arg = (
        "projection_expressions"
        if "projection_expressions" in signature.parameters
        else "projection_expression"
    )
    arguments_of = _ArgumentsReader(signature)

    def run(table: Any, *args: Any, **kwargs: Any) -> Any:
        reads: list[_Read] | None = getattr(_local, "reads", None)
        if reads is None:
            return original(table, *args, **kwargs)
        arguments = arguments_of(args, kwargs)
        condition = arguments.get(filter_arg)
        projection = arguments.get(projection_arg)
        args, kwargs = _without(arguments_of.names, args, kwargs, (filter_arg, projection_arg))
        results, scanned, last_key = original(table, *args, **kwargs)
        sizes = tuple(stored_item_size(r) for r in results)
        reads.append(_Read(table.name, arguments.get("index_name"), describe(arguments), sizes))
        if condition is not None:
            results = [r for r in results if condition.expr(r)]
        if projection:
            results = [r.project(projection) for r in results]
        return results, scanned, last_key

    return run


class _ArgumentsReader:
    """`signature.bind(self, *args, **kwargs)` with `apply_defaults()`, its `arguments`
    read straight from the call: the names of the positional parameters (after `self`)
    and the defaults are listed once. `inspect`'s binding was a fiftieth of a Query."""

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature
        parameters = list(signature.parameters.values())[1:]
        self.names = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        self.defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.names):  # a `*args` parameter: let inspect sort it out
            bound = self.signature.bind(None, *args, **kwargs)
            bound.apply_defaults()
            return dict(bound.arguments)
        arguments = dict(self.defaults)
        arguments.update(zip(self.names, args, strict=False))
        arguments.update(kwargs)
        return arguments


def _without(
    names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any], cleared: Sequence[str]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with each of `cleared` set to None, where it was given or not."""
    positional = list(args)
    keywords = dict(kwargs)
    for name in cleared:
        at = names.index(name) if name in names else len(positional)
        if at < len(positional):
            positional[at] = None
        else:
            keywords[name] = None
    return tuple(positional), keywords


def _query_read(arguments: Mapping[str, Any]) -> str:
    """The partition key value a Query read."""
    conditions = arguments.get("hash_key_conditions") or []
    if conditions:
        return str(conditions[0][1].value)
    hash_key = arguments.get("hash_key")
    return "" if hash_key is None else str(hash_key.value)


def _scan_read(arguments: Mapping[str, Any]) -> str:
    return ""  # a Scan reads every partition
