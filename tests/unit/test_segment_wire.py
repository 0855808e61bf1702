"""A standard segment read straight from the wire (`storage/segment_wire.py`) is the one
the general reader (`from_wire`) makes."""

from __future__ import annotations

from typing import Any

from mqless.storage.dynamo import from_wire, to_wire
from mqless.storage.segment_wire import segment_from_wire
from mqless.storage.segments import segment_from_item

ITEM: dict[str, Any] = {
    "pk": "I#orders#3",
    "sk": "S#000000000042",
    "l": ["L#orders#3", "L#other#0"],
    "r": ["0.01J0000000000000000000000.0.mac", "1.01J0000000000000000000001.2."],
    "u": [-1, 1_800_000_030_000],
    "t": [0, 2_000_000_000],
    "n": [1, 3],
    "e": [1_800_003_600, 1_800_003_600],
    "w": ["", "orders\ntoo many receives"],
    "x": 1_800_007_200,
    "z": 1,
}


def test_a_segment_read_from_the_wire_is_the_one_the_general_reader_makes() -> None:
    # Given a segment item as DynamoDB answers it
    raw = to_wire(ITEM)

    # When it is read straight from the wire
    segment = segment_from_wire("orders", 3, raw)

    # Then it is the segment the general reader makes, every field of every entry
    assert segment == segment_from_item("orders", 3, from_wire(raw))
    assert segment.closed and segment.entries[0].settled and segment.entries[1].count == 3


def test_a_segment_with_a_value_of_another_kind_is_read_the_general_way() -> None:
    # Given a segment item whose expiry is not a whole number, and one with a boolean mark
    odd = {**to_wire(ITEM), "x": {"N": "1800007200.5"}}
    flagged = {**to_wire(ITEM), "z": {"BOOL": True}}

    # When they are read straight from the wire
    # Then each is what the general reader makes of it
    assert segment_from_wire("orders", 3, odd) == segment_from_item("orders", 3, from_wire(odd))
    assert segment_from_wire("orders", 3, flagged).closed


def test_an_unchanged_segment_read_again_is_not_built_again() -> None:
    # Given a segment read once from the wire (a receiver's poll)
    first = segment_from_wire("orders", 3, to_wire(ITEM))

    # When a later poll reads the same item again (a new answer, equal values)
    again = segment_from_wire("orders", 3, to_wire(ITEM))

    # Then it is the segment already read: its entries are not parsed a second time
    assert again is first


def test_a_changed_segment_read_again_is_read_anew() -> None:
    # Given a segment read once from the wire
    first = segment_from_wire("orders", 3, to_wire(ITEM))

    # When its first reference is leased (a new `u` and `t`) and it is read again
    leased = segment_from_wire(
        "orders", 3, to_wire({**ITEM, "u": [1_800_000_060_000, ITEM["u"][1]], "t": [7, 2]})
    )

    # Then the read shows the lease, and the first read is unchanged
    assert (leased.entries[0].until, leased.entries[0].token) == (1_800_000_060_000, 7)
    assert leased.entries[1].token == 2
    assert first.entries[0].settled and first.entries[1].token == 2_000_000_000


def test_the_same_item_of_another_queue_or_shard_is_that_queue_s_segment() -> None:
    # Given a segment read from one queue's shard
    segment_from_wire("orders", 3, to_wire(ITEM))

    # When an equal item is read for another shard and another queue
    other_shard = segment_from_wire("orders", 4, to_wire(ITEM))
    other_queue = segment_from_wire("invoices", 3, to_wire(ITEM))

    # Then each names its own queue and shard
    assert (other_shard.queue, other_shard.shard) == ("orders", 4)
    assert (other_queue.queue, other_queue.shard) == ("invoices", 3)
