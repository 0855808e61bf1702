"""Request/reply over STOMP with temporary queues (`/temp-queue/NAME`), as ActiveMQ does.

A requester's `/temp-queue/x` is a real queue private to its connection; a SEND's
`reply-to: /temp-queue/x` reaches the responder as `/remote-temp-queue/<real name>`, which
it can SEND to; the queue goes when its connection does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqless import wiring
from mqless.domain import names
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.errors import QueueNotFound
from mqless.domain.queues.service import QueueService
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from mqless.transports.websocket.stomp_frames import Frame
from tests.component.conftest import RecordingPusher
from tests.lambda_support import websocket_event
from tests.stomp_frames_sent import got, say, stomp_session


@pytest.fixture(autouse=True)
def _wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)


def _request(sessions: Sessions, pusher: RecordingPusher) -> Frame:
    """The requester subscribes to its temp queue and sends a request; the responder
    receives it. Returns the request as the responder got it."""
    stomp_session("requester")
    stomp_session("responder")
    say("responder", "SUBSCRIBE", id="0", destination="/queue/requests")
    say("requester", "SUBSCRIBE", id="r", destination="/temp-queue/replies")
    say(
        "requester",
        "SEND",
        "what time is it?",
        destination="/queue/requests",
        reply_to="/temp-queue/replies",
        correlation_id="corr-7",
    )
    sessions.pump("requests")  # the stream record's doing when deployed
    [request] = got(pusher, "responder", "MESSAGE")
    return request


def test_a_reply_sent_to_reply_to_reaches_the_requester_with_its_correlation_id(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given a request sent with reply-to /temp-queue/replies, received by a responder
    request = _request(sessions, pusher)
    real = names.temp_queue_name("requester", "replies")
    assert request.header("reply-to") == f"/remote-temp-queue/{real}"
    assert request.header("correlation-id") == "corr-7"

    # When the responder sends its reply to the reply-to it got
    say(
        "responder",
        "SEND",
        "noon",
        destination=request.header("reply-to") or "",
        correlation_id=request.header("correlation-id") or "",
        receipt="sent",
    )
    sessions.pump(real)

    # Then the requester receives it on its temp queue, with the same correlation-id
    assert got(pusher, "responder", "ERROR") == []
    [reply] = got(pusher, "requester", "MESSAGE")
    assert reply.body == b"noon"
    assert reply.header("correlation-id") == "corr-7"
    assert reply.header("destination") == "/temp-queue/replies"


def test_a_temp_queue_is_deleted_when_its_connection_goes(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a requester that made a temp queue
    _request(sessions, pusher)
    real = names.temp_queue_name("requester", "replies")
    broker.get_queue(ANONYMOUS, real)  # it exists

    # When the requester's connection goes
    handle_event(websocket_event("DISCONNECT", "requester"))

    # Then the queue is gone, and a late reply to it is refused, not queued in a new one
    with pytest.raises(QueueNotFound):
        broker.get_queue(ANONYMOUS, real)
    say("responder", "SEND", "late", destination=f"/remote-temp-queue/{real}")
    [error] = got(pusher, "responder", "ERROR")
    assert "does not exist" in (error.header("message") or "")
    with pytest.raises(QueueNotFound):
        broker.get_queue(ANONYMOUS, real)


@pytest.mark.parametrize("how", ["/remote-temp-queue/{real}", "/queue/{real}"])
def test_another_connection_may_not_receive_from_a_temp_queue(
    pusher: RecordingPusher, sessions: Sessions, how: str
) -> None:
    # Given a requester's temp queue, named to the responder by reply-to
    _request(sessions, pusher)
    real = names.temp_queue_name("requester", "replies")

    # When the responder subscribes to it, by either name
    say("responder", "SUBSCRIBE", id="steal", destination=how.format(real=real))

    # Then it gets an ERROR saying the queue is another connection's
    [error] = got(pusher, "responder", "ERROR")
    assert "belongs to another connection" in (error.header("message") or "")


def test_the_same_temp_queue_name_on_two_connections_is_two_queues(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given two connections that each subscribe to /temp-queue/replies
    stomp_session("a")
    stomp_session("b")
    say("a", "SUBSCRIBE", id="0", destination="/temp-queue/replies")
    say("b", "SUBSCRIBE", id="0", destination="/temp-queue/replies")

    # When a sends to its own temp queue
    say("a", "SEND", "mine", destination="/temp-queue/replies")
    sessions.pump(names.temp_queue_name("a", "replies"))
    sessions.pump(names.temp_queue_name("b", "replies"))

    # Then only a receives it
    assert [f.body for f in got(pusher, "a", "MESSAGE")] == [b"mine"]
    assert got(pusher, "b", "MESSAGE") == []


def test_a_temp_queue_name_too_long_for_a_queue_name_is_an_error(
    pusher: RecordingPusher,
) -> None:
    # Given a connection; When it subscribes to a temp queue of 53 characters
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/temp-queue/" + "x" * 53)

    # Then it gets an ERROR that says how long a name may be
    [error] = got(pusher, "c1", "ERROR")
    assert "use 1-52 characters" in (error.header("message") or "")


def test_a_reply_to_that_is_no_temp_queue_travels_unchanged(
    pusher: RecordingPusher, sessions: Sessions, aws: Any
) -> None:
    # Given a responder; When a request names a plain queue as reply-to
    stomp_session("requester")
    stomp_session("responder")
    say("responder", "SUBSCRIBE", id="0", destination="/queue/requests")
    say("requester", "SEND", "q", destination="/queue/requests", reply_to="/queue/answers")
    sessions.pump("requests")

    # Then the responder gets it as sent
    [request] = got(pusher, "responder", "MESSAGE")
    assert request.header("reply-to") == "/queue/answers"


def _json(connection_id: str, **frame: Any) -> None:
    handle_event(websocket_event("MESSAGE", connection_id, json.dumps(frame)))


def test_json_clients_do_request_reply_through_a_temp_queue_too(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given two JSON clients: a responder on /queue/requests, a requester on its temp queue
    for connection_id in ("requester", "responder"):
        handle_event(websocket_event("CONNECT", connection_id))
    _json("responder", action="subscribe", destination="/queue/requests", id="0")
    _json("requester", action="subscribe", destination="/temp-queue/replies", id="r")
    _json(
        "requester",
        action="publish",
        destination="/queue/requests",
        body="ping",
        reply_to="/temp-queue/replies",
        correlation_id="corr-9",
    )
    sessions.pump("requests")
    [request] = [f for f in pusher.json_frames("responder") if f["type"] == "message"]

    # When the responder publishes its reply to the reply_to it got
    _json(
        "responder",
        action="publish",
        destination=request["reply_to"],
        body="pong",
        correlation_id=request["correlation_id"],
    )
    sessions.pump(names.temp_queue_name("requester", "replies"))

    # Then the requester receives it with the request's correlation id
    [reply] = [f for f in pusher.json_frames("requester") if f["type"] == "message"]
    assert request["reply_to"].startswith("/remote-temp-queue/temp-queue.")
    assert (reply["body"], reply["correlation_id"]) == ("pong", "corr-9")
    assert reply["destination"] == "/temp-queue/replies"
