"""Taking messages: finding, leasing and settling them (`Leases`, the queue service's one
entry point), and a standard queue's look at its oldest segments.

A standard queue's messages are references in its index segments (`storage.index`); a
FIFO queue's are references in one sequence of segments for the whole queue, each tagged
with its group (`fifo_leases.py`). Taking messages is one conditional write per segment,
however many it takes (`claiming.py`); so is settling them (`lease_changes.py`). What is
taken is a `Taken` (the lease, the reference, the receive count); opening bodies and
deciding to deliver, expire or dead-letter is the queue service's (`opening.py`).

Competing consumers: each process remembers, per queue, the shard where it last found
messages and starts there (`shard_memory.py`); others start at a random shard. Within the
oldest segments it takes a random choice of free references (unless `oldest_first`), so
consumers reading the same segment rarely want the same reference. A lost race costs one
failed conditional write (billed as a successful one); after one, or once another
receiver took a ticket, receivers race by ticket (`racing.py`); one alone never does.
Push consumers (`oldest_first`) do not compete: the dispatch function feeds them in turn.

Ack and take the next: a receive may carry leases to settle (`Acks`). One in the segment
the receive leases from is settled by the lease's own conditional write (one write, not
two: a lone consumer's next message is most often in the segment of the one it acks); the
rest after the receive, as an ack request would (`settle_acks`).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator, Sequence
from typing import Final

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.claiming import Claims
from mqless.domain.queues.fifo_leases import FIFO_MAX_SCAN, FifoLeases
from mqless.domain.queues.lanes import PriorityLanes
from mqless.domain.queues.lease_changes import LeaseChanges
from mqless.domain.queues.leases import (
    SCAN_SEGMENTS,
    Acks,
    LeaseStats,
    Taken,
    Wanted,
    taken_in_segment,
)
from mqless.domain.queues.racing import Racing
from mqless.domain.queues.receipts import Lease
from mqless.domain.queues.shard_memory import HeldRun, ShardMemory
from mqless.domain.queues.turns import Turns
from mqless.storage.fifo_segments import FifoEntry, FifoSegment
from mqless.storage.groups import FifoIndex
from mqless.storage.index import IndexStore
from mqless.storage.segments import Entry, Ref, Segment, new_token

WIDE_SCAN_SEGMENTS: Final = 8  # competing receivers choose among more, to collide less
MAX_SCAN_PAGES: Final = 4  # pages of segments one look at a shard reads at most
MAX_PASSED_SEGMENTS: Final = 64  # settled segments at the floor a push pump's look passes free
FLOOR_STEP: Final = 8  # settled segments passed before the floor is moved (one write)


class Leases:
    """Take and settle leases over the index and the FIFO segments."""

    def __init__(self, index: IndexStore, fifo: FifoIndex, clock: Clock) -> None:
        self._index = index
        self._clock = clock
        self._memory = ShardMemory(index, clock)
        self._changes = LeaseChanges(index, fifo, clock)
        self._claims = Claims(index, clock, self._memory, self._changes)
        self._racing = Racing(index, clock, self._memory, self._claims)
        self._fifo = FifoLeases(fifo, clock, self._memory)
        self._lanes = PriorityLanes(index, clock, self._memory)
        self._turns = Turns()

    @property
    def stats(self) -> LeaseStats:
        """This process's lease writes: claims, lost races, tickets."""
        return self._memory.stats

    # ---- taking -------------------------------------------------------------------------

    def take(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        *,
        oldest_first: bool = False,
        wanted: Wanted | None = None,
        acks: Acks | None = None,
        fresh_since: int | None = None,
    ) -> list[Taken]:
        """Lease up to `want` messages for `lease_ms` (only `wanted` ones, oldest first);
        `acks` are settled in the lease writes of their segments, where there is one (the
        rest: `settle_acks`). A standard shard that a look since
        `fresh_since` (ms) found empty, with nothing freed there since that this process
        knows of, is not read again (`shard_memory.py`); nor are a FIFO queue's heads that
        a look since then found all held (`fifo_leases.py`)."""
        if wanted is not None:
            oldest_first = True  # a selector consumer is a push consumer: it does not race
        if config.fifo:
            return self._fifo.take(config, want, lease_ms, oldest_first, wanted, fresh_since, acks)
        taken: list[Taken] = []
        for shard in self.shard_order(config, acks):
            if len(taken) >= want:
                break
            # one look at a shard at a time in this process: one that waited for another's
            # reads what that one claimed, or skips the shard if that one found it empty
            with self._turns.of(config.name, shard):
                if fresh_since is not None and self._memory.known_empty(
                    config.name, shard, since=fresh_since
                ):
                    continue
                got = self._take_standard(
                    config, shard, want - len(taken), lease_ms, oldest_first, wanted, acks
                )
            if got:
                self._memory.found_in(config.name, shard)
            taken.extend(got)
        return taken

    def shard_order(self, config: QueueConfig, acks: Acks | None = None) -> list[int]:
        """The shards in the order to look at them: from where this process last found
        messages (a producer's messages share a shard: that is where the next ones are),
        or where the leases being acknowledged are (the next is likely beside them),
        otherwise from a random one (competing consumers spread). A queue with priorities:
        lane by lane, highest first (`lanes.py`)."""
        if config.max_priority is not None:
            return self._lanes.order(config)
        start = self._memory.home(config.name)
        if acks is not None and (pending := acks.pending()):
            start = acks.leases[pending[0]].shard
        if start is None or start >= config.shards:
            start = random.randrange(config.shards)
        return [(start + i) % config.shards for i in range(config.shards)]

    def visible_in(self, queue: str, shard: int, *, consistent: bool = False) -> bool:
        """Whether an oldest-first lease (a push consumer's) would find a message in this
        standard queue shard: the segments it would read, from the floor on, looked at with
        no write (`consistent`: strongly, so that what was just indexed is seen).

        A run of settled segments at the floor is passed as a receive passes it (the floor
        moves past it, one write), and is not counted in the pages looked at: a push
        consumer fed only by the dispatch function's appends (each acked before the next)
        leaves nothing else to move the floor, and the look would end in settled segments
        before what waits behind them, until the sweeper moved it a minute later."""
        floor = self.floor(queue, shard)
        held = self._memory.look_start(queue, shard, floor)
        start, pages, found = held.start, 0, False
        while pages < MAX_SCAN_PAGES and not found:
            segments = self._index.segments(
                queue, shard, start, limit=SCAN_SEGMENTS, consistent=consistent
            )
            now = self._clock.now_ms()
            held.saw(segments, now)
            found = any(e.free_at(now) and not e.expired(now) for s in segments for e in s.entries)
            if found or len(segments) < SCAN_SEGMENTS:
                break
            start = segments[-1].seq + 1
            # a page wholly passed (held or settled) costs no page, up to a bound
            if not held.passed(start) or held.length >= MAX_PASSED_SEGMENTS:
                pages += 1
        self._passed_held(queue, shard, floor, held)
        if found:
            self._memory.found_in(queue, shard)  # look here first next time
        return found

    def _take_standard(
        self,
        config: QueueConfig,
        shard: int,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        wanted: Wanted | None = None,
        acks: Acks | None = None,
    ) -> list[Taken]:
        queue = config.name
        floor = self.floor(queue, shard)
        began = self._clock.now_ms()
        empty = _EmptyLook(began, self._memory.freeing_stamp(queue, shard))
        held: HeldRun | None = None
        if oldest_first:  # a push consumer's: past the run of held segments a look found
            held = self._memory.look_start(queue, shard, floor)
            empty.wakes_at = held.wakes_at
        try:
            return self._look(config, shard, floor, want, lease_ms, empty, held, wanted, acks)
        finally:
            if held is not None:
                self._passed_held(queue, shard, floor, held)

    def _look(
        self,
        config: QueueConfig,
        shard: int,
        floor: int,
        want: int,
        lease_ms: int,
        empty: _EmptyLook,
        held: HeldRun | None,
        wanted: Wanted | None,
        acks: Acks | None,
    ) -> list[Taken]:
        """Read a standard shard's segments and lease what is free there (a push consumer's
        look, `held` given: oldest first, from where the run of held segments ends)."""
        queue, oldest_first = config.name, held is not None
        start, pages = held.start if held else self._memory.settled_to(queue, shard, floor), 0
        taken: list[Taken] = []  # a push consumer's, from pages before this one
        while pages < MAX_SCAN_PAGES:
            scan = SCAN_SEGMENTS if oldest_first else WIDE_SCAN_SEGMENTS
            segments = self._index.segments(queue, shard, start, limit=scan)
            if not segments:  # (a look that took something saw free ones: noted not empty)
                empty.note(self._memory, queue, shard)
                return taken
            now = self._clock.now_ms()
            empty.saw(segments, now)
            if held is not None:
                held.saw(segments, now)
            else:
                self._pass_settled(queue, shard, floor, segments)
            with_free = [s for s in segments if any(e.free_at(now) for e in s.entries)]
            if with_free and oldest_first:
                done = self._claims.claim_oldest(config, with_free, want, lease_ms, wanted, taken)
                if done or len(segments) < scan:
                    return taken
            elif with_free:
                read_end = segments[-1].end if len(segments) < scan else None
                return self._compete(config, shard, with_free, want, lease_ms, acks, read_end)
            if len(segments) < scan:
                empty.note(self._memory, queue, shard)  # read to its end: nothing free
                return taken
            start = segments[-1].seq + 1
            # a page wholly passed as held costs no page, up to a bound
            if held is None or not held.passed(start) or held.length >= MAX_PASSED_SEGMENTS:
                pages += 1
        if not taken and (hint := self._memory.take_floor_hint(queue, shard)) is not None:
            # a look that read its every page without reaching anything free: the floor's
            # move waits for no ticket (none may come), or the next look would stop here too
            self.advance_floor(queue, shard, hint)
        return taken

    def _compete(
        self,
        config: QueueConfig,
        shard: int,
        with_free: list[Segment],
        want: int,
        lease_ms: int,
        acks: Acks | None,
        read_end: int | None,
    ) -> list[Taken]:
        """Lease among the free references of these segments as a competing consumer: by
        ticket if this queue's receivers race, otherwise by a random guess (`read_end`: the
        position after the shard's last reference, if the read reached it)."""
        queue = config.name
        now = self._clock.now_ms()
        if self._memory.racing(queue, now):
            return self._racing.take(
                config, shard, with_free, want, lease_ms, acks, read_end=read_end
            )
        # competing consumers spread over the oldest segments, not all on the first
        random.shuffle(with_free)
        if acks is not None:
            # those whose leases this receive acknowledges first: one write for both
            with_free.sort(key=lambda s: not acks.pending_in(shard, s.seq))
        taken = self._claims.claim_from(config, with_free, want, lease_ms, False, acks=acks)
        if len(taken) < want and self._memory.racing(queue, now):
            # it lost a race: the rest by ticket, not by another guess
            taken += self._racing.take(
                config, shard, with_free, want - len(taken), lease_ms, acks, read_end=read_end
            )
        return taken

    def _passed_held(self, queue: str, shard: int, floor: int, held: HeldRun) -> None:
        """Keep where a push consumer's look found the held run to end, and move the floor
        past the settled segments at its start once they are enough."""
        if held.length:
            self._memory.passed_held(queue, shard, held)
        self._pass(queue, shard, floor, held.settled_to - floor)

    def _pass_settled(self, queue: str, shard: int, floor: int, segments: list[Segment]) -> None:
        """Move the floor past the run of settled segments from it once it is long enough
        (with what looks of this process read of it before: `ShardMemory.settled_run`)."""
        self._pass(queue, shard, floor, self._memory.settled_run(queue, shard, floor, segments))

    def _pass(self, queue: str, shard: int, floor: int, settled: int) -> None:
        """Move the floor past `settled` settled segments from `floor` once they are enough."""
        if settled < min(FLOOR_STEP, SCAN_SEGMENTS):
            return
        if self._memory.racing(queue, self._clock.now_ms()):
            # racing receivers all see the same settled run: a conditional move would fail
            # for all but one; the next ticket carries it instead, in a write that cannot
            self._memory.hint_floor(queue, shard, floor + settled)
            return
        self.advance_floor(queue, shard, floor + settled)

    def take_entries(
        self, config: QueueConfig, segment: Segment, entries: Sequence[Entry], lease_ms: int
    ) -> list[Taken]:
        """Lease these references of a segment (the sweeper, for over-limit ones)."""
        now = self._clock.now_ms()
        token = new_token()
        claimed = self._index.claim(
            segment,
            [e.slot for e in entries],
            now_ms=now,
            until_ms=now + lease_ms,
            token=token,
        )
        if claimed is None:
            return []
        return [taken_in_segment(config, claimed, claimed.entries[e.slot], token) for e in entries]

    def take_fifo_entries(
        self, config: QueueConfig, segment: FifoSegment, entries: Sequence[FifoEntry], lease_ms: int
    ) -> list[Taken]:
        """Lease these heads of a FIFO segment (the sweeper, for over-limit ones)."""
        return self._fifo.take_entries(config, segment, entries, lease_ms)

    # ---- floors ---------------------------------------------------------------------------

    def floor(self, queue: str, shard: int) -> int:
        """A standard shard's floor: no segment before it holds anything unsettled."""
        return self._memory.floor(queue, shard)

    def read_floors(self, queue: str, shards: Sequence[int]) -> None:
        """Read these shards' floors together, for the `floor` calls that follow."""
        self._memory.read_cursors(queue, shards)

    def advance_floor(self, queue: str, shard: int, to: int) -> None:
        """Move a standard shard's floor up to segment `to` (one write)."""
        self._memory.advance_floor(queue, shard, to)

    def fifo_floor(self, queue: str) -> tuple[int, int]:
        """(floor, tail hint) of a FIFO queue's sequence, cached for a moment."""
        return self._fifo.floor(queue)

    def advance_fifo_floor(self, queue: str, to: int) -> None:
        """Move a FIFO queue's floor up to segment `to` (one write)."""
        self._fifo.advance_floor(queue, to)

    def fifo_segments(
        self, config: QueueConfig, *, consistent: bool = False, limit: int | None = FIFO_MAX_SCAN
    ) -> Iterator[FifoSegment]:
        """A FIFO queue's segments from the floor, in order, as far as they may be used."""
        return self._fifo.segments(config, consistent=consistent, limit=limit)

    def forget_floors(self, queue: str) -> None:
        """Forget what this process knows of a queue's shards (purged, or deleted)."""
        self._memory.forget(queue)
        self._racing.forget(queue)
        self._fifo.forget(queue)

    # ---- settling (lease_changes.py) --------------------------------------------------------

    def hand_back(self, config: QueueConfig, leases: Sequence[Lease]) -> None:
        """Give back leases that delivered to no one: free at once, counts as they were."""
        self._changes.hand_back(config, leases)

    def settle_acks(self, config: QueueConfig, acks: Acks) -> None:
        """Settle the leases of `acks` that no lease write carried, one write per segment."""
        self._changes.settle_acks(config, acks)

    def holding(self, config: QueueConfig, lease: Lease) -> tuple[Ref, int, str] | None:
        """(ref, receive count, reason) of the message a lease holds, None if it is stale."""
        return self._changes.holding(config, lease)

    def set_until(
        self, config: QueueConfig, leases: Sequence[Lease], until: int, *, release: bool = False
    ) -> list[bool]:
        """Settle, release or extend leases; per lease, whether it was still current."""
        return self._changes.set_until(config, leases, until, release=release)


class _EmptyLook:
    """What a look at a standard shard that finds nothing free tells the shard memory: when
    it began, the freeing stamp before its first read, and the soonest end of a lease or
    delay it saw (then something may be free without any write)."""

    def __init__(self, began: int, stamp: int) -> None:
        self.began = began
        self.stamp = stamp
        self.wakes_at = sys.maxsize
        self.free_seen = False  # (a selector's look passes free messages it does not take)

    def saw(self, segments: Sequence[Segment], now: int) -> None:
        ends = [e.until for s in segments for e in s.entries if e.until > now]
        self.wakes_at = min([self.wakes_at, *ends])
        self.free_seen = self.free_seen or any(e.free_at(now) for s in segments for e in s.entries)

    def note(self, memory: ShardMemory, queue: str, shard: int) -> None:
        if self.free_seen:
            return  # not empty: free messages this look did not take wait there
        memory.found_empty(
            queue, shard, read_at=self.began, stamp=self.stamp, wakes_at=self.wakes_at
        )
