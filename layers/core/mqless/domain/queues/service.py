"""The broker's queue operations, one entry point (`QueueService`) over the pieces that
hold them.

The rules live in those pieces; storage engine v2 keeps the data (docs/storage-engine.md):
a body is written once into its queue's log (`sending.py`, `storage.log`) and never
rewritten; the dispatch function indexes it (`indexing.py`); leases and settlements are
small writes shared by many messages (`taking.py`, `receiving.py`, `settling.py`). Moving a
message (dead letter, redrive, move, copy: `dead_letters.py`, `redriving.py`, `moving.py`)
writes a reference to its body into the target's log, never the body again. Every
operation takes the calling principal and asks the policy first, so permissions are
checked in one place.

  admin.py      create, replace, delete, purge queues; queues made on first use
  counting.py   visible / in flight / delayed counts and stats
  browsing.py   messages peeked at without leasing
  moving.py     the operator's move, copy, delete; the reference every move writes
  sending.py    send, send_batch
  receiving.py  receive, ack and take the next (`selection.py`: selectors;
                `opening.py`: what was leased, delivered or set aside)
  settling.py   ack, nack, change visibility, a push consumer's leases
  dead_letters.py, redriving.py, sweeping.py
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from mqless.domain.access.principals import AllowAll, Policy, Principal
from mqless.domain.access.quotas import Quotas
from mqless.domain.clock import Clock
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.pieces import OperationPieces
from mqless.domain.queues.taking import Leases

if TYPE_CHECKING:
    from mqless.domain.messages import Delivery, NewMessage, SendResult
    from mqless.domain.models import (
        BrowsedMessage,
        EntryFailure,
        QueueConfig,
        QueueCounts,
        QueueSettings,
        QueueStats,
        RedriveResult,
    )
    from mqless.domain.queues.counting import StatsPage
    from mqless.domain.queues.dedup import DedupHasher
    from mqless.domain.queues.leases import Taken
    from mqless.domain.queues.receipts import Lease
    from mqless.domain.queues.receiving import AckedAndReceived
    from mqless.domain.queues.sweeping import SweepReport
    from mqless.storage.dedup_records import DedupRecords
    from mqless.storage.destinations import QueueRegistry
    from mqless.storage.groups import FifoIndex
    from mqless.storage.index import IndexStore
    from mqless.storage.log import LogStore
    from mqless.storage.sealing import BodyCipher
    from mqless.storage.wake import WakeMarkers


class QueueService(OperationPieces):
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
        policy = policy or AllowAll()
        self.leases = Leases(index, fifo, clock)
        self._registry = registry
        self._wake = wake
        self._fifo = fifo
        self._dedup = dedup
        self._clock = clock
        parts = QueueParts(
            registry=registry,
            log=log,
            index=index,
            fifo=fifo,
            cipher=cipher,
            secret=dedup,
            clock=clock,
            policy=policy,
            leases=self.leases,
        )
        super().__init__(parts, dedup_records=dedup_records, quotas=quotas or Quotas(policy))

    # ---- queue admin (admin.py, counting.py) ----------------------------------------------

    def put_queue(
        self, principal: Principal, name: str, settings: QueueSettings
    ) -> tuple[QueueConfig, bool]:
        """Create a queue or replace its settings; returns (config, created)."""
        return self._admin.put_queue(principal, name, settings)

    def update_queue(self, principal: Principal, name: str, changes: QueueSettings) -> QueueConfig:
        """Change the settings named in `changes`, keeping the others."""
        return self._admin.update_queue(principal, name, changes)

    def get_queue(self, principal: Principal, name: str) -> tuple[QueueConfig, QueueCounts]:
        """A queue's settings and message counts."""
        return self._admin.get_queue(principal, name)

    def list_queues(self, principal: Principal) -> list[QueueConfig]:
        """Every queue the principal may administer (the others are not listed)."""
        return self._admin.list_queues(principal)

    def delete_queue(self, principal: Principal, name: str) -> None:
        """Delete a queue: its settings and its index (its logs expire by themselves)."""
        self._admin.delete_queue(principal, name)

    def purge(self, principal: Principal, name: str) -> int:
        """Drop every message of a queue; returns the count."""
        return self._admin.purge(principal, name)

    def open_temporary(self, name: str) -> QueueConfig:
        """A connection's temporary queue, made on first use by the broker itself."""
        return self._admin.open_temporary(name)

    def delete_temporary(self, name: str) -> None:
        """Delete a temporary queue whose connection has gone (none there: nothing to do)."""
        self._admin.delete_temporary(name)

    def has_queue(self, name: str) -> bool:
        """Does the queue exist? (internal: no permission involved)"""
        return self._registry.find(name) is not None

    def config_of(self, queue: str) -> QueueConfig:
        """The queue's settings, as the registry caches them (QueueNotFound if none)."""
        return self._registry.get(queue)

    def queue_names(self) -> list[str]:
        """Every queue's name (internal: the sweeper's round, no permission involved)."""
        return [config.name for config in self._registry.list()]

    def stats(self, principal: Principal, name: str, *, consumers: int = 0) -> QueueStats:
        """Counts, the oldest message's age and the dead-letter depth, from bounded reads."""
        return self._counter.stats(principal, name, consumers=consumers)

    def stats_page(
        self,
        principal: Principal,
        *,
        limit: int,
        after: str | None = None,
        name_contains: str | None = None,
        consumers: Callable[[str], int],
    ) -> StatsPage:
        """A page of the stats of the queues the principal administers, by name: the first
        `limit` after `after` of those whose name contains `name_contains` (any case)."""
        listed = self.list_queues(principal)
        wanted = (name_contains or "").lower()
        return self._counter.page(
            [c for c in listed if wanted in c.name.lower()],
            limit=limit,
            after=after,
            consumers=consumers,
            known={c.name: c for c in listed},
        )

    # ---- the operator's view and actions (browsing.py, moving.py) --------------------------

    def browse(
        self, principal: Principal, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[BrowsedMessage], str | None]:
        """A page of messages peeked at without leasing, and the next cursor."""
        return self._browser.browse(principal, name, limit=limit, cursor=cursor)

    def delete_message(self, principal: Principal, name: str, message_id: str) -> None:
        """Delete one message, whatever its state (a consumer's late ack is then stale)."""
        self._mover.delete_message(principal, name, message_id)

    def move_message(
        self, principal: Principal, name: str, message_id: str, *, to: str, copy: bool = False
    ) -> str:
        """Move (or copy) one message to another queue; it keeps its id and body."""
        return self._mover.move_message(principal, name, message_id, to=to, copy=copy)

    # ---- producing (sending.py) -----------------------------------------------------------

    def send(self, principal: Principal, queue: str, message: NewMessage) -> SendResult:
        """Accept one message (the queue made on first use if the principal may)."""
        return self._sender.send(principal, queue, message)

    def send_batch(
        self, principal: Principal, queue: str, entries: Sequence[tuple[str, NewMessage]]
    ) -> tuple[list[tuple[str, SendResult]], list[EntryFailure]]:
        """Accept up to 10 messages; each entry succeeds or fails on its own, as in SQS."""
        return self._sender.send_batch(principal, queue, entries)

    def open_for_send(self, principal: Principal, queue: str) -> QueueConfig:
        """Check that `principal` may send to `queue`, making it if new (and allowed)."""
        return self._sender.open_for_send(principal, queue)

    def check_send(self, principal: Principal, queue: str) -> None:
        """Forbidden or QueueNotFound unless `principal` may send to `queue`."""
        self._sender.check_send(principal, queue)

    # ---- consuming (receiving.py, opening.py, settling.py) ------------------------------------

    def open_for_receive(self, principal: Principal, queue: str) -> QueueConfig:
        """Check that `principal` may consume `queue`, making it if new (and allowed)."""
        return self._receiver.open_for_receive(principal, queue)

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
        """Lease up to `max_messages`, waiting up to `wait_seconds` for the first to arrive."""
        return self._receiver.receive(
            principal,
            queue,
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            visibility_timeout=visibility_timeout,
            owner=owner,
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
        """Acknowledge `receipts` and lease up to `max_messages` ("ack and take the next")."""
        return self._receiver.ack_and_receive(
            principal,
            queue,
            receipts,
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            visibility_timeout=visibility_timeout,
        )

    def has_visible(self, queue: str) -> bool:
        """Whether anything may be leasable now (reads only; the index may lag)."""
        return self._receiver.has_visible(queue)

    def left_visible(self, queue: str, shards: Iterable[int]) -> bool:
        """Whether anything is leasable now in these shards, strongly consistent."""
        return self._receiver.left_visible(queue, shards)

    def wake(self, queue: str) -> None:
        """Ask for another pump of the queue's push consumers (through the stream)."""
        self._wake.wake(queue, self._clock.now_ms())

    def open_leased(
        self, queue: str, leased: Sequence[Taken], images: Mapping[tuple[str, str], dict[str, Any]]
    ) -> list[Delivery]:
        """Open messages the dispatch function appended leased, from their stream images."""
        return self._opener.open_leased(queue, leased, images)

    def ack(
        self, principal: Principal, queue: str, receipts: Sequence[str]
    ) -> tuple[list[str], list[EntryFailure]]:
        """Settle messages under their leases; a stale receipt settles nothing."""
        return self._settler.ack(principal, queue, receipts)

    def nack(
        self, principal: Principal, queue: str, receipts: Sequence[str], delay_seconds: int = 0
    ) -> tuple[list[str], list[EntryFailure]]:
        """Give messages back now or after a delay; the delivery counts as a failed attempt."""
        return self._settler.nack(principal, queue, receipts, delay_seconds)

    def change_visibility(
        self, principal: Principal, queue: str, receipts: Sequence[str], timeout_seconds: int
    ) -> tuple[list[str], list[EntryFailure]]:
        """Set the remaining lease to `timeout_seconds` from now (0 releases at once)."""
        return self._settler.change_visibility(principal, queue, receipts, timeout_seconds)

    def lease_of(self, queue: str, receipt: str) -> Lease:
        """The lease a receipt of `queue` names; InvalidRequest unless this broker gave it."""
        return self._settler.lease_of(queue, receipt)

    def settle_leases(
        self,
        principal: Principal,
        queue: str,
        leases: Sequence[Lease],
        *,
        outcome: Literal["ack", "nack", "hand_back"],
        delay_seconds: int = 0,
    ) -> list[bool]:
        """Ack, nack or hand back any number of leases of `queue`; per lease, if current."""
        return self._settler.settle_leases(
            principal, queue, leases, outcome=outcome, delay_seconds=delay_seconds
        )

    # ---- dead letters (dead_letters.py, redriving.py) and the sweeper (sweeping.py) -------

    def dead_letter_undeliverable(
        self, principal: Principal, queue: str, receipt: str, reason: str
    ) -> bool:
        """Dead-letter a leased message its consumer cannot be sent; False if it is gone."""
        return self._dead_letters.dead_letter_undeliverable(principal, queue, receipt, reason)

    def redrive(
        self,
        principal: Principal,
        queue: str,
        *,
        max_messages: int = 100,
        destination: str | None = None,
    ) -> RedriveResult:
        """Move messages from a dead-letter queue back to where they came from."""
        return self._redriver.redrive(
            principal, queue, max_messages=max_messages, destination=destination
        )

    def sweep(self, *, budget_ms: int = 50_000) -> SweepReport:
        """Dead-letter over-limit messages without waiting for receivers, and move floors."""
        return self._sweeper.sweep(budget_ms=budget_ms)


__all__ = ["QueueService"]
