"""Topic names, ActiveMQ-style subscription patterns, and an index of many patterns.

Pure: no I/O. Names are words of `A-Z a-z 0-9 _ -` joined by `.`; the wildcard rules (`*`
one segment, a final `>` zero or more) are `domain/wildcards.py`'s, shared with grant
patterns. ActiveMQ ignores whatever follows a `>`; we refuse such a pattern instead of
guessing what it meant. Filter policies are in `filter_policies.py`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from mqless.domain import wildcards
from mqless.domain.errors import InvalidRequest
from mqless.domain.names import MAX_NAME_LENGTH
from mqless.domain.wildcards import ANY_SEGMENT, ANY_TAIL, Fault

_WORD = re.compile(r"[A-Za-z0-9_-]+")
_NAME_RULE = "1-80 characters: words of A-Z a-z 0-9 _ - separated by '.'"
_PATTERN_RULE = f"{_NAME_RULE}; a word may be '*' (one segment), or a final '>' (the rest)"


def _quoted(text: str) -> str:
    return repr(text[:100] + ("..." if len(text) > 100 else ""))


def _check_segments(text: str, kind: str, rule: str, *, patterned: bool) -> list[str]:
    if not 1 <= len(text) <= MAX_NAME_LENGTH:
        raise InvalidRequest(f"invalid {kind} {_quoted(text)}: use {rule}")
    segments = wildcards.segments(text)
    for position, segment in enumerate(segments):
        if _WORD.fullmatch(segment):
            continue
        fault = wildcards.fault(segment, position, len(segments))
        if patterned and fault is None and segment in (ANY_SEGMENT, ANY_TAIL):
            continue
        if fault is Fault.EMPTY:
            problem = f"segment {position + 1} is empty"
        elif not patterned and segment in (ANY_SEGMENT, ANY_TAIL):
            problem = "wildcards belong in subscription patterns, not in names"
        elif patterned and fault is Fault.TAIL_NOT_LAST:
            problem = "'>' may only be the last segment"
        elif patterned and fault is Fault.PARTIAL_WILDCARD:
            problem = f"wildcard in {_quoted(segment)} must be a whole segment"
        else:
            problem = f"segment {_quoted(segment)} has a character outside A-Z a-z 0-9 _ -"
        raise InvalidRequest(f"invalid {kind} {_quoted(text)}: {problem}; use {rule}")
    return segments


def validate_topic_name(name: str) -> str:
    """Return `name` if it is a valid topic name to publish to, else raise InvalidRequest."""
    _check_segments(name, "topic name", _NAME_RULE, patterned=False)
    return name


def validate_topic_pattern(pattern: str) -> str:
    """Return `pattern` if it is a valid subscription pattern, else raise InvalidRequest."""
    _check_segments(pattern, "topic pattern", _PATTERN_RULE, patterned=True)
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether the topic name `topic` is one that subscription `pattern` receives."""
    _check_segments(pattern, "topic pattern", _PATTERN_RULE, patterned=True)
    _check_segments(topic, "topic name", _NAME_RULE, patterned=False)
    return wildcards.covers(pattern, topic)


V = TypeVar("V", bound=Hashable, default=Any)


@dataclass(eq=False)
class _Node(Generic[V]):
    children: dict[str, _Node[V]] = field(default_factory=dict)  # words and "*"
    exact: set[V] = field(default_factory=set)  # patterns that end here
    tail: set[V] = field(default_factory=set)  # patterns that end here with ".>"

    def is_empty(self) -> bool:
        return not (self.children or self.exact or self.tail)


class TopicIndex(Generic[V]):
    """Many subscription patterns, looked up by topic name: a trie over segments.

    A lookup visits at most two children per segment (the word and `*`), so its cost
    depends on the topic's depth and the wildcards present, not on how many patterns
    there are.
    """

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._size = 0

    def __len__(self) -> int:
        """The number of (pattern, value) pairs held."""
        return self._size

    def add(self, pattern: str, value: V) -> None:
        """Register `value` under `pattern` (adding the same pair twice keeps one)."""
        segments = _check_segments(pattern, "topic pattern", _PATTERN_RULE, patterned=True)
        node = self._root
        ends_with_tail = segments[-1] == ANY_TAIL
        for segment in segments[:-1] if ends_with_tail else segments:
            node = node.children.setdefault(segment, _Node())
        bucket = node.tail if ends_with_tail else node.exact
        if value not in bucket:
            bucket.add(value)
            self._size += 1

    def remove(self, pattern: str, value: V) -> bool:
        """Forget `value` under `pattern`; False if it was not there."""
        segments = _check_segments(pattern, "topic pattern", _PATTERN_RULE, patterned=True)
        ends_with_tail = segments[-1] == ANY_TAIL
        path: list[tuple[_Node[V], str]] = []
        node = self._root
        for segment in segments[:-1] if ends_with_tail else segments:
            child = node.children.get(segment)
            if child is None:
                return False
            path.append((node, segment))
            node = child
        bucket = node.tail if ends_with_tail else node.exact
        if value not in bucket:
            return False
        bucket.discard(value)
        self._size -= 1
        for parent, segment in reversed(path):  # prune branches left empty
            if not parent.children[segment].is_empty():
                break
            del parent.children[segment]
        return True

    def match(self, topic: str) -> set[V]:
        """The values of every pattern that matches the topic name `topic`."""
        segments = _check_segments(topic, "topic name", _NAME_RULE, patterned=False)
        found: set[V] = set()
        frontier = [self._root]
        for segment in segments:
            following: list[_Node[V]] = []
            for node in frontier:
                found |= node.tail  # "prefix.>" matches whatever is left, even one segment
                for key in (segment, ANY_SEGMENT):
                    child = node.children.get(key)
                    if child is not None:
                        following.append(child)
            if not following:
                return found
            frontier = following
        for node in frontier:
            found |= node.exact
            found |= node.tail  # "prefix.>" also matches "prefix" itself
        return found
