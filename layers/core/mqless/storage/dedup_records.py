"""FIFO deduplication records: which message a dedup id stood for, for 5 minutes.

`pk = D#<queue>#<first character of the record id>` (16 partitions per queue, so FIFO
sends are not bounded by one partition), `sk = <record id>` (a keyed hash: `dedup.py`),
`m` the message id, `w` the end of the window (ms), `x` the TTL. A conditional put claims
a dedup id; a duplicate within the window fails the condition and is answered with the
original message id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqless.domain.errors import Throttled
from mqless.storage import keys
from mqless.storage.dynamo import (
    conditional_write,
    drop_partition,
    from_wire,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DedupRecords:
    """DynamoDB adapter for FIFO dedup records; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def claim(
        self, queue: str, record_id: str, message_id: str, *, now_ms: int, window_ms: int
    ) -> str | None:
        """Record `message_id` for `record_id`; the original message id if it is a duplicate
        (within its window), None if this send is the first."""
        key = {"pk": keys.dedup_partition(queue, record_id), "sk": record_id}
        until = now_ms + window_ms
        for _ in range(3):
            claimed = conditional_write(
                self._db.put_item,
                TableName=self._table,
                Item=to_wire({**key, "m": message_id, "w": until, "x": until // 1000 + 60}),
                ConditionExpression="attribute_not_exists(pk) OR w < :now",
                ExpressionAttributeValues=to_wire({":now": now_ms}),
            )
            if claimed is not None:
                return None
            with translated_errors():
                found = self._db.get_item(
                    TableName=self._table, Key=to_wire(key), ConsistentRead=True
                ).get("Item")
            if found is not None:
                record = from_wire(found)
                if int(record.get("w", 0)) >= now_ms:
                    return str(record["m"])
        raise Throttled("the dedup record is contended; retry shortly")

    def drop(self, queue: str) -> None:
        """Delete a queue's dedup records (the queue is being deleted)."""
        for first in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            drop_partition(self._db, self._table, keys.dedup_partition(queue, first))

    def forget(self, queue: str, record_id: str, message_id: str) -> None:
        """Drop a record this send made, when the send itself failed after it."""
        conditional_write(
            self._db.delete_item,
            TableName=self._table,
            Key=to_wire({"pk": keys.dedup_partition(queue, record_id), "sk": record_id}),
            ConditionExpression="m = :m",
            ExpressionAttributeValues=to_wire({":m": message_id}),
        )
