"""Scheduled delivery beyond the 15-minute delay, as ActiveMQ's scheduler offers it.

A sender asks for a `Rule` (ActiveMQ's `AMQ_SCHEDULED_DELAY`, `_PERIOD`, `_REPEAT`,
`_CRON`): each *anchor* (the send time, or each time the cron expression fires) delivers
`repeat + 1` times, the first `delay` after the anchor and the others `period` apart.

What is stored and when (docs/scheduled-delivery.md has the arithmetic):
- A one-shot delay within 15 minutes on a queue is an ordinary delayed send (the log
  item's `v`), as before: nothing is stored here.
- Otherwise the deliveries due within the *horizon* are sent now (a queue's with the
  rest of their delay, a topic's only when due), and the first one after it is stored
  as a schedule item (`storage/schedules.py`): the message sealed once, bound to its
  destination and the schedule id, with its data key inline.
- Every sweep (`fire_due`) takes each destination whose schedules fall due within the
  *lookahead* (one conditional write holds it, so a schedule fires once per due time
  even when sweeps overlap or are retried), sends them into the destination (a queue's
  with the rest of their delay, so delivery stays exact to the second; a topic's when
  due, since a topic delivers at once), moves the destination's cursor past them, and
  puts a repeating schedule again under its next due time.

Why a horizon: a sweep moves the cursor past everything due by `now + lookahead` that it
read. A schedule written after that read must be due later than that, or no sweep would
ever read it. So a sender stores only what falls due after `now + lookahead + skew`,
and sends what is due before.
"""

from __future__ import annotations

import base64
import contextlib
import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from typing import Final, Literal

from aws_lambda_powertools import Logger
from cronsim import CronSim, CronSimError
from pydantic import BaseModel

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Grant, Policy, Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import (
    Conflict,
    IntegrityError,
    InvalidRequest,
    MqlessError,
    NotFound,
    ScheduleNotFound,
)
from mqless.domain.models import NewMessage, SendResult
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.patterns import validate_topic_name
from mqless.domain.topics.service import TopicService
from mqless.observability import audit
from mqless.storage import keys
from mqless.storage.schedules import Rule, ScheduleStore, StoredSchedule
from mqless.storage.sealing import BodyCipher, Headers, Holder, open_item

logger = Logger(service="mqless", child=True)

Kind = Literal["queue", "topic"]

DEFAULT_LOOKAHEAD_SECONDS: Final = 75  # a sweep a minute, and 15 s for it to run late
SKEW_MS: Final = 10_000  # clocks of two functions, and the time a send takes, at most
TOPIC_SKEW_MS: Final = 1_000  # a topic's deliveries due this soon are published at once
MIN_PERIOD_MS: Final = 1_000  # deliveries are exact to the second
MAX_REPEAT: Final = 1_000_000
MAX_CRON: Final = 120
HOLD_MS: Final = 110_000  # the sweeper's timeout (120 s) less its margin
MISFIRE_MS: Final = 60_000  # repeats missed by more than this (sweeps that did not run) are skipped
MAX_LIST: Final = 100
JOB_ID_ATTRIBUTE: Final = "scheduledJobId"  # ActiveMQ sets it on each scheduled delivery
# ActiveMQ's scheduler management: a message sent to this topic with AMQ_SCHEDULER_ACTION
# BROWSE (copies of the schedules go to its reply-to), REMOVE (the one its scheduledJobId
# names) or REMOVEALL, acting on the destinations the sender administers
MANAGEMENT_TOPIC: Final = "ActiveMQ.Scheduler.Management"
ACTION_ATTRIBUTE: Final = "AMQ_SCHEDULER_ACTION"
MAX_BROWSE: Final = 1000


@dataclass(frozen=True)
class RuleNames:
    """What a transport calls each part of a rule, so an error names what the client sent."""

    delay: str = "delay_seconds"
    period: str = "period_seconds"
    repeat: str = "repeat"
    cron: str = "cron"


STOMP_NAMES: Final = RuleNames(
    "AMQ_SCHEDULED_DELAY", "AMQ_SCHEDULED_PERIOD", "AMQ_SCHEDULED_REPEAT", "AMQ_SCHEDULED_CRON"
)
HTTP_NAMES: Final = RuleNames()


def check_rule(rule: Rule, names_: RuleNames = HTTP_NAMES) -> Rule:
    """The rule, or InvalidRequest naming the part that is wrong."""
    if rule.delay_ms < 0:
        raise InvalidRequest(f"{names_.delay} must not be negative")
    if rule.delay_ms > models.MAX_RETENTION_SECONDS * 1000:
        raise InvalidRequest(
            f"{names_.delay} may be at most {models.MAX_RETENTION_SECONDS} s (14 days)"
        )
    if rule.period_ms < 0 or rule.period_ms > models.MAX_RETENTION_SECONDS * 1000:
        raise InvalidRequest(
            f"{names_.period} must be 0 to {models.MAX_RETENTION_SECONDS} s (14 days)"
        )
    if not 0 <= rule.repeat <= MAX_REPEAT:
        raise InvalidRequest(f"{names_.repeat} must be 0 to {MAX_REPEAT}")
    if rule.repeat and rule.period_ms < MIN_PERIOD_MS:
        raise InvalidRequest(
            f"{names_.period} must be at least {MIN_PERIOD_MS // 1000} s when {names_.repeat} "
            "is set (deliveries are exact to the second)"
        )
    if rule.cron is not None:
        if len(rule.cron) > MAX_CRON:
            raise InvalidRequest(f"{names_.cron} is over {MAX_CRON} characters")
        if len(rule.cron.split()) != 5:
            raise InvalidRequest(
                f"{names_.cron} must have 5 fields (minute hour day month weekday), "
                f"not {rule.cron[:MAX_CRON]!r}"
            )
        try:
            next(CronSim(rule.cron, datetime.now(UTC)))
        except (CronSimError, StopIteration, ValueError) as exc:
            raise InvalidRequest(
                f"{names_.cron} {rule.cron!r} is not a cron expression: {exc}"
            ) from None
    return rule


def stored(rule: Rule, kind: Kind) -> bool:
    """Whether a rule needs a schedule item (otherwise it is an ordinary delayed send)."""
    if rule.cron is not None or rule.repeat:
        return True
    return kind == "topic" or rule.delay_ms > models.MAX_DELAY_SECONDS * 1000


def next_cron(expression: str, after_ms: int) -> int | None:
    """The first time (epoch ms) strictly after `after_ms` that `expression` fires, UTC."""
    start = datetime.fromtimestamp(after_ms / 1000, UTC)
    try:
        return int(next(CronSim(expression, start)).timestamp() * 1000)
    except StopIteration:
        return None


@dataclass(frozen=True)
class Occurrence:
    """One delivery of a schedule: the anchor it counts from and which repeat it is."""

    anchor_ms: int
    index: int

    def due(self, rule: Rule) -> int:
        return self.anchor_ms + rule.delay_ms + self.index * rule.period_ms


def first_occurrence(rule: Rule, now_ms: int) -> Occurrence | None:
    if rule.cron is None:
        return Occurrence(now_ms, 0)
    anchor = next_cron(rule.cron, now_ms)
    return None if anchor is None else Occurrence(anchor, 0)


def following(rule: Rule, occurrence: Occurrence) -> Occurrence | None:
    """The delivery after `occurrence`: its anchor's next repeat, or the next cron time's
    first (a cron anchor's repeats finish before the next anchor's begin)."""
    if occurrence.index < rule.repeat:
        return Occurrence(occurrence.anchor_ms, occurrence.index + 1)
    if rule.cron is None:
        return None
    anchor = next_cron(rule.cron, occurrence.anchor_ms)
    return None if anchor is None else Occurrence(anchor, 0)


class ScheduledMessage(BaseModel):
    """A pending schedule as an admin lists it."""

    schedule_id: str
    destination: str
    next_delivery_at: int
    delay_ms: int
    period_ms: int
    repeat: int
    repeats_left: int
    cron: str | None = None
    body: str | None = None
    binary: bool = False
    attributes: dict[str, str] = {}
    content_type: str | None = None
    correlation_id: str | None = None
    group_id: str | None = None
    unreadable: bool = False


@dataclass
class FireReport:
    destinations: int = 0
    fired: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


class Scheduler:
    """Scheduled sends, the sweeper's firing, and an admin's list and cancel."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        queues: QueueService,
        topics: TopicService,
        cipher: BodyCipher,
        clock: Clock,
        policy: Policy,
        lookahead_seconds: int = DEFAULT_LOOKAHEAD_SECONDS,
    ) -> None:
        self._store = store
        self._queues = queues
        self._topics = topics
        self._cipher = cipher
        self._clock = clock
        self._policy = policy
        self._lookahead_ms = lookahead_seconds * 1000

    # ---- sending ------------------------------------------------------------------------

    def send(
        self, principal: Principal, kind: Kind, name: str, message: NewMessage, rule: Rule | None
    ) -> SendResult:
        """Send now, later, or on a schedule; what an HTTP send, a JSON publish or a STOMP
        SEND with scheduling fields comes to."""
        if rule is not None:
            check_rule(rule)
        if rule is None or not stored(rule, kind):
            if rule is not None and rule.delay_ms:
                message = message.model_copy(
                    update={"delay_seconds": math.ceil(rule.delay_ms / 1000)}
                )
            if kind == "topic":
                return self._topics.publish(principal, name, message)
            return self._queues.send(principal, name, message)
        now = self._clock.now_ms()
        self._check(principal, kind, name, message, rule)
        schedule_id = str(uuid.UUID(keys.message_id(keys.new_item_id(now), 0)))
        occurrence = first_occurrence(rule, now)
        horizon = now + (self._lookahead_ms + SKEW_MS if kind == "queue" else TOPIC_SKEW_MS)
        tagged = _tagged(message, schedule_id)
        while occurrence is not None and occurrence.due(rule) <= horizon:
            self._deliver(principal, kind, name, tagged, occurrence.due(rule), schedule_id, now)
            occurrence = following(rule, occurrence)
        if occurrence is not None:
            holder = Holder(kind, name)
            sealed = self._cipher.encrypt(
                message.body,
                destination=str(holder),
                message_id=schedule_id,
                header=Headers.of(message).encode(),
            )
            self._store.put(
                StoredSchedule(
                    destination=str(holder),
                    schedule_id=schedule_id,
                    due_ms=occurrence.due(rule),
                    body=sealed.ciphertext,
                    encrypted_key=sealed.encrypted_key,
                    rule=rule,
                    anchor_ms=occurrence.anchor_ms,
                    index=occurrence.index,
                    group=message.group_id,
                    ttl_seconds=message.ttl_seconds,
                )
            )
            logger.info(
                "message scheduled",
                extra={"destination": str(holder), "schedule_id": schedule_id},
            )
        return SendResult(message_id=schedule_id)

    def _check(
        self, principal: Principal, kind: Kind, name: str, message: NewMessage, rule: Rule
    ) -> None:
        message.check_size()
        if message.dedup_id is not None:
            raise InvalidRequest(
                "dedup_id cannot be combined with a schedule: each delivery is deduplicated "
                "by its schedule and time"
            )
        if kind == "topic":
            self._topics.check_publish(principal, name)
            if message.group_id:
                raise InvalidRequest("group_id is for queues, not topics")
            return
        config = self._queues.open_for_send(principal, name)
        if config.fifo and not message.group_id:
            raise InvalidRequest(f"queue {name!r} is FIFO: group_id is required")
        if not config.fifo and message.group_id:
            raise InvalidRequest(f"group_id is only for FIFO queues; {name!r} is a standard queue")
        if rule.delay_ms > config.retention_seconds * 1000:
            raise InvalidRequest(
                f"the delay may be at most queue {name!r}'s retention "
                f"({config.retention_seconds} s)"
            )

    def _deliver(
        self,
        principal: Principal,
        kind: Kind,
        name: str,
        message: NewMessage,
        due_ms: int,
        schedule_id: str,
        now_ms: int,
    ) -> None:
        """Send one delivery: a queue's with what is left of its delay (explicit, so the
        queue's default delay is not added), a topic's now."""
        if kind == "topic":
            self._topics.publish(principal, name, message)
            return
        delay = max(0, math.ceil((due_ms - now_ms) / 1000))
        update: dict[str, object] = {"delay_seconds": min(delay, models.MAX_DELAY_SECONDS)}
        if message.group_id is not None:
            # FIFO: a delivery sent twice (a retried sweep) is one message
            update["dedup_id"] = f"{schedule_id}@{due_ms}"
        self._queues.send(principal, name, message.model_copy(update=update))

    # ---- firing (the sweeper) ------------------------------------------------------------

    def fire_due(self, *, budget_ms: int = 50_000) -> FireReport:
        """Send every schedule due within the lookahead, each once."""
        report = FireReport()
        start = self._clock.now_ms()
        for destination, cursor in self._store.cursors():
            now = self._clock.now_ms()
            if now - start > budget_ms:
                break
            kind, name = _split(destination)
            until = now + (self._lookahead_ms if kind == "queue" else 0)
            try:
                if self._store.any_due(destination, after=cursor, until_ms=until):
                    report.destinations += 1
                    self._fire_destination(destination, kind, name, until, report)
            except Exception as exc:  # one destination's trouble must not starve the others
                logger.exception("firing schedules failed", extra={"destination": destination})
                reason = exc.message if isinstance(exc, MqlessError) else type(exc).__name__
                report.errors.append(f"{destination}: {reason}")
        return report

    def _fire_destination(
        self, destination: str, kind: Kind, name: str, until: int, report: FireReport
    ) -> None:
        now = self._clock.now_ms()
        held_until = now + HOLD_MS
        cursor = self._store.hold(destination, now_ms=now, until_ms=held_until)
        if cursor is None:
            return  # another sweep is firing it
        fired: str | None = None
        try:
            for schedule in self._store.pending(
                destination, after=cursor, until_ms=until, consistent=True
            ):
                try:
                    report.fired += self._fire(kind, name, schedule, until)
                except (NotFound, IntegrityError, InvalidRequest) as exc:
                    # it can never be sent (its queue is gone, it was tampered with): drop it
                    logger.warning(
                        "scheduled message dropped",
                        extra={
                            "destination": destination,
                            "schedule_id": schedule.schedule_id,
                            "reason": exc.message,
                        },
                    )
                    report.dropped += 1
                fired = schedule.sort_key
        finally:
            self._store.release(destination, held_until=held_until, fired=fired)

    def _fire(self, kind: Kind, name: str, schedule: StoredSchedule, until: int) -> int:
        """Send a schedule's deliveries due by `until`, and store its next one; how many."""
        now = self._clock.now_ms()
        message = self._open(kind, name, schedule)
        broker = _broker(name)
        rule = schedule.rule
        occurrence: Occurrence | None = Occurrence(schedule.anchor_ms, schedule.index)
        sent = 0
        while occurrence is not None:
            due = occurrence.due(rule)
            if due > until:
                self._store.put(
                    replace(
                        schedule,
                        due_ms=due,
                        anchor_ms=occurrence.anchor_ms,
                        index=occurrence.index,
                    )
                )
                break
            if sent == 0 or due >= now - MISFIRE_MS:
                self._deliver(broker, kind, name, message, due, schedule.schedule_id, now)
                sent += 1
            occurrence = following(rule, occurrence)
        return sent

    def _open(self, kind: Kind, name: str, schedule: StoredSchedule) -> NewMessage:
        opened = open_item(
            self._cipher,
            {"id": schedule.schedule_id, "body": schedule.body, "dk": schedule.encrypted_key},
            holder=Holder(kind, name),
            now_ms=self._clock.now_ms(),
        )
        headers = opened.headers
        return _tagged(
            NewMessage(
                body=opened.body,
                binary=headers.binary,
                attributes=headers.attributes,
                content_type=headers.content_type,
                correlation_id=headers.correlation_id,
                reply_to=headers.reply_to,
                group_id=schedule.group,
                ttl_seconds=schedule.ttl_seconds,
                priority=headers.priority,
            ),
            schedule.schedule_id,
        )

    # ---- an admin's view ---------------------------------------------------------------------

    def list(self, principal: Principal, kind: Kind, name: str) -> list[ScheduledMessage]:
        """A destination's pending schedules, soonest first (at most 100)."""
        destination = self._admin(principal, kind, name)
        cursor = self._store.cursor(destination)
        found = islice(self._store.pending(destination, after=cursor, consistent=True), MAX_LIST)
        return [self._view(kind, name, schedule) for schedule in found]

    def cancel(self, principal: Principal, kind: Kind, name: str, schedule_id: str) -> None:
        """Delete a pending schedule: none of its deliveries not yet sent will be."""
        destination = self._admin(principal, kind, name)
        if self._find(destination, schedule_id, self._store.cursor(destination)) is None:
            # nothing written for a schedule that is not there (or a destination without any)
            raise ScheduleNotFound(f"no pending schedule {schedule_id[:100]!r} in {destination}")
        for _ in range(10):
            now = self._clock.now_ms()
            held_until = now + HOLD_MS
            cursor = self._store.hold(destination, now_ms=now, until_ms=held_until)
            if cursor is not None:
                break
            self._clock.sleep(0.3)  # a sweep is firing this destination: a moment
        else:
            raise Conflict(f"schedules of {destination} are being fired; retry in a minute")
        try:
            # held: no sweep fires it or puts its next time while it is looked up and deleted
            target = self._find(destination, schedule_id, cursor)
            if target is None:
                raise ScheduleNotFound(f"schedule {schedule_id[:100]!r} was just fired")
            self._store.delete(destination, target.sort_key)
        finally:
            self._store.release(destination, held_until=held_until, fired=None)
        audit("schedule.cancel", principal.id, destination, schedule_id=schedule_id)

    def _find(self, destination: str, schedule_id: str, cursor: str) -> StoredSchedule | None:
        pending = self._store.pending(destination, after=cursor, consistent=True)
        return next((s for s in pending if s.schedule_id == schedule_id), None)

    def manage(
        self, principal: Principal, message: NewMessage, reply_to: tuple[Kind, str] | None
    ) -> int:
        """ActiveMQ's scheduler management (a send to `MANAGEMENT_TOPIC`), over the
        destinations `principal` administers: how many schedules it browsed or removed."""
        action = message.attributes.get(ACTION_ATTRIBUTE, "").strip().upper()
        job_id = message.attributes.get(JOB_ID_ATTRIBUTE)
        if action not in ("BROWSE", "REMOVE", "REMOVEALL"):
            raise InvalidRequest(
                f"{ACTION_ATTRIBUTE} must be BROWSE, REMOVE or REMOVEALL on {MANAGEMENT_TOPIC}"
            )
        administered = [
            (destination, *_split(destination))
            for destination, _ in self._store.cursors()
            if self._policy.permits(principal, Action.ADMIN, _split(destination)[1])
        ]
        if action == "REMOVE":
            if not job_id:
                raise InvalidRequest(f"REMOVE needs the {JOB_ID_ATTRIBUTE} header")
            for _, kind, name in administered:
                try:
                    self.cancel(principal, kind, name, job_id)
                except ScheduleNotFound:
                    continue
                return 1
            raise ScheduleNotFound(f"no pending schedule {job_id[:100]!r} you administer")
        if action == "REMOVEALL":
            removed = 0
            for destination, kind, name in administered:
                cursor = self._store.cursor(destination)
                for schedule in list(self._store.pending(destination, after=cursor)):
                    with contextlib.suppress(ScheduleNotFound):
                        self.cancel(principal, kind, name, schedule.schedule_id)
                        removed += 1
            return removed
        if reply_to is None:
            raise InvalidRequest("BROWSE needs a reply-to destination for the schedules")
        browsed = 0
        for destination, kind, name in administered:
            cursor = self._store.cursor(destination)
            for schedule in self._store.pending(destination, after=cursor, consistent=True):
                if browsed >= MAX_BROWSE:
                    return browsed
                self._send_copy(principal, kind, name, schedule, reply_to)
                browsed += 1
        return browsed

    def _send_copy(
        self,
        principal: Principal,
        kind: Kind,
        name: str,
        schedule: StoredSchedule,
        reply_to: tuple[Kind, str],
    ) -> None:
        """A schedule's message, sent as `principal` to `reply_to` with its rule in
        ActiveMQ's headers (what BROWSE answers)."""
        message = self._open(kind, name, schedule)
        rule = schedule.rule
        extra = {
            "AMQ_SCHEDULED_DELAY": str(rule.delay_ms),
            "AMQ_SCHEDULED_PERIOD": str(rule.period_ms),
            "AMQ_SCHEDULED_REPEAT": str(rule.repeat),
            "scheduledDestination": schedule.destination,
            "scheduledAt": str(schedule.due_ms),
        }
        if rule.cron:
            extra["AMQ_SCHEDULED_CRON"] = rule.cron
        room = models.MAX_ATTRIBUTES - len(message.attributes)
        attributes = {**message.attributes, **dict(list(extra.items())[: max(0, room)])}
        copy = message.model_copy(update={"attributes": attributes, "group_id": None})
        target_kind, target = reply_to
        if target_kind == "topic":
            self._topics.publish(principal, target, copy)
        else:
            self._queues.send(principal, target, copy)

    def _admin(self, principal: Principal, kind: Kind, name: str) -> str:
        if kind == "topic":
            validate_topic_name(name)
        else:
            names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        return str(Holder(kind, name))

    def _view(self, kind: Kind, name: str, schedule: StoredSchedule) -> ScheduledMessage:
        rule = schedule.rule
        view = ScheduledMessage(
            schedule_id=schedule.schedule_id,
            destination=schedule.destination,
            next_delivery_at=schedule.due_ms,
            delay_ms=rule.delay_ms,
            period_ms=rule.period_ms,
            repeat=rule.repeat,
            repeats_left=rule.repeat - schedule.index,
            cron=rule.cron,
            group_id=schedule.group,
        )
        try:
            message = self._open(kind, name, schedule)
        except IntegrityError:
            return view.model_copy(update={"unreadable": True})
        body = (
            base64.b64encode(message.body).decode()
            if message.binary
            else message.body.decode("utf-8")
        )
        attributes = {k: v for k, v in message.attributes.items() if k != JOB_ID_ATTRIBUTE}
        return view.model_copy(
            update={
                "body": body,
                "binary": message.binary,
                "attributes": attributes,
                "content_type": message.content_type,
                "correlation_id": message.correlation_id,
            }
        )


def _tagged(message: NewMessage, schedule_id: str) -> NewMessage:
    """The message with ActiveMQ's `scheduledJobId` (room allowing: 50 attributes at most)."""
    if len(message.attributes) >= models.MAX_ATTRIBUTES:
        return message
    return message.model_copy(
        update={"attributes": {**message.attributes, JOB_ID_ATTRIBUTE: schedule_id}}
    )


def _broker(name: str) -> Principal:
    """Who sends a schedule's deliveries: the broker, allowed to send there and nothing else
    (it does not create a queue deleted since)."""
    return Principal(
        id="scheduler", kind="broker", grants=(Grant(pattern=name, actions=(Action.SEND,)),)
    )


def _split(destination: str) -> tuple[Kind, str]:
    if destination.startswith("/topic/"):
        return "topic", destination[len("/topic/") :]
    return "queue", destination.removeprefix("/queue/")
