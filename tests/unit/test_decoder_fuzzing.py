"""Bad input, proven: every decoder of peer input, fuzzed (issue #6).

Whatever a client sends (bytes, text, JSON of any shape, headers, ack ids, receipts,
cursors, topic names, filter policies), a decoder either returns a well-formed value or
raises the domain's validation error (`InvalidRequest` or a subclass such as
`StompError`) with a message a person can act on. Nothing else escapes, nothing hangs.

The STOMP framing round trip and a first garbage fuzz live in test_stomp.py, the receipt
round trip in test_receipts.py, the filter policy fuzz over policy-like dicts in
test_topics.py; this file adds what they do not cover. A `..._regression` test holds the
minimal reproduction of a bug these properties found, and guards its fix.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mqless.domain import models
from mqless.domain.errors import InvalidRequest, MqlessError
from mqless.domain.ids import MAX_CLIENT_ID
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueConfig, QueueSettings
from mqless.domain.push.ack_ids import AckId, parse_ack_id
from mqless.domain.push.consumer import DEFAULT_PREFETCH, MAX_PREFETCH
from mqless.domain.queues.receipts import MAX_RECEIPT_LENGTH, Lease, decode_receipt
from mqless.domain.topics.filter_policies import FilterPolicy
from mqless.domain.topics.patterns import validate_topic_name, validate_topic_pattern
from mqless.storage.browse_cursors import decode_cursor as _decode_cursor
from mqless.storage.browse_cursors import encode_cursor as _encode_cursor
from mqless.transports.websocket.json_protocol import (
    Ack,
    Nack,
    Publish,
    Subscribe,
    Unsubscribe,
    parse_frame,
)
from mqless.transports.websocket.stomp_frames import (
    CLIENT_COMMANDS,
    COMMANDS,
    MAX_FRAME_BYTES,
    VERSIONS,
    Frame,
    StompError,
    decode_frames,
    encode_frame,
)
from mqless.transports.websocket.stomp_headers import ack_mode as _ack_mode
from mqless.transports.websocket.stomp_headers import message_of as _message
from mqless.transports.websocket.stomp_headers import prefetch as _prefetch
from mqless.transports.websocket.stomp_headers import schedule_of as _schedule
from mqless.transports.websocket.stomp_headers import validate
from mqless.transports.websocket.stomp_negotiation import (
    SUBPROTOCOLS,
    choose_subprotocol,
    negotiate_heartbeat,
    negotiate_version,
    parse_heartbeat,
)
from mqless.transports.websocket.stomp_session import looks_like_connect

T = TypeVar("T")

PURE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BIG = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# An error a person reads says something, and does not echo a 128 KB input back.
MAX_ERROR_CHARS = 2048
# Generous: the decoders are linear; a quadratic one on 128 KB takes minutes, not seconds.
MAX_SECONDS = 2.0


def _outcome(decode: Callable[[], T]) -> T | InvalidRequest:
    """What the decoder gives, or the InvalidRequest it raised; anything else propagates."""
    started = time.perf_counter()
    try:
        return decode()
    except InvalidRequest as exc:
        return exc
    finally:
        assert time.perf_counter() - started < MAX_SECONDS, "the decoder took too long"


def _refusal_is_readable(exc: InvalidRequest) -> None:
    assert isinstance(exc, InvalidRequest)
    assert exc.code
    assert isinstance(exc.message, str) and exc.message.strip()
    assert exc.message == str(exc)
    assert len(exc.message) <= MAX_ERROR_CHARS


# Characters that trip decoders: digits int() refuses (superscripts) or reads (Arabic,
# fullwidth), separators, escapes, CR/LF/NUL, a lone surrogate, wide and combining ones.
TRICKY = "0123456789²³¹٣０９.,:;\\\r\n\x00\x1f -+_#*>/=\t é😀\u0301\ud800"
tricky_text = st.text(st.sampled_from(TRICKY), max_size=30)
any_text = st.one_of(st.text(max_size=200), tricky_text)
digits = st.one_of(
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    st.text(st.sampled_from("0123456789²³¹٣０９"), min_size=1, max_size=6),
    st.sampled_from(["", " 1", "1 ", "+1", "-1", "1.5", "1e3", "0x1f", "١٢", "²", "𝟗"]),
)


# --- STOMP: decode_frames ---------------------------------------------------------------

_bad_commands = st.one_of(
    st.sampled_from(["connect", "Send", " SEND", "SEND ", "STOMPX", "", "\ufeffSEND", "S\x00"]),
    st.text(max_size=8),
)
_header_names = st.one_of(
    st.sampled_from(
        [
            "destination",
            "id",
            "receipt",
            "ack",
            "transaction",
            "content-type",
            "accept-version",
            "heart-beat",
            "message-id",
            "subscription",
            "host",
        ]
    ),
    st.lists(st.sampled_from(["a", "-", "é", "\\n", "\\c", "\\\\"]), min_size=1, max_size=4).map(
        "".join
    ),
)
# values as a client would write them: text, escapes STOMP 1.2 defines, raw colons
_header_values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00\r\n\\"), max_size=12),
    st.lists(st.sampled_from(["a", "é", "\\n", "\\r", "\\c", "\\\\", ":", " "]), max_size=6).map(
        "".join
    ),
    digits,
)
_bodies = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
    st.text(st.sampled_from("a\x00\n\ré"), max_size=10),
)
# ways to botch a frame; a frame gets none, one or two of them
_BOTCHES = [
    "command",  # an unknown or mis-cased command
    "no-colon",  # a header line without ':'
    "empty-name",  # ':value'
    "bad-escape",  # '\\x' or a trailing backslash in a header
    "bad-length",  # a content-length that is wrong, not a number, or over the limit
    "no-nul",  # the frame is not terminated
    "early-nul",  # a NUL inside the headers
    "cr-eols",  # lone CRs for line ends
    "long-line",  # a header line over 8 KiB
    "not-utf8",  # a lone surrogate in the text
]


@st.composite
def _frame_texts(draw: st.DrawFn) -> str:
    """One frame's text: well-formed, or botched in one or two of the ways above."""
    botches = set(draw(st.lists(st.sampled_from(_BOTCHES), max_size=2)))
    command = draw(_bad_commands if "command" in botches else st.sampled_from(sorted(COMMANDS)))
    lines = [command]
    for name, value in draw(st.lists(st.tuples(_header_names, _header_values), max_size=5)):
        lines.append(f"{name}:{value}")
    body = draw(_bodies)
    octets = len(body.encode("utf-8"))
    length: str | None = str(octets) if "\x00" in body or draw(st.booleans()) else None
    if "bad-length" in botches:
        length = draw(
            st.one_of(
                st.integers(0, 60).map(str).filter(lambda n: n != str(octets)),
                digits,
                st.sampled_from(["131072", "131073", "9" * 11, "0" * 30]),
            )
        )
    if length is not None:
        lines.insert(draw(st.integers(1, len(lines))), f"content-length:{length}")
    spot = draw(st.integers(1, len(lines)))
    if "no-colon" in botches:
        lines.insert(spot, draw(st.text(st.sampled_from("ab-é "), min_size=1, max_size=5)))
    if "empty-name" in botches:
        lines.insert(spot, ":" + draw(_header_values))
    if "bad-escape" in botches:
        lines.insert(spot, draw(st.sampled_from(["a:\\x", "a:b\\", "a\\t:b", "a:\\C"])))
    if "early-nul" in botches:
        lines.insert(spot, "a:b\x00c")
    if "long-line" in botches:
        lines.insert(spot, "a:" + "b" * 8200)
    if "not-utf8" in botches:
        lines.insert(spot, "a:\ud800")
    eol = "\r" if "cr-eols" in botches else draw(st.sampled_from(["\n", "\r\n"]))
    end = "" if "no-nul" in botches else "\x00"
    return eol.join(lines) + eol + eol + body + end


_messages = st.lists(
    st.tuples(st.sampled_from(["", "\n", "\r\n", "\n\n", "\r"]), _frame_texts()),
    min_size=1,
    max_size=3,
).map(lambda parts: "".join(gap + frame for gap, frame in parts))


def _as_wire(text: str, form: str, noise: bytes, at: int) -> str | bytes:
    if form == "text":
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if form == "bytes":
        return raw
    at %= len(raw) + 1
    return raw[:at] + noise + raw[at:]  # invalid UTF-8 spliced in


_wire_messages = st.builds(
    _as_wire,
    _messages,
    st.sampled_from(["text", "text", "bytes", "noisy"]),
    st.binary(min_size=1, max_size=4),
    st.integers(0, 400),
)


def _check_decoded(frames: list[Frame], version: str) -> None:
    """What a decoded frame promises, and that the server could write it back unchanged."""
    for frame in frames:
        assert frame.command in COMMANDS
        assert all(name for name, _ in frame.headers)
        assert all(name != "content-length" for name, _ in frame.headers)
        assert isinstance(frame.body, bytes)
        try:
            again = encode_frame(frame, version=version)
        except ValueError:
            continue  # not expressible as text (a CR in a CONNECT value, a non-UTF-8 body)
        assert decode_frames(again, version=version) == [frame]


@PURE
@given(data=_wire_messages, version=st.sampled_from(VERSIONS))
def test_a_botched_message_decodes_to_frames_or_a_short_stomp_error(
    data: str | bytes, version: str
) -> None:
    # Given a message built from almost-right frames (wrong commands, headers without ':',
    # undefined escapes, bad content-lengths, missing NULs, stray bytes), at real limits
    # When it is decoded
    result = _outcome(lambda: decode_frames(data, version=version))
    # Then it is frames that encode back to themselves, or a StompError a person can read
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
    else:
        _check_decoded(result, version)


@PURE
@given(
    data=st.one_of(st.binary(max_size=2000), st.text(max_size=2000)),
    version=st.sampled_from(VERSIONS),
)
def test_arbitrary_input_at_the_real_limits_decodes_or_is_a_stomp_error(
    data: str | bytes, version: str
) -> None:
    """Given any bytes or text up to 2000 long, at the default frame and header limits
    (test_stomp.py fuzzes with small ones)
    When it is decoded as STOMP 1.0, 1.1 or 1.2
    Then it is frames that encode back to themselves, or a readable StompError, within the time
    limit
    """
    # test_stomp.py fuzzes with 256-byte frames and 64-byte headers; these are the defaults
    result = _outcome(lambda: decode_frames(data, version=version))
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
    else:
        _check_decoded(result, version)


_big_shapes = st.sampled_from(
    [
        "SEND\n" + "a:b\n" * 40_000,  # too many headers, no blank line
        "SEND\ndestination:" + "\\c" * 60_000 + "\n\n\x00",  # a header line over 8 KiB
        "SEND\n\n" + "x" * 140_000,  # a body with no NUL, past the frame limit
        "SEND\ncontent-length:131072\n\n" + "x" * 140_000,
        "\n" * 200_000,  # heart-beats only
        "ACK\nid:1\n\n\x00" * 10_000,  # ten thousand small frames
        "SEND\ndestination:/queue/a\nk:" + "\\n" * 4000 + "\n\n\x00",  # escapes to undo
        "é" * 70_000,
        "CONNECT\nlogin:" + ":" * 8000 + "\n\n\x00" + "\r\n" * 50_000,
    ]
)


@BIG
@given(shape=_big_shapes, cut=st.integers(0, 300_000), version=st.sampled_from(VERSIONS))
def test_large_adversarial_messages_are_decoded_or_refused_quickly(
    shape: str, cut: int, version: str
) -> None:
    # Given messages as large as API Gateway lets through, shaped to make a parser work
    data = shape[: cut or None]
    # When decoded, Then the answer (frames or a StompError) comes within MAX_SECONDS
    result = _outcome(lambda: decode_frames(data, version=version))
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
    else:
        assert all(f.command in COMMANDS and len(f.body) <= MAX_FRAME_BYTES for f in result)


# --- STOMP: validate, negotiate_version, parse_heartbeat ----------------------------------

# What the spec requires, per version: each entry is satisfied by any one of its names.
_Required = list[tuple[str, ...]]
_ACK_REQUIRED: dict[str, _Required] = {
    "1.2": [("id",)],
    "1.1": [("message-id",), ("subscription",)],
    "1.0": [("message-id",)],
}
_SPEC_REQUIRED: dict[str, dict[str, _Required]] = {
    version: {
        "SEND": [("destination",)],
        "SUBSCRIBE": [("destination",), ("id",)] if version != "1.0" else [("destination",)],
        "UNSUBSCRIBE": [("id",)] if version != "1.0" else [("id", "destination")],
        "BEGIN": [("transaction",)],
        "COMMIT": [("transaction",)],
        "ABORT": [("transaction",)],
        "ACK": _ACK_REQUIRED[version],
        "NACK": _ACK_REQUIRED[version] if version != "1.0" else [],  # 1.0 has no NACK
    }
    for version in VERSIONS
}

_frames = st.builds(
    Frame,
    command=st.one_of(st.sampled_from(sorted(COMMANDS)), st.text(max_size=8)),
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                ["destination", "id", "transaction", "message-id", "subscription", "ack", "x"]
            )
            | st.text(max_size=5),
            st.one_of(
                st.just(""),
                st.sampled_from(["auto", "client", "client-individual", "Auto", "client "]),
                st.text(max_size=8),
            ),
        ),
        max_size=6,
    ).map(tuple),
    body=st.one_of(st.just(b""), st.binary(max_size=8)),
)


@PURE
@given(frame=_frames, version=st.sampled_from(VERSIONS))
def test_validate_accepts_exactly_the_frames_the_spec_allows(frame: Frame, version: str) -> None:
    # Given any frame at all, as decode_frames could hand it over
    # When it is validated for a version
    result = _outcome(lambda: validate(frame, version=version))
    # Then it is accepted only if it is a client frame with its required headers non-empty,
    # a known ack mode and no body unless SEND; otherwise a StompError naming the command
    spec_ok = (
        frame.command in CLIENT_COMMANDS
        and not (version == "1.0" and frame.command == "NACK")
        and all(
            any(frame.header(name) for name in names)
            for names in _SPEC_REQUIRED[version].get(frame.command, [])
        )
        and not (
            frame.command == "SUBSCRIBE"
            and frame.header("ack") not in (None, "auto", "client", "client-individual")
        )
        and (not frame.body or frame.command == "SEND")
    )
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
        assert frame.command in result.message
        assert not spec_ok
    else:
        assert spec_ok


_accept_versions = st.one_of(
    st.none(),
    any_text,
    st.lists(
        st.sampled_from(["1.0", "1.1", "1.2", " 1.2", "1.2 ", "2.0", "", "1.2\t", "v1.2", "1,2"]),
        max_size=5,
    ).map(",".join),
)


@PURE
@given(
    accept=_accept_versions,
    supported=st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=3, unique=True),
)
def test_negotiation_picks_the_highest_common_version_or_says_there_is_none(
    accept: str | None, supported: list[str]
) -> None:
    # Given any accept-version header (or none) and the versions a server speaks
    # When the version is negotiated
    result = _outcome(lambda: negotiate_version(accept, supported))
    offered = {"1.0"} if accept is None else {part.strip() for part in accept.split(",")}
    common = [v for v in VERSIONS if v in offered and v in supported]
    # Then it is the highest version both speak, or a StompError listing the server's
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
        assert not common
        assert ",".join(supported) in result.message
    else:
        assert result == common[-1]


_heart_beats = st.one_of(
    any_text,
    st.builds(
        lambda x, sep, y, pad: f"{pad}{x}{sep}{pad}{y}{pad}",
        digits,
        st.sampled_from([",", ", ", ",,", ";", ""]),
        digits,
        st.sampled_from(["", " ", "\t", "\u00a0"]),
    ),
)


@PURE
@given(value=_heart_beats)
def test_a_heart_beat_header_is_two_ascii_periods_or_a_stomp_error(value: str) -> None:
    # Given any heart-beat header value
    # When it is parsed
    result = _outcome(lambda: parse_heartbeat(value))
    parts = [part.strip() for part in value.split(",")]
    plain = len(parts) == 2 and all(re.fullmatch(r"[0-9]{1,10}", part) for part in parts)
    # Then it is read as two whole numbers of ms exactly when it is two short ASCII numbers
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
        assert "heart-beat" in result.message
        assert not plain
    else:
        assert plain
        assert result == (int(parts[0]), int(parts[1]))


@PURE
@given(value=_heart_beats, sx=st.integers(0, 10**7), sy=st.integers(0, 10**7))
def test_heart_beat_negotiation_gives_the_specs_periods_or_a_stomp_error(
    value: str, sx: int, sy: int
) -> None:
    """Given any heart-beat header a client sends and any server periods
    When heart-beats are negotiated
    Then each direction beats every max of the two periods, 0 if either is 0 (STOMP 1.2 "Heart-
    beating"), or a StompError about heart-beat
    """
    result = _outcome(lambda: negotiate_heartbeat(value, (sx, sy)))
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
        assert "heart-beat" in result.message
        return
    cx, cy = parse_heartbeat(value)
    # STOMP 1.2 "Heart-beating": each side beats every max of the two, 0 if either is 0
    assert result == (0 if 0 in (sx, cy) else max(sx, cy), 0 if 0 in (cx, sy) else max(cx, sy))


# --- STOMP sessions: SEND headers, SUBSCRIBE options, subprotocols ------------------------

# the headers stomp_session.py's docstring maps onto message fields (or ignores)
_MAPPED_SEND_HEADERS = {
    "destination",
    "receipt",
    "transaction",
    "content-type",
    "content-length",
    "correlation-id",
    "reply-to",
    "JMSXGroupID",
    "AMQ_SCHEDULED_DELAY",
    "AMQ_SCHEDULED_PERIOD",
    "AMQ_SCHEDULED_REPEAT",
    "AMQ_SCHEDULED_CRON",
    "expires",
    "persistent",
    "priority",
}
_send_header_names = st.one_of(
    st.sampled_from(sorted(_MAPPED_SEND_HEADERS - {"content-length"}) + ["x-attr", "y"]),
    st.text(max_size=12),
)
_send_header_values = st.one_of(
    digits,
    st.text(max_size=30),
    st.sampled_from(["0", "999", "1000", "900000", "900001", "1" * 15, "1" * 16]),
    st.integers(0, 10**15).map(str),
    st.just("a" * 300),
)
_send_frames = st.builds(
    Frame,
    command=st.just("SEND"),
    headers=st.lists(st.tuples(_send_header_names, _send_header_values), max_size=8).map(
        lambda headers: (("destination", "/queue/q"), *headers)
    ),
    body=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)),
)


@MANY
@given(frame=_send_frames)
@example(frame=Frame("SEND", (("destination", "/queue/q"), ("expires", "\u00b2"))))
def test_a_send_frame_maps_to_a_message_or_an_invalid_request(frame: Frame) -> None:
    # Given a SEND frame with any headers (repeats, digits int() refuses, huge numbers)
    # When the message and its schedule are read from it
    outcome = _outcome(lambda: (_message(frame, time.time_ns() // 1_000_000), _schedule(frame)))
    # Then it is the message and schedule the headers describe, or an InvalidRequest saying
    # why not
    if isinstance(outcome, InvalidRequest):
        _refusal_is_readable(outcome)
        return
    result, rule = outcome
    assert isinstance(result, NewMessage)
    assert result.body == frame.body
    assert result.content_type == frame.header("content-type")
    assert result.group_id == frame.header("JMSXGroupID")
    delay = frame.header("AMQ_SCHEDULED_DELAY")
    assert (rule.delay_ms if rule else 0) == (int(delay) if delay else 0)
    assert result.delay_seconds is None  # the schedule carries it (scheduling.py)
    assert result.ttl_seconds is None or 1 <= result.ttl_seconds <= models.MAX_RETENTION_SECONDS
    # every other header is an attribute, and the first of repeated ones counts
    others = {name for name, _ in frame.headers if name not in _MAPPED_SEND_HEADERS}
    assert result.attributes == {name: frame.header(name) for name in others}


@pytest.mark.parametrize("header", ["AMQ_SCHEDULED_DELAY", "expires"])
@pytest.mark.parametrize("value", ["²", "1²", "9³"])
def test_a_send_header_with_a_digit_int_cannot_read_is_an_invalid_request_regression(
    header: str, value: str
) -> None:
    """Given a SEND whose AMQ_SCHEDULED_DELAY or expires header holds a superscript digit (isdigit()
    accepts it, int() refuses it)
    When the message and its schedule are read from the frame
    Then an InvalidRequest naming the header is raised, not a ValueError
    """
    # Reproduction: _message(Frame("SEND", (("destination", "/q"), ("expires", "²"))))
    # raised ValueError: str.isdigit() accepts "²", int() refuses it.
    frame = Frame("SEND", (("destination", "/queue/q"), (header, value)))
    with pytest.raises(InvalidRequest, match=header):
        _message(frame, time.time_ns() // 1_000_000)
        _schedule(frame)


_prefetch_frames = st.builds(
    Frame,
    command=st.just("SUBSCRIBE"),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["activemq.prefetchSize", "prefetch-count", "id", "ack"]),
            st.one_of(digits, st.integers(-5, 2000).map(str), any_text),
        ),
        max_size=4,
    ).map(tuple),
)


@PURE
@given(frame=_prefetch_frames)
@example(frame=Frame("SUBSCRIBE", (("prefetch-count", "\u00b2"),)))
def test_a_prefetch_header_is_a_credit_in_range_or_a_stomp_error(frame: Frame) -> None:
    """Given a SUBSCRIBE with any prefetch headers (activemq.prefetchSize, prefetch-count, repeated,
    any text)
    When its prefetch is read
    Then it is the value asked for (activemq.prefetchSize first) or the default, within 1 and the
    maximum, or a StompError about prefetch
    """
    result = _outcome(lambda: _prefetch(frame))
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
        assert "prefetch" in result.message.lower()
    else:
        assert 1 <= result <= MAX_PREFETCH
        chosen = frame.header("activemq.prefetchSize")
        if chosen is None:
            chosen = frame.header("prefetch-count")
        assert result == (DEFAULT_PREFETCH if chosen is None else int(chosen))


@pytest.mark.parametrize("name", ["activemq.prefetchSize", "prefetch-count"])
def test_a_prefetch_of_superscript_digits_is_a_stomp_error_regression(name: str) -> None:
    """Given a SUBSCRIBE whose activemq.prefetchSize or prefetch-count is "²"
    When its prefetch is read
    Then a StompError naming the header is raised, not a ValueError
    """
    # Reproduction: _prefetch(Frame("SUBSCRIBE", (("prefetch-count", "²"),))) raised ValueError
    with pytest.raises(StompError, match=name):
        _prefetch(Frame("SUBSCRIBE", ((name, "²"),)))


@PURE
@given(value=st.one_of(st.none(), any_text, st.sampled_from(["auto", "client", "Client"])))
def test_an_ack_header_is_one_of_the_three_modes_or_a_stomp_error(value: str | None) -> None:
    """Given any SUBSCRIBE ack header value, or none
    When the ack mode is read
    Then it is the value given (auto when missing) and one of the three modes, or a StompError
    saying what ack must be
    """
    result = _outcome(lambda: _ack_mode(value))
    if isinstance(result, InvalidRequest):
        assert isinstance(result, StompError)
        _refusal_is_readable(result)
        assert "ack must be" in result.message
    else:
        assert result == (value or "auto")
        assert result in ("auto", "client", "client-individual")


_offers = st.one_of(
    st.none(),
    any_text,
    st.lists(
        st.sampled_from([*SUBPROTOCOLS, " v12.stomp", "V12.STOMP", "v13.stomp", "", "mqtt"]),
        max_size=4,
    ).map(",".join),
)


@PURE
@given(offer=_offers)
def test_the_chosen_subprotocol_is_the_newest_offered_one_or_none(offer: str | None) -> None:
    """Given any Sec-WebSocket-Protocol offer, or none
    When the subprotocol is chosen
    Then it is the first of ours that the client offered, or None
    """
    chosen = choose_subprotocol(offer)
    offered = [part.strip() for part in (offer or "").split(",")]
    ours = [name for name in SUBPROTOCOLS if name in offered]
    assert chosen == (ours[0] if ours else None)


@PURE
@given(
    text=st.one_of(
        any_text,
        st.builds(
            lambda lead, cmd, rest: lead + cmd + rest,
            st.text(st.sampled_from("\r\n \t"), max_size=3),
            st.sampled_from(["CONNECT", "STOMP", "connect", "CONNECTED", "SEND", "STOMPX"]),
            st.sampled_from(["\n", "\r\n", "", " \n", "\n\n\x00", "\r"]),
        ),
    )
)
def test_a_message_looks_like_connect_only_if_its_first_line_is_connect_or_stomp(
    text: str,
) -> None:
    """Given any text, or a command near CONNECT with leading EOLs and odd line endings
    When it is asked whether it looks like a CONNECT
    Then it does exactly when its first line (after heart-beat EOLs, without a CRLF's CR) is CONNECT
    or STOMP
    """
    # its first line, after heart-beat EOLs and without the CR of a CRLF, is the command
    head = text.lstrip("\r\n")
    first, newline, _ = head.partition("\n")
    expected = bool(newline) and first.removesuffix("\r") in ("CONNECT", "STOMP")
    assert looks_like_connect(text) is expected


# --- WebSocket JSON frames ----------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """Raw JSON text spliced in where a value goes: NaN, 1e999, 5000-digit numbers."""

    text: str


_tokens = st.one_of(
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "-0", "0.0", "1.0", "1e2"]
    ),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(['"\\ud800"', '"\\udfff"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\x41"']),
).map(Token)
_surrogates = st.sampled_from(["\ud800", "a\udfff", "\ud83d", "ok\ud800ok"])
_plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**300), 10**300),
    st.floats(),
    st.text(max_size=20),
    _surrogates,
)
_json_values = st.recursive(
    st.one_of(_plain_scalars, _tokens),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), _surrogates), inner, max_size=4),
    ),
    max_leaves=25,
)
# Per field: values a client plausibly sends (in range or just out of it), often enough
# that frames parse; or any JSON value at all.
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "destination": st.sampled_from(["/queue/q", "/topic/a.*", "/queue/", "q"])
    | st.text(max_size=9),
    "id": st.sampled_from(["s1", "0.0.0123abcd:s1", "t:s1", ""]) | st.text(max_size=210),
    "ack": st.sampled_from(["auto", "client", "client-individual", "never", ""]),
    "prefetch": st.integers(-2, 1002) | st.sampled_from([1.0, 1.5, "10", True, 10**30]),
    "durable": st.none() | st.text(max_size=10),
    "receipt": st.none() | st.text(max_size=130),
    "body": st.text(max_size=30) | st.sampled_from(["aGk=", "!!", "a" * 10]),
    "binary": st.booleans() | st.sampled_from(["true", 1, 0, "yes"]),
    "attributes": st.dictionaries(
        st.text(max_size=5) | _surrogates,
        st.text(max_size=5) | _surrogates | st.integers(),
        max_size=3,
    ),
    "content_type": st.none() | st.text(max_size=260),
    "correlation_id": st.none() | st.text(max_size=260),
    "reply_to": st.none() | st.text(max_size=10),
    "delay_seconds": st.integers(-1, 1000) | st.sampled_from([0.0, 43200, 43201, 1e400]),
    "ttl_seconds": st.integers(-1, 1209601),
    "group_id": st.none() | st.text(max_size=130),
    "dedup_id": st.none() | st.text(max_size=130),
}
_RECEIPTED = ["receipt"]
_ACTIONS: dict[str, tuple[list[str], list[str]]] = {  # required fields, optional fields
    "subscribe": (["destination", "id"], ["ack", "prefetch", "durable", *_RECEIPTED]),
    "unsubscribe": (["id"], _RECEIPTED),
    "publish": (
        ["destination", "body"],
        [
            "binary",
            "attributes",
            "content_type",
            "correlation_id",
            "reply_to",
            "delay_seconds",
            "ttl_seconds",
            "group_id",
            "dedup_id",
            *_RECEIPTED,
        ],
    ),
    "ack": (["id"], _RECEIPTED),
    "nack": (["id"], ["delay_seconds", *_RECEIPTED]),
}


def _value_of(name: str) -> st.SearchStrategy[Any]:
    plausible = _FIELD_VALUES[name]
    return st.one_of(plausible, plausible, plausible, _json_values)


@st.composite
def _frame_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A frame of one action: its fields, sometimes one missing, sometimes one unknown."""
    action = draw(st.sampled_from(sorted(_ACTIONS)))
    required, optional = _ACTIONS[action]
    frame: dict[str, Any] = {"action": action}
    frame.update({name: draw(_value_of(name)) for name in required})
    for name in draw(st.lists(st.sampled_from(optional), max_size=3, unique=True)):
        frame[name] = draw(_value_of(name))
    change = draw(st.sampled_from(["none", "none", "none", "drop", "unknown", "action"]))
    if change == "drop":
        del frame[draw(st.sampled_from(sorted(frame)))]
    elif change == "unknown":
        frame[draw(st.sampled_from([*_FIELD_VALUES, "x", ""]) | st.text(max_size=5))] = draw(
            _json_values
        )
    elif change == "action":
        frame["action"] = draw(_json_values | st.sampled_from(["Subscribe", "fly", ""]))
    return frame


def _dumps(value: Any, *, ascii_only: bool) -> str:
    """JSON text for `value`, with Token values written as they are."""
    if isinstance(value, Token):
        return value.text
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v, ascii_only=ascii_only) for v in value) + "]"
    if isinstance(value, dict):
        members = (
            json.dumps(k, ensure_ascii=ascii_only) + ":" + _dumps(v, ascii_only=ascii_only)
            for k, v in value.items()
        )
        return "{" + ",".join(members) + "}"
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


_json_texts = st.builds(
    lambda value, ascii_only, pad: pad + _dumps(value, ascii_only=ascii_only) + pad,
    st.one_of(_frame_objects(), _frame_objects(), _json_values),
    st.booleans(),
    st.sampled_from(["", "", "", " ", "\n", "\ufeff", "\x00"]),
)
_PUBLISH_ATTRIBUTES = '{"action":"publish","destination":"/queue/q","body":"x","attributes":'
_nested = st.builds(
    lambda depth, opener, closer: opener * depth + "0" + closer * depth,
    st.one_of(st.integers(1, 300), st.integers(300, 5000)),
    st.sampled_from(["[", '{"a":', _PUBLISH_ATTRIBUTES]),
    st.sampled_from(["]", "}"]),
)


def _check_client_frame(frame: object) -> None:
    """What a parsed frame promises the code that acts on it."""
    assert isinstance(frame, Subscribe | Unsubscribe | Publish | Ack | Nack)
    assert frame.receipt is None or len(frame.receipt) <= 128
    if isinstance(frame, Subscribe | Unsubscribe):
        assert 1 <= len(frame.id) <= 128
    if isinstance(frame, Subscribe):
        assert frame.ack in ("auto", "client", "client-individual")
        assert 1 <= frame.prefetch <= MAX_PREFETCH
    if isinstance(frame, Ack | Nack):
        assert 1 <= len(frame.id) <= 200
    if isinstance(frame, Nack):
        assert 0 <= frame.delay_seconds <= models.MAX_VISIBILITY_SECONDS
    if isinstance(frame, Publish):
        try:
            message = frame.to_message()
        except MqlessError as exc:  # handle_text answers any MqlessError with an error frame
            assert exc.code in ("invalid_request", "payload_too_large")
            assert exc.message
        else:
            assert isinstance(message, NewMessage)


@MANY
@given(text=_json_texts)
@example(text=json.dumps({"action": "ack", "id": "1", "\u00e9" * 3000: 1}))
def test_any_json_value_is_a_client_frame_or_an_invalid_request(text: str) -> None:
    # Given any JSON value (frame-shaped or not; NaN and Infinity tokens, numbers of
    # thousands of digits, escaped and raw lone surrogates, nested objects)
    # When the JSON protocol parses it
    result = _outcome(lambda: parse_frame(text))
    # Then it is a frame whose fields are in range (and a publish maps to a message or a
    # domain error), or an InvalidRequest saying what is wrong
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
    else:
        _check_client_frame(result)


@BIG
@given(text=_nested)
def test_deeply_nested_json_is_refused_quickly(text: str) -> None:
    """Given JSON nested up to 5000 levels deep (arrays, objects, publish attributes)
    When it is parsed as a client frame
    Then it is a client frame or a readable InvalidRequest, within the time limit (no
    RecursionError)
    """
    result = _outcome(lambda: parse_frame(text))
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
    else:
        _check_client_frame(result)


@PURE
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.text(
            st.sampled_from('{}[]":,\\ \nactionsubscribe0123456789.eE+-tfn\ud800'), max_size=80
        ),
    )
)
def test_any_text_is_a_client_frame_or_an_invalid_request(text: str) -> None:
    """Given any text, or text made of JSON punctuation, frame words, digits and a lone surrogate
    When it is parsed as a client frame
    Then it is a frame keeping the parser's promises, or a readable InvalidRequest
    """
    result = _outcome(lambda: parse_frame(text))
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
    else:
        _check_client_frame(result)


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "ack", "id": "1", "\u00e9" * 40_000: 1},
        {"action": "x" * 100_000},
        {"action": "publish", "destination": "/queue/q", "body": "", "attributes": {"k" * 9000: 1}},
    ],
    ids=["unknown-field", "unknown-action", "attribute-name"],
)
def test_a_json_error_message_does_not_echo_the_whole_frame_regression(
    frame: dict[str, Any],
) -> None:
    """Given a JSON frame under 128 KiB with a huge unknown field name, action or attribute name
    When it is parsed
    Then it is refused with a message no longer than MAX_ERROR_CHARS, so the error frame fits what
    @connections accepts
    """
    # Reproduction: parse_frame(json.dumps({"action": "ack", "id": "1", "é" * 40000: 1}))
    # was refused with a 40 005-character message quoting the field name; handle_text's
    # error frame (json.dumps, ASCII escapes) was then 240 KB, over the 128 KB that
    # @connections accepts, so the post failed and the client got no answer.
    text = json.dumps(frame, ensure_ascii=False)
    assert len(text.encode()) <= 128 * 1024  # a message API Gateway lets through
    result = _outcome(lambda: parse_frame(text))
    assert isinstance(result, InvalidRequest)
    assert len(result.message) <= MAX_ERROR_CHARS


# --- ack ids ------------------------------------------------------------------------------

_ack_ids = st.one_of(
    any_text,
    st.builds(
        lambda seq, dot, position, gen, colon, sub: f"{seq}{dot}{position}.{gen}{colon}{sub}",
        digits,
        st.sampled_from([".", "", ".."]),
        digits,
        st.one_of(st.from_regex(r"[0-9a-f]{8}", fullmatch=True), st.text(max_size=9)),
        st.sampled_from([":", "", "::"]),
        st.one_of(st.text(max_size=10), st.just("s1"), st.text(min_size=120, max_size=140)),
    ),
    st.builds(lambda sub: f"t:{sub}", st.text(max_size=10)),
)


@MANY
@given(text=_ack_ids)
@example(text="\u00b2.0.0123abcd:s1")
def test_an_ack_id_is_one_the_server_gives_out_or_an_invalid_request(text: str) -> None:
    # Given any string a client sends as an ack id (JSON ack/nack `id`, STOMP 1.2 `id`)
    # When it is parsed
    result = _outcome(lambda: parse_ack_id(text))
    # Then it names a subscription and, for a queue message, a delivery record, a position
    # in it and an 8-hex generation
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
        return
    assert isinstance(result, AckId)
    assert 1 <= len(result.subscription) <= MAX_CLIENT_ID  # it becomes part of a key
    if result.seq is None:
        assert text == f"t:{result.subscription}"
    else:
        assert 0 <= result.seq <= 9_999_999_999 and 0 <= result.position <= 9999
        assert re.fullmatch(r"[0-9a-f]{8}", result.gen)
        assert parse_ack_id(str(result)) == result


@pytest.mark.parametrize(
    "text", ["².0.0123abcd:s1", "1²³.0.0123abcd:s1", "⁴.0.0123abcd:t", "0.².0123abcd:s1"]
)
def test_an_ack_id_whose_number_has_a_superscript_digit_is_an_invalid_request_regression(
    text: str,
) -> None:
    """Given an ack id whose sequence or position holds a superscript digit
    When it is parsed
    Then it is refused as "not an ack id", not a ValueError
    """
    # Reproduction: parse_ack_id("².0123abcd:s1") (the slot format then) raised ValueError
    # (isdigit, then int); through Sessions.settle it escaped handle_text and StompSession.
    with pytest.raises(InvalidRequest, match="not an ack id"):
        parse_ack_id(text)


@pytest.mark.parametrize("head", ["t", "1.0.0123abcd"])
def test_an_ack_id_naming_a_subscription_over_the_id_limit_is_an_invalid_request(
    head: str,
) -> None:
    """Given a topic or queue ack id whose subscription is exactly the id limit long, and one a
    character longer
    When each is parsed
    Then the first is read and the second is refused as "not an ack id" (no such id was given out)
    """
    # no subscription id is longer than the limit, so no such ack id was given out
    parse_ack_id(f"{head}:{'s' * MAX_CLIENT_ID}")
    with pytest.raises(InvalidRequest, match="not an ack id"):
        parse_ack_id(f"{head}:{'s' * (MAX_CLIENT_ID + 1)}")


# --- receipts -----------------------------------------------------------------------------


def _sign(message: bytes) -> bytes:
    return hashlib.sha256(b"fuzz secret" + message).digest()


_receipt_groups = st.text(
    st.characters(codec="utf-8", exclude_characters="\x1f"), min_size=1, max_size=40
)
_real_receipts = st.one_of(
    st.builds(
        lambda shard, seq, slot, token: Lease("orders", shard, "s", str(seq), slot, token).encode(
            _sign
        ),
        st.integers(0, 63),
        st.integers(0, 10**9),
        st.integers(0, 15),
        st.integers(1, 2**31 - 1),
    ),
    st.builds(
        lambda group, token: Lease("orders", 0, "g", group, 0, token).encode(_sign),
        _receipt_groups,
        st.integers(1, 2**31 - 1),
    ),
)


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply (kind, position, text) edits: delete, insert, overwrite, or cut off there."""
    for kind, position, piece in edits:
        at = position % (len(text) + 1)
        if kind == 0:
            text = text[:at] + text[at + 1 :]
        elif kind == 1:
            text = text[:at] + piece + text[at:]
        elif kind == 2:
            text = text[:at] + piece + text[at + len(piece) :]
        else:
            text = text[:at]
    return text


_edits = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 2000),
        st.one_of(
            st.text(st.sampled_from("AQ_-+/=.r1 \x00é\ud800"), min_size=1, max_size=3),
            st.text(min_size=1, max_size=3),
        ),
    ),
    min_size=1,
    max_size=4,
)


@PURE
@given(
    receipt=_real_receipts,
    edits=_edits,
    queue=st.sampled_from(["orders", "other", "orders.fifo", ""]),
)
def test_a_mutated_receipt_decodes_for_its_queue_or_is_an_invalid_request(
    receipt: str, edits: list[tuple[int, int, str]], queue: str
) -> None:
    # Given a real receipt with a few characters deleted, inserted, replaced or cut off
    text = _mutate(receipt, edits)
    # When it is decoded as a receipt of one queue
    result = _outcome(lambda: decode_receipt(text, queue=queue, sign=_sign))
    # Then it decodes only to a lease of the queue asked about (its MAC still good: an
    # edit that left the receipt whole), else InvalidRequest
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
    else:
        assert result.queue == queue
        assert result.kind in ("s", "g") and result.token >= 0
        assert "\x1f" not in result.place


@PURE
@given(
    value=st.one_of(
        _json_values,
        st.binary(max_size=20),
        st.builds(lambda tail: "r2." + "QQ" * 512 + tail, st.text(max_size=20)),  # over 1 KiB
    )
)
def test_a_receipt_of_any_type_or_length_decodes_or_is_an_invalid_request(value: Any) -> None:
    """Given any JSON value, bytes, or a receipt-like string over 1 KiB
    When it is decoded as a receipt of queue orders
    Then it is a lease of orders from a string no longer than MAX_RECEIPT_LENGTH, or a readable
    InvalidRequest
    """
    result = _outcome(lambda: decode_receipt(value, queue="orders", sign=_sign))
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
    else:
        assert isinstance(value, str) and len(value) <= MAX_RECEIPT_LENGTH
        assert result.queue == "orders"


# --- browse cursors -----------------------------------------------------------------------

_QUEUE = QueueConfig.from_settings("orders", QueueSettings(shards=4), 0)
_positions = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 15)), min_size=4, max_size=4)
# The HTTP API accepts cursors of up to 2048 characters (api.py's Query max_length).
MAX_CURSOR_CHARS = 2048


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode()


_cursors = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.builds(
        lambda piece, times: (piece * times)[:MAX_CURSOR_CHARS],
        st.text(min_size=1),
        st.integers(1, 400),
    ),
    st.builds(lambda value: _b64(_dumps(value, ascii_only=True)), _json_values),
    st.builds(lambda position, edits: _mutate(_encode_cursor(position), edits), _positions, _edits),
    # only arrays nest a thousand deep in the 1536 octets a 2048-character cursor holds
    st.builds(
        lambda prefix, depth: _b64(prefix + "[" * depth),
        st.sampled_from(["", "[[0,", "[[0,1],[", '{"pk":']),
        st.one_of(st.integers(1, 50), st.integers(900, 1530)),
    ),
).filter(lambda cursor: cursor is None or len(cursor) <= MAX_CURSOR_CHARS)


@MANY
@given(cursor=_cursors)
def test_a_browse_cursor_is_a_position_in_the_queue_or_an_invalid_request(
    cursor: str | None,
) -> None:
    # Given any cursor the HTTP API lets through: text, base64 of any JSON (nested deep),
    # or a cursor the API gave out with a few characters changed
    # When it is decoded
    result = _outcome(lambda: _decode_cursor(cursor, _QUEUE))
    # Then it is a position (segment or group, slot) for each of the queue's shards, or
    # "malformed cursor"
    if isinstance(result, InvalidRequest):
        assert result.message == "malformed cursor"
    elif cursor is None:
        assert result == [(0, 0)] * _QUEUE.shards
    else:
        assert len(result) == _QUEUE.shards
        assert all(place >= 0 and slot >= 0 for place, slot in result)


@PURE
@given(position=_positions)
def test_a_cursor_the_api_gives_out_decodes_to_the_same_position(
    position: list[tuple[int, int]],
) -> None:
    """Given any position (place and slot for each of four shards)
    When it is encoded as a cursor and decoded again
    Then the same position comes back
    """
    assert _decode_cursor(_encode_cursor(position), _QUEUE) == position


@pytest.mark.parametrize("nested", ["[" * 1000, '{"pk":' + "[" * 1500])
def test_a_deeply_nested_cursor_is_a_malformed_cursor_regression(nested: str) -> None:
    """Given a cursor, within the API's length limit, that is base64 of JSON nested 1000 or more
    deep
    When it is decoded
    Then it is refused as "malformed cursor", not a RecursionError
    """
    # Reproduction: _decode_cursor(base64.urlsafe_b64encode(b"[" * 1000).decode(), "q")
    # raised RecursionError (json.loads) for a 1336-character cursor the API accepts.
    cursor = _b64(nested)
    assert len(cursor) <= MAX_CURSOR_CHARS
    with pytest.raises(InvalidRequest, match="malformed cursor"):
        _decode_cursor(cursor, _QUEUE)


# --- topic names, patterns and filter policies --------------------------------------------

_WORD = r"[A-Za-z0-9_-]+"
_words = st.text(st.sampled_from("AZaz09_-"), min_size=1, max_size=12)
_topic_texts = st.one_of(
    st.text(max_size=120),
    st.text(st.sampled_from("aZ09_-.*>é \x00\ud800"), max_size=90),
    st.builds(
        lambda segments, tail: ".".join(segments) + tail,
        st.lists(st.one_of(_words, st.just("*")), min_size=1, max_size=8),
        st.sampled_from(["", ".>", ">", "."]),
    ),
)


@PURE
@given(name=_topic_texts)
def test_a_topic_name_is_returned_exactly_when_it_follows_the_rule(name: str) -> None:
    """Given any text, or dotted words with wildcards and odd characters
    When it is validated as a topic name
    Then it is returned as is exactly when it is 1 to 80 ASCII word segments joined by dots, else
    refused with a readable message about the topic name
    """
    result = _outcome(lambda: validate_topic_name(name))
    valid = 1 <= len(name) <= 80 and re.fullmatch(rf"{_WORD}(\.{_WORD})*", name, re.ASCII)
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
        assert "topic name" in result.message
        assert not valid
    else:
        assert valid and result == name


@PURE
@given(pattern=_topic_texts)
def test_a_topic_pattern_is_returned_exactly_when_it_follows_the_rule(pattern: str) -> None:
    """Given any text, or dotted words with wildcards and odd characters
    When it is validated as a topic pattern
    Then it is returned as is exactly when it is 1 to 80 characters of word or "*" segments with an
    optional final ">", else refused with a readable message about the topic pattern
    """
    result = _outcome(lambda: validate_topic_pattern(pattern))
    segment = rf"({_WORD}|\*)"
    valid = 1 <= len(pattern) <= 80 and re.fullmatch(
        rf"(>|{segment}(\.{segment})*(\.>)?)", pattern, re.ASCII
    )
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
        assert "topic pattern" in result.message
        assert not valid
    else:
        assert valid and result == pattern


_policy_keys = st.one_of(
    st.sampled_from(
        ["a", "b", "$or", "prefix", "numeric", "anything-but", "exists", "suffix", "", "\ud800"]
    ),
    st.text(max_size=6),
)
_policy_values = st.recursive(
    st.one_of(
        _plain_scalars,
        st.sampled_from(["=", "<", ">=", "<=", ">"]),
        st.integers(-(10**4250), 10**4250),
        st.sampled_from([float("nan"), float("inf"), 1e308, 5e-324, -0.0]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(_policy_keys, inner, max_size=4)
    ),
    max_leaves=25,
)


@PURE
@given(policy=_policy_values)
def test_a_filter_policy_object_of_any_json_is_a_policy_or_an_invalid_request(
    policy: Any,
) -> None:
    # Given any JSON value handed over already parsed (as the HTTP model does): not only
    # objects; NaN, infinities, 4250-digit integers, lone surrogates in keys and values
    # When it is parsed as a filter policy
    result = _outcome(lambda: FilterPolicy.parse(policy))
    # Then it is a policy that round-trips and matches without error, or an InvalidRequest
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
        assert result.message.startswith("invalid filter policy")
    else:
        assert FilterPolicy.parse(result.to_json()) == result
        assert result.matches({"a": "1", "b": "x"}) in (True, False)


@PURE
@given(
    text=st.one_of(
        st.builds(lambda v, a: _dumps(v, ascii_only=a), _json_values, st.booleans()),
        st.builds(lambda v, a: _dumps(v, ascii_only=a), _policy_values, st.booleans()),
        st.text(max_size=200),
        _nested,
    )
)
def test_a_filter_policy_text_of_any_json_is_a_policy_or_an_invalid_request(text: str) -> None:
    # Given any JSON text (NaN/Infinity tokens, 6000-digit numbers, deep nesting, lone
    # surrogates escaped and raw) or any text at all
    # When it is parsed as a filter policy
    result = _outcome(lambda: FilterPolicy.parse(text))
    # Then it is a policy that round-trips through JSON text, or an "invalid filter policy"
    if isinstance(result, InvalidRequest):
        _refusal_is_readable(result)
        assert result.message.startswith("invalid filter policy")
    else:
        assert FilterPolicy.parse(json.dumps(result.to_json())) == result
