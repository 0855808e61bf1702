"""An admin's view of scheduled messages: a destination's pending schedules, cancelling
one, and ActiveMQ's scheduler management topic (BROWSE, REMOVE, REMOVEALL)."""

from __future__ import annotations

import base64
import contextlib
from itertools import islice
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict

from mqless.domain import models, names
from mqless.domain.access.principals import Action, Policy, Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import Conflict, IntegrityError, InvalidRequest, ScheduleNotFound
from mqless.domain.messages import NewMessage
from mqless.domain.scheduling.opening import JOB_ID_ATTRIBUTE, open_schedule
from mqless.domain.scheduling.rules import Kind, split_destination
from mqless.domain.topics.patterns import validate_topic_name
from mqless.observability import audit
from mqless.storage.schedules import ScheduleStore, StoredSchedule
from mqless.storage.sealing import BodyCipher, Holder

if TYPE_CHECKING:
    # the services a schedule is sent through, as types: importing scheduling (the HTTP
    # API's send bodies check rules) does not load the topic service (issue 18)
    from mqless.domain.queues.service import QueueService
    from mqless.domain.topics.service import TopicService

HOLD_MS: Final = 110_000  # the sweeper's timeout (120 s) less its margin
MAX_LIST: Final = 100
# ActiveMQ's scheduler management: a message sent to this topic with AMQ_SCHEDULER_ACTION
# BROWSE (copies of the schedules go to its reply-to), REMOVE (the one its scheduledJobId
# names) or REMOVEALL, acting on the destinations the sender administers
MANAGEMENT_TOPIC: Final = "ActiveMQ.Scheduler.Management"
ACTION_ATTRIBUTE: Final = "AMQ_SCHEDULER_ACTION"
MAX_BROWSE: Final = 1000


class ScheduledMessage(BaseModel):
    """A pending schedule as an admin lists it."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True)

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


class ScheduleAdmin:
    """An admin's list and cancel of pending schedules, and the management topic's actions."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        queues: QueueService,
        topics: TopicService,
        cipher: BodyCipher,
        clock: Clock,
        policy: Policy,
    ) -> None:
        self._store = store
        self._queues = queues
        self._topics = topics
        self._cipher = cipher
        self._clock = clock
        self._policy = policy

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
            (destination, *split_destination(destination))
            for destination, _ in self._store.cursors()
            if self._policy.permits(principal, Action.ADMIN, split_destination(destination)[1])
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

    def _open(self, kind: Kind, name: str, schedule: StoredSchedule) -> NewMessage:
        return open_schedule(self._cipher, kind, name, schedule, self._clock.now_ms())
