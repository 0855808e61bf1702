"""Opening what a receive (or the dispatch function, for a push consumer) leased: each
message is delivered, or set aside — a reference the broker did not put there dropped, an
expired one settled, one over its receive limit or failing authentication dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger

from mqless.domain.errors import IntegrityError, Throttled
from mqless.domain.messages import Delivery
from mqless.domain.models import QueueConfig
from mqless.domain.queues.dead_letters import DeadLetters
from mqless.domain.queues.leases import Taken
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.reasons import origin
from mqless.domain.queues.receipts import Lease
from mqless.observability import metrics
from mqless.storage import keys
from mqless.storage.log import LogItem
from mqless.storage.sealing import OpenedMessage
from mqless.storage.segments import SETTLED

logger = Logger(service="mqless", child=True)


class Opener:
    """Turns leased references into deliveries, or sets them aside."""

    def __init__(self, parts: QueueParts, *, dead_letters: DeadLetters) -> None:
        self._parts = parts
        self._registry = parts.registry
        self._log = parts.log
        self._clock = parts.clock
        self._leases = parts.leases
        self._dead_letters = dead_letters

    def open_leased(
        self, queue: str, leased: Sequence[Taken], images: Mapping[tuple[str, str], dict[str, Any]]
    ) -> list[Delivery]:
        """Open messages the dispatch function appended leased (`indexing.PushLease`), from
        their log items' stream images (`(pk, sk)`: no read), as a receive opens what it
        leased: checked, counted, the expired and unreadable set aside."""
        config = self._registry.get(queue)
        known = {key: self._log.log_item(dict(image)) for key, image in images.items()}
        return self.open_taken(config, leased, known)

    def open_taken(
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
        for t in taken:
            item = items.get((t.ref.log, t.ref.item))
            delivery = self._open_one(config, t, item, now, gone, dead_lettered)
            if delivery is None:
                continue
            deliveries.append(delivery)
            metrics.count("Delivered", queue=config.name)
            if delivery.receive_count > 1:
                metrics.count("Redelivered", queue=config.name)
            metrics.latency(now - delivery.sent_at, queue=config.name)
        if gone:
            self._leases.set_until(config, gone, SETTLED)
        return deliveries

    def _open_one(
        self,
        config: QueueConfig,
        t: Taken,
        item: LogItem | None,
        now: int,
        gone: list[Lease],
        dead_lettered: set[int],
    ) -> Delivery | None:
        """One leased message opened for delivery; None if it may not go out: its lease is
        added to `gone` (to settle: not genuine, or expired) or its id to `dead_lettered`."""
        limit = config.max_receive_count
        if not self._parts.genuine(config.name, t.ref):
            # never dead-lettered: that would refer the body to another queue for real
            logger.error(
                "a reference the broker did not put in this queue; dropped",
                extra={"queue": config.name, "message_id": t.ref.message_id},
            )
            gone.append(t.lease)
            return None
        if item is None or item.expires_at <= now // 1000 or t.ref.slot >= len(item.bodies):
            gone.append(t.lease)
            metrics.count("Expired", queue=config.name)
            logger.info(
                "message expired", extra={"queue": config.name, "message_id": t.ref.message_id}
            )
            return None
        if limit is not None and t.count > limit:
            self._dead_letters.dead_letter(
                config, t, item, f"max_receive_count exceeded ({limit} deliveries)", t.count - 1
            )
            dead_lettered.add(id(t))
            return None
        try:
            opened = self._parts.open(item, t.ref)
        except IntegrityError as exc:
            logger.error(
                "message failed authentication",
                extra={"queue": config.name, "message_id": t.ref.message_id, "reason": exc.message},
            )
            self._dead_letters.dead_letter(config, t, item, f"integrity: {exc.message}", t.count)
            dead_lettered.add(id(t))
            return None
        return self._delivery(config, t, item, opened)

    def _give_back_unopened(self, config: QueueConfig, taken: Sequence[Taken]) -> None:
        """A receive that leased messages and then could not read or decrypt them (AWS
        throttled it) delivered them to no one: they are free again at once and the failed
        receive does not count towards the dead-letter queue. If the give-back is throttled
        too, the leases run out as any lease does (then counted)."""
        try:
            self._leases.hand_back(config, [t.lease for t in taken])
        except Throttled:
            logger.warning(
                "could not give back leases after a throttled receive; they will run out",
                extra={"queue": config.name, "leases": len(taken)},
            )

    def _delivery(
        self, config: QueueConfig, taken: Taken, item: LogItem, opened: OpenedMessage
    ) -> Delivery:
        source, why = origin(taken.reason)
        return Delivery(
            message_id=taken.ref.message_id,
            receipt=taken.lease.encode(self._parts.secret.sign),
            queue=config.name,
            body=opened.body,
            binary=opened.headers.binary,
            attributes=dict(opened.headers.attributes),
            content_type=opened.headers.content_type,
            correlation_id=opened.headers.correlation_id,
            reply_to=opened.headers.reply_to,
            receive_count=taken.count,
            sent_at=keys.id_time_ms(taken.ref.item),
            group_id=item.group_of(taken.ref.slot),
            dedup_id=opened.dedup_id,
            dead_letter_reason=why,
            source_queue=source,
            origin=opened.origin,
            priority=opened.headers.priority,
        )
