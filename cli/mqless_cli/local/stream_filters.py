"""FilterCriteria of a DynamoDB event source: which records a function is handed.

Supported: exact values, ``prefix``, ``suffix``, ``equals-ignore-case``, ``anything-but``,
``numeric`` and ``exists``. A filter using anything else is logged and treated as matching
everything (so nothing is lost locally that AWS would deliver)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mqless_cli.local.stream_records import Record, lambda_record

__all__ = ["Matcher", "raw_filter", "record_filter"]


log = logging.getLogger(__name__)

Matcher = Callable[[Record], bool]


class _Unsupported(Exception):
    """A filter pattern uses syntax this local runtime does not evaluate."""


def record_filter(patterns: Iterable[str]) -> Matcher:
    """A predicate for FilterCriteria patterns: true if any pattern matches (or none given)."""
    matchers: list[Matcher] = []
    for text in patterns:
        try:
            pattern = _parsed(text)
        except (ValueError, _Unsupported) as exc:
            log.warning(
                "filter pattern %s is not evaluated locally (%s): it matches every record",
                text,
                exc,
            )
            return lambda record: True
        matchers.append(functools.partial(_matches, pattern))
    if not matchers:
        return lambda record: True
    return lambda record: any(match(record) for match in matchers)


def raw_filter(
    patterns: Iterable[str], stream_arn: str, region: str
) -> Callable[[Mapping[str, Any]], Record | None]:
    """The record Lambda hands over for a stream item (as boto3 parses it) if a pattern
    matches it, else None.

    Where the patterns look at some of a record's `dynamodb` fields only (the template's look
    at `Keys`), an item is first tried in a view holding just those: the ones no pattern
    matches (most of a busy table's) are never converted whole, images included."""
    patterns = list(patterns)
    convert = functools.partial(lambda_record, stream_arn=stream_arn, region=region)
    matches = record_filter(patterns)
    seen = _dynamodb_fields(patterns)
    if seen is None:
        return lambda raw: record if matches(record := convert(raw)) else None

    def accept(raw: Mapping[str, Any]) -> Record | None:
        fields = raw.get("dynamodb") or {}
        view = {**raw, "dynamodb": {key: fields[key] for key in seen if key in fields}}
        return convert(raw) if matches(convert(view)) else None

    return accept


def _dynamodb_fields(patterns: list[str]) -> frozenset[str] | None:
    """The `dynamodb` fields some pattern looks at; None if it may look at all of them (or
    there is no filter, or one not evaluated here)."""
    fields: set[str] = set()
    for text in patterns:
        try:
            pattern = _parsed(text)
        except (ValueError, _Unsupported):
            return None
        looked_at = pattern.get("dynamodb", {})
        if not isinstance(looked_at, dict):
            return None
        fields.update(looked_at)
    return frozenset(fields) if patterns else None


def _parsed(text: str) -> dict[str, Any]:
    """A pattern's JSON object, checked: ValueError or _Unsupported if it is not one this
    runtime evaluates."""
    pattern = json.loads(text)
    if not isinstance(pattern, dict):
        raise _Unsupported("a pattern must be a JSON object")
    _check(pattern)
    return pattern


_OPERATORS = {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists"}


def _check(pattern: dict[str, Any]) -> None:
    """Raise _Unsupported for any syntax `_matches` does not implement."""
    for key, value in pattern.items():
        if key.startswith("$"):
            raise _Unsupported(f"{key} is not supported")
        if isinstance(value, dict):
            _check(value)
        elif isinstance(value, list):
            for rule in value:
                if isinstance(rule, dict):
                    unknown = set(rule) - _OPERATORS
                    if unknown or len(rule) != 1:
                        raise _Unsupported(f"operator {sorted(rule)} is not supported")
                    if "numeric" in rule:
                        _numeric_pairs(rule["numeric"])
                elif isinstance(rule, list):
                    raise _Unsupported("nested lists are not a pattern")
        else:
            raise _Unsupported(f"{key}: values must be in a list or a nested object")


def _matches(pattern: dict[str, Any], event: Any) -> bool:
    for key, rules in pattern.items():
        present = isinstance(event, dict) and key in event
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(rules, dict):
            if not present or not _matches(rules, value):
                return False
            continue
        candidates = value if isinstance(value, list) else [value]
        if not any(_rule(rule, item, present) for rule in rules for item in candidates or [None]):
            return False
    return True


def _rule(rule: Any, value: Any, present: bool) -> bool:
    """Does one rule of a pattern's list accept `value` (absent when not `present`)?"""
    if not isinstance(rule, dict):
        if not present:
            return False
        if _is_number(rule) and _is_number(value):
            return float(rule) == float(value)
        return bool(rule == value and type(rule) is type(value))
    ((operator, operand),) = rule.items()
    if operator == "exists":
        return bool(operand) == present
    if not present:
        return False
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(operand)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(operand).lower()
    if operator == "anything-but":
        if isinstance(operand, dict):
            return not _rule(operand, value, present)
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(_rule(item, value, present) for item in excluded)
    if operator == "numeric":
        # As in EventBridge patterns, only JSON numbers compare: DynamoDB's {"N": "5"} is a string.
        if not _is_number(value):
            return False
        return all(_COMPARE[op](float(value), bound) for op, bound in _numeric_pairs(operand))
    return False


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _numeric_pairs(operand: Any) -> list[tuple[str, float]]:
    if not isinstance(operand, list) or len(operand) % 2 or not operand:
        raise _Unsupported(f"numeric {operand!r} is not [op, value, ...]")
    pairs = list(zip(operand[::2], operand[1::2], strict=True))
    for op, bound in pairs:
        if op not in _COMPARE or not _is_number(bound):
            raise _Unsupported(f"numeric {operand!r} is not [op, value, ...]")
    return [(op, float(bound)) for op, bound in pairs]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
