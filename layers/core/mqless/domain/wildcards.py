"""Dotted names and their wildcards: the one set of rules that topic patterns
(`topics/patterns.py`) and grant patterns (`access/principals.py`) share.

Names are segments joined by `.`. A pattern may use `*` for exactly one segment and a final
`>` for the rest of the name. As in ActiveMQ 5 (its `DestinationMapNode` and
`PrefixDestinationFilter`), `>` matches zero or more segments, so `PRICE.STOCK.>` also
matches `PRICE.STOCK` itself. What a segment may otherwise hold, and how a refusal is
worded, is each caller's.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

SEPARATOR: Final = "."
ANY_SEGMENT: Final = "*"
ANY_TAIL: Final = ">"


class Fault(Enum):
    """What makes a segment unusable in a pattern, whatever its characters."""

    EMPTY = "empty"
    TAIL_NOT_LAST = "tail not last"
    PARTIAL_WILDCARD = "partial wildcard"


def segments(text: str) -> list[str]:
    return text.split(SEPARATOR)


def is_wildcard(segment: str) -> bool:
    return segment in (ANY_SEGMENT, ANY_TAIL)


def has_wildcard(pattern: str) -> bool:
    """Whether a pattern has a wildcard segment (it names more than one destination)."""
    return any(is_wildcard(segment) for segment in segments(pattern))


def fault(segment: str, position: int, count: int) -> Fault | None:
    """What is wrong with a pattern's segment at `position` of `count` (None: nothing the
    wildcard rules forbid): empty, a `>` before the end, or a wildcard inside a word."""
    if segment == "":
        return Fault.EMPTY
    if segment == ANY_TAIL:
        return None if position == count - 1 else Fault.TAIL_NOT_LAST
    if segment != ANY_SEGMENT and (ANY_SEGMENT in segment or ANY_TAIL in segment):
        return Fault.PARTIAL_WILDCARD
    return None


def covers(pattern: str, wanted: str) -> bool:
    """Whether `pattern` reaches every name `wanted` can name (never raises).

    For a name this is matching (a final `>` matches zero or more further segments); a
    wildcard in `wanted` (a pattern itself) is covered only by a wildcard at least as wide.
    """
    granted = segments(pattern)
    parts = segments(wanted)
    for position, grant in enumerate(granted):
        if grant == ANY_TAIL:
            return True
        if position >= len(parts):
            return False
        segment = parts[position]
        if segment == ANY_TAIL:
            return False
        if grant != ANY_SEGMENT and grant != segment:
            return False
    return len(granted) == len(parts)
