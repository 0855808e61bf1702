"""STOMP negotiation: the WebSocket subprotocol, the version CONNECT agrees on, and
heart-beat periods (STOMP 1.2, "Protocol Negotiation" and "Heart-beating")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from mqless.domain.ids import is_ascii_digits
from mqless.transports.websocket.stomp_frames import (
    MAX_DIGITS,
    VERSIONS,
    StompError,
    check_version,
    clip,
)

SUBPROTOCOLS: Final = {"v12.stomp": "1.2", "v11.stomp": "1.1", "v10.stomp": "1.0"}
"""The WebSocket subprotocols of STOMP, newest first, and their versions."""


def choose_subprotocol(offered: str | None) -> str | None:
    """The STOMP subprotocol to accept from a `Sec-WebSocket-Protocol` offer, if any."""
    if not offered:
        return None
    names = [part.strip() for part in offered.split(",")]
    ours = [name for name in SUBPROTOCOLS if name in names]
    return ours[0] if ours else None  # SUBPROTOCOLS lists the newest first


def negotiate_version(accept_version: str | None, supported: Iterable[str] = VERSIONS) -> str:
    """The highest version both sides speak; no accept-version header means STOMP 1.0."""
    ours = list(supported)
    for version in ours:
        check_version(version)
    if accept_version is None:
        offered = {"1.0"}
    else:
        offered = {part.strip() for part in accept_version.split(",")}
    common = [version for version in ours if version in offered]
    if not common:
        theirs = "1.0 (no accept-version)" if accept_version is None else clip(accept_version)
        raise StompError(
            f"no common STOMP version: client accepts {theirs}; server supports {','.join(ours)}"
        )
    return max(common, key=_version_key)


def negotiate_heartbeat(client: str | None, server: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """Heart-beat periods in ms as (server sends, server expects); 0 means none.

    `client` is the CONNECT frame's ``heart-beat`` header (``cx,cy``; missing means
    ``0,0``); `server` is ``(sx, sy)``, what the server puts in CONNECTED. Per the spec the
    server sends every max(sx, cy) unless either is 0, and the client sends every
    max(cx, sy) unless either is 0.
    """
    sx, sy = server
    if sx < 0 or sy < 0:
        raise ValueError("server heart-beat periods must be >= 0")
    cx, cy = parse_heartbeat(client)
    sends = 0 if sx == 0 or cy == 0 else max(sx, cy)
    expects = 0 if cx == 0 or sy == 0 else max(cx, sy)
    return sends, expects


def parse_heartbeat(value: str | None) -> tuple[int, int]:
    """Parse a ``heart-beat`` header (``x,y`` in ms); a missing header is ``0,0``."""
    if value is None:
        return 0, 0
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(is_ascii_digits(part) for part in parts):
        raise StompError(f"heart-beat must be two integers separated by a comma, not {clip(value)}")
    if any(len(part) > MAX_DIGITS for part in parts):
        raise StompError(f"heart-beat periods are too large: {clip(value)}")
    return int(parts[0]), int(parts[1])


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
