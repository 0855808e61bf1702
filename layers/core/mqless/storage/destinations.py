"""Queue configurations, stored in the destinations table and cached briefly per process."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mqless.domain.access.quotas import Charge, Quota
from mqless.domain.clock import Clock
from mqless.domain.errors import QueueNotFound
from mqless.domain.models import QueueConfig
from mqless.storage import quotas
from mqless.storage.dynamo import (
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

QUEUE_PARTITION = "QUEUE"
# A short cache keeps a config read off the send path; a change is seen within this time.
CACHE_SECONDS = 5.0


class QueueRegistry:
    """Create, read, list and delete queue configurations."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock
        self._cache: dict[str, tuple[int, QueueConfig | None]] = {}
        self._lock = threading.Lock()

    def find(self, name: str) -> QueueConfig | None:
        """The queue's config, or None if there is no such queue (cached for a few seconds)."""
        now = self._clock.now_ms()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and now - hit[0] < CACHE_SECONDS * 1000:
            return hit[1]
        with translated_errors():
            response = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": QUEUE_PARTITION, "sk": name}),
                ConsistentRead=True,
            )
        config = _config(response.get("Item"))
        self._remember(name, config)
        return config

    def get(self, name: str) -> QueueConfig:
        """The queue's config; QueueNotFound if absent."""
        config = self.find(name)
        if config is None:
            raise QueueNotFound(f"queue {name!r} does not exist")
        return config

    def create(self, configs: Sequence[QueueConfig], charge: Charge | None = None) -> bool:
        """Store new queues (a queue and its dead-letter queue) and apply `charge`, all or
        nothing; False (nothing written) if one exists already, QuotaExceeded over quota."""
        if not quotas.put_new(self._db, self._table, [_record(c) for c in configs], charge):
            for config in configs:
                self.forget(config.name)
            return False
        for config in configs:
            self._remember(config.name, config)
        return True

    def replace(self, config: QueueConfig) -> None:
        """Overwrite an existing queue's settings (creation time and creator kept by the caller)."""
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(_record(config)))
        self._remember(config.name, config)

    def delete(self, name: str) -> bool:
        """Remove a queue's config, crediting whom it was charged to; False if it did not exist."""
        with translated_errors():
            response = self._db.delete_item(
                TableName=self._table,
                Key=to_wire({"pk": QUEUE_PARTITION, "sk": name}),
                ReturnValues="ALL_OLD",
            )
        self.forget(name)
        if "Attributes" not in response:
            return False
        charged_to = from_wire(response["Attributes"]).get("charged_to")
        if charged_to:
            quotas.credit(self._db, self._table, str(charged_to), Quota.QUEUES)
        return True

    def list(self) -> list[QueueConfig]:
        """All queues, by name (one partition: a query, not a scan)."""
        found = (_config_values(v) for v in partition_items(self._db, self._table, QUEUE_PARTITION))
        return [c for c in found if c is not None]

    def forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)

    def _remember(self, name: str, config: QueueConfig | None) -> None:
        with self._lock:
            self._cache[name] = (self._clock.now_ms(), config)


def _record(config: QueueConfig) -> dict[str, Any]:
    return {"pk": QUEUE_PARTITION, "sk": config.name, "kind": "queue", **config.model_dump()}


def _config(item: dict[str, Any] | None) -> QueueConfig | None:
    return _config_values(from_wire(item)) if item else None


def _config_values(values: dict[str, Any]) -> QueueConfig | None:
    for key in ("pk", "sk", "kind"):
        values.pop(key, None)
    # to_wire drops None, so an absent limit was stored as "never dead-letter"; without this
    # it would come back as the default limit of 10
    values.setdefault("max_receive_count", None)
    return QueueConfig.model_validate(values)
