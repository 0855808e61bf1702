"""Bodies of the queue routes: a queue's view, the list, purge and redrive."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from mqless.domain.models import QueueConfig, QueueCounts
from mqless.transports.http.models.body import Body


class QueueView(Body):
    name: str
    fifo: bool
    visibility_timeout: int
    max_receive_count: int | None
    dead_letter_queue: str | None
    retention_seconds: int
    delay_seconds: int
    shards: int = Field(description="Partitions the queue's messages are spread over.")
    max_priority: int | None = Field(
        default=None, description="Priority lanes: the highest priority told apart (null: none)."
    )
    created_at: int
    updated_at: int
    created_by: str | None = Field(
        default=None, description="The principal whose request created the queue."
    )
    counts: QueueCounts | None = None

    @classmethod
    def of(cls, config: QueueConfig, counts: QueueCounts | None = None) -> QueueView:
        return cls(counts=counts, **config.model_dump())


class QueueList(Body):
    queues: list[QueueView]


class PurgeResponse(Body):
    purged: int


class RedriveRequest(Body):
    model_config = ConfigDict(extra="forbid")

    max_messages: Annotated[int, Field(ge=1, le=1000)] = 100
    destination: Annotated[
        str | None,
        Field(description="Where to move them (default: the queue each one came from)."),
    ] = None
