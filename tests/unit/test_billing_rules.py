"""DynamoDB's billing rules on hand-computed cases (cli/mqless_cli/billing/dynamodb.py).

Every expected figure is worked out in the test from AWS's published rules, byte by byte.
"""

from __future__ import annotations

import base64

import pytest

from mqless_cli.billing.dynamodb import (
    Capacity,
    IndexSchema,
    TableSchema,
    item_read,
    item_size,
    item_write,
    number_size,
    query_read,
    read_units,
    unapplied_write,
    write_units,
)

# A table like mqless's messages table: pk/sk, and an index on vq/visible_at that
# projects the keys plus receive_count.
SCHEMA = TableSchema.from_description(
    {
        "TableName": "messages",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_visibility",
                "KeySchema": [
                    {"AttributeName": "vq", "KeyType": "HASH"},
                    {"AttributeName": "visible_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["receive_count"]},
            }
        ],
    }
)


def message(body: int, *, visible_at: str = "1000", receive_count: str | None = None) -> dict:
    """An item whose size is 2+3 + 2+3 + 2+1 + 10+n(visible_at) + 4+body (+ count)."""
    item = {
        "pk": {"S": "Q#q"},  # 2 + 3
        "sk": {"S": "M#1"},  # 2 + 3
        "vq": {"S": "q"},  # 2 + 1
        "visible_at": {"N": visible_at},  # 10 + number_size
        "body": {"B": base64.b64encode(b"x" * body).decode()},  # 4 + body
    }
    if receive_count is not None:
        item["receive_count"] = {"N": receive_count}  # 13 + number_size
    return item


# ---- item size ---------------------------------------------------------------------------


def test_a_string_is_its_name_plus_its_utf8_bytes() -> None:
    """Given an item of one string attribute holding a two-byte character
    When its size is computed
    Then it is the name's bytes plus the value's UTF-8 bytes
    """
    # "name" (4) + "héllo" (h, é=2 bytes, l, l, o: 6)
    assert item_size({"name": {"S": "héllo"}}) == 4 + 6


def test_a_number_is_one_byte_per_two_significant_digits_plus_one() -> None:
    """Given numbers with trailing zeros, leading zeros and a sign, and an item holding one
    When their sizes are computed
    Then each is one byte per two significant digits, plus one (zeros and sign not counted)
    """
    # 12345: 5 significant digits -> 3 bytes, + 1 = 4
    assert number_size("12345") == 4
    # 1000: trailing zeros trimmed -> "1": 1 digit -> 1 byte, + 1 = 2
    assert number_size("1000") == 2
    # 0.0012: leading zeros trimmed -> "12": 1 byte, + 1 = 2
    assert number_size("0.0012") == 2
    # -98.76: sign ignored, "9876": 2 bytes, + 1 = 3
    assert number_size("-98.76") == 3
    # "n" (1) + 4 for 12345
    assert item_size({"n": {"N": "12345"}}) == 1 + 4


def test_binary_counts_its_raw_bytes_not_its_base64() -> None:
    """Given a binary attribute of 300 bytes, given as base64 text and as raw bytes
    When the item's size is computed
    Then both count the 300 raw bytes, not the 400 base64 characters
    """
    # 300 raw bytes travel as 400 base64 characters; "b" (1) + 300
    assert item_size({"b": {"B": base64.b64encode(b"\0" * 300).decode()}}) == 1 + 300
    assert item_size({"b": {"B": b"\0" * 300}}) == 1 + 300


def test_null_and_boolean_are_one_byte() -> None:
    """Given an item with a boolean and a null attribute
    When its size is computed
    Then each value is one byte after its name
    """
    # "t" (1) + 1, "nothing" (7) + 1
    assert item_size({"t": {"BOOL": True}, "nothing": {"NULL": True}}) == 2 + 8


def test_a_map_or_list_is_3_bytes_plus_each_element_and_1_byte_per_element() -> None:
    """Given items holding a map, a list and an empty map
    When their sizes are computed
    Then each is 3 bytes plus its elements (names and values) plus 1 byte per element
    """
    # "m" (1) + 3 + ["a" (1) + "xy" (2) + 1] + ["b" (1) + N 7 (1 digit: 1+1=2) + 1] = 1+3+4+4
    assert item_size({"m": {"M": {"a": {"S": "xy"}, "b": {"N": "7"}}}}) == 12
    # "l" (1) + 3 + ["abc" (3) + 1] + [BOOL (1) + 1] = 1+3+4+2
    assert item_size({"l": {"L": [{"S": "abc"}, {"BOOL": False}]}}) == 10
    # an empty map: "e" (1) + 3
    assert item_size({"e": {"M": {}}}) == 4


def test_a_set_is_the_sum_of_its_members() -> None:
    """Given an item holding a string set
    When its size is computed
    Then it is the name plus the sum of the members' bytes
    """
    # "s" (1) + "ab" (2) + "cde" (3)
    assert item_size({"s": {"SS": ["ab", "cde"]}}) == 6


def test_the_sample_message_is_the_size_its_docstring_says() -> None:
    """Given the test's sample message item with a 1000-byte body
    When its size is computed
    Then it is the 1029 bytes message()'s docstring adds up to
    """
    # 5 + 5 + 3 + (10 + 2 for "1000") + (4 + 1000)
    assert item_size(message(1000)) == 1029


# ---- units -------------------------------------------------------------------------------


def test_a_write_is_one_unit_per_started_kilobyte_and_at_least_one() -> None:
    """Given writes of 0, 1024, 1025 and 1600 bytes
    When their write units are computed
    Then each is one unit per started KiB, at least one (AWS's 1.6 KB example is 2)
    """
    assert write_units(0) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(1600) == 2  # AWS's example: 1.6 KB rounds up to 2 KB


def test_a_read_is_one_unit_per_started_4_kb_half_when_eventually_consistent() -> None:
    """Given reads of 3.5 KB, 10 KB, 8 KB and nothing, strongly or eventually consistent
    When their read units are computed
    Then each is one unit per started 4 KB, half when eventually consistent, and 0.5 at least
    """
    assert read_units(3500, consistent=True) == 1  # AWS's example: 3.5 KB -> 4 KB
    assert read_units(10 * 1024, consistent=True) == 3  # 10 KB -> 12 KB
    assert read_units(8 * 1024, consistent=False) == 1  # AWS's example: 8 KB, EC -> 1
    assert read_units(0, consistent=False) == 0.5  # nothing read still bills the minimum


# ---- writes ------------------------------------------------------------------------------


def base(charges: list[Capacity]) -> float:
    return sum(c.write_units for c in charges if c.index is None)


def index(charges: list[Capacity]) -> list[float]:
    return [c.write_units for c in charges if c.index is not None]


def test_a_put_bills_the_item_and_its_index_entry() -> None:
    # Given a new 1,029-byte item (2 units); its index entry is pk, sk, vq, visible_at:
    # 5 + 5 + 3 + 12 = 25 bytes (1 unit)
    # When it is put
    charges = item_write(SCHEMA, None, message(1000))

    # Then the table bills 2 units and the index 1, each on its own partition
    assert base(charges) == 2
    assert index(charges) == [1]
    assert {(c.index, c.partition) for c in charges} == {
        (None, "Q#q"),
        ("by_visibility", "q"),
    }


def test_an_update_bills_the_larger_of_the_item_before_and_after() -> None:
    # Given a 1,000-byte item (1 unit) that grows to 1,029 bytes (2 units)
    before = message(971)  # 29 + 971 = 1,000 bytes
    after = message(1000)
    assert (item_size(before), item_size(after)) == (1000, 1029)

    # When the item is updated to the larger size, and back
    # Then the update bills 2 (the larger); shrinking back bills 2 as well
    assert base(item_write(SCHEMA, before, after)) == 2
    assert base(item_write(SCHEMA, after, before)) == 2


def test_a_delete_bills_the_deleted_item_and_its_index_entry() -> None:
    """Given a 3,029-byte message item
    When it is deleted
    Then the table bills 3 units and the index one for the entry that goes
    """
    charges = item_write(SCHEMA, message(3000), None)  # 3,029 bytes: 3 units
    assert base(charges) == 3
    assert index(charges) == [1]


def test_an_update_that_changes_the_index_sort_key_bills_a_delete_and_a_put_there() -> None:
    """Given a small message leased, so its visible_at (the index sort key) changes
    When the update is billed
    Then the table bills 1 unit and the index a delete and a put, 1 unit each
    """
    # A lease: visible_at moves from 1000 to 5000 (both 2-byte numbers)
    charges = item_write(SCHEMA, message(10), message(10, visible_at="5000"))
    assert base(charges) == 1
    assert index(charges) == [1, 1]


def test_changing_only_a_projected_attribute_bills_one_put_in_the_index() -> None:
    """Given a small message whose receive_count (projected into the index) goes from 1 to 2
    When the update is billed
    Then the index bills one put
    """
    charges = item_write(SCHEMA, message(10, receive_count="1"), message(10, receive_count="2"))
    assert index(charges) == [1]


def test_changing_an_attribute_the_index_does_not_hold_bills_nothing_there() -> None:
    """Given a small message that gains an attribute the index does not project
    When the update is billed
    Then the index bills nothing
    """
    before, after = message(10), message(10)
    after["lease_id"] = {"S": "l-1"}
    assert index(item_write(SCHEMA, before, after)) == []


def test_removing_the_index_key_bills_a_delete_there_and_adding_it_a_put() -> None:
    """Given a message without its index key vq
    When the key is removed, added back, and the item put without it
    Then the index bills one delete, one put, and nothing for an item never in it
    """
    without = message(10)
    del without["vq"]
    assert index(item_write(SCHEMA, message(10), without)) == [1]  # left the index
    assert index(item_write(SCHEMA, without, message(10))) == [1]  # joined it
    assert index(item_write(SCHEMA, None, without)) == []  # never in it


def test_an_index_entry_over_1_kb_bills_its_own_size() -> None:
    """Given an index that projects everything and a 2,029-byte message
    When the message is put
    Then the index entry bills 2 units, for its own size
    """
    # An index that projects everything: the entry is the whole 2,029-byte item
    everything = TableSchema("t", "pk", "sk", (IndexSchema("all", "vq", "visible_at", "ALL"),))
    assert index(item_write(everything, None, message(2000))) == [2]


def test_a_transaction_bills_two_writes_per_item_on_the_table() -> None:
    """Given a 1,029-byte message
    When it is put in a transaction
    Then the table bills twice its 2 units and the index entry 1 unit once
    """
    # 1,029 bytes: 2 units, twice; the index entry (25 bytes) once
    charges = item_write(SCHEMA, None, message(1000), transactional=True)
    assert base(charges) == 4
    assert index(charges) == [1]


def test_a_failed_condition_bills_the_existing_item_and_no_index() -> None:
    """Given an existing 2,029-byte message
    When a conditional write on its key fails
    Then 2 write units are billed on the table, none on the index
    """
    existing = message(2000)  # 2,029 bytes: 2 units
    key = {"pk": {"S": "Q#q"}, "sk": {"S": "M#1"}}
    assert unapplied_write(SCHEMA, existing, key) == Capacity(
        "messages", None, "Q#q", write_units=2
    )


def test_a_failed_condition_on_a_missing_item_bills_one_unit() -> None:
    """Given no item under a key
    When a conditional write on it fails
    Then 1 write unit is billed
    """
    key = {"pk": {"S": "Q#q"}, "sk": {"S": "M#1"}}
    assert unapplied_write(SCHEMA, None, key).write_units == 1


def test_a_cancelled_transaction_bills_two_units_per_existing_item() -> None:
    """Given a cancelled transactional write on a 1,029-byte item and on a missing one
    When they are billed
    Then each bills two units per unit of the item: 4, and 2 for the missing one
    """
    key = {"pk": {"S": "Q#q"}, "sk": {"S": "M#1"}}
    assert unapplied_write(SCHEMA, message(1000), key, transactional=True).write_units == 4
    assert unapplied_write(SCHEMA, None, key, transactional=True).write_units == 2


# ---- reads -------------------------------------------------------------------------------


def test_a_get_bills_the_whole_item_and_a_missing_one_the_minimum() -> None:
    """Given a 5,029-byte item, a missing one, and a small item read in a transaction
    When each get is billed
    Then the big item is 2 units strongly consistent and 1 eventually, the missing one 0.5, and the
    transactional read 2 units per 4 KB
    """
    key = {"pk": {"S": "Q#q"}, "sk": {"S": "M#1"}}
    # 5,029 bytes -> 8 KB: 2 units strongly consistent, 1 eventually
    assert item_read(SCHEMA, message(5000), key, consistent=True).read_units == 2
    assert item_read(SCHEMA, message(5000), key, consistent=False).read_units == 1
    assert item_read(SCHEMA, None, key, consistent=False).read_units == 0.5
    # a transactional read: 2 units per 4 KB
    assert item_read(SCHEMA, message(10), key, consistent=True, transactional=True).read_units == 2


def test_a_query_bills_every_item_read_rounded_once() -> None:
    """Given a query reading ten 1,500-byte items, and one reading nothing
    When each is billed
    Then the total 15,000 bytes round once to 4 units (2 eventually consistent), and nothing read
    bills the minimum
    """
    # Ten 1,500-byte items read (whatever a filter kept): 15,000 bytes -> 16 KB = 4 units
    assert query_read(SCHEMA, None, "Q#q", [1500] * 10, consistent=True).read_units == 4
    # eventually consistent: 2
    assert query_read(SCHEMA, None, "Q#q", [1500] * 10, consistent=False).read_units == 2
    # nothing read: the minimum
    assert query_read(SCHEMA, None, "Q#q", [], consistent=True).read_units == 1


def test_an_index_query_is_eventually_consistent_whatever_was_asked() -> None:
    """Given a query on the index reading 8 entries of 2,000 bytes, asked as strongly consistent
    When it is billed
    Then it is 2 units: 16 KB halved, as index reads are eventually consistent (AWS's example)
    """
    # AWS's example: 8 entries of 2,000 bytes = 16,000 bytes -> 16 KB -> 4 units, halved
    assert query_read(SCHEMA, "by_visibility", "q", [2000] * 8, consistent=True).read_units == 2


def test_a_batch_get_bills_each_item_rounded_on_its_own() -> None:
    """Given items of 1.5 KB and 6.5 KB read together
    When each get is billed
    Then they bill 1 and 2 units, each rounded on its own (AWS's BatchGetItem example)
    """
    # AWS's example: 1.5 KB and 6.5 KB read in one BatchGetItem bill 4 KB + 8 KB = 3 units
    key = {"pk": {"S": "Q#q"}, "sk": {"S": "M#1"}}
    small, large = message(1536 - 29), message(6656 - 29)
    units = [item_read(SCHEMA, item, key, consistent=True).read_units for item in (small, large)]
    assert units == [1, 2]


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        (
            {"TableName": "t", "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]},
            ("id", None),
        ),
        (
            {
                "TableName": "t",
                "KeySchema": [
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                    {"AttributeName": "pk", "KeyType": "HASH"},
                ],
            },
            ("pk", "sk"),
        ),
    ],
)
def test_the_schema_comes_from_the_table_description(description: dict, expected: tuple) -> None:
    """Given a DescribeTable answer with only a hash key, or with range before hash in KeySchema
    When the schema is read from it
    Then it names the hash and range keys by KeyType, not by order
    """
    schema = TableSchema.from_description(description)
    assert (schema.hash_key, schema.range_key) == expected


def test_an_index_schema_names_the_attributes_it_projects() -> None:
    """Given the test schema's by_visibility index, which projects receive_count
    When its projected non-key attributes are read
    Then they are receive_count alone (what an index write is billed on)
    """
    assert SCHEMA.index("by_visibility").non_key_attributes == ("receive_count",)
