"""Sealed messages: what of a message is encrypted, and which destination it is bound to.

Everything a sender wrote travels inside the AES-GCM envelope (`envelope.py`, format 0x02):
the body and its headers (attributes, content type, correlation id, reply-to, dedup id,
the binary flag) and, once the message has moved, the destination it was first sent to.
The headers are a compact JSON block with one-letter keys, defaults left out (`Headers`).

A sealed block is bound to the destination that *holds* the item (`Holder`: the queue
whose partition it is in, or the topic it was published to) and to the message id: that
pair is the AES-GCM associated data, and the holder names the data key's KMS context. A
reader opens an item with the holder it read it from, never with a field of the item, so
an item copied into another log does not open there. A body never moves (storage engine
v2): a dead letter, redrive, move, copy or fan-out into a subscription's queue appends a
reference to it, which carries a MAC (`refs.py`), and the body is opened with the holder of
the log it is in.

What stays in the clear is what the broker must read without opening anything: keys and
ids (destination names, message id, FIFO group id and sequence), timestamps and counters
(sent, visible, expiry, receive count, lease), the lease owner, a dead letter's reason and
source queue, a topic message's TTL; and the sizes of items and ciphertexts.

Format 0x01, written by earlier versions, kept the headers in the clear and bound the body
to the `origin` field. Such items are still opened by that rule, so that an upgrade loses
nothing in flight, but only while the time in their message id (authenticated by the AEAD)
is less than twice the longest retention old: the rule a copied item could abuse closes by
itself 28 days after the upgrade, whatever someone who can write the table does to expiry
fields. A 0x01 item that moves is sealed again as 0x02.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mqless.domain.errors import IntegrityError
from mqless.domain.messages import NewMessage
from mqless.domain.models import MAX_RETENTION_SECONDS
from mqless.storage import keys
from mqless.storage.dynamo import Item
from mqless.storage.envelope import LEGACY_FORMAT_VERSION, Opened, Sealed
from mqless.storage.log import LogItem

# Format 0x01 kept these in the clear; an item sealed again drops them.
LEGACY_FIELDS: Final = frozenset({"origin", "bin", "attrs", "ctype", "corr", "reply", "dedup"})
LEGACY_MAX_AGE_MS: Final = 2 * MAX_RETENTION_SECONDS * 1000


class BodyCipher(Protocol):
    """What sealing needs from envelope encryption (`envelope.EnvelopeCipher`)."""

    def encrypt(
        self, body: bytes, *, destination: str, message_id: str, header: bytes = b""
    ) -> Sealed: ...

    def encrypt_many(
        self, messages: Sequence[tuple[bytes, bytes, str]], *, destination: str
    ) -> list[Sealed]: ...

    def decrypt(self, sealed: Sealed, *, destination: str, message_id: str) -> Opened: ...


@dataclass(frozen=True, slots=True)
class Holder:
    """The destination whose partition holds an item: what its sealed block is bound to."""

    kind: Literal["queue", "topic"]
    name: str

    @classmethod
    def queue(cls, name: str) -> Holder:
        return cls("queue", name)

    @classmethod
    def topic(cls, name: str) -> Holder:
        return cls("topic", name)

    def __str__(self) -> str:
        # The kind keeps a topic's items from opening in a queue of the same name.
        return f"/{self.kind}/{self.name}"


class Headers(BaseModel):
    """What a sender wrote besides the body (and, once moved, where it was first sent)."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True, frozen=True, populate_by_name=True)

    attributes: dict[str, str] = Field(default_factory=dict, alias="a")
    content_type: str | None = Field(default=None, alias="t")
    correlation_id: str | None = Field(default=None, alias="c")
    reply_to: str | None = Field(default=None, alias="r")
    dedup_id: str | None = Field(default=None, alias="d")
    # FIFO without a dedup id: deduplicated on the body, whose SHA-256 consumers see as its id
    content_dedup: bool = Field(default=False, alias="h")
    binary: bool = Field(default=False, alias="b")
    origin: str | None = Field(default=None, alias="o")  # absent: the holder itself
    priority: int | None = Field(default=None, alias="p")  # JMS 0-9; absent: sent without

    @classmethod
    def of(cls, message: NewMessage, *, content_dedup: bool = False) -> Headers:
        """The headers of a message being sent."""
        return cls(
            attributes=message.attributes,
            content_type=message.content_type,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            dedup_id=message.dedup_id,
            content_dedup=content_dedup and message.dedup_id is None,
            binary=message.binary,
            priority=message.priority,
        )

    def encode(self) -> bytes:
        """Compact JSON without defaults; nothing at all when every field is a default."""
        text = self.model_dump_json(by_alias=True, exclude_defaults=True)
        return b"" if text == "{}" else text.encode()

    @classmethod
    def decode(cls, header: bytes) -> Headers:
        """The headers of an authenticated header block."""
        if not header:
            return cls()
        try:
            return cls.model_validate_json(header)
        except ValidationError:
            raise IntegrityError("message failed authentication: malformed headers") from None


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    """A message as its holder opened it."""

    body: bytes = field(repr=False)
    headers: Headers
    origin: str  # the destination it was first sent or published to

    @property
    def dedup_id(self) -> str | None:
        """The client's dedup id, or the body's SHA-256 for content-based FIFO dedup."""
        if self.headers.dedup_id is not None:
            return self.headers.dedup_id
        return hashlib.sha256(self.body).hexdigest() if self.headers.content_dedup else None


def seal(
    cipher: BodyCipher, headers: Headers, body: bytes, *, holder: Holder, message_id: str
) -> Item:
    """The sealed fields (`body`, `dk`) of message `message_id` held by `holder`."""
    sealed = cipher.encrypt(
        body, destination=str(holder), message_id=message_id, header=headers.encode()
    )
    return {"body": sealed.ciphertext, "dk": sealed.encrypted_key}


def seal_many(
    cipher: BodyCipher, messages: Sequence[tuple[Headers, bytes, str]], *, holder: Holder
) -> list[Sealed]:
    """Seal (headers, body, message id) for `holder` under one data key (one log item)."""
    return cipher.encrypt_many(
        [(body, headers.encode(), message_id) for headers, body, message_id in messages],
        destination=str(holder),
    )


def open_logged(cipher: BodyCipher, item: LogItem, slot: int, *, now_ms: int) -> OpenedMessage:
    """Open body `slot` of a log item, as the queue or topic whose log holds it."""
    kind, destination, _ = keys.parse_log_partition(item.partition)
    holder = Holder.topic(destination) if kind == "topic" else Holder.queue(destination)
    if slot >= len(item.bodies):
        raise IntegrityError("message failed authentication: no such body in its log item")
    return open_item(
        cipher,
        {
            "id": keys.message_id(item.item, slot),
            "body": item.bodies[slot],
            "dk": item.encrypted_key,
        },
        holder=holder,
        now_ms=now_ms,
    )


def open_item(cipher: BodyCipher, item: Item, *, holder: Holder, now_ms: int) -> OpenedMessage:
    """Open a stored message as `holder` (where it was read from); IntegrityError if it
    was altered, or sealed for another holder or message id."""
    message_id = str(item.get("id", ""))
    sealed = Sealed(
        ciphertext=bytes(item.get("body") or b""), encrypted_key=bytes(item.get("dk") or b"")
    )
    if sealed.version == LEGACY_FORMAT_VERSION:
        return _open_legacy(cipher, item, sealed, message_id, now_ms)
    opened = cipher.decrypt(sealed, destination=str(holder), message_id=message_id)
    headers = Headers.decode(opened.header)
    return OpenedMessage(opened.body, headers, headers.origin or holder.name)


def reseal(cipher: BodyCipher, item: Item, opened: OpenedMessage, *, target: Holder) -> Item:
    """`item` sealed again for `target`: same id, body and headers (format 0x01's clear
    fields dropped). `opened` is the item as its current holder opened it."""
    origin = None if opened.origin == target.name else opened.origin
    headers = opened.headers.model_copy(update={"origin": origin})
    fresh = {k: v for k, v in item.items() if k not in LEGACY_FIELDS}
    fresh.update(seal(cipher, headers, opened.body, holder=target, message_id=str(item["id"])))
    return fresh


def _open_legacy(
    cipher: BodyCipher, item: Item, sealed: Sealed, message_id: str, now_ms: int
) -> OpenedMessage:
    sent_ms = _id_time_ms(message_id)
    if sent_ms is None or now_ms - sent_ms > LEGACY_MAX_AGE_MS:
        raise IntegrityError(
            "message failed authentication: format 0x01 is opened only for "
            f"{LEGACY_MAX_AGE_MS // 86_400_000} days after sending"
        )
    origin = item.get("origin")
    if not isinstance(origin, str):
        raise IntegrityError("message failed authentication: format 0x01 without its origin")
    opened = cipher.decrypt(sealed, destination=origin, message_id=message_id)
    try:
        headers = Headers(
            attributes={str(k): str(v) for k, v in (item.get("attrs") or {}).items()},
            content_type=item.get("ctype"),
            correlation_id=item.get("corr"),
            reply_to=item.get("reply"),
            dedup_id=item.get("dedup"),
            binary=bool(item.get("bin", False)),
        )
    except (ValidationError, AttributeError):
        raise IntegrityError("message failed authentication: malformed headers") from None
    return OpenedMessage(opened.body, headers, origin)


def _id_time_ms(message_id: str) -> int | None:
    """The send time in a message id (UUIDv7: its first 48 bits), None if it is not one."""
    try:
        return int(uuid.UUID(message_id)) >> 80
    except ValueError:
        return None
