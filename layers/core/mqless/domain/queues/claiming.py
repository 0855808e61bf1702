"""Claiming references of one standard segment: one conditional write leases the chosen
free references, settles the expired ones seen, and settles the leases a receive
acknowledges in that segment ("ack and take the next"). If that write's condition fails,
the acks are settled on their own (a stale receipt fails there alone; none is lost), and
the lease is tried again alone only if an ack was what failed (otherwise another receiver
took a chosen reference: a lost race).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.lease_changes import LeaseChanges
from mqless.domain.queues.leases import Acks, Taken, Wanted, taken_in_segment
from mqless.domain.queues.receipts import Lease
from mqless.domain.queues.shard_memory import ShardMemory
from mqless.observability import metrics
from mqless.storage.index import IndexStore
from mqless.storage.segments import SETTLED, Entry, Hold, Segment, new_token


class Claims:
    """Conditional lease writes on standard segments."""

    def __init__(
        self, index: IndexStore, clock: Clock, memory: ShardMemory, changes: LeaseChanges
    ) -> None:
        self._index = index
        self._clock = clock
        self._memory = memory
        self._changes = changes

    def claim_from(
        self,
        config: QueueConfig,
        segments: list[Segment],
        want: int,
        lease_ms: int,
        oldest_first: bool,
        wanted: Wanted | None = None,
        acks: Acks | None = None,
    ) -> list[Taken]:
        """Lease up to `want` free references of these segments, in their order (a random
        choice in each, unless `oldest_first`); stop at a lost race unless `oldest_first`."""
        taken: list[Taken] = []
        for segment in segments:
            if len(taken) >= want:
                break
            for attempt in range(2):
                now = self._clock.now_ms()
                free = [e for e in segment.entries if e.free_at(now)]
                acked = set() if acks is None else acks.slots_in(segment.shard, segment.seq)
                live = [e for e in free if not e.expired(now) and e.slot not in acked]
                chosen = live if oldest_first else random.sample(live, len(live))
                if wanted is not None:
                    chosen = _wanted_first(chosen, want - len(taken), wanted)
                got = self.claim(config, segment, chosen[: want - len(taken)], free, lease_ms, acks)
                if got is not None:
                    taken.extend(got)
                    break
                if not oldest_first:
                    self._memory.lost_race(segment.queue)
                    return taken  # a competing consumer got there: race no more by guessing
                fresh = self._index.segment(segment.queue, segment.shard, segment.seq)
                if fresh is None or attempt == 1:
                    break
                segment = fresh
        return taken

    def claim_oldest(
        self,
        config: QueueConfig,
        segments: list[Segment],
        want: int,
        lease_ms: int,
        wanted: Wanted | None,
        taken: list[Taken],
    ) -> bool:
        """A push consumer's claims on one page of a look, oldest first, added to what it
        `taken` on the pages before (up to `want` in all); whether the look is done (all it
        wants, or, with no selector, less than was free here: some ran out or were taken).
        Otherwise it reads the next page: a lone
        consumer's refill (`leases.MAX_PUSH_TAKE`) wants more than a page of 4 segments
        holds (one read of bodies, not one a page); a selector looks further for what it
        takes."""
        now, need = self._clock.now_ms(), want - len(taken)
        free = [e for s in segments for e in s.entries if e.free_at(now)]
        if wanted is not None:
            # the first `need` free ones' log items in one read (the claim asks segment by
            # segment, and would read them one segment at a time)
            wanted([e.ref for e in free if not e.expired(now)][:need])
        got = self.claim_from(config, segments, need, lease_ms, True, wanted)
        taken += got
        return len(got) >= need or (wanted is None and len(got) < len(free))

    def claim(
        self,
        config: QueueConfig,
        segment: Segment,
        entries: Sequence[Entry],
        seen: Sequence[Entry],
        lease_ms: int,
        acks: Acks | None = None,
    ) -> list[Taken] | None:
        """Lease `entries` (free ones) and settle the expired ones of them and of `seen`, and
        `acks` of this segment, in one conditional write of their segment; None if another
        receiver took one first (the acks are settled all the same)."""
        acking = [] if acks is None else acks.pending_in(segment.shard, segment.seq)
        acked_leases = [acks.leases[n] for n in acking] if acks is not None else []
        holds = [Hold(lease.position, lease.token) for lease in acked_leases]
        if len({h.slot for h in holds}) != len(holds):
            acking, holds = [], []  # a receipt named twice: settled on its own (one fails)
        acked = {h.slot for h in holds}
        # a lease that ran out shows its reference free: acked, it is neither leased nor
        # settled as expired here (one write cannot set one place twice)
        entries = [e for e in entries if e.slot not in acked]
        now = self._clock.now_ms()
        expired = sorted({e.slot for e in [*entries, *seen] if e.expired(now)} - acked)
        chosen = sorted((e for e in entries if not e.expired(now)), key=lambda e: e.slot)
        if not chosen and not expired:
            return []
        token = new_token()
        self._memory.counted(claims=1)

        def lease(holds: Sequence[Hold] = ()) -> Segment | None:
            return self._index.claim(
                segment,
                [e.slot for e in chosen],
                now_ms=now,
                until_ms=now + lease_ms,
                token=token,
                settle=expired,
                acks=holds,
            )

        claimed = lease(holds)
        if acks is not None and acking:
            claimed = self._settle_carried(config, segment, acks, acking, claimed, lease)
        if claimed is None:
            self._memory.counted(lost=1)
            return None
        if expired:
            metrics.count("Expired", queue=config.name, value=len(expired))
        return [taken_in_segment(config, claimed, claimed.entries[e.slot], token) for e in chosen]

    def _settle_carried(
        self,
        config: QueueConfig,
        segment: Segment,
        acks: Acks,
        acking: list[int],
        claimed: Segment | None,
        lease: Callable[[], Segment | None],
    ) -> Segment | None:
        """Record how the acks a lease write carried went (`claimed`: that write's result).
        If it failed — a stale receipt, or a chosen reference another receiver took — the
        acks are settled on their own first (each stale one found and refused; no ack is
        lost), then the lease is written alone, if a stale receipt may have been all that
        failed; its result."""
        if claimed is not None:
            acks.record(acking, [True] * len(acking))
            return claimed
        acked_leases: list[Lease] = [acks.leases[n] for n in acking]
        outcome = self._changes.set_segment(
            config, segment.shard, segment.seq, acked_leases, SETTLED, release=False
        )
        acks.record(acking, outcome)
        return lease() if not all(outcome) else None


def _wanted_first(entries: Sequence[Entry], need: int, wanted: Wanted) -> list[Entry]:
    """The first `need` entries `wanted` keeps, asking it about no more than it must (each
    ask reads the log items of the references asked about)."""
    kept: list[Entry] = []
    start = 0
    while len(kept) < need and start < len(entries):
        batch = entries[start : start + need - len(kept)]
        start += len(batch)
        keep = wanted([e.ref for e in batch])
        kept += [e for e in batch if e.ref in keep]
    return kept
