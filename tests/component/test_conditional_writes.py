"""`conditional_write`: the one way storage writes on a condition (storage/dynamo.py).

A write whose condition holds gives DynamoDB's answer; one whose condition fails gives None,
writes nothing and is billed as DynamoDB bills it; any other error is raised as every other
storage request raises it (throttling as `Throttled`).
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from mqless.domain.errors import Throttled
from mqless.storage.dynamo import conditional_write, from_wire, to_wire
from mqless_cli.billing import Meter
from tests.component.conftest import Aws

KEY = {"pk": "CW#test", "sk": "cursor"}


@pytest.fixture
def table(aws: Aws) -> str:
    return aws.settings.messages_table


def _move_to(aws: Aws, table: str, to: int) -> Any:
    """Set `f` to `to` only if it is below (the shape of the floors and cursors storage moves)."""
    return conditional_write(
        aws.dynamodb.update_item,
        TableName=table,
        Key=to_wire(KEY),
        UpdateExpression="SET f = :to",
        ConditionExpression="attribute_not_exists(f) OR f < :to",
        ExpressionAttributeValues=to_wire({":to": to}),
        ReturnValues="ALL_NEW",
    )


def _stored(aws: Aws, table: str) -> dict[str, Any]:
    found = aws.dynamodb.get_item(TableName=table, Key=to_wire(KEY), ConsistentRead=True)
    return from_wire(found["Item"])


def test_a_write_whose_condition_holds_gives_dynamodbs_answer(aws: Aws, table: str) -> None:
    # Given an item at 5
    aws.dynamodb.put_item(TableName=table, Item=to_wire({**KEY, "f": 5}))

    # When it is moved on to 7
    answer = _move_to(aws, table, 7)

    # Then the answer is UpdateItem's, with the item as written
    assert from_wire(answer["Attributes"]) == {**KEY, "f": 7}
    assert _stored(aws, table)["f"] == 7


def test_a_failed_condition_gives_none_writes_nothing_and_is_billed(
    aws: Aws, table: str, meter: Meter
) -> None:
    # Given an item at 7, 2,000 bytes in all (2 write units)
    aws.dynamodb.put_item(TableName=table, Item=to_wire({**KEY, "f": 7, "b": b"x" * 1960}))
    before = meter.usage()

    # When it is to be moved back to 5
    answer = _move_to(aws, table, 5)

    # Then nothing, and the item stays at 7; the refused write bills the existing item's
    # 2 units and counts as one failed condition, as DynamoDB bills it
    assert answer is None
    assert _stored(aws, table)["f"] == 7
    delta = meter.usage() - before
    assert delta.write_units == {table: 2}
    assert delta.failed_conditions == {table: 1}
    assert delta.requests.get("dynamodb:UpdateItem") == 1


def test_other_errors_are_raised_as_every_storage_request_raises_them(
    aws: Aws, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an update DynamoDB refuses as invalid (an attribute value it does not name)
    invalid: dict[str, Any] = {
        "TableName": table,
        "Key": to_wire(KEY),
        "UpdateExpression": "SET f = :to",
        "ExpressionAttributeValues": to_wire({":to": 1, ":unused": 2}),
    }

    # When it is written on a condition, Then its ClientError comes back as it is
    with pytest.raises(ClientError, match="ValidationException"):
        conditional_write(aws.dynamodb.update_item, ConditionExpression="f < :to", **invalid)

    # Given DynamoDB throttling writes; When one is written on a condition
    def throttled(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutItem")

    monkeypatch.setattr(aws.dynamodb, "put_item", throttled)

    # Then the caller is told to retry later, as for any other request
    with pytest.raises(Throttled):
        conditional_write(
            aws.dynamodb.put_item,
            TableName=table,
            Item=to_wire(KEY),
            ConditionExpression="attribute_not_exists(pk)",
        )
