"""`mqless invoke FUNCTION -e events/<file>.json`: `sam local invoke` without Docker.

Every sample event in events/ is invoked through the command against a running
`mqless dev` (found at MQLESS_URL, with its dev token); a fresh stack is tried in a
subprocess, as a user runs it with no `mqless dev` about.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqless_cli.main import main
from tests.e2e.conftest import ROOT, DevServer, _mqless_command, free_port

EVENTS = sorted((ROOT / "events").glob("*.json"))
FUNCTION_OF_PREFIX = {
    "ws_": "WebSocketFunction",
    "dispatch_": "DispatchFunction",
    "sweeper_": "SweeperFunction",
    "authorizer_": "AuthorizerFunction",
}
"""events/ names each sample for its function (tests/component/test_events.py checks it);
every other file is an HTTP API request for HttpApiFunction."""
RUNTIME_LINES = re.compile(
    r"START RequestId: (?P<id>\S+) Version: \$LATEST\n(?:.*\n)*?END RequestId: (?P=id)\n"
    r"REPORT RequestId: (?P=id)\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: \d+ MB\n"
)


def function_for(event: Path) -> str:
    prefix = next((p for p in FUNCTION_OF_PREFIX if event.name.startswith(p)), None)
    return FUNCTION_OF_PREFIX[prefix] if prefix else "HttpApiFunction"


def dev_env(server: DevServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MQLESS_"))}
    env.update(MQLESS_URL=server.http_url)
    if server.token:
        env["MQLESS_TOKEN"] = server.token
    return env


def invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`mqless invoke ARGS` as a user runs it, from the project's folder."""
    return subprocess.run(
        [*_mqless_command(), "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def answer_of(stdout: str) -> Any:
    """The function's answer: what stdout holds, one line of JSON."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, stdout
    return json.loads(stdout)


@pytest.mark.parametrize("event", EVENTS, ids=lambda p: p.stem)
def test_every_sample_event_runs_through_mqless_invoke(
    event: Path,
    mqless_dev: DevServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given `mqless dev` running, found as a user finds it (MQLESS_URL, MQLESS_TOKEN)
    monkeypatch.setenv("MQLESS_URL", mqless_dev.http_url)
    monkeypatch.setenv("MQLESS_TOKEN", mqless_dev.token or "")
    monkeypatch.chdir(ROOT)
    # When the sample is invoked with the function it is for
    code = main(["invoke", function_for(event), "-e", f"events/{event.name}"])
    printed = capsys.readouterr()
    # Then the function answered (no unhandled error), on stdout as one line of JSON, with
    # the runtime's START, END and REPORT lines on stderr; an HTTP answer is never a 5xx
    assert code == 0, printed
    answer = answer_of(printed.out)
    assert "errorType" not in answer, answer
    assert RUNTIME_LINES.search(printed.err), printed.err
    if isinstance(answer, dict) and "statusCode" in answer:
        assert answer["statusCode"] < 500, answer


def test_invoke_runs_against_the_running_dev_state(mqless_dev: DevServer, tmp_path: Path) -> None:
    # Given a queue in `mqless dev` holding a message, sent through its HTTP API
    queue = f"invoke-{os.getpid()}"
    sent = httpx.post(
        f"{mqless_dev.http_url}/queues/{queue}/messages",
        json={"body": "hello"},
        headers=mqless_dev.auth_headers(),
    )
    assert sent.status_code == 201, sent.text
    deadline = time.monotonic() + 10  # receivable (and counted) once indexed
    while time.monotonic() < deadline:
        stats_url = f"{mqless_dev.http_url}/queues/{queue}/stats"
        if httpx.get(stats_url, headers=mqless_dev.auth_headers()).json()["visible"] == 1:
            break
        time.sleep(0.05)
    # ... and the stats sample event rewritten for that queue
    sample = (ROOT / "events" / "queue_stats.json").read_text()
    event = tmp_path / "stats.json"
    event.write_text(sample.replace("/queues/orders/", f"/queues/{queue}/").replace(
        '"name": "orders"', f'"name": "{queue}"'
    ))  # fmt: skip
    # When it is invoked with no other flag than the event
    result = invoke("HttpApiFunction", "-e", str(event), env=dev_env(mqless_dev))
    # Then the function ran inside `mqless dev`: it sees the queue and the message there
    assert result.returncode == 0, result.stderr
    answer = answer_of(result.stdout)
    assert answer["statusCode"] == 200
    stats = json.loads(answer["body"])
    assert (stats["name"], stats["visible"]) == (queue, 1)
    assert f"in `mqless dev` at {mqless_dev.http_url}" in result.stderr
    assert RUNTIME_LINES.search(result.stderr), result.stderr


def test_without_a_running_dev_invoke_uses_a_fresh_stack() -> None:
    # Given no `mqless dev` where MQLESS_URL points
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MQLESS_"))}
    env["MQLESS_URL"] = f"http://127.0.0.1:{free_port()}"
    # When a sample is invoked
    result = invoke("HttpApiFunction", "-e", "events/queues_list.json", env=env)
    # Then it ran in a fresh, empty stack: the list of queues is empty, answered as
    # `sam local invoke` prints it
    assert result.returncode == 0, result.stderr
    answer = answer_of(result.stdout)
    assert (answer["statusCode"], json.loads(answer["body"])) == (200, {"queues": []})
    assert f"no `mqless dev` at {env['MQLESS_URL']}: invoking in a fresh stack" in result.stderr
    assert RUNTIME_LINES.search(result.stderr), result.stderr


def test_an_unhandled_error_prints_the_runtimes_error_document_and_exits_1() -> None:
    # Given an event the function cannot take (an HTTP API request without its context)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MQLESS_"))}
    # When it is invoked in a fresh stack
    result = invoke("HttpApiFunction", "--no-event", "--fresh", env=env)
    # Then stdout holds the Python runtime's error document, and the status says it failed
    assert result.returncode == 1, result.stderr
    answer = answer_of(result.stdout)
    assert answer["errorType"] == "KeyError"
    assert answer["errorMessage"] == "'requestContext'"
    assert all("mqless_cli/local" not in frame for frame in answer["stackTrace"])


def test_invoke_needs_the_dev_token_and_names_the_functions(mqless_dev: DevServer) -> None:
    # Given a running `mqless dev` and a made-up token
    env = {**dev_env(mqless_dev), "MQLESS_TOKEN": "mqk_made_up"}
    # When a function is invoked with it, or a function the template lacks
    refused = invoke("HttpApiFunction", "-e", "events/queues_list.json", env=env)
    unknown = invoke("NoSuchFunction", env=dev_env(mqless_dev))
    # Then the first is refused (any event to any function would pass every authorizer),
    # and the second is a usage mistake that lists the template's functions
    assert refused.returncode == 1
    assert "needs its dev token" in refused.stderr
    assert unknown.returncode == 2
    assert "the functions are AuthorizerFunction, DispatchFunction, HttpApiFunction" in (
        unknown.stderr
    )
