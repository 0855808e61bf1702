"""Per-destination grants: patterns with topic wildcards, actions, clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.errors import Forbidden, InvalidRequest
from mqless.principals import (
    ACCESS_CONTROL,
    EVERY_DESTINATION,
    Action,
    GrantPolicy,
    Principal,
    parse_grants,
    pattern_covers,
)
from mqless.topics import topic_matches

ORDERS_TEAM = Principal(
    id="orders-team",
    kind="api_key",
    grants=parse_grants(
        [
            {"pattern": "orders.>", "actions": ["send", "receive"]},
            {"pattern": "orders.*.admin", "actions": ["admin"]},
            {"pattern": "audit", "actions": ["send"]},
        ]
    ),
)


@pytest.mark.parametrize(
    ("action", "destination", "allowed"),
    [
        (Action.SEND, "orders", True),  # `>` also matches zero further segments
        (Action.SEND, "orders.eu", True),
        (Action.RECEIVE, "orders.eu.dlq", True),
        (Action.ADMIN, "orders.eu", False),
        (Action.ADMIN, "orders.eu.admin", True),
        (Action.SEND, "audit", True),
        (Action.RECEIVE, "audit", False),
        (Action.SEND, "audit.x", False),
        (Action.SEND, "payments", False),
        (Action.ADMIN, "*", False),  # listing every destination needs a `>` admin grant
    ],
)
def test_grants_allow_exactly_their_actions_on_their_destinations(
    action: Action, destination: str, allowed: bool
) -> None:
    policy = GrantPolicy()
    if allowed:
        policy.check(ORDERS_TEAM, action, destination)
    else:
        with pytest.raises(Forbidden) as refused:
            policy.check(ORDERS_TEAM, action, destination)
        assert "orders-team" in refused.value.message
        assert action.value in refused.value.message


def test_a_principal_without_grants_may_do_nothing() -> None:
    with pytest.raises(Forbidden):
        GrantPolicy().check(Principal(id="nobody", kind="api_key"), Action.RECEIVE, "x")


def test_only_an_admin_of_everything_manages_access_or_lists_every_subscription() -> None:
    root = Principal(id="root", grants=parse_grants([{"pattern": ">", "actions": ["admin"]}]))
    star = Principal(id="star", grants=parse_grants([{"pattern": "*", "actions": ["admin"]}]))
    GrantPolicy().check(root, Action.ADMIN, ACCESS_CONTROL)
    GrantPolicy().check(root, Action.ADMIN, EVERY_DESTINATION)
    for destination in (ACCESS_CONTROL, EVERY_DESTINATION):
        with pytest.raises(Forbidden):
            GrantPolicy().check(star, Action.ADMIN, destination)
    assert [
        n for n in ["orders.a", "audit", "x"] if GrantPolicy().permits(ORDERS_TEAM, Action.SEND, n)
    ] == ["orders.a", "audit"]


@pytest.mark.parametrize(
    ("grant", "subscription", "covered"),
    [
        ("orders.>", "orders.>", True),
        ("orders.>", "orders.*.eu", True),
        ("orders.*", "orders.*", True),
        ("orders.*", "orders.>", False),
        ("orders.eu", "orders.*", False),
        ("*.eu", "orders.*", False),
        (">", "a.>", True),
        ("a.*.c", "a.*.c", True),
        ("a.*.c", "a.b.*", False),
    ],
)
def test_a_subscription_pattern_needs_a_grant_covering_all_it_matches(
    grant: str, subscription: str, covered: bool
) -> None:
    principal = Principal(id="p", grants=parse_grants([{"pattern": grant, "actions": ["receive"]}]))
    assert GrantPolicy().permits(principal, Action.RECEIVE, subscription) is covered


@pytest.mark.parametrize(
    "grant",
    [
        {"pattern": "a..b", "actions": ["send"]},
        {"pattern": "a.>.b", "actions": ["send"]},
        {"pattern": "a*", "actions": ["send"]},
        {"pattern": "a", "actions": []},
        {"pattern": "a", "actions": ["fly"]},
        {"pattern": "", "actions": ["send"]},
        {"pattern": "a", "actions": ["send"], "extra": 1},
    ],
)
def test_malformed_grants_are_refused(grant: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        parse_grants([grant])


_segment = st.sampled_from(["a", "b", "c1", "x_y"])
_names = st.lists(_segment, min_size=1, max_size=4).map(".".join)
_patterns = (
    st.lists(st.one_of(_segment, st.just("*")), min_size=0, max_size=3)
    .flatmap(lambda head: st.sampled_from([head, [*head, ">"]] if head else [[">"]]))
    .map(".".join)
)


@settings(max_examples=500, deadline=None)
@given(_patterns, _names)
def test_grant_patterns_match_as_topic_subscriptions_do(pattern: str, name: str) -> None:
    assert pattern_covers(pattern, name) == topic_matches(pattern, name)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_matching_never_raises(pattern: str, destination: str) -> None:
    assert pattern_covers(pattern, destination) in (True, False)


@settings(max_examples=300)
@given(_patterns, _patterns, _names)
def test_a_covered_subscription_matches_only_what_the_grant_matches(
    grant: str, subscription: str, name: str
) -> None:
    if pattern_covers(grant, subscription) and topic_matches(subscription, name):
        assert topic_matches(grant, name)
