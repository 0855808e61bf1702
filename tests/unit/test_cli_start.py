"""What a `mqless` command loads before it answers: every command starts a new interpreter
(a user's shell, the e2e tests' ~130 subprocesses), so a module it does not need costs on
every run. `mqless dev`, `invoke`, `tail`, `bootstrap` and the tables load theirs when used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The stack's code and the libraries no client command needs to start or to make a call.
HEAVY = ("boto3", "botocore", "moto", "mqless", "pydantic", "rich", "websockets", "yaml")

_RUN_MAIN = """
import contextlib, io, json, sys
from mqless_cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
loaded = sorted({name.split(".")[0] for name, module in sys.modules.items() if module})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def _loaded_by(*argv: str, url: str | None = None) -> tuple[int, set[str]]:
    """A command's exit status and the top-level packages loaded when it ended, run in a new
    interpreter as the `mqless` script runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQLESS_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT / "cli")])
    if url:
        env["MQLESS_URL"] = url
    result = subprocess.run(
        [sys.executable, "-c", _RUN_MAIN, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    return report["code"], set(report["loaded"])


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_help_starts_without_an_http_client() -> None:
    # Given the `mqless` command
    # When `mqless --help` runs
    code, loaded = _loaded_by("--help")
    # Then it exits 0 having loaded neither httpx nor anything heavy
    assert code == 0
    assert not loaded & {"httpx", "httpcore", *HEAVY}


def test_a_usage_mistake_is_refused_without_an_http_client() -> None:
    # Given a send with a negative delay
    # When it runs
    code, loaded = _loaded_by("send", "q", "x", "--delay", "-1")
    # Then it exits 2 before loading httpx
    assert code == 2
    assert not loaded & {"httpx", "httpcore", *HEAVY}


def test_a_client_command_loads_its_http_client_and_nothing_heavy() -> None:
    # Given a URL nobody listens on
    url = _closed_port_url()
    # When `mqless queues --json` calls it
    code, loaded = _loaded_by("queues", "--json", url=url)
    # Then it made its call with httpx (exit 1: unreachable) and loaded no stack or table code
    assert code == 1
    assert "httpx" in loaded
    assert not loaded & set(HEAVY)


_RUN_AS_PROGRAM = """
import contextlib, gc, io, json, sys
from mqless_cli.main import main
sys.argv = ["mqless", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def _run_as_program(*argv: str) -> subprocess.CompletedProcess[str]:
    """`mqless <argv>` run from the command line in a new interpreter (`_RUN_AS_PROGRAM`)."""
    return subprocess.run(
        [sys.executable, "-c", _RUN_AS_PROGRAM, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "cli")},
        timeout=60,
        check=True,
    )


def test_a_command_line_run_leaves_its_objects_out_of_the_shutdown_collections() -> None:
    # Given `mqless --help` run from the command line (main() reads sys.argv)
    # When it has answered
    result = _run_as_program("--help")
    # Then what its imports made is frozen: the interpreter's shutdown collections skip it
    report = json.loads(result.stdout)
    assert report["frozen"] > 10_000
    assert report["tracked"] < 1_000


def test_mqless_dev_from_the_command_line_freezes_nothing() -> None:
    # Given `mqless dev` run from the command line, ending at once (both ports 9000)
    # When it has answered
    result = _run_as_program("dev", "--http-port", "9000", "--ws-port", "9000")
    # Then it said why and left every object to the shutdown's collections, as a server does
    assert "--http-port and --ws-port are both 9000" in result.stderr
    assert json.loads(result.stdout)["frozen"] == 0


def test_main_called_with_arguments_freezes_nothing() -> None:
    # Given a caller in this process (a test, a script) that passes the arguments
    import gc

    from mqless_cli.main import main

    before = gc.get_freeze_count()
    # When it runs a command that ends in a usage mistake
    with pytest.raises(SystemExit):
        main(["send", "q", "x", "--delay", "-1"])
    # Then the caller's objects stay in the collector's sight
    assert gc.get_freeze_count() == before
