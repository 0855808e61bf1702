"""HTTP request and response bodies; the OpenAPI document is generated from these."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqless.domain import models
from mqless.domain.access.api_keys import MAX_TTL_SECONDS, ApiKeyView
from mqless.domain.access.principals import MAX_GRANTS, Grant
from mqless.domain.access.users import PrincipalView
from mqless.domain.errors import InvalidRequest, PayloadTooLarge
from mqless.domain.models import (
    BrowsedMessage,
    Delivery,
    EntryFailure,
    NewMessage,
    QueueConfig,
    QueueCounts,
    QueueStats,
)
from mqless.domain.scheduling import ScheduledMessage, check_rule
from mqless.domain.topics.service import Subscription
from mqless.storage.schedules import Rule

Receipts = Annotated[
    list[Annotated[str, Field(max_length=1024)]],
    Field(min_length=1, max_length=models.MAX_BATCH, description="1-10 receipt handles."),
]


class Problem(BaseModel):
    """Every error response: a stable code and a sentence saying what is wrong."""

    error: Annotated[str, Field(description="Machine-readable code, e.g. `queue_not_found`.")]
    message: Annotated[str, Field(description="What is wrong, for a person.")]
    details: list[dict[str, object]] | None = None


_SCHEDULE_FIELDS = frozenset({"period_seconds", "repeat", "cron"})


class SendMessageRequest(BaseModel):
    """A message to send; only `body` is required."""

    model_config = ConfigDict(extra="forbid")

    body: Annotated[
        str, Field(description="Text (UTF-8), or base64 when `binary` is true. Up to 256 KiB.")
    ]
    binary: Annotated[bool, Field(description="`body` is base64-encoded bytes.")] = False
    attributes: Annotated[
        dict[str, str], Field(description="String headers (at most 50), delivered as sent.")
    ] = Field(default_factory=dict)
    content_type: Annotated[str | None, Field(max_length=256)] = None
    correlation_id: Annotated[str | None, Field(max_length=256)] = None
    reply_to: Annotated[str | None, Field(max_length=256)] = None
    delay_seconds: Annotated[
        int | None,
        Field(
            ge=0,
            le=models.MAX_RETENTION_SECONDS,
            description="Hold back delivery: up to 900 s as a delayed message, longer (up to "
            "the queue's retention) as a scheduled one; with `cron`, after each time it fires.",
        ),
    ] = None
    period_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=models.MAX_RETENTION_SECONDS,
            description="Scheduled: seconds between the deliveries `repeat` asks for.",
        ),
    ] = None
    repeat: Annotated[
        int | None,
        Field(
            ge=0,
            le=1_000_000,
            description="Scheduled: deliver this many times more, `period_seconds` apart "
            "(ActiveMQ's AMQ_SCHEDULED_REPEAT).",
        ),
    ] = None
    cron: Annotated[
        str | None,
        Field(
            max_length=120,
            description="Scheduled: a 5-field cron expression (UTC); each time it fires, the "
            "delay, period and repeat apply (ActiveMQ's AMQ_SCHEDULED_CRON).",
        ),
    ] = None
    ttl_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=models.MAX_RETENTION_SECONDS,
            description="Drop the message if not delivered within this time (of each "
            "delivery, for a scheduled one).",
        ),
    ] = None
    group_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=models.MAX_GROUP_ID,
            description="FIFO queues: messages of a group are delivered in order, one at a time.",
        ),
    ] = None
    dedup_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=models.MAX_DEDUP_ID,
            description="FIFO queues: a repeat within 5 minutes is accepted but not stored again "
            "(default: SHA-256 of the body).",
        ),
    ] = None
    priority: Annotated[
        int | None,
        Field(
            ge=0,
            le=models.MAX_PRIORITY,
            strict=True,
            description="JMS priority 0-9 (default 4). A queue with `max_priority` delivers "
            "higher priorities first; any other queue keeps it on the message only.",
        ),
    ] = None

    @field_validator("attributes")
    @classmethod
    def _attributes_are_text(cls, value: dict[str, str]) -> dict[str, str]:
        # JSON can carry lone surrogates ("\ud800"); they are not text and cannot be stored.
        for text in (*value.keys(), *value.values()):
            if not _is_unicode(text):
                raise ValueError("attribute names and values must be valid Unicode text")
        return value

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_rule(Rule(cron=value))
            except InvalidRequest as exc:
                raise ValueError(exc.message) from None
        return value

    def rule(self) -> Rule | None:
        """The schedule asked for, if any (a delay alone is one)."""
        plain = self.period_seconds is None and self.repeat is None and self.cron is None
        if plain and (self.delay_seconds or 0) <= models.MAX_DELAY_SECONDS:
            return None
        return check_rule(
            Rule(
                delay_ms=(self.delay_seconds or 0) * 1000,
                period_ms=(self.period_seconds or 0) * 1000,
                repeat=self.repeat or 0,
                cron=self.cron,
            )
        )

    def to_scheduled(self) -> tuple[NewMessage, Rule | None]:
        """The message, and the schedule to send it on (None: send it now, or after
        `delay_seconds` as a delayed message)."""
        rule = self.rule()
        return self._message(with_delay=rule is None), rule

    def to_message(self) -> NewMessage:
        """Decode the body and check the limits the model itself cannot express (no
        schedule: batches take none)."""
        if self.rule() is not None:
            raise InvalidRequest(
                "period_seconds, repeat, cron and delays over 900 s schedule a message: send "
                "it alone, not in a batch"
            )
        return self._message(with_delay=True)

    def _message(self, *, with_delay: bool) -> NewMessage:
        if len(self.body) > 2 * models.MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body is over the {models.MAX_BODY_BYTES}-byte limit")
        if self.binary:
            try:
                raw = base64.b64decode(self.body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest("body is not valid base64 (binary is true)") from exc
        else:
            raw = self.body.encode("utf-8", errors="surrogatepass")
        try:
            fields = self.model_dump(exclude={"body", *_SCHEDULE_FIELDS})
            if not with_delay:
                fields["delay_seconds"] = None
            return NewMessage(body=raw, **fields)
        except ValueError as exc:
            raise InvalidRequest(_first_error(exc)) from exc


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


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            first = found[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            text = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
            return f"{where}: {text}" if where else text
    return str(exc)


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
