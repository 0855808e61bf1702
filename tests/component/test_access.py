"""Principals, grants and API keys: issued once, stored hashed, verified, expired, revoked.

Keys prove a principal; what it may do is the principal's grants, read fresh at each
authentication. Managing either needs `admin` on everything.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqless.assembly import build_access_control
from mqless.domain.access.principals import Action, GrantPolicy, Principal, parse_grants
from mqless.domain.access.users import EVERYTHING, AccessControl, bootstrap_admin
from mqless.domain.clock import ManualClock
from mqless.domain.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from tests.component.conftest import Aws

ORDERS = parse_grants([{"pattern": "orders.>", "actions": ["send", "receive"]}])
ROOT = Principal(id="root", kind="api_key", grants=EVERYTHING)


@pytest.fixture
def access(aws: Aws, clock: ManualClock) -> AccessControl:
    return build_access_control(aws.dynamodb, aws.settings.destinations_table, clock, GrantPolicy())


def _principal_with_key(access: AccessControl, name: str = "billing", **kw: Any) -> str:
    access.put_principal(ROOT, name, ORDERS)
    return access.issue_key(ROOT, name, **kw).token


def test_a_key_proves_its_principal_with_the_principals_current_grants(
    access: AccessControl,
) -> None:
    # Given a key for billing, which may send and receive on orders.>
    token = _principal_with_key(access)

    # When the key is authenticated
    principal = access.principal_for_key(token)
    # Then billing may send to orders.eu but not to payroll
    GrantPolicy().check(principal, Action.SEND, "orders.eu")
    with pytest.raises(Forbidden):
        GrantPolicy().check(principal, Action.SEND, "payroll")

    # a change of grants applies to the next authentication of the same key
    access.put_principal(
        ROOT, "billing", parse_grants([{"pattern": "payroll", "actions": ["send"]}])
    )
    again = access.principal_for_key(token)
    GrantPolicy().check(again, Action.SEND, "payroll")
    assert (again.id, again.kind) == ("billing", "api_key")


def test_put_principal_says_whether_it_created_and_keeps_the_creation_time(
    access: AccessControl, clock: ManualClock
) -> None:
    # Given no principal svc
    # When it is put, then put again five seconds later with other grants
    first, created = access.put_principal(ROOT, "svc", ORDERS)
    clock.advance(5)
    second, created_again = access.put_principal(ROOT, "svc", EVERYTHING)

    # Then the first created it and the second did not; it keeps its creation time, is listed once,
    # and has the new grants
    assert (created, created_again) == (True, False)
    assert second.created_at == first.created_at < second.updated_at
    assert [p.id for p in access.list_principals(ROOT)] == ["svc"]
    assert access.get_principal(ROOT, "svc").grants == list(EVERYTHING)


def test_the_secret_is_never_stored(access: AccessControl, aws: Aws) -> None:
    # Given a key issued for svc
    access.put_principal(ROOT, "svc", ORDERS)
    issued = access.issue_key(ROOT, "svc")
    # (the secret is base64url, which has "_" in it: split after the key id, not at the last "_")
    secret = issued.token.split("_", 2)[2]
    assert len(secret) == 43

    # When the table is scanned and the keys are listed
    stored = json.dumps(aws.dynamodb.scan(TableName=aws.settings.destinations_table))
    listed = access.list_keys(ROOT)

    # Then the key's secret is in neither, and the listing shows the key, live
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
def test_anything_but_a_live_key_is_unauthorized(access: AccessControl, token: str) -> None:
    # Given something that is no live key (empty, a Bearer header, a bare prefix, a well-formed
    # unknown id, a malformed id, 5000 characters)
    # When it is authenticated
    # Then it is unauthorized
    with pytest.raises(Unauthorized):
        access.principal_for_key(token)


def test_a_wrong_secret_for_a_real_key_is_unauthorized(access: AccessControl) -> None:
    # Given a real key with the last character of its secret changed
    token = _principal_with_key(access)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")

    # When it is authenticated
    # Then it is unauthorized: unknown or wrong
    with pytest.raises(Unauthorized, match="unknown or wrong"):
        access.principal_for_key(forged)


def test_keys_expire_and_can_be_revoked(access: AccessControl, clock: ManualClock) -> None:
    # Given a key for 60 s, used once, and another key
    short = _principal_with_key(access, "temp", ttl_seconds=60)
    access.put_principal(ROOT, "svc", ORDERS)
    long = access.issue_key(ROOT, "svc")
    access.principal_for_key(short)

    # When 61 s pass and the other key is revoked
    clock.advance(61)
    access.revoke_key(ROOT, long.key_id)

    # Then the first is refused as expired, the second as revoked, and revoking an unknown key id is
    # not found
    with pytest.raises(Unauthorized, match="expired"):
        access.principal_for_key(short)
    with pytest.raises(Unauthorized, match="revoked"):
        access.principal_for_key(long.token)
    with pytest.raises(NotFound):
        access.revoke_key(ROOT, "0" * 24)


def test_deleting_a_principal_revokes_its_keys(access: AccessControl) -> None:
    # Given a principal with a key
    token = _principal_with_key(access)

    # When the principal is deleted
    access.delete_principal(ROOT, "billing")

    # Then its key is refused and listed as revoked, and deleting the principal again is not found
    with pytest.raises(Unauthorized, match="revoked"):
        access.principal_for_key(token)
    assert [k.revoked for k in access.list_keys(ROOT, "billing")] == [True]
    with pytest.raises(NotFound):
        access.delete_principal(ROOT, "billing")


def test_a_key_needs_an_existing_principal_and_a_valid_id(access: AccessControl) -> None:
    # Given no principal ghost
    # When a key is issued for it
    # Then it is not found
    with pytest.raises(NotFound, match="no principal"):
        access.issue_key(ROOT, "ghost")
    # When a principal is put with a space in its id, or with 129 characters
    # Then it is an invalid request
    with pytest.raises(InvalidRequest):
        access.put_principal(ROOT, "has space", ORDERS)
    with pytest.raises(InvalidRequest):
        access.put_principal(ROOT, "x" * 129, ORDERS)


@pytest.mark.parametrize(
    "grant",
    [
        {"pattern": "orders.>", "actions": ["send", "receive", "admin"]},
        {"pattern": "*", "actions": ["admin"]},
    ],
)
def test_only_an_admin_of_everything_manages_access(
    access: AccessControl, grant: dict[str, Any], aws: Aws
) -> None:
    # an admin of some destinations is no admin of principals and keys
    # Given a principal svc, and an operator with admin on orders.> or on every one-word name (*)
    operator = Principal(id="ops", kind="api_key", grants=parse_grants([grant]))
    access.put_principal(ROOT, "svc", ORDERS)
    before = aws.dynamodb.scan(TableName=aws.settings.destinations_table)["Items"]

    # When the operator tries each operation on principals and keys
    calls = [
        lambda: access.put_principal(operator, "svc", EVERYTHING),
        lambda: access.get_principal(operator, "svc"),
        lambda: access.list_principals(operator),
        lambda: access.delete_principal(operator, "svc"),
        lambda: access.issue_key(operator, "svc"),
        lambda: access.list_keys(operator),
        lambda: access.revoke_key(operator, "0" * 24),
    ]
    # Then each is forbidden, naming the operator, and the table is unchanged
    for call in calls:
        with pytest.raises(Forbidden, match="'ops' may not manage principals and keys"):
            call()
    assert aws.dynamodb.scan(TableName=aws.settings.destinations_table)["Items"] == before


def test_group_grants_add_up(access: AccessControl) -> None:
    # Given grants for alice and for group ops
    access.put_principal(ROOT, "alice", ORDERS)
    access.put_principal(ROOT, "group:ops", parse_grants([{"pattern": ">", "actions": ["admin"]}]))

    # When the grants of alice, group:ops, an unknown group and a malformed id are read together
    grants = access.grants_of(["alice", "group:ops", "group:unknown", "bad id"])

    # Then they are alice's and ops's added up
    assert set(grants) == {*ORDERS, *parse_grants([{"pattern": ">", "actions": ["admin"]}])}


def test_bootstrap_makes_an_admin_of_everything(access: AccessControl) -> None:
    # Given an empty access table
    # When the bootstrap admin is made and its key authenticated
    issued = bootstrap_admin(access, "admin")

    principal = access.principal_for_key(issued.token)

    # Then it holds every grant, admin of access control included
    assert principal.grants == EVERYTHING
    GrantPolicy().check(principal, Action.ADMIN, "$access")
