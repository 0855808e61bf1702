"""What `mqless dev`'s embedded DynamoDB keeps per stored item (issue 14: RSS after 50,000
messages), and that keeping it more compactly changes no answer moto gives."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import boto3
from moto import mock_aws

from mqless_cli.local import moto_fixes
from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
from mqless_cli.local.moto_fixes.compact_items import items_hold_keys_once
from mqless_cli.local.unsigned_requests import requests_unsigned
from tests.component.test_request_path import applied
from tests.conftest import MOTO_CONFIG

TABLE = "memory"
ITEMS = 600


REQUEST_PATH = (
    botocore_shortcuts,
    requests_unsigned,
    moto_fixes.requests_routed_once,
    moto_fixes.handler_methods_listed_once,
    moto_fixes.request_ids_not_searched_in_json,
    moto_fixes.requests_normalized_directly,
    moto_fixes.dynamodb_requests_left_plain,
    moto_fixes.answers_handed_over,
    moto_fixes.response_dates_formatted_once_a_second,
    moto_fixes.backends_found_without_the_lock,
    moto_fixes.action_names_converted_once,
    moto_fixes.random_strings_drawn_at_once,
)
"""What `mqless dev` changes in a request's way from a boto3 client to moto's backend and
back (botocore's side, unsigned requests, moto's dispatch), and nothing of what a table
keeps: under tracemalloc, moto's upstream way costs three times the CPU of a put, and the
bytes a table keeps per item are the same either way (within 1%)."""


@contextmanager
def table(*, compact: bool, dev_requests: bool = True) -> Iterator[Any]:
    """A fresh moto table keyed like the messages table (pk, sk), compact items or not,
    reached as `mqless dev` reaches it (`REQUEST_PATH`) or as moto's upstream does."""
    with (
        mock_aws(config=MOTO_CONFIG),  # type: ignore[call-overload]
        items_hold_keys_once() if compact else nullcontext(),
        applied(REQUEST_PATH) if dev_requests else nullcontext(),
    ):
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield db


def dedup_record(n: int) -> dict[str, Any]:
    """An item shaped like the broker's FIFO dedup record (`storage/dedup_records.py`)."""
    return {
        "pk": {"S": f"D#orders.fifo#{n % 16:x}"},
        "sk": {"S": f"record-{n:08d}-Fz9kq0ymq3mJkq0Cj2dVh1T0QqT3gQ"},
        "m": {"S": f"01a25033-2dd7-73c2-877b-{n:012d}"},
        "w": {"N": str(1796642161079 + n)},
        "x": {"N": str(1796642221 + n)},
    }


def log_item(n: int, *, repeated: bool = True) -> dict[str, Any]:
    """An item shaped like a log item (`storage/log.py`): the items a queue writes within a
    second share their data key id `k` and expiry `x` (`repeated`), or each has its own."""
    differ = 0 if repeated else n
    return {
        "pk": {"S": "L#orders#3"},
        "sk": {"S": f"01M98DNJ1TECYAYV1K{n:08d}"},
        "b": {"B": bytes(n % 251 for _ in range(64)) * 16},
        "k": {"B": (12345678 + differ).to_bytes(8, "big")},
        "x": {"N": str(1796998445 + differ)},
        "s": {"SS": ["a"]},
    }


def retained_bytes_per_item(db: Any, make: Callable[[int], dict[str, Any]] = dedup_record) -> float:
    """Bytes the table keeps per item after ITEMS puts (tracemalloc, collected garbage)."""
    db.put_item(TableName=TABLE, Item=make(-1))  # the first request's one-time costs
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(ITEMS):
            db.put_item(TableName=TABLE, Item=make(n))
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / ITEMS
    finally:
        tracemalloc.stop()


def answers(db: Any) -> list[Any]:
    """What a client sees of items written, read, queried, updated and deleted."""
    seen: list[Any] = []
    for n in range(40):
        db.put_item(TableName=TABLE, Item=dedup_record(n))
    key = {"pk": {"S": "D#orders.fifo#3"}, "sk": dedup_record(3)["sk"]}
    seen.append(db.get_item(TableName=TABLE, Key=key)["Item"])
    seen.append(
        db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p AND sk > :s",
            ExpressionAttributeValues={":p": {"S": "D#orders.fifo#3"}, ":s": {"S": "record-"}},
        )["Items"]
    )
    seen.append(
        db.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET w = w + :one, extra = :pk",
            ExpressionAttributeValues={":one": {"N": "1"}, ":pk": {"S": "D#orders.fifo#3"}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
    )
    seen.append(
        db.put_item(
            TableName=TABLE,
            Item={**dedup_record(3), "m": {"S": "replaced"}},
            ReturnValues="ALL_OLD",
        )["Attributes"]
    )
    # two items holding the same small values; one of them changed after
    for sk in ("twin-1", "twin-2"):
        db.put_item(TableName=TABLE, Item={**log_item(0), "sk": {"S": sk}})
    twin = {"pk": log_item(0)["pk"], "sk": {"S": "twin-1"}}
    db.update_item(
        TableName=TABLE,
        Key=twin,
        UpdateExpression="SET x = x + :one, k = :k ADD s :s",
        ExpressionAttributeValues={":one": {"N": "1"}, ":k": {"B": b"other"}, ":s": {"SS": ["b"]}},
    )
    seen.append(
        db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": log_item(0)["pk"]},
        )["Items"]
    )
    seen.append(db.delete_item(TableName=TABLE, Key=key, ReturnValues="ALL_OLD")["Attributes"])
    seen.append(db.get_item(TableName=TABLE, Key=key).get("Item"))
    seen.append(sorted(str(i) for i in db.scan(TableName=TABLE)["Items"]))
    return seen


def test_compact_items_answer_every_request_as_moto_does() -> None:
    # Given the same requests to plain moto and to moto whose items hold their keys once
    with table(compact=False, dev_requests=False) as plain:
        expected = answers(plain)
    with table(compact=True, dev_requests=False) as compact:
        # When a client writes, reads, queries, updates, overwrites and deletes items
        seen = answers(compact)
    # Then every answer is the same
    assert seen == expected


def test_a_stored_item_keeps_its_key_values_once() -> None:
    # Given 600 dedup records stored in plain moto, and in moto with compact items
    with table(compact=False) as plain:
        upstream = retained_bytes_per_item(plain)
    with table(compact=True) as compact:
        # When the table holds them all
        kept = retained_bytes_per_item(compact)
    # Then each costs a hash key object, two range key objects (its own and the one its
    # partition files it under: about 100 bytes each) and its name strings less
    assert kept <= upstream - 350, (upstream, kept)


def retained_bytes_per_item_with_orderings(*, queried: bool) -> float:
    """Bytes kept per dedup record put with every moto fix, after the table was queried
    (its query ordering built, kept in step by each put) or not."""
    from mqless_cli.local.moto_fixes import fixed_moto

    with (
        table(compact=False, dev_requests=False) as db,
        fixed_moto(),  # REQUEST_PATH among them
        botocore_shortcuts(),
        requests_unsigned(),
    ):
        if queried:
            db.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "none"}},
            )
        return retained_bytes_per_item(db)


def test_items_with_the_same_small_values_share_them() -> None:
    # Given moto with compact items
    with table(compact=True) as db:
        # When 600 log items that share their data key id and expiry are stored
        repeated = retained_bytes_per_item(db, log_item)
    with table(compact=True) as db:
        # and 600 whose every value differs
        distinct = retained_bytes_per_item(db, lambda n: log_item(n, repeated=False))
    # Then the first keep those two values once, not twice 100 bytes and more an item
    assert distinct - repeated >= 200, (distinct, repeated)


def test_a_query_ordering_keeps_no_copy_of_an_item_key() -> None:
    # Given a table with every moto fix, queried once (so Query reads one partition in key
    # order from then on), and the same table never queried
    unordered = retained_bytes_per_item_with_orderings(queried=False)
    # When 600 dedup records are put in each
    ordered = retained_bytes_per_item_with_orderings(queried=True)
    # Then the ordering costs an item its places in a list and a dict and two small tuples
    # (~230 bytes), not also copies of its key values (~300 bytes more)
    assert ordered - unordered <= 300, (unordered, ordered)
