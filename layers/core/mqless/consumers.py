"""Queue push consumers: WebSocket subscriptions that a queue's messages are leased to.

Kept in the destinations table, one partition per queue (`pk = QC#<queue>`):
- consumer  `sk = C#<tag>`: connection, subscription, how the client speaks (protocol,
  STOMP version), ack mode, `prefetch`, principal. Written once, on subscribe.
- slot      `sk = S#<tag>#<n>` for n < prefetch: one message pushed in a client ack
  mode and not yet settled (receipt, message id, lease end, delivery order, and `gen`,
  a random token that the ack id carries). Auto mode keeps none.
`<tag>` is `<connection>#<len>:<subscription>`: the length keeps subscription `a`'s items
out of a prefix query for `a#b`'s.

Credit is the number of free slots. A pump reads the consumer's slots, leases up to that
many messages under the consumer's name with an ordinary receive (so leases, receive
counts, dead-lettering and FIFO groups behave as for HTTP receivers) and claims a slot
per message with a conditional put: two pumps racing for one consumer can never fill
more than `prefetch` slots (the loser gives its message back). A slot whose lease ran
out is free again, so a consumer that sat on its messages is fed again once they went
back to the queue. Settling deletes the slot, conditioned on its `gen`, so a late ack
can never settle the slot's next occupant. Steady state, one message costs four writes:
lease, slot, delete, slot delete; auto mode two (lease, delete).

`pump(queue)` runs when messages arrive (the dispatch function, on the stream), when a
consumer subscribes, acks, nacks or leaves, and on the sweeper's schedule (a lease that
runs out or a delay that ends makes no stream record). It first asks the queue's index
whether anything is visible (one read), then serves consumers in rounds of at most 10
messages so competing consumers share a busy queue, and pushes each round in as few
posts as the 32 KB frame allows.

A pushed lease lasts the queue's visibility timeout, as for HTTP receivers: a consumer
that holds a message longer sees it redelivered, and its late ack is refused.

A message that a consumer cannot be sent at all (a line break in a header, for a STOMP
1.0 client; over API Gateway's 128 KB) is dead-lettered with the reason, its receive
count unchanged: its neighbours go out as ever, and it cannot come back to the same
consumer again and again. A consumer whose post fails has its messages given back and
the others are fed all the same.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from mqless import models
from mqless.clock import Clock
from mqless.dynamo import (
    Item,
    batch_write,
    from_wire,
    is_condition_failure,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.errors import Conflict, InvalidRequest
from mqless.ids import MAX_CLIENT_ID, is_ascii_digits
from mqless.live import Pusher
from mqless.models import Delivery
from mqless.observability import metrics
from mqless.outbound import FRAME_BYTES, Connection, Push, render
from mqless.principals import Action, Grant, Principal
from mqless.queues import QueueService

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(service="mqless", child=True)

AckMode = Literal["auto", "client", "client-individual"]
ACK_MODES: Final = ("auto", "client", "client-individual")
DEFAULT_PREFETCH: Final = 10
MAX_PREFETCH: Final = 1000
PUMP_BUDGET: Final = 500  # messages one pump pushes before it hands over (see `more`)
CONSUMER_SECONDS: Final = 3 * 60 * 60  # outlives API Gateway's 2-hour connection limit


class NotInFlight(Conflict):
    """An ack or nack names a delivery this subscription does not hold."""

    code = "not_in_flight"


def partition(queue: str) -> str:
    return f"QC#{queue}"


def tag(connection_id: str, subscription: str) -> str:
    return f"{connection_id}#{len(subscription)}:{subscription}"


TOPIC_ACK: Final = "t"  # the ack id prefix of a live topic message (nothing to settle)


@dataclass(frozen=True)
class AckId:
    """What a client acks a pushed message with: `<slot>.<gen>:<subscription>`."""

    subscription: str
    slot: int | None = None  # None: a topic message (`t:<subscription>`)
    gen: str = ""

    def __str__(self) -> str:
        if self.slot is None:
            return f"{TOPIC_ACK}:{self.subscription}"
        return f"{self.slot}.{self.gen}:{self.subscription}"


def parse_ack_id(text: str) -> AckId:
    """The ack id a MESSAGE carried; InvalidRequest if it is not one this server gave out."""
    head, sep, subscription = text.partition(":")
    if len(subscription) > MAX_CLIENT_ID:  # no subscription id is longer
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    if sep and subscription and head == TOPIC_ACK:
        return AckId(subscription)
    slot, dot, gen = head.partition(".")
    if (
        not sep
        or not subscription
        or not dot
        or not is_ascii_digits(slot)
        or len(slot) > 4
        or len(gen) != 8
        or not all(c in "0123456789abcdef" for c in gen)
    ):
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    return AckId(subscription, int(slot), gen)


@dataclass(frozen=True)
class Consumer:
    queue: str
    connection: Connection
    subscription: str
    ack: AckMode
    prefetch: int
    principal: str
    destination: str  # as the client named it: /queue/NAME, or /topic/PATTERN (durable)
    credential_expires_at: int | None = None
    """When the key or JWT its connection authenticated with expires: no pushes after."""

    @property
    def tag(self) -> str:
        return tag(self.connection.id, self.subscription)

    @property
    def key(self) -> dict[str, str]:
        return {"pk": partition(self.queue), "sk": f"C#{self.tag}"}

    @property
    def acting_as(self) -> Principal:
        """Who the consumer's leases and acks are done as: whoever subscribed, allowed to
        receive from this queue (checked when it subscribed) and nothing else."""
        receive = Grant.model_construct(pattern=self.queue, actions=(Action.RECEIVE,))
        return Principal(id=self.principal, kind="consumer", grants=(receive,))

    def slot_key(self, slot: int) -> dict[str, str]:
        return {"pk": partition(self.queue), "sk": f"S#{self.tag}#{slot:04d}"}

    def credential_expired(self, now_s: int) -> bool:
        expires_at = self.credential_expires_at
        return expires_at is not None and expires_at <= now_s


@dataclass(frozen=True)
class _Leased:
    """A message leased for a consumer, with the ack id it goes out with (client modes)."""

    delivery: Delivery
    ack: AckId | None


class _Outbox:
    """A consumer's leased messages waiting to be pushed together."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._items: list[_Leased] = []
        self.size = 0

    def add(self, items: Sequence[_Leased]) -> None:
        self._items.extend(items)
        self.size += sum(len(i.delivery.body) for i in items)

    def take(self) -> list[_Leased]:
        items, self._items, self.size = self._items, [], 0
        return items


@dataclass
class PumpReport:
    leased: int = 0
    pushed: int = 0
    gone: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # connections whose post raised
    undeliverable: int = 0  # dead-lettered: a consumer could not be sent them
    more: bool = False  # stopped at the budget with consumers still hungry


@dataclass(frozen=True)
class SettleReport:
    settled: int
    stale: int


class QueueConsumers:
    """Push consumers of queues: who they are, what they hold, and feeding them."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table_name: str,
        queues: QueueService,
        pusher: Pusher,
        clock: Clock,
        *,
        budget: int = PUMP_BUDGET,
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._queues = queues
        self._pusher = pusher
        self._clock = clock
        self._budget = budget

    # ---- membership ---------------------------------------------------------------------

    def add(self, principal: Principal, consumer: Consumer) -> None:
        """Register a consumer (replacing one of the same connection and subscription)."""
        if consumer.ack not in ACK_MODES:
            raise InvalidRequest("ack must be auto, client or client-individual")
        if not 1 <= consumer.prefetch <= MAX_PREFETCH:
            raise InvalidRequest(f"prefetch must be 1 to {MAX_PREFETCH}")
        self._queues.open_for_receive(principal, consumer.queue)
        now = self._clock.now_ms()
        record: Item = {
            **consumer.key,
            "connection": consumer.connection.id,
            "protocol": consumer.connection.protocol,
            "version": consumer.connection.version,
            "subscription": consumer.subscription,
            "ack": consumer.ack,
            "prefetch": consumer.prefetch,
            "principal": principal.id,
            "destination": consumer.destination,
            "expires_at": now // 1000 + CONSUMER_SECONDS,
        }
        if principal.expires_at is not None:
            record["credential_expires_at"] = principal.expires_at
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(record))

    def get(self, queue: str, connection_id: str, subscription: str) -> Consumer | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(
                    {"pk": partition(queue), "sk": f"C#{tag(connection_id, subscription)}"}
                ),
                ConsistentRead=True,
            )
        return _consumer(queue, from_wire(found["Item"])) if "Item" in found else None

    def consumers(self, queue: str) -> list[Consumer]:
        return [
            _consumer(queue, item)
            for item in partition_items(self._db, self._table, partition(queue), prefix="C#")
        ]

    def remove(self, consumer: Consumer) -> int:
        """Drop a consumer and give back what it held at once; returns how many."""
        slots = self._slots(consumer)
        now = self._clock.now_ms()
        held = [s for s in slots if int(s["until"]) > now]
        self._release(consumer, [str(s["receipt"]) for s in held])
        batch_write(
            self._db,
            self._table,
            [
                {"DeleteRequest": {"Key": to_wire({"pk": k["pk"], "sk": k["sk"]})}}
                for k in [consumer.key, *slots]
            ],
        )
        return len(held)

    # ---- feeding -------------------------------------------------------------------------

    def pump(self, queue: str) -> PumpReport:
        """Lease and push messages to the queue's consumers while they have credit.

        A consumer whose post fails (API Gateway erred) gets its messages given back and
        is skipped for the rest of this pump; the others are still fed, those messages
        included. The first such failure is raised once the others have been fed.
        """
        report = PumpReport()
        now_s = self._clock.now_ms() // 1000
        # a consumer whose key or JWT expired gets nothing more (its next frame closes it)
        consumers = [c for c in self.consumers(queue) if not c.credential_expired(now_s)]
        if not consumers or not self._queues.has_visible(queue):
            return report
        random.shuffle(consumers)  # no consumer is always first in line
        failures: list[Exception] = []
        while True:
            undeliverable, failed = report.undeliverable, len(failures)
            outboxes: dict[str, _Outbox] = {}
            try:
                self._feed(list(consumers), outboxes, report, failures)
            finally:
                for outbox in outboxes.values():
                    self._flush_guarded(outbox, report, failures)
            # Feed again now, not at the next pump, when this round freed something: a
            # message dead-lettered as undeliverable (its consumer's credit, its FIFO
            # group), or the messages of a consumer whose post failed (given back for the
            # others to take). Each such round removes a message or a consumer, and the
            # budget bounds them all.
            if report.more or (report.undeliverable == undeliverable and len(failures) == failed):
                break
        if failures:
            raise failures[0]
        return report

    def _feed(
        self,
        active: list[Consumer],
        outboxes: dict[str, _Outbox],
        report: PumpReport,
        failures: list[Exception],
    ) -> None:
        """Lease for consumers in rounds until the queue is drained or the budget is spent."""
        while active:
            hungry: list[Consumer] = []
            for consumer in active:
                if consumer.connection.id in report.gone | report.failed:
                    continue
                want = min(models.MAX_BATCH, self._budget - report.leased)
                if want <= 0:
                    report.more = True
                    return
                leased = self._lease_for(consumer, want)
                if leased is None:  # nothing visible: the queue is drained for now
                    return
                report.leased += len(leased)
                outbox = outboxes.setdefault(consumer.tag, _Outbox(consumer))
                outbox.add(leased)
                if outbox.size >= FRAME_BYTES:  # a frame's worth: no point waiting
                    self._flush_guarded(outbox, report, failures)
                if len(leased) == want:
                    hungry.append(consumer)
            active = hungry

    def _flush_guarded(
        self, outbox: _Outbox, report: PumpReport, failures: list[Exception]
    ) -> None:
        """`_flush`, with a failure kept to this consumer (its messages were given back)."""
        try:
            self._flush(outbox, report)
        except Exception as exc:
            consumer = outbox.consumer
            logger.exception(
                "pushing to a consumer failed; its messages went back to the queue",
                extra={"queue": consumer.queue, "connection_id": consumer.connection.id},
            )
            report.failed.add(consumer.connection.id)
            failures.append(exc)

    def _lease_for(self, consumer: Consumer, want: int) -> list[_Leased] | None:
        """Lease up to `want` messages for one consumer; None when the queue had none."""
        principal = consumer.acting_as
        free: list[int] = []
        if consumer.ack == "auto":
            credit = want
        else:
            now = self._clock.now_ms()
            busy = {int(s["slot"]) for s in self._slots(consumer) if int(s["until"]) > now}
            free = [n for n in range(consumer.prefetch) if n not in busy]
            credit = min(want, len(free))
            if credit == 0:
                return []
        deliveries = self._queues.receive(
            principal,
            consumer.queue,
            max_messages=credit,
            owner=consumer.tag,
            oldest_first=True,
        )
        if not deliveries:
            return None
        if consumer.ack == "auto":
            return [_Leased(d, None) for d in deliveries]
        return self._claim(consumer, deliveries, free)

    def _flush(self, outbox: _Outbox, report: PumpReport) -> None:
        """Push what an outbox holds in as few posts as the frame size allows.

        A message this consumer cannot be sent (a header its STOMP version cannot carry, a
        message over the WebSocket limit) is dead-lettered with the reason: giving it back
        would hand it to this consumer again and again, and its neighbours go out anyway.
        """
        consumer, leased = outbox.consumer, outbox.take()
        if not leased:
            return
        if consumer.connection.id in report.gone | report.failed:
            self._give_back(consumer, leased)
            return
        rendered = render(
            consumer.connection, [self._push(consumer, i.delivery, i.ack) for i in leased]
        )
        sendable = [item for index, item in enumerate(leased) if index not in rendered.refused]
        try:
            delivered = all(
                self._pusher.post(consumer.connection.id, text.encode())
                for text in rendered.messages
            )
        except Exception:
            self._give_back(consumer, sendable)
            raise
        finally:  # the neighbours first: setting a message aside never holds them back
            for index, reason in rendered.refused.items():
                self._undeliverable(consumer, leased[index], reason, report)
        if not delivered:
            self._give_back(consumer, sendable)
            report.gone.add(consumer.connection.id)
            return
        if consumer.ack == "auto" and sendable:
            principal = consumer.acting_as
            self._settle_receipts(principal, consumer.queue, [i.delivery.receipt for i in sendable])
        report.pushed += len(sendable)

    def _undeliverable(
        self, consumer: Consumer, item: _Leased, reason: str, report: PumpReport
    ) -> None:
        """Dead-letter a leased message this consumer cannot be sent, and free its slot.

        If that fails (DynamoDB erred), the message stays leased: it goes back to the
        queue when the lease runs out and is set aside then.
        """
        where = {
            "queue": consumer.queue,
            "message_id": item.delivery.message_id,
            "connection_id": consumer.connection.id,
            "subscription": consumer.subscription,
            "reason": reason,
        }
        try:
            moved = self._queues.dead_letter_undeliverable(
                consumer.acting_as, consumer.queue, item.delivery.receipt, reason
            )
            if item.ack is not None and item.ack.slot is not None:
                self._delete_slot(consumer, item.ack.slot, item.ack.gen)
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

    def _claim(
        self, consumer: Consumer, deliveries: Sequence[Delivery], free: list[int]
    ) -> list[_Leased]:
        """Take a free slot per delivery; a delivery that loses its slot to a racing pump
        goes back to the queue at once."""
        now = self._clock.now_ms()
        until = now + self._queues.visibility_of(consumer.queue) * 1000
        claimed: list[_Leased] = []
        lost: list[str] = []
        for index, (delivery, slot) in enumerate(zip(deliveries, free, strict=False)):
            gen = os.urandom(4).hex()
            try:
                with translated_errors():
                    self._db.put_item(
                        TableName=self._table,
                        Item=to_wire(
                            {
                                **consumer.slot_key(slot),
                                "slot": slot,
                                "gen": gen,
                                "order": f"{now:013d}{index:03d}",
                                "receipt": delivery.receipt,
                                "message_id": delivery.message_id,
                                "until": until,
                                "expires_at": until // 1000 + CONSUMER_SECONDS,
                            }
                        ),
                        ConditionExpression="attribute_not_exists(pk) OR #until <= :now",
                        ExpressionAttributeNames={"#until": "until"},
                        ExpressionAttributeValues=to_wire({":now": now}),
                    )
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                lost.append(delivery.receipt)
                continue
            claimed.append(_Leased(delivery, AckId(consumer.subscription, slot, gen)))
        if lost:
            self._release(consumer, lost)
        return claimed

    def _push(self, consumer: Consumer, delivery: Delivery, ack: AckId | None) -> Push:
        if consumer.destination.startswith("/topic/"):
            destination = f"/topic/{delivery.origin or consumer.destination[7:]}"
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
        )

    def _give_back(self, consumer: Consumer, leased: Sequence[_Leased]) -> None:
        """Undo deliveries that never reached the client."""
        self._release(consumer, [item.delivery.receipt for item in leased])
        for item in leased:
            if item.ack is not None and item.ack.slot is not None:
                self._delete_slot(consumer, item.ack.slot, item.ack.gen)

    # ---- settling ------------------------------------------------------------------------

    def settle(
        self,
        consumer: Consumer,
        *,
        ack: AckId | None = None,
        message_id: str | None = None,
        nack: bool = False,
        delay_seconds: int = 0,
    ) -> SettleReport:
        """Ack (or nack) one delivery, or in `client` mode every delivery up to it."""
        if consumer.ack == "auto":
            raise InvalidRequest(
                f"subscription {consumer.subscription!r} acknowledges automatically; "
                "subscribe with ack client or client-individual to ack"
            )
        slots = self._slots(consumer)
        if ack is not None:
            matches = [s for s in slots if int(s["slot"]) == ack.slot and s["gen"] == ack.gen]
            what = f"ack id {str(ack)!r}"
        else:
            matches = [s for s in slots if s["message_id"] == message_id]
            what = f"message {message_id!r}"
        now = self._clock.now_ms()
        if not matches or int(matches[0]["until"]) <= now:
            raise NotInFlight(
                f"{what} is not in flight on subscription {consumer.subscription!r}: "
                "already acknowledged, or its lease expired and it went back to the queue"
            )
        target = matches[0]
        if consumer.ack == "client":  # cumulative: this one and all delivered before it
            items = [
                s
                for s in slots
                if str(s["order"]) <= str(target["order"]) and int(s["until"]) > now
            ]
        else:
            items = [target]
        principal = consumer.acting_as
        settled, stale = self._settle_receipts(
            principal,
            consumer.queue,
            [str(i["receipt"]) for i in items],
            nack=nack,
            delay_seconds=delay_seconds,
        )
        for item in items:
            self._delete_slot(consumer, int(item["slot"]), str(item["gen"]))
        return SettleReport(settled=settled, stale=stale)

    def _settle_receipts(
        self,
        principal: Principal,
        queue: str,
        receipts: Sequence[str],
        *,
        nack: bool = False,
        delay_seconds: int = 0,
    ) -> tuple[int, int]:
        settled = stale = 0
        for start in range(0, len(receipts), models.MAX_BATCH):
            chunk = list(receipts[start : start + models.MAX_BATCH])
            if nack:
                done, failed = self._queues.nack(principal, queue, chunk, delay_seconds)
            else:
                done, failed = self._queues.ack(principal, queue, chunk)
            settled += len(done)
            stale += len(failed)
        return settled, stale

    def _release(self, consumer: Consumer, receipts: Sequence[str]) -> None:
        if receipts:
            principal = consumer.acting_as
            self._settle_receipts(principal, consumer.queue, receipts, nack=True)

    # ---- storage -------------------------------------------------------------------------

    def _slots(self, consumer: Consumer) -> list[Item]:
        return list(
            partition_items(
                self._db, self._table, partition(consumer.queue), prefix=f"S#{consumer.tag}#"
            )
        )

    def _delete_slot(self, consumer: Consumer, slot: int, gen: str) -> None:
        """Free a slot unless it already holds another delivery."""
        try:
            with translated_errors():
                self._db.delete_item(
                    TableName=self._table,
                    Key=to_wire(consumer.slot_key(slot)),
                    ConditionExpression="gen = :gen",
                    ExpressionAttributeValues=to_wire({":gen": gen}),
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise


def _consumer(queue: str, item: Item) -> Consumer:
    return Consumer(
        queue=queue,
        connection=Connection.stored(str(item["connection"]), item),
        subscription=str(item["subscription"]),
        ack=_ack_mode(str(item["ack"])),
        prefetch=int(item["prefetch"]),
        principal=str(item["principal"]),
        destination=str(item.get("destination") or f"/queue/{queue}"),
        credential_expires_at=(
            None
            if item.get("credential_expires_at") is None
            else int(item["credential_expires_at"])
        ),
    )


def _ack_mode(value: str) -> AckMode:
    if value == "client":
        return "client"
    if value == "client-individual":
        return "client-individual"
    return "auto"
