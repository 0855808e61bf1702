"""Pushes rendered for JSON and STOMP clients and packed into 32 KB WebSocket messages."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mqless.domain.push.pushes import FRAME_BYTES, Connection, Push
from mqless.transports.websocket.render import MESSAGE_BYTES, render
from mqless.transports.websocket.stomp_frames import decode_frames

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
    """Given up to twelve pushes with bodies of up to 9,000 characters, to a JSON connection
    When they are rendered
    Then every post is within FRAME_BYTES (unless it holds one message), and the bodies and ack ids
    arrive in order, none lost
    """
    posts = render(Connection("c"), _pushes(bodies)).messages

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
    """Given up to twelve pushes with bodies of up to 9,000 characters, to a STOMP 1.2 connection
    When they are rendered
    Then each post is STOMP frames within FRAME_BYTES (unless it holds one), the bodies come in
    order, and every frame carries its attribute and subscription
    """
    posts = render(Connection("c", "stomp", "1.2"), _pushes(bodies)).messages

    frames = [f for post in posts for f in decode_frames(post)]
    for post in posts:
        assert len(post.encode()) <= FRAME_BYTES or len(decode_frames(post)) == 1
    assert [f.body.decode() for f in frames] == bodies
    assert all(f.header("k") == "v:1" and f.header("subscription") == "s" for f in frames)


def test_small_messages_share_one_post() -> None:
    """Given ten one-character pushes
    When they are rendered for a JSON and for a STOMP connection
    Then each connection gets them in one post
    """
    assert len(render(Connection("c"), _pushes(["a"] * 10)).messages) == 1
    assert len(render(Connection("c", "stomp"), _pushes(["a"] * 10)).messages) == 1


def test_stomp_1_1_messages_carry_no_ack_header_and_binary_bodies_travel_as_base64() -> None:
    """Given a binary push to a STOMP 1.1 connection
    When it is rendered
    Then its MESSAGE frame has no ack header and its body is base64, marked by mqless-body-encoding
    """
    push = Push(
        subscription="s",
        destination="/queue/q",
        message_id="m",
        body=b"\xff\x00",
        binary=True,
        ack="1:s",
    )
    [post] = render(Connection("c", "stomp", "1.1"), [push]).messages
    [frame] = decode_frames(post, version="1.1")
    assert frame.header("ack") is None
    assert (frame.body, frame.header("mqless-body-encoding")) == (b"/wA=", "base64")


def _push(message_id: str, body: str = "b", **attributes: str) -> Push:
    return Push(
        subscription="s",
        destination="/topic/t",
        message_id=message_id,
        body=body.encode(),
        attributes=attributes,
    )


def _ids(posts: list[str], version: str) -> list[str | None]:
    return [f.header("message-id") for p in posts for f in decode_frames(p, version=version)]


def test_a_push_stomp_1_0_cannot_carry_is_refused_alone_with_the_reason() -> None:
    # Given three pushes, the middle one with a line break in a header value
    pushes = [_push("m1"), _push("m2", note="one\ntwo"), _push("m3")]
    # When they are rendered for a STOMP 1.0 and a STOMP 1.2 connection
    old = render(Connection("c", "stomp", "1.0"), pushes)
    new = render(Connection("c", "stomp", "1.2"), pushes)
    # Then 1.0 gets its neighbours and the reason names the header and the version
    assert _ids(old.messages, "1.0") == ["m1", "m3"]
    assert list(old.refused) == [1]
    assert "'note'" in old.refused[1] and "STOMP 1.0" in old.refused[1]
    # and 1.2, which escapes line breaks, gets all three, the value intact
    assert new.refused == {}
    frames = [f for p in new.messages for f in decode_frames(p)]
    assert [f.header("note") for f in frames] == [None, "one\ntwo", None]


def test_a_header_holding_nul_is_refused_for_every_stomp_version_but_not_json() -> None:
    """Given a push whose attribute holds a NUL (stored before sends were checked) and a good push
    When they are rendered for STOMP 1.0, 1.1 and 1.2, and for JSON
    Then STOMP refuses the first, saying NUL, and sends the second; JSON sends the attribute as it
    is
    """
    # a message stored before sends were checked for control characters
    pushes = [_push("m1", x="a\x00b"), _push("m2")]
    for version in ("1.0", "1.1", "1.2"):
        rendered = render(Connection("c", "stomp", version), pushes)
        assert list(rendered.refused) == [0] and "NUL" in rendered.refused[0]
        assert _ids(rendered.messages, version) == ["m2"]
    as_json = render(Connection("c"), pushes)
    assert as_json.refused == {}
    assert json.loads(as_json.messages[0])["frames"][0]["attributes"] == {"x": "a\x00b"}


def test_a_push_over_the_websocket_message_limit_is_refused_alone() -> None:
    """Given a small push, one over the WebSocket message limit, and another small one
    When they are rendered for JSON and for STOMP
    Then only the big one is refused, naming the limit, every post is within it, and the small ones
    are sent
    """
    pushes = [_push("small"), _push("big", "x" * MESSAGE_BYTES), _push("after")]
    for connection in (Connection("c"), Connection("c", "stomp", "1.2")):
        rendered = render(connection, pushes)
        assert list(rendered.refused) == [1] and f"{MESSAGE_BYTES}-byte" in rendered.refused[1]
        assert all(len(post.encode()) <= MESSAGE_BYTES for post in rendered.messages)
    assert _ids(render(Connection("c", "stomp"), pushes).messages, "1.2") == ["small", "after"]


def test_attributes_named_like_the_brokers_headers_never_become_stomp_headers() -> None:
    # Given a message stored before such names were refused at the door
    push = _push("m1", **{"mqless-body-encoding": "base64", "message-id": "forged", "ok": "1"})
    # When it is rendered for STOMP
    [post] = render(Connection("c", "stomp", "1.2"), [push]).messages
    [frame] = decode_frames(post)
    # Then the broker's headers are the broker's alone
    assert frame.header("mqless-body-encoding") is None
    assert [v for k, v in frame.headers if k == "message-id"] == ["m1"]
    assert frame.header("ok") == "1"
