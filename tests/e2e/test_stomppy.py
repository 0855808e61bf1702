"""stomp.py 9 over WebSocket (`stomp.adapter.ws.WSStompConnection`) against `mqless dev`.

stomp.py offers no WebSocket subprotocol unless told to, so it is given the header
`Sec-WebSocket-Protocol: v12.stomp`, as a stomp.py user pointing it at API Gateway must do.
It opens with a STOMP frame (not CONNECT) carrying `host`, and ACKs/NACKs 1.2 messages
with `id` alone (no `subscription` header). It authenticates with the dev token in an
`Authorization: Bearer` header of the handshake, or as the STOMP frame's `passcode`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import stomp
from stomp.adapter.ws import WSStompConnection
from stomp.utils import Frame

from tests.e2e.conftest import SWEEP_EVERY_SECOND, DevServer

WAIT = 10.0
QUIET = 1.0


@pytest.fixture(scope="module")
def mqless_dev_flags() -> tuple[str, ...]:
    # scheduled messages fire, and revoked keys' connections close, at a sweep
    return SWEEP_EVERY_SECOND


# a sweep a second reads every queue there is: each test's queues go when it ends
pytestmark = pytest.mark.usefixtures("queues_deleted_after")


class Recorder(stomp.ConnectionListener):
    """Every frame stomp.py hands its listener, in arrival order."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.connected: Frame | None = None
        self.disconnected = threading.Event()
        self._changed = threading.Condition()

    def _add(self, frame: Frame) -> None:
        with self._changed:
            self.frames.append(frame)
            self._changed.notify_all()

    def on_connected(self, frame: Frame) -> None:
        self.connected = frame
        self._add(frame)

    def on_message(self, frame: Frame) -> None:
        self._add(frame)

    def on_receipt(self, frame: Frame) -> None:
        self._add(frame)

    def on_error(self, frame: Frame) -> None:
        self._add(frame)

    def on_disconnected(self) -> None:
        self.disconnected.set()
        with self._changed:
            self._changed.notify_all()

    def of(self, command: str) -> list[Frame]:
        with self._changed:
            return [f for f in self.frames if f.cmd == command]

    def wait_for(self, what: str, done: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Block until done() is truthy (returning it); fail with what arrived so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := done()):
                left = deadline - time.monotonic()
                if left <= 0 or self.disconnected.is_set():
                    seen = [(f.cmd, f.headers, f.body) for f in self.frames]
                    raise AssertionError(f"stomp.py never saw {what}; it saw {seen}")
                self._changed.wait(left)
        return result

    def receipt(self, receipt_id: str) -> Frame:
        """The RECEIPT for `receipt_id`, once it has arrived."""

        def arrived() -> Frame | None:
            return next(
                (
                    f
                    for f in self.frames
                    if f.cmd == "RECEIPT" and f.headers.get("receipt-id") == receipt_id
                ),
                None,
            )

        return self.wait_for(f"RECEIPT {receipt_id}", arrived)

    def messages(self, count: int) -> list[Frame]:
        """The first `count` MESSAGE frames, once that many have arrived."""

        def enough() -> list[Frame] | None:
            messages = [f for f in self.frames if f.cmd == "MESSAGE"]
            return messages[:count] if len(messages) >= count else None

        return list(self.wait_for(f"{count} MESSAGE frame(s)", enough))


def open_stomppy(
    server: DevServer, *, passcode: str | None = None
) -> tuple[WSStompConnection, Recorder]:
    """A stomp.py WebSocket client that has sent its STOMP frame. With no passcode the dev
    token goes in the handshake's Authorization header; with one, in the STOMP frame."""
    url = urlsplit(server.ws_url)
    header = {"Sec-WebSocket-Protocol": "v12.stomp"}
    if passcode is None:
        header.update(server.auth_headers())
    connection = WSStompConnection(
        [(url.hostname, url.port)], header=header, reconnect_attempts_max=1
    )
    recorder = Recorder()
    connection.set_listener("recorder", recorder)
    # wait=True would wait for CONNECTED with no time limit
    connection.connect(passcode=passcode, wait=False)
    return connection, recorder


@contextmanager
def stomppy(
    server: DevServer, *, passcode: str | None = None
) -> Iterator[tuple[WSStompConnection, Recorder]]:
    """A connected stomp.py WebSocket client; DISCONNECTed (or cut) afterwards."""
    connection, recorder = open_stomppy(server, passcode=passcode)
    try:
        recorder.wait_for("CONNECTED", lambda: recorder.connected)
        yield connection, recorder
    finally:
        if connection.is_connected():
            # the socket closes when the DISCONNECT's receipt comes back
            connection.disconnect()
        if not recorder.disconnected.wait(WAIT):
            connection.transport.disconnect_socket()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_stomppy_connects_with_a_stomp_frame_on_the_v12_subprotocol(
    mqless_dev: DevServer,
) -> None:
    # Given stomp.py's WebSocket connection asking for the v12.stomp subprotocol
    with stomppy(mqless_dev) as (connection, recorder):
        # When it connects (with a STOMP frame)
        handshake = connection.transport.socket.getheaders()
        connected = recorder.connected
    # Then the server agreed to the subprotocol and to STOMP 1.2
    assert handshake.get("sec-websocket-protocol") == "v12.stomp"
    assert connected is not None
    assert connected.headers["version"] == "1.2"
    assert re.fullmatch(r"0,\d+", connected.headers["heart-beat"])
    assert recorder.of("ERROR") == []


def test_stomppy_sends_receives_and_acks_on_a_queue(mqless_dev: DevServer) -> None:
    queue = unique("stomppy-ack")
    with stomppy(mqless_dev) as (connection, recorder):
        # Given a client-individual subscription
        connection.subscribe(f"/queue/{queue}", id="py", ack="client-individual", receipt="s")
        recorder.receipt("s")
        # When a message is sent with a content type and a custom header, then ACKed
        connection.send(
            f"/queue/{queue}",
            "hello from stomp.py",
            content_type="text/plain",
            headers={"colour": "red"},
            receipt="sent",
        )
        recorder.receipt("sent")
        [message] = recorder.messages(1)
        connection.ack(message.headers["ack"], receipt="acked")
        recorder.receipt("acked")
        time.sleep(QUIET)
        later = recorder.of("MESSAGE")[1:]
        errors = recorder.of("ERROR")
    # Then it arrived once with its headers, and the ACK removed it from the queue
    assert message.body == "hello from stomp.py"
    assert message.headers["destination"] == f"/queue/{queue}"
    assert message.headers["subscription"] == "py"
    assert message.headers["message-id"]
    assert message.headers["redelivered"] == "false"
    assert message.headers["content-type"] == "text/plain"
    assert message.headers["colour"] == "red"
    assert later == [] and errors == []
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        left = http.post(f"/queues/{queue}/receive", json={"wait_seconds": 1}).json()
    assert left["messages"] == []


def test_stomppy_nack_gets_the_message_redelivered(mqless_dev: DevServer) -> None:
    queue = unique("stomppy-nack")
    # (this client brings its token in the STOMP frame, not in the handshake)
    with stomppy(mqless_dev, passcode=mqless_dev.token) as (connection, recorder):
        # Given a message delivered to a client-individual subscriber
        connection.subscribe(f"/queue/{queue}", id="py", ack="client-individual")
        connection.send(f"/queue/{queue}", "again please")
        [first] = recorder.messages(1)
        # When it is NACKed (stomp.py 1.2 sends only `id`)
        connection.nack(first.headers["ack"])
        # Then it comes back, marked redelivered, and can be ACKed
        second = recorder.messages(2)[1]
        connection.ack(second.headers["ack"], receipt="acked")
        recorder.receipt("acked")
    assert second.body == "again please"
    assert second.headers["message-id"] == first.headers["message-id"]
    assert (first.headers["redelivered"], second.headers["redelivered"]) == ("false", "true")


def test_stomppy_wildcard_topic_subscription(mqless_dev: DevServer) -> None:
    prefix = unique("stomppy-news")
    with stomppy(mqless_dev) as (connection, recorder):
        # Given subscriptions to P.> and to P.other
        connection.subscribe(f"/topic/{prefix}.>", id="all")
        connection.subscribe(f"/topic/{prefix}.other", id="other", receipt="subscribed")
        recorder.receipt("subscribed")
        # When a message is published to P.eu.fr
        connection.send(f"/topic/{prefix}.eu.fr", "bonjour", headers={"lang": "fr"})
        [message] = recorder.messages(1)
        time.sleep(QUIET)
        messages = recorder.of("MESSAGE")
    # Then only the wildcard subscription gets it, once, under its real destination
    assert len(messages) == 1
    assert message.body == "bonjour"
    assert message.headers["subscription"] == "all"
    assert message.headers["destination"] == f"/topic/{prefix}.eu.fr"
    assert message.headers["lang"] == "fr"


def test_stomppy_with_a_wrong_passcode_gets_an_error_and_is_disconnected(
    mqless_dev: DevServer,
) -> None:
    # Given a stomp.py client that brings no token in its handshake
    # When its STOMP frame carries a passcode that is no valid key
    connection, recorder = open_stomppy(mqless_dev, passcode="mqk_not-a-key")
    try:
        error = recorder.wait_for("ERROR", lambda: recorder.of("ERROR"))[0]
        disconnected = recorder.disconnected.wait(WAIT)
    finally:
        if connection.is_connected():
            connection.transport.disconnect_socket()
    # Then it gets an ERROR instead of CONNECTED, and the socket is closed
    assert recorder.connected is None
    assert error.headers["message"]
    assert disconnected


def test_stomppy_selector_subscription_gets_only_matching_messages(mqless_dev: DevServer) -> None:
    queue = unique("stomppy-selector")
    with stomppy(mqless_dev) as (connection, recorder):
        # Given a subscriber whose selector takes European orders over 100
        connection.subscribe(
            f"/queue/{queue}",
            id="eu",
            ack="client-individual",
            headers={"selector": "region = 'eu' AND convert_string_expressions:1 = 1"},
            receipt="bad",
        )
        # (a misplaced prefix is a bad selector: the broker refuses it, naming the position)
        error = recorder.wait_for("ERROR", lambda: recorder.of("ERROR"))[0]
    assert error.headers["message"].startswith("invalid selector at position 45:")
    with stomppy(mqless_dev) as (connection, recorder):
        connection.subscribe(
            f"/queue/{queue}",
            id="eu",
            ack="client-individual",
            headers={"selector": "convert_string_expressions:region = 'eu' AND total > 100"},
            receipt="s",
        )
        recorder.receipt("s")
        # When orders of several regions and totals are sent
        for body, region, total in [("a", "us", "500"), ("b", "eu", "50"), ("c", "eu", "150")]:
            connection.send(f"/queue/{queue}", body, headers={"region": region, "total": total})
        [message] = recorder.messages(1)
        connection.ack(message.headers["ack"], receipt="acked")
        recorder.receipt("acked")
        time.sleep(QUIET)
        messages = recorder.of("MESSAGE")
    # Then only the one the selector describes arrived, and the others wait in the queue
    assert [m.body for m in messages] == ["c"]
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        left = http.post(
            f"/queues/{queue}/receive", json={"wait_seconds": 1, "max_messages": 10}
        ).json()
    assert sorted(m["body"] for m in left["messages"]) == ["a", "b"]


def test_stomppy_advisory_topic_tells_of_queue_consumers_and_http_counts_them(
    mqless_dev: DevServer,
) -> None:
    queue = unique("stomppy-presence")
    with stomppy(mqless_dev) as (watcher, seen):
        # Given a client watching the queue's consumer advisories
        watcher.subscribe(
            f"/topic/ActiveMQ.Advisory.Consumer.Queue.{queue}", id="adv", receipt="watching"
        )
        seen.receipt("watching")
        # When another client subscribes to the queue, is counted, and leaves
        with stomppy(mqless_dev) as (consumer, recorder):
            consumer.subscribe(f"/queue/{queue}", id="c", receipt="s")
            recorder.receipt("s")
            with httpx.Client(
                base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
            ) as http:
                presence = http.get(f"/queues/{queue}/presence").json()
        advisories = seen.messages(2)
    # Then HTTP counted it while it was there, and the watcher was told of both changes
    assert presence == {"queue": queue, "consumers": 1}
    told = [(m.headers["advisoryType"], m.headers["consumerCount"]) for m in advisories]
    assert told == [("ConsumerInfo", "1"), ("RemoveInfo", "0")]


def test_stomppy_request_reply_through_a_temp_queue_that_goes_with_its_connection(
    mqless_dev: DevServer,
) -> None:
    requests = unique("stomppy-requests")
    with stomppy(mqless_dev) as (responder, served):
        responder.subscribe(f"/queue/{requests}", id="work", receipt="serving")
        served.receipt("serving")
        with stomppy(mqless_dev) as (requester, asked):
            # Given a requester subscribed to its temp queue, sending a request through it
            requester.subscribe("/temp-queue/replies", id="replies", receipt="listening")
            asked.receipt("listening")
            requester.send(
                f"/queue/{requests}",
                "what time is it?",
                headers={"reply-to": "/temp-queue/replies", "correlation-id": "corr-42"},
            )
            # When a responder on another connection replies to the reply-to it got
            [request] = served.messages(1)
            reply_to = request.headers["reply-to"]
            responder.send(
                reply_to,
                "noon",
                headers={"correlation-id": request.headers["correlation-id"]},
                receipt="replied",
            )
            served.receipt("replied")
            [reply] = asked.messages(1)
            # and a third connection tries to subscribe to the temp queue
            with stomppy(mqless_dev) as (thief, refused):
                thief.subscribe(reply_to, id="steal")
                [error] = refused.wait_for("ERROR", lambda: refused.of("ERROR"))
            real = reply_to.removeprefix("/remote-temp-queue/")
            with httpx.Client(
                base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
            ) as http:
                while_connected = http.get(f"/queues/{real}").status_code
        # (the requester has disconnected here)
        with httpx.Client(
            base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
        ) as http:
            after = http.get(f"/queues/{real}")
    # Then the reply reached the requester with its correlation-id, the temp queue was
    # another connection's to read from, and it went when the requester did
    assert reply_to.startswith("/remote-temp-queue/temp-queue.")
    assert request.headers["correlation-id"] == "corr-42"
    assert reply.body == "noon"
    assert reply.headers["correlation-id"] == "corr-42"
    assert reply.headers["destination"] == "/temp-queue/replies"
    assert "belongs to another connection" in error.headers["message"]
    assert while_connected == 200
    assert after.status_code == 404
    assert after.json()["error"]
    assert served.of("ERROR") == [] and asked.of("ERROR") == []


def test_stomppy_amq_scheduled_delay_period_and_repeat_deliver_on_time(
    mqless_dev: DevServer,
) -> None:
    # `mqless dev --schedule-rate 1` sweeps every second, so a scheduled message is fired
    # when due within 2 s (the sweep and a second more) and is stored when due later than
    # 12 s from its send (docs/scheduled-delivery.md): the repeat below goes through both.
    queue = unique("stomppy-scheduled")
    with stomppy(mqless_dev) as (connection, recorder):
        # Given a subscriber
        connection.subscribe(f"/queue/{queue}", id="py", ack="auto", receipt="s")
        recorder.receipt("s")
        # When a message is sent with ActiveMQ's headers: after 2 s, then once more 14 s later
        sent_at = time.monotonic()
        connection.send(
            f"/queue/{queue}",
            "scheduled by stomp.py",
            headers={
                "AMQ_SCHEDULED_DELAY": "2000",
                "AMQ_SCHEDULED_PERIOD": "14000",
                "AMQ_SCHEDULED_REPEAT": "1",
            },
            receipt="sent",
        )
        recorder.receipt("sent")
        # Then an admin sees the second delivery pending, due 16 s after the send
        with httpx.Client(
            base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
        ) as http:
            [pending] = http.get(f"/queues/{queue}/scheduled").json()["scheduled"]
        assert (pending["body"], pending["repeats_left"]) == ("scheduled by stomp.py", 0)
        # And the message arrives twice: at 2 s and at 16 s, not before
        [first] = recorder.messages(1)
        first_after = time.monotonic() - sent_at
        second = recorder.wait_for("a second MESSAGE", lambda: recorder.of("MESSAGE")[1:], 30)[0]
        second_after = time.monotonic() - sent_at
        errors = recorder.of("ERROR")
    assert errors == []
    assert first.body == second.body == "scheduled by stomp.py"
    assert 1.5 <= first_after < 8, first_after
    assert 15.5 <= second_after < 24, second_after
    # each delivery carries the schedule's id, as ActiveMQ's do
    assert first.headers["scheduledJobId"] == second.headers["scheduledJobId"]
    assert second.headers["scheduledJobId"] == pending["schedule_id"]


def test_stomppy_priority_header_orders_delivery_in_a_queue_with_max_priority(
    mqless_dev: DevServer,
) -> None:
    queue = unique("stomppy-priority")
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # Given a queue that tells every JMS priority apart
        assert http.put(f"/queues/{queue}", json={"max_priority": 9}).status_code == 201
        with stomppy(mqless_dev) as (connection, recorder):
            # When stomp.py sends messages of priorities 1, 8 and 4, in that order
            for body, priority in [("routine", 1), ("urgent", 8), ("normal", 4)]:
                connection.send(
                    f"/queue/{queue}", body, headers={"priority": str(priority)}, receipt=body
                )
                recorder.receipt(body)
            # (all three indexed before anyone subscribes)
            deadline = time.monotonic() + WAIT
            while http.get(f"/queues/{queue}").json()["counts"]["visible"] < 3:
                assert time.monotonic() < deadline, "the messages were never indexed"
                time.sleep(0.05)
            # and a client-individual subscriber with room for all three joins
            connection.subscribe(f"/queue/{queue}", id="prio", ack="client-individual")
            messages = recorder.messages(3)
            errors = recorder.of("ERROR")
    # Then the highest priority arrives first, each MESSAGE with its priority header
    assert [(m.body, m.headers["priority"]) for m in messages] == [
        ("urgent", "8"),
        ("normal", "4"),
        ("routine", "1"),
    ]
    assert errors == []


def test_stomppy_send_with_a_priority_outside_0_to_9_gets_an_error(
    mqless_dev: DevServer,
) -> None:
    # Given a stomp.py connection
    queue = unique("stomppy-bad-priority")
    with stomppy(mqless_dev) as (connection, recorder):
        # When stomp.py sends with priority 10 (JMS priorities are 0-9)
        connection.send(f"/queue/{queue}", "too urgent", headers={"priority": "10"}, receipt="s")
        error = recorder.wait_for("ERROR", lambda: recorder.of("ERROR"))[0]
        disconnected = recorder.disconnected.wait(WAIT)
    # Then it gets an ERROR naming the header, for its receipt, and the session ends
    assert "priority" in error.headers["message"]
    assert error.headers.get("receipt-id") == "s"
    assert disconnected


def test_stomppy_connection_whose_key_is_revoked_gets_an_error_and_is_closed_by_the_sweep(
    mqless_dev: DevServer,
) -> None:
    queue = unique("stomppy-revoked")
    principal = unique("revokee")
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # Given a principal that may consume a queue, and a key of its own
        granted = http.put(
            f"/access/principals/{principal}",
            json={"grants": [{"pattern": queue, "actions": ["send", "receive", "create"]}]},
        )
        assert granted.status_code == 201, granted.text
        issued = http.post(f"/access/principals/{principal}/keys", json={"ttl_seconds": 3600})
        assert issued.status_code == 201, issued.text
        key = issued.json()
        # and stomp.py connected with that key, subscribed to the queue
        with stomppy(mqless_dev, passcode=key["token"]) as (connection, recorder):
            connection.subscribe(f"/queue/{queue}", id="s", ack="client-individual", receipt="s")
            recorder.wait_for("RECEIPT s", lambda: bool(recorder.of("RECEIPT")))
            # When an admin revokes the key (`mqless dev --schedule-rate 1`: a sweep a second)
            assert http.delete(f"/access/keys/{key['key_id']}").status_code == 204
            # Then the client gets an ERROR saying why, and the server closes the connection
            assert recorder.disconnected.wait(30), "the sweep never closed the connection"
            errors = recorder.of("ERROR")
    assert len(errors) == 1
    assert "revoked" in errors[0].headers["message"]
