"""A standard segment read straight from DynamoDB's wire format.

A receive's Query answers up to 8 segments of six lists of 10 each; boto3's
`TypeDeserializer` makes every number a `Decimal` (in a decimal context) that `from_wire`
then turns back into an int, several hundred a receive. A segment holds only strings,
whole numbers and lists of them: those are read here as they are; an item with anything
else (a number that is not whole, another type) is read the general way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mqless.storage.dynamo import from_wire
from mqless.storage.segments import Segment, segment_from_item


class _NotPlain(Exception):
    """A value this reader leaves to `from_wire`."""


def segment_from_wire(queue: str, shard: int, raw: Mapping[str, Any]) -> Segment:
    """A segment, as a Query or GetItem answers its item (attribute values)."""
    try:
        item = {name: _plain(value) for name, value in raw.items()}
    except _NotPlain:
        item = from_wire(raw)
    return segment_from_item(queue, shard, item)


def _plain(value: Mapping[str, Any]) -> Any:
    if "N" in value:
        text = value["N"]
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()):
            raise _NotPlain
        return int(text)
    if "S" in value:
        return value["S"]
    if "L" in value:
        return [_plain(v) for v in value["L"]]
    raise _NotPlain
