"""Queue semantics: send, lease, ack, nack, visibility, dead letters, redrive, FIFO, sweep.

The rules live here; `store.MessageStore` knows how items sit in DynamoDB and
`envelope` how bodies are sealed. Every operation takes the calling principal and asks
the policy first, so permissions are checked in exactly one place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from mqless import models, names
from mqless.clock import Clock
from mqless.dedup import DedupHasher
from mqless.dynamo import Item
from mqless.errors import (
    Conflict,
    IntegrityError,
    InvalidRequest,
    MessageNotFound,
    MqlessError,
    NotADeadLetterQueue,
    QueueNotFound,
    StaleReceipt,
)
from mqless.ids import new_lease_id, new_message_id
from mqless.models import (
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
from mqless.observability import audit, metrics
from mqless.principals import Action, AllowAll, Policy, Principal
from mqless.quotas import Quota, Quotas
from mqless.receipts import Receipt, decode_receipt
from mqless.registry import QueueRegistry
from mqless.sealing import BodyCipher, Headers, Holder, OpenedMessage, open_item, reseal, seal
from mqless.store import (
    Duplicate,
    LeaseLost,
    MessageStore,
    group_of_key,
    standard_key,
)

logger = Logger(service="mqless", child=True)

MAX_SORT_KEY_BYTES = 1024  # DynamoDB's limit on a sort key value

MAX_PAGES_PER_RECEIVE = 5
MAX_BROWSE = 100
# what a message carries about its current delivery (dropped when it moves queue)
_DELIVERY_STATE = frozenset(
    {"dl_reason", "dl_source", "first_rx", "lease_id", "lease_owner", "lease_until", "seq"}
)
MAX_HEADS_PER_GROUP = 100
FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 1.0


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # handed to the consumer; the lease stays
    CONSUMED = "consumed"  # gone from the queue (moved, expired) under our lease
    SKIPPED = "skipped"  # left as it was; give the lease back


@dataclass
class SweepReport:
    queues: int = 0
    dead_lettered: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)


Handler = Callable[[QueueConfig, Item, str, "str | None"], "tuple[Outcome, Delivery | None]"]


class QueueService:
    """The broker's queue operations, over a registry, a message store and a body cipher."""

    def __init__(
        self,
        *,
        registry: QueueRegistry,
        store: MessageStore,
        cipher: BodyCipher,
        dedup: DedupHasher,
        clock: Clock,
        policy: Policy | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._cipher = cipher
        self._dedup = dedup
        self._clock = clock
        self._policy: Policy = policy or AllowAll()
        self._quotas = quotas or Quotas(self._policy)

    # ---- queue admin ------------------------------------------------------------------

    def put_queue(
        self, principal: Principal, name: str, settings: QueueSettings
    ) -> tuple[QueueConfig, bool]:
        """Create a queue or replace its settings; returns (config, created)."""
        names.validate_queue_name(name)
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
        if config.dead_letter_queue:
            self._ensure_queue(config.dead_letter_queue, principal, dead_letter=True)
        kept = ("created_at", "created_by", "charged_to")
        config = config.model_copy(update={k: getattr(existing, k) for k in kept})
        self._registry.replace(config)
        audit("queue.update", principal.id, name, settings=settings.model_dump())
        return config, False

    def get_queue(self, principal: Principal, name: str) -> tuple[QueueConfig, QueueCounts]:
        """A queue's settings and message counts."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        return config, self.counts(config)

    def counts(self, config: QueueConfig) -> QueueCounts:
        now = self._clock.now_ms()
        if config.fifo:
            visible, in_flight, delayed, bounded = self._store.count_fifo(config.name, now)
        else:
            visible, in_flight, delayed, bounded = self._store.count_standard(config.name, now)
        return QueueCounts(
            visible=visible, in_flight=in_flight, delayed=delayed, approximate=bounded
        )

    # ---- operator's view ----------------------------------------------------------------

    def stats(self, principal: Principal, name: str, *, consumers: int = 0) -> QueueStats:
        """Counts, the oldest message's age and the dead-letter depth, from bounded reads."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        now = self._clock.now_ms()
        counts = self.counts(config)
        oldest = self._store.oldest_visible_ms(name, now, fifo=config.fifo)
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

    def browse(
        self, principal: Principal, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[BrowsedMessage], str | None]:
        """A page of messages in send order, peeked at without leasing; and the next cursor."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        if not 1 <= limit <= MAX_BROWSE:
            raise InvalidRequest(f"limit must be 1 to {MAX_BROWSE}")
        config = self._registry.get(name)
        items, last = self._store.browse(name, limit, _decode_cursor(cursor, name))
        now = self._clock.now_ms()
        return [self._browsed(config, item, now) for item in items], _encode_cursor(last)

    def _browsed(self, config: QueueConfig, item: Item, now: int) -> BrowsedMessage:
        body: str | None = None
        error: str | None = None
        headers = Headers()
        try:
            opened = self._open(config, item)
            headers = opened.headers
            body = (
                base64.b64encode(opened.body).decode() if headers.binary else opened.body.decode()
            )
        except IntegrityError as exc:
            error = f"integrity: {exc.message}"
        if config.fifo:
            if int(item.get("lease_until", 0)) > now:
                state = "in_flight"
            elif int(item.get("avail", 0)) > now:
                state = "delayed"
            else:
                state = "visible"
            visible_at = item.get("avail")
        else:
            visible_at = item.get("visible_at")
            if int(visible_at or 0) <= now:
                state = "visible"
            elif item.get("lease_id"):
                state = "in_flight"
            else:
                state = "delayed"
        return BrowsedMessage(
            message_id=str(item["id"]),
            body=body,
            binary=headers.binary,
            attributes=dict(headers.attributes),
            content_type=headers.content_type,
            correlation_id=headers.correlation_id,
            reply_to=headers.reply_to,
            sent_at=int(item["sent_at"]),
            receive_count=int(item.get("receive_count", 0)),
            state=state,
            visible_at=None if visible_at is None else int(visible_at),
            group_id=item.get("grp"),
            dead_letter_reason=item.get("dl_reason"),
            source_queue=item.get("dl_source"),
            error=error,
        )

    def delete_message(self, principal: Principal, name: str, message_id: str) -> None:
        """Delete one message, whatever its state (a consumer's late ack is then stale)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        item = self._store.find_message(name, message_id, fifo=config.fifo)
        if item is None or not self._store.delete_message(name, str(item["sk"])):
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
        item = self._store.find_message(name, message_id, fifo=config.fifo)
        if item is None:
            raise MessageNotFound(f"no message {message_id[:100]!r} in queue {name!r}")
        if target.fifo and not item.get("grp"):
            raise InvalidRequest(f"queue {to!r} is FIFO and the message has no group")
        try:
            fresh = self._resealed(config, target, item)
        except IntegrityError as exc:
            raise Conflict(
                f"message {message_id[:100]!r} cannot be moved: integrity: {exc.message}"
            ) from exc
        fresh = {k: v for k, v in fresh.items() if k not in _DELIVERY_STATE}
        fresh["receive_count"] = 0
        fresh["expires_at"] = self._clock.now_ms() // 1000 + target.retention_seconds
        also = [] if copy else [self._store.delete_existing_op(name, str(item["sk"]))]
        self._put_moved(target, fresh, also)
        audit(
            "message.copy" if copy else "message.move",
            principal.id,
            name,
            message_id=message_id,
            to=to,
        )
        return str(item["id"])

    def list_queues(self, principal: Principal) -> list[QueueConfig]:
        """Every queue the principal may administer (the others are not listed)."""
        return [
            config
            for config in self._registry.list()
            if self._policy.permits(principal, Action.ADMIN, config.name)
        ]

    def delete_queue(self, principal: Principal, name: str) -> None:
        """Delete a queue and everything in it (dedup records included)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        if not self._registry.delete(name):
            self._registry.get(name)  # raises QueueNotFound
        self._store.delete_keys(name, self._store.keys(name, ("M#", "G#", "D#", "X#", "W#")))
        audit("queue.delete", principal.id, name)

    def purge(self, principal: Principal, name: str) -> int:
        """Delete every message of a queue (dedup records stay, as in SQS); returns the count."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        self._registry.get(name)
        keys = self._store.keys(name, ("M#", "G#"))
        self._store.delete_keys(name, keys)
        purged = sum(1 for k in keys if k.startswith("M#"))
        audit("queue.purge", principal.id, name, purged=purged)
        return purged

    # ---- producing ----------------------------------------------------------------------

    def send(self, principal: Principal, queue: str, message: NewMessage) -> SendResult:
        """Accept one message (creating the queue with defaults if it does not exist and the
        principal may create it)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        config = self._ensure_queue(queue, principal)
        self._check_message(config, message)
        item, now = self._new_item(config, message)
        if not config.fifo:
            self._store.put(item)
            metrics.count("Sent", queue=queue)
            return SendResult(message_id=item["id"])
        result = self._append_fifo(config, item, message, now)
        if not result.duplicate:
            metrics.count("Sent", queue=queue)
        return result

    def send_batch(
        self, principal: Principal, queue: str, entries: Sequence[tuple[str, NewMessage]]
    ) -> tuple[list[tuple[str, SendResult]], list[EntryFailure]]:
        """Accept up to 10 messages; each entry succeeds or fails on its own, as in SQS."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        if not 1 <= len(entries) <= models.MAX_BATCH:
            raise InvalidRequest(f"a batch holds 1 to {models.MAX_BATCH} entries")
        ids = [entry_id for entry_id, _ in entries]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("batch entry ids must be unique")
        config = self._ensure_queue(queue, principal)
        done: list[tuple[str, SendResult]] = []
        failed: list[EntryFailure] = []
        standard: list[tuple[str, Item]] = []
        for entry_id, message in entries:
            try:
                self._check_message(config, message)
                item, now = self._new_item(config, message)
                if config.fifo:
                    done.append((entry_id, self._append_fifo(config, item, message, now)))
                else:
                    standard.append((entry_id, item))
            except MqlessError as exc:
                failed.append(EntryFailure(id=entry_id, error=exc.code, message=exc.message))
        if standard:
            self._store.put_many([item for _, item in standard])
            done.extend(
                (entry_id, SendResult(message_id=item["id"])) for entry_id, item in standard
            )
        order = {entry_id: i for i, entry_id in enumerate(ids)}
        done.sort(key=lambda pair: order[pair[0]])
        accepted = sum(1 for _, result in done if not result.duplicate)
        if accepted:
            metrics.count("Sent", queue=queue, value=accepted)
        return done, failed

    def _check_message(self, config: QueueConfig, message: NewMessage) -> None:
        message.check_size()
        if config.fifo and not message.group_id:
            raise InvalidRequest(f"queue {config.name!r} is FIFO: group_id is required")
        if not config.fifo and message.dedup_id:
            raise InvalidRequest(
                f"dedup_id is only for FIFO queues; {config.name!r} is a standard queue"
            )

    def _new_item(self, config: QueueConfig, message: NewMessage) -> tuple[Item, int]:
        now = self._clock.now_ms()
        item = sealed_message(
            self._cipher,
            message,
            holder=Holder.queue(config.name),
            now_ms=now,
            content_dedup=config.fifo,
        )
        message_id = str(item["id"])
        delay = config.delay_seconds if message.delay_seconds is None else message.delay_seconds
        lifetime = config.retention_seconds
        if message.ttl_seconds is not None:
            lifetime = min(lifetime, message.ttl_seconds)
        available = now + delay * 1000
        item.update(
            grp=message.group_id,
            expires_at=now // 1000 + lifetime,
            receive_count=0,
        )
        if config.fifo:
            item["avail"] = available
        else:
            item.update(
                pk=f"Q#{config.name}",
                sk=standard_key(message_id),
                vq=config.name,
                visible_at=available,
            )
        return item, now

    def _append_fifo(
        self, config: QueueConfig, item: Item, message: NewMessage, now: int
    ) -> SendResult:
        assert message.group_id is not None
        # SQS's rule (the client's id, else the body's SHA-256), stored only as a keyed hash
        dedup_id = message.dedup_id or hashlib.sha256(message.body).hexdigest()
        record_id = self._dedup.record_id(str(Holder.queue(config.name)), dedup_id)
        window_end = now + models.DEDUP_WINDOW_SECONDS * 1000
        result = self._store.put_fifo(
            config.name,
            item,
            group=message.group_id,
            now_ms=now,
            dedup=(record_id, window_end, window_end // 1000 + 60),
        )
        if isinstance(result, Duplicate):
            return SendResult(message_id=result.message_id, duplicate=True)
        return SendResult(message_id=item["id"], sequence=result)

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
        self._store.wake(queue, self._clock.now_ms())

    def queue_names(self) -> list[str]:
        """Every queue's name (internal: the sweeper's round, no permission involved)."""
        return [config.name for config in self._registry.list()]

    def has_visible(self, queue: str) -> bool:
        """Whether anything may be leasable now (one index read; the index may lag)."""
        candidates, _ = self._store.candidates(queue, self._clock.now_ms(), 1)
        return bool(candidates)

    def visibility_of(self, queue: str) -> int:
        """The queue's lease length in seconds (what a receive without override gets)."""
        return self._registry.get(queue).visibility_timeout

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
    ) -> list[Delivery]:
        """Lease up to `max_messages`, waiting up to `wait_seconds` for the first to arrive.

        Competing receivers take the oldest page in a random order (fewer collisions);
        `oldest_first` keeps the page's order instead (push consumers, fed one by one).
        """
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
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
        deadline = self._clock.now_ms() + int(wait_seconds * 1000)
        pause = FIRST_POLL_SECONDS
        who = owner or principal.id
        while True:
            found = self._lease(
                config,
                max_messages,
                lease_seconds,
                self._delivery_handler(),
                owner=who,
                shuffle=not oldest_first,
            )
            remaining = (deadline - self._clock.now_ms()) / 1000
            if found or remaining <= 0:
                return found
            self._clock.sleep(min(pause, remaining))
            pause = min(pause * 2, MAX_POLL_SECONDS)

    def ack(
        self, principal: Principal, queue: str, receipts: Sequence[str]
    ) -> tuple[list[str], list[EntryFailure]]:
        """Delete messages under their leases; a stale receipt deletes nothing."""
        now = self._clock.now_ms()
        done, failed = self._settle(
            principal,
            queue,
            receipts,
            standard=lambda r: self._store.delete_leased(queue, r.key, r.lease_id),
            fifo=lambda r, group: self._store.delete_leased_fifo(
                queue, r.key, group, r.lease_id, now
            ),
        )
        if done:
            metrics.count("Acked", queue=queue, value=len(done))
        return done, failed

    def nack(
        self, principal: Principal, queue: str, receipts: Sequence[str], delay_seconds: int = 0
    ) -> tuple[list[str], list[EntryFailure]]:
        """Give messages back now or after a delay; the delivery counts as a failed attempt."""
        if not 0 <= delay_seconds <= models.MAX_VISIBILITY_SECONDS:
            raise InvalidRequest(f"delay_seconds must be 0 to {models.MAX_VISIBILITY_SECONDS}")
        at = self._clock.now_ms() + delay_seconds * 1000
        done, failed = self._settle(
            principal,
            queue,
            receipts,
            standard=lambda r: self._store.release(queue, r.key, r.lease_id, at) is not None,
            fifo=lambda r, group: self._store.release_fifo(queue, r.key, group, r.lease_id, at),
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
        until = self._clock.now_ms() + timeout_seconds * 1000
        return self._settle(
            principal,
            queue,
            receipts,
            standard=lambda r: self._store.extend(queue, r.key, r.lease_id, until),
            fifo=lambda r, group: self._store.extend_fifo(queue, r.key, group, r.lease_id, until),
        )

    def _settle(
        self,
        principal: Principal,
        queue: str,
        receipts: Sequence[str],
        *,
        standard: Callable[[Receipt], bool],
        fifo: Callable[[Receipt, str], bool],
    ) -> tuple[list[str], list[EntryFailure]]:
        """Apply a lease operation to each receipt; a False from the store means stale."""
        config, parsed, failed = self._settle_prelude(principal, queue, receipts)
        done: list[str] = []
        for text, receipt in parsed:
            group = group_of_key(receipt.key) if config.fifo else None
            ok = fifo(receipt, group) if group is not None else standard(receipt)
            if ok:
                done.append(text)
            else:
                failed.append(_stale(text))
        return done, failed

    def _settle_prelude(
        self, principal: Principal, queue: str, receipts: Sequence[str]
    ) -> tuple[QueueConfig, list[tuple[str, Receipt]], list[EntryFailure]]:
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        if not 1 <= len(receipts) <= models.MAX_BATCH:
            raise InvalidRequest(f"give 1 to {models.MAX_BATCH} receipts")
        config = self._registry.get(queue)
        parsed: list[tuple[str, Receipt]] = []
        failed: list[EntryFailure] = []
        for text in receipts:
            try:
                parsed.append((text, decode_receipt(text, queue=queue)))
            except InvalidRequest as exc:
                failed.append(EntryFailure(id=text[:200], error=exc.code, message=exc.message))
        return config, parsed, failed

    # ---- dead letters -------------------------------------------------------------------

    def redrive(
        self,
        principal: Principal,
        queue: str,
        *,
        max_messages: int = 100,
        destination: str | None = None,
    ) -> RedriveResult:
        """Move messages from a dead-letter queue back to where they came from.

        Only a dead-letter queue (`is_dead_letter_queue`) may be redriven: on any other
        queue, redrive would lease live messages that were never delivered, raising their
        receive counts towards dead-lettering. That is refused before anything is read.
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
            target = self._registry.get(destination)
            if config.fifo and not target.fifo:
                raise InvalidRequest("a FIFO queue can only be redriven into a FIFO queue")
        if not self.is_dead_letter_queue(queue):
            raise NotADeadLetterQueue(
                f"{queue!r} is not a dead-letter queue: no queue names it dead_letter_queue "
                "and it is not a default one (<name>.dlq, <name>.dlq.fifo); redrive moves "
                "dead letters back, use move to relocate a message"
            )
        result = RedriveResult(moved=0)
        failed_ids: set[str] = set()

        def move_back(
            source: QueueConfig, item: Item, lease: str, group: str | None
        ) -> tuple[Outcome, Delivery | None]:
            if self._enforce_limits(source, item, lease, group) == "expired":
                return Outcome.CONSUMED, None  # past its lifetime: dropped, not revived
            target_name = destination or item.get("dl_source")
            target = self._registry.find(str(target_name)) if target_name else None
            problem = None
            fresh: Item | None = None
            if target_name is None:
                problem = (
                    "the message has no source queue (it was not dead-lettered); pass destination"
                )
            elif target is None:
                problem = f"source queue {target_name!r} does not exist; pass destination"
            elif not self._policy.permits(principal, Action.SEND, target.name):
                # moving a message back is sending it there
                problem = f"{principal.id!r} may not send {target.name!r}"
            elif target.fifo and not item.get("grp"):
                problem = f"queue {target.name!r} is FIFO and the message has no group"
            else:
                try:
                    fresh = self._resealed(source, target, item)
                except IntegrityError as exc:
                    problem = f"integrity: {exc.message}"
            if problem or target is None or fresh is None:
                failed_ids.add(str(item["id"]))
                result.failed.append(
                    EntryFailure(id=str(item["id"]), error="redrive_failed", message=problem or "")
                )
                return Outcome.SKIPPED, None
            fresh = {k: v for k, v in fresh.items() if k not in _DELIVERY_STATE}
            fresh["receive_count"] = 0
            fresh["expires_at"] = self._clock.now_ms() // 1000 + target.retention_seconds
            self._enqueue_moving(source, item, lease, group, target, fresh)
            result.moved += 1
            return Outcome.CONSUMED, None

        rounds = 0
        while result.moved + len(failed_ids) < max_messages and rounds < 50:
            rounds += 1
            wanted = min(models.MAX_BATCH, max_messages - result.moved - len(failed_ids))
            before = result.moved + len(failed_ids)
            self._lease(
                config,
                wanted,
                30,
                move_back,
                skip_ids=failed_ids,
                enough=lambda: result.moved + len(failed_ids) >= max_messages,
            )
            if result.moved + len(failed_ids) == before:
                break
        audit(
            "queue.redrive",
            principal.id,
            queue,
            destination_queue=destination,
            moved=result.moved,
            failed=len(result.failed),
        )
        return result

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

        The message never reached anyone, so its receive count is put back as it was and a
        FIFO group goes on to its next message at once. False if the lease is gone already.
        """
        config, parsed, _ = self._settle_prelude(principal, queue, [receipt])
        if not parsed:
            return False
        _, held = parsed[0]
        item = self._store.get(queue, held.key)
        if item is None or item.get("lease_id") != held.lease_id:
            return False
        group = group_of_key(held.key) if config.fifo else None
        try:
            self._dead_letter(
                config,
                item,
                held.lease_id,
                group,
                reason,
                receive_count=max(0, int(item.get("receive_count", 1)) - 1),
                free_group=True,
            )
        except LeaseLost:
            return False
        return True

    def sweep(self, *, budget_ms: int = 50_000) -> SweepReport:
        """Dead-letter over-limit messages and drop expired ones without waiting for receivers."""
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
        self._measure_dead_letters(report)
        return report

    def _measure_dead_letters(self, report: SweepReport) -> None:
        """Publish every dead-letter queue's depth (the alarm's "DLQ not empty")."""
        configs = self._registry.list()
        dead_letter_queues = {c.dead_letter_queue for c in configs if c.dead_letter_queue}
        for config in configs:
            if config.name in dead_letter_queues or names.is_dead_letter_name(config.name):
                try:
                    counts = self.counts(config)
                except Exception as exc:
                    logger.exception("measuring a queue failed", extra={"queue": config.name})
                    report.errors.append(f"{config.name}: {type(exc).__name__}")
                    continue
                depth = counts.visible + counts.in_flight + counts.delayed
                metrics.gauge("DeadLetterDepth", depth, queue=config.name)

    def _sweep_queue(self, config: QueueConfig, report: SweepReport) -> None:
        def settle(
            queue: QueueConfig, item: Item, lease: str, group: str | None
        ) -> tuple[Outcome, Delivery | None]:
            outcome = self._enforce_limits(queue, item, lease, group)
            if outcome is None:
                return Outcome.SKIPPED, None
            if outcome == "expired":
                report.expired += 1
            else:
                report.dead_lettered += 1
            return Outcome.CONSUMED, None

        now_s = self._clock.now_ms() // 1000
        limit = config.max_receive_count

        def worth_leasing(receive_count: int, expires_at: int | None) -> bool:
            over = limit is not None and receive_count >= limit
            return over or (expires_at is not None and expires_at <= now_s)

        self._lease(config, 1000, 30, settle, sweep_filter=worth_leasing)

    # ---- leasing machinery ------------------------------------------------------------

    def _delivery_handler(self) -> Handler:
        def deliver(
            config: QueueConfig, item: Item, lease: str, group: str | None
        ) -> tuple[Outcome, Delivery | None]:
            if self._enforce_limits(config, item, lease, group) is not None:
                return Outcome.CONSUMED, None
            try:
                opened = self._open(config, item)
            except IntegrityError as exc:
                logger.error(
                    "message failed authentication",
                    extra={"queue": config.name, "message_id": item["id"], "reason": exc.message},
                )
                self._dead_letter(
                    config, item, lease, group, f"integrity: {exc.message}", unreadable=True
                )
                return Outcome.CONSUMED, None
            delivery = _delivery(config, item, lease, opened)
            metrics.count("Delivered", queue=config.name)
            if delivery.receive_count > 1:
                metrics.count("Redelivered", queue=config.name)
            metrics.latency(self._clock.now_ms() - delivery.sent_at, queue=config.name)
            return Outcome.DELIVERED, delivery

        return deliver

    def _enforce_limits(
        self, config: QueueConfig, item: Item, lease: str, group: str | None
    ) -> str | None:
        """Drop an expired message or dead-letter an over-limit one; None if it may go out."""
        now = self._clock.now_ms()
        if int(item.get("expires_at", 0)) <= now // 1000:
            self._drop(config, item, lease, group)
            logger.info("message expired", extra={"queue": config.name, "message_id": item["id"]})
            return "expired"
        limit = config.max_receive_count
        if limit is not None and int(item["receive_count"]) > limit:
            self._dead_letter(
                config,
                item,
                lease,
                group,
                f"max_receive_count exceeded ({limit} deliveries)",
                receive_count=int(item["receive_count"]) - 1,
            )
            return "dead_lettered"
        return None

    def _lease(
        self,
        config: QueueConfig,
        wanted: int,
        lease_seconds: int,
        handle: Handler,
        *,
        sweep_filter: Callable[[int, int | None], bool] | None = None,
        skip_ids: set[str] | None = None,
        owner: str = "mqless",
        enough: Callable[[], bool] | None = None,
        shuffle: bool = True,
    ) -> list[Delivery]:
        """Walk the visibility index, lease what is free and let `handle` decide its fate.

        Stops at `wanted` deliveries, or when `enough()` says so: handlers that consume
        messages without delivering them (redrive) count their own progress.
        """
        done = enough or (lambda: False)
        delivered: list[Delivery] = []
        start: dict[str, Any] | None = None
        pages = 0
        page_size = max(wanted * 2, 10)
        while (
            len(delivered) < wanted
            and not done()
            and pages < MAX_PAGES_PER_RECEIVE * (20 if sweep_filter else 1)
        ):
            now = self._clock.now_ms()
            candidates, start = self._store.candidates(config.name, now, page_size, start)
            pages += 1
            if shuffle and not config.fifo and len(candidates) > wanted:
                # Competing receivers all see the same oldest page; trying it in a random
                # order halves the lease writes lost to collisions. Standard queues promise
                # best-effort order only, and the page is still the oldest messages.
                random.shuffle(candidates)
            for candidate in candidates:
                if len(delivered) >= wanted or done():
                    break
                if config.fifo:
                    got = self._lease_group(
                        config,
                        candidate.key,
                        lease_seconds,
                        handle,
                        sweep_filter,
                        skip_ids,
                        owner,
                        done,
                    )
                else:
                    if sweep_filter and not sweep_filter(
                        candidate.receive_count, candidate.expires_at
                    ):
                        continue
                    got = self._lease_one(
                        config, candidate.key, lease_seconds, handle, skip_ids, owner
                    )
                if got is not None:
                    delivered.append(got)
            if start is None:
                break
        return delivered

    def _lease_one(
        self,
        config: QueueConfig,
        key: str,
        lease_seconds: int,
        handle: Handler,
        skip_ids: set[str] | None,
        owner: str,
    ) -> Delivery | None:
        if skip_ids and key in {standard_key(i) for i in skip_ids}:
            return None  # decided already: leasing it again would only count a receive
        now = self._clock.now_ms()
        lease = new_lease_id()
        item = self._store.lease(
            config.name,
            key,
            now_ms=now,
            until_ms=now + lease_seconds * 1000,
            lease_id=lease,
            owner=owner,
        )
        if item is None:
            return None
        try:
            outcome, delivery = handle(config, item, lease, None)
        except LeaseLost:
            return None
        if outcome is Outcome.SKIPPED:
            # no one got it: the lease must not count as a delivery towards dead-lettering
            first = int(item["receive_count"]) == 1
            self._store.give_back(config.name, key, lease, now, first=first)
        return delivery

    def _lease_group(
        self,
        config: QueueConfig,
        group_sk: str,
        lease_seconds: int,
        handle: Handler,
        sweep_filter: Callable[[int, int | None], bool] | None,
        skip_ids: set[str] | None,
        owner: str,
        done: Callable[[], bool],
    ) -> Delivery | None:
        now = self._clock.now_ms()
        until = now + lease_seconds * 1000
        lease = new_lease_id()
        group_item = self._store.lease_group(
            config.name, group_sk, now_ms=now, until_ms=until, lease_id=lease
        )
        if group_item is None:
            return None
        group = group_sk[2:]
        for _ in range(MAX_HEADS_PER_GROUP):
            if done():
                break
            head = self._store.head_of_group(config.name, group)
            if head is None:
                if not self._store.drop_empty_group(
                    config.name, group, lease, int(group_item.get("seq", 0))
                ):
                    self._store.release_group(config.name, group, lease, now)
                return None
            if int(head.get("avail", 0)) > now:
                self._store.release_group(config.name, group, lease, int(head["avail"]))
                return None
            if skip_ids and str(head["id"]) in skip_ids:
                self._store.release_group(config.name, group, lease, now)
                return None
            if sweep_filter and not sweep_filter(
                int(head.get("receive_count", 0)), head.get("expires_at")
            ):
                self._store.release_group(config.name, group, lease, now)
                return None
            item = self._store.lease_head(
                config.name,
                str(head["sk"]),
                now_ms=now,
                until_ms=until,
                lease_id=lease,
                owner=owner,
            )
            if item is None:
                continue
            try:
                outcome, delivery = handle(config, item, lease, group)
            except LeaseLost:
                return None
            if outcome is Outcome.DELIVERED:
                return delivery
            if outcome is Outcome.SKIPPED:
                first = int(item["receive_count"]) == 1
                self._store.release_fifo(
                    config.name, str(head["sk"]), group, lease, now, uncounted=True, first=first
                )
                return None
            # CONSUMED: the head left under our lease; the group's next message is up
        self._store.release_group(config.name, group, lease, now)
        return None

    def _drop(self, config: QueueConfig, item: Item, lease: str, group: str | None) -> None:
        key = str(item["sk"])
        if group is None:
            if not self._store.delete_leased(config.name, key, lease):
                raise LeaseLost("expired message was taken meanwhile")
            metrics.count("Expired", queue=config.name)
            return
        ops = [
            self._store.delete_op(config.name, key, lease),
            self._store.group_done_op(config.name, group, lease, 0, keep_lease=True),
        ]
        if not self._store.transact(ops):
            raise LeaseLost("expired message was taken meanwhile")
        metrics.count("Expired", queue=config.name)

    def _dead_letter(
        self,
        config: QueueConfig,
        item: Item,
        lease: str,
        group: str | None,
        reason: str,
        *,
        receive_count: int | None = None,
        unreadable: bool = False,
        free_group: bool = False,
    ) -> None:
        """Move a leased message to the queue's dead-letter queue (or quarantine it).

        The message is sealed again for the dead-letter queue; one that cannot be opened
        (`unreadable`: it already failed authentication) moves as it is, still unreadable.
        A FIFO group stays leased (a receive walking the group goes on to its next message)
        unless `free_group`, when it is visible again at once.
        """
        moved = {
            k: v
            for k, v in item.items()
            if k not in ("lease_id", "lease_owner", "lease_until", "seq")
        }
        moved["dl_reason"] = reason
        moved["dl_source"] = config.name
        if receive_count is not None:
            moved["receive_count"] = receive_count
        target_name = config.dead_letter_queue
        source_ops = self._source_ops(config, item, lease, group, free_group=free_group)
        if target_name is None:
            self._quarantine(config, item, moved, source_ops)
            return
        # the broker acting: a declared dead-letter queue that is missing is made, uncharged
        target = self._ensure_queue(target_name, None, dead_letter=True)
        if not unreadable:
            # one that fails authentication here moves as it is, still unreadable
            with contextlib.suppress(IntegrityError):
                moved = self._resealed(config, target, moved)
        moved["expires_at"] = self._clock.now_ms() // 1000 + target.retention_seconds
        self._put_moved(target, moved, source_ops)
        metrics.count("DeadLettered", queue=config.name)
        logger.warning(
            "message dead-lettered",
            extra={
                "queue": config.name,
                "dlq": target.name,
                "message_id": item["id"],
                "reason": reason,
            },
        )

    def _quarantine(
        self, config: QueueConfig, item: Item, moved: Item, source_ops: list[dict[str, Any]]
    ) -> None:
        # No dead-letter queue: keep the message out of delivery but never lose it.
        moved = {k: v for k, v in moved.items() if k not in ("vq", "visible_at", "avail")}
        moved.update(pk=f"Q#{config.name}", sk=f"X#{item['id']}")
        self._store.put_with(moved, source_ops)
        logger.warning(
            "message quarantined (queue has no dead-letter queue)",
            extra={"queue": config.name, "message_id": item["id"], "reason": moved["dl_reason"]},
        )

    def _source_ops(
        self,
        config: QueueConfig,
        item: Item,
        lease: str,
        group: str | None,
        *,
        free_group: bool = False,
    ) -> list[dict[str, Any]]:
        ops = [self._store.delete_op(config.name, str(item["sk"]), lease)]
        if group is not None:
            now = self._clock.now_ms()
            ops.append(
                self._store.group_done_op(config.name, group, lease, now, keep_lease=not free_group)
            )
        return ops

    def _enqueue_moving(
        self,
        source: QueueConfig,
        item: Item,
        lease: str,
        group: str | None,
        target: QueueConfig,
        fresh: Item,
    ) -> None:
        """Put `fresh` on `target` and take `item` off `source` in one transaction."""
        self._put_moved(target, fresh, self._source_ops(source, item, lease, group))

    def _put_moved(self, target: QueueConfig, fresh: Item, also: list[dict[str, Any]]) -> None:
        """Put `fresh` on `target` together with the `also` writes, all or nothing."""
        now = self._clock.now_ms()
        for key in ("pk", "sk", "vq", "visible_at", "avail"):
            fresh.pop(key, None)
        if target.fifo:
            fresh["avail"] = now
            target_group = str(fresh.get("grp") or "default")
            self._store.put_fifo(target.name, fresh, group=target_group, now_ms=now, also=also)
        else:
            fresh.update(
                pk=f"Q#{target.name}",
                sk=standard_key(str(fresh["id"])),
                vq=target.name,
                visible_at=now,
            )
            self._store.put_with(fresh, also)

    # ---- sealed messages -------------------------------------------------------------

    def _open(self, config: QueueConfig, item: Item) -> OpenedMessage:
        """Open a message read from `config`'s queue: bound to that queue, never to a
        destination the item names."""
        return open_item(
            self._cipher, item, holder=Holder.queue(config.name), now_ms=self._clock.now_ms()
        )

    def _resealed(self, source: QueueConfig, target: QueueConfig, item: Item) -> Item:
        """`item` (read from `source`) sealed again for `target`, with cached data keys."""
        return reseal(
            self._cipher, item, self._open(source, item), target=Holder.queue(target.name)
        )

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


def sealed_message(
    cipher: BodyCipher,
    message: NewMessage,
    *,
    holder: Holder,
    now_ms: int,
    content_dedup: bool = False,
) -> Item:
    """The stored fields every new message has: its id, its body and headers sealed for
    `holder`, its send time. `content_dedup`: a FIFO queue dedups it on its body."""
    message_id = new_message_id(now_ms)
    headers = Headers.of(message, content_dedup=content_dedup)
    return {
        "id": message_id,
        **seal(cipher, headers, message.body, holder=holder, message_id=message_id),
        "sent_at": now_ms,
    }


def _encode_cursor(last: dict[str, Any] | None) -> str | None:
    """The browse position as an opaque string (DynamoDB's last key, base64url JSON)."""
    if last is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(last, sort_keys=True).encode()).decode()


def _decode_cursor(cursor: str | None, queue: str) -> dict[str, Any] | None:
    """A cursor this API gave out for this queue, or InvalidRequest."""
    if cursor is None:
        return None
    if len(cursor) > 2048:
        raise InvalidRequest("malformed cursor")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        pk, sk = key["pk"]["S"], key["sk"]["S"]
    except (binascii.Error, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise InvalidRequest("malformed cursor") from exc
    if pk != f"Q#{queue}" or not isinstance(sk, str) or not sk.startswith("M#"):
        raise InvalidRequest("malformed cursor")
    if len(sk.encode("utf-8", "surrogatepass")) > MAX_SORT_KEY_BYTES or not _is_text(sk):
        raise InvalidRequest("malformed cursor")  # DynamoDB would refuse it as a start key
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return True


def _stale(receipt: str) -> EntryFailure:
    return EntryFailure(
        id=receipt[:200],
        error=StaleReceipt.code,
        message="receipt is stale: the message was acknowledged, or its lease expired and "
        "it was delivered again",
    )


def _delivery(config: QueueConfig, item: Item, lease: str, opened: OpenedMessage) -> Delivery:
    headers = opened.headers
    return Delivery(
        message_id=str(item["id"]),
        receipt=Receipt(config.name, str(item["sk"]), lease).encode(),
        queue=config.name,
        body=opened.body,
        binary=headers.binary,
        attributes=dict(headers.attributes),
        content_type=headers.content_type,
        correlation_id=headers.correlation_id,
        reply_to=headers.reply_to,
        receive_count=int(item["receive_count"]),
        sent_at=int(item["sent_at"]),
        first_received_at=item.get("first_rx"),
        group_id=item.get("grp"),
        dedup_id=opened.dedup_id,
        dead_letter_reason=item.get("dl_reason"),
        source_queue=item.get("dl_source"),
        origin=opened.origin,
    )


__all__ = ["BodyCipher", "QueueService", "SweepReport", "sealed_message"]
