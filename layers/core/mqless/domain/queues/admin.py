"""Queue administration: create, replace, change, list, delete and purge queues, temporary
queues, and queues made on first use (with their dead-letter queues, charged to their
creator's quota in the same transaction).
"""

from __future__ import annotations

import contextlib

from aws_lambda_powertools import Logger

from mqless.domain import names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.access.quotas import Quota, Quotas
from mqless.domain.errors import Conflict, InvalidRequest, QueueNotFound
from mqless.domain.models import QueueConfig, QueueCounts, QueueSettings
from mqless.domain.queues.counting import MessageCounter
from mqless.domain.queues.parts import QueueParts
from mqless.observability import audit
from mqless.storage import keys
from mqless.storage.dedup_records import DedupRecords

logger = Logger(service="mqless", child=True)


class QueueAdmin:
    """Queues' settings and lifetimes, over the registry, checked against the policy."""

    def __init__(
        self,
        parts: QueueParts,
        *,
        dedup_records: DedupRecords,
        quotas: Quotas,
        counter: MessageCounter,
    ) -> None:
        self._registry = parts.registry
        self._index = parts.index
        self._fifo = parts.fifo
        self._clock = parts.clock
        self._policy = parts.policy
        self._leases = parts.leases
        self._dedup_records = dedup_records
        self._quotas = quotas
        self._counter = counter

    def put_queue(
        self, principal: Principal, name: str, settings: QueueSettings
    ) -> tuple[QueueConfig, bool]:
        """Create a queue or replace its settings; returns (config, created)."""
        names.validate_queue_name(name)
        if names.is_temp_queue(name):
            raise InvalidRequest(
                f"queue names starting with {names.TEMP_QUEUE_PREFIX!r} are kept for temporary "
                "queues, which the broker makes for a connection's /temp-queue/ names"
            )
        self._policy.check(principal, Action.ADMIN, name)
        now = self._clock.now_ms()
        config = QueueConfig.from_settings(name, settings, now)
        if config.dead_letter_queue:
            # failed messages will be written there: administer it too (`orders.>` does both)
            self._policy.check(principal, Action.ADMIN, config.dead_letter_queue)
        self._check_dead_letter_target(config)
        self._registry.forget(name)
        existing = self._registry.find(name)
        if existing is None:
            created = self._create(config, principal)
            if created is not None:
                audit("queue.create", principal.id, name, settings=settings.model_dump())
                return created, True
            existing = self._registry.get(name)
        return self._replace(principal, existing, config, settings), False

    def _replace(
        self,
        principal: Principal,
        existing: QueueConfig,
        config: QueueConfig,
        settings: QueueSettings,
    ) -> QueueConfig:
        """Replace an existing queue's settings with `config` (made from `settings`)."""
        if settings.shards is None:  # a replace that does not name shards keeps them
            config = config.model_copy(update={"shards": existing.shards})
        if "max_priority" not in settings.model_fields_set:  # nor one that does not name it
            config = config.model_copy(update={"max_priority": existing.max_priority})
        _check_fixed(existing, config)
        if config.dead_letter_queue:
            self.ensure_queue(config.dead_letter_queue, principal, dead_letter=True)
        kept = ("created_at", "created_by", "charged_to")
        config = config.model_copy(update={k: getattr(existing, k) for k in kept})
        self._registry.replace(config)
        audit("queue.update", principal.id, config.name, settings=settings.model_dump())
        return config

    def update_queue(self, principal: Principal, name: str, changes: QueueSettings) -> QueueConfig:
        """Change the settings named in `changes`, keeping the others (SQS's
        SetQueueAttributes; `put_queue` replaces them all). QueueNotFound if there is none."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        self._registry.forget(name)
        existing = self._registry.get(name)
        kept = QueueSettings(
            visibility_timeout=existing.visibility_timeout,
            max_receive_count=existing.max_receive_count,
            dead_letter_queue=existing.dead_letter_queue,
            retention_seconds=existing.retention_seconds,
            delay_seconds=existing.delay_seconds,
            shards=existing.shards,
            max_priority=existing.max_priority,
        )
        merged = kept.model_dump() | changes.model_dump(include=changes.model_fields_set)
        config, _ = self.put_queue(principal, name, QueueSettings.model_validate(merged))
        return config

    def get_queue(self, principal: Principal, name: str) -> tuple[QueueConfig, QueueCounts]:
        """A queue's settings and message counts."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        return config, self._counter.counts(config)

    def list_queues(self, principal: Principal) -> list[QueueConfig]:
        """Every queue the principal may administer (the others are not listed)."""
        return [
            config
            for config in self._registry.list()
            if self._policy.permits(principal, Action.ADMIN, config.name)
        ]

    def delete_queue(self, principal: Principal, name: str) -> None:
        """Delete a queue: its settings and its index (its logs expire by themselves)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        self._drop(name)
        audit("queue.delete", principal.id, name)

    def open_temporary(self, name: str) -> QueueConfig:
        """A connection's temporary queue, made on first use by the broker itself (no
        create right, no quota: it lives only as long as its connection) and with no
        dead-letter queue, which would outlive it."""
        config = self._registry.find(name)
        if config is not None:
            return config
        settings = QueueSettings(max_receive_count=None)
        created = self._create(
            QueueConfig.from_settings(name, settings, self._clock.now_ms()), None
        )
        return created if created is not None else self._registry.get(name)

    def delete_temporary(self, name: str) -> None:
        """Delete a temporary queue whose connection has gone (none there: nothing to do)."""
        if not names.is_temp_queue(name):
            raise InvalidRequest(f"{name!r} is not a temporary queue")
        with contextlib.suppress(QueueNotFound):  # gone already: a second close, say
            self._drop(name)

    def _drop(self, name: str) -> None:
        config = self._registry.find(name)
        if not self._registry.delete(name):
            self._registry.get(name)  # raises QueueNotFound
        shards = config.index_shards() if config is not None else range(keys.MAX_SHARDS)
        for shard in shards:
            self._index.drop(name, shard)
            if names.is_fifo(name):
                self._fifo.drop(name, shard)
        if names.is_fifo(name):
            self._dedup_records.drop(name)
        self._leases.forget_floors(name)

    def purge(self, principal: Principal, name: str) -> int:
        """Drop every message of a queue (dedup records stay, as in SQS); returns the count."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        purged = 0
        if config.fifo:
            purged = self._fifo.purge(name, config.shards)
        for shard in [] if config.fifo else config.index_shards():
            purged += self._index.purge(name, shard)
        self._leases.forget_floors(name)
        audit("queue.purge", principal.id, name, purged=purged)
        return purged

    # ---- queues made on first use --------------------------------------------------------

    def ensure_queue(
        self, name: str, creator: Principal | None, *, dead_letter: bool = False
    ) -> QueueConfig:
        """The queue's config, creating it (and its dead-letter queue) with defaults first if
        needed: for `creator`, who needs the create right and is charged for both, or for
        the broker itself (None)."""
        config = self._registry.find(name)
        if config is not None:
            return config
        self.check_may_create(creator, name)
        settings = QueueSettings(max_receive_count=None) if dead_letter else QueueSettings()
        config = QueueConfig.from_settings(name, settings, self._clock.now_ms())
        self._check_dead_letter_target(config)
        created = self._create(config, creator)
        if created is None:
            return self._registry.get(name)
        logger.info(
            "queue created on first use",
            extra={"queue": name, "created_by": created.created_by},
        )
        return created

    def check_may_create(self, creator: Principal | None, name: str) -> None:
        """QueueNotFound unless `creator` (None: the broker) may make queue `name`."""
        # As SQS does for a missing queue, a 404: the queue is not there for this sender
        if creator is not None and names.is_temp_queue(name):
            raise QueueNotFound(
                f"temporary queue {name!r} does not exist: only its connection makes it, and "
                "it goes when that connection closes"
            )
        if creator is not None and not self._policy.permits(creator, Action.CREATE, name):
            raise QueueNotFound(
                f"queue {name!r} does not exist, and {creator.id!r} may not create it "
                f"(creating a queue on first use needs the create right on {name!r})"
            )

    def _create(self, config: QueueConfig, creator: Principal | None) -> QueueConfig | None:
        """Store a new queue, and its dead-letter queue if that is missing too, charging
        `creator` for both in the same transaction; None if the queue exists already."""
        for _ in range(3):
            new = [config]
            dlq = config.dead_letter_queue
            if dlq is not None and self._registry.find(dlq) is None:
                dead_letters = QueueSettings(max_receive_count=None)
                new.insert(0, QueueConfig.from_settings(dlq, dead_letters, config.created_at))
            what = " and its dead-letter queue ".join(repr(c.name) for c in reversed(new))
            charge = self._quotas.charge(creator, Quota.QUEUES, len(new), f"queue {what}")
            stamp = {
                "created_by": None if creator is None else creator.id,
                "charged_to": None if charge is None else charge.principal_id,
            }
            stamped = [c.model_copy(update=stamp) for c in new]
            if self._registry.create(stamped, charge):
                return stamped[-1]
            if self._registry.find(config.name) is not None:
                return None
            # the dead-letter queue appeared (or went) meanwhile: look again
        raise Conflict(f"queue {config.name!r} is being created concurrently; retry")

    def _check_dead_letter_target(self, config: QueueConfig) -> None:
        dlq = config.dead_letter_queue
        if dlq is None:
            return
        if dlq == config.name:
            raise InvalidRequest("a queue cannot be its own dead-letter queue")
        if names.is_fifo(dlq) != config.fifo:
            kind = "FIFO" if config.fifo else "standard"
            raise InvalidRequest(f"the dead-letter queue of a {kind} queue must be {kind} too")
        existing = self._registry.find(dlq)
        if existing is not None and existing.fifo != config.fifo:
            raise Conflict(f"queue {dlq!r} cannot be the dead-letter queue of {config.name!r}")


def _check_fixed(existing: QueueConfig, config: QueueConfig) -> None:
    """Conflict if `config` changes what a queue fixed when it was made (its priority lanes,
    a FIFO queue's shards) or has fewer shards than it has."""
    name = existing.name
    if config.max_priority != existing.max_priority:
        raise Conflict(
            f"queue {name!r} has max_priority {existing.max_priority}, fixed when it was "
            "made: its messages wait in the lanes it had"
        )
    if existing.fifo and config.shards != existing.shards:
        raise Conflict(
            f"FIFO queue {name!r} has {existing.shards} shards, fixed when it was made: a "
            "group's messages stay in the shard its name hashes to"
        )
    if config.shards < existing.shards:
        raise Conflict(
            f"queue {name!r} has {existing.shards} shards; shards can grow, never shrink "
            "(messages wait in every shard)"
        )
