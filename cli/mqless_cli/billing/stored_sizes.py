"""DynamoDB's item sizes (`dynamodb.item_size`) read from the values moto stores, without
writing an item out as JSON first: what the meter bills a moto item by, and what a stream
record's SizeBytes is (`moto_fixes.stream_record_sizes_as_dynamodb_counts`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from mqless_cli.billing.dynamodb import (
    CONTAINER_OVERHEAD,
    ELEMENT_OVERHEAD,
    number_size,
    value_size,
)

__all__ = ["stored_attributes_size", "stored_item_size", "stored_value_size"]


def stored_item_size(item: Any) -> int:
    """`item_size` of a moto Item, read from its DynamoTypes: the figure of
    `item_size(item.to_json()["Attributes"])` without writing the item out (which copies
    every list and map element) first."""
    return stored_attributes_size(item.attrs)


def stored_attributes_size(attributes: Mapping[str, Any]) -> int:
    """`item_size` of attributes held as moto's DynamoTypes (an item's, a key's)."""
    size = 0
    for name, value in attributes.items():
        size += len(name.encode("utf-8")) + stored_value_size(value)
    return size


def stored_value_size(value: Any) -> int:
    """`value_size` of a stored DynamoType: text and numbers (the most of what is stored)
    directly, lists and maps element by element, anything else as the wire holds it."""
    kind, data = value.type, value.value
    if type(data) is str:
        if kind == "N":
            return number_size(data)
        if kind == "S":
            return len(data.encode("utf-8"))
    elif kind == "L" and type(data) is list:
        return CONTAINER_OVERHEAD + ELEMENT_OVERHEAD * len(data) + _elements_size(data)
    elif kind == "M" and type(data) is dict:
        names = sum(len(k.encode("utf-8")) for k in data)
        return (
            CONTAINER_OVERHEAD
            + ELEMENT_OVERHEAD * len(data)
            + names
            + _elements_size(list(data.values()))
        )
    return value_size({kind: data})


def _elements_size(elements: list[Any]) -> int:
    """`value_size` of each element of a stored list or map's values, a number (an index
    segment is all numbers) sized right here without a call of its own."""
    dynamo_type: Any = _dynamo_type()
    size = 0
    for v in elements:
        if type(v) is not dynamo_type:
            size += value_size(v)
        elif v.type == "N" and type(v.value) is str:
            size += number_size(v.value)
        else:
            size += stored_value_size(v)
    return size


@functools.cache
def _dynamo_type() -> type:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType
