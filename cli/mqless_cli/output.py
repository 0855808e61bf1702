"""What the client commands print: human text and tables, or JSON; progress on stderr.

Results go to stdout, notes and the progress bar to stderr, so `--json` output and
redirected output stay clean. The progress bar (rich) is drawn only when stderr is a
terminal; while it is drawn, lines for a terminal stdout are printed above it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

# rich is imported where a table or a progress bar is drawn, not at start: most commands
# print lines or JSON only, and importing rich's console, table and progress modules is a
# good part of the start-up of every `mqless` command.
if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

# Tables written to a pipe or file are never wrapped to a guessed terminal width.
PIPE_WIDTH = 10_000


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Output:
    """One command's output streams and mode (`--json` or human)."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, as_json: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.as_json = as_json
        self._progress: Progress | None = None

    # ---- results (stdout) ------------------------------------------------------------------

    def document(self, document: Any) -> None:
        """A JSON document of a command's `--json` output: one line, whole (what jq reads)."""
        self._write(json.dumps(document, ensure_ascii=False, separators=(",", ":")))

    def line(self, text: str = "") -> None:
        self._write(text)

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, show_header: bool = True
    ) -> None:
        """Aligned columns; a header starting with `>` makes its column right-aligned."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False, show_header=show_header)
        for header in headers:
            right = header.startswith(">")
            table.add_column(
                header.removeprefix(">"), justify="right" if right else "left", no_wrap=True
            )
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        width = self._terminal_width() if _is_terminal(self.stdout) else PIPE_WIDTH
        buffer = io.StringIO()
        Console(file=buffer, width=width, no_color=True, highlight=False).print(table)
        for line in buffer.getvalue().splitlines():
            self._write(line.rstrip())

    def _terminal_width(self) -> int:
        from rich.console import Console

        return Console(file=self.stdout).width

    def _write(self, text: str) -> None:
        if self._progress is not None and _is_terminal(self.stdout):
            # the same screen as the bar: print above it, never through it
            self._progress.console.out(text, highlight=False)
            return
        self.stdout.write(text + "\n")
        self.stdout.flush()

    # ---- notes (stderr) --------------------------------------------------------------------

    def note(self, text: str) -> None:
        """A human remark (what was done, what is going on): stderr, never in the results."""
        if self._progress is not None:
            self._progress.console.out(text, highlight=False)
            return
        self.stderr.write(text + "\n")
        self.stderr.flush()

    # ---- progress (stderr, terminals only) -------------------------------------------------

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Tracker]:
        """A progress bar with rate and ETA while the block runs, when stderr is a terminal."""
        if not _is_terminal(self.stderr) or self._progress is not None:
            yield Tracker(None, None)
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            rate_column(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=self.stderr, highlight=False),
            redirect_stdout=False,
            redirect_stderr=False,
            speed_estimate_period=10.0,
        )
        task = progress.add_task(description, total=total)
        self._progress = progress
        try:
            with progress:
                yield Tracker(progress, task)
        finally:
            self._progress = None


class Tracker:
    """Advances a progress bar; does nothing when none is shown."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress = progress
        self._task = task

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def advance(self, count: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def total(self, total: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)


def rate_column() -> ProgressColumn:
    """A progress bar's column of items per second (defined here: rich loads on first use)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("  -- msg/s", style="progress.data.speed")
            return Text(f"{speed:7.1f} msg/s", style="progress.data.speed")

    return RateColumn()


# ---- formatting ------------------------------------------------------------------------------


def timestamp(epoch_ms: object) -> str:
    """Local date and time of an epoch-milliseconds stamp."""
    if not isinstance(epoch_ms, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_ms / 1000))


def age(seconds: object) -> str:
    """A short duration: `41s`, `3m05s`, `2h10m`, `3d04h`; `-` for none."""
    if not isinstance(seconds, int | float):
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def expires(epoch_seconds: object) -> str:
    """When an API key expires (the API gives epoch seconds, as the table's TTL needs)."""
    if not isinstance(epoch_seconds, int | float):
        return "never"
    return timestamp(epoch_seconds * 1000)


def expiry(epoch_seconds: object, *, now: float | None = None) -> str:
    """An API key's expiry as a phrase: `expires 2026-01-31 12:00:00 (in 30d00h)`."""
    if not isinstance(epoch_seconds, int | float):
        return "it never expires (revoke it with `mqless keys revoke KEY_ID`)"
    left = epoch_seconds - (time.time() if now is None else now)
    return f"expires {expires(epoch_seconds)} (in {age(max(left, 0))})"


def key_status(key: Mapping[str, Any], now: float) -> str:
    """`active`, `revoked` or `expired`, for an API key as listed (`now` in epoch seconds)."""
    if key.get("revoked"):
        return "revoked"
    expires_at = key.get("expires_at")
    if isinstance(expires_at, int | float) and expires_at <= now:
        return "expired"
    return "active"


def grants_text(grants: object) -> str:
    """Grants as `--grant` takes them: `orders.*=send,receive >=admin`; `-` for none."""
    if not isinstance(grants, list) or not grants:
        return "-"
    return " ".join(
        f"{grant.get('pattern')}={','.join(str(a) for a in grant.get('actions') or [])}"
        for grant in grants
        if isinstance(grant, Mapping)
    )


def count(value: object, *, approximate: bool = False) -> str:
    """A message count; `12+` when the API says counts are lower bounds."""
    if not isinstance(value, int):
        return "-"
    return f"{value}+" if approximate else str(value)


BINARY_PREVIEW = 60


def message_text(
    message: Mapping[str, Any],
    *,
    destination: str | None = None,
    receipt: bool = False,
    state: str | None = None,
) -> str:
    """A message for people: a header line (`state` at its end), its attributes, its receipt
    when asked (what `mqless ack|nack|extend` take), then the body indented."""
    header = [timestamp(message.get("sent_at")), str(message.get("message_id", "?"))]
    if destination:
        header.append(destination)
    if message.get("group_id"):
        header.append(f"group {message['group_id']}")
    receive_count = message.get("receive_count")
    if isinstance(receive_count, int) and receive_count > 1:
        header.append(f"delivery {receive_count}")
    elif message.get("redelivered"):
        header.append("redelivered")
    if message.get("source_queue"):
        header.append(f"from {message['source_queue']}")
    if message.get("dead_letter_reason"):
        header.append(f"dead-lettered: {message['dead_letter_reason']}")
    if state:
        header.append(state)
    lines = ["  ".join(header)]
    headers = {
        "content-type": message.get("content_type"),
        "correlation-id": message.get("correlation_id"),
        "reply-to": message.get("reply_to"),
    }
    attributes = message.get("attributes") or {}
    details = [f"{k}={v}" for k, v in headers.items() if v] + [
        f"{k}={v}" for k, v in sorted(attributes.items())
    ]
    if details:
        lines.append("  [" + " ".join(details) + "]")
    if receipt and message.get("receipt"):
        lines.append(f"  receipt: {message['receipt']}")
    body = str(message.get("body", ""))
    if message.get("binary"):
        preview = body if len(body) <= BINARY_PREVIEW else body[:BINARY_PREVIEW] + "..."
        lines.append(f"  <binary body, base64: {preview}>")
    else:
        lines.extend("  " + line for line in (body.splitlines() or [""]))
    return "\n".join(lines)
