"""SNS-style attribute filter policies for durable subscriptions.

They follow Amazon SNS attribute-scope filtering: AND across keys, OR within a key's list,
`$or` between alternative sets of keys; operators `prefix`, `suffix`, `equals-ignore-case`,
`anything-but` (a value, a list, or `{"prefix": ...}`), `numeric` and `exists`. Our
attributes are strings only; numeric conditions read the string as a JSON number and fail
to match when it is not one. Pure: no I/O.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mqless.domain.errors import InvalidRequest

MAX_POLICY_KEYS = 5
MAX_POLICY_COMBINATIONS = 150
MAX_POLICY_CHARS = 256 * 1024
MAX_OR_DEPTH = 10  # ours: SNS documents none, but an unbounded nesting could exhaust the stack
NUMBER_LIMIT = Decimal(1_000_000_000)
OR = "$or"
OPERATORS = ("anything-but", "equals-ignore-case", "exists", "numeric", "prefix", "suffix")
_LOWER_BOUNDS = (">", ">=")
_UPPER_BOUNDS = ("<", "<=")
_COMPARISONS = ("=", *_LOWER_BOUNDS, *_UPPER_BOUNDS)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _invalid(where: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"invalid filter policy: {where}: {problem}")


def _as_number(text: str) -> Decimal | None:
    """An attribute's value read as a number, or None when it is not a JSON number."""
    if len(text) > 100 or not _JSON_NUMBER.fullmatch(text):
        return None
    return Decimal(text)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: object) -> str:
    """A short JSON rendering of part of a policy, for error messages."""
    try:
        return json.dumps(value, default=repr)[:60]
    except (TypeError, ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def _policy_number(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(where, f"{_show(value)} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(where, "numbers must be finite")
    # str() of a float is its shortest round-trip form, so 301.5 stays exactly 301.5
    number = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    if abs(number) > NUMBER_LIMIT:
        raise _invalid(where, "numbers must lie between -1000000000 and 1000000000")
    return number


@dataclass(frozen=True)
class _Equals:
    text: str

    def matches(self, value: str | None) -> bool:
        return value == self.text


@dataclass(frozen=True)
class _Range:
    low: Decimal | None = None
    low_inclusive: bool = False
    high: Decimal | None = None
    high_inclusive: bool = False

    def matches(self, value: str | None) -> bool:
        number = None if value is None else _as_number(value)
        if number is None:
            return False
        if self.low is not None and (
            number < self.low or (number == self.low and not self.low_inclusive)
        ):
            return False
        return self.high is None or not (
            number > self.high or (number == self.high and not self.high_inclusive)
        )


@dataclass(frozen=True)
class _Prefix:
    text: str

    def matches(self, value: str | None) -> bool:
        return value is not None and value.startswith(self.text)


@dataclass(frozen=True)
class _Suffix:
    text: str

    def matches(self, value: str | None) -> bool:
        return value is not None and value.endswith(self.text)


@dataclass(frozen=True)
class _EqualsIgnoreCase:
    folded: str

    def matches(self, value: str | None) -> bool:
        return value is not None and value.casefold() == self.folded


@dataclass(frozen=True)
class _AnythingBut:
    texts: frozenset[str] = frozenset()
    numbers: frozenset[Decimal] = frozenset()
    prefix: str | None = None

    def matches(self, value: str | None) -> bool:
        if value is None or value in self.texts:
            return False
        if self.prefix is not None and value.startswith(self.prefix):
            return False
        return not self.numbers or _as_number(value) not in self.numbers


@dataclass(frozen=True)
class _Exists:
    expected: bool

    def matches(self, value: str | None) -> bool:
        # SNS: "exists": true needs a non-empty value
        return (value is not None and value != "") == self.expected


_Condition = _Equals | _Range | _Prefix | _Suffix | _EqualsIgnoreCase | _AnythingBut | _Exists
_Branch = tuple[tuple[str, tuple[_Condition, ...]], ...]  # all keys must match (AND)


def _parse_numeric(spec: object, where: str) -> _Range:
    where = f"{where}: numeric"
    if not isinstance(spec, list) or len(spec) not in (2, 4):
        raise _invalid(
            where,
            'use [op, n] with op one of = < <= > >=, or a range like [">", 0, "<=", 150]',
        )
    op = spec[0]
    if op not in _COMPARISONS:
        raise _invalid(where, f"unknown comparison {_show(op)}; use one of = < <= > >=")
    first = _policy_number(spec[1], where)
    if len(spec) == 2:
        if op == "=":
            return _Range(first, True, first, True)
        if op in _LOWER_BOUNDS:
            return _Range(low=first, low_inclusive=op == ">=")
        return _Range(high=first, high_inclusive=op == "<=")
    upper_op = spec[2]
    if op not in _LOWER_BOUNDS or upper_op not in _UPPER_BOUNDS:
        raise _invalid(where, 'a range is [">" or ">=", low, "<" or "<=", high]')
    second = _policy_number(spec[3], where)
    if not first < second:
        raise _invalid(where, "the range's lower bound must be less than its upper bound")
    return _Range(first, op == ">=", second, upper_op == "<=")


def _parse_anything_but(spec: object, where: str) -> _AnythingBut:
    where = f"{where}: anything-but"
    if isinstance(spec, str):
        return _AnythingBut(texts=frozenset([spec]))
    if _is_number(spec):
        return _AnythingBut(numbers=frozenset([_policy_number(spec, where)]))
    if isinstance(spec, list):
        if not spec:
            raise _invalid(where, "the list is empty")
        if all(isinstance(item, str) for item in spec):
            return _AnythingBut(texts=frozenset(spec))
        if all(_is_number(item) for item in spec):
            return _AnythingBut(numbers=frozenset(_policy_number(n, where) for n in spec))
        raise _invalid(where, "the list must hold only strings or only numbers")
    if isinstance(spec, dict):
        if list(spec) != ["prefix"]:
            raise _invalid(where, 'the only nested form is {"prefix": "..."}')
        if not isinstance(spec["prefix"], str):
            raise _invalid(where, "prefix must be a string")
        return _AnythingBut(prefix=spec["prefix"])
    raise _invalid(where, 'use a string, a number, a list of them, or {"prefix": "..."}')


def _parse_operator(spec: dict[Any, Any], where: str) -> _Condition:
    if len(spec) != 1:
        raise _invalid(where, f"a match object holds exactly one operator, got {len(spec)}")
    ((operator, argument),) = spec.items()
    if operator in ("prefix", "suffix", "equals-ignore-case"):
        if not isinstance(argument, str):
            raise _invalid(where, f"{operator} must be a string")
        if operator == "prefix":
            return _Prefix(argument)
        if operator == "suffix":
            return _Suffix(argument)
        return _EqualsIgnoreCase(argument.casefold())
    if operator == "anything-but":
        return _parse_anything_but(argument, where)
    if operator == "numeric":
        return _parse_numeric(argument, where)
    if operator == "exists":
        if not isinstance(argument, bool):
            raise _invalid(where, "exists must be true or false")
        return _Exists(argument)
    raise _invalid(where, f"unknown operator {_show(operator)}; use one of {', '.join(OPERATORS)}")


def _parse_condition(spec: object, where: str) -> _Condition:
    if isinstance(spec, str):
        return _Equals(spec)
    if _is_number(spec):
        number = _policy_number(spec, where)
        return _Range(number, True, number, True)
    if isinstance(spec, dict):
        return _parse_operator(spec, where)
    if isinstance(spec, bool) or spec is None:
        raise _invalid(where, f"{_show(spec)} cannot match a string attribute; quote it")
    raise _invalid(where, "a value is a string, a number, or an operator object")


def _parse_object(obj: object, where: str, depth: int, seen: set[str]) -> tuple[list[_Branch], int]:
    """A policy object as alternatives (OR of branches) and its SNS combination count."""
    if not isinstance(obj, dict):
        raise _invalid(where, "a policy is a JSON object of attribute name -> list of values")
    conjunction: list[tuple[str, tuple[_Condition, ...]]] = []
    combinations = 1
    alternatives: list[_Branch] = [()]
    for key, values in obj.items():
        if not isinstance(key, str) or not key:
            raise _invalid(where, f"attribute names are non-empty strings, got {key!r:.60}")
        if key == OR:
            alternatives, or_combinations = _parse_or(values, where, depth, seen)
            combinations *= or_combinations
        else:
            at = f"{key!r:.60}" if where == "policy" else f"{where} -> {key!r:.60}"
            if not isinstance(values, list):
                raise _invalid(at, 'the value must be a list, like ["a", "b"]')
            if not values:
                raise _invalid(at, "the list is empty")
            conjunction.append((key, tuple(_parse_condition(v, at) for v in values)))
            combinations *= len(values)
            seen.add(key)
        if len(seen) > MAX_POLICY_KEYS:
            raise _invalid(where, f"more than {MAX_POLICY_KEYS} attribute names")
        if combinations > MAX_POLICY_COMBINATIONS:
            raise _invalid(
                where,
                f"more than {MAX_POLICY_COMBINATIONS} combinations of values "
                "(the product of each key's list length, summed over $or alternatives)",
            )
    base = tuple(conjunction)
    return [base + alternative for alternative in alternatives], combinations


def _parse_or(values: object, where: str, depth: int, seen: set[str]) -> tuple[list[_Branch], int]:
    at = f"{where} -> $or" if where != "policy" else "$or"
    if depth >= MAX_OR_DEPTH:
        raise _invalid(at, f"$or is nested more than {MAX_OR_DEPTH} deep")
    if not isinstance(values, list) or len(values) < 2:
        raise _invalid(at, "$or takes a list of at least two policy objects")
    branches: list[_Branch] = []
    combinations = 0
    for number, alternative in enumerate(values, start=1):
        here = f"{at}[{number}]"
        if isinstance(alternative, dict) and not alternative:
            raise _invalid(here, "an alternative needs at least one attribute")
        found, count = _parse_object(alternative, here, depth + 1, seen)
        branches.extend(found)
        combinations += count
        if combinations > MAX_POLICY_COMBINATIONS:
            break  # the caller reports it
    return branches, combinations


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class FilterPolicy:
    """An SNS-style filter policy, parsed once, then applied to message attributes."""

    __slots__ = ("_source", "_branches")

    def __init__(self, source: dict[str, Any], branches: list[_Branch]) -> None:
        self._source = source
        self._branches = branches

    @classmethod
    def parse(cls, policy: Mapping[str, Any] | str) -> FilterPolicy:
        """Validate a policy (a JSON object, or its text); InvalidRequest says what is wrong."""
        if isinstance(policy, str):
            if len(policy) > MAX_POLICY_CHARS:
                raise _invalid("policy", "larger than 256 KB")
            try:
                loaded = json.loads(policy, parse_constant=_reject_constant)
            except (ValueError, RecursionError) as exc:
                raise _invalid("policy", f"not valid JSON ({str(exc)[:80]})") from None
        else:
            loaded = dict(policy) if isinstance(policy, Mapping) else policy
        branches, _ = _parse_object(loaded, "policy", 0, set())
        # validated: only JSON types remain, so a deep copy is a faithful, private snapshot
        return cls(copy.deepcopy(loaded), branches)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Whether a message with these attributes passes the policy."""
        if not self._source:
            return True  # an empty policy filters nothing
        if not attributes:
            # SNS: a message with no attributes matches no policy, not even {"exists": false}
            return False
        return any(
            all(any(c.matches(attributes.get(key)) for c in conditions) for key, conditions in b)
            for b in self._branches
        )

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict; `parse` of it gives an equal policy."""
        return copy.deepcopy(self._source)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilterPolicy) and self._source == other._source

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FilterPolicy({json.dumps(self._source, sort_keys=True)[:200]})"
