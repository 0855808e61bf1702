"""What the dispatch function's last push to a consumer left it holding, kept by the
container for its next stream batch: a count of the consumer's credit that needs no read.

Before it appends a stream batch, the dispatch function counts the credit of the consumer
it leases the batch to (`Feeder.plan_push`): a strongly consistent query of its delivery
records, one per stream batch. Under a burst, batches of a few messages come every few tens
of milliseconds, and each counted again what the last one had just counted and pushed.

A container that pushed to a consumer keeps the count as its push left it (`Holding`: what
it held, the next seq, the next record's `lo` and `base`). That count never says less is
held than is, whatever other containers do meanwhile:
- acks, nacks, releases and ended leases only take from what a consumer holds;
- only a push adds to it, and every push writes the consumer's next record, conditional on
  its seq being new (`deliveries.py`). A push by another container takes the seq this
  count names next, so this container's next record write fails: the race a pump loses,
  handled as ever (the messages go back uncounted; the pump after the append counts the
  consumer from its records and feeds it again), and the count is dropped.
So credit counted from it is never more than the consumer's: the prefetch holds. Its
record's `lo` is never above the lowest live record (no record written since could be
live but this container's own), and its `base` follows the last record exactly.

It is used only while it shows room for more than a round (`MAX_BATCH`). A plan made from
it leases at most one less than that room (and no more than a plan from a read: a read shows
at least as much): its push never marks the consumer full (`DeliveryRecord.full`, which
makes an ack pump) unless a read would, and what it could not lease the pump after the
append leases, counting from the records. Below that room, or `RECALL_MS` after the
records were last read, the plan reads them, as does any pump
(`Feeder.pump` drops the queue's counts, as its pushes write records too; a pump after the
append never takes a remembered count, `credit.still_counted`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from mqless.domain import models
from mqless.domain.push.consumer import Consumer
from mqless.domain.push.credit import Holding

RECALL_MS: Final = 5_000  # a count is used this long after the records were read
KEPT: Final = 1_000  # queues whose counts a container keeps (beyond that, all are read)


class RememberedCredit:
    """Per container: each consumer's holding as this container's last push left it."""

    def __init__(self) -> None:
        # queue -> (consumer tag, epoch) -> (when its records were read, the holding)
        self._kept: dict[str, dict[tuple[str, str], tuple[int, Holding]]] = {}

    def recall(self, consumer: Consumer, now_ms: int) -> Holding | None:
        """The kept holding of `consumer` (a copy, marked `recalled`), if it is recent and
        shows room for more than a round (`MAX_BATCH`); None: count from the records."""
        kept = self._kept.get(consumer.queue, {}).get((consumer.tag, consumer.epoch))
        if kept is None:
            return None
        counted_at, holding = kept
        if now_ms - counted_at > RECALL_MS:
            return None
        if consumer.prefetch - holding.in_flight <= models.MAX_BATCH:
            return None
        return replace(holding, recalled=True, counted_at=counted_at)

    def keep(self, consumer: Consumer, holding: Holding | None, now_ms: int) -> None:
        """Keep `holding` as a push just left it (its record written and its post made);
        None, or a lost record race, drops what was kept."""
        key = (consumer.tag, consumer.epoch)
        if holding is None or holding.lost:
            self._kept.get(consumer.queue, {}).pop(key, None)
            return
        if len(self._kept) >= KEPT and consumer.queue not in self._kept:
            self._kept.clear()
        counted_at = holding.counted_at if holding.recalled else now_ms
        kept = replace(holding, recalled=False, starved=False, counted_at=counted_at)
        self._kept.setdefault(consumer.queue, {})[key] = (counted_at, kept)

    def forget(self, queue: str) -> None:
        """Drop the queue's counts (a pump is about to push and write records)."""
        self._kept.pop(queue, None)
