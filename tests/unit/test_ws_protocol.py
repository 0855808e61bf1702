"""The WebSocket JSON protocol's frames and destinations, without AWS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.domain.errors import InvalidRequest
from mqless.transports.websocket.json_protocol import (
    Ack,
    Nack,
    Publish,
    Subscribe,
    Unsubscribe,
    _frames,
    parse_frame,
)
from mqless.transports.websocket.sessions import split_destination


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/topic/a.b", ("topic", "a.b")),
        ("/queue/jobs", ("queue", "jobs")),
        ("/remote-temp-queue/temp-queue.0123.r", ("queue", "temp-queue.0123.r")),
    ],
)
def test_destinations_name_a_topic_or_a_queue(destination: str, expected: tuple[str, str]) -> None:
    """Given a /topic/ or /queue/ destination, or a /remote-temp-queue/ one naming a temp queue
    When it is split
    Then it names a topic or a queue, and the name after the prefix
    """
    assert split_destination(destination) == expected


@pytest.mark.parametrize(
    "destination", ["", "/topic/", "/exchange/x", "queue/x", "/queue", "/remote-temp-queue/jobs"]
)
def test_other_destinations_are_refused(destination: str) -> None:
    """Given a destination that is empty, has no name, has another prefix or none, or a /remote-
    temp-queue/ that is not a temp queue
    When it is split
    Then it is refused, saying it must be /queue/NAME or /topic/NAME
    """
    with pytest.raises(InvalidRequest, match="must be /queue/NAME or /topic/NAME"):
        split_destination(destination)


def test_frames_are_told_apart_by_action() -> None:
    """Given JSON frames whose action is subscribe, unsubscribe and publish
    When they are validated
    Then each is its own frame type, and the publish gives a message with its body
    """
    assert isinstance(
        _frames.validate_json('{"action":"subscribe","destination":"/topic/x","id":"1"}'),
        Subscribe,
    )
    assert isinstance(_frames.validate_json('{"action":"unsubscribe","id":"1"}'), Unsubscribe)
    publish = _frames.validate_json(
        '{"action":"publish","destination":"/queue/q","body":"hi","receipt":"r"}'
    )
    assert isinstance(publish, Publish)
    assert publish.to_message().body == b"hi"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_any_text_is_a_frame_or_a_validation_error(text: str) -> None:
    """Given any text, or any bytes read as Latin-1
    When it is parsed as a frame
    Then it is a frame of a known action, or an InvalidRequest with a message, never a crash
    """
    # What does not parse is an InvalidRequest (answered with an error frame), never a crash.
    try:
        frame = parse_frame(text)
    except InvalidRequest as exc:
        assert exc.message
    else:
        assert frame.action in {"subscribe", "unsubscribe", "publish", "ack", "nack", "ping"}


def test_bad_frames_say_what_is_wrong() -> None:
    """Given frames with a prefetch of 0, an unknown ack mode, an ack without id, an unknown action,
    and text that is not JSON
    When each is parsed
    Then each is refused with an InvalidRequest naming what is wrong (the last one just refused)
    """
    with pytest.raises(InvalidRequest, match="prefetch"):
        parse_frame('{"action":"subscribe","destination":"/queue/q","id":"1","prefetch":0}')
    with pytest.raises(InvalidRequest, match="ack"):
        parse_frame('{"action":"subscribe","destination":"/queue/q","id":"1","ack":"never"}')
    with pytest.raises(InvalidRequest, match="id"):
        parse_frame('{"action":"ack"}')
    with pytest.raises(InvalidRequest, match="action"):
        parse_frame('{"action":"fly"}')
    with pytest.raises(InvalidRequest, match="Invalid JSON"):
        parse_frame("not json")


def test_ack_and_nack_frames_carry_the_ack_id() -> None:
    """Given an ack frame with an id and receipt, and a nack with an id and a delay
    When they are parsed
    Then they are Ack and Nack frames carrying those values
    """
    ack = parse_frame('{"action":"ack","id":"3:s1","receipt":"r"}')
    nack = parse_frame('{"action":"nack","id":"4:s1","delay_seconds":5}')
    assert isinstance(ack, Ack) and (ack.id, ack.receipt) == ("3:s1", "r")
    assert isinstance(nack, Nack) and (nack.id, nack.delay_seconds) == ("4:s1", 5)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        '{"action":"ping","receipt":' + "[" * 5_000 + "}",
        '{"action":"publish","destination":"/queue/q","body":"x","delay_seconds":'
        + "9" * 5_000
        + "}",
        '{"action":"subscribe","destination":"/queue/q","id":"s","prefetch":' + "1" * 5_000 + "}",
    ],
    ids=["nested", "nested in a field", "huge integer", "huge prefetch"],
)
def test_json_past_what_a_parser_holds_is_a_validation_error(text: str) -> None:
    """Given JSON nested 100,000 deep, nested inside a field, or with a 5,000-digit integer
    When it is parsed as a frame
    Then it is refused as "Invalid JSON", not a 500
    """
    # (issue 11, finding 8: the HTTP API answered 500 to these; this protocol's parser,
    # pydantic's, already refused them, and must go on doing so)
    with pytest.raises(InvalidRequest, match="Invalid JSON"):
        parse_frame(text)
