"""Sending: messages sealed and written into their queue's log, as few log items as the
item size allows, a FIFO queue's deduplicated first (`dedup.py`, `storage.dedup_records`).
The dispatch function indexes what is written (`indexing.py`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Final

from aws_lambda_powertools import Logger

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.errors import InvalidRequest, MqlessError
from mqless.domain.messages import NewMessage, SendResult
from mqless.domain.models import EntryFailure, QueueConfig
from mqless.domain.queues.admin import QueueAdmin
from mqless.domain.queues.parts import QueueParts
from mqless.observability import metrics
from mqless.storage import keys
from mqless.storage.dedup_records import DedupRecords
from mqless.storage.log import BODY_OVERHEAD, ITEM_OVERHEAD, MAX_ITEM_BYTES, Body, NewLogItem
from mqless.storage.sealing import Headers, Holder, seal_many

logger = Logger(service="mqless", child=True)

SEALING_OVERHEAD: Final = 1 + 12 + 16 + 4  # version, nonce, tag, header length


class Sender:
    """Accepts messages for queues the sender may send to (made on first use if need be)."""

    def __init__(
        self, parts: QueueParts, *, admin: QueueAdmin, dedup_records: DedupRecords
    ) -> None:
        self._registry = parts.registry
        self._log = parts.log
        self._cipher = parts.cipher
        self._secret = parts.secret
        self._clock = parts.clock
        self._policy = parts.policy
        self._admin = admin
        self._dedup_records = dedup_records
        self._send_shards: dict[str, tuple[int, int]] = {}  # queue: (its shards, ours)

    def send(self, principal: Principal, queue: str, message: NewMessage) -> SendResult:
        """Accept one message (creating the queue with defaults if it does not exist and the
        principal may create it)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        config = self._admin.ensure_queue(queue, principal)
        _check_message(config, message)
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
        config = self._admin.ensure_queue(queue, principal)
        failed: list[EntryFailure] = []
        accepted: list[tuple[str, NewMessage]] = []
        for entry_id, message in entries:
            try:
                _check_message(config, message)
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
        return self._admin.ensure_queue(queue, principal)

    def check_send(self, principal: Principal, queue: str) -> None:
        """Forbidden unless `principal` may send to `queue`, QueueNotFound unless it exists
        or `principal` may create it (for frames held until later)."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.SEND, queue)
        if self._registry.find(queue) is None:
            self._admin.check_may_create(principal, queue)

    def _store(self, config: QueueConfig, messages: Sequence[NewMessage]) -> list[SendResult]:
        """Write messages into the queue's log, as few items as possible, in order: a FIFO
        queue's dedup records claimed first, in the order sent (the first of two copies in
        a batch is the one kept), then every item in one request (`LogStore.put_many`).
        If the send fails, the dedup records of what was certainly not written are given
        up, so that the client's retry is not taken for a duplicate of nothing."""
        now = self._clock.now_ms()
        results: list[SendResult | None] = [None] * len(messages)
        # each message's headers and id are made once, for sizing and for sealing
        headers = [Headers.of(m, content_dedup=config.fifo) for m in messages]
        message_ids: list[str] = [""] * len(messages)
        items = _item_groups(config, messages, headers, now)
        item_ids = [keys.new_item_id(now) for _ in items]
        kept: list[list[int]] = [[] for _ in items]
        claims: dict[str, list[tuple[str, str]]] = {}  # item id: (record id, message id)
        item_of = {p: index for index, positions in enumerate(items) for p in positions}
        try:
            for position, message in enumerate(messages):
                index = item_of[position]
                message_id = keys.message_id(item_ids[index], len(kept[index]))
                if config.fifo:
                    record_id = self._record_id(config, message)
                    original = self._claim(config, record_id, message_id, now)
                    if original is not None:
                        results[position] = SendResult(message_id=original, duplicate=True)
                        continue
                    claims.setdefault(item_ids[index], []).append((record_id, message_id))
                kept[index].append(position)
                message_ids[position] = message_id
                results[position] = SendResult(
                    message_id=message_id,
                    sequence=keys.next_sequence(now) if config.fifo else None,
                )
        except Exception:
            self._give_up(config, claims, set(claims))
            raise
        self._log.put_many(
            [
                self._new_item(
                    config,
                    item_id,
                    [(messages[p], headers[p], message_ids[p]) for p in positions],
                    now,
                )
                for item_id, positions in zip(item_ids, kept, strict=True)
                if positions
            ],
            unwritten=lambda unwritten: self._give_up(config, claims, unwritten),
        )
        return [r for r in results if r is not None]

    def _give_up(
        self, config: QueueConfig, claims: dict[str, list[tuple[str, str]]], items: set[str]
    ) -> None:
        """Drop the dedup records this send claimed for messages of `items` (not written);
        one that cannot be dropped now runs out with its window."""
        for item_id in items:
            for record_id, message_id in claims.get(item_id, []):
                try:
                    self._dedup_records.forget(config.name, record_id, message_id)
                except Exception:  # the send's own error is the one to raise
                    logger.warning(
                        "could not drop the dedup record of a message not written",
                        extra={"queue": config.name, "message_id": message_id},
                    )

    def _new_item(
        self,
        config: QueueConfig,
        item_id: str,
        entries: Sequence[tuple[NewMessage, Headers, str]],
        now: int,
    ) -> NewLogItem:
        """Log item `item_id` of (message, its headers, its id) in slot order."""
        holder = Holder.queue(config.name)
        sealed = seal_many(
            self._cipher,
            [(headers, m.body, message_id) for m, headers, message_id in entries],
            holder=holder,
        )
        messages = [m for m, _, _ in entries]
        bodies = tuple(
            Body(
                s.ciphertext,
                s.encrypted_key,
                visible_at=_visible_at(config, m, now),
                priority=m.priority,
            )
            for s, m in zip(sealed, messages, strict=True)
        )
        first = messages[0].group_id if config.fifo else None
        shard = (
            keys.shard_of(first, config.shards) if first is not None else self._send_shard(config)
        )
        return NewLogItem(
            keys.queue_log(config.name, shard),
            item_id,
            bodies,
            expires_at=_expires_at(config, messages[0], now),
            group=[m.group_id or "" for m in messages] if config.fifo else None,
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

    def _record_id(self, config: QueueConfig, message: NewMessage) -> str:
        return self._secret.record_id(str(Holder.queue(config.name)), _dedup_id(message))

    def _claim(self, config: QueueConfig, record_id: str, message_id: str, now: int) -> str | None:
        """Claim a dedup record for `message_id`; the original's id if it is a duplicate."""
        return self._dedup_records.claim(
            config.name,
            record_id,
            message_id,
            now_ms=now,
            window_ms=models.DEDUP_WINDOW_SECONDS * 1000,
        )


def _check_message(config: QueueConfig, message: NewMessage) -> None:
    message.check_size()
    if config.fifo and not message.group_id:
        raise InvalidRequest(f"queue {config.name!r} is FIFO: group_id is required")
    if not config.fifo and message.dedup_id:
        raise InvalidRequest(
            f"dedup_id is only for FIFO queues; {config.name!r} is a standard queue"
        )


def _item_groups(
    config: QueueConfig, messages: Sequence[NewMessage], headers: Sequence[Headers], now: int
) -> list[list[int]]:
    """Positions of messages that share a log item, in the order the items are written: at
    most 16 of one expiry, within DynamoDB's item size. A standard queue's are consecutive
    ones. A FIFO queue's share their log shard (the shard of each one's group): a message
    joins the last item of its shard, so each group's messages are in its shard's items in
    the order sent (the stream's order there), and a batch of ten groups makes one item per
    shard they fall in, not one per group."""
    spread = config.fifo
    groups: list[list[int]] = []
    last: dict[int | None, tuple[int, int]] = {}  # shard (None: any): last item there, size
    for position, message in enumerate(messages):
        length = (
            len(message.body)
            + len(headers[position].encode())
            + SEALING_OVERHEAD
            + BODY_OVERHEAD
            + (len(message.group_id or "") + 3 if spread else 0)  # its group in the list
        )
        shard = keys.shard_of(message.group_id or "", config.shards) if spread else None
        if shard in last:
            index, size = last[shard]
            first = messages[groups[index][0]]
            if (
                len(groups[index]) < keys.SLOTS_PER_ITEM
                and size + length <= MAX_ITEM_BYTES
                and (spread or first.group_id == message.group_id)
                and _expires_at(config, first, now) == _expires_at(config, message, now)
            ):
                groups[index].append(position)
                last[shard] = (index, size + length)
                continue
        groups.append([position])
        last[shard] = (len(groups) - 1, ITEM_OVERHEAD + length)
    return groups


def _dedup_id(message: NewMessage) -> str:
    """SQS's rule: the client's dedup id, else the body's SHA-256 (stored only keyed)."""
    return message.dedup_id or hashlib.sha256(message.body).hexdigest()


def _visible_at(config: QueueConfig, message: NewMessage, now: int) -> int:
    delay = config.delay_seconds if message.delay_seconds is None else message.delay_seconds
    return now + delay * 1000 if delay else 0


def _expires_at(config: QueueConfig, message: NewMessage, now: int) -> int:
    lifetime = config.retention_seconds
    if message.ttl_seconds is not None:
        lifetime = min(lifetime, message.ttl_seconds)
    return now // 1000 + lifetime
