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

The package: `rules` (what a schedule asks for and when it delivers), `scheduler` (the
`Scheduler`: scheduled sends and the sweeper's firing), `admin` (an admin's list and
cancel, ActiveMQ's management topic) and `opening` (a stored schedule's message). Callers
import what they use from here; each module loads when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqless.domain.scheduling.admin import MANAGEMENT_TOPIC, ScheduledMessage
    from mqless.domain.scheduling.rules import STOMP_NAMES, Kind, check_rule, stored
    from mqless.domain.scheduling.scheduler import Scheduler

# Each name is imported from its module when it is first asked for (PEP 562): a send checks
# its rule (`rules`) without loading the scheduler and the admin's pydantic model, which
# only a scheduled send or the sweeper uses (issue 18's cold start).
_MODULE_OF = {
    "MANAGEMENT_TOPIC": "admin",
    "ScheduledMessage": "admin",
    "STOMP_NAMES": "rules",
    "Kind": "rules",
    "check_rule": "rules",
    "stored": "rules",
    "Scheduler": "scheduler",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "MANAGEMENT_TOPIC",
    "STOMP_NAMES",
    "Kind",
    "ScheduledMessage",
    "Scheduler",
    "check_rule",
    "stored",
]
