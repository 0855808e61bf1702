"""Ack ids: what a client acknowledges a pushed message with.

A queue message's is `<seq>.<position>.<gen>:<subscription>`: it names the consumer's
delivery record and the message's place in it (and the record's random gen), so settling
needs no search. A live topic message's is `t:<subscription>` (nothing to settle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mqless.domain.errors import InvalidRequest
from mqless.domain.ids import MAX_CLIENT_ID, is_ascii_digits

TOPIC_ACK: Final = "t"  # the ack id prefix of a live topic message (nothing to settle)
MAX_SEQ_DIGITS: Final = 10
MAX_POSITION_DIGITS: Final = 4  # a push holds at most the prefetch (1,000)


@dataclass(frozen=True)
class AckId:
    """What a client acks a pushed message with: `<seq>.<position>.<gen>:<subscription>`
    (the delivery record, the message's place in it, the record's gen)."""

    subscription: str
    seq: int | None = None  # None: a topic message (`t:<subscription>`)
    position: int = 0
    gen: str = ""

    def __str__(self) -> str:
        if self.seq is None:
            return f"{TOPIC_ACK}:{self.subscription}"
        return f"{self.seq}.{self.position}.{self.gen}:{self.subscription}"


def parse_ack_id(text: str) -> AckId:
    """The ack id a MESSAGE carried; InvalidRequest if it is not one this server gave out."""
    head, sep, subscription = text.partition(":")
    if len(subscription) > MAX_CLIENT_ID:  # no subscription id is longer
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    if sep and subscription and head == TOPIC_ACK:
        return AckId(subscription)
    parts = head.split(".")
    if (
        not sep
        or not subscription
        or len(parts) != 3
        or not is_ascii_digits(parts[0])
        or len(parts[0]) > MAX_SEQ_DIGITS
        or not is_ascii_digits(parts[1])
        or len(parts[1]) > MAX_POSITION_DIGITS
        or len(parts[2]) != 8
        or not all(c in "0123456789abcdef" for c in parts[2])
    ):
        raise InvalidRequest(f"{text[:100]!r} is not an ack id this server gave out")
    return AckId(subscription, int(parts[0]), int(parts[1]), parts[2])
