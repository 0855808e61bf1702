"""What `mqless dev` prints: one line per function invocation, and the functions' logs.

Powertools logs are JSON lines on stdout. By default each becomes a short line (level
and message, with the queue or connection when present) and EMF metrics documents are
left out; `--verbose` prints them whole. The core's own EMF documents are not printed
under `mqless dev` but handed over as they are written (`metrics_document`), with the
line AWS would print.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from mqless_cli.local.functions import Invocation

_CONTEXT_KEYS = ("queue", "message_id", "connection_id", "code", "reason")


class Console:
    """Thread-safe console output for the local runtime."""

    def __init__(self, out: TextIO | None = None, *, verbose: bool = False) -> None:
        self._out = out or sys.__stdout__ or sys.stdout
        self._verbose = verbose
        self._lock = threading.Lock()
        self.metrics: Callable[[dict[str, Any], str], None] | None = None
        """Handed each EMF metrics document the functions print, and the line it was printed
        as (the live bill counts both)."""

    def line(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def invocation(self, call: Invocation) -> None:
        stamp = time.strftime("%H:%M:%S")
        outcome = "ERROR " + str(call.error) if call.error else call.summary
        self.line(f"{stamp} {call.function:<22} {call.milliseconds:7.1f} ms  {outcome}")
        if call.error and self._verbose:
            self.line(call.error.trace.rstrip())

    def metrics_document(self, document: dict[str, Any], line: str) -> None:
        """An EMF metrics document a function printed, or handed over in this process with
        the line it prints on AWS (`observability.hand_emf_over`): taken as that line."""
        if self.metrics is not None:
            self.metrics(document, line)
        if self._verbose:
            self.line(line)

    def function_output(self, text: str) -> None:
        """A line a function printed: condensed if it is a Powertools JSON log record."""
        try:
            record: Any = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict) and "_aws" in record:
            # a CloudWatch EMF metrics document printed (not handed over): for CloudWatch,
            # shown with --verbose
            self.metrics_document(record, text)
            return
        if self._verbose:
            self.line(text)
            return
        if record is None:
            self.line(f"         {text}")
            return
        if not isinstance(record, dict) or "message" not in record:
            self.line(f"         {text}")
            return
        extras = " ".join(
            f"{key}={record[key]}" for key in _CONTEXT_KEYS if record.get(key) is not None
        )
        audit = record.get("audit")
        if isinstance(audit, dict):  # who did what to which destination or principal
            extras = " ".join(
                f"{key}={audit[key]}"
                for key in ("action", "destination", "principal", "subject")
                if audit.get(key) is not None
            )
        level = str(record.get("level", "INFO"))
        self.line(f"         {level:<7} {record['message']} {extras}".rstrip())


class FunctionOutput(io.TextIOBase):
    """Stands in for sys.stdout so that whatever functions print goes through the console."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._buffer = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = getattr(self._buffer, "text", "") + text
        *lines, rest = pending.split("\n")
        self._buffer.text = rest
        for line in lines:
            if line.strip():
                self._console.function_output(line)
        return len(text)

    def flush(self) -> None:
        return None
