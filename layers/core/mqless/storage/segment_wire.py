"""A standard segment read straight from DynamoDB's wire format.

A receive's Query answers up to 8 segments of six lists of 10 each; boto3's
`TypeDeserializer` makes every number a `Decimal` (in a decimal context) that `from_wire`
then turns back into an int, several hundred a receive. A segment holds only strings,
whole numbers and lists of them: those are read here as they are; an item with anything
else (a number that is not whole, another type) is read the general way.

Receivers polling a shard read the same segments again and again, most often unchanged
(every reference leased, or none sent after them yet): the segments read last are kept, by
queue, shard and key, with the plain values each was read from, and an equal read gives the
same (immutable) segment back instead of building its entries anew.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

from mqless.storage.dynamo import from_wire
from mqless.storage.segments import Segment, segment_from_item

_KEPT: Final = 512  # segments kept (a few MB at most): the hot ones, near each floor


class _NotPlain(Exception):
    """A value this reader leaves to `from_wire`."""


def segment_from_wire(queue: str, shard: int, raw: Mapping[str, Any]) -> Segment:
    """A segment, as a Query or GetItem answers its item (attribute values)."""
    try:
        item = {name: _plain(value) for name, value in raw.items()}
    except _NotPlain:
        item = from_wire(raw)
    return _READS.segment(queue, shard, item)


class _Reads:
    """The segments read last, each with the item (plain values, built by this module and
    never changed) it was read from: reading an equal item again gives the same segment."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._segments: dict[tuple[str, int, Any], tuple[dict[str, Any], Segment]] = {}

    def segment(self, queue: str, shard: int, item: dict[str, Any]) -> Segment:
        key = (queue, shard, item.get("sk"))
        found = self._segments.get(key)
        if found is not None and found[0] == item:
            return found[1]
        segment = segment_from_item(queue, shard, item)
        with self._lock:
            self._segments.pop(key, None)  # to the end: the first is the oldest kept
            if len(self._segments) >= self._kept:
                del self._segments[next(iter(self._segments))]
            self._segments[key] = (item, segment)
        return segment


_READS = _Reads(_KEPT)


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
