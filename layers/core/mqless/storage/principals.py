"""Principals and their grants as stored: one item each in the destinations table.

`pk = PRINCIPAL`, `sk = <principal id>`: `grants` (a list of {"pattern", "actions"}),
`created_at` and `updated_at` (epoch ms). The authorizer reads these items only (and the
API keys, `api_keys.py`): template.yaml limits it to these two partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.access.principals import Grant, parse_grants
from mqless.storage.dynamo import (
    Item,
    conditional_write,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION: Final = "PRINCIPAL"
MAX_READ: Final = 25  # one BatchGetItem's worth of principals (a JWT's subject and groups)


@dataclass(frozen=True)
class StoredPrincipal:
    """A principal's item."""

    id: str
    grants: tuple[Grant, ...]
    created_at: int
    updated_at: int


class PrincipalRecords:
    """Read and write principals' items (boto3 client passed in)."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def put_grants(
        self, principal_id: str, grants: Sequence[Grant], now_ms: int
    ) -> tuple[StoredPrincipal, bool]:
        """Create or replace a principal's grants; (the principal, whether it was created)."""
        stored = [g.model_dump(mode="json") for g in grants]
        with translated_errors():
            found = self._db.update_item(
                TableName=self._table,
                Key=to_wire(_key(principal_id)),
                UpdateExpression="SET grants = :g, updated_at = :now, "
                "created_at = if_not_exists(created_at, :now)",
                ExpressionAttributeValues=to_wire({":g": stored, ":now": now_ms}),
                ReturnValues="ALL_OLD",
            )
        created = "Attributes" not in found
        old = {} if created else from_wire(found["Attributes"])
        principal = StoredPrincipal(
            id=principal_id,
            grants=tuple(grants),
            created_at=int(old.get("created_at", now_ms)),
            updated_at=now_ms,
        )
        return principal, created

    def get(self, principal_id: str) -> StoredPrincipal | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table, Key=to_wire(_key(principal_id)), ConsistentRead=True
            )
        return _principal(from_wire(found["Item"])) if "Item" in found else None

    def list(self) -> list[StoredPrincipal]:
        return [_principal(item) for item in partition_items(self._db, self._table, PARTITION)]

    def delete(self, principal_id: str) -> bool:
        """Delete a principal's item; False if there was none."""
        deleted = conditional_write(
            self._db.delete_item,
            TableName=self._table,
            Key=to_wire(_key(principal_id)),
            ConditionExpression="attribute_exists(pk)",
        )
        return deleted is not None

    def grants_of(self, principal_ids: Sequence[str]) -> tuple[Grant, ...]:
        """The union of the grants stored for these ids (the first MAX_READ; unknown ids
        add nothing)."""
        ids = list(principal_ids)[:MAX_READ]
        if not ids:
            return ()
        with translated_errors():
            found = self._db.batch_get_item(
                RequestItems={
                    self._table: {
                        "Keys": [to_wire(_key(i)) for i in ids],
                        "ConsistentRead": True,
                    }
                }
            )
        grants: dict[Grant, None] = {}
        for item in found.get("Responses", {}).get(self._table, []):
            grants.update(dict.fromkeys(_grants(from_wire(item))))
        return tuple(grants)


def _key(principal_id: str) -> dict[str, str]:
    return {"pk": PARTITION, "sk": principal_id}


def _grants(item: Item) -> tuple[Grant, ...]:
    return parse_grants(list(item.get("grants") or []))


def _principal(item: dict[str, Any]) -> StoredPrincipal:
    return StoredPrincipal(
        id=str(item["sk"]),
        grants=_grants(item),
        created_at=int(item["created_at"]),
        updated_at=int(item["updated_at"]),
    )
