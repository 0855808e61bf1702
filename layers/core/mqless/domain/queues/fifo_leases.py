"""A FIFO queue's leases: per group, its first message not settled (its head), if free.

A FIFO queue's messages are references in one sequence of segments for the whole queue,
each tagged with its group (`storage.groups`). Settling is final and references are only
appended, so a group's first message not settled stays so until it is settled: the
claim's condition (still free) is all it takes for one message of a group in flight at a
time, in order.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.leases import Acks, Taken, Wanted, taken_in_fifo_segment
from mqless.domain.queues.receipts import Lease
from mqless.domain.queues.shard_memory import FLOOR_CACHE_MS, ShardMemory
from mqless.domain.queues.turns import Turns
from mqless.observability import metrics
from mqless.storage.fifo_segments import FifoEntry, FifoSegment
from mqless.storage.groups import FifoIndex
from mqless.storage.segments import Hold, new_token

FIFO_FIRST_READ: Final = 4  # segments a FIFO receive reads first (then 8, 16, ...)
FIFO_MAX_SCAN: Final = 64  # segments past the floor a FIFO receive looks at, at most
FIFO_FLOOR_STEP: Final = 4  # passable segments at the floor before it is moved (one write)

_HEADS: Final = 0  # a FIFO queue's heads, as the shard memory and freeing stamps know them

Heads = list[tuple[FifoSegment, list[FifoEntry], list[int]]]
"""Per segment: the free heads to lease there, and the slots of expired heads to settle."""


@dataclass(frozen=True)
class Seen:
    """What a look saw past a floor: every segment below `done` full and settled, and the
    sequence's end at `end` (the first segment missing or not full; -1: not known)."""

    floor: int
    done: int
    end: int = -1

    def first_read(self) -> int | None:
        """How many segments the next look reads first: through the one after the end
        (it may have filled, and a next one been made), FIFO_FIRST_READ at most."""
        if self.end < 0:
            return None
        return max(2, min(FIFO_FIRST_READ, self.end + 2 - self.done))


class FifoLeases:
    """Takes FIFO queues' heads; keeps each queue's floor for a moment."""

    def __init__(self, fifo: FifoIndex, clock: Clock, memory: ShardMemory) -> None:
        self._fifo = fifo
        self._clock = clock
        self._memory = memory
        self._lock = threading.Lock()
        self._floors: dict[str, tuple[int, int]] = {}  # (floor, when read) per FIFO queue
        self._hints: dict[str, int] = {}
        # per queue, what the last look saw from the floor it read (see `_find_heads`)
        self._seen: dict[str, Seen] = {}
        # one look at a queue's heads at a time in this process (see `_take_heads`)
        self._looks = Turns()

    def floor(self, queue: str) -> tuple[int, int]:
        """(floor, tail hint) of a FIFO queue's sequence, cached for a moment."""
        now = self._clock.now_ms()
        with self._lock:
            cached = self._floors.get(queue)
            hint = self._hints.get(queue, 0)
        if cached is not None and now - cached[1] < FLOOR_CACHE_MS:
            return cached[0], hint
        cursor = self._fifo.cursor(queue)
        with self._lock:
            self._floors[queue] = (cursor.floor, now)
            self._hints[queue] = cursor.hint
            self._seen.pop(queue, None)  # what it saw lives no longer than the floor it read
        return cursor.floor, cursor.hint

    def advance_floor(self, queue: str, to: int) -> None:
        """Move a FIFO queue's floor up to segment `to` (one write)."""
        self._fifo.advance_floor(queue, to)
        with self._lock:
            self._floors[queue] = (to, self._clock.now_ms())

    def forget(self, queue: str) -> None:
        """Forget a queue's floor (it was purged or deleted)."""
        with self._lock:
            self._floors.pop(queue, None)
            self._seen.pop(queue, None)

    def segments(
        self,
        config: QueueConfig,
        *,
        consistent: bool = False,
        limit: int | None = FIFO_MAX_SCAN,
        start: int | None = None,
        first_count: int | None = None,
    ) -> Iterator[FifoSegment]:
        """A FIFO queue's segments from the floor (or `start`, past it), in order, as far as
        they may be used: up to the first missing one or one not full (a reader may have
        seen it before it filled, so what follows may be newer than what it shows). A
        segment missing behind others (21 days old, removed by its TTL) comes as an empty
        closed one. The first read takes `first_count` segments (else FIFO_FIRST_READ)."""
        floor, hint = self.floor(config.name)
        yield from self._fifo.ordered(
            config.name,
            config.shards,
            floor if start is None else start,
            hint=hint,
            consistent=consistent,
            first_read=FIFO_FIRST_READ,
            first_count=first_count,
            limit=limit,
        )

    def take(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        wanted: Wanted | None = None,
        fresh_since: int | None = None,
        acks: Acks | None = None,
    ) -> list[Taken]:
        """Lease up to `want` heads: per group, its first message not settled, if free;
        `acks` (receipts acknowledged in the same request) ride on the lease write of their
        segment, where it has a head to lease (`_claim_heads`; the rest: `settle_acks`).
        A look since `fresh_since` (ms) that found no head free, with nothing freed since
        that this process knows of, is not made again (`_take_heads`).

        A head found expired and free is settled on the way (in the write that leases other
        heads of its segment, or one of its own), and only then does its group's next
        message go: a stale read may show a leased head as free, and only that write's
        condition can tell. So a look that settled some looks once more, counting what it
        settled as settled whatever the (eventually consistent) reads still show."""
        taken: list[Taken] = []
        settled: set[tuple[int, int]] = set()
        for _ in range(2):
            more, newly = self._take_heads(
                config,
                want - len(taken),
                lease_ms,
                oldest_first,
                settled,
                wanted,
                fresh_since,
                acks,
            )
            fresh_since = None  # a look once more, after settling: what it settled frees
            taken.extend(more)
            if not newly or len(taken) >= want:
                break
            settled |= newly
        return taken

    def _take_heads(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        settled: set[tuple[int, int]],
        wanted: Wanted | None = None,
        fresh_since: int | None = None,
        acks: Acks | None = None,
    ) -> tuple[list[Taken], set[tuple[int, int]]]:
        """One look at the heads: what it leased, and the (segment, slot)s it settled.

        Looks at one queue take turns in this process: receivers that read the segments at
        the same moment choose the same heads, and all but one of their claims fail (each a
        refused write, billed, and a strongly consistent read to learn why); one after
        another, each reads what the one before it claimed. Looks of other processes still
        race, and the claim's condition still decides.

        A look that found no head free is remembered as a standard shard found empty is
        (`ShardMemory`, the queue's heads as its shard 0, whose freeing stamp the FIFO
        index's appends, settlements and releases move): until this process frees something
        there, or a lease or delay that look saw ends, a look begun before it is not made
        again. Receivers of one process long-polling a queue whose groups are all in flight
        (`mqless dev`, a WebSocket function's pumps) then read its segments about once per
        poll pause, not once each; what other processes free is seen by the next look after
        the one that skipped, as a read made just before their write would have seen it."""
        with self._looks.of(config.name):
            if fresh_since is not None and self._memory.known_empty(
                config.name, _HEADS, since=fresh_since
            ):
                return [], set()
            return self._look(config, want, lease_ms, oldest_first, settled, wanted, acks)

    def _look(
        self,
        config: QueueConfig,
        want: int,
        lease_ms: int,
        oldest_first: bool,
        settled: set[tuple[int, int]],
        wanted: Wanted | None,
        acks: Acks | None = None,
    ) -> tuple[list[Taken], set[tuple[int, int]]]:
        began, stamp = self._clock.now_ms(), self._memory.freeing_stamp(config.name, _HEADS)
        heads, wakes_at = self._find_heads(config, want, oldest_first, settled, wanted)
        if heads or wanted is not None:  # (a selector's look may pass free heads over)
            self._memory.found_in(config.name, _HEADS)
        else:
            self._memory.found_empty(
                config.name, _HEADS, read_at=began, stamp=stamp, wakes_at=wakes_at
            )
        if not oldest_first:
            # competing consumers spread over the heads found, not all on the oldest
            random.shuffle(heads)
        if acks is not None:  # segments whose lease write can carry acks first
            heads.sort(key=lambda found: not acks.fifo_pending_in(found[0].seq))
        taken: list[Taken] = []
        newly: set[tuple[int, int]] = set()
        for segment, chosen, expired in heads:
            if len(taken) >= want:
                break
            leased, done = self._claim_heads(
                config, segment, chosen, expired, want - len(taken), lease_ms, acks
            )
            taken.extend(leased)
            newly |= {(segment.seq, slot) for slot in done}
        return taken, newly

    def _find_heads(
        self,
        config: QueueConfig,
        want: int,
        oldest_first: bool,
        settled: set[tuple[int, int]],
        wanted: Wanted | None,
    ) -> tuple[Heads, int]:
        """The groups' heads from the floor on, as far as `want` needs (twice that for
        competing consumers, to spread over), and the soonest end of a lease or delay that
        holds a head back; the floor moved past passable segments.

        Why it is long: one pass over the segments decides the heads, the floor's move and
        what the next look may skip. The floor moves by FIFO_FLOOR_STEP (a write each time);
        below that, the settled full segments this look saw right past it are not read again
        (settling is final) until the floor is read again; and the next look's first read
        stops one segment past where this one found the sequence's end (a missing segment
        bills a read as one that exists), reading on as usual if it has grown."""
        now = self._clock.now_ms()
        floor, _ = self.floor(config.name)
        seen = self._seen_from(config.name, floor)
        blocked: set[int] = set()
        heads: Heads = []
        found = 0
        passable = seen.done - floor  # segments from the floor on nothing in will be delivered
        done = passable  # of those, the ones all settled (passable: expired ones too)
        end = seen.done  # where the sequence ended: the first segment missing or not full
        wakes_at = sys.maxsize
        limit = FIFO_MAX_SCAN - (seen.done - floor)
        scanned = 0
        for segment in self.segments(
            config, start=seen.done, first_count=seen.first_read(), limit=limit
        ):
            scanned += 1
            end = segment.seq if not segment.full else segment.seq + 1
            if passable == segment.seq - floor and segment.passable(now):
                passable += 1
                if done == segment.seq - floor and all(e.settled for e in segment.entries):
                    done += 1
            chosen: list[FifoEntry] = []
            expired: list[int] = []
            for entry in segment.entries:
                if entry.tag in blocked or entry.settled or (segment.seq, entry.slot) in settled:
                    continue
                blocked.add(entry.tag)
                if entry.gone(now):
                    expired.append(entry.slot)  # its group waits for the settle (see `take`)
                elif entry.free_at(now):
                    chosen.append(entry)
                else:
                    wakes_at = min(wakes_at, entry.until)  # leased, or delayed
            if wanted is not None and chosen:  # a head it does not take holds its group back
                keep = wanted([e.ref for e in chosen])
                chosen = [e for e in chosen if e.ref in keep]
            if chosen or expired:
                heads.append((segment, chosen, expired))
                found += len(chosen)
            if found >= want and (oldest_first or found >= 2 * want):
                end = -1  # stopped short of the end: not known
                break
        if passable >= FIFO_FLOOR_STEP or scanned >= limit:
            wakes_at = 0  # the next look reaches further (a floor moved, a scan cut short)
        if passable >= FIFO_FLOOR_STEP:
            self.advance_floor(config.name, floor + passable)
        else:
            with self._lock:
                self._seen[config.name] = Seen(floor, floor + done, end)
        return heads, wakes_at

    def _seen_from(self, queue: str, floor: int) -> Seen:
        """What the last look saw from this floor (nothing known if from another one)."""
        with self._lock:
            seen = self._seen.get(queue)
        return seen if seen is not None and seen.floor == floor else Seen(floor, floor)

    def _claim_heads(
        self,
        config: QueueConfig,
        segment: FifoSegment,
        heads: list[FifoEntry],
        expired: list[int],
        want: int,
        lease_ms: int,
        acks: Acks | None = None,
    ) -> tuple[list[Taken], list[int]]:
        """Lease heads of one segment with one write, settling `expired` and the acks of its
        leases (`_riding`; their groups are not among the heads: held until acked); after a
        lost race, the heads still free once more (nothing before them can come back),
        without the acks (one may be stale: `settle_acks`). What it leased and settled."""
        acking, holds, chosen = _riding(acks, segment, heads, expired, want)
        for attempt in range(2):
            now = self._clock.now_ms()
            token = new_token()
            self._memory.counted(claims=1)
            claimed = self._fifo.claim(
                segment,
                [e.slot for e in chosen],
                now_ms=now,
                until_ms=now + lease_ms,
                token=token,
                settle=expired,
                acks=holds,
            )
            if claimed is not None:
                if acks is not None and holds:
                    acks.record(acking, [True] * len(acking))
                if expired:
                    metrics.count("Expired", queue=config.name, value=len(expired))
                return [
                    taken_in_fifo_segment(config, claimed, claimed.entries[e.slot], token)
                    for e in chosen
                ], expired
            self._memory.counted(lost=1)
            holds = []  # the acks go apart (`settle_acks`): one of them may be stale
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

    def take_entries(
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
        return [
            taken_in_fifo_segment(config, claimed, claimed.entries[e.slot], token) for e in entries
        ]


def _hold(lease: Lease) -> Hold:
    """An acknowledged FIFO lease as its segment's write names it: its slot and token."""
    return Hold(lease.position, lease.token)


def _riding(
    acks: Acks | None, segment: FifoSegment, heads: list[FifoEntry], expired: list[int], want: int
) -> tuple[list[int], list[Hold], list[FifoEntry]]:
    """The acks that ride on a segment's lease write (numbers into `acks`, and as holds),
    and the heads it leases: none that an ack names (a lease of our own that ran out shows
    free: settled, never leased again by the write that settles it)."""
    acking = [] if acks is None else acks.fifo_pending_in(segment.seq)
    holds = [] if acks is None else [_hold(acks.leases[n]) for n in acking]
    acked = {h.slot for h in holds}
    chosen = [e for e in heads if e.slot not in acked][:want]
    if len(acked) != len(holds) or acked & set(expired) or not (chosen or expired):
        return [], [], chosen  # apart (`settle_acks`): a receipt named twice, or no lease
    return acking, holds, chosen
