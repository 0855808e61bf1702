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
write and a second look at that segment.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from mqless.clock import Clock
from mqless.models import QueueConfig
from mqless.observability import metrics
from mqless.receipts import Lease
from mqless.storage.groups import Group, GroupStore
from mqless.storage.index import SETTLED, Entry, Hold, IndexStore, Ref, Segment, new_token

SCAN_SEGMENTS: Final = 4  # segments read at once from the floor
WIDE_SCAN_SEGMENTS: Final = 8  # competing receivers choose among more, to collide less
MAX_SCAN_PAGES: Final = 4  # pages of segments one look at a shard reads at most
FLOOR_STEP: Final = 8  # settled segments passed before the floor is moved (one write)
FLOOR_CACHE_MS: Final = 2_000
MAX_PER_GROUP: Final = 1  # one message of a group in flight at a time


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
    """Take and settle leases over the index and the FIFO groups."""

    def __init__(self, index: IndexStore, groups: GroupStore, clock: Clock) -> None:
        self._index = index
        self._groups = groups
        self._clock = clock
        self._lock = threading.Lock()
        self._floors: dict[tuple[str, int], tuple[int, int]] = {}
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
        for position, lease in enumerate(leases):
            by_place.setdefault((lease.shard, lease.place), []).append(position)
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


def _taken(config: QueueConfig, segment: Segment, entry: Entry, token: int) -> Taken:
    return Taken(
        lease=Lease(config.name, segment.shard, "s", str(segment.seq), entry.slot, token),
        ref=entry.ref,
        count=entry.count,
        reason=entry.reason,
    )
