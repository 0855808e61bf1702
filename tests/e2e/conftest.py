"""Start `mqless dev` as a user does (the `mqless` command, in a subprocess) on free ports.

A template whose routes have authorizers gets a dev token, printed at start; DevServer
reads it, and gives it to clients: `auth_headers()` for HTTP (and WebSocket clients that
can send headers), `authed_ws_url` (`?access_token=`) for WebSocket clients.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
READY = "mqless dev: ready"
DEV_TOKEN = "  dev token "
HTTP_LINE = "  HTTP API "
WS_LINE = "  WebSocket API "
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DevServer:
    """A running `mqless dev`: its URLs and everything it printed so far."""

    process: subprocess.Popen[str]
    http_url: str
    ws_url: str
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)
    token: str | None = None
    """The dev token `mqless dev` printed (None: it printed none, e.g. with --no-auth)."""

    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer <dev token>`; nothing when there is no token."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    @property
    def authed_ws_url(self) -> str:
        """The WebSocket URL with the dev token as `?access_token=` (if there is one)."""
        if self.token is None:
            return self.ws_url
        return f"{self.ws_url}/?access_token={quote(self.token, safe='')}"

    def output(self) -> str:
        self._drain()
        return "\n".join(self.lines)

    def mark(self) -> int:
        """Where the output is now: `wait_for_output(..., after=mark)` reads only what follows
        (a server shared by a module has printed earlier tests' lines)."""
        self._drain()
        return len(self.lines)

    def wait_for_output(self, text: str, timeout: float = 10.0, *, after: int = 0) -> str:
        """Block until a line printed after line `after` contains `text`; return that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            for line in self.lines[after:]:
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"`mqless dev` never printed {text!r}; it printed:\n{self.output()}")

    def _drain(self) -> None:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._drain()
        return int(self.process.returncode)


def _mqless_command() -> list[str]:
    script = Path(sys.executable).with_name("mqless")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "mqless_cli.main"]


def start_dev(template: Path, *extra: str) -> DevServer:
    """Run `mqless dev --template ...` on free ports and wait for its ready line.

    `mqless dev` binds any free ports itself (port 0) and the URLs are read from what it
    prints: a port chosen here and bound there could be taken in between (by another test
    worker's server, or as the local port of some client's connection).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [
            *_mqless_command(),
            "dev",
            "--template",
            str(template),
            "--http-port",
            "0",
            "--ws-port",
            "0",
            # MQLESS_REALISM=aws runs every e2e test under the AWS behaviours moto hides
            *(
                ["--realism", os.environ["MQLESS_REALISM"]]
                if os.environ.get("MQLESS_REALISM")
                else []
            ),
            *extra,
        ],
        cwd=template.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    server = DevServer(process, "", "")
    assert process.stdout is not None
    stream = process.stdout

    def pump() -> None:
        for line in stream:
            server._queue.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        server._drain()
        if any(READY in line for line in server.lines):
            tokens = [line.split()[-1] for line in server.lines if line.startswith(DEV_TOKEN)]
            server.token = tokens[0] if tokens else None
            server.http_url = _printed_url(server.lines, HTTP_LINE)
            server.ws_url = _printed_url(server.lines, WS_LINE)
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"`mqless dev` did not become ready:\n{server.output()}")


def _printed_url(lines: list[str], label: str) -> str:
    """The URL `mqless dev` printed on its `label` line ("" if it printed none)."""
    found = [line.split()[-1] for line in lines if line.startswith(label)]
    return found[0] if found else ""


@pytest.fixture
def dev_server() -> Iterator[Callable[..., DevServer]]:
    """Factory: `dev_server(template_path, *flags)`; every server is stopped afterwards."""
    started: list[DevServer] = []

    def factory(template: Path = ROOT / "template.yaml", *extra: str) -> DevServer:
        server = start_dev(template, *extra)
        started.append(server)
        return server

    yield factory
    for server in started:
        code = server.stop()
        assert code == 0, f"`mqless dev` exited with {code}:\n{server.output()}"


SWEEP_EVERY_SECOND = ("--schedule-rate", "1")
"""`mqless_dev_flags` of a module whose tests wait for the sweeper (scheduled messages fired,
revoked connections closed): it runs each second instead of each minute."""


@pytest.fixture(scope="module")
def mqless_dev_flags() -> tuple[str, ...]:
    """The flags of the module's shared `mqless dev`: none, so its schedules run at the
    template's rate (the sweeper each minute, as on AWS). A module whose tests wait for a
    sweep overrides this fixture to return SWEEP_EVERY_SECOND.

    Not a sweep a second everywhere: each sweep reads every queue on the server, and a shared
    server gathers queues test by test (some 80 in test_cli.py), until its sweeps ran back
    to back and took two thirds of its CPU time, for tests that never wait for one.
    """
    return ()


@pytest.fixture(scope="module")
def mqless_dev(
    request: pytest.FixtureRequest, mqless_dev_flags: tuple[str, ...]
) -> Iterator[DevServer]:
    """One `mqless dev` of the project's own template.yaml, shared by a module's tests.

    What it printed is kept in test-output/mqless-dev-<module>.log, to read after a failure.
    """
    server = start_dev(ROOT / "template.yaml", *mqless_dev_flags)
    yield server
    code = server.stop()
    log = ROOT / "test-output" / f"mqless-dev-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(server.output() + "\n")
    assert code == 0, f"`mqless dev` exited with {code}:\n{server.output()}"


@pytest.fixture
def queues_deleted_after(mqless_dev: DevServer) -> Iterator[None]:
    """Each test's queues are deleted from the module's `mqless dev` when it ends: the next
    test starts with none of them, and what reads every queue stays as cheap as one test's
    queues make it (the console's page of /stats, about one read per index shard of each
    queue it shows; each sweep, once a second under SWEEP_EVERY_SECOND)."""
    yield
    with httpx.Client(
        base_url=mqless_dev.http_url, timeout=30, headers=mqless_dev.auth_headers()
    ) as client:
        left = _queue_names(client)
        while left:  # a queue another one names as its dead-letter queue goes after it
            answers = {name: client.delete(f"/queues/{name}") for name in left}
            refused = {name: a.text for name, a in answers.items() if a.status_code != 204}
            assert len(refused) < len(left), f"queues not deleted: {refused}"
            left = _queue_names(client)


def _queue_names(client: httpx.Client) -> list[str]:
    listed = client.get("/queues")
    listed.raise_for_status()
    return [queue["name"] for queue in listed.json()["queues"]]
