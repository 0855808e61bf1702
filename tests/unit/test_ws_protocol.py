"""The WebSocket JSON protocol's frames and destinations, without AWS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.errors import InvalidRequest
from mqless.websocket import Publish, Subscribe, Unsubscribe, _frames, split_destination


@pytest.mark.parametrize(
    ("destination", "expected"),
    [("/topic/a.b", ("topic", "a.b")), ("/queue/jobs", ("queue", "jobs"))],
)
def test_destinations_name_a_topic_or_a_queue(destination: str, expected: tuple[str, str]) -> None:
    assert split_destination(destination) == expected


@pytest.mark.parametrize("destination", ["", "/topic/", "/exchange/x", "queue/x", "/queue"])
def test_other_destinations_are_refused(destination: str) -> None:
    with pytest.raises(InvalidRequest, match="must be /topic/NAME or /queue/NAME"):
        split_destination(destination)


def test_frames_are_told_apart_by_action() -> None:
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


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_frame_or_a_validation_error(text: str) -> None:
    from mqless.websocket import handle_message

    # Only frames that parse reach AWS; everything else is answered with an error frame.
    try:
        _frames.validate_json(text)
    except ValueError:
        reply = handle_message("conn", text)
        assert reply is not None and reply["type"] == "error"
