"""Pushes as values: a message for one subscription of one connection, and the two ports
that carry it (a renderer the WebSocket transport provides, a pusher that posts).

The push domain decides what goes to whom; how it is spoken (JSON `message`/`batch`
frames, STOMP MESSAGE frames, packed within 32 KB) is the transport's
(`transports/websocket/render.py`), passed in as a `Renderer`. A push a connection cannot
be sent comes back refused with the reason (`Rendered.refused`): the caller decides its fate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

WireProtocol = Literal["json", "stomp"]

FRAME_BYTES: Final = 32 * 1024  # one billed WebSocket frame (API Gateway bills per 32 KB)


@dataclass(frozen=True)
class Connection:
    """Where a push goes and how it must be spoken."""

    id: str
    protocol: WireProtocol = "json"
    version: str = "1.2"

    @classmethod
    def stored(cls, connection_id: str, item: Mapping[str, Any]) -> Connection:
        """The connection as a stored item (`protocol`, `version`) records it."""
        return cls(
            id=connection_id,
            protocol="stomp" if item.get("protocol") == "stomp" else "json",
            version=str(item.get("version", "1.2")),
        )


@dataclass(frozen=True)
class Push:
    """One message for one subscription."""

    subscription: str
    destination: str  # "/queue/NAME" or "/topic/NAME"
    message_id: str
    body: bytes
    binary: bool = False
    ack: str | None = None  # what the client acks with; None when nothing is to be acked
    attributes: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    sent_at: int = 0
    receive_count: int = 1
    group_id: str | None = None
    priority: int | None = None  # as sent; None: sent without one


@dataclass(frozen=True)
class Rendered:
    """What a `Renderer` made of a list of pushes for one connection."""

    messages: list[str]
    """The WebSocket messages to post, in order, packed within FRAME_BYTES each."""
    refused: dict[int, str]
    """The pushes (by position) this connection cannot be sent, each with the reason."""


class Renderer(Protocol):
    def __call__(self, connection: Connection, pushes: Sequence[Push]) -> Rendered:
        """The WebSocket messages that carry `pushes` to `connection`."""


class Pusher(Protocol):
    def post(self, connection_id: str, data: bytes) -> bool:
        """Send to a connection; False if it is gone."""
