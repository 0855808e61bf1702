"""Bad input, proven, where it lands on AWS (moto): WebSocket messages and stream records.

The pure decoders are fuzzed in tests/unit/test_decoder_fuzzing.py. Here the handlers that
use them are: `websocket.handle_event` on a connected JSON and a connected STOMP
connection (every answer must be a frame the client can read: a JSON frame, or STOMP
frames that `decode_frames` parses), and `dispatch.handle_batch` with stream events no
DynamoDB table would write (a malformed record of ours is a batch item failure; anything
else is skipped; the handler itself never raises). A `..._regression` test holds the
minimal reproduction of a bug these properties found, and guards its fix.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.errors import InvalidRequest
from mqless.domain.messages import NewMessage
from mqless.domain.queues.service import QueueService
from mqless.transports.dispatch import handle_batch
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.json_protocol import parse_frame
from mqless.transports.websocket.sessions import Sessions
from mqless.transports.websocket.stomp_frames import (
    SERVER_COMMANDS,
    VERSIONS,
    Frame,
    StompError,
    decode_frames,
)
from mqless.transports.websocket.stomp_negotiation import SUBPROTOCOLS
from mqless.transports.websocket.stomp_session import looks_like_connect
from tests.component.conftest import RecordingPusher
from tests.lambda_support import FakeLambdaContext, websocket_event

# Each example opens fresh connections, so examples share the module's tables but never a
# session. Few examples per property: each one is a round of moto calls. No shrinking:
# shrinking through moto takes minutes, and each bug found has a minimal reproduction in
# a `..._regression` test; a failure here shows the example as generated.
ON_AWS = settings(
    max_examples=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# API Gateway's @connections refuses a post over 128 KB: a longer answer never arrives.
MAX_POST_BYTES = 128 * 1024
_VERSION_OF_SUBPROTOCOL = {version: name for name, version in SUBPROTOCOLS.items()}
_ids = itertools.count()


@pytest.fixture
def wired(sessions: Sessions, broker: QueueService, monkeypatch: pytest.MonkeyPatch) -> Sessions:
    """The handlers' runtime pointed at the test's moto-backed sessions and topics, with
    messages waiting in the queue the fuzzed frames subscribe to most."""
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)
    monkeypatch.setattr(wiring, "topic_service", lambda: sessions._topics)
    for number in range(3):
        broker.send(ANONYMOUS, "jobs", NewMessage(body=f"m{number}".encode()))
    return sessions


def _new_connection(offer: str | None = None) -> str:
    connection_id = f"fuzz-{next(_ids)}"
    headers = {} if offer is None else {"Sec-WebSocket-Protocol": offer}
    assert handle_event(websocket_event("CONNECT", connection_id, **headers))["statusCode"] == 200
    return connection_id


@contextmanager
def _connection(offer: str | None = None) -> Iterator[str]:
    """A new connection, disconnected at the end: its leases go back to the queue."""
    connection_id = _new_connection(offer)
    try:
        yield connection_id
    finally:
        handle_event(websocket_event("DISCONNECT", connection_id))


def _say(connection_id: str, body: str) -> None:
    # the handler's contract with API Gateway: it returns, and returns 200
    assert handle_event(websocket_event("MESSAGE", connection_id, body)) == {"statusCode": 200}


def _posts(pusher: RecordingPusher, connection_id: str) -> list[str]:
    posts = pusher.take(connection_id)
    assert all(len(post.encode()) <= MAX_POST_BYTES for post in posts)
    return posts


def _stomp_answers(posts: list[str], version: str) -> list[Frame]:
    """Every frame the server posted, as the client's STOMP parser reads them."""
    frames = [frame for post in posts for frame in decode_frames(post, version=version)]
    for frame in frames:
        assert frame.command in SERVER_COMMANDS
        if frame.command == "ERROR":
            assert (frame.header("message") or "").strip()
    return frames


# --- WebSocket: a JSON connection ---------------------------------------------------------

_ack_ids = st.one_of(
    st.sampled_from(
        ["0.0.0123abcd:s1", "t:s1", "9999999999.999.ffffffff:x", "².0.0123abcd:s1", ":", "1."]
    ),
    st.text(max_size=30),
)
_destinations = st.one_of(
    st.sampled_from(
        ["/queue/jobs", "/topic/t.a", "/topic/t.*", "/topic/>", "/queue/", "queue/jobs"]
    ),
    st.sampled_from(["/queue/a b", "/topic/a..b", "/queue/" + "x" * 300, "/queue/jobs.fifo"]),
    st.text(max_size=20),
)
_json_fields = {
    "destination": _destinations,
    "id": st.one_of(_ack_ids, st.sampled_from(["s1", "s2", ""]), st.text(max_size=200)),
    "ack": st.sampled_from(["auto", "client", "client-individual", "client-individual", "x"]),
    "prefetch": st.one_of(st.integers(-1, 1001), st.floats(), st.text(max_size=3)),
    "durable": st.one_of(st.none(), st.sampled_from(["d1", "bad name", ""]), st.text(max_size=9)),
    "receipt": st.one_of(st.none(), st.text(max_size=130)),
    "body": st.one_of(st.text(max_size=50), st.sampled_from(["aGk=", "!!"]), st.integers()),
    "binary": st.one_of(st.booleans(), st.text(max_size=3)),
    "attributes": st.one_of(
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers() | st.none(), max_size=2),
    ),
    "delay_seconds": st.one_of(st.integers(-1, 1000), st.floats()),
    "group_id": st.one_of(st.text(max_size=5), st.integers()),
}
_JSON_ACTIONS = {  # required fields, optional fields
    "subscribe": (["destination", "id"], ["ack", "prefetch", "durable", "receipt"]),
    "unsubscribe": (["id"], ["receipt"]),
    "publish": (["destination", "body"], ["binary", "attributes", "group_id", "receipt"]),
    "ack": (["id"], ["receipt"]),
    "nack": (["id"], ["delay_seconds", "receipt"]),
}


@st.composite
def _json_frame_texts(draw: st.DrawFn) -> str:
    """A frame of one action with fuzzed fields; sometimes one missing or one unknown."""
    action = draw(st.sampled_from(sorted(_JSON_ACTIONS)))
    required, optional = _JSON_ACTIONS[action]
    names = required + draw(st.lists(st.sampled_from(optional), max_size=3, unique=True))
    frame: dict[str, Any] = {"action": action}
    frame.update({name: draw(_json_fields[name]) for name in names})
    change = draw(st.sampled_from(["none", "none", "none", "drop", "unknown"]))
    if change == "drop":
        del frame[draw(st.sampled_from(sorted(frame)))]
    elif change == "unknown":
        frame[draw(st.sampled_from(["prefetch", "x", "Action"]))] = 1
    return json.dumps(frame, allow_nan=True)


_json_frames = _json_frame_texts()
_json_bodies = st.one_of(
    _json_frames,
    _json_frames,
    st.text(max_size=100),
    st.sampled_from(["", "{", "[]", "null", '{"action":NaN}', "CONNECT\n\n\x00", "STOMP\r\n\r\n"]),
)
_JSON_TYPES = {"error", "receipt", "subscribed", "unsubscribed", "message", "batch"}


def _json_answers(posts: list[str]) -> list[dict[str, Any]]:
    """Every JSON frame the server posted, `batch` frames opened up."""
    frames: list[dict[str, Any]] = []
    for post in posts:
        frame = json.loads(post)
        frames.extend(frame["frames"] if frame["type"] == "batch" else [frame])
    for frame in frames:
        assert frame["type"] in _JSON_TYPES
        if frame["type"] == "error":
            assert frame["error"] and frame["message"].strip()
    return frames


def _mutated_ack(ack: str, how: str) -> str:
    return {"same": ack, "cut": ack[:-1], "more": ack + "0", "swap": ack[::-1]}[how]


def _one_message_queue(broker: QueueService, connection: str) -> str:
    """A queue of this example's own, holding one message (the fuzzed frames may have
    taken the shared queue's)."""
    queue = f"own-{connection}"
    broker.send(ANONYMOUS, queue, NewMessage(body=b"yours"))
    return queue


_alterations = st.sampled_from(["same", "same", "cut", "more", "swap"])


@ON_AWS
@given(body=_json_bodies, settle=st.sampled_from(["ack", "nack"]), how=_alterations)
@example(body='{"action": "ack", "id": "\u00b2.0.0123abcd:s1"}', settle="ack", how="same")
def test_any_message_on_a_json_connection_is_answered_with_readable_frames(
    wired: Sessions,
    broker: QueueService,
    pusher: RecordingPusher,
    body: str,
    settle: str,
    how: str,
) -> None:
    # Given a JSON connection (no subprotocol offered)
    with _connection() as connection:
        # When it sends any message, then settles a message it was pushed by an ack id as given or
        # altered
        # Then every answer is a JSON frame it can read (_json_connection_answers checks each step)
        _json_connection_answers(broker, pusher, connection, body, settle, how)


def _json_connection_answers(
    broker: QueueService,
    pusher: RecordingPusher,
    connection: str,
    body: str,
    settle: str,
    how: str,
) -> None:
    # When it sends any message at all
    _say(connection, body)
    posts = _posts(pusher, connection)
    # Then (unless it opened a STOMP session) every answer is a JSON frame, and a message
    # that is no frame gets exactly one error frame saying what is wrong
    if looks_like_connect(body):
        _stomp_answers(posts, "1.2")
        return
    frames = _json_answers(posts)
    try:
        parse_frame(body)
    except InvalidRequest:
        assert [frame["type"] for frame in frames] == ["error"]
        assert frames[0]["error"] == "invalid_request"
    # And when it then settles a message it was pushed, by an ack id as given or altered
    queue = _one_message_queue(broker, connection)
    subscribe = {"action": "subscribe", "destination": f"/queue/{queue}", "id": "f"}
    _say(connection, json.dumps({**subscribe, "ack": "client-individual", "prefetch": 1}))
    pushed = [f for f in _json_answers(_posts(pusher, connection)) if f["type"] == "message"]
    if pushed:
        ack = _mutated_ack(pushed[0]["ack"], how)
        _say(connection, json.dumps({"action": settle, "id": ack, "receipt": "r"}))
        # Then the answer is a receipt or an error frame, and more messages, nothing else
        answers = _json_answers(_posts(pusher, connection))
        assert {f["type"] for f in answers} <= {"receipt", "error", "message"}
        assert [f.get("receipt") for f in answers if f["type"] != "message"] == ["r"]


def test_a_json_ack_with_a_superscript_digit_is_answered_with_an_error_regression(
    wired: Sessions, pusher: RecordingPusher
) -> None:
    # Reproduction: on a JSON connection, {"action": "ack", "id": "².0.0123abcd:s1"} made
    # handle_event raise ValueError (parse_ack_id: "²".isdigit(), then int("²")).
    # Given a JSON connection
    connection = _new_connection()
    # When it acks id "².0.0123abcd:s1", asking for a receipt
    _say(connection, json.dumps({"action": "ack", "id": "².0.0123abcd:s1", "receipt": "r"}))
    # Then it gets an invalid_request error frame for that receipt
    [frame] = [json.loads(post) for post in _posts(pusher, connection)]
    assert (frame["type"], frame["error"], frame["receipt"]) == ("error", "invalid_request", "r")


def test_a_json_error_for_a_huge_unknown_field_fits_in_one_post_regression(
    wired: Sessions, pusher: RecordingPusher
) -> None:
    # Reproduction: {"action": "ack", "id": "1", "é" * 40000: 1} is an 80 KB message that
    # API Gateway delivers; the error frame quoted the field name, and json.dumps writes
    # each "é" as "\\u00e9": 240 KB, which @connections refuses, so the client heard nothing
    # (and ApiGatewayPusher.post raised the ClientError out of the handler).
    # Given a JSON connection, and an 80 KB ack with an unknown field named by 40,000 "é" (within
    # API Gateway's limit)
    connection = _new_connection()
    body = json.dumps({"action": "ack", "id": "1", "é" * 40_000: 1}, ensure_ascii=False)
    assert len(body.encode()) <= MAX_POST_BYTES
    # When the ack is sent
    _say(connection, body)
    # Then one invalid_request error frame comes back, small enough for one @connections post
    [post] = pusher.take(connection)
    assert len(post.encode()) <= MAX_POST_BYTES
    assert json.loads(post)["error"] == "invalid_request"


# --- WebSocket: a STOMP connection --------------------------------------------------------

_header_values: dict[str, st.SearchStrategy[str]] = {
    "destination": _destinations,
    "id": st.one_of(_ack_ids, st.sampled_from(["0", "s1", "i" * 2000])),
    "ack": st.sampled_from(["auto", "client", "client-individual", "never"]),
    "receipt": st.one_of(
        st.sampled_from(["r1", "r:2", "r\\n3", "r\\c4", "r\r5", "a\rb", ""]),
        st.text(max_size=12),
    ),
    "transaction": st.sampled_from(["tx1", "tx2", "", "t\\x"]),
    "AMQ_SCHEDULED_DELAY": st.sampled_from(["0", "1500", "900000", "900001", "²", "-1", "x"]),
    "expires": st.sampled_from(["0", "1", "99999999999999", "9" * 16, "²", "x"]),
    "prefetch-count": st.sampled_from(["1", "1000", "1001", "0", "²", "x"]),
    "activemq.prefetchSize": st.sampled_from(["5", "²"]),
    "activemq.subscriptionName": st.sampled_from(["d1", "bad name", ""]),
    "selector": st.just("a = 1"),
    "message-id": st.text(max_size=10),
    "subscription": st.sampled_from(["0", "s1", "nope"]),
    "content-type": st.text(max_size=10),
    "content-length": st.sampled_from(["0", "3", "x", "99"]),
    "JMSXGroupID": st.text(max_size=5),
    "accept-version": st.sampled_from(["1.2", "1.0,1.1", "2.0"]),
    "heart-beat": st.sampled_from(["0,0", "1,²", "x"]),
}
_header_lines = st.one_of(
    _header_values["receipt"].map(lambda value: f"receipt:{value}"),
    st.sampled_from(sorted(_header_values)).flatmap(
        lambda name: _header_values[name].map(lambda value: f"{name}:{value}")
    ),
    st.text(max_size=15),  # a line without ':', an escape, anything
)
_stomp_frames = st.builds(
    lambda command, lines, body, end: "\n".join([command, *lines]) + "\n\n" + body + end,
    st.one_of(
        st.sampled_from(
            ["SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT"]
        ),
        st.sampled_from(["DISCONNECT", "CONNECT", "STOMP", "MESSAGE", "send", ""]),
    ),
    st.lists(_header_lines, max_size=5),
    st.one_of(st.just(""), st.text(max_size=20)),
    st.sampled_from(["\x00", "\x00", "\x00\n", ""]),
)
_stomp_bodies = st.one_of(
    st.lists(_stomp_frames, min_size=1, max_size=3).map("".join),
    st.text(max_size=60),
    st.sampled_from(["", "\n", "\r\n\r\n", "{}"]),
)


@ON_AWS
@given(
    version=st.sampled_from(VERSIONS),
    body=_stomp_bodies,
    nack=st.booleans(),
    how=_alterations,
)
# bugs found earlier, kept as examples: a CR in a 1.0 receipt, a superscript digit
@example(version="1.0", body="BEGIN\ntransaction:t\nreceipt:a\rb\n\n\x00", nack=False, how="same")
@example(version="1.2", body="ACK\nid:\u00b2.0.0123abcd:0\n\n\x00", nack=False, how="same")
def test_any_message_on_a_stomp_connection_is_answered_with_readable_stomp_frames(
    wired: Sessions,
    broker: QueueService,
    pusher: RecordingPusher,
    version: str,
    body: str,
    nack: bool,
    how: str,
) -> None:
    # Given a connected STOMP session of any version
    with _connection(_VERSION_OF_SUBPROTOCOL[version]) as connection:
        # When it sends any message, then acks or nacks a message it was pushed, as given or altered
        # Then every answer is STOMP frames its parser reads (_stomp_connection_answers checks each
        # step)
        _stomp_connection_answers(broker, pusher, connection, version, body, nack, how)


def _stomp_connection_answers(
    broker: QueueService,
    pusher: RecordingPusher,
    connection: str,
    version: str,
    body: str,
    nack: bool,
    how: str,
) -> None:
    _say(connection, f"CONNECT\naccept-version:{version}\nhost:/\n\n\x00")
    [connected] = _stomp_answers(_posts(pusher, connection), version)
    assert connected.command == "CONNECTED"
    # When it sends any message at all
    _say(connection, body)
    answers = _stomp_answers(_posts(pusher, connection), version)
    # Then every answer is a STOMP frame its parser reads; a message that does not parse
    # gets one ERROR and the connection is closed; a RECEIPT echoes a receipt asked for
    try:
        decode_frames(body, version=version)
    except StompError:
        assert [frame.command for frame in answers] == ["ERROR"]
        assert connection in pusher.closed
    if connection not in pusher.closed:
        # the one error that keeps the session: a settle for a message no longer held
        kept = (b"The frame was ACK.", b"The frame was NACK.", b"The frame was COMMIT.")
        assert all(f.body.endswith(kept) for f in answers if f.command == "ERROR")
    assert all(f.header("receipt-id") is not None for f in answers if f.command == "RECEIPT")
    if connection in pusher.closed:
        return
    # And when it then acks or nacks a message it was pushed, as given or altered
    queue = _one_message_queue(broker, connection)
    _say(connection, f"SUBSCRIBE\nid:f\ndestination:/queue/{queue}\nack:client-individual\n\n\x00")
    pushed = [
        f for f in _stomp_answers(_posts(pusher, connection), version) if f.command == "MESSAGE"
    ]
    if not pushed or connection in pusher.closed:
        return
    command = "NACK" if nack and version != "1.0" else "ACK"
    message = pushed[0]
    if version == "1.2":
        headers = f"id:{_mutated_ack(message.header('ack') or '', how)}"
    else:
        message_id = _mutated_ack(message.header("message-id") or "", how)
        headers = f"message-id:{message_id}\nsubscription:{message.header('subscription')}"
    _say(connection, f"{command}\n{headers}\nreceipt:r\n\n\x00")
    # Then the answer is a RECEIPT or an ERROR for that receipt, and more messages
    answers = _stomp_answers(_posts(pusher, connection), version)
    settled = [f for f in answers if f.command != "MESSAGE"]
    assert [(f.command in ("RECEIPT", "ERROR"), f.header("receipt-id")) for f in settled] == [
        (True, "r")
    ]


@pytest.mark.parametrize("command", ["SEND", "SUBSCRIBE", "BEGIN"])
def test_a_receipt_with_a_cr_on_a_stomp_1_0_session_is_answered_regression(
    wired: Sessions, pusher: RecordingPusher, command: str
) -> None:
    # Reproduction: on a v10.stomp session, after CONNECT, the message
    # "BEGIN\ntransaction:t\nreceipt:a\rb\n\n\x00" makes handle_event raise ValueError:
    # STOMP 1.0 does not unescape, so the value keeps its CR, and encode_frame cannot
    # write it back unescaped in the RECEIPT's (or ERROR's) receipt-id.
    # Given a STOMP 1.0 session
    connection = _new_connection("v10.stomp")
    _say(connection, "CONNECT\naccept-version:1.0\n\n\x00")
    pusher.take(connection)
    # When it sends SEND, SUBSCRIBE or BEGIN with a receipt holding a CR
    headers = {"SEND": "destination:/queue/jobs", "SUBSCRIBE": "destination:/queue/jobs"}
    _say(connection, f"{command}\n{headers.get(command, 'transaction:t')}\nreceipt:a\rb\n\n\x00")
    answers = _stomp_answers(pusher.take(connection), "1.0")
    # Then it is answered, not raised on:
    # one answer to the frame (a SUBSCRIBE is also pushed the waiting messages)
    assert [f.command for f in answers if f.command != "MESSAGE"] in (["RECEIPT"], ["ERROR"])


@pytest.mark.parametrize(
    "frame",
    [
        "SEND\ndestination:/queue/jobs\nAMQ_SCHEDULED_DELAY:²\n\nx\x00",
        "SEND\ndestination:/queue/jobs\nexpires:²\n\nx\x00",
        "SUBSCRIBE\ndestination:/queue/jobs\nid:0\nprefetch-count:²\n\n\x00",
        "ACK\nid:².0.0123abcd:0\n\n\x00",
    ],
    ids=["AMQ_SCHEDULED_DELAY", "expires", "prefetch-count", "ack-id"],
)
def test_a_header_with_a_superscript_digit_is_answered_with_an_error_regression(
    wired: Sessions, pusher: RecordingPusher, frame: str
) -> None:
    # Reproduction: on a v12.stomp session, after CONNECT, the message
    # "SEND\ndestination:/queue/jobs\nexpires:²\n\n\x00" made handle_event raise
    # ValueError ("²".isdigit() is True, int("²") fails), and so did the other headers here.
    # Given a STOMP 1.2 session
    connection = _new_connection("v12.stomp")
    _say(connection, "CONNECT\naccept-version:1.2\n\n\x00")
    pusher.take(connection)
    # When a number in a header (a delay, expires, prefetch-count, an ack id) holds "²"
    _say(connection, frame)
    # Then it gets one ERROR, and the session ends
    [error] = _stomp_answers(pusher.take(connection), "1.2")
    assert error.command == "ERROR"
    assert connection in pusher.closed


# --- the dispatch function: DynamoDB stream records ---------------------------------------

_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024"
_sequence = itertools.count(1000)


def _s(text: str) -> dict[str, str]:
    return {"S": text}


_pks = st.one_of(
    st.sampled_from(["T#t.a", "T#", "Q#jobs", "Q#", "QC#jobs", "CONN#c1", "X", ""]).map(_s),
    st.text(max_size=12).map(_s),
    st.sampled_from([{"N": "1"}, {"B": "bm90IGEga2V5"}, {"B": "%%%"}, {"S": 1}, {}, {"Z": "x"}]),
)
_wire_values = st.one_of(
    st.text(max_size=8).map(_s),
    st.sampled_from([{"N": "12"}, {"N": "x"}, {"N": "1e999"}, {"BOOL": True}, {"NULL": True}]),
    st.sampled_from([{"B": "aGk="}, {"B": "not base64!"}, {"B": 3}, {"M": {}}, {"L": [{}]}]),
    st.sampled_from([{"SS": []}, {"SS": ["a", "a"]}, {"M": {"k": {"S": "v"}}}, "plain", 3, None]),
)
_image_keys = st.sampled_from(
    ["pk", "sk", "id", "origin", "sent_at", "ttl", "attrs", "body", "dk", "bin", "other"]
)
_images: st.SearchStrategy[Any] = st.one_of(
    st.dictionaries(_image_keys, _wire_values, max_size=8),
    st.sampled_from([{}, "garbage", [], None, 7]),
)
_records: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "eventID": st.uuids().map(str),
        "eventName": st.one_of(
            st.sampled_from(["INSERT", "INSERT", "MODIFY", "REMOVE"]),
            st.sampled_from(["insert", "", "UPSERT", None, 1]),
        ),
        "eventSource": st.just("aws:dynamodb"),
        "eventSourceARN": st.just(_ARN),
        "dynamodb": st.fixed_dictionaries(
            {
                "Keys": st.one_of(
                    st.fixed_dictionaries({"pk": _pks}, optional={"sk": _wire_values}),
                    st.sampled_from([{}, "garbage", [], None]),
                ),
                "SequenceNumber": st.just("set by the test"),
                "StreamViewType": st.just("NEW_AND_OLD_IMAGES"),
            },
            optional={"NewImage": _images, "OldImage": _images, "SizeBytes": st.integers()},
        ),
    }
)


@ON_AWS
@given(records=st.lists(_records, min_size=1, max_size=4))
def test_a_stream_batch_of_any_records_reports_failures_instead_of_raising(
    wired: Sessions, records: list[dict[str, Any]]
) -> None:
    # Given a Lambda stream batch in the shape Lambda sends, whose records hold anything:
    # other event names, keys of other types or partitions, garbage new images (and one
    # record it skips, so that not every record fails: that case is the regression below)
    records = [*records, _skipped()]
    for number, record in enumerate(records, start=next(_sequence) * 10):
        record["dynamodb"]["SequenceNumber"] = str(number)
    event = json.loads(json.dumps({"Records": records}))
    # When the dispatch function handles it
    response = handle_batch(event, FakeLambdaContext())
    # Then it returns (never raises), and a failure names a record by its sequence number
    assert set(response) == {"batchItemFailures"}
    numbers = {record["dynamodb"]["SequenceNumber"]: record for record in records}
    for failure in response["batchItemFailures"]:
        assert failure["itemIdentifier"] in numbers
        # only the INSERT of one of our items can fail; the rest is skipped
        assert numbers[failure["itemIdentifier"]].get("eventName") == "INSERT"


def _skipped() -> dict[str, Any]:
    """A record the dispatch function has nothing to do for: a message leaving a queue."""
    return _record({"pk": _s("Q#jobs"), "sk": _s("M#1")}, {}, name="REMOVE")


def _record(keys: Any, image: Any, *, name: Any = "INSERT") -> dict[str, Any]:
    return {
        "eventID": "1",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": _ARN,
        "dynamodb": {
            "Keys": keys,
            "NewImage": image,
            "SequenceNumber": str(next(_sequence)),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_a_batch_whose_only_record_is_a_malformed_topic_message_reports_it_regression(
    wired: Sessions,
) -> None:
    # Reproduction: handle_batch({"Records": [<INSERT whose only record fails>]}, ctx)
    # raised BatchProcessingError ("All records failed processing"): Powertools raises
    # when every record failed, instead of reporting the record as a batch item failure.
    # Given a batch whose one record cannot be read (its key has an AttributeValue type
    # DynamoDB does not have: the record handler itself fails, whatever the settings)
    record = _record({"pk": {"Q": "T#t.a"}, "sk": _s("M#1")}, {"pk": _s("T#t.a")})
    # When the dispatch function is handed it
    response = handle_batch({"Records": [record]}, FakeLambdaContext())
    # Then the record is reported for a retry, and nothing is raised
    assert response == {
        "batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]
    }


_broken_records = st.one_of(
    st.sampled_from([{}, [], "garbage", None, 3]),
    st.fixed_dictionaries(
        {},
        optional={
            "eventID": st.one_of(st.text(max_size=3), st.none()),
            "eventName": st.sampled_from(["INSERT", "REMOVE", None, 7]),
            "dynamodb": st.one_of(
                st.sampled_from([None, "x", [], 7]),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "Keys": st.one_of(
                            st.fixed_dictionaries({"pk": _pks}), st.sampled_from([None, "x"])
                        ),
                        "NewImage": _images,
                        "SequenceNumber": st.one_of(st.text(max_size=4), st.integers(), st.none()),
                    },
                ),
            ),
        },
    ),
)


@ON_AWS
@given(records=st.lists(_broken_records, min_size=1, max_size=3))
@example(records=[{"eventID": "1", "eventName": "INSERT", "dynamodb": "x"}])
def test_a_stream_batch_of_structurally_broken_records_never_raises(
    wired: Sessions, records: list[Any]
) -> None:
    # Given records Lambda would never send: missing sections, wrong types everywhere
    # (and one good record it skips, so that not every record fails)
    event = json.loads(json.dumps({"Records": [*records, _skipped()]}))
    # When the dispatch function handles them, Then it answers instead of raising
    response = handle_batch(event, FakeLambdaContext())
    assert isinstance(response.get("batchItemFailures"), list)


def test_a_record_whose_dynamodb_section_is_not_an_object_is_reported_regression(
    wired: Sessions,
) -> None:
    # Reproduction: handle_batch({"Records": [{"eventName": "INSERT", "dynamodb": "x"},
    # <a good REMOVE record>]}, ctx) raises AttributeError ('str' object has no attribute
    # 'get'): handle_record fails on the record, then Powertools' failure collector
    # reads record.dynamodb.sequence_number from the same string.
    # Given an INSERT record whose dynamodb section is a string, beside a good record it skips
    # When the dispatch function handles them
    response = handle_batch(
        {"Records": [{"eventID": "1", "eventName": "INSERT", "dynamodb": "x"}, _skipped()]},
        FakeLambdaContext(),
    )
    # Then it answers, and no record failed:
    # a record without keys is none of ours: skipped, like any record not ours
    assert response == {"batchItemFailures": []}
