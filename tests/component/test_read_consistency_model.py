"""The bench's model of DynamoDB's eventually consistent reads on moto (`lagging_reads`).

moto answers every read with the current item; DynamoDB's eventually consistent reads may
not reflect a recently completed write. The model answers those reads with the item as it
was a moment ago (up to the lag), and leaves strongly consistent reads and every write,
conditions included, on the current item, as DynamoDB does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mqless_cli.local.consistency import lagging_reads

TABLE = "consistency-model"
LONG_LAG_MS = 600_000  # a write made a moment ago is then all but surely in the past window
KEY = {"pk": {"S": "q"}, "sk": {"S": "S#0"}}


@pytest.fixture
def table(dynamodb: Any) -> str:
    """A table keyed like the messages table, with one item at version 1."""
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
    )
    dynamodb.put_item(TableName=TABLE, Item={**KEY, "v": {"N": "1"}, "x": {"S": "kept"}})
    return TABLE


def bump(dynamodb: Any, to: int) -> None:
    dynamodb.update_item(
        TableName=TABLE,
        Key=KEY,
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": str(to)}},
    )


def version(item: dict[str, Any] | None) -> int | None:
    return None if item is None else int(item["v"]["N"])


def test_an_eventually_consistent_get_may_answer_with_the_item_before_a_recent_write(
    dynamodb: Any, table: str
) -> None:
    # Given reads that may lag a long time
    with lagging_reads(LONG_LAG_MS, seed=1) as report:
        # When the item is updated and then read eventually consistently
        bump(dynamodb, 2)
        found = dynamodb.get_item(TableName=table, Key=KEY)["Item"]
    # Then the read answers with the item as it was before the update
    assert version(found) == 1
    assert found["x"] == {"S": "kept"}
    assert report.stale_items == 1


def test_a_strongly_consistent_get_answers_with_the_current_item(dynamodb: Any, table: str) -> None:
    # Given reads that may lag a long time, and an update
    with lagging_reads(LONG_LAG_MS, seed=1):
        bump(dynamodb, 2)
        # When the item is read strongly consistently
        found = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]
    # Then it is the current item
    assert version(found) == 2


def test_a_condition_sees_the_current_item_whatever_a_lagging_read_answered(
    dynamodb: Any, table: str
) -> None:
    # Given reads that may lag, an update to version 2, and a read that still shows 1
    with lagging_reads(LONG_LAG_MS, seed=1):
        bump(dynamodb, 2)
        assert version(dynamodb.get_item(TableName=table, Key=KEY)["Item"]) == 1
        # When a writer conditions on the version it read
        with pytest.raises(ClientError) as refused:
            dynamodb.update_item(
                TableName=table,
                Key=KEY,
                UpdateExpression="SET v = :new",
                ConditionExpression="v = :seen",
                ExpressionAttributeValues={":new": {"N": "3"}, ":seen": {"N": "1"}},
            )
    # Then the condition fails (as on DynamoDB: the race is lost) and nothing changed
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    current = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]
    assert version(current) == 2


def test_a_lagging_query_misses_an_item_put_after_its_moment_and_shows_older_images(
    dynamodb: Any, table: str
) -> None:
    # Given reads that may lag, an update of the first item and a second item put
    with lagging_reads(LONG_LAG_MS, seed=1):
        bump(dynamodb, 2)
        dynamodb.put_item(
            TableName=table, Item={"pk": {"S": "q"}, "sk": {"S": "S#1"}, "v": {"N": "1"}}
        )
        # When the partition is queried eventually consistently, then strongly consistently
        lagging = dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "q"}},
        )
        current = dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "q"}},
            ConsistentRead=True,
        )
    # Then the lagging answer is the partition as it was: the old image, no new item
    assert [(i["sk"]["S"], version(i)) for i in lagging["Items"]] == [("S#0", 1)]
    assert lagging["Count"] == 1
    assert [(i["sk"]["S"], version(i)) for i in current["Items"]] == [("S#0", 2), ("S#1", 1)]


def test_a_lagging_batch_get_answers_from_the_past_only_for_tables_read_eventually(
    dynamodb: Any, table: str
) -> None:
    # Given reads that may lag, and an update
    with lagging_reads(LONG_LAG_MS, seed=1):
        bump(dynamodb, 2)
        # When the item is batch-read eventually consistently, then strongly consistently
        lagging = dynamodb.batch_get_item(RequestItems={table: {"Keys": [KEY]}})
        current = dynamodb.batch_get_item(
            RequestItems={table: {"Keys": [KEY], "ConsistentRead": True}}
        )
    # Then only the eventually consistent one answers with the old image
    assert [version(i) for i in lagging["Responses"][table]] == [1]
    assert [version(i) for i in current["Responses"][table]] == [2]


def test_an_old_image_keeps_to_the_projection_asked_for(dynamodb: Any, table: str) -> None:
    # Given reads that may lag, and an update
    with lagging_reads(LONG_LAG_MS, seed=1):
        bump(dynamodb, 2)
        # When the item is read with a projection
        found = dynamodb.get_item(TableName=table, Key=KEY, ProjectionExpression="v")["Item"]
    # Then the old image holds only the projected attribute
    assert found == {"v": {"N": "1"}}


def test_reads_are_current_once_the_lag_has_passed(dynamodb: Any, table: str) -> None:
    # Given reads that lag at most 20 ms, and an update
    with lagging_reads(20, seed=1) as report:
        bump(dynamodb, 2)
        # When the item is read after more than the lag
        time.sleep(0.05)
        found = dynamodb.get_item(TableName=table, Key=KEY)["Item"]
    # Then the read is current
    assert version(found) == 2
    assert report.reads == 1
    assert report.stale_items == 0


def test_reads_are_moto_s_own_again_after_the_block(dynamodb: Any, table: str) -> None:
    # Given a block of lagging reads in which the item was updated
    with lagging_reads(LONG_LAG_MS, seed=1):
        bump(dynamodb, 2)
    # When it is read eventually consistently after the block
    found = dynamodb.get_item(TableName=table, Key=KEY)["Item"]
    # Then moto answers with the current item, as it always does
    assert version(found) == 2
