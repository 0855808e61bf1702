"""Queue push consumers as stored: one item each, beside their delivery records.

Destinations table, one partition per queue (`pk = QC#<queue>`, `storage/deliveries.py`):
```
sk  C#<tag>   <tag> = <connection>#<len>:<subscription> (`consumer.tag`)
connection, protocol, version   where pushes go and how the client speaks
subscription, destination, ack, prefetch, principal, selector, credential_expires_at
epoch       drawn on subscribe: the key range of its delivery records
acked       `client` mode: the watermark of its cumulative acks (written once per ack)
owed        `client` mode: a pump left it without credit while messages may have waited
owed_below  `client-individual`: a pump left it without credit while messages may have
            waited, and its records below this seq were live then (`credit.py`)
expires_at  TTL: outlives API Gateway's 2-hour connection limit
```
Written on subscribe; in `client` mode once more per cumulative ack; `owed_below` when a pump
leaves a client-individual consumer starved with records live that it does not cover yet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from mqless.domain.push.consumer import Consumer, ack_mode, tag
from mqless.domain.push.pushes import Connection
from mqless.storage.deliveries import partition
from mqless.storage.dynamo import (
    Item,
    conditional_write,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CONSUMER: Final = "C#"
OWED: Final = "owed"  # consumer item: a pump found it without credit (`feeding.py`)
OWED_BELOW: Final = "owed_below"  # the same, client-individual: its records below this seq


def key(queue: str, connection_id: str, subscription: str) -> dict[str, str]:
    return {"pk": partition(queue), "sk": f"{CONSUMER}{tag(connection_id, subscription)}"}


def _key_of(consumer: Consumer) -> dict[str, str]:
    return key(consumer.queue, consumer.connection.id, consumer.subscription)


class PushConsumers:
    """DynamoDB adapter for push consumer items; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def put(self, consumer: Consumer, *, expires_at: int) -> Consumer:
        """Write a consumer (replacing one of the same connection and subscription), without
        a watermark or owed mark; the consumer as stored."""
        item: Item = {
            **_key_of(consumer),
            "connection": consumer.connection.id,
            "protocol": consumer.connection.protocol,
            "version": consumer.connection.version,
            "subscription": consumer.subscription,
            "ack": consumer.ack,
            "prefetch": consumer.prefetch,
            "principal": consumer.principal,
            "destination": consumer.destination,
            "epoch": consumer.epoch,
            "expires_at": expires_at,
        }
        if consumer.credential_expires_at is not None:
            item["credential_expires_at"] = consumer.credential_expires_at
        if consumer.selector is not None:
            item["selector"] = consumer.selector
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(item))
        return _consumer(consumer.queue, item)

    def get(self, queue: str, connection_id: str, subscription: str) -> Consumer | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(key(queue, connection_id, subscription)),
                ConsistentRead=True,
            )
        return _consumer(queue, from_wire(found["Item"])) if "Item" in found else None

    def of_queue(self, queue: str, *, consistent: bool = True) -> list[Consumer]:
        """The queue's consumers (eventually consistent reads bill half)."""
        items = partition_items(
            self._db, self._table, partition(queue), prefix=CONSUMER, consistent=consistent
        )
        return [_consumer(queue, item) for item in items]

    def delete(self, consumer: Consumer) -> None:
        with translated_errors():
            self._db.delete_item(TableName=self._table, Key=to_wire(_key_of(consumer)))

    def advance(self, consumer: Consumer, mark: int, *, take_owed: bool) -> tuple[int, bool] | None:
        """Move a `client` consumer's watermark forward (never back: acks may race), and
        with `take_owed` take its owed mark off; (the watermark before, whether it was
        marked owed), or None if a racing ack had moved it this far (or it is gone, or is
        another incarnation: a copy a process remembered may be an unsubscribed one's)."""
        values: Item = {":w": mark}
        same = ""
        if consumer.epoch:
            same, values[":e"] = "epoch = :e AND ", consumer.epoch
        found = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(_key_of(consumer)),
            UpdateExpression="SET acked = :w" + (f" REMOVE {OWED}" if take_owed else ""),
            ConditionExpression=f"attribute_exists(pk) AND {same}"
            "(attribute_not_exists(acked) OR acked < :w)",
            ExpressionAttributeValues=to_wire(values),
            ReturnValues="ALL_OLD",
        )
        if found is None:
            return None
        before = from_wire(found.get("Attributes", {}))
        return int(before.get("acked", -1)), OWED in before

    def mark_owed(self, consumer: Consumer) -> Consumer | None:
        """The consumer as stored, marked owed (a read when it was marked already, as this
        copy says: the ack that takes the mark off pumps); None if it is gone."""
        with translated_errors():
            if consumer.owed:
                found = self._db.get_item(
                    TableName=self._table, Key=to_wire(_key_of(consumer)), ConsistentRead=True
                )
                item = found.get("Item")
                if item is None:
                    return None
                if OWED in item:
                    return _consumer(consumer.queue, from_wire(item))
        return self._updated_if(consumer, f"SET {OWED} = :t", "attribute_exists(pk)", {":t": 1})

    def raise_owed(self, consumer: Consumer, below: int) -> Consumer | None:
        """Mark a `client-individual` consumer owed for its records below seq `below` (never
        lowering the mark: pumps may race); the consumer as stored, or None if it is gone or
        its mark was that high already."""
        return self._updated_if(
            consumer,
            f"SET {OWED_BELOW} = :b",
            f"attribute_exists(pk) AND (attribute_not_exists({OWED_BELOW}) OR {OWED_BELOW} < :b)",
            {":b": below},
        )

    def _updated_if(
        self, consumer: Consumer, update: str, condition: str, values: Item
    ) -> Consumer | None:
        """The consumer as stored after `update`, made only where `condition` holds; None
        where it does not (the consumer is gone, or already as the update would make it)."""
        updated = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(_key_of(consumer)),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=to_wire(values),
            ReturnValues="ALL_NEW",
        )
        if updated is None:
            return None
        return _consumer(consumer.queue, from_wire(updated["Attributes"]))


def settle_fields(consumer: Consumer) -> Item | None:
    """What settling needs of a consumer's record, for its subscription's record to carry
    (`from_settle_fields`): all but a `client` consumer's watermark and owed marks, which
    move (its ack's own write returns them; a client-individual ack reads `owed_below`
    only when its record does not answer, `credit.py`)."""
    fields: Item = {
        "ack": consumer.ack,
        "prefetch": consumer.prefetch,
        "principal": consumer.principal,
        "epoch": consumer.epoch,
    }
    if consumer.credential_expires_at is not None:
        fields["credential_expires_at"] = consumer.credential_expires_at
    if consumer.selector is not None:
        fields["selector"] = consumer.selector
    return fields


def from_settle_fields(
    queue: str, connection: Connection, subscription: str, destination: str, fields: Item
) -> Consumer:
    """The consumer as its record holds it, from the copy its subscription carries.

    Nothing in it changes while the consumer exists (a `client` consumer's watermark is
    never copied: `watermark_read` is False), and the subscription's record is written
    after the consumer's and deleted before it: a subscription found means its consumer
    exists, as it was stored.
    """
    consumer = _consumer(
        queue,
        {
            **fields,
            "connection": connection.id,
            "protocol": connection.protocol,
            "version": connection.version,
            "subscription": subscription,
            "destination": destination,
        },
    )
    return replace(consumer, watermark_read=False) if consumer.ack == "client" else consumer


def _consumer(queue: str, item: Item) -> Consumer:
    return Consumer(
        queue=queue,
        connection=Connection.stored(str(item["connection"]), item),
        subscription=str(item["subscription"]),
        ack=ack_mode(str(item["ack"])),
        prefetch=int(item["prefetch"]),
        principal=str(item["principal"]),
        destination=str(item.get("destination") or f"/queue/{queue}"),
        credential_expires_at=(
            None
            if item.get("credential_expires_at") is None
            else int(item["credential_expires_at"])
        ),
        epoch=str(item.get("epoch", "")),
        acked=int(item.get("acked", -1)),
        owed=item.get(OWED) is not None,
        owed_below=int(item.get(OWED_BELOW, 0)),
        selector=None if item.get("selector") is None else str(item["selector"]),
    )
