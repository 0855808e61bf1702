"""The parts every queue operation works over, handed to each of `QueueService`'s pieces.

The storage engine's adapters (registry, log, index, FIFO index), the body cipher, the
broker's secret (receipt and reference MACs), the clock, the policy, and this process's
leases. Built once by `QueueService`; the pieces keep what they need of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqless.domain.access.principals import Policy
from mqless.domain.clock import Clock
from mqless.domain.queues.dedup import DedupHasher
from mqless.domain.queues.refs import genuine
from mqless.domain.queues.taking import Leases
from mqless.storage.destinations import QueueRegistry
from mqless.storage.groups import FifoIndex
from mqless.storage.index import IndexStore
from mqless.storage.log import LogItem, LogStore
from mqless.storage.sealing import BodyCipher, OpenedMessage, open_logged
from mqless.storage.segments import Ref


@dataclass(frozen=True)
class QueueParts:
    """What the queue operations share: stores, cipher, secret, clock, policy, leases."""

    registry: QueueRegistry
    log: LogStore
    index: IndexStore
    fifo: FifoIndex
    cipher: BodyCipher
    secret: DedupHasher
    clock: Clock
    policy: Policy
    leases: Leases

    def genuine(self, queue: str, ref: Ref) -> bool:
        """Whether the broker put `ref` in `queue`'s index (`refs.py`)."""
        return genuine(self.secret.mac, queue, ref)

    def open(self, item: LogItem, ref: Ref) -> OpenedMessage:
        """The body `ref` names in `item`, opened (IntegrityError if it fails authentication)."""
        return open_logged(self.cipher, item, ref.slot, now_ms=self.clock.now_ms())

    def log_item(self, ref: Ref) -> LogItem | None:
        """The log item holding `ref`'s body; None if it is gone (expired)."""
        return self.log.items([(ref.log, ref.item)]).get((ref.log, ref.item))
