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


@contextmanager
def update_paths_checked_against_reserved_words_directly() -> Iterator[None]:
    """Check each name of an UpdateItem's paths against the reserved words in one step.

    Upstream behaviour: `ExpressionPathResolver.raise_exception_if_keyword` runs for every
    name of every path an UpdateItem resolves (`n[3]` in `n[3] + :one`, on every update)
    and asks `ReservedKeywords.get_reserved_keywords()` for the list each time, then the
    list whether it holds the name: three calls per name. Here a text name is looked up at
    once in the set of moto's list (the one `get_reserved_keywords` hands out, read as it
    stands: `reserved_words_looked_up_by_name` makes that lookup a set's); a reserved one
    is refused by moto's own check, with its error, as is any other value.
    """
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
    from moto.dynamodb.parsing.validators import ExpressionPathResolver

    original: Any = ExpressionPathResolver.raise_exception_if_keyword.__func__  # type: ignore[attr-defined]
    kept: list[Any] = [None, frozenset(), 0]  # moto's list, its words, its length

    def raise_exception_if_keyword(cls: type, attribute: Any) -> None:
        words = ReservedKeywords.KEYWORDS
        if type(attribute) is not str or words is None:
            return original(cls, attribute)  # type: ignore[no-any-return]
        if kept[0] is not words or kept[2] != len(words):
            kept[:] = [words, frozenset(w for w in words if type(w) is str), len(words)]
        if attribute.upper() in kept[1]:
            original(cls, attribute)  # refused as moto refuses it
        return None

    resolver: Any = ExpressionPathResolver
    with patched(resolver, "raise_exception_if_keyword", classmethod(raise_exception_if_keyword)):
        yield
