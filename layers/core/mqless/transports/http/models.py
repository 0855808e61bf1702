"""HTTP request and response bodies; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqless.domain import models
from mqless.domain.access.api_keys import MAX_TTL_SECONDS, ApiKeyView
from mqless.domain.access.principals import MAX_GRANTS, Grant
from mqless.domain.access.users import PrincipalView
from mqless.domain.models import (
    BrowsedMessage,
    Delivery,
    EntryFailure,
    NewMessage,
    QueueConfig,
    QueueCounts,
    QueueStats,
)
from mqless.domain.scheduling import ScheduledMessage
from mqless.domain.topics.subscription import Subscription
from mqless.transports.send_request import SendMessageRequest

Receipts = Annotated[
    list[Annotated[str, Field(max_length=1024)]],
    Field(min_length=1, max_length=models.MAX_BATCH, description="1-10 receipt handles."),
]


class Problem(BaseModel):
    """Every error response: a stable code and a sentence saying what is wrong."""

    error: Annotated[str, Field(description="Machine-readable code, e.g. `queue_not_found`.")]
    message: Annotated[str, Field(description="What is wrong, for a person.")]
    details: list[dict[str, object]] | None = None


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

    def to_message(self) -> NewMessage:
        return SendMessageRequest.model_validate(self.model_dump(exclude={"id"})).to_message()


class SendBatchRequest(BaseModel):
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


class SendMessageResponse(BaseModel):
    message_id: str
    duplicate: Annotated[
        bool, Field(description="FIFO: the message repeated one sent within 5 minutes.")
    ] = False
    sequence: Annotated[int | None, Field(description="FIFO: position within its group.")] = None


class ScheduledList(BaseModel):
    """A destination's pending scheduled messages, soonest first (at most 100)."""

    scheduled: list[ScheduledMessage]


class BatchResultEntry(SendMessageResponse):
    id: str


class SendBatchResponse(BaseModel):
    successful: list[BatchResultEntry]
    failed: list[EntryFailure]


class ReceiveRequest(BaseModel):
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


class MessageOut(BaseModel):
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


class ReceiveResponse(BaseModel):
    messages: list[MessageOut]
    acked: Annotated[
        list[str], Field(description="Receipts of the request's `ack` acknowledged.")
    ] = []
    failed: Annotated[
        list[EntryFailure],
        Field(description="Receipts of the request's `ack` that were not (stale, malformed)."),
    ] = []


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipts: Receipts


class NackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipts: Receipts
    delay_seconds: Annotated[
        int,
        Field(ge=0, le=models.MAX_VISIBILITY_SECONDS, description="Redeliver after this long."),
    ] = 0


class VisibilityRequest(BaseModel):
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


class AckResponse(BaseModel):
    acked: list[str]
    failed: list[EntryFailure]


class NackResponse(BaseModel):
    released: list[str]
    failed: list[EntryFailure]


class VisibilityResponse(BaseModel):
    changed: list[str]
    failed: list[EntryFailure]


class QueueView(BaseModel):
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


class QueueList(BaseModel):
    queues: list[QueueView]


class PurgeResponse(BaseModel):
    purged: int


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_messages: Annotated[int, Field(ge=1, le=1000)] = 100
    destination: Annotated[
        str | None,
        Field(description="Where to move them (default: the queue each one came from)."),
    ] = None


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]


# ---- operations (issue #5: stats, browse, one-message actions, connections) ---------------


class TopicStats(BaseModel):
    pattern: str
    subscriptions: list[dict[str, str]] = Field(
        description="Durable subscriptions declared on this pattern: name and queue."
    )
    live_subscribers: int


class Overview(BaseModel):
    queues: list[QueueStats]
    truncated: bool = Field(
        description="More queues exist than the first 100 listed here (use /queues)."
    )
    topics: list[TopicStats]
    connections: int | None = Field(
        description="Open WebSocket connections; null unless the caller administers everything."
    )


class BrowseResponse(BaseModel):
    messages: list[BrowsedMessage]
    cursor: str | None = Field(description="Pass back as `cursor` for the next page; null: end.")


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[str, Field(description="Target queue (created with defaults if new).")]
    copy_only: Annotated[
        bool, Field(alias="copy", description="Copy instead of move: the source keeps it.")
    ] = False


class MoveResponse(BaseModel):
    message_id: str


class SubscriptionRef(BaseModel):
    """One subscription of a connection, as its client named it."""

    id: str = Field(description="The client's subscription id.")
    kind: str = Field(description="topic (live) or queue (push consumer)")
    destination: str = Field(description="`/topic/<pattern>` or `/queue/<name>`")


class ConnectionView(BaseModel):
    id: str
    protocol: str
    principal: str
    connected_at: int = Field(description="Epoch milliseconds.")
    subscriptions: int = Field(description="How many subscriptions (subscribed_to lists them).")
    subscribed_to: list[SubscriptionRef] = Field(default_factory=list)


class ConnectionList(BaseModel):
    connections: list[ConnectionView]


# ---- access control ---------------------------------------------------------------------


class PrincipalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grants: list[Grant] = Field(
        max_length=MAX_GRANTS,
        description="What the principal may do: destination patterns and actions.",
    )


class PrincipalList(BaseModel):
    principals: list[PrincipalView]


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=MAX_TTL_SECONDS,
        description="Seconds until the key stops working; omit for a key that lasts until revoked.",
    )


class KeyList(BaseModel):
    keys: list[ApiKeyView]


class QueuePresence(BaseModel):
    queue: str
    consumers: int = Field(
        description="Push consumers now (WebSocket subscriptions, STOMP or JSON; the "
        "subscriber of a durable topic subscription counts on its queue)."
    )


class DurablePresenceView(BaseModel):
    name: str
    queue: str
    consumers: int = Field(description="Push consumers of the subscription's queue now.")


class TopicPresenceView(BaseModel):
    topic: str
    consumers: int = Field(
        description="Live subscribers plus the consumers of the durable subscriptions."
    )
    live_subscribers: int = Field(description="Live subscriptions whose pattern matches the topic.")
    durable_subscriptions: list[DurablePresenceView] = Field(
        description="Durable subscriptions whose pattern matches the topic."
    )
