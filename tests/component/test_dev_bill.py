"""`mqless dev` bills what runs against it: `GET /_local/bill` and a console line a minute.

In-process: the whole local runtime (moto, the functions, both gateways) on free ports,
with its stream poller (a message is receivable once the dispatch function indexed it) and
without schedules; the test closes each billing period itself (`LiveBill.tick`) instead of
waiting a minute.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from mqless import observability
from mqless import wiring as mqless_runtime
from mqless_cli.local.console import Console, FunctionOutput
from mqless_cli.local.runtime import DevRuntime
from tests.inline_dispatch import INLINE_DISPATCH

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev(request: pytest.FixtureRequest) -> Iterator[tuple[DevRuntime, io.StringIO]]:
    """`mqless dev`, its console written to the StringIO (`--verbose` if the test's
    indirect parameter says so)."""
    environment = dict(os.environ)
    # counters other tests left in this process's metrics would be flushed by our first
    # invocation and counted as ours: `mqless dev` starts with none
    observability.metrics.flush()
    out = io.StringIO()
    runtime = DevRuntime(
        ROOT / "template.yaml",
        http_port=0,  # any free ports: another test worker may be serving too
        ws_port=0,
        schedules=False,
        console=Console(out, verbose=getattr(request, "param", False)),
        bill_period=3600,  # the test closes periods itself
    )
    # mqless dev indexes sent messages through its own stream poller and dispatch function;
    # the suite's inline dispatcher (tests/inline_dispatch.py) must not index them a second
    # time with the settings of an earlier module's stack, whose tables had these names
    with INLINE_DISPATCH.paused():
        runtime.start()
        try:
            yield runtime, out
        finally:
            runtime.stop()
        os.environ.clear()
        os.environ.update(environment)
        mqless_runtime.reset()


def print_to_console(runtime: DevRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the functions print goes to the runtime's console (their metrics to the bill), as
    `mqless dev` arranges it; pytest swaps sys.stdout before each test's body, so a test
    that counts messages arranges it again."""
    monkeypatch.setattr(sys, "stdout", FunctionOutput(runtime.console))


def call(runtime: DevRuntime, method: str, path: str, body: Any = None) -> Any:
    assert runtime.http is not None
    request = urllib.request.Request(
        runtime.http.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {runtime.token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def test_the_bill_endpoint_prices_what_clients_did_per_message_beside_sqs(
    dev: tuple[DevRuntime, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = dev
    print_to_console(runtime, monkeypatch)
    # Given a queue; When a client sends three messages and receives and acks them
    for n in range(3):
        call(runtime, "POST", "/queues/billed/messages", {"body": f"message {n}"})
    receipts: list[str] = []
    receives = 0
    while len(receipts) < 3 and receives < 20:  # receivable once the stream indexed them
        received = call(
            runtime, "POST", "/queues/billed/receive", {"max_messages": 10, "wait_seconds": 2}
        )
        receipts += [m["receipt"] for m in received["messages"]]
        receives += 1
    call(runtime, "POST", "/queues/billed/ack", {"receipts": receipts})

    # Then the bill since start counts the 3 messages the functions reported sent, the HTTP
    # requests, the DynamoDB writes they billed (no secondary index), and prices them beside
    # SQS
    bill = call(runtime, "GET", "/_local/bill")["since_start"]
    requests = 3 + receives + 1
    assert bill["messages"] == {"sent": 3, "acked": 3}
    assert bill["requests"]["http_api"] == requests
    assert bill["dynamodb"]["write_units_table"] >= 3  # sends (one each), leases and acks
    assert bill["dynamodb"]["write_units_index"] == 0
    assert bill["lines"]["API Gateway HTTP"] == pytest.approx(requests * 1e-6)
    assert bill["per_million_messages"] == pytest.approx(bill["dollars"] / 3 * 1_000_000)
    assert bill["sqs_per_million_messages"] == pytest.approx(1.20)


def test_the_bill_endpoint_is_not_itself_billed(dev: tuple[DevRuntime, io.StringIO]) -> None:
    # Given a running `mqless dev`
    runtime, _ = dev
    # When its bill is read three times
    call(runtime, "GET", "/_local/bill")
    call(runtime, "GET", "/_local/bill")

    # Then the bill counts no HTTP API request: reading it is not billed
    assert call(runtime, "GET", "/_local/bill")["since_start"]["requests"]["http_api"] == 0


def test_a_minute_with_client_activity_prints_one_bill_line(
    dev: tuple[DevRuntime, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, out = dev
    print_to_console(runtime, monkeypatch)
    # Given a minute in which a client sent two messages
    runtime.bill.tick()  # close the start-up period
    for n in range(2):
        call(runtime, "POST", "/queues/lined/messages", {"body": f"m{n}"})

    # When the minute closes, and then a minute passes with no client
    runtime.bill.tick()
    runtime.bill.tick()

    # Then exactly one line, with the messages and the price per million beside SQS's
    lines = [line for line in out.getvalue().splitlines() if line.startswith("bill ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("bill  last min: 2 msgs  DynamoDB ")
    assert "WRU/msg" in lines[0]
    assert lines[0].endswith("per million msgs (SQS $1.20)")
    # and the endpoint shows that minute as the last period
    last = call(runtime, "GET", "/_local/bill")["last_period"]
    assert last["messages"]["sent"] == 0  # the idle minute came after it


def test_websocket_messages_and_connection_time_are_billed(
    dev: tuple[DevRuntime, io.StringIO],
) -> None:
    # Given a running `mqless dev` with its WebSocket gateway
    runtime, _ = dev
    assert runtime.ws is not None
    # When a client connects, sends a JSON frame and gets an answer, then leaves
    with connect(f"{runtime.ws.url}/?access_token={runtime.token}", open_timeout=30) as client:
        client.send(json.dumps({"action": "subscribe", "destination": "/topic/news.>"}))
        client.recv(timeout=30)

    # Then (once $disconnect ran: authorizer, $connect, the frame, $disconnect) one message
    # in, at least one out, and some connection time
    deadline = time.monotonic() + 30
    while sum(runtime.meter.usage().lambda_invocations.values()) < 4:
        assert time.monotonic() < deadline, runtime.meter.usage()
        time.sleep(0.02)
    bill = call(runtime, "GET", "/_local/bill")["since_start"]
    assert bill["requests"]["websocket_messages_in"] == 1
    assert bill["requests"]["websocket_messages_out"] >= 1
    assert bill["connection_minutes"] > 0
    assert bill["lines"]["API Gateway WebSocket"] > 0


@pytest.mark.parametrize("dev", [True], indirect=True)  # --verbose: EMF lines shown whole
def test_the_functions_metrics_reach_the_bill_and_history_as_the_lines_aws_prints(
    dev: tuple[DevRuntime, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, out = dev
    # Given `mqless dev`, the functions' stdout left to pytest (not routed to the console)
    before = runtime.meter.usage().metric_log_bytes
    # When a client sends two messages
    for n in range(2):
        call(runtime, "POST", "/queues/counted/messages", {"body": f"m{n}"})

    # Then their metrics came to the console as the compact EMF lines printed on AWS
    shown = [line for line in out.getvalue().splitlines() if line.startswith('{"_aws":')]
    documents = [json.loads(line) for line in shown]
    assert shown and [json.dumps(d, separators=(",", ":")) for d in documents] == shown
    assert sum(d.get("Sent", [0.0])[0] for d in documents if d.get("Queue") == "counted") == 2
    # and none was printed (they are handed over, not parsed back)
    assert '"_aws"' not in capsys.readouterr().out
    # and the bill counts each as CloudWatch Logs ingests it: its bytes and 26 more
    logged = runtime.meter.usage().metric_log_bytes - before
    assert logged == sum(len(line.encode()) + 26 for line in shown)
    assert call(runtime, "GET", "/_local/bill")["since_start"]["messages"]["sent"] == 2
    # and GET /history reads the two sent from CloudWatch
    history = call(runtime, "GET", "/history?queue=counted")
    assert history["totals"]["sent"] == 2
