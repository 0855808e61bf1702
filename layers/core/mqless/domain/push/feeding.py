"""Feeding queue push consumers: leasing messages up to each one's credit and pushing them.

`pump(queue)` runs when messages arrive (the dispatch function, on the stream), when a
consumer subscribes, acks, nacks or leaves, and on the sweeper's schedule (a lease that
runs out or a delay that ends makes no stream record). It first asks the queue's index
whether anything is visible (one read), unless an ack's freed credit asked for it: that
consumer has credit, and its receive reads the same segments from the floor (a consumer
holding a prefetch of 100 has some ten segments leased there, pages of reads for each look,
once, not twice). Then it serves consumers in rounds of at most 10 messages so competing
consumers share a busy queue (a lone one of a standard queue: 50, a push's worth, in one
look), and pushes each round in as few posts as the 32 KB frame allows (`posting.py`). It
reads each consumer's credit once (`credit.py`) and leases under the consumer's name with an
ordinary receive: leases, receive counts, dead-lettering, FIFO groups are as for HTTP's.

A `client` or `client-individual` consumer a pump leaves without credit while messages may
have waited is marked owed (`_owe`): the ack that opens its room pumps. A consumer that
keeps up with its producer never is, and its acks read no index.

The dispatch function feeds what it indexes without a pump where it can: it reads the
consumers and one's credit first and appends the new messages leased to that consumer
(`plan_push`, `push_leased`: the append is the lease), and pumps only if anything it
appended is left.

A consumer whose post fails has its messages given back; the others are fed all the same.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from mqless.domain import models, names
from mqless.domain.clock import Clock
from mqless.domain.errors import QueueNotFound
from mqless.domain.messages import Delivery
from mqless.domain.push.consumer import Consumer
from mqless.domain.push.credit import (
    Holding,
    all_full,
    holding_of,
    starved_client,
    still_counted,
    uncovered,
)
from mqless.domain.push.posting import PUSH_LIMIT, Outbox, Poster, PumpReport
from mqless.domain.push.pushes import FRAME_BYTES
from mqless.domain.push.remembered_credit import RememberedCredit
from mqless.domain.queues.indexing import PushLease
from mqless.domain.queues.leases import MAX_PUSH_TAKE, Taken
from mqless.domain.queues.receipts import Lease
from mqless.storage.deliveries import DeliveryRecords
from mqless.storage.dynamo import Item
from mqless.storage.push_consumers import PushConsumers
from mqless.storage.segments import new_token

if TYPE_CHECKING:
    from mqless.domain.queues.service import QueueService

PUMP_BUDGET: Final = 500  # messages one pump pushes before it hands over (see `more`)


@dataclass
class PushPlan:
    """What the dispatch function read of a queue's push consumers before it appends: the
    consumers (eventually consistent) and the credit it counted, and the consumer it
    leases the new messages to as it appends them, if one has credit. The pump after the
    append counts no credit again (`Feeder.pump`), nor after an ack that counted it."""

    consumers: list[Consumer]
    holdings: dict[str, Holding]
    consumer: Consumer | None = None
    lease: PushLease | None = None


class Feeder:
    """Leases messages for a queue's push consumers and pushes them."""

    def __init__(
        self,
        store: PushConsumers,
        records: DeliveryRecords,
        queues: QueueService,
        poster: Poster,
        clock: Clock,
        *,
        budget: int = PUMP_BUDGET,
    ) -> None:
        self._store = store
        self._records = records
        self._queues = queues
        self._poster = poster
        self._clock = clock
        self._budget = budget
        self._unseen: set[str] = set()  # queues whose last pump here read no consumer
        self._credit = RememberedCredit()  # what this container's pushes left consumers

    # ---- feeding what the dispatch function appends leased ---------------------------------

    def plan_push(self, queue: str) -> PushPlan | None:
        """Before the dispatch function appends a standard queue's new messages: its push
        consumers, and one to lease them to in the append itself (`indexing.PushLease`),
        chosen as a pump's round would choose (at random among those with credit, no
        selector), and how many it may take; None for a FIFO queue, one with priorities
        (their pumps read as ever) or one whose last pump here read no consumer (no read:
        docs/storage-engine.md, "A queue nobody is pushed").

        The consumers are read eventually consistent (half the units; the pump after the
        append reads them strongly and feeds one that subscribed since, in any container):
        one seen with an old watermark gets less credit (never more), one gone has its
        messages given back when its post fails."""
        if names.is_fifo(queue) or queue in self._unseen:
            return None
        try:
            config = self._queues.config_of(queue)
        except QueueNotFound:
            return None
        if config.max_priority is not None:
            return None  # a pump leases from the highest lane first, not the append
        now = self._clock.now_ms()
        consumers = [
            c
            for c in self._store.of_queue(queue, consistent=False)
            if not c.credential_expired(now // 1000)
        ]
        plan = PushPlan(consumers=consumers, holdings={})
        self._choose(plan, config.visibility_timeout * 1000, now)
        return plan

    def _choose(self, plan: PushPlan, lease_ms: int, now: int) -> None:
        """Choose the plan's consumer (at random among those with credit and no selector:
        a selector's consumer is fed by the pump, which reads what it selects) and what it
        may take: a round's worth (`MAX_BATCH`) where consumers share the queue, as a
        pump's rounds share it; a lone consumer as much as one push carries (the pump
        after the append would lease the rest for it, a look and a lease write more)."""
        candidates = [c for c in plan.consumers if c.selector is None]
        random.shuffle(candidates)
        most = models.MAX_BATCH if len(plan.consumers) > 1 else PUSH_LIMIT
        for consumer in candidates:
            credit = most
            if consumer.ack != "auto":
                holding = self._credit.recall(consumer, now) or holding_of(
                    self._records, consumer, plan.holdings, now
                )
                plan.holdings[consumer.tag] = holding
                room = consumer.prefetch - holding.in_flight
                if holding.recalled:  # it may show less room than there is: never fill it
                    room -= 1
                credit = min(credit, room)
            if credit <= 0:
                continue
            plan.consumer = consumer
            plan.lease = PushLease(credit=credit, until=now + lease_ms, token=new_token())
            return

    def push_leased(self, plan: PushPlan, images: Mapping[tuple[str, str], Item]) -> PumpReport:
        """Push what the append leased to the plan's consumer (`plan_push`), as a pump's
        flush does: its record first, then the post; given back if the post fails."""
        consumer, report = plan.consumer, PumpReport()
        if consumer is None or plan.lease is None:
            return report
        taken = [
            Taken(
                lease=Lease(consumer.queue, shard, "s", str(seq), slot, plan.lease.token),
                ref=ref.ref,
                count=ref.count + 1,
            )
            for ref, shard, seq, slot in plan.lease.leased
        ]
        if not taken:
            return report
        deliveries = self._queues.open_leased(consumer.queue, taken, images)
        report.leased = len(deliveries)
        holding = plan.holdings.get(consumer.tag)
        if holding is not None:
            holding.in_flight += len(deliveries)
        outbox = Outbox(consumer)
        outbox.add(deliveries)
        kept = None  # what this push left the consumer holding, once it went out
        try:
            self._poster.flush(outbox, plan.holdings, report)
            # counted again if its record lost a race (`Poster.flush`)
            holding = plan.holdings.get(consumer.tag, holding)
            kept = None if consumer.connection.id in report.gone else holding
        finally:
            self._credit.keep(consumer, kept, self._clock.now_ms())
        return report

    # ---- pumping -------------------------------------------------------------------------

    def pump(
        self,
        queue: str,
        *,
        indexed: frozenset[int] | None = None,
        refill: bool = False,
        planned: PushPlan | None = None,
    ) -> PumpReport:
        """Lease and push messages to the queue's consumers while they have credit.

        `indexed`: the dispatch function's pump of what it just indexed in these shards (a
        `client` consumer left without credit is marked owed only if something is left
        visible there; what else is visible, the pump that made it so marks for); `refill`:
        an ack's freed credit asked for it (no look first, above); `planned`: credit the
        dispatch function (or an ack) counted. A consumer whose post fails gets its
        messages given back and is skipped for the rest of this pump (the others are
        still fed, those included); the first such failure is raised after."""
        report = PumpReport()
        self._credit.forget(queue)  # its pushes write records this container did not count
        consumers, holdings = self._live_consumers(queue, planned)
        if not consumers or not (refill or self._has_work(queue, consumers, holdings)):
            return report
        random.shuffle(consumers)  # no consumer is always first in line
        failures: list[Exception] = []
        refed: set[str] = set()  # consumers fed again after a lost record race
        while True:
            undeliverable, failed = report.undeliverable, len(failures)
            outboxes: dict[str, Outbox] = {}
            drained = False
            try:
                drained = self._feed(list(consumers), outboxes, holdings, report, failures)
            finally:
                for outbox in outboxes.values():
                    self._poster.flush_guarded(outbox, holdings, report, failures)
            # Feed again now when this round freed something: a message dead-lettered as
            # undeliverable (its consumer's credit, its FIFO group), a failed post's given
            # back, credit an ack freed while this pump marked its consumer owed. Each such
            # round removes a message or a consumer or takes an ack's credit (bounded).
            lost = any(h.lost for h in holdings.values())
            refreshed = (
                self._owe(queue, consumers, holdings, indexed, refed) if lost or not drained else {}
            )
            if refreshed:
                consumers = [refreshed.get(c.tag, c) for c in consumers]
                continue
            if report.more or (report.undeliverable == undeliverable and len(failures) == failed):
                break
        if failures:
            raise failures[0]
        return report

    def _live_consumers(
        self, queue: str, planned: PushPlan | None
    ) -> tuple[list[Consumer], dict[str, Holding]]:
        """The queue's consumers (strongly consistent) but those whose key or JWT expired
        (they get nothing more: their next frame closes them), and the credit `planned`
        counted for them that still stands."""
        now_s = self._clock.now_ms() // 1000
        consumers = [c for c in self._store.of_queue(queue) if not c.credential_expired(now_s)]
        if consumers:
            self._unseen.discard(queue)  # planned for again from the next batch
        elif len(self._unseen) < 10_000:  # beyond that, their plans read as before
            self._unseen.add(queue)
        if planned is None:
            return consumers, {}
        return consumers, still_counted(planned.consumers, planned.holdings, consumers)

    def _has_work(
        self, queue: str, consumers: Sequence[Consumer], holdings: Mapping[str, Holding]
    ) -> bool:
        """Whether a pump (not a refill) has anything to do: every consumer known full (to
        be marked owed: nothing could be leased, so no look at the index), or something
        visible to lease (`plan_push` counted `holdings` for what follows an append)."""
        return all_full(consumers, holdings) or self._queues.has_visible(queue)

    def _feed(
        self,
        active: list[Consumer],
        outboxes: dict[str, Outbox],
        holdings: dict[str, Holding],
        report: PumpReport,
        failures: list[Exception],
    ) -> bool:
        """Lease for consumers in rounds until the queue is drained or the budget is spent
        (a lone consumer of a standard queue: 50 a round); whether it was found drained."""
        lone = len(active) == 1 and not names.is_fifo(active[0].queue)  # FIFO: group heads
        most = MAX_PUSH_TAKE if lone else models.MAX_BATCH
        while active:
            hungry: list[Consumer] = []
            for consumer in active:
                if consumer.connection.id in report.gone | report.failed:
                    continue
                want = min(most, self._budget - report.leased)
                if want <= 0:
                    report.more = True
                    return False
                outbox = outboxes.setdefault(consumer.tag, Outbox(consumer))
                leased = self._lease_for(consumer, min(want, outbox.room), holdings)
                if leased is None and consumer.selector is None:
                    return True  # nothing visible: the queue is drained for now
                if leased is None:  # nothing this selector takes; others may take the rest
                    continue
                report.leased += len(leased)
                outbox.add(leased)
                # a frame's worth (no point waiting), or as much as one push may hold
                if outbox.size >= FRAME_BYTES or outbox.room == 0:
                    self._poster.flush_guarded(outbox, holdings, report, failures)
                # a short round may have stopped at the end of what one look at the index
                # read, not at the end of the queue: a consumer that got some asks again
                if leased:
                    hungry.append(consumer)
            active = hungry
        return False

    def _owe(
        self,
        queue: str,
        consumers: Sequence[Consumer],
        holdings: dict[str, Holding],
        indexed: frozenset[int] | None,
        refed: set[str],
    ) -> dict[str, Consumer]:
        """Mark the consumers this pump found without credit owed, as messages may wait for
        them; those whose credit an ack freed meanwhile, as they are now (to be fed at once).

        `client`: an ack that opens a consumer's room pumps only if it finds the mark
        (`settle`), so that a consumer that keeps up with its producer (each push acked
        before the next message arrives) costs no pump after its acks. The mark and the
        ack's watermark are one item: the ack's write either sees the mark (and pumps), or
        came first, and then this write returns its watermark, and this pump feeds again.

        `client-individual`: the mark (`owed_below`) is raised only over records whose acks
        would not pump by themselves (`credit.py`); once raised, the consumer is counted
        again and fed if an ack freed credit meanwhile (that ack may have read the mark
        before it was raised).
        """
        refreshed = self._refed_after_lost_race(consumers, holdings, refed)
        starved = starved_client(consumers, holdings)
        individual = uncovered(consumers, holdings)
        # a consumer that keeps up is filled to its credit by the pump of what was just
        # indexed: one strongly consistent look at those shards, not a mark and a pump
        if not (starved or individual) or (
            indexed is not None and not self._queues.left_visible(queue, indexed)
        ):
            return refreshed
        for consumer in starved:
            marked = self._store.mark_owed(consumer)
            if marked is None:
                continue  # unsubscribed meanwhile
            if marked.acked > consumer.acked:
                refreshed[consumer.tag] = replace(consumer, acked=marked.acked, owed=True)
                holdings.pop(consumer.tag, None)  # counted again from the new watermark
        for consumer, below in individual:
            raised = self._store.raise_owed(consumer, below)
            if raised is not None:  # None: gone, or a racing pump raised it as high
                refreshed[consumer.tag] = raised
                holdings.pop(consumer.tag, None)  # counted again: an ack may have missed it
        return refreshed

    @staticmethod
    def _refed_after_lost_race(
        consumers: Sequence[Consumer], holdings: dict[str, Holding], refed: set[str]
    ) -> dict[str, Consumer]:
        """The consumers, in either client mode, for which another pump wrote a delivery
        record first, so that this one gave its leases back: to be counted again from the
        records (the winner's included) and fed what is left, once.

        The winner cannot be left to feed them: it may have looked at the queue before
        what this pump leased was appended (a subscribe's pump racing the dispatch
        function's pump of a message published just after), and then nothing but the
        sweeper would push it. A second loss is left as any consumer without credit."""
        refreshed: dict[str, Consumer] = {}
        for consumer in consumers:
            holding = holdings.get(consumer.tag)
            if holding is None or not holding.lost or consumer.tag in refed:
                continue
            refed.add(consumer.tag)
            holdings.pop(consumer.tag)
            refreshed[consumer.tag] = consumer
        return refreshed

    def _lease_for(
        self, consumer: Consumer, want: int, holdings: dict[str, Holding]
    ) -> list[Delivery] | None:
        """Lease up to `want` messages for one consumer; None when the queue had none."""
        holding: Holding | None = None
        credit = want
        if consumer.ack != "auto":
            holding = holding_of(self._records, consumer, holdings, self._clock.now_ms())
            if holding.lost:
                return []
            credit = min(want, consumer.prefetch - holding.in_flight)
            if credit <= 0:
                holding.starved = True
                return []
        deliveries = self._queues.receive(
            consumer.acting_as,
            consumer.queue,
            max_messages=credit,
            owner=consumer.tag,
            oldest_first=True,
            selector=consumer.selector,
        )
        if not deliveries:
            return None
        if holding is not None:
            holding.in_flight += len(deliveries)
        return deliveries
