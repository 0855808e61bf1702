"""DynamoDB's on-demand billing rules, as pure functions of item images.

Each rule cites the page of AWS's developer guide it comes from (checked 2026-12):

- ITEM SIZE: "DynamoDB item sizes and formats"
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
  An item is the sum of its attribute names and values; strings are UTF-8 bytes, numbers
  about one byte per two significant digits plus one, binary its raw bytes, null and
  boolean one byte, a list or map 3 bytes plus its elements, each element 1 byte more.
- WRITES AND READS: "DynamoDB read and write operations"
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
  A write is 1 unit per started KB of the item: a put or update bills the larger of the
  item before and after, a delete the deleted item; BatchWriteItem bills each item as its
  own put or delete. A read is 1 unit per started 4 KB, half for an eventually consistent
  read; reading a missing item still bills; a Query adds up the size of every item it read
  and rounds once per request; a COUNT query reads the same items; BatchGetItem bills each
  item as a GetItem.
- FAILED CONDITIONS: "Working with items and attributes", section "Capacity units consumed by
  conditional writes"
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalWrites.ReturnConsumedCapacity
  "DynamoDB still consumes write capacity ... dependent on the size of the existing item
  (or a minimum of 1)". (The read-write-operations page words it with an example sized on
  the new item; the WorkingWithItems page, and a measurement published on real DynamoDB,
  size it on the existing item, which is what is billed here.)
- TRANSACTIONS: "Amazon DynamoDB Transactions: How it works", "Capacity management for
  transactions"
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling
  Two underlying writes of every item (prepare and commit), consumed even when the
  transaction is cancelled.
- INDEXES: "Global secondary indexes", "Provisioned throughput considerations" (read and
  write capacity units)
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations
  An index bills its own writes at the size of its entry (keys plus projected attributes):
  an item gaining the index keys is a put there, one whose index key changes a delete and a
  put, one losing them a delete, one whose projected attributes change a put; an item never
  in the index costs nothing there. Index queries are eventually consistent and bill the
  entries' size.
- PARTITIONS: "Best practices for designing and using partition keys effectively"
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
  One partition serves at most 3,000 read units and 1,000 write units per second, on the
  table and on each index.

Items are in DynamoDB's wire format (`{"name": {"S": "value"}}`), as DescribeTable, the
stream and moto hold them. TTL deletions and stream reads by a Lambda trigger are free:
no rule here bills them.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WireItem = Mapping[str, Mapping[str, Any]]

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
PARTITION_WRITE_UNITS_PER_SECOND = 1000
PARTITION_READ_UNITS_PER_SECOND = 3000
CONTAINER_OVERHEAD = 3  # a list or map, whatever it holds
ELEMENT_OVERHEAD = 1  # each element of a list or map


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value, without its name."""
    ((kind, data),) = value.items()
    if kind == "N":
        return number_size(str(data))
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "B":
        return len(_raw_bytes(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(len(_raw_bytes(b)) for b in data)
    if kind == "L":
        return CONTAINER_OVERHEAD + sum(map(value_size, data)) + ELEMENT_OVERHEAD * len(data)
    if kind == "M":
        return CONTAINER_OVERHEAD + sum(
            len(name.encode("utf-8")) + value_size(v) + ELEMENT_OVERHEAD for name, v in data.items()
        )
    raise ValueError(f"unknown DynamoDB type {kind!r}")


@functools.lru_cache(maxsize=8192)
def number_size(text: str) -> int:
    """One byte per two significant digits (leading and trailing zeros trimmed), plus one.
    Kept per text: the same numbers (counts, positions, timestamps of one moment) recur
    across every item the meter sizes."""
    mantissa = text.strip().lstrip("+-").lower().partition("e")[0].replace(".", "")
    significant = mantissa.strip("0")
    return (len(significant) + 1) // 2 + 1


def item_size(item: WireItem | None) -> int:
    """Bytes of an item as DynamoDB counts them for capacity (0 for no item)."""
    if not item:
        return 0
    if isinstance(item, SizedKeys):
        return item.size
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


class SizedKeys(dict[str, Mapping[str, Any]]):
    """An item's key attributes (wire format) and the size of the whole item.

    On a table without secondary indexes the rules read nothing else of an item: its
    partition key and its size. An observer that can size a stored item without writing it
    out whole hands these over instead of the full image; never for a table with indexes,
    whose entries are made of the other attributes.
    """

    def __init__(self, keys: Mapping[str, Mapping[str, Any]], size: int) -> None:
        super().__init__(keys)
        self.size = size


def write_units(size: int) -> int:
    """Write units of one write of an item of `size` bytes: 1 per started KB, at least 1."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    """Read units of reading `size` bytes in one request: 1 per started 4 KB (at least 1),
    half that when eventually consistent."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def _raw_bytes(data: Any) -> bytes:
    # the wire carries binary as base64 text; boto3 and moto may hand over bytes
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    return base64.b64decode(str(data))


@dataclass(frozen=True)
class IndexSchema:
    """A secondary index: its keys and what it projects."""

    name: str
    hash_key: str
    range_key: str | None
    projection: str
    """ALL, KEYS_ONLY or INCLUDE."""
    non_key_attributes: tuple[str, ...] = ()

    def entry(self, item: WireItem | None, table_keys: Sequence[str]) -> WireItem | None:
        """The index's copy of `item`: None when the item lacks an index key (not indexed)."""
        if item is None or self.hash_key not in item:
            return None
        if self.range_key is not None and self.range_key not in item:
            return None
        if self.projection == "ALL":
            return dict(item)
        keep = {*table_keys, self.hash_key}
        if self.range_key is not None:
            keep.add(self.range_key)
        if self.projection == "INCLUDE":
            keep.update(self.non_key_attributes)
        return {name: value for name, value in item.items() if name in keep}

    def keys_of(self, entry: WireItem) -> tuple[Any, ...]:
        return tuple(
            _plain(entry.get(name)) for name in (self.hash_key, self.range_key) if name is not None
        )


@dataclass(frozen=True)
class TableSchema:
    """A table's keys and secondary indexes, as DescribeTable gives them."""

    name: str
    hash_key: str
    range_key: str | None
    indexes: tuple[IndexSchema, ...] = ()

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> TableSchema:
        """From DescribeTable's `Table` (or CreateTable's `TableDescription`)."""

        def keys(schema: Sequence[Mapping[str, str]]) -> tuple[str, str | None]:
            by_type = {k["KeyType"]: k["AttributeName"] for k in schema}
            return by_type["HASH"], by_type.get("RANGE")

        hash_key, range_key = keys(description["KeySchema"])
        indexes = []
        for index in [
            *description.get("GlobalSecondaryIndexes", []),
            *description.get("LocalSecondaryIndexes", []),
        ]:
            index_hash, index_range = keys(index["KeySchema"])
            projection = index.get("Projection", {})
            indexes.append(
                IndexSchema(
                    name=index["IndexName"],
                    hash_key=index_hash,
                    range_key=index_range,
                    projection=projection.get("ProjectionType", "ALL"),
                    non_key_attributes=tuple(projection.get("NonKeyAttributes", [])),
                )
            )
        return cls(description["TableName"], hash_key, range_key, tuple(indexes))

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)

    def index(self, name: str) -> IndexSchema:
        for index in self.indexes:
            if index.name == name:
                return index
        raise KeyError(f"{self.name} has no index {name!r}")

    def partition(self, item: WireItem | None) -> str:
        """The item's partition key value, as text ('' for no item)."""
        return "" if not item else str(_plain(item.get(self.hash_key)))


@dataclass(frozen=True)
class Capacity:
    """Units billed on one table (index None) or one of its indexes, at one partition key."""

    table: str
    index: str | None
    partition: str
    write_units: float = 0.0
    read_units: float = 0.0


def item_write(
    schema: TableSchema,
    old: WireItem | None,
    new: WireItem | None,
    *,
    transactional: bool = False,
) -> list[Capacity]:
    """What a write that was applied bills: a put or update (`old` may be None for a new
    item) or a delete (`new` None), on the table and each index it touches."""
    item = new if new is not None else old
    base = write_units(max(item_size(old), item_size(new))) * (2 if transactional else 1)
    charges = [Capacity(schema.name, None, schema.partition(item), write_units=base)]
    for index in schema.indexes:
        charges.extend(_index_write(schema, index, old, new))
    return charges


def _index_write(
    schema: TableSchema, index: IndexSchema, old: WireItem | None, new: WireItem | None
) -> list[Capacity]:
    before, after = index.entry(old, schema.keys), index.entry(new, schema.keys)

    def charge(entry: WireItem, size: int) -> Capacity:
        return Capacity(
            schema.name, index.name, str(_plain(entry[index.hash_key])), write_units(size)
        )

    if before is None and after is None:
        return []  # never in the index
    if before is None:
        assert after is not None
        return [charge(after, item_size(after))]  # put into the index
    if after is None:
        return [charge(before, item_size(before))]  # removed from the index
    if index.keys_of(before) != index.keys_of(after):
        # an index key changed: the old entry is deleted and the new one put
        return [charge(before, item_size(before)), charge(after, item_size(after))]
    if dict(before) != dict(after):
        return [charge(after, max(item_size(before), item_size(after)))]  # projection changed
    return []  # nothing the index holds changed


def unapplied_write(
    schema: TableSchema,
    existing: WireItem | None,
    key: WireItem,
    *,
    transactional: bool = False,
) -> Capacity:
    """A write that changed nothing: a failed condition, a transaction's condition check,
    an action of a cancelled transaction. It bills the existing item (at least 1 unit),
    twice in a transaction, and touches no index."""
    units = write_units(item_size(existing)) * (2 if transactional else 1)
    return Capacity(schema.name, None, schema.partition(existing or key), write_units=units)


def item_read(
    schema: TableSchema,
    item: WireItem | None,
    key: WireItem,
    *,
    consistent: bool,
    transactional: bool = False,
) -> Capacity:
    """A GetItem (or one item of a BatchGetItem): the whole item, even when a projection
    returns less; a missing item still bills the minimum."""
    if transactional:
        units = 2 * read_units(item_size(item), consistent=True)
    else:
        units = read_units(item_size(item), consistent=consistent)
    return Capacity(schema.name, None, schema.partition(item or key), read_units=units)


def query_read(
    schema: TableSchema,
    index: str | None,
    partition: str,
    sizes: Sequence[int],
    *,
    consistent: bool,
) -> Capacity:
    """A Query (or Scan page): every item read, before any filter, rounded once; an index
    is always read eventually consistently."""
    units = read_units(sum(sizes), consistent=consistent and index is None)
    return Capacity(schema.name, index, partition, read_units=units)


def key_of(schema: TableSchema, item: WireItem) -> dict[str, Mapping[str, Any]]:
    """The primary key attributes of an item."""
    return {name: item[name] for name in schema.keys if name in item}


def _plain(value: Mapping[str, Any] | None) -> Any:
    if value is None:
        return None
    ((_, data),) = value.items()
    return data if not isinstance(data, list | dict) else repr(data)
