"""Reading and writing one stored item of a moto table by its key (used by the transaction,
query and stream fixes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def key_of(table: Any, attributes: Any) -> tuple[Any, Any] | None:
    """(hash, range) DynamoTypes of the item `attributes` names; None if a key is missing."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if not isinstance(attributes, dict) or table.hash_key_attr not in attributes:
        return None
    hash_key = DynamoType(attributes[table.hash_key_attr])
    if table.range_key_attr is None:
        return hash_key, None
    if table.range_key_attr not in attributes:
        return None
    return hash_key, DynamoType(attributes[table.range_key_attr])


def stored(table: Any, hash_key: Any, range_key: Any) -> Any:
    """The item stored under a key, without creating a partition (`items` is a defaultdict)."""
    found = table.items.get(hash_key)
    if table.range_key_attr is None or found is None:
        return found
    return found.get(range_key)


def store(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Put back `item` (None: no item) under a key, as it was before a transaction."""
    if table.range_key_attr is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is None:
        partition = table.items.get(hash_key)
        if partition is not None:
            partition.pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


def all_stored(table: Any) -> Iterator[Any]:
    for stored in list(table.items.values()):
        if table.range_key_attr is None:
            yield stored
        else:
            yield from list(stored.values())
