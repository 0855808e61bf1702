"""DynamoDB plumbing shared by the adapters: (un)marshalling and error mapping."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from mqless.domain.errors import PayloadTooLarge, Throttled

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
    }
)

Item = dict[str, Any]
WireItem = dict[str, Any]

Request = ParamSpec("Request")
Answer = TypeVar("Answer")


def to_wire(values: Mapping[str, Any]) -> WireItem:
    """Python values -> DynamoDB attribute values, dropping None (absent attributes)."""
    return {k: _to_wire(v) for k, v in values.items() if v is not None}


_EXACT_N = 10**38  # whole numbers below this many digits are what boto3 writes them as


def _to_wire(value: Any) -> Any:
    """One value as boto3's `TypeSerializer` writes it: text, whole numbers and lists of them
    (an index segment, a key, most expression values) at once; anything else through it
    (it was ~50 us a segment item, most of a write's CPU outside the request)."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int and -_EXACT_N < value < _EXACT_N:
        return {"N": str(value)}
    if kind is list:
        return {"L": [_to_wire(v) for v in value]}
    return _serializer.serialize(value)


def from_wire(item: Mapping[str, Any]) -> Item:
    """DynamoDB attribute values -> Python values (ints for whole numbers, bytes for binary)."""
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def from_stream_image(image: Mapping[str, Any]) -> Item:
    """A stream record's image (JSON: binary values as base64 text) -> Python values."""
    return from_wire({k: _binary_from_json(v) for k, v in image.items()})


def _binary_from_json(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B" and isinstance(inner, str):
        return {"B": base64.b64decode(inner)}
    if kind == "BS" and isinstance(inner, list):
        return {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in inner]}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {k: _binary_from_json(v) for k, v in inner.items()}}
    if kind == "L" and isinstance(inner, list):
        return {"L": [_binary_from_json(v) for v in inner]}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value.value)  # type: ignore[attr-defined]  # untyped in boto3-stubs
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def cancellation_codes(exc: ClientError) -> list[str]:
    """Per-item reasons of a cancelled transaction ('None' where that item was fine)."""
    reasons = exc.response.get("CancellationReasons") or []
    codes = [str(r.get("Code", "None")) for r in reasons]
    if not codes:
        # moto and older endpoints put the reasons only in the message text
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if "[" in message and "]" in message:
            inner = message[message.index("[") + 1 : message.rindex("]")]
            codes = [c.strip() for c in inner.split(",")]
    return codes


def batch_write(client: Any, table: str, requests: Sequence[Any]) -> None:
    """Put/delete requests, 25 per call, retrying what DynamoDB leaves unprocessed."""
    for start in range(0, len(requests), 25):
        pending: dict[str, Any] = {table: list(requests[start : start + 25])}
        for attempt in range(8):
            with translated_errors():
                response = client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
            if attempt == 7:
                raise Throttled("DynamoDB left writes unprocessed; retry shortly")
            time.sleep(min(0.05 * 2**attempt, 1.0))


BATCH_GET_KEYS = 100  # DynamoDB's limit of keys per BatchGetItem


def batch_get(
    client: Any, table: str, keys: Sequence[WireItem], *, consistent: bool = False, tries: int = 8
) -> tuple[list[WireItem], list[WireItem]]:
    """The items of these keys, 100 keys per BatchGetItem, each call again with what DynamoDB
    left unprocessed, up to `tries` calls: (the items found, in wire form; the keys still
    unprocessed after the last call). A key with no item is in neither."""
    found: list[WireItem] = []
    unprocessed: list[WireItem] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        request: dict[str, Any] = {
            table: {
                "Keys": list(keys[start : start + BATCH_GET_KEYS]),
                "ConsistentRead": consistent,
            }
        }
        for _ in range(tries):
            with translated_errors():
                response = client.batch_get_item(RequestItems=request)
            found.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        unprocessed.extend(request.get(table, {}).get("Keys", []) if request else [])
    return found, unprocessed


def drop_partition(client: Any, table: str, partition: str) -> None:
    """Delete every item of a partition, 25 per request."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": to_wire({":p": partition}),
        "ProjectionExpression": "pk, sk",
    }
    while True:
        with translated_errors():
            page = client.query(**kwargs)
        batch_write(client, table, [{"DeleteRequest": {"Key": k}} for k in page.get("Items", [])])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def partition_items(
    client: Any,
    table: str,
    partition: str,
    *,
    prefix: str | None = None,
    between: tuple[str, str] | None = None,
    consistent: bool = True,
) -> Iterator[Item]:
    """Items of one partition (`pk = partition`), strongly consistent unless not
    `consistent`, page by page.

    `prefix` keeps the sort keys that begin with it; `between` an inclusive sort-key range.
    """
    condition = "pk = :p"
    values: dict[str, Any] = {":p": partition}
    if prefix is not None:
        condition += " AND begins_with(sk, :prefix)"
        values[":prefix"] = prefix
    elif between is not None:
        condition += " AND sk BETWEEN :low AND :high"
        values[":low"], values[":high"] = between
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": to_wire(values),
        "ConsistentRead": consistent,
    }
    while True:
        with translated_errors():
            page = client.query(**kwargs)
        for raw in page.get("Items", []):
            yield from_wire(raw)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn AWS throttling into `Throttled` and oversize items into `PayloadTooLarge`."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in THROTTLING_CODES:
            raise Throttled("DynamoDB is throttling requests; retry shortly") from exc
        if code == "ValidationException" and "size" in str(exc).lower():
            raise PayloadTooLarge("message too large to store") from exc
        raise


def conditional_write(
    write: Callable[Request, Answer], /, *args: Request.args, **request: Request.kwargs
) -> Answer | None:
    """`write(**request)`: a PutItem, UpdateItem or DeleteItem with a ConditionExpression;
    its answer, or None where the condition failed (nothing written, billed as DynamoDB
    bills a failed condition). Other errors are raised as `translated_errors` raises them."""
    try:
        with translated_errors():
            return write(*args, **request)
    except ClientError as exc:
        if is_condition_failure(exc):
            return None
        raise


def put_if_absent(client: Any, table: str, item: Mapping[str, Any]) -> bool:
    """Write `item` (plain values) only if no item has its key; False if one has (a failed
    condition, billed as DynamoDB bills it)."""
    written = conditional_write(
        client.put_item,
        TableName=table,
        Item=to_wire(item),
        ConditionExpression="attribute_not_exists(pk)",
    )
    return written is not None
