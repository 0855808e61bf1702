"""The moto observer sizes the items moto stores as the billing rules size their wire form.

On a table without secondary indexes (the broker's tables) the rules read of an item only
its partition key and its size, so the observer sizes moto's stored item directly
(`stored_item_size`) instead of writing it out as JSON first: these tests hold it to the
figure the wire form gives, and to the units billed.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless_cli.billing import Meter, observing_moto
from mqless_cli.billing.dynamodb import item_size
from mqless_cli.billing.moto_observer import stored_item_size
from tests.call_counts import count_calls
from tests.component.conftest import Aws

NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
    st.sampled_from(["0", "-0.0", "1e5", "00120", "1.500", "+7"]),
)
SCALARS = st.one_of(
    st.text(max_size=8).map(lambda s: {"S": s}),
    NUMBERS.map(lambda n: {"N": n}),
    st.binary(max_size=8).map(lambda b: {"B": b}),
    st.binary(max_size=8).map(lambda b: {"B": base64.b64encode(b).decode()}),  # as sent
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.text(max_size=4), min_size=1, max_size=3, unique=True).map(lambda s: {"SS": s}),
    st.lists(NUMBERS, min_size=1, max_size=3, unique=True).map(lambda n: {"NS": n}),
    st.lists(st.binary(max_size=4), min_size=1, max_size=3, unique=True).map(lambda b: {"BS": b}),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: {"L": items}),
        st.dictionaries(st.text(max_size=4), inner, max_size=4).map(lambda m: {"M": m}),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(attributes=st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=6))
def test_a_stored_item_is_sized_as_its_wire_form(attributes: dict[str, Any]) -> None:
    # Given any item moto stores (every type, nested lists and maps, binary as bytes or text)
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    stored = Item(DynamoType({"S": "p"}), None, {"pk": {"S": "p"}, **attributes})
    # When the observer sizes it directly, and the rules size its JSON form
    # Then both count the same bytes
    assert stored_item_size(stored) == item_size(stored.to_json()["Attributes"])


def put_segments(aws: Aws, count: int) -> None:
    """`count` items like the broker's index segments, lists of numbers and text, of 366
    bytes each: pk 1+6, sk 2+12, u 1+3+10*(5+1), r 1+3+10*(26+1), x 1+6."""
    for n in range(count):
        aws.dynamodb.put_item(
            TableName=aws.settings.messages_table,
            Item={
                "pk": {"S": "I#q#0"},
                "sk": {"S": f"S#{n:010d}"},
                "u": {"L": [{"N": "12345678"} for _ in range(10)]},
                "r": {"L": [{"S": f"01M982Z4CMFVEVMAH2ED0VXH{i:02d}"} for i in range(10)]},
                "x": {"N": "1796987224"},
            },
        )


def query_segments(aws: Aws) -> list[Any]:
    return list(
        aws.dynamodb.query(
            TableName=aws.settings.messages_table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "I#q#0"}},
        )["Items"]
    )


def test_a_query_on_a_table_without_indexes_bills_its_items_without_writing_them_out(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models.dynamo_type import Item

    # Given eight segments of 366 bytes on the messages table (no index)
    put_segments(aws, 8)
    written_out = count_calls(monkeypatch, Item, "to_json")
    unmetered = written_out()
    items = query_segments(aws)
    unmetered = written_out() - unmetered

    # When a metered Query reads them
    meter = Meter()
    with observing_moto(meter):
        before = written_out()
        assert query_segments(aws) == items
        metered = written_out() - before

    # Then it bills their 2,928 bytes, one 4 KB unit, half for an eventually consistent read
    assert sum(item_size(i) for i in items) == 8 * 366
    assert meter.usage().read_units == {aws.settings.messages_table: 0.5}
    # and the meter wrote out none of them: moto's answer did, as without a meter
    assert metered == unmetered


def test_an_update_on_a_table_without_indexes_bills_the_larger_image(aws: Aws) -> None:
    # Given a 366-byte segment on the messages table
    put_segments(aws, 1)
    key = {"pk": {"S": "I#q#0"}, "sk": {"S": f"S#{0:010d}"}}

    # When an update grows it past 1 KB (a 700-byte text), then a conditional update fails
    meter = Meter()
    with observing_moto(meter):
        aws.dynamodb.update_item(
            TableName=aws.settings.messages_table,
            Key=key,
            UpdateExpression="SET b = :b",
            ExpressionAttributeValues={":b": {"S": "y" * 700}},
        )
        with pytest.raises(aws.dynamodb.exceptions.ConditionalCheckFailedException):
            aws.dynamodb.update_item(
                TableName=aws.settings.messages_table,
                Key=key,
                UpdateExpression="SET b = :b",
                ConditionExpression="attribute_not_exists(b)",
                ExpressionAttributeValues={":b": {"S": "z"}},
            )

    # Then the update bills the 1,067 bytes after it (2 units), the failed one the
    # 1,067 bytes it found (2 units), on the segment's partition
    usage = meter.usage()
    assert usage.write_units == {aws.settings.messages_table: 4}
    assert usage.partition_write_units == {f"{aws.settings.messages_table} I#q#0": 4}
    assert usage.failed_conditions == {aws.settings.messages_table: 1}


def test_a_list_of_numbers_is_sized_without_a_call_per_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stored item holding a list of forty numbers (an index segment's positions)
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    from mqless_cli.billing import stored_sizes

    numbers = {"L": [{"N": str(1_700_000_000_000 + n)} for n in range(40)]}
    stored = Item(DynamoType({"S": "p"}), None, {"pk": {"S": "p"}, "u": numbers})
    sized = count_calls(monkeypatch, stored_sizes, "stored_value_size")
    # When the observer sizes it
    size = stored_item_size(stored)
    # Then it counts what the rules count, sizing each number in place: one call per attribute
    assert size == item_size(stored.to_json()["Attributes"])
    assert sized() == 2
