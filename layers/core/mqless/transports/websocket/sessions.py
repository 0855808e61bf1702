"""What a WebSocket connection may do, whatever protocol it speaks (JSON or STOMP).

Both protocols map their frames onto these operations: subscribe to a topic (live) or a
queue (push consumer; a durable topic subscription is a push consumer of its queue),
unsubscribe, send, ack/nack, transactions, close. Frames of one connection arrive as
separate Lambda invocations, so all session state is in the destinations table.

Transactions (STOMP BEGIN/COMMIT/ABORT) hold their SEND, ACK and NACK frames as items of
the connection (`TX#<name>`, then `TXOP#<name>#<n>`); a held SEND is sealed like a stored
message, its fields (attributes and the rest) with its body (AES-GCM under a KMS data key,
the connection, transaction and position bound in its associated data), so the table holds
no plaintext. COMMIT applies the held frames in order; ABORT and disconnecting drop them.

Temporary queues (request/reply, as ActiveMQ): `/temp-queue/<name>` is the real queue
`temp-queue.<16 hex of SHA-256 of the connection id>.<name>`, made by the broker on the
connection's first use (no `create` right, no quota, no dead-letter queue), recorded on
the connection (`TMPQ#`, `live.py`) and deleted when it closes. A `reply_to` naming one
reaches its receiver as `/remote-temp-queue/<queue>`. Only the connection whose hash the
name holds may subscribe to it, by any name; sending to it (or, for its owner, receiving)
still needs the grant on the real name, as ActiveMQ's temp-destination entry: `send` (and
`receive`) on `temp-queue.>`. A send never re-creates one that has gone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from mqless.domain import names, selectors
from mqless.domain.access.api_keys import KEY_EXPIRED, KEY_REVOKED
from mqless.domain.access.authentication import JWT_EXPIRED
from mqless.domain.access.principals import Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    MqlessError,
    NotFound,
    Unauthorized,
)
from mqless.domain.ids import check_client_id
from mqless.domain.models import NewMessage, SendResult
from mqless.domain.push.ack_ids import AckId, parse_ack_id
from mqless.domain.push.consumer import DEFAULT_PREFETCH, AckMode, Consumer
from mqless.domain.push.consumers import QueueConsumers
from mqless.domain.push.feeding import PushPlan
from mqless.domain.push.posting import PumpReport
from mqless.domain.push.presence import Presence
from mqless.domain.push.pushes import Connection, Push
from mqless.domain.push.settling import NotInFlight, SettleReport
from mqless.domain.queues.service import BodyCipher, QueueService
from mqless.domain.scheduling import MANAGEMENT_TOPIC, Kind, Scheduler, stored
from mqless.domain.selectors import message_lookup
from mqless.domain.topics.service import TopicService, published_topic
from mqless.domain.topics.subscription import START_NOW, SubscriptionSettings
from mqless.observability import audit, metrics
from mqless.storage import keys
from mqless.storage.dynamo import (
    Item,
    batch_write,
    from_wire,
    is_condition_failure,
    partition_items,
    put_if_absent,
    to_wire,
    translated_errors,
)
from mqless.storage.envelope import LEGACY_FORMAT_VERSION, Sealed
from mqless.storage.log import LogStore
from mqless.storage.push_consumers import from_settle_fields, settle_fields
from mqless.storage.schedules import Rule
from mqless.storage.sealing import open_logged
from mqless.transports.websocket.connections import (
    ConnectionInfo,
    EndedCredential,
    LiveSubscriptions,
    LiveTarget,
    Pusher,
)
from mqless.transports.websocket.render import error_reply, render

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


logger = Logger(service="mqless", child=True)

MAX_OPEN_TRANSACTIONS: Final = 10
MAX_TRANSACTION_FRAMES: Final = 100
TRANSACTION_KEY_DESTINATION: Final = "mqless.transactions"  # one data key for held frames
MAX_PUMP_ROUNDS: Final = 5


TEMP_QUEUE: Final = "/temp-queue/"
REMOTE_TEMP_QUEUE: Final = "/remote-temp-queue/"


def split_destination(destination: str) -> tuple[str, str]:
    """`/topic/a.b` -> ("topic", "a.b"); `/queue/x` -> ("queue", "x");
    `/remote-temp-queue/temp-queue.<owner>.x` -> ("queue", "temp-queue.<owner>.x")."""
    for kind, prefix in (("topic", "/topic/"), ("queue", "/queue/"), ("queue", REMOTE_TEMP_QUEUE)):
        if destination.startswith(prefix) and len(destination) > len(prefix):
            name = destination[len(prefix) :]
            if prefix == REMOTE_TEMP_QUEUE and not names.is_temp_queue(name):
                break
            return kind, name
    raise InvalidRequest(
        f"destination {destination[:100]!r} must be /queue/NAME or /topic/NAME (or "
        "/temp-queue/NAME, or the /remote-temp-queue/... a reply-to named)"
    )


@dataclass
class FeedReport:
    """What feeding every queue's push consumers did (`Sessions.pump_all`)."""

    pushed: int = 0
    errors: list[str] = field(default_factory=list)


def _reason(exc: Exception) -> str:
    """An error as a report line: the core's own message, or the exception's kind."""
    return exc.message if isinstance(exc, MqlessError) else type(exc).__name__


class UnknownTransaction(Conflict):
    code = "unknown_transaction"


@dataclass(frozen=True)
class Settle:
    """An ack or nack as a client gave it: by ack id, or by message id (STOMP 1.0/1.1)."""

    ack_id: str | None = None
    subscription: str | None = None
    message_id: str | None = None
    nack: bool = False
    delay_seconds: int = 0


@dataclass
class ConnectionSweep:
    """What one sweep of connections did."""

    closed: int = 0  # connections whose credential expired or whose key was revoked
    temp_queues: int = 0  # temporary queues of connections that ended unnoticed
    errors: list[str] = field(default_factory=list)


class Sessions:
    """The broker as WebSocket connections see it."""

    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        table_name: str,
        live: LiveSubscriptions,
        consumers: QueueConsumers,
        queues: QueueService,
        topics: TopicService,
        pusher: Pusher,
        cipher: BodyCipher,
        clock: Clock,
        log: LogStore,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.scheduler = scheduler
        self._db = dynamodb
        self._table = table_name
        self._log = log
        self.live = live
        self.consumers = consumers
        self._queues = queues
        self._topics = topics
        self.pusher = pusher
        self._cipher = cipher
        self._clock = clock
        self.presence = Presence(live, consumers, topics)

    @property
    def clock(self) -> Clock:
        """The broker's time (what a STOMP `expires` header is measured against)."""
        return self._clock

    # ---- connections ---------------------------------------------------------------------

    def open(self, connection: Connection, principal: Principal) -> None:
        self.live.connect(
            connection.id,
            principal,
            protocol=connection.protocol,
            version=connection.version,
        )
        metrics.count("Connections")

    def info(self, connection_id: str) -> ConnectionInfo | None:
        return self.live.connection(connection_id)

    def close(self, connection_id: str) -> None:
        """Forget a connection: its leases go back to their queues at once."""
        self._close_all({connection_id})

    def close_by_operator(self, connection_id: str, *, by: str) -> None:
        """An operator closes a connection: the client sees its socket close, and its
        leases go back at once (the `$disconnect` that follows finds nothing left)."""
        info = self.live.connection(connection_id)
        if info is None:
            raise NotFound(f"no open connection {connection_id[:128]!r}")
        self.pusher.close(connection_id)
        self.close(connection_id)
        audit("close_connection", by, None, connection=connection_id, subject=info.principal)

    def end_session(self, info: ConnectionInfo, why: Unauthorized) -> None:
        """Tell a connection its credential stopped working, in its protocol (a STOMP
        ERROR, as RabbitMQ does, or a JSON error frame), and close it: its leases go back
        at once, not when `$disconnect` arrives."""
        connection_id = info.connection.id
        message = f"{why.message}: reconnect with a valid credential"
        stomp = info.connection.protocol == "stomp"
        reply = error_reply(stomp=stomp, code=why.code, message=message)
        self.pusher.post(connection_id, reply)
        self.close(connection_id)
        self.pusher.close(connection_id)
        logger.info(
            "credential ended: connection closed",
            extra={"connection_id": connection_id, "reason": why.message},
        )

    def sweep_connections(self) -> ConnectionSweep:
        """Close the connections whose credential expired or whose API key was revoked,
        and delete the temporary queues of connections that ended without `$disconnect`
        (keyed queries: `LiveSubscriptions.ended_credentials`, `orphaned_temp_queues`)."""
        report = ConnectionSweep()
        # each on its own: one that fails is logged and reported (and found again by the
        # next sweep), the next ones are still closed
        for ended in self.live.ended_credentials():
            try:
                report.closed += self._end_credential(ended)
            except Exception as exc:
                logger.exception("closing a connection failed", extra={"ended": ended})
                report.errors.append(f"connection {ended.connection_id}: {_reason(exc)}")
        for orphan in self.live.orphaned_temp_queues():
            try:
                if self.live.connection(orphan.connection_id) is not None:
                    # past API Gateway's 2-hour limit: the connection ended unnoticed, and
                    # closing it now also gives back its leases and deletes its temp queues
                    self._close_all({orphan.connection_id})
                else:
                    self._queues.delete_temporary(orphan.queue)
                    self.live.forget_temp_queue(orphan)
                report.temp_queues += 1
            except Exception as exc:
                logger.exception("deleting a temporary queue failed", extra={"orphan": orphan})
                report.errors.append(f"{orphan.queue}: {_reason(exc)}")
        return report

    def _end_credential(self, ended: EndedCredential) -> int:
        """Close a connection whose credential ended (1), or forget a stale index item (0)."""
        info = self.live.connection(ended.connection_id)
        if info is None:
            self.live.forget_credential(ended)
            return 0
        expired = JWT_EXPIRED if ended.kind == "jwt" else KEY_EXPIRED
        self.end_session(info, Unauthorized(KEY_REVOKED if ended.revoked else expired))
        return 1

    def _close_all(self, connection_ids: set[str]) -> None:
        pending = set(connection_ids)
        closed: set[str] = set()
        while pending:
            connection_id = pending.pop()
            closed.add(connection_id)
            queues: set[str] = set()
            released = 0
            patterns: set[str] = set()
            held = self.live.disconnect(connection_id)
            for record in held.subscriptions:
                if record["kind"] != "queue":
                    patterns.add(str(record.get("pattern", "")))
                    continue
                consumer = self.consumers.get(record["queue"], connection_id, record["id"])
                if consumer is not None:
                    released += self.consumers.remove(consumer)
                    queues.add(consumer.queue)
            for pattern in sorted(patterns):
                self.presence.changed("Topic", pattern, started=False)
            for queue in sorted(queues):
                self.presence.changed("Queue", queue, started=False)
            for temp_queue in held.temp_queues:  # as ActiveMQ: they go with the connection
                self._queues.delete_temporary(temp_queue)
                queues.discard(temp_queue)
            logger.info(
                "connection closed",
                extra={
                    "connection_id": connection_id,
                    "released": released,
                    "temp_queues": len(held.temp_queues),
                },
            )
            for queue in sorted(queues):
                pending |= self.consumers.pump(queue).gone - closed

    # ---- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        info: ConnectionInfo,
        subscription: str,
        destination: str,
        *,
        ack: AckMode = "auto",
        prefetch: int = DEFAULT_PREFETCH,
        durable: str | None = None,
        selector: str | None = None,
        start: str | None = None,
    ) -> str | None:
        """Subscribe to a topic (live, or durable when named) or to a queue (push), to the
        messages a JMS `selector` selects if one is given (a bad one is refused here).
        A new durable subscription may `start` earlier than now (`pubsub.parse_start`).

        Returns the queue to `pump` once the client has been answered, if any.
        """
        check_client_id(subscription, "subscription id")
        selector = selectors.check(selector)
        kind, name = self._resolve(info, destination, receiving=True)
        connection = info.connection
        principal = info.acting_as
        if start not in (None, START_NOW) and (kind != "topic" or durable is None):
            raise InvalidRequest(
                "a start (replay) is for a durable topic subscription: name one "
                "(STOMP 'activemq.subscriptionName', JSON 'durable')"
            )
        if self.live.subscription(connection.id, subscription) is not None:
            raise Conflict(f"subscription id {subscription!r} is already in use on this connection")
        if kind == "topic" and durable is None:
            self._topics.check_receive(principal, name)
            self.live.subscribe(
                connection,
                subscription,
                name,
                ack=ack,
                credential_expires_at=principal.expires_at,
                selector=selector,
            )
            self.presence.changed("Topic", name, started=True)
            return None
        if kind == "topic":
            assert durable is not None
            names.validate_queue_name(durable)
            self._topics.check_receive(principal, name)
            # everything that can refuse is asked before anything is created
            resumed = self._topics.resume(principal, name, durable, selector)
            self._queues.open_for_receive(principal, durable)
            if resumed is None:
                self._topics.subscribe(
                    principal,
                    name,
                    durable,
                    SubscriptionSettings(queue=durable, selector=selector, start=start),
                    as_consumer=True,
                )
            queue = durable
            selector = None  # the topic filters what reaches its queue
        else:
            queue = name
        consumer = Consumer(
            queue=queue,
            connection=connection,
            subscription=subscription,
            ack=ack,
            prefetch=prefetch,
            principal=principal.id,
            destination=destination,
            selector=selector,
        )
        stored = self.consumers.add(principal, consumer)
        self.live.add_queue_subscription(
            connection.id, subscription, queue, destination, consumer=settle_fields(stored)
        )
        self.presence.changed("Queue", queue, started=True)
        return queue

    def unsubscribe(
        self, info: ConnectionInfo, subscription: str, *, durable: str | None = None
    ) -> str | None:
        """Drop a subscription; returns the queue to `pump` (its leases went back), if any.

        Naming the `durable` subscription of a topic subscription deletes that durable
        subscription too (its queue and messages stay), as ActiveMQ's UNSUBSCRIBE does.
        """
        check_client_id(subscription, "subscription id")
        record = self.live.unsubscribe(info.connection.id, subscription)
        if record is None:
            raise InvalidRequest(f"no subscription {subscription!r} on this connection")
        destination = str(record.get("destination", ""))
        if durable and destination.startswith("/topic/"):
            self._topics.unsubscribe(
                info.acting_as, destination[len("/topic/") :], durable, as_consumer=True
            )
        if record["kind"] != "queue":
            self.presence.changed("Topic", str(record.get("pattern", "")), started=False)
            return None
        consumer = self.consumers.get(record["queue"], info.connection.id, subscription)
        if consumer is None:
            return None
        self.consumers.remove(consumer)
        self.presence.changed("Queue", consumer.queue, started=False)
        return consumer.queue

    # ---- temporary queues ----------------------------------------------------------------

    def _with_reply_to(self, info: ConnectionInfo, message: NewMessage) -> NewMessage:
        """A message as its receiver gets it: a `reply_to` of `/temp-queue/x` (made now if
        new) becomes `/remote-temp-queue/<real name>`, a destination the receiver can send
        to, as ActiveMQ rewrites it; any other value travels unchanged."""
        if message.reply_to is None or not message.reply_to.startswith(TEMP_QUEUE):
            return message
        _, name = self._resolve(info, message.reply_to, receiving=False)
        return message.model_copy(update={"reply_to": REMOTE_TEMP_QUEUE + name})

    def _resolve(
        self, info: ConnectionInfo, destination: str, *, receiving: bool
    ) -> tuple[str, str]:
        """A destination's kind and real name; `/temp-queue/x` is the connection's own
        temporary queue (made on first use). Only the connection that made a temporary
        queue may receive from it, by whatever name it is reached."""
        connection_id = info.connection.id
        if destination.startswith(TEMP_QUEUE):
            name = names.temp_queue_name(connection_id, destination[len(TEMP_QUEUE) :])
            if not self._queues.has_queue(name):
                # recorded first: a queue the connection made is always found when it goes
                self.live.add_temp_queue(connection_id, name)
                self._queues.open_temporary(name)
            return "queue", name
        kind, name = split_destination(destination)
        owned = name.startswith(names.temp_queue_owner(connection_id))
        if receiving and kind == "queue" and names.is_temp_queue(name) and not owned:
            raise Forbidden(
                f"temporary queue {name!r} belongs to another connection: only the "
                "connection that made it may receive from it"
            )
        return kind, name

    # ---- producing and settling ----------------------------------------------------------

    def send(
        self,
        info: ConnectionInfo,
        destination: str,
        message: NewMessage,
        rule: Rule | None = None,
    ) -> SendResult:
        kind, name = self._resolve(info, destination, receiving=False)
        message = self._with_reply_to(info, message)
        principal = info.acting_as
        if kind == "topic" and name == MANAGEMENT_TOPIC and self.scheduler is not None:
            reply_to: tuple[Kind, str] | None = None
            if message.reply_to is not None:
                reply_kind, reply_name = self._resolve(info, message.reply_to, receiving=False)
                reply_to = ("topic" if reply_kind == "topic" else "queue", reply_name)
            done = self.scheduler.manage(principal, message, reply_to)
            return SendResult(message_id=f"{done} scheduled message(s)")
        if rule is not None and not stored(rule, "topic" if kind == "topic" else "queue"):
            # a delay within 15 minutes is the log item's own (no schedule item)
            delay = math.ceil(rule.delay_ms / 1000) or None
            message = message.model_copy(update={"delay_seconds": delay})
            rule = None
        if rule is not None:
            if self.scheduler is None:
                raise InvalidRequest("scheduled delivery is not available here")
            if kind == "topic":
                return self.scheduler.send(principal, "topic", name, message, rule)
            return self.scheduler.send(principal, "queue", name, message, rule)
        if kind == "topic":
            return self._topics.publish(principal, name, message)
        return self._queues.send(principal, name, message)

    def settle(self, info: ConnectionInfo, settle: Settle) -> tuple[SettleReport, str | None]:
        """Ack or nack a pushed message (a topic message needs none: that is a no-op).

        Returns what was settled and the queue to `pump` (credit was freed that held
        messages back: `SettleReport.refill`), if any.
        """
        connection_id = info.connection.id
        ack: AckId | None = None
        if settle.ack_id is not None:
            ack = parse_ack_id(settle.ack_id)
            candidates = [ack.subscription]
        elif settle.subscription is not None:
            candidates = [check_client_id(settle.subscription, "subscription id")]
        else:  # STOMP 1.0 names the message only
            candidates = [s["id"] for s in self.live.subscriptions(connection_id)]
        for subscription in candidates:
            record = self.live.subscription(connection_id, subscription, read_with=info)
            if record is None:
                if len(candidates) == 1:
                    raise NotInFlight(f"no subscription {subscription!r} on this connection")
                continue
            if record["kind"] == "topic":
                if len(candidates) == 1:
                    return SettleReport(settled=0, stale=0), None
                continue
            consumer = self._consumer_of(info, record)
            if consumer is None:
                continue
            try:
                report = self.consumers.settle(
                    consumer,
                    ack=ack,
                    message_id=settle.message_id,
                    nack=settle.nack,
                    delay_seconds=settle.delay_seconds,
                    # the credit a nack frees pulls the next message, not the refused one
                    before_release=partial(self.try_pump, consumer.queue),
                )
            except NotInFlight:
                if len(candidates) == 1:
                    raise
                continue
            return report, consumer.queue if report.refill else None
        raise NotInFlight(f"message {settle.message_id!r} is not in flight on this connection")

    def _consumer_of(self, info: ConnectionInfo, record: dict[str, Any]) -> Consumer | None:
        """The push consumer a queue subscription's record names: from the copy the record
        carries when it has one (no read), else from the consumer's own record."""
        fields = record.get("consumer")
        if isinstance(fields, dict):
            return from_settle_fields(
                str(record["queue"]),
                info.connection,
                str(record["id"]),
                str(record.get("destination") or f"/queue/{record['queue']}"),
                fields,
            )
        return self.consumers.get(record["queue"], info.connection.id, record["id"])

    # ---- feeding -------------------------------------------------------------------------

    def pump(self, queue: str, *, indexed: frozenset[int] | None = None) -> PumpReport:
        """Feed a queue's push consumers; connections found gone are closed. `indexed`:
        the dispatch function's pump, for what it indexed in these shards (`consumers.pump`)."""
        report = self.consumers.pump(queue, indexed=indexed)
        if report.gone:
            self._close_all(report.gone)
        if report.more:
            self._queues.wake(queue)  # a stream record brings the next pump
        return report

    def plan_push(self, queue: str) -> PushPlan | None:
        """Before the dispatch function appends a queue's new messages: a push consumer to
        lease them to in the append, if one may take them (`consumers.plan_push`)."""
        return self.consumers.plan_push(queue)

    def push_leased(self, plan: PushPlan, images: Mapping[tuple[str, str], Item]) -> bool:
        """Push what the dispatch function appended leased to the plan's consumer; whether
        that was everything it appended to the queue and all of it went out (so no pump
        is needed: nothing of it is left, and what else is visible had its own pump)."""
        report = self.consumers.push_leased(plan, images)
        if report.gone:
            self._close_all(report.gone)
        lease = plan.lease
        return (
            lease.appended > 0
            and len(lease.leased) == lease.appended
            and report.pushed == lease.appended
            and not report.gone
            and not report.failed
        )

    def try_pump(self, queue: str, *, indexed: frozenset[int] | None = None) -> None:
        """`pump` after answering a client frame: a failure is logged, not the frame's.

        Nothing is lost when a pump fails: its leases go back to the queue, and the next
        pump (a new message, an ack, the sweeper) tries again.
        """
        try:
            self.pump(queue, indexed=indexed)
        except Exception:
            logger.exception("feeding push consumers failed", extra={"queue": queue})

    def pump_all(self) -> FeedReport:
        """Feed every queue's consumers (the sweeper: expired leases, ended delays).

        Each queue on its own: one that fails is logged and reported, the next ones are
        still fed (nothing is lost: a failed pump's leases went back to its queue).
        """
        report = FeedReport()
        for queue in self._queues.queue_names():
            try:
                if self.consumers.consumers(queue):
                    report.pushed += self.pump(queue).pushed
            except Exception as exc:
                logger.exception("feeding push consumers failed", extra={"queue": queue})
                report.errors.append(f"{queue}: {_reason(exc)}")
        return report

    def push_published(self, items: Sequence[Item]) -> int:
        """Push published topic messages to live subscribers, packed per connection.

        Live pushes are at most once, and each message and each connection stands alone:
        a message that cannot be read, a subscriber that cannot be sent a message (logged
        and counted as `Undeliverable`) or a connection whose post fails costs no other
        subscriber any message.
        """
        by_connection: dict[Connection, list[Push]] = {}
        index = self.live.index() if items else None
        for item in items:
            assert index is not None
            try:
                topic = published_topic(item)
                targets = index.match(topic)
                prepared = self._live_pushes(item, topic, targets) if targets else []
            except IntegrityError as exc:
                logger.error(
                    "published message failed authentication; not pushed",
                    extra={"message_id": str(item.get("id")), "reason": exc.message},
                )
                continue
            except Exception:
                logger.exception(
                    "a published message could not be prepared for live subscribers",
                    extra={"message_id": str(item.get("id"))},
                )
                continue
            for target, push in prepared:
                by_connection.setdefault(target.connection, []).append(push)
        sent = 0
        gone: set[str] = set()
        for connection, pushes in by_connection.items():
            try:
                sent += self._push_live(connection, pushes, gone)
            except Exception:
                logger.exception(
                    "pushing to a live subscriber failed",
                    extra={"connection_id": connection.id, "messages": len(pushes)},
                )
        if gone:
            self._close_all(gone)  # closed without $disconnect reaching us: tidy up
        return sent

    def _live_pushes(
        self, image: Item, topic: str, targets: Sequence[LiveTarget]
    ) -> list[tuple[LiveTarget, Push]]:
        """The pushes of every body of a published log item (one that fails authentication
        is logged and skipped alone)."""
        item = self._log.log_item(image)
        now = self._clock.now_ms()
        pushes: list[tuple[LiveTarget, Push]] = []
        for slot in range(len(item.bodies)):
            message_id = keys.message_id(item.item, slot)
            try:
                opened = open_logged(self._cipher, item, slot, now_ms=now)
            except IntegrityError as exc:
                logger.error(
                    "published message failed authentication; not pushed",
                    extra={"topic": topic, "message_id": message_id, "reason": exc.message},
                )
                continue
            headers = opened.headers
            selected = message_lookup(
                message_id=message_id,
                sent_at=keys.id_time_ms(item.item),
                attributes=headers.attributes,
                correlation_id=headers.correlation_id,
                group_id=item.group,
                priority=headers.priority,
            )
            pushes.extend(
                (
                    target,
                    Push(
                        subscription=target.subscription,
                        destination=f"/topic/{topic}",
                        message_id=message_id,
                        body=opened.body,
                        binary=headers.binary,
                        # live topic messages need no ack; one is accepted (and ignored)
                        ack=None if target.ack == "auto" else str(AckId(target.subscription)),
                        attributes=dict(headers.attributes),
                        content_type=headers.content_type,
                        correlation_id=headers.correlation_id,
                        reply_to=headers.reply_to,
                        sent_at=keys.id_time_ms(item.item),
                        priority=headers.priority,
                    ),
                )
                for target in targets
                if selectors.matches(target.selector, selected)
            )
        return pushes

    def _push_live(self, connection: Connection, pushes: list[Push], gone: set[str]) -> int:
        """Post one connection's live messages; a message it cannot be sent is skipped."""
        rendered = render(connection, pushes)
        for position, reason in rendered.refused.items():
            push = pushes[position]
            topic = push.destination[len("/topic/") :]
            metrics.count("Undeliverable", topic=topic)
            logger.warning(
                "a live subscriber cannot be sent a message; it skips that one",
                extra={
                    "topic": topic,
                    "message_id": push.message_id,
                    "connection_id": connection.id,
                    "subscription": push.subscription,
                    "reason": reason,
                },
            )
        for text in rendered.messages:
            if not self.pusher.post(connection.id, text.encode()):
                gone.add(connection.id)
                return 0
        now = self._clock.now_ms()
        delivered = [p for i, p in enumerate(pushes) if i not in rendered.refused]
        for push in delivered:
            topic = push.destination[len("/topic/") :]
            metrics.count("Delivered", topic=topic)
            metrics.latency(now - push.sent_at, topic=topic)
        return len(delivered)

    # ---- transactions --------------------------------------------------------------------

    def begin(self, info: ConnectionInfo, transaction: str) -> None:
        open_now = list(
            partition_items(self._db, self._table, f"CONN#{info.connection.id}", prefix="TX#")
        )
        if len(open_now) >= MAX_OPEN_TRANSACTIONS:
            raise InvalidRequest(
                f"a connection may have at most {MAX_OPEN_TRANSACTIONS} open transactions"
            )
        begun = {
            **self._tx_key(info, transaction),
            "frames": 0,
            "expires_at": self._clock.now_ms() // 1000 + 3 * 60 * 60,
        }
        if not put_if_absent(self._db, self._table, begun):
            raise Conflict(f"transaction {transaction!r} has already begun")

    def hold_send(
        self, info: ConnectionInfo, transaction: str, destination: str, message: NewMessage
    ) -> None:
        # refuse a bad or forbidden destination now, so a COMMIT applies all or nothing
        kind, name = self._resolve(info, destination, receiving=False)
        if kind == "topic":
            self._topics.check_publish(info.acting_as, name)
        else:
            self._queues.check_send(info.acting_as, name)
        message = self._with_reply_to(info, message)
        position = self._next_position(info, transaction)
        sealed = self._cipher.encrypt(
            message.body,
            destination=TRANSACTION_KEY_DESTINATION,
            message_id=self._held_id(info, transaction, position),
            header=message.model_dump_json(exclude={"body"}, exclude_none=True).encode(),
        )
        self._hold(
            info,
            transaction,
            position,
            {
                "op": "send",
                "destination": destination,
                "body": sealed.ciphertext,
                "dk": sealed.encrypted_key,
            },
        )

    def hold_settle(self, info: ConnectionInfo, transaction: str, settle: Settle) -> None:
        position = self._next_position(info, transaction)
        fields = {
            "ack_id": settle.ack_id,
            "subscription": settle.subscription,
            "message_id": settle.message_id,
            "nack": settle.nack,
            "delay_seconds": settle.delay_seconds,
        }
        self._hold(info, transaction, position, {"op": "settle", "settle": fields})

    def commit(self, info: ConnectionInfo, transaction: str) -> set[str]:
        """Apply the held frames in order; returns the queues to `pump`."""
        held = self._held(info, transaction)
        to_pump: set[str] = set()
        for item in held:
            if item["op"] == "send":
                opened = self._cipher.decrypt(
                    Sealed(ciphertext=item["body"], encrypted_key=item["dk"]),
                    destination=TRANSACTION_KEY_DESTINATION,
                    message_id=self._held_id(info, transaction, int(item["position"])),
                )
                # format 0x01 held the fields in the clear, beside the sealed body
                fields = (
                    dict(item.get("message") or {})
                    if opened.version == LEGACY_FORMAT_VERSION
                    else json.loads(opened.header)
                )
                message = NewMessage.model_validate({**fields, "body": opened.body})
                self.send(info, str(item["destination"]), message)
            else:
                fields = dict(item["settle"])
                fields["delay_seconds"] = int(fields.get("delay_seconds") or 0)
                _, queue = self.settle(info, Settle(**fields))
                if queue is not None:
                    to_pump.add(queue)
        self._end(info, transaction, held)
        return to_pump

    def abort(self, info: ConnectionInfo, transaction: str) -> int:
        held = self._held(info, transaction)
        self._end(info, transaction, held)
        return len(held)

    def _tx_key(self, info: ConnectionInfo, transaction: str) -> dict[str, str]:
        # every transaction operation starts here: no longer name reaches a key
        check_client_id(transaction, "transaction name")
        return {"pk": f"CONN#{info.connection.id}", "sk": f"TX#{_tag(transaction)}"}

    def _held_id(self, info: ConnectionInfo, transaction: str, position: int) -> str:
        return f"{info.connection.id}/{_tag(transaction)}/{position}"

    def _next_position(self, info: ConnectionInfo, transaction: str) -> int:
        try:
            with translated_errors():
                updated = self._db.update_item(
                    TableName=self._table,
                    Key=to_wire(self._tx_key(info, transaction)),
                    UpdateExpression="SET frames = frames + :one",
                    ConditionExpression="attribute_exists(pk) AND frames < :max",
                    ExpressionAttributeValues=to_wire({":one": 1, ":max": MAX_TRANSACTION_FRAMES}),
                    ReturnValues="UPDATED_NEW",
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if self._tx_exists(info, transaction):
                raise InvalidRequest(
                    f"transaction {transaction!r} holds {MAX_TRANSACTION_FRAMES} frames, "
                    "the most one may hold"
                ) from exc
            raise UnknownTransaction(
                f"transaction {transaction!r} has not begun on this connection"
            ) from exc
        return int(from_wire(updated["Attributes"])["frames"])

    def _tx_exists(self, info: ConnectionInfo, transaction: str) -> bool:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(self._tx_key(info, transaction)),
                ConsistentRead=True,
            )
        return "Item" in found

    def _hold(
        self, info: ConnectionInfo, transaction: str, position: int, fields: dict[str, Any]
    ) -> None:
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(
                    {
                        "pk": f"CONN#{info.connection.id}",
                        "sk": f"TXOP#{_tag(transaction)}#{position:06d}",
                        "position": position,
                        "expires_at": self._clock.now_ms() // 1000 + 3 * 60 * 60,
                        **fields,
                    }
                ),
            )

    def _held(self, info: ConnectionInfo, transaction: str) -> list[Item]:
        if not self._tx_exists(info, transaction):
            raise UnknownTransaction(
                f"transaction {transaction!r} has not begun on this connection"
            )
        return list(
            partition_items(
                self._db,
                self._table,
                f"CONN#{info.connection.id}",
                prefix=f"TXOP#{_tag(transaction)}#",
            )
        )

    def _end(self, info: ConnectionInfo, transaction: str, held: Iterable[Item]) -> None:
        keys = [self._tx_key(info, transaction)] + [{"pk": i["pk"], "sk": i["sk"]} for i in held]
        batch_write(
            self._db,
            self._table,
            [{"DeleteRequest": {"Key": to_wire(k)}} for k in keys],
        )


def _tag(name: str) -> str:
    return f"{len(name)}:{name}"
