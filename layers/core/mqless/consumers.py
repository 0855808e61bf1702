"""Queue push consumers: WebSocket subscriptions that a queue's messages are leased to.

Kept in the destinations table, one partition per queue (`pk = QC#<queue>`):
- consumer  `sk = C#<tag>`: connection, subscription, how the client speaks (protocol,
  STOMP version), ack mode, `prefetch`, principal, `inflight` (deliveries not yet
  settled) and `seq` (the number of the last delivery).
- delivery  `sk = D#<tag>#<seq:012d>`: receipt, message id and lease end of one message
  pushed in a client ack mode; settling it deletes it. Auto mode keeps none.
`<tag>` is `<connection>#<len>:<subscription>`: the length keeps subscription `a`'s
deliveries out of a prefix query for `a#b`'s.

`pump(queue)` is how messages reach consumers. For each consumer with credit it reserves
credit (a conditional add to `inflight`, so concurrent pumps never exceed prefetch),
leases up to that many messages under the consumer's name with an ordinary receive (so
leases, receive counts, dead-lettering and FIFO groups behave as for HTTP receivers),
records the deliveries and pushes them in as few posts as the 32 KB frame allows.
Consumers are served in rounds of at most 10 messages, so competing consumers share a
busy queue. A pump runs when messages arrive (the dispatch function, on the stream),
when a consumer subscribes, acks, nacks or leaves, and on the sweeper's schedule (a
lease that runs out or a delay that ends makes no stream record).

A pushed lease lasts the queue's visibility timeout, as for HTTP receivers: a consumer
that holds a message longer sees it redelivered, and its late ack is refused as stale.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal

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
from mqless.live import Pusher
from mqless.models import Delivery
from mqless.outbound import Connection, Push, render
from mqless.principals import Principal
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


def ack_id(subscription: str, seq: int) -> str:
    """What a client acks a delivery with: `<seq>:<subscription>`."""
    return f"{seq}:{subscription}"


def parse_ack_id(text: str) -> tuple[str, int]:
    """`<seq>:<subscription>` -> (subscription, seq); InvalidRequest if it is not one."""
    seq, sep, subscription = text.partition(":")
    if not sep or not subscription or not seq.isdigit() or len(seq) > 12:
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    return subscription, int(seq)


@dataclass(frozen=True)
class Consumer:
    queue: str
    connection: Connection
    subscription: str
    ack: AckMode
    prefetch: int
    principal: str
    destination: str  # as the client named it: /queue/NAME, or /topic/PATTERN (durable)
    inflight: int = 0

    @property
    def tag(self) -> str:
        return tag(self.connection.id, self.subscription)

    @property
    def key(self) -> dict[str, str]:
        return {"pk": partition(self.queue), "sk": f"C#{self.tag}"}


@dataclass
class PumpReport:
    pushed: int = 0
    gone: set[str] = field(default_factory=set)
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
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(
                    {
                        **consumer.key,
                        "connection": consumer.connection.id,
                        "protocol": consumer.connection.protocol,
                        "version": consumer.connection.version,
                        "subscription": consumer.subscription,
                        "ack": consumer.ack,
                        "prefetch": consumer.prefetch,
                        "principal": principal.id,
                        "destination": consumer.destination,
                        "inflight": 0,
                        "seq": 0,
                        "expires_at": now // 1000 + CONSUMER_SECONDS,
                    }
                ),
            )

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
        deliveries = self._deliveries(consumer)
        self._release(consumer, [str(d["receipt"]) for d in deliveries])
        self._delete([consumer.key] + [_key(d) for d in deliveries])
        return len(deliveries)

    # ---- feeding -------------------------------------------------------------------------

    def pump(self, queue: str) -> PumpReport:
        """Lease and push messages to the queue's consumers while they have credit."""
        report = PumpReport()
        active = self.consumers(queue)
        random.shuffle(active)  # no consumer is always first in line
        while active:
            hungry: list[Consumer] = []
            for consumer in active:
                want = min(models.MAX_BATCH, self._budget - report.pushed)
                if want <= 0:
                    report.more = True
                    return report
                served = self._serve(consumer, want, report)
                if served is None:  # nothing visible: the queue is drained for now
                    return report
                if served == want:
                    hungry.append(consumer)
            active = hungry
        return report

    def _serve(self, consumer: Consumer, want: int, report: PumpReport) -> int | None:
        """Push up to `want` messages to one consumer; None when the queue had none."""
        principal = Principal(id=consumer.principal, kind="connection")
        if consumer.ack == "auto":
            credit, first_seq = want, 0
        else:
            credit, first_seq = self._reserve(consumer, want)
            if credit == 0:
                return 0
        try:
            deliveries = self._queues.receive(
                principal,
                consumer.queue,
                max_messages=credit,
                owner=consumer.tag,
                oldest_first=True,
            )
        except Exception:
            self._return_credit(consumer, credit)
            raise
        if consumer.ack != "auto" and len(deliveries) < credit:
            self._return_credit(consumer, credit - len(deliveries))
        if not deliveries:
            return None
        seqs = list(range(first_seq, first_seq + len(deliveries)))
        if consumer.ack != "auto":
            self._record(consumer, deliveries, seqs)
        pushes = [self._push(consumer, d, s) for d, s in zip(deliveries, seqs, strict=True)]
        receipts = [d.receipt for d in deliveries]
        try:
            delivered = all(
                self._pusher.post(consumer.connection.id, text.encode())
                for text in render(consumer.connection, pushes)
            )
        except Exception:
            self._give_back(consumer, receipts, seqs)
            raise
        if not delivered:
            self._give_back(consumer, receipts, seqs)
            report.gone.add(consumer.connection.id)
            return 0
        if consumer.ack == "auto":
            self._settle_receipts(principal, consumer.queue, receipts, nack=False)
        report.pushed += len(deliveries)
        return len(deliveries)

    def _push(self, consumer: Consumer, delivery: Delivery, seq: int) -> Push:
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
            ack=None if consumer.ack == "auto" else ack_id(consumer.subscription, seq),
            attributes=delivery.attributes,
            content_type=delivery.content_type,
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
            sent_at=delivery.sent_at,
            receive_count=delivery.receive_count,
            group_id=delivery.group_id,
        )

    def _reserve(self, consumer: Consumer, want: int) -> tuple[int, int]:
        """Take up to `want` of the consumer's credit: (granted, first delivery number)."""
        current: Consumer | None = consumer
        for _ in range(4):
            if current is None:
                return 0, 0
            free = current.prefetch - current.inflight
            if free <= 0:
                current = self._reclaim_expired(current)
                free = current.prefetch - current.inflight
                if free <= 0:
                    return 0, 0
            granted = min(want, free)
            try:
                with translated_errors():
                    updated = self._db.update_item(
                        TableName=self._table,
                        Key=to_wire(consumer.key),
                        UpdateExpression="SET inflight = inflight + :n, seq = seq + :n",
                        ConditionExpression="attribute_exists(pk) AND inflight <= :limit",
                        ExpressionAttributeValues=to_wire(
                            {":n": granted, ":limit": current.prefetch - granted}
                        ),
                        ReturnValues="UPDATED_NEW",
                    )
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                current = self.get(consumer.queue, consumer.connection.id, consumer.subscription)
                continue
            last = int(from_wire(updated["Attributes"])["seq"])
            return granted, last - granted + 1
        return 0, 0

    def _return_credit(self, consumer: Consumer, count: int) -> None:
        if count <= 0:
            return
        try:
            with translated_errors():
                self._db.update_item(
                    TableName=self._table,
                    Key=to_wire(consumer.key),
                    UpdateExpression="SET inflight = inflight - :n",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=to_wire({":n": count}),
                )
        except ClientError as exc:
            if not is_condition_failure(exc):  # the consumer left meanwhile: nothing to do
                raise

    def _reclaim_expired(self, consumer: Consumer) -> Consumer:
        """Forget deliveries whose lease ran out (their messages went back to the queue)."""
        now = self._clock.now_ms()
        expired = [d for d in self._deliveries(consumer) if int(d["until"]) <= now]
        if not expired:
            return consumer
        self._delete([_key(d) for d in expired])
        self._return_credit(consumer, len(expired))
        logger.info(
            "push leases expired unsettled",
            extra={
                "queue": consumer.queue,
                "subscription": consumer.subscription,
                "count": len(expired),
            },
        )
        return replace(consumer, inflight=max(0, consumer.inflight - len(expired)))

    def _record(self, consumer: Consumer, deliveries: Sequence[Delivery], seqs: list[int]) -> None:
        now = self._clock.now_ms()
        until = now + self._queues.visibility_of(consumer.queue) * 1000
        batch_write(
            self._db,
            self._table,
            [
                {
                    "PutRequest": {
                        "Item": to_wire(
                            {
                                "pk": partition(consumer.queue),
                                "sk": _delivery_key(consumer, seq),
                                "receipt": delivery.receipt,
                                "message_id": delivery.message_id,
                                "until": until,
                                "expires_at": until // 1000 + CONSUMER_SECONDS,
                            }
                        )
                    }
                }
                for delivery, seq in zip(deliveries, seqs, strict=True)
            ],
        )

    def _give_back(self, consumer: Consumer, receipts: list[str], seqs: list[int]) -> None:
        """Undo deliveries that never reached the client."""
        self._release(consumer, receipts)
        if consumer.ack != "auto":
            self._delete(
                [{"pk": partition(consumer.queue), "sk": _delivery_key(consumer, s)} for s in seqs]
            )
            self._return_credit(consumer, len(seqs))

    # ---- settling ------------------------------------------------------------------------

    def settle(
        self,
        consumer: Consumer,
        *,
        seq: int | None = None,
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
        target = self._find(consumer, seq=seq, message_id=message_id)
        if target is None:
            what = (
                f"ack id {ack_id(consumer.subscription, seq)!r}"
                if seq is not None
                else (f"message {message_id!r}")
            )
            raise NotInFlight(
                f"{what} is not in flight on subscription {consumer.subscription!r}: "
                "already acknowledged, or its lease expired and it went back to the queue"
            )
        if consumer.ack == "client":  # cumulative: this one and all delivered before it
            low = f"D#{consumer.tag}#"
            items = list(
                partition_items(
                    self._db,
                    self._table,
                    partition(consumer.queue),
                    between=(low, str(target["sk"])),
                )
            )
        else:
            items = [target]
        principal = Principal(id=consumer.principal, kind="connection")
        settled, stale = self._settle_receipts(
            principal,
            consumer.queue,
            [str(i["receipt"]) for i in items],
            nack=nack,
            delay_seconds=delay_seconds,
        )
        self._delete([_key(i) for i in items])
        self._return_credit(consumer, len(items))
        return SettleReport(settled=settled, stale=stale)

    def _find(self, consumer: Consumer, *, seq: int | None, message_id: str | None) -> Item | None:
        if seq is not None:
            with translated_errors():
                found = self._db.get_item(
                    TableName=self._table,
                    Key=to_wire(
                        {"pk": partition(consumer.queue), "sk": _delivery_key(consumer, seq)}
                    ),
                    ConsistentRead=True,
                )
            return from_wire(found["Item"]) if "Item" in found else None
        matches = [d for d in self._deliveries(consumer) if d["message_id"] == message_id]
        return matches[-1] if matches else None

    def _settle_receipts(
        self,
        principal: Principal,
        queue: str,
        receipts: Sequence[str],
        *,
        nack: bool,
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
            principal = Principal(id=consumer.principal, kind="connection")
            self._settle_receipts(principal, consumer.queue, receipts, nack=True)

    # ---- storage -------------------------------------------------------------------------

    def _deliveries(self, consumer: Consumer) -> list[Item]:
        return list(
            partition_items(
                self._db, self._table, partition(consumer.queue), prefix=f"D#{consumer.tag}#"
            )
        )

    def _delete(self, keys: Iterable[dict[str, Any]]) -> None:
        batch_write(
            self._db,
            self._table,
            [{"DeleteRequest": {"Key": to_wire({"pk": k["pk"], "sk": k["sk"]})}} for k in keys],
        )


def _delivery_key(consumer: Consumer, seq: int) -> str:
    return f"D#{consumer.tag}#{seq:012d}"


def _key(item: Item) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


def _consumer(queue: str, item: Item) -> Consumer:
    return Consumer(
        queue=queue,
        connection=Connection(
            id=str(item["connection"]),
            protocol="stomp" if item.get("protocol") == "stomp" else "json",
            version=str(item.get("version", "1.2")),
        ),
        subscription=str(item["subscription"]),
        ack=_ack_mode(str(item["ack"])),
        prefetch=int(item["prefetch"]),
        principal=str(item["principal"]),
        destination=str(item.get("destination") or f"/queue/{queue}"),
        inflight=int(item.get("inflight", 0)),
    )


def _ack_mode(value: str) -> AckMode:
    if value == "client":
        return "client"
    if value == "client-individual":
        return "client-individual"
    return "auto"
