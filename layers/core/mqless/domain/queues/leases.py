"""Leases as the queue service sees them: what a take leased (`Taken`), the leases a
receive settles as it takes (`Acks`), a selector's say in what is taken (`Wanted`), and
this process's lease counters (`LeaseStats`).

How messages are found, taken and settled: `taking.py` (the entry point, `Leases`, and a
standard queue's oldest segments), `claiming.py`, `racing.py`, `fifo_leases.py`,
`lanes.py`, `lease_changes.py`, `shard_memory.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from mqless.domain.models import QueueConfig
from mqless.domain.queues.receipts import Lease
from mqless.storage.fifo_segments import FifoEntry, FifoSegment
from mqless.storage.segments import Entry, Ref, Segment

SCAN_SEGMENTS: Final = 4  # segments of a standard shard read at once from the floor
# what a push consumer's pump (an internal caller) may lease in one receive, beyond the HTTP
# API's 10: a lone consumer's refill takes one push's worth in one look
MAX_PUSH_TAKE: Final = 50

Wanted = Callable[[Sequence[Ref]], Collection[Ref]]
"""Of free references about to be claimed, those the receiver wants (a selector consumer:
`selection.py` reads and opens their bodies to decide); the others stay free, untouched."""


@dataclass(frozen=True)
class Taken:
    """A message just leased."""

    lease: Lease
    ref: Ref
    count: int  # receive count, this lease included
    reason: str = ""  # a dead letter's "<source queue>\n<reason>"
    group: str | None = None


class Acks:
    """Leases a receive settles ("ack and take the next"), and per lease, once known,
    whether it was still current (False: a stale receipt, nothing changed)."""

    def __init__(self, leases: Sequence[Lease]) -> None:
        self.leases = list(leases)
        self.outcome: list[bool | None] = [None] * len(self.leases)

    def pending_in(self, shard: int, seq: int) -> list[int]:
        """The leases of a segment not yet settled (numbers into `leases`)."""
        return [
            number
            for number, lease in enumerate(self.leases)
            if self.outcome[number] is None
            and lease.kind == "s"
            and (lease.shard, lease.segment) == (shard, seq)
        ]

    def fifo_pending_in(self, seq: int) -> list[int]:
        """The leases of a FIFO queue's segment `seq` not yet settled (numbers into
        `leases`)."""
        return [
            number
            for number, lease in enumerate(self.leases)
            if self.outcome[number] is None
            and lease.kind == "g"
            and lease.place.isascii()
            and lease.place.isdigit()
            and int(lease.place) == seq
        ]

    def slots_in(self, shard: int, seq: int) -> set[int]:
        """The places in a segment of its leases not yet settled (not to be leased again in
        the write that settles them, though a lease that ran out shows them free)."""
        return {self.leases[n].position for n in self.pending_in(shard, seq)}

    def pending(self) -> list[int]:
        """The leases not yet settled, in any segment."""
        return [number for number, done in enumerate(self.outcome) if done is None]

    def record(self, numbers: Sequence[int], outcome: Sequence[bool]) -> None:
        """Note how the writes that settled these leases went."""
        for number, ok in zip(numbers, outcome, strict=True):
            self.outcome[number] = ok


@dataclass
class LeaseStats:
    """Per process: conditional writes that lost a race, and those that won."""

    claims: int = 0
    lost: int = 0
    tickets: int = 0  # dispenser writes (tickets taken, and the dispenser moved)


def taken_in_segment(config: QueueConfig, segment: Segment, entry: Entry, token: int) -> Taken:
    """What leasing `entry` of a standard queue's index segment took."""
    return Taken(
        lease=Lease(config.name, segment.shard, "s", str(segment.seq), entry.slot, token),
        ref=entry.ref,
        count=entry.count,
        reason=entry.reason,
    )


def taken_in_fifo_segment(
    config: QueueConfig, segment: FifoSegment, entry: FifoEntry, token: int
) -> Taken:
    """What leasing `entry` of a FIFO queue's segment took."""
    return Taken(
        lease=Lease(config.name, segment.shard, "g", str(segment.seq), entry.slot, token),
        ref=entry.ref,
        count=entry.count,
        reason=entry.reason,
    )
