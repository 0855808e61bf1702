"""The connection sweep's queries: connections whose credential ended, and temporary
queues whose connection has surely ended (keyed queries of `connections.py`'s indexes,
never a scan)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mqless.domain.clock import Clock
from mqless.storage.connections import (
    CREDENTIALS_PARTITION,
    TEMP_QUEUE,
    TEMP_QUEUES_PARTITION,
    EndedCredential,
    OrphanedTempQueue,
    connection_partition,
    credential_connection,
    due_temp_queues_range,
    expired_credentials_range,
    key_connections_range,
    revoked_key_id,
    revoked_markers_range,
    temp_queue_index_entry,
)
from mqless.storage.dynamo import batch_write, partition_items, to_wire

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class ConnectionSweepIndex:
    """What the sweep closes or deletes, and forgetting it once done."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock

    def ended_credentials(self) -> list[EndedCredential]:
        """Connections whose credential expired by now or whose API key was revoked: one
        query of the expired (in expiry order, none past now read), one of the revoked
        keys' markers, and one per key revoked in the last `REVOKED_MARKER_SECONDS`."""
        now_s = self._clock.now_ms() // 1000
        ended: dict[str, EndedCredential] = {}
        for item in self._credential_items(expired_credentials_range(now_s)):
            connection_id = credential_connection(str(item["sk"]))
            ended[connection_id] = EndedCredential(
                connection_id, str(item["kind"]), False, str(item["sk"])
            )
        for marker in self._credential_items(revoked_markers_range()):
            if int(marker.get("expires_at", 0)) <= now_s:
                continue  # past its life; TTL has not removed it yet
            key_id = revoked_key_id(str(marker["sk"]))
            for item in self._credential_items(key_connections_range(key_id)):
                connection_id = credential_connection(str(item["sk"]))
                ended[connection_id] = EndedCredential(
                    connection_id, str(item["kind"]), True, str(item["sk"])
                )
        return [ended[c] for c in sorted(ended)]

    def forget_credential(self, ended: EndedCredential) -> None:
        """Drop an index item whose connection's records are gone already (TTL)."""
        self._delete([(CREDENTIALS_PARTITION, ended.index_key)])

    def orphaned_temp_queues(self) -> list[OrphanedTempQueue]:
        """Temporary queues whose connection has surely ended by now (one query; none
        of the queues of connections that may still be open is read)."""
        now_s = self._clock.now_ms() // 1000
        due = partition_items(
            self._db, self._table, TEMP_QUEUES_PARTITION, between=due_temp_queues_range(now_s)
        )
        orphans = []
        for item in due:
            connection_id, queue = temp_queue_index_entry(str(item["sk"]))
            orphans.append(OrphanedTempQueue(connection_id, queue, str(item["sk"])))
        return orphans

    def forget_temp_queue(self, orphan: OrphanedTempQueue) -> None:
        """Drop a deleted temporary queue from the sweep's list."""
        self._delete(
            [
                (TEMP_QUEUES_PARTITION, orphan.index_key),
                (connection_partition(orphan.connection_id), TEMP_QUEUE + orphan.queue),
            ]
        )

    def _credential_items(self, between: tuple[str, str]) -> list[dict[str, Any]]:
        return list(partition_items(self._db, self._table, CREDENTIALS_PARTITION, between=between))

    def _delete(self, keys: list[tuple[str, str]]) -> None:
        requests = [{"DeleteRequest": {"Key": to_wire({"pk": pk, "sk": sk})}} for pk, sk in keys]
        batch_write(self._db, self._table, requests)
