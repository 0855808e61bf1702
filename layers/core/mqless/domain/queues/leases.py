"""Leases: finding free messages in a queue, taking them, and settling them.

A standard queue's messages are references in its index segments (`storage.index`); a
FIFO queue's are references in one sequence of segments for the whole queue, each tagged
with its group (`storage.groups`). Taking messages is one conditional write per segment,
whatever the number of messages it takes; so is settling them. What is taken is returned
as `Taken` (the lease, the reference, the receive count); opening bodies and deciding to
deliver, expire or dead-letter is the queue service's (`queues.py`).

Competing consumers: each process remembers, per queue, the shard where it last found
messages and starts there; others start at a random shard. Within the oldest segments it
takes a random choice of free references (unless `oldest_first`), so consumers reading the
same segment rarely want the same reference. A lost race costs one failed conditional
write (billed as a successful one).

Racing: a receiver that lost a race on a shard, or that reads in the shard's cursor that
someone took a ticket there lately, takes positions from the shard's ticket dispenser
instead (`IndexStore.take_positions`: one unconditional write, 1 WRU, that cannot fail and
never hands two receivers the same positions), reads the segments of those positions
strongly consistent (1 RRU: DynamoDB bills a read a fifth of a write, and an eventually
consistent one may show a reference free that was just taken) and leases what is free
there. References behind the dispenser that are free again (a lease ran out, a nack, a
delay ended) are leased from a strongly consistent read of their segment, now and then
and whenever the tickets found nothing. A receiver that never competes never takes a
ticket: a single consumer pays what it paid before. Push consumers (`oldest_first`) do
not compete: the dispatch function feeds them in turn.

Ack and take the next: a receive may carry leases to settle (`Acks`). Where one of them is
in the segment the receive leases from, the lease's conditional write settles it too (one
write where an ack and a receive would take two; a lone consumer's next message is most
often in the segment of the one it acks). If that write's condition fails, the acks are
settled on their own (a stale receipt fails there alone; none is lost), and the lease is
tried again alone only if an ack was what failed (otherwise another receiver took a chosen
reference: a lost race, as without acks). What no lease write carried is settled after the
receive, as an ack request would (`settle_acks`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Final

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.receipts import Lease
from mqless.observability import metrics
from mqless.storage import keys
from mqless.storage.groups import FifoEntry, FifoIndex, FifoSegment
from mqless.storage.index import (
    LANE_QUIET_MS,
    MAX_REFS,
    SETTLED,
    Cursor,
    Entry,
    Hold,
    IndexStore,
    LaneMarks,
    Ref,
    Segment,
    new_token,
    position,
)

SCAN_SEGMENTS: Final = 4  # segments read at once from the floor
WIDE_SCAN_SEGMENTS: Final = 8  # competing receivers choose among more, to collide less
MAX_SCAN_PAGES: Final = 4  # pages of segments one look at a shard reads at most
MAX_PASSED_SEGMENTS: Final = 64  # settled segments at the floor a push pump's look passes free
FLOOR_STEP: Final = 8  # settled segments passed before the floor is moved (one write)
FLOOR_CACHE_MS: Final = 2_000
FIFO_FIRST_READ: Final = 4  # segments a FIFO receive reads first (then 8, 16, ...)
FIFO_MAX_SCAN: Final = 64  # segments past the floor a FIFO receive looks at, at most
FIFO_FLOOR_STEP: Final = 4  # passable segments at the floor before it is moved (one write)
LANE_MARKS_CACHE_MS: Final = 2_000  # lane marks that skip no lane are kept this long
LANE_RECHECK_MS: Final = 60_000  # a quiet lane found holding messages is looked at again after
RACING_MS: Final = 30_000  # how long a lost race, or a ticket, keeps a queue's receivers racing
STRAGGLER_SHARE: Final = 0.125  # racing receives that look behind the dispenser first
STRAY_MS: Final = 30_000  # how long a dispensed, never-leased reference waits for its holder
MAX_TICKETS: Final = 3  # tickets one receive takes when the positions it got were taken


Wanted = Callable[[Sequence[Ref]], Collection[Ref]]
"""Of free references about to be claimed, those the receiver wants (a selector consumer:
`queues.py` reads and opens their bodies to decide); the others stay free, untouched."""


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


class Leases:
    """Take and settle leases over the index and the FIFO segments."""

    def __init__(self, index: IndexStore, fifo: FifoIndex, clock: Clock) -> None:
        self._index = index
        self._fifo = fifo
        self._clock = clock
        self._lock = threading.Lock()
        self._cursors: dict[tuple[str, int], tuple[Cursor, int]] = {}
        self._lost_at: dict[str, int] = {}  # when this process last lost a race
        self._others_at: dict[str, int] = {}  # when it last saw another's ticket
        # per shard: (when it last took a ticket, where its positions ended)
        self._own_tickets: dict[tuple[str, int], tuple[int, int]] = {}
        # per shard: never-leased references seen free behind the dispenser, since when
        self._stray_seen: dict[tuple[str, int], dict[tuple[int, int], int]] = {}
        self._floor_hints: dict[tuple[str, int], int] = {}  # for the shard's next ticket
        self._home: dict[str, int] = {}
        self._fifo_floors: dict[str, tuple[int, int]] = {}  # (floor, when read) per FIFO queue
        self._fifo_hints: dict[str, int] = {}
        self._lanes_held: dict[tuple[str, int], int] = {}  # quiet lanes seen not empty, when
        self._lane_marks: dict[str, tuple[LaneMarks, int]] = {}  # (marks, when read) per queue
        self.stats = LeaseStats()

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
    ) -> list[Taken]:
        """Lease up to `want` messages for `lease_ms` (only `wanted` ones, oldest first);
        `acks` (a standard queue's) are settled in the lease writes of their segments, where
        there is one (the rest: `settle_acks`)."""
        if wanted is not None:
            oldest_first = True  # a selector consumer is a push consumer: it does not race
        if config.fifo:
            return self._take_fifo(config, want, lease_ms, oldest_first, wanted)
        taken: list[Taken] = []
        for shard in self.shard_order(config, acks):
            if len(taken) >= want:
                break
            got = self._take_standard(
                config, shard, want - len(taken), lease_ms, oldest_first, wanted, acks
            )
            if got:
                with self._lock:
                    self._home[config.name] = shard
            taken.extend(got)
        return taken

    def shard_order(self, config: QueueConfig, acks: Acks | None = None) -> list[int]:
        """The shards in the order to look at them: from where this process last found
        messages (a producer's messages share a shard: that is where the next ones are),
        or where the leases being acknowledged are (the next is likely beside them),
        otherwise from a random one (competing consumers spread). A queue with priorities:
        lane by lane, highest first (`_lane_order`)."""
        if config.max_priority is not None:
            return self._lane_order(config)
        with self._lock:
            start = self._home.get(config.name)
        if acks is not None and (pending := acks.pending()):
            start = acks.leases[pending[0]].shard
        if start is None or start >= config.shards:
            start = random.randrange(config.shards)
        return [(start + i) % config.shards for i in range(config.shards)]

    # ---- priority lanes ---------------------------------------------------------------------

    def _lane_order(self, config: QueueConfig) -> list[int]:
        """A priority queue's index shards in the order to look at them: its lanes highest
        first (a receive fills its batch from the highest lane that has messages, then the
        lower ones), each lane's shards from where this process last found messages. Lanes
        marked empty since their last use are left out, so a receive that finds nothing
        reads the marks (1 RRU) and the lanes in use, not every lane's every shard."""
        marks = self._marks(config.name)
        with self._lock:
            home = self._home.get(config.name)
        start = home % keys.MAX_SHARDS if home is not None else random.randrange(config.shards)
        start = start if start < config.shards else 0
        order: list[int] = []
        for lane in reversed(range(config.lanes)):
            if marks.skippable(lane) or self._lane_drained(config, lane, marks):
                continue
            order += [
                keys.lane_shard(lane, (start + i) % config.shards) for i in range(config.shards)
            ]
        return order

    def _marks(self, queue: str) -> LaneMarks:
        """A queue's lane marks, read strongly consistent; kept for LANE_MARKS_CACHE_MS only
        while they skip no lane. Marks that skip a lane are read again every time: an
        appender marks the lane in use before its append wakes a push pump, and the pump
        must see that mark, not a copy from before it."""
        now = self._clock.now_ms()
        with self._lock:
            cached = self._lane_marks.get(queue)
        if cached is not None and now - cached[1] < LANE_MARKS_CACHE_MS:
            return cached[0]
        marks = self._index.lane_marks(queue)
        if not any(marks.skippable(lane) for lane in marks.emptied):
            with self._lock:
                self._lane_marks[queue] = (marks, now)
        return marks

    def _lane_drained(self, config: QueueConfig, lane: int, marks: LaneMarks) -> bool:
        """Whether a lane that no appender has marked for LANE_QUIET_MS holds nothing
        unsettled in any shard (then marked empty: skipped until its next use). Every
        append to it was made that long before these reads, so they show it."""
        now = self._clock.now_ms()
        used = marks.used.get(lane, 0)
        with self._lock:
            held_at = self._lanes_held.get((config.name, lane), -LANE_RECHECK_MS)
        if now - used < LANE_QUIET_MS or now - held_at < LANE_RECHECK_MS:
            return False
        for base in range(config.shards):
            shard = keys.lane_shard(lane, base)
            segments = self._index.segments(
                config.name, shard, self.floor(config.name, shard), limit=SCAN_SEGMENTS
            )
            holding = any(not e.settled and not e.expired(now) for s in segments for e in s.entries)
            if holding or len(segments) >= SCAN_SEGMENTS:
                with self._lock:
                    self._lanes_held[(config.name, lane)] = now
                return False
        with self._lock:
            self._lane_marks.pop(config.name, None)  # it skips a lane from now on
        return self._index.mark_lane_empty(config.name, lane, used)

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
        start, passed, pages, found = floor, 0, 0, False
        while pages < MAX_SCAN_PAGES and not found:
            segments = self._index.segments(
                queue, shard, start, limit=SCAN_SEGMENTS, consistent=consistent
            )
            now = self._clock.now_ms()
            for segment in segments:
                if segment.seq == floor + passed and segment.settled and segment.full:
                    passed += 1
                elif any(e.free_at(now) and not e.expired(now) for e in segment.entries):
                    found = True
                    break
            if found or len(segments) < SCAN_SEGMENTS:
                break
            start = segments[-1].seq + 1
            # a page wholly passed costs no page, up to a bound (the floor moves past it)
            if start > floor + passed or passed >= MAX_PASSED_SEGMENTS:
                pages += 1
        self._pass(queue, shard, floor, passed)
        if found:
            with self._lock:
                self._home[queue] = shard  # look here first next time
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
        start = floor
        for _ in range(MAX_SCAN_PAGES):
            scan = SCAN_SEGMENTS if oldest_first else WIDE_SCAN_SEGMENTS
            segments = self._index.segments(queue, shard, start, limit=scan)
            if not segments:
                return []
            now = self._clock.now_ms()
            self._pass_settled(queue, shard, floor, segments)
            with_free = [s for s in segments if any(e.free_at(now) for e in s.entries)]
            if with_free and oldest_first:
                taken = self._claim_from(config, with_free, want, lease_ms, True, wanted)
                if taken or wanted is None:
                    return taken
                # nothing here that this selector takes: look further, as far as a scan goes
            elif with_free:
                if self._racing(queue, now):
                    return self._take_racing(config, shard, with_free, want, lease_ms, acks)
                # competing consumers spread over the oldest segments, not all on the first
                random.shuffle(with_free)
                if acks is not None:
                    # those whose leases this receive acknowledges first: one write for both
                    with_free.sort(key=lambda s: not acks.pending_in(shard, s.seq))
                taken = self._claim_from(config, with_free, want, lease_ms, oldest_first, acks=acks)
                if len(taken) < want and self._racing(queue, now):
                    # it lost a race: the rest by ticket, not by another guess
                    taken += self._take_racing(
                        config, shard, with_free, want - len(taken), lease_ms, acks
                    )
                return taken
            if len(segments) < scan:
                return []
            start = segments[-1].seq + 1
        return []

    def _claim_from(
        self,
        config: QueueConfig,
        segments: list[Segment],
        want: int,
        lease_ms: int,
        oldest_first: bool,
        wanted: Wanted | None = None,
        acks: Acks | None = None,
    ) -> list[Taken]:
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
                got = self._claim(
                    config, segment, chosen[: want - len(taken)], free, lease_ms, acks
                )
                if got is not None:
                    taken.extend(got)
                    break
                if not oldest_first:
                    self._lost_race(segment.queue)
                    return taken  # a competing consumer got there: race no more by guessing
                fresh = self._index.segment(segment.queue, segment.shard, segment.seq)
                if fresh is None or attempt == 1:
                    break
                segment = fresh
        return taken

    def _claim(
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
        with self._lock:
            self.stats.claims += 1
        lease = partial(
            self._index.claim,
            segment,
            [e.slot for e in chosen],
            now_ms=now,
            until_ms=now + lease_ms,
            token=token,
            settle=expired,
        )
        claimed = lease(acks=holds)
        if acks is not None and acking:
            if claimed is not None:
                acks.record(acking, [True] * len(acking))
            else:
                # a stale receipt, or a chosen reference another receiver took: the acks on
                # their own first (each stale one found and refused; no ack is lost), then
                # the lease alone, if a stale receipt may have been all that failed
                outcome = self._set_segment(
                    config, segment.shard, segment.seq, acked_leases, SETTLED, release=False
                )
                acks.record(acking, outcome)
                if not all(outcome):
                    claimed = lease()
        if claimed is None:
            with self._lock:
                self.stats.lost += 1
            return None
        if expired:
            metrics.count("Expired", queue=config.name, value=len(expired))
        return [_taken(config, claimed, claimed.entries[e.slot], token) for e in chosen]

    # ---- racing: tickets from the shard's dispenser -------------------------------------------

    def _racing(self, queue: str, now: int) -> bool:
        """Whether receivers compete for this queue: this one lost a race lately, or someone
        took a ticket lately on one of its shards (the cursor says; it is read for the
        floor anyway). Competing receivers roam over every shard: so does racing."""
        with self._lock:
            seen_at = max(self._lost_at.get(queue, 0), self._others_at.get(queue, 0))
        return now - seen_at < RACING_MS

    def _saw_others(self, queue: str, at: int) -> None:
        with self._lock:
            self._others_at[queue] = max(self._others_at.get(queue, 0), at)

    def _lost_race(self, queue: str) -> None:
        with self._lock:
            self._lost_at[queue] = self._clock.now_ms()

    def _take_racing(
        self,
        config: QueueConfig,
        shard: int,
        seen: list[Segment],
        want: int,
        lease_ms: int,
        acks: Acks | None = None,
    ) -> list[Taken]:
        """Lease by ticket; look behind the dispenser now and then, and when the tickets
        found nothing (`seen`: the segments an eventually consistent read showed free)."""
        with self._lock:
            cached = self._cursors.get((config.name, shard))
        dispensed = cached[0].dispensed if cached is not None else None
        now = self._clock.now_ms()
        strays = self._strays(config.name, shard, seen, dispensed, now)
        behind = _behind(seen, dispensed, now, strays)
        taken: list[Taken] = []
        looked_behind = False
        if behind and random.random() < STRAGGLER_SHARE:
            looked_behind = True
            taken += self._take_behind(config, shard, behind, want, lease_ms, strays, acks)
        tickets = 0
        for _ in range(MAX_TICKETS + MAX_REFS):
            if len(taken) >= want or tickets >= MAX_TICKETS:
                break
            got, at_tail, in_holes = self._take_by_ticket(
                config, shard, want - len(taken), lease_ms, acks
            )
            taken += got
            if at_tail:
                break  # nothing further to dispense; another ticket would find nothing
            if not in_holes:
                # positions in a closed segment's empty places were no one's: the next
                # ticket is not one more try but the first that could find something
                tickets += 1
        if len(taken) < want and not looked_behind:
            with self._lock:
                cached = self._cursors.get((config.name, shard))
            dispensed = cached[0].dispensed if cached is not None else None
            behind = _behind(seen, dispensed, self._clock.now_ms(), strays)
            taken += self._take_behind(
                config, shard, behind, want - len(taken), lease_ms, strays, acks
            )
        return taken

    def _strays(
        self, queue: str, shard: int, seen: list[Segment], dispensed: int | None, now: int
    ) -> set[tuple[int, int]]:
        """(segment, slot) of never-leased references behind the dispenser that this process
        has seen free for STRAY_MS: their ticket's receiver stopped before leasing them (a
        Lambda timeout), and no ticket will name them again. Younger ones are, most likely,
        being leased by their ticket's receiver right now."""
        if dispensed is None:
            return set()
        with self._lock:
            before = self._stray_seen.get((queue, shard), {})
            current = {
                (segment.seq, e.slot): before.get((segment.seq, e.slot), now)
                for segment in seen
                for e in segment.entries
                if e.free_at(now)
                and e.count == 0
                and e.until == 0
                and position(segment.seq, e.slot) < dispensed
            }
            self._stray_seen[(queue, shard)] = current
        return {place for place, since in current.items() if now - since >= STRAY_MS}

    def _take_by_ticket(
        self, config: QueueConfig, shard: int, want: int, lease_ms: int, acks: Acks | None
    ) -> tuple[list[Taken], bool, bool]:
        """Take `want` positions from the dispenser and lease what is free at them; whether
        they reached the shard's last reference; and whether they all fell in the empty
        places of closed segments (a batch that did not fit whole in a segment's room)."""
        queue = config.name
        now = self._clock.now_ms()
        known = self.floor(queue, shard)
        with self._lock:
            hint = self._floor_hints.pop((queue, shard), None)
        start, cursor = self._index.take_positions(
            queue, shard, want, first=position(known, 0), now_ms=now, floor_hint=hint
        )
        with self._lock:
            own = self._own_tickets.get((queue, shard))
        if own is not None and start != own[1]:
            self._saw_others(queue, now)  # positions went to someone else since its last
        tickets = 1
        end = start + want
        if end <= position(cursor.floor, 0):
            # the dispenser is behind the floor (a purge, or never used since it moved):
            # take the first positions above it, and point the dispenser past them
            start, end = position(cursor.floor, 0), position(cursor.floor, 0) + want
            self._index.move_dispenser(queue, shard, end)
            tickets += 1
            cursor = replace(cursor, dispensed=end)
        first_seq, last_seq = start // MAX_REFS, (end - 1) // MAX_REFS
        span = last_seq - first_seq + 2  # one more: is the last one read the shard's tail?
        read = self._index.segments(queue, shard, first_seq, limit=span, consistent=True)
        tail = _tail_position(read, span) if read else self._tail_position(queue, shard)
        if tail is not None and start <= tail < end:
            # the dispenser ran past the last reference (a receiver that saw free references
            # in a stale read, or a queue that was drained): the one whose positions reach
            # the tail points it back there, so the next references are dispensed
            self._index.move_dispenser(queue, shard, tail)
            tickets += 1
            cursor = replace(cursor, dispensed=tail)
        with self._lock:
            self.stats.tickets += tickets
            self._cursors[(queue, shard)] = (cursor, now)
            self._own_tickets[(queue, shard)] = (now, int(cursor.dispensed or end))
        taken: list[Taken] = []
        for segment in read:
            got = self._claim_positions(config, segment, start, end, lease_ms, acks)
            if got is None:
                # a receiver that was not racing took one of them: the others are still
                # this ticket's, and no other ticket will ever name them
                self._lost_race(queue)
                fresh = self._index.segment(queue, shard, segment.seq)
                got = (
                    None
                    if fresh is None
                    else self._claim_positions(config, fresh, start, end, lease_ms)
                )
            taken.extend(got or [])
        by_seq = {segment.seq: segment for segment in read}
        in_holes = all(
            (around := by_seq.get(p // MAX_REFS)) is not None
            and around.closed
            and p % MAX_REFS >= len(around.entries)
            for p in range(start, end)
        )
        return taken, tail is not None and end >= tail, in_holes

    def _claim_positions(
        self,
        config: QueueConfig,
        segment: Segment,
        start: int,
        end: int,
        lease_ms: int,
        acks: Acks | None = None,
    ) -> list[Taken] | None:
        """Lease what is free in the segment at positions `start` to `end` (excluded)."""
        now = self._clock.now_ms()
        mine = [
            e
            for e in segment.entries
            # (a segment of 12 from before segments of 10: its last two are no position's)
            if e.slot < MAX_REFS and start <= position(segment.seq, e.slot) < end and e.free_at(now)
        ]
        return self._claim(config, segment, mine, (), lease_ms, acks) if mine else []

    def _tail_position(self, queue: str, shard: int) -> int | None:
        last = self._index.tail(queue, shard)
        return last[0].end if last else None

    def _take_behind(
        self,
        config: QueueConfig,
        shard: int,
        seen: list[Segment],
        want: int,
        lease_ms: int,
        strays: set[tuple[int, int]],
        acks: Acks | None = None,
    ) -> list[Taken]:
        """Lease free references behind the dispenser (their first lease was dispensed):
        each segment read strongly consistent first, so a stale read costs a read, not a
        failed write."""
        with self._lock:
            cached = self._cursors.get((config.name, shard))
        dispensed = cached[0].dispensed if cached is not None else None
        if dispensed is None:
            return []
        taken: list[Taken] = []
        for seen_segment in random.sample(seen, len(seen)):
            if len(taken) >= want:
                break
            segment = self._index.segment(config.name, shard, seen_segment.seq)
            if segment is None:
                continue
            now = self._clock.now_ms()
            free = [e for e in segment.entries if _behind_free(segment, e, dispensed, now, strays)]
            if not free:
                continue
            chosen = random.sample(free, min(len(free), want - len(taken)))
            got = self._claim(config, segment, chosen, (), lease_ms, acks)
            if got is None:
                self._lost_race(config.name)
                continue
            taken.extend(got)
        return taken

    def _pass_settled(self, queue: str, shard: int, floor: int, segments: list[Segment]) -> None:
        """Move the floor past a run of settled segments once it is long enough."""
        settled = 0
        for segment in segments:
            if segment.seq != floor + settled or not segment.settled or not segment.full:
                break
            settled += 1
        self._pass(queue, shard, floor, settled)

    def _pass(self, queue: str, shard: int, floor: int, settled: int) -> None:
        """Move the floor past `settled` settled segments from `floor` once they are enough."""
        if settled < min(FLOOR_STEP, SCAN_SEGMENTS):
            return
        if self._racing(queue, self._clock.now_ms()):
            # racing receivers all see the same settled run: a conditional move would fail
            # for all but one; the next ticket carries it instead, in a write that cannot
            with self._lock:
                self._floor_hints[(queue, shard)] = floor + settled
            return
        self.advance_floor(queue, shard, floor + settled)

    def floor(self, queue: str, shard: int) -> int:
        return self._cursor(queue, shard).floor

    def _cursor(self, queue: str, shard: int) -> Cursor:
        now = self._clock.now_ms()
        with self._lock:
            cached = self._cursors.get((queue, shard))
        if cached is not None and now - cached[1] < FLOOR_CACHE_MS:
            return cached[0]
        value = self._index.cursor(queue, shard)
        with self._lock:
            self._cursors[(queue, shard)] = (value, now)
            own = self._own_tickets.get((queue, shard))
        if value.ticket_at and (own is None or value.ticket_at != own[0]):
            self._saw_others(queue, value.ticket_at)
        return value

    def advance_floor(self, queue: str, shard: int, to: int) -> None:
        self._index.advance_floor(queue, shard, to)
        now = self._clock.now_ms()
        with self._lock:
            cached = self._cursors.get((queue, shard))
            known = cached[0] if cached is not None else Cursor()
            self._cursors[(queue, shard)] = (replace(known, floor=max(known.floor, to)), now)

    def forget_floors(self, queue: str) -> None:
        with self._lock:
            for key in [k for k in self._cursors if k[0] == queue]:
                del self._cursors[key]
            for key in [k for k in self._own_tickets if k[0] == queue]:
                del self._own_tickets[key]  # a queue made again starts a new dispenser
            for key in [k for k in self._stray_seen if k[0] == queue]:
                del self._stray_seen[key]
            for key in [k for k in self._floor_hints if k[0] == queue]:
                del self._floor_hints[key]
            self._fifo_floors.pop(queue, None)

    # ---- FIFO ------------------------------------------------------------------------------

    def fifo_floor(self, queue: str) -> tuple[int, int]:
        """(floor, tail hint) of a FIFO queue's sequence, cached for a moment."""
        now = self._clock.now_ms()
        with self._lock:
            cached = self._fifo_floors.get(queue)
            hint = self._fifo_hints.get(queue, 0)
        if cached is not None and now - cached[1] < FLOOR_CACHE_MS:
            return cached[0], hint
        cursor = self._fifo.cursor(queue)
        with self._lock:
            self._fifo_floors[queue] = (cursor.floor, now)
            self._fifo_hints[queue] = cursor.hint
        return cursor.floor, cursor.hint

    def fifo_segments(
        self, config: QueueConfig, *, consistent: bool = False, limit: int | None = FIFO_MAX_SCAN
    ) -> Iterator[FifoSegment]:
        """A FIFO queue's segments from the floor, in order, as far as they may be used: up
        to the first missing one or one not full (a reader may have seen it before it
        filled, so what follows may be newer than what it shows). A segment missing behind
        others (21 days old, removed by its TTL) comes as an empty closed one."""
        floor, hint = self.fifo_floor(config.name)
        yield from self._fifo.ordered(
            config.name,
            config.shards,
            floor,
            hint=hint,
            consistent=consistent,
            first_read=FIFO_FIRST_READ,
            limit=limit,
        )

    def _take_fifo(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        wanted: Wanted | None = None,
    ) -> list[Taken]:
        """Lease up to `want` heads: per group, its first message not settled, if free.

        Settling is final and references are only appended, so a group's first message not
        settled stays so until it is settled: the claim's condition (still free) is all it
        takes for one message of a group in flight at a time, in order.

        A head found expired and free is settled on the way (in the write that leases other
        heads of its segment, or one of its own), and only then does its group's next
        message go: a stale read may show a leased head as free, and only that write's
        condition can tell. So a look that settled some looks once more, counting what it
        settled as settled whatever the (eventually consistent) reads still show."""
        taken: list[Taken] = []
        settled: set[tuple[int, int]] = set()
        for _ in range(2):
            more, newly = self._take_fifo_heads(
                config, want - len(taken), lease_ms, oldest_first, settled, wanted
            )
            taken.extend(more)
            if not newly or len(taken) >= want:
                break
            settled |= newly
        return taken

    def _take_fifo_heads(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        settled: set[tuple[int, int]],
        wanted: Wanted | None = None,
    ) -> tuple[list[Taken], set[tuple[int, int]]]:
        """One look at the heads: what it leased, and the (segment, slot)s it settled."""
        now = self._clock.now_ms()
        floor, _ = self.fifo_floor(config.name)
        blocked: set[int] = set()
        heads: list[tuple[FifoSegment, list[FifoEntry], list[int]]] = []
        found = 0
        passable = 0  # segments from the floor on that nothing in will be delivered
        for segment in self.fifo_segments(config):
            if passable == segment.seq - floor and segment.passable(now):
                passable += 1
            chosen: list[FifoEntry] = []
            expired: list[int] = []
            for entry in segment.entries:
                if entry.tag in blocked or entry.settled or (segment.seq, entry.slot) in settled:
                    continue
                blocked.add(entry.tag)
                if entry.gone(now):
                    expired.append(entry.slot)  # its group waits for the settle (see above)
                elif entry.free_at(now):
                    chosen.append(entry)
            if wanted is not None and chosen:  # a head it does not take holds its group back
                keep = wanted([e.ref for e in chosen])
                chosen = [e for e in chosen if e.ref in keep]
            if chosen or expired:
                heads.append((segment, chosen, expired))
                found += len(chosen)
            if found >= want and (oldest_first or found >= 2 * want):
                break
        if passable >= FIFO_FLOOR_STEP:
            self.advance_fifo_floor(config.name, floor + passable)
        if not oldest_first:
            # competing consumers spread over the heads found, not all on the oldest
            random.shuffle(heads)
        taken: list[Taken] = []
        newly: set[tuple[int, int]] = set()
        for segment, chosen, expired in heads:
            if len(taken) >= want:
                break
            leased, done = self._claim_heads(
                config, segment, chosen, expired, want - len(taken), lease_ms
            )
            taken.extend(leased)
            newly |= {(segment.seq, slot) for slot in done}
        return taken, newly

    def _claim_heads(
        self,
        config: QueueConfig,
        segment: FifoSegment,
        heads: list[FifoEntry],
        expired: list[int],
        want: int,
        lease_ms: int,
    ) -> tuple[list[Taken], list[int]]:
        """Lease heads of one segment with one write, settling `expired` in it; after a lost
        race, the ones still free (still their groups' heads: nothing before them can come
        back) once more. What it leased, and the slots it settled."""
        chosen = heads[:want]
        for attempt in range(2):
            now = self._clock.now_ms()
            token = new_token()
            with self._lock:
                self.stats.claims += 1
            claimed = self._fifo.claim(
                segment,
                [e.slot for e in chosen],
                now_ms=now,
                until_ms=now + lease_ms,
                token=token,
                settle=expired,
            )
            if claimed is not None:
                if expired:
                    metrics.count("Expired", queue=config.name, value=len(expired))
                return [
                    _fifo_taken(config, claimed, claimed.entries[e.slot], token) for e in chosen
                ], expired
            with self._lock:
                self.stats.lost += 1
            fresh = self._fifo.segment(config.name, config.shards, segment.seq)
            if fresh is None or attempt == 1:
                break
            now = self._clock.now_ms()
            chosen = [fresh.entries[e.slot] for e in chosen if fresh.entries[e.slot].free_at(now)]
            expired = [s for s in expired if fresh.entries[s].free_at(now)]
            segment = fresh
            if not chosen and not expired:
                break
        return [], []

    def advance_fifo_floor(self, queue: str, to: int) -> None:
        self._fifo.advance_floor(queue, to)
        with self._lock:
            self._fifo_floors[queue] = (to, self._clock.now_ms())

    def take_fifo_entries(
        self, config: QueueConfig, segment: FifoSegment, entries: Sequence[FifoEntry], lease_ms: int
    ) -> list[Taken]:
        """Lease these heads of a FIFO segment (the sweeper, for over-limit ones)."""
        now = self._clock.now_ms()
        token = new_token()
        claimed = self._fifo.claim(
            segment, [e.slot for e in entries], now_ms=now, until_ms=now + lease_ms, token=token
        )
        if claimed is None:
            return []
        return [_fifo_taken(config, claimed, claimed.entries[e.slot], token) for e in entries]

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
        return [_taken(config, claimed, claimed.entries[e.slot], token) for e in entries]

    # ---- settling ---------------------------------------------------------------------------

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
            for lease in group:
                self._index.set_until(
                    config.name,
                    shard,
                    int(place),
                    [Hold(lease.position, lease.token)],
                    now,
                    uncount=True,
                )

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
                outcome = self._set_segment(config, shard, int(place), group, until, release)
            for p, ok in zip(positions, outcome, strict=True):
                results[p] = ok
        return results

    def _set_segment(
        self,
        config: QueueConfig,
        shard: int,
        seq: int,
        leases: list[Lease],
        until: int,
        release: bool,
    ) -> list[bool]:
        holds = [Hold(lease.position, lease.token) for lease in leases]
        write = self._index.set_until
        if len({h.slot for h in holds}) == len(holds):
            if write(config.name, shard, seq, holds, until, release=release) is not None:
                return [True] * len(holds)
            if len(holds) == 1:
                return [False]
        # one of them is stale (or named twice): find out which, one at a time
        return [
            write(config.name, shard, seq, [hold], until, release=release) is not None
            for hold in holds
        ]

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
        """What `_set_segment` does, on a FIFO segment: one write for every lease in it."""
        if not all(_fifo_place(config, lease) for lease in leases):
            return [False] * len(leases)  # not a segment of this queue's (an old receipt)
        seq = int(place)
        holds = [Hold(lease.position, lease.token) for lease in leases]

        def write(chosen: list[Hold]) -> bool:
            return (
                self._fifo.set_until(
                    config.name,
                    config.shards,
                    seq,
                    chosen,
                    until,
                    release=release,
                    uncount=uncount,
                )
                is not None
            )

        if len({h.slot for h in holds}) == len(holds):
            if write(holds):
                return [True] * len(holds)
            if len(holds) == 1:
                return [False]
        # one of them is stale (or named twice): find out which, one at a time
        return [write([hold]) for hold in holds]


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


def _behind(
    segments: Sequence[Segment], dispensed: int | None, now: int, strays: set[tuple[int, int]]
) -> list[Segment]:
    """The segments with a reference to lease behind the dispenser (as read)."""
    if dispensed is None:
        return []
    return [
        s for s in segments if any(_behind_free(s, e, dispensed, now, strays) for e in s.entries)
    ]


def _behind_free(
    segment: Segment, entry: Entry, dispensed: int, now: int, strays: set[tuple[int, int]]
) -> bool:
    """Free behind the dispenser, and either leased before (its lease ran out, or it was
    nacked), delayed, or a stray: a reference that is none of these is one whose position
    a ticket holder is about to lease."""
    return (
        entry.free_at(now)
        and position(segment.seq, entry.slot) < dispensed
        and (entry.count > 0 or entry.until > 0 or (segment.seq, entry.slot) in strays)
    )


def _tail_position(read: Sequence[Segment], asked: int) -> int | None:
    """The position after the shard's last reference, if `read` (a strongly consistent read
    of up to `asked` segments) reached the shard's last segment; None if it did not."""
    if len(read) >= asked:
        return None
    return read[-1].end


def _taken(config: QueueConfig, segment: Segment, entry: Entry, token: int) -> Taken:
    return Taken(
        lease=Lease(config.name, segment.shard, "s", str(segment.seq), entry.slot, token),
        ref=entry.ref,
        count=entry.count,
        reason=entry.reason,
    )


def _fifo_taken(config: QueueConfig, segment: FifoSegment, entry: FifoEntry, token: int) -> Taken:
    return Taken(
        lease=Lease(config.name, segment.shard, "g", str(segment.seq), entry.slot, token),
        ref=entry.ref,
        count=entry.count,
        reason=entry.reason,
    )


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
