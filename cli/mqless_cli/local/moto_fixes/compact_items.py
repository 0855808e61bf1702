"""Stored DynamoDB items that hold their key values once and share their attribute names."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


def _same_scalar(stored: Any, key: Any) -> bool:
    """Whether the attribute value `stored` is the key value `key` (a key is S, N or B)."""
    return bool(stored.type == key.type and stored.value == key.value)


def _shared_key(attrs: dict[str, Any], key: Any) -> Any:
    """The attribute value object equal to `key` (which the item may hold instead), or `key`."""
    if key is None:
        return None
    for stored in attrs.values():
        if _same_scalar(stored, key):
            return stored
    return key


@contextmanager
def items_hold_keys_once() -> Iterator[None]:
    """Let a stored item hold each key value once and share its attribute names.

    Upstream behaviour: `Item` keeps its hash and range key as DynamoType objects of their
    own, next to the key attributes in `attrs` that hold the same values (about 100 bytes
    each, twice per item), and each item keys `attrs` with the attribute names as parsed
    from its request: a string object per name per item. `mqless dev` keeps every item for
    as long as DynamoDB would (message bodies for their retention), so this is paid for
    every message sent.

    Here the key objects are the key attributes' own (a scalar DynamoType is never changed
    in place, and a key attribute cannot be updated), and attribute names are interned:
    one string per distinct name. Values, types, order and size checks are as before.
    """
    from moto.dynamodb.models.dynamo_type import Item

    original = Item.__init__

    def init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        interned = {sys.intern(name) if type(name) is str else name: v for name, v in attrs.items()}
        original(self, hash_key, range_key, interned)
        self.hash_key = _shared_key(self.attrs, hash_key)
        self.range_key = _shared_key(self.attrs, range_key)

    with patched(Item, "__init__", init):
        yield
