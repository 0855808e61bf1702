"""`reserved_words_looked_up_by_name`: reserved words refused as moto refuses them, each
name looked up rather than compared with every reserved word."""

from __future__ import annotations

from typing import Any

import pytest

from mqless_cli.local.moto_fixes import reserved_words_looked_up_by_name
from tests.component.test_moto_fixes import TABLE, answer_of, key, moto


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py); each test starts its own motos."""


def answers(fixed: bool) -> list[Any]:
    """What moto answers to updates, conditions and projections naming reserved words
    (in any case) and ordinary names."""
    found: list[Any] = []
    with moto(fixed=fixed) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "n": {"N": "1"}})
        requests = [
            ("update_item", {"UpdateExpression": "SET size = :v"}),
            ("update_item", {"UpdateExpression": "SET Status = :v"}),
            ("update_item", {"UpdateExpression": "SET m = :v, n = n + :v"}),
            ("update_item", {"UpdateExpression": "SET m = :v", "ConditionExpression": "date = :v"}),
            (
                "update_item",
                {"UpdateExpression": "SET m = :v", "ConditionExpression": "attribute_exists(n)"},
            ),
            ("get_item", {"ProjectionExpression": "name"}),
            ("get_item", {"ProjectionExpression": "n, m"}),
        ]
        for operation, extra in requests:
            request: dict[str, Any] = {"TableName": TABLE, "Key": key("p", "a"), **extra}
            if operation == "update_item":
                request["ExpressionAttributeValues"] = {":v": {"N": "2"}}
            found.append(answer_of(getattr(db, operation), **request))
    return found


def test_reserved_words_are_refused_as_moto_refuses_them() -> None:
    # Given requests naming reserved words (size, Status, date, name) and ordinary names
    # When plain and fixed moto each answer them
    found = answers(fixed=True)
    # Then the answers are the same: the reserved words refused, the others applied
    assert found == answers(fixed=False)
    assert [isinstance(a, tuple) for a in found] == [True, True, False, True, False, True, False]


class _Scanned(list[str]):
    """moto's reserved words, counting how often a name is searched for in them."""

    scans = 0

    def __contains__(self, name: object) -> bool:
        _Scanned.scans += 1
        return super().__contains__(name)


def test_a_name_is_looked_up_among_the_reserved_words_not_searched_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    # Given moto's reserved words (searches counted), with the fix on
    read = _Scanned(ReservedKeywords._get_reserved_keywords())
    monkeypatch.setattr(ReservedKeywords, "KEYWORDS", read)
    with reserved_words_looked_up_by_name():
        # When names are checked against them as moto checks them
        found = [n in ReservedKeywords.get_reserved_keywords() for n in ("ZEBRA", "SIZE", "STATUS")]
        words = ReservedKeywords.get_reserved_keywords()
    # Then they are told apart without searching moto's list, which is handed out the same
    assert found == [False, True, True]
    assert _Scanned.scans == 0
    assert list(words) == list(read) and len(words) > 500


def test_an_updates_path_names_are_checked_without_asking_for_the_word_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given fixed moto and an item with a number, When an update resolves paths (n, twice)
    a second time, Then moto's list of reserved words was not asked for (moto asks once per
    name), and the update applied."""
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "n": {"N": "1"}})
        request: dict[str, Any] = {
            "TableName": TABLE,
            "Key": key("p", "a"),
            "UpdateExpression": "SET m = n + :v, n = n + :v",
            "ExpressionAttributeValues": {":v": {"N": "2"}},
        }
        db.update_item(**request)
        asked = 0
        original = ReservedKeywords.get_reserved_keywords

        def get_reserved_keywords() -> list[str]:
            nonlocal asked
            asked += 1
            return original()

        monkeypatch.setattr(ReservedKeywords, "get_reserved_keywords", get_reserved_keywords)
        db.update_item(**request)
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    assert asked == 0
    assert (found["m"], found["n"]) == ({"N": "5"}, {"N": "5"})
