"""The stack's dedup secret as stored: one item of the destinations table holding the KMS
blob of the secret (`domain/queues/dedup.py` says what it is for), written once with a
conditional put so that concurrent first senders agree on one secret.

`pk = SECRET`, `sk = dedup`, `kind = secret`, `blob` the encrypted data key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from mqless.storage.dynamo import from_wire, put_if_absent, to_wire, translated_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SECRET_PARTITION: Final = "SECRET"
SECRET_KEY: Final = "dedup"


class DedupSecretStore:
    """DynamoDB adapter for the dedup secret's KMS blob; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def blob(self) -> bytes | None:
        """The stored secret's KMS blob (strongly consistent); None if none is stored yet."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": SECRET_PARTITION, "sk": SECRET_KEY}),
                ConsistentRead=True,
            ).get("Item")
        return bytes(from_wire(found)["blob"]) if found else None

    def put_if_absent(self, blob: bytes) -> bool:
        """Store `blob` unless a secret is stored already; False if one was (use that one)."""
        secret = {"pk": SECRET_PARTITION, "sk": SECRET_KEY, "kind": "secret", "blob": blob}
        return put_if_absent(self._db, self._table, secret)
