"""How the local gateways read authorizer answers, identity sources and cache them."""

from __future__ import annotations

from typing import Any

import pytest

from mqless_cli.cfn import Authorizer, IdentitySource
from mqless_cli.local.authorizers import (
    InvalidResponse,
    ResponseCache,
    Verdict,
    identity_values,
    verdict,
)

ARN = "arn:aws:execute-api:us-east-1:123456789012:api/live/$connect"


def policy(*statements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "principalId": "alice",
        "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
        **extra,
    }


def statement(effect: str, resource: Any, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    "resource",
    [ARN, [ARN], "arn:aws:execute-api:us-east-1:123456789012:api/*", "arn:aws:execute-api:*"],
)
def test_a_policy_allowing_the_arn_or_a_wildcard_over_it_lets_the_call_in(resource: Any) -> None:
    # Given an authorizer whose IAM policy answer names principal alice
    # When a policy allows the ARN itself, or a wildcard covering it
    found = verdict(policy(statement("Allow", resource)), simple=False, resource=ARN)
    # Then the call is allowed, with the policy's principal
    assert found == Verdict(allowed=True, context={}, principal_id="alice")


@pytest.mark.parametrize("action", ["execute-api:*", "*", ["s3:GetObject", "EXECUTE-API:invoke"]])
def test_invoke_may_be_granted_by_wildcard_or_in_a_list(action: Any) -> None:
    """Given an IAM policy allowing the ARN with execute-api:*, "*", or a list holding execute-
    api:Invoke in another case
    When the authorizer's answer is read
    Then the call is allowed
    """
    found = verdict(policy(statement("Allow", ARN, action)), simple=False, resource=ARN)
    assert found.allowed


@pytest.mark.parametrize(
    "statements",
    [
        [],
        [statement("Allow", "arn:aws:execute-api:us-east-1:123456789012:api/live/$default")],
        [statement("Allow", ARN, "s3:GetObject")],
        [statement("Allow", ARN), statement("Deny", "arn:aws:execute-api:*")],
    ],
    ids=["no-statement", "other-resource", "other-action", "deny-wins"],
)
def test_without_a_matching_allow_or_with_a_matching_deny_the_call_is_denied(
    statements: list[dict[str, Any]],
) -> None:
    """Given a policy with no statement, an Allow on another resource or for another action, or an
    Allow overruled by a Deny
    When the authorizer's answer is read
    Then the call is denied
    """
    found = verdict(policy(*statements), simple=False, resource=ARN)
    assert not found.allowed


def test_a_policy_keeps_its_context() -> None:
    """Given an Allow policy answered with a context
    When the authorizer's answer is read
    Then the verdict carries that context
    """
    found = verdict(
        policy(statement("Allow", ARN), context={"kind": "api_key"}), simple=False, resource=ARN
    )
    assert found.context == {"kind": "api_key"}


@pytest.mark.parametrize(
    ("response", "simple"),
    [
        ("yes", False),
        ({"principalId": "x"}, False),
        (policy(statement("Maybe", ARN)), False),
        (policy(statement("Allow", 42)), False),
        (policy(statement("Allow", ARN), context="nope"), False),
        ({"isAuthorized": "true"}, True),
        ({"isAuthorized": True, "context": ["a"]}, True),
        (None, True),
    ],
)
def test_an_unusable_response_is_invalid(response: Any, simple: bool) -> None:
    # Given an answer that is not a policy or simple response: a string, no policy document,
    # an unknown effect, a resource that is a number, a context that is not an object, a
    # string "true", a list context, or nothing
    # When the authorizer answered what API Gateway cannot read
    # Then it is refused (the gateway answers 500)
    with pytest.raises(InvalidResponse):
        verdict(response, simple=simple, resource=ARN)


@pytest.mark.parametrize("authorized", [True, False])
def test_a_simple_response_says_yes_or_no_with_its_context(authorized: bool) -> None:
    """Given a simple response with isAuthorized true or false and a context
    When it is read
    Then the verdict says the same, with the context
    """
    response = {"isAuthorized": authorized, "context": {"principal": "dev"}}
    found = verdict(response, simple=True, resource=ARN)
    assert found == Verdict(allowed=authorized, context={"principal": "dev"})


def test_identity_values_come_from_headers_in_any_case_query_and_context() -> None:
    # Given identity sources in a header, the query string and the request context
    sources = (
        IdentitySource("header", "Authorization"),
        IdentitySource("querystring", "t"),
        IdentitySource("context", "http.method"),
    )
    # When they are read from a request
    values = identity_values(
        sources,
        headers={"authorization": "Bearer x"},
        query={"t": "1"},
        context={"http": {"method": "GET"}},
    )
    # Then each is found, in order
    assert values == ["Bearer x", "1", "GET"]


@pytest.mark.parametrize(
    "source",
    [
        IdentitySource("header", "X-Missing"),
        IdentitySource("header", "X-Empty"),
        IdentitySource("querystring", "missing"),
        IdentitySource("stageVariables", "anything"),
        IdentitySource("context", "http"),
    ],
)
def test_a_missing_or_empty_identity_source_means_no_values(source: IdentitySource) -> None:
    # Given a request with an empty X-Empty header, no query string, no stage variables and
    # an http context that is an object
    # When one identity source is missing, empty, or not a single value
    values = identity_values(
        (source,), headers={"x-empty": ""}, query={}, context={"http": {"method": "GET"}}
    )
    # Then there are no values (the gateway answers 401 without invoking the authorizer)
    assert values is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_response_lives_for_the_ttl() -> None:
    # Given a response cached for 60 s
    clock = Clock()
    cache = ResponseCache(clock)
    authorizer = Authorizer("a", "F", (IdentitySource("header", "Authorization"),), 60)
    key = ResponseCache.key(authorizer, ["Bearer x"])
    assert key is not None
    cache.put(key, {"isAuthorized": True}, authorizer.ttl_seconds)
    # When it is looked up within the TTL, and after it
    clock.now += 59
    within = cache.get(key)
    clock.now += 1
    after = cache.get(key)
    # Then it is found, then gone
    assert within == (True, {"isAuthorized": True})
    assert after == (False, None)


@pytest.mark.parametrize(
    "authorizer",
    [
        Authorizer("a", "F", (IdentitySource("header", "Authorization"),), 0),
        Authorizer("a", "F", (), 300),
    ],
    ids=["ttl-0", "no-identity-source"],
)
def test_responses_without_a_ttl_or_identity_source_are_not_cached(
    authorizer: Authorizer,
) -> None:
    """Given an authorizer with a TTL of 0, or with no identity source
    When its cache key is asked for
    Then there is none: its answers are not cached
    """
    assert ResponseCache.key(authorizer, []) is None
