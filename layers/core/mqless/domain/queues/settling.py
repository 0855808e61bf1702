"""Settling leased messages by receipt or lease: ack, nack (now or after a delay), change
visibility, and a push consumer's settlement of many leases at once. A stale receipt
settles nothing and fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.errors import InvalidRequest, StaleReceipt
from mqless.domain.models import EntryFailure, QueueConfig
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.receipts import Lease, decode_receipt
from mqless.observability import metrics
from mqless.storage.segments import SETTLED


class Settler:
    """Applies lease changes that receipts (or a push consumer's leases) ask for."""

    def __init__(self, parts: QueueParts) -> None:
        self._registry = parts.registry
        self._secret = parts.secret
        self._clock = parts.clock
        self._policy = parts.policy
        self._leases = parts.leases

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
        config, parsed, failed = self.parse_receipts(principal, queue, receipts)
        done: list[str] = []
        if parsed:
            leases = [lease for _, lease in parsed]
            outcome = self._leases.set_until(config, leases, until(), release=release)
            for (text, _), ok in zip(parsed, outcome, strict=True):
                if ok:
                    done.append(text)
                else:
                    failed.append(stale(text))
        return done, failed

    def parse_receipts(
        self, principal: Principal, queue: str, receipts: Sequence[str]
    ) -> tuple[QueueConfig, list[tuple[str, Lease]], list[EntryFailure]]:
        """The queue (once `principal` may receive from it), the receipts that name a lease
        of it (text and lease), and a failure for each of the others."""
        names.validate_queue_name(queue)
        self._policy.check(principal, Action.RECEIVE, queue)
        if not 1 <= len(receipts) <= models.MAX_BATCH:
            raise InvalidRequest(f"give 1 to {models.MAX_BATCH} receipts")
        config = self._registry.get(queue)
        parsed: list[tuple[str, Lease]] = []
        failed: list[EntryFailure] = []
        for text in receipts:
            try:
                lease = decode_receipt(text, queue=queue, sign=self._secret.sign)
                if not config.has_index_shard(lease.shard) or (lease.kind == "g") != config.fifo:
                    raise InvalidRequest("malformed receipt")
                parsed.append((text, lease))
            except InvalidRequest as exc:
                failed.append(EntryFailure(id=text[:200], error=exc.code, message=exc.message))
        return config, parsed, failed

    def lease_of(self, queue: str, receipt: str) -> Lease:
        """The lease a receipt of `queue` names (push consumers keep leases, a fifth of a
        receipt's size); InvalidRequest unless this broker gave it out."""
        return decode_receipt(receipt, queue=queue, sign=self._secret.sign)

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
            self._leases.hand_back(config, ours)
            return valid
        until = SETTLED if outcome == "ack" else self._clock.now_ms() + delay_seconds * 1000
        outcomes = iter(self._leases.set_until(config, ours, until, release=outcome == "nack"))
        done = [next(outcomes) if ok else False for ok in valid]
        if any(done):
            name = "Acked" if outcome == "ack" else "Nacked"
            metrics.count(name, queue=queue, value=sum(done))
        return done


def stale(receipt: str) -> EntryFailure:
    """The failure a receipt whose lease is no longer current gets."""
    return EntryFailure(
        id=receipt[:200],
        error=StaleReceipt.code,
        message="receipt is stale: the message was acknowledged, or its lease expired and "
        "it was delivered again",
    )
