"""API keys: issued once, stored hashed, verified, expired and revoked (not wired yet)."""

from __future__ import annotations

import json

import pytest

from mqless.apikeys import ApiKeys
from mqless.clock import ManualClock
from mqless.errors import NotFound, Unauthorized
from mqless.principals import Action, GrantPolicy, parse_grants
from tests.component.conftest import Aws

GRANTS = parse_grants([{"pattern": "orders.>", "actions": ["send", "receive"]}])


@pytest.fixture
def keys(aws: Aws, clock: ManualClock) -> ApiKeys:
    return ApiKeys(aws.dynamodb, aws.settings.destinations_table, clock)


def test_a_key_proves_its_principal_and_carries_its_grants(keys: ApiKeys) -> None:
    issued = keys.issue("billing-service", GRANTS)

    principal = keys.verify(issued.token)

    assert (principal.id, principal.kind) == ("billing-service", "api_key")
    GrantPolicy().check(principal, Action.SEND, "orders.eu")
    assert issued.token.startswith("mqk_") and issued.expires_at is None


def test_the_secret_is_never_stored(keys: ApiKeys, aws: Aws) -> None:
    issued = keys.issue("svc", GRANTS)
    secret = issued.token.rsplit("_", 1)[1]

    stored = json.dumps(aws.dynamodb.scan(TableName=aws.settings.destinations_table))
    listed = keys.list()

    assert secret not in stored
    assert [(k.key_id, k.principal, k.revoked) for k in listed] == [(issued.key_id, "svc", False)]
    assert "secret" not in listed[0].model_dump_json()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "Bearer x",
        "mqk_",
        "mqk_0123456789abcdef01234567_" + "A" * 43,  # well-formed, unknown id
        "mqk_zz23456789abcdef01234567_" + "A" * 43,
        "x" * 5000,
    ],
)
def test_anything_but_a_live_key_is_unauthorized(keys: ApiKeys, token: str) -> None:
    with pytest.raises(Unauthorized):
        keys.verify(token)


def test_a_wrong_secret_for_a_real_key_is_unauthorized(keys: ApiKeys) -> None:
    issued = keys.issue("svc", GRANTS)
    forged = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")

    with pytest.raises(Unauthorized, match="unknown or wrong"):
        keys.verify(forged)


def test_keys_expire_and_can_be_revoked(keys: ApiKeys, clock: ManualClock) -> None:
    short = keys.issue("temp", GRANTS, ttl_seconds=60)
    long = keys.issue("svc", GRANTS)
    keys.verify(short.token)

    clock.advance(61)
    keys.revoke(long.key_id)

    with pytest.raises(Unauthorized, match="expired"):
        keys.verify(short.token)
    with pytest.raises(Unauthorized, match="revoked"):
        keys.verify(long.token)
    with pytest.raises(NotFound):
        keys.revoke("0" * 24)
