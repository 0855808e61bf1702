"""Wake markers: items written only for their stream record.

`pk = W#<queue>`, `sk = <time>#<random>`, gone by TTL within the hour. The dispatch function
reads a marker's record as "feed this queue's push consumers again": a pump that stopped at
its budget with consumers still hungry hands over to the next invocation this way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

from mqless.storage.dynamo import to_wire, translated_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PREFIX: Final = "W#"


def queue_of(pk: str) -> str | None:
    """The queue a marker's partition key names, or None if it is not a marker's."""
    return pk[len(PREFIX) :] or None if pk.startswith(PREFIX) else None


class WakeMarkers:
    """DynamoDB adapter for wake markers; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def wake(self, queue: str, now_ms: int) -> None:
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(
                    {
                        "pk": f"{PREFIX}{queue}",
                        "sk": f"{now_ms:013d}#{os.urandom(4).hex()}",
                        "x": now_ms // 1000 + 3600,
                    }
                ),
            )
