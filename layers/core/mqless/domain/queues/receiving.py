"""Receiving: leasing messages (waiting for them up to a limit), "ack and take the next",
and the looks a push pump takes before it receives (is anything visible?).

Receivers take free messages of the oldest segments in a random order; once they compete,
by ticket (`racing.py`). What is leased is opened for delivery by `opening.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.errors import Forbidden, InvalidRequest
from mqless.domain.messages import Delivery
from mqless.domain.models import EntryFailure, QueueConfig
from mqless.domain.queues.admin import QueueAdmin
from mqless.domain.queues.counting import MessageCounter
from mqless.domain.queues.leases import MAX_PUSH_TAKE, Acks
from mqless.domain.queues.opening import Opener
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.selection import Selection, Verdicts
from mqless.domain.queues.settling import Settler, stale
from mqless.observability import metrics

FIRST_POLL_SECONDS: Final = 0.05
MAX_POLL_SECONDS: Final = 1.0


@dataclass(frozen=True)
class AckedAndReceived:
    """What a receive that acknowledged receipts did: each receipt's outcome, as `ack`
    reports it, and the messages leased."""

    acked: list[str]
    failed: list[EntryFailure]
    messages: list[Delivery]


class Receiver:
    """Leases messages for receivers and push consumers, and opens them."""

    def __init__(
        self,
        parts: QueueParts,
        *,
        admin: QueueAdmin,
        counter: MessageCounter,
        settler: Settler,
        opener: Opener,
    ) -> None:
        self._parts = parts
        self._registry = parts.registry
        self._clock = parts.clock
        self._policy = parts.policy
        self._leases = parts.leases
        self._admin = admin
        self._counter = counter
        self._settler = settler
        self._opener = opener
        self._verdicts = Verdicts()

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
        """Lease up to `max_messages` (1 to 10; a push consumer's pump, `owner` set, up to
        `MAX_PUSH_TAKE`), waiting up to `wait_seconds` for the first to arrive.

        Receivers take free messages of the oldest segments in a random order; once they
        compete, by ticket (`racing.py`); `oldest_first` keeps their order instead (push
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
        receipt fails alone). One whose segment the receive leases from is settled in the
        lease's write: a lone consumer's ack and next lease are most often one write
        (`claiming.py`, `fifo_leases.py`). In a FIFO queue an acked message's group is not
        among the heads that write leases (its next message is a head only once the ack is
        written), so a receive that found fewer than it wants looks again, at once, after
        its acks: the acked groups' next messages are heads then.
        """
        config, lease_ms = self._open_receive(
            principal, queue, max_messages, wait_seconds, visibility_timeout, None
        )
        _, parsed, failed = self._settler.parse_receipts(principal, queue, receipts)
        acks = Acks([lease for _, lease in parsed])
        try:
            deliveries = self._poll(config, max_messages, wait_seconds, lease_ms, acks=acks)
        finally:
            self._leases.settle_acks(config, acks)
        acked: list[str] = []
        for (text, _), ok in zip(parsed, acks.outcome, strict=True):
            if ok:
                acked.append(text)
            else:
                failed.append(stale(text))
        if acked:
            metrics.count("Acked", queue=queue, value=len(acked))
        return AckedAndReceived(acked=acked, failed=failed, messages=deliveries)

    def open_for_receive(self, principal: Principal, queue: str) -> QueueConfig:
        """Check that `principal` may consume `queue`, creating it with defaults if new (and
        the principal may create it).

        Push consumers subscribe before anything is sent, as on ActiveMQ, where a
        subscription creates its queue.
        """
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        return self._admin.ensure_queue(queue, principal)

    def has_visible(self, queue: str) -> bool:
        """Whether anything may be leasable now (reads only; the index may lag)."""
        config = self._registry.find(queue)
        if config is None:
            return False
        now = self._clock.now_ms()
        # a standard queue's shards from where messages were last found: a push pump after
        # the dispatch function indexed a producer's messages reads that shard first, not
        # every empty one before it (0.5 RRU each)
        order = range(config.shards) if config.fifo else self._leases.shard_order(config)
        for shard in order:
            if not config.fifo:
                # as far as a push consumer's receive reads: messages held by consumers (a
                # prefetch of 100 is 100 leased references) do not hide the ones after them
                if self._leases.visible_in(config.name, shard):
                    return True
                continue
            for read, (until, _, _) in enumerate(self._counter.states(config, shard)):
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
        return any(self._leases.visible_in(queue, s, consistent=True) for s in shards)

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
        most = models.MAX_BATCH if owner is None else MAX_PUSH_TAKE
        if not 1 <= max_messages <= most:
            raise InvalidRequest(f"max_messages must be 1 to {most}")
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
        # shards that another receiver of this process found empty since this one last
        # looked are not read again (unless something was freed there: `shard_memory.py`)
        fresh_since = self._clock.now_ms() - int(FIRST_POLL_SECONDS * 1000)
        while True:
            selection = (
                None
                if selector is None
                else Selection(self._parts, self._verdicts, config, selector)
            )
            found = self._deliver(
                config, max_messages, lease_ms, oldest_first, selection, acks, fresh_since
            )
            if acks is not None:
                self._leases.settle_acks(config, acks)
                if config.fifo and len(found) < max_messages and any(acks.outcome):
                    found += self._deliver(
                        config, max_messages - len(found), lease_ms, oldest_first, selection
                    )
                acks = None
            fresh_since = self._clock.now_ms()
            remaining = (deadline - fresh_since) / 1000
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
        selection: Selection | None = None,
        acks: Acks | None = None,
        fresh_since: int | None = None,
    ) -> list[Delivery]:
        """Lease messages and open them; what may not go out is expired or dead-lettered."""
        deliveries: list[Delivery] = []
        for _ in range(3):  # a round that only expired or dead-lettered looks again
            taken = self._leases.take(
                config,
                want - len(deliveries),
                lease_ms,
                oldest_first=oldest_first,
                wanted=None if selection is None else selection.wanted,
                acks=acks,
                fresh_since=fresh_since,
            )
            if not taken:
                break
            known = None if selection is None else selection.items
            deliveries.extend(self._opener.open_taken(config, taken, known))
            if len(deliveries) >= want or len(deliveries) > 0:
                break
        return deliveries
