"""@stomp/stompjs 7 on Node (with `ws`) against `mqless dev`: STOMP over WebSocket as apps
written for ActiveMQ speak it.

Each scenario is a Node script in tests/e2e/stompjs/ that drives real stompjs `Client`s and
prints one JSON object of what they saw; these tests run it against a live `mqless dev` and
assert on that. The npm packages pinned in tests/package-lock.json are installed here with
`npm ci` when tests/node_modules is missing or older than the lock file. Node.js 20 with npm
must be on PATH: without them these tests fail (they are never skipped).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, DevServer

TESTS = ROOT / "tests"
SCRIPTS = Path(__file__).resolve().parent / "stompjs"
LOCK = TESTS / "package-lock.json"
# npm writes this after every install; it is newer than LOCK once `npm ci` has run
INSTALLED = TESTS / "node_modules" / ".package-lock.json"
NPM_TIMEOUT = 300
# per-wait and whole-scenario limits inside the scripts; generous for moto in process
OPTIONS = {"waitMs": 10_000, "quietMs": 1_000, "timeoutMs": 90_000}
SCRIPT_TIMEOUT = 120
SUBPROTOCOLS = {"1.2": "v12.stomp", "1.1": "v11.stomp", "1.0": "v10.stomp"}


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` to run the scenarios with, once tests/node_modules matches the lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the @stomp/stompjs end-to-end tests need Node.js 20 with npm on PATH "
            f"(found node={node}, npm={npm}); install them, e.g. `apt-get install nodejs npm`",
            pytrace=False,
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        pytest.fail(f"the stompjs tests need Node.js >= 20, found {version.stdout.strip()}")
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < LOCK.stat().st_mtime:
        try:
            installed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=TESTS,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {TESTS} took over {NPM_TIMEOUT} s", pytrace=False)
        if installed.returncode != 0:
            pytest.fail(
                f"`npm ci` in {TESTS} failed ({installed.returncode}):\n"
                f"{installed.stdout}\n{installed.stderr}",
                pytrace=False,
            )
    return node


def unique(prefix: str) -> str:
    """A destination name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_scenario(
    node: str, server: DevServer, script: str, *, auth: str = "query", **options: Any
) -> dict[str, Any]:
    """Run tests/e2e/stompjs/<script> against `server`; what its clients saw, as JSON.

    The clients authenticate with the dev token in the URL (`auth="query"`, `?access_token=`)
    or in every CONNECT frame (`auth="passcode"`, the URL carrying none).
    """
    url = server.authed_ws_url if auth == "query" else server.ws_url
    if auth == "passcode" and server.token is not None:
        options = {"passcode": server.token, **options}
    command = [node, str(SCRIPTS / script), url, json.dumps({**OPTIONS, **options})]
    env = {**os.environ, "STOMP_DEBUG": "1"}  # the wire log goes to stderr, shown on failure
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise AssertionError(
            f"{script} did not finish within {SCRIPT_TIMEOUT} s\nstompjs log (end):\n"
            f"{stderr[-6000:]}\n`mqless dev` (end):\n{server.output()[-4000:]}"
        ) from None
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] | None = None
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
    if done.returncode != 0 or result is None or "error" in result:
        problem = result.get("error") if result else "it printed no JSON"
        raise AssertionError(
            f"{script} failed (exit {done.returncode}): {problem}\n"
            f"what the clients saw:\n{json.dumps(result, indent=1)[:8000]}\n"
            f"stompjs log (end):\n{done.stderr[-6000:]}\n"
            f"`mqless dev` (end):\n{server.output()[-4000:]}"
        )
    return result


def receive_over_http(server: DevServer, queue: str) -> list[dict[str, Any]]:
    """What an HTTP consumer finds in `queue` now (after a short long poll)."""
    with httpx.Client(base_url=server.http_url, headers=server.auth_headers(), timeout=30) as http:
        response = http.post(f"/queues/{queue}/receive", json={"wait_seconds": 1})
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def bodies(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["body"] for frame in frames]


# --- a queue consumer in client-individual mode: ACK, NACK and redelivery -----------------


@dataclass
class QueueRun:
    queue: str
    version: str
    result: dict[str, Any]

    @property
    def consumer(self) -> dict[str, Any]:
        return dict(self.result["connections"]["consumer"])


@pytest.fixture(
    scope="module",
    params=[(["1.2", "1.1", "1.0"], "1.2", "query"), (["1.1"], "1.1", "passcode")],
    ids=["offers-1.2-1.1-1.0-token-in-url", "offers-1.1-only-token-as-passcode"],
)
def queue_run(request: pytest.FixtureRequest, node: str, mqless_dev: DevServer) -> QueueRun:
    """One run of queue_ack.mjs: publish, receive, ACK; publish, NACK, redelivery, ACK."""
    offered, expected, auth = request.param
    queue = unique("stompjs-ack")
    result = run_scenario(
        node, mqless_dev, "queue_ack.mjs", auth=auth, queue=queue, versions=offered
    )
    return QueueRun(queue, expected, result)


def test_connect_negotiates_the_highest_offered_version_and_subprotocol(
    queue_run: QueueRun,
) -> None:
    # Given a stompjs client offering subprotocols and accept-version for some versions
    # When it connects
    connected = queue_run.consumer["connected"]["headers"]
    # Then the handshake picked the matching subprotocol and CONNECTED names the version
    assert queue_run.consumer["subprotocol"] == SUBPROTOCOLS[queue_run.version]
    assert connected["version"] == queue_run.version
    assert connected.get("server")
    # the server sends no heart-beats (sx = 0); stompjs then checks none
    assert re.fullmatch(r"0,\d+", connected["heart-beat"]), connected


def test_a_queue_message_reaches_the_subscriber_with_its_headers(queue_run: QueueRun) -> None:
    # Given a client-individual subscription to a queue
    # When the client publishes a message with a content type and custom headers
    first = queue_run.result["first"]
    headers = first["headers"]
    # Then it arrives once, with the STOMP headers and the sender's own headers intact
    assert first["body"] == "first"
    assert headers["destination"] == f"/queue/{queue_run.queue}"
    assert headers["message-id"]
    assert headers["subscription"] == queue_run.result["subscriptionId"]
    assert headers["redelivered"] == "false"
    assert headers["content-type"] == "text/plain"
    for name, value in queue_run.result["customHeadersSent"].items():
        assert headers.get(name) == value, f"custom header {name!r}: {headers}"
    if queue_run.version == "1.2":
        # stompjs 1.2 ACKs with `id:` <this header>; without it message.ack() does nothing
        assert headers["ack"]
    assert "receipt" not in headers and "transaction" not in headers


def test_a_nacked_message_is_redelivered_at_once_marked_redelivered(
    queue_run: QueueRun,
) -> None:
    # Given a second message, delivered to the client-individual subscriber
    # When the subscriber NACKs it with message.nack()
    second, again = queue_run.result["second"], queue_run.result["redelivered"]
    assert second["headers"]["redelivered"] == "false"
    # Then the same message comes back to the subscriber, marked as redelivered
    assert again["body"] == "second"
    assert again["headers"]["message-id"] == second["headers"]["message-id"]
    assert again["headers"]["redelivered"] == "true"
    assert again["headers"]["subscription"] == second["headers"]["subscription"]
    assert again["headers"]["destination"] == f"/queue/{queue_run.queue}"
    assert again["headers"]["content-type"] == "application/json"
    assert again["headers"]["colour"] == "green"
    if queue_run.version == "1.2":
        assert again["headers"]["ack"]


def test_acked_messages_are_gone_from_the_queue(queue_run: QueueRun, mqless_dev: DevServer) -> None:
    # Given two messages delivered to the subscriber
    # When both were ACKed (the first directly, the second after its redelivery)
    first, second = queue_run.result["first"], queue_run.result["second"]
    assert first["headers"]["message-id"] != second["headers"]["message-id"]
    # Then nothing more reached the subscriber, and nothing is left for anyone else
    assert queue_run.result["extra"] == []
    assert receive_over_http(mqless_dev, queue_run.queue) == []


def test_disconnect_is_answered_with_its_receipt(queue_run: QueueRun) -> None:
    # Given a connected stompjs consumer
    # When its deactivate() sends DISCONNECT with receipt close-N and waits for it
    # Then the RECEIPT came, and the client saw no error, stray message or frame
    consumer = queue_run.consumer
    assert consumer["disconnectReceipt"], consumer
    assert consumer["errors"] == [] and consumer["webSocketErrors"] == []
    assert consumer["unhandledMessages"] == [] and consumer["unhandledFrames"] == []


# --- receipts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receipts_run(node: str, mqless_dev: DevServer) -> dict[str, Any]:
    topic, queue = unique("stompjs-rcpt"), unique("stompjs-rcpt")
    result = run_scenario(
        node, mqless_dev, "receipts.mjs", auth="passcode", topic=topic, queue=queue
    )
    return {"topic": topic, "queue": queue, **result}


def test_subscribe_and_send_get_their_receipts(receipts_run: dict[str, Any]) -> None:
    # Given a stompjs client watching for receipts (client.watchForReceipt)
    # When it SUBSCRIBEs with receipt:sub-r, then SENDs with receipt:r-1 (topic), r-2 (queue)
    # Then it sees each RECEIPT, and no stray ones arrive
    assert receipts_run["subscribeReceipt"]["headers"]["receipt-id"] == "sub-r"
    assert receipts_run["sendReceipts"]["r-1"]["headers"]["receipt-id"] == "r-1"
    assert receipts_run["sendReceipts"]["r-2"]["headers"]["receipt-id"] == "r-2"
    assert receipts_run["connections"]["client"]["unhandledReceipts"] == []


def test_a_receipted_send_reaches_subscribers_without_the_receipt_header(
    receipts_run: dict[str, Any],
) -> None:
    # Given a stompjs client subscribed to a topic
    # When a SEND to the topic asks for receipt r-1
    # Then the subscriber gets the message without a receipt header, and nothing else
    message = receipts_run["message"]
    assert message["body"] == "to the topic"
    assert message["headers"]["destination"] == f"/topic/{receipts_run['topic']}"
    # `receipt` is a request to the broker, not part of the message (ActiveMQ drops it too)
    assert "receipt" not in message["headers"]
    assert receipts_run["extraMessages"] == []


def test_a_receipted_send_to_a_queue_lands_in_the_queue(
    receipts_run: dict[str, Any], mqless_dev: DevServer
) -> None:
    # Given a SEND to a queue that asked for receipt r-2
    # When the queue is received from over HTTP
    # Then it holds that message
    messages = receive_over_http(mqless_dev, receipts_run["queue"])
    assert [m["body"] for m in messages] == ["to the queue"]


# --- topics --------------------------------------------------------------------------------


def test_topic_fan_out_reaches_each_matching_subscription_once(
    node: str, mqless_dev: DevServer
) -> None:
    # Given four clients subscribed to P.b, P.*, P.> and P.c
    prefix = unique("fan")
    # When a fifth publishes to P.b
    result = run_scenario(node, mqless_dev, "topic_fanout.mjs", prefix=prefix)
    received = result["received"]
    # Then the three matching subscriptions get it exactly once, the fourth never
    for name in ("exact", "star", "rest"):
        messages = received[name]["messages"]
        assert bodies(messages) == ["fan-out"], f"{name}: {messages}"
        headers = messages[0]["headers"]
        assert headers["destination"] == f"/topic/{prefix}.b"
        assert headers["subscription"] == received[name]["subscription"] == f"s-{name}"
        assert headers["content-type"] == "text/plain"
        assert headers["region"] == "eu"
        assert "receipt" not in headers
    assert received["other"]["messages"] == []
    ids = {received[name]["messages"][0]["headers"]["message-id"] for name in ("exact", "star")}
    assert len(ids) == 1, "one published message has one message-id for every subscriber"


# --- flow control --------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch_header", ["activemq.prefetchSize", "prefetch-count"])
def test_prefetch_limits_unacked_messages_per_subscription(
    node: str, mqless_dev: DevServer, prefetch_header: str
) -> None:
    # Given five messages waiting in a queue
    queue = unique("stompjs-prefetch")
    # When a client-individual subscriber with a prefetch of 2 connects, and later ACKs one
    result = run_scenario(
        node, mqless_dev, "prefetch.mjs", queue=queue, prefetchHeader=prefetch_header
    )
    before, after = result["beforeAck"], result["afterOneAck"]
    # Then exactly 2 arrive before the ACK and exactly one more after it
    assert len(before) == 2, bodies(before)
    assert len(after) == 3, bodies(after)
    assert len(set(bodies(after))) == 3
    assert set(bodies(after)) <= set(result["sent"])
    assert all(m["headers"]["redelivered"] == "false" for m in after)


# --- transactions --------------------------------------------------------------------------


def test_transactional_sends_arrive_only_on_commit_and_never_on_abort(
    node: str, mqless_dev: DevServer
) -> None:
    # Given a subscriber on a queue, and a producer on another connection
    queue = unique("stompjs-tx")
    # When the producer sends two messages in a transaction, commits; then sends one in a
    # transaction it aborts, then one outside any transaction
    result = run_scenario(node, mqless_dev, "transactions.mjs", queue=queue)
    # Then nothing arrives before COMMIT, both after it, and the aborted one never
    assert result["beforeCommit"] == []
    assert sorted(bodies(result["afterCommit"])) == ["tx-1", "tx-2"]
    assert sorted(bodies(result["all"])) == ["after-abort", "tx-1", "tx-2"]
    # `transaction` belongs to the SEND, not to the message (ActiveMQ drops it too)
    assert all("transaction" not in m["headers"] for m in result["all"])
    # and the aborted message is not waiting in the queue either
    assert receive_over_http(mqless_dev, queue) == []


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("bogus-destination", "/bogus/x"),
        ("bad-queue-name", "no spaces!"),
        ("bad-ack-mode", "sometimes"),
        ("bad-selector", "invalid selector at position 18"),
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_socket_closes(
    node: str, mqless_dev: DevServer, case: str, named: str
) -> None:
    # Given a connected client
    # When it sends a frame the broker cannot accept (with receipt:bad-1)
    result = run_scenario(node, mqless_dev, "errors.mjs", case=case)
    error = result["errorFrame"]
    # Then onStompError sees an ERROR whose message says what was wrong
    assert error is not None, result["connections"]["client"]
    assert error["headers"]["message"]
    assert named in error["headers"]["message"] + error["body"], error
    # STOMP 1.2: an ERROR about a frame with a receipt SHOULD carry that receipt-id
    assert error["headers"].get("receipt-id") == "bad-1"
    # and no RECEIPT, since the frame was not processed
    assert result["receiptForBadFrame"] is None
    # Then the server closes the socket (STOMP 1.2: MUST close after ERROR)
    assert "stillOpenAfterMs" not in result
    assert result["closedAfterError"] is True
    assert result["clientConnectedAfter"] is False


def test_selectors_filter_queue_and_topic_subscriptions(node: str, mqless_dev: DevServer) -> None:
    # Given a queue of red and blue messages, and a topic of quotes and trades
    queue, topic = unique("stompjs-selector"), unique("stompjs-quotes")
    # When stompjs subscribers with `selector` headers (and one without) consume them
    result = run_scenario(node, mqless_dev, "selectors.mjs", queue=queue, topic=topic)
    # Then the selector consumer got the red ones only, the plain one the blue ones (nothing
    # lost, nothing twice), and the topic subscriber the quotes priced above 10 only
    assert bodies(result["reds"]) == ["red-1", "red-2"]
    assert all(m["headers"]["color"] == "red" for m in result["reds"])
    assert bodies(result["rest"]) == ["blue-1", "blue-2"]
    assert bodies(result["quotes"]) == ["dear"]
    assert receive_over_http(mqless_dev, queue) == []
