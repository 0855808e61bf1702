"""Bodies of a send or a publish, one message or a batch (POST .../messages,
.../messages/batch on queues and topics; WebSocket JSON frames carry the same message)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, field_validator

from mqless.domain import models
from mqless.domain.models import EntryFailure
from mqless.transports.http.models.body import Body
from mqless.transports.send_request import SendMessageRequest


class BatchEntry(SendMessageRequest):
    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=80,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="Your id for this entry, echoed in the result.",
        ),
    ]


class SendBatchRequest(Body):
    model_config = ConfigDict(extra="forbid")

    entries: Annotated[list[BatchEntry], Field(min_length=1, max_length=models.MAX_BATCH)]

    @field_validator("entries")
    @classmethod
    def _unique_ids(cls, entries: list[BatchEntry]) -> list[BatchEntry]:
        # checked here, before any entry is decoded, so a bad entry cannot hide a repeated id
        ids = [entry.id for entry in entries]
        if len(set(ids)) != len(ids):
            raise ValueError("batch entry ids must be unique")
        return entries


class SendMessageResponse(Body):
    message_id: str
    duplicate: Annotated[
        bool, Field(description="FIFO: the message repeated one sent within 5 minutes.")
    ] = False
    sequence: Annotated[int | None, Field(description="FIFO: position within its group.")] = None


class BatchResultEntry(SendMessageResponse):
    id: str


class SendBatchResponse(Body):
    successful: list[BatchResultEntry]
    failed: list[EntryFailure]
