"""Domain models shared by every transport: queue settings and configuration, the limits they
keep, and what a queue reports (counts, stats, browsed messages, a redrive's result).
Messages themselves are in `messages.py`."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from mqless.domain import names
from mqless.storage import keys

MAX_BODY_BYTES = 256 * 1024
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_NAME = 256
MAX_ATTRIBUTE_VALUE = 4096
MAX_DELAY_SECONDS = 900
MAX_VISIBILITY_SECONDS = 12 * 60 * 60
MIN_RETENTION_SECONDS = 60
MAX_RETENTION_SECONDS = 14 * 24 * 60 * 60
DEFAULT_RETENTION_SECONDS = 4 * 24 * 60 * 60
DEFAULT_VISIBILITY_SECONDS = 30
DEFAULT_MAX_RECEIVE_COUNT = 10
MAX_BATCH = 10
MAX_WAIT_SECONDS = 20
DEDUP_WINDOW_SECONDS = 5 * 60
MAX_GROUP_ID = 128
# a standard queue's shard takes ~415 messages/s of 1 KB sent one per request (its index
# partition: lease, ack and index writes): 8 carry one queue past 3,000 messages/s. Every
# shard is read by a receive that finds nothing (docs/storage-engine.md, "Shards")
DEFAULT_SHARDS = 8
# a FIFO queue's segments rotate over its shards, and its groups' sends spread over them
# (docs/storage-engine.md, "FIFO queues"): 16 carry 30 groups past 3,000 messages/s
DEFAULT_FIFO_SHARDS = 16
MAX_SHARDS = 64
MAX_DEDUP_ID = 128
MAX_PRIORITY = 9  # JMS priorities are 0-9
# a JMS selector's text (`domain.selectors` checks it): here, so that the models that take
# one do not load the selector parser before a selector comes (issue 18)
MAX_SELECTOR_LENGTH: Final = 4096
DEFAULT_PRIORITY = 4  # JMS's default: what a message sent without a priority has

VisibilitySeconds = Annotated[
    int,
    Field(ge=0, le=MAX_VISIBILITY_SECONDS, description="Lease length in seconds (0-43200)."),
]
DelaySeconds = Annotated[
    int, Field(ge=0, le=MAX_DELAY_SECONDS, description="Seconds before delivery (0-900).")
]


class QueueSettings(BaseModel):
    """The settable part of a queue; omitted fields take defaults on create."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True, extra="forbid")

    visibility_timeout: VisibilitySeconds | None = None
    max_receive_count: Annotated[
        int | None,
        Field(
            ge=1,
            le=1000,
            description="Deliveries before a message is dead-lettered; null: never.",
        ),
    ] = DEFAULT_MAX_RECEIVE_COUNT
    dead_letter_queue: Annotated[
        str | None,
        Field(
            description="Where over-limit messages go; default `<name>.dlq` "
            "(`<base>.dlq.fifo` for FIFO queues).",
        ),
    ] = None
    retention_seconds: Annotated[
        int | None,
        Field(ge=MIN_RETENTION_SECONDS, le=MAX_RETENTION_SECONDS, description="Message lifetime."),
    ] = None
    delay_seconds: DelaySeconds | None = None
    shards: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_SHARDS,
            description="Partitions the queue's messages are spread over (default 8, FIFO 16; "
            "each takes about 400 messages/s sent one per request, up to 1,500 in batches of "
            "10). A standard queue's can grow, never shrink; a FIFO queue's are fixed when it "
            "is made. A queue with max_priority has this many per priority lane (default: "
            "8 shared by its lanes, at least 1 each).",
        ),
    ] = None

    max_priority: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_PRIORITY,
            description="The highest priority the queue tells apart (RabbitMQ's "
            "x-max-priority): 1-9 makes max_priority + 1 lanes, higher priorities first; a "
            "message's priority above it counts as max_priority. Null (the default): one "
            "lane, priorities kept on messages but not ordered by. Standard queues only; "
            "fixed when the queue is made.",
        ),
    ] = None

    @field_validator("dead_letter_queue")
    @classmethod
    def _dlq_name(cls, value: str | None) -> str | None:
        return None if value is None else names.validate_queue_name(value)


class QueueConfig(BaseModel):
    """A queue as stored: its name, type and resolved settings."""

    model_config = ConfigDict(defer_build=True)

    name: str
    fifo: bool
    visibility_timeout: int = DEFAULT_VISIBILITY_SECONDS
    max_receive_count: int | None = DEFAULT_MAX_RECEIVE_COUNT
    dead_letter_queue: str | None = None
    retention_seconds: int = DEFAULT_RETENTION_SECONDS
    delay_seconds: int = 0
    shards: int = DEFAULT_SHARDS
    max_priority: int | None = None
    created_at: int = 0
    updated_at: int = 0
    created_by: str | None = None  # the principal whose request created it; None: the broker
    charged_to: str | None = None  # whose quota it counts against (quotas.py)

    @property
    def lanes(self) -> int:
        """Priority lanes: max_priority + 1, or 1 (a queue without priorities)."""
        return 1 if self.max_priority is None else self.max_priority + 1

    def lane_of(self, priority: int | None) -> int:
        """The lane a message of this priority is indexed in (RabbitMQ's rule: a priority
        above the queue's highest counts as its highest; none is JMS's default, 4)."""
        if self.max_priority is None:
            return 0
        return min(DEFAULT_PRIORITY if priority is None else priority, self.max_priority)

    def index_shards(self) -> list[int]:
        """Every index shard of the queue, highest lane first (`keys.lane_shard`)."""
        return [
            keys.lane_shard(lane, shard)
            for lane in reversed(range(self.lanes))
            for shard in range(self.shards)
        ]

    def has_index_shard(self, shard: int) -> bool:
        """Whether a receipt's shard is one of this queue's index shards."""
        lane, base = divmod(shard, MAX_SHARDS)
        return shard >= 0 and lane < self.lanes and base < self.shards

    @classmethod
    def from_settings(cls, name: str, settings: QueueSettings, now_ms: int) -> QueueConfig:
        """Resolve defaults: a dead-letter queue is named for the queue unless set or unwanted."""
        names.validate_queue_name(name)
        fifo = names.is_fifo(name)
        max_receive = settings.max_receive_count
        dlq = settings.dead_letter_queue
        if "max_receive_count" not in settings.model_fields_set and names.is_dead_letter_name(name):
            max_receive = None  # a dead-letter queue keeps what it is given
        if max_receive is not None and dlq is None:
            dlq = names.default_dead_letter_queue(name)
            if dlq is None:
                from mqless.domain.errors import InvalidRequest

                raise InvalidRequest(
                    f"queue name {name!r} is too long to derive a dead-letter queue name; "
                    "set dead_letter_queue or max_receive_count: null"
                )
        if fifo and settings.max_priority is not None:
            from mqless.domain.errors import InvalidRequest

            raise InvalidRequest(
                f"queue {name!r} is FIFO: a FIFO queue delivers each group in send order, so it "
                "takes no max_priority (as SQS FIFO has no priority)"
            )
        return cls(
            name=name,
            fifo=fifo,
            visibility_timeout=(
                DEFAULT_VISIBILITY_SECONDS
                if settings.visibility_timeout is None
                else settings.visibility_timeout
            ),
            max_receive_count=max_receive,
            dead_letter_queue=dlq if max_receive is not None else None,
            retention_seconds=settings.retention_seconds or DEFAULT_RETENTION_SECONDS,
            delay_seconds=settings.delay_seconds or 0,
            shards=settings.shards or _default_shards(fifo, settings.max_priority),
            max_priority=settings.max_priority,
            created_at=now_ms,
            updated_at=now_ms,
        )


def _default_shards(fifo: bool, max_priority: int | None) -> int:
    """Shards a queue made without naming them gets. A queue with priorities has that many
    per lane: its lanes share the default 8 (10 lanes get 1 each), so that a receive which
    looks through its lanes reads about as many partitions as a queue without them."""
    if fifo:
        return DEFAULT_FIFO_SHARDS
    if max_priority is not None:
        return max(1, DEFAULT_SHARDS // (max_priority + 1))
    return DEFAULT_SHARDS


class EntryFailure(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    error: str
    message: str


class QueueCounts(BaseModel):
    """Message counts at the moment of the query: exact unless `approximate`, when a
    count reached its bound (1,000 index entries) and is a lower bound."""

    model_config = ConfigDict(defer_build=True)

    visible: int
    in_flight: int
    delayed: int
    approximate: bool = False


class QueueStats(BaseModel):
    """What an operator watches on a queue."""

    model_config = ConfigDict(defer_build=True)

    name: str
    fifo: bool
    visible: int
    in_flight: int
    delayed: int
    oldest_age_seconds: int | None = Field(
        description="Age of the oldest visible message (null: none visible)."
    )
    dead_letter_queue: str | None
    dead_letter_visible: int | None
    consumers: int = Field(description="WebSocket push consumers subscribed now.")
    approximate: bool = Field(description="A count reached its bound: read it as 'at least'.")


class BrowsedMessage(BaseModel):
    """A message as an operator peeks at it (nothing is leased)."""

    model_config = ConfigDict(defer_build=True)

    message_id: str
    body: str | None = Field(description="Text, or base64 when binary; null if unreadable.")
    binary: bool
    attributes: dict[str, str]
    content_type: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    sent_at: int
    receive_count: int
    state: str = Field(description="visible, in_flight or delayed")
    visible_at: int | None = None
    group_id: str | None = None
    dead_letter_reason: str | None = None
    source_queue: str | None = None
    priority: int | None = Field(default=None, description="As sent (0-9); null: none.")
    error: str | None = Field(default=None, description="Why the body is unreadable.")


class RedriveResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    moved: int
    failed: list[EntryFailure] = Field(default_factory=list)
