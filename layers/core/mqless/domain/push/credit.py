"""A push consumer's credit: `prefetch` minus what it holds, and when freed credit is worth
a pump.

What a consumer holds is the unsettled positions of its delivery records whose leases have
not ended, past its cumulative watermark: a read of the few newest records, strongly
consistent (`storage/deliveries.py`). A pump reads that once per consumer (`Holding`) and
keeps it up to date with what it leases and records itself.

An ack frees credit, but a pump after it is worth its reads (the consumers, their credit,
the queue's index from the floor) only when that credit was what held messages back. A
consumer with room left was given everything visible when it was last fed, and whatever
became visible since (a new message indexed, a nack, a lease or delay that ran out) brings
its own pump. So an ack pumps when it takes the consumer down through `refill_step` below
its prefetch: from full with prefetch under 20 (every ack of a saturated consumer), in
steps of 10 with prefetch 100 (one push of 10, not ten of one).
"""

from __future__ import annotations

from dataclasses import dataclass

from mqless.domain import models
from mqless.domain.push.consumer import Consumer
from mqless.storage.deliveries import DeliveryRecord, DeliveryRecords, seq_of


@dataclass
class Holding:
    """What a client-mode consumer holds, as one pump counts it: read once, then kept up to
    date with what the pump itself leases and records."""

    next_seq: int  # the seq of the next record
    in_flight: int
    low: int  # the lowest seq that may hold anything (the next record's `lo`)
    lost: bool = False  # another pump wrote a record first: it feeds this consumer now
    starved: bool = False  # it had no credit when this pump would have leased for it


def recent(records: DeliveryRecords, consumer: Consumer) -> list[DeliveryRecord]:
    """The consumer's records that may still hold something, newest first."""
    return records.recent(consumer.queue, consumer.records, floor=seq_of(consumer.acked))


def holding_of(
    records: DeliveryRecords, consumer: Consumer, holdings: dict[str, Holding], now_ms: int
) -> Holding:
    """What a client-mode consumer holds: its records read once per pump (`holdings`)."""
    found = holdings.get(consumer.tag)
    if found is not None:
        return found
    read = recent(records, consumer)
    next_seq = read[0].seq + 1 if read else 0
    if consumer.acked >= 0:  # the acked record exists: never write below it
        next_seq = max(next_seq, seq_of(consumer.acked) + 1)
    live = [r for r in read if r.held(now_ms, consumer.acked)]
    found = holdings[consumer.tag] = Holding(
        next_seq=next_seq,
        in_flight=sum(len(r.held(now_ms, consumer.acked)) for r in live),
        low=min((r.seq for r in live), default=next_seq),
    )
    return found


def refill_step(prefetch: int) -> int:
    """How much room an ack must open in a consumer's credit to be worth a pump."""
    return max(1, min(models.MAX_BATCH, prefetch // 10))


def crosses_refill(consumer: Consumer, holding: int, *, freed: int) -> bool:
    """Whether a consumer that holds `holding` after releasing `freed` went down through
    its refill threshold (from holding more than prefetch - step to no more than that)."""
    threshold = consumer.prefetch - refill_step(consumer.prefetch)
    return holding <= threshold < holding + freed
