"""Queue push consumers: WebSocket subscriptions that a queue's messages are leased to.

Kept in the destinations table, one partition per queue (`pk = QC#<queue>`):
- consumer  `sk = C#<tag>`: connection, subscription, how the client speaks (protocol,
  STOMP version), ack mode, `prefetch`, principal, the `epoch` its delivery records are
  keyed under, and in `client` mode `acked`, the watermark of its cumulative acks.
  Written on subscribe; in `client` mode once more per cumulative ack.
- delivery record `sk = D#<tag>#<epoch>#<seq>` (`storage/deliveries.py`): one per push
  (one outbox flush to one consumer) in a client ack mode, holding the push's leases in
  order, their end, a random `gen` and the positions settled one at a time. Auto mode
  keeps none.
`<tag>` is `<connection>#<len>:<subscription>`: the length keeps subscription `a`'s items
out of a prefix query for `a#b`'s.

Credit is `prefetch` minus what the consumer holds: the unsettled positions of its records
whose leases have not ended, past its cumulative watermark (a read of the few newest
records, strongly consistent). A pump reads that once per consumer, leases up to the
credit under the consumer's name with an ordinary receive (so leases, receive counts,
dead-lettering and FIFO groups behave as for HTTP receivers), and writes one record per
push before posting it, conditional on its seq being new: two pumps racing for one
consumer can never both count the same credit (the loser hands its messages back,
uncounted). A record whose leases ran out holds nothing, so a consumer that sat on its
messages is fed again once they went back to the queue.

An ack frees credit, but a pump after it is worth its reads (the consumers, their credit,
the queue's index from the floor) only when that credit was what held messages back. A
consumer with room left was given everything visible when it was last fed, and whatever
became visible since (a new message indexed, a nack, a lease or delay that ran out) brings
its own pump. So an ack pumps when it takes the consumer down through `refill_step`
below its prefetch: from full with prefetch under 20 (every ack of a saturated consumer),
in steps of 10 with prefetch 100 (one push of 10, not ten of one). In `client` mode it
pumps only if a pump marked the consumer `owed` (it left it without credit while messages
may have waited: `_owe`); a consumer that keeps up with its producer never is, and its
acks read no index. What makes a message visible always pumps: a nack, a FIFO ack (the
next message of its group), a stale ack.

An ack id is `<seq>.<position>.<gen>:<subscription>`: it names the record and the place
in it, so settling needs no search. `client-individual`: one conditional update of the
record marks the position settled (only while its gen matches, its lease has not ended
and it is not settled yet) and returns the lease, which the queue then settles.
`client`: the records from the watermark up to the acked one are read, every lease they
hold up to it is settled, one write per index segment, and the watermark moves (one write).
Steady state (pushes of ten, 512 B, sent in batches of ten: one segment each), per
message: auto 0.1 writes beyond the queue's lease (the ack, one per segment); client 0.1
(record) + 0.1 (watermark) beyond the queue's lease and ack; client-individual 0.1 + 1 (the
record's mark).

The dispatch function feeds what it indexes without a pump where it can: it reads the
consumers and one's credit first and appends the new messages leased to that consumer
(`plan_push`, `push_leased`: the append is the lease), and pumps only if anything it
appended is left.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Grant, Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import Conflict, InvalidRequest, QueueNotFound
from mqless.domain.ids import MAX_CLIENT_ID, is_ascii_digits
from mqless.domain.models import Delivery
from mqless.domain.queues.indexing import PushLease
from mqless.domain.queues.leases import Taken
from mqless.domain.queues.receipts import Lease
from mqless.domain.queues.service import QueueService
from mqless.observability import metrics
from mqless.storage.connections import Connection
from mqless.storage.deliveries import (
    DeliveryRecord,
    DeliveryRecords,
    id_tag,
    partition,
    record_prefix,
    seq_of,
    watermark,
)
from mqless.storage.dynamo import (
    Item,
    from_wire,
    is_condition_failure,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.storage.index import new_token
from mqless.transports.websocket.outbound import FRAME_BYTES, Push, render
from mqless.transports.websocket.pusher import Pusher

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(service="mqless", child=True)

AckMode = Literal["auto", "client", "client-individual"]
ACK_MODES: Final = ("auto", "client", "client-individual")
DEFAULT_PREFETCH: Final = 10
MAX_PREFETCH: Final = 1000
PUMP_BUDGET: Final = 500  # messages one pump pushes before it hands over (see `more`)
PUSH_LIMIT: Final = 50  # client-individual: messages per push (its record stays < 1 KB)
CONSUMER_SECONDS: Final = 3 * 60 * 60  # outlives API Gateway's 2-hour connection limit
MAX_SEQ_DIGITS: Final = 10
MAX_POSITION_DIGITS: Final = 4  # a push holds at most the prefetch (1,000)
OWED: Final = "owed"  # consumer item: a pump found it without credit (see `_owe`)


class NotInFlight(Conflict):
    """An ack or nack names a delivery this subscription does not hold."""

    code = "not_in_flight"


def tag(connection_id: str, subscription: str) -> str:
    return f"{connection_id}#{len(subscription)}:{subscription}"


TOPIC_ACK: Final = "t"  # the ack id prefix of a live topic message (nothing to settle)


@dataclass(frozen=True)
class AckId:
    """What a client acks a pushed message with: `<seq>.<position>.<gen>:<subscription>`
    (the delivery record, the message's place in it, the record's gen)."""

    subscription: str
    seq: int | None = None  # None: a topic message (`t:<subscription>`)
    position: int = 0
    gen: str = ""

    def __str__(self) -> str:
        if self.seq is None:
            return f"{TOPIC_ACK}:{self.subscription}"
        return f"{self.seq}.{self.position}.{self.gen}:{self.subscription}"


def parse_ack_id(text: str) -> AckId:
    """The ack id a MESSAGE carried; InvalidRequest if it is not one this server gave out."""
    head, sep, subscription = text.partition(":")
    if len(subscription) > MAX_CLIENT_ID:  # no subscription id is longer
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    if sep and subscription and head == TOPIC_ACK:
        return AckId(subscription)
    parts = head.split(".")
    if (
        not sep
        or not subscription
        or len(parts) != 3
        or not is_ascii_digits(parts[0])
        or len(parts[0]) > MAX_SEQ_DIGITS
        or not is_ascii_digits(parts[1])
        or len(parts[1]) > MAX_POSITION_DIGITS
        or len(parts[2]) != 8
        or not all(c in "0123456789abcdef" for c in parts[2])
    ):
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    return AckId(subscription, int(parts[0]), int(parts[1]), parts[2])


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
    epoch: str = ""
    """Drawn on subscribe: the key range of this subscription's delivery records."""
    acked: int = -1
    """`client` mode: everything pushed up to this watermark is settled (-1: nothing)."""
    watermark_read: bool = True
    """False: a copy without `acked` (`from_settle_fields`), -1 standing for not known:
    a cumulative ack learns it from its own write."""
    owed: bool = False
    """`client` mode: a pump left it without credit while messages may have waited: the
    ack that opens its room pumps (and takes the mark off)."""
    selector: str | None = None
    """A JMS selector (checked on subscribe): only the messages it selects are leased."""

    @property
    def tag(self) -> str:
        return tag(self.connection.id, self.subscription)

    @property
    def key(self) -> dict[str, str]:
        return {"pk": partition(self.queue), "sk": f"C#{self.tag}"}

    @property
    def records(self) -> str:
        """The sort-key prefix of its delivery records."""
        return record_prefix(self.tag, self.epoch)

    @property
    def acting_as(self) -> Principal:
        """Who the consumer's leases and acks are done as: whoever subscribed, allowed to
        receive from this queue (checked when it subscribed) and nothing else."""
        receive = Grant.model_construct(pattern=self.queue, actions=(Action.RECEIVE,))
        return Principal(id=self.principal, kind="consumer", grants=(receive,))

    def credential_expired(self, now_s: int) -> bool:
        expires_at = self.credential_expires_at
        return expires_at is not None and expires_at <= now_s


class _Outbox:
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


@dataclass
class _Holding:
    """What a client-mode consumer holds, as one pump counts it: read once, then kept up to
    date with what the pump itself leases and records."""

    next_seq: int  # the seq of the next record
    in_flight: int
    low: int  # the lowest seq that may hold anything (the next record's `lo`)
    lost: bool = False  # another pump wrote a record first: it feeds this consumer now
    starved: bool = False  # it had no credit when this pump would have leased for it


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
    refill: bool = True  # the credit freed is worth a pump (see the module docstring)


def refill_step(prefetch: int) -> int:
    """How much room an ack must open in a consumer's credit to be worth a pump."""
    return max(1, min(models.MAX_BATCH, prefetch // 10))


@dataclass
class PushPlan:
    """A consumer the dispatch function leases new messages to as it appends them."""

    consumer: Consumer
    lease: PushLease
    holdings: dict[str, _Holding]


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
        self._records = DeliveryRecords(dynamodb, table_name)

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
            # a subscription id used again starts from no delivery records
            "epoch": os.urandom(4).hex(),
            "expires_at": now // 1000 + CONSUMER_SECONDS,
        }
        if principal.expires_at is not None:
            record["credential_expires_at"] = principal.expires_at
        if consumer.selector is not None:
            record["selector"] = consumer.selector
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(record))
        return _consumer(consumer.queue, record)

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
        """Drop a consumer and give back what it held at once; returns how many.

        Its delivery records stay until their TTL: a new subscription of the same id gets
        a new epoch, and nothing reads the old ones again."""
        held: list[Lease] = []
        if consumer.ack != "auto":
            now = self._clock.now_ms()
            for record in self._recent(consumer):
                held += [record.leases[p] for p in record.held(now, consumer.acked)]
        if held:
            self._queues.settle_leases(consumer.acting_as, consumer.queue, held, outcome="nack")
        with translated_errors():
            self._db.delete_item(TableName=self._table, Key=to_wire(consumer.key))
        return len(held)

    # ---- feeding what the dispatch function appends leased ---------------------------------

    def plan_push(self, queue: str) -> PushPlan | None:
        """Before the dispatch function appends a standard queue's new messages: a push
        consumer to lease them to in the append itself (`indexing.PushLease`), chosen as a
        pump's round would choose (at random among those with credit, no selector), and
        how many it may take; None if none may.

        The consumers are read eventually consistent (half the units: most queues have
        none, and the pump after the append reads them again, strongly): a consumer not
        seen yet is fed by that pump, one seen with an old watermark gets less credit
        (never more), one gone has its messages given back when its post fails."""
        if names.is_fifo(queue):
            return None
        try:
            config = self._queues.config_of(queue)
        except QueueNotFound:
            return None
        if config.max_priority is not None:
            return None  # a pump leases from the highest lane first, not the append
        now = self._clock.now_ms()
        found = partition_items(
            self._db, self._table, partition(queue), prefix="C#", consistent=False
        )
        # a selector's consumer is fed by the pump, which reads what it selects
        candidates = [
            c
            for c in (_consumer(queue, item) for item in found)
            if not c.credential_expired(now // 1000) and c.selector is None
        ]
        random.shuffle(candidates)
        holdings: dict[str, _Holding] = {}
        for consumer in candidates:
            credit = models.MAX_BATCH
            if consumer.ack != "auto":
                holding = self._holding(consumer, holdings)
                credit = min(credit, consumer.prefetch - holding.in_flight)
            if credit <= 0:
                continue
            lease_ms = config.visibility_timeout * 1000
            return PushPlan(
                consumer=consumer,
                lease=PushLease(credit=credit, until=now + lease_ms, token=new_token()),
                holdings=holdings,
            )
        return None

    def push_leased(self, plan: PushPlan, images: Mapping[tuple[str, str], Item]) -> PumpReport:
        """Push what the append leased to the plan's consumer (`plan_push`), as a pump's
        flush does: its record first, then the post; given back if the post fails."""
        consumer, report = plan.consumer, PumpReport()
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
        outbox = _Outbox(consumer)
        outbox.add(deliveries)
        self._flush(outbox, plan.holdings, report)
        return report

    # ---- feeding -------------------------------------------------------------------------

    def pump(self, queue: str, *, indexed: frozenset[int] | None = None) -> PumpReport:
        """Lease and push messages to the queue's consumers while they have credit.

        `indexed` (the dispatch function's pump of what it just indexed in these shards of
        a standard queue): a `client` consumer left without credit is marked owed only if
        something is left visible there. Whatever else is visible, the pump that made it
        so was responsible for it (its dispatch pump, or a pump without `indexed`, which
        marks such consumers whatever it leaves).

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
        holdings: dict[str, _Holding] = {}
        refed: set[str] = set()  # consumers fed again after a lost record race
        while True:
            undeliverable, failed = report.undeliverable, len(failures)
            outboxes: dict[str, _Outbox] = {}
            drained = False
            try:
                drained = self._feed(list(consumers), outboxes, holdings, report, failures)
            finally:
                for outbox in outboxes.values():
                    self._flush_guarded(outbox, holdings, report, failures)
            # Feed again now, not at the next pump, when this round freed something: a
            # message dead-lettered as undeliverable (its consumer's credit, its FIFO
            # group), or the messages of a consumer whose post failed (given back for the
            # others to take), or credit an ack freed while this pump marked its consumer
            # owed. Each such round removes a message or a consumer or takes an ack's
            # credit, and the budget bounds them all.
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

    def _feed(
        self,
        active: list[Consumer],
        outboxes: dict[str, _Outbox],
        holdings: dict[str, _Holding],
        report: PumpReport,
        failures: list[Exception],
    ) -> bool:
        """Lease for consumers in rounds until the queue is drained or the budget is spent;
        whether it was found drained (nothing visible)."""
        while active:
            hungry: list[Consumer] = []
            for consumer in active:
                if consumer.connection.id in report.gone | report.failed:
                    continue
                want = min(models.MAX_BATCH, self._budget - report.leased)
                if want <= 0:
                    report.more = True
                    return False
                outbox = outboxes.setdefault(consumer.tag, _Outbox(consumer))
                leased = self._lease_for(consumer, min(want, outbox.room), holdings)
                if leased is None and consumer.selector is None:
                    return True  # nothing visible: the queue is drained for now
                if leased is None:  # nothing this selector takes; others may take the rest
                    continue
                report.leased += len(leased)
                outbox.add(leased)
                # a frame's worth (no point waiting), or as much as one push may hold
                if outbox.size >= FRAME_BYTES or outbox.room == 0:
                    self._flush_guarded(outbox, holdings, report, failures)
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
        holdings: dict[str, _Holding],
        indexed: frozenset[int] | None,
        refed: set[str],
    ) -> dict[str, Consumer]:
        """Mark the `client` consumers this pump found without credit owed, as messages
        may wait for them; those whose credit an ack freed meanwhile, as they are now (to
        be fed at once).

        An ack that opens a consumer's room pumps only if it finds the mark (`settle`),
        so that a consumer that keeps up with its producer (each push acked before the
        next message arrives) costs no pump after its acks. The mark and the ack's
        watermark are one item: the ack's write either sees the mark (and pumps), or came
        first, and then this write returns its watermark, and this pump feeds again.
        """
        refreshed: dict[str, Consumer] = {}
        starved = [
            c
            for c in consumers
            if c.ack == "client" and (h := holdings.get(c.tag)) is not None and h.starved
        ]
        for consumer in list(starved):
            holding = holdings[consumer.tag]
            holding.starved = False
            if holding.lost and consumer.tag not in refed:
                # another pump wrote a record first and this one gave its leases back:
                # count its credit again from the records (the winner's included) and feed
                # it what is left, once; a second loss marks it owed like any other
                refed.add(consumer.tag)
                holdings.pop(consumer.tag)
                refreshed[consumer.tag] = consumer
                starved.remove(consumer)
        # a consumer that keeps up is filled to its credit by the pump of what was just
        # indexed: one strongly consistent look at those shards, not a mark and a pump
        if not starved or (indexed is not None and not self._queues.left_visible(queue, indexed)):
            return refreshed
        for consumer in starved:
            item = self._mark_owed(consumer)
            if item is None:
                continue  # unsubscribed meanwhile
            acked = int(item.get("acked", -1))
            if acked > consumer.acked:
                refreshed[consumer.tag] = replace(consumer, acked=acked, owed=True)
                holdings.pop(consumer.tag, None)  # counted again from the new watermark
        return refreshed

    def _mark_owed(self, consumer: Consumer) -> Item | None:
        """The consumer item, marked owed (a read when it was marked already, as this pump
        read it: the ack that takes the mark off pumps); None if it is gone."""
        with translated_errors():
            if consumer.owed:
                found = self._db.get_item(
                    TableName=self._table, Key=to_wire(consumer.key), ConsistentRead=True
                )
                item = found.get("Item")
                if item is None or OWED in item:
                    return None if item is None else from_wire(item)
            try:
                updated = self._db.update_item(
                    TableName=self._table,
                    Key=to_wire(consumer.key),
                    UpdateExpression=f"SET {OWED} = :t",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=to_wire({":t": 1}),
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if is_condition_failure(exc):
                    return None
                raise
        return from_wire(updated["Attributes"])

    def _flush_guarded(
        self,
        outbox: _Outbox,
        holdings: dict[str, _Holding],
        report: PumpReport,
        failures: list[Exception],
    ) -> None:
        """`_flush`, with a failure kept to this consumer (its messages were given back)."""
        try:
            self._flush(outbox, holdings, report)
        except Exception as exc:
            consumer = outbox.consumer
            logger.exception(
                "pushing to a consumer failed; its messages went back to the queue",
                extra={"queue": consumer.queue, "connection_id": consumer.connection.id},
            )
            report.failed.add(consumer.connection.id)
            failures.append(exc)

    def _holding(self, consumer: Consumer, holdings: dict[str, _Holding]) -> _Holding:
        """What a client-mode consumer holds: its records read once per pump."""
        found = holdings.get(consumer.tag)
        if found is not None:
            return found
        now = self._clock.now_ms()
        records = self._recent(consumer)
        next_seq = records[0].seq + 1 if records else 0
        if consumer.acked >= 0:  # the acked record exists: never write below it
            next_seq = max(next_seq, seq_of(consumer.acked) + 1)
        live = [r for r in records if r.held(now, consumer.acked)]
        found = holdings[consumer.tag] = _Holding(
            next_seq=next_seq,
            in_flight=sum(len(r.held(now, consumer.acked)) for r in live),
            low=min((r.seq for r in live), default=next_seq),
        )
        return found

    def _lease_for(
        self, consumer: Consumer, want: int, holdings: dict[str, _Holding]
    ) -> list[Delivery] | None:
        """Lease up to `want` messages for one consumer; None when the queue had none."""
        holding: _Holding | None = None
        credit = want
        if consumer.ack != "auto":
            holding = self._holding(consumer, holdings)
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

    def _flush(self, outbox: _Outbox, holdings: dict[str, _Holding], report: PumpReport) -> None:
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
        holding = None if consumer.ack == "auto" else self._holding(consumer, holdings)
        seq, gen = (0, "") if holding is None else (holding.next_seq, os.urandom(4).hex())
        rendered = render(
            consumer.connection,
            [
                self._push(
                    consumer,
                    d,
                    None if holding is None else AckId(consumer.subscription, seq, i, gen),
                )
                for i, d in enumerate(leased)
            ],
        )
        sent = [i for i in range(len(leased)) if i not in rendered.refused]
        record: DeliveryRecord | None = None
        if holding is not None:
            record = self._record(consumer, holding, seq, gen, leased, leases, rendered.refused)
            if record is None:  # another pump took this seq: it feeds this consumer now
                self._queues.settle_leases(principal, consumer.queue, leases, outcome="hand_back")
                return
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
                principal, consumer.queue, [leases[i] for i in sent], outcome="ack"
            )
        report.pushed += len(sent)

    def _record(
        self,
        consumer: Consumer,
        holding: _Holding,
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
        record = DeliveryRecord(
            seq=seq,
            gen=gen,
            until=until,
            leases=tuple(leases),
            id_tags=b"".join(id_tag(d.message_id) for d in leased) if by_id else b"",
            settled=frozenset(refused),  # set aside below: never held
            low=holding.low,
        )
        expires_at = until // 1000 + CONSUMER_SECONDS
        if not self._records.put(consumer.queue, consumer.records, record, expires_at=expires_at):
            # its leases go back: the pump that won feeds it, and this one marks it owed,
            # as it leaves the messages it gave back (`_owe`)
            holding.lost = holding.starved = True
            holding.in_flight -= len(leased)
            return None
        holding.next_seq = seq + 1
        holding.in_flight -= len(refused)
        return record

    def _forget(self, consumer: Consumer, holdings: dict[str, _Holding], count: int) -> None:
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

    def _push(self, consumer: Consumer, delivery: Delivery, ack: AckId | None) -> Push:
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

    # ---- settling ------------------------------------------------------------------------

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
        leases: list[Lease] | None
        room_opened: bool | None = None  # `client`: known from the records the ack read
        if consumer.ack == "client":
            leases, room_opened = self._settle_up_to(consumer, seq, position, gen, now)
        else:
            marked = self._records.settle(
                consumer.queue, consumer.records, seq, position, gen=gen, now_ms=now
            )
            leases = None if marked is None else [marked.leases[position]]
        if not leases:
            raise not_held
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
            or (
                room_opened
                if room_opened is not None
                else self._room_opened(consumer, freed=len(leases))
            )
        )
        return SettleReport(settled=settled, stale=len(done) - settled, refill=refill)

    def _room_opened(self, consumer: Consumer, *, freed: int) -> bool:
        """Whether releasing `freed` messages (settled in its records already) took the
        consumer down through its refill threshold."""
        return _crosses_refill(consumer, self._holding(consumer, {}).in_flight, freed=freed)

    def _find(self, consumer: Consumer, message_id: str, now: int) -> tuple[int, int, str] | None:
        """(seq, position, gen) of a held message, by its id (STOMP 1.0 and 1.1 ack so)."""
        for record in self._recent(consumer):
            position = record.position_of(message_id)
            if position is not None and record.holds(position, now, consumer.acked):
                return record.seq, position, record.gen
        return None

    def _settle_up_to(
        self, consumer: Consumer, seq: int, position: int, gen: str, now: int
    ) -> tuple[list[Lease], bool]:
        """`client` mode: move the watermark to (seq, position); the leases that frees,
        oldest first (none if that message is not held), and whether a pump should
        follow (the ack opened the consumer's room and a pump had marked it owed).

        One read (the consumer's recent records) and one write (the watermark, which
        returns the item as it was: the watermark before, and the owed mark), whether or
        not the consumer's watermark was read before (`Consumer.watermark_read`)."""
        records = self._recent(consumer)
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
        may_open = _crosses_refill(consumer, after, freed=len(candidates) - after)
        advanced = self._advance(consumer, mark, take_owed=may_open)
        if advanced is None:  # a racing ack moved the watermark to here or past it
            if not consumer.watermark_read:
                return [], False
            return [lease for w, lease in candidates if w <= mark], may_open
        before, owed = advanced
        leases = [lease for w, lease in candidates if before < w <= mark]
        return leases, may_open and owed

    def _advance(
        self, consumer: Consumer, mark: int, *, take_owed: bool
    ) -> tuple[int, bool] | None:
        """Move a `client` consumer's watermark forward (never back: acks may race), and
        with `take_owed` take its owed mark off (its pump follows); (the watermark before,
        whether it was marked owed), or None if a racing ack had moved it this far."""
        try:
            with translated_errors():
                found = self._db.update_item(
                    TableName=self._table,
                    Key=to_wire(consumer.key),
                    UpdateExpression="SET acked = :w" + (f" REMOVE {OWED}" if take_owed else ""),
                    ConditionExpression="attribute_exists(pk) AND "
                    "(attribute_not_exists(acked) OR acked < :w)",
                    ExpressionAttributeValues=to_wire({":w": mark}),
                    ReturnValues="ALL_OLD",
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            return None
        before = from_wire(found.get("Attributes", {}))
        return int(before.get("acked", -1)), OWED in before

    def _recent(self, consumer: Consumer) -> list[DeliveryRecord]:
        return self._records.recent(consumer.queue, consumer.records, floor=seq_of(consumer.acked))


def _crosses_refill(consumer: Consumer, holding: int, *, freed: int) -> bool:
    """Whether a consumer that holds `holding` after releasing `freed` went down through
    its refill threshold (from holding more than prefetch - step to no more than that)."""
    threshold = consumer.prefetch - refill_step(consumer.prefetch)
    return holding <= threshold < holding + freed


def settle_fields(consumer: Consumer) -> Item | None:
    """What settling needs of a consumer's record, for its subscription's record to carry
    (`from_settle_fields`): all but a `client` consumer's watermark and owed mark, which
    move, and which its ack's own write returns."""
    fields: Item = {
        "ack": consumer.ack,
        "prefetch": consumer.prefetch,
        "principal": consumer.principal,
        "epoch": consumer.epoch,
    }
    if consumer.credential_expires_at is not None:
        fields["credential_expires_at"] = consumer.credential_expires_at
    if consumer.selector is not None:
        fields["selector"] = consumer.selector
    return fields


def from_settle_fields(
    queue: str, connection: Connection, subscription: str, destination: str, fields: Item
) -> Consumer:
    """The consumer as its record holds it, from the copy its subscription carries.

    Nothing in it changes while the consumer exists (a `client` consumer's watermark is
    never copied: `watermark_read` is False), and the subscription's record is written
    after the consumer's and deleted before it: a subscription found means its consumer
    exists, as it was stored.
    """
    consumer = _consumer(
        queue,
        {
            **fields,
            "connection": connection.id,
            "protocol": connection.protocol,
            "version": connection.version,
            "subscription": subscription,
            "destination": destination,
        },
    )
    return replace(consumer, watermark_read=False) if consumer.ack == "client" else consumer


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
        epoch=str(item.get("epoch", "")),
        acked=int(item.get("acked", -1)),
        owed=item.get(OWED) is not None,
        selector=None if item.get("selector") is None else str(item["selector"]),
    )


def _ack_mode(value: str) -> AckMode:
    if value == "client":
        return "client"
    if value == "client-individual":
        return "client-individual"
    return "auto"
