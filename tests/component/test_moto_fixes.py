"""mqless_cli.local.moto_fixes against moto's own behaviour.

Each fix is checked twice: where it must not change what moto answers, the same requests go
to plain moto and to fixed moto and the answers are compared; where it changes moto (the
cost of a rollback or a query, stream retention, iterator expiry), a test states the new
behaviour, and fails on plain moto.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mqless_cli.local import moto_fixes
from mqless_cli.local.moto_fixes import (
    REQUEST_LOCK,
    attribute_values_serialize_directly,
    discard_shard_iterator,
    fixed_moto,
)
from mqless_cli.local.moto_fixes import streams as stream_fixes
from tests.call_counts import count_calls
from tests.conftest import MOTO_CONFIG

TABLE = "fixes"


@contextmanager
def moto(*, fixed: bool, stream: str | None = "NEW_AND_OLD_IMAGES") -> Iterator[tuple[Any, Any]]:
    """A fresh moto (with every fix, or none): a DynamoDB and a DynamoDB Streams client.
    `stream`: the table's StreamViewType (None: no stream)."""
    with mock_aws(config=MOTO_CONFIG), fixed_moto() if fixed else nullcontext():  # type: ignore[call-overload]
        db = boto3.client("dynamodb", region_name="us-east-1")
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        db.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "gk", "AttributeType": "S"},
                {"AttributeName": "gr", "AttributeType": "N"},
                {"AttributeName": "lr", "AttributeType": "N"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_g",
                    "KeySchema": [
                        {"AttributeName": "gk", "KeyType": "HASH"},
                        {"AttributeName": "gr", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            LocalSecondaryIndexes=[
                {
                    "IndexName": "by_l",
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "lr", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification=(
                {"StreamEnabled": True, "StreamViewType": stream}
                if stream
                else {"StreamEnabled": False}
            ),
        )
        yield db, streams


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py); each test starts its own motos."""


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def item(pk: str, sk: str, **attributes: Any) -> dict[str, Any]:
    return {**key(pk, sk), **attributes}


def stream_arn(db: Any) -> str:
    return str(db.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"])


def iterator(db: Any, streams: Any, position: str = "TRIM_HORIZON", **extra: Any) -> str:
    arn = stream_arn(db)
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    return str(
        streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType=position, **extra
        )["ShardIterator"]
    )


def read_all(streams: Any, start: str) -> list[dict[str, Any]]:
    """Every record from `start` on (until a read comes back empty)."""
    records: list[dict[str, Any]] = []
    position: str | None = start
    while position:
        page = streams.get_records(ShardIterator=position)
        if not page["Records"]:
            break
        records.extend(page["Records"])
        position = page.get("NextShardIterator")
    return records


def plain(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Records without what differs from run to run (event ids, times)."""
    return [
        (
            r["eventName"],
            json.dumps(r["dynamodb"]["Keys"], sort_keys=True),
            json.dumps(r["dynamodb"].get("OldImage"), sort_keys=True),
            json.dumps(r["dynamodb"].get("NewImage"), sort_keys=True),
            r["dynamodb"]["SequenceNumber"],
        )
        for r in records
    ]


def table_contents(db: Any) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True) for i in db.scan(TableName=TABLE)["Items"])


def answer_of(call: Callable[..., Any], **request: Any) -> Any:
    """What moto answers a request: its result (without ResponseMetadata), or its error's
    code and message."""
    try:
        result = call(**request)
    except ClientError as refused:
        return (refused.response["Error"]["Code"], refused.response["Error"]["Message"])
    result.pop("ResponseMetadata", None)
    return result


def same_on_plain_and_fixed_moto(scenario: Callable[[Any, Any], Any]) -> Any:
    """Run `scenario(db, streams)` on plain moto, then on fixed moto; both results."""
    with moto(fixed=False) as (db, streams):
        expected = scenario(db, streams)
    with moto(fixed=True) as (db, streams):
        found = scenario(db, streams)
    return expected, found


# ---- transactions: undo log ----------------------------------------------------------------


def failing_transaction(db: Any) -> dict[str, Any]:
    """Put a new item, update one, delete one, then a condition that fails: cancelled."""
    with pytest.raises(ClientError) as failure:
        db.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("p", "new", v={"S": "x"})}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("p", "a"),
                        "UpdateExpression": "SET v = :v, gk = :g, gr = :r",
                        "ExpressionAttributeValues": {
                            ":v": {"S": "changed"},
                            ":g": {"S": "moved"},
                            ":r": {"N": "9"},
                        },
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": key("p", "b")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": key("p", "c"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    return dict(failure.value.response)


def seed(db: Any, count: int = 3) -> None:
    """`count` items of partition `p` (a, b, c, x0, x1, ...): one PutItem each for the first
    three, a BatchWriteItem per 25 for the rest (the same items and INSERT records, with a
    twenty-fifth of the requests)."""
    seeded = [
        item("p", sk, v={"S": sk}, gk={"S": "g"}, gr={"N": str(n)}, lr={"N": str(n)})
        for n, sk in enumerate(["a", "b", "c", *(f"x{i}" for i in range(count - 3))])
    ]
    for each in seeded[:3]:
        db.put_item(TableName=TABLE, Item=each)
    for start in range(3, len(seeded), 25):
        batch = [{"PutRequest": {"Item": each}} for each in seeded[start : start + 25]]
        assert not db.batch_write_item(RequestItems={TABLE: batch})["UnprocessedItems"]


def test_a_cancelled_transaction_leaves_items_and_stream_as_moto_leaves_them() -> None:
    # Given a table with items, When a transaction that writes three of them is cancelled
    def scenario(db: Any, streams: Any) -> tuple[Any, ...]:
        seed(db)
        response = failing_transaction(db)
        after = db.query(
            TableName=TABLE,
            IndexName="by_g",
            KeyConditionExpression="gk = :g",
            ExpressionAttributeValues={":g": {"S": "g"}},
        )["Items"]
        return (
            response["Error"]["Code"],
            response["CancellationReasons"],
            table_contents(db),
            after,
            plain(read_all(streams, iterator(db, streams))),
        )

    expected, found = same_on_plain_and_fixed_moto(scenario)
    # Then the error, the items, the index and the stream are what moto's rollback gives
    assert found == expected
    assert found[0] == "TransactionCanceledException"
    assert [r["Code"] for r in found[1]] == ["None", "None", "None", "ConditionalCheckFailed"]


def test_a_cancelled_transaction_copies_only_the_items_it_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a table of 300 items (and their 300 stream records)
    from moto.dynamodb.models.dynamo_type import Item

    with moto(fixed=True) as (db, _):
        seed(db, 300)
        copies = 0
        original = Item.__deepcopy__

        def counting(self: Item, memo: dict[int, Any]) -> Item:
            nonlocal copies
            copies += 1
            return original(self, memo)

        monkeypatch.setattr(Item, "__deepcopy__", counting)
        # When a transaction writing three items is cancelled
        failing_transaction(db)
    # Then only those items were copied for the rollback (and the update's own old image),
    # not the table
    assert copies <= 6


def test_a_stream_reader_keeps_reading_after_a_cancelled_transaction() -> None:
    # Given a reader at the end of the stream, and a cancelled transaction
    with moto(fixed=True) as (db, streams):
        seed(db)
        position = iterator(db, streams, "LATEST")
        failing_transaction(db)
        # When an item is written afterwards
        db.put_item(TableName=TABLE, Item=item("p", "later"))
        # Then the reader's iterator (taken before the rollback) sees it
        records = read_all(streams, position)
    assert [r["dynamodb"]["Keys"]["sk"]["S"] for r in records] == ["later"]


def test_a_transaction_refused_midway_writes_nothing() -> None:
    # Given an empty table
    with moto(fixed=True) as (db, _):
        # When the second element of a transaction holds two operations (refused)
        with pytest.raises(ClientError) as refused:
            db.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": item("p", "first")}},
                    {
                        "Put": {"TableName": TABLE, "Item": item("p", "second")},
                        "Delete": {"TableName": TABLE, "Key": key("p", "first")},
                    },
                ]
            )
        # Then it is a validation error and the first put did not happen either
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert table_contents(db) == []


# ---- queries read one partition ------------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["put", "update", "delete", "cancelled"]),
        st.sampled_from(["p1", "p2", "p3"]),
        st.sampled_from(["a", "b", "c", "d", "e", "bb", "ba", "c0"]),
        st.sampled_from(["g1", "g2", None]),
        st.integers(min_value=0, max_value=4),
    ),
    max_size=30,
)
QUERIES = st.lists(
    st.tuples(
        st.sampled_from(["table", "by_g", "by_l"]),
        st.sampled_from(["p1", "p2", "g1", "g2", "zz"]),
        st.sampled_from([None, "=", "<", "<=", ">", ">=", "between", "begins_with"]),
        st.integers(min_value=0, max_value=4),
        st.booleans(),
        st.sampled_from([None, 1, 2, 10]),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


def apply(db: Any, operation: tuple[str, str, str, str | None, int]) -> None:
    kind, pk, sk, gk, n = operation
    attributes: dict[str, Any] = {"lr": {"N": str(n)}, "gr": {"N": str(n)}}
    if gk is not None:
        attributes["gk"] = {"S": gk}
    if kind == "put":
        db.put_item(TableName=TABLE, Item=item(pk, sk, **attributes))
    elif kind == "update":
        db.update_item(
            TableName=TABLE,
            Key=key(pk, sk),
            UpdateExpression="SET gk = :g, gr = :r" if gk else "REMOVE gk SET lr = :r",
            ExpressionAttributeValues={":g": {"S": gk}, ":r": {"N": str(n)}}
            if gk
            else {":r": {"N": str(n)}},
        )
    elif kind == "delete":
        db.delete_item(TableName=TABLE, Key=key(pk, sk))
    else:
        with pytest.raises(ClientError):
            db.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": item(pk, sk, **attributes)}},
                    {
                        "ConditionCheck": {
                            "TableName": TABLE,
                            "Key": key("nowhere", "x"),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                ]
            )


def run_query(
    db: Any, query: tuple[str, str, str | None, int, bool, int | None, bool]
) -> list[Any]:
    """Every page of one query (Items, Count, ScannedCount, LastEvaluatedKey of each)."""
    index, value, comparison, bound, forward, limit, filtered = query
    hash_name, range_name = {"table": ("pk", "sk"), "by_g": ("gk", "gr"), "by_l": ("pk", "lr")}[
        index
    ]
    condition = f"{hash_name} = :h"
    values: dict[str, Any] = {":h": {"S": value}}
    range_value = {"S": "abcde"[bound]} if index == "table" else {"N": str(bound)}
    if comparison == "between":
        condition += f" AND {range_name} BETWEEN :lo AND :hi"
        values[":lo"] = {"S": "b"} if index == "table" else {"N": "1"}
        values[":hi"] = range_value
    elif comparison == "begins_with":
        if index == "table":  # strings only
            condition += f" AND begins_with({range_name}, :r)"
            values[":r"] = {"S": "abcde"[bound]}
    elif comparison is not None:
        condition += f" AND {range_name} {comparison} :r"
        values[":r"] = range_value
    kwargs: dict[str, Any] = {
        "TableName": TABLE,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": forward,
    }
    if index != "table":
        kwargs["IndexName"] = index
    if limit is not None:
        kwargs["Limit"] = limit
    if filtered:
        kwargs["FilterExpression"] = "attribute_exists(gk)"
    pages = []
    for _ in range(20):
        page = db.query(**kwargs)
        pages.append(
            (page["Items"], page["Count"], page["ScannedCount"], page.get("LastEvaluatedKey"))
        )
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return pages


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, queries=QUERIES)
def test_queries_return_what_moto_returns(
    operations: list[tuple[str, str, str, str | None, int]],
    queries: list[tuple[str, str, str | None, int, bool, int | None, bool]],
) -> None:
    # Given the same writes (puts, index key changes, deletes, cancelled transactions)
    def scenario(db: Any, streams: Any) -> list[Any]:
        for operation in operations:
            apply(db, operation)
        # When the base table, the global and the local index are queried, page by page
        return [run_query(db, query) for query in queries]

    expected, found = same_on_plain_and_fixed_moto(scenario)
    # Then fixed moto answers every page exactly as moto does
    assert found == expected


def comparisons_during(monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]) -> int:
    """How many times DynamoDB values are compared (sorted, matched) while `action` runs."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    count = 0

    def counted(name: str) -> Callable[..., bool]:
        original = getattr(DynamoType, name)

        def compare(self: DynamoType, other: DynamoType) -> bool:
            nonlocal count
            count += 1
            return bool(original(self, other))

        return compare

    with monkeypatch.context() as patch:
        for name in ("__lt__", "__eq__", "__ne__"):
            patch.setattr(DynamoType, name, counted(name))
        action()
    return count


def test_a_query_looks_only_at_the_partition_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 400 items in other partitions and 3 in partition "p" (index partition "g")
    with moto(fixed=True) as (db, _):
        for n in range(400):
            db.put_item(
                TableName=TABLE,
                Item=item(f"other{n % 50}", f"s{n}", gk={"S": f"h{n % 50}"}, gr={"N": "1"}),
            )
        seed(db)
        table_query = {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "p"}},
        }
        index_query = {**table_query, "IndexName": "by_g", "KeyConditionExpression": "gk = :p"}
        index_query["ExpressionAttributeValues"] = {":p": {"S": "g"}}
        # (the first query of the table, and of each index, puts its keys in order, once)
        assert len(db.query(**table_query)["Items"]) == len(db.query(**index_query)["Items"]) == 3
        # When the base table and the global index are queried for that partition
        table = comparisons_during(monkeypatch, lambda: db.query(**table_query))
        index = comparisons_during(monkeypatch, lambda: db.query(**index_query))
    # Then the work is that of 3 items, not of 403 (moto compares every item of the table)
    assert table < 100
    assert index < 100


def test_a_query_with_a_limit_looks_only_at_what_it_can_return(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one partition of 400 items, all in one index partition too
    with moto(fixed=True) as (db, _):
        for n in range(400):
            db.put_item(
                TableName=TABLE, Item=item("p", f"m{n:04d}", gk={"S": "g"}, gr={"N": str(n)})
            )
        head = {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":p": {"S": "p"}, ":m": {"S": "m02"}},
            "Limit": 2,
        }
        oldest = {
            "TableName": TABLE,
            "IndexName": "by_g",
            "KeyConditionExpression": "gk = :g AND gr <= :now",
            "ExpressionAttributeValues": {":g": {"S": "g"}, ":now": {"N": "200"}},
            "Limit": 2,
        }
        db.query(**head)
        db.query(**oldest)
        # When each is queried for its first 2 matches (a FIFO group's head, the oldest
        # visible messages)
        found: dict[str, Any] = {}
        table = comparisons_during(monkeypatch, lambda: found.update(head=db.query(**head)))
        index = comparisons_during(monkeypatch, lambda: found.update(old=db.query(**oldest)))
    # Then the answers are right, and the work is that of a few items, not of 400
    assert [i["sk"]["S"] for i in found["head"]["Items"]] == ["m0200", "m0201"]
    assert [i["gr"]["N"] for i in found["old"]["Items"]] == ["0", "1"]
    assert table < 200
    assert index < 200


# ---- responses: AttributeValues ------------------------------------------------------------

LEAVES = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=8)),
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"B": b}, st.binary(max_size=8)),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=4), min_size=1, max_size=3)),
    st.builds(lambda s: {"NS": [str(n) for n in sorted(s)]}, st.sets(st.integers(), min_size=1)),
    st.builds(lambda s: {"BS": sorted(s)}, st.sets(st.binary(max_size=4), min_size=1, max_size=3)),
    st.just({"NULL": True}),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=4), children, max_size=3)),
        st.builds(lambda items: {"L": items}, st.lists(children, max_size=3)),
    ),
    max_leaves=10,
)


def serialized_get_item(item_value: dict[str, Any]) -> str:
    """A GetItem response body as moto's JSON serializer writes it (values as moto holds them)."""
    from moto.core.serialize import XFormedAttributePicker, get_serializer_class
    from moto.core.utils import get_service_model
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import dynamo_to_dict

    model = get_service_model("dynamodb")
    serializer = get_serializer_class("dynamodb", "json")(
        operation_model=model.operation_model("GetItem"),
        value_picker=XFormedAttributePicker(),
    )
    wire = copy.deepcopy(item_value)
    for value in wire.values():
        if "B" in value:  # moto keeps binary as the base64 text the request carried
            value["B"] = base64.b64encode(value["B"]).decode()
    result = {"Item": dynamo_to_dict({k: DynamoType(v) for k, v in wire.items()})}
    return str(serializer.serialize(result)["body"])


@settings(max_examples=200, deadline=None)
@given(attributes=st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=5))
def test_attribute_values_serialize_as_moto_serializes_them(attributes: dict[str, Any]) -> None:
    # Given any item (every AttributeValue type, nested maps and lists)
    # When moto serializes it with and without the fix
    expected = serialized_get_item(attributes)
    with attribute_values_serialize_directly():
        found = serialized_get_item(attributes)
    # Then the bytes are the same
    assert found == expected


def moto_result(item_value: dict[str, Any]) -> dict[str, Any]:
    """A Query result as moto's backend hands it to `dynamo_to_dict` (values as moto holds
    them: binary as the base64 text the request carried)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    wire = copy.deepcopy(item_value)
    for value in wire.values():
        if "B" in value:
            value["B"] = base64.b64encode(value["B"]).decode()
    return {"Items": [{k: DynamoType(v) for k, v in wire.items()}], "Count": 1}


@settings(max_examples=200, deadline=None)
@given(attributes=st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=5))
def test_dynamo_results_convert_as_moto_converts_them(attributes: dict[str, Any]) -> None:
    # Given any item (every AttributeValue type, nested maps and lists) in a result
    from moto.dynamodb import responses
    from moto.dynamodb.models.utilities import dynamo_to_dict

    expected = dynamo_to_dict(moto_result(attributes))
    # When the DynamoDB responses convert it with the fix on
    with moto_fixes.dynamo_results_converted_directly():
        found = responses.dynamo_to_dict(moto_result(attributes))
    # Then the plain values are the same
    assert found == expected


def test_a_result_of_numbers_is_converted_without_asking_each_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a result item holding a list of 200 numbers, and moto's converter counted
    from moto.dynamodb import responses
    from moto.dynamodb.models import utilities

    calls = count_calls(monkeypatch, utilities, "dynamo_to_dict")
    responses_calls = count_calls(monkeypatch, responses, "dynamo_to_dict")
    result = moto_result({"l": {"L": [{"N": str(n)} for n in range(200)]}})
    # When the DynamoDB responses convert it with the fix on
    with moto_fixes.dynamo_results_converted_directly():
        found = responses.dynamo_to_dict(result)
    # Then moto's own converter was never asked, and the numbers are all there
    assert found["Items"][0]["l"]["L"][199] == {"N": "199"}
    assert calls() + responses_calls() == 0


@settings(max_examples=200, deadline=None)
@given(value=VALUES)
def test_attribute_sizes_are_what_moto_computes(value: dict[str, Any]) -> None:
    # Given any AttributeValue as moto holds it (binary as base64 text)
    from moto.dynamodb.models.dynamo_type import DynamoType

    held = moto_result({"v": value})["Items"][0]["v"]
    expected = held.size()
    # When it is sized with the fix on
    with moto_fixes.attribute_sizes_by_type():
        found = DynamoType(held.to_json()).size()
    # Then the size is moto's own
    assert found == expected


def test_a_list_of_numbers_is_sized_without_asking_each_what_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a list of 200 numbers as moto holds it, and moto's kind questions counted
    from moto.dynamodb.models.dynamo_type import DynamoType

    asked = count_calls(monkeypatch, DynamoType, "is_number")
    held = DynamoType({"L": [{"N": str(n)} for n in range(200)]})
    # When it is sized with the fix on
    with moto_fixes.attribute_sizes_by_type():
        found = held.size()
    # Then its size is the digits it holds, and no number was asked what it is
    assert found == sum(len(str(n)) for n in range(200))
    assert asked() == 0


def test_a_list_of_numbers_is_sized_without_a_call_per_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a list of 200 numbers and a text as moto holds them, with the fix on, and the
    # sizing calls counted
    from moto.dynamodb.models.dynamo_type import DynamoType

    held = DynamoType({"L": [{"N": str(n)} for n in range(200)] + [{"S": "héllo"}]})
    with moto_fixes.attribute_sizes_by_type():
        sized = count_calls(monkeypatch, DynamoType, "size")
        # When the list is sized
        found = held.size()
    # Then its size is its digits and the text's bytes, in one call and one for the text
    assert found == sum(len(str(n)) for n in range(200)) + len("héllo".encode())
    assert sized() == 2


def test_an_item_is_serialized_without_searching_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an item of 20 attributes
    from moto.core.serialize import AttributePicker

    with moto(fixed=True) as (db, _):
        db.put_item(
            TableName=TABLE,
            Item=item("p", "a", **{f"a{n}": {"S": str(n)} for n in range(20)}),
        )
        lookups = 0
        original = AttributePicker.__call__

        def counting(self: AttributePicker, context: Any) -> Any:
            nonlocal lookups
            lookups += 1
            return original(self, context)

        monkeypatch.setattr(AttributePicker, "__call__", counting)
        # When it is read
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    # Then it reads back whole, with a few lookups for the response, none per attribute
    assert found["a19"] == {"S": "19"}
    assert lookups < 10


def test_an_item_of_text_and_numbers_is_written_without_walking_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an item holding a list of 200 numbers and a map of 50 strings
    from moto.core.serialize import BaseJSONSerializer

    with moto(fixed=True) as (db, _):
        numbers = {"L": [{"N": str(n)} for n in range(200)]}
        texts = {"M": {f"k{n}": {"S": str(n)} for n in range(50)}}
        db.put_item(TableName=TABLE, Item=item("p", "a", numbers=numbers, texts=texts))
        walked = 0
        original = BaseJSONSerializer._serialize

        def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal walked
            walked += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(BaseJSONSerializer, "_serialize", counting)
        # When it is read
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    # Then it reads back whole, and the serializer visited the response, not every value
    assert found["numbers"] == numbers and found["texts"] == texts
    assert walked < 20


def _big_items_paged(db: Any, _: Any) -> list[Any]:
    """Twelve items of ~200 KB (a 1 MB page holds five), read by Query and by Scan, page
    by page: what each page holds and where it ends."""
    for n in range(12):
        db.put_item(TableName=TABLE, Item=item("p", f"s{n:02d}", b={"S": "x" * (200_000 + n)}))
    pages: list[Any] = []
    for read, request in (
        (
            db.query,
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}},
        ),
        (db.scan, {}),
    ):
        start: dict[str, Any] = {}
        for _ in range(10):
            page = read(TableName=TABLE, **request, **start)
            pages.append(
                (
                    [i["sk"] for i in page["Items"]],
                    page["Count"],
                    page["ScannedCount"],
                    page.get("LastEvaluatedKey"),
                )
            )
            if "LastEvaluatedKey" not in page:
                break
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    return pages


def test_queries_and_scans_page_big_items_as_moto_pages_them() -> None:
    """Given twelve items of ~200 KB, When they are read by Query and by Scan page by
    page (each page ends at 1 MB), Then plain and fixed moto answer each page alike."""
    expected, found = same_on_plain_and_fixed_moto(_big_items_paged)
    assert found == expected
    assert len(expected) > 2  # each read took more than one page


def test_a_query_sizes_each_item_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given five items of three attributes, with the fix on, When a Query reads them,
    Then each attribute was sized once (moto sizes each item twice), and all were read."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    with moto(fixed=False) as (db, _), moto_fixes.query_items_sized_once():
        for n in range(5):
            db.put_item(TableName=TABLE, Item=item("p", f"s{n}", v={"N": str(n)}))
        sized = count_calls(monkeypatch, DynamoType, "size")
        found = db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
        )
    assert found["Count"] == 5
    assert sized() == 5 * 3


def test_a_query_that_projects_nothing_returns_its_items_uncopied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a partition of 8 items
    from moto.dynamodb.models.dynamo_type import Item

    with moto(fixed=True) as (db, _):
        for n in range(8):
            db.put_item(TableName=TABLE, Item=item("p", f"{n}", v={"L": [{"N": str(n)}] * 20}))
        copies = 0
        original = Item.__deepcopy__

        def counting(self: Any, memo: Any) -> Any:
            nonlocal copies
            copies += 1
            return original(self, memo)

        monkeypatch.setattr(Item, "__deepcopy__", counting)
        # When it is queried without a projection, then with one
        whole = db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
        )["Items"]
        uncopied = copies
        projected = db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
            ProjectionExpression="sk",
        )["Items"]
        again = db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
        )["Items"]
    # Then the first answer copied no item; the projected one is trimmed and the items
    # are left whole for the next query
    assert [i["v"]["L"][0] for i in whole] == [{"N": str(n)} for n in range(8)]
    assert uncopied == 0
    assert projected == [{"sk": {"S": str(n)}} for n in range(8)]
    assert again == whole


# ---- streams -------------------------------------------------------------------------------


def test_an_update_that_creates_an_item_streams_one_insert() -> None:
    # Given a table with a stream, on fixed moto
    with moto(fixed=True) as (db, streams):
        # When an update creates an item that was not there
        db.update_item(
            TableName=TABLE,
            Key=key("p", "new"),
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "x"}},
        )
        records = read_all(streams, iterator(db, streams))
    # Then the stream holds one INSERT, with the item as the update left it
    assert [(r["eventName"], r["dynamodb"]["NewImage"]) for r in records] == [
        ("INSERT", {**key("p", "new"), "v": {"S": "x"}})
    ]


def test_updates_of_existing_items_stream_as_moto_streams_them() -> None:
    # Given an item, When it is updated twice (once conditionally, failing) and deleted
    def scenario(db: Any, streams: Any) -> list[Any]:
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"S": "1"}))
        db.update_item(
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "2"}},
        )
        with pytest.raises(ClientError):
            db.update_item(
                TableName=TABLE,
                Key=key("p", "a"),
                UpdateExpression="SET v = :v",
                ConditionExpression="v = :old",
                ExpressionAttributeValues={":v": {"S": "3"}, ":old": {"S": "1"}},
            )
        db.delete_item(TableName=TABLE, Key=key("p", "a"))
        return plain(read_all(streams, iterator(db, streams)))

    expected, found = same_on_plain_and_fixed_moto(scenario)
    # Then the records are moto's: INSERT, MODIFY, REMOVE
    assert found == expected
    assert [r[0] for r in found] == ["INSERT", "MODIFY", "REMOVE"]


def moved_clock(monkeypatch: pytest.MonkeyPatch, *targets: str, by: datetime.timedelta) -> None:
    """Move moto's clock (as the named modules see it) by `by`."""
    from moto.core.utils import utcnow

    real = utcnow
    for target in targets:
        monkeypatch.setattr(target, lambda: real() + by)


def test_stream_records_older_than_24_hours_are_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_fixes, "_HOUSEKEEPING_SECONDS", 0.0)
    with moto(fixed=True) as (db, streams):
        arn = stream_arn(db)
        first = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        # Given two records written 25 hours ago
        with monkeypatch.context() as past:
            moved_clock(past, "moto.dynamodb.models.table.utcnow", by=-datetime.timedelta(hours=25))
            db.put_item(TableName=TABLE, Item=item("p", "old1"))
            db.put_item(TableName=TABLE, Item=item("p", "old2"))
        # When a record is written now
        db.put_item(TableName=TABLE, Item=item("p", "new"))
        records = read_all(streams, iterator(db, streams))
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        # Then only it is left, its sequence number follows theirs, the shard still starts
        # where it started, and reading from a trimmed record is refused as DynamoDB does
        start = int(first["SequenceNumberRange"]["StartingSequenceNumber"])
        assert [r["dynamodb"]["Keys"]["sk"]["S"] for r in records] == ["new"]
        assert int(records[0]["dynamodb"]["SequenceNumber"]) == start + 2
        assert shard["SequenceNumberRange"] == first["SequenceNumberRange"]
        trimmed = iterator(
            db,
            streams,
            "AT_SEQUENCE_NUMBER",
            SequenceNumber=first["SequenceNumberRange"]["StartingSequenceNumber"],
        )
        with pytest.raises(ClientError) as refused:
            streams.get_records(ShardIterator=trimmed)
        assert refused.value.response["Error"]["Code"] == "TrimmedDataAccessException"


def test_stream_records_younger_than_24_hours_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_fixes, "_HOUSEKEEPING_SECONDS", 0.0)
    with moto(fixed=True) as (db, streams):
        # Given a record written 23 hours ago
        with monkeypatch.context() as past:
            moved_clock(past, "moto.dynamodb.models.table.utcnow", by=-datetime.timedelta(hours=23))
            db.put_item(TableName=TABLE, Item=item("p", "old"))
        # When a record is written now
        db.put_item(TableName=TABLE, Item=item("p", "new"))
        # Then both are read from the start of the shard
        records = read_all(streams, iterator(db, streams))
    assert [r["dynamodb"]["Keys"]["sk"]["S"] for r in records] == ["old", "new"]


def test_a_shard_iterator_expires_after_15_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    with moto(fixed=True) as (db, streams):
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        # Given an iterator taken 16 minutes ago
        position = iterator(db, streams)
        moved_clock(monkeypatch, "moto.core.utils.utcnow", by=datetime.timedelta(minutes=16))
        # When it is used
        with pytest.raises(ClientError) as expired:
            streams.get_records(ShardIterator=position)
        # Then it is refused as expired, and a fresh one reads the record
        assert expired.value.response["Error"]["Code"] == "ExpiredIteratorException"
        assert len(read_all(streams, iterator(db, streams))) == 1


def test_a_dropped_shard_iterator_is_expired_not_an_internal_error() -> None:
    with moto(fixed=True) as (db, streams):
        # Given an iterator its reader dropped (as the local stream pollers do)
        position = iterator(db, streams)
        discard_shard_iterator(stream_arn(db), position)
        # When it is used
        with pytest.raises(ClientError) as expired:
            streams.get_records(ShardIterator=position)
    # Then DynamoDB Streams' answer for an unusable iterator comes back
    assert expired.value.response["Error"]["Code"] == "ExpiredIteratorException"


def test_expired_shard_iterators_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    monkeypatch.setattr(stream_fixes, "_HOUSEKEEPING_SECONDS", 0.0)
    with moto(fixed=True) as (db, streams):
        backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
        # Given 50 iterators issued and never used
        for _ in range(50):
            iterator(db, streams)
        # When a reader reads 16 minutes later
        moved_clock(monkeypatch, "moto.core.utils.utcnow", by=datetime.timedelta(minutes=16))
        read_all(streams, iterator(db, streams))
        # Then the old iterators are no longer kept
        assert len(backend.shard_iterators) <= 2


# ---- one request at a time -----------------------------------------------------------------


def test_the_longest_lock_hold_names_its_request() -> None:
    # Given fixed moto, its request lock's figures reset
    with moto(fixed=True) as (db, _):
        REQUEST_LOCK.reset()
        # When requests run
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
        )
        stats = REQUEST_LOCK.stats
    # Then they were counted, and the longest hold names a DynamoDB operation
    assert stats.requests == 2
    assert stats.longest_hold_operation in {"DynamoDB.PutItem", "DynamoDB.Query"}
    assert "longest lock hold" in stats.summary()


def test_a_slow_lock_hold_tells_waiting_from_computing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from moto.core.botocore_stubber import BotocoreStubber

    # Given fixed moto, each PutItem stalled 600 ms without computing (as a thread waiting for the
    # CPU)
    def stalled(self: Any, request: Any) -> Any:
        if b"PutItem" in (request.headers.get("X-Amz-Target") or b""):
            time.sleep(0.6)  # stands for a thread that waits for the CPU: no computing
        return served(self, request)

    served = BotocoreStubber.process_request
    monkeypatch.setattr(BotocoreStubber, "process_request", stalled)
    with moto(fixed=True) as (db, _), caplog.at_level(logging.WARNING):
        REQUEST_LOCK.reset()
        # When a request holds the lock 600 ms while computing almost nothing
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        stats = REQUEST_LOCK.stats
    # Then its warning and the summary say how little of the hold was its own work
    [warning] = [r.getMessage() for r in caplog.records if "held the request lock" in r.message]
    held, computing = re.findall(r"for (\d+) ms .*?(\d+) ms of it computing", warning)[0]
    assert int(held) >= 600 and int(computing) < 100
    assert stats.longest_hold_ms >= 600 and stats.longest_hold_cpu_ms < 100
    assert f"{stats.longest_hold_cpu_ms:.1f} ms of it computing" in stats.summary()


# ---- memory and per-request work -----------------------------------------------------------


def test_a_deleted_item_is_freed() -> None:
    import gc
    import weakref

    from moto.dynamodb.models import dynamodb_backends

    with moto(fixed=True) as (db, streams):
        # Given an item that was written, read, streamed and deleted
        db.put_item(TableName=TABLE, Item=item("p", "gone", v={"S": "x" * 100}))
        [partition] = dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE].items.values()
        [stored] = partition.values()
        written = weakref.ref(stored)
        del stored
        db.get_item(TableName=TABLE, Key=key("p", "gone"))
        read_all(streams, iterator(db, streams))
        db.delete_item(TableName=TABLE, Key=key("p", "gone"))
        # When nothing refers to it any more
        gc.collect()
        # Then it is gone from memory (moto kept every Item it ever made in a class list)
        assert written() is None


def test_a_handlers_methods_are_listed_once_not_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import inspect

    # Given fixed moto that has served a request, and inspect.getmembers counted
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        listings = 0
        original = inspect.getmembers

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal listings
            listings += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(inspect, "getmembers", counting)
        # When three more requests are served
        for _ in range(3):
            db.get_item(TableName=TABLE, Key=key("p", "a"))
    # Then the handler's methods were not listed again for each
    assert listings == 0


def test_an_update_expression_is_parsed_once_however_many_updates_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.dynamodb.parsing import tokens

    # Given an item with a counter on fixed moto, and its expression tokenizer counted
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a", n={"N": "0"}))
        parses = 0
        original = tokens.ExpressionTokenizer.make_list

        def counting(expression: str) -> Any:
            nonlocal parses
            parses += 1
            return original(expression)

        monkeypatch.setattr(tokens.ExpressionTokenizer, "make_list", staticmethod(counting))
        # When three updates use the same expression, and two use one that does not parse
        for _ in range(3):
            db.update_item(
                TableName=TABLE,
                Key=key("p", "a"),
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        refusals = []
        for _ in range(2):
            with pytest.raises(ClientError) as refused:
                db.update_item(TableName=TABLE, Key=key("p", "a"), UpdateExpression="ADD")
            refusals.append(refused.value.response["Error"]["Code"])
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]["n"]
    # Then the good one was parsed once and applied three times; the bad one refused twice
    assert found == {"N": "3"}
    assert refusals == ["ValidationException", "ValidationException"]
    assert parses == 1 + 2


def test_creating_a_symmetric_kms_key_generates_no_key_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    # Given RSA key-pair generation counted, and fixed moto
    pairs = 0
    original = rsa.generate_private_key

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal pairs
        pairs += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(rsa, "generate_private_key", counting)
    with mock_aws(config=MOTO_CONFIG), fixed_moto():  # type: ignore[call-overload]
        kms = boto3.client("kms", region_name="us-east-1")
        # When a symmetric key is made and used as the broker uses it
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
        plain = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"]
    # Then it works as before, and no RSA key pair was generated for it
    assert plain == data_key["Plaintext"]
    assert pairs == 0


@pytest.mark.parametrize(
    ("key_spec", "algorithm"),
    [("RSA_2048", "RSASSA_PSS_SHA_256"), ("ECC_NIST_P256", "ECDSA_SHA_256")],
)
@pytest.mark.parametrize("fixed", [False, True], ids=["moto", "fixed"])
def test_asymmetric_kms_keys_sign_and_verify_as_moto_does(
    key_spec: str, algorithm: str, fixed: bool
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    with mock_aws(config=MOTO_CONFIG), fixed_moto() if fixed else nullcontext():  # type: ignore[call-overload]
        kms = boto3.client("kms", region_name="us-east-1")
        # Given an asymmetric signing key
        key_id = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=key_spec)["KeyMetadata"]["KeyId"]
        # When a message is signed, verified, and the public key is read
        signed = kms.sign(
            KeyId=key_id, Message=b"hello", MessageType="RAW", SigningAlgorithm=algorithm
        )
        public = kms.get_public_key(KeyId=key_id)
        checks = [
            kms.verify(
                KeyId=key_id,
                Message=message,
                MessageType="RAW",
                Signature=signed["Signature"],
                SigningAlgorithm=algorithm,
            )["SignatureValid"]
            for message in (b"hello", b"other")
        ]
    # Then the signature verifies (and not for another message), and the public key is
    # one of that spec, whether the pair was made at CreateKey or at first use
    assert checks == [True, False]
    loaded = serialization.load_der_public_key(public["PublicKey"])
    assert isinstance(
        loaded, rsa.RSAPublicKey if key_spec.startswith("RSA") else ec.EllipticCurvePublicKey
    )


# ---- random strings drawn at once ------------------------------------------------------------


def test_request_ids_are_drawn_as_moto_draws_them_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given plain and fixed moto, When each answers requests, Then every request id is 52
    letters and digits, as moto's; with the fix none is drawn character by character
    (`choice` or `choices`), but from one run of random bytes (about 2% of an in-process
    request)."""
    from moto.moto_api._internal.moto_random import MotoRandom

    draws = 0
    original, original_choices = MotoRandom.choice, MotoRandom.choices

    def counted(self: MotoRandom, sequence: Any) -> Any:
        nonlocal draws
        draws += 1
        return original(self, sequence)

    def counted_choices(self: MotoRandom, sequence: Any, **kwargs: Any) -> Any:
        nonlocal draws
        draws += kwargs.get("k", 1)
        return original_choices(self, sequence, **kwargs)

    monkeypatch.setattr(MotoRandom, "choice", counted)
    monkeypatch.setattr(MotoRandom, "choices", counted_choices)

    def request_ids(db: Any, _: Any) -> tuple[list[str], int]:
        nonlocal draws
        draws = 0
        ids = [
            db.put_item(TableName=TABLE, Item=item("p", str(n)))["ResponseMetadata"]["RequestId"]
            for n in range(5)
        ]
        return ids, draws

    (plain_ids, plain_draws), (fixed_ids, fixed_draws) = same_on_plain_and_fixed_moto(request_ids)
    for found in (plain_ids, fixed_ids):
        assert all(re.fullmatch(r"[A-Za-z0-9]{52}", request_id) for request_id in found)
        assert len(set(found)) == 5
    assert plain_draws >= 5 * 52
    assert fixed_draws == 0


def test_a_seeded_moto_repeats_its_random_strings() -> None:
    """Given the fix, When moto's generator is seeded twice alike, Then it draws the same
    strings (moto's seeding for reproducible ids keeps working), lower case when asked."""
    from moto.moto_api._internal import mock_random

    with moto_fixes.random_strings_drawn_at_once():
        mock_random.seed(7)
        first = [
            mock_random.get_random_string(52),
            mock_random.get_random_string(8, lower_case=True),
        ]
        mock_random.seed(7)
        again = [
            mock_random.get_random_string(52),
            mock_random.get_random_string(8, lower_case=True),
        ]
    assert first == again
    assert re.fullmatch(r"[a-z0-9]{8}", first[1])
    assert len(first[0]) == 52


def test_random_strings_draw_each_character_alike() -> None:
    """Given the fix and a seeded generator, When many strings are drawn (with and without
    digits), Then every character of the pool turns up about as often as any other (as
    moto's `choice` draws them), and only those."""
    import collections
    import string

    from moto.moto_api._internal import mock_random

    with moto_fixes.random_strings_drawn_at_once():
        mock_random.seed(11)
        for digits, pool in (
            (True, string.ascii_letters + string.digits),
            (False, string.ascii_letters),
        ):
            drawn = "".join(
                mock_random.get_random_string(52, include_digits=digits) for _ in range(600)
            )
            counts = collections.Counter(drawn)
            assert set(counts) == set(pool)
            mean = len(drawn) / len(pool)
            assert all(0.8 * mean < n < 1.2 * mean for n in counts.values())


# ---- update expressions: structure checked once ----------------------------------------------

UPDATES: list[tuple[str, dict[str, str]]] = [
    # many actions, as the broker's segment updates have
    ("SET a = :v, b = :v, c = :v, d = :v, e = :v, f = :v, g = :v, h = :v, i = :v", {}),
    ("SET #n = :v", {"#n": "x"}),
    ("SET #n = :v", {"#n": "pk"}),  # the same text, now naming a key attribute: refused
    ("SET a = :v, a = :v", {}),  # overlapping paths: refused
    ("SET a.b = :v, a = :v", {}),
    ("SET a = :v REMOVE b ADD c :n", {}),
    ("REMOVE sk", {}),
    # refused at a nested node with another error than the root's (b.c and b, not a and a)
    ("SET a = :v, b.c = :v, b = :v, a = :v", {}),
    ("SET #x = :v, y = :v, #z = :v", {"#x": "q", "#z": "q"}),  # the same name twice
    ("SET a = :v SET b = :v", {}),  # two clauses of a kind: refused
    ("ADD c :n REMOVE b ADD d :n", {}),
    ("SET x = :v, y = :v REMOVE z, x", {}),
]


def test_update_expressions_are_accepted_and_refused_as_moto_does() -> None:
    """Given update expressions that moto accepts and ones it refuses (a key attribute, by
    name or through ExpressionAttributeNames; overlapping paths), When each is used twice
    (the second time the fix skips the structure checks that passed), Then plain and fixed
    moto answer each alike and leave the same item."""

    def scenario(db: Any, _: Any) -> list[Any]:
        outcomes: list[Any] = []
        for expression, names in UPDATES * 2:
            extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
            values = {":v": {"S": "v"}, ":n": {"N": "1"}}
            used = {k: v for k, v in values.items() if k in expression}
            try:
                db.update_item(
                    TableName=TABLE,
                    Key=key("p", "u"),
                    UpdateExpression=expression,
                    **({"ExpressionAttributeValues": used} if used else {}),
                    **extra,
                )
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"])
        outcomes.append(table_contents(db))
        return outcomes

    expected, found = same_on_plain_and_fixed_moto(scenario)
    assert found == expected
    assert [o for o in expected[: len(UPDATES)] if o != "ok"]  # some were refused


def test_an_update_expressions_structure_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given fixed moto, When one expression with many actions updates items twenty times,
    Then its structure checks (quadratic in the number of actions) ran for the first
    update only."""
    from moto.dynamodb.parsing import validators

    checks = count_calls(monkeypatch, validators.ActionCountValidator, "verify_action_counts")
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "u"))

        def update(n: int) -> None:
            db.update_item(
                TableName=TABLE,
                Key=key("p", "u"),
                UpdateExpression="SET a = :v, b = :v, c = :v, d = :v",
                ExpressionAttributeValues={":v": {"N": str(n)}},
            )

        before = checks()
        update(0)
        first = checks() - before
        for n in range(1, 20):
            update(n)
        assert db.get_item(TableName=TABLE, Key=key("p", "u"))["Item"]["d"] == {"N": "19"}
    assert first > 0
    assert checks() - before == first  # none after the first update's


def test_an_update_expressions_spaces_are_removed_once_per_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given fixed moto, When the same UpdateExpression text updates an item three times,
    Then moto's rewrite of the spaces around its operators ran for the first update only,
    and each update applied."""
    import re as re_module

    rewrites = 0
    original = re_module.sub

    def sub(pattern: Any, repl: Any, string: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal rewrites
        rewrites += pattern == r"\s*([=\+-])\s*"
        return original(pattern, repl, string, *args, **kwargs)

    monkeypatch.setattr(re_module, "sub", sub)
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "u", n={"N": "0"}))
        for _ in range(3):
            db.update_item(
                TableName=TABLE,
                Key=key("p", "u"),
                UpdateExpression="SET n = n + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        found = db.get_item(TableName=TABLE, Key=key("p", "u"))["Item"]["n"]
    assert found == {"N": "3"}
    assert rewrites == 1


def test_an_update_expressions_structure_is_checked_at_its_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given moto with the root check on, When an expression of thirty actions (the
    broker's lease of ten segment slots) updates an item, Then its clause counts and its
    paths were checked once each (moto checks them at each of its ~100 nested nodes), and
    the update applied."""
    from moto.dynamodb.parsing import validators

    counted = count_calls(monkeypatch, validators.ActionCountValidator, "verify_action_counts")
    overlaps = validators.OverlappingPathsValidator
    paths = count_calls(monkeypatch, overlaps, "check_for_overlapping_paths")
    slots = range(10)
    expression = "SET " + ", ".join(
        f"u[{i}] = :until, t[{i}] = :tok, n[{i}] = n[{i}] + :one" for i in slots
    )
    numbers = {"L": [{"N": "0"} for _ in slots]}
    with (
        mock_aws(config=MOTO_CONFIG),
        moto_fixes.update_expression_structures_checked_at_the_root(),
    ):
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        db.put_item(
            TableName=TABLE, Item={"pk": {"S": "s"}, "u": numbers, "t": numbers, "n": numbers}
        )
        db.update_item(
            TableName=TABLE,
            Key={"pk": {"S": "s"}},
            UpdateExpression=expression,
            ExpressionAttributeValues={
                ":until": {"N": "9"},
                ":tok": {"N": "7"},
                ":one": {"N": "1"},
            },
        )
        stored = db.get_item(TableName=TABLE, Key={"pk": {"S": "s"}})["Item"]
    assert (counted(), paths()) == (1, 1)
    assert stored["n"] == {"L": [{"N": "1"} for _ in slots]}


# ---- update expression trees copied node by node, walked with kept maps -------------------

TREE_UPDATES: list[tuple[str, dict[str, Any]]] = [
    # the broker's segment updates: list elements, arithmetic, many actions
    ("SET u[0] = :n, t[0] = :n, n[0] = n[0] + :one, u[2] = :n, n[2] = n[2] - :one", {}),
    ("SET l = list_append(l, :l), m.#k = if_not_exists(m.#k, :n)", {"#k": "key"}),
    ("SET l = list_append(:l, l) REMOVE u[1], u[0]", {}),
    ("ADD s :s, c :one DELETE d :s", {}),
    ("SET m.inner.deep = :n, #r = :n", {"#r": "reserved name"}),
    ("SET missing.path = :n", {}),  # refused: the path does not exist
    ("SET n[0] = n[0] + :s", {}),  # refused: a number plus a string
    ("SET u[9] = :n", {}),  # past the list's end: appended
    ("SET gr = :n, gk = :n", {}),  # refused: an index key of another type
    ("SET #g = :e", {"#g": "gk"}),  # refused: an empty index key
    ("SET gr = gr + :one, m.#i.deep = if_not_exists(m.#o, :n) - :one", {"#i": "inner", "#o": "o"}),
]


def _tree_scenario(db: Any, _: Any) -> list[Any]:
    db.put_item(
        TableName=TABLE,
        Item=item(
            "p",
            "u",
            u={"L": [{"N": "1"}, {"N": "2"}, {"N": "3"}]},
            t={"L": [{"N": "0"}, {"N": "0"}, {"N": "0"}]},
            n={"L": [{"N": "5"}, {"N": "5"}, {"N": "5"}]},
            l={"L": [{"S": "a"}]},
            m={"M": {"inner": {"M": {"deep": {"N": "1"}}}}},
            d={"SS": ["x", "y"]},
            gr={"N": "1"},
        ),
    )
    values = {":n": {"N": "7"}, ":one": {"N": "1"}, ":l": {"L": [{"S": "b"}]}}
    values[":s"] = {"SS": ["x"]}
    values[":e"] = {"S": ""}
    outcomes: list[Any] = []
    for expression, names in TREE_UPDATES * 2:
        used = {k: v for k, v in values.items() if k in expression}
        extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        try:
            db.update_item(
                TableName=TABLE,
                Key=key("p", "u"),
                UpdateExpression=expression,
                ExpressionAttributeValues=used,
                **extra,
            )
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"])
        outcomes.append(table_contents(db))
    return outcomes


def test_updates_of_lists_sets_maps_and_functions_apply_as_moto_applies_them() -> None:
    """Given an item with lists, sets and a nested map, When updates with list elements,
    arithmetic, list_append, if_not_exists, ADD, DELETE and REMOVE run on it twice (and
    ones moto refuses: a missing path, a type mismatch), Then plain and fixed moto answer
    each alike and leave the same item after each."""
    expected, found = same_on_plain_and_fixed_moto(_tree_scenario)
    assert found == expected
    assert any(o != "ok" and not isinstance(o, list) for o in expected)  # some refused


def _shape(node: Any, node_class: type, seen: dict[int, int]) -> Any:
    """A tree as comparable values: each node's class, state and its parent's visit order."""
    if not isinstance(node, node_class):
        return ("value", type(node), node)
    seen.setdefault(id(node), len(seen))
    state = {k: v for k, v in vars(node).items() if k not in ("children", "parent")}
    parent = None if node.parent is None else seen.get(id(node.parent), "outside")
    children = [_shape(c, node_class, seen) for c in node.children or []]
    return (type(node), state, parent, children)


def test_an_updates_passes_do_not_walk_the_paths_it_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given fixed moto and an item with three lists, When a segment lease (SET u[i] = ...,
    t[i] = ..., n[i] = n[i] + ...) updates it a second time, Then its validation visits no
    element of a path (`u`, `[0]`: no pass acts on them), and the update applies."""
    from moto.dynamodb.parsing import ast_nodes

    from mqless_cli.local.moto_fixes import expression_trees

    visited: list[str] = []
    original = expression_trees._KeptMapWalk.traverse

    def traverse(self: Any, traverser: Any, node: Any, child_id: int = -1) -> Any:
        visited.append(type(node).__name__)
        return original(self, traverser, node, child_id)

    monkeypatch.setattr(expression_trees._KeptMapWalk, "traverse", traverse)
    expression = ", ".join(f"u[{i}] = :u, t[{i}] = :t, n[{i}] = n[{i}] + :one" for i in range(3))
    numbers = {"L": [{"N": "0"}] * 3}
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "s", u=numbers, t=numbers, n=numbers))

        def lease() -> None:
            db.update_item(
                TableName=TABLE,
                Key=key("p", "s"),
                UpdateExpression="SET " + expression,
                ExpressionAttributeValues={":u": {"N": "9"}, ":t": {"N": "7"}, ":one": {"N": "1"}},
            )

        lease()
        visited.clear()
        lease()
        found = db.get_item(TableName=TABLE, Key=key("p", "s"))["Item"]
    path_elements = {ast_nodes.ExpressionAttribute.__name__, ast_nodes.ExpressionSelector.__name__}
    assert visited  # the passes ran
    assert path_elements.isdisjoint(visited)
    assert found["n"] == {"L": [{"N": "2"}] * 3}


def test_an_update_expression_tree_is_copied_as_deepcopy_copies_it() -> None:
    """Given the parsed trees of update expressions, When each is copied node by node,
    Then the copy has the classes, state, children and parent links of `copy.deepcopy`'s
    copy, and shares no node with the original."""
    from moto.dynamodb.parsing.ast_nodes import Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    from mqless_cli.local.moto_fixes.expression_trees import copied_tree

    for expression, _ in TREE_UPDATES + UPDATES:
        tree = UpdateExpressionParser.make(expression)
        copied = copied_tree(tree, Node)
        assert _shape(copied, Node, {}) == _shape(copy.deepcopy(tree), Node, {})
        originals: set[int] = set()
        _collect(tree, Node, originals)
        copies: set[int] = set()
        _collect(copied, Node, copies)
        assert originals.isdisjoint(copies)


def test_an_update_expression_tree_is_copied_by_its_program_as_deepcopy_copies_it() -> None:
    """Given the parsed trees of update expressions, When each is copied by its copy
    program, twice, Then each copy has the classes, state, children and parent links of
    `copy.deepcopy`'s copy, and shares no node with the original or the other copy."""
    from moto.dynamodb.parsing.ast_nodes import Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    from mqless_cli.local.moto_fixes.expression_trees import copy_program, run_copy_program

    for expression, _ in TREE_UPDATES + UPDATES:
        tree = UpdateExpressionParser.make(expression)
        program = copy_program(tree, Node)
        assert program is not None
        first, second = run_copy_program(program), run_copy_program(program)
        for copied in (first, second):
            assert _shape(copied, Node, {}) == _shape(copy.deepcopy(tree), Node, {})
        found: list[set[int]] = [set(), set(), set()]
        for ids, root in zip(found, (tree, first, second), strict=True):
            _collect(root, Node, ids)
        assert found[0].isdisjoint(found[1]) and found[1].isdisjoint(found[2])


def test_an_update_used_again_copies_its_tree_by_its_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given fixed moto and an update of ten list elements applied once, When it is applied
    again, Then its tree is not copied node by node (its copy program makes it), and the
    item is updated."""
    from mqless_cli.local.moto_fixes import expression_trees

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "u", u={"L": [{"N": "0"}] * 10}))

        def update(value: str) -> None:
            db.update_item(
                TableName=TABLE,
                Key=key("p", "u"),
                UpdateExpression="SET " + ", ".join(f"u[{i}] = :v" for i in range(10)),
                ExpressionAttributeValues={":v": {"N": value}},
            )

        update("8")
        walked = count_calls(monkeypatch, expression_trees, "copied_tree")
        update("9")
        stored = db.get_item(TableName=TABLE, Key=key("p", "u"))["Item"]
    assert walked() == 0
    assert stored["u"]["L"] == [{"N": "9"}] * 10


def test_copy_programs_are_kept_for_a_bounded_number_of_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given copy programs kept for 60 nodes at most, When forty different update texts
    (list slots 0..k) are applied, Then the programs kept hold 60 nodes or fewer (those
    of the last texts), and every update was applied."""
    from mqless_cli.local.moto_fixes import expression_trees

    monkeypatch.setattr(expression_trees, "_PROGRAM_NODES_KEPT", 60)
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "u", u={"L": [{"N": "0"}] * 40}))
        for k in range(40):
            db.update_item(
                TableName=TABLE,
                Key=key("p", "u"),
                UpdateExpression=f"SET u[{k}] = :v",
                ExpressionAttributeValues={":v": {"N": "1"}},
            )
        stored = db.get_item(TableName=TABLE, Key=key("p", "u"))["Item"]
        kept = expression_trees.KEPT_PARSES._programs.values()
        assert 0 < sum(len(program or ()) for _, program in kept) <= 60
    assert stored["u"]["L"] == [{"N": "1"}] * 40


def _collect(node: Any, node_class: type, ids: set[int]) -> None:
    if isinstance(node, node_class):
        ids.add(id(node))
        for child in node.children or []:
            _collect(child, node_class, ids)


def test_an_update_copies_its_tree_without_deepcopy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given fixed moto and an update with ten list-element actions, When it runs, Then no
    expression tree goes through `copy.deepcopy`, and the item is updated."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import Node

    trees_deep_copied = 0
    original = validators.deepcopy  # type: ignore[attr-defined]

    def counted(value: Any, memo: Any = None) -> Any:
        nonlocal trees_deep_copied
        trees_deep_copied += isinstance(value, Node)
        return original(value, memo)

    monkeypatch.setattr(validators, "deepcopy", counted)  # the name the validator calls
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "u", u={"L": [{"N": "0"}] * 10}))
        db.update_item(
            TableName=TABLE,
            Key=key("p", "u"),
            UpdateExpression="SET " + ", ".join(f"u[{i}] = :v" for i in range(10)),
            ExpressionAttributeValues={":v": {"N": "9"}},
        )
        stored = db.get_item(TableName=TABLE, Key=key("p", "u"))["Item"]["u"]
    assert stored == {"L": [{"N": "9"}] * 10}
    assert trees_deep_copied == 0


def test_a_validation_pass_builds_its_processing_map_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given fixed moto and an update of twenty list elements (hundreds of tree nodes),
    When it runs, Then each validation pass built its processing map once (moto validates
    an update once), not twice per node visited, and the item is updated."""
    from moto.dynamodb.parsing import validators

    built = count_calls(
        monkeypatch, validators.ExpressionAttributeValueProcessor, "_processing_map"
    )
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "u", u={"L": [{"N": "0"}] * 20}))
        db.update_item(
            TableName=TABLE,
            Key=key("p", "u"),
            UpdateExpression="SET " + ", ".join(f"u[{i}] = :v" for i in range(20)),
            ExpressionAttributeValues={":v": {"N": "9"}},
        )
        stored = db.get_item(TableName=TABLE, Key=key("p", "u"))["Item"]["u"]
    assert stored == {"L": [{"N": "9"}] * 20}
    assert built() == 1


# ---- condition expressions lexed once ---------------------------------------------------------

CONDITIONS: list[tuple[str, dict[str, str]]] = [
    ("attribute_not_exists(pk)", {}),
    ("attribute_exists(pk) AND (v = :s OR n < :n)", {}),
    ("#v IN (:s, :t) AND NOT begins_with(#v, :t)", {"#v": "v"}),
    ("#v IN (:s, :t)", {"#v": "missing"}),
    ("n BETWEEN :n AND :m AND size(v) > :n", {}),
    ("m.a[0] = :s OR contains(l, :s)", {}),
    ("v = :undefined", {}),  # a value it does not define
    ("#undefined = :s", {}),  # a name it does not define
    ("v == :s", {}),  # does not parse
    ("(v = :s", {}),  # does not parse: refused
]


def test_condition_expressions_hold_and_fail_as_moto_decides() -> None:
    """Given condition expressions that hold, fail, or are refused (undefined names and
    values, text that does not parse: moto raises KeyError and ValueError there), When
    each guards a write twice (the second time from the kept tokens), Then plain and fixed
    moto answer each alike and leave the same item."""

    def scenario(db: Any, _: Any) -> list[Any]:
        db.put_item(TableName=TABLE, Item=item("p", "c", v={"S": "s"}, n={"N": "1"}))
        outcomes: list[Any] = []
        for expression, names in CONDITIONS * 2:
            values = {":s": {"S": "s"}, ":t": {"S": "t"}, ":n": {"N": "0"}, ":m": {"N": "5"}}
            used = {k: v for k, v in values.items() if re.search(f"{k}\\b", expression)}
            extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
            if used:
                extra["ExpressionAttributeValues"] = used
            try:
                db.put_item(
                    TableName=TABLE,
                    Item=item("p", "c", v={"S": "s"}, n={"N": str(len(outcomes))}),
                    ConditionExpression=expression,
                    **extra,
                )
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"])
            except (KeyError, ValueError) as error:  # moto's own, for some bad expressions
                outcomes.append({"Code": type(error).__name__, "Message": str(error)})
        outcomes.append(table_contents(db))
        return outcomes

    expected, found = same_on_plain_and_fixed_moto(scenario)
    assert found == expected
    kinds = {o if o == "ok" else o["Code"] for o in expected[: len(CONDITIONS)]}
    assert {"ok", "ConditionalCheckFailedException", "KeyError", "ValueError"} <= kinds


def test_a_condition_expression_is_lexed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given fixed moto, When one condition guards twenty writes, Then its text was lexed
    for the first only."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    lexed = count_calls(monkeypatch, ConditionExpressionParser, "_lex_one_node")
    with moto(fixed=True) as (db, _):
        for n in range(20):
            db.put_item(
                TableName=TABLE,
                Item=item("p", "c", n={"N": str(n)}),
                ConditionExpression="attribute_not_exists(pk) OR n < :n",
                ExpressionAttributeValues={":n": {"N": str(n)}},
            )
        assert db.get_item(TableName=TABLE, Key=key("p", "c"))["Item"]["n"] == {"N": "19"}
    assert 0 < lexed() <= 20  # one text of about a dozen tokens, lexed once


# ---- condition expressions: parsed once ---------------------------------------------------

OPERANDS = st.sampled_from(["n", "v", "m.a", "l[0]", "#a", "size(v)", ":x", ":y", ":z"])
COMPARISONS = st.one_of(
    st.builds(
        lambda a, op, b: f"{a} {op} {b}",
        OPERANDS,
        st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
        OPERANDS,
    ),
    st.builds(lambda a, b, c: f"{a} BETWEEN {b} AND {c}", OPERANDS, OPERANDS, OPERANDS),
    st.builds(lambda a, b, c: f"{a} IN ({b}, {c})", OPERANDS, OPERANDS, OPERANDS),
    st.builds(
        lambda f, a: f"{f}({a})",
        st.sampled_from(["attribute_exists", "attribute_not_exists"]),
        OPERANDS,
    ),
    st.builds(
        lambda f, a, b: f"{f}({a}, {b})",
        st.sampled_from(["begins_with", "contains"]),
        OPERANDS,
        OPERANDS,
    ),
)
CONDITION_TEXTS = st.recursive(
    COMPARISONS,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["AND", "OR"]), inner),
        st.builds(lambda a: f"NOT {a}", inner),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=6,
)
CONDITION_VALUES = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from([":x", ":y"]),
        st.one_of(
            st.integers(-3, 3).map(lambda n: {"N": str(n)}),
            st.sampled_from(["", "a", "ab", "b"]).map(lambda s: {"S": s}),
        ),
    ),
)
CONDITION_NAMES = st.one_of(st.none(), st.sampled_from([{"#a": "n"}, {"#a": "v"}, {"#a": "gone"}]))


def condition_verdict(text: str, names: Any, values: Any) -> Any:
    """What moto's condition parser makes of `text` on one item: its verdict, and the
    names and values it found; or the error it raised."""
    from moto.dynamodb.comparisons import create_condition_expression_parser
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    stored = Item(
        DynamoType({"S": "p"}),
        DynamoType({"S": "c"}),
        {
            "pk": {"S": "p"},
            "sk": {"S": "c"},
            "n": {"N": "1"},
            "v": {"S": "ab"},
            "m": {"M": {"a": {"N": "2"}}},
            "l": {"L": [{"S": "a"}]},
        },
    )
    parser = create_condition_expression_parser(text, names, values)
    try:
        verdict = parser.parse().expr(stored)
    except Exception as error:  # moto raises its own errors, KeyError and ValueError
        return type(error).__name__, str(error)
    return verdict, parser.expr_attr_names_found, parser.expr_attr_values_found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    uses=st.lists(
        st.tuples(CONDITION_TEXTS, CONDITION_NAMES, CONDITION_VALUES), min_size=1, max_size=6
    ),
    again=st.lists(st.tuples(CONDITION_NAMES, CONDITION_VALUES), min_size=1, max_size=3),
)
def test_kept_condition_trees_decide_as_moto_decides(
    uses: list[tuple[str, Any, Any]], again: list[tuple[Any, Any]]
) -> None:
    # Given condition texts (comparisons, BETWEEN, IN, functions, AND/OR/NOT, parentheses,
    # names through a placeholder, undefined values) and the values and names of each use,
    # where every text is used again with other values and names
    used = [*uses, *((text, names, values) for text, _, _ in uses for names, values in again)]
    # When moto's parser decides each use on one item, with its trees kept and without
    expected = [condition_verdict(*use) for use in used]
    with moto_fixes.condition_expressions_parsed_once():
        found = [condition_verdict(*use) for use in used]
    # Then every verdict, and the names and values found, are moto's own
    assert found == expected


def test_a_condition_expression_is_parsed_once_whatever_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given fixed moto, When one condition, with a new value each time, guards twenty
    updates, Then its text was parsed for the first only, and each update was decided on its
    own value (a condition holding for the first value only would refuse the later ones)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    parsed = count_calls(monkeypatch, ConditionExpressionParser, "_parse_paths")
    with moto(fixed=True) as (db, _):
        for n in range(1, 21):
            db.update_item(
                TableName=TABLE,
                Key=key("p", "c"),
                UpdateExpression="SET n = :n",
                ConditionExpression="attribute_not_exists(n) OR n < :n",
                ExpressionAttributeValues={":n": {"N": str(n)}},
            )
        assert db.get_item(TableName=TABLE, Key=key("p", "c"))["Item"]["n"] == {"N": "20"}
    assert parsed() == 1


# ---- errors: JSON errors written once --------------------------------------------------------


def _refusals(db: Any, _: Any) -> list[Any]:
    """Requests DynamoDB refuses (failed conditions, invalid expressions, a missing table) and
    updates whose ADD reaches a missing attribute (moto raises and catches an error there):
    each answer, with the whole error an SDK reads (code, message, the failed item)."""
    db.put_item(TableName=TABLE, Item=item("p", "a", n={"N": "1"}))

    def refused(call: Callable[..., Any], **request: Any) -> Any:
        try:
            result = call(**request)
        except ClientError as error:
            answer = dict(error.response)
            answer.pop("ResponseMetadata", None)
            return answer
        result.pop("ResponseMetadata", None)
        return result

    return [
        refused(
            db.put_item,
            TableName=TABLE,
            Item=item("p", "a"),
            ConditionExpression="attribute_not_exists(pk)",
        ),
        refused(
            db.update_item,
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="SET n = :v",
            ConditionExpression="n > :v",
            ExpressionAttributeValues={":v": {"N": "5"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ),
        refused(
            db.delete_item,
            TableName=TABLE,
            Key=key("p", "a"),
            ConditionExpression="attribute_not_exists(n)",
        ),
        refused(
            db.update_item,
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="ADD c :one SET d = if_not_exists(d, :one)",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
        refused(
            db.update_item,
            TableName=TABLE,
            Key=key("p", "b"),
            UpdateExpression="ADD c :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_OLD",
        ),
        refused(
            db.update_item,
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="SET pk = :v",
            ExpressionAttributeValues={":v": {"S": "x"}},
        ),
        refused(
            db.update_item, TableName=TABLE, Key=key("p", "a"), UpdateExpression="SET n = :missing"
        ),
        refused(
            db.query,
            TableName=TABLE,
            KeyConditionExpression="sk = :s",
            ExpressionAttributeValues={":s": {"S": "a"}},
        ),
        refused(db.get_item, TableName="no-such-table", Key=key("p", "a")),
        table_contents(db),
    ]


def test_errors_are_answered_as_moto_answers_them() -> None:
    """Given failed conditions (with and without the item returned), invalid updates and
    queries, a missing table, and updates whose ADD reaches a missing attribute, When each
    is requested of plain and of fixed moto, Then both answer alike (every error's code,
    message and item) and leave the same items."""
    expected, found = same_on_plain_and_fixed_moto(_refusals)
    assert found == expected
    assert expected[0]["Error"]["Code"] == "ConditionalCheckFailedException"
    assert expected[1]["Item"] == item("p", "a", n={"N": "1"})


def test_a_failed_condition_is_not_written_out_as_xml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given fixed moto, When a conditional PutItem fails and an UpdateItem ADDs to a missing
    attribute, Then no error was written out as XML (only the JSON answer a DynamoDB client
    reads), and the update applied."""
    import xmltodict

    unparsed = count_calls(monkeypatch, xmltodict, "unparse")
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        with pytest.raises(db.exceptions.ConditionalCheckFailedException):
            db.put_item(
                TableName=TABLE, Item=item("p", "a"), ConditionExpression="attribute_not_exists(pk)"
            )
        db.update_item(
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="ADD c :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
        assert db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]["c"] == {"N": "1"}
    assert unparsed() == 0


# ---- dynamo_types: plain values compared directly ------------------------------------------


def _comparisons(left: dict[str, Any], right: dict[str, Any]) -> list[Any]:
    """What moto's DynamoType answers for `left` against `right`: its hash, equality and
    orderings (an ordering that raises answers the exception's type)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    a, b = DynamoType(copy.deepcopy(left)), DynamoType(copy.deepcopy(right))
    answers: list[Any] = [hash(a) if left.keys() & {"S", "N", "B", "BOOL", "NULL"} else None]
    for compare in (
        lambda: a == b,
        lambda: a != b,
        lambda: a < b,
        lambda: a <= b,
        lambda: a > b,
        lambda: a >= b,
        lambda: a == left,  # not a DynamoType: through the cast, as before
    ):
        try:
            answers.append(compare())
        except Exception as error:  # noqa: BLE001 - the answer moto gives
            answers.append(type(error).__name__)
    return answers


COMPARED = st.one_of(
    LEAVES,
    st.sampled_from([{"S": "a"}, {"S": "b"}, {"S": "1"}, {"N": "1"}, {"N": "1.0"}, {"B": b"a"}]),
)


@settings(max_examples=300, deadline=None)
@given(left=COMPARED, right=COMPARED)
def test_values_compare_and_hash_as_moto_compares_them(
    left: dict[str, Any], right: dict[str, Any]
) -> None:
    # Given two values of any type (the same text as a string and a number, among them)
    # When moto hashes and compares them with and without the fix
    expected = _comparisons(left, right)
    with moto_fixes.plain_values_compared_directly():
        found = _comparisons(left, right)
    # Then every answer is the same (a refused ordering refused alike)
    assert found == expected


def test_string_keys_are_hashed_and_compared_without_casting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given fixed moto and a table keyed by strings, When items are put, updated and read
    back by their keys, Then no string was cast to hash or compare it, and the answers are
    right."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    casts = 0
    original = DynamoType.cast_value

    def counted(self: Any) -> Any:
        nonlocal casts
        if self.type == "S":
            casts += 1
        return original.fget(self)  # type: ignore[attr-defined]

    with moto(fixed=True, stream=None) as (db, _):
        monkeypatch.setattr(DynamoType, "cast_value", property(counted))
        for sk in ("a", "b", "c"):
            db.put_item(TableName=TABLE, Item=item("p", sk))
        db.update_item(
            TableName=TABLE,
            Key=key("p", "b"),
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
        got = db.get_item(TableName=TABLE, Key=key("p", "b"))["Item"]
    assert got == item("p", "b", v={"N": "1"})
    assert casts == 0


# ---- conditions: contains without a DynamoType per element -----------------------------------

CONTAINED = {
    "ss": {"SS": ["a", "b", "1"]},
    "ns": {"NS": ["1", "2.50", "-3"]},
    "bs": {"BS": [b"a", b"b"]},
    "l": {"L": [{"N": "1"}, {"S": "a"}, {"L": [{"N": "2"}]}, {"M": {"k": {"S": "v"}}}]},
    "s": {"S": "abc"},
    "m": {"M": {"a": {"S": "a"}}},
    "n": {"N": "1"},
}
OPERANDS = [
    {"S": "a"},
    {"S": "1"},
    {"S": "zz"},
    {"S": "b"},
    {"N": "1"},
    {"N": "1.0"},
    {"N": "2.5"},
    {"N": "7"},
    {"B": b"a"},
    {"L": [{"N": "2"}]},
    {"M": {"k": {"S": "v"}}},
    {"SS": ["a"]},
    {"BOOL": True},
    {"NULL": True},
]


def _contains_answers(db: Any, _: Any) -> list[Any]:
    """Whether a conditional update with `contains` (and `NOT contains`) on each attribute
    (every set type, a list, text, a map, a number, a missing one) applies, for each
    operand, and the item after them."""
    db.put_item(TableName=TABLE, Item=item("p", "c", **CONTAINED))
    answers: list[Any] = []
    for name in [*CONTAINED, "missing"]:
        for operand in OPERANDS:
            for condition in ("contains(#a, :o)", "NOT contains(#a, :o)"):
                answers.append(
                    answer_of(
                        db.update_item,
                        TableName=TABLE,
                        Key=key("p", "c"),
                        UpdateExpression="ADD tries :one",
                        ConditionExpression=condition,
                        ExpressionAttributeNames={"#a": name},
                        ExpressionAttributeValues={":o": operand, ":one": {"N": "1"}},
                    )
                )
    answers.append(db.scan(TableName=TABLE)["Items"])
    return answers


def test_contains_conditions_are_met_and_failed_as_moto_decides() -> None:
    """Given an item with sets of every type, a nested list, text, a map and a number, When
    conditional updates check `contains` and `NOT contains` of operands of every type on
    each (and on a missing attribute), Then plain and fixed moto apply and refuse the same
    ones, alike."""
    expected, found = same_on_plain_and_fixed_moto(_contains_answers)
    assert found == expected
    refused = expected.count(("ConditionalCheckFailedException", "The conditional request failed"))
    assert 0 < refused < len(expected) - 1  # some applied, some refused


def test_contains_on_a_set_casts_its_elements_without_a_dynamotype_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given fixed moto and an item with a set of 200 numbers, When a conditional update
    checks `NOT contains` on it, Then no DynamoType was made for each element, and the
    update applied."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    with moto(fixed=True, stream=None) as (db, _):
        numbers = [str(n) for n in range(200)]
        db.put_item(TableName=TABLE, Item=item("p", "c", a={"NS": numbers}))
        made = count_calls(monkeypatch, DynamoType, "__init__")
        db.update_item(
            TableName=TABLE,
            Key=key("p", "c"),
            UpdateExpression="ADD a :ps",
            ConditionExpression="NOT contains(a, :p)",
            ExpressionAttributeValues={":ps": {"NS": ["500"]}, ":p": {"N": "500"}},
        )
        count = made()
        got = db.get_item(TableName=TABLE, Key=key("p", "c"))["Item"]
    assert "500" in got["a"]["NS"]
    assert count < 200
