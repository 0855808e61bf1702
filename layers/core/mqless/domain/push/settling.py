"""Settling what a push consumer was sent: acks and nacks by ack id (or message id).

An ack id names the record and the place in it (`ack_ids.py`), so settling needs no search.
`client-individual`: one conditional update of the record marks the position settled (only
while its gen matches, its lease has not ended and it is not settled yet) and returns the
lease, which the queue then settles. `client`: the records from the watermark up to the
acked one are read, every lease they hold up to it is settled, one write per index segment,
and the watermark moves (one write). Steady state (pushes of ten, 512 B, sent in batches of
ten: one segment each), per message: auto 0.1 writes beyond the queue's lease (the ack, one
per segment); client 0.1 (record) + 0.1 (watermark) beyond the queue's lease and ack;
client-individual 0.1 + 1 (the record's mark).

Whether a pump should follow (`SettleReport.refill`): see `credit.py`. A
`client-individual` ack with prefetch 20 or more decides it from the record its write
returns (at most one small read, of the consumer's owed mark, at a refill point); with less,
or acked out of push order, it counts what the consumer holds (a query of its records). In
`client` mode an
ack pumps only if a pump marked the consumer owed (it left it without credit while messages
may have waited, `feeding.py`); a consumer that keeps up with its producer never is, and its
acks read no index. What makes a message visible always pumps: a nack, a FIFO ack (the next
message of its group), a stale ack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from mqless.domain import names
from mqless.domain.clock import Clock
from mqless.domain.errors import Conflict, InvalidRequest
from mqless.domain.push.ack_ids import AckId
from mqless.domain.push.consumer import Consumer
from mqless.domain.push.credit import (
    Holding,
    counted_from,
    crosses_refill,
    holding_of,
    recent,
    refill_by_record,
)
from mqless.domain.push.feeding import PushPlan
from mqless.domain.queues.receipts import Lease
from mqless.storage.deliveries import DeliveryRecord, DeliveryRecords, watermark
from mqless.storage.push_consumers import PushConsumers

if TYPE_CHECKING:
    from mqless.domain.queues.service import QueueService


class NotInFlight(Conflict):
    """An ack or nack names a delivery this subscription does not hold."""

    code = "not_in_flight"


@dataclass(frozen=True)
class SettleReport:
    settled: int
    stale: int
    refill: bool = True  # the credit freed is worth a pump (`credit.py`)
    # what the consumer holds as the ack counted it, after letting go (prefetch under 20,
    # acks out of push order, a `client` ack that pumps): the pump after it counts no
    # credit again (`Feeder.pump`'s `planned`). It never shows more room than there is but
    # by a push recorded since, and that record took the seq this count names next: the
    # pump's record write is refused, and it counts again (a lost race, `posting.py`)
    counted: PushPlan | None = None


class Settlement:
    """Acks and nacks of what push consumers hold."""

    def __init__(
        self,
        store: PushConsumers,
        records: DeliveryRecords,
        queues: QueueService,
        clock: Clock,
    ) -> None:
        self._store = store
        self._records = records
        self._queues = queues
        self._clock = clock

    def settle(
        self,
        consumer: Consumer,
        *,
        ack: AckId | None = None,
        message_id: str | None = None,
        nack: bool = False,
        delay_seconds: int = 0,
        before_release: Callable[[], None] | None = None,
    ) -> SettleReport:
        """Ack (or nack) one delivery, or in `client` mode every delivery up to it.

        The consumer's record (or watermark) lets go first, then the queue: credit is never
        held for a message the client is done with. A nack without delay calls
        `before_release` (a pump) in between, so the freed credit pulls the next message,
        not the one just refused, which then goes to whoever has credit.
        """
        if consumer.ack == "auto":
            raise InvalidRequest(
                f"subscription {consumer.subscription!r} acknowledges automatically; "
                "subscribe with ack client or client-individual to ack"
            )
        now = self._clock.now_ms()
        counted: dict[str, Holding] = {}  # what the consumer holds, if the ack counted it
        leases, room_opened = self._let_go(consumer, ack, message_id, now, counted)
        if nack and not delay_seconds and before_release is not None:
            before_release()
        done = self._queues.settle_leases(
            consumer.acting_as,
            consumer.queue,
            leases,
            outcome="nack" if nack else "ack",
            delay_seconds=delay_seconds,
        )
        settled = sum(done)
        # a nack makes its message visible, and so does a FIFO ack the next of its group
        refill = (
            nack
            or names.is_fifo(consumer.queue)
            or settled < len(done)  # a lease that had run out: its message is visible
            or room_opened()
        )
        return SettleReport(
            settled=settled,
            stale=len(done) - settled,
            refill=refill,
            counted=PushPlan(consumers=[consumer], holdings=counted) if counted else None,
        )

    def _let_go(
        self,
        consumer: Consumer,
        ack: AckId | None,
        message_id: str | None,
        now: int,
        counted: dict[str, Holding],
    ) -> tuple[list[Lease], Callable[[], bool]]:
        """The consumer's record (or watermark) lets go of the acked delivery (and in
        `client` mode of every one before it); the leases it held, and what tells whether
        the ack opened the consumer's room (asked only when nothing else pumps), which puts
        what the consumer holds in `counted` where it counted that (for the pump after it).
        NotInFlight if it holds none of them."""
        target: tuple[int, int, str] | None
        if ack is not None and ack.seq is not None:
            target = (ack.seq, ack.position, ack.gen)
            what = f"ack id {str(ack)!r}"
        else:
            target = self._find(consumer, message_id or "", now)
            what = f"message {message_id!r}"
        not_held = NotInFlight(
            f"{what} is not in flight on subscription {consumer.subscription!r}: "
            "already acknowledged, or its lease expired and it went back to the queue"
        )
        if target is None:
            raise not_held
        seq, position, gen = target
        if consumer.ack == "client":
            leases, opened = self._settle_up_to(consumer, seq, position, gen, now, counted)
            if not leases:
                raise not_held
            return leases, lambda: opened
        marked = self._records.settle(
            consumer.queue, consumer.records, seq, position, gen=gen, now_ms=now
        )
        if marked is None:
            raise not_held
        refills = partial(self._refills, consumer, marked, position, now, counted)
        return [marked.leases[position]], refills

    def _refills(
        self,
        consumer: Consumer,
        record: DeliveryRecord,
        position: int,
        now: int,
        counted: dict[str, Holding],
    ) -> bool:
        """`client-individual`: whether the ack of `position` (settled in `record`, as the
        ack's write returned it) is worth a pump (`credit.refill_by_record`): no read, one
        small read of the consumer's owed mark, or (acked out of push order) its records."""
        by_record = refill_by_record(consumer, record, position, now)
        if by_record == "count":
            return self._room_opened(consumer, counted, freed=1)
        if by_record == "if_owed":
            stored = self._store.get(consumer.queue, consumer.connection.id, consumer.subscription)
            return stored is not None and record.seq < stored.owed_below
        return by_record == "pump"

    def _room_opened(self, consumer: Consumer, counted: dict[str, Holding], *, freed: int) -> bool:
        """Whether releasing `freed` messages (settled in its records already) took the
        consumer down through its refill threshold; what it holds now goes in `counted`."""
        holding = holding_of(self._records, consumer, counted, self._clock.now_ms())
        return crosses_refill(consumer, holding.in_flight, freed=freed)

    def _find(self, consumer: Consumer, message_id: str, now: int) -> tuple[int, int, str] | None:
        """(seq, position, gen) of a held message, by its id (STOMP 1.0 and 1.1 ack so)."""
        for record in recent(self._records, consumer):
            position = record.position_of(message_id)
            if position is not None and record.holds(position, now, consumer.acked):
                return record.seq, position, record.gen
        return None

    def _settle_up_to(
        self,
        consumer: Consumer,
        seq: int,
        position: int,
        gen: str,
        now: int,
        counted: dict[str, Holding],
    ) -> tuple[list[Lease], bool]:
        """`client` mode: move the watermark to (seq, position); the leases that frees,
        oldest first (none if that message is not held), and whether a pump should
        follow (the ack opened the consumer's room and a pump had marked it owed).

        One read (the consumer's recent records) and one write (the watermark, which
        returns the item as it was: the watermark before, and the owed mark), whether or
        not the consumer's watermark was read before (`Consumer.watermark_read`)."""
        records = recent(self._records, consumer)
        target = next((r for r in records if r.seq == seq), None)
        if target is None or target.gen != gen or not target.holds(position, now, consumer.acked):
            return [], False
        mark = watermark(seq, position)
        # with the watermark not read, positions up to it may be among these: they are
        # left out below, once the write has returned it
        candidates = [
            (watermark(record.seq, p), record.leases[p])
            for record in reversed(records)
            for p in record.held(now, consumer.acked)
        ]
        after = sum(1 for w, _ in candidates if w > mark)
        # whether this ack may take the consumer through its refill threshold (it frees at
        # most every candidate up to the mark): only then may it take the owed mark off
        may_open = crosses_refill(consumer, after, freed=len(candidates) - after)
        advanced = self._store.advance(consumer, mark, take_owed=may_open)
        if advanced is None:  # a racing ack moved the watermark to here or past it
            if not consumer.watermark_read:
                return [], False
            return [lease for w, lease in candidates if w <= mark], may_open
        before, owed = advanced
        leases = [lease for w, lease in candidates if before < w <= mark]
        if may_open and owed:  # a pump follows: what the consumer holds past the mark
            counted[consumer.tag] = counted_from(records, replace(consumer, acked=mark), now)
        return leases, may_open and owed
