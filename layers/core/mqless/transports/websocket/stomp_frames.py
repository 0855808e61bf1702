"""STOMP 1.2 frames in WebSocket text messages: parse and serialise.

Pure: no I/O, no AWS, no session state. The STOMP transport feeds each WebSocket message
to `decode_frames` and sends what `encode_frame` returns; versions and heart-beats are
negotiated in `stomp_negotiation.py`, a client frame's headers checked in
`stomp_headers.py`.

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
# Longer digit strings are over any limit here, and int() refuses beyond 4300 digits.
MAX_DIGITS: Final = 10

_UNESCAPES: Final = {"r": "\r", "n": "\n", "c": ":", "\\": "\\"}
_ESCAPE_SEQUENCE: Final = re.compile(r"\\(.?)", re.DOTALL)


class StompError(InvalidRequest):
    """A frame or header the peer sent breaks STOMP; the message says what is wrong."""

    code = "invalid_frame"


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


def check_version(version: str) -> None:
    """ValueError unless `version` is one this module speaks."""
    if version not in VERSIONS:
        raise ValueError(f"unknown STOMP version {version!r}; expected one of {VERSIONS}")


def _escaping(version: str) -> bool:
    check_version(version)
    return version != "1.0"


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
        raise StompError(f"unknown command {clip(command)} (commands are case-sensitive)")
    unescape = escaped and command not in _UNESCAPED_COMMANDS
    headers, content_length, pos = _read_headers(
        raw,
        pos,
        command,
        unescape=unescape,
        max_headers=max_headers,
        max_header_bytes=max_header_bytes,
        max_frame_bytes=max_frame_bytes,
    )
    end = _body_end(raw, start, pos, command, content_length, max_frame_bytes)
    if end + 1 - start > max_frame_bytes:
        raise StompError(f"{command} frame is larger than {max_frame_bytes} bytes")
    return Frame(command, tuple(headers), raw[pos:end]), end + 1


def _read_headers(
    raw: bytes,
    pos: int,
    command: str,
    *,
    unescape: bool,
    max_headers: int,
    max_header_bytes: int,
    max_frame_bytes: int,
) -> tuple[list[tuple[str, str]], int | None, int]:
    """A frame's headers (without content-length), its content-length if it has one, and
    the position of its body."""
    headers: list[tuple[str, str]] = []
    content_length: int | None = None
    count = 0
    while True:
        line, pos = _read_line(raw, pos, max_header_bytes, what="header")
        if not line:
            return headers, content_length, pos
        count += 1
        if count > max_headers:
            raise StompError(f"{command} frame has more than {max_headers} headers")
        name, value = _decode_header(line, unescape=unescape)
        if name != _CONTENT_LENGTH:
            headers.append((name, value))
        elif content_length is None:
            # The first wins; later repeats are history and are dropped with it.
            content_length = _content_length(value, max_frame_bytes)


def _body_end(
    raw: bytes,
    start: int,
    pos: int,
    command: str,
    content_length: int | None,
    max_frame_bytes: int,
) -> int:
    """Where the body that begins at `pos` ends: its NUL."""
    if content_length is None:
        limit = min(len(raw), start + max_frame_bytes)
        end = raw.find(b"\x00", pos, limit)
        if end == -1:
            if len(raw) >= start + max_frame_bytes:
                raise StompError(f"{command} frame is larger than {max_frame_bytes} bytes")
            raise StompError(f"{command} frame is not terminated by NUL (incomplete frame?)")
        return end
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
    return end


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
    return clip(line.decode("utf-8", errors="replace"))


def clip(text: str) -> str:
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
                f"undefined escape sequence {sequence} in header {clip(text)}; "
                "STOMP 1.2 defines only \\r \\n \\c \\\\"
            ) from None

    return _ESCAPE_SEQUENCE.sub(replace, text)


def _content_length(value: str, max_frame_bytes: int) -> int:
    if not is_ascii_digits(value):
        raise StompError(f"content-length must be a non-negative integer, not {clip(value)}")
    if len(value) > MAX_DIGITS or int(value) > max_frame_bytes:
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
