"""Dead letters: a leased message that may not be delivered (over its receive limit, a body
that fails authentication, one its consumer cannot be sent) is referred from its queue's
dead-letter queue, or kept in the queue's quarantine log if it has none; never lost, never
delivered again from where it was. A reference the broker did not put in a queue is
dropped instead: moving it would make it genuine elsewhere.
"""

from __future__ import annotations

from typing import Final

from aws_lambda_powertools import Logger

from mqless.domain import names
from mqless.domain.access.principals import Principal
from mqless.domain.models import QueueConfig
from mqless.domain.queues.admin import QueueAdmin
from mqless.domain.queues.leases import Taken
from mqless.domain.queues.moving import Mover
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.reasons import dead_letter_reason
from mqless.domain.queues.settling import Settler
from mqless.observability import metrics
from mqless.storage import keys
from mqless.storage.log import LogItem, Source
from mqless.storage.segments import SETTLED

logger = Logger(service="mqless", child=True)

# how long a message being dead-lettered is held first: moving it takes milliseconds, and
# no other receiver may take it meanwhile (a lease of 0 s, or one that ran out, would let
# two receivers both find it over its limit and refer it twice)
DEAD_LETTER_HOLD_MS: Final = 30_000


class DeadLetters:
    """Moves leased messages that may not be delivered to where failed messages go."""

    def __init__(
        self, parts: QueueParts, *, admin: QueueAdmin, mover: Mover, settler: Settler
    ) -> None:
        self._parts = parts
        self._registry = parts.registry
        self._log = parts.log
        self._clock = parts.clock
        self._leases = parts.leases
        self._admin = admin
        self._mover = mover
        self._settler = settler

    def dead_letter(
        self, config: QueueConfig, taken: Taken, item: LogItem, reason: str, count: int
    ) -> bool:
        """Hold a leased message, refer it from the queue's dead-letter queue, then settle it
        here; False if it was not moved (not genuine, or no longer this lease's).

        Without a dead-letter queue it is kept in the queue's quarantine log (never lost,
        never delivered). A reference the broker did not put here is dropped, not moved."""
        if not self._parts.genuine(config.name, taken.ref):
            self.drop_forged(config, taken)
            return False
        hold = self._clock.now_ms() + DEAD_LETTER_HOLD_MS
        if not self._leases.set_until(config, [taken.lease], hold)[0]:
            return False  # another receiver took it since: it is that one's to move
        if config.dead_letter_queue is None:
            self._quarantine(config, taken, item, reason, count)
        else:
            self._refer_dead_letter(config, config.dead_letter_queue, taken, item, reason, count)
        self._leases.set_until(config, [taken.lease], SETTLED)
        return True

    def _quarantine(
        self, config: QueueConfig, taken: Taken, item: LogItem, reason: str, count: int
    ) -> None:
        """Keep a held message in its queue's quarantine log (it has no dead-letter queue)."""
        ref = taken.ref
        self._log.append_references(
            keys.quarantine_log(config.name),
            [
                Source(
                    ref.log,
                    ref.item,
                    ref.slot,
                    count,
                    dead_letter_reason(config.name, reason),
                    priority=item.priority(ref.slot),
                )
            ],
            now_ms=self._clock.now_ms(),
            expires_at=item.expires_at,
            group=item.group_of(ref.slot),
        )
        logger.warning(
            "message quarantined (queue has no dead-letter queue)",
            extra={"queue": config.name, "message_id": ref.message_id, "reason": reason},
        )

    def _refer_dead_letter(
        self,
        config: QueueConfig,
        target_name: str,
        taken: Taken,
        item: LogItem,
        reason: str,
        count: int,
    ) -> None:
        """Refer a held message from its queue's dead-letter queue `target_name`."""
        # the broker acting: a declared dead-letter queue that is missing is made, uncharged
        target = self._admin.ensure_queue(target_name, None, dead_letter=True)
        why = dead_letter_reason(config.name, reason)
        self._mover.refer(config, taken.ref, target, item, count=count, reason=why)
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

    def drop_forged(self, config: QueueConfig, taken: Taken) -> None:
        """Settle a reference the broker did not put in `config`'s index: never delivered,
        dead-lettered, redriven or moved (each of those would make it genuine elsewhere)."""
        logger.error(
            "a reference the broker did not put in this queue; dropped",
            extra={"queue": config.name, "message_id": taken.ref.message_id},
        )
        self._leases.set_until(config, [taken.lease], SETTLED)

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
        config, parsed, _ = self._settler.parse_receipts(principal, queue, [receipt])
        if not parsed:
            return False
        _, lease = parsed[0]
        state = self._leases.holding(config, lease)
        if state is None:
            return False
        ref, count, why = state
        item = self._parts.log_item(ref)
        if item is None:
            return self._leases.set_until(config, [lease], SETTLED)[0]
        taken = Taken(lease=lease, ref=ref, count=count, reason=why)
        self.dead_letter(config, taken, item, reason, max(0, count - 1))
        return True
