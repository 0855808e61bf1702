"""Run the template's Schedule/ScheduleV2 functions on a timer, as EventBridge Scheduler would.

What is mirrored:

- Without an ``Input`` a Lambda target gets EventBridge Scheduler's default notification:
  ``{"version": "0", "id", "detail-type": "Scheduled Event", "source": "aws.scheduler",
  "account", "time", "region", "resources": [schedule ARN], "detail": "{}"}`` (``detail`` is
  the string "{}"). Sources: the Scheduler API reference (Target.Input: "If you do not
  specify anything for this field, EventBridge Scheduler delivers a default notification to
  the target") and aws-lambda-java-libs' ``ScheduledV2Event`` and ``scheduler_event.json``.
- With an ``Input`` (SAM passes it through to the schedule's Target) the function gets that
  JSON, with the context attributes ``<aws.scheduler.schedule-arn>``,
  ``<aws.scheduler.scheduled-time>``, ``<aws.scheduler.execution-id>`` and
  ``<aws.scheduler.attempt-number>`` filled in. A Lambda target's Input must be well-formed
  JSON, so a template whose Input is not is refused here as it would be on deploy.
- ``rate(...)`` schedules fire once per period, the first one a period after start; missed
  ticks are skipped rather than run in a burst. ``cron(...)``/``at(...)`` schedules are not
  run locally unless a rate override (``mqless dev --schedule-rate``) is given; disabled
  schedules are not run at all (``run_now`` still runs them).
- Not mirrored: Scheduler invokes Lambda asynchronously, and Lambda retries a failed async
  invocation twice; here an invocation runs in this process and a failure is only logged.
  Invocations of one schedule never overlap. The template reader does not yet say whether
  an event was ScheduleV2 or the older Schedule (an EventBridge rule, whose event has
  ``"source": "aws.events"`` and ``"detail": {}``), nor the event's name (SAM's schedule
  name): every schedule gets the ScheduleV2 event, named after its function.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mqless_cli.cfn import Schedule
from mqless_cli.local.functions import FunctionError, FunctionHost

__all__ = ["ScheduleRunner", "scheduler_event"]

log = logging.getLogger(__name__)


def scheduler_event(
    schedule: Schedule,
    *,
    region: str,
    account_id: str,
    scheduled_time: datetime,
    attempt: int = 1,
) -> Any:
    """The payload EventBridge Scheduler hands a Lambda target for one run of `schedule`."""
    arn = _schedule_arn(schedule, region=region, account_id=account_id)
    time_text = scheduled_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if schedule.input is not None:
        text = (
            schedule.input.replace("<aws.scheduler.schedule-arn>", arn)
            .replace("<aws.scheduler.scheduled-time>", time_text)
            .replace("<aws.scheduler.execution-id>", uuid.uuid4().hex[:16])
            .replace("<aws.scheduler.attempt-number>", str(attempt))
        )
        return json.loads(text)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": account_id,
        "time": time_text,
        "region": region,
        "resources": [arn],
        "detail": "{}",
    }


def _schedule_arn(schedule: Schedule, *, region: str, account_id: str) -> str:
    # SAM names a ScheduleV2 schedule after the event's logical id (function + event name);
    # the template reader does not keep the event name, so the function's stands in.
    return f"arn:aws:scheduler:{region}:{account_id}:schedule/default/{schedule.function}"


@dataclass(frozen=True)
class _Plan:
    schedule: Schedule
    period: float | None
    """Seconds between runs; None when the schedule is not run on a timer."""


class ScheduleRunner:
    """Fires each schedule's function on its own daemon thread."""

    def __init__(
        self,
        schedules: list[Schedule],
        functions: FunctionHost,
        *,
        rate_override_seconds: float | None = None,
        region: str,
        account_id: str,
    ) -> None:
        if rate_override_seconds is not None and rate_override_seconds <= 0:
            raise ValueError(f"a schedule rate must be positive, not {rate_override_seconds}")
        self._functions = functions
        self._region = region
        self._account_id = account_id
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._runs: dict[str, int] = {}
        self._plans: list[_Plan] = []
        for schedule in schedules:
            self._check_input(schedule)
            self._plans.append(_Plan(schedule, self._period(schedule, rate_override_seconds)))

    @property
    def runs(self) -> dict[str, int]:
        """Timer-driven invocations so far, by function."""
        with self._lock:
            return dict(self._runs)

    def start(self) -> None:
        """Start one timer thread per schedule that runs locally."""
        if self._threads:
            raise RuntimeError("this runner has already been started")
        for plan in self._plans:
            if plan.period is None:
                continue
            thread = threading.Thread(
                target=self._run,
                args=(plan.schedule, plan.period),
                name=f"schedule {plan.schedule.function}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop the timers and wait for them (an invocation under way is let finish)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.warning("%s did not stop within 5 s", thread.name)

    def run_now(self, function: str) -> Any:
        """Run `function`'s (first) schedule once now; its result, or FunctionError."""
        for plan in self._plans:
            if plan.schedule.function == function:
                return self._invoke(plan.schedule, datetime.now(UTC))
        raise KeyError(f"{function!r} has no schedule in the template")

    # -- internals -----------------------------------------------------------------------

    def _period(self, schedule: Schedule, override: float | None) -> float | None:
        where = f"{schedule.function} {schedule.expression}"
        if not schedule.enabled:
            log.info("schedule %s is disabled in the template: not run", where)
            return None
        if override is not None:
            return override
        if schedule.rate_seconds is None:
            log.warning(
                "schedule %s is not run locally: only rate() schedules are; "
                "give a rate (mqless dev --schedule-rate SECONDS) to run it",
                where,
            )
            return None
        return float(schedule.rate_seconds)

    def _check_input(self, schedule: Schedule) -> None:
        """Refuse an Input that is not JSON, as Scheduler does for a Lambda target."""
        try:
            scheduler_event(
                schedule,
                region=self._region,
                account_id=self._account_id,
                scheduled_time=datetime.now(UTC),
            )
        except ValueError as exc:
            raise ValueError(
                f"schedule of {schedule.function}: Input must be well-formed JSON for a "
                f"Lambda target ({exc}): {schedule.input!r}"
            ) from exc

    def _run(self, schedule: Schedule, period: float) -> None:
        started, started_at = time.monotonic(), datetime.now(UTC)
        tick = 1
        while not self._stop.wait(max(0.0, started + tick * period - time.monotonic())):
            scheduled = started_at + timedelta(seconds=tick * period)
            with self._lock:
                self._runs[schedule.function] = self._runs.get(schedule.function, 0) + 1
            try:
                self._invoke(schedule, scheduled)
            except FunctionError as exc:
                log.warning("scheduled %s failed: %s", schedule.function, exc)
            except Exception as exc:  # the function could not even be loaded
                log.error("scheduled %s could not run: %s", schedule.function, exc)
            # a run that outlasted its period skips the ticks it missed
            tick = max(tick + 1, int((time.monotonic() - started) // period) + 1)

    def _invoke(self, schedule: Schedule, scheduled: datetime) -> Any:
        event = scheduler_event(
            schedule, region=self._region, account_id=self._account_id, scheduled_time=scheduled
        )
        return self._functions.invoke(schedule.function, event, summary="scheduled")
