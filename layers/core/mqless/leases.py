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
write and a second look at that segment.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from mqless.clock import Clock
from mqless.models import QueueConfig
from mqless.observability import metrics
from mqless.receipts import Lease
from mqless.storage.groups import FifoEntry, FifoIndex, FifoSegment
from mqless.storage.index import Entry, Hold, IndexStore, Ref, Segment, new_token

SCAN_SEGMENTS: Final = 4  # segments read at once from the floor
WIDE_SCAN_SEGMENTS: Final = 8  # competing receivers choose among more, to collide less
MAX_SCAN_PAGES: Final = 4  # pages of segments one look at a shard reads at most
FLOOR_STEP: Final = 8  # settled segments passed before the floor is moved (one write)
FLOOR_CACHE_MS: Final = 2_000
FIFO_FIRST_READ: Final = 4  # segments a FIFO receive reads first (then 8, 16, ...)
FIFO_MAX_SCAN: Final = 64  # segments past the floor a FIFO receive looks at, at most
FIFO_FLOOR_STEP: Final = 4  # passable segments at the floor before it is moved (one write)
_FIFO: Final = -1  # the floor cache's shard for a FIFO queue's one sequence


@dataclass(frozen=True)
class Taken:
    """A message just leased."""

    lease: Lease
    ref: Ref
    count: int  # receive count, this lease included
    reason: str = ""  # a dead letter's "<source queue>\n<reason>"
    group: str | None = None


@dataclass
class LeaseStats:
    """Per process: conditional writes that lost a race, and those that won."""

    claims: int = 0
    lost: int = 0


class Leases:
    """Take and settle leases over the index and the FIFO segments."""

    def __init__(self, index: IndexStore, fifo: FifoIndex, clock: Clock) -> None:
        self._index = index
        self._fifo = fifo
        self._clock = clock
        self._lock = threading.Lock()
        self._floors: dict[tuple[str, int], tuple[int, int]] = {}
        self._home: dict[str, int] = {}
        self._fifo_hints: dict[str, int] = {}
        self.stats = LeaseStats()

    # ---- taking -------------------------------------------------------------------------

    def take(
        self, config: QueueConfig, want: int, lease_ms: int, *, oldest_first: bool = False
    ) -> list[Taken]:
        """Lease up to `want` messages for `lease_ms`."""
        if config.fifo:
            return self._take_fifo(config, want, lease_ms, oldest_first)
        taken: list[Taken] = []
        for shard in self._shard_order(config):
            if len(taken) >= want:
                break
            got = self._take_standard(config, shard, want - len(taken), lease_ms, oldest_first)
            if got:
                with self._lock:
                    self._home[config.name] = shard
            taken.extend(got)
        return taken

    def _shard_order(self, config: QueueConfig) -> list[int]:
        with self._lock:
            start = self._home.get(config.name)
        if start is None or start >= config.shards:
            start = random.randrange(config.shards)
        return [(start + i) % config.shards for i in range(config.shards)]

    def visible_in(self, queue: str, shard: int) -> bool:
        """Whether an oldest-first lease (a push consumer's) would find a message in this
        standard queue shard: the segments it would read, from the floor on, looked at with
        no write."""
        start = self.floor(queue, shard)
        for _ in range(MAX_SCAN_PAGES):
            segments = self._index.segments(queue, shard, start, limit=SCAN_SEGMENTS)
            now = self._clock.now_ms()
            for segment in segments:
                if any(e.free_at(now) and not e.expired(now) for e in segment.entries):
                    return True
            if len(segments) < SCAN_SEGMENTS:
                return False
            start = segments[-1].seq + 1
        return False

    def _take_standard(
        self, config: QueueConfig, shard: int, want: int, lease_ms: int, oldest_first: bool
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
            if with_free:
                if not oldest_first:
                    # competing consumers spread over the oldest segments, not all on the first
                    random.shuffle(with_free)
                return self._claim_from(config, with_free, want, lease_ms, oldest_first)
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
    ) -> list[Taken]:
        taken: list[Taken] = []
        for segment in segments:
            if len(taken) >= want:
                break
            for attempt in range(2):
                now = self._clock.now_ms()
                free = [e for e in segment.entries if e.free_at(now)]
                expired = [e.slot for e in free if e.expired(now)]
                free = [e for e in free if not e.expired(now)]
                if not free and not expired:
                    break
                chosen = free if oldest_first else random.sample(free, len(free))
                chosen = sorted(chosen[: want - len(taken)], key=lambda e: e.slot)
                token = new_token()
                with self._lock:
                    self.stats.claims += 1
                claimed = self._index.claim(
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
                    taken.extend(
                        _taken(config, claimed, claimed.entries[e.slot], token) for e in chosen
                    )
                    break
                with self._lock:
                    self.stats.lost += 1
                if not oldest_first:
                    break  # a competing consumer got there: try another segment
                fresh = self._index.segment(segment.queue, segment.shard, segment.seq)
                if fresh is None or attempt == 1:
                    break
                segment = fresh
        return taken

    def _pass_settled(self, queue: str, shard: int, floor: int, segments: list[Segment]) -> None:
        """Move the floor past a run of settled segments once it is long enough."""
        settled = 0
        for segment in segments:
            if segment.seq != floor + settled or not segment.settled or not segment.full:
                break
            settled += 1
        if settled >= min(FLOOR_STEP, SCAN_SEGMENTS):
            self.advance_floor(queue, shard, floor + settled)

    def floor(self, queue: str, shard: int) -> int:
        now = self._clock.now_ms()
        with self._lock:
            cached = self._floors.get((queue, shard))
        if cached is not None and now - cached[1] < FLOOR_CACHE_MS:
            return cached[0]
        value = self._index.floor(queue, shard)
        with self._lock:
            self._floors[(queue, shard)] = (value, now)
        return value

    def advance_floor(self, queue: str, shard: int, to: int) -> None:
        self._index.advance_floor(queue, shard, to)
        with self._lock:
            self._floors[(queue, shard)] = (to, self._clock.now_ms())

    def forget_floors(self, queue: str) -> None:
        with self._lock:
            for key in [k for k in self._floors if k[0] == queue]:
                del self._floors[key]

    # ---- FIFO ------------------------------------------------------------------------------

    def fifo_floor(self, queue: str) -> tuple[int, int]:
        """(floor, tail hint) of a FIFO queue's sequence, cached for a moment."""
        now = self._clock.now_ms()
        with self._lock:
            cached = self._floors.get((queue, _FIFO))
            hint = self._fifo_hints.get(queue, 0)
        if cached is not None and now - cached[1] < FLOOR_CACHE_MS:
            return cached[0], hint
        cursor = self._fifo.cursor(queue)
        with self._lock:
            self._floors[(queue, _FIFO)] = (cursor.floor, now)
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
        self, config: QueueConfig, want: int, lease_ms: int, oldest_first: bool
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
                config, want - len(taken), lease_ms, oldest_first, settled
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
            self._floors[(queue, _FIFO)] = (to, self._clock.now_ms())

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
        for position, lease in enumerate(leases):
            by_place.setdefault((lease.shard, lease.place), []).append(position)
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
