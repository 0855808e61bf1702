"""`mqless dev` behaves like API Gateway, Lambda's stream triggers and Scheduler.

Each test runs the `mqless` command in a subprocess on free ports, with a fixture
template whose functions make the gateway's behaviour observable, and drives it with
real clients over loopback: httpx for HTTP, `websockets` for WebSocket, boto3's
unchanged `apigatewaymanagementapi` client for `@connections`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import websockets
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import FIXTURES, DevServer

WS_APP = FIXTURES / "ws_app" / "template.yaml"
STREAM_APP = FIXTURES / "stream_app" / "template.yaml"


def _management(server: DevServer) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{server.http_url}/prod",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def ws_dev() -> Any:
    from tests.e2e.conftest import start_dev

    server = start_dev(WS_APP)
    yield server
    assert server.stop() == 0, server.output()


def test_connect_echoes_the_subprotocol_chosen_by_connect(ws_dev: DevServer) -> None:
    # Given a $connect function that picks v12.stomp when it is offered
    async def scenario() -> str | None:
        # When a client offers v10.stomp and v12.stomp
        async with websockets.connect(
            ws_dev.ws_url,
            subprotocols=["v10.stomp", "v12.stomp"],  # type: ignore[list-item]
        ) as ws:
            return ws.subprotocol

    # Then the handshake answers with v12.stomp
    assert asyncio.run(scenario()) == "v12.stomp"


def test_connect_refusal_fails_the_upgrade_with_its_status(ws_dev: DevServer) -> None:
    # Given a $connect function that answers ?deny=1 with 403
    async def scenario() -> int:
        try:
            # When a client connects with ?deny=1
            async with websockets.connect(f"{ws_dev.ws_url}/?deny=1"):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    # Then the upgrade fails with 403
    assert asyncio.run(scenario()) == 403


def test_non_json_goes_to_default_which_answers_through_connections(ws_dev: DevServer) -> None:
    # Given a $default function that posts back, through @connections, the event it got
    async def scenario() -> dict[str, Any]:
        async with websockets.connect(ws_dev.ws_url) as ws:
            # When a client sends text that is not JSON
            await ws.send("plain text, not JSON")
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    # Then $default got it as a MESSAGE, and its answer reached the client
    reply = asyncio.run(scenario())
    assert reply["body"] == "plain text, not JSON"
    assert reply["requestContext"]["routeKey"] == "$default"
    assert reply["requestContext"]["eventType"] == "MESSAGE"


def test_route_selection_picks_the_action_route_and_replies_two_way(ws_dev: DevServer) -> None:
    # Given an `echo` route whose function returns a body (a two-way route)
    async def scenario() -> dict[str, Any]:
        async with websockets.connect(ws_dev.ws_url) as ws:
            # When a client sends {"action": "echo", ...}
            await ws.send(json.dumps({"action": "echo", "data": "ping"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    # Then the echo function answered, and its body came back as a frame
    reply = asyncio.run(scenario())
    assert reply["routeKey"] == "echo"
    assert reply["echo"] == "ping"


def test_get_connection_through_boto3_describes_the_caller(ws_dev: DevServer) -> None:
    # Given a $default function that asks @connections about its caller (GetConnection)
    async def scenario() -> dict[str, Any]:
        async with websockets.connect(ws_dev.ws_url) as ws:
            # When a client sends `whoami`
            await ws.send("whoami")
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    # Then the answer gives the client's source IP
    reply = asyncio.run(scenario())
    assert reply["identity"]["SourceIp"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda ws: ws.send(b"\x00\x01binary"), 1003),
        (lambda ws: ws.send("x" * (128 * 1024 + 1)), 1009),
    ],
    ids=["binary-frame-1003", "oversize-message-1009"],
)
def test_frames_api_gateway_refuses_close_the_socket(
    ws_dev: DevServer, send: Callable[[Any], Any], code: int
) -> None:
    # Given a frame API Gateway refuses: binary, or over 128 KiB
    async def scenario() -> int | None:
        async with websockets.connect(ws_dev.ws_url, max_size=None) as ws:
            # When a client sends it
            await send(ws)
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None

    # Then the socket is closed with API Gateway's code, 1003 or 1009
    assert asyncio.run(scenario()) == code


def test_post_to_a_closed_connection_is_gone(ws_dev: DevServer) -> None:
    # Given a connection that was opened and closed
    opened_at = ws_dev.mark()

    async def open_and_close() -> str:
        async with websockets.connect(ws_dev.ws_url) as ws:
            await ws.send("whoami")
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return str(reply["requestContext"]["connectionId"])

    connection_id = asyncio.run(open_and_close())
    # When boto3 posts to it through @connections
    client = _management(ws_dev)
    # Then, within 10 s, the post fails with GoneException, and $disconnect ran
    deadline = time.monotonic() + 10
    while True:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=b"late")
        except client.exceptions.GoneException:
            break
        assert time.monotonic() < deadline, "posting to a closed connection kept succeeding"
        time.sleep(0.1)
    ws_dev.wait_for_output("$disconnect", after=opened_at)


def test_stream_partial_failure_is_retried_from_the_failed_record(
    dev_server: Callable[..., DevServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stream function that journals each delivery and reports an item as failed on its first
    # fail_times deliveries
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("STREAM_APP_JOURNAL", str(journal))
    server = dev_server(STREAM_APP)

    # When three items are written and the middle one fails its first delivery
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        for key, fail in (("a", 0), ("b", 1), ("c", 0)):
            http.post("/items", json={"pk": key, "fail_times": fail}).raise_for_status()

    # Then a, b, c arrive; a once (it precedes the failure), b twice (succeeding the second
    # time), c at least once (twice when it shared b's batch: Lambda retries from the failure)
    def deliveries() -> list[tuple[str, int]]:
        if not journal.exists():
            return []
        lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        return [
            (e["record"]["dynamodb"]["Keys"]["pk"]["S"], e["attempt"])
            for e in lines
            if e.get("kind") == "stream"
        ]

    deadline = time.monotonic() + 20
    while not {("b", 2), ("c", 1)} <= set(deliveries()) and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = deliveries()
    assert ("b", 2) in seen, seen
    assert [attempt for key, attempt in seen if key == "a"] == [1]
    assert sorted(attempt for key, attempt in seen if key == "b") == [1, 2]
    assert sorted(attempt for key, attempt in seen if key == "c") in ([1], [1, 2]), seen
    entries = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    first = next(e for e in entries if e.get("kind") == "stream")
    assert first["record"]["eventSourceARN"].startswith("arn:aws:dynamodb:")


def test_schedules_run_at_the_dev_rate(
    dev_server: Callable[..., DevServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a scheduled function that journals each invocation
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("STREAM_APP_JOURNAL", str(journal))
    # When `mqless dev` runs it with --schedule-rate 0.5 (every half second)
    server = dev_server(STREAM_APP, "--schedule-rate", "0.5")
    server.wait_for_output("TickFunction", timeout=10)
    deadline = time.monotonic() + 10
    ticks: list[dict[str, Any]] = []
    while len(ticks) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        if journal.exists():
            ticks = [
                json.loads(x)
                for x in journal.read_text().splitlines()
                if x.strip() and json.loads(x).get("kind") == "tick"
            ]
    # Then it ran at least twice within 10 s, with a Scheduler event
    assert len(ticks) >= 2
    assert ticks[0]["event"]["source"] == "aws.scheduler"


def test_curl_style_form_bodies_are_read_as_json(dev_server: Callable[..., DevServer]) -> None:
    # Given `mqless dev`
    server = dev_server()
    with httpx.Client(base_url=server.http_url, headers=server.auth_headers(), timeout=30) as http:
        # When a queue is PUT and a message sent with JSON bodies under curl's default form content
        # type
        form = {"content-type": "application/x-www-form-urlencoded"}
        created = http.put("/queues/curl", content=b"{}", headers=form)
        sent = http.post("/queues/curl/messages", content=b'{"body": "hi"}', headers=form)
    # Then both are read as JSON: 201
    assert created.status_code == 201, created.text
    assert sent.status_code == 201, sent.text


def test_on_any_free_ports_mqless_dev_prints_and_uses_the_ports_it_got(
    dev_server: Callable[..., DevServer],
) -> None:
    # Given `mqless dev` asked for any free ports (port 0: how the tests start it, so
    # that parallel test workers never race for a port)
    server = dev_server()
    # When a client reads the web console's configuration from the printed HTTP URL
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        config = http.get("/console/config.json").json()
    # Then both printed URLs name real ports, and the functions were told the WebSocket
    # gateway's (the console connects to what they say)
    assert not server.http_url.endswith(":0") and not server.ws_url.endswith(":0")
    assert config["websocket_url"] == server.ws_url
