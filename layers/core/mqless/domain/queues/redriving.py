"""Redrive: messages of a dead-letter queue moved back to the queue they came from (or to a
destination the operator names). A message that cannot be moved stays, its receive count
as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.errors import IntegrityError, InvalidRequest, NotADeadLetterQueue
from mqless.domain.models import EntryFailure, QueueConfig, RedriveResult
from mqless.domain.queues.admin import QueueAdmin
from mqless.domain.queues.dead_letters import DeadLetters
from mqless.domain.queues.leases import Taken
from mqless.domain.queues.moving import Mover
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.reasons import origin
from mqless.observability import audit
from mqless.storage.segments import SETTLED


class Redriver:
    """Moves dead letters back, a batch of leases at a time."""

    def __init__(
        self,
        parts: QueueParts,
        *,
        admin: QueueAdmin,
        mover: Mover,
        dead_letters: DeadLetters,
    ) -> None:
        self._parts = parts
        self._registry = parts.registry
        self._clock = parts.clock
        self._policy = parts.policy
        self._leases = parts.leases
        self._admin = admin
        self._mover = mover
        self._dead_letters = dead_letters

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
        config = self._open_redrive(principal, queue, max_messages, destination)
        result = RedriveResult(moved=0)
        seen: set[tuple[str, int]] = set()
        for _ in range(max_messages // models.MAX_BATCH + 50):
            remaining = max_messages - result.moved - len(result.failed)
            if remaining <= 0:
                break
            taken = self._leases.take(
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

    def _open_redrive(
        self, principal: Principal, queue: str, max_messages: int, destination: str | None
    ) -> QueueConfig:
        """The dead-letter queue to redrive, once the request is found sound and allowed (a
        missing destination made for whoever may create it)."""
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
        if not self._dead_letters.is_dead_letter_queue(queue):
            raise NotADeadLetterQueue(
                f"{queue!r} is not a dead-letter queue: no queue names it dead_letter_queue "
                "and it is not a default one (<name>.dlq, <name>.dlq.fifo); redrive moves "
                "dead letters back, use move to relocate a message"
            )
        if destination is not None:
            # the rule of every send and move: a missing queue is made for whoever may create it
            self._admin.ensure_queue(destination, principal)
        return config

    def _redrive_one(
        self,
        principal: Principal,
        config: QueueConfig,
        taken: Taken,
        destination: str | None,
        result: RedriveResult,
    ) -> None:
        item = self._parts.log_item(taken.ref)
        if item is None or item.expires_at <= self._clock.now_ms() // 1000:
            self._leases.set_until(config, [taken.lease], SETTLED)  # past its lifetime: dropped
            return
        source, _ = origin(taken.reason)
        target_name = destination or source
        target = self._registry.find(target_name) if target_name else None
        problem = None
        if target_name is None:
            problem = "the message has no source queue (it was not dead-lettered); pass destination"
        elif target is None:
            problem = f"source queue {target_name!r} does not exist; pass destination"
        elif not self._policy.permits(principal, Action.SEND, target.name):
            problem = f"{principal.id!r} may not send {target.name!r}"
        elif target.fifo and not item.group_of(taken.ref.slot):
            problem = f"queue {target.name!r} is FIFO and the message has no group"
        elif not self._parts.genuine(config.name, taken.ref):
            self._dead_letters.drop_forged(config, taken)
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
                self._parts.open(item, taken.ref)
            except IntegrityError as exc:
                problem = f"integrity: {exc.message}"
        if problem or target is None:
            result.failed.append(
                EntryFailure(id=taken.ref.message_id, error="redrive_failed", message=problem or "")
            )
            self._hand_back(config, [taken])
            return
        self._mover.refer(config, taken.ref, target, item)
        self._leases.set_until(config, [taken.lease], SETTLED)
        result.moved += 1

    def _hand_back(self, config: QueueConfig, taken: Sequence[Taken]) -> None:
        """Give back leases that delivered to no one, their receive counts as they were."""
        if taken:
            self._leases.hand_back(config, [t.lease for t in taken])
