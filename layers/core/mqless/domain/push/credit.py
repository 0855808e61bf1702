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
steps of half the prefetch from 20 on, at most 50 (prefetch 100: one push of 50, not fifty
of one, nor five of ten: a pump costs the same few requests whatever it refills).

A `client` ack knows that from its own write (the watermark's item carries the owed mark,
`settling.py`). A `client-individual` ack writes only its push's record, and counting what
the consumer holds would read all its records (a strongly consistent query of up to 16, per
ack): instead the record it gets back answers (`refill_by_record`). Messages are numbered in
the order they were pushed to the consumer (a record keeps its first one's, `base`), and
every `refill_step`-th is a refill point: acks in push order reach one per step, as they
would take a full consumer through its threshold. An ack that is not at a refill point
pumps nothing. One at a refill point pumps if its push left the consumer with no credit
(`full`) and holds no other refill point, or else if a pump marked the consumer owed
(`owed_below`, one small read) while its record was live. An ack that finds an earlier
message of its push still held (acks out of push order) counts the consumer's holding as
before. A pump that leaves a consumer without credit raises the mark over the records whose
refill points would not pump by themselves (`Holding.uncovered`), then counts the consumer
again, so that an ack that read the mark before it was raised is not missed; a consumer
refilled a step at a time is covered once, by its first fill, and its refills need no mark.

This holds for prefetch 20 or more (`by_record`); below, every ack is a refill point and
counts the consumer's holding as before. What it gives up: a client that acks the
messages of each push in order but holds their last ones (across a refill point, every
time) is not refilled by those acks: its acks of them, the sweeper's pump (every minute)
or their leases running out feed it. And a full push's refill point pumps even after the
backlog is gone (a pump that finds nothing visible: the consumers and the index read), as
today's threshold pumped once on the way down from full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from mqless.domain.push.consumer import Consumer
from mqless.storage.deliveries import DeliveryRecord, DeliveryRecords, seq_of


@dataclass
class Holding:
    """What a client-mode consumer holds, as one pump counts it: read once, then kept up to
    date with what the pump itself leases and records."""

    next_seq: int  # the seq of the next record
    in_flight: int
    low: int  # the lowest seq that may hold anything (the next record's `lo`)
    lost: bool = False  # another pump wrote a record first: this one counts and feeds again
    starved: bool = False  # it had no credit when this pump would have leased for it
    next_base: int = 0  # the number of the next record's first message (`DeliveryRecord.base`)
    uncovered: int = 0  # client-individual: 1 + the highest seq of a live record `needs_mark`
    recalled: bool = False  # kept by the container, not read (`remembered_credit.py`)
    counted_at: int = 0  # recalled: when the records it follows from were read (ms)


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
    found = holdings[consumer.tag] = counted_from(recent(records, consumer), consumer, now_ms)
    return found


def counted_from(read: Sequence[DeliveryRecord], consumer: Consumer, now_ms: int) -> Holding:
    """What a client-mode consumer holds, from its records as `recent` read them (newest
    first) and its watermark."""
    next_seq = read[0].seq + 1 if read else 0
    if consumer.acked >= 0:  # the acked record exists: never write below it
        next_seq = max(next_seq, seq_of(consumer.acked) + 1)
    live = [r for r in read if r.held(now_ms, consumer.acked)]
    return Holding(
        next_seq=next_seq,
        in_flight=sum(len(r.held(now_ms, consumer.acked)) for r in live),
        low=min((r.seq for r in live), default=next_seq),
        next_base=read[0].base + len(read[0].leases) if read else 0,
        uncovered=max((r.seq + 1 for r in live if needs_mark(r, consumer.prefetch)), default=0),
    )


REFILL_MOST: Final = 50  # what one client-individual push carries (`posting.PUSH_LIMIT`)
BY_RECORD_PREFETCH: Final = 20  # client-individual from this prefetch up: `by_record`


def refill_step(prefetch: int) -> int:
    """How much room an ack must open in a consumer's credit to be worth a pump: half its
    prefetch, at most one push's worth. A pump costs the same few requests whatever it
    refills (the consumers, their credit, a look at the index, the record, the post), so
    fewer, larger refills cost less a message; the consumer still holds half its prefetch
    when one starts. Below `BY_RECORD_PREFETCH`, every ack of a full consumer pumps (1)."""
    return 1 if prefetch < BY_RECORD_PREFETCH else min(REFILL_MOST, prefetch // 2)


def crosses_refill(consumer: Consumer, holding: int, *, freed: int) -> bool:
    """Whether a consumer that holds `holding` after releasing `freed` went down through
    its refill threshold (from holding more than prefetch - step to no more than that)."""
    threshold = consumer.prefetch - refill_step(consumer.prefetch)
    return holding <= threshold < holding + freed


def by_record(consumer: Consumer) -> bool:
    """Whether a consumer's acks decide their refill from their records: client-individual
    with a prefetch of 20 or more. Below, every ack of a saturated consumer pumps (a step
    of 1), and after its backlog is gone a full push's ack would pump for nothing, where
    counting what it holds reads a few small records: it counts, as ever."""
    return consumer.ack == "client-individual" and consumer.prefetch >= BY_RECORD_PREFETCH


def refill_points(record: DeliveryRecord, step: int) -> int:
    """How many of a push's messages are refill points (every `step`-th pushed)."""
    return (record.base + len(record.leases)) // step - record.base // step


def needs_mark(record: DeliveryRecord, prefetch: int) -> bool:
    """Whether an ack at a refill point of this push pumps only if the consumer is marked
    owed: all but a push that left the consumer full and has at most one refill point
    (that one pumps by itself)."""
    return not record.full or refill_points(record, refill_step(prefetch)) > 1


Refill = Literal["pump", "no", "if_owed", "count"]


def refill_by_record(
    consumer: Consumer, record: DeliveryRecord, position: int, now_ms: int
) -> Refill:
    """What a client-individual ack of `position` tells from its record, as its write
    returned it (the position settled): pump, no pump, pump if the consumer is marked owed
    below this record's seq, or count the consumer's holding (acked out of push order:
    an earlier message still held, or a later one settled already, whose ack may have been
    the refill point's while earlier ones were held, so that this one ends the run)."""
    if not by_record(consumer) or any(p < position for p in record.held(now_ms)):
        return "count"
    if any(p > position for p in record.settled):
        return "count"
    if (record.base + position + 1) % refill_step(consumer.prefetch):
        return "no"
    return "if_owed" if needs_mark(record, consumer.prefetch) else "pump"


def still_counted(
    counted_for: Sequence[Consumer], holdings: Mapping[str, Holding], consumers: Sequence[Consumer]
) -> dict[str, Holding]:
    """The holdings counted for `counted_for` (the dispatch function's plan) that still
    stand for these consumers: the same subscription (not one made again since, with a new
    epoch), no record race lost (the winner's record is counted again) and read, not
    recalled (a recalled count may say less room than there is: enough for a plan, not to
    decide that a consumer is full)."""
    epochs = {c.tag: c.epoch for c in counted_for}
    return {
        c.tag: holding
        for c in consumers
        if (holding := holdings.get(c.tag)) is not None
        and not holding.lost
        and not holding.recalled
        and epochs.get(c.tag) == c.epoch
    }


def all_full(consumers: Sequence[Consumer], holdings: Mapping[str, Holding]) -> bool:
    """Whether every consumer is known to have no credit: each acknowledges by hand and
    its holding, as counted already, fills its prefetch."""
    return all(
        c.ack != "auto" and (h := holdings.get(c.tag)) is not None and h.in_flight >= c.prefetch
        for c in consumers
    )


def starved_client(consumers: Sequence[Consumer], holdings: dict[str, Holding]) -> list[Consumer]:
    """The `client` consumers this pump left without credit, to be marked owed."""
    starved = [
        c
        for c in consumers
        if c.ack == "client" and (h := holdings.get(c.tag)) is not None and h.starved
    ]
    for consumer in starved:
        holdings[consumer.tag].starved = False
    return starved


def uncovered(
    consumers: Sequence[Consumer], holdings: dict[str, Holding]
) -> list[tuple[Consumer, int]]:
    """The `client-individual` consumers this pump left without credit whose owed mark
    must rise (above), each with the seq it must rise to. One whose record another
    pump wrote first is fed again (`Feeder._refed_after_lost_race`), or, lost twice, left to
    that pump."""
    found: list[tuple[Consumer, int]] = []
    for consumer in consumers:
        holding = holdings.get(consumer.tag)
        if not by_record(consumer) or holding is None or not holding.starved:
            continue
        holding.starved = False
        if not holding.lost and holding.uncovered > consumer.owed_below:
            found.append((consumer, holding.uncovered))
    return found
