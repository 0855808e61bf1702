"""One push to one consumer: its delivery record, its rendered messages, the post, and
undoing it when the post fails.

In a client ack mode the push's delivery record is written first, conditional on its seq
being new, so its ack ids are good before the client sees them: two pumps racing for one
consumer can never both count the same credit (the loser hands its messages back,
uncounted). A record whose leases ran out holds nothing, so a consumer that sat on its
messages is fed again once they went back to the queue. Auto mode keeps no record: its
leases are acked once posted.

A pushed lease lasts the queue's visibility timeout, as for HTTP receivers: a consumer
that holds a message longer sees it redelivered, and its late ack is refused.

A message that a consumer cannot be sent at all (a line break in a header, for a STOMP
1.0 client; over API Gateway's 128 KB) is dead-lettered with the reason, its receive
count unchanged: its neighbours go out as ever, and it cannot come back to the same
consumer again and again. A consumer whose post fails has its messages given back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools import Logger

from mqless.domain import names
from mqless.domain.clock import Clock
from mqless.domain.messages import Delivery
from mqless.domain.push.ack_ids import AckId
from mqless.domain.push.consumer import CONSUMER_SECONDS, MAX_PREFETCH, Consumer
from mqless.domain.push.credit import Holding, by_record, holding_of, needs_mark
from mqless.domain.push.pushes import Push, Pusher, Rendered, Renderer
from mqless.domain.queues.receipts import Lease
from mqless.observability import metrics
from mqless.storage.deliveries import DeliveryRecord, DeliveryRecords, id_tag

if TYPE_CHECKING:
    from mqless.domain.queues.service import QueueService

logger = Logger(service="mqless", child=True)

PUSH_LIMIT: Final = 50  # client-individual: messages per push (its record stays < 1 KB)


@dataclass
class PumpReport:
    leased: int = 0
    pushed: int = 0
    gone: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # connections whose post raised
    undeliverable: int = 0  # dead-lettered: a consumer could not be sent them
    more: bool = False  # stopped at the budget with consumers still hungry


class Outbox:
    """A consumer's leased messages waiting to be pushed together."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._items: list[Delivery] = []
        self.size = 0
        # client-individual: every ack rewrites the push's record, so a push stays small
        # enough for its record (with every mark) to bill 1 unit
        self.limit = PUSH_LIMIT if consumer.ack == "client-individual" else MAX_PREFETCH

    @property
    def room(self) -> int:
        return self.limit - len(self._items)

    def add(self, items: Sequence[Delivery]) -> None:
        self._items.extend(items)
        self.size += sum(len(i.body) for i in items)

    def take(self) -> list[Delivery]:
        items, self._items, self.size = self._items, [], 0
        return items


class Poster:
    """Records, renders and posts outboxes; gives back what did not reach its client."""

    def __init__(
        self,
        records: DeliveryRecords,
        queues: QueueService,
        pusher: Pusher,
        render: Renderer,
        clock: Clock,
    ) -> None:
        self._records = records
        self._queues = queues
        self._pusher = pusher
        self._render = render
        self._clock = clock

    def flush_guarded(
        self,
        outbox: Outbox,
        holdings: dict[str, Holding],
        report: PumpReport,
        failures: list[Exception],
    ) -> None:
        """`flush`, with a failure kept to this consumer (its messages were given back)."""
        try:
            self.flush(outbox, holdings, report)
        except Exception as exc:
            consumer = outbox.consumer
            logger.exception(
                "pushing to a consumer failed; its messages went back to the queue",
                extra={"queue": consumer.queue, "connection_id": consumer.connection.id},
            )
            report.failed.add(consumer.connection.id)
            failures.append(exc)

    def flush(self, outbox: Outbox, holdings: dict[str, Holding], report: PumpReport) -> None:
        """Record and push what an outbox holds, in as few posts as the frame size allows.

        In a client ack mode the push's delivery record is written first, so its ack ids
        are good before the client sees them; if another pump took its seq, the messages
        go back uncounted. A message this consumer cannot be sent (a header its STOMP
        version cannot carry, a message over the WebSocket limit) is dead-lettered with the
        reason: giving it back would hand it to this consumer again and again, and its
        neighbours go out anyway.
        """
        consumer, leased = outbox.consumer, outbox.take()
        if not leased:
            return
        principal = consumer.acting_as
        leases = [self._queues.lease_of(consumer.queue, d.receipt) for d in leased]
        if consumer.connection.id in report.gone | report.failed:
            self._queues.settle_leases(principal, consumer.queue, leases, outcome="hand_back")
            self._forget(consumer, holdings, len(leased))
            return
        holding = None
        if consumer.ack != "auto":
            holding = holding_of(self._records, consumer, holdings, self._clock.now_ms())
        rendered, record = self._recorded(consumer, holding, leased, leases)
        if holding is not None and record is None:
            kept = self._room_after_lost_race(consumer, holdings, len(leased))
            if kept < len(leased):  # no room for these: back now, uncounted
                self._queues.settle_leases(
                    principal, consumer.queue, leases[kept:], outcome="hand_back"
                )
                leased, leases = leased[:kept], leases[:kept]
            if kept:
                rendered, record = self._recorded(consumer, holdings[consumer.tag], leased, leases)
        if holding is not None and record is None:  # no room left: counted again, fed again
            if leases:
                self._queues.settle_leases(principal, consumer.queue, leases, outcome="hand_back")
            return
        self._post(consumer, leased, leases, rendered, record, report)

    def _recorded(
        self,
        consumer: Consumer,
        holding: Holding | None,
        leased: Sequence[Delivery],
        leases: Sequence[Lease],
    ) -> tuple[Rendered, DeliveryRecord | None]:
        """A push rendered with its ack ids, and (in a client ack mode) its delivery record
        written under the consumer's next seq; None for the record if another pump wrote
        that seq first."""
        seq, gen = (0, "") if holding is None else (holding.next_seq, os.urandom(4).hex())
        rendered = self._render(
            consumer.connection,
            [
                _push(
                    consumer,
                    d,
                    None if holding is None else AckId(consumer.subscription, seq, i, gen),
                )
                for i, d in enumerate(leased)
            ],
        )
        if holding is None:
            return rendered, None
        return rendered, self._record(consumer, holding, seq, gen, leased, leases, rendered.refused)

    def _room_after_lost_race(
        self, consumer: Consumer, holdings: dict[str, Holding], count: int
    ) -> int:
        """After another pump wrote the record seq this one counted on: how many of the
        `count` messages this pump leased the consumer, counted again (the winner's record
        included, strongly consistent), still has room for. Those are recorded under the
        next seq (its holding is the new count, with them in it) instead of going back to
        the queue to be leased again (a write per lease given back, then a look, a lease
        and a read of the bodies); only the rest go back. A FIFO queue's push is kept whole
        or not at all (its leases are its groups' heads, as leased together). With no room
        the lost count stays: they all go back, and the consumer is counted and fed again.
        With some, the new count is marked lost as well: the consumer, left full while
        messages went back, is counted again and marked owed (`Feeder._owe`)."""
        lost = holdings.pop(consumer.tag)
        fresh = holding_of(self._records, consumer, holdings, self._clock.now_ms())
        room = max(0, consumer.prefetch - fresh.in_flight)
        kept = count if room >= count else 0 if names.is_fifo(consumer.queue) else room
        if not kept:
            holdings[consumer.tag] = lost
            return 0
        fresh.in_flight += kept
        fresh.lost = kept < count
        return kept

    def _post(
        self,
        consumer: Consumer,
        leased: Sequence[Delivery],
        leases: Sequence[Lease],
        rendered: Rendered,
        record: DeliveryRecord | None,
        report: PumpReport,
    ) -> None:
        """Post a rendered push (its record written, if any); what was refused is
        dead-lettered, what did not reach the client given back, auto mode's acked."""
        sent = [i for i in range(len(leased)) if i not in rendered.refused]
        try:
            delivered = all(
                self._pusher.post(consumer.connection.id, text.encode())
                for text in rendered.messages
            )
        except Exception:
            self._give_back(consumer, [leases[i] for i in sent], record)
            raise
        finally:  # the neighbours first: setting a message aside never holds them back
            for index, reason in rendered.refused.items():
                self._undeliverable(consumer, leased[index], reason, report)
        if not delivered:
            self._give_back(consumer, [leases[i] for i in sent], record)
            report.gone.add(consumer.connection.id)
            return
        if consumer.ack == "auto" and sent:
            self._queues.settle_leases(
                consumer.acting_as, consumer.queue, [leases[i] for i in sent], outcome="ack"
            )
        report.pushed += len(sent)

    def _record(
        self,
        consumer: Consumer,
        holding: Holding,
        seq: int,
        gen: str,
        leased: Sequence[Delivery],
        leases: Sequence[Lease],
        refused: dict[int, str],
    ) -> DeliveryRecord | None:
        """Write a push's delivery record; None if another pump wrote that seq first."""
        lease_seconds = self._queues.config_of(consumer.queue).visibility_timeout
        until = self._clock.now_ms() + lease_seconds * 1000
        by_id = consumer.connection.protocol == "stomp" and consumer.connection.version != "1.2"
        individual = by_record(consumer)  # its acks read `base` and `full`
        record = DeliveryRecord(
            seq=seq,
            gen=gen,
            until=until,
            leases=tuple(leases),
            id_tags=b"".join(id_tag(d.message_id) for d in leased) if by_id else b"",
            settled=frozenset(refused),  # set aside below: never held
            low=holding.low,
            base=holding.next_base if individual else 0,
            full=individual and holding.in_flight - len(refused) >= consumer.prefetch,
        )
        expires_at = until // 1000 + CONSUMER_SECONDS
        if not self._records.put(consumer.queue, consumer.records, record, expires_at=expires_at):
            # its leases go back: this pump counts the consumer again, the winner's record
            # included, and feeds it what it gave back (`feeding.py`)
            holding.lost = holding.starved = True
            holding.in_flight -= len(leased)
            return None
        holding.next_seq = seq + 1
        holding.next_base += len(leases)
        holding.in_flight -= len(refused)
        if individual and needs_mark(record, consumer.prefetch):
            holding.uncovered = seq + 1
        return record

    def _forget(self, consumer: Consumer, holdings: dict[str, Holding], count: int) -> None:
        """Take back the credit of leases given back before they were recorded."""
        holding = holdings.get(consumer.tag)
        if holding is not None:
            holding.in_flight -= count

    def _undeliverable(
        self, consumer: Consumer, delivery: Delivery, reason: str, report: PumpReport
    ) -> None:
        """Dead-letter a leased message this consumer cannot be sent (its record, if any,
        never counted it).

        If that fails (DynamoDB erred), the message stays leased: it goes back to the
        queue when the lease runs out and is set aside then.
        """
        where = {
            "queue": consumer.queue,
            "message_id": delivery.message_id,
            "connection_id": consumer.connection.id,
            "subscription": consumer.subscription,
            "reason": reason,
        }
        try:
            moved = self._queues.dead_letter_undeliverable(
                consumer.acting_as, consumer.queue, delivery.receipt, reason
            )
        except Exception:
            logger.exception("dead-lettering an undeliverable message failed", extra=where)
            return
        metrics.count("Undeliverable", queue=consumer.queue)
        logger.warning(
            "a message its push consumer cannot be sent was dead-lettered",
            extra={**where, "moved": moved},  # False: its lease was gone already
        )
        if moved:
            report.undeliverable += 1

    def _give_back(
        self, consumer: Consumer, leases: Sequence[Lease], record: DeliveryRecord | None
    ) -> None:
        """Undo a push that did not reach the client (or may not have): its messages go back
        to the queue, counted as a delivery as a nack would, and its record frees them."""
        if leases:
            self._queues.settle_leases(consumer.acting_as, consumer.queue, leases, outcome="nack")
        if record is not None:
            positions = [p for p in range(len(record.leases)) if p not in record.settled]
            if positions:
                self._records.release(consumer.queue, consumer.records, record, positions)


def _push(consumer: Consumer, delivery: Delivery, ack: AckId | None) -> Push:
    """A leased message as pushed to `consumer`, under the destination it subscribed to."""
    if consumer.destination.startswith("/topic/"):
        destination = f"/topic/{delivery.origin or consumer.destination[7:]}"
    elif consumer.destination.startswith(("/temp-queue/", "/remote-temp-queue/")):
        destination = consumer.destination  # as subscribed: the client knows no real name
    else:
        destination = f"/queue/{consumer.queue}"
    return Push(
        subscription=consumer.subscription,
        destination=destination,
        message_id=delivery.message_id,
        body=delivery.body,
        binary=delivery.binary,
        ack=None if ack is None else str(ack),
        attributes=delivery.attributes,
        content_type=delivery.content_type,
        correlation_id=delivery.correlation_id,
        reply_to=delivery.reply_to,
        sent_at=delivery.sent_at,
        receive_count=delivery.receive_count,
        group_id=delivery.group_id,
        priority=delivery.priority,
    )
