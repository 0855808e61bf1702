"""Every throttle a client can meet under `--realism` reaches it as a 429 with Retry-After
(HTTP, JSON problem) or a STOMP ERROR telling it to retry: never a 500, and nothing that was
accepted is lost.

The faults run in moto (`mqless_cli.local.realism`): DynamoDB or KMS answers each request
with its throttling error, botocore retries as many times as the broker's clients are
configured to, and only then does the broker see it. The SDK's waits between attempts are
recorded instead of slept (`no_backoff_sleep`); the number of attempts is the SDK's own.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

from mqless import wiring
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from mqless_cli.local.realism import parse_realism, realistic_aws
from tests.component.conftest import Aws, RecordingPusher
from tests.component.conftest_http import HttpApi, Reply
from tests.component.test_stomp_sessions import _sub
from tests.lambda_support import websocket_event
from tests.stomp_frames_sent import got, say, stomp_session

Q = "/queues/orders"


@pytest.fixture
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry waits, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr("botocore.endpoint.time", types.SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture
def api(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpApi]:
    assert aws.stack is not None
    for name, value in aws.stack.environment("HttpApiFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTH_MODE", "off")
    wiring.reset()
    yield HttpApi(aws.stack.http_routes())
    wiring.reset()


def _throttled(spec: str) -> Any:
    return realistic_aws(parse_realism(spec))


def _assert_retry_later(reply: Reply) -> None:
    assert reply.status == 429, reply.text
    assert reply.json["error"] == "throttled"
    assert "retry" in reply.json["message"]
    retry_after = {k.lower(): v for k, v in reply.headers.items()}["retry-after"]
    assert int(retry_after) >= 1


# ---- HTTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["dynamodb-throttle=1", "kms-throttle=1"])
def test_a_send_aws_throttles_is_a_429_and_nothing_is_half_stored(
    api: HttpApi, no_backoff_sleep: list[float], spec: str
) -> None:
    # Given a queue
    assert api.put(Q, {}).status == 201

    # When a message is sent while AWS throttles every request (after the SDK's retries)
    with _throttled(spec) as report:
        reply = api.post(f"{Q}/messages", {"body": "hello"})

    # Then the client is told to retry later, the SDK did retry, and the queue holds nothing
    _assert_retry_later(reply)
    assert no_backoff_sleep, "botocore retried before giving up"
    assert report.throttled_anyway + report.kms_throttled > 1
    assert api.post(f"{Q}/receive", {}).json["messages"] == []


@pytest.mark.parametrize("spec", ["dynamodb-throttle=1", "kms-throttle=1"])
@pytest.mark.parametrize("operation", ["receive", "ack", "nack", "visibility", "counts"])
def test_every_message_operation_aws_throttles_is_a_429_and_the_message_survives(
    api: HttpApi, no_backoff_sleep: list[float], spec: str, operation: str
) -> None:
    # Given a message sent, and (but for a receive) received
    assert api.post(f"{Q}/messages", {"body": "kept"}).status == 201
    receipt = ""
    if operation != "receive":
        (taken,) = api.post(f"{Q}/receive", {"visibility_timeout": 1}).json["messages"]
        receipt = taken["receipt"]
    calls = {
        "receive": lambda: api.post(f"{Q}/receive", {}),
        "ack": lambda: api.post(f"{Q}/ack", {"receipts": [receipt]}),
        "nack": lambda: api.post(f"{Q}/nack", {"receipts": [receipt]}),
        "visibility": lambda: api.post(
            f"{Q}/visibility", {"receipts": [receipt], "visibility_timeout": 0}
        ),
        "counts": lambda: api.get(Q),
    }

    # When the operation meets AWS throttling every request
    with _throttled(spec):
        reply = calls[operation]()

    # Then it is a 429 with Retry-After (KMS is not asked by what needs no body: 200), and
    # the message can still be received and acked once AWS has room again
    if reply.status == 200:
        assert spec == "kms-throttle=1" and operation != "receive"
        return
    _assert_retry_later(reply)
    if receipt:
        api.post(f"{Q}/visibility", {"receipts": [receipt], "visibility_timeout": 0})
    (again,) = api.post(f"{Q}/receive", {}).json["messages"]
    assert again["body"] == "kept"
    assert api.post(f"{Q}/ack", {"receipts": [again["receipt"]]}).status == 200


# ---- STOMP ---------------------------------------------------------------------------------


@pytest.fixture
def _wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)


@pytest.mark.usefixtures("_wired")
@pytest.mark.parametrize("spec", ["dynamodb-throttle=1", "kms-throttle=1"])
def test_a_stomp_send_aws_throttles_is_an_error_that_says_to_retry(
    pusher: RecordingPusher, no_backoff_sleep: list[float], spec: str
) -> None:
    # Given a connected STOMP client
    stomp_session("c1")

    # When it sends while AWS throttles every request
    with _throttled(spec):
        say("c1", "SEND", "hello", destination="/queue/orders", receipt="s1")

    # Then it gets an ERROR telling it to retry, not a RECEIPT
    (error,) = got(pusher, "c1", "ERROR")
    assert "retry" in (error.header("message") or "")
    assert error.header("receipt-id") == "s1"
    assert not [f for f in got(pusher, "c1", "RECEIPT") if f.header("receipt-id") == "s1"]


@pytest.mark.usefixtures("_wired")
def test_a_stomp_ack_aws_throttles_is_an_error_and_the_message_comes_back(
    pusher: RecordingPusher, sessions: Sessions, no_backoff_sleep: list[float]
) -> None:
    # Given a subscriber holding a message
    stomp_session("c1")
    _sub("c1", "/queue/orders", ack="client-individual")
    say("c1", "SEND", "kept", destination="/queue/orders")
    sessions.pump("orders")
    (message,) = got(pusher, "c1", "MESSAGE")

    # When its ACK meets DynamoDB throttling every request
    with _throttled("dynamodb-throttle=1"):
        say("c1", "ACK", id=message.header("ack") or "", receipt="a1")

    # Then it gets an ERROR saying to retry and its socket is closed; the message was not
    # acked: once the gateway's $disconnect has released c1's leases, a new subscriber gets it
    (error,) = got(pusher, "c1", "ERROR")
    assert "retry" in (error.header("message") or "")
    assert error.header("receipt-id") == "a1"
    assert "c1" in pusher.closed
    handle_event(websocket_event("DISCONNECT", "c1"))
    stomp_session("c2")
    _sub("c2", "/queue/orders", ack="client-individual")
    sessions.pump("orders")
    (again,) = got(pusher, "c2", "MESSAGE")
    assert again.body == b"kept"


@pytest.mark.parametrize("spec", ["kms-throttle=1", "dynamodb-throttle=1"])
def test_a_receive_aws_throttles_gives_its_leases_back_uncounted(
    api: HttpApi, no_backoff_sleep: list[float], spec: str
) -> None:
    # Given a message that may be received at most twice before it is dead-lettered
    assert api.put(Q, {"max_receive_count": 2}).status == 201
    assert api.post(f"{Q}/messages", {"body": "kept"}).status == 201

    # When three receives in a row are throttled by AWS
    for _ in range(3):
        with _throttled(spec):
            _assert_retry_later(api.post(f"{Q}/receive", {}))

    # Then the message is visible at once, as a first delivery: no throttled receive leased
    # it away for the visibility timeout, or counted towards the dead-letter queue
    (message,) = api.post(f"{Q}/receive", {}).json["messages"]
    assert message["body"] == "kept"
    assert message["receive_count"] == 1
