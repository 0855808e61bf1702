"""Bodies of the scheduled-message routes."""

from __future__ import annotations

from mqless.domain.scheduling import ScheduledMessage
from mqless.transports.http.models.body import Body


class ScheduledList(Body):
    """A destination's pending scheduled messages, soonest first (at most 100)."""

    scheduled: list[ScheduledMessage]
