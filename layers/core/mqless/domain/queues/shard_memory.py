"""What this process remembers of each queue's shards between receives: their cursors
(floor, dispenser) for a moment, where it last found messages, when it last lost a race
or saw another receiver's ticket, the tickets it took, and its lease counters.

A cursor is cached for FLOOR_CACHE_MS; reading it tells whether someone else took a ticket
there lately (then this queue's receivers race: `racing.py`).
A competing look begins past the run of settled segments at the floor that a look of this
process read (`settled_to`), for as long as that cursor stays cached: settled is for good,
and the floor is written only once such a run is long enough (a queue deleted and made
again by another process is read from its floor when the cursor is read again).

A shard a look read to its end and found nothing free in is remembered empty: a receive
that looks again while that look is newer than its own last one, while this process wrote
nothing there that may free a reference (an append, a release: `IndexStore.freeing_stamp`)
and before a lease or delay seen there ends, does not read it again. Receivers of one
process (`mqless dev`, a WebSocket function's pumps) share what they found, so N of them
long-polling an idle queue read each shard about once per pause, not N times; a lone
receiver never skips a shard (its own looks are a pause apart). What other processes free
is seen by the next look after the one that skipped (a pause later), as a read that was
just made before the append would have.

A push consumer's look (oldest first) also remembers where the run of full segments it
passed from where it began ended, every reference in them held (leased or delayed) or
settled: a consumer with a prefetch of 100 holds some ten segments at the floor, which
every look would otherwise read again, page by page, before what waits behind them. The
next such look begins there while this process released nothing in the shard (a nack, a
hand-back, a shortened lease: `IndexStore.release_stamp`; appends fill only the tail), no
lease or delay it saw has ended, and for at most HELD_MEMORY_MS (what other processes
release: each pumps what it releases itself, so this only delays their messages for this
process's looks). The floor itself moves as before, by the look that begins there.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from mqless.domain.clock import Clock
from mqless.domain.queues.leases import LeaseStats
from mqless.storage.index import IndexStore
from mqless.storage.segments import Cursor, Segment

FLOOR_CACHE_MS: Final = 2_000
HELD_MEMORY_MS: Final = FLOOR_CACHE_MS  # how long a push look's run of held segments is kept
RACING_MS: Final = 30_000  # how long a lost race, or a ticket, keeps a queue's receivers racing


class ShardMemory:
    """Per process and per shard: cached cursors, the racing signals, the home shard."""

    def __init__(self, index: IndexStore, clock: Clock) -> None:
        self._index = index
        self._clock = clock
        self._lock = threading.Lock()
        self._cursors: dict[tuple[str, int], tuple[Cursor, int]] = {}
        self._lost_at: dict[str, int] = {}  # when this process last lost a race
        self._others_at: dict[str, int] = {}  # when it last saw another's ticket
        # per shard: (when it last took a ticket, where its positions ended)
        self._own_tickets: dict[tuple[str, int], tuple[int, int]] = {}
        self._floor_hints: dict[tuple[str, int], int] = {}  # for the shard's next ticket
        self._home: dict[str, int] = {}
        # per shard: (when found empty, the freeing stamp before that read, when it wakes)
        self._empty: dict[tuple[str, int], tuple[int, int, int]] = {}
        # per shard: the run of held segments a push consumer's look last passed
        self._held: dict[tuple[str, int], HeldRun] = {}
        # per shard: where the run of settled segments from the floor a look read ends, and
        # the read time of the cached cursor it was read over
        self._settled: dict[tuple[str, int], tuple[int, int]] = {}
        self.stats = LeaseStats()

    # ---- cursors and floors --------------------------------------------------------------

    def floor(self, queue: str, shard: int) -> int:
        """The shard's floor: no segment before it holds anything unsettled."""
        return self.cursor(queue, shard).floor

    def cursor(self, queue: str, shard: int) -> Cursor:
        """The shard's cursor, read again once the cached one is FLOOR_CACHE_MS old."""
        now = self._clock.now_ms()
        with self._lock:
            cached = self._cursors.get((queue, shard))
        if cached is not None and now - cached[1] < FLOOR_CACHE_MS:
            return cached[0]
        value = self._index.cursor(queue, shard)
        self._remember_cursor(queue, shard, value, now)
        return value

    def read_cursors(self, queue: str, shards: Sequence[int]) -> None:
        """Read the cursors of these shards not cached, together, for the `cursor` and
        `floor` calls that follow (a sweep's round: one request for a queue's shards, not
        one per shard; a cold sweep of two 8-shard queues made 16)."""
        now = self._clock.now_ms()
        with self._lock:
            stale = [
                shard
                for shard in shards
                if (cached := self._cursors.get((queue, shard))) is None
                or now - cached[1] >= FLOOR_CACHE_MS
            ]
        if len(stale) > 1:
            for shard, value in self._index.cursors(queue, stale).items():
                self._remember_cursor(queue, shard, value, now)

    def _remember_cursor(self, queue: str, shard: int, value: Cursor, read_at: int) -> None:
        with self._lock:
            self._cursors[(queue, shard)] = (value, read_at)
            own = self._own_tickets.get((queue, shard))
        if value.ticket_at and (own is None or value.ticket_at != own[0]):
            self.saw_others(queue, value.ticket_at)

    def dispensed(self, queue: str, shard: int) -> int | None:
        """Where the shard's dispenser was, as last read (None: not known)."""
        with self._lock:
            cached = self._cursors.get((queue, shard))
        return cached[0].dispensed if cached is not None else None

    def advance_floor(self, queue: str, shard: int, to: int) -> None:
        """Move the shard's floor up to segment `to` (one write)."""
        self._index.advance_floor(queue, shard, to)
        now = self._clock.now_ms()
        with self._lock:
            cached = self._cursors.get((queue, shard))
            known = cached[0] if cached is not None else Cursor()
            self._cursors[(queue, shard)] = (replace(known, floor=max(known.floor, to)), now)

    def settled_to(self, queue: str, shard: int, floor: int) -> int:
        """Where a competing look at the shard begins: past the run of full, settled
        segments from the floor that a look of this process read (settled is for good), for
        as long as the cursor it read them over is cached; otherwise at the floor.

        The floor is written only once such a run is a few segments long (one write for
        several), so every look read the shorter runs again, before what waits behind them:
        with eight consumers acknowledging as they go (bench/bench_local.py), about a third of
        first pages held nothing free, and the look read a second."""
        with self._lock:
            known = self._settled_end(queue, shard)
        return floor if known is None else max(floor, known)

    def settled_run(self, queue: str, shard: int, floor: int, segments: Sequence[Segment]) -> int:
        """How many segments from the floor are known full and settled, once the run a look
        of this process read before (`settled_to`) is extended over `segments` (just read,
        in order); the run is remembered for the looks that follow."""
        end = self.settled_to(queue, shard, floor)
        for segment in segments:
            if segment.seq != end or not segment.settled or not segment.full:
                break
            end += 1
        with self._lock:
            cached = self._cursors.get((queue, shard))
            known = self._settled_end(queue, shard) or 0
            if cached is not None and max(cached[0].floor, known) < end:
                self._settled[(queue, shard)] = (end, cached[1])
        return end - floor

    def _settled_end(self, queue: str, shard: int) -> int | None:
        """Where the remembered settled run of the shard ends, while the cursor it was read
        over is still the cached one; None otherwise (the lock held)."""
        run = self._settled.get((queue, shard))
        cached = self._cursors.get((queue, shard))
        if run is None or cached is None or run[1] != cached[1]:
            return None
        return run[0]

    def hint_floor(self, queue: str, shard: int, to: int) -> None:
        """Leave the floor's move to the shard's next ticket (a write that cannot fail)."""
        with self._lock:
            self._floor_hints[(queue, shard)] = to

    def take_floor_hint(self, queue: str, shard: int) -> int | None:
        """The floor move left for this ticket, if any (taken: the next ticket has none)."""
        with self._lock:
            return self._floor_hints.pop((queue, shard), None)

    def forget(self, queue: str) -> None:
        """Forget a queue's shards (it was purged or deleted: it may be made again)."""
        with self._lock:
            for key in [k for k in self._cursors if k[0] == queue]:
                del self._cursors[key]
            for key in [k for k in self._own_tickets if k[0] == queue]:
                del self._own_tickets[key]  # a queue made again starts a new dispenser
            for key in [k for k in self._floor_hints if k[0] == queue]:
                del self._floor_hints[key]
            for key in [k for k in self._empty if k[0] == queue]:
                del self._empty[key]
            for key in [k for k in self._held if k[0] == queue]:
                del self._held[key]
            for key in [k for k in self._settled if k[0] == queue]:
                del self._settled[key]

    # ---- tickets and racing ----------------------------------------------------------------

    def own_ticket_end(self, queue: str, shard: int) -> int | None:
        """Where the positions of this process's last ticket on the shard ended."""
        with self._lock:
            own = self._own_tickets.get((queue, shard))
        return own[1] if own is not None else None

    def took_ticket(
        self, queue: str, shard: int, cursor: Cursor, *, end: int, writes: int, at: int
    ) -> None:
        """Note a ticket this process took `at` (its time in the cursor: `ticket_at`), in
        `writes` dispenser writes, and the cursor it left."""
        now = at
        with self._lock:
            self.stats.tickets += writes
            self._cursors[(queue, shard)] = (cursor, now)
            self._own_tickets[(queue, shard)] = (now, int(cursor.dispensed or end))

    def refused_ticket(
        self, queue: str, shard: int, *, dispensed: int, floor_hint: int | None
    ) -> None:
        """A ticket was refused (one failed write): the dispenser is at `dispensed` or past
        it; the floor's move it was to carry waits for the next ticket."""
        with self._lock:
            self.stats.tickets += 1
            cached = self._cursors.get((queue, shard))
            if cached is not None and (cached[0].dispensed or 0) < dispensed:
                self._cursors[(queue, shard)] = (replace(cached[0], dispensed=dispensed), cached[1])
            if floor_hint is not None:
                self._floor_hints.setdefault((queue, shard), floor_hint)

    def racing(self, queue: str, now: int) -> bool:
        """Whether receivers compete for this queue: this one lost a race lately, or someone
        took a ticket lately on one of its shards (the cursor says; it is read for the
        floor anyway). Competing receivers roam over every shard: so does racing."""
        with self._lock:
            seen_at = max(self._lost_at.get(queue, 0), self._others_at.get(queue, 0))
        return now - seen_at < RACING_MS

    def saw_others(self, queue: str, at: int) -> None:
        """Another receiver took a ticket on this queue at `at`."""
        with self._lock:
            self._others_at[queue] = max(self._others_at.get(queue, 0), at)

    def lost_race(self, queue: str) -> None:
        """A conditional write of this process lost to another receiver's."""
        with self._lock:
            self._lost_at[queue] = self._clock.now_ms()

    def counted(self, *, claims: int = 0, lost: int = 0) -> None:
        """Count lease writes made, and those that lost a race."""
        with self._lock:
            self.stats.claims += claims
            self.stats.lost += lost

    # ---- where messages were last found ------------------------------------------------------

    def home(self, queue: str) -> int | None:
        """The shard where this process last found messages of `queue`."""
        with self._lock:
            return self._home.get(queue)

    def found_in(self, queue: str, shard: int) -> None:
        """Messages were found in this shard: look here first next time."""
        with self._lock:
            self._home[queue] = shard
            self._empty.pop((queue, shard), None)

    # ---- shards found empty ------------------------------------------------------------------

    def freeing_stamp(self, queue: str, shard: int) -> int:
        """The shard's freeing stamp, to take before a read that may find it empty."""
        return self._index.freeing_stamp(queue, shard)

    def found_empty(
        self, queue: str, shard: int, *, read_at: int, stamp: int, wakes_at: int
    ) -> None:
        """A look read this shard to its end at `read_at` (the freeing stamp `stamp` taken
        before it) and found nothing free; a lease or delay it saw ends at `wakes_at`."""
        with self._lock:
            self._empty[(queue, shard)] = (read_at, stamp, wakes_at)

    def known_empty(self, queue: str, shard: int, *, since: int) -> bool:
        """Whether a look begun after `since` found this shard empty, and nothing freed there
        since, that this process knows of (its writes, the leases and delays it saw)."""
        with self._lock:
            empty = self._empty.get((queue, shard))
        if empty is None:
            return False
        read_at, stamp, wakes_at = empty
        return (
            read_at > since
            and self._clock.now_ms() < wakes_at
            and stamp == self._index.freeing_stamp(queue, shard)
        )

    # ---- runs of held segments (push consumers' looks) ---------------------------------------

    def passed_held(self, queue: str, shard: int, run: HeldRun) -> None:
        """A push consumer's look found the segments before `run.past` (from where it began)
        full, each reference held or settled; those before `run.settled_to` settled."""
        with self._lock:
            self._held[(queue, shard)] = run

    def look_start(self, queue: str, shard: int, floor: int) -> HeldRun:
        """Where a push consumer's look at the shard begins (call it before the look reads):
        past the held run a recent look found (`passed_held`) while nothing there can have
        come free, else at the floor."""
        stamp = self._index.release_stamp(queue, shard)
        with self._lock:
            held = self._held.get((queue, shard))
        now = self._clock.now_ms()
        if (
            held is None
            or held.past <= floor
            or now - held.read_at >= HELD_MEMORY_MS
            or now >= held.wakes_at
            or held.stamp != stamp
        ):
            return HeldRun(start=floor, settled_to=floor, read_at=now, stamp=stamp)
        return HeldRun(
            start=held.past,
            settled_to=max(floor, held.settled_to),
            read_at=held.read_at,
            stamp=stamp,
            wakes_at=held.wakes_at,
        )


class HeldRun:
    """The run of full segments a push consumer's look passed from where it began, each
    reference held (leased, delayed) or settled: where the next look may begin. Those from
    the floor up to `settled_to` are all settled (the floor may move past them)."""

    def __init__(
        self, *, start: int, settled_to: int, read_at: int, stamp: int, wakes_at: int = sys.maxsize
    ) -> None:
        self.start = start
        self.past = start  # the first segment not known held
        self.settled_to = settled_to
        self.read_at = read_at  # when the oldest part of the run was read
        self.stamp = stamp  # the release stamp taken before that read
        self.wakes_at = wakes_at  # when a lease or delay in the run ends
        self._open = True

    @property
    def length(self) -> int:
        return self.past - self.start

    def passed(self, seq: int) -> bool:
        """Whether every segment before `seq` (from the start) was found held."""
        return self.past >= seq

    def saw(self, segments: Sequence[Segment], now: int) -> None:
        """Extend the run over the segments just read (in order, from `past` on)."""
        for segment in segments:
            if not self._open or segment.seq != self.past:
                self._open = False
                return
            if not segment.full or any(e.free_at(now) for e in segment.entries):
                self._open = False
                return
            ends = [e.until for e in segment.entries if e.until > now]
            self.wakes_at = min([self.wakes_at, *ends])
            if self.settled_to == segment.seq and segment.settled:
                self.settled_to = segment.seq + 1
            self.past = segment.seq + 1
