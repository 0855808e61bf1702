"""The `Scheduler`: scheduled sends and the sweeper's firing (the package docstring says
what is stored and when); an admin's list and cancel are `admin.py`'s."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools import Logger

from mqless.domain import models
from mqless.domain.access.principals import Policy, Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError, InvalidRequest, MqlessError, NotFound
from mqless.domain.messages import NewMessage, SendResult
from mqless.domain.scheduling.admin import HOLD_MS, ScheduleAdmin, ScheduledMessage
from mqless.domain.scheduling.opening import broker, open_schedule, tagged
from mqless.domain.scheduling.rules import (
    Kind,
    Occurrence,
    check_rule,
    first_occurrence,
    following,
    split_destination,
    stored,
)
from mqless.storage import keys
from mqless.storage.schedules import Rule, ScheduleStore, StoredSchedule
from mqless.storage.sealing import BodyCipher, Headers, Holder

if TYPE_CHECKING:
    # the services a schedule is sent through, as types: importing scheduling (the HTTP
    # API's send bodies check rules) does not load the topic service (issue 18)
    from mqless.domain.queues.service import QueueService
    from mqless.domain.topics.service import TopicService

logger = Logger(service="mqless", child=True)

DEFAULT_LOOKAHEAD_SECONDS: Final = 75  # a sweep a minute, and 15 s for it to run late
SKEW_MS: Final = 10_000  # clocks of two functions, and the time a send takes, at most
TOPIC_SKEW_MS: Final = 1_000  # a topic's deliveries due this soon are published at once
MISFIRE_MS: Final = 60_000  # repeats missed by more than this (sweeps that did not run) are skipped


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
        self._admin = ScheduleAdmin(
            store=store, queues=queues, topics=topics, cipher=cipher, clock=clock, policy=policy
        )

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
        tagged_message = tagged(message, schedule_id)
        while occurrence is not None and occurrence.due(rule) <= horizon:
            self._deliver(
                principal, kind, name, tagged_message, occurrence.due(rule), schedule_id, now
            )
            occurrence = following(rule, occurrence)
        if occurrence is not None:
            self._store_next(Holder(kind, name), message, rule, schedule_id, occurrence)
        return SendResult(message_id=schedule_id)

    def _store_next(
        self,
        holder: Holder,
        message: NewMessage,
        rule: Rule,
        schedule_id: str,
        occurrence: Occurrence,
    ) -> None:
        """Store the schedule under its first delivery beyond the horizon: the message
        sealed once, bound to its destination and the schedule id."""
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
            kind, name = split_destination(destination)
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
        sender = broker(name)
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
                self._deliver(sender, kind, name, message, due, schedule.schedule_id, now)
                sent += 1
            occurrence = following(rule, occurrence)
        return sent

    def _open(self, kind: Kind, name: str, schedule: StoredSchedule) -> NewMessage:
        return open_schedule(self._cipher, kind, name, schedule, self._clock.now_ms())

    # ---- an admin's view (`admin.py`) ----------------------------------------------------

    def list(self, principal: Principal, kind: Kind, name: str) -> list[ScheduledMessage]:
        """A destination's pending schedules, soonest first (at most 100)."""
        return self._admin.list(principal, kind, name)

    def cancel(self, principal: Principal, kind: Kind, name: str, schedule_id: str) -> None:
        """Delete a pending schedule: none of its deliveries not yet sent will be."""
        self._admin.cancel(principal, kind, name, schedule_id)

    def manage(
        self, principal: Principal, message: NewMessage, reply_to: tuple[Kind, str] | None
    ) -> int:
        """ActiveMQ's scheduler management (a send to `MANAGEMENT_TOPIC`): how many
        schedules it browsed or removed."""
        return self._admin.manage(principal, message, reply_to)
