"""Condition functions made cheaper: `contains` on a set or a list casts its elements
without wrapping each in a DynamoType of its own (`contains_casts_elements_directly`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

_SETS = frozenset(("SS", "BS"))
"""Set types whose elements' casts are the elements themselves (text, binary)."""


def _cast_elements(value: Any, dynamo_type: Any) -> Any:
    """`value.cast_value` of a set or list DynamoType: the same set or list, each element cast
    as `DynamoType.cast_value` casts it (an NS element to a Decimal, an SS or BS element
    to itself, a list element by its own cast), without a DynamoType made per element."""
    kind, elements = value.type, value.value
    if kind in _SETS:
        return set(elements)
    if kind == "NS":
        return {Decimal(element) for element in elements}
    return [
        element.cast_value if type(element) is dynamo_type else dynamo_type(element).cast_value
        for element in elements
    ]


@contextmanager
def contains_casts_elements_directly() -> Iterator[None]:
    """Evaluate `contains(path, operand)` on a set or a list without a DynamoType per element.

    Upstream behaviour: `FuncContains.expr` reads the attribute's type, then its
    `cast_value`, which for a string, number or binary set makes a DynamoType of every
    element to cast it (`DynamoType({"N": v}).cast_value`), and for a list copies every
    element into a new DynamoType (and its elements, for a nested list or map) before
    casting it; then looks for the operand among the casts. The broker's conditions check
    `NOT contains(a, :p)` on a set that grows with every settled position, and `NOT
    contains(u, :done)` on a list, on every acknowledgement. Here, for an attribute path
    to a set or list, the same set or list of casts is made directly (an NS element's
    Decimal, an SS or BS element itself, a list element's own cast) and searched the same
    way, with moto's order of evaluation and its refusal of uncomparable operands (False on
    a TypeError). Any other operand or attribute type is evaluated as before.
    """
    from moto.dynamodb import comparisons
    from moto.dynamodb.models.dynamo_type import DynamoType

    func: Any = comparisons.FuncContains
    path_class: Any = comparisons.AttributePath
    original = func.expr

    def expr(self: Any, item: Any) -> bool:
        path = self.attr
        if type(path) is not path_class:
            return bool(original(self, item))
        value = path._get_attr(item)
        kind = None if value is None else value.type
        if kind not in ("SS", "NS", "BS", "L"):
            return bool(original(self, item))
        try:
            return self.operand.expr(item) in _cast_elements(value, DynamoType)
        except TypeError:
            return False

    with patched(func, "expr", expr):
        yield
