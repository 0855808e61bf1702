"""Identifiers: time-ordered message ids, and the limit on client ids."""

from __future__ import annotations

import os
import uuid
from typing import Final

from mqless.domain.errors import InvalidRequest

MAX_CLIENT_ID: Final = 128
"""The most characters in a client's id that becomes part of a storage key: subscription
ids and transaction names. 128 characters are at most 512 bytes of UTF-8, so the longest
key built from one (a live subscription: `<topic pattern, 80>#<connection>#<id>`) stays
far under DynamoDB's 1,024-byte sort key limit."""


def new_message_id(now_ms: int) -> str:
    """A UUIDv7-shaped id: sorts by creation time, 74 random bits keep it unique."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (now_ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    # version 7 and RFC 4122 variant bits
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def is_ascii_digits(text: str) -> bool:
    """Digits int() accepts: str.isdigit() alone also passes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def check_client_id(value: str, what: str) -> str:
    """`value` if it is short enough to be part of a storage key; InvalidRequest naming
    `what` and the limit if not."""
    if len(value) > MAX_CLIENT_ID:
        raise InvalidRequest(
            f"{what} is {len(value)} characters long; the limit is {MAX_CLIENT_ID}"
        )
    return value
