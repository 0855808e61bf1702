"""Leases: finding free messages in a queue, taking them, and settling them.

A standard queue's messages are references in its index segments (`storage.index`); a
FIFO queue's are references in its group items (`storage.groups`). Taking messages is one
conditional write per segment or group, whatever the number of messages it takes; so is
settling them. What is taken is returned as `Taken` (the lease, the reference, the receive
count); opening bodies and deciding to deliver, expire or dead-letter is the queue
service's (`queues.py`).

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
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from mqless.clock import Clock
from mqless.models import QueueConfig
from mqless.observability import metrics
from mqless.receipts import Lease
from mqless.storage.groups import Group, GroupStore
from mqless.storage.index import (
    MAX_REFS,
    SETTLED,
    Cursor,
    Entry,
    Hold,
    IndexStore,
    Ref,
    Segment,
    new_token,
    position,
)

SCAN_SEGMENTS: Final = 4  # segments read at once from the floor
WIDE_SCAN_SEGMENTS: Final = 8  # competing receivers choose among more, to collide less
MAX_SCAN_PAGES: Final = 4  # pages of segments one look at a shard reads at most
FLOOR_STEP: Final = 8  # settled segments passed before the floor is moved (one write)
FLOOR_CACHE_MS: Final = 2_000
MAX_PER_GROUP: Final = 1  # one message of a group in flight at a time
RACING_MS: Final = 30_000  # how long a lost race, or a ticket, keeps a queue's receivers racing
STRAGGLER_SHARE: Final = 0.125  # racing receives that look behind the dispenser first
STRAY_MS: Final = 30_000  # how long a dispensed, never-leased reference waits for its holder
MAX_TICKETS: Final = 3  # tickets one receive takes when the positions it got were taken


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
    tickets: int = 0  # dispenser writes (tickets taken, and the dispenser moved)


class Leases:
    """Take and settle leases over the index and the FIFO groups."""

    def __init__(self, index: IndexStore, groups: GroupStore, clock: Clock) -> None:
        self._index = index
        self._groups = groups
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
        self.stats = LeaseStats()

    # ---- taking -------------------------------------------------------------------------

    def take(
        self, config: QueueConfig, want: int, lease_ms: int, *, oldest_first: bool = False
    ) -> list[Taken]:
        """Lease up to `want` messages for `lease_ms`."""
        taken: list[Taken] = []
        for shard in self._shard_order(config):
            if len(taken) >= want:
                break
            if config.fifo:
                got = self._take_fifo(config, shard, want - len(taken), lease_ms, oldest_first)
            else:
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
                if oldest_first:
                    return self._claim_from(config, with_free, want, lease_ms, oldest_first)
                if self._racing(queue, now):
                    return self._take_racing(config, shard, with_free, want, lease_ms)
                # competing consumers spread over the oldest segments, not all on the first
                random.shuffle(with_free)
                taken = self._claim_from(config, with_free, want, lease_ms, oldest_first)
                if len(taken) < want and self._racing(queue, now):
                    # it lost a race: the rest by ticket, not by another guess
                    taken += self._take_racing(
                        config, shard, with_free, want - len(taken), lease_ms
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
    ) -> list[Taken]:
        taken: list[Taken] = []
        for segment in segments:
            if len(taken) >= want:
                break
            for attempt in range(2):
                now = self._clock.now_ms()
                free = [e for e in segment.entries if e.free_at(now)]
                live = [e for e in free if not e.expired(now)]
                chosen = live if oldest_first else random.sample(live, len(live))
                got = self._claim(config, segment, chosen[: want - len(taken)], free, lease_ms)
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
    ) -> list[Taken] | None:
        """Lease `entries` (free ones) and settle the expired ones of them and of `seen`, in
        one conditional write of their segment; None if another receiver took one first."""
        now = self._clock.now_ms()
        expired = sorted({e.slot for e in [*entries, *seen] if e.expired(now)})
        chosen = sorted((e for e in entries if not e.expired(now)), key=lambda e: e.slot)
        if not chosen and not expired:
            return []
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
        self, config: QueueConfig, shard: int, seen: list[Segment], want: int, lease_ms: int
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
            taken += self._take_behind(config, shard, behind, want, lease_ms, strays)
        for _ in range(MAX_TICKETS):
            if len(taken) >= want:
                break
            got, at_tail = self._take_by_ticket(config, shard, want - len(taken), lease_ms)
            taken += got
            if at_tail:
                break  # nothing further to dispense; another ticket would find nothing
        if len(taken) < want and not looked_behind:
            with self._lock:
                cached = self._cursors.get((config.name, shard))
            dispensed = cached[0].dispensed if cached is not None else None
            behind = _behind(seen, dispensed, self._clock.now_ms(), strays)
            taken += self._take_behind(config, shard, behind, want - len(taken), lease_ms, strays)
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
        self, config: QueueConfig, shard: int, want: int, lease_ms: int
    ) -> tuple[list[Taken], bool]:
        """Take `want` positions from the dispenser and lease what is free at them; and
        whether they reached the shard's last reference."""
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
            got = self._claim_positions(config, segment, start, end, lease_ms)
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
        return taken, tail is not None and end >= tail

    def _claim_positions(
        self, config: QueueConfig, segment: Segment, start: int, end: int, lease_ms: int
    ) -> list[Taken] | None:
        """Lease what is free in the segment at positions `start` to `end` (excluded)."""
        now = self._clock.now_ms()
        mine = [
            e
            for e in segment.entries
            if start <= position(segment.seq, e.slot) < end and e.free_at(now)
        ]
        return self._claim(config, segment, mine, (), lease_ms) if mine else []

    def _tail_position(self, queue: str, shard: int) -> int | None:
        last = self._index.tail(queue, shard)
        return position(last[0].seq, len(last[0].entries)) if last else None

    def _take_behind(
        self,
        config: QueueConfig,
        shard: int,
        seen: list[Segment],
        want: int,
        lease_ms: int,
        strays: set[tuple[int, int]],
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
            got = self._claim(config, segment, chosen, (), lease_ms)
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

    # ---- FIFO ------------------------------------------------------------------------------

    def _take_fifo(
        self, config: QueueConfig, shard: int, want: int, lease_ms: int, oldest_first: bool
    ) -> list[Taken]:
        now = self._clock.now_ms()
        candidates = [
            g
            for g in self._groups.groups(config.name, shard)
            if not g.leased_at(now) and (g.refs or g.waiting_spills)
        ]
        if oldest_first:
            candidates.sort(key=lambda g: g.refs[0].ref.item if g.refs else "~")
        else:
            random.shuffle(candidates)
        taken: list[Taken] = []
        for group in candidates:
            if len(taken) >= want:
                break
            taken.extend(self._take_group(config, group, want - len(taken), lease_ms))
        return taken

    def _take_group(
        self, config: QueueConfig, group: Group, want: int, lease_ms: int
    ) -> list[Taken]:
        now = self._clock.now_ms()
        found: Group | None = group
        if not group.refs and group.waiting_spills:
            found = self._groups.take_spill(group)
        elif group.refs and group.refs[0].acked:
            found = self._groups.drop_acked(group, now)
        if found is None or not found.ready(now):
            return []
        group = found
        count = 0
        for ref in group.refs:
            if count >= min(want, MAX_PER_GROUP) or ref.visible_at > now:
                break
            count += 1
        if count == 0:
            return []
        limit = config.max_receive_count
        if limit is not None and group.refs[0].count >= limit:
            count = 1  # the head goes to the dead-letter queue alone
        token = new_token()
        with self._lock:
            self.stats.claims += 1
        claimed = self._groups.claim(group, count, now_ms=now, until_ms=now + lease_ms, token=token)
        if claimed is None:
            with self._lock:
                self.stats.lost += 1
            return []
        return [
            Taken(
                lease=Lease(config.name, group.shard, "g", group.name, i, token),
                ref=claimed.refs[i].ref,
                count=claimed.refs[i].count,
                reason=claimed.refs[i].reason,
                group=group.name,
            )
            for i in range(count)
            if not claimed.refs[i].acked
        ]

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

    def take_head(self, config: QueueConfig, group: Group, lease_ms: int) -> Taken | None:
        """Lease a free group's head, whatever it is (the sweeper: expired or over-limit)."""
        now = self._clock.now_ms()
        if not group.ready(now) or not group.refs or group.refs[0].acked:
            return None
        token = new_token()
        claimed = self._groups.claim(group, 1, now_ms=now, until_ms=now + lease_ms, token=token)
        if claimed is None:
            return None
        head = claimed.refs[0]
        return Taken(
            lease=Lease(config.name, group.shard, "g", group.name, 0, token),
            ref=head.ref,
            count=head.count,
            reason=head.reason,
            group=group.name,
        )

    # ---- settling ---------------------------------------------------------------------------

    def hand_back(self, config: QueueConfig, leases: Sequence[Lease]) -> None:
        """Give back leases that delivered to no one: free at once, counts as they were."""
        now = self._clock.now_ms()
        by_place: dict[tuple[int, str], list[Lease]] = {}
        for lease in leases:
            by_place.setdefault((lease.shard, lease.place), []).append(lease)
        for (shard, place), group in by_place.items():
            if group[0].kind == "g":
                found = self._groups.group(config.name, shard, place)
                if found is not None and found.token == group[0].token:
                    self._groups.give_back(found, group[0].token)
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
            group = self._groups.group(config.name, lease.shard, lease.place)
            if (
                group is None
                or group.token != lease.token
                or lease.position >= min(group.covered, len(group.refs))
            ):
                return None
            held = group.refs[lease.position]
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
                outcome = self._set_group(config, shard, place, group, until, release)
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

    def _set_group(
        self,
        config: QueueConfig,
        shard: int,
        name: str,
        leases: list[Lease],
        until: int,
        release: bool,
    ) -> list[bool]:
        group = self._groups.group(config.name, shard, name)
        tokens = {lease.token for lease in leases}
        if group is None or len(tokens) != 1 or group.token not in tokens or group.covered == 0:
            return [False] * len(leases)
        token = group.token
        if until != SETTLED:
            changed = self._groups.set_until(
                config.name, shard, name, token, until, release=release
            )
            return [changed is not None] * len(leases)
        valid = [
            lease.position < group.covered and not group.refs[lease.position].acked
            for lease in leases
        ]
        held = [
            (lease.position, group.refs[lease.position].ref)
            for lease, ok in zip(leases, valid, strict=True)
            if ok
        ]
        if not held:
            return [False] * len(leases)
        done = self._groups.ack(group, token, held, group.covered) is not None
        return [ok and done for ok in valid]


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
    last = read[-1]
    return position(last.seq, len(last.entries))


def _taken(config: QueueConfig, segment: Segment, entry: Entry, token: int) -> Taken:
    return Taken(
        lease=Lease(config.name, segment.shard, "s", str(segment.seq), entry.slot, token),
        ref=entry.ref,
        count=entry.count,
        reason=entry.reason,
    )
