"""Changing leases already given: settle (ack), release (nack), extend (change
visibility), hand back uncounted, and read what a lease holds. One write per segment (a
FIFO queue's too) for every lease in it; a stale lease is found and refused alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.leases import Acks
from mqless.domain.queues.receipts import Lease
from mqless.storage.groups import FifoIndex
from mqless.storage.index import IndexStore
from mqless.storage.segments import SETTLED, Hold, Ref


class LeaseChanges:
    """Lease changes over the index and the FIFO segments."""

    def __init__(self, index: IndexStore, fifo: FifoIndex, clock: Clock) -> None:
        self._index = index
        self._fifo = fifo
        self._clock = clock

    def hand_back(self, config: QueueConfig, leases: Sequence[Lease]) -> None:
        """Give back leases that delivered to no one: free at once, counts as they were."""
        now = self._clock.now_ms()
        by_place: dict[tuple[int, str], list[Lease]] = {}
        for lease in leases:
            by_place.setdefault((lease.shard, lease.place), []).append(lease)
        for (shard, place), group in by_place.items():
            if group[0].kind == "g":
                self._set_fifo_segment(config, place, group, now, release=True, uncount=True)
                continue
            # one write for the segment (a push's leases of it share their token)
            self.set_segment(config, shard, int(place), group, now, release=False, uncount=True)

    def settle_acks(self, config: QueueConfig, acks: Acks) -> None:
        """Settle the leases of `acks` that no lease write carried, one write per segment."""
        pending = acks.pending()
        if pending:
            outcome = self.set_until(config, [acks.leases[n] for n in pending], SETTLED)
            acks.record(pending, outcome)

    def holding(self, config: QueueConfig, lease: Lease) -> tuple[Ref, int, str] | None:
        """(ref, receive count, reason) of the message a lease holds, None if it is stale."""
        if lease.kind == "g":
            fifo = (
                self._fifo.segment(config.name, config.shards, int(lease.place))
                if _fifo_place(config, lease)
                else None
            )
            if fifo is None or lease.position >= len(fifo.entries):
                return None
            held = fifo.entries[lease.position]
            if held.token != lease.token or held.settled:
                return None
            return held.ref, held.count, held.reason
        segment = self._index.segment(config.name, lease.shard, lease.segment)
        if segment is None or lease.position >= len(segment.entries):
            return None
        entry = segment.entries[lease.position]
        if entry.token != lease.token or entry.settled:
            return None
        return entry.ref, entry.count, entry.reason

    def set_until(
        self, config: QueueConfig, leases: Sequence[Lease], until: int, *, release: bool = False
    ) -> list[bool]:
        """Settle (`until` = SETTLED), `release` (the receipts go stale) or extend leases;
        per lease, whether it was still current (False: a stale receipt, nothing changed)."""
        results = [False] * len(leases)
        by_place: dict[tuple[int, str], list[int]] = {}
        for number, lease in enumerate(leases):
            by_place.setdefault((lease.shard, lease.place), []).append(number)
        for (shard, place), positions in by_place.items():
            group = [leases[p] for p in positions]
            if group[0].kind == "g":
                outcome = self._set_fifo_segment(config, place, group, until, release=release)
            else:
                outcome = self.set_segment(config, shard, int(place), group, until, release)
            for p, ok in zip(positions, outcome, strict=True):
                results[p] = ok
        return results

    def set_segment(
        self,
        config: QueueConfig,
        shard: int,
        seq: int,
        leases: list[Lease],
        until: int,
        release: bool,
        *,
        uncount: bool = False,
    ) -> list[bool]:
        """`set_until` for leases of one standard segment: one write, unless one is stale."""
        holds = [Hold(lease.position, lease.token) for lease in leases]

        def write(these: list[Hold]) -> bool:
            return self._index.set_until(
                config.name, shard, seq, these, until, release=release, uncount=uncount
            )

        if len({h.slot for h in holds}) == len(holds):
            if write(holds):
                return [True] * len(holds)
            if len(holds) == 1:
                return [False]
        # one of them is stale (or named twice): find out which, one at a time
        return [write([hold]) for hold in holds]

    def _set_fifo_segment(
        self,
        config: QueueConfig,
        place: str,
        leases: list[Lease],
        until: int,
        *,
        release: bool = False,
        uncount: bool = False,
    ) -> list[bool]:
        """What `set_segment` does, on a FIFO segment: one write for every lease in it."""
        if not all(_fifo_place(config, lease) for lease in leases):
            return [False] * len(leases)  # not a segment of this queue's (an old receipt)
        seq = int(place)
        holds = [Hold(lease.position, lease.token) for lease in leases]

        def write(chosen: list[Hold]) -> bool:
            return self._fifo.set_until(
                config.name, config.shards, seq, chosen, until, release=release, uncount=uncount
            )

        if len({h.slot for h in holds}) == len(holds):
            if write(holds):
                return [True] * len(holds)
            if len(holds) == 1:
                return [False]
        # one of them is stale (or named twice): find out which, one at a time
        return [write([hold]) for hold in holds]


def _fifo_place(config: QueueConfig, lease: Lease) -> bool:
    """Whether a FIFO lease names a segment of this queue (a receipt of the group items
    FIFO queues had before their segments names a group: stale)."""
    place = lease.place
    return (
        place.isascii()
        and place.isdigit()
        and len(place) <= 12
        and int(place) % config.shards == lease.shard
    )
