"""Destination names: what is allowed, what makes a FIFO queue, how dead-letter queues are named."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqless.domain import names
from mqless.domain.errors import InvalidRequest

NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")


@pytest.mark.parametrize(
    "name", ["orders", "a", "Orders_2024-v1.fifo", "x" * 80, "...", "-_-", "orders.dlq"]
)
def test_a_valid_name_is_returned_unchanged(name: str) -> None:
    # Given a name of 1-80 characters from A-Z a-z 0-9 _ . -
    # When it is validated
    # Then it comes back as it was
    assert names.validate_queue_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 81, "has space", "a/b", "a:b", "caf\u00e9", "orders\n", "\norders", "a*", "a>"],
    ids=[
        "empty",
        "81-chars",
        "space",
        "slash",
        "colon",
        "non-ascii",
        "trailing-newline",
        "leading-newline",
        "star",
        "gt",
    ],
)
def test_an_invalid_name_is_an_invalid_request(name: str) -> None:
    # Given a name outside the allowed alphabet or length
    # When it is validated
    with pytest.raises(InvalidRequest) as caught:
        names.validate_queue_name(name)
    # Then the caller is told which characters are allowed
    assert caught.value.code == "invalid_request"
    assert "1-80 characters" in caught.value.message


@given(name=st.text(max_size=120))
def test_any_text_is_accepted_exactly_when_it_matches_the_name_rule(name: str) -> None:
    # Given any string
    # When it is validated
    try:
        names.validate_queue_name(name)
        accepted = True
    except InvalidRequest:
        accepted = False
    # Then it was accepted if and only if it matches [A-Za-z0-9_.-]{1,80}
    assert accepted == bool(NAME.fullmatch(name))


def test_an_invalid_name_is_quoted_but_cut_short_in_the_error() -> None:
    # Given a very long invalid name
    name = "?" * 5000
    # When it is validated
    with pytest.raises(InvalidRequest) as caught:
        names.validate_queue_name(name)
    # Then the message does not echo the whole of it
    assert len(caught.value.message) < 300


@pytest.mark.parametrize(
    ("name", "fifo"),
    [("orders.fifo", True), ("orders", False), ("fifo", False), ("orders.fifo.x", False)],
)
def test_a_fifo_suffix_makes_a_fifo_queue(name: str, fifo: bool) -> None:
    # Given a queue name
    # When it is asked whether the name means FIFO
    # Then only a `.fifo` suffix does
    assert names.is_fifo(name) is fifo


@pytest.mark.parametrize(
    ("name", "dlq"),
    [("orders", "orders.dlq"), ("orders.fifo", "orders.dlq.fifo"), ("a.b", "a.b.dlq")],
)
def test_the_default_dead_letter_queue_is_named_for_the_queue(name: str, dlq: str) -> None:
    # Given a queue name
    # When the default dead-letter queue name is derived
    # Then it keeps the queue's kind (FIFO stays FIFO)
    assert names.default_dead_letter_queue(name) == dlq
    assert names.is_fifo(dlq) == names.is_fifo(name)


def test_no_default_dead_letter_queue_when_the_name_would_be_too_long() -> None:
    # Given names at the length where the `.dlq` mark no longer fits
    longest_ok = "x" * 76
    too_long = "x" * 77
    # When default dead-letter queue names are derived
    # Then the 80-character result is allowed and anything longer is refused (None)
    assert names.default_dead_letter_queue(longest_ok) == "x" * 76 + ".dlq"
    assert names.default_dead_letter_queue(too_long) is None
    assert names.default_dead_letter_queue("x" * 72 + ".fifo") is None


@given(name=st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True))
def test_a_derived_dead_letter_queue_name_is_itself_valid(name: str) -> None:
    # Given any valid queue name
    # When its default dead-letter queue name is derived
    dlq = names.default_dead_letter_queue(name)
    # Then, if there is one, it is a valid name, recognised as a dead-letter name, of the same kind
    if dlq is not None:
        assert names.validate_queue_name(dlq) == dlq
        assert names.is_dead_letter_name(dlq)
        assert names.is_fifo(dlq) == names.is_fifo(name)
        assert dlq != name


@pytest.mark.parametrize(
    ("name", "is_dlq"),
    [
        ("orders.dlq", True),
        ("orders.dlq.fifo", True),
        ("orders", False),
        ("orders.fifo", False),
        ("dlq", False),
        ("orders.dlq.x", False),
    ],
)
def test_dead_letter_names_are_recognised(name: str, is_dlq: bool) -> None:
    # Given a queue name
    # When it is asked whether it is a dead-letter queue name
    # Then only the shapes default_dead_letter_queue makes are
    assert names.is_dead_letter_name(name) is is_dlq


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("orders.dlq", "orders"),
        ("orders.dlq.fifo", "orders.fifo"),
        ("a.b.dlq", "a.b"),
        ("orders.dlq.dlq", "orders.dlq"),
        ("orders", None),
        ("orders.fifo", None),
        ("orders.dlq.x", None),
        ("orders.fifo.dlq", None),
        (".dlq", None),
    ],
)
def test_a_dead_letter_name_leads_back_to_its_source_queue(name: str, source: str | None) -> None:
    # Given a queue name
    # When the queue it is the default dead-letter queue of is asked for
    # Then only dead-letter names have one, and it is the name without the `.dlq` mark
    assert names.dead_letter_source(name) == source


@given(name=st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True))
def test_dead_letter_source_undoes_default_dead_letter_queue(name: str) -> None:
    # Given any valid queue name
    # When its default dead-letter queue and its dead-letter source are worked out
    dlq = names.default_dead_letter_queue(name)
    source = names.dead_letter_source(name)
    # Then the source of its dead-letter queue is the queue itself, and the dead-letter
    # queue of its source (if it has one) is the name itself
    if dlq is not None:
        assert names.dead_letter_source(dlq) == name
    if source is not None:
        assert names.default_dead_letter_queue(source) == name
        assert names.is_dead_letter_name(name)
