"""STOMP 1.2 frames in WebSocket text messages: parse, serialise, validate, negotiate.

Pure: no I/O, no AWS, no session state. The STOMP transport feeds each WebSocket message
to `decode_frames` and sends what `encode_frame` returns.

Wire rules this module follows (STOMP 1.2, "STOMP Frames" and "Augmented BNF"):

* A frame is ``command EOL *(header EOL) EOL *OCTET NUL *(EOL)``; EOL is ``[CR] LF``.
  Commands and header names are case-sensitive and never trimmed; neither are values.
* Header names and values are unescaped (``\\r \\n \\c \\\\``) in every frame except
  CONNECT, CONNECTED and STOMP, and in no frame of a STOMP 1.0 session. Any other escape is a
  fatal error. Repeated headers are all kept in order; `Frame.header` returns the first.
* With a ``content-length`` header the body is exactly that many octets and must be
  followed by NUL; without one the body ends at the first NUL.
* EOLs between frames are heart-beats; a message that holds only EOLs yields no frame.

API Gateway WebSocket APIs carry text frames only, so a message arrives as ``str`` and is
taken as UTF-8; ``content-length`` counts the octets of that encoding. A frame must arrive
whole in one WebSocket message: there is no buffering across messages (keep stompjs's
``splitLargeFrames`` off, its default). A body that is not valid UTF-8 cannot arrive, and
cannot be sent either: `encode_frame` refuses it.

A decoded frame's ``content-length`` is framing, not content: `decode_frames` uses it and
leaves it out of `Frame.headers`, and `encode_frame` writes its own from the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mqless.domain.errors import InvalidRequest
from mqless.domain.ids import is_ascii_digits

VERSIONS: Final = ("1.0", "1.1", "1.2")

CLIENT_COMMANDS: Final = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS: Final = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS: Final = CLIENT_COMMANDS | SERVER_COMMANDS

# What a heart-beat is on the wire: one EOL (stompjs sends exactly this).
HEART_BEAT: Final = "\n"

# API Gateway caps a WebSocket message at 128 KB, so no frame can be larger.
MAX_FRAME_BYTES: Final = 128 * 1024
MAX_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 8 * 1024

# The spec exempts CONNECT and CONNECTED from escaping, for STOMP 1.0 compatibility. It
# says nothing of STOMP, the CONNECT alias; clients that send it write it like CONNECT
# (stomp.py 9 does not escape it), so it is read like CONNECT: a login or passcode with a
# backslash in it must not end the session.
_UNESCAPED_COMMANDS: Final = frozenset({"CONNECT", "CONNECTED", "STOMP"})
_CONTENT_LENGTH: Final = "content-length"
_ACK_MODES: Final = frozenset({"auto", "client", "client-individual"})
# Longer digit strings are over any limit here, and int() refuses beyond 4300 digits.
_MAX_DIGITS: Final = 10

_UNESCAPES: Final = {"r": "\r", "n": "\n", "c": ":", "\\": "\\"}
_ESCAPE_SEQUENCE: Final = re.compile(r"\\(.?)", re.DOTALL)

# One entry per required header; an entry with several names is satisfied by any of them.
_Required = dict[str, tuple[tuple[str, ...], ...]]
_COMMON: Final[_Required] = {
    "SEND": (("destination",),),
    "SUBSCRIBE": (("destination",), ("id",)),
    "UNSUBSCRIBE": (("id",),),
    "BEGIN": (("transaction",),),
    "COMMIT": (("transaction",),),
    "ABORT": (("transaction",),),
}
_REQUIRED: Final[dict[str, _Required]] = {
    # 1.2 acks by the MESSAGE's `ack` value in `id`; 1.1 by message-id and subscription.
    "1.2": {**_COMMON, "ACK": (("id",),), "NACK": (("id",),)},
    "1.1": {
        **_COMMON,
        "ACK": (("message-id",), ("subscription",)),
        "NACK": (("message-id",), ("subscription",)),
    },
    # 1.0 had no subscription ids: UNSUBSCRIBE names the id or the destination.
    "1.0": {
        **_COMMON,
        "SUBSCRIBE": (("destination",),),
        "UNSUBSCRIBE": (("id", "destination"),),
        "ACK": (("message-id",),),
    },
}


class StompError(InvalidRequest):
    """A frame or header the peer sent breaks STOMP; the message says what is wrong."""

    code = "invalid_frame"


SUBPROTOCOLS: Final = {"v12.stomp": "1.2", "v11.stomp": "1.1", "v10.stomp": "1.0"}
"""The WebSocket subprotocols of STOMP, newest first, and their versions."""


def choose_subprotocol(offered: str | None) -> str | None:
    """The STOMP subprotocol to accept from a `Sec-WebSocket-Protocol` offer, if any."""
    if not offered:
        return None
    names = [part.strip() for part in offered.split(",")]
    ours = [name for name in SUBPROTOCOLS if name in names]
    return ours[0] if ours else None  # SUBPROTOCOLS lists the newest first


@dataclass(frozen=True)
class Frame:
    """One STOMP frame: headers in wire order (repeats kept), body as octets.

    ``content-length`` is not kept among the headers: it is derived from `body`.
    """

    command: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of the first header called `name` (STOMP 1.2: the first one wins)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def encode(self, *, version: str = "1.2") -> str:
        """This frame as the text of one WebSocket message; see `encode_frame`."""
        return encode_frame(self, version=version)


def decode_frames(
    data: str | bytes,
    *,
    version: str = "1.2",
    max_frame_bytes: int = MAX_FRAME_BYTES,
    max_headers: int = MAX_HEADERS,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> list[Frame]:
    """Parse one WebSocket message into its frames; [] for a heart-beat; StompError if bad."""
    escaped = _escaping(version)
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StompError("message is not valid UTF-8 text") from exc
    else:
        raw = data
    frames: list[Frame] = []
    pos = 0
    while True:
        pos = _skip_eols(raw, pos)
        if pos == len(raw):
            return frames
        frame, pos = _decode_one(
            raw,
            pos,
            escaped=escaped,
            max_frame_bytes=max_frame_bytes,
            max_headers=max_headers,
            max_header_bytes=max_header_bytes,
        )
        frames.append(frame)


def encode_frame(frame: Frame, *, version: str = "1.2") -> str:
    """Serialise a frame for a WebSocket text message: LF line ends, NUL at the end.

    ``content-length`` is written whenever the body is not empty, from the body's octet
    count; a ``content-length`` in `frame.headers` is ignored. The spec says SEND, MESSAGE
    and ERROR SHOULD carry it and MUST when the body holds a NUL; stompjs does the same
    (non-empty body => content-length), and it spares the reader a scan for NUL. Empty
    bodies get none, like the spec's CONNECTED and RECEIPT examples.

    Raises ValueError for a frame that cannot be written as STOMP text: an unknown command,
    a NUL in a header, a header CONNECT/CONNECTED (or STOMP 1.0) cannot express unescaped,
    or a header or body that is not UTF-8.
    """
    if frame.command not in COMMANDS:
        raise ValueError(f"cannot encode unknown STOMP command {frame.command!r}")
    escaped = _escaping(version) and frame.command not in _UNESCAPED_COMMANDS
    try:
        body = frame.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            "body is not valid UTF-8; API Gateway WebSocket messages are text only"
        ) from exc
    lines = [frame.command]
    for name, value in frame.headers:
        if name == _CONTENT_LENGTH:
            continue
        lines.append(_encode_header(name, value, escaped=escaped))
    if frame.body:
        lines.append(f"{_CONTENT_LENGTH}:{len(frame.body)}")
    return "\n".join(lines) + "\n\n" + body + "\x00"


def validate(frame: Frame, *, version: str = "1.2") -> None:
    """Check a client frame against the spec's required headers for `version`; StompError.

    CONNECT and STOMP need neither ``accept-version`` (absent means a 1.0 client) nor
    ``host``: the spec makes host REQUIRED for 1.2 clients, but @stomp/stompjs sends none
    unless the app adds it, and ActiveMQ accepts that, so requiring it would break them.
    """
    _check_version(version)
    command = frame.command
    if command not in CLIENT_COMMANDS:
        raise StompError(f"{command} is not a frame a client may send")
    if version == "1.0" and command == "NACK":
        raise StompError("NACK is not part of STOMP 1.0")
    for alternatives in _REQUIRED[version].get(command, ()):
        if not any(frame.header(name) for name in alternatives):
            wanted = " or ".join(repr(name) for name in alternatives)
            raise StompError(f"{command} frame needs a non-empty {wanted} header")
    if command == "SUBSCRIBE":
        ack = frame.header("ack")
        if ack is not None and ack not in _ACK_MODES:
            raise StompError(
                f"SUBSCRIBE ack must be auto, client or client-individual, not {_clip(ack)}"
            )
    if frame.body and command != "SEND":
        raise StompError(f"{command} frame must not have a body; only SEND may")


def negotiate_version(accept_version: str | None, supported: Iterable[str] = VERSIONS) -> str:
    """The highest version both sides speak; no accept-version header means STOMP 1.0."""
    ours = list(supported)
    for version in ours:
        _check_version(version)
    if accept_version is None:
        offered = {"1.0"}
    else:
        offered = {part.strip() for part in accept_version.split(",")}
    common = [version for version in ours if version in offered]
    if not common:
        theirs = "1.0 (no accept-version)" if accept_version is None else _clip(accept_version)
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
        raise StompError(
            f"heart-beat must be two integers separated by a comma, not {_clip(value)}"
        )
    if any(len(part) > _MAX_DIGITS for part in parts):
        raise StompError(f"heart-beat periods are too large: {_clip(value)}")
    return int(parts[0]), int(parts[1])


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown STOMP version {version!r}; expected one of {VERSIONS}")


def _escaping(version: str) -> bool:
    _check_version(version)
    return version != "1.0"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _skip_eols(raw: bytes, pos: int) -> int:
    # Between frames only EOLs (heart-beats) may appear; a lone CR is tolerated as stompjs
    # does, since it cannot be the start of a command.
    end = len(raw)
    while pos < end and raw[pos] in (0x0A, 0x0D):
        pos += 1
    return pos


def _decode_one(
    raw: bytes,
    start: int,
    *,
    escaped: bool,
    max_frame_bytes: int,
    max_headers: int,
    max_header_bytes: int,
) -> tuple[Frame, int]:
    line, pos = _read_line(raw, start, max_header_bytes, what="command")
    command = _text(line, "command")
    if command not in COMMANDS:
        raise StompError(f"unknown command {_clip(command)} (commands are case-sensitive)")
    unescape = escaped and command not in _UNESCAPED_COMMANDS

    headers: list[tuple[str, str]] = []
    content_length: int | None = None
    count = 0
    while True:
        line, pos = _read_line(raw, pos, max_header_bytes, what="header")
        if not line:
            break
        count += 1
        if count > max_headers:
            raise StompError(f"{command} frame has more than {max_headers} headers")
        name, value = _decode_header(line, unescape=unescape)
        if name != _CONTENT_LENGTH:
            headers.append((name, value))
        elif content_length is None:
            # The first wins; later repeats are history and are dropped with it.
            content_length = _content_length(value, max_frame_bytes)

    if content_length is None:
        limit = min(len(raw), start + max_frame_bytes)
        end = raw.find(b"\x00", pos, limit)
        if end == -1:
            if len(raw) >= start + max_frame_bytes:
                raise StompError(f"{command} frame is larger than {max_frame_bytes} bytes")
            raise StompError(f"{command} frame is not terminated by NUL (incomplete frame?)")
    else:
        end = pos + content_length
        if end >= len(raw):
            raise StompError(
                f"{command} frame has content-length {content_length} but only "
                f"{len(raw) - pos} octets follow its headers (content-length longer than "
                "the body, or the frame is not terminated by NUL)"
            )
        if raw[end] != 0:
            raise StompError(
                f"{command} frame's body does not end with NUL after its content-length "
                f"of {content_length} octets (content-length shorter than the body?)"
            )
    if end + 1 - start > max_frame_bytes:
        raise StompError(f"{command} frame is larger than {max_frame_bytes} bytes")
    return Frame(command, tuple(headers), raw[pos:end]), end + 1


def _read_line(raw: bytes, pos: int, max_bytes: int, *, what: str) -> tuple[bytes, int]:
    """The line at `pos` without its EOL, and the position after the EOL."""
    eol = raw.find(b"\n", pos)
    if eol == -1:
        if len(raw) - pos > max_bytes:
            raise StompError(f"{what} line is longer than {max_bytes} bytes")
        if b"\x00" in raw[pos:]:
            raise StompError("frame ended (NUL) before the blank line that ends its headers")
        raise StompError("frame is not terminated by NUL (it ends inside its headers)")
    line_end = eol - 1 if eol > pos and raw[eol - 1] == 0x0D else eol
    if line_end - pos > max_bytes:
        raise StompError(f"{what} line is longer than {max_bytes} bytes")
    line = raw[pos:line_end]
    if b"\x00" in line:
        raise StompError("frame ended (NUL) before the blank line that ends its headers")
    return line, eol + 1


def _text(octets: bytes, what: str) -> str:
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StompError(f"{what} is not valid UTF-8") from exc


def _decode_header(line: bytes, *, unescape: bool) -> tuple[str, str]:
    # The first colon separates name from value. A raw colon later in the value is outside
    # the 1.2 grammar but common (1.0 clients, CONNECT passcodes), so it is kept as data.
    name_octets, colon, value_octets = line.partition(b":")
    if not colon:
        raise StompError(f"header line has no ':' separator: {_preview(line)}")
    if not name_octets:
        raise StompError(f"header line has an empty name: {_preview(line)}")
    name = _text(name_octets, "header name")
    value = _text(value_octets, f"value of header {name!r}")
    if unescape:
        name = _unescape(name)
        value = _unescape(value)
    return name, value


def _preview(line: bytes) -> str:
    return _clip(line.decode("utf-8", errors="replace"))


def _clip(text: str) -> str:
    """Peer text quoted for an error message, cut short: a header line may be 8 KiB."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        try:
            return _UNESCAPES[char]
        except KeyError:
            sequence = f"'\\{char}'" if char else "'\\' at the end"
            raise StompError(
                f"undefined escape sequence {sequence} in header {_clip(text)}; "
                "STOMP 1.2 defines only \\r \\n \\c \\\\"
            ) from None

    return _ESCAPE_SEQUENCE.sub(replace, text)


def _content_length(value: str, max_frame_bytes: int) -> int:
    if not is_ascii_digits(value):
        raise StompError(f"content-length must be a non-negative integer, not {_clip(value)}")
    if len(value) > _MAX_DIGITS or int(value) > max_frame_bytes:
        raise StompError(f"content-length is over the {max_frame_bytes}-byte frame limit")
    return int(value)


def _encode_header(name: str, value: str, *, escaped: bool) -> str:
    if not name:
        raise ValueError("header names must not be empty")
    if "\x00" in name or "\x00" in value:
        raise ValueError(f"header {name!r} holds NUL, which no STOMP header can carry")
    for text in (name, value):
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"header {name!r} is not encodable as UTF-8") from exc
    if escaped:
        return f"{_escape(name)}:{_escape(value)}"
    unescaped = "an unescaped frame (CONNECT, CONNECTED, or any frame of STOMP 1.0)"
    if ":" in name:
        raise ValueError(f"header name {name!r} holds ':', which {unescaped} cannot carry")
    if any(char in name for char in "\r\n") or any(char in value for char in "\r\n"):
        raise ValueError(
            f"header {name!r} holds a line break (CR or LF), which {unescaped} cannot carry"
        )
    return f"{name}:{value}"


def _escape(text: str) -> str:
    # Backslash first, or the escapes added for the others would be doubled.
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")
