"""Messages as the domain sees them: what a producer hands over (`NewMessage`, with the
rules its text and attributes keep), what a consumer gets (`Delivery`), and what a send
answers (`SendResult`, `EntryFailure`)."""

from __future__ import annotations

import base64
import re
from typing import Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mqless.domain.errors import PayloadTooLarge
from mqless.domain.models import (
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    MAX_BODY_BYTES,
    MAX_DEDUP_ID,
    MAX_DELAY_SECONDS,
    MAX_GROUP_ID,
    MAX_PRIORITY,
    MAX_RETENTION_SECONDS,
)

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


class NewMessage(BaseModel):
    """A message as a producer hands it over (body already decoded to bytes)."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True, extra="forbid")

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

    model_config = ConfigDict(defer_build=True)

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
    model_config = ConfigDict(defer_build=True)

    message_id: str
    duplicate: bool = False
    sequence: int | None = None
