"""Identifiers: time-ordered message ids and random lease ids."""

from __future__ import annotations

import os
import uuid


def new_message_id(now_ms: int) -> str:
    """A UUIDv7-shaped id: sorts by creation time, 74 random bits keep it unique."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (now_ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    # version 7 and RFC 4122 variant bits
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def new_lease_id() -> str:
    """An unguessable lease id; a receipt is only as good as this secret."""
    return os.urandom(16).hex()


def is_ascii_digits(text: str) -> bool:
    """Digits int() accepts: str.isdigit() alone also passes '²', which int() refuses."""
    return text.isascii() and text.isdigit()
