"""API keys as stored: one item each in the destinations table, the secret only hashed.

`pk = APIKEY`, `sk = <key id>`: `principal`, `secret_sha256`, `created_at` (epoch ms),
`expires_at` (epoch s, also the table's TTL: an expired key's item goes after it stops
working) and, once revoked, `revoked_at` (epoch ms). Revoking also writes the marker that
tells the connection sweep to close what the key opened (`connections.revoked_key_marker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mqless.storage.dynamo import (
    batch_write,
    conditional_write,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION: Final = "APIKEY"


@dataclass(frozen=True)
class StoredKey:
    """An API key's item."""

    key_id: str
    principal: str
    secret_sha256: str
    created_at: int
    expires_at: int | None = None
    revoked_at: int | None = None


class ApiKeyRecords:
    """Read and write API keys' items (boto3 client passed in)."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def put_new(self, key: StoredKey) -> None:
        """Store a new key (a key id is never reused: the write requires it to be new)."""
        item: dict[str, Any] = {
            **_key(key.key_id),
            "principal": key.principal,
            "secret_sha256": key.secret_sha256,
            "created_at": key.created_at,
            "expires_at": key.expires_at,  # None: no attribute, no TTL
        }
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(item),
                ConditionExpression="attribute_not_exists(pk)",
            )

    def get(self, key_id: str) -> StoredKey | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table, Key=to_wire(_key(key_id)), ConsistentRead=True
            )
        return _stored(from_wire(found["Item"])) if "Item" in found else None

    def revoke(self, key_id: str, now_ms: int) -> bool:
        """Mark a key revoked and tell the sweep to close its connections; False if there
        is no such key."""
        revoked = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(_key(key_id)),
            UpdateExpression="SET revoked_at = :now",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_wire({":now": now_ms}),
        )
        if revoked is None:
            return False
        # the connections' module comes with a revoke: verifying a key (the authorizer)
        # never loads it (issue 18)
        from mqless.storage.connections import revoked_key_marker

        marker = revoked_key_marker(key_id, now_ms)
        batch_write(self._db, self._table, [{"PutRequest": {"Item": to_wire(marker)}}])
        return True

    def list(self) -> list[StoredKey]:
        return [_stored(item) for item in partition_items(self._db, self._table, PARTITION)]


def _key(key_id: str) -> dict[str, str]:
    return {"pk": PARTITION, "sk": key_id}


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _stored(item: dict[str, Any]) -> StoredKey:
    return StoredKey(
        key_id=str(item["sk"]),
        principal=str(item["principal"]),
        secret_sha256=str(item["secret_sha256"]),
        created_at=int(item["created_at"]),
        expires_at=_optional_int(item.get("expires_at")),
        revoked_at=_optional_int(item.get("revoked_at")),
    )
