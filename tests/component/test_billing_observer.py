"""The moto observer bills real requests by the items moto holds.

Index billing is tested on a table of this module's own (the messages table has no index
since storage engine v2): its `by_visibility` index is keyed on `vq` + `visible_at` and
projects `receive_count` and `expires_at`, so an item's index entry is its table keys, those
two keys and those two attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mqless_cli.billing import Meter, Usage
from tests.component.conftest import Aws

INDEX = "by_visibility"


@pytest.fixture
def table(aws: Aws) -> Iterator[str]:
    """A table with a secondary index, made for the test and deleted after it."""
    name = "billing-indexed"
    aws.dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": t}
            for n, t in (("pk", "S"), ("sk", "S"), ("vq", "S"), ("visible_at", "N"))
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "vq", "KeyType": "HASH"},
                    {"AttributeName": "visible_at", "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": ["receive_count", "expires_at"],
                },
            }
        ],
    )
    yield name
    aws.dynamodb.delete_table(TableName=name)


def item(body: int, *, sk: str = "M#1", visible_at: int = 1000, **extra: Any) -> dict[str, Any]:
    """A message item of 26 + `body` bytes: pk "Q#q" (2+3), sk "M#1" (2+3), vq "q" (2+1),
    visible_at 1000 (10+2), body (4+n)."""
    attributes: dict[str, Any] = {
        "pk": {"S": "Q#q"},
        "sk": {"S": sk},
        "vq": {"S": "q"},
        "visible_at": {"N": str(visible_at)},
        "body": {"B": b"x" * body},
        **extra,
    }
    return attributes


KEY = {"pk": {"S": "Q#q"}, "sk": {"S": "M#1"}}


def units(usage: Usage, table: str) -> tuple[float, float, float]:
    """(table write units, index write units, read units)."""
    return (
        usage.write_units.get(table, 0),
        usage.write_units.get(f"{table}/{INDEX}", 0),
        sum(usage.read_units.values()),
    )


def test_a_put_bills_its_item_size_and_one_index_entry(aws: Aws, table: str, meter: Meter) -> None:
    # Given nothing stored; When a 3,000-byte item (26 + 2,974) is put
    aws.dynamodb.put_item(TableName=table, Item=item(2974))

    # Then 3 units on the table (3,000 / 1,024 -> 3) and 1 for the 30-byte index entry
    # (pk 5 + sk 5 + vq 3 + visible_at 12); the partition is the queue's
    usage = meter.usage()
    assert units(usage, table) == (3, 1, 0)
    assert usage.partition_write_units == {f"{table} Q#q": 3, f"{table}/{INDEX} q": 1}


def test_an_update_that_grows_the_item_bills_its_new_size(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given a 1,000-byte item (1 unit)
    aws.dynamodb.put_item(TableName=table, Item=item(974))
    before = meter.usage()

    # When an update adds 2,000 bytes ("extra" 5 + 2,000: 3,005 bytes in all, 3 units)
    aws.dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET extra = :x",
        ExpressionAttributeValues={":x": {"B": b"y" * 2000}},
    )

    # Then the larger of before and after: 3; the index holds no `extra`: nothing there
    assert units(meter.usage() - before, table) == (3, 0, 0)


def test_a_failed_condition_bills_the_existing_item_and_is_counted(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given a 2,000-byte item (2 units)
    aws.dynamodb.put_item(TableName=table, Item=item(1974))
    before = meter.usage()

    # When a conditional delete finds its condition false
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        aws.dynamodb.delete_item(
            TableName=table,
            Key=KEY,
            ConditionExpression="lease_id = :l",
            ExpressionAttributeValues={":l": {"S": "not-mine"}},
        )

    # Then it bills the existing item's 2 units, no index write, and counts one failure
    delta = meter.usage() - before
    assert units(delta, table) == (2, 0, 0)
    assert delta.failed_conditions == {table: 1}


def test_a_transaction_bills_two_writes_per_item(aws: Aws, table: str, meter: Meter) -> None:
    # Given a metered table with an index
    # When a transaction puts a 1,000-byte item (1 unit) and a 2,000-byte one (2 units)
    aws.dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": item(974)}},
            {"Put": {"TableName": table, "Item": item(1974, sk="M#2")}},
        ]
    )

    # Then the table bills (1 + 2) x 2 = 6; each index entry once: 2
    assert units(meter.usage(), table) == (6, 2, 0)


def test_a_cancelled_transaction_bills_two_units_per_existing_item(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given a 2,000-byte item (2 units)
    aws.dynamodb.put_item(TableName=table, Item=item(1974))
    before = meter.usage()

    # When a transaction deletes it under a false condition and puts a new one
    with pytest.raises(ClientError, match="TransactionCanceled"):
        aws.dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": table,
                        "Key": KEY,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Put": {"TableName": table, "Item": item(10, sk="M#2")}},
            ]
        )

    # Then nothing was written, yet the existing item bills 2 x 2 and the missing one
    # 1 x 2: 6 units, and one failed condition
    delta = meter.usage() - before
    assert units(delta, table) == (6, 0, 0)
    assert delta.failed_conditions == {table: 1}


def test_changing_the_index_sort_key_bills_a_delete_and_a_put_in_the_index(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given an item in the index (visible at 1000)
    aws.dynamodb.put_item(TableName=table, Item=item(100))
    before = meter.usage()

    # When a lease moves it to 9000
    aws.dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET visible_at = :v",
        ExpressionAttributeValues={":v": {"N": "9000"}},
    )

    # Then 1 unit on the table and 2 (delete + put) on the index
    delta = meter.usage() - before
    assert units(delta, table) == (1, 2, 0)
    assert delta.partition_write_units == {f"{table} Q#q": 1, f"{table}/{INDEX} q": 2}


def test_a_query_bills_every_item_it_read_before_its_filter(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given three 3,000-byte items in one partition (9,000 bytes: 3 x 4 KB)
    for n in range(3):
        aws.dynamodb.put_item(TableName=table, Item=item(2974, sk=f"M#{n}"))
    before = meter.usage()

    # When a strongly consistent query keeps only one of them with its filter, and a
    # COUNT query reads them all again
    found = aws.dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        FilterExpression="sk = :one",
        ExpressionAttributeValues={":p": {"S": "Q#q"}, ":one": {"S": "M#1"}},
        ConsistentRead=True,
    )
    middle = meter.usage()
    aws.dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "Q#q"}},
        Select="COUNT",
    )

    # Then the filtered query still bills all 9,000 bytes read: 3 units; the eventually
    # consistent COUNT the same bytes at half: 1.5
    assert (found["Count"], found["ScannedCount"]) == (1, 3)
    assert (middle - before).read_units == {table: 3}
    assert (meter.usage() - middle).read_units == {table: 1.5}


def test_an_index_query_bills_the_entries_eventually_consistently(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given two large items whose index entries are 30 bytes each
    for n in range(2):
        aws.dynamodb.put_item(TableName=table, Item=item(5000, sk=f"M#{n}"))
    before = meter.usage()

    # When the index is queried
    aws.dynamodb.query(
        TableName=table,
        IndexName=INDEX,
        KeyConditionExpression="vq = :q",
        ExpressionAttributeValues={":q": {"S": "q"}},
    )

    # Then 60 bytes of entries: 1 unit, halved
    assert (meter.usage() - before).read_units == {f"{table}/{INDEX}": 0.5}


def test_reading_a_missing_item_still_bills(aws: Aws, table: str, meter: Meter) -> None:
    # Given a metered table without the item
    # When it is read, once strongly and once eventually consistent
    aws.dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)
    aws.dynamodb.get_item(TableName=table, Key=KEY)

    # Then both reads bill: 1 + 0.5 units
    assert meter.usage().read_units == {table: 1.5}


def test_a_batch_write_bills_each_item_as_its_own_put_or_delete(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given a 3,000-byte item to delete
    aws.dynamodb.put_item(TableName=table, Item=item(2974))
    before = meter.usage()

    # When one batch puts a 500-byte and a 1,500-byte item and deletes the 3,000-byte one
    aws.dynamodb.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": item(474, sk="M#2")}},
                {"PutRequest": {"Item": item(1474, sk="M#3")}},
                {"DeleteRequest": {"Key": KEY}},
            ]
        }
    )

    # Then 1 + 2 + 3 = 6 units on the table and three index entries (2 in, 1 out)
    delta = meter.usage() - before
    assert units(delta, table) == (6, 3, 0)
    assert delta.requests == {"dynamodb:BatchWriteItem": 1}


def test_kms_requests_are_counted_by_operation(aws: Aws, meter: Meter) -> None:
    # Given a metered KMS key
    # When a data key is generated
    aws.kms.generate_data_key(KeyId=aws.settings.kms_key_id, KeySpec="AES_256")

    # Then one kms:GenerateDataKey request is counted
    assert meter.usage().requests == {"kms:GenerateDataKey": 1}


def test_the_meter_reads_an_updates_images_without_asking_moto_for_them(
    aws: Aws, table: str, meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a stored item, When it is updated under the meter, Then the meter read its
    images (before and after) from the table itself: moto's own `get_item` ran only for
    moto's handler, and the update billed as before."""
    from moto.dynamodb.models import DynamoDBBackend

    from tests.call_counts import count_calls

    aws.dynamodb.put_item(TableName=table, Item=item(974))
    before = meter.usage()
    lookups = count_calls(monkeypatch, DynamoDBBackend, "get_item")

    aws.dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET extra = :x",
        ExpressionAttributeValues={":x": {"B": b"y" * 2000}},
    )

    assert lookups() == 1  # the handler's, which finds the item to update
    assert units(meter.usage() - before, table) == (3, 0, 0)
