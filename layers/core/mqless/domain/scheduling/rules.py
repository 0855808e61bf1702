"""What a schedule asks for (a `Rule`: ActiveMQ's `AMQ_SCHEDULED_DELAY`, `_PERIOD`,
`_REPEAT`, `_CRON`), whether it is stored, and when each of its deliveries falls due: each
*anchor* (the send time, or each time the cron expression fires) delivers `repeat + 1`
times, the first `delay` after the anchor and the others `period` apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from cronsim import CronSim, CronSimError

from mqless.domain import models
from mqless.domain.errors import InvalidRequest
from mqless.storage.schedules import Rule

Kind = Literal["queue", "topic"]

MIN_PERIOD_MS: Final = 1_000  # deliveries are exact to the second
MAX_REPEAT: Final = 1_000_000
MAX_CRON: Final = 120


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


def split_destination(destination: str) -> tuple[Kind, str]:
    """A schedule's destination (`/queue/<name>`, `/topic/<name>`) as its kind and name."""
    if destination.startswith("/topic/"):
        return "topic", destination[len("/topic/") :]
    return "queue", destination.removeprefix("/queue/")
