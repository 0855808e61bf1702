"""Principals and their grants, and the API keys that prove them: the broker's user list.

As in RabbitMQ (users with permissions) and ActiveMQ (an authorization map), what a
principal may do is stored once, with the principal (`storage/principals.py`); API keys
(`api_keys.py`) only prove who is calling. The principals of JWTs
(`jwt:<claim value>`), of groups (`group:<name>`) and of IAM callers (`iam:...`) get
their grants from here too, so one admin API manages every kind of caller; no API key is
issued to them, so each namespace is proven by its own kind of credential only.

Every change is audited. Deleting a principal revokes its keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict

from mqless.domain.access.api_keys import ApiKeys, ApiKeyView, IssuedKey
from mqless.domain.access.principals import (
    ACCESS_CONTROL,
    PRINCIPAL_ID,
    Action,
    AllowAll,
    Grant,
    Policy,
    Principal,
    parse_grants,
    proven_by_api_key,
    validate_principal_id,
)
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest, NotFound, Unauthorized
from mqless.domain.wildcards import ANY_TAIL
from mqless.observability import audit
from mqless.storage.principals import PrincipalRecords, StoredPrincipal

EVERYTHING: Final = (Grant(pattern=ANY_TAIL, actions=(Action.SEND, Action.RECEIVE, Action.ADMIN)),)
"""The grants of an administrator of everything (the bootstrap principal)."""


class PrincipalView(BaseModel):
    """A principal as stored and listed."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True)

    id: str
    grants: list[Grant]
    created_at: int
    updated_at: int


class AccessControl:
    """Manage principals and keys (each call checked against `policy`), and authenticate."""

    def __init__(
        self,
        principals: PrincipalRecords,
        keys: ApiKeys,
        clock: Clock,
        policy: Policy | None = None,
    ) -> None:
        self._principals = principals
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self.keys = keys

    # ---- administration (admin on ACCESS_CONTROL) ---------------------------------------

    def put_principal(
        self, caller: Principal, principal_id: str, grants: Sequence[Grant]
    ) -> tuple[PrincipalView, bool]:
        """Create or replace a principal's grants; (the principal, whether it was created)."""
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        validate_principal_id(principal_id)
        stored = [g.model_dump(mode="json") for g in grants]
        grants = parse_grants(stored)  # the bound on their number holds for every caller
        principal, created = self._principals.put_grants(principal_id, grants, self._clock.now_ms())
        audit(
            "principal.create" if created else "principal.update",
            caller.id,
            None,
            subject=principal_id,
            grants=stored,
        )
        return _view(principal), created

    def get_principal(self, caller: Principal, principal_id: str) -> PrincipalView:
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        validate_principal_id(principal_id)
        principal = self._principals.get(principal_id)
        if principal is None:
            raise NotFound(f"no principal {principal_id!r}")
        return _view(principal)

    def list_principals(self, caller: Principal) -> list[PrincipalView]:
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        return [_view(principal) for principal in self._principals.list()]

    def delete_principal(self, caller: Principal, principal_id: str) -> None:
        """Delete a principal and revoke its keys (they would prove no one anyway)."""
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        validate_principal_id(principal_id)
        if not self._principals.delete(principal_id):
            raise NotFound(f"no principal {principal_id!r}")
        for key in self.keys.list(principal_id):
            if not key.revoked:
                self.keys.revoke(key.key_id)
        audit("principal.delete", caller.id, None, subject=principal_id)

    def issue_key(
        self, caller: Principal, principal_id: str, *, ttl_seconds: int | None = None
    ) -> IssuedKey:
        """A new API key for an existing principal (the token is returned only here)."""
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        validate_principal_id(principal_id)
        if not proven_by_api_key(principal_id):
            raise InvalidRequest(
                f"no API key for {principal_id!r}: jwt:, group: and iam: principals are "
                "proven by their own credentials (a JWT, a groups claim, IAM) only"
            )
        if self._principals.get(principal_id) is None:
            raise NotFound(f"no principal {principal_id!r}; create it with its grants first")
        issued = self.keys.issue(principal_id, ttl_seconds=ttl_seconds)
        audit(
            "apikey.issue",
            caller.id,
            None,
            subject=principal_id,
            key_id=issued.key_id,
            expires_at=issued.expires_at,
        )
        return issued

    def list_keys(self, caller: Principal, principal_id: str | None = None) -> list[ApiKeyView]:
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        return list(self.keys.list(principal_id))

    def revoke_key(self, caller: Principal, key_id: str) -> None:
        self._policy.check(caller, Action.ADMIN, ACCESS_CONTROL)
        self.keys.revoke(key_id)
        audit("apikey.revoke", caller.id, None, key_id=key_id)

    # ---- authentication ------------------------------------------------------------------

    def principal_for_key(self, token: str) -> Principal:
        """The principal an API key proves, with its current grants; Unauthorized if none."""
        holder = self.keys.verify(token)
        principal = self._principals.get(holder.principal)
        if principal is None:
            raise Unauthorized("this API key's principal no longer exists")
        return Principal(
            id=holder.principal,
            kind="api_key",
            grants=principal.grants,
            expires_at=holder.expires_at,
            key_id=holder.key_id,
        )

    def grants_of(self, principal_ids: Iterable[str]) -> tuple[Grant, ...]:
        """The union of the grants stored for these ids (unknown ids add nothing)."""
        ids = [i for i in dict.fromkeys(principal_ids) if PRINCIPAL_ID.fullmatch(i)]
        return self._principals.grants_of(ids)


def bootstrap_admin(
    access: AccessControl, principal_id: str = "admin", *, ttl_seconds: int | None = None
) -> IssuedKey:
    """Create (or reset) an administrator of everything and issue it a key.

    For `mqless dev` (its dev token) and `mqless bootstrap` (a deployed stack's first key,
    written with the operator's own AWS credentials, so no token is needed to make one).
    """
    operator = Principal(id="bootstrap", kind="operator", grants=EVERYTHING)
    access.put_principal(operator, principal_id, EVERYTHING)
    return access.issue_key(operator, principal_id, ttl_seconds=ttl_seconds)


def _view(principal: StoredPrincipal) -> PrincipalView:
    return PrincipalView(
        id=principal.id,
        grants=list(principal.grants),
        created_at=principal.created_at,
        updated_at=principal.updated_at,
    )
