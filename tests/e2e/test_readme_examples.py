"""The README's shell examples, run as written with bash against `mqless dev`.

Each ```sh block of the tour and of the HTTP API sections runs in a fresh bash, as a
reader pastes it into a terminal after the tour's setup: `API` and `MQLESS_TOKEN` set
(the tour's own `API=` and `export MQLESS_TOKEN=` lines are pointed at the test's
server) and the tour's `curl()` function defined. Blocks run in README order against one
`mqless dev`, so what one block makes (queues, messages) is there for the next, as for a
reader who follows along; shell variables are not: a value a block needs (a receipt, an
id, a cursor) must be captured in that block.

Every call `curl` makes is recorded (the README line it ran from, its status, its
answer) by a `curl` found first on PATH that runs the real one. A call must answer the
status its comment promises (`# 201`, `# 204: …`, `# 200 -> {…}`), or a 2xx when none is
promised, and never a 5xx. The JSON keys a comment shows (`# -> {"moved": 3, …}`, also
on the comment lines that continue it) must all be in the answer, at any depth.

Blocks that cannot run here are listed below with the reason, and printed at the end of
the run; a code block that is neither run nor listed fails the inventory test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, DevServer, _mqless_command

README = ROOT / "README.md"
BLOCK_TIMEOUT = 300
"""Seconds a block may run: one that waits for Ctrl-C fails here, it does not hang. Not a
speed limit: the CLI block makes ~50 `mqless` calls, and with `make test`'s 4 workers on a
busy 2-core machine (load 15-20) it ran out of 120 s; alone, at load 8, it took 21 s."""

TOUR = "A 30-second tour"
"""The heading (its start) whose block defines `API`, `MQLESS_TOKEN` and `curl()`."""

NOT_RUN_BY_DESIGN: dict[tuple[str, int], str] = {
    ("The two commands", 1): (
        "`make dev` starts the stack these examples run against and `make test` runs this "
        "very suite"
    ),
    ("JSON protocol", 1): (
        "JavaScript for a browser (or Node with `ws`); tests/e2e/test_websocket_json.py "
        "speaks the JSON protocol"
    ),
    ("STOMP 1.2 (ActiveMQ and RabbitMQ web-STOMP clients)", 1): (
        "an HTML page loading @stomp/stompjs from a CDN; tests/e2e/test_stompjs.py runs "
        "stompjs on Node"
    ),
    ("STOMP 1.2 (ActiveMQ and RabbitMQ web-STOMP clients)", 2): (
        "a stomp.py snippet (needs a `token` and never disconnects); "
        "tests/e2e/test_stomppy.py drives stomp.py"
    ),
    ("STOMP 1.2 (ActiveMQ and RabbitMQ web-STOMP clients)", 3): (
        "a fragment of two stomp.py sessions (requester and responder); "
        "tests/e2e/test_stomppy.py::"
        "test_stomppy_request_reply_through_a_temp_queue_that_goes_with_its_connection "
        "runs the whole exchange"
    ),
    ("Message selectors", 1): (
        "a stomp.py session that needs a STOMP client installed beside the shell; "
        "tests/e2e/test_stomppy.py::test_stomppy_selector_subscription_gets_only_matching_messages "
        "runs the same subscription"
    ),
    ("Scheduled messages", 2): (
        "a stomp.py session; tests/e2e/test_stomppy.py::"
        "test_stomppy_amq_scheduled_delay_period_and_repeat_deliver_on_time runs the same headers"
    ),
    ("CLI", 2): "`mqless bootstrap --stack` writes to a deployed stack's table",
    ("CLI", 3): (
        "runs from the repository's root (template.yaml, events/); tests/e2e/test_invoke.py "
        "runs every file of events/ through `mqless invoke`"
    ),
    ("Deploy", 1): "`sam deploy` needs an AWS account",
    ("Deploy", 2): "`mqless bootstrap --table` and the deployed URLs need a deployed stack",
}
"""Blocks that cannot run on one machine without AWS: (heading, nth code block under it)."""

NOT_RUN_YET: dict[tuple[str, int], str] = {}
"""Shell blocks this runner can run, left out for now: delete an entry to run its block."""


# ---- reading the README ------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    heading: str  # the nearest heading above it, without its #s
    ordinal: int  # 1 for the first code block under that heading
    language: str
    first_line: int  # README line number of its first line of code
    text: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.heading, self.ordinal)

    @property
    def label(self) -> str:
        return f"{self.heading.split(' (')[0]} #{self.ordinal}"


def readme_blocks() -> list[Block]:
    """Every fenced code block of README.md, in order."""
    blocks: list[Block] = []
    heading = ""
    seen: dict[str, int] = {}
    lines = README.read_text().splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("```"):
            language = line[3:].strip()
            end = number + 1
            while not lines[end].startswith("```"):
                end += 1
            seen[heading] = seen.get(heading, 0) + 1
            text = "\n".join(lines[number + 1 : end]) + "\n"
            blocks.append(Block(heading, seen[heading], language, number + 2, text))
            number = end
        number += 1
    return blocks


def blocks_to_run() -> list[Block]:
    """The shell blocks run here: every `sh` block that is not listed as not run."""
    not_run = NOT_RUN_BY_DESIGN.keys() | NOT_RUN_YET.keys()
    return [b for b in readme_blocks() if b.language == "sh" and b.key not in not_run]


# ---- what the examples promise -----------------------------------------------------------


PROMISED_STATUS = re.compile(r"([1-5]\d\d)(?=$|:| ->| \()")
"""A comment that starts with a status: `201`, `204: revoked`, `200 -> {…}`, `201 (…)`."""


@dataclass
class Command:
    """A shell command of a block (one or more lines) and the comments that document it."""

    first_line: int  # README line number
    text: str
    comments: list[str] = field(default_factory=list)

    @property
    def promised_status(self) -> int | None:
        """The status a comment starts with: `# 201`, `# 204: deleted`, `# 200 -> {…}`."""
        for comment in self.comments:
            found = PROMISED_STATUS.match(comment)
            if found:
                return int(found.group(1))
        return None

    @property
    def documented_keys(self) -> set[str]:
        """The JSON keys its comments show (`"moved":`, `"message_id":`, …)."""
        return {k for c in self.comments for k in re.findall(r'"([A-Za-z_]\w*)"\s*:', c)}


def commands(block: Block) -> list[Command]:
    """The block's commands with their comments: those on the command's own lines, and the
    comment lines right below it that start with `->` or a status (lines indented after the
    `#` continue them)."""
    found: list[Command] = []
    current: Command | None = None
    quote: str | None = None
    attaching = False  # the comment lines below `found[-1]` still document it
    for offset, line in enumerate(block.text.splitlines()):
        number = block.first_line + offset
        code, comment = _split_comment(line, quote)
        quote = _open_quote(code, quote)
        if current is None and not code.strip():
            if comment is not None and found and attaching:
                comment = comment.removeprefix(" ")  # `# -> …`; `#     …` continues it
                if comment.startswith(("->", " ")) or PROMISED_STATUS.match(comment):
                    found[-1].comments.append(comment.strip())
                    continue
            attaching = False
            continue
        if current is None:
            current = Command(number, "")
        current.text += line + "\n"
        if comment is not None:
            current.comments.append(comment.strip())
        if quote is None and not code.rstrip().endswith("\\"):
            found.append(current)
            current, attaching = None, True
    return found


def _split_comment(line: str, quote: str | None) -> tuple[str, str | None]:
    """The line's code and its comment (the text after a `#` that starts a word outside
    quotes), given the quote open at its start."""
    escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index], line[index + 1 :]
    return line, None


def _open_quote(code: str, quote: str | None) -> str | None:
    """The quote still open at the end of `code`, given the one open at its start."""
    escaped = False
    for char in code:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
    return quote


# ---- running a block ---------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call the block's `curl` made."""

    line: int  # README line number of the command that made it
    status: int
    answer: str


RECORDING_CURL = """#!/bin/bash
# The real curl, with every call recorded for test_readme_examples: the README line it ran
# from, the response headers and what it printed.
call=$(mktemp "$README_CALLS/call.XXXXXXXX")
echo "$README_LINE" > "$call.line"
{real} "$@" -D "$call.headers" > "$call.out"
status=$?
cat "$call.out"
exit $status
"""


def debian_command(command: str) -> str:
    """The path of a command from the Debian package of that name, installed when missing."""
    path = shutil.which(command)
    if path is not None:
        return path
    install = ["apt-get", "install", "-y", "--no-install-recommends", command]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.fail(f"`{command}` is missing; installing it needs root or sudo", pytrace=False)
        install = ["sudo", "-n", *install]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        update = [*install[: install.index("apt-get") + 1], "update"]
        subprocess.run(update, env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"could not install Debian's {command} for the README examples:\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def shell_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory to put first on PATH: the recording `curl`, and `mqless`."""
    directory = tmp_path_factory.mktemp("readme-bin")
    debian_command("jq")  # the README says the examples need it
    real_curl = debian_command("curl")
    tools = {
        "curl": RECORDING_CURL.format(real=real_curl),
        "mqless": "#!/bin/sh\nexec " + " ".join(_mqless_command()) + ' "$@"\n',
    }
    for name, script in tools.items():
        path = directory / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def tour_setup(server: DevServer) -> tuple[str, str]:
    """The tour's block with its URL and token lines pointed at `server`, and the tour's
    `curl()` line (the setup every other block starts from)."""
    tour = next(b for b in readme_blocks() if b.heading.startswith(TOUR))
    assert server.token is not None, "the examples need the dev token `mqless dev` prints"
    text, url_lines = re.subn(r"(?m)^API=\S+", f"API={server.http_url}", tour.text)
    text, token_lines = re.subn(
        r"(?m)^export MQLESS_TOKEN=\S+", f"export MQLESS_TOKEN={server.token}", text
    )
    function = re.findall(r"(?m)^curl\(\) \{.*\}.*$", tour.text)
    assert (url_lines, token_lines, len(function)) == (1, 1, 1), (
        "the tour no longer sets API= and export MQLESS_TOKEN= on a line each, and defines "
        f"curl() on one line:\n{tour.text}"
    )
    return text, function[0]


def run_block(block: Block, server: DevServer, tools: Path, workdir: Path) -> list[Call]:
    """Run the block with bash (`set -euo pipefail`) and return the calls its curl made."""
    tour_text, curl_function = tour_setup(server)
    if block.heading.startswith(TOUR):
        prelude, body = [], tour_text
    else:
        prelude = [f"API={server.http_url}", f"export MQLESS_TOKEN={server.token}", curl_function]
        body = block.text
    prelude += ["set -euo pipefail", "export README_LINE", "trap 'README_LINE=$LINENO' DEBUG"]
    script = "\n".join(prelude) + "\n" + body
    line_offset = block.first_line - len(prelude) - 1  # LINENO -> README line
    calls_dir = workdir / ".calls"
    calls_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MQLESS_"))}
    env.update(
        PATH=f"{tools}{os.pathsep}{env.get('PATH', '')}",
        README_CALLS=str(calls_dir),
        MQLESS_URL=server.http_url,
        MQLESS_WS_URL=server.ws_url,
    )
    try:
        result = subprocess.run(
            ["bash", "-c", script, f"README.md:{block.first_line}"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where(block)} did not finish in {BLOCK_TIMEOUT} s", pytrace=False)
    assert result.returncode == 0, (
        f"{where(block)} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    calls = []
    for marker in sorted(calls_dir.glob("call.????????"), key=lambda p: p.stat().st_mtime_ns):
        statuses = re.findall(r"(?m)^HTTP/\S+ (\d{3})", _read(Path(f"{marker}.headers")))
        line = _read(Path(f"{marker}.line")).strip()
        calls.append(
            Call(
                line=int(line) + line_offset if line else 0,
                status=int(statuses[-1]) if statuses else 0,
                answer=_read(Path(f"{marker}.out")).strip(),
            )
        )
    return calls


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def where(block: Block) -> str:
    return f"README.md line {block.first_line} ({block.label})"


def json_keys(value: Any) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in json_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in json_keys(v)}
    return set()


def broken_promises(block: Block, calls: list[Call]) -> list[str]:
    """What the block's calls did that its text does not promise (empty: all as written)."""
    problems = [f"line {c.line}: a {c.status} ({c.answer[:300]})" for c in calls if c.status >= 500]
    for command in commands(block):
        made = [c for c in calls if c.line == command.first_line]
        shown = command.text.strip().splitlines()[0]
        defines_curl = command.text.lstrip().startswith("curl()")
        if not made and not defines_curl and re.search(r"(^|[\s(|;])curl\s", command.text):
            problems.append(f"line {command.first_line}: made no call: {shown}")
        promised = command.promised_status
        for call in made:
            if promised is not None and call.status != promised:
                problems.append(
                    f"line {call.line}: {shown}\n  answered {call.status}, the comment promises "
                    f"{promised}: {call.answer[:300]}"
                )
            elif promised is None and not 200 <= call.status < 300:
                problems.append(
                    f"line {call.line}: {shown}\n  answered {call.status}: {call.answer[:300]}"
                )
            if command.documented_keys:
                try:
                    missing = command.documented_keys - json_keys(json.loads(call.answer))
                except json.JSONDecodeError:
                    missing = command.documented_keys
                if missing:
                    problems.append(
                        f"line {call.line}: {shown}\n  the answer lacks {sorted(missing)} that "
                        f"the comment shows: {call.answer[:300]}"
                    )
    return problems


# ---- the tests ---------------------------------------------------------------------------


class NotRunReport:
    """Prints the README blocks that were not run, and why, at the end of the session."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("README code blocks NOT run (not counted as passing)")
        for listing, kind in ((NOT_RUN_BY_DESIGN, "by design"), (NOT_RUN_YET, "not yet")):
            for (heading, ordinal), reason in listing.items():
                terminalreporter.write_line(f"{kind:>9}: {heading} #{ordinal}: {reason}")


@pytest.fixture(scope="module", autouse=True)
def report_blocks_not_run(request: pytest.FixtureRequest) -> Iterator[None]:
    manager = request.config.pluginmanager
    if not manager.has_plugin("readme-blocks-not-run"):
        manager.register(NotRunReport(), "readme-blocks-not-run")
    yield


def test_every_readme_code_block_is_run_or_listed_with_the_reason_it_is_not() -> None:
    # Given the README's fenced code blocks (the unlabelled one is printed output, not code)
    code = [b for b in readme_blocks() if b.language]
    # When they are checked against the blocks run here and the lists of blocks not run
    listed = NOT_RUN_BY_DESIGN.keys() | NOT_RUN_YET.keys()

    # Then each is a shell block that runs here, or is listed with a reason; nothing listed
    # is missing from the README (a renamed heading or a removed block updates the lists)
    unaccounted = [
        f"{b.label} ({b.language})" for b in code if b.language != "sh" and b.key not in listed
    ]
    assert unaccounted == [], f"code blocks neither run nor listed with a reason: {unaccounted}"
    stale = sorted(listed - {b.key for b in code})
    assert stale == [], f"listed as not run but not in README.md: {stale}"
    assert all(reason.strip() for reason in {**NOT_RUN_BY_DESIGN, **NOT_RUN_YET}.values())
    assert len(blocks_to_run()) >= 9, "the tour and the HTTP API sections' blocks all run"


@pytest.mark.parametrize("block", blocks_to_run(), ids=lambda b: b.label)
def test_readme_example_runs_as_written(
    block: Block, mqless_dev: DevServer, shell_tools: Path, tmp_path: Path
) -> None:
    # Given `mqless dev`, and a shell set up as the tour sets one up
    # When the README's block runs as written
    calls = run_block(block, mqless_dev, shell_tools, tmp_path)

    # Then every call answers what its comment promises (a 2xx otherwise), never a 5xx,
    # with the JSON keys the comment shows
    assert calls or "curl" not in block.text, f"{where(block)} made no HTTP call"
    problems = broken_promises(block, calls)
    assert problems == [], f"{where(block)}:\n" + "\n".join(problems)
