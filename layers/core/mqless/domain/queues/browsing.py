"""Browsing a queue: its messages peeked at without leasing, in send order, a page at a
time (the cursor's text: `storage.browse_cursors`), and finding one message by id for the
operator's actions (`moving.py`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mqless.domain import names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.errors import IntegrityError, InvalidRequest
from mqless.domain.models import BrowsedMessage, QueueConfig
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.reasons import origin
from mqless.storage import keys
from mqless.storage.browse_cursors import DONE, decode_cursor, encode_cursor
from mqless.storage.log import LogItem
from mqless.storage.sealing import Headers
from mqless.storage.segments import Ref

MAX_BROWSE: Final = 100


@dataclass(frozen=True)
class Peeked:
    """A message as browsing sees it, where it is in its shard's order."""

    place: int  # segment number (a FIFO queue's: in its one sequence)
    slot: int  # slot in the segment
    ref: Ref
    until: int
    count: int
    reason: str
    group: str | None = None


@dataclass(frozen=True)
class Found:
    """A message found by id in a queue's index (for the operator's actions)."""

    ref: Ref
    shard: int
    place: str  # segment number
    position: int
    count: int
    reason: str


class Browser:
    """Peeks at a queue's unsettled references and opens their bodies, leasing nothing."""

    def __init__(self, parts: QueueParts) -> None:
        self._parts = parts
        self._registry = parts.registry
        self._index = parts.index
        self._log = parts.log
        self._clock = parts.clock
        self._policy = parts.policy
        self._leases = parts.leases

    def browse(
        self, principal: Principal, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[BrowsedMessage], str | None]:
        """A page of messages peeked at without leasing, and the next cursor: in send order
        (the shards merged by message time; a FIFO queue in its one sequence)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        if not 1 <= limit <= MAX_BROWSE:
            raise InvalidRequest(f"limit must be 1 to {MAX_BROWSE}")
        config = self._registry.get(name)
        starts = decode_cursor(cursor, config)
        candidates: list[tuple[int, Peeked]] = []
        # a cursor holds a position per index shard (a priority queue's lanes' too), in
        # `index_shards` order
        for number, shard in enumerate(config.index_shards()):
            for count, peeked in enumerate(self.peek_shard(config, shard, starts[number])):
                if count > limit or (config.fifo and len(candidates) > limit):
                    break
                candidates.append((number, peeked))
        if not config.fifo:
            candidates.sort(key=lambda c: (keys.id_time_ms(c[1].ref.item), c[1].ref.item))
        page = candidates[:limit]
        next_cursor = None
        if len(candidates) > limit:
            positions = list(starts)
            for shard, peeked in page:
                positions[shard] = (peeked.place, peeked.slot + 1)
            if config.fifo:  # the shards before the last one taken from are done
                last = page[-1][0]
                positions = [(DONE, 0) if s < last else p for s, p in enumerate(positions)]
            next_cursor = encode_cursor(positions)
        items = self._log.items((p.ref.log, p.ref.item) for _, p in page)
        now = self._clock.now_ms()
        return [
            self._browsed(config, items.get((p.ref.log, p.ref.item)), p, now) for _, p in page
        ], next_cursor

    def peek_shard(
        self, config: QueueConfig, shard: int, start: tuple[int, int]
    ) -> Iterable[Peeked]:
        """A shard's unsettled messages from a position on, in its order."""
        first_place, first_slot = start
        if first_place >= DONE:
            return
        now = self._clock.now_ms()
        if config.fifo:
            # one sequence for the whole queue, browsed in its order: shard 0 stands for it
            sequence = self._leases.fifo_segments(config, consistent=True, limit=None)
            for fifo in sequence if shard == 0 else ():
                for e in fifo.entries:
                    if (fifo.seq, e.slot) < start or e.gone(now):
                        continue
                    yield Peeked(fifo.seq, e.slot, e.ref, e.until, e.count, e.reason)
            return
        seq = max(first_place, self._leases.floor(config.name, shard))
        while True:
            segments = self._index.segments(config.name, shard, seq, limit=8, consistent=True)
            for segment in segments:
                for entry in segment.entries:
                    if (segment.seq, entry.slot) < start or entry.settled or entry.expired(now):
                        continue
                    yield Peeked(
                        segment.seq, entry.slot, entry.ref, entry.until, entry.count, entry.reason
                    )
            if len(segments) < 8:
                return
            seq = segments[-1].seq + 1

    def find(self, config: QueueConfig, message_id: str) -> Found | None:
        """Where message `message_id` is in the queue's index; None if it is not there."""
        item_id, slot = keys.locate(message_id)
        for shard in config.index_shards():
            for peeked in self.peek_shard(config, shard, (0, 0)):
                if peeked.ref.item == item_id and peeked.ref.slot == slot:
                    place = peeked.group if peeked.group is not None else str(peeked.place)
                    return Found(peeked.ref, shard, place, peeked.slot, peeked.count, peeked.reason)
        return None

    def _browsed(
        self, config: QueueConfig, item: LogItem | None, peeked: Peeked, now: int
    ) -> BrowsedMessage:
        ref, until, count, group = peeked.ref, peeked.until, peeked.count, peeked.group
        reason = peeked.reason
        body: str | None = None
        error: str | None = None
        headers = Headers()
        try:
            if not self._parts.genuine(config.name, ref):
                raise IntegrityError("a reference the broker did not put in this queue")
            if item is None or ref.slot >= len(item.bodies):
                raise IntegrityError("the message body is gone (expired)")
            opened = self._parts.open(item, ref)
            headers = opened.headers
            body = (
                base64.b64encode(opened.body).decode() if headers.binary else opened.body.decode()
            )
        except IntegrityError as exc:
            error = f"integrity: {exc.message}"
        if 0 <= until <= now:
            state = "visible"
        elif count > 0:
            state = "in_flight"
        else:
            state = "delayed"
        source, why = origin(reason)
        return BrowsedMessage(
            message_id=ref.message_id,
            body=body,
            binary=headers.binary,
            attributes=dict(headers.attributes),
            content_type=headers.content_type,
            correlation_id=headers.correlation_id,
            reply_to=headers.reply_to,
            sent_at=keys.id_time_ms(ref.item),
            receive_count=count,
            state=state,
            visible_at=until if until > 0 else None,
            group_id=group if group is not None else (item.group_of(ref.slot) if item else None),
            dead_letter_reason=why,
            source_queue=source,
            priority=headers.priority,
            error=error,
        )
