"""STOMP 1.2 framing: the spec's examples, what @stomp/stompjs puts on the wire, and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqless.domain.errors import InvalidRequest
from mqless.transports.websocket.stomp_frames import (
    CLIENT_COMMANDS,
    COMMANDS,
    MAX_FRAME_BYTES,
    Frame,
    StompError,
    decode_frames,
    encode_frame,
)
from mqless.transports.websocket.stomp_headers import validate
from mqless.transports.websocket.stomp_negotiation import negotiate_heartbeat, negotiate_version

# Exactly what @stomp/stompjs v7 sends with its defaults: it joins lines with LF, puts
# accept-version and heart-beat after any user connectHeaders, and sends no host.
STOMPJS_CONNECT = "CONNECT\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\n\n\x00"
# stompjs appends content-length (UTF-8 octets) after the user headers when the body is
# not empty.
STOMPJS_SEND = "SEND\ndestination:/queue/orders\ncontent-length:13\n\nhello queue a\x00"
STOMPJS_SUBSCRIBE = "SUBSCRIBE\nid:sub-0\ndestination:/queue/orders\nack:client-individual\n\n\x00"


def decode_one(data: str | bytes, **kwargs: Any) -> Frame:
    frames = decode_frames(data, **kwargs)
    assert len(frames) == 1, frames
    return frames[0]


# --- decoding what clients send ------------------------------------------------------


def test_stompjs_connect_decodes_with_its_headers_in_order() -> None:
    # Given the CONNECT frame stompjs sends on open
    # When it is decoded
    frame = decode_one(STOMPJS_CONNECT)
    # Then command and headers are as sent, with no body
    assert frame == Frame(
        "CONNECT", (("accept-version", "1.2,1.1,1.0"), ("heart-beat", "10000,10000"))
    )


def test_stompjs_send_body_is_exactly_content_length_octets() -> None:
    """Given the SEND frame stompjs writes, with content-length 13
    When it is decoded
    Then the body is those 13 octets and the destination header is as sent
    """
    frame = decode_one(STOMPJS_SEND)
    assert frame.body == b"hello queue a"
    assert frame.header("destination") == "/queue/orders"


def test_content_length_is_framing_and_left_out_of_the_headers() -> None:
    """Given the SEND frame stompjs writes, with a content-length header
    When it is decoded
    Then content-length is not among the frame's headers: only the destination is
    """
    frame = decode_one(STOMPJS_SEND)
    assert frame.header("content-length") is None
    assert frame.headers == (("destination", "/queue/orders"),)


def test_without_content_length_the_body_ends_at_the_first_nul() -> None:
    # Given the spec's SEND example, whose body ends with a newline before NUL
    data = "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\x00"
    # When it is decoded
    # Then the newline is part of the body
    assert decode_one(data).body == b"hello queue a\n"


def test_several_frames_in_one_message_decode_in_order() -> None:
    # Given frames separated by the EOLs the spec allows after each NUL
    data = STOMPJS_SUBSCRIBE + "\n" + STOMPJS_SEND + "\r\n\n" + "DISCONNECT\nreceipt:77\n\n\x00\n"
    # When decoded
    frames = decode_frames(data)
    # Then every frame comes back, in order
    assert [frame.command for frame in frames] == ["SUBSCRIBE", "SEND", "DISCONNECT"]
    assert frames[1].body == b"hello queue a"
    assert frames[2].header("receipt") == "77"


@pytest.mark.parametrize("data", ["\n", "\r\n", "\n\n\r\n", ""])
def test_a_heart_beat_only_message_holds_no_frames(data: str) -> None:
    """Given a WebSocket message of only EOLs (a heart-beat) or nothing at all
    When it is decoded
    Then it holds no frames
    """
    assert decode_frames(data) == []


def test_crlf_line_endings_decode_like_lf() -> None:
    """Given the same SEND frame written once with CRLF and once with LF line endings
    When both are decoded
    Then they give the same frames
    """
    crlf = "SEND\r\ndestination:/queue/a\r\ncontent-length:2\r\n\r\nhi\x00\r\n"
    lf = "SEND\ndestination:/queue/a\ncontent-length:2\n\nhi\x00\n"
    assert decode_frames(crlf) == decode_frames(lf)


def test_repeated_headers_are_kept_and_the_first_wins() -> None:
    # Given the spec's example of a repeated header
    # When it is decoded
    frame = decode_one("MESSAGE\nfoo:World\nfoo:Hello\n\n\x00")
    # Then the value is the first one, and the history is still there
    assert frame.header("foo") == "World"
    assert frame.headers == (("foo", "World"), ("foo", "Hello"))


def test_repeated_content_length_uses_the_first() -> None:
    """Given a SEND with content-length 3 then content-length 1, and a body holding a NUL
    When it is decoded
    Then the first content-length frames the body, NUL included
    """
    frame = decode_one("SEND\ndestination:/q\ncontent-length:3\ncontent-length:1\n\na\x00b\x00")
    assert frame.body == b"a\x00b"


def test_header_names_and_values_are_unescaped() -> None:
    r"""Given a SEND whose header name and value use the escapes \c, \n, \r and \\
    When it is decoded
    Then the header is read with a colon, newline, carriage return and backslash in their place
    """
    data = "SEND\ndestination:/q\nk\\cey:a\\nb\\rc\\\\d\\ce\n\n\x00"
    assert decode_one(data).header("k:ey") == "a\nb\rc\\d:e"


def test_an_escaped_backslash_is_not_read_as_the_start_of_another_escape() -> None:
    """Given a header value of an escaped backslash followed by a plain "n"
    When it is decoded
    Then the value is a backslash and an "n", not a backslash and a newline
    """
    # "\\\\n" is an escaped backslash then a plain "n", not a backslash and a newline
    assert decode_one("SEND\ndestination:/q\nk:\\\\n\n\n\x00").header("k") == "\\n"


@pytest.mark.parametrize("command", ["CONNECT", "CONNECTED", "STOMP"])
def test_connect_and_connected_header_values_are_taken_literally(command: str) -> None:
    """Given a CONNECT, CONNECTED or STOMP frame whose passcode holds backslashes and a colon
    When it is decoded
    Then the value is kept as written, with no unescaping (the spec exempts these frames)
    """
    frame = decode_one(f"{command}\npasscode:a\\nb\\tc:d\n\n\x00")
    assert frame.header("passcode") == "a\\nb\\tc:d"


def test_a_stomp_frame_is_read_like_connect_without_unescaping() -> None:
    """Given a STOMP frame, as stomp.py opens with, whose passcode holds unescaped backslashes
    When it is decoded
    Then the passcode is kept as written rather than refused as an undefined escape
    """
    # stomp.py opens with STOMP and does not escape it; a backslash must not be fatal
    assert decode_one("STOMP\npasscode:a\\b\\c\n\n\x00").header("passcode") == "a\\b\\c"


@pytest.mark.parametrize("value", ["\\t", "a\\x", "trailing\\"])
def test_an_undefined_escape_is_a_fatal_error(value: str) -> None:
    r"""Given a SEND header value with an escape the spec does not define (\t, \x, a trailing \)
    When it is decoded
    Then decoding fails with a StompError that says "undefined escape"
    """
    with pytest.raises(StompError, match="undefined escape"):
        decode_frames(f"SEND\ndestination:/q\nk:{value}\n\n\x00")


def test_stomp_1_0_frames_are_not_unescaped() -> None:
    r"""Given a SEND header value holding \n and \t
    When it is decoded as STOMP 1.0
    Then the value is kept as written, since 1.0 has no escapes
    """
    frame = decode_one("SEND\ndestination:/q\nk:a\\nb\\t\n\n\x00", version="1.0")
    assert frame.header("k") == "a\\nb\\t"


def test_a_colon_inside_a_value_is_kept() -> None:
    """Given a MESSAGE whose message-id holds colons
    When it is decoded
    Then only the first colon splits name from value, and the id keeps its colons
    """
    # 1.0-era ids and CONNECT passcodes carry raw colons; the first colon splits
    frame = decode_one("MESSAGE\nmessage-id:ID:host-1:2\n\n\x00")
    assert frame.header("message-id") == "ID:host-1:2"


def test_header_values_are_never_trimmed() -> None:
    """Given a destination header value with a space on each side
    When it is decoded
    Then the spaces are kept
    """
    assert decode_one("SEND\ndestination: /q \n\n\x00").header("destination") == " /q "


def test_an_empty_header_value_is_allowed() -> None:
    """Given a header with an empty value
    When it is decoded
    Then the header is there with the empty string as its value
    """
    assert decode_one("SEND\ndestination:/q\nk:\n\n\x00").header("k") == ""


def test_a_nul_inside_the_body_is_kept_when_content_length_covers_it() -> None:
    """Given a SEND whose content-length covers a body holding NUL octets
    When it is decoded
    Then the body keeps its NULs
    """
    frame = decode_one("SEND\ndestination:/q\ncontent-length:5\n\na\x00b\x00c\x00")
    assert frame.body == b"a\x00b\x00c"


def test_content_length_counts_utf8_octets_not_characters() -> None:
    # Given a text message whose body is two characters but five octets of UTF-8
    # When it is decoded with content-length 5, and again with content-length 2
    frame = decode_one("SEND\ndestination:/q\ncontent-length:5\n\né€\x00")
    # Then the five octets are the body, and a count of characters would not do
    assert frame.body == "é€".encode()
    with pytest.raises(StompError, match="content-length"):
        decode_frames("SEND\ndestination:/q\ncontent-length:2\n\né€\x00")


def test_content_length_longer_than_the_body_is_an_error() -> None:
    """Given a SEND whose content-length (10) is longer than its body (5 octets and NUL)
    When it is decoded
    Then decoding fails, saying how many octets there were
    """
    with pytest.raises(StompError, match="content-length 10 but only 6 octets"):
        decode_frames("SEND\ndestination:/q\ncontent-length:10\n\nhello\x00")


def test_content_length_shorter_than_the_body_is_an_error() -> None:
    """Given a SEND whose content-length (3) is shorter than its 5-octet body
    When it is decoded
    Then decoding fails, as the octet after the content-length is not NUL
    """
    with pytest.raises(StompError, match="does not end with NUL after its content-length"):
        decode_frames("SEND\ndestination:/q\ncontent-length:3\n\nhello\x00")


def test_content_length_reaching_into_the_next_frame_is_an_error() -> None:
    """Given a SEND whose content-length reaches past its NUL into the DISCONNECT after it
    When the message is decoded
    Then decoding fails on the content-length
    """
    data = "SEND\ndestination:/q\ncontent-length:8\n\nhi\x00" + "DISCONNECT\n\n\x00"
    with pytest.raises(StompError, match="content-length"):
        decode_frames(data)


@pytest.mark.parametrize("value", ["-1", "abc", "+5", " 5", "5 ", "1e3", "٣", ""])
def test_a_content_length_that_is_not_a_plain_integer_is_an_error(value: str) -> None:
    """Given a content-length that is negative, signed, padded, exponent, non-ASCII digit or empty
    When the frame is decoded
    Then decoding fails, saying content-length must be a non-negative integer
    """
    with pytest.raises(StompError, match="content-length must be a non-negative integer"):
        decode_frames(f"SEND\ndestination:/q\ncontent-length:{value}\n\n\x00")


@pytest.mark.parametrize(
    "data",
    [
        "SEND\ndestination:/q\n\nhello",
        "SEND\ndestination:/q\n",
        "SEND\ndestination:/q",
        "SEND",
        STOMPJS_SEND + STOMPJS_SEND[:20],
    ],
)
def test_a_frame_without_its_nul_terminator_is_an_error(data: str) -> None:
    """Given a frame cut short anywhere before its NUL (in the body, headers or command)
    When it is decoded
    Then decoding fails, saying the frame is not terminated by NUL
    """
    with pytest.raises(StompError, match="not terminated by NUL"):
        decode_frames(data)


def test_a_nul_before_the_end_of_the_headers_is_an_error() -> None:
    """Given a frame whose NUL comes before the blank line that ends the headers
    When it is decoded
    Then decoding fails, saying the NUL came before the blank line
    """
    with pytest.raises(StompError, match="before the blank line"):
        decode_frames("SEND\ndestination:/q\x00")


@pytest.mark.parametrize("command", ["send", "Connect", "FOO", "SEND "])
def test_commands_are_case_sensitive_and_unknown_ones_are_errors(command: str) -> None:
    """Given a frame whose command is lower case, mixed case, unknown or has a trailing space
    When it is decoded
    Then decoding fails with "unknown command"
    """
    with pytest.raises(StompError, match="unknown command"):
        decode_frames(f"{command}\ndestination:/q\n\n\x00")


def test_a_stray_nul_between_frames_is_an_error() -> None:
    """Given a NUL octet before an otherwise good SEND frame
    When the message is decoded
    Then decoding fails, saying a frame ended before its blank line
    """
    with pytest.raises(StompError, match=r"frame ended \(NUL\) before the blank line"):
        decode_frames("\x00" + STOMPJS_SEND)


def test_a_header_line_without_a_colon_is_an_error() -> None:
    """Given a header line with no colon
    When the frame is decoded
    Then decoding fails, saying there is no ':' separator
    """
    with pytest.raises(StompError, match="no ':' separator"):
        decode_frames("SEND\ndestination\n\n\x00")


def test_a_header_with_an_empty_name_is_an_error() -> None:
    """Given a header line that starts with its colon
    When the frame is decoded
    Then decoding fails, saying the name is empty
    """
    with pytest.raises(StompError, match="empty name"):
        decode_frames("SEND\n:value\n\n\x00")


def test_headers_that_are_not_utf8_are_an_error() -> None:
    """Given a binary message whose header holds an octet that is not UTF-8
    When it is decoded
    Then decoding fails with "not valid UTF-8"
    """
    with pytest.raises(StompError, match="not valid UTF-8"):
        decode_frames(b"SEND\ndestination:/\xff\n\n\x00")


def test_text_with_a_lone_surrogate_is_an_error() -> None:
    """Given a text message whose header holds a lone surrogate
    When it is decoded
    Then decoding fails with "not valid UTF-8"
    """
    with pytest.raises(StompError, match="not valid UTF-8"):
        decode_frames("SEND\ndestination:/\ud800\n\n\x00")


def test_a_stomp_error_is_an_invalid_request_for_the_one_error_mapping() -> None:
    """Given a frame with an unknown command
    When it is decoded
    Then the error raised is an InvalidRequest with code invalid_frame, so the one error mapping
    renders it
    """
    with pytest.raises(InvalidRequest) as caught:
        decode_frames("FOO\n\n\x00")
    assert caught.value.code == "invalid_frame"


# --- limits ---------------------------------------------------------------------------


def _send_of_size(total: int) -> str:
    """A SEND frame of exactly `total` octets, NUL included."""
    head = "SEND\ndestination:/q\n\n"
    return head + "x" * (total - len(head) - 1) + "\x00"


def test_a_frame_of_exactly_the_default_128k_limit_is_accepted() -> None:
    """Given a SEND of exactly MAX_FRAME_BYTES octets
    When it is decoded
    Then it is accepted with the whole body
    """
    data = _send_of_size(MAX_FRAME_BYTES)
    assert len(decode_one(data).body) == MAX_FRAME_BYTES - len("SEND\ndestination:/q\n\n") - 1


def test_a_frame_one_octet_over_the_default_limit_is_rejected() -> None:
    """Given a SEND one octet over MAX_FRAME_BYTES
    When it is decoded
    Then it is refused as larger than 131072 bytes
    """
    with pytest.raises(StompError, match="larger than 131072 bytes"):
        decode_frames(_send_of_size(MAX_FRAME_BYTES + 1))


def test_a_frame_over_max_frame_bytes_is_rejected_even_with_content_length() -> None:
    """Given a SEND of 90 body octets framed by content-length
    When it is decoded with a 200-byte limit, and again with a 100-byte limit
    Then the first gives the body, and the second refuses it as larger than 100 bytes
    """
    data = "SEND\ndestination:/q\ncontent-length:90\n\n" + "x" * 90 + "\x00"
    assert decode_one(data, max_frame_bytes=200).body == b"x" * 90
    with pytest.raises(StompError, match="larger than 100 bytes"):
        decode_frames(data, max_frame_bytes=100)


def test_a_content_length_over_the_frame_limit_is_rejected_before_reading() -> None:
    """Given a SEND whose content-length is a 5000-digit number
    When it is decoded
    Then it is refused as over the frame limit, without reading that many octets
    """
    with pytest.raises(StompError, match="content-length is over the 131072-byte frame limit"):
        decode_frames("SEND\ndestination:/q\ncontent-length:" + "9" * 5000 + "\n\n\x00")


def test_each_frame_in_a_message_is_held_to_the_limit_separately() -> None:
    """Given one message of three SEND frames of 100 octets each
    When it is decoded with a 100-byte frame limit
    Then all three frames are accepted: the limit is per frame, not per message
    """
    data = _send_of_size(100) * 3
    assert len(decode_frames(data, max_frame_bytes=100)) == 3


def test_more_headers_than_the_limit_is_rejected() -> None:
    """Given a SEND with 100 headers and one with 101
    When each is decoded
    Then the first keeps its 100 headers and the second is refused as more than 100 headers
    """

    def frame(count: int) -> str:
        return "SEND\n" + "".join(f"h{i}:v\n" for i in range(count)) + "\n\x00"

    assert len(decode_one(frame(100)).headers) == 100
    with pytest.raises(StompError, match="more than 100 headers"):
        decode_frames(frame(101))


def test_repeated_headers_count_towards_the_header_limit() -> None:
    """Given a SEND of four headers, two names each repeated, and a limit of three
    When it is decoded
    Then it is refused as more than 3 headers
    """
    with pytest.raises(StompError, match="more than 3 headers"):
        decode_frames("SEND\na:1\na:2\ncontent-length:0\ncontent-length:0\n\n\x00", max_headers=3)


def test_a_header_line_over_the_limit_is_rejected() -> None:
    """Given a header line of exactly 8 KiB and one of 8 KiB plus one octet
    When each is decoded
    Then the first is read whole and the second is refused as longer than 8192 bytes
    """
    at_limit = "k:" + "v" * (8 * 1024 - 2)
    assert decode_one(f"SEND\n{at_limit}\n\n\x00").header("k") == "v" * (8 * 1024 - 2)
    with pytest.raises(StompError, match="header line is longer than 8192 bytes"):
        decode_frames(f"SEND\n{at_limit}v\n\n\x00")


# --- encoding what the server sends ---------------------------------------------------


def test_a_message_frame_encodes_with_lf_lines_content_length_and_nul() -> None:
    # Given the spec's MESSAGE example
    frame = Frame(
        "MESSAGE",
        (
            ("subscription", "0"),
            ("message-id", "007"),
            ("destination", "/queue/a"),
            ("content-type", "text/plain"),
        ),
        b"hello queue a",
    )
    # When it is encoded
    # Then content-length (octets) follows the headers, as stompjs writes it
    assert encode_frame(frame) == (
        "MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\n"
        "content-type:text/plain\ncontent-length:13\n\nhello queue a\x00"
    )


def test_an_empty_body_gets_no_content_length() -> None:
    """Given a CONNECTED frame with no body
    When it is encoded
    Then no content-length header is written
    """
    frame = Frame("CONNECTED", (("version", "1.2"), ("heart-beat", "0,10000")))
    assert frame.encode() == "CONNECTED\nversion:1.2\nheart-beat:0,10000\n\n\x00"


def test_content_length_is_computed_from_the_body_not_copied_from_headers() -> None:
    """Given a MESSAGE carrying a stale content-length of 99 and a 3-octet body
    When it is encoded
    Then the stale header is dropped and content-length 3 follows the other headers
    """
    frame = Frame("MESSAGE", (("content-length", "99"), ("destination", "/q")), "é\x00".encode())
    assert encode_frame(frame) == "MESSAGE\ndestination:/q\ncontent-length:3\n\né\x00\x00"


def test_header_names_and_values_are_escaped() -> None:
    """Given a MESSAGE header whose name and value hold a colon, backslash, CR and LF
    When it is encoded
    Then each is written as its STOMP escape
    """
    frame = Frame("MESSAGE", (("a:b", "c\\d\r\ne:f"),))
    assert encode_frame(frame) == "MESSAGE\na\\cb:c\\\\d\\r\\ne\\cf\n\n\x00"


def test_connected_header_values_are_written_literally() -> None:
    """Given a CONNECTED frame whose server header holds a colon and a backslash
    When it is encoded
    Then the value is written as is, since CONNECTED headers are not escaped
    """
    frame = Frame("CONNECTED", (("server", "mqless/0.1 a:b\\c"),))
    assert encode_frame(frame) == "CONNECTED\nserver:mqless/0.1 a:b\\c\n\n\x00"


def test_stomp_1_0_frames_are_written_without_escapes() -> None:
    """Given a MESSAGE whose message-id holds a colon and a backslash
    When it is encoded for STOMP 1.0
    Then it is written as is, with no escapes
    """
    frame = Frame("MESSAGE", (("message-id", "ID:1\\2"),))
    assert encode_frame(frame, version="1.0") == "MESSAGE\nmessage-id:ID:1\\2\n\n\x00"


@pytest.mark.parametrize(
    "frame",
    [
        Frame("CONNECTED", (("server", "a\nb"),)),
        Frame("CONNECTED", (("a:b", "c"),)),
        Frame("MESSAGE", (("k", "nul\x00inside"),)),
        Frame("MESSAGE", (("", "empty name"),)),
        Frame("MESSAGE", body=b"\xff\xfe not utf-8"),
        Frame("MESSAGE", (("k", "lone \ud800 surrogate"),)),
        Frame("HELLO"),
    ],
    ids=["newline-in-connected", "colon-in-connected-name", "nul", "empty-name", "binary"]
    + ["surrogate", "unknown-command"],
)
def test_a_frame_that_cannot_be_written_as_stomp_text_is_refused(frame: Frame) -> None:
    """Given a frame that STOMP text cannot carry (a newline or colon where CONNECTED cannot escape
    it, a NUL, an empty name, a binary body, a lone surrogate, an unknown command)
    When it is encoded
    Then encoding raises ValueError
    """
    with pytest.raises(ValueError):
        encode_frame(frame)


def test_an_encoded_error_frame_decodes_back_on_the_client_side() -> None:
    """Given an ERROR frame with a message header and a body
    When it is encoded and decoded again, as a client would
    Then the same frame comes back
    """
    error = Frame("ERROR", (("message", "malformed frame: missing destination"),), b"details")
    assert decode_frames(encode_frame(error)) == [error]


# --- round trips and fuzzing ----------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
_names = _text.filter(lambda name: name != "" and name != "content-length")
_bodies = st.text(max_size=200).map(lambda text: text.encode("utf-8"))
_escaped_commands = st.sampled_from(sorted(COMMANDS - {"CONNECT", "CONNECTED", "STOMP"}))
_frames = st.builds(
    Frame,
    command=_escaped_commands,
    headers=st.lists(st.tuples(_names, _text), max_size=8).map(tuple),
    body=_bodies,
)
# CONNECT and CONNECTED cannot escape, so their names and values avoid CR and LF, and
# names avoid ':' as well.
_literal = st.characters(codec="utf-8", exclude_characters="\x00\r\n")
_connect_frames = st.builds(
    Frame,
    command=st.sampled_from(["CONNECT", "CONNECTED", "STOMP"]),
    headers=st.lists(
        st.tuples(
            st.text(
                st.characters(codec="utf-8", exclude_characters="\x00\r\n:"),
                min_size=1,
                max_size=20,
            ).filter(lambda name: name != "content-length"),
            st.text(_literal, max_size=20),
        ),
        max_size=8,
    ).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(frame=st.one_of(_frames, _connect_frames), version=st.sampled_from(["1.1", "1.2"]))
def test_decoding_an_encoded_frame_gives_the_frame_back(frame: Frame, version: str) -> None:
    """Given any frame hypothesis builds, for STOMP 1.1 or 1.2
    When it is encoded and decoded with that version
    Then the same frame comes back
    """
    assert decode_frames(encode_frame(frame, version=version), version=version) == [frame]


@settings(max_examples=100, deadline=None)
@given(
    frames=st.lists(st.one_of(_frames, _connect_frames), max_size=5),
    gaps=st.lists(st.sampled_from(["", "\n", "\r\n", "\n\n"]), min_size=6, max_size=6),
)
def test_frames_and_heart_beats_in_one_message_decode_in_order(
    frames: list[Frame], gaps: list[str]
) -> None:
    """Given up to five encoded frames with heart-beat EOLs before, between and after them
    When the whole message is decoded
    Then the frames come back in order and the EOLs are dropped
    """
    message = gaps[0] + "".join(
        encode_frame(frame) + gap for frame, gap in zip(frames, gaps[1:], strict=False)
    )
    assert decode_frames(message) == frames


@settings(max_examples=100, deadline=None)
@given(
    command=st.sampled_from(sorted(CLIENT_COMMANDS - {"CONNECT"})),
    headers=st.lists(
        st.tuples(
            st.text(
                st.characters(codec="utf-8", exclude_characters="\x00\r\n:"),
                min_size=1,
                max_size=10,
            ),
            st.text(st.characters(codec="utf-8", exclude_characters="\x00\r\n"), max_size=10),
        ),
        max_size=5,
    ),
    body=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=50),
)
def test_stomp_1_0_frames_round_trip_without_escaping(
    command: str, headers: list[tuple[str, str]], body: str
) -> None:
    """Given any client frame (but CONNECT) whose headers hold no CR, LF or NUL
    When it is encoded and decoded as STOMP 1.0
    Then the same frame comes back
    """
    frame = Frame(command, tuple(h for h in headers if h[0] != "content-length"), body.encode())
    assert decode_frames(encode_frame(frame, version="1.0"), version="1.0") == [frame]


def _mutated(data: str, cut: int, insert: str, at: int) -> str:
    at %= len(data) + 1
    return (data[:at] + insert + data[at:])[: max(cut, 0) or None]


_garbage = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.builds(
        _mutated,
        st.sampled_from([STOMPJS_CONNECT, STOMPJS_SEND, STOMPJS_SUBSCRIBE + STOMPJS_SEND]),
        st.integers(-5, 120),
        st.text(st.sampled_from(":\\\x00\r\nc5-"), max_size=3),
        st.integers(0, 200),
    ),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_garbage, version=st.sampled_from(["1.0", "1.1", "1.2"]))
def test_any_input_either_decodes_or_raises_stomp_error(data: str | bytes, version: str) -> None:
    """Given any text or bytes hypothesis builds, and small frame and header limits
    When it is decoded as STOMP 1.0, 1.1 or 1.2
    Then it either gives frames of known commands or raises a StompError with a message, never
    another exception
    """
    try:
        frames = decode_frames(data, version=version, max_frame_bytes=256, max_header_bytes=64)
    except StompError as exc:
        assert exc.message
    else:
        assert all(frame.command in COMMANDS for frame in frames)


# --- validation of client frames ------------------------------------------------------

_SPEC_CLIENT_FRAMES = [
    "CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\x00",
    "STOMP\naccept-version:1.2\nhost:stomp.github.org\n\n\x00",
    "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\x00",
    "SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\x00",
    "UNSUBSCRIBE\nid:0\n\n\x00",
    "ACK\nid:12345\ntransaction:tx1\n\n\x00",
    "NACK\nid:12345\n\n\x00",
    "BEGIN\ntransaction:tx1\n\n\x00",
    "COMMIT\ntransaction:tx1\n\n\x00",
    "ABORT\ntransaction:tx1\n\n\x00",
    "DISCONNECT\nreceipt:77\n\n\x00",
    STOMPJS_SUBSCRIBE,
    STOMPJS_SEND,
]


@pytest.mark.parametrize("data", _SPEC_CLIENT_FRAMES)
def test_the_specs_client_frames_are_valid(data: str) -> None:
    """Given each client frame from the STOMP 1.2 spec's examples
    When it is decoded and validated
    Then validation passes
    """
    validate(decode_one(data))


def test_stompjs_connect_without_host_is_accepted() -> None:
    """Given the CONNECT stompjs sends, which has no host header
    When it is validated
    Then it passes: refusing it would break stompjs apps
    """
    # stompjs sends no host header unless the app adds one; refusing it would break apps
    validate(decode_one(STOMPJS_CONNECT))


def test_a_connect_without_accept_version_is_a_valid_stomp_1_0_connect() -> None:
    """Given a CONNECT with login and passcode but no accept-version
    When it is validated
    Then it passes, as a STOMP 1.0 CONNECT
    """
    validate(decode_one("CONNECT\nlogin:guest\npasscode:guest\n\n\x00"))


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ("SEND\n\n\x00", "'destination'"),
        ("SUBSCRIBE\ndestination:/q\n\n\x00", "'id'"),
        ("SUBSCRIBE\nid:0\n\n\x00", "'destination'"),
        ("UNSUBSCRIBE\n\n\x00", "'id'"),
        ("ACK\nmessage-id:1\nsubscription:0\n\n\x00", "'id'"),
        ("NACK\n\n\x00", "'id'"),
        ("BEGIN\n\n\x00", "'transaction'"),
        ("COMMIT\n\n\x00", "'transaction'"),
        ("ABORT\n\n\x00", "'transaction'"),
        ("SEND\ndestination:\n\n\x00", "'destination'"),
    ],
)
def test_a_client_frame_missing_a_required_header_is_invalid(data: str, missing: str) -> None:
    """Given a client frame missing a header its command needs (or with an empty destination)
    When it is validated
    Then it fails, naming the header it needs
    """
    with pytest.raises(StompError, match=f"needs a non-empty {missing} header"):
        validate(decode_one(data))


def test_stomp_1_1_acks_by_message_id_and_subscription() -> None:
    """Given a STOMP 1.1 ACK with message-id and subscription, and one with message-id alone
    When each is validated for 1.1
    Then the first passes and the second fails, naming 'subscription'
    """
    validate(decode_one("ACK\nmessage-id:1\nsubscription:0\n\n\x00"), version="1.1")
    with pytest.raises(StompError, match="'subscription'"):
        validate(decode_one("ACK\nmessage-id:1\n\n\x00"), version="1.1")


def test_stomp_1_0_unsubscribes_by_id_or_destination_and_has_no_nack() -> None:
    """Given STOMP 1.0 frames: UNSUBSCRIBE and SUBSCRIBE by destination, UNSUBSCRIBE with neither id
    nor destination, and a NACK
    When each is validated for 1.0
    Then the first two pass, the bare UNSUBSCRIBE needs 'id' or 'destination', and NACK is not part
    of 1.0
    """
    validate(decode_one("UNSUBSCRIBE\ndestination:/q\n\n\x00"), version="1.0")
    validate(decode_one("SUBSCRIBE\ndestination:/q\n\n\x00"), version="1.0")
    with pytest.raises(StompError, match="'id' or 'destination'"):
        validate(decode_one("UNSUBSCRIBE\n\n\x00"), version="1.0")
    with pytest.raises(StompError, match="NACK is not part of STOMP 1.0"):
        validate(decode_one("NACK\nmessage-id:1\n\n\x00"), version="1.0")


@pytest.mark.parametrize("command", sorted(CLIENT_COMMANDS - {"SEND"}))
def test_only_send_may_carry_a_body(command: str) -> None:
    """Given a client frame other than SEND, with every header it could need and a body
    When it is validated
    Then it fails, saying it must not have a body
    """
    frame = Frame(command, (("destination", "/q"), ("id", "0"), ("transaction", "t")), b"x")
    with pytest.raises(StompError, match="must not have a body"):
        validate(frame)


def test_a_server_frame_from_a_client_is_invalid() -> None:
    """Given a MESSAGE frame sent by a client
    When it is validated
    Then it fails: MESSAGE is not a frame a client may send
    """
    with pytest.raises(StompError, match="not a frame a client may send"):
        validate(decode_one("MESSAGE\ndestination:/q\n\n\x00"))


def test_an_unknown_subscribe_ack_mode_is_invalid() -> None:
    """Given a SUBSCRIBE with ack:Client (the mode names are case-sensitive)
    When it is validated
    Then it fails, listing auto, client and client-individual
    """
    with pytest.raises(StompError, match="ack must be auto, client or client-individual"):
        validate(decode_one("SUBSCRIBE\nid:0\ndestination:/q\nack:Client\n\n\x00"))


# --- negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_version", "expected"),
    [
        ("1.2,1.1,1.0", "1.2"),  # stompjs
        ("1.0,1.1,2.0", "1.1"),  # the spec's example
        ("1.1", "1.1"),
        (" 1.0 , 1.1 ", "1.1"),
        (None, "1.0"),  # a 1.0 client sends no accept-version
    ],
)
def test_the_highest_common_version_is_chosen(accept_version: str | None, expected: str) -> None:
    """Given a client's accept-version header (stompjs, the spec's example, padded, or none at all)
    When the version is negotiated
    Then it is the highest version both sides support, or 1.0 when the header is missing
    """
    assert negotiate_version(accept_version) == expected


def test_no_common_version_is_an_error_that_lists_ours() -> None:
    """Given a client that accepts only 2.0 and 2.1
    When the version is negotiated
    Then it fails, quoting the client's versions and listing the server's
    """
    with pytest.raises(
        StompError, match=r"client accepts '2\.0,2\.1'; server supports 1\.0,1\.1,1\.2"
    ):
        negotiate_version("2.0,2.1")


def test_a_1_0_client_is_refused_by_a_server_without_1_0() -> None:
    """Given a client with no accept-version (so STOMP 1.0) and a server supporting 1.1 and 1.2
    When the version is negotiated
    Then it fails with "no common STOMP version"
    """
    with pytest.raises(StompError, match="no common STOMP version"):
        negotiate_version(None, supported=("1.1", "1.2"))


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        ("10000,10000", (0, 0), (0, 0)),  # a server that neither sends nor checks
        ("10000,10000", (0, 20000), (0, 20000)),  # client pings every max(10000, 20000)
        ("10000,10000", (5000, 0), (10000, 0)),  # server pings every max(5000, 10000)
        ("0,0", (5000, 5000), (0, 0)),
        ("0,30000", (5000, 5000), (30000, 0)),
        (None, (5000, 5000), (0, 0)),  # missing means 0,0
        ("10000, 10000", (1, 1), (10000, 10000)),
    ],
)
def test_heart_beats_follow_the_specs_max_rule(
    client: str | None, server: tuple[int, int], expected: tuple[int, int]
) -> None:
    """Given a client heart-beat header (or none) and the server's own heart-beat wishes
    When heart-beats are negotiated
    Then each direction is the larger of the two wishes, and 0 when either side says 0
    """
    assert negotiate_heartbeat(client, server) == expected


@pytest.mark.parametrize(
    "client", ["10000", "a,b", "-1,0", "1,2,3", "", ",", "1.5,0", "99999999999,0", "٣,0"]
)
def test_a_malformed_heart_beat_header_is_an_error(client: str) -> None:
    """Given a heart-beat header that is not two non-negative integers in range
    When heart-beats are negotiated
    Then it fails with a StompError about heart-beat
    """
    with pytest.raises(StompError, match="heart-beat"):
        negotiate_heartbeat(client)
