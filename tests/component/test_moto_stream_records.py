"""moto's DynamoDB Streams records with the SizeBytes DynamoDB gives them
(`moto_fixes.stream_record_sizes_as_dynamodb_counts`): DynamoDB's documented examples, the
records otherwise as moto writes them, and no record written out as JSON to be sized."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mqless_cli.local.moto_fixes import fixed_moto
from tests.call_counts import count_calls
from tests.conftest import MOTO_CONFIG


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py); each test starts its own motos."""


@contextmanager
def streamed_table(
    keys: list[tuple[str, str, str]], view: str, *, fixed: bool = True
) -> Iterator[tuple[Any, Any]]:
    """A moto (fixed or plain) with a table "T" of the given (name, HASH/RANGE, type) keys
    and a stream of `view`: a DynamoDB and a DynamoDB Streams client."""
    with mock_aws(config=MOTO_CONFIG), fixed_moto() if fixed else nullcontext():  # type: ignore[call-overload]
        db = boto3.client("dynamodb", region_name="us-east-1")
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        db.create_table(
            TableName="T",
            KeySchema=[{"AttributeName": n, "KeyType": k} for n, k, _ in keys],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, _, t in keys],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
        )
        yield db, streams


def records(db: Any, streams: Any) -> list[dict[str, Any]]:
    """Every record of table T's stream, oldest first."""
    arn = db.describe_table(TableName="T")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    position = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return list(streams.get_records(ShardIterator=position)["Records"])


def test_a_keys_only_record_is_sized_as_in_dynamodbs_example() -> None:
    # Given DynamoDB's example table (ForumName, Subject) with a KEYS_ONLY stream
    keys = [("ForumName", "HASH", "S"), ("Subject", "RANGE", "S")]
    with streamed_table(keys, "KEYS_ONLY") as (db, streams):
        # When the example's item is written
        db.put_item(
            TableName="T",
            Item={
                "ForumName": {"S": "DynamoDB"},
                "Subject": {"S": "DynamoDB Thread 3"},
                "Views": {"N": "12345"},
            },
        )
        (record,) = records(db, streams)
    # Then its record's size is the example's: the keys' 41 bytes
    assert record["dynamodb"]["SizeBytes"] == 41


def test_an_insert_a_modify_and_a_remove_are_sized_as_in_dynamodbs_example() -> None:
    # Given DynamoDB's example table (key Id) with a NEW_AND_OLD_IMAGES stream
    with streamed_table([("Id", "HASH", "N")], "NEW_AND_OLD_IMAGES") as (db, streams):
        # When the example's item is put, changed and deleted
        db.put_item(TableName="T", Item={"Id": {"N": "101"}, "Message": {"S": "New item!"}})
        db.put_item(
            TableName="T", Item={"Id": {"N": "101"}, "Message": {"S": "This item has changed"}}
        )
        db.delete_item(TableName="T", Key={"Id": {"N": "101"}})
        found = [(r["eventName"], r["dynamodb"]["SizeBytes"]) for r in records(db, streams)]
    # Then the records are sized as in the example: keys and the images each holds
    assert found == [("INSERT", 26), ("MODIFY", 59), ("REMOVE", 38)]


def writes(db: Any) -> None:
    """A put, an update and a delete of items holding every kind of value."""
    db.put_item(
        TableName="T",
        Item={
            "pk": {"S": "p"},
            "sk": {"N": "1"},
            "b": {"B": b"\x00\x01body"},
            "l": {"L": [{"N": "1.50"}, {"S": "é"}, {"M": {"x": {"BOOL": True}}}]},
            "m": {"M": {"n": {"NULL": True}, "s": {"SS": ["a", "b"]}}},
            "ns": {"NS": ["1", "2"]},
        },
    )
    db.update_item(
        TableName="T",
        Key={"pk": {"S": "p"}, "sk": {"N": "1"}},
        UpdateExpression="SET v = :v REMOVE ns",
        ExpressionAttributeValues={":v": {"S": "x"}},
    )
    db.delete_item(TableName="T", Key={"pk": {"S": "p"}, "sk": {"N": "1"}})


KEYS = 3 + 4  # pk "p"; sk 1 (a number: one byte per two significant digits, plus one)
PUT = KEYS + 7 + 17 + 11 + 6  # b: 6 raw bytes; l: 3 + (2+1) + (2+1) + (3+1+1+1 +1); m: 3+3+4; ns
UPDATED = PUT - 6 + 2  # ns removed, v "x" set


def without_size(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record without what differs from run to run (event id, time) and its size."""
    part = dict(record["dynamodb"])
    del part["ApproximateCreationDateTime"], part["SizeBytes"]
    rest = {k: v for k, v in record.items() if k not in ("eventID", "dynamodb")}
    return (list(record), list(part), rest, part)


@pytest.mark.parametrize("view", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"])
def test_records_are_otherwise_moto_s_own(view: str) -> None:
    # Given a table with a stream of each view type, on plain moto and on fixed moto
    keys = [("pk", "HASH", "S"), ("sk", "RANGE", "N")]
    found = {}
    for fixed in (False, True):
        with streamed_table(keys, view, fixed=fixed) as (db, streams):
            # When items of every kind of value are put, updated and deleted
            writes(db)
            found[fixed] = records(db, streams)
    # Then fixed moto's records are moto's, member for member and in moto's order
    assert [without_size(r) for r in found[True]] == [without_size(r) for r in found[False]]
    # And each is sized as DynamoDB sizes its keys and images (binary by its raw bytes)
    sizes = [r["dynamodb"]["SizeBytes"] for r in found[True]]
    assert (
        sizes
        == {
            "KEYS_ONLY": [KEYS, KEYS, KEYS],
            "NEW_IMAGE": [KEYS + PUT, KEYS + UPDATED, KEYS],
            "OLD_IMAGE": [KEYS, KEYS + PUT, KEYS + UPDATED],
            "NEW_AND_OLD_IMAGES": [KEYS + PUT, KEYS + PUT + UPDATED, KEYS + UPDATED],
        }[view]
    )


def test_a_record_is_not_written_out_as_json_to_be_sized(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a table with a stream, on fixed moto
    from moto.dynamodb.models import table

    with streamed_table([("Id", "HASH", "N")], "NEW_IMAGE") as (db, streams):
        dumped = count_calls(monkeypatch, table, "dynamo_json_dump")
        # When items are written (each a stream record)
        for n in range(3):
            db.put_item(TableName="T", Item={"Id": {"N": str(n)}, "v": {"S": "x" * 100}})
        written = records(db, streams)
    # Then each record was sized without writing it out as JSON text
    assert len(written) == 3
    assert dumped() == 0
