"""Queue semantics: send, lease, ack, nack, visibility, dead letters, redrive, FIFO, sweep.

The rules live here; storage engine v2 keeps the data (docs/storage-engine.md): a body is
written once into its queue's log (`storage.log`) and never rewritten; the dispatch
function indexes it (`indexing.py`); leases and settlements are small writes shared by many
messages (`leases.py`). Moving a message (dead letter, redrive, move, copy) writes a
reference to its body into the target's log, never the body again. Every operation takes
the calling principal and asks the policy first, so permissions are checked in one place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aws_lambda_powertools import Logger

from mqless.domain import models, names, selectors
from mqless.domain.access.principals import Action, AllowAll, Policy, Principal
from mqless.domain.access.quotas import Quota, Quotas
from mqless.domain.clock import Clock
from mqless.domain.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    MessageNotFound,
    MqlessError,
    NotADeadLetterQueue,
    QueueNotFound,
    StaleReceipt,
    Throttled,
)
from mqless.domain.models import (
    BrowsedMessage,
    Delivery,
    EntryFailure,
    NewMessage,
    QueueConfig,
    QueueCounts,
    QueueSettings,
    QueueStats,
    RedriveResult,
    SendResult,
)
from mqless.domain.queues.dedup import DedupHasher
from mqless.domain.queues.leases import Acks, Leases, Taken
from mqless.domain.queues.receipts import Lease, decode_receipt
from mqless.domain.queues.refs import genuine, ref_mac
from mqless.domain.selectors import message_lookup
from mqless.observability import audit, metrics
from mqless.storage import keys
from mqless.storage.dedup_records import DedupRecords
from mqless.storage.destinations import QueueRegistry
from mqless.storage.groups import FifoEntry, FifoIndex
from mqless.storage.index import SETTLED, Entry, IndexStore, Ref, Segment
from mqless.storage.log import (
    BODY_OVERHEAD,
    ITEM_OVERHEAD,
    MAX_ITEM_BYTES,
    Body,
    LogItem,
    LogStore,
    Source,
)
from mqless.storage.sealing import (
    BodyCipher,
    Headers,
    Holder,
    OpenedMessage,
    open_logged,
    seal_many,
)
from mqless.storage.wake import WakeMarkers

logger = Logger(service="mqless", child=True)

MAX_BROWSE: Final = 100
FIRST_POLL_SECONDS: Final = 0.05
MAX_POLL_SECONDS: Final = 1.0
SEALING_OVERHEAD: Final = 1 + 12 + 16 + 4  # version, nonce, tag, header length
QUARANTINE: Final = "quarantine"  # a log shard the dispatch function never indexes
COUNT_BOUND: Final = 1000  # references a count reads at most per queue
SWEEP_SEGMENTS: Final = 16
_DONE: Final = 10**10  # a browse cursor's mark for a shard read to its end
# how long a message being dead-lettered is held first: moving it takes milliseconds, and
# no other receiver may take it meanwhile (a lease of 0 s, or one that ran out, would let
# two receivers both find it over its limit and refer it twice)
DEAD_LETTER_HOLD_MS: Final = 30_000


@dataclass
class SweepReport:
    queues: int = 0
    dead_lettered: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AckedAndReceived:
    """What a receive that acknowledged receipts did: each receipt's outcome, as `ack`
    reports it, and the messages leased."""

    acked: list[str]
    failed: list[EntryFailure]
    messages: list[Delivery]


@dataclass(frozen=True)
class _Peeked:
    """A message as browsing sees it, where it is in its shard's order."""

    place: int  # segment number (a FIFO queue's: in its one sequence)
    slot: int  # slot in the segment
    ref: Ref
    until: int
    count: int
    reason: str
    group: str | None = None


@dataclass(frozen=True)
class _Found:
    """A message found by id in a queue's index (for the operator's actions)."""

    ref: Ref
    shard: int
    place: str  # segment number
    position: int
    count: int
    reason: str


class QueueService:
    """The broker's queue operations, over a registry, the storage engine and a body cipher."""

    def __init__(
        self,
        *,
        registry: QueueRegistry,
        log: LogStore,
        index: IndexStore,
        fifo: FifoIndex,
        dedup_records: DedupRecords,
        wake: WakeMarkers,
        cipher: BodyCipher,
        dedup: DedupHasher,
        clock: Clock,
        policy: Policy | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._registry = registry
        self._log = log
        self._index = index
        self._fifo = fifo
        self._dedup_records = dedup_records
        self._wake = wake
        self._cipher = cipher
        self._dedup = dedup
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self._quotas = quotas or Quotas(self._policy)
        self.leases = Leases(index, fifo, clock)
        self._verdicts = _Verdicts()
        self._send_shards: dict[str, tuple[int, int]] = {}  # queue: (its shards, ours)

    # ---- queue admin ------------------------------------------------------------------

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
        if settings.shards is None:  # a replace that does not name shards keeps them
            config = config.model_copy(update={"shards": existing.shards})
        if "max_priority" not in settings.model_fields_set:  # nor one that does not name it
            config = config.model_copy(update={"max_priority": existing.max_priority})
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
        if config.dead_letter_queue:
            self._ensure_queue(config.dead_letter_queue, principal, dead_letter=True)
        kept = ("created_at", "created_by", "charged_to")
        config = config.model_copy(update={k: getattr(existing, k) for k in kept})
        self._registry.replace(config)
        audit("queue.update", principal.id, name, settings=settings.model_dump())
        return config, False

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
        return config, self.counts(config)

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

    def has_queue(self, name: str) -> bool:
        """Does the queue exist? (internal: no permission involved)"""
        return self._registry.find(name) is not None

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
        self.leases.forget_floors(name)

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
        self.leases.forget_floors(name)
        audit("queue.purge", principal.id, name, purged=purged)
        return purged

    # ---- operator's view ----------------------------------------------------------------

    def counts(self, config: QueueConfig) -> QueueCounts:
        """Visible, in flight and delayed, exact up to COUNT_BOUND references read."""
        now = self._clock.now_ms()
        visible = in_flight = delayed = 0
        read = 0
        bounded = False
        for shard in config.index_shards():
            for until, count, _ in self._states(config, shard):
                read += 1
                if read > COUNT_BOUND:
                    bounded = True
                    break
                if 0 <= until <= now:
                    visible += 1
                elif count > 0:
                    in_flight += 1
                else:
                    delayed += 1
            if bounded:
                break
        return QueueCounts(
            visible=visible, in_flight=in_flight, delayed=delayed, approximate=bounded
        )

    def _states(self, config: QueueConfig, shard: int) -> Iterable[tuple[int, int, Ref]]:
        """(until, receive count, ref) of every unsettled reference of a shard, in order."""
        if config.fifo:
            # one sequence for the whole queue: shard 0 stands for it
            sequence = self.leases.fifo_segments(config, limit=None) if shard == 0 else ()
            for fifo in sequence:
                now = self._clock.now_ms()
                for e in fifo.entries:
                    if not e.gone(now):
                        yield e.until, e.count, e.ref
            return
        start = self.leases.floor(config.name, shard)
        while True:
            segments = self._index.segments(config.name, shard, start, limit=8)
            now = self._clock.now_ms()
            for segment in segments:
                for entry in segment.entries:
                    if not entry.settled and not entry.expired(now):
                        yield entry.until, entry.count, entry.ref
            if len(segments) < 8:
                return
            start = segments[-1].seq + 1

    def stats(self, principal: Principal, name: str, *, consumers: int = 0) -> QueueStats:
        """Counts, the oldest message's age and the dead-letter depth, from bounded reads."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        now = self._clock.now_ms()
        counts = self.counts(config)
        oldest = self._oldest_visible_ms(config, now)
        dlq_visible: int | None = None
        approximate = counts.approximate
        if config.dead_letter_queue:
            dlq = self._registry.find(config.dead_letter_queue)
            if dlq is not None:
                dlq_counts = self.counts(dlq)
                dlq_visible = dlq_counts.visible
                approximate = approximate or dlq_counts.approximate
        return QueueStats(
            name=name,
            fifo=config.fifo,
            visible=counts.visible,
            in_flight=counts.in_flight,
            delayed=counts.delayed,
            oldest_age_seconds=None if oldest is None else max(0, (now - oldest) // 1000),
            dead_letter_queue=config.dead_letter_queue,
            dead_letter_visible=dlq_visible,
            consumers=consumers,
            approximate=approximate,
        )

    def _oldest_visible_ms(self, config: QueueConfig, now: int) -> int | None:
        """When the oldest visible message was sent (among the first 100 per shard)."""
        oldest: int | None = None
        for shard in config.index_shards():
            for read, (until, _, ref) in enumerate(self._states(config, shard)):
                if read >= 100:
                    break
                if 0 <= until <= now:
                    sent = keys.id_time_ms(ref.item)
                    oldest = sent if oldest is None else min(oldest, sent)
        return oldest

    def browse(
        self, principal: Principal, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[BrowsedMessage], str | None]:
        """A page of messages peeked at without leasing, and the next cursor: in send order
        (the shards merged by message time; a FIFO queue in its one sequence)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        if not 1 <= limit <= MAX_BROWSE:
            raise InvalidRequest(f"limit must be 1 to {MAX_BROWSE}")
        config = self._registry.get(name)
        starts = _decode_cursor(cursor, config)
        candidates: list[tuple[int, _Peeked]] = []
        # a cursor holds a position per index shard (a priority queue's lanes' too), in
        # `index_shards` order
        for number, shard in enumerate(config.index_shards()):
            for count, peeked in enumerate(self._peek_shard(config, shard, starts[number])):
                if count > limit or (config.fifo and len(candidates) > limit):
                    break
                candidates.append((number, peeked))
        if not config.fifo:
            candidates.sort(key=lambda c: (keys.id_time_ms(c[1].ref.item), c[1].ref.item))
        page = candidates[:limit]
        next_cursor = None
        if len(candidates) > limit:
            positions = list(starts)
            for shard, peeked in page:
                positions[shard] = (peeked.place, peeked.slot + 1)
            if config.fifo:  # the shards before the last one taken from are done
                last = page[-1][0]
                positions = [(_DONE, 0) if s < last else p for s, p in enumerate(positions)]
            next_cursor = _encode_cursor(positions)
        items = self._log.items((p.ref.log, p.ref.item) for _, p in page)
        now = self._clock.now_ms()
        return [
            self._browsed(config, items.get((p.ref.log, p.ref.item)), p, now) for _, p in page
        ], next_cursor

    def _peek_shard(
        self, config: QueueConfig, shard: int, start: tuple[int, int]
    ) -> Iterable[_Peeked]:
        """A shard's unsettled messages from a position on, in its order."""
        first_place, first_slot = start
        if first_place >= _DONE:
            return
        now = self._clock.now_ms()
        if config.fifo:
            # one sequence for the whole queue, browsed in its order: shard 0 stands for it
            sequence = self.leases.fifo_segments(config, consistent=True, limit=None)
            for fifo in sequence if shard == 0 else ():
                for e in fifo.entries:
                    if (fifo.seq, e.slot) < start or e.gone(now):
                        continue
                    yield _Peeked(fifo.seq, e.slot, e.ref, e.until, e.count, e.reason)
            return
        seq = max(first_place, self.leases.floor(config.name, shard))
        while True:
            segments = self._index.segments(config.name, shard, seq, limit=8, consistent=True)
            for segment in segments:
                for entry in segment.entries:
                    if (segment.seq, entry.slot) < start or entry.settled or entry.expired(now):
                        continue
                    yield _Peeked(
                        segment.seq, entry.slot, entry.ref, entry.until, entry.count, entry.reason
                    )
            if len(segments) < 8:
                return
            seq = segments[-1].seq + 1

    def _browsed(
        self, config: QueueConfig, item: LogItem | None, peeked: _Peeked, now: int
    ) -> BrowsedMessage:
        ref, until, count, group = peeked.ref, peeked.until, peeked.count, peeked.group
        reason = peeked.reason
        body: str | None = None
        error: str | None = None
        headers = Headers()
        try:
            if not genuine(self._dedup.mac, config.name, ref):
                raise IntegrityError("a reference the broker did not put in this queue")
            if item is None or ref.slot >= len(item.bodies):
                raise IntegrityError("the message body is gone (expired)")
            opened = self._open(item, ref)
            headers = opened.headers
            body = (
                base64.b64encode(opened.body).decode() if headers.binary else opened.body.decode()
            )
        except IntegrityError as exc:
            error = f"integrity: {exc.message}"
        if 0 <= until <= now:
            state = "visible"
        elif count > 0:
            state = "in_flight"
        else:
            state = "delayed"
        source, why = _reason(reason)
        return BrowsedMessage(
            message_id=ref.message_id,
            body=body,
            binary=headers.binary,
            attributes=dict(headers.attributes),
            content_type=headers.content_type,
            correlation_id=headers.correlation_id,
            reply_to=headers.reply_to,
            sent_at=keys.id_time_ms(ref.item),
            receive_count=count,
            state=state,
            visible_at=until if until > 0 else None,
            group_id=group if group is not None else (item.group if item else None),
            dead_letter_reason=why,
            source_queue=source,
            priority=headers.priority,
            error=error,
        )

    def delete_message(self, principal: Principal, name: str, message_id: str) -> None:
        """Delete one message, whatever its state (a consumer's late ack is then stale)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        found = self._find(config, message_id)
        if found is None or not self._settle_found(config, found):
            raise MessageNotFound(f"no message {message_id[:100]!r} in queue {name!r}")
        audit("message.delete", principal.id, name, message_id=message_id)

    def move_message(
        self, principal: Principal, name: str, message_id: str, *, to: str, copy: bool = False
    ) -> str:
        """Move (or copy) one message to another queue; it keeps its id and body."""
        names.validate_queue_name(name)
        names.validate_queue_name(to)
        self._policy.check(principal, Action.ADMIN, name)
        self._policy.check(principal, Action.SEND, to)
        if to == name:
            raise InvalidRequest("the target queue must differ from the source")
        config = self._registry.get(name)
        target = self._ensure_queue(to, principal)
        found = self._find(config, message_id)
        if found is None:
            raise MessageNotFound(f"no message {message_id[:100]!r} in queue {name!r}")
        item = self._log.items([(found.ref.log, found.ref.item)]).get(
            (found.ref.log, found.ref.item)
        )
        if item is None:
            raise MessageNotFound(f"message {message_id[:100]!r} has expired")
        if target.fifo and not item.group:
            raise InvalidRequest(f"queue {to!r} is FIFO and the message has no group")
        try:
            if not genuine(self._dedup.mac, config.name, found.ref):
                raise IntegrityError("a reference the broker did not put in this queue")
            self._open(item, found.ref)
        except IntegrityError as exc:
            raise Conflict(
                f"message {message_id[:100]!r} cannot be moved: integrity: {exc.message}"
            ) from exc
        self._refer(config, found.ref, target, item)
        if not copy and not self._settle_found(config, found):
            raise MessageNotFound(f"message {message_id[:100]!r} was taken meanwhile")
        audit(
            "message.copy" if copy else "message.move",
            principal.id,
            name,
            message_id=message_id,
            to=to,
        )
        return message_id

    def _find(self, config: QueueConfig, message_id: str) -> _Found | None:
        item_id, slot = keys.locate(message_id)
        for shard in config.index_shards():
            for peeked in self._peek_shard(config, shard, (0, 0)):
                if peeked.ref.item == item_id and peeked.ref.slot == slot:
                    place = peeked.group if peeked.group is not None else str(peeked.place)
                    return _Found(
                        peeked.ref, shard, place, peeked.slot, peeked.count, peeked.reason
                    )
        return None

    def _settle_found(self, config: QueueConfig, found: _Found) -> bool:
        if config.fifo:
            fifo = self._fifo.settle_any(
                config.name, config.shards, int(found.place), [found.position]
            )
            return fifo is not None
        return (
            self._index.settle_any(config.name, found.shard, int(found.place), [found.position])
            is not None
        )

    # ---- producing ----------------------------------------------------------------------

    def send(self, principal: Principal, queue: str, message: NewMessage) -> SendResult:
        """Accept one message (creating the queue with defaults if it does not exist and the
        principal may create it)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        config = self._ensure_queue(queue, principal)
        self._check_message(config, message)
        (result,) = self._store(config, [message])
        if not result.duplicate:
            metrics.count("Sent", queue=queue)
        return result

    def send_batch(
        self, principal: Principal, queue: str, entries: Sequence[tuple[str, NewMessage]]
    ) -> tuple[list[tuple[str, SendResult]], list[EntryFailure]]:
        """Accept up to 10 messages; each entry succeeds or fails on its own, as in SQS.
        Their bodies share as few log items as the item size allows."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        if not 1 <= len(entries) <= models.MAX_BATCH:
            raise InvalidRequest(f"a batch holds 1 to {models.MAX_BATCH} entries")
        ids = [entry_id for entry_id, _ in entries]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("batch entry ids must be unique")
        config = self._ensure_queue(queue, principal)
        failed: list[EntryFailure] = []
        accepted: list[tuple[str, NewMessage]] = []
        for entry_id, message in entries:
            try:
                self._check_message(config, message)
                accepted.append((entry_id, message))
            except MqlessError as exc:
                failed.append(EntryFailure(id=entry_id, error=exc.code, message=exc.message))
        done: list[tuple[str, SendResult]] = []
        if accepted:
            results = self._store(config, [m for _, m in accepted])
            done = [(entry_id, r) for (entry_id, _), r in zip(accepted, results, strict=True)]
        sent = sum(1 for _, result in done if not result.duplicate)
        if sent:
            metrics.count("Sent", queue=queue, value=sent)
        return done, failed

    def open_for_send(self, principal: Principal, queue: str) -> QueueConfig:
        """Check that `principal` may send to `queue`, creating it with defaults if new (and
        the principal may create it): a scheduled send, which stores its message elsewhere."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        return self._ensure_queue(queue, principal)

    def _check_message(self, config: QueueConfig, message: NewMessage) -> None:
        message.check_size()
        if config.fifo and not message.group_id:
            raise InvalidRequest(f"queue {config.name!r} is FIFO: group_id is required")
        if not config.fifo and message.dedup_id:
            raise InvalidRequest(
                f"dedup_id is only for FIFO queues; {config.name!r} is a standard queue"
            )

    def _store(self, config: QueueConfig, messages: Sequence[NewMessage]) -> list[SendResult]:
        """Write messages into the queue's log, as few items as possible, in order."""
        now = self._clock.now_ms()
        results: list[SendResult | None] = [None] * len(messages)
        for positions in _item_groups(config, messages, now):
            item_id = keys.new_item_id(now)
            kept: list[int] = []
            for position in positions:
                message = messages[position]
                message_id = keys.message_id(item_id, len(kept))
                if config.fifo:
                    original = self._deduplicate(config, message, message_id, now)
                    if original is not None:
                        results[position] = SendResult(message_id=original, duplicate=True)
                        continue
                kept.append(position)
                results[position] = SendResult(
                    message_id=message_id,
                    sequence=keys.next_sequence(now) if config.fifo else None,
                )
            if kept:
                self._write_item(config, item_id, [messages[p] for p in kept], now)
        return [r for r in results if r is not None]

    def _write_item(
        self, config: QueueConfig, item_id: str, messages: Sequence[NewMessage], now: int
    ) -> None:
        holder = Holder.queue(config.name)
        sealed = seal_many(
            self._cipher,
            [
                (
                    Headers.of(m, content_dedup=config.fifo),
                    m.body,
                    keys.message_id(item_id, j),
                )
                for j, m in enumerate(messages)
            ],
            holder=holder,
        )
        bodies = [
            Body(
                s.ciphertext,
                s.encrypted_key,
                visible_at=_visible_at(config, m, now),
                priority=m.priority,
            )
            for s, m in zip(sealed, messages, strict=True)
        ]
        group = messages[0].group_id if config.fifo else None
        shard = (
            keys.shard_of(group, config.shards) if group is not None else self._send_shard(config)
        )
        self._log.put(
            keys.queue_log(config.name, shard),
            item_id,
            bodies,
            expires_at=_expires_at(config, messages[0], now),
            group=group,
        )

    def _send_shard(self, config: QueueConfig) -> int:
        """The log shard this process sends a queue's messages to: always the same one, so one
        producer's messages are delivered in the order it sent them; several producers (each
        Lambda instance is one) spread a busy queue over every shard. When the queue grows,
        the process draws again, so warm instances spread over the new shards too."""
        shards, shard = self._send_shards.get(config.name, (0, 0))
        if shards != config.shards:
            shard = random.randrange(config.shards)
            self._send_shards[config.name] = (config.shards, shard)
        return shard

    def _deduplicate(
        self, config: QueueConfig, message: NewMessage, message_id: str, now: int
    ) -> str | None:
        # SQS's rule (the client's id, else the body's SHA-256), stored only as a keyed hash
        dedup_id = message.dedup_id or hashlib.sha256(message.body).hexdigest()
        record_id = self._dedup.record_id(str(Holder.queue(config.name)), dedup_id)
        return self._dedup_records.claim(
            config.name,
            record_id,
            message_id,
            now_ms=now,
            window_ms=models.DEDUP_WINDOW_SECONDS * 1000,
        )

    # ---- consuming ----------------------------------------------------------------------

    def check_send(self, principal: Principal, queue: str) -> None:
        """Forbidden unless `principal` may send to `queue`, QueueNotFound unless it exists
        or `principal` may create it (for frames held until later)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        if self._registry.find(queue) is None:
            self._check_may_create(principal, queue)

    def open_for_receive(self, principal: Principal, queue: str) -> QueueConfig:
        """Check that `principal` may consume `queue`, creating it with defaults if new (and
        the principal may create it).

        Push consumers subscribe before anything is sent, as on ActiveMQ, where a
        subscription creates its queue.
        """
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        return self._ensure_queue(queue, principal)

    def wake(self, queue: str) -> None:
        """Ask for another pump of the queue's push consumers (through the stream)."""
        self._wake.wake(queue, self._clock.now_ms())

    def queue_names(self) -> list[str]:
        """Every queue's name (internal: the sweeper's round, no permission involved)."""
        return [config.name for config in self._registry.list()]

    def has_visible(self, queue: str) -> bool:
        """Whether anything may be leasable now (reads only; the index may lag)."""
        config = self._registry.find(queue)
        if config is None:
            return False
        now = self._clock.now_ms()
        # a standard queue's shards from where messages were last found: a push pump after
        # the dispatch function indexed a producer's messages reads that shard first, not
        # every empty one before it (0.5 RRU each)
        order = range(config.shards) if config.fifo else self.leases.shard_order(config)
        for shard in order:
            if not config.fifo:
                # as far as a push consumer's receive reads: messages held by consumers (a
                # prefetch of 100 is 100 leased references) do not hide the ones after them
                if self.leases.visible_in(config.name, shard):
                    return True
                continue
            for read, (until, _, _) in enumerate(self._states(config, shard)):
                if 0 <= until <= now:
                    return True
                if read >= 64:
                    break
        return False

    def left_visible(self, queue: str, shards: Iterable[int]) -> bool:
        """Whether anything is leasable now in these shards of a standard queue, strongly
        consistent (a FIFO queue: True, not looked at)."""
        config = self._registry.find(queue)
        if config is None:
            return False
        if config.fifo:
            return True
        return any(self.leases.visible_in(queue, s, consistent=True) for s in shards)

    def config_of(self, queue: str) -> QueueConfig:
        """The queue's settings, as the registry caches them (QueueNotFound if none)."""
        return self._registry.get(queue)

    def receive(
        self,
        principal: Principal,
        queue: str,
        *,
        max_messages: int = 1,
        wait_seconds: float = 0,
        visibility_timeout: int | None = None,
        owner: str | None = None,
        oldest_first: bool = False,
        selector: str | None = None,
    ) -> list[Delivery]:
        """Lease up to `max_messages`, waiting up to `wait_seconds` for the first to arrive.

        Receivers take free messages of the oldest segments in a random order; once they
        compete, by ticket (`leases.py`); `oldest_first` keeps their order instead (push
        consumers). With a JMS `selector` (checked already), only messages it selects are
        leased, oldest first: the others are never claimed and stay for other consumers.
        """
        config, lease_ms = self._open_receive(
            principal, queue, max_messages, wait_seconds, visibility_timeout, owner
        )
        return self._poll(
            config,
            max_messages,
            wait_seconds,
            lease_ms,
            oldest_first=oldest_first,
            selector=selector,
        )

    def ack_and_receive(
        self,
        principal: Principal,
        queue: str,
        receipts: Sequence[str],
        *,
        max_messages: int = 1,
        wait_seconds: float = 0,
        visibility_timeout: int | None = None,
    ) -> AckedAndReceived:
        """Acknowledge `receipts` and lease up to `max_messages` ("ack and take the next").

        The acks are applied whatever the receive finds, each as `ack` would (a stale
        receipt fails alone). In a standard queue, one whose segment the receive leases
        from is settled in the lease's write: a lone consumer's ack and next lease are
        most often one write (`leases.py`). A FIFO queue's are settled before the receive,
        so that a group's next message can be its head.
        """
        config, lease_ms = self._open_receive(
            principal, queue, max_messages, wait_seconds, visibility_timeout, None
        )
        _, parsed, failed = self._settle_prelude(principal, queue, receipts)
        acks = Acks([lease for _, lease in parsed])
        try:
            if config.fifo:
                self.leases.settle_acks(config, acks)
            deliveries = self._poll(config, max_messages, wait_seconds, lease_ms, acks=acks)
        finally:
            self.leases.settle_acks(config, acks)
        acked: list[str] = []
        for (text, _), ok in zip(parsed, acks.outcome, strict=True):
            if ok:
                acked.append(text)
            else:
                failed.append(_stale(text))
        if acked:
            metrics.count("Acked", queue=queue, value=len(acked))
        return AckedAndReceived(acked=acked, failed=failed, messages=deliveries)

    def _open_receive(
        self,
        principal: Principal,
        queue: str,
        max_messages: int,
        wait_seconds: float,
        visibility_timeout: int | None,
        owner: str | None,
    ) -> tuple[QueueConfig, int]:
        """The queue a receive may lease from, and its lease length (ms)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        if owner is None and names.is_temp_queue(queue):
            # every requester holds `receive` on temp-queue.>: only the connection that made
            # one (a push consumer, `owner` set, checked on subscribe) may take its messages
            raise Forbidden(
                f"temporary queue {queue!r} is private to the WebSocket connection that made "
                "it: subscribe to its /temp-queue/ name on that connection"
            )
        if not 1 <= max_messages <= models.MAX_BATCH:
            raise InvalidRequest(f"max_messages must be 1 to {models.MAX_BATCH}")
        if not 0 <= wait_seconds <= models.MAX_WAIT_SECONDS:
            raise InvalidRequest(f"wait_seconds must be 0 to {models.MAX_WAIT_SECONDS}")
        if visibility_timeout is not None and not (
            0 <= visibility_timeout <= models.MAX_VISIBILITY_SECONDS
        ):
            raise InvalidRequest(f"visibility_timeout must be 0 to {models.MAX_VISIBILITY_SECONDS}")
        config = self._registry.get(queue)
        lease_seconds = (
            config.visibility_timeout if visibility_timeout is None else visibility_timeout
        )
        return config, lease_seconds * 1000

    def _poll(
        self,
        config: QueueConfig,
        max_messages: int,
        wait_seconds: float,
        lease_ms: int,
        *,
        oldest_first: bool = False,
        selector: str | None = None,
        acks: Acks | None = None,
    ) -> list[Delivery]:
        """Look for messages until some are leased or `wait_seconds` have passed; `acks`
        ride on the first look's lease writes, and what they did not settle is settled
        before any wait (an ack never waits for a message)."""
        deadline = self._clock.now_ms() + int(wait_seconds * 1000)
        pause = FIRST_POLL_SECONDS
        while True:
            selection = None if selector is None else _Selection(self, config, selector)
            found = self._deliver(config, max_messages, lease_ms, oldest_first, selection, acks)
            if acks is not None:
                self.leases.settle_acks(config, acks)
                acks = None
            remaining = (deadline - self._clock.now_ms()) / 1000
            if found or remaining <= 0:
                return found
            self._clock.sleep(min(pause, remaining))
            pause = min(pause * 2, MAX_POLL_SECONDS)

    def _deliver(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        selection: _Selection | None = None,
        acks: Acks | None = None,
    ) -> list[Delivery]:
        """Lease messages and open them; what may not go out is expired or dead-lettered."""
        deliveries: list[Delivery] = []
        for _ in range(3):  # a round that only expired or dead-lettered looks again
            taken = self.leases.take(
                config,
                want - len(deliveries),
                lease_ms,
                oldest_first=oldest_first,
                wanted=None if selection is None else selection.wanted,
                acks=acks,
            )
            if not taken:
                break
            known = None if selection is None else selection.items
            deliveries.extend(self._open_taken(config, taken, known))
            if len(deliveries) >= want or len(deliveries) > 0:
                break
        return deliveries

    def _open_taken(
        self,
        config: QueueConfig,
        taken: Sequence[Taken],
        known: dict[tuple[str, str], LogItem] | None = None,
    ) -> list[Delivery]:
        """Open what was leased (`known`: log items read already, by a selector's verdict).
        If AWS throttles that midway (reading the bodies, the dedup secret, decrypting) past
        the SDK's retries, nothing of this round goes out: every lease not already
        dead-lettered is given back, uncounted."""
        dead_lettered: set[int] = set()
        try:
            return self._open_each(config, taken, known or {}, dead_lettered)
        except Throttled:
            self._give_back_unopened(config, [t for t in taken if id(t) not in dead_lettered])
            raise

    def _open_each(
        self,
        config: QueueConfig,
        taken: Sequence[Taken],
        known: dict[tuple[str, str], LogItem],
        dead_lettered: set[int],
    ) -> list[Delivery]:
        items = {k: known[k] for k in ((t.ref.log, t.ref.item) for t in taken) if k in known}
        items |= self._log.items(
            (t.ref.log, t.ref.item) for t in taken if (t.ref.log, t.ref.item) not in items
        )
        now = self._clock.now_ms()
        deliveries: list[Delivery] = []
        gone: list[Lease] = []
        limit = config.max_receive_count
        for t in taken:
            if not genuine(self._dedup.mac, config.name, t.ref):
                # never dead-lettered: that would refer the body to another queue for real
                logger.error(
                    "a reference the broker did not put in this queue; dropped",
                    extra={"queue": config.name, "message_id": t.ref.message_id},
                )
                gone.append(t.lease)
                continue
            item = items.get((t.ref.log, t.ref.item))
            if item is None or item.expires_at <= now // 1000 or t.ref.slot >= len(item.bodies):
                gone.append(t.lease)
                metrics.count("Expired", queue=config.name)
                logger.info(
                    "message expired", extra={"queue": config.name, "message_id": t.ref.message_id}
                )
                continue
            if limit is not None and t.count > limit:
                self._dead_letter(
                    config, t, item, f"max_receive_count exceeded ({limit} deliveries)", t.count - 1
                )
                dead_lettered.add(id(t))
                continue
            try:
                opened = self._open(item, t.ref)
            except IntegrityError as exc:
                logger.error(
                    "message failed authentication",
                    extra={
                        "queue": config.name,
                        "message_id": t.ref.message_id,
                        "reason": exc.message,
                    },
                )
                self._dead_letter(config, t, item, f"integrity: {exc.message}", t.count)
                dead_lettered.add(id(t))
                continue
            delivery = self._delivery(config, t, item, opened)
            deliveries.append(delivery)
            metrics.count("Delivered", queue=config.name)
            if delivery.receive_count > 1:
                metrics.count("Redelivered", queue=config.name)
            metrics.latency(now - delivery.sent_at, queue=config.name)
        if gone:
            self.leases.set_until(config, gone, SETTLED)
        return deliveries

    def _give_back_unopened(self, config: QueueConfig, taken: Sequence[Taken]) -> None:
        """A receive that leased messages and then could not read or decrypt them (AWS
        throttled it) delivered them to no one: they are free again at once and the failed
        receive does not count towards the dead-letter queue. If the give-back is throttled
        too, the leases run out as any lease does (then counted)."""
        try:
            self._hand_back(config, taken)
        except Throttled:
            logger.warning(
                "could not give back leases after a throttled receive; they will run out",
                extra={"queue": config.name, "leases": len(taken)},
            )

    def _delivery(
        self, config: QueueConfig, taken: Taken, item: LogItem, opened: OpenedMessage
    ) -> Delivery:
        source, why = _reason(taken.reason)
        return Delivery(
            message_id=taken.ref.message_id,
            receipt=taken.lease.encode(self._dedup.sign),
            queue=config.name,
            body=opened.body,
            binary=opened.headers.binary,
            attributes=dict(opened.headers.attributes),
            content_type=opened.headers.content_type,
            correlation_id=opened.headers.correlation_id,
            reply_to=opened.headers.reply_to,
            receive_count=taken.count,
            sent_at=keys.id_time_ms(taken.ref.item),
            group_id=item.group,
            dedup_id=opened.dedup_id,
            dead_letter_reason=why,
            source_queue=source,
            origin=opened.origin,
            priority=opened.headers.priority,
        )

    def _open(self, item: LogItem, ref: Ref) -> OpenedMessage:
        return open_logged(self._cipher, item, ref.slot, now_ms=self._clock.now_ms())

    def ack(
        self, principal: Principal, queue: str, receipts: Sequence[str]
    ) -> tuple[list[str], list[EntryFailure]]:
        """Settle messages under their leases; a stale receipt settles nothing."""
        done, failed = self._settle(principal, queue, receipts, lambda: SETTLED)
        if done:
            metrics.count("Acked", queue=queue, value=len(done))
        return done, failed

    def nack(
        self, principal: Principal, queue: str, receipts: Sequence[str], delay_seconds: int = 0
    ) -> tuple[list[str], list[EntryFailure]]:
        """Give messages back now or after a delay; the delivery counts as a failed attempt."""
        if not 0 <= delay_seconds <= models.MAX_VISIBILITY_SECONDS:
            raise InvalidRequest(f"delay_seconds must be 0 to {models.MAX_VISIBILITY_SECONDS}")
        done, failed = self._settle(
            principal,
            queue,
            receipts,
            lambda: self._clock.now_ms() + delay_seconds * 1000,
            release=True,
        )
        if done:
            metrics.count("Nacked", queue=queue, value=len(done))
        return done, failed

    def change_visibility(
        self, principal: Principal, queue: str, receipts: Sequence[str], timeout_seconds: int
    ) -> tuple[list[str], list[EntryFailure]]:
        """Set the remaining lease to `timeout_seconds` from now (0 releases at once)."""
        if not 0 <= timeout_seconds <= models.MAX_VISIBILITY_SECONDS:
            raise InvalidRequest(f"visibility_timeout must be 0 to {models.MAX_VISIBILITY_SECONDS}")
        return self._settle(
            principal, queue, receipts, lambda: self._clock.now_ms() + timeout_seconds * 1000
        )

    def _settle(
        self,
        principal: Principal,
        queue: str,
        receipts: Sequence[str],
        until: Callable[[], int],
        *,
        release: bool = False,
    ) -> tuple[list[str], list[EntryFailure]]:
        """Apply a lease change to each receipt; a stale one changes nothing."""
        config, parsed, failed = self._settle_prelude(principal, queue, receipts)
        done: list[str] = []
        if parsed:
            leases = [lease for _, lease in parsed]
            outcome = self.leases.set_until(config, leases, until(), release=release)
            for (text, _), ok in zip(parsed, outcome, strict=True):
                if ok:
                    done.append(text)
                else:
                    failed.append(_stale(text))
        return done, failed

    def _settle_prelude(
        self, principal: Principal, queue: str, receipts: Sequence[str]
    ) -> tuple[QueueConfig, list[tuple[str, Lease]], list[EntryFailure]]:
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        if not 1 <= len(receipts) <= models.MAX_BATCH:
            raise InvalidRequest(f"give 1 to {models.MAX_BATCH} receipts")
        config = self._registry.get(queue)
        parsed: list[tuple[str, Lease]] = []
        failed: list[EntryFailure] = []
        for text in receipts:
            try:
                lease = decode_receipt(text, queue=queue, sign=self._dedup.sign)
                if not config.has_index_shard(lease.shard) or (lease.kind == "g") != config.fifo:
                    raise InvalidRequest("malformed receipt")
                parsed.append((text, lease))
            except InvalidRequest as exc:
                failed.append(EntryFailure(id=text[:200], error=exc.code, message=exc.message))
        return config, parsed, failed

    # ---- dead letters -------------------------------------------------------------------

    def _dead_letter(
        self, config: QueueConfig, taken: Taken, item: LogItem, reason: str, count: int
    ) -> bool:
        """Hold a leased message, refer it from the queue's dead-letter queue, then settle it
        here; False if it was not moved (not genuine, or no longer this lease's).

        Without a dead-letter queue it is kept in the queue's quarantine log (never lost,
        never delivered). A reference the broker did not put here is dropped, not moved."""
        why = f"{config.name}\n{reason}"
        if not genuine(self._dedup.mac, config.name, taken.ref):
            self._drop_forged(config, taken)
            return False
        hold = self._clock.now_ms() + DEAD_LETTER_HOLD_MS
        if not self.leases.set_until(config, [taken.lease], hold)[0]:
            return False  # another receiver took it since: it is that one's to move
        target_name = config.dead_letter_queue
        if target_name is None:
            self._log.append_references(
                f"{keys.QUEUE_LOG}{config.name}#{QUARANTINE}",
                [
                    Source(
                        taken.ref.log,
                        taken.ref.item,
                        taken.ref.slot,
                        count,
                        why,
                        priority=item.priority(taken.ref.slot),
                    )
                ],
                now_ms=self._clock.now_ms(),
                expires_at=item.expires_at,
                group=item.group,
            )
            logger.warning(
                "message quarantined (queue has no dead-letter queue)",
                extra={"queue": config.name, "message_id": taken.ref.message_id, "reason": reason},
            )
        else:
            # the broker acting: a declared dead-letter queue that is missing is made, uncharged
            target = self._ensure_queue(target_name, None, dead_letter=True)
            self._refer(config, taken.ref, target, item, count=count, reason=why)
            metrics.count("DeadLettered", queue=config.name)
            logger.warning(
                "message dead-lettered",
                extra={
                    "queue": config.name,
                    "dlq": target.name,
                    "message_id": taken.ref.message_id,
                    "reason": reason,
                },
            )
        self.leases.set_until(config, [taken.lease], SETTLED)
        return True

    def _drop_forged(self, config: QueueConfig, taken: Taken) -> None:
        """Settle a reference the broker did not put in `config`'s index: never delivered,
        dead-lettered, redriven or moved (each of those would make it genuine elsewhere)."""
        logger.error(
            "a reference the broker did not put in this queue; dropped",
            extra={"queue": config.name, "message_id": taken.ref.message_id},
        )
        self.leases.set_until(config, [taken.lease], SETTLED)

    def _refer(
        self,
        source: QueueConfig,
        ref: Ref,
        target: QueueConfig,
        item: LogItem,
        *,
        count: int = 0,
        reason: str = "",
    ) -> None:
        """Write a reference item into `target`'s log: its stream record indexes the body
        there, with the MAC it will hold in `target`'s index (`refs.py`). It lives the shorter
        of the body's own lifetime and `target`'s retention.

        Every move (dead letter, redrive, move, copy) comes through here, so this is where a
        reference the broker did not put in `source` is stopped: signing it for `target`
        would make a forged pointer genuine."""
        if not genuine(self._dedup.mac, source.name, ref):
            raise IntegrityError(f"a reference the broker did not put in {source.name!r}")
        sources = [
            Source(
                ref.log,
                ref.item,
                ref.slot,
                count,
                reason,
                ref_mac(self._dedup.mac, target.name, Ref(ref.log, ref.item, ref.slot)),
                # the body's, kept where it goes: indexed in its lane there (if it has lanes)
                priority=item.priority(ref.slot),
            )
        ]
        group = item.group if target.fifo else None
        shard = (
            keys.shard_of(group, target.shards)
            if group is not None
            else random.randrange(target.shards)
        )
        now = self._clock.now_ms()
        self._log.append_references(
            keys.queue_log(target.name, shard),
            sources,
            now_ms=now,
            # the body is there until its own expiry; the target may keep it for less
            expires_at=min(item.expires_at, now // 1000 + target.retention_seconds),
            group=group,
        )

    def redrive(
        self,
        principal: Principal,
        queue: str,
        *,
        max_messages: int = 100,
        destination: str | None = None,
    ) -> RedriveResult:
        """Move messages from a dead-letter queue back to where they came from.

        Only a dead-letter queue (`is_dead_letter_queue`) may be redriven; that is checked
        before anything is read. A message that cannot be moved stays, its receive count
        as it was.
        """
        names.validate_queue_name(queue)
        if destination is not None:
            names.validate_queue_name(destination)
        self._policy.check(principal, Action.ADMIN, queue)
        if not 1 <= max_messages <= 1000:
            raise InvalidRequest("max_messages must be 1 to 1000")
        config = self._registry.get(queue)
        if destination is not None:
            if destination == queue:
                raise InvalidRequest("cannot redrive a queue into itself")
            self._policy.check(principal, Action.SEND, destination)
            if config.fifo and not names.is_fifo(destination):
                raise InvalidRequest("a FIFO queue can only be redriven into a FIFO queue")
        if not self.is_dead_letter_queue(queue):
            raise NotADeadLetterQueue(
                f"{queue!r} is not a dead-letter queue: no queue names it dead_letter_queue "
                "and it is not a default one (<name>.dlq, <name>.dlq.fifo); redrive moves "
                "dead letters back, use move to relocate a message"
            )
        if destination is not None:
            # the rule of every send and move: a missing queue is made for whoever may create it
            self._ensure_queue(destination, principal)
        result = RedriveResult(moved=0)
        seen: set[tuple[str, int]] = set()
        for _ in range(max_messages // models.MAX_BATCH + 50):
            remaining = max_messages - result.moved - len(result.failed)
            if remaining <= 0:
                break
            taken = self.leases.take(
                config, min(models.MAX_BATCH, remaining), 30_000, oldest_first=True
            )
            fresh = [t for t in taken if (t.ref.item, t.ref.slot) not in seen]
            if not fresh:
                self._hand_back(config, taken)
                break
            self._hand_back(config, [t for t in taken if t not in fresh])
            for t in fresh:
                seen.add((t.ref.item, t.ref.slot))
                self._redrive_one(principal, config, t, destination, result)
        audit(
            "queue.redrive",
            principal.id,
            queue,
            destination_queue=destination,
            moved=result.moved,
            failed=len(result.failed),
        )
        return result

    def _redrive_one(
        self,
        principal: Principal,
        config: QueueConfig,
        taken: Taken,
        destination: str | None,
        result: RedriveResult,
    ) -> None:
        item = self._log.items([(taken.ref.log, taken.ref.item)]).get(
            (taken.ref.log, taken.ref.item)
        )
        if item is None or item.expires_at <= self._clock.now_ms() // 1000:
            self.leases.set_until(config, [taken.lease], SETTLED)  # past its lifetime: dropped
            return
        source, _ = _reason(taken.reason)
        target_name = destination or source
        target = self._registry.find(target_name) if target_name else None
        problem = None
        if target_name is None:
            problem = "the message has no source queue (it was not dead-lettered); pass destination"
        elif target is None:
            problem = f"source queue {target_name!r} does not exist; pass destination"
        elif not self._policy.permits(principal, Action.SEND, target.name):
            problem = f"{principal.id!r} may not send {target.name!r}"
        elif target.fifo and not item.group:
            problem = f"queue {target.name!r} is FIFO and the message has no group"
        elif not genuine(self._dedup.mac, config.name, taken.ref):
            self._drop_forged(config, taken)
            result.failed.append(
                EntryFailure(
                    id=taken.ref.message_id,
                    error="redrive_failed",
                    message="integrity: a reference the broker did not put in this queue (dropped)",
                )
            )
            return
        else:
            try:
                self._open(item, taken.ref)
            except IntegrityError as exc:
                problem = f"integrity: {exc.message}"
        if problem or target is None:
            result.failed.append(
                EntryFailure(id=taken.ref.message_id, error="redrive_failed", message=problem or "")
            )
            self._hand_back(config, [taken])
            return
        self._refer(config, taken.ref, target, item)
        self.leases.set_until(config, [taken.lease], SETTLED)
        result.moved += 1

    def _hand_back(self, config: QueueConfig, taken: Sequence[Taken]) -> None:
        """Give back leases that delivered to no one, their receive counts as they were."""
        if taken:
            self.leases.hand_back(config, [t.lease for t in taken])

    def is_dead_letter_queue(self, name: str) -> bool:
        """Whether `name` is where dead letters go: some queue names it `dead_letter_queue`,
        or it has a name `default_dead_letter_queue` gives (the sweeper measures the same)."""
        if names.is_dead_letter_name(name):
            return True
        return any(config.dead_letter_queue == name for config in self._registry.list())

    def dead_letter_undeliverable(
        self, principal: Principal, queue: str, receipt: str, reason: str
    ) -> bool:
        """Dead-letter a leased message that its consumer cannot be sent (`outbound.render`).

        The message never reached anyone, so its receive count stays as it was (the lease is
        not counted). False if the lease is gone already.
        """
        config, parsed, _ = self._settle_prelude(principal, queue, [receipt])
        if not parsed:
            return False
        _, lease = parsed[0]
        state = self.leases.holding(config, lease)
        if state is None:
            return False
        ref, count, why = state
        item = self._log.items([(ref.log, ref.item)]).get((ref.log, ref.item))
        if item is None:
            return self.leases.set_until(config, [lease], SETTLED)[0]
        taken = Taken(lease=lease, ref=ref, count=count, reason=why)
        self._dead_letter(config, taken, item, reason, max(0, count - 1))
        return True

    # ---- the sweeper ------------------------------------------------------------------------

    def sweep(self, *, budget_ms: int = 50_000) -> SweepReport:
        """Dead-letter over-limit messages without waiting for receivers, and move floors."""
        report = SweepReport()
        start = self._clock.now_ms()
        for config in self._registry.list():
            if self._clock.now_ms() - start > budget_ms:
                break
            report.queues += 1
            try:
                self._sweep_queue(config, report)
            except Exception as exc:  # one queue's trouble must not starve the next ones
                logger.exception("sweeping a queue failed", extra={"queue": config.name})
                reason = exc.message if isinstance(exc, MqlessError) else type(exc).__name__
                report.errors.append(f"{config.name}: {reason}")
        self._measure_depths(report)
        return report

    def _measure_depths(self, report: SweepReport) -> None:
        """Publish every queue's depth (the console's depth chart), and every dead-letter
        queue's as `DeadLetterDepth` too (the alarm's "DLQ not empty").

        One bounded read of each queue's references per sweep: a cost per queue and
        minute, none per message."""
        configs = self._registry.list()
        dead_letter_queues = {c.dead_letter_queue for c in configs if c.dead_letter_queue}
        # a queue the sweep could not read is reported once, not again for its depth
        failed = {error.split(": ", 1)[0] for error in report.errors}
        for config in configs:
            try:
                counts = self.counts(config)
            except Exception as exc:
                logger.exception("measuring a queue failed", extra={"queue": config.name})
                if config.name not in failed:
                    report.errors.append(f"{config.name}: {type(exc).__name__}")
                continue
            depth = counts.visible + counts.in_flight + counts.delayed
            metrics.gauge("Depth", depth, queue=config.name)
            if config.name in dead_letter_queues or names.is_dead_letter_name(config.name):
                metrics.gauge("DeadLetterDepth", depth, queue=config.name)

    def _sweep_queue(self, config: QueueConfig, report: SweepReport) -> None:
        if config.fifo:
            self._sweep_fifo(config, report)
            return
        for shard in config.index_shards():
            self._sweep_shard(config, shard, report)

    def _sweep_shard(self, config: QueueConfig, shard: int, report: SweepReport) -> None:
        """Settle expired references and dead-letter over-limit ones of a shard's oldest
        segments (one write per segment), and move its floor past settled ones."""
        floor = self.leases.floor(config.name, shard)
        segments = self._index.segments(
            config.name, shard, floor, limit=SWEEP_SEGMENTS, consistent=True
        )
        limit = config.max_receive_count
        settled = 0
        for segment in segments:
            now = self._clock.now_ms()
            free = [e for e in segment.entries if e.free_at(now)]
            expired = [e.slot for e in free if e.expired(now)]
            if expired and self._index.claim(
                segment, [], now_ms=now, until_ms=now, token=0, settle=expired
            ):
                report.expired += len(expired)
                metrics.count("Expired", queue=config.name, value=len(expired))
            over = [e for e in free if not e.expired(now) and limit and e.count >= limit]
            if over and limit is not None:
                report.dead_lettered += self._dead_letter_entries(config, segment, over, limit)
            if (
                segment.seq == floor + settled
                and segment.full
                and (segment.settled or all(e.settled or e.expired(now) for e in segment.entries))
            ):
                settled += 1
        if settled:
            self.leases.advance_floor(config.name, shard, floor + settled)

    def _dead_letter_entries(
        self, config: QueueConfig, segment: Segment, entries: Sequence[Entry], limit: int
    ) -> int:
        fresh = self._index.segment(segment.queue, segment.shard, segment.seq) or segment
        taken = self.leases.take_entries(config, fresh, entries, 30_000)
        items = self._log.items((t.ref.log, t.ref.item) for t in taken)
        moved = 0
        for t in taken:
            item = items.get((t.ref.log, t.ref.item))
            if item is None:
                self.leases.set_until(config, [t.lease], SETTLED)
                continue
            reason = f"max_receive_count exceeded ({limit} deliveries)"
            moved += self._dead_letter(config, t, item, reason, t.count - 1)
        return moved

    def _sweep_fifo(self, config: QueueConfig, report: SweepReport) -> None:
        """Settle expired free references and dead-letter over-limit heads of a FIFO queue's
        oldest segments (one write per segment and per dead letter), and move its floor."""
        floor, _ = self.leases.fifo_floor(config.name)
        limit = config.max_receive_count
        blocked: set[int] = set()
        passable = 0
        for segment in self.leases.fifo_segments(config, consistent=True, limit=SWEEP_SEGMENTS):
            now = self._clock.now_ms()
            expired = [e.slot for e in segment.entries if not e.settled and e.gone(now)]
            over: list[FifoEntry] = []
            for entry in segment.entries:
                if entry.tag in blocked or entry.settled:
                    continue
                blocked.add(entry.tag)  # the group's head: only it may be dead-lettered
                if entry.gone(now):
                    continue  # settled below; the group's next head waits for the next sweep
                if entry.free_at(now) and limit is not None and entry.count >= limit:
                    over.append(entry)
            if expired and self._fifo.claim(
                segment, [], now_ms=now, until_ms=now, token=0, settle=expired
            ):
                report.expired += len(expired)
                metrics.count("Expired", queue=config.name, value=len(expired))
                segment = self._fifo.segment(config.name, config.shards, segment.seq) or segment
            if over and limit is not None:
                taken = self.leases.take_fifo_entries(config, segment, over, 30_000)
                items = self._log.items((t.ref.log, t.ref.item) for t in taken)
                for t in taken:
                    item = items.get((t.ref.log, t.ref.item))
                    if item is None:
                        self.leases.set_until(config, [t.lease], SETTLED)
                        continue
                    reason = f"max_receive_count exceeded ({limit} deliveries)"
                    report.dead_lettered += self._dead_letter(config, t, item, reason, t.count - 1)
            if passable == segment.seq - floor and (
                segment.passable(now)
                or not over
                and all(e.settled or e.gone(now) for e in segment.entries)
                and segment.full
            ):
                passable += 1
        if passable:
            self.leases.advance_fifo_floor(config.name, floor + passable)

    # ---- queue lookup --------------------------------------------------------------------

    def _ensure_queue(
        self, name: str, creator: Principal | None, *, dead_letter: bool = False
    ) -> QueueConfig:
        """The queue's config, creating it (and its dead-letter queue) with defaults first if
        needed: for `creator`, who needs the create right and is charged for both, or for
        the broker itself (None)."""
        config = self._registry.find(name)
        if config is not None:
            return config
        self._check_may_create(creator, name)
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

    def _check_may_create(self, creator: Principal | None, name: str) -> None:
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

    # ---- push consumers (consumers.py) ---------------------------------------------------

    def open_leased(
        self, queue: str, leased: Sequence[Taken], images: Mapping[tuple[str, str], dict[str, Any]]
    ) -> list[Delivery]:
        """Open messages the dispatch function appended leased (`indexing.PushLease`), from
        their log items' stream images (`(pk, sk)`: no read), as a receive opens what it
        leased: checked, counted, the expired and unreadable set aside."""
        config = self._registry.get(queue)
        known = {key: self._log.log_item(dict(image)) for key, image in images.items()}
        return self._open_taken(config, leased, known)

    def lease_of(self, queue: str, receipt: str) -> Lease:
        """The lease a receipt of `queue` names (push consumers keep leases, a fifth of a
        receipt's size); InvalidRequest unless this broker gave it out."""
        return decode_receipt(receipt, queue=queue, sign=self._dedup.sign)

    def settle_leases(
        self,
        principal: Principal,
        queue: str,
        leases: Sequence[Lease],
        *,
        outcome: Literal["ack", "nack", "hand_back"],
        delay_seconds: int = 0,
    ) -> list[bool]:
        """Ack, nack (now or after `delay_seconds`) or hand back (uncounted: they reached no
        one) any number of leases of `queue`, one write per segment or FIFO group they are in:
        a push consumer's cumulative ack settles up to its prefetch at once, where `ack` takes
        10 receipts. Per lease, whether it was still current (a stale one changes nothing)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        if not 0 <= delay_seconds <= models.MAX_VISIBILITY_SECONDS:
            raise InvalidRequest(f"delay_seconds must be 0 to {models.MAX_VISIBILITY_SECONDS}")
        config = self._registry.get(queue)
        valid = [
            lease.queue == queue
            and config.has_index_shard(lease.shard)
            and (lease.kind == "g") == config.fifo
            for lease in leases
        ]
        ours = [lease for lease, ok in zip(leases, valid, strict=True) if ok]
        if outcome == "hand_back":
            self.leases.hand_back(config, ours)
            return valid
        until = SETTLED if outcome == "ack" else self._clock.now_ms() + delay_seconds * 1000
        outcomes = iter(self.leases.set_until(config, ours, until, release=outcome == "nack"))
        done = [next(outcomes) if ok else False for ok in valid]
        if any(done):
            name = "Acked" if outcome == "ack" else "Nacked"
            metrics.count(name, queue=queue, value=sum(done))
        return done


def _item_groups(config: QueueConfig, messages: Sequence[NewMessage], now: int) -> list[list[int]]:
    """Positions of messages that share a log item: consecutive ones of one FIFO group and
    one expiry, at most 16 and within DynamoDB's item size."""
    groups: list[list[int]] = []
    size = ITEM_OVERHEAD
    for position, message in enumerate(messages):
        length = (
            len(message.body)
            + len(Headers.of(message, content_dedup=config.fifo).encode())
            + SEALING_OVERHEAD
            + BODY_OVERHEAD
        )
        if groups:
            first = messages[groups[-1][0]]
            if (
                len(groups[-1]) < keys.SLOTS_PER_ITEM
                and size + length <= MAX_ITEM_BYTES
                and first.group_id == message.group_id
                and _expires_at(config, first, now) == _expires_at(config, message, now)
            ):
                groups[-1].append(position)
                size += length
                continue
        groups.append([position])
        size = ITEM_OVERHEAD + length
    return groups


def _visible_at(config: QueueConfig, message: NewMessage, now: int) -> int:
    delay = config.delay_seconds if message.delay_seconds is None else message.delay_seconds
    return now + delay * 1000 if delay else 0


def _expires_at(config: QueueConfig, message: NewMessage, now: int) -> int:
    lifetime = config.retention_seconds
    if message.ttl_seconds is not None:
        lifetime = min(lifetime, message.ttl_seconds)
    return now // 1000 + lifetime


def _reason(text: str) -> tuple[str | None, str | None]:
    """(source queue, reason) of a dead letter's reference; (None, None) for any other."""
    if not text:
        return None, None
    source, _, why = text.partition("\n")
    return source or None, why or None


def _encode_cursor(positions: Sequence[tuple[int, int]]) -> str:
    """Where a browse goes on, per shard (segment or group, slot), as an opaque string."""
    raw = json.dumps([list(p) for p in positions], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None, config: QueueConfig) -> list[tuple[int, int]]:
    """A cursor this API gave out for this queue (one position per shard), or InvalidRequest."""
    if cursor is None:
        return [(0, 0)] * len(config.index_shards())
    if len(cursor) > 2048:
        raise InvalidRequest("malformed cursor")
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidRequest("malformed cursor") from exc
    if (
        not isinstance(value, list)
        or len(value) != len(config.index_shards())
        or not all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _DONE for v in p)
            for p in value
        )
    ):
        raise InvalidRequest("malformed cursor")
    return [(p[0], p[1]) for p in value]


def _stale(receipt: str) -> EntryFailure:
    return EntryFailure(
        id=receipt[:200],
        error=StaleReceipt.code,
        message="receipt is stale: the message was acknowledged, or its lease expired and "
        "it was delivered again",
    )


__all__ = ["AckedAndReceived", "BodyCipher", "QueueService", "SweepReport"]


class _Verdicts:
    """What a selector said of a message, per process: bodies never change, so a message a
    selector consumer passed over is not read again each time the consumer is fed."""

    LIMIT: Final = 50_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str, int], bool] = {}

    def get(self, selector: str, ref: Ref) -> bool | None:
        with self._lock:
            return self._seen.get((selector, ref.log, ref.item, ref.slot))

    def put(self, selector: str, ref: Ref, verdict: bool) -> None:
        with self._lock:
            if len(self._seen) >= self.LIMIT:
                self._seen.clear()  # crude, and enough: a miss costs one read
            self._seen[(selector, ref.log, ref.item, ref.slot)] = verdict


class _Selection:
    """A selector consumer's look at free references before it claims any (`Leases.take`'s
    `wanted`): their log items are read (the read a delivery makes anyway, made before the
    claim instead of after it) and opened, and only the references the selector selects are
    claimed. The items read are kept for the delivery, so a selected message costs no read
    more than it would without a selector; one passed over costs its log item's read
    (eventually consistent: 0.5 RRU per 4 KB) once per process (`_Verdicts`).

    A reference that cannot be judged (its body expired or gone, a bad MAC, a body that
    fails authentication) is wanted: claiming it lets the ordinary path settle, drop or
    dead-letter it, as for any consumer."""

    def __init__(self, service: QueueService, config: QueueConfig, selector: str) -> None:
        self._service = service
        self._config = config
        self._selector = selector
        self._parsed = selectors.parse(selector)
        self.items: dict[tuple[str, str], LogItem] = {}

    def wanted(self, refs: Sequence[Ref]) -> set[Ref]:
        service, verdicts = self._service, self._service._verdicts
        if self._parsed is None:
            return set(refs)
        unknown = [r for r in refs if verdicts.get(self._selector, r) is None]
        missing = [(r.log, r.item) for r in unknown if (r.log, r.item) not in self.items]
        if missing:
            self.items |= service._log.items(missing)
        now = service._clock.now_ms()
        keep: set[Ref] = set()
        for ref in refs:
            verdict = verdicts.get(self._selector, ref)
            if verdict is None:
                verdict = self._judge(ref, now)
                if verdict is None:
                    keep.add(ref)
                    continue
                verdicts.put(self._selector, ref, verdict)
            if verdict:
                keep.add(ref)
        return keep

    def _judge(self, ref: Ref, now: int) -> bool | None:
        """Whether the selector selects the message; None if it cannot be judged."""
        assert self._parsed is not None
        item = self.items.get((ref.log, ref.item))
        if (
            item is None
            or item.expires_at <= now // 1000
            or ref.slot >= len(item.bodies)
            or not genuine(self._service._dedup.mac, self._config.name, ref)
        ):
            return None
        try:
            opened = open_logged(self._service._cipher, item, ref.slot, now_ms=now)
        except IntegrityError:
            return None
        headers = opened.headers
        return self._parsed.matches(
            message_lookup(
                message_id=ref.message_id,
                sent_at=keys.id_time_ms(ref.item),
                attributes=headers.attributes,
                correlation_id=headers.correlation_id,
                group_id=item.group,
                priority=headers.priority,
            )
        )
