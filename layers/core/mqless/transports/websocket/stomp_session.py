"""STOMP 1.0/1.1/1.2 sessions over the WebSocket API, as ActiveMQ's WebSocket connector.

Each WebSocket message is decoded (`stomp_frames.decode_frames`), its frames are checked
(`stomp_headers.py`) and acted on in order through `Sessions`, and the answers
(CONNECTED, RECEIPT, ERROR) are posted back; MESSAGE frames come from the pushes
(`domain/push/`, `render.py`).

Behaviour a client can count on:
- The subprotocol (`v12.stomp`, `v11.stomp`, `v10.stomp`) is chosen in `$connect`; CONNECT
  (or STOMP) then negotiates the version from `accept-version`. A client that offered no
  subprotocol but opens with CONNECT is served too.
- Heart-beats: the server sends none (a Lambda cannot beat on a timer) and asks for one
  every 5 minutes (`heart-beat:0,300000`), enough to keep API Gateway's 10-minute idle
  timeout away; client beats are accepted and ignored.
- Destinations are `/queue/NAME` and `/topic/NAME` (ActiveMQ wildcards in topic
  subscriptions). SUBSCRIBE honours `ack`, `activemq.prefetchSize` and `prefetch-count`
  (default 10, at most 1000), and `activemq.subscriptionName` for a durable topic
  subscription (its queue has the subscription's name; UNSUBSCRIBE with the same header
  deletes it). `selector` takes a JMS message selector (`selectors.py`); a bad one gets an
  ERROR naming the position. `x-stream-offset` (RabbitMQ streams' header: `first`, `next`,
  `timestamp=<epoch seconds>`) starts a new durable subscription with what the topic still
  holds (`domain/topics/service.py`, replay).
- Request/reply as ActiveMQ: `/temp-queue/NAME` is a queue private to this connection
  (`destinations.py`), made on first use and deleted when the connection goes; a SEND's
  `reply-to: /temp-queue/NAME` reaches its receiver as `/remote-temp-queue/<real name>`,
  which it may SEND to (with `send` on `temp-queue.>`); only the maker may SUBSCRIBE.
- SEND maps `content-type`, `correlation-id`, `reply-to`, `JMSXGroupID` (FIFO group),
  ActiveMQ's `AMQ_SCHEDULED_DELAY` (ms, rounded up to seconds), `AMQ_SCHEDULED_PERIOD`,
  `AMQ_SCHEDULED_REPEAT` and `AMQ_SCHEDULED_CRON` (`scheduling.py`; a SEND to
  `/topic/ActiveMQ.Scheduler.Management` browses or removes schedules), `expires` (epoch
  ms) and every other header (an attribute) onto the message; `priority` (JMS 0-9, as
  ActiveMQ takes it) orders delivery in a queue with `max_priority` and travels with the
  message; `persistent` is accepted and ignored (every message is persistent). A header no
  attribute may be (a name starting with `mqless-`, one the broker sets on MESSAGE frames
  such as `message-id`, a control character) is refused with an ERROR naming it.
- Subscription ids and transaction names become part of storage keys: longer than
  128 characters, they are refused with an ERROR naming the header.
- BEGIN/COMMIT/ABORT hold SEND, ACK and NACK frames until COMMIT (`transactions.py`).
- Any frame but CONNECT may ask for a RECEIPT. An error gets an ERROR frame (with
  `receipt-id` when the frame asked for a receipt) and the connection is closed, as the
  spec says, except an ACK/NACK for a message that is no longer in flight: like
  ActiveMQ, the server answers ERROR and keeps the session, since the message was
  redelivered anyway and closing would throw back every other message held.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Final, NoReturn

from aws_lambda_powertools import Logger

from mqless.domain import models
from mqless.domain.errors import MqlessError, StaleReceipt, Throttled
from mqless.domain.push.feeding import PushPlan
from mqless.domain.push.pushes import Connection
from mqless.domain.push.settling import NotInFlight
from mqless.storage.connections import ConnectionInfo
from mqless.transports.websocket.sessions import Sessions, Settle
from mqless.transports.websocket.stomp_frames import (
    Frame,
    StompError,
    decode_frames,
    encode_frame,
)
from mqless.transports.websocket.stomp_headers import (
    ack_mode,
    check_key_headers,
    durable_name,
    message_of,
    prefetch,
    required,
    schedule_of,
    stream_offset,
    validate,
)
from mqless.transports.websocket.stomp_negotiation import negotiate_version, parse_heartbeat

logger = Logger(service="mqless", child=True)

SERVER: Final = "mqless/1"
CLIENT_HEARTBEAT_MS: Final = 300_000  # what we ask of clients: one beat per 5 minutes


def looks_like_connect(text: str) -> bool:
    """Does a message on a connection without a subprotocol open a STOMP session?"""
    head = text.lstrip("\r\n")
    return head.startswith(("CONNECT\n", "CONNECT\r\n", "STOMP\n", "STOMP\r\n"))


class _Fatal(Exception):
    """Stop processing this message; the ERROR has been sent and the socket closed."""


class StompSession:
    """One WebSocket message's worth of STOMP frames for one connection."""

    def __init__(self, sessions: Sessions, info: ConnectionInfo) -> None:
        self._sessions = sessions
        self._info = info
        self._to_pump: set[str] = set()
        # queues to pump for something else than an ACK's freed credit (`Feeder.pump`)
        self._not_refills: set[str] = set()
        # what an ACK counted its consumer holding: its pump counts no credit again
        self._counted: dict[str, PushPlan] = {}

    @property
    def _version(self) -> str:
        return self._info.connection.version

    def handle(self, text: str) -> None:
        try:
            try:
                frames = decode_frames(text, version=self._version)
            except StompError as exc:
                self._fatal(exc.message, None)
            for frame in frames:
                self._one(frame)
        except _Fatal:
            return
        for queue in sorted(self._to_pump):
            self._sessions.try_pump(
                queue, refill=queue not in self._not_refills, planned=self._counted.get(queue)
            )

    def _one(self, frame: Frame) -> None:
        receipt = frame.header("receipt") if frame.command != "CONNECT" else None
        try:
            validate(frame, version=self._version)
            if frame.command in ("CONNECT", "STOMP"):
                self._connect(frame)
                return
            if not self._info.stomp_connected:
                raise StompError(f"send CONNECT first; {frame.command} came before it")
            check_key_headers(frame)
            handler = self._handlers()[frame.command]
            handler(frame)
        except (NotInFlight, StaleReceipt) as exc:
            self._send(_error(exc.message, receipt, frame))
            return
        except Throttled:
            # the handler tells the client to retry, once (closing here would be throttled
            # too, and the client told twice)
            raise
        except MqlessError as exc:
            self._fatal(exc.message, receipt, frame)
        if frame.command == "DISCONNECT":
            if receipt is not None:
                self._send(Frame("RECEIPT", (("receipt-id", _header_safe(receipt)),)))
            self._sessions.close(self._info.connection.id)
            self._sessions.pusher.close(self._info.connection.id)
            raise _Fatal
        if receipt is not None:
            self._send(Frame("RECEIPT", (("receipt-id", _header_safe(receipt)),)))

    def _handlers(self) -> dict[str, Callable[[Frame], None]]:
        return {
            "SEND": self._send_frame,
            "SUBSCRIBE": self._subscribe,
            "UNSUBSCRIBE": self._unsubscribe,
            "ACK": lambda f: self._settle(f, nack=False),
            "NACK": lambda f: self._settle(f, nack=True),
            "BEGIN": lambda f: self._sessions.begin(self._info, required(f, "transaction")),
            "COMMIT": self._commit,
            "ABORT": self._abort,
            "DISCONNECT": lambda f: None,
        }

    # ---- frames --------------------------------------------------------------------------

    def _connect(self, frame: Frame) -> None:
        if self._info.stomp_connected:
            raise StompError("this session is already connected; CONNECT only once")
        version = negotiate_version(frame.header("accept-version"))
        parse_heartbeat(frame.header("heart-beat"))  # a malformed one is an error
        connection_id = self._info.connection.id
        self._sessions.live.stomp_connected(connection_id, version)
        self._info = dataclasses.replace(
            self._info,
            connection=Connection(id=connection_id, protocol="stomp", version=version),
            stomp_connected=True,
        )
        headers: tuple[tuple[str, str], ...] = (
            ("version", version),
            ("heart-beat", f"0,{CLIENT_HEARTBEAT_MS}"),
            ("server", SERVER),
            ("session", connection_id),
        )
        self._send(Frame("CONNECTED", headers))

    def _send_frame(self, frame: Frame) -> None:
        destination = required(frame, "destination")
        message = message_of(frame, self._sessions.clock.now_ms())
        rule = schedule_of(frame)
        transaction = frame.header("transaction")
        if transaction is not None:
            if rule is not None:
                if rule.cron or rule.repeat or rule.delay_ms > models.MAX_DELAY_SECONDS * 1000:
                    raise StompError(
                        "a SEND in a transaction may be delayed up to "
                        f"{models.MAX_DELAY_SECONDS * 1000} ms, not scheduled further "
                        "(AMQ_SCHEDULED_PERIOD, _REPEAT, _CRON)"
                    )
                delay = math.ceil(rule.delay_ms / 1000) or None
                message = message.model_copy(update={"delay_seconds": delay})
            self._sessions.hold_send(self._info, transaction, destination, message)
        else:
            self._sessions.send(self._info, destination, message, rule)

    def _subscribe(self, frame: Frame) -> None:
        destination = required(frame, "destination")
        subscription = frame.header("id") or destination  # STOMP 1.0 ids are optional
        durable = durable_name(frame)
        self._subscriptions_changed()
        if not destination.startswith("/topic/"):
            durable = None
        queue = self._sessions.subscribe(
            self._info,
            subscription,
            destination,
            ack=ack_mode(frame.header("ack")),
            prefetch=prefetch(frame),
            durable=durable,
            selector=frame.header("selector"),
            start=stream_offset(frame),
        )
        if queue is not None:
            self._pump_after(queue)

    def _unsubscribe(self, frame: Frame) -> None:
        subscription = frame.header("id") or required(frame, "destination")
        self._subscriptions_changed()
        queue = self._sessions.unsubscribe(self._info, subscription, durable=durable_name(frame))
        if queue is not None:
            self._pump_after(queue)

    def _subscriptions_changed(self) -> None:
        """Later frames of this message must not trust the subscriptions read with the
        connection: they are read again where needed."""
        self._info = dataclasses.replace(self._info, subscriptions=None)

    def _settle(self, frame: Frame, *, nack: bool) -> None:
        if self._version == "1.2":
            settle = Settle(ack_id=required(frame, "id"), nack=nack)
        else:
            settle = Settle(
                subscription=frame.header("subscription"),
                message_id=required(frame, "message-id"),
                nack=nack,
            )
        transaction = frame.header("transaction")
        if transaction is not None:
            self._sessions.hold_settle(self._info, transaction, settle)
            return
        report, queue = self._sessions.settle(self._info, settle)
        if queue is not None:
            self._pump_after(queue, refill=not nack)
            if report.counted is not None:  # the latest count: acks only take from it
                self._counted[queue] = report.counted
        if report.stale:
            raise StaleReceipt(
                f"{'NACK' if nack else 'ACK'} came after the lease ran out: the message "
                "went back to the queue and will be delivered again"
            )

    def _abort(self, frame: Frame) -> None:
        self._sessions.abort(self._info, required(frame, "transaction"))

    def _commit(self, frame: Frame) -> None:
        for queue in self._sessions.commit(self._info, required(frame, "transaction")):
            self._pump_after(queue)

    def _pump_after(self, queue: str, *, refill: bool = False) -> None:
        """Pump this queue once the message's frames are handled; `refill`: for an ACK's
        freed credit only (unless another frame asks for an ordinary pump)."""
        self._to_pump.add(queue)
        if not refill:
            self._not_refills.add(queue)

    # ---- answers -------------------------------------------------------------------------

    def _send(self, frame: Frame) -> None:
        text = encode_frame(frame, version=self._version)
        self._sessions.pusher.post(self._info.connection.id, text.encode())

    def _fatal(self, message: str, receipt: str | None, frame: Frame | None = None) -> NoReturn:
        connection_id = self._info.connection.id
        logger.info(
            "STOMP error; closing the connection",
            extra={"connection_id": connection_id, "error": message},
        )
        self._send(_error(message, receipt, frame))
        self._sessions.close(connection_id)
        self._sessions.pusher.close(connection_id)
        raise _Fatal


def _error(message: str, receipt: str | None, frame: Frame | None) -> Frame:
    headers: list[tuple[str, str]] = [("message", _one_line(message))]
    if receipt is not None:
        headers.append(("receipt-id", _header_safe(receipt)))
    headers.append(("content-type", "text/plain"))
    body = message
    if frame is not None:
        body += f"\n\nThe frame was {frame.command}."
    return Frame("ERROR", tuple(headers), body.encode())


def _header_safe(text: str) -> str:
    """A header value every STOMP version can carry: STOMP 1.0 frames cannot escape CR or
    LF, and a 1.0 client's own values (a receipt, say) may hold a bare CR."""
    return text.replace("\r", " ").replace("\n", " ")


def _one_line(text: str) -> str:
    line = _header_safe(text)
    return line if len(line) <= 300 else line[:297] + "..."
