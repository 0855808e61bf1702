"""Queue push consumers: WebSocket subscriptions that a queue's messages are leased to.

`QueueConsumers` is the entry point the WebSocket transport and the dispatch function call:
membership here (subscribe, look up, leave), feeding in `feeding.py` (pumps, and what the
dispatch function appends already leased), one push in `posting.py`, acks and nacks in
`settling.py`, credit in `credit.py`, ack ids in `ack_ids.py`.

Kept in the destinations table, one partition per queue (`pk = QC#<queue>`): the consumer
item (`storage/push_consumers.py`) and, in a client ack mode, one delivery record per push
holding the push's leases in order (`storage/deliveries.py`). Auto mode keeps none.

Credit is `prefetch` minus what the consumer holds: the unsettled positions of its records
whose leases have not ended, past its cumulative watermark. A pump reads that once per
consumer, leases up to the credit under the consumer's name with an ordinary receive, and
writes one record per push before posting it, conditional on its seq being new.

The push domain renders nothing: it makes `Push` values (`pushes.py`) and hands them to the
`Renderer` it was given (the WebSocket transport's `render`), then posts what came back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from mqless.domain.access.principals import Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest
from mqless.domain.push.ack_ids import AckId
from mqless.domain.push.consumer import ACK_MODES, CONSUMER_SECONDS, MAX_PREFETCH, Consumer
from mqless.domain.push.credit import recent
from mqless.domain.push.feeding import PUMP_BUDGET, Feeder, PushPlan
from mqless.domain.push.posting import Poster, PumpReport
from mqless.domain.push.pushes import Pusher, Renderer
from mqless.domain.push.settling import Settlement, SettleReport
from mqless.domain.queues.receipts import Lease
from mqless.storage.deliveries import DeliveryRecords
from mqless.storage.dynamo import Item
from mqless.storage.push_consumers import PushConsumers

if TYPE_CHECKING:
    from mqless.domain.queues.service import QueueService

EPOCH_BYTES: Final = 4


class QueueConsumers:
    """Push consumers of queues: who they are, what they hold, and feeding them."""

    def __init__(
        self,
        store: PushConsumers,
        records: DeliveryRecords,
        queues: QueueService,
        pusher: Pusher,
        render: Renderer,
        clock: Clock,
        *,
        budget: int = PUMP_BUDGET,
    ) -> None:
        self._store = store
        self._records = records
        self._queues = queues
        self._clock = clock
        poster = Poster(records, queues, pusher, render, clock)
        self._feeder = Feeder(store, records, queues, poster, clock, budget=budget)
        self._settlement = Settlement(store, records, queues, clock)

    # ---- membership ---------------------------------------------------------------------

    def add(self, principal: Principal, consumer: Consumer) -> Consumer:
        """Register a consumer (replacing one of the same connection and subscription);
        the consumer as stored (with the epoch it was given)."""
        if consumer.ack not in ACK_MODES:
            raise InvalidRequest("ack must be auto, client or client-individual")
        if not 1 <= consumer.prefetch <= MAX_PREFETCH:
            raise InvalidRequest(f"prefetch must be 1 to {MAX_PREFETCH}")
        self._queues.open_for_receive(principal, consumer.queue)
        now = self._clock.now_ms()
        subscribed = replace(
            consumer,
            principal=principal.id,
            credential_expires_at=principal.expires_at,
            # a subscription id used again starts from no delivery records
            epoch=os.urandom(EPOCH_BYTES).hex(),
        )
        return self._store.put(subscribed, expires_at=now // 1000 + CONSUMER_SECONDS)

    def get(self, queue: str, connection_id: str, subscription: str) -> Consumer | None:
        return self._store.get(queue, connection_id, subscription)

    def consumers(self, queue: str, *, consistent: bool = True) -> list[Consumer]:
        """The queue's push consumers (eventually consistent reads bill half)."""
        return self._store.of_queue(queue, consistent=consistent)

    def remove(self, consumer: Consumer) -> int:
        """Drop a consumer and give back what it held at once; returns how many.

        Its delivery records stay until their TTL: a new subscription of the same id gets
        a new epoch, and nothing reads the old ones again."""
        held: list[Lease] = []
        if consumer.ack != "auto":
            now = self._clock.now_ms()
            for record in recent(self._records, consumer):
                held += [record.leases[p] for p in record.held(now, consumer.acked)]
        if held:
            self._queues.settle_leases(consumer.acting_as, consumer.queue, held, outcome="nack")
        self._store.delete(consumer)
        return len(held)

    # ---- feeding (`feeding.py`) -----------------------------------------------------------

    def plan_push(self, queue: str) -> PushPlan | None:
        """The consumers read before the dispatch function appends, and one to lease what it
        appends to (`Feeder.plan_push`)."""
        return self._feeder.plan_push(queue)

    def push_leased(self, plan: PushPlan, images: Mapping[tuple[str, str], Item]) -> PumpReport:
        """Push what the append leased to the plan's consumer (`Feeder.push_leased`)."""
        return self._feeder.push_leased(plan, images)

    def pump(
        self,
        queue: str,
        *,
        indexed: frozenset[int] | None = None,
        refill: bool = False,
        planned: PushPlan | None = None,
    ) -> PumpReport:
        """Lease and push messages to the queue's consumers while they have credit
        (`Feeder.pump`)."""
        return self._feeder.pump(queue, indexed=indexed, refill=refill, planned=planned)

    # ---- settling (`settling.py`) ---------------------------------------------------------

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
        """Ack (or nack) one delivery, or in `client` mode every delivery up to it
        (`Settlement.settle`)."""
        return self._settlement.settle(
            consumer,
            ack=ack,
            message_id=message_id,
            nack=nack,
            delay_seconds=delay_seconds,
            before_release=before_release,
        )
