"""Open STOMP transactions and the frames they hold, as stored with their connection.

`CONN#<id>`, `TX#<name>`: a transaction begun (`frames`, how many it holds); `TXOP#<name>#
<position>`: one held frame (`op` send or settle, and its fields: a SEND's body and fields
sealed, `body` and `dk`). Both expire with the connection (3 hours); COMMIT and ABORT
delete them. Keys are `connections.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.clock import Clock
from mqless.storage.connections import (
    CONNECTION_SECONDS,
    TRANSACTION,
    connection_partition,
    held_frame_key,
    held_frames_prefix,
    transaction_key,
)
from mqless.storage.dynamo import (
    Item,
    batch_write,
    conditional_write,
    from_wire,
    partition_items,
    put_if_absent,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LIFETIME_SECONDS: Final = CONNECTION_SECONDS  # nothing held outlives its connection


class HeldFrames:
    """Transactions' items: begin, count, hold, read back, end."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock

    def open_count(self, connection_id: str) -> int:
        """How many transactions the connection has begun and not ended."""
        partition = connection_partition(connection_id)
        return sum(1 for _ in partition_items(self._db, self._table, partition, prefix=TRANSACTION))

    def begin(self, connection_id: str, transaction: str) -> bool:
        """Record a transaction begun; False if one of that name is open already."""
        begun = {
            **transaction_key(connection_id, transaction),
            "frames": 0,
            "expires_at": self._expires_at(),
        }
        return put_if_absent(self._db, self._table, begun)

    def exists(self, connection_id: str, transaction: str) -> bool:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(transaction_key(connection_id, transaction)),
                ConsistentRead=True,
            )
        return "Item" in found

    def next_position(self, connection_id: str, transaction: str, most: int) -> int | None:
        """The position of the transaction's next held frame; None if it has not begun
        or holds `most` already."""
        updated = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(transaction_key(connection_id, transaction)),
            UpdateExpression="SET frames = frames + :one",
            ConditionExpression="attribute_exists(pk) AND frames < :max",
            ExpressionAttributeValues=to_wire({":one": 1, ":max": most}),
            ReturnValues="UPDATED_NEW",
        )
        if updated is None:
            return None
        return int(from_wire(updated["Attributes"])["frames"])

    def hold(
        self, connection_id: str, transaction: str, position: int, fields: dict[str, Any]
    ) -> None:
        """Store a held frame (`fields`: its `op` and what applying it needs)."""
        item = {
            **held_frame_key(connection_id, transaction, position),
            "position": position,
            "expires_at": self._expires_at(),
            **fields,
        }
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(item))

    def held(self, connection_id: str, transaction: str) -> list[Item]:
        """The transaction's held frames, in the order they were held."""
        partition = connection_partition(connection_id)
        prefix = held_frames_prefix(transaction)
        return list(partition_items(self._db, self._table, partition, prefix=prefix))

    def end(self, connection_id: str, transaction: str, held: Iterable[Item]) -> None:
        """Delete a transaction and the frames it held."""
        keys = [transaction_key(connection_id, transaction)]
        keys += [{"pk": i["pk"], "sk": i["sk"]} for i in held]
        batch_write(
            self._db,
            self._table,
            [{"DeleteRequest": {"Key": to_wire(k)}} for k in keys],
        )

    def _expires_at(self) -> int:
        return self._clock.now_ms() // 1000 + LIFETIME_SECONDS
