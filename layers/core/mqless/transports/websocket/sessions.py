"""What a WebSocket connection's frames do, whatever protocol it speaks (JSON or STOMP).

Both protocols map their frames onto these operations: subscribe to a topic (live) or a
queue (push consumer; a durable topic subscription is a push consumer of its queue),
unsubscribe, send, ack/nack, transactions (`transactions.py`). Frames of one connection
arrive as separate Lambda invocations, so all session state is stored with the connection
(`storage/connection_store.py`). Destinations and temporary queues are `destinations.py`'s;
opening, closing and feeding connections `connections.py`'s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from mqless.domain import names
from mqless.domain.access.principals import Principal
from mqless.domain.errors import Conflict, InvalidRequest
from mqless.domain.ids import check_client_id
from mqless.domain.messages import NewMessage, SendResult
from mqless.domain.push.ack_ids import AckId, parse_ack_id
from mqless.domain.push.consumer import DEFAULT_PREFETCH, AckMode, Consumer
from mqless.domain.push.settling import NotInFlight, SettleReport
from mqless.storage.connections import ConnectionInfo
from mqless.storage.push_consumers import from_settle_fields, settle_fields
from mqless.transports.websocket.connections import Connections
from mqless.transports.websocket.transactions import HeldSend

if TYPE_CHECKING:
    from mqless.domain.scheduling import Kind
    from mqless.storage.schedules import Rule


class _NextCandidate(Exception):
    """STOMP 1.0 acks by message id: the message is not this subscription's, try the next."""


@dataclass(frozen=True)
class Settle:
    """An ack or nack as a client gave it: by ack id, or by message id (STOMP 1.0/1.1)."""

    ack_id: str | None = None
    subscription: str | None = None
    message_id: str | None = None
    nack: bool = False
    delay_seconds: int = 0


def _incarnation(record: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What tells one push consumer of a subscription id from the next: its queue and the
    epoch drawn when it subscribed (`Consumer.epoch`)."""
    if record is None:
        return None
    consumer = record.get("consumer")
    epoch = consumer.get("epoch") if isinstance(consumer, dict) else None
    return (record["kind"], record.get("queue"), epoch)


def _check_start(start: str | None, *, durable_topic: bool) -> None:
    """A start (replay) is for a durable topic subscription only."""
    # the topic subscription's module loads with a subscription, not to feed consumers
    from mqless.domain.topics.subscription import START_NOW

    if start not in (None, START_NOW) and not durable_topic:
        raise InvalidRequest(
            "a start (replay) is for a durable topic subscription: name one "
            "(STOMP 'activemq.subscriptionName', JSON 'durable')"
        )


class Sessions(Connections):
    """The broker as WebSocket connections see it: what their frames do."""

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
        # the selector module loads with a subscription, not to feed consumers
        from mqless.domain import selectors

        selector = selectors.check(selector)
        kind, name = self._destinations.resolve(info, destination, receiving=True)
        connection = info.connection
        principal = info.acting_as
        _check_start(start, durable_topic=kind == "topic" and durable is not None)
        if self.live.subscription(connection.id, subscription) is not None:
            raise Conflict(f"subscription id {subscription!r} is already in use on this connection")
        if kind == "topic" and durable is None:
            self._subscribe_live(info, subscription, name, ack=ack, selector=selector)
            return None
        queue = name
        if kind == "topic":
            assert durable is not None
            queue = self._open_durable(principal, name, durable, selector, start)
            selector = None  # the topic filters what reaches its queue
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
        self._add_consumer(principal, consumer)
        return queue

    def _add_consumer(self, principal: Principal, consumer: Consumer) -> None:
        """A push consumer of its queue, noted on its connection with what settling needs."""
        stored = self.consumers.add(principal, consumer)
        self.live.add_queue_subscription(
            consumer.connection.id,
            consumer.subscription,
            consumer.queue,
            consumer.destination,
            consumer=settle_fields(stored),
        )
        self.presence.changed("Queue", consumer.queue, started=True)

    def _subscribe_live(
        self,
        info: ConnectionInfo,
        subscription: str,
        pattern: str,
        *,
        ack: str,
        selector: str | None,
    ) -> None:
        """A live topic subscription: pushed what is published from now on, at most once."""
        principal = info.acting_as
        self._topics.check_receive(principal, pattern)
        self.live.subscribe(
            info.connection,
            subscription,
            pattern,
            ack=ack,
            credential_expires_at=principal.expires_at,
            selector=selector,
        )
        self.presence.changed("Topic", pattern, started=True)

    def _open_durable(
        self,
        principal: Principal,
        topic: str,
        durable: str,
        selector: str | None,
        start: str | None,
    ) -> str:
        """The queue of the durable subscription `durable` of `topic`, made if new; a push
        consumer then reads it."""
        from mqless.domain.topics.subscription import SubscriptionSettings

        names.validate_queue_name(durable)
        self._topics.check_receive(principal, topic)
        # everything that can refuse is asked before anything is created
        resumed = self._topics.resume(principal, topic, durable, selector)
        self._queues.open_for_receive(principal, durable)
        if resumed is None:
            self._topics.subscribe(
                principal,
                topic,
                durable,
                SubscriptionSettings(queue=durable, selector=selector, start=start),
                as_consumer=True,
            )
        return durable

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

    # ---- producing and settling ----------------------------------------------------------

    def send(
        self,
        info: ConnectionInfo,
        destination: str,
        message: NewMessage,
        rule: Rule | None = None,
    ) -> SendResult:
        from mqless.domain.scheduling import MANAGEMENT_TOPIC, stored  # with the first send

        kind, name = self._destinations.resolve(info, destination, receiving=False)
        message = self._destinations.with_reply_to(info, message)
        principal = info.acting_as
        if kind == "topic" and name == MANAGEMENT_TOPIC and self.scheduler is not None:
            reply_to: tuple[Kind, str] | None = None
            if message.reply_to is not None:
                reply_to = self._destinations.resolve(info, message.reply_to, receiving=False)
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
        # only a queue message's ack (its ack id, or a subscription and message id) takes a
        # remembered record: topic subscriptions are not remembered (a remembered queue one
        # may since have been replaced by one), and STOMP 1.0 read them all already
        queue_ack = ack.seq is not None if ack is not None else settle.subscription is not None
        read_with = info if queue_ack or not info.remembered else None
        for subscription in candidates:
            record = self.live.subscription(connection_id, subscription, read_with=read_with)
            try:
                return self._settle_with(info, record, subscription, ack, settle, len(candidates))
            except NotInFlight:
                if record is None or not info.remembered:
                    raise
                # remembered: another process may have subscribed again under this id since
                # (`storage/remembered_connections.py`): settle by what is stored now
                fresh = self.live.subscription(connection_id, subscription)
                if _incarnation(fresh) == _incarnation(record):
                    raise
                return self._settle_with(info, fresh, subscription, ack, settle, len(candidates))
            except _NextCandidate:
                continue
        raise NotInFlight(f"message {settle.message_id!r} is not in flight on this connection")

    def _settle_with(
        self,
        info: ConnectionInfo,
        record: dict[str, Any] | None,
        subscription: str,
        ack: AckId | None,
        settle: Settle,
        candidates: int,
    ) -> tuple[SettleReport, str | None]:
        """Settle through one subscription's record (`settle`); _NextCandidate when the
        message may be another candidate subscription's."""
        if record is None:
            if candidates == 1:
                raise NotInFlight(f"no subscription {subscription!r} on this connection")
            raise _NextCandidate
        if record["kind"] == "topic":
            if candidates == 1:
                return SettleReport(settled=0, stale=0), None
            raise _NextCandidate
        consumer = self._consumer_of(info, record)
        if consumer is None:
            raise _NextCandidate
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
            if candidates == 1:
                raise
            raise _NextCandidate from None
        return report, consumer.queue if report.refill else None

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

    # ---- transactions --------------------------------------------------------------------

    def begin(self, info: ConnectionInfo, transaction: str) -> None:
        self.transactions.begin(info, transaction)

    def hold_send(
        self, info: ConnectionInfo, transaction: str, destination: str, message: NewMessage
    ) -> None:
        # refuse a bad or forbidden destination now, so a COMMIT applies all or nothing
        kind, name = self._destinations.resolve(info, destination, receiving=False)
        if kind == "topic":
            self._topics.check_publish(info.acting_as, name)
        else:
            self._queues.check_send(info.acting_as, name)
        message = self._destinations.with_reply_to(info, message)
        self.transactions.hold_send(info, transaction, destination, message)

    def hold_settle(self, info: ConnectionInfo, transaction: str, settle: Settle) -> None:
        self.transactions.hold_settle(info, transaction, dataclasses.asdict(settle))

    def commit(self, info: ConnectionInfo, transaction: str) -> set[str]:
        """Apply the held frames in order; returns the queues to `pump`."""
        held = self.transactions.held(info, transaction)
        to_pump: set[str] = set()
        for item in held:
            frame = self.transactions.open(info, transaction, item)
            if isinstance(frame, HeldSend):
                self.send(info, frame.destination, frame.message)
                continue
            _, queue = self.settle(info, Settle(**frame.fields))
            if queue is not None:
                to_pump.add(queue)
        self.transactions.end(info, transaction, held)
        return to_pump

    def abort(self, info: ConnectionInfo, transaction: str) -> int:
        held = self.transactions.held(info, transaction)
        self.transactions.end(info, transaction, held)
        return len(held)
