"""Stored items written out as JSON images without copying each value twice first, and
their values deep-copied without `copy.deepcopy` for each element."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

_IMMUTABLE = (str, bytes, int, float, bool, type(None))
"""Values a deep copy gives back as they are."""


class _Unusual(Exception):
    """A value this fix does not know: written out by moto's own code instead."""


def _regular(value: Any, dynamo_type: type) -> dict[str, Any]:
    """`value.to_regular_json()` of a DynamoType: the same JSON, built in one pass.

    Upstream deep-copies the value (every nested DynamoType), then calls
    `to_regular_json` on each copied element, which deep-copies it again. Strings,
    numbers, bytes, booleans and None come back as they are from a deep copy, so they are
    taken as they are here; lists and maps are new. Raises `_Unusual` for anything else.
    """
    kind, data = value.type, value.value
    shape = type(data)
    if shape is str:
        return {kind: base64.b64decode(data)} if kind == "B" else {kind: data}
    if shape is list:
        return {kind: [_element(e, dynamo_type) for e in data]}
    if shape is dict:
        return {kind: {k: _element(e, dynamo_type) for k, e in data.items()}}
    if shape in _IMMUTABLE:
        return {kind: data}
    raise _Unusual


def _element(element: Any, dynamo_type: type) -> Any:
    """An element of a list or map as `to_regular_json` writes it."""
    if type(element) is dynamo_type:
        return _regular(element, dynamo_type)
    if type(element) in _IMMUTABLE:
        return element
    raise _Unusual


def _item_json(item: Any, root: str, dynamo_type: type) -> dict[str, Any]:
    """`Item.to_json(root)`: top-level maps and lists element by element, the rest as is."""
    attributes: dict[str, Any] = {}
    for name, attribute in item.attrs.items():
        data = attribute.value
        if isinstance(data, dict):
            attributes[name] = {attribute.type: {k: _top(v, dynamo_type) for k, v in data.items()}}
        elif isinstance(data, list):
            attributes[name] = {
                attribute.type: [
                    _regular(v, dynamo_type) if type(v) is dynamo_type else _plain(v, dynamo_type)
                    for v in data
                ]
            }
        else:
            attributes[name] = {attribute.type: data}
    return {root: attributes}


def _top(value: Any, dynamo_type: type) -> dict[str, Any]:
    """A map attribute's value as `Item.to_json` writes it (`to_regular_json`)."""
    if type(value) is not dynamo_type:
        raise _Unusual
    return _regular(value, dynamo_type)


def _plain(element: Any, dynamo_type: type) -> Any:
    """A list element that is not exactly a DynamoType, as `Item.to_json` writes it: a
    DynamoType subclass by its own method, anything else as it is."""
    if isinstance(element, dynamo_type):
        raise _Unusual
    return element


def _falling_back(fast: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    def written(self: Any, *args: Any) -> Any:
        try:
            return fast(self, *args)
        except (_Unusual, AttributeError, TypeError, ValueError):
            return original(self, *args)  # moto's own way (and its own errors)

    return written


@contextmanager
def items_written_out_directly() -> Iterator[None]:
    """Write a stored item (and a DynamoType) out as JSON in one pass, without copies.

    Upstream behaviour: `Item.to_json` writes each list or map attribute out with
    `DynamoType.to_regular_json`, which deep-copies the value (every element) and then
    calls itself on each copied element, copying it again. Every stream record writes the
    new image out this way, every UpdateItem's answer too; for the broker's segments (lists
    of a few hundred values) that was most of a stream record's cost.

    Here the same JSON is built in one pass: scalars (which a deep copy gives back as they
    are) taken as they are, lists and maps new, binary values decoded as before. Any value
    of another kind (a subclass, an object) is written out by moto's own code, as is the
    whole item when one is met.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    original_item, original_value = Item.to_json, DynamoType.to_regular_json

    def item_json(self: Any, root_attr_name: str = "Attributes") -> dict[str, Any]:
        return _item_json(self, root_attr_name, DynamoType)

    def value_json(self: Any) -> dict[str, Any]:
        return _regular(self, DynamoType)

    with ExitStack() as stack:
        stack.enter_context(patched(Item, "to_json", _falling_back(item_json, original_item)))
        stack.enter_context(
            patched(DynamoType, "to_regular_json", _falling_back(value_json, original_value))
        )
        yield


# ---- values deep-copied directly --------------------------------------------------------------


def _copier(
    dynamo_type: type, deepcopy: Callable[..., Any]
) -> Callable[[Any, dict[int, Any]], Any]:
    """`DynamoType.__deepcopy__` (moto 5.2's), calling itself for the DynamoTypes a list or
    map holds instead of going through `copy.deepcopy` for each."""

    def copied(self: Any, memo: dict[int, Any]) -> Any:
        found = memo.get(id(self))
        if found is not None:
            return found
        cls: Any = type(self)
        result = cls.__new__(cls)
        memo[id(self)] = result
        result.type = kind = self.type
        value = self.value
        if kind == "L":
            result.value = [
                copied(v, memo) if type(v) is dynamo_type else deepcopy(v, memo) for v in value
            ]
        elif kind == "M":
            result.value = {
                k: copied(v, memo) if type(v) is dynamo_type else deepcopy(v, memo)
                for k, v in value.items()
            }
        elif kind in ("SS", "NS", "BS"):
            result.value = list(value)
        else:
            result.value = value
        return result

    return copied


@contextmanager
def values_deep_copied_directly() -> Iterator[None]:
    """Deep-copy a list or map DynamoType element by element without `copy.deepcopy`.

    Upstream behaviour: `DynamoType.__deepcopy__` copies each element of a list or map with
    `copy.deepcopy`, which looks the element up in its memo, asks its class for a copier,
    finds `__deepcopy__`, calls it, and notes the copy twice in the memo: several times
    the copy itself. `list_append` copies the whole list it appends to, on every such
    update (a FIFO segment's lists), as do a transaction's undo log and old images.
    Here an element that is exactly a DynamoType is copied by the same method directly
    (same copy, same memo entry for it); anything else goes through `copy.deepcopy`.
    """
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    with patched(DynamoType, "__deepcopy__", _copier(DynamoType, copy.deepcopy)):
        yield
