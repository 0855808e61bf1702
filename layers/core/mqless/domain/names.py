"""Destination names: what is allowed and what a name implies."""

from __future__ import annotations

import hashlib
import re

from mqless.domain.errors import InvalidRequest

MAX_NAME_LENGTH = 80
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")
FIFO_SUFFIX = ".fifo"
DLQ_MARK = ".dlq"


def validate_queue_name(name: str) -> str:
    """Return `name` if it is a valid destination name, else raise InvalidRequest."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid queue name {name[:100]!r}: use 1-80 characters from A-Z a-z 0-9 _ . -"
        )
    return name


def is_fifo(name: str) -> bool:
    """A `.fifo` suffix makes a FIFO queue (as in SQS)."""
    return name.endswith(FIFO_SUFFIX)


def is_dead_letter_name(name: str) -> bool:
    """Names made by `default_dead_letter_queue` (they get no dead-letter queue of their own)."""
    return name.endswith(DLQ_MARK) or name.endswith(DLQ_MARK + FIFO_SUFFIX)


def dead_letter_source(name: str) -> str | None:
    """The queue whose default dead-letter queue `name` is: `orders.dlq` -> `orders`,
    `orders.dlq.fifo` -> `orders.fifo`; None for any other name."""
    if name.endswith(DLQ_MARK + FIFO_SUFFIX):
        return name[: -len(DLQ_MARK + FIFO_SUFFIX)] + FIFO_SUFFIX
    source = name[: -len(DLQ_MARK)] if name.endswith(DLQ_MARK) else ""
    # `x.fifo.dlq` is no queue's: the dead-letter queue of `x.fifo` is `x.dlq.fifo`
    return source if source and not is_fifo(source) else None


def default_dead_letter_queue(name: str) -> str | None:
    """`orders` -> `orders.dlq`, `orders.fifo` -> `orders.dlq.fifo`; None if too long."""
    if is_fifo(name):
        candidate = name[: -len(FIFO_SUFFIX)] + DLQ_MARK + FIFO_SUFFIX
    else:
        candidate = name + DLQ_MARK
    return candidate if len(candidate) <= MAX_NAME_LENGTH else None


TEMP_QUEUE_PREFIX = "temp-queue."
"""Temporary queues (`/temp-queue/NAME` in STOMP) are real queues under this prefix."""


def temp_queue_owner(connection_id: str) -> str:
    """The part of a temporary queue's name that ties it to the connection that made it:
    16 hex digits of a SHA-256 of the connection id (ids are not shown to other clients)."""
    digest = hashlib.sha256(connection_id.encode()).hexdigest()[:16]
    return f"{TEMP_QUEUE_PREFIX}{digest}."


def temp_queue_name(connection_id: str, name: str) -> str:
    """The real queue behind a connection's `/temp-queue/<name>`; InvalidRequest if the
    result is not a valid queue name (`name` may be 1-52 characters long)."""
    room = MAX_NAME_LENGTH - len(temp_queue_owner(connection_id))
    if not _NAME.fullmatch(name) or len(name) > room:
        raise InvalidRequest(
            f"invalid temporary queue name {name[:100]!r}: use 1-{room} characters "
            "from A-Z a-z 0-9 _ . -"
        )
    return temp_queue_owner(connection_id) + name


def is_temp_queue(name: str) -> bool:
    """Is `name` the real name of a temporary queue?"""
    return name.startswith(TEMP_QUEUE_PREFIX)
