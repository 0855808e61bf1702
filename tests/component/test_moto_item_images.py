"""`items_written_out_directly`: a stored item's JSON image is moto's, built without copies.

Each behaviour is compared with plain moto 5.2's `Item.to_json` and `to_regular_json`.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless_cli.local.moto_fixes import items_written_out_directly, values_deep_copied_directly
from tests.call_counts import count_calls
from tests.component.test_moto_fixes import VALUES


def held(attributes: dict[str, Any], binary_as_text: bool) -> Any:
    """A moto Item of `attributes` as moto holds them (binary as the base64 text a request
    carried, or as bytes when `binary_as_text` is off)."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    def wire(value: dict[str, Any]) -> dict[str, Any]:
        ((kind, data),) = value.items()
        if kind == "B" and binary_as_text:
            return {"B": base64.b64encode(data).decode()}
        if kind == "L":
            return {"L": [wire(v) for v in data]}
        if kind == "M":
            return {"M": {k: wire(v) for k, v in data.items()}}
        return {kind: copy.deepcopy(data)}

    item = Item(DynamoType({"S": "h"}), None, {})
    for name, value in attributes.items():
        item.attrs[name] = DynamoType(wire(value))
    return item


def images(item: Any) -> str:
    """The item's `to_json` and each value's `to_regular_json`, as text (types kept)."""
    written = [item.to_json(), item.to_json("Item")]
    written += [value.to_regular_json() for value in item.attrs.values()]
    return repr(written)


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=5),
    binary_as_text=st.booleans(),
)
def test_items_are_written_out_as_moto_writes_them(
    attributes: dict[str, Any], binary_as_text: bool
) -> None:
    # Given any item (every AttributeValue type, nested maps and lists, binary either way)
    item = held(attributes, binary_as_text)
    expected = images(item)
    # When it is written out with the fix on
    with items_written_out_directly():
        found = images(item)
        image = item.to_json()["Attributes"]
    # Then the images are moto's, and changing one leaves the item as it was
    assert found == expected
    for value in image.values():
        data = next(iter(value.values()))
        if isinstance(data, list | dict):
            data.clear()
    assert images(item) == expected


def test_a_stream_record_of_a_long_list_copies_none_of_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an item holding a list of 300 numbers and a map of 30 texts
    item = held(
        {
            "l": {"L": [{"N": str(n)} for n in range(300)]},
            "m": {"M": {str(n): {"S": "x"} for n in range(30)}},
        },
        binary_as_text=True,
    )
    copies = count_calls(monkeypatch, copy, "deepcopy")
    # When it is written out (as each stream record and answer writes it) with the fix on
    with items_written_out_directly():
        image = item.to_json()["Attributes"]
    # Then no value was copied, and every one is there
    assert copies() == 0
    assert image["l"]["L"][299] == {"N": "299"}
    assert json.dumps(image["m"]["M"]["29"]) == '{"S": "x"}'


# ---- values deep-copied directly -----------------------------------------------------------


def copy_shape(value: Any, seen: dict[int, int]) -> Any:
    """A DynamoType copy as comparable values: types, values, and which objects repeat."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if not isinstance(value, DynamoType):
        return ("raw", type(value).__name__, repr(value))
    first = seen.setdefault(id(value), len(seen))
    data = value.value
    if isinstance(data, list):
        data = [copy_shape(v, seen) for v in data]
    elif isinstance(data, dict):
        data = {k: copy_shape(v, seen) for k, v in data.items()}
    else:
        data = (type(data).__name__, data)
    return (first, value.type, data)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, binary_as_text=st.booleans())
def test_values_are_deep_copied_as_moto_copies_them(value: Any, binary_as_text: bool) -> None:
    # Given any value as moto holds it, an element of it repeated in a list beside it
    from moto.dynamodb.models.dynamo_type import DynamoType

    stored = held({"v": value}, binary_as_text).attrs["v"]
    twice = DynamoType({"L": []})
    twice.value = [stored, stored, DynamoType({"S": "x"})]
    expected = copy_shape(copy.deepcopy(twice), {})
    # When it is deep-copied with the fix on
    with values_deep_copied_directly():
        found = copy.deepcopy(twice)
    # Then the copy is moto's (repeats copied once), and shares no DynamoType with it
    assert copy_shape(found, {}) == expected
    originals: dict[int, int] = {}
    copy_shape(twice, originals)
    copies: dict[int, int] = {}
    copy_shape(found, copies)
    assert not set(originals) & set(copies)


def test_a_long_list_is_deep_copied_without_a_deepcopy_per_element(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a list of 300 numbers as moto holds it
    stored = held({"l": {"L": [{"N": str(n)} for n in range(300)]}}, True).attrs["l"]
    # When it is deep-copied with the fix on (as list_append copies the list it extends)
    with values_deep_copied_directly():
        copies = count_calls(monkeypatch, copy, "deepcopy")
        found = copy.deepcopy(stored)
    # Then `copy.deepcopy` ran once (for the list itself), and every element was copied
    assert copies() == 1
    assert [v.value for v in found.value] == [str(n) for n in range(300)]
    assert all(a is not b for a, b in zip(found.value, stored.value, strict=True))
