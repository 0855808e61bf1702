"""API keys that mqless issues: stored hashed, revocable, expiring.

A token is `mqk_<key id>_<secret>`. The key id (96 random bits, hex) finds the record
with one read; the secret (256 random bits, base64url) is never stored: the record keeps
its SHA-256, which is enough for a secret of that entropy (no salt or slow hash needed:
those protect guessable passwords). Verification compares in constant time, then checks
revocation and expiry, and yields the principal the key belongs to; what that principal
may do is its grants, kept with the principal (`users.py`), not with each key.

Records live in the destinations table (`storage/api_keys.py`); an expired key's record
is removed by the table's TTL after it stops working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Final

from pydantic import BaseModel, ConfigDict

from mqless.domain.access.principals import validate_principal_id
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest, NotFound, Unauthorized
from mqless.storage.api_keys import ApiKeyRecords, StoredKey

KEY_EXPIRED: Final = "this API key has expired"
KEY_REVOKED: Final = "this API key was revoked"
PREFIX: Final = "mqk_"
MAX_TTL_SECONDS: Final = 10 * 365 * 24 * 60 * 60
_TOKEN: Final = re.compile(r"mqk_([0-9a-f]{24})_([A-Za-z0-9_-]{43})")
_KEY_ID: Final = re.compile(r"[0-9a-f]{24}")


class IssuedKey(BaseModel):
    """What the caller gets once: the token is shown now and never again."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True)

    key_id: str
    token: str
    principal: str
    expires_at: int | None


class KeyHolder(BaseModel):
    """Who a verified key proves, and until when the key works (epoch seconds)."""

    model_config = ConfigDict(defer_build=True)

    principal: str
    expires_at: int | None
    key_id: str


class ApiKeyView(BaseModel):
    """A key as listed: everything but its secret."""

    model_config = ConfigDict(defer_build=True)

    key_id: str
    principal: str
    created_at: int
    expires_at: int | None
    revoked: bool


class ApiKeys:
    """Issue, verify, list and revoke API keys."""

    def __init__(self, records: ApiKeyRecords, clock: Clock) -> None:
        self._records = records
        self._clock = clock

    def issue(self, principal: str, *, ttl_seconds: int | None = None) -> IssuedKey:
        """A new key for `principal`; `ttl_seconds` None: until revoked."""
        validate_principal_id(principal)
        if ttl_seconds is not None and not 60 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidRequest(f"ttl_seconds must be 60 to {MAX_TTL_SECONDS}")
        key_id = os.urandom(12).hex()
        secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        now = self._clock.now_ms()
        expires_at = None if ttl_seconds is None else now // 1000 + ttl_seconds
        self._records.put_new(
            StoredKey(
                key_id=key_id,
                principal=principal,
                secret_sha256=_digest(secret),
                created_at=now,
                expires_at=expires_at,
            )
        )
        return IssuedKey(
            key_id=key_id,
            token=f"{PREFIX}{key_id}_{secret}",
            principal=principal,
            expires_at=expires_at,
        )

    def verify(self, token: str) -> KeyHolder:
        """Who a token proves; Unauthorized (saying no more than needed) if no one."""
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise Unauthorized("not an mqless API key")
        key_id, secret = match.groups()
        record = self._records.get(key_id)
        # compare even when there is no record, so timing says nothing about key ids
        expected = record.secret_sha256 if record else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or record is None:
            raise Unauthorized("unknown or wrong API key")
        if record.revoked_at is not None:
            raise Unauthorized(KEY_REVOKED)
        expires_at = record.expires_at
        if expires_at is not None and expires_at <= self._clock.now_ms() // 1000:
            raise Unauthorized(KEY_EXPIRED)
        return KeyHolder(principal=record.principal, expires_at=expires_at, key_id=str(key_id))

    def revoke(self, key_id: str) -> None:
        """Stop a key from working at once (authorizers may cache it for their TTL); the
        next connection sweep closes the connections it opened."""
        if not _KEY_ID.fullmatch(key_id) or not self._records.revoke(key_id, self._clock.now_ms()):
            raise NotFound(f"no API key {key_id[:40]!r}")

    def list(self, principal: str | None = None) -> list[ApiKeyView]:
        """Every key (or `principal`'s), without secrets."""
        return [
            ApiKeyView(
                key_id=key.key_id,
                principal=key.principal,
                created_at=key.created_at,
                expires_at=key.expires_at,
                revoked=key.revoked_at is not None,
            )
            for key in self._records.list()
            if principal is None or key.principal == principal
        ]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
