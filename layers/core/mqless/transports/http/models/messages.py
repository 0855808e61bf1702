"""Bodies of the message routes: receive, ack, nack, visibility, browse, move."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from mqless.domain import models
from mqless.domain.messages import Delivery
from mqless.domain.models import BrowsedMessage, EntryFailure
from mqless.transports.http.models.body import Body

Receipts = Annotated[
    list[Annotated[str, Field(max_length=1024)]],
    Field(min_length=1, max_length=models.MAX_BATCH, description="1-10 receipt handles."),
]


class ReceiveRequest(Body):
    model_config = ConfigDict(extra="forbid")

    max_messages: Annotated[int, Field(ge=1, le=models.MAX_BATCH)] = 1
    wait_seconds: Annotated[
        float,
        Field(ge=0, le=models.MAX_WAIT_SECONDS, description="Long poll: wait up to 20 s."),
    ] = 0
    visibility_timeout: Annotated[
        int | None,
        Field(
            ge=0,
            le=models.MAX_VISIBILITY_SECONDS,
            description="Lease length for these messages (default: the queue's).",
        ),
    ] = None
    ack: Annotated[
        Receipts | None,
        Field(
            description="1-10 receipts to acknowledge in the same request, whatever it finds "
            "(the response's `acked` and `failed` say how each went, as POST .../ack does). "
            "A lone consumer's ack and next lease are then most often one write."
        ),
    ] = None


class MessageOut(Body):
    message_id: str
    receipt: Annotated[str, Field(description="Pass to ack, nack or visibility.")]
    body: str
    binary: bool
    attributes: dict[str, str]
    content_type: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    receive_count: int
    sent_at: Annotated[int, Field(description="Epoch milliseconds.")]
    group_id: str | None = None
    dedup_id: str | None = None
    dead_letter_reason: str | None = None
    source_queue: str | None = None
    priority: Annotated[
        int | None, Field(description="As sent (0-9); null: sent without one (JMS's 4).")
    ] = None

    @classmethod
    def of(cls, delivery: Delivery) -> MessageOut:
        values = delivery.model_dump(exclude={"body", "queue"})
        return cls(body=delivery.body_text(), **values)


class ReceiveResponse(Body):
    messages: list[MessageOut]
    acked: Annotated[
        list[str], Field(description="Receipts of the request's `ack` acknowledged.")
    ] = []
    failed: Annotated[
        list[EntryFailure],
        Field(description="Receipts of the request's `ack` that were not (stale, malformed)."),
    ] = []


class AckRequest(Body):
    model_config = ConfigDict(extra="forbid")

    receipts: Receipts


class NackRequest(Body):
    model_config = ConfigDict(extra="forbid")

    receipts: Receipts
    delay_seconds: Annotated[
        int,
        Field(ge=0, le=models.MAX_VISIBILITY_SECONDS, description="Redeliver after this long."),
    ] = 0


class VisibilityRequest(Body):
    model_config = ConfigDict(extra="forbid")

    receipts: Receipts
    visibility_timeout: Annotated[
        int,
        Field(
            ge=0,
            le=models.MAX_VISIBILITY_SECONDS,
            description="Seconds from now until the message is visible again.",
        ),
    ]


class AckResponse(Body):
    acked: list[str]
    failed: list[EntryFailure]


class NackResponse(Body):
    released: list[str]
    failed: list[EntryFailure]


class VisibilityResponse(Body):
    changed: list[str]
    failed: list[EntryFailure]


class BrowseResponse(Body):
    messages: list[BrowsedMessage]
    cursor: str | None = Field(description="Pass back as `cursor` for the next page; null: end.")


class MoveRequest(Body):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[str, Field(description="Target queue (created with defaults if new).")]
    copy_only: Annotated[
        bool, Field(alias="copy", description="Copy instead of move: the source keeps it.")
    ] = False


class MoveResponse(Body):
    message_id: str
