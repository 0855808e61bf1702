"""Bodies of the scheduled-message routes."""

from __future__ import annotations

from pydantic import BaseModel

from mqless.domain.scheduling import ScheduledMessage


class ScheduledList(BaseModel):
    """A destination's pending scheduled messages, soonest first (at most 100)."""

    scheduled: list[ScheduledMessage]
