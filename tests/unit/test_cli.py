"""The `mqless` client commands without a network: parsing, output, error mapping.

The HTTP API is an `httpx.MockTransport` answering as the contract says; the WebSocket
API is a scripted fake connection.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import boto3
import httpx
import pytest
import websockets
from botocore.stub import Stubber
from websockets.datastructures import Headers as WsHeaders
from websockets.http11 import Response as WsResponse

from mqless_cli.cfn import Stack
from mqless_cli.commands.access import ACTIONS, parse_grant
from mqless_cli.commands.arguments import parse_duration
from mqless_cli.commands.bootstrap import run_bootstrap
from mqless_cli.commands.context import Terminal, WsConnect, run
from mqless_cli.commands.queues import queue_row, redrive_chunk
from mqless_cli.commands.topics import frames_of
from mqless_cli.main import build_parser, main
from mqless_cli.output import (
    Output,
    Tracker,
    age,
    count,
    expiry,
    grants_text,
    key_status,
    message_text,
    timestamp,
)

Handler = Callable[[httpx.Request], httpx.Response]


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class FakeApi:
    """Answers requests from a table of (method, path) -> responses, and records them."""

    answers: dict[tuple[str, str], list[httpx.Response | Handler]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *responses: httpx.Response | Handler) -> FakeApi:
        """Answer these, in turn (the last one again and again); a function answers from the
        request."""
        self.answers.setdefault((method, path), []).extend(responses)
        return self

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(r.content) if r.content else None
            for r in self.requests
            if (r.method, r.url.path) == (method, path)
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.answers.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"message": "Not Found"})
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer if isinstance(answer, httpx.Response) else answer(request)


def ok(document: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=document)


def problem(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message})


def cli(
    argv: list[str],
    api: Handler,
    *,
    stdin: io.StringIO | None = None,
    stderr: io.StringIO | None = None,
    ws: WsConnect | None = None,
) -> Result:
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), stderr or io.StringIO()
    code = run(
        args,
        terminal=Terminal(stdin or io.StringIO(""), out, err),
        transport=httpx.MockTransport(api),
        ws_connect=ws,
    )
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # a developer's shell must not point these tests at a server or lend them a token
    for name in ("MQLESS_URL", "MQLESS_WS_URL", "MQLESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


MESSAGE = {
    "message_id": "m-1",
    "receipt": "r1.a",
    "body": '{"order": 42}',
    "binary": False,
    "attributes": {"tenant": "acme"},
    "content_type": "application/json",
    "receive_count": 1,
    "sent_at": 1795746770127,
}


# ---- parsing ---------------------------------------------------------------------------------


def test_dev_keeps_its_flags() -> None:
    """Given `mqless dev --http-port 9000 --schedule-rate 2`
    When it is parsed
    Then the command is dev with those values, and the WebSocket port keeps its default 8081
    """
    args = build_parser().parse_args(["dev", "--http-port", "9000", "--schedule-rate", "2"])
    assert (args.command, args.http_port, args.ws_port, args.schedule_rate) == (
        "dev",
        9000,
        8081,
        2,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_version_says_which_mqless_this_is(capsys: pytest.CaptureFixture[str]) -> None:
    """Given the installed mqless package
    When `mqless --version` is parsed
    Then it exits 0 after printing "mqless" and the package's version
    """
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"mqless {metadata.version('mqless')}\n"


def test_dev_on_a_busy_port_names_it_and_the_flag_and_starts_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given another program listening on the port `mqless dev` is asked to use
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        busy = other.getsockname()[1]
        # When mqless dev starts there
        code = main(["dev", "--http-port", str(busy), "--ws-port", str(free_port())])
    # Then it says which port and how to choose another, in one line, and exits 1
    assert code == 1
    assert capsys.readouterr().err == (
        f"mqless dev: cannot start: port {busy} is in use (another `mqless dev`, or another "
        "program): stop it, or choose another port with --http-port PORT\n"
    )


def test_dev_on_a_busy_websocket_port_names_the_ws_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given another program listening on the port given as --ws-port
    When `mqless dev` starts there
    Then it exits 1, saying to choose another port with --ws-port PORT
    """
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        busy = other.getsockname()[1]
        code = main(["dev", "--http-port", str(free_port()), "--ws-port", str(busy)])
    assert code == 1
    assert "choose another port with --ws-port PORT" in capsys.readouterr().err


def test_dev_with_one_port_for_both_apis_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given `mqless dev` with --http-port and --ws-port both 9000
    When it runs
    Then it exits 2, saying both ports are 9000
    """
    code = main(["dev", "--http-port", "9000", "--ws-port", "9000"])
    assert code == 2
    assert "--http-port and --ws-port are both 9000" in capsys.readouterr().err


def test_tail_is_an_alias_of_subscribe() -> None:
    """Given `mqless tail shop.> --limit 2` and `mqless subscribe shop.>`
    When both are parsed
    Then tail runs the subscribe handler, with its pattern and limit
    """
    tail = build_parser().parse_args(["tail", "shop.>", "--limit", "2"])
    subscribe = build_parser().parse_args(["subscribe", "shop.>"])
    assert tail.handler is subscribe.handler
    assert (tail.pattern, tail.limit) == ("shop.>", 2)


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "q", "x", "--delay", "901"],
        ["send", "q", "x", "--attribute", "no-equals-sign"],
        ["send", "q", "x", "--count", "0"],
        ["receive", "q", "--max", "11"],
        ["receive", "q", "--wait", "21"],
        ["consume", "q", "--limit", "many"],
        ["bogus"],
    ],
)
def test_bad_flags_are_usage_errors_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a command line with a flag out of range or malformed (delay over 900, an attribute
    without "=", a count of 0, more than 10 messages, a wait over 20, a limit that is not a
    number) or an unknown command
    When it is parsed
    Then it exits 2 with an argparse "error:" on stderr
    """
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_url_comes_from_the_environment_when_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MQLESS_URL set and no --url
    monkeypatch.setenv("MQLESS_URL", "http://broker.example:9999")
    api = FakeApi().on("GET", "/stats", ok({"queues": [], "topics": [], "connections": 0}))
    # When a command runs
    cli(["queues"], api)
    # Then it asked that URL
    assert str(api.requests[0].url) == "http://broker.example:9999/stats"


def test_the_url_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given MQLESS_URL set and a different --url
    When `mqless queues` runs
    Then the request goes to the --url host
    """
    monkeypatch.setenv("MQLESS_URL", "http://broker.example:9999")
    api = FakeApi().on("GET", "/stats", ok({"queues": [], "topics": [], "connections": 0}))
    cli(["queues", "--url", "http://other:1234"], api)
    assert api.requests[0].url.host == "other"


@pytest.mark.parametrize(("scheme", "bundles_loaded"), [("http", 0), ("https", 1)])
def test_only_an_https_api_loads_the_certificates_to_check_it_with(
    scheme: str, bundles_loaded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an API URL nobody listens on, and the CA bundles that TLS settings load counted
    loaded: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(args or kwargs)
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    args = build_parser().parse_args(["queues", "--url", f"{scheme}://127.0.0.1:{_closed_port()}"])
    # When a command runs against it
    code = run(args, terminal=Terminal(io.StringIO(""), io.StringIO(), io.StringIO()))
    # Then it fails to connect either way, having loaded a CA bundle for https only
    assert code == 1
    assert len(loaded) == bundles_loaded


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- send and publish ------------------------------------------------------------------------


# ---- credentials -----------------------------------------------------------------------------

EMPTY_OVERVIEW = {"queues": [], "topics": [], "connections": 0}


def test_the_token_flag_goes_in_a_bearer_header() -> None:
    """Given a --token on the command line
    When `mqless queues` runs
    Then the request carries it as "Authorization: Bearer <token>"
    """
    api = FakeApi().on("GET", "/stats", ok(EMPTY_OVERVIEW))
    cli(["queues", "--token", "mqk_abc_def"], api)
    assert api.requests[0].headers["authorization"] == "Bearer mqk_abc_def"


def test_the_token_comes_from_mqless_token_when_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MQLESS_TOKEN set (with the newline `$(cat file)` keeps) and no --token
    monkeypatch.setenv("MQLESS_TOKEN", "from-env\n")
    api = FakeApi().on("GET", "/stats", ok(EMPTY_OVERVIEW))
    # When a command runs
    cli(["queues"], api)
    # Then the token is sent, trimmed
    assert api.requests[0].headers["authorization"] == "Bearer from-env"


def test_the_token_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given MQLESS_TOKEN set and a different --token
    When `mqless queues` runs
    Then the bearer token sent is the flag's
    """
    monkeypatch.setenv("MQLESS_TOKEN", "from-env")
    api = FakeApi().on("GET", "/stats", ok(EMPTY_OVERVIEW))
    cli(["queues", "--token", "from-flag"], api)
    assert api.requests[0].headers["authorization"] == "Bearer from-flag"


def test_without_a_token_no_authorization_header_is_sent() -> None:
    """Given no --token and no MQLESS_TOKEN
    When `mqless queues` runs
    Then the request has no Authorization header
    """
    api = FakeApi().on("GET", "/stats", ok(EMPTY_OVERVIEW))
    cli(["queues"], api)
    assert "authorization" not in api.requests[0].headers


def test_a_token_with_a_space_inside_is_a_usage_error() -> None:
    """Given a --token with a space inside
    When `mqless queues` runs
    Then it exits 2 without a request, saying the token cannot be sent
    """
    api = FakeApi()
    result = cli(["queues", "--token", "two words"], api)
    assert (result.code, api.requests) == (2, [])
    assert result.stderr == (
        "mqless: the token in --token has spaces or characters that cannot be sent\n"
    )


def test_send_puts_every_flag_into_the_request() -> None:
    """Given a FIFO queue and `mqless send` with attributes (one value holding "="), a group, a
    dedup id, a delay and a content type
    When it runs
    Then the request body holds each of them, and stdout names the message and its sequence in the
    group
    """
    api = FakeApi().on(
        "POST", "/queues/pay.fifo/messages", ok({"message_id": "m-1", "sequence": 3}, 201)
    )
    argv = ["send", "pay.fifo", "debit 10", "-a", "tenant=acme", "--attribute", "k=a=b"]
    argv += ["--group", "acct-7", "--dedup-id", "d-1", "--delay", "5", "--content-type", "text/x"]
    result = cli(argv, api)
    assert result.code == 0
    assert api.bodies("POST", "/queues/pay.fifo/messages") == [
        {
            "body": "debit 10",
            "attributes": {"tenant": "acme", "k": "a=b"},
            "content_type": "text/x",
            "group_id": "acct-7",
            "dedup_id": "d-1",
            "delay_seconds": 5,
        }
    ]
    assert result.stdout == "sent m-1 to pay.fifo (sequence 3 in its group)\n"


def test_send_with_a_priority_puts_it_into_the_request() -> None:
    # Given a queue to send to
    api = FakeApi().on("POST", "/queues/alerts/messages", ok({"message_id": "m-1"}, 201))
    # When a message is sent with --priority 7
    sent = cli(["send", "alerts", "disk full", "--priority", "7"], api)
    # Then the request asks for priority 7
    assert sent.code == 0
    assert api.bodies("POST", "/queues/alerts/messages") == [{"body": "disk full", "priority": 7}]


def test_send_reads_the_body_from_stdin_without_its_final_newline() -> None:
    """Given a two-line body piped on stdin and no BODY argument
    When `mqless send q` runs
    Then the message body is the two lines without the final newline
    """
    api = FakeApi().on("POST", "/queues/q/messages", ok({"message_id": "m-1"}, 201))
    cli(["send", "q"], api, stdin=io.StringIO("line one\nline two\n"))
    assert api.bodies("POST", "/queues/q/messages")[0]["body"] == "line one\nline two"


def test_send_without_a_body_on_a_terminal_is_a_usage_error() -> None:
    """Given no BODY argument and stdin a terminal
    When `mqless send q` runs
    Then it exits 2, saying to give BODY or pipe it on stdin
    """
    result = cli(["send", "q"], FakeApi(), stdin=TtyStringIO())
    assert result.code == 2
    assert result.stderr == "mqless: no message body: give BODY or pipe it on stdin\n"


def test_send_json_prints_the_api_answer() -> None:
    """Given an API that answers a send with a message id and duplicate: true
    When `mqless send q x --json` runs
    Then stdout is that answer as JSON
    """
    answer = {"message_id": "m-1", "duplicate": True}
    api = FakeApi().on("POST", "/queues/q/messages", ok(answer, 201))
    result = cli(["send", "q", "x", "--json"], api)
    assert json.loads(result.stdout) == answer


def test_bulk_send_goes_ten_at_a_time_through_the_batch_endpoint() -> None:
    """Given a batch endpoint that accepts every entry
    When `mqless send q hello --count 25 --json` runs with an attribute
    Then it posts batches of 10, 10 and 5 entries carrying body and attributes, and prints 25 sent
    with every message id, exit 0
    """
    requests: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        entries = json.loads(request.content)["entries"]
        requests.append({"entries": entries})
        successful = [{"id": e["id"], "message_id": f"id-{e['id']}"} for e in entries]
        return ok({"successful": successful, "failed": []})

    result = cli(["send", "q", "hello", "--count", "25", "--json", "-a", "k=v"], handler)
    assert [len(r["entries"]) for r in requests] == [10, 10, 5]
    assert requests[0]["entries"][0] == {"id": "0", "body": "hello", "attributes": {"k": "v"}}
    document = json.loads(result.stdout)
    assert document["sent"] == 25
    assert document["message_ids"] == [f"id-{i}" for i in range(25)]
    assert result.code == 0


def test_bulk_send_from_a_file_reports_failures_by_line(tmp_path: Any) -> None:
    # Given a file with a blank line and an entry the API refuses
    path = tmp_path / "messages.txt"
    path.write_text("one\n\ntwo\nthree\n")

    def handler(request: httpx.Request) -> httpx.Response:
        entries = json.loads(request.content)["entries"]
        assert [e["body"] for e in entries] == ["one", "two", "three"]
        return ok(
            {
                "successful": [{"id": "0", "message_id": "a"}, {"id": "2", "message_id": "c"}],
                "failed": [{"id": "1", "error": "payload_too_large", "message": "too big"}],
            }
        )

    # When it is sent
    result = cli(["send", "q", "--file", str(path)], handler)
    # Then the failure names its line, and the exit status says something failed
    assert result.code == 1
    assert "sent 2 messages to q" in result.stdout
    assert "line 3: too big (payload_too_large)" in result.stderr
    assert result.stderr.endswith("mqless: 1 of 3 messages failed\n")


def test_body_and_file_together_are_refused() -> None:
    """Given both a BODY argument and --file
    When `mqless send` runs
    Then it exits 2, saying to give one, not both
    """
    result = cli(["send", "q", "x", "--file", "f"], FakeApi())
    assert (result.code, result.stderr) == (2, "mqless: give BODY or --file, not both\n")


def test_an_unreadable_file_is_a_usage_error(tmp_path: Any) -> None:
    """Given --file naming a file that does not exist
    When `mqless send` runs
    Then it exits 2, saying it cannot read the file
    """
    result = cli(["send", "q", "--file", str(tmp_path / "missing")], FakeApi())
    assert result.code == 2
    assert result.stderr.startswith("mqless: cannot read ")


def test_publish_encodes_the_topic_and_sends_attributes() -> None:
    """Given a topic shop.orders
    When `mqless publish shop.orders hi -a region=eu` runs
    Then the body and attributes are posted to the topic and stdout names the published message
    """
    api = FakeApi().on("POST", "/topics/shop.orders/messages", ok({"message_id": "p-1"}, 201))
    result = cli(["publish", "shop.orders", "hi", "-a", "region=eu"], api)
    assert api.bodies("POST", "/topics/shop.orders/messages") == [
        {"body": "hi", "attributes": {"region": "eu"}}
    ]
    assert result.stdout == "published p-1 to shop.orders\n"


# ---- receive and consume ---------------------------------------------------------------------


def test_receive_prints_messages_for_people_and_leaves_them_unacked() -> None:
    """Given a queue with one message
    When `mqless receive q --max 5 --wait 2` runs
    Then it asks for 5 messages with a 2 s wait, prints the message id, its content type and
    attributes and the indented body, sends no ack, and says on stderr it is not acked
    """
    api = FakeApi().on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}))
    result = cli(["receive", "q", "--max", "5", "--wait", "2"], api)
    assert api.bodies("POST", "/queues/q/receive") == [{"max_messages": 5, "wait_seconds": 2.0}]
    assert "m-1" in result.stdout
    assert "[content-type=application/json tenant=acme]" in result.stdout
    assert '  {"order": 42}' in result.stdout
    assert api.bodies("POST", "/queues/q/ack") == []
    assert "not acked" in result.stderr


def test_receive_ack_acks_what_it_printed() -> None:
    """Given a queue with one message
    When `mqless receive q --ack --json` runs
    Then the message is printed as JSON, its receipt is acked, and stderr says "acked 1"
    """
    api = (
        FakeApi()
        .on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}))
        .on("POST", "/queues/q/ack", ok({"acked": ["r1.a"], "failed": []}))
    )
    result = cli(["receive", "q", "--ack", "--json"], api)
    assert api.bodies("POST", "/queues/q/ack") == [{"receipts": ["r1.a"]}]
    assert [json.loads(line) for line in result.stdout.splitlines()] == [MESSAGE]
    assert (result.code, result.stderr) == (0, "acked 1\n")


def test_receive_prints_each_messages_receipt_for_people() -> None:
    # Given a queue holding a message
    api = FakeApi().on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}))
    # When it is received (not acked)
    result = cli(["receive", "q"], api)
    # Then its receipt is printed under its header, and the note says what to do with it
    lines = result.stdout.splitlines()
    assert lines[1:] == [
        "  [content-type=application/json tenant=acme]",
        "  receipt: r1.a",
        '  {"order": 42}',
    ]
    assert "settle with `mqless ack|nack|extend q RECEIPT...`" in result.stderr


def test_receive_json_is_one_message_per_line_for_jq() -> None:
    # Given two messages received at once
    second = {**MESSAGE, "message_id": "m-2", "receipt": "r2.b"}
    api = FakeApi().on("POST", "/queues/q/receive", ok({"messages": [MESSAGE, second]}))
    # When they are printed as JSON
    result = cli(["receive", "q", "--max", "2", "--json"], api)
    # Then each is one line (what `jq -r .receipt` reads), nothing else on stdout
    assert [json.loads(line)["receipt"] for line in result.stdout.splitlines()] == ["r1.a", "r2.b"]


def test_receive_from_an_empty_queue_says_so_on_stderr_only() -> None:
    """Given an empty queue
    When `mqless receive q` runs
    Then it exits 0 with nothing on stdout and "no messages in q" on stderr
    """
    api = FakeApi().on("POST", "/queues/q/receive", ok({"messages": []}))
    result = cli(["receive", "q"], api)
    assert (result.code, result.stdout, result.stderr) == (0, "", "no messages in q\n")


def test_a_stale_ack_makes_the_exit_status_1() -> None:
    """Given a received message whose ack is answered 409 stale_receipt
    When `mqless receive q --ack` runs
    Then it exits 1 with the API's message on stderr
    """
    api = (
        FakeApi()
        .on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}))
        .on("POST", "/queues/q/ack", problem(409, "stale_receipt", "the lease is gone"))
    )
    result = cli(["receive", "q", "--ack"], api)
    assert result.code == 1
    assert "the lease is gone" in result.stderr


def test_consume_stops_at_its_limit_and_never_leases_more() -> None:
    """Given a queue answering 10 messages then 2 more
    When `mqless consume q --limit 12 --json` runs
    Then it asks for 10 then only 2 (long-polling 20 s), prints the 12 in order, acks all 12 and
    says it consumed 12
    """

    def message(n: int) -> dict[str, Any]:
        return {**MESSAGE, "message_id": f"m-{n}", "receipt": f"r-{n}"}

    api = (
        FakeApi()
        .on(
            "POST",
            "/queues/q/receive",
            ok({"messages": [message(n) for n in range(10)]}),
            ok({"messages": [message(n) for n in range(10, 12)]}),
        )
        .on("POST", "/queues/q/ack", ok({"acked": [], "failed": []}))
    )
    result = cli(["consume", "q", "--limit", "12", "--json"], api)
    receives = api.bodies("POST", "/queues/q/receive")
    assert [r["max_messages"] for r in receives] == [10, 2]
    assert all(r["wait_seconds"] == 20 for r in receives)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["message_id"] for m in lines] == [f"m-{n}" for n in range(12)]
    assert sum(len(a["receipts"]) for a in api.bodies("POST", "/queues/q/ack")) == 12
    assert result.stderr == "consumed 12 messages from q\n"


def test_consume_until_empty_stops_at_an_empty_poll() -> None:
    """Given a queue with one message, then none
    When `mqless consume q --until-empty --wait 3` runs
    Then it stops after the empty poll, both polls waiting 3 s, and says it consumed 1 message
    """
    api = (
        FakeApi()
        .on("GET", "/queues/q", ok({"name": "q", "counts": {"visible": 1}}))
        .on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}), ok({"messages": []}))
        .on("POST", "/queues/q/ack", ok({"acked": ["r1.a"], "failed": []}))
    )
    result = cli(["consume", "q", "--until-empty", "--wait", "3"], api)
    assert result.code == 0
    assert result.stderr == "consumed 1 message from q\n"
    assert [r["wait_seconds"] for r in api.bodies("POST", "/queues/q/receive")] == [3, 3]


def test_consume_until_empty_on_an_empty_queue_exits_after_one_short_poll() -> None:
    # Given a queue whose counts show nothing visible, and nothing to receive
    api = (
        FakeApi()
        .on("GET", "/queues/q", ok({"name": "q", "counts": {"visible": 0, "in_flight": 2}}))
        .on("POST", "/queues/q/receive", ok({"messages": []}))
    )
    # When it is drained
    result = cli(["consume", "q", "--until-empty"], api)
    # Then one poll of 2 s (not a 20 s long poll) found it empty, and it exits
    assert (result.code, result.stdout) == (0, "")
    assert result.stderr == "consumed 0 messages from q\n"
    assert [r["wait_seconds"] for r in api.bodies("POST", "/queues/q/receive")] == [2]


def test_consume_until_empty_takes_a_message_sent_but_not_yet_counted() -> None:
    # Given a message just sent: not indexed yet, so the counts show nothing visible, but a
    # poll receives it once the dispatch function has indexed it (0.3-1 s on AWS)
    api = (
        FakeApi()
        .on("GET", "/queues/q", ok({"name": "q", "counts": {"visible": 0}}))
        .on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}), ok({"messages": []}))
        .on("POST", "/queues/q/ack", ok({"acked": ["r1.a"], "failed": []}))
    )
    # When the queue is drained
    result = cli(["consume", "q", "--until-empty", "--json"], api)
    # Then the message is consumed (and acked), not left behind on the counts' word
    assert [json.loads(line)["message_id"] for line in result.stdout.splitlines()] == ["m-1"]
    assert api.bodies("POST", "/queues/q/ack") == [{"receipts": ["r1.a"]}]
    assert result.stderr == "consumed 1 message from q\n"


def test_consume_until_empty_drains_with_short_polls() -> None:
    # Given a queue with one message visible
    api = (
        FakeApi()
        .on("GET", "/queues/q", ok({"name": "q", "counts": {"visible": 1}}))
        .on("POST", "/queues/q/receive", ok({"messages": [MESSAGE]}), ok({"messages": []}))
        .on("POST", "/queues/q/ack", ok({"acked": ["r1.a"], "failed": []}))
    )
    # When it is drained without --wait
    cli(["consume", "q", "--until-empty"], api)
    # Then each poll waits 2 s (longer than a message takes to be indexed), so the last,
    # empty one ends the command within 2 s
    assert [r["wait_seconds"] for r in api.bodies("POST", "/queues/q/receive")] == [2, 2]


def test_ctrl_c_stops_consume_cleanly_after_acking_what_was_printed() -> None:
    """Given a consume that has printed one message when the user presses Ctrl-C during the next
    poll
    When `mqless consume q` runs
    Then it exits 0 and says it consumed 1 message
    """
    calls = {"receive": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/receive"):
            calls["receive"] += 1
            if calls["receive"] > 1:
                raise KeyboardInterrupt
            return ok({"messages": [MESSAGE]})
        return ok({"acked": ["r1.a"], "failed": []})

    result = cli(["consume", "q"], handler)
    assert result.code == 0
    assert result.stderr == "consumed 1 message from q\n"


# ---- ack, nack, extend -----------------------------------------------------------------------


def test_ack_takes_receipts_as_arguments() -> None:
    """Given two receipts given as arguments
    When `mqless ack q r1.a r2.b` runs
    Then both are acked in one request and stdout says "acked 2 messages in q"
    """
    api = FakeApi().on("POST", "/queues/q/ack", ok({"acked": ["r1.a", "r2.b"], "failed": []}))
    result = cli(["ack", "q", "r1.a", "r2.b"], api)
    assert api.bodies("POST", "/queues/q/ack") == [{"receipts": ["r1.a", "r2.b"]}]
    assert (result.code, result.stdout, result.stderr) == (0, "acked 2 messages in q\n", "")


def test_ack_reads_receipts_from_stdin_ten_per_request() -> None:
    # Given 12 receipts piped in, one per line (as `jq -r .receipt` writes them), blank lines
    receipts = [f"r{n}.x" for n in range(12)]
    piped = io.StringIO("\n".join(receipts[:6]) + "\n\n" + "\n".join(receipts[6:]) + "\n")

    def acked(request: httpx.Request) -> httpx.Response:
        return ok({"acked": json.loads(request.content)["receipts"], "failed": []})

    api = FakeApi().on("POST", "/queues/q/ack", acked)
    # When `mqless ack q` reads them
    result = cli(["ack", "q", "--json"], api, stdin=piped)
    # Then they are acked in two requests (the API takes 10 at a time), and all are listed
    assert [len(b["receipts"]) for b in api.bodies("POST", "/queues/q/ack")] == [10, 2]
    assert json.loads(result.stdout) == {"acked": receipts, "failed": []}
    assert result.code == 0


def test_ack_takes_the_json_lines_receive_prints() -> None:
    # Given what `mqless receive q --json` printed, piped in as it is
    piped = io.StringIO(json.dumps(MESSAGE) + "\n" + json.dumps({**MESSAGE, "receipt": "r2.b"}))
    api = FakeApi().on("POST", "/queues/q/ack", ok({"acked": ["r1.a", "r2.b"], "failed": []}))
    # When `mqless ack q` reads it
    result = cli(["ack", "q"], api, stdin=piped)
    # Then each line's receipt is acked
    assert api.bodies("POST", "/queues/q/ack") == [{"receipts": ["r1.a", "r2.b"]}]
    assert result.stdout == "acked 2 messages in q\n"


def test_ack_without_receipts_on_a_terminal_is_a_usage_error() -> None:
    """Given no receipt arguments and stdin a terminal
    When `mqless ack q` runs
    Then it exits 2 without a request, saying to give receipts or pipe them in
    """
    api = FakeApi()
    result = cli(["ack", "q"], api, stdin=TtyStringIO())
    assert (result.code, api.requests) == (2, [])
    assert result.stderr.startswith("mqless: no receipts: give them as arguments or pipe them in")


def test_ack_of_an_empty_pipe_does_nothing_and_succeeds() -> None:
    # Given a receive that found nothing, piped into ack
    api = FakeApi()
    # When `mqless ack q` reads the empty pipe
    result = cli(["ack", "q"], api, stdin=io.StringIO(""))
    # Then no request is made and nothing failed
    assert (result.code, result.stdout, api.requests) == (0, "", [])
    assert result.stderr == "no receipts on stdin: nothing to ack\n"


def test_a_stale_receipt_is_listed_and_the_exit_status_is_1() -> None:
    # Given an API refusing the only receipt (its lease ran out): 409 with each failure listed
    stale = {"id": "r1.a", "error": "stale_receipt", "message": "the lease has expired"}
    refusal = httpx.Response(
        409,
        json={"error": "stale_receipt", "message": "the lease has expired", "acked": [],
              "failed": [stale]},
    )  # fmt: skip
    api = FakeApi().on("POST", "/queues/q/ack", refusal)
    # When it is acked
    result = cli(["ack", "q", "r1.a"], api)
    # Then the failure is named, and the status says something failed
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        "  r1.a: the lease has expired (stale_receipt)\n"
        "mqless: 1 of 1 receipts could not be acked\n"
    )


def test_nack_releases_with_the_delay_given() -> None:
    """Given a leased message's receipt
    When `mqless nack q r1.a --delay 30` runs
    Then the release asks for a 30 s delay and stdout says it is delivered again in 30 s
    """
    api = FakeApi().on("POST", "/queues/q/nack", ok({"released": ["r1.a"], "failed": []}))
    result = cli(["nack", "q", "r1.a", "--delay", "30"], api)
    assert api.bodies("POST", "/queues/q/nack") == [{"receipts": ["r1.a"], "delay_seconds": 30}]
    assert result.stdout == "released 1 message in q: delivered again in 30 s\n"


def test_nack_without_a_delay_redelivers_now() -> None:
    """Given a leased message's receipt
    When `mqless nack q r1.a --json` runs without --delay
    Then the release asks for delay 0 and stdout is the API's answer
    """
    api = FakeApi().on("POST", "/queues/q/nack", ok({"released": ["r1.a"], "failed": []}))
    result = cli(["nack", "q", "r1.a", "--json"], api)
    assert api.bodies("POST", "/queues/q/nack") == [{"receipts": ["r1.a"], "delay_seconds": 0}]
    assert json.loads(result.stdout) == {"released": ["r1.a"], "failed": []}


def test_extend_sets_the_lease_to_the_seconds_given() -> None:
    """Given a leased message's receipt
    When `mqless extend q r1.a --visibility 120` runs
    Then the visibility request asks for 120 s and stdout says the lease changed
    """
    api = FakeApi().on("POST", "/queues/q/visibility", ok({"changed": ["r1.a"], "failed": []}))
    result = cli(["extend", "q", "r1.a", "--visibility", "120"], api)
    assert api.bodies("POST", "/queues/q/visibility") == [
        {"receipts": ["r1.a"], "visibility_timeout": 120}
    ]
    assert result.stdout == "changed 1 lease in q: visible again in 120 s unless acked\n"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["extend", "q", "r1.a"], "the following arguments are required: --visibility"),
        (["extend", "q", "r1.a", "--visibility", "43201"], "argument --visibility: 43201 is not"),
        (["nack", "q", "r1.a", "--delay", "-1"], "argument --delay:"),
    ],
)
def test_settling_flags_out_of_range_are_usage_errors(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an extend without --visibility or over 12 h, or a nack with a negative delay
    # When the command line is parsed
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    # Then the command line is refused, naming the flag
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


# ---- tail ------------------------------------------------------------------------------------


@dataclass
class FakeSocket:
    """Plays the server's frames back, one per recv; records what the client sent."""

    incoming: list[str]
    sent: list[Any] = field(default_factory=list)

    def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    def recv(self, timeout: float | None = None) -> str:
        if not self.incoming:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while waiting
        return self.incoming.pop(0)

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def frame(kind: str, **values: Any) -> dict[str, Any]:
    return {"type": kind, **values}


def test_tail_subscribes_and_prints_messages_from_batches_until_the_limit() -> None:
    """Given a WebSocket server that confirms the subscription, then sends a message and a batch of
    two
    When `mqless tail shop.> --limit 2 --json --ws-url ws://h:1` runs
    Then it connects to that URL, subscribes to /topic/shop.>, prints the first 2 messages (one from
    the batch) and exits 0
    """
    messages = [
        frame("message", destination="/topic/shop.a", message_id=f"t-{n}", body=f"b{n}")
        for n in range(3)
    ]
    socket = FakeSocket(
        [
            json.dumps(frame("subscribed", id="cli")),
            json.dumps(messages[0]),
            json.dumps(frame("batch", frames=messages[1:])),
        ]
    )
    urls: list[str] = []

    def connect(url: str, headers: Mapping[str, str]) -> FakeSocket:
        urls.append(url)
        return socket

    result = cli(
        ["tail", "shop.>", "--limit", "2", "--json", "--ws-url", "ws://h:1"],
        FakeApi(),
        ws=connect,
    )
    assert urls == ["ws://h:1"]
    assert socket.sent == [{"action": "subscribe", "destination": "/topic/shop.>", "id": "cli"}]
    assert [json.loads(line)["message_id"] for line in result.stdout.splitlines()] == ["t-0", "t-1"]
    assert result.code == 0


def test_tail_sends_the_token_in_the_handshake_not_in_the_url() -> None:
    """Given a --token and a WebSocket URL
    When `mqless tail news` connects
    Then the token goes in the handshake's Authorization header and the URL is left as given
    """
    socket = FakeSocket([json.dumps(frame("subscribed"))])
    opened: list[tuple[str, dict[str, str]]] = []

    def connect(url: str, headers: Mapping[str, str]) -> FakeSocket:
        opened.append((url, dict(headers)))
        return socket

    cli(["tail", "news", "--token", "tok", "--ws-url", "ws://h:1"], FakeApi(), ws=connect)
    assert opened == [("ws://h:1", {"Authorization": "Bearer tok"})]


def refused_handshake(status: int) -> Callable[[str, Mapping[str, str]], FakeSocket]:
    reason = {401: "Unauthorized", 403: "Forbidden"}[status]
    response = WsResponse(status, reason, WsHeaders(), f'{{"message":"{reason}"}}'.encode())

    def connect(url: str, headers: Mapping[str, str]) -> FakeSocket:
        raise websockets.InvalidStatus(response)

    return connect


def test_a_handshake_refused_for_want_of_a_token_says_how_to_give_one() -> None:
    """Given a WebSocket handshake answered 401 and no token
    When `mqless tail news` runs
    Then it exits 1, saying to set MQLESS_TOKEN or pass --token
    """
    result = cli(["tail", "news"], FakeApi(), ws=refused_handshake(401))
    assert (result.code, result.stderr) == (
        1,
        "mqless: not authenticated: set MQLESS_TOKEN or pass --token\n",
    )


def test_a_handshake_refused_for_a_bad_token_says_so() -> None:
    """Given a token the WebSocket handshake answers 403
    When `mqless tail news --token old` runs
    Then it exits 1, saying the token was refused
    """
    result = cli(["tail", "news", "--token", "old"], FakeApi(), ws=refused_handshake(403))
    assert (result.code, result.stderr) == (
        1,
        "mqless: forbidden: the token was refused (unknown, revoked or expired?)\n",
    )


def test_a_subscription_the_grants_do_not_cover_is_forbidden() -> None:
    """Given a server that answers the subscribe with a forbidden error frame
    When `mqless tail billing.>` runs
    Then it exits 1 with "forbidden:" and the server's sentence
    """
    refused = frame("error", error="forbidden", message="'alice' may not receive 'billing.>'")
    socket = FakeSocket([json.dumps(refused)])
    result = cli(["tail", "billing.>"], FakeApi(), ws=lambda url, headers: socket)
    assert (result.code, result.stderr) == (
        1,
        "mqless: forbidden: 'alice' may not receive 'billing.>'\n",
    )


def test_ctrl_c_stops_tail_with_a_summary_and_status_0() -> None:
    """Given a tail that has printed one message when the user presses Ctrl-C
    When `mqless tail news.*` stops
    Then it exits 0, prints the body, and says it received 1 message on /topic/news.*
    """
    socket = FakeSocket([json.dumps(frame("subscribed")), json.dumps(frame("message", body="x"))])
    result = cli(["tail", "news.*"], FakeApi(), ws=lambda url, headers: socket)
    assert result.code == 0
    assert result.stderr.endswith("received 1 message on /topic/news.*\n")
    assert "  x" in result.stdout


def test_a_refused_subscription_is_an_error() -> None:
    """Given a server that answers the subscribe with an invalid_request error frame
    When `mqless tail a..b` runs
    Then it exits 1, saying it cannot subscribe and why
    """
    refused = frame("error", error="invalid_request", message="bad destination")
    socket = FakeSocket([json.dumps(refused)])
    result = cli(["tail", "a..b"], FakeApi(), ws=lambda url, headers: socket)
    assert (result.code, result.stderr) == (1, "mqless: cannot subscribe: bad destination\n")


def test_an_unreachable_websocket_gets_the_dev_hint() -> None:
    """Given nothing listening at the default WebSocket URL (connection refused)
    When `mqless tail a` runs
    Then it exits 1, naming ws://127.0.0.1:8081 and how to set another URL
    """

    def refuse(url: str, headers: Mapping[str, str]) -> FakeSocket:
        raise ConnectionRefusedError(111, "Connection refused")

    result = cli(["tail", "a"], FakeApi(), ws=refuse)
    assert result.code == 1
    assert "cannot reach ws://127.0.0.1:8081 (connection refused)" in result.stderr
    assert "set --ws-url or MQLESS_WS_URL" in result.stderr


def test_frames_of_opens_batches() -> None:
    """Given a batch frame of two messages, and a single subscribed frame
    When each is read with frames_of
    Then the batch gives its two frames and the single frame gives itself
    """
    assert frames_of('{"type":"batch","frames":[{"type":"message"},{"type":"message"}]}') == [
        {"type": "message"},
        {"type": "message"},
    ]
    assert frames_of('{"type":"subscribed"}') == [{"type": "subscribed"}]


# ---- queues, stats, purge, redrive -----------------------------------------------------------

STATS = {
    "name": "orders",
    "fifo": False,
    "visible": 1200,
    "in_flight": 3,
    "delayed": 0,
    "oldest_age_seconds": 185,
    "dead_letter_queue": "orders.dlq",
    "dead_letter_visible": 1,
    "consumers": 2,
    "approximate": True,
}


def test_queues_prints_an_aligned_table() -> None:
    """Given stats for an exact queue "a" and an approximate queue "orders"
    When `mqless queues` runs
    Then it prints a header and one row each, approximate counts marked "+", numbers right-aligned
    under their header and no trailing spaces
    """
    small = {**STATS, "name": "a", "visible": 5, "approximate": False, "oldest_age_seconds": None}
    api = FakeApi().on(
        "GET", "/stats", ok({"queues": [STATS, small], "topics": [], "connections": 0})
    )
    result = cli(["queues"], api)
    header, first, second = result.stdout.splitlines()
    assert header.split() == [
        "QUEUE", "TYPE", "VISIBLE", "IN", "FLIGHT", "DELAYED", "OLDEST",
        "DEAD-LETTER", "QUEUE", "DLQ", "VISIBLE", "CONSUMERS",
    ]  # fmt: skip
    assert first.split() == ["a", "standard", "5", "3", "0", "-", "orders.dlq", "1", "2"]
    assert second.split()[:6] == ["orders", "standard", "1200+", "3+", "0+", "3m05s"]
    # numbers are right-aligned under their header, and no line ends in spaces
    assert first.index("5") + 1 == header.index("VISIBLE") + len("VISIBLE")
    assert all(line == line.rstrip() for line in result.stdout.splitlines())


def test_queues_json_is_the_stats_list() -> None:
    """Given the stats overview
    When `mqless queues --json` runs
    Then stdout is the queues list alone
    """
    api = FakeApi().on("GET", "/stats", ok({"queues": [STATS], "topics": [], "connections": 1}))
    assert json.loads(cli(["queues", "--json"], api).stdout) == {"queues": [STATS]}


def test_queues_lists_every_page_of_the_stats() -> None:
    """Given stats paged two queues a page over three queues
    When `mqless queues --json` runs
    Then it asks for each page with the last one's cursor and prints all three
    """
    pages = {
        None: {"queues": [STATS, {**STATS, "name": "p"}], "truncated": True, "cursor": "p"},
        "p": {"queues": [{**STATS, "name": "z"}], "truncated": False, "cursor": None},
    }

    def page(request: httpx.Request) -> httpx.Response:
        return ok({**pages[request.url.params.get("cursor")], "topics": [], "connections": 0})

    api = FakeApi().on("GET", "/stats", page)
    printed = json.loads(cli(["queues", "--json"], api).stdout)
    assert [q["name"] for q in printed["queues"]] == ["orders", "p", "z"]
    assert [r.url.params.get("cursor") for r in api.requests] == [None, "p"]


def test_stats_of_one_queue_reads_its_stats_endpoint() -> None:
    """Given the stats of queue orders
    When `mqless stats orders` runs
    Then it prints the oldest message's age and the dead-letter queue with its visible count
    """
    api = FakeApi().on("GET", "/queues/orders/stats", ok(STATS))
    result = cli(["stats", "orders"], api)
    assert "oldest message     3m05s" in result.stdout
    assert "dead-letter queue  orders.dlq (1 visible)" in result.stdout


def test_stats_overview_shows_topics_and_connections() -> None:
    """Given an overview with a topic pattern, its subscription and 3 connections
    When `mqless stats` runs
    Then it prints the pattern, "eu -> eu-orders" and ends with the WebSocket connection count
    """
    overview = {
        "queues": [STATS],
        "topics": [
            {
                "pattern": "shop.>",
                "subscriptions": [{"name": "eu", "queue": "eu-orders"}],
                "live_subscribers": 2,
            }
        ],
        "connections": 3,
    }
    result = cli(["stats"], FakeApi().on("GET", "/stats", ok(overview)))
    assert "shop.>" in result.stdout
    assert "eu -> eu-orders" in result.stdout
    assert result.stdout.rstrip().endswith("WebSocket connections: 3")


def test_purge_without_yes_and_without_a_terminal_is_refused() -> None:
    """Given no --yes and stdin not a terminal
    When `mqless purge q` runs
    Then it exits 2 without a request
    """
    api = FakeApi().on("POST", "/queues/q/purge", ok({"purged": 3}))
    result = cli(["purge", "q"], api)
    assert result.code == 2
    assert api.requests == []


def test_purge_asks_and_a_no_keeps_the_messages() -> None:
    """Given a queue with 4 visible messages and a terminal that answers "n"
    When `mqless purge q` runs
    Then it asks (naming the count), exits 1 and makes no request but the GET
    """
    api = FakeApi().on("GET", "/queues/q", ok({"counts": {"visible": 4, "in_flight": 0}}))
    result = cli(["purge", "q"], api, stdin=TtyStringIO("n\n"))
    assert result.code == 1
    assert "Delete every message in q (4 visible" in result.stderr
    assert [r.method for r in api.requests] == ["GET"]


def test_purge_yes_purges() -> None:
    """Given --yes
    When `mqless purge q --yes` runs
    Then it purges and says how many messages went
    """
    api = FakeApi().on("POST", "/queues/q/purge", ok({"purged": 3}))
    result = cli(["purge", "q", "--yes"], api)
    assert (result.code, result.stdout) == (0, "purged 3 messages from q\n")


def test_redrive_loops_until_nothing_moves_and_reports_each_failure_once() -> None:
    """Given a dead-letter queue of 2500 whose redrive moves 99, 100, 50, then 0 and fails the same
    message every time
    When `mqless redrive q.dlq --json` runs
    Then it calls four times, the second asking for one more to make up for the known failure,
    reports 249 moved with the failure once, and exits 1
    """
    failure = {"id": "m-9", "error": "redrive_failed", "message": "source queue 'x' is gone"}
    api = (
        FakeApi()
        .on("GET", "/queues/q.dlq", ok({"counts": {"visible": 2500}}))
        .on(
            "POST",
            "/queues/q.dlq/redrive",
            ok({"moved": 99, "failed": [failure]}),
            ok({"moved": 100, "failed": [failure]}),
            ok({"moved": 50, "failed": [failure]}),
            ok({"moved": 0, "failed": [failure]}),
        )
    )
    result = cli(["redrive", "q.dlq", "--json"], api)
    calls = api.bodies("POST", "/queues/q.dlq/redrive")
    assert len(calls) == 4
    # a known failure is met again in every call, so each call asks for one more
    assert calls[1] == {"max_messages": 101}
    assert json.loads(result.stdout) == {"queue": "q.dlq", "moved": 249, "failed": [failure]}
    assert result.code == 1


def test_redrive_max_stops_at_max() -> None:
    # Given a dead-letter queue of 5,000 messages and an API that moves what is asked
    def moved(request: httpx.Request) -> httpx.Response:
        return ok({"moved": json.loads(request.content)["max_messages"], "failed": []})

    api = (
        FakeApi()
        .on("GET", "/queues/q.dlq", ok({"counts": {"visible": 5000}}))
        .on("POST", "/queues/q.dlq/redrive", moved)
    )
    # When at most 150 are redriven to another queue
    result = cli(["redrive", "q.dlq", "--max", "150", "--to", "retry"], api)
    # Then exactly 150 were asked for, in chunks, every one to that queue
    calls = api.bodies("POST", "/queues/q.dlq/redrive")
    assert sum(call["max_messages"] for call in calls) == 150
    assert {call["destination"] for call in calls} == {"retry"}
    assert len(calls) > 1
    assert result.stdout == "moved 150 messages from q.dlq to retry\n"


def test_redrive_counts_as_it_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a dead-letter queue of 12 messages, an API that moves as many as it is asked,
    # and a progress bar that records its steps
    steps: list[int] = []
    monkeypatch.setattr(Tracker, "advance", lambda self, n=1: steps.append(n))
    left = [12]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return ok({"name": "q.dlq", "counts": {"visible": left[0]}})
        moved = min(json.loads(request.content)["max_messages"], left[0])
        left[0] -= moved
        return ok({"moved": moved, "failed": []})

    # When it is redriven
    result = cli(["redrive", "q.dlq"], handler, stderr=TtyStringIO())
    # Then it moved them in small chunks, and the bar advanced with each one, not 0 then 12
    assert result.stdout == "moved 12 messages from q.dlq\n"
    assert steps[:12] == [1] * 12


@pytest.mark.parametrize(
    ("total", "chunk"), [(None, 100), (12, 1), (100, 5), (1000, 50), (10**6, 100)]
)
def test_a_redrive_chunk_keeps_the_progress_moving(total: int | None, chunk: int) -> None:
    """Given a dead-letter queue's size (unknown, small, or large)
    When the redrive chunk is chosen
    Then it is 100 when unknown, else about a twentieth of the size, between 1 and 100
    """
    assert redrive_chunk(total) == chunk


def test_redrive_of_a_queue_that_is_not_a_dead_letter_queue_says_why_and_exits_1() -> None:
    # Given an API that refuses to redrive orders (no queue's dead-letter queue)
    refusal = (
        "'orders' is not a dead-letter queue: no queue names it dead_letter_queue and it is "
        "not a default one (<name>.dlq, <name>.dlq.fifo); redrive moves dead letters back, "
        "use move to relocate a message"
    )
    api = (
        FakeApi()
        .on("GET", "/queues/orders", ok({"counts": {"visible": 3}}))
        .on("POST", "/queues/orders/redrive", problem(409, "not_a_dead_letter_queue", refusal))
    )
    # When `mqless redrive orders` runs
    result = cli(["redrive", "orders"], api)
    # Then it asked once, prints the API's reason as one line, and exits 1
    assert len(api.bodies("POST", "/queues/orders/redrive")) == 1
    assert (result.code, result.stdout, result.stderr) == (1, "", f"mqless: {refusal}\n")


# ---- create, update, delete, browse, move -----------------------------------------------------

QUEUE = {
    "name": "orders",
    "fifo": False,
    "visibility_timeout": 60,
    "max_receive_count": 5,
    "dead_letter_queue": "orders.dlq",
    "retention_seconds": 345600,
    "delay_seconds": 0,
    "shards": 4,
    "created_at": 1795746770127,
    "updated_at": 1795746770127,
    "created_by": "dev",
}
DEAD_LETTERS = {**QUEUE, "name": "orders.dlq", "max_receive_count": None, "dead_letter_queue": None}
NO_QUEUE = problem(404, "queue_not_found", "queue 'orders' does not exist")


def test_create_puts_only_the_settings_named_and_shows_the_result() -> None:
    # Given no queue `orders`
    api = (
        FakeApi().on("GET", "/queues/orders", NO_QUEUE).on("PUT", "/queues/orders", ok(QUEUE, 201))
    )
    # When it is created with two settings, one of them a duration
    result = cli(
        ["create", "orders", "--visibility-timeout", "1m", "--max-receive-count", "5"], api
    )
    # Then only those are sent (the API gives the rest their defaults), and the queue is shown
    assert api.bodies("PUT", "/queues/orders") == [
        {"visibility_timeout": 60, "max_receive_count": 5}
    ]
    assert result.stdout.splitlines() == [
        "created queue orders",
        "queue               orders (standard)",
        "visibility timeout  1m00s",
        "max receive count   5 deliveries, then to orders.dlq",
        "retention           4d00h",
        "delay               0 s",
        "shards              4",
    ]
    assert result.code == 0


def test_create_with_every_setting_flag() -> None:
    """Given no queue jobs
    When `mqless create jobs` runs with a dead-letter queue, retention 1d12h, delay and shards
    Then the PUT holds each setting (retention in seconds) and stdout is the created queue as JSON
    """
    api = FakeApi().on("GET", "/queues/jobs", NO_QUEUE).on("PUT", "/queues/jobs", ok(QUEUE, 201))
    argv = ["create", "jobs", "--dead-letter-queue", "failed", "--retention", "1d12h"]
    argv += ["--delay", "15", "--shards", "8", "--json"]
    result = cli(argv, api)
    assert api.bodies("PUT", "/queues/jobs") == [
        {"dead_letter_queue": "failed", "retention_seconds": 129600, "delay_seconds": 15,
         "shards": 8}
    ]  # fmt: skip
    assert json.loads(result.stdout) == QUEUE


def test_create_with_max_priority_asks_for_priority_lanes_and_shows_them() -> None:
    # Given no queue `jobs`
    lanes = {**QUEUE, "name": "jobs", "shards": 1, "max_priority": 9}
    api = FakeApi().on("GET", "/queues/jobs", NO_QUEUE).on("PUT", "/queues/jobs", ok(lanes, 201))
    # When it is made with --max-priority 9
    result = cli(["create", "jobs", "--max-priority", "9"], api)
    # Then the API is asked for it, and the settings show its ten lanes
    assert api.bodies("PUT", "/queues/jobs") == [{"max_priority": 9}]
    assert "priority lanes      10 (0-9)" in result.stdout.splitlines()
    assert result.code == 0


def test_create_no_dead_letter_asks_for_redelivery_forever() -> None:
    """Given no queue orders
    When `mqless create orders --no-dead-letter` runs
    Then the PUT asks for max_receive_count null and the output says it is redelivered until acked
    or expired
    """
    forever = {**QUEUE, "max_receive_count": None, "dead_letter_queue": None}
    api = (
        FakeApi()
        .on("GET", "/queues/orders", NO_QUEUE)
        .on("PUT", "/queues/orders", ok(forever, 201))
    )
    result = cli(["create", "orders", "--no-dead-letter"], api)
    assert api.bodies("PUT", "/queues/orders") == [{"max_receive_count": None}]
    assert "max receive count   none: redelivered until acked or expired" in result.stdout


def test_create_of_a_queue_that_exists_with_those_settings_changes_nothing() -> None:
    """Given a queue orders that already has a 60 s visibility timeout
    When `mqless create orders --visibility-timeout 60` runs
    Then only the GET is sent, it says the queue already exists, and exits 0
    """
    api = FakeApi().on("GET", "/queues/orders", ok(QUEUE))
    result = cli(["create", "orders", "--visibility-timeout", "60"], api)
    assert [r.method for r in api.requests] == ["GET"]
    assert result.stdout.startswith("queue orders already exists\n")
    assert result.code == 0


def test_create_of_a_queue_that_exists_with_other_settings_is_refused_and_says_how() -> None:
    # Given `orders` with a 60 s visibility timeout
    api = FakeApi().on("GET", "/queues/orders", ok(QUEUE))
    # When it is created again with 30 s
    result = cli(["create", "orders", "--visibility-timeout", "30"], api)
    # Then nothing is replaced, and the message names the setting and the way to change it
    assert [r.method for r in api.requests] == ["GET"]
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        "mqless: queue 'orders' already exists with visibility_timeout 60: change its settings "
        "with `mqless update orders --visibility-timeout`\n"
    )


def test_update_patches_only_the_settings_named() -> None:
    """Given a queue orders
    When `mqless update orders --max-receive-count 3` runs
    Then the PATCH holds only max_receive_count and the output shows 3 deliveries then orders.dlq
    """
    api = FakeApi().on("PATCH", "/queues/orders", ok({**QUEUE, "max_receive_count": 3}))
    result = cli(["update", "orders", "--max-receive-count", "3"], api)
    assert api.bodies("PATCH", "/queues/orders") == [{"max_receive_count": 3}]
    assert result.stdout.splitlines()[0] == "updated queue orders"
    assert "max receive count   3 deliveries, then to orders.dlq" in result.stdout


def test_update_without_a_setting_is_a_usage_error() -> None:
    """Given `mqless update orders` with no setting
    When it runs
    Then it exits 2 without a request, saying to name a setting
    """
    api = FakeApi()
    result = cli(["update", "orders"], api)
    assert (result.code, api.requests) == (2, [])
    assert result.stderr.startswith("mqless: nothing to change: name a setting (")


def test_update_of_a_missing_queue_is_the_apis_sentence() -> None:
    """Given no queue orders (the PATCH is answered 404)
    When `mqless update orders --delay 5` runs
    Then it exits 1 with the API's sentence
    """
    api = FakeApi().on("PATCH", "/queues/orders", NO_QUEUE)
    result = cli(["update", "orders", "--delay", "5"], api)
    assert (result.code, result.stderr) == (1, "mqless: queue 'orders' does not exist\n")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["create", "q", "--visibility-timeout", "12h1s"], "argument --visibility-timeout: 12h1s"),
        (["create", "q", "--retention", "30s"], "argument --retention: 30s is not within 1m-2w"),
        (["create", "q", "--retention", "15d"], "argument --retention: 15d is not within"),
        (["create", "q", "--delay", "901"], "argument --delay: 901 is not within"),
        (["create", "q", "--shards", "65"], "argument --shards: 65 is not within 1-64"),
        (["create", "q", "--max-priority", "10"], "argument --max-priority: 10 is not within 1-9"),
        (["send", "q", "x", "--priority", "10"], "argument --priority: 10 is not within 0-9"),
        (["create", "q", "--max-receive-count", "0"], "argument --max-receive-count: 0"),
        (
            ["create", "q", "--max-receive-count", "3", "--no-dead-letter"],
            "argument --no-dead-letter: not allowed with argument --max-receive-count",
        ),
        (["update", "q", "--visibility-timeout", "soon"], "expected SECONDS or a duration"),
        (["move", "q", "m-1"], "the following arguments are required: --to"),
        (["subscriptions", "create", "t", "s"], "the following arguments are required: --queue"),
        (
            ["subscriptions", "create", "t", "s", "--queue", "q", "--filter", "[1]"],
            "argument --filter: a filter policy is a JSON object",
        ),
        (["browse", "q", "--limit", "101"], "argument --limit: 101 is not within 1-100"),
    ],
)
def test_bad_admin_flags_are_usage_errors(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an admin command line with a setting out of range, flags that exclude each other,
    # a missing required flag or a filter that is not a JSON object
    # When it is parsed
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    # Then the command line is refused before any request, saying which flag and why
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_no_dead_letter_with_a_dead_letter_queue_is_a_usage_error() -> None:
    """Given --no-dead-letter together with --dead-letter-queue
    When `mqless create q` runs
    Then it exits 2, saying --no-dead-letter redelivers forever
    """
    result = cli(["create", "q", "--no-dead-letter", "--dead-letter-queue", "d"], FakeApi())
    assert result.code == 2
    assert "--no-dead-letter redelivers forever" in result.stderr


def test_delete_without_yes_and_without_a_terminal_is_refused() -> None:
    """Given a queue orders, no --yes and stdin not a terminal
    When `mqless delete orders` runs
    Then it exits 2 after only the GET, saying to confirm with --yes
    """
    api = FakeApi().on("GET", "/queues/orders", ok(QUEUE))
    result = cli(["delete", "orders"], api)
    assert result.code == 2
    assert result.stderr == (
        "mqless: delete removes the queue and its messages: confirm with --yes\n"
    )
    assert [r.method for r in api.requests] == ["GET"]


def test_delete_asks_with_the_counts_and_says_the_dead_letter_queue_stays() -> None:
    # Given `orders` holding messages
    counts = {"visible": 4, "in_flight": 1, "delayed": 0, "approximate": False}
    api = (
        FakeApi()
        .on("GET", "/queues/orders", ok({**QUEUE, "counts": counts}))
        .on("DELETE", "/queues/orders", httpx.Response(204))
    )
    # When it is deleted on a terminal, answering yes
    result = cli(["delete", "orders"], api, stdin=TtyStringIO("y\n"))
    # Then the question said what goes and what stays, and only the queue was deleted
    assert result.stderr.startswith(
        "Delete queue orders (4 visible, 1 in flight, 0 delayed) with their messages? "
        "orders.dlq stays: --with-dead-letter-queue deletes it too. [y/N] "
    )
    assert [(r.method, r.url.path) for r in api.requests][-1] == ("DELETE", "/queues/orders")
    assert result.stdout == "deleted orders\n"


def test_delete_answered_no_deletes_nothing() -> None:
    """Given a queue orders and a terminal that answers "n"
    When `mqless delete orders` runs
    Then it exits 1 after only the GET, saying orders was not deleted
    """
    api = FakeApi().on("GET", "/queues/orders", ok(QUEUE))
    result = cli(["delete", "orders"], api, stdin=TtyStringIO("n\n"))
    assert (result.code, [r.method for r in api.requests]) == (1, ["GET"])
    assert result.stderr.endswith("mqless: orders not deleted\n")


def test_delete_with_its_dead_letter_queue_deletes_both() -> None:
    """Given a queue orders whose dead-letter queue orders.dlq serves only it
    When `mqless delete orders --with-dead-letter-queue --yes --json` runs
    Then both are deleted, orders first, and the JSON lists both as deleted and none kept
    """
    api = (
        FakeApi()
        .on("GET", "/queues/orders", ok(QUEUE))
        .on("GET", "/queues", ok({"queues": [QUEUE, DEAD_LETTERS]}))
        .on("GET", "/queues/orders.dlq", ok(DEAD_LETTERS))
        .on("DELETE", "/queues/orders", httpx.Response(204))
        .on("DELETE", "/queues/orders.dlq", httpx.Response(204))
    )
    result = cli(["delete", "orders", "--with-dead-letter-queue", "--yes", "--json"], api)
    deletes = [r.url.path for r in api.requests if r.method == "DELETE"]
    assert deletes == ["/queues/orders", "/queues/orders.dlq"]
    assert json.loads(result.stdout) == {"deleted": ["orders", "orders.dlq"], "kept": []}


def test_delete_keeps_a_dead_letter_queue_that_another_queue_uses() -> None:
    # Given `billing` sending its dead letters to orders.dlq too
    billing = {**QUEUE, "name": "billing"}
    api = (
        FakeApi()
        .on("GET", "/queues/orders", ok(QUEUE))
        .on("GET", "/queues", ok({"queues": [QUEUE, billing]}))
        .on("DELETE", "/queues/orders", httpx.Response(204))
    )
    # When orders is deleted with its dead-letter queue
    result = cli(["delete", "orders", "--with-dlq", "--yes"], api)
    # Then the dead-letter queue stays, and the note says why
    assert [r.url.path for r in api.requests if r.method == "DELETE"] == ["/queues/orders"]
    assert result.stdout == "deleted orders\n"
    assert result.stderr == "orders.dlq stays: also the dead-letter queue of billing\n"


BROWSED = {
    "message_id": "m-1",
    "body": "hello",
    "binary": False,
    "attributes": {},
    "sent_at": 1795746770127,
    "receive_count": 0,
    "state": "visible",
}


def test_browse_shows_a_page_and_says_how_to_get_the_next() -> None:
    """Given a queue page of a visible and an in-flight message, with a next cursor
    When `mqless browse orders --limit 2` runs
    Then it asks for 2, prints each with its body and the lease end of the in-flight one, and stderr
    gives the command for the next page
    """
    leased = {**BROWSED, "message_id": "m-2", "state": "in_flight", "visible_at": 1795746800127}
    api = FakeApi().on(
        "GET", "/queues/orders/messages", ok({"messages": [BROWSED, leased], "cursor": "c-2"})
    )
    result = cli(["browse", "orders", "--limit", "2"], api)
    assert dict(api.requests[0].url.params) == {"limit": "2"}
    header_1, body_1, header_2, _ = result.stdout.splitlines()
    assert header_1.endswith("  m-1") and body_1 == "  hello"
    assert header_2.endswith(f"  m-2  in flight until {timestamp(1795746800127)}")
    assert result.stderr == "more: mqless browse orders --cursor c-2  (or --all)\n"


def test_browse_all_follows_the_cursors_to_the_end() -> None:
    """Given two pages of messages, the first with a cursor
    When `mqless browse orders --all --json` runs
    Then it follows the cursor, prints both messages and says nothing on stderr
    """
    pages = [
        ok({"messages": [BROWSED], "cursor": "c-2"}),
        ok({"messages": [{**BROWSED, "message_id": "m-2"}], "cursor": None}),
    ]
    api = FakeApi().on("GET", "/queues/orders/messages", *pages)
    result = cli(["browse", "orders", "--all", "--json"], api)
    assert [r.url.params.get("cursor") for r in api.requests] == [None, "c-2"]
    assert [json.loads(line)["message_id"] for line in result.stdout.splitlines()] == [
        "m-1",
        "m-2",
    ]
    assert result.stderr == ""


def test_browse_from_a_cursor_and_of_an_empty_queue() -> None:
    """Given a cursor and a page with no messages
    When `mqless browse orders --cursor c-9` runs
    Then the cursor is sent, stdout is empty and stderr says there are no messages
    """
    api = FakeApi().on("GET", "/queues/orders/messages", ok({"messages": [], "cursor": None}))
    result = cli(["browse", "orders", "--cursor", "c-9"], api)
    assert api.requests[0].url.params["cursor"] == "c-9"
    assert (result.stdout, result.stderr) == ("", "no messages in orders\n")


def test_move_sends_the_target_and_copy() -> None:
    """Given a message m-1 in orders
    When `mqless move orders m-1 --to archive --copy` runs
    Then the request holds the target and copy: true, and stdout says it was copied
    """
    api = FakeApi().on("POST", "/queues/orders/messages/m-1/move", ok({"message_id": "m-1"}))
    result = cli(["move", "orders", "m-1", "--to", "archive", "--copy"], api)
    assert api.bodies("POST", "/queues/orders/messages/m-1/move") == [
        {"to": "archive", "copy": True}
    ]
    assert result.stdout == "copied m-1 from orders to archive\n"


def test_move_reads_ids_from_stdin_and_lists_one_that_is_gone() -> None:
    # Given two ids piped in, the second no longer in the queue
    api = (
        FakeApi()
        .on("POST", "/queues/orders/messages/m-1/move", ok({"message_id": "m-1"}))
        .on(
            "POST",
            "/queues/orders/messages/m-2/move",
            problem(404, "message_not_found", "no message 'm-2' in queue 'orders'"),
        )
    )
    # When they are moved
    result = cli(
        ["move", "orders", "--to", "archive", "--json"], api, stdin=io.StringIO("m-1\nm-2\n")
    )
    # Then the first is moved, the second named as failed, and the status is 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"message_id": "m-1", "from": "orders", "to": "archive", "copy": False}
    ]
    assert "m-2: no message 'm-2' in queue 'orders' (message_not_found)" in result.stderr
    assert result.code == 1


# ---- subscriptions -----------------------------------------------------------------------------

SUBSCRIPTION = {
    "topic": "shop.>",
    "name": "eu",
    "queue": "eu-orders",
    "filter_policy": {"region": ["eu"]},
    "created_at": 1795746770127,
    "owner": "dev",
}


def test_subscriptions_of_a_topic_are_a_table_and_the_pattern_is_encoded() -> None:
    """Given a subscription on shop.>
    When `mqless subscriptions list shop.>` runs
    Then the pattern is percent-encoded in the path and a table shows topic, name, queue, filter and
    owner
    """
    api = FakeApi().on("GET", "/topics/shop.>/subscriptions", ok({"subscriptions": [SUBSCRIPTION]}))
    result = cli(["subscriptions", "list", "shop.>"], api)
    assert api.requests[0].url.raw_path == b"/topics/shop.%3E/subscriptions"
    header, row = result.stdout.splitlines()
    assert header.split() == ["TOPIC", "NAME", "QUEUE", "FILTER", "OWNER"]
    assert row.split() == ["shop.>", "eu", "eu-orders", '{"region":["eu"]}', "dev"]


def test_subscriptions_without_a_topic_lists_every_pattern_the_stats_name() -> None:
    """Given stats naming two patterns, one with a subscription
    When `mqless subscriptions list --json` runs
    Then it reads the stats' topics (no queue counted: limit 0), asks only the pattern that
    has subscriptions, and prints its one subscription
    """
    overview = {
        "queues": [],
        "topics": [
            {"pattern": "shop.>", "subscriptions": [{"name": "eu", "queue": "eu-orders"}],
             "live_subscribers": 0},
            {"pattern": "news", "subscriptions": [], "live_subscribers": 2},
        ],
        "connections": 2,
    }  # fmt: skip
    api = (
        FakeApi()
        .on("GET", "/stats", ok(overview))
        .on("GET", "/topics/shop.>/subscriptions", ok({"subscriptions": [SUBSCRIPTION]}))
    )
    result = cli(["subscriptions", "list", "--json"], api)
    assert [json.loads(line) for line in result.stdout.splitlines()] == [SUBSCRIPTION]
    assert [r.url.path for r in api.requests] == ["/stats", "/topics/shop.>/subscriptions"]
    assert dict(api.requests[0].url.params) == {"limit": "0"}


def test_subscriptions_create_puts_the_queue_and_the_filter() -> None:
    """Given a topic shop.> with no subscriptions
    When `mqless subscriptions create shop.> eu --queue eu-orders --filter ...` runs
    Then the PUT holds the queue and the parsed filter, and stdout says what was created
    """
    api = (
        FakeApi()
        .on("GET", "/topics/shop.>/subscriptions", ok({"subscriptions": []}))
        .on("PUT", "/topics/shop.>/subscriptions/eu", ok(SUBSCRIPTION, 201))
    )
    argv = ["subscriptions", "create", "shop.>", "eu", "--queue", "eu-orders"]
    result = cli([*argv, "--filter", '{"region": ["eu"]}'], api)
    assert api.bodies("PUT", "/topics/shop.>/subscriptions/eu") == [
        {"queue": "eu-orders", "filter_policy": {"region": ["eu"]}}
    ]
    assert result.stdout == (
        'created subscription eu on shop.> -> eu-orders (filter {"region":["eu"]})\n'
    )


def test_subscriptions_create_never_replaces_another_one_silently() -> None:
    # Given `eu` on shop.> feeding eu-orders
    api = FakeApi().on("GET", "/topics/shop.>/subscriptions", ok({"subscriptions": [SUBSCRIPTION]}))
    # When `eu` is created again to feed another queue
    result = cli(["subscriptions", "create", "shop.>", "eu", "--queue", "other"], api)
    # Then nothing is replaced, and --replace is named
    assert [r.method for r in api.requests] == ["GET"]
    assert result.code == 1
    assert result.stderr == (
        "mqless: subscription 'eu' on shop.> exists, feeding eu-orders with filter "
        '{"region":["eu"]}: replace it with --replace\n'
    )


def test_subscriptions_create_replace_replaces() -> None:
    """Given a subscription eu on shop.> already
    When `mqless subscriptions create ... --queue other --replace` runs
    Then the PUT holds the new queue and no filter, and stdout says it was replaced
    """
    replaced = {**SUBSCRIPTION, "queue": "other", "filter_policy": None}
    api = (
        FakeApi()
        .on("GET", "/topics/shop.>/subscriptions", ok({"subscriptions": [SUBSCRIPTION]}))
        .on("PUT", "/topics/shop.>/subscriptions/eu", ok(replaced, 200))
    )
    result = cli(["subscriptions", "create", "shop.>", "eu", "--queue", "other", "--replace"], api)
    assert api.bodies("PUT", "/topics/shop.>/subscriptions/eu") == [
        {"queue": "other", "filter_policy": None}
    ]
    assert result.stdout == "replaced subscription eu on shop.> -> other\n"


def test_subscriptions_delete() -> None:
    """Given a subscription eu on shop.>, named with its /topic/ prefix
    When `mqless subscriptions delete /topic/shop.> eu` runs
    Then the DELETE goes to the encoded pattern and stdout says its queue stays
    """
    api = FakeApi().on("DELETE", "/topics/shop.>/subscriptions/eu", httpx.Response(204))
    result = cli(["subscriptions", "delete", "/topic/shop.>", "eu"], api)
    assert api.requests[0].url.raw_path == b"/topics/shop.%3E/subscriptions/eu"
    assert result.stdout == "deleted subscription eu on shop.> (its queue stays)\n"


# ---- errors ----------------------------------------------------------------------------------


def test_an_api_problem_is_one_line_and_status_1() -> None:
    """Given an API answering 404 queue_not_found
    When `mqless receive nope` runs
    Then it exits 1 with nothing on stdout and the API's sentence on one line of stderr
    """
    api = FakeApi().on(
        "POST",
        "/queues/nope/receive",
        problem(404, "queue_not_found", "queue 'nope' does not exist"),
    )
    result = cli(["receive", "nope"], api)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == "mqless: queue 'nope' does not exist\n"


@pytest.mark.parametrize(
    ("answer", "token", "said"),
    [
        (
            httpx.Response(401, json={"message": "Unauthorized"}),
            None,
            "not authenticated: set MQLESS_TOKEN or pass --token",
        ),
        (
            httpx.Response(403, json={"message": "Forbidden"}),
            "mqk_x",
            "forbidden: the token was refused (unknown, revoked or expired?)",
        ),
        (
            problem(403, "forbidden", "'alice' may not send 'billing'"),
            "mqk_x",
            "forbidden: 'alice' may not send 'billing'",
        ),
        (
            problem(401, "unauthorized", "this API key was revoked"),
            "mqk_x",
            "not authenticated: this API key was revoked",
        ),
        (
            problem(401, "unauthorized", "no credentials"),
            None,
            "not authenticated: set MQLESS_TOKEN or pass --token",
        ),
    ],
)
def test_a_refused_credential_is_one_sentence_and_status_1(
    answer: httpx.Response, token: str | None, said: str
) -> None:
    """Given a send refused with 401 or 403, by the gateway (bare message) or by mqless (problem),
    with or without a token
    When `mqless send billing x` runs
    Then it exits 1 with one sentence: how to give a token, that the token was refused, or the API's
    reason
    """
    api = FakeApi().on("POST", "/queues/billing/messages", answer)
    result = cli(["send", "billing", "x", *(["--token", token] if token else [])], api)
    assert (result.code, result.stdout, result.stderr) == (1, "", f"mqless: {said}\n")


def test_connection_refused_hints_at_mqless_dev() -> None:
    """Given nothing listening at the default URL (connection refused)
    When `mqless queues` runs
    Then it exits 1, naming the URL and asking whether `mqless dev` is running
    """

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    result = cli(["queues"], refuse)
    assert result.code == 1
    assert result.stderr == (
        "mqless: cannot reach http://127.0.0.1:8080 (connection refused): "
        "is `mqless dev` running? set --url or MQLESS_URL\n"
    )


def test_a_url_without_a_scheme_is_a_usage_error() -> None:
    """Given --url localhost:8080, without a scheme
    When `mqless queues` runs
    Then it exits 2, saying which URL forms it expects
    """
    result = cli(["queues", "--url", "localhost:8080"], FakeApi())
    assert result.code == 2
    assert result.stderr == (
        "mqless: cannot use the URL 'localhost:8080': expected http://HOST[:PORT] or https://...\n"
    )


def test_a_gateways_bare_not_found_names_the_route() -> None:
    """Given an API that routes nothing (a bare {"message": "Not Found"})
    When `mqless stats` runs
    Then it exits 1, naming the method and URL and asking if the API is up to date
    """
    result = cli(["stats"], FakeApi())  # nothing routed: {"message": "Not Found"}
    assert result.code == 1
    assert "Not Found (GET http://127.0.0.1:8080/stats: is this an up-to-date mqless API?)" in (
        result.stderr
    )


def test_a_server_failure_says_the_broker_failed() -> None:
    """Given an API answering 502 with an HTML page
    When `mqless stats` runs
    Then it exits 1, saying the broker failed with HTTP 502
    """
    api = FakeApi().on("GET", "/stats", httpx.Response(502, text="<html>bad gateway</html>"))
    result = cli(["stats"], api)
    assert result.code == 1
    assert result.stderr == "mqless: the broker failed: HTTP 502 Bad Gateway (HTTP 502)\n"


def test_throttling_is_retried_after_the_servers_delay() -> None:
    """Given a purge answered 429 with Retry-After 0, then 200
    When `mqless purge q --yes` runs
    Then it retries once and exits 0
    """
    throttled = httpx.Response(
        429, json={"error": "throttled", "message": "slow down"}, headers={"Retry-After": "0"}
    )
    api = FakeApi().on("POST", "/queues/q/purge", throttled, ok({"purged": 1}))
    result = cli(["purge", "q", "--yes"], api)
    assert result.code == 0
    assert len(api.requests) == 2


# ---- output ----------------------------------------------------------------------------------


def every_route() -> FakeApi:
    """An API answering every route the client commands call, each with a nested document."""
    settled = {"acked": ["r1.a"], "released": ["r1.a"], "changed": ["r1.a"], "failed": []}
    stats = {"queues": [STATS], "topics": [], "connections": 0}
    return (
        FakeApi()
        .on("POST", "/queues/q/messages", ok({"message_id": "m-1"}, 201))
        .on("POST", "/queues/q/messages/batch", ok({"successful": [{"id": "0", "message_id": "m"}],
                                                    "failed": []}))
        .on("POST", "/topics/t/messages", ok({"message_id": "p-1"}, 201))
        .on("POST", "/queues/q/receive", ok({"messages": [MESSAGE, MESSAGE]}))
        .on("POST", "/queues/q/ack", ok(settled))
        .on("POST", "/queues/q/nack", ok(settled))
        .on("POST", "/queues/q/visibility", ok(settled))
        .on("GET", "/stats", ok(stats))
        .on("GET", "/queues/q/stats", ok(STATS))
        .on("GET", "/queues/q", ok({**QUEUE, "name": "q", "counts": {"visible": 1}}))
        .on("GET", "/queues/new", problem(404, "queue_not_found", "no queue 'new'"))
        .on("PUT", "/queues/new", ok(QUEUE, 201))
        .on("PATCH", "/queues/q", ok(QUEUE))
        .on("DELETE", "/queues/q", httpx.Response(204))
        .on("POST", "/queues/q/purge", ok({"purged": 1}))
        .on("POST", "/queues/q/redrive", ok({"moved": 1, "failed": []}),
            ok({"moved": 0, "failed": []}))
        .on("GET", "/queues/q/messages", ok({"messages": [BROWSED, BROWSED], "cursor": None}))
        .on("POST", "/queues/q/messages/m-1/move", ok({"message_id": "m-1"}))
        .on("GET", "/topics/t/subscriptions", ok({"subscriptions": [SUBSCRIPTION]}))
        .on("PUT", "/topics/t/subscriptions/s", ok(SUBSCRIPTION, 201))
        .on("DELETE", "/topics/t/subscriptions/s", httpx.Response(204))
        .on("GET", "/access/principals", ok({"principals": [ALICE, ADMIN]}))
        .on("GET", "/access/principals/alice", ok(ALICE))
        .on("PUT", "/access/principals/alice", ok(ALICE, 201))
        .on("DELETE", "/access/principals/alice", httpx.Response(204))
        .on("POST", "/access/principals/alice/keys", ok(ISSUED, 201))
        .on("GET", "/access/keys", ok({"keys": KEYS}))
        .on("DELETE", "/access/keys/k1", httpx.Response(204))
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "q", "x"],
        ["send", "q", "x", "--count", "1"],
        ["publish", "t", "x"],
        ["receive", "q", "--max", "2"],
        ["receive", "q", "--max", "2", "--ack"],
        ["ack", "q", "r1.a"],
        ["nack", "q", "r1.a"],
        ["extend", "q", "r1.a", "--visibility", "5"],
        ["consume", "q", "--limit", "2"],
        ["queues"],
        ["stats"],
        ["stats", "q"],
        ["create", "new", "--delay", "1"],
        ["update", "q", "--delay", "1"],
        ["delete", "q", "--yes"],
        ["browse", "q"],
        ["move", "q", "m-1", "--to", "r"],
        ["purge", "q", "--yes"],
        ["redrive", "q"],
        ["subscriptions", "list", "t"],
        ["subscriptions", "create", "t", "s", "--queue", "q"],
        ["subscriptions", "delete", "t", "s"],
        ["principals", "list"],
        ["principals", "show", "alice"],
        ["principals", "set", "alice", "--grant", "a=send"],
        ["principals", "delete", "alice"],
        ["keys", "issue", "alice"],
        ["keys", "list"],
        ["keys", "revoke", "k1"],
    ],
    ids=" ".join,
)
def test_json_output_is_one_document_per_line(argv: list[str]) -> None:
    # Given an API answering every route the client commands call
    # When a command runs with --json
    result = cli([*argv, "--json"], every_route())
    # Then it succeeded, and each line of stdout is a whole JSON document (what jq reads)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and result.stdout.endswith("\n")
    for line in lines:
        assert isinstance(json.loads(line), dict | list), line


def test_json_output_stays_clean_while_a_progress_bar_draws_on_a_terminal_stderr() -> None:
    """Given stderr a terminal, so a progress bar draws
    When `mqless send q x --count 3 --json` runs
    Then stdout is still one JSON document (3 sent) and the bar went to stderr
    """
    api = FakeApi().on(
        "POST",
        "/queues/q/messages/batch",
        ok({"successful": [{"id": str(i), "message_id": f"m{i}"} for i in range(3)], "failed": []}),
    )
    stderr = TtyStringIO()
    result = cli(["send", "q", "x", "--count", "3", "--json"], api, stderr=stderr)
    assert json.loads(result.stdout)["sent"] == 3
    assert "send q" in result.stderr  # the bar went to stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal() -> None:
    """Given output whose stderr is not a terminal
    When a progress bar advances
    Then it is never shown and stderr stays empty
    """
    output = Output(io.StringIO(), io.StringIO(), as_json=False)
    with output.progress("work", 10) as bar:
        bar.advance(5)
        assert not bar.shown
    assert output.stderr.getvalue() == ""  # type: ignore[attr-defined]


def test_a_message_for_people_shows_its_headers_and_indents_its_body() -> None:
    """Given a message on /topic/a with a group, a third delivery and a two-line body
    When it is rendered for people
    Then the header line ends with id, destination, group and delivery, the details line lists
    content type and attributes, and each body line is indented
    """
    text = message_text(
        {**MESSAGE, "body": "one\ntwo", "receive_count": 3, "group_id": "g"},
        destination="/topic/a",
    )
    header, details, *body = text.splitlines()
    assert header.endswith("  m-1  /topic/a  group g  delivery 3")
    assert details == "  [content-type=application/json tenant=acme]"
    assert body == ["  one", "  two"]


def test_a_binary_body_is_shown_as_base64_not_raw() -> None:
    """Given a message with a binary body
    When it is rendered for people
    Then its last line shows the base64 text, marked as a binary body
    """
    text = message_text({**MESSAGE, "binary": True, "body": "AAEC/w==", "attributes": {}})
    assert text.splitlines()[-1] == "  <binary body, base64: AAEC/w==>"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (41, "41s"), (185, "3m05s"), (7800, "2h10m"), (273600, "3d04h")],
)
def test_ages_are_short(seconds: int | None, shown: str) -> None:
    """Given an age in seconds (or none)
    When it is rendered
    Then it is "-" or two units at most: 41s, 3m05s, 2h10m, 3d04h
    """
    assert age(seconds) == shown


def test_approximate_counts_read_as_at_least() -> None:
    """Given an approximate count and an exact queue row
    When they are rendered
    Then the approximate count reads "1000+" and the exact one has no "+"
    """
    assert count(1000, approximate=True) == "1000+"
    assert queue_row({**STATS, "approximate": False})[2] == "1200"


# ---- access: principals and keys -------------------------------------------------------------

ALICE = {
    "id": "alice",
    "grants": [
        {"pattern": "orders.*", "actions": ["send", "receive"]},
        {"pattern": "audit", "actions": ["receive"]},
    ],
    "created_at": 1795746770127,
    "updated_at": 1795746770127,
}
ADMIN = {
    "id": "admin",
    "grants": [{"pattern": ">", "actions": ["send", "receive", "admin"]}],
    "created_at": 1795746770127,
    "updated_at": 1795746770127,
}


def test_principals_list_prints_each_with_its_grants_as_set_takes_them() -> None:
    """Given principals alice and admin
    When `mqless principals list` runs
    Then a table lists admin then alice, each grant written as `principals set` takes it
    """
    api = FakeApi().on("GET", "/access/principals", ok({"principals": [ALICE, ADMIN]}))
    result = cli(["principals", "list", "--token", "t"], api)
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["PRINCIPAL", "GRANTS", "UPDATED"]
    assert first.startswith("admin      >=send,receive,admin ")
    assert second.startswith("alice      orders.*=send,receive audit=receive ")
    assert result.code == 0


def test_principals_list_json_is_the_api_document() -> None:
    """Given one principal
    When `mqless principals list --json` runs
    Then stdout is the API's document
    """
    api = FakeApi().on("GET", "/access/principals", ok({"principals": [ALICE]}))
    result = cli(["principals", "list", "--json"], api)
    assert json.loads(result.stdout) == {"principals": [ALICE]}


def test_no_principals_is_a_note_not_a_table() -> None:
    """Given no principals
    When `mqless principals list` runs
    Then stdout is empty and stderr says there are no principals yet
    """
    api = FakeApi().on("GET", "/access/principals", ok({"principals": []}))
    result = cli(["principals", "list"], api)
    assert result.stdout == ""
    assert "no principals yet" in result.stderr


def test_principals_show_lists_one_grant_per_line() -> None:
    """Given principal alice with two grants
    When `mqless principals show alice` runs
    Then it prints the principal, one grant per line, then created and updated
    """
    api = FakeApi().on("GET", "/access/principals/alice", ok(ALICE))
    result = cli(["principals", "show", "alice"], api)
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "principal  alice",
        "grants     orders.*=send,receive",
        "           audit=receive",
    ]
    assert [line.split()[0] for line in lines[3:]] == ["created", "updated"]


def test_an_unknown_principal_is_the_apis_sentence() -> None:
    """Given no principal bob (404)
    When `mqless principals show bob` runs
    Then it exits 1 with the API's sentence
    """
    api = FakeApi().on(
        "GET", "/access/principals/bob", problem(404, "not_found", "no principal 'bob'")
    )
    result = cli(["principals", "show", "bob"], api)
    assert (result.code, result.stderr) == (1, "mqless: no principal 'bob'\n")


def test_principals_set_puts_the_parsed_grants() -> None:
    """Given two --grant flags
    When `mqless principals set alice` runs and the API answers 201
    Then the PUT holds both grants parsed, and stdout says the principal was created with them
    """
    api = FakeApi().on("PUT", "/access/principals/alice", ok(ALICE, 201))
    result = cli(
        [
            "principals",
            "set",
            "alice",
            "--grant",
            "orders.*=send,receive",
            "--grant",
            "audit=receive",
        ],
        api,
    )
    assert api.bodies("PUT", "/access/principals/alice") == [{"grants": ALICE["grants"]}]
    assert result.stdout == "created principal alice: orders.*=send,receive audit=receive\n"
    assert (result.code, result.stderr) == (0, "")


def test_replacing_grants_warns_that_tokens_in_use_keep_theirs_a_while() -> None:
    """Given principal alice already there (the PUT is answered 200)
    When `mqless principals set alice --grant ...` runs
    Then stdout says it was updated and stderr warns of up to 5 minutes before tokens see it
    """
    api = FakeApi().on("PUT", "/access/principals/alice", ok(ALICE, 200))
    result = cli(["principals", "set", "alice", "--grant", "orders.*=send,receive"], api)
    assert result.stdout.startswith("updated principal alice: ")
    assert "up to 5 minutes" in result.stderr


def test_a_principal_id_is_one_encoded_path_segment() -> None:
    """Given a principal id holding ":" and "@"
    When `mqless principals delete jwt:ann@example.com` runs
    Then the id is percent-encoded as one path segment and stdout says its keys were revoked
    """
    api = FakeApi().on("DELETE", "/access/principals/jwt:ann@example.com", httpx.Response(204))
    result = cli(["principals", "delete", "jwt:ann@example.com"], api)
    assert api.requests[0].url.raw_path == b"/access/principals/jwt%3Aann%40example.com"
    assert result.stdout == "deleted principal jwt:ann@example.com and revoked its keys\n"


@pytest.mark.parametrize(
    ("text", "grant"),
    [
        ("orders.*=send,receive", {"pattern": "orders.*", "actions": ["send", "receive"]}),
        (">=admin", {"pattern": ">", "actions": ["admin"]}),
        ("shop.>=Send, receive,send", {"pattern": "shop.>", "actions": ["send", "receive"]}),
        ("jobs.*=send,create", {"pattern": "jobs.*", "actions": ["send", "create"]}),
    ],
)
def test_grants_parse_to_the_apis_document(text: str, grant: dict[str, Any]) -> None:
    """Given a grant written PATTERN=ACTIONS (with spaces, mixed case or a repeated action)
    When it is parsed
    Then it is the API's grant document, actions in lower case and without repeats
    """
    assert parse_grant(text) == grant


def test_the_cli_knows_every_action_the_broker_grants() -> None:
    # Given the broker's actions (the CLI keeps its own list, to start without the core)
    from mqless.domain.access.principals import Action

    # When the CLI's own list is compared with them
    # Then the CLI accepts exactly those
    assert set(ACTIONS) == {action.value for action in Action}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("orders", "expected PATTERN=ACTIONS such as 'orders.*=send,receive', got 'orders'"),
        ("=send", "expected PATTERN=ACTIONS"),
        ("orders.*=", "no actions in 'orders.*='"),
        ("orders.*=send,write", "unknown action 'write' in 'orders.*=send,write'"),
        ("a.>.b=send", "'>' may only come last"),
        ("a..b=send", "has an empty segment"),
        ("ord*=send", "wildcards stand alone in their segment"),
    ],
)
def test_a_malformed_grant_is_refused_before_any_request(
    text: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a malformed --grant (no "=", no pattern, no actions, an unknown action, a bad pattern)
    When `mqless principals set alice` is parsed
    Then it exits 2, saying what is wrong
    """
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["principals", "set", "alice", "--grant", text])
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err


def test_principals_set_needs_a_grant(capsys: pytest.CaptureFixture[str]) -> None:
    """Given `mqless principals set alice` with no --grant
    When it is parsed
    Then it exits, naming --grant
    """
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["principals", "set", "alice"])
    assert exited.value.code == 2  # argparse's usage error
    assert "--grant" in capsys.readouterr().err


ISSUED: dict[str, Any] = {
    "key_id": "0123456789abcdef01234567",
    "token": "mqk_0123456789abcdef01234567_" + "s" * 43,
    "principal": "alice",
    "expires_at": None,
}


def test_keys_issue_prints_the_token_alone_on_stdout() -> None:
    """Given principal alice
    When `mqless keys issue alice` runs
    Then stdout is the token alone, and stderr names the key, says it never expires and is shown
    only now
    """
    api = FakeApi().on("POST", "/access/principals/alice/keys", ok(ISSUED, 201))
    result = cli(["keys", "issue", "alice"], api)
    assert api.bodies("POST", "/access/principals/alice/keys") == [{}]
    assert result.stdout == ISSUED["token"] + "\n"
    assert "issued key 0123456789abcdef01234567 for alice; it never expires" in result.stderr
    assert "shown only now" in result.stderr


def test_keys_issue_with_a_ttl_sends_seconds_and_says_when_it_expires() -> None:
    """Given a --ttl of 30d
    When `mqless keys issue alice` runs
    Then the request asks for 2592000 seconds and stderr gives the expiry time and how far off it is
    """
    expires_at = int(time.time()) + 30 * 86400 - 60  # the API answers a moment later
    answer = ok({**ISSUED, "expires_at": expires_at}, 201)
    api = FakeApi().on("POST", "/access/principals/alice/keys", answer)
    result = cli(["keys", "issue", "alice", "--ttl", "30d"], api)
    assert api.bodies("POST", "/access/principals/alice/keys") == [{"ttl_seconds": 2592000}]
    assert f"; expires {timestamp(expires_at * 1000)} (in 29d23h)\n" in result.stderr


def test_keys_issue_json_is_the_api_answer() -> None:
    """Given principal alice
    When `mqless keys issue alice --json` runs
    Then stdout is the API's answer and stderr is empty
    """
    api = FakeApi().on("POST", "/access/principals/alice/keys", ok(ISSUED, 201))
    result = cli(["keys", "issue", "alice", "--json"], api)
    assert json.loads(result.stdout) == ISSUED
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("90s", 90),
        ("45m", 2700),
        ("12h", 43200),
        ("30d", 2592000),
        ("1d12h", 129600),
        ("2W", 1209600),
    ],
)
def test_durations_are_seconds_or_units(text: str, seconds: int) -> None:
    """Given a duration as plain seconds or with units s, m, h, d, W (combined or upper case)
    When it is parsed
    Then it is that many seconds
    """
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "soon", "12x", "-5", "1.5h", ""])
def test_a_bad_duration_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Given a --ttl that is zero, a word, an unknown unit, negative, fractional or empty
    When `mqless keys issue alice` is parsed
    Then it exits 2, naming --ttl
    """
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["keys", "issue", "alice", "--ttl", text])
    assert exit_info.value.code == 2
    assert "--ttl" in capsys.readouterr().err


KEYS = [
    {
        "key_id": "k2",
        "principal": "bob",
        "created_at": 1795746770127,
        "expires_at": None,
        "revoked": True,
    },
    {
        "key_id": "k1",
        "principal": "alice",
        "created_at": 1795746770127,
        "expires_at": 1000,
        "revoked": False,
    },
    {
        "key_id": "k3",
        "principal": "alice",
        "created_at": 1795746780127,
        "expires_at": None,
        "revoked": False,
    },
]


def test_keys_list_shows_each_keys_status() -> None:
    """Given an expired, an active and a revoked key of two principals
    When `mqless keys list` runs
    Then a table lists them by principal and age, each with its status, and a key that never expires
    says "never"
    """
    api = FakeApi().on("GET", "/access/keys", ok({"keys": KEYS}))
    result = cli(["keys", "list"], api)
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["KEY", "ID", "PRINCIPAL", "CREATED", "EXPIRES", "STATUS"]
    assert [(row[0], row[1], row[-1]) for row in rows[1:]] == [
        ("k1", "alice", "expired"),
        ("k3", "alice", "active"),
        ("k2", "bob", "revoked"),
    ]
    assert rows[3][-2] == "never"


def test_keys_list_of_one_principal_asks_the_api_for_just_those() -> None:
    """Given --principal jwt:ann
    When `mqless keys list --json` runs
    Then the request asks for that principal's keys and stdout is the API's document
    """
    api = FakeApi().on("GET", "/access/keys", ok({"keys": []}))
    result = cli(["keys", "list", "--principal", "jwt:ann", "--json"], api)
    assert api.requests[0].url.params["principal"] == "jwt:ann"
    assert json.loads(result.stdout) == {"keys": []}


def test_keys_revoke_deletes_the_key_and_mentions_the_authorizer_cache() -> None:
    """Given a key id
    When `mqless keys revoke` runs
    Then the key is deleted, stdout says so, and stderr warns of up to 5 minutes of cached
    authorizations
    """
    api = FakeApi().on("DELETE", "/access/keys/0123456789abcdef01234567", httpx.Response(204))
    result = cli(["keys", "revoke", "0123456789abcdef01234567"], api)
    assert [r.method for r in api.requests] == ["DELETE"]
    assert result.stdout == "revoked key 0123456789abcdef01234567\n"
    assert "up to 5 minutes" in result.stderr


def test_access_commands_without_admin_say_what_is_missing() -> None:
    """Given a token without admin on ">" (the API answers 403)
    When `mqless principals list` runs
    Then it exits 1 with "forbidden:" and the API's sentence
    """
    refused = problem(
        403, "forbidden", "'alice' may not manage principals and keys (that needs admin on '>')"
    )
    api = FakeApi().on("GET", "/access/principals", refused)
    result = cli(["principals", "list", "--token", "t"], api)
    assert (result.code, result.stderr) == (
        1,
        "mqless: forbidden: 'alice' may not manage principals and keys (that needs admin on '>')\n",
    )


def test_grants_text_round_trips_through_parse_grant() -> None:
    """Given alice's grants
    When they are written as text and each part is parsed again
    Then the same grants come back
    """
    text = grants_text(ALICE["grants"])
    assert [parse_grant(part) for part in text.split()] == ALICE["grants"]


def test_key_status_and_expiry_phrases() -> None:
    """Given keys with a past expiry and with none, and expiry times
    When their status and expiry are rendered
    Then they read expired, active, "it never expires" and "(in 3h00m)"
    """
    assert key_status({"revoked": False, "expires_at": 99}, now=100) == "expired"
    assert key_status({"revoked": False, "expires_at": None}, now=100) == "active"
    assert expiry(None).startswith("it never expires")
    assert expiry(100 + 3 * 3600, now=100).endswith("(in 3h00m)")


# ---- bootstrap -------------------------------------------------------------------------------


def bootstrap(argv: list[str], session: Any = None) -> Result:
    args = build_parser().parse_args(["bootstrap", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_bootstrap(args, terminal=Terminal(io.StringIO(""), out, err), session=session)
    return Result(code, out.getvalue(), err.getvalue())


def test_bootstrap_writes_an_admin_whose_key_works(stack: Stack, dynamodb: Any) -> None:
    from mqless.assembly import build_access_control
    from mqless.domain.clock import SystemClock

    # Given the destinations table of a deployed stack (moto)
    table = stack.environment("HttpApiFunction")["DESTINATIONS_TABLE"]
    # When the operator bootstraps the deployed table with their AWS credentials
    result = bootstrap(["--table", table, "--region", "us-east-1"])
    # Then a token is printed, and it proves an administrator of everything
    assert result.code == 0, result.stderr
    token = result.stdout.strip()
    principal = build_access_control(dynamodb, table, SystemClock()).principal_for_key(token)
    assert principal.id == "admin"
    assert [(g.pattern, set(g.actions)) for g in principal.grants] == [
        (">", {"send", "receive", "admin"})
    ]
    assert f"for admin (admin of everything) in {table} (us-east-1)" in result.stderr


def test_bootstrap_with_a_ttl_and_json(stack: Stack) -> None:
    """Given a deployed destinations table (moto)
    When `mqless bootstrap --principal ops --ttl 1h --json` runs
    Then it prints a JSON document of an mqk_ token for ops that expires in an hour
    """
    table = stack.environment("HttpApiFunction")["DESTINATIONS_TABLE"]
    before = int(time.time())
    result = bootstrap(["--table", table, "--principal", "ops", "--ttl", "1h", "--json"])
    issued = json.loads(result.stdout)
    assert issued["principal"] == "ops" and issued["token"].startswith("mqk_")
    assert before + 3600 <= issued["expires_at"] <= int(time.time()) + 3600


def test_bootstrap_finds_the_table_in_the_stack(stack: Stack) -> None:
    """Given a stack whose DestinationsTable resource names the deployed table
    When `mqless bootstrap --stack mqless` runs
    Then it exits 0, having written the admin into that table
    """
    table = stack.environment("HttpApiFunction")["DESTINATIONS_TABLE"]
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    stubber = Stubber(cloudformation)
    stubber.add_response(
        "describe_stack_resource",
        {
            "StackResourceDetail": {
                "LogicalResourceId": "DestinationsTable",
                "PhysicalResourceId": table,
                "ResourceType": "AWS::DynamoDB::Table",
                "LastUpdatedTimestamp": datetime.datetime(2026, 1, 1),
                "ResourceStatus": "CREATE_COMPLETE",
            }
        },
        {"StackName": "mqless", "LogicalResourceId": "DestinationsTable"},
    )
    session = SessionWith(cloudformation=cloudformation)
    with stubber:
        result = bootstrap(["--stack", "mqless"], session=session)
    assert result.code == 0, result.stderr
    assert f" in {table} (us-east-1)" in result.stderr


def test_bootstrap_of_a_missing_table_says_which(dynamodb: Any) -> None:
    """Given no table nope in the region
    When `mqless bootstrap --table nope` runs
    Then it exits 1 with nothing on stdout, naming the missing table
    """
    result = bootstrap(["--table", "nope", "--region", "us-east-1"])
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith("mqless: no table 'nope' in this region: ")


def test_bootstrap_of_an_unknown_stack_says_so(aws_env: None) -> None:
    """Given CloudFormation does not know stack gone
    When `mqless bootstrap --stack gone` runs
    Then stderr says it cannot find the stack's destinations table, with CloudFormation's reason
    """
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    stubber = Stubber(cloudformation)
    stubber.add_client_error(
        "describe_stack_resource", "ValidationError", "Stack 'gone' does not exist"
    )
    with stubber:
        result = bootstrap(["--stack", "gone"], session=SessionWith(cloudformation=cloudformation))
    assert result.stderr == (
        "mqless: cannot find the destinations table of stack 'gone': Stack 'gone' does not exist\n"
    )


def test_bootstrap_without_aws_credentials_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Given no AWS credentials anywhere (environment, files, instance metadata)
    When `mqless bootstrap --table t` runs
    Then it exits 1, starting with "no AWS credentials"
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = bootstrap(["--table", "t", "--region", "eu-west-1"])
    assert result.code == 1
    assert result.stderr.startswith("mqless: no AWS credentials: ")


def test_bootstrap_takes_a_table_or_a_stack_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    """Given both --table and --stack
    When `mqless bootstrap` is parsed
    Then it exits 2, saying they are not allowed together
    """
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bootstrap", "--table", "t", "--stack", "s"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@dataclass
class SessionWith:
    """A boto3 session whose CloudFormation client is a stubbed one; the rest as usual."""

    cloudformation: Any

    def client(self, service: str, region_name: str | None = None) -> Any:
        if service == "cloudformation":
            return self.cloudformation
        return boto3.client(service, region_name=region_name or "us-east-1")  # type: ignore[call-overload]
