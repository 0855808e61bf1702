"""JMS message selectors: parsing, errors that name the position, and three-valued evaluation.

The property tests compare the evaluator with SQLite, whose SQL-92 expressions share JMS's
three-valued logic (NULL, AND/OR/NOT, BETWEEN, IN, LIKE ... ESCAPE, IS NULL, integer
division toward zero, NULL on division by zero): random selectors over the same random
properties must give the same TRUE, FALSE or UNKNOWN.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.domain.errors import InvalidRequest
from mqless.domain.selectors import InvalidSelector, check, message_lookup, parse


def select(text: str, **properties: object) -> bool | None:
    selector = parse(text)
    assert selector is not None
    return selector.evaluate(properties.get)  # type: ignore[arg-type]


# ---- examples from the JMS specification and ActiveMQ's documentation ----------------------


def test_activemq_example_selects_a_blue_heavy_car_when_strings_convert() -> None:
    # Given a STOMP message, whose properties are all strings
    properties = {"JMSType": "car", "color": "blue", "weight": "3000"}
    # When ActiveMQ's documented example is evaluated, with and without conversion
    strict = "JMSType = 'car' AND color = 'blue' AND weight > 2500"
    # Then the JMS rule holds (a string is not a number) unless the selector asks to convert
    assert select(strict, **properties) is False
    assert select("convert_string_expressions:" + strict, **properties) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age >= 15 AND age <= 19", True),
        ("age BETWEEN 15 AND 19", True),
        ("age NOT BETWEEN 15 AND 19", False),
        ("country IN ('UK', 'US', 'France')", True),
        ("country NOT IN ('UK', 'US', 'France')", False),
        ("phone LIKE '12%3'", True),
        ("word LIKE 'l_se'", True),
        ("underscored LIKE '\\_%' ESCAPE '\\'", True),
        ("underscored LIKE '!_x%' ESCAPE '!'", False),
        ("prop_name IS NULL", True),
        ("age IS NOT NULL", True),
        ("age * 2 - 1 = 33", True),
        ("-age < 0 AND +age > 0", True),
        ("7 / 2 = 3 AND -7 / 2 = -3", True),
        ("1.5e1 = 15 AND 0x10 = 16 AND 10L = 10 AND 2.5F > 2", True),
        ("name = 'it''s'", True),
        ("flag = TRUE", True),
        ("flag", True),
        ("NOT flag", False),
    ],
)
def test_spec_examples_select_as_jms_says(text: str, expected: bool) -> None:
    # Given typed properties (as a JMS client would set them)
    properties = {
        "age": 17,
        "country": "UK",
        "phone": "12993",
        "word": "lose",
        "underscored": "_foo",
        "name": "it's",
        "flag": True,
    }
    # When / Then
    assert select(text, **properties) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("missing = 1", None),
        ("missing = 1 AND age = 17", None),
        ("missing = 1 AND age = 0", False),
        ("missing = 1 OR age = 17", True),
        ("missing = 1 OR age = 0", None),
        ("NOT missing = 1", None),
        ("missing + 1 > 0", None),
        ("missing IN ('a')", None),
        ("missing LIKE 'a%'", None),
        ("missing BETWEEN 1 AND 2", None),
        ("age / 0 = 1", None),
        ("NOT (age / 0 = 1) OR age = 17", True),
    ],
)
def test_null_makes_unknown_as_three_valued_logic_says(text: str, expected: bool | None) -> None:
    # Given a message without the property `missing` / When / Then
    assert select(text, age=17) is expected


def test_unknown_does_not_select_a_message() -> None:
    # Given a selector that is UNKNOWN for a message without the property
    selector = parse("missing = 1")
    assert selector is not None
    # When it is asked whether it selects / Then it does not (nor does its negation)
    assert selector.matches({}.get) is False
    negated = parse("NOT missing = 1")
    assert negated is not None
    assert negated.matches({}.get) is False


@pytest.mark.parametrize(
    "text",
    ["name > 'a'", "name = 1", "age = '17'", "flag = 1", "flag < TRUE"],
)
def test_unlike_types_and_ordered_strings_are_false(text: str) -> None:
    # Given / When / Then: JMS compares only like types; strings and booleans only by = and <>
    assert select(text, name="b", age=17, flag=True) is False


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("a =", 4, "expected a value"),
        ("color = 'blue", 9, "not closed"),
        ("a = 1 b", 7, "expected AND, OR"),
        ("a LIKE 3", 8, "string pattern"),
        ("a LIKE 'x' ESCAPE 'ab'", 19, "exactly one character"),
        ("a IN (b)", 7, "literal in the IN list"),
        ("1 + 2", 1, "must be a condition"),
        ("a = NULL", 5, "IS NULL"),
        ("a # 1", 3, "unexpected character"),
        ("(a = 1", 7, "')'"),
        ("a NOT = 1", 7, "BETWEEN, IN or LIKE"),
        ("a = 1 AND 2", 11, "conditions on both sides"),
        ("'x' + 1 = 2", 5, "arithmetic needs numbers"),
        ("a = 12abc", 5, "not a number"),
    ],
)
def test_bad_selector_is_refused_naming_the_position(text: str, position: int, words: str) -> None:
    # Given a malformed selector / When it is parsed
    with pytest.raises(InvalidSelector) as caught:
        parse(text)
    # Then the error says where (1-based) and what, and is a client mistake
    assert f"at position {position}:" in caught.value.message
    assert words in caught.value.message
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.code == "invalid_selector"


def test_deeply_nested_selector_is_refused_not_crashed() -> None:
    # Given a selector nested far deeper than any real one
    text = "(" * 5000 + "a = 1" + ")" * 5000
    # When / Then: a clear refusal, not a RecursionError (a 500)
    with pytest.raises(InvalidSelector, match="nested more than"):
        parse(text[:4000])
    with pytest.raises(InvalidSelector, match="at most 4096 characters"):
        parse(text)


def test_blank_selector_selects_everything() -> None:
    # Given / When / Then: as ActiveMQ, an empty selector is no selector
    assert parse("  ") is None
    assert check("") is None
    assert check(None) is None
    assert check("a = 1") == "a = 1"


def test_jms_headers_come_from_the_message() -> None:
    # Given a message as the broker holds it
    lookup = message_lookup(
        message_id="0190-abc",
        sent_at=1_700_000_000_000,
        attributes={"type": "order", "priority": "7", "region": "eu"},
        correlation_id="req-1",
        group_id="g1",
    )
    # When selectors name JMS headers / Then they see the message's fields
    selector = (
        "JMSMessageID = '0190-abc' AND JMSTimestamp > 0 AND JMSCorrelationID = 'req-1' AND "
        "JMSType = 'order' AND JMSPriority > 5 AND JMSDeliveryMode = 'PERSISTENT' AND "
        "JMSXGroupID = 'g1' AND region = 'eu'"
    )
    assert select_with(selector, lookup) is True
    # and a message sent without a priority has JMS's default, 4
    plain = message_lookup(message_id="m", sent_at=1, attributes={})
    assert select_with("JMSPriority = 4 AND JMSType IS NULL", plain) is True


def select_with(text: str, lookup: object) -> bool | None:
    selector = parse(text)
    assert selector is not None
    return selector.evaluate(lookup)  # type: ignore[arg-type]


# ---- property tests against SQLite ----------------------------------------------------------

INTS = st.one_of(st.none(), st.integers(-20, 20))
STRINGS = st.one_of(st.none(), st.sampled_from(["", "a", "ab", "a_b", "a%b", "ba", "B", "x!y"]))


def numeric() -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.sampled_from(["a", "b"]),
        st.integers(-20, 20).map(lambda n: f"({n})" if n < 0 else str(n)),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"(-{e})"),
        ),
        max_leaves=4,
    )


def string_value() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["s", "t"]),
        st.sampled_from(["''", "'a'", "'ab'", "'B'", "'a_b'"]),
    )


def condition() -> st.SearchStrategy[str]:
    pattern = st.sampled_from(["'a%'", "'_b'", "'%'", "'a!_b' ESCAPE '!'", "'x!!y' ESCAPE '!'"])
    leaf = st.one_of(
        st.tuples(numeric(), st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), numeric()).map(
            " ".join
        ),
        st.tuples(string_value(), st.sampled_from(["=", "<>"]), string_value()).map(" ".join),
        st.tuples(numeric(), st.sampled_from(["", "NOT "]), numeric(), numeric()).map(
            lambda t: f"{t[0]} {t[1]}BETWEEN {t[2]} AND {t[3]}"
        ),
        st.tuples(
            st.sampled_from(["s", "t"]),
            st.sampled_from(["", "NOT "]),
            st.lists(st.sampled_from(["'a'", "'ab'", "''", "'B'"]), min_size=1, max_size=3),
        ).map(lambda t: f"{t[0]} {t[1]}IN ({', '.join(t[2])})"),
        st.tuples(st.sampled_from(["s", "t"]), st.sampled_from(["", "NOT "]), pattern).map(
            lambda t: f"{t[0]} {t[1]}LIKE {t[2]}"
        ),
        st.tuples(
            st.sampled_from(["a", "b", "s", "t"]), st.sampled_from(["IS NULL", "IS NOT NULL"])
        ).map(" ".join),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"NOT ({e})"),
        ),
        max_leaves=6,
    )


def sqlite_truth(text: str, row: dict[str, object]) -> bool | None:
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA case_sensitive_like = ON")  # JMS LIKE is case-sensitive
    (value,) = db.execute(
        f"SELECT CASE WHEN ({text}) THEN 1 WHEN NOT ({text}) THEN 0 END "
        "FROM (SELECT :a AS a, :b AS b, :s AS s, :t AS t)",
        row,
    ).fetchone()
    return None if value is None else bool(value)


@settings(max_examples=400, deadline=None)
@given(text=condition(), a=INTS, b=INTS, s=STRINGS, t=STRINGS)
def test_evaluation_agrees_with_sqlite(
    text: str, a: int | None, b: int | None, s: str | None, t: str | None
) -> None:
    # Given random properties and a random selector over them
    row = {"a": a, "b": b, "s": s, "t": t}
    # When both evaluate it / Then they agree on TRUE, FALSE or UNKNOWN
    assert select(text, **row) == sqlite_truth(text, row), text


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    # Given any text at all / When it is parsed / Then it is a selector, none, or refused
    try:
        parse(text)
    except InvalidSelector as exc:
        assert exc.message.startswith(("invalid selector at position", "a selector may be"))
