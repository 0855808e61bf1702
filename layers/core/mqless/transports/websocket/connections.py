"""The WebSocket API's open connections: opening and closing them, sweeping the ended
ones, and feeding them what they subscribed to.

Closing a connection (`$disconnect`, an operator, a credential that ended, or a post that
found it gone) gives its leases back to their queues at once and deletes its temporary
queues. Feeding is the push consumers' pumps (`domain/push/consumers.py`) and the pushes
of published messages to live topic subscribers (`live_pushes.py`). What a connection's
frames do is `sessions.py`'s (`Sessions` extends `Connections`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from mqless.domain.access.principals import Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import MqlessError, NotFound, Unauthorized
from mqless.domain.push.feeding import PushPlan
from mqless.domain.push.posting import PumpReport
from mqless.domain.push.presence import Presence
from mqless.domain.push.pushes import Connection
from mqless.observability import audit
from mqless.storage.connection_sweep import ConnectionSweepIndex
from mqless.storage.connections import ConnectionInfo, EndedCredential
from mqless.storage.dynamo import Item
from mqless.storage.transactions import HeldFrames
from mqless.transports.websocket.destinations import Destinations
from mqless.transports.websocket.live_pushes import LivePushes
from mqless.transports.websocket.opening import open_connection
from mqless.transports.websocket.render import error_reply
from mqless.transports.websocket.transactions import Transactions

if TYPE_CHECKING:
    # the services, as types: a function that only feeds consumers (dispatch, the
    # sweeper) loads neither the topic service nor the scheduler (issue 18)
    from mypy_boto3_dynamodb import DynamoDBClient

    from mqless.domain.push.consumers import QueueConsumers
    from mqless.domain.queues.service import QueueService
    from mqless.domain.scheduling import Scheduler
    from mqless.domain.topics.service import TopicService
    from mqless.storage.connection_store import ConnectionStore
    from mqless.storage.log import LogStore
    from mqless.storage.sealing import BodyCipher
    from mqless.transports.websocket.pusher import Pusher


logger = Logger(service="mqless", child=True)


@dataclass
class FeedReport:
    """What feeding every queue's push consumers did (`Sessions.pump_all`)."""

    pushed: int = 0
    errors: list[str] = field(default_factory=list)


def _reason(exc: Exception) -> str:
    """An error as a report line: the core's own message, or the exception's kind."""
    return exc.message if isinstance(exc, MqlessError) else type(exc).__name__


@dataclass
class ConnectionSweep:
    """What one sweep of connections did."""

    closed: int = 0  # connections whose credential expired or whose key was revoked
    temp_queues: int = 0  # temporary queues of connections that ended unnoticed
    errors: list[str] = field(default_factory=list)


class Connections:
    """Open connections and what feeds them (the services a session's frames use too)."""

    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        table_name: str,
        live: ConnectionStore,
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
        self._log = log
        self.live = live
        self.consumers = consumers
        self._queues = queues
        self._topics = topics
        self.pusher = pusher
        self._cipher = cipher
        self._clock = clock
        self.presence = Presence(live, consumers, topics)
        self._sweep = ConnectionSweepIndex(dynamodb, table_name, clock)
        self._destinations = Destinations(live, queues)
        self._live_pushes = LivePushes(live, log, cipher, pusher, clock)
        self.transactions = Transactions(HeldFrames(dynamodb, table_name, clock), cipher)

    @property
    def clock(self) -> Clock:
        """The broker's time (what a STOMP `expires` header is measured against)."""
        return self._clock

    # ---- connections ---------------------------------------------------------------------

    def open(self, connection: Connection, principal: Principal) -> None:
        open_connection(self.live, connection, principal)

    def info(self, connection_id: str) -> ConnectionInfo | None:
        """The connection as its frames need it (no read when this process may remember it:
        `storage/remembered_connections.py`)."""
        return self.live.for_frame(connection_id)

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
        (keyed queries: `ConnectionSweepIndex`)."""
        report = ConnectionSweep()
        # each on its own: one that fails is logged and reported (and found again by the
        # next sweep), the next ones are still closed
        for ended in self._sweep.ended_credentials():
            try:
                report.closed += self._end_credential(ended)
            except Exception as exc:
                logger.exception("closing a connection failed", extra={"ended": ended})
                report.errors.append(f"connection {ended.connection_id}: {_reason(exc)}")
        for orphan in self._sweep.orphaned_temp_queues():
            try:
                if self.live.connection(orphan.connection_id) is not None:
                    # past API Gateway's 2-hour limit: the connection ended unnoticed, and
                    # closing it now also gives back its leases and deletes its temp queues
                    self._close_all({orphan.connection_id})
                else:
                    self._queues.delete_temporary(orphan.queue)
                    self._sweep.forget_temp_queue(orphan)
                report.temp_queues += 1
            except Exception as exc:
                logger.exception("deleting a temporary queue failed", extra={"orphan": orphan})
                report.errors.append(f"{orphan.queue}: {_reason(exc)}")
        return report

    def _end_credential(self, ended: EndedCredential) -> int:
        """Close a connection whose credential ended (1), or forget a stale index item (0)."""
        info = self.live.connection(ended.connection_id)
        if info is None:
            self._sweep.forget_credential(ended)
            return 0
        # what the client is told, in the access modules' words (loaded for a sweep that
        # finds one: the authenticator's modules are no feeding function's)
        from mqless.domain.access.api_keys import KEY_EXPIRED, KEY_REVOKED
        from mqless.domain.access.authentication import JWT_EXPIRED

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

    # ---- feeding -------------------------------------------------------------------------

    def pump(
        self,
        queue: str,
        *,
        indexed: frozenset[int] | None = None,
        refill: bool = False,
        planned: PushPlan | None = None,
    ) -> PumpReport:
        """Feed a queue's push consumers; connections found gone are closed. `indexed`:
        the dispatch function's pump, for what it indexed in these shards; `refill`: the
        pump an ack's freed credit asked for; `planned`: what the dispatch function read
        of the consumers before it appended (`consumers.pump`)."""
        report = self.consumers.pump(queue, indexed=indexed, refill=refill, planned=planned)
        if report.gone:
            self._close_all(report.gone)
        if report.more:
            self._queues.wake(queue)  # a stream record brings the next pump
        return report

    def plan_push(self, queue: str) -> PushPlan | None:
        """Before the dispatch function appends a queue's new messages: its push consumers,
        and one to lease them to in the append, if one may take them
        (`consumers.plan_push`)."""
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
            lease is not None
            and lease.appended > 0
            and len(lease.leased) == lease.appended
            and report.pushed == lease.appended
            and not report.gone
            and not report.failed
        )

    def try_pump(
        self,
        queue: str,
        *,
        indexed: frozenset[int] | None = None,
        refill: bool = False,
        planned: PushPlan | None = None,
    ) -> None:
        """`pump` after answering a client frame: a failure is logged, not the frame's.

        Nothing is lost when a pump fails: its leases go back to the queue, and the next
        pump (a new message, an ack, the sweeper) tries again.
        """
        try:
            self.pump(queue, indexed=indexed, refill=refill, planned=planned)
        except Exception:
            logger.exception("feeding push consumers failed", extra={"queue": queue})

    def pump_all(self, queues: Sequence[str] | None = None) -> FeedReport:
        """Feed every queue's consumers (the sweeper: expired leases, ended delays);
        `queues`: every queue as the caller has just listed them (the sweeper's sweep), so
        that they are not listed again.

        Each queue on its own: one that fails is logged and reported, the next ones are
        still fed (nothing is lost: a failed pump's leases went back to its queue).
        """
        report = FeedReport()
        for queue in self._queues.queue_names() if queues is None else queues:
            try:
                if self.consumers.consumers(queue):
                    report.pushed += self.pump(queue).pushed
            except Exception as exc:
                logger.exception("feeding push consumers failed", extra={"queue": queue})
                report.errors.append(f"{queue}: {_reason(exc)}")
        return report

    def push_published(self, items: Sequence[Item]) -> int:
        """Push published topic messages to live subscribers (`live_pushes.py`); the
        connections found gone are closed."""
        sent, gone = self._live_pushes.push(items)
        if gone:
            self._close_all(gone)  # closed without $disconnect reaching us: tidy up
        return sent
