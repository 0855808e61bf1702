"""Domain models shared by every transport: queue configuration, messages, deliveries."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mqless.domain import names
from mqless.domain.errors import PayloadTooLarge
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
DEFAULT_PRIORITY = 4  # JMS's default: what a message sent without a priority has

VisibilitySeconds = Annotated[
    int,
    Field(ge=0, le=MAX_VISIBILITY_SECONDS, description="Lease length in seconds (0-43200)."),
]
# Text a message carries (attribute values, content type, correlation id, reply-to, group
# and dedup ids) holds SQS's character set, the XML 1.0 Char production: TAB, LF, CR and
# everything from U+0020 but surrogates, U+FFFE and U+FFFF. NUL and the other C0 controls
# can travel in no STOMP header and mean nothing in a header anyway.
_NOT_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Attribute names are STOMP header names too: STOMP 1.0 frames cannot escape CR, LF or ':'
# in a name, so a name holds no control character at all, and no ':'.
_NOT_NAME: Final = re.compile("[\x00-\x1f:\ud800-\udfff\ufffe\uffff]")
RESERVED_PREFIX: Final = "mqless-"
"""Attribute names starting with this (in any case) are the broker's own headers."""
BROKER_HEADERS: Final = frozenset(
    {
        "destination",
        "message-id",
        "subscription",
        "ack",
        "content-type",
        "content-length",
        "correlation-id",
        "reply-to",
        "redelivered",
        "timestamp",
        "expires",
        "persistent",
        "receipt",
        "transaction",
        "JMSXGroupID",
    }
)
"""STOMP headers the broker writes on a MESSAGE (or reads on a SEND): no attribute takes
their names, so a STOMP consumer and a JSON consumer see the same attributes."""

DelaySeconds = Annotated[
    int, Field(ge=0, le=MAX_DELAY_SECONDS, description="Seconds before delivery (0-900).")
]


class QueueSettings(BaseModel):
    """The settable part of a queue; omitted fields take defaults on create."""

    model_config = ConfigDict(extra="forbid")

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


class NewMessage(BaseModel):
    """A message as a producer hands it over (body already decoded to bytes)."""

    model_config = ConfigDict(extra="forbid")

    body: bytes
    binary: bool = False
    attributes: dict[str, str] = Field(default_factory=dict)
    content_type: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    delay_seconds: int | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS)
    ttl_seconds: int | None = Field(default=None, ge=1, le=MAX_RETENTION_SECONDS)
    group_id: str | None = Field(default=None, min_length=1, max_length=MAX_GROUP_ID)
    dedup_id: str | None = Field(default=None, min_length=1, max_length=MAX_DEDUP_ID)
    priority: int | None = Field(default=None, ge=0, le=MAX_PRIORITY)

    @field_validator("content_type", "correlation_id", "reply_to", "group_id", "dedup_id")
    @classmethod
    def _valid_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (found := _NOT_TEXT.search(value)):
            raise ValueError(f"{info.field_name} must not hold {_describe(found.group())}; {_TEXT}")
        return value

    @field_validator("attributes")
    @classmethod
    def _attribute_limits(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        for key, item in value.items():
            _check_attribute_name(key)
            if len(item) > MAX_ATTRIBUTE_VALUE:
                raise ValueError(
                    f"attribute {_quote(key)} is over {MAX_ATTRIBUTE_VALUE} characters"
                )
            if found := _NOT_TEXT.search(item):
                raise ValueError(
                    f"attribute {_quote(key)} must not hold {_describe(found.group())} in its "
                    f"value; {_TEXT}"
                )
        return value

    @model_validator(mode="after")
    def _text_is_utf8(self) -> NewMessage:
        if not self.binary:
            try:
                self.body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError("a text body must be UTF-8; send binary with binary=true") from exc
        return self

    def size(self) -> int:
        """Bytes counted against the 256 KiB limit: body plus attribute names and values."""
        attrs = sum(len(k.encode()) + len(v.encode()) for k, v in self.attributes.items())
        return len(self.body) + attrs

    def check_size(self) -> None:
        """Raise PayloadTooLarge if the message is over the 256 KiB limit."""
        if self.size() > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"message is {self.size()} bytes; the limit is {MAX_BODY_BYTES} "
                "(body plus attribute names and values)"
            )


_TEXT: Final = "text may hold TAB, LF, CR and printable Unicode (as in SQS)"


def _check_attribute_name(name: str) -> None:
    """ValueError, naming the attribute, unless `name` may be an attribute's name."""
    if not name or len(name) > MAX_ATTRIBUTE_NAME:
        raise ValueError(f"attribute names are 1-{MAX_ATTRIBUTE_NAME} characters")
    if found := _NOT_NAME.search(name):
        raise ValueError(
            f"attribute name {_quote(name)} must not hold {_describe(found.group())}; names "
            "travel as STOMP headers: no control characters and no ':'"
        )
    if name.lower().startswith(RESERVED_PREFIX):
        raise ValueError(
            f"attribute name {_quote(name)} is reserved: names starting with "
            f"{RESERVED_PREFIX!r} are the broker's own headers"
        )
    if name in BROKER_HEADERS:
        raise ValueError(
            f"attribute name {_quote(name)} is reserved: it is a header the broker sets on "
            "STOMP messages; choose another name"
        )


def _describe(char: str) -> str:
    if char == ":":
        return "':'"
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return f"U+{code:04X} (a lone surrogate, not text)"
    if code in (0xFFFE, 0xFFFF):
        return f"U+{code:04X} (a noncharacter)"
    return f"U+{code:04X} (a control character)"


def _quote(text: str) -> str:
    """A client's name quoted for an error message: escaped, cut short."""
    return repr(text) if len(text) <= 60 else repr(text[:60]) + "..."


class Delivery(BaseModel):
    """A leased message as a consumer sees it."""

    message_id: str
    receipt: str
    queue: str
    body: bytes
    binary: bool
    attributes: dict[str, str]
    content_type: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    receive_count: int
    sent_at: int
    group_id: str | None = None
    dedup_id: str | None = None
    dead_letter_reason: str | None = None
    source_queue: str | None = None
    origin: str | None = None  # where it was sent: the queue, or the topic it was published to
    priority: int | None = None  # as sent (0-9); None: sent without one (JMS's 4)

    def body_text(self) -> str:
        """The body as it travels in JSON: text as is, binary as base64."""
        return base64.b64encode(self.body).decode() if self.binary else self.body.decode()


class SendResult(BaseModel):
    message_id: str
    duplicate: bool = False
    sequence: int | None = None


class EntryFailure(BaseModel):
    id: str
    error: str
    message: str


class QueueCounts(BaseModel):
    """Message counts at the moment of the query: exact unless `approximate`, when a
    count reached its bound (1,000 index entries) and is a lower bound."""

    visible: int
    in_flight: int
    delayed: int
    approximate: bool = False


class QueueStats(BaseModel):
    """What an operator watches on a queue."""

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
    moved: int
    failed: list[EntryFailure] = Field(default_factory=list)
