"""moto's DynamoDB Streams records with the SizeBytes DynamoDB gives them
(`moto_fixes.stream_record_sizes_as_dynamodb_counts`): DynamoDB's documented examples, the
records otherwise as moto writes them, and no record written out as JSON to be sized; and
GetRecords answers written from a plan of their shape and handed over
(`moto_fixes.stream_records_handed_over`): as moto writes them, sharing nothing stored."""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
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


# ---- GetRecords answers handed over (moto_fixes.stream_records_handed_over) -----------------

ATTRIBUTE_VALUES = st.recursive(
    st.one_of(
        st.builds(lambda s: {"S": s}, st.text(max_size=5)),
        st.builds(lambda n: {"N": str(n)}, st.integers(-(10**6), 10**6)),
        st.builds(lambda b: {"B": b}, st.binary(max_size=6)),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(
            lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=3), min_size=1, max_size=3)
        ),
        st.builds(
            lambda s: {"BS": sorted(s)}, st.sets(st.binary(max_size=3), min_size=1, max_size=2)
        ),
    ),
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"M": v}, st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    ),
    max_leaves=6,
)
IMAGES = st.dictionaries(st.text(max_size=4), ATTRIBUTE_VALUES, max_size=4)


@st.composite
def stored_records(draw: Any) -> dict[str, Any]:
    """A record as moto's stream shard holds it (members left out at random)."""
    part = {
        "StreamViewType": draw(st.sampled_from(["KEYS_ONLY", "NEW_IMAGE", "NEW_AND_OLD_IMAGES"])),
        "ApproximateCreationDateTime": datetime.datetime(
            2026, 1, 2, 3, 4, 5, draw(st.integers(0, 999999))
        ),
        "SequenceNumber": str(draw(st.integers(0, 10**22))),
        "SizeBytes": draw(st.integers(1, 10**6)),
        "Keys": draw(IMAGES),
    }
    for image in ("NewImage", "OldImage"):
        if draw(st.booleans()):
            part[image] = draw(IMAGES)
    record = {
        "eventID": draw(st.text(max_size=8)),
        "eventName": draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])),
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.0",
        "awsRegion": "us-east-1",
        "dynamodb": part,
    }
    if draw(st.booleans()):
        record["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    return record


def get_records_serializer() -> tuple[Any, Any, Any]:
    """moto's serializer of a GetRecords answer, its attribute picker and the answer's shape."""
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    operation = get_service_model("dynamodbstreams").operation_model("GetRecords")
    picker = XFormedAttributePicker(response_transformers=None)
    return JSONSerializer(operation_model=operation, value_picker=picker), picker, operation


@settings(max_examples=150, deadline=None)
@given(records=st.lists(stored_records(), max_size=3))
def test_get_records_answers_are_written_as_moto_writes_them(records: list[dict[str, Any]]) -> None:
    # Given stored stream records, and the text moto's own serializer writes of them
    from moto.dynamodbstreams import responses  # noqa: F401 (moto's models loaded)

    from mqless_cli.local.moto_fixes import stream_answers

    result = {"NextShardIterator": "next", "Records": records}
    serializer, _, _ = get_records_serializer()
    text = serializer.serialize(copy.deepcopy(result))["body"]
    # When the answer is written from its shape's plan (on fixed moto)
    with fixed_moto():
        serializer, picker, operation = get_records_serializer()
        written = stream_answers._structure(serializer, picker, operation.output_shape, result)
    # Then it is what moto writes, member for member and in moto's order
    assert json.dumps(written) == text
    # And it shares no dict or list with the stored records
    assert json.dumps(result, default=str) == json.dumps(copy.deepcopy(result), default=str)
    held = {id(v) for v in _containers(result)}
    assert not held & {id(v) for v in _containers(written)}


def _containers(value: Any) -> Iterator[Any]:
    if isinstance(value, dict | list):
        yield value
        for inner in value.values() if isinstance(value, dict) else value:
            yield from _containers(inner)


def test_a_reader_changing_its_records_does_not_change_the_stream() -> None:
    # Given a stream with a record, read once (on fixed moto)
    with streamed_table([("Id", "HASH", "N")], "NEW_IMAGE") as (db, streams):
        db.put_item(TableName="T", Item={"Id": {"N": "1"}, "l": {"L": [{"S": "a"}]}})
        (first,) = records(db, streams)
        # When that reader changes what it was given
        first["dynamodb"]["NewImage"]["l"]["L"].append({"S": "changed"})
        first["dynamodb"]["Keys"]["Id"]["N"] = "2"
        # Then the next reader reads the record as written
        (again,) = records(db, streams)
    assert again["dynamodb"]["NewImage"] == {"Id": {"N": "1"}, "l": {"L": [{"S": "a"}]}}
    assert again["dynamodb"]["Keys"] == {"Id": {"N": "1"}}


def test_a_get_records_answer_is_neither_walked_nor_written_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stream of a few records (on fixed moto)
    from moto.core import serialize

    with (
        streamed_table([("Id", "HASH", "N")], "NEW_IMAGE") as (db, streams),
        botocore_shortcuts(),  # as `mqless dev` reads answers: a handed-over one as a dict
    ):
        for n in range(3):
            db.put_item(TableName="T", Item={"Id": {"N": str(n)}, "b": {"B": b"body"}})
        arn = db.describe_table(TableName="T")["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        position = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        walked = count_calls(monkeypatch, serialize.ResponseSerializer, "_serialize")
        written_out = count_calls(monkeypatch, serialize.BaseJSONSerializer, "_serialize_body")
        # When they are read
        answer = streams.get_records(ShardIterator=position)
    # Then the answer holds them, written without moto's generic walk or JSON text
    assert [r["dynamodb"]["NewImage"]["b"] for r in answer["Records"]] == [{"B": b"body"}] * 3
    assert (walked(), written_out()) == (0, 0)
