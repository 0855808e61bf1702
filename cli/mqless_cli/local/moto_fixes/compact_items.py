"""Stored DynamoDB items that hold their key values once and share their attribute names."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


def _same_scalar(stored: Any, key: Any) -> bool:
    """Whether the attribute value `stored` is the key value `key` (a key is S, N or B)."""
    return bool(stored.type == key.type and stored.value == key.value)


def _hold(attrs: dict[str, Any], key: Any, held: Any) -> Any:
    """Let the attribute of `attrs` equal to `key` hold `held` (an equal scalar) instead;
    `held` (or None for no key)."""
    if key is None:
        return None
    for name, stored in attrs.items():
        if stored is key or _same_scalar(stored, key):
            dict.__setitem__(attrs, name, held)  # the same value: no size check to redo
            break
    return held


_SHARED_BYTES = 64
"""The longest S, N or B value shared (a body is not: it is never repeated)."""


def _share_small_values(attrs: dict[str, Any], keys: tuple[Any, Any], last: dict[str, Any]) -> None:
    """Let each small scalar attribute of `attrs` (not a key) hold the DynamoType that the
    last item made with that attribute held, if its value is the same (`last` keeps one
    value per attribute name: a queue's data key id, an expiry second, repeat)."""
    for name, value in attrs.items():
        if value.type not in _SCALARS or value is keys[0] or value is keys[1]:
            continue
        if type(value.value) not in (str, bytes) or len(value.value) > _SHARED_BYTES:
            continue
        found = last.get(name)
        if found is None or found.type != value.type or found.value != value.value:
            last[name] = value
        elif found is not value:
            dict.__setitem__(attrs, name, found)  # the same value: no size check to redo


_SCALARS = frozenset(("S", "N", "B"))


@contextmanager
def items_hold_keys_once() -> Iterator[None]:
    """Let a stored item hold each key value once and share its attribute names.

    Upstream behaviour: `Item` keeps its hash and range key as DynamoType objects of their
    own, next to the key attributes in `attrs` that hold the same values (about 100 bytes
    each, twice per item), and `Table.put_item` files the item in its partition under a
    third object for its range key; each item of a partition holds a hash key object of its
    own; and each item keys `attrs` with the attribute names as parsed from its request: a
    string object per name per item. `mqless dev` keeps every item for as long as DynamoDB
    would (message bodies for their retention), so this is paid for every message sent.

    Here the key attributes hold the key objects the item was made with (the ones
    `Table.put_item` files it under), an item put in a partition that holds items already
    shares their hash key object (a scalar DynamoType is never changed in place, and a key
    attribute cannot be updated), a small S, N or B attribute equal to the one the last
    item made held under the same name shares its object (the log items a queue writes
    within a second have the same data key id and expiry), and attribute names are
    interned: one string per distinct name. Values, types, order and size checks are as
    before.
    """
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    original_init, original_put = Item.__init__, Table.put_item
    last: dict[str, Any] = {}  # attribute name -> the last small value made for it

    def init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        interned = {sys.intern(name) if type(name) is str else name: v for name, v in attrs.items()}
        original_init(self, hash_key, range_key, interned)
        self.hash_key = _hold(self.attrs, hash_key, hash_key)
        self.range_key = _hold(self.attrs, range_key, range_key)
        _share_small_values(self.attrs, (self.hash_key, self.range_key), last)

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        partition = self.items.get(item.hash_key) if self.range_key_attr is not None else None
        if partition:
            first = next(iter(partition.values())).hash_key
            if first is not item.hash_key:
                item.hash_key = _hold(item.attrs, item.hash_key, first)
        return item

    with ExitStack() as stack:
        stack.enter_context(patched(Item, "__init__", init))
        stack.enter_context(patched(Table, "put_item", put_item))
        yield
