"""A parsed JMS selector as a tree of expressions, and its three-valued evaluation.

A missing property is NULL, a comparison or arithmetic with NULL is UNKNOWN (None here),
`AND`/`OR`/`NOT` follow the SQL truth tables. Comparing values of unlike types is FALSE,
strings and booleans compare only with `=` and `<>`; division by zero is UNKNOWN; integer
division truncates toward zero, as Java's does (`selectors/__init__.py` has the whole
contract).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

Value = bool | int | float | str | None
Lookup = Callable[[str], Value]


class Context:
    """One evaluation: where property values come from, and whether strings convert."""

    __slots__ = ("convert", "lookup")

    def __init__(self, lookup: Lookup, convert: bool) -> None:
        self.lookup = lookup
        self.convert = convert


class Expr:
    condition: ClassVar[bool] = False  # whether it may stand as a condition

    @property
    def boolean(self) -> bool:
        """Whether the expression is a condition (TRUE, FALSE or UNKNOWN)."""
        return self.condition

    def evaluate(self, ctx: Context) -> Value:
        raise NotImplementedError


@dataclass(frozen=True)
class Literal(Expr):
    value: Value

    @property
    def boolean(self) -> bool:
        return isinstance(self.value, bool)

    def evaluate(self, ctx: Context) -> Value:
        return self.value


@dataclass(frozen=True)
class Property(Expr):
    name: str
    condition = True  # a boolean property may stand as a condition

    def evaluate(self, ctx: Context) -> Value:
        return ctx.lookup(self.name)


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        value = truth(self.operand.evaluate(ctx), ctx)
        return None if value is None else not value


@dataclass(frozen=True)
class And(Expr):
    left: Expr
    right: Expr
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        left = truth(self.left.evaluate(ctx), ctx)
        if left is False:
            return False
        right = truth(self.right.evaluate(ctx), ctx)
        if right is False:
            return False
        return None if left is None or right is None else True


@dataclass(frozen=True)
class Or(Expr):
    left: Expr
    right: Expr
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        left = truth(self.left.evaluate(ctx), ctx)
        if left is True:
            return True
        right = truth(self.right.evaluate(ctx), ctx)
        if right is True:
            return True
        return None if left is None or right is None else False


@dataclass(frozen=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        return _compare(self.op, self.left.evaluate(ctx), self.right.evaluate(ctx), ctx)


@dataclass(frozen=True)
class Between(Expr):
    operand: Expr
    low: Expr
    high: Expr
    negated: bool
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        value = self.operand.evaluate(ctx)
        above = _compare(">=", value, self.low.evaluate(ctx), ctx)
        below = _compare("<=", value, self.high.evaluate(ctx), ctx)
        if above is False or below is False:
            inside: bool | None = False
        elif above is None or below is None:
            inside = None
        else:
            inside = True
        return inside if inside is None or not self.negated else not inside


@dataclass(frozen=True)
class In(Expr):
    operand: Expr
    choices: tuple[Value, ...]
    negated: bool
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        value = self.operand.evaluate(ctx)
        if value is None:
            return None
        found = any(_compare("=", value, choice, ctx) is True for choice in self.choices)
        return found != self.negated


@dataclass(frozen=True)
class Like(Expr):
    operand: Expr
    pattern: re.Pattern[str]
    negated: bool
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        value = self.operand.evaluate(ctx)
        if value is None:
            return None
        if not isinstance(value, str):
            return False
        return (self.pattern.fullmatch(value) is not None) != self.negated


@dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr
    negated: bool
    condition = True

    def evaluate(self, ctx: Context) -> Value:
        return (self.operand.evaluate(ctx) is None) != self.negated


@dataclass(frozen=True)
class Arithmetic(Expr):
    op: str
    left: Expr
    right: Expr

    def evaluate(self, ctx: Context) -> Value:
        left = _numeric(self.left.evaluate(ctx), ctx)
        right = _numeric(self.right.evaluate(ctx), ctx)
        if left is None or right is None:
            return None
        if self.op == "+":
            return left + right
        if self.op == "-":
            return left - right
        if self.op == "*":
            return left * right
        if right == 0:
            return None  # Java throws; a selector cannot, so the result is UNKNOWN
        if isinstance(left, int) and isinstance(right, int):
            quotient = abs(left) // abs(right)  # Java truncates toward zero
            return quotient if (left < 0) == (right < 0) else -quotient
        return left / right


@dataclass(frozen=True)
class Negate(Expr):
    operand: Expr

    def evaluate(self, ctx: Context) -> Value:
        value = _numeric(self.operand.evaluate(ctx), ctx)
        return None if value is None else -value


def truth(value: Value, ctx: Context) -> bool | None:
    """A value used as a condition: a boolean, or UNKNOWN."""
    if isinstance(value, bool):
        return value
    if ctx.convert and isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def _numeric(value: Value, ctx: Context) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if ctx.convert and isinstance(value, str):
        return _as_number(value)
    return None


def _as_number(text: str) -> int | float | None:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _compare(op: str, left: Value, right: Value, ctx: Context) -> bool | None:
    if left is None or right is None:
        return None
    if ctx.convert:
        left, right = _converted(left, right), _converted(right, left)
    if (
        isinstance(left, bool)
        or isinstance(right, bool)
        or isinstance(left, str)
        or isinstance(right, str)
    ):
        if type(left) is not type(right):
            return False  # unlike types: FALSE, as JMS says
        if op == "=":
            return left == right
        if op == "<>":
            return left != right
        return False  # strings and booleans compare only by = and <>
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if op == "=":
        return left == right
    if op == "<>":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _converted(value: Value, other: Value) -> Value:
    """convert_string_expressions: a string compared with a number (boolean) reads as one."""
    if not isinstance(value, str):
        return value
    if isinstance(other, bool):
        lowered = value.lower()
        return lowered == "true" if lowered in ("true", "false") else value
    if isinstance(other, int | float):
        number = _as_number(value)
        return value if number is None else number
    return value


def like_pattern(pattern: str, escape: str | None) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(parts), re.DOTALL)
