"""DynamoDB's reserved words looked up by name, not compared one by one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


class KeywordList(list[str]):
    """moto's list of reserved words (same words, same order) whose `in` is a set lookup."""

    def __init__(self, words: Iterable[str]) -> None:
        super().__init__(words)
        self._set = frozenset(w for w in self if type(w) is str)

    def __contains__(self, name: object) -> bool:
        if type(name) is str:
            return name in self._set
        return super().__contains__(name)  # anything else compares as a list does


@contextmanager
def reserved_words_looked_up_by_name() -> Iterator[None]:
    """Look a name up among DynamoDB's reserved words in a set, not a list.

    Upstream behaviour: `ReservedKeywords.get_reserved_keywords()` is a list of the 573
    reserved words, and each check (`name.upper() in ...`: every attribute name of an
    UpdateExpression path, on every UpdateItem; condition and projection names) compares
    the name with each word in turn: two thirds of resolving an update's paths. Here the
    same list is handed out, its `in` answered from a set of its words for a text name;
    any other value is compared as before.
    """
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    original: Any = ReservedKeywords.get_reserved_keywords.__func__  # type: ignore[attr-defined]
    kept: list[Any] = [None, KeywordList(())]  # moto's list, and its KeywordList

    def get_reserved_keywords(cls: type) -> list[str]:
        words = original(cls)  # moto's one list, read once from its resource file
        if kept[0] is not words or len(kept[1]) != len(words):
            kept[:] = [words, KeywordList(words)]
        found: KeywordList = kept[1]
        return found

    with patched(ReservedKeywords, "get_reserved_keywords", classmethod(get_reserved_keywords)):
        yield
