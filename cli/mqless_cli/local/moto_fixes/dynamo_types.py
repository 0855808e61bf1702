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
    other value, and a comparison with anything but a DynamoType, goes through the cast, in
    the same expression as moto's.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType

    with ExitStack() as stack:
        for name, replacement in _replacements(DynamoType).items():
            stack.enter_context(patched(DynamoType, name, replacement))
        yield


def _replacements(dynamo_type: Any) -> dict[str, Callable[..., Any]]:
    """`DynamoType`'s hash, equality and orderings, each as moto's own (the same expression
    over the casts), the cast skipped for a value whose cast is the value itself."""

    def hash_(self: Any) -> int:
        kind = self.type
        return hash((kind, self.value if kind in _AS_IS else self.cast_value))

    def eq(self: Any, other: Any) -> Any:
        kind = self.type
        if kind in _AS_IS and type(other) is dynamo_type:
            return kind == other.type and self.value == other.value
        return kind == other.type and self.cast_value == other.cast_value

    def ne(self: Any, other: Any) -> Any:
        kind = self.type
        if kind in _AS_IS and type(other) is dynamo_type:
            return kind != other.type or self.value != other.value
        return kind != other.type or self.cast_value != other.cast_value

    def ordering(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def ordered(self: Any, other: Any) -> Any:
            if self.type in _AS_IS and type(other) is dynamo_type and other.type in _AS_IS:
                return compare(self.value, other.value)
            return compare(self.cast_value, other.cast_value)

        return ordered

    return {
        "__hash__": hash_,
        "__eq__": eq,
        "__ne__": ne,
        "__lt__": ordering(operator.lt),
        "__le__": ordering(operator.le),
        "__gt__": ordering(operator.gt),
        "__ge__": ordering(operator.ge),
    }
