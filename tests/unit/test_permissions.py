"""Per-destination grants: patterns with topic wildcards, actions, clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.domain import names
from mqless.domain.access.principals import (
    ACCESS_CONTROL,
    EVERY_DESTINATION,
    Action,
    GrantPolicy,
    Principal,
    grant_covers,
    parse_grants,
    pattern_covers,
)
from mqless.domain.errors import Forbidden, InvalidRequest
from mqless.domain.topics.patterns import topic_matches

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
    """Given the orders team: send and receive on orders.>, admin on orders.*.admin, send on audit
    When it asks to do an action on a destination
    Then it is allowed exactly where a grant names both, and otherwise refused with a Forbidden that
    names the principal and the action
    """
    policy = GrantPolicy()
    if allowed:
        policy.check(ORDERS_TEAM, action, destination)
    else:
        with pytest.raises(Forbidden) as refused:
            policy.check(ORDERS_TEAM, action, destination)
        assert "orders-team" in refused.value.message
        assert action.value in refused.value.message


def test_a_principal_without_grants_may_do_nothing() -> None:
    """Given a principal with no grants
    When it asks to receive from a destination
    Then it is refused with Forbidden
    """
    with pytest.raises(Forbidden):
        GrantPolicy().check(Principal(id="nobody", kind="api_key"), Action.RECEIVE, "x")


def test_only_an_admin_of_everything_manages_access_or_lists_every_subscription() -> None:
    """Given a principal with admin on ">" and one with admin on "*"
    When each asks to manage access control or act on every destination
    Then only the ">" admin may; and the orders team may send to orders.a and audit but not x
    """
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
    """Given a principal with receive on one pattern
    When it subscribes with a pattern
    Then it may exactly when its grant matches every name the subscription can match
    """
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
    """Given a grant with an empty segment, ">" not last, a wildcard inside a segment, no actions,
    an unknown action, an empty pattern or an extra field
    When it is parsed
    Then it is refused with InvalidRequest
    """
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
    """Given any grant pattern and destination name hypothesis builds
    When the grant is matched against the name
    Then it matches exactly when a topic subscription with that pattern would
    """
    assert pattern_covers(pattern, name) == topic_matches(pattern, name)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_matching_never_raises(pattern: str, destination: str) -> None:
    """Given any two texts, valid or not
    When one is matched as a grant pattern against the other
    Then matching gives True or False and raises nothing
    """
    assert pattern_covers(pattern, destination) in (True, False)


@settings(max_examples=300)
@given(_patterns, _patterns, _names)
def test_a_covered_subscription_matches_only_what_the_grant_matches(
    grant: str, subscription: str, name: str
) -> None:
    """Given a grant, a subscription pattern and a name
    When the grant covers the subscription and the subscription matches the name
    Then the grant matches the name too
    """
    if pattern_covers(grant, subscription) and topic_matches(subscription, name):
        assert topic_matches(grant, name)


# ---- dead letters belong to whoever may act on their queue ---------------------------------

LOW = Principal(id="low", grants=parse_grants([{"pattern": "orders.*", "actions": ["send"]}]))
RX = Principal(
    id="rx", grants=parse_grants([{"pattern": "orders.*", "actions": ["send", "receive"]}])
)
OPX = Principal(id="opx", grants=parse_grants([{"pattern": "orders.*", "actions": ["admin"]}]))


@pytest.mark.parametrize(
    ("principal", "action"),
    [
        (LOW, Action.SEND),
        (LOW, Action.CREATE),
        (RX, Action.RECEIVE),
        (RX, Action.SEND),
        (OPX, Action.ADMIN),
        (OPX, Action.CREATE),
    ],
    ids=lambda v: v.id if isinstance(v, Principal) else v.value,
)
def test_a_sibling_wildcard_grant_does_not_reach_the_dead_letters_of_the_queue_above_it(
    principal: Principal, action: Action
) -> None:
    # Given a grant on `orders.*`, and nothing on `orders` itself
    policy = GrantPolicy()
    # When it is asked about orders' dead-letter queue
    with pytest.raises(Forbidden) as refused:
        policy.check(principal, action, "orders.dlq")
    # Then it is refused, saying who may not do what where, while the dead letters of a
    # queue it does cover (orders.eu) are its own
    assert refused.value.message == f"{principal.id!r} may not {action.value} 'orders.dlq'"
    assert policy.permits(principal, action, "orders.eu.dlq") is policy.permits(
        principal, action, "orders.eu"
    )


@pytest.mark.parametrize(
    ("pattern", "destination", "covered"),
    [
        # through the source queue
        ("orders", "orders.dlq", True),
        ("orders.fifo", "orders.dlq.fifo", True),
        ("orders.>", "orders.dlq", True),
        (">", "orders.dlq.fifo", True),
        ("*", "orders.dlq", True),
        ("*.fifo", "orders.dlq.fifo", True),
        ("orders.*", "orders.eu.dlq", True),
        # granted on purpose: the `dlq` segment named
        ("orders.dlq", "orders.dlq", True),
        ("*.dlq", "orders.dlq", True),
        ("*.dlq.fifo", "orders.dlq.fifo", True),
        ("orders.*.dlq", "orders.eu.dlq", True),
        # a wildcard alone never reaches a `dlq` segment
        ("orders.*", "orders.dlq", False),
        ("orders.*.fifo", "orders.dlq.fifo", False),
        ("*.*", "orders.dlq", False),
        ("orders.eu", "orders.dlq", False),
        # a `dlq` grant is about dead letters only, not their source
        ("*.dlq", "orders", False),
        # names that only look like dead letters are ordinary names
        ("*.*.x", "orders.dlq.x", True),
        ("x.*.*", "x.fifo.dlq", True),
        # subscription patterns are matched as patterns
        ("orders.*", "orders.*", True),
    ],
)
def test_a_dead_letter_name_is_reached_through_its_source_or_by_naming_dlq(
    pattern: str, destination: str, covered: bool
) -> None:
    """Given a grant pattern and a destination (dead-letter queues, names that only look like them,
    and subscription patterns)
    When the grant is checked against the destination
    Then dead letters are reached through their source queue or a pattern naming the dlq segment,
    never by a wildcard alone, and other names match as patterns do
    """
    assert grant_covers(pattern, destination) is covered


def test_an_admin_of_a_queue_administers_its_dead_letters() -> None:
    # Given an admin of orders (and nothing else)
    owner = Principal(id="o", grants=parse_grants([{"pattern": "orders", "actions": ["admin"]}]))
    # When it asks to administer dead-letter queues
    # Then it may administer orders.dlq, but no other queue's dead letters
    assert GrantPolicy().permits(owner, Action.ADMIN, "orders.dlq")
    assert not GrantPolicy().permits(owner, Action.ADMIN, "payroll.dlq")


_dlq_names = st.one_of(
    _names.map(lambda n: n + ".dlq"),
    _names.map(lambda n: n + ".dlq.fifo"),
    _names.map(lambda n: n + ".dlq.dlq"),
)
_dlq_patterns = st.one_of(
    _patterns,
    st.lists(st.one_of(_segment, st.just("*"), st.just("dlq"), st.just("fifo")), max_size=4)
    .flatmap(lambda head: st.sampled_from([head, [*head, ">"]] if head else [[">"]]))
    .map(".".join),
)


@settings(max_examples=500, deadline=None)
@given(_dlq_patterns, _names)
def test_names_that_are_not_dead_letters_are_covered_as_before(pattern: str, name: str) -> None:
    """Given any pattern and a name that is not a dead-letter queue's
    When the grant is checked against it
    Then it is covered exactly when the pattern matches it
    """
    if names.dead_letter_source(name) is None:
        assert grant_covers(pattern, name) == pattern_covers(pattern, name)


@settings(max_examples=1000, deadline=None)
@given(_dlq_patterns, _dlq_names)
def test_a_grant_reaches_dead_letters_exactly_through_their_source_or_a_literal_dlq(
    pattern: str, dead_letters: str
) -> None:
    """Given any pattern and any dead-letter queue name
    When the grant is checked against the dead letters and against their source
    Then what reaches the source reaches its dead letters, anything else that reaches them matches
    them and names dlq, and without a dlq segment only the source leads there
    """
    source = names.dead_letter_source(dead_letters)
    assert source is not None
    literal = "dlq" in pattern.split(".")
    # what reaches the source reaches its dead letters
    if grant_covers(pattern, source):
        assert grant_covers(pattern, dead_letters)
    # anything else that reaches them matches them and names `dlq`
    if grant_covers(pattern, dead_letters) and not grant_covers(pattern, source):
        assert literal and pattern_covers(pattern, dead_letters)
    # wildcards alone never do: without a `dlq` segment only the source leads there
    if not literal:
        assert grant_covers(pattern, dead_letters) == grant_covers(pattern, source)


# ---- creating: its own right, implied by admin --------------------------------------------


@pytest.mark.parametrize(
    ("actions", "may_create"),
    [(["create"], True), (["admin"], True), (["send", "receive"], False)],
)
def test_creating_needs_the_create_right_or_admin(actions: list[str], may_create: bool) -> None:
    """Given a principal with create, admin, or send and receive on jobs.*
    When it asks to create jobs.a, and to create a queue outside its pattern
    Then it may create jobs.a only with create or admin, and never outside its pattern
    """
    principal = Principal(id="p", grants=parse_grants([{"pattern": "jobs.*", "actions": actions}]))
    assert GrantPolicy().permits(principal, Action.CREATE, "jobs.a") is may_create
    assert not GrantPolicy().permits(principal, Action.CREATE, "other")


def test_the_create_right_allows_nothing_else() -> None:
    """Given a principal with create on ">"
    When it asks to send, receive or administer
    Then it may not
    """
    creator = Principal(id="c", grants=parse_grants([{"pattern": ">", "actions": ["create"]}]))
    for action in (Action.SEND, Action.RECEIVE, Action.ADMIN):
        assert not GrantPolicy().permits(creator, action, "jobs")
