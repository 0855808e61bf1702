"""Racing receivers: leases by ticket from a shard's dispenser.

A receiver that lost a race on a shard, or that reads in the shard's cursor that someone
took a ticket there lately, takes positions from the shard's ticket dispenser instead
(`IndexStore.take_positions`: one write, 1 WRU, that never hands two receivers the same
positions, refused only where the receiver's read reached the shard's end and the dispenser
is past it already: then no positions would hold anything), reads the segments of those
positions strongly consistent (1 RRU: DynamoDB bills a read a fifth of a write, and an
eventually consistent one may show a reference free that was just taken) and leases what
is free there.
References behind the dispenser that are free again (a lease ran out, a nack, a delay
ended) are leased from a strongly consistent read of their segment, now and then and
whenever the tickets found nothing. A receiver that never competes never takes a ticket.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from mqless.domain.clock import Clock
from mqless.domain.models import QueueConfig
from mqless.domain.queues.claiming import Claims
from mqless.domain.queues.leases import Acks, Taken
from mqless.domain.queues.shard_memory import ShardMemory
from mqless.storage.index import IndexStore
from mqless.storage.segments import MAX_REFS, Entry, Segment, position

STRAGGLER_SHARE: Final = 0.125  # racing receives that look behind the dispenser first
STRAY_MS: Final = 30_000  # how long a dispensed, never-leased reference waits for its holder
MAX_TICKETS: Final = 3  # tickets one receive takes when the positions it got were taken


class Racing:
    """Leases by ticket, and behind the dispenser, for receivers that compete."""

    def __init__(
        self, index: IndexStore, clock: Clock, memory: ShardMemory, claims: Claims
    ) -> None:
        self._index = index
        self._clock = clock
        self._memory = memory
        self._claims = claims
        self._lock = threading.Lock()
        # per shard: never-leased references seen free behind the dispenser, since when
        self._stray_seen: dict[tuple[str, int], dict[tuple[int, int], int]] = {}

    def forget(self, queue: str) -> None:
        """Forget what was seen of a queue (it was purged or deleted)."""
        with self._lock:
            for key in [k for k in self._stray_seen if k[0] == queue]:
                del self._stray_seen[key]

    def take(
        self,
        config: QueueConfig,
        shard: int,
        seen: list[Segment],
        want: int,
        lease_ms: int,
        acks: Acks | None = None,
        *,
        read_end: int | None = None,
    ) -> list[Taken]:
        """Lease by ticket; look behind the dispenser now and then, and when the tickets
        found nothing (`seen`: the segments an eventually consistent read showed free;
        `read_end`: the position after the last reference, if that read reached it).

        Where the read reached the shard's last reference, a ticket is taken only while the
        dispenser is below it: past it, its positions would be past the last reference or
        of references dispensed already (the dispenser never goes back below one), a ticket
        and two reads for nothing. So a read that shows nothing free at or past the
        dispenser as last known takes no ticket, and a ticket is refused (one failed
        write, no read) where the dispenser moved past the end meanwhile. What is appended
        after that read is found by the next look."""
        dispensed = self._memory.dispensed(config.name, shard)
        now = self._clock.now_ms()
        strays = self._strays(config.name, shard, seen, dispensed, now)
        behind = _behind(seen, dispensed, now, strays)
        taken: list[Taken] = []
        looked_behind = False
        if behind and random.random() < STRAGGLER_SHARE:
            looked_behind = True
            taken += self._take_behind(config, shard, behind, want, lease_ms, strays, acks)
        if read_end is None or _free_ahead(seen, dispensed, now):
            taken += self._take_by_tickets(
                config, shard, want - len(taken), lease_ms, acks, read_end
            )
        if len(taken) < want and not looked_behind:
            dispensed = self._memory.dispensed(config.name, shard)
            behind = _behind(seen, dispensed, self._clock.now_ms(), strays)
            taken += self._take_behind(
                config, shard, behind, want - len(taken), lease_ms, strays, acks
            )
        return taken

    def _take_by_tickets(
        self,
        config: QueueConfig,
        shard: int,
        want: int,
        lease_ms: int,
        acks: Acks | None,
        read_end: int | None,
    ) -> list[Taken]:
        """Lease up to `want` by up to MAX_TICKETS tickets (the first refused if the
        dispenser is at `read_end` already), until one reaches the shard's last reference."""
        taken: list[Taken] = []
        tickets = 0
        for _ in range(MAX_TICKETS + MAX_REFS):
            if len(taken) >= want or tickets >= MAX_TICKETS:
                break
            got, at_tail, in_holes = self._take_by_ticket(
                config, shard, want - len(taken), lease_ms, acks, read_end
            )
            read_end = None  # a ticket's own read (strongly consistent) knows better now
            taken += got
            if at_tail:
                break  # nothing further to dispense; another ticket would find nothing
            if not in_holes:
                # positions in a closed segment's empty places were no one's: the next
                # ticket is not one more try but the first that could find something
                tickets += 1
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
        self,
        config: QueueConfig,
        shard: int,
        want: int,
        lease_ms: int,
        acks: Acks | None,
        read_end: int | None,
    ) -> tuple[list[Taken], bool, bool]:
        """Take `want` positions from the dispenser and lease what is free at them; whether
        they reached the shard's last reference (or the ticket was refused: the dispenser
        was at `read_end` already); and whether they all fell in the empty places of
        closed segments (a batch that did not fit whole in a segment's room)."""
        queue = config.name
        dispensed = self._dispense(queue, shard, want, read_end)
        if dispensed is None:
            return [], True, False
        start, end, read, tail = dispensed
        taken: list[Taken] = []
        for segment in read:
            got = self._claim_positions(config, segment, start, end, lease_ms, acks)
            if got is None:
                # a receiver that was not racing took one of them: the others are still
                # this ticket's, and no other ticket will ever name them
                self._memory.lost_race(queue)
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

    def _dispense(
        self, queue: str, shard: int, want: int, below: int | None
    ) -> tuple[int, int, list[Segment], int | None] | None:
        """Take a ticket: `want` positions from the shard's dispenser (moved where it ran
        behind the floor or past the tail), if it is `below` that position. (first
        position, end, the segments holding them and one more, read strongly consistent,
        the tail position if that read reached it); None if it was refused."""
        now = self._clock.now_ms()
        known = self._memory.floor(queue, shard)
        hint = self._memory.take_floor_hint(queue, shard)
        ticket = self._index.take_positions(
            queue, shard, want, first=position(known, 0), now_ms=now, floor_hint=hint, below=below
        )
        if ticket is None:
            assert below is not None
            self._memory.refused_ticket(queue, shard, dispensed=below, floor_hint=hint)
            return None
        start, cursor = ticket
        own_end = self._memory.own_ticket_end(queue, shard)
        if own_end is not None and start != own_end:
            self._memory.saw_others(queue, now)  # positions went to someone else since its last
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
        self._memory.took_ticket(queue, shard, cursor, end=end, writes=tickets, at=now)
        return start, end, read, tail

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
        return self._claims.claim(config, segment, mine, (), lease_ms, acks) if mine else []

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
        dispensed = self._memory.dispensed(config.name, shard)
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
            got = self._claims.claim(config, segment, chosen, (), lease_ms, acks)
            if got is None:
                self._memory.lost_race(config.name)
                continue
            taken.extend(got)
        return taken


def _behind(
    segments: Sequence[Segment], dispensed: int | None, now: int, strays: set[tuple[int, int]]
) -> list[Segment]:
    """The segments with a reference to lease behind the dispenser (as read)."""
    if dispensed is None:
        return []
    return [
        s for s in segments if any(_behind_free(s, e, dispensed, now, strays) for e in s.entries)
    ]


def _free_ahead(segments: Sequence[Segment], dispensed: int | None, now: int) -> bool:
    """Whether a ticket may find something (as read): a reference free at or past the
    dispenser, or the dispenser not known."""
    if dispensed is None:
        return True
    return any(
        e.slot < MAX_REFS and e.free_at(now) and position(s.seq, e.slot) >= dispensed
        for s in segments
        for e in s.entries
    )


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
