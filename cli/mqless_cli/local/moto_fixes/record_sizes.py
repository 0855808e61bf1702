"""A DynamoDB Streams record's SizeBytes as DynamoDB gives it, and no item written out for an
image the record does not hold (`stream_record_sizes_as_dynamodb_counts`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.billing.stored_sizes import stored_attributes_size, stored_item_size
from mqless_cli.local.moto_fixes.patching import patched

_WITH_NEW = frozenset({"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})
_WITH_OLD = frozenset({"OLD_IMAGE", "NEW_AND_OLD_IMAGES"})


def _keys_of(table: Any, item: Any) -> dict[str, Any]:
    """An item's key attributes, as moto's DynamoTypes, by the table's key schema."""
    keys = {table.hash_key_attr: item.hash_key}
    if table.range_key_attr is not None:
        keys[table.range_key_attr] = item.range_key
    return keys


def _record(
    models: Any, table: Any, stream_type: str, event_name: str, old: Any, new: Any, seq: int
) -> dict[str, Any]:
    """What `StreamRecord.__init__` makes its `record`, with DynamoDB's SizeBytes (the event
    id drawn and the time read from moto's table module, in moto's order)."""
    keys = _keys_of(table, old if old is not None else new)
    event_id = models.mock_random.uuid4().hex
    dynamodb: dict[str, Any] = {
        "StreamViewType": stream_type,
        "ApproximateCreationDateTime": models.utcnow(),
        "SequenceNumber": str(seq),
        "SizeBytes": 1,
        "Keys": {name: value.to_json() for name, value in keys.items()},
    }
    size = stored_attributes_size(keys)
    if stream_type in _WITH_NEW and new is not None:
        dynamodb["NewImage"] = new.to_json()["Attributes"]
        size += stored_item_size(new)
    if stream_type in _WITH_OLD and old is not None:
        dynamodb["OldImage"] = old.to_json()["Attributes"]
        size += stored_item_size(old)
    dynamodb["SizeBytes"] = size
    return {
        "eventID": event_id,
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.0",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
    }


@contextmanager
def stream_record_sizes_as_dynamodb_counts() -> Iterator[None]:
    """Give a stream record DynamoDB's SizeBytes, without writing the record out as JSON.

    Upstream behaviour: `StreamRecord.__init__` writes out the item before and the item after
    (`Item.to_json`) whether the stream's view type holds them or not, then writes the
    record's `dynamodb` part out as JSON text (`dynamo_json_dump`) only to take the text's
    length as SizeBytes ("a substantial overestimate", its comment says: member names,
    quotes, type tags, the time and the sequence number counted in, binary base64-encoded).

    DynamoDB's SizeBytes is the size of the record's key attributes and of each image it
    holds, by DynamoDB's item size rules (names' UTF-8 bytes, a number one byte per two
    significant digits plus one, ...). Its documented examples: 41 for the keys ForumName
    "DynamoDB" and Subject "DynamoDB Thread 3" (KEYS_ONLY); with key Id, 26 for the INSERT
    of {Id: 101, Message: "New item!"}, 59 for its MODIFY to "This item has changed" (both
    images) and 38 for its REMOVE (NEW_AND_OLD_IMAGES).

    Here a record is built as moto builds it (the same members in the same order, its event
    id drawn and its time read as moto does) with that SizeBytes, sized from the stored
    values; an item is written out only for an image the record holds.
    """
    from moto.dynamodb.models import table as models
    from moto.dynamodb.models.table import StreamRecord

    def init(
        self: Any, table: Any, stream_type: str, event_name: str, old: Any, new: Any, seq: int
    ) -> None:
        self.record = _record(models, table, stream_type, event_name, old, new, seq)

    with patched(StreamRecord, "__init__", init):
        yield


__all__ = ["stream_record_sizes_as_dynamodb_counts"]
