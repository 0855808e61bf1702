"""Topic names, ActiveMQ-style wildcard patterns, the pattern index, and SNS-style filter policies.

Examples come from the ActiveMQ "Wildcards" page (activemq.apache.org/wildcards) and the
Amazon SNS developer guide's filter policy pages (string, numeric, key matching, AND/OR,
constraints).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.domain.errors import InvalidRequest
from mqless.domain.topics.filter_policies import FilterPolicy
from mqless.domain.topics.patterns import (
    TopicIndex,
    topic_matches,
    validate_topic_name,
    validate_topic_pattern,
)

# ---- topic names ---------------------------------------------------------------------------

NAME_RULE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@pytest.mark.parametrize(
    "name",
    ["PRICE.STOCK.NASDAQ.ORCL", "a", "orders", "eu-west_1.orders.v2", "x" * 80, "a.b.c.d.e"],
)
def test_a_valid_topic_name_is_returned_unchanged(name: str) -> None:
    # Given words of A-Z a-z 0-9 _ - joined by dots, 80 characters at most
    # When the name is validated for publishing
    # Then it comes back as it was
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "1-80 characters"),
        ("x" * 81, "1-80 characters"),
        ("a..b", "segment 2 is empty"),
        (".a", "segment 1 is empty"),
        ("a.", "segment 2 is empty"),
        ("PRICE.*", "wildcards belong in subscription patterns"),
        ("PRICE.>", "wildcards belong in subscription patterns"),
        ("a*", "outside A-Z a-z 0-9 _ -"),
        ("has space", "outside A-Z a-z 0-9 _ -"),
        ("caf\u00e9", "outside A-Z a-z 0-9 _ -"),
        ("a/b", "outside A-Z a-z 0-9 _ -"),
    ],
)
def test_an_invalid_topic_name_is_an_invalid_request_that_says_why(name: str, problem: str) -> None:
    # Given a name that breaks the naming rule
    # When it is validated for publishing
    with pytest.raises(InvalidRequest) as caught:
        validate_topic_name(name)
    # Then the error names the problem and restates the rule
    assert problem in caught.value.message
    assert "separated by '.'" in caught.value.message


@given(name=st.text(alphabet="ab_-.*> \u00e9", max_size=90))
def test_a_topic_name_is_accepted_exactly_when_it_follows_the_rule(name: str) -> None:
    # Given any short string over an alphabet that includes separators and wildcards
    # When it is validated
    try:
        validate_topic_name(name)
        accepted = True
    except InvalidRequest:
        accepted = False
    # Then it is accepted if and only if it is dot-separated words of at most 80 characters
    assert accepted == (len(name) <= 80 and bool(NAME_RULE.fullmatch(name)))


def test_a_very_long_bad_name_is_cut_short_in_the_error() -> None:
    # Given a huge invalid name
    # When it is validated
    with pytest.raises(InvalidRequest) as caught:
        validate_topic_name("?" * 10_000)
    # Then the error does not echo all of it
    assert len(caught.value.message) < 400


# ---- subscription patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "PRICE.>",
        "PRICE.STOCK.>",
        "PRICE.STOCK.NASDAQ.*",
        "PRICE.STOCK.*.IBM",
        ">",
        "*",
        "*.*",
        "a.*.>",
        "orders",
    ],
)
def test_a_valid_pattern_is_returned_unchanged(pattern: str) -> None:
    # Given words, whole-segment '*', and at most a final '>'
    # When the pattern is validated
    # Then it comes back as it was
    assert validate_topic_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("a.>.b", "'>' may only be the last segment"),
        (">.a", "'>' may only be the last segment"),
        ("a.>.>", "'>' may only be the last segment"),
        ("a..b", "segment 2 is empty"),
        ("", "1-80 characters"),
        ("x" * 81, "1-80 characters"),
        ("a*", "must be a whole segment"),
        ("*a", "must be a whole segment"),
        ("a>", "must be a whole segment"),
        ("**", "must be a whole segment"),
        (">>", "must be a whole segment"),
        ("a.#", "outside A-Z a-z 0-9 _ -"),
    ],
)
def test_an_invalid_pattern_is_an_invalid_request_that_says_why(pattern: str, problem: str) -> None:
    # Given a pattern that breaks the wildcard rules
    # When it is validated
    with pytest.raises(InvalidRequest) as caught:
        validate_topic_pattern(pattern)
    # Then the error says what is wrong
    assert problem in caught.value.message


# The subscriptions table of the ActiveMQ "Wildcards" page, over its example destinations.
ACTIVEMQ_EXAMPLES = [
    ("PRICE.>", "PRICE.STOCK.NASDAQ.ORCL", True),
    ("PRICE.>", "PRICE.STOCK.NYSE.IBM", True),
    ("PRICE.>", "PRICE.BOND.NYSE.T10", True),
    ("PRICE.>", "STOCK.PRICE.NYSE.IBM", False),
    ("PRICE.STOCK.>", "PRICE.STOCK.NASDAQ.ORCL", True),
    ("PRICE.STOCK.>", "PRICE.STOCK.NYSE.IBM", True),
    ("PRICE.STOCK.>", "PRICE.BOND.NYSE.T10", False),
    ("PRICE.STOCK.NASDAQ.*", "PRICE.STOCK.NASDAQ.ORCL", True),
    ("PRICE.STOCK.NASDAQ.*", "PRICE.STOCK.NYSE.IBM", False),
    ("PRICE.STOCK.NASDAQ.*", "PRICE.STOCK.NASDAQ.ORCL.BID", False),
    ("PRICE.STOCK.NASDAQ.*", "PRICE.STOCK.NASDAQ", False),
    ("PRICE.STOCK.*.IBM", "PRICE.STOCK.NYSE.IBM", True),
    ("PRICE.STOCK.*.IBM", "PRICE.STOCK.NASDAQ.IBM", True),
    ("PRICE.STOCK.*.IBM", "PRICE.STOCK.NASDAQ.ORCL", False),
    ("PRICE.STOCK.*.IBM", "PRICE.STOCK.IBM", False),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), ACTIVEMQ_EXAMPLES)
def test_the_activemq_documentation_examples_hold(pattern: str, topic: str, expected: bool) -> None:
    # Given a subscription from the ActiveMQ wildcards table and a published destination
    # When they are compared
    # Then the topic matches exactly when the documentation says it does
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        # ActiveMQ's DestinationMapNode: "lets allow FOO.BAR to match the FOO.BAR.> entry"
        ("PRICE.STOCK.>", "PRICE.STOCK", True),
        ("PRICE.>", "PRICE", True),
        (">", "a", True),
        (">", "a.b.c.d", True),
        ("a.*.>", "a.b", True),
        ("a.*.>", "a.b.c.d", True),
        ("a.*.>", "a", False),
        ("a.b.>", "a", False),
        ("a.b.>", "a.bb", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
    ],
)
def test_a_final_gt_matches_zero_or_more_trailing_segments(
    pattern: str, topic: str, expected: bool
) -> None:
    # Given a pattern ending in '>' (or using '*') and a topic of a different depth
    # When they are compared
    # Then '>' takes zero or more segments and '*' exactly one
    assert topic_matches(pattern, topic) is expected


def test_a_plain_pattern_matches_only_the_same_name_case_sensitively() -> None:
    # Given a pattern without wildcards
    pattern = "PRICE.STOCK.NYSE.IBM"
    # When it is compared with itself, another case, a prefix and an extension
    # Then only the identical name matches
    assert topic_matches(pattern, "PRICE.STOCK.NYSE.IBM")
    assert not topic_matches(pattern, "price.stock.nyse.ibm")
    assert not topic_matches(pattern, "PRICE.STOCK.NYSE")
    assert not topic_matches(pattern, "PRICE.STOCK.NYSE.IBM.BID")


@pytest.mark.parametrize(("pattern", "topic"), [("a.>.b", "a.x.b"), ("a.>", "a.*"), ("a", "")])
def test_matching_refuses_an_invalid_pattern_or_name(pattern: str, topic: str) -> None:
    # Given an invalid pattern or an invalid topic name
    # When they are compared
    # Then the caller gets an InvalidRequest rather than a guess
    with pytest.raises(InvalidRequest):
        topic_matches(pattern, topic)


def _reference_regex(pattern: str) -> re.Pattern[str]:
    """An independent oracle: the pattern as a regular expression over the whole name."""
    word = r"[^.]+"
    parts = pattern.split(".")
    if parts[-1] == ">":
        head = [word if p == "*" else re.escape(p) for p in parts[:-1]]
        if not head:
            return re.compile(rf"{word}(\.{word})*")
        return re.compile(r"\.".join(head) + rf"(\.{word})*")
    return re.compile(r"\.".join(word if p == "*" else re.escape(p) for p in parts))


SEGMENT = st.sampled_from(["a", "b", "c"])
TOPICS = st.lists(SEGMENT, min_size=1, max_size=5).map(".".join)
PATTERNS = st.builds(
    lambda head, tail: ".".join(head + tail),
    st.lists(st.one_of(SEGMENT, st.just("*")), min_size=0, max_size=4),
    st.sampled_from([[], [">"]]),
).filter(bool)


@given(pattern=PATTERNS, topic=TOPICS)
def test_topic_matching_agrees_with_a_regular_expression_oracle(pattern: str, topic: str) -> None:
    # Given any pattern and topic over a small vocabulary
    # When the pattern is compared with the topic
    # Then the answer is the one a plain regular expression gives
    assert topic_matches(pattern, topic) == bool(_reference_regex(pattern).fullmatch(topic))


# ---- the pattern index ---------------------------------------------------------------------


def test_the_index_returns_every_subscription_whose_pattern_matches() -> None:
    # Given the ActiveMQ example subscriptions in one index
    index: TopicIndex[str] = TopicIndex()
    for pattern in ["PRICE.>", "PRICE.STOCK.>", "PRICE.STOCK.NASDAQ.*", "PRICE.STOCK.*.IBM"]:
        index.add(pattern, pattern)
    index.add("PRICE.STOCK.NYSE.IBM", "exact")
    # When destinations are looked up
    # Then each gets exactly the subscriptions the documentation describes
    assert index.match("PRICE.STOCK.NYSE.IBM") == {
        "PRICE.>",
        "PRICE.STOCK.>",
        "PRICE.STOCK.*.IBM",
        "exact",
    }
    assert index.match("PRICE.STOCK.NASDAQ.ORCL") == {
        "PRICE.>",
        "PRICE.STOCK.>",
        "PRICE.STOCK.NASDAQ.*",
    }
    assert index.match("PRICE.BOND.NYSE.T10") == {"PRICE.>"}
    assert index.match("PRICE.STOCK") == {"PRICE.>", "PRICE.STOCK.>"}
    assert index.match("BOND") == set()


def test_a_value_under_several_matching_patterns_is_returned_once() -> None:
    # Given one subscriber registered under two patterns, and twice under one of them
    index: TopicIndex[str] = TopicIndex()
    index.add("a.>", "sub")
    index.add("a.*", "sub")
    index.add("a.*", "sub")
    # When a topic both patterns match is looked up
    # Then the subscriber appears once, and the index holds two pairs
    assert index.match("a.b") == {"sub"}
    assert len(index) == 2


def test_a_removed_subscription_is_no_longer_matched_but_its_neighbours_are() -> None:
    # Given subscriptions sharing a path in the index
    index: TopicIndex[str] = TopicIndex()
    index.add("a.b.c", "deep")
    index.add("a.b", "shallow")
    index.add("a.>", "tail")
    # When the deepest is removed
    removed = index.remove("a.b.c", "deep")
    # Then it is gone, and the others still match
    assert removed is True
    assert index.match("a.b.c") == {"tail"}
    assert index.match("a.b") == {"shallow", "tail"}
    assert len(index) == 2


def test_removing_what_is_not_there_changes_nothing() -> None:
    # Given an index with one subscription
    index: TopicIndex[str] = TopicIndex()
    index.add("a.*", "x")
    # When absent pairs are removed (unknown path, wrong value, '>' instead of '*')
    results = [index.remove("b.c", "x"), index.remove("a.*", "y"), index.remove("a.>", "x")]
    # Then each reports False and the subscription still matches
    assert results == [False, False, False]
    assert index.match("a.z") == {"x"}
    assert len(index) == 1


def test_an_index_emptied_by_removals_matches_nothing() -> None:
    # Given patterns added and then all removed
    index: TopicIndex[int] = TopicIndex()
    patterns = [">", "a.>", "a.*.c", "a.b.c", "*"]
    for number, pattern in enumerate(patterns):
        index.add(pattern, number)
    for number, pattern in enumerate(patterns):
        index.remove(pattern, number)
    # When topics are looked up
    # Then nothing matches and the index is empty
    assert index.match("a.b.c") == set()
    assert index.match("a") == set()
    assert len(index) == 0


def test_the_index_refuses_invalid_patterns_and_names() -> None:
    # Given an index
    index: TopicIndex[str] = TopicIndex()
    # When an invalid pattern is added, or an invalid name (a pattern) looked up
    # Then each is an InvalidRequest
    with pytest.raises(InvalidRequest):
        index.add("a.>.b", "x")
    with pytest.raises(InvalidRequest):
        index.match("a.*")
    with pytest.raises(InvalidRequest):
        index.remove("", "x")


@settings(max_examples=100)
@given(
    patterns=st.lists(PATTERNS, max_size=25),
    removed=st.sets(st.integers(min_value=0, max_value=24)),
    topics=st.lists(TOPICS, min_size=1, max_size=8),
)
def test_the_index_agrees_with_matching_each_pattern_in_turn(
    patterns: list[str], removed: set[int], topics: list[str]
) -> None:
    # Given many random patterns in an index, some of them removed again
    index: TopicIndex[int] = TopicIndex()
    for number, pattern in enumerate(patterns):
        index.add(pattern, number)
    for number in removed & set(range(len(patterns))):
        assert index.remove(patterns[number], number)
    kept = [(n, p) for n, p in enumerate(patterns) if n not in removed]
    # When random topics are looked up
    for topic in topics:
        # Then the index finds exactly the kept patterns that match one by one
        assert index.match(topic) == {n for n, p in kept if topic_matches(p, topic)}
    assert len(index) == len(kept)


# ---- filter policies: SNS documentation examples -------------------------------------------


def _passes(policy: dict[str, Any], **attributes: str) -> bool:
    return FilterPolicy.parse(policy).matches(attributes)


def test_exact_matching_accepts_any_listed_value() -> None:
    # Given the SNS exact-matching example
    policy = {"customer_interests": ["rugby", "tennis"]}
    # When messages carry listed and unlisted values
    # Then listed values pass, others do not, and the comparison is case-sensitive
    assert _passes(policy, customer_interests="rugby")
    assert _passes(policy, customer_interests="tennis")
    assert not _passes(policy, customer_interests="baseball")
    assert not _passes(policy, customer_interests="Rugby")


def test_prefix_matching_accepts_values_that_begin_with_the_prefix() -> None:
    # Given the SNS prefix example
    policy = {"customer_interests": [{"prefix": "bas"}]}
    # When values with and without the prefix arrive
    # Then only those starting with it pass
    assert _passes(policy, customer_interests="baseball")
    assert _passes(policy, customer_interests="basketball")
    assert not _passes(policy, customer_interests="rugby")


def test_suffix_matching_accepts_values_that_end_with_the_suffix() -> None:
    # Given a suffix condition
    policy = {"customer_interests": [{"suffix": "ball"}]}
    # When values with and without the suffix arrive
    # Then only those ending with it pass
    assert _passes(policy, customer_interests="baseball")
    assert _passes(policy, customer_interests="basketball")
    assert not _passes(policy, customer_interests="rugby")


def test_equals_ignore_case_matches_regardless_of_case() -> None:
    # Given an equals-ignore-case condition
    policy = {"customer_interests": [{"equals-ignore-case": "tennis"}]}
    # When the value arrives in several cases, and a different value arrives
    # Then every casing of the same word passes, nothing else does
    assert _passes(policy, customer_interests="TENNIS")
    assert _passes(policy, customer_interests="Tennis")
    assert _passes(policy, customer_interests="tennis")
    assert not _passes(policy, customer_interests="table tennis")


def test_anything_but_a_list_rejects_only_the_listed_values() -> None:
    # Given the SNS anything-but example
    policy = {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}
    # When listed and unlisted values arrive, and a message lacks the attribute
    # Then unlisted values pass; listed ones and a missing attribute do not
    assert _passes(policy, customer_interests="baseball")
    assert _passes(policy, customer_interests="football")
    assert not _passes(policy, customer_interests="rugby")
    assert not _passes(policy, other="x")


def test_anything_but_a_single_value_rejects_that_value() -> None:
    # Given anything-but with one string
    policy = {"size": [{"anything-but": "small"}]}
    # When that value and another arrive
    # Then only the other passes
    assert _passes(policy, size="large")
    assert not _passes(policy, size="small")


def test_anything_but_a_prefix_rejects_values_with_that_prefix() -> None:
    # Given the SNS anything-but prefix example
    policy = {"event": [{"anything-but": {"prefix": "order-"}}]}
    # When values with and without the prefix arrive
    # Then only those without it pass
    assert _passes(policy, event="data-entry")
    assert _passes(policy, event="order_number")
    assert not _passes(policy, event="order-cancelled")


def test_anything_but_numbers_compares_numerically() -> None:
    # Given the SNS numeric anything-but example
    policy = {"price": [{"anything-but": [100, 500]}]}
    # When numbers equal and unequal to the listed ones arrive, in several spellings
    # Then equal numbers are rejected however they are written
    assert _passes(policy, price="101")
    assert _passes(policy, price="100.1")
    assert not _passes(policy, price="100")
    assert not _passes(policy, price="1e2")
    assert not _passes(policy, price="500.0")


def test_numeric_equality_matches_the_same_number_in_any_notation() -> None:
    # Given the SNS numeric exact-matching example
    policy = {"price_usd": [{"numeric": ["=", 301.5]}]}
    # When the same number arrives as decimal and exponent, and other values arrive
    # Then both notations pass, a different number or a non-number does not
    assert _passes(policy, price_usd="301.5")
    assert _passes(policy, price_usd="3.015e2")
    assert not _passes(policy, price_usd="301.50001")
    assert not _passes(policy, price_usd="cheap")


def test_a_numeric_range_matches_inside_its_bounds() -> None:
    # Given the SNS range examples
    negative = {"price_usd": [{"numeric": ["<", 0]}]}
    up_to_150 = {"price_usd": [{"numeric": [">", 0, "<=", 150]}]}
    # When values around the bounds arrive
    # Then exclusive bounds exclude, inclusive bounds include
    assert _passes(negative, price_usd="-0.5")
    assert not _passes(negative, price_usd="0")
    assert _passes(up_to_150, price_usd="150")
    assert _passes(up_to_150, price_usd="0.001")
    assert not _passes(up_to_150, price_usd="0")
    assert not _passes(up_to_150, price_usd="150.5")


@pytest.mark.parametrize(
    ("operator", "inside", "edge_included"),
    [(">=", "5", True), (">", "6", False), ("<=", "5", True), ("<", "4", False), ("=", "5", True)],
)
def test_each_numeric_operator_treats_its_bound_as_documented(
    operator: str, inside: str, edge_included: bool
) -> None:
    # Given a one-sided numeric condition at 5
    policy = {"n": [{"numeric": [operator, 5]}]}
    # When a value inside and the bound itself arrive
    # Then the inside value passes, and the bound passes only for = >= <=
    assert _passes(policy, n=inside)
    assert _passes(policy, n="5") is edge_included


def test_a_number_in_the_value_list_matches_numerically() -> None:
    # Given a plain number among the accepted values
    policy = {"price": [100]}
    # When the number arrives in several spellings, and as non-numbers
    # Then equal numbers pass and text does not
    assert _passes(policy, price="100")
    assert _passes(policy, price="1e2")
    assert _passes(policy, price="100.0")
    assert not _passes(policy, price="100 dollars")


@pytest.mark.parametrize("text", ["0x10", "1_000", "nan", "NaN", "inf", " 5", "+5", "05", "", "."])
def test_only_json_numbers_take_part_in_numeric_matching(text: str) -> None:
    # Given a numeric condition that every number satisfies
    policy = {"n": [{"numeric": [">", -1000000000]}]}
    # When the attribute is something Python would parse but JSON would not
    # Then it does not count as a number
    assert not _passes(policy, n=text)


def test_exists_true_needs_the_attribute_with_a_value() -> None:
    # Given the SNS key-matching example
    policy = {"store": [{"exists": True}]}
    # When messages with and without the key arrive
    # Then only those carrying a non-empty value pass
    assert _passes(policy, store="fans", customer_interests="baseball")
    assert not _passes(policy, customer_interests="baseball")
    assert not _passes(policy, store="")


def test_exists_false_needs_the_attribute_absent() -> None:
    # Given the SNS key-matching example with false
    policy = {"store": [{"exists": False}]}
    # When messages with and without the key arrive
    # Then only those without it pass
    assert _passes(policy, customer_interests="baseball")
    assert not _passes(policy, store="fans", customer_interests="baseball")


def test_a_message_without_attributes_matches_no_non_empty_policy() -> None:
    # Given SNS's note: "exists": false only matches if at least one attribute is present
    policy = FilterPolicy.parse({"store": [{"exists": False}]})
    # When a message has no attributes at all
    # Then the policy does not pass it
    assert not policy.matches({})


def test_an_empty_policy_passes_every_message() -> None:
    # Given a policy with no keys
    policy = FilterPolicy.parse({})
    # When messages with and without attributes arrive
    # Then all pass
    assert policy.matches({})
    assert policy.matches({"anything": "at all"})


def test_keys_are_anded_and_attributes_outside_the_policy_are_ignored() -> None:
    # Given the SNS AND example
    policy = {"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}
    # When messages satisfy both keys, one key, or carry extra attributes
    # Then only messages satisfying every key pass
    assert _passes(policy, customer_interests="rugby", price_usd="200", extra="ignored")
    assert not _passes(policy, customer_interests="rugby", price_usd="50")
    assert not _passes(policy, customer_interests="football", price_usd="200")
    assert not _passes(policy, customer_interests="rugby")


def test_conditions_in_one_key_are_ored() -> None:
    # Given several kinds of condition on one key
    policy = {"color": ["red", {"prefix": "bl"}, {"exists": False}]}
    # When values meeting each condition, and none, arrive
    # Then any single condition suffices
    assert _passes(policy, color="red")
    assert _passes(policy, color="blue")
    assert _passes(policy, size="small")
    assert not _passes(policy, color="green")


def test_or_operator_accepts_either_set_of_keys() -> None:
    # Given the SNS "$or" example
    policy = {
        "source": ["aws.cloudwatch"],
        "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
    }
    # When messages satisfy the shared key and one alternative, or not
    # Then the shared key is required and either alternative suffices
    assert _passes(policy, source="aws.cloudwatch", metricName="CPUUtilization")
    assert _passes(policy, source="aws.cloudwatch", namespace="AWS/EC2")
    assert not _passes(policy, source="aws.cloudwatch", namespace="AWS/RDS")
    assert not _passes(policy, metricName="CPUUtilization")


def test_nested_or_counts_combinations_as_sns_documents() -> None:
    # Given the SNS constraints example: (1*2) + (1*1*2) + (1*1*3) = 7 combinations
    policy = {
        "source": ["aws.cloudwatch"],
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {
                "metricType": ["MetricType"],
                "$or": [{"metricId": [1234, 4321]}, {"spaceId": [1000, 2000, 3000]}],
            },
        ],
    }
    # When it is parsed and applied
    parsed = FilterPolicy.parse(policy)
    # Then it is accepted and each branch works
    assert parsed.matches({"source": "aws.cloudwatch", "metricName": "ReadLatency"})
    assert parsed.matches(
        {"source": "aws.cloudwatch", "metricType": "MetricType", "spaceId": "2000"}
    )
    assert not parsed.matches({"source": "aws.cloudwatch", "metricId": "1234"})


# ---- filter policies: validation -----------------------------------------------------------


def _rejection(policy: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        FilterPolicy.parse(policy)
    assert caught.value.code == "invalid_request"
    return caught.value.message


def test_an_unknown_operator_is_named_and_the_known_ones_listed() -> None:
    # Given a policy with an operator SNS does not have
    # When it is parsed
    message = _rejection({"color": [{"wildcard": "bl*"}]})
    # Then the error names it and lists what is supported
    assert '"wildcard"' in message
    assert "anything-but, equals-ignore-case, exists, numeric, prefix, suffix" in message
    assert "'color'" in message


@pytest.mark.parametrize(
    ("numeric", "problem"),
    [
        (["<>", 1], "unknown comparison"),
        ([">", "1"], "is not a number"),
        ([">", 10, "<", 5], "lower bound must be less than its upper bound"),
        ([">", 5, "<", 5], "lower bound must be less than its upper bound"),
        (["=", 1, "<", 5], "a range is"),
        (["<", 1, ">", 0], "a range is"),
        ([">", 0, ">", 5], "a range is"),
        ([">"], "use [op, n]"),
        ([], "use [op, n]"),
        ([">", 0, "<"], "use [op, n]"),
        ("> 5", "use [op, n]"),
        ([">", 1_000_000_001], "between -1000000000 and 1000000000"),
        ([">", True], "is not a number"),
    ],
)
def test_a_bad_numeric_condition_is_explained(numeric: Any, problem: str) -> None:
    # Given a malformed numeric condition
    # When the policy is parsed
    message = _rejection({"price": [{"numeric": numeric}]})
    # Then the error says what is wrong with it
    assert problem in message


def test_five_keys_are_allowed_and_a_sixth_is_not() -> None:
    # Given policies with five and six attribute names
    five = {f"k{i}": ["v"] for i in range(5)}
    six = {f"k{i}": ["v"] for i in range(6)}
    # When they are parsed
    FilterPolicy.parse(five)
    message = _rejection(six)
    # Then only the larger one is refused, with the limit named
    assert "more than 5 attribute names" in message


def test_keys_inside_or_alternatives_count_toward_the_limit() -> None:
    # Given six distinct names spread over the policy and its $or alternatives
    policy = {
        "a": ["1"],
        "b": ["1"],
        "$or": [{"c": ["1"], "d": ["1"]}, {"e": ["1"], "f": ["1"]}],
    }
    # When it is parsed
    # Then it is refused for having too many names
    assert "more than 5 attribute names" in _rejection(policy)


def test_150_combinations_are_allowed_and_151_are_not() -> None:
    # Given policies whose value combinations (product across keys, sum across $or) are 150 or more
    at_limit = {"a": [str(i) for i in range(10)], "b": [str(i) for i in range(15)]}
    over_by_product = {"a": [str(i) for i in range(10)], "b": [str(i) for i in range(16)]}
    over_by_sum = {"$or": [{"a": [str(i) for i in range(100)]}, {"b": [str(i) for i in range(51)]}]}
    # When they are parsed
    FilterPolicy.parse(at_limit)
    # Then only those over 150 are refused
    assert "more than 150 combinations" in _rejection(over_by_product)
    assert "more than 150 combinations" in _rejection(over_by_sum)


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ({"a": "rugby"}, "must be a list"),
        ({"a": []}, "the list is empty"),
        ({"a": [["nested"]]}, "a value is a string, a number, or an operator object"),
        ({"a": [True]}, "cannot match a string attribute"),
        ({"a": [None]}, "cannot match a string attribute"),
        ({"a": [{"prefix": "x", "suffix": "y"}]}, "exactly one operator"),
        ({"a": [{}]}, "exactly one operator"),
        ({"a": [{"prefix": 5}]}, "prefix must be a string"),
        ({"a": [{"suffix": None}]}, "suffix must be a string"),
        ({"a": [{"equals-ignore-case": ["x"]}]}, "equals-ignore-case must be a string"),
        ({"a": [{"exists": "true"}]}, "exists must be true or false"),
        ({"a": [{"anything-but": {"suffix": "x"}}]}, 'the only nested form is {"prefix"'),
        ({"a": [{"anything-but": {"prefix": 1}}]}, "prefix must be a string"),
        ({"a": [{"anything-but": []}]}, "the list is empty"),
        ({"a": [{"anything-but": ["x", 1]}]}, "only strings or only numbers"),
        ({"a": [{"anything-but": None}]}, "use a string, a number"),
        ({"$or": [{"a": ["x"]}]}, "at least two policy objects"),
        ({"$or": {"a": ["x"]}}, "at least two policy objects"),
        ({"$or": [{"a": ["x"]}, {}]}, "needs at least one attribute"),
        ({"$or": [{"a": ["x"]}, "b"]}, "a policy is a JSON object"),
        ({"": ["x"]}, "non-empty strings"),
        ({"a": [float("nan")]}, "finite"),
        ("[1, 2]", "a policy is a JSON object"),
        ("42", "a policy is a JSON object"),
        ('{"a": ["x"]', "not valid JSON"),
        ('{"a": [NaN]}', "not valid JSON"),
        ([1, 2], "a policy is a JSON object"),
    ],
)
def test_a_malformed_policy_is_an_invalid_request_that_says_why(policy: Any, problem: str) -> None:
    # Given a policy that breaks one of the rules
    # When it is parsed
    # Then the error explains that rule
    assert problem in _rejection(policy)


def test_deeply_nested_or_is_refused_without_exhausting_the_stack() -> None:
    # Given $or nested far deeper than any real policy
    policy: dict[str, Any] = {"a": ["x"]}
    for _ in range(300):
        policy = {"$or": [policy, {"b": ["y"]}]}
    # When it is parsed, as an object and as text
    # Then it is refused as an invalid request
    assert "nested more than 10 deep" in _rejection(policy)
    assert "nested more than 10 deep" in _rejection(json.dumps(policy))


def test_absurdly_deep_json_text_is_refused_as_invalid() -> None:
    # Given JSON text nested too deeply for the decoder
    text = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    # When it is parsed
    # Then the caller gets an InvalidRequest, not a RecursionError
    _rejection(text)


def test_a_policy_over_256_kb_of_text_is_refused() -> None:
    # Given policy text larger than SNS's maximum size
    text = json.dumps({"a": ["x" * (256 * 1024)]})
    # When it is parsed
    # Then it is refused for its size
    assert "larger than 256 KB" in _rejection(text)


# ---- filter policies: properties -----------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "a",
            "b",
            "$or",
            "prefix",
            "suffix",
            "anything-but",
            "equals-ignore-case",
            "numeric",
            "exists",
        ]
    ),
    st.text(max_size=6),
)
JSON_VALUES = st.recursive(
    st.one_of(JSON_SCALARS, st.sampled_from(["=", "<", "<=", ">", ">="])),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


def _outcome(policy: Any) -> FilterPolicy | None:
    try:
        return FilterPolicy.parse(policy)
    except InvalidRequest:
        return None


@settings(max_examples=100)
@given(policy=st.dictionaries(KEYS, JSON_VALUES, max_size=6))
def test_parsing_any_json_object_either_succeeds_or_is_an_invalid_request(
    policy: dict[str, Any],
) -> None:
    # Given any JSON object built from policy-like keys and values
    # When it is parsed as an object and as text
    as_object = _outcome(policy)
    as_text = _outcome(json.dumps(policy))
    # Then both ways agree, and nothing but InvalidRequest escapes (pytest would fail otherwise)
    assert as_object == as_text


@given(value=JSON_VALUES)
def test_parsing_any_json_text_either_succeeds_or_is_an_invalid_request(value: Any) -> None:
    # Given any JSON document at all, as text
    # When it is parsed
    # Then it yields a policy or an InvalidRequest, never another exception
    _outcome(json.dumps(value))


VALID_CONDITIONS = st.one_of(
    st.text(max_size=5),
    st.integers(min_value=-1000, max_value=1000),
    st.builds(lambda t: {"prefix": t}, st.text(max_size=3)),
    st.builds(lambda t: {"suffix": t}, st.text(max_size=3)),
    st.builds(lambda t: {"equals-ignore-case": t}, st.text(max_size=3)),
    st.builds(lambda t: {"anything-but": t}, st.lists(st.text(max_size=3), min_size=1)),
    st.builds(lambda t: {"anything-but": {"prefix": t}}, st.text(max_size=3)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(
        lambda op, n: {"numeric": [op, n]},
        st.sampled_from(["=", "<", ">="]),
        st.integers(-1000, 1000),
    ),
)
ATTRIBUTE_NAMES = st.sampled_from(["a", "b", "c"])
VALID_POLICIES = st.dictionaries(
    ATTRIBUTE_NAMES, st.lists(VALID_CONDITIONS, min_size=1, max_size=3), max_size=3
)
ATTRIBUTES = st.dictionaries(
    ATTRIBUTE_NAMES,
    st.one_of(st.text(max_size=5), st.integers(-1000, 1000).map(str)),
    max_size=3,
)


@given(policy=VALID_POLICIES, attributes=ATTRIBUTES)
def test_a_parsed_policy_round_trips_through_its_json(
    policy: dict[str, Any], attributes: dict[str, str]
) -> None:
    # Given a valid policy
    parsed = FilterPolicy.parse(policy)
    # When it is written out with to_json and parsed again
    again = FilterPolicy.parse(json.loads(json.dumps(parsed.to_json())))
    # Then the result is equal and decides every message the same way
    assert again == parsed
    assert again.matches(attributes) == parsed.matches(attributes)


@given(policy=VALID_POLICIES, attributes=ATTRIBUTES)
def test_key_conditions_are_anded_and_list_entries_are_ored(
    policy: dict[str, Any], attributes: dict[str, str]
) -> None:
    # Given a valid policy without $or, and any attributes
    # When the whole policy is applied
    whole = FilterPolicy.parse(policy).matches(attributes)
    # Then it passes exactly when, per key, some single-entry policy passes
    per_key = all(
        any(FilterPolicy.parse({key: [entry]}).matches(attributes) for entry in entries)
        for key, entries in policy.items()
    )
    assert whole == (per_key if policy and attributes else not policy)


def test_to_json_gives_a_copy_the_caller_cannot_use_to_change_the_policy() -> None:
    # Given a parsed policy
    parsed = FilterPolicy.parse({"a": ["x"]})
    # When the caller edits what to_json returned
    exported = parsed.to_json()
    exported["a"].append("y")
    # Then the policy is unchanged
    assert not parsed.matches({"a": "y"})
    assert parsed.to_json() == {"a": ["x"]}
