"""DynamoDB values whose cast is the value itself, compared and hashed without casting
(`plain_values_compared_directly`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

_AS_IS = frozenset(("S", "B", "BOOL"))
"""The types whose `DynamoType.cast_value` is `value` itself: not a number (a Decimal), a
set, a list, a map or null."""


@contextmanager
def plain_values_compared_directly() -> Iterator[None]:
    """Compare and hash a string, binary or boolean DynamoType by its value, not its cast.

    Upstream behaviour: `DynamoType.__hash__`, `__eq__`, `__ne__` and the orderings go
    through the `cast_value` property, which asks the value whether it is a number, a set,
    a list, a map or null (five calls) before handing back the value itself for a string,
    a binary or a boolean. Every lookup of an item by its key hashes and compares key
    values (a partition by its hash key, an item by its range key), and a Query sorts and
    bounds its items by theirs. Here a value of those three types is hashed and compared by
    its value at once: the same figure and the same answers, as the cast is the value. Any
    other value, and a comparison with anything but a DynamoType, goes through the cast.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType

    originals: dict[str, Callable[..., Any]] = {
        name: vars(DynamoType)[name]
        for name in ("__hash__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")
    }
    original_hash, original_eq, original_ne = (
        originals["__hash__"],
        originals["__eq__"],
        originals["__ne__"],
    )

    def hash_(self: Any) -> int:
        kind = self.type
        if kind in _AS_IS:
            return hash((kind, self.value))
        return int(original_hash(self))

    def eq(self: Any, other: Any) -> Any:
        kind = self.type
        if kind in _AS_IS and type(other) is DynamoType:
            return kind == other.type and self.value == other.value
        return original_eq(self, other)

    def ne(self: Any, other: Any) -> Any:
        kind = self.type
        if kind in _AS_IS and type(other) is DynamoType:
            return kind != other.type or self.value != other.value
        return original_ne(self, other)

    def ordering(name: str, compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        original = originals[name]

        def ordered(self: Any, other: Any) -> Any:
            if self.type in _AS_IS and type(other) is DynamoType and other.type in _AS_IS:
                return compare(self.value, other.value)
            return original(self, other)

        return ordered

    replacements = {
        "__hash__": hash_,
        "__eq__": eq,
        "__ne__": ne,
        "__lt__": ordering("__lt__", operator.lt),
        "__le__": ordering("__le__", operator.le),
        "__gt__": ordering("__gt__", operator.gt),
        "__ge__": ordering("__ge__", operator.ge),
    }
    with ExitStack() as stack:
        for name, replacement in replacements.items():
            stack.enter_context(patched(DynamoType, name, replacement))
        yield
