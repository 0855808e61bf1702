"""Python values written as DynamoDB attribute values (`storage/dynamo.to_wire`)."""

from __future__ import annotations

from decimal import Decimal, Rounded
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeSerializer

from mqless.storage import dynamo
from mqless.storage.dynamo import to_wire

VALUES: dict[str, Any] = {
    "text": "I#orders#3",
    "empty": "",
    "zero": 0,
    "negative": -42,
    "big": 10**38 - 1,
    "lists": [[1, "a"], [], [-1_800_000_000_000]],
    "flag": True,
    "no": False,
    "decimal": Decimal("1.5"),
    "bytes": b"\x00\xff",
    "binary": Binary(b"x"),
    "map": {"a": 1, "b": ["c", 2]},
    "strings": {"a", "b"},
    "numbers": {1, 2},
    "list_of_maps": [{"k": "v"}, True],
}


def test_every_value_is_written_as_boto3_writes_it() -> None:
    # Given values of every kind DynamoDB holds (and whole numbers at the edge of its 38 digits)
    expected = {k: TypeSerializer().serialize(v) for k, v in VALUES.items()}

    # When they are written for the wire
    written = to_wire({**VALUES, "absent": None})

    # Then each is what boto3's serializer writes, and None is left out
    assert written == expected


def test_a_whole_number_over_38_digits_is_refused_as_boto3_refuses_it() -> None:
    # Given a whole number DynamoDB cannot hold exactly (39 digits)
    # When it is written for the wire
    # Then it is refused, as boto3's serializer refuses it
    with pytest.raises(Rounded):
        TypeSerializer().serialize(10**38)
    with pytest.raises(Rounded):
        to_wire({"n": 10**38})


def test_text_and_whole_numbers_are_written_without_boto3s_serializer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given boto3's serializer, watched
    asked: list[Any] = []
    serialize = dynamo._serializer.serialize
    monkeypatch.setattr(dynamo._serializer, "serialize", lambda v: asked.append(v) or serialize(v))

    # When an index segment's values are written
    written = to_wire({"pk": "I#q#0", "u": [0, -1], "r": ["0.a.0.m"], "x": 1_800_000_000})

    # Then it was not asked: they are written as they are
    assert written["u"] == {"L": [{"N": "0"}, {"N": "-1"}]} and written["x"] == {"N": "1800000000"}
    assert asked == []
