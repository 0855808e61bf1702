"""API keys that mqless issues: stored hashed, revocable, expiring.

A token is `mqk_<key id>_<secret>`. The key id (96 random bits, hex) finds the record
with one read; the secret (256 random bits, base64url) is never stored: the record keeps
its SHA-256, which is enough for a secret of that entropy (no salt or slow hash needed:
those protect guessable passwords). Verification compares in constant time, then checks
revocation and expiry, and yields the principal the key belongs to; what that principal
may do is its grants, kept with the principal (`access.py`), not with each key.

Records live in the destinations table (`pk = APIKEY`, `sk = <key id>`); an expired key's
record is removed by the table's TTL after it stops working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError
from pydantic import BaseModel

from mqless.domain.access.principals import validate_principal_id
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest, NotFound, Unauthorized
from mqless.storage.dynamo import (
    batch_write,
    from_wire,
    is_condition_failure,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.transports.websocket.connections import revoked_key_marker

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION: Final = "APIKEY"
KEY_EXPIRED: Final = "this API key has expired"
KEY_REVOKED: Final = "this API key was revoked"
PREFIX: Final = "mqk_"
MAX_TTL_SECONDS: Final = 10 * 365 * 24 * 60 * 60
_TOKEN: Final = re.compile(r"mqk_([0-9a-f]{24})_([A-Za-z0-9_-]{43})")
_KEY_ID: Final = re.compile(r"[0-9a-f]{24}")


class IssuedKey(BaseModel):
    """What the caller gets once: the token is shown now and never again."""

    key_id: str
    token: str
    principal: str
    expires_at: int | None


class KeyHolder(BaseModel):
    """Who a verified key proves, and until when the key works (epoch seconds)."""

    principal: str
    expires_at: int | None
    key_id: str


class ApiKeyView(BaseModel):
    """A key as listed: everything but its secret."""

    key_id: str
    principal: str
    created_at: int
    expires_at: int | None
    revoked: bool


class ApiKeys:
    """Issue, verify, list and revoke API keys."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
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
        record: dict[str, Any] = {
            "pk": PARTITION,
            "sk": key_id,
            "principal": principal,
            "secret_sha256": _digest(secret),
            "created_at": now,
        }
        if expires_at is not None:
            record["expires_at"] = expires_at  # the table's TTL removes it afterwards
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(record),
                ConditionExpression="attribute_not_exists(pk)",
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
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": PARTITION, "sk": key_id}),
                ConsistentRead=True,
            )
        record = from_wire(found["Item"]) if "Item" in found else None
        # compare even when there is no record, so timing says nothing about key ids
        expected = str(record["secret_sha256"]) if record else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or record is None:
            raise Unauthorized("unknown or wrong API key")
        if record.get("revoked_at") is not None:
            raise Unauthorized(KEY_REVOKED)
        expires_at = None if record.get("expires_at") is None else int(record["expires_at"])
        if expires_at is not None and expires_at <= self._clock.now_ms() // 1000:
            raise Unauthorized(KEY_EXPIRED)
        return KeyHolder(
            principal=str(record["principal"]), expires_at=expires_at, key_id=str(key_id)
        )

    def revoke(self, key_id: str) -> None:
        """Stop a key from working at once (authorizers may cache it for their TTL)."""
        if not _KEY_ID.fullmatch(key_id):
            raise NotFound(f"no API key {key_id[:40]!r}")
        try:
            with translated_errors():
                self._db.update_item(
                    TableName=self._table,
                    Key=to_wire({"pk": PARTITION, "sk": key_id}),
                    UpdateExpression="SET revoked_at = :now",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=to_wire({":now": self._clock.now_ms()}),
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise NotFound(f"no API key {key_id!r}") from exc
            raise
        # the next sweep closes the connections the key opened (`live.py`)
        batch_write(
            self._db,
            self._table,
            [{"PutRequest": {"Item": to_wire(revoked_key_marker(key_id, self._clock.now_ms()))}}],
        )

    def list(self, principal: str | None = None) -> list[ApiKeyView]:
        """Every key (or `principal`'s), without secrets."""
        return [
            ApiKeyView(
                key_id=str(item["sk"]),
                principal=str(item["principal"]),
                created_at=int(item["created_at"]),
                expires_at=None if item.get("expires_at") is None else int(item["expires_at"]),
                revoked=item.get("revoked_at") is not None,
            )
            for item in partition_items(self._db, self._table, PARTITION)
            if principal is None or item["principal"] == principal
        ]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
