"""Pushes rendered for JSON and STOMP clients and packed into 32 KB WebSocket messages."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.outbound import FRAME_BYTES, Connection, Push, render
from mqless.stomp import decode_frames

_bodies = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=9000),
    min_size=1,
    max_size=12,
)


def _pushes(bodies: list[str]) -> list[Push]:
    return [
        Push(
            subscription="s",
            destination="/queue/q",
            message_id=f"m{i}",
            body=body.encode(),
            ack=f"{i + 1}:s",
            attributes={"k": "v:1"},
        )
        for i, body in enumerate(bodies)
    ]


@settings(max_examples=60, deadline=None)
@given(_bodies)
def test_json_posts_stay_within_a_frame_and_keep_every_message_in_order(
    bodies: list[str],
) -> None:
    posts = render(Connection("c"), _pushes(bodies))

    frames = []
    for post in posts:
        frame = json.loads(post)
        inner = frame["frames"] if frame["type"] == "batch" else [frame]
        assert len(post.encode()) <= FRAME_BYTES or len(inner) == 1
        frames.extend(inner)
    assert [f["body"] for f in frames] == bodies
    assert [f["ack"] for f in frames] == [f"{i + 1}:s" for i in range(len(bodies))]


@settings(max_examples=60, deadline=None)
@given(_bodies)
def test_stomp_posts_are_concatenated_frames_within_a_frame(bodies: list[str]) -> None:
    posts = render(Connection("c", "stomp", "1.2"), _pushes(bodies))

    frames = [f for post in posts for f in decode_frames(post)]
    for post in posts:
        assert len(post.encode()) <= FRAME_BYTES or len(decode_frames(post)) == 1
    assert [f.body.decode() for f in frames] == bodies
    assert all(f.header("k") == "v:1" and f.header("subscription") == "s" for f in frames)


def test_small_messages_share_one_post() -> None:
    assert len(render(Connection("c"), _pushes(["a"] * 10))) == 1
    assert len(render(Connection("c", "stomp"), _pushes(["a"] * 10))) == 1


def test_stomp_1_1_messages_carry_no_ack_header_and_binary_bodies_travel_as_base64() -> None:
    push = Push(
        subscription="s",
        destination="/queue/q",
        message_id="m",
        body=b"\xff\x00",
        binary=True,
        ack="1:s",
    )
    [post] = render(Connection("c", "stomp", "1.1"), [push])
    [frame] = decode_frames(post, version="1.1")
    assert frame.header("ack") is None
    assert (frame.body, frame.header("mqless-body-encoding")) == (b"/wA=", "base64")
