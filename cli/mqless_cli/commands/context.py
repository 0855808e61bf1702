"""What every client command runs in: the `Context` (API client, output, stdin), `run`,
which maps every expected failure to `mqless: <message>` on stderr in one place (2 for a
usage mistake, 1 for an API or connection failure, never a traceback), and the helpers
for reading items from arguments or stdin and reporting failed ones.

The token (`--token` or `MQLESS_TOKEN`) goes in an `Authorization: Bearer` header, over
HTTP and in the WebSocket handshake alike (never in a URL, which logs and errors show).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from mqless_cli.client import (
    TIMEOUT_SECONDS,
    BadUrl,
    ClientError,
    MqlessClient,
)
from mqless_cli.output import (
    Output,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


DEFAULT_WS_URL = "ws://127.0.0.1:8081"


BATCH = 10  # the API's limit for batch sends, receives and acks


SHOWN_FAILURES = 10


class UsageError(ClientError):
    """The command line asks for something that cannot be done (exit status 2)."""


class WsConnection(Protocol):
    """The part of a websockets sync client connection that `tail` uses."""

    def send(self, message: str) -> None: ...

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def __enter__(self) -> WsConnection: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


WsConnect = Callable[[str, Mapping[str, str]], WsConnection]
"""Open a WebSocket connection: (URL, extra handshake headers)."""


def _default_ws_connect(url: str, headers: Mapping[str, str]) -> WsConnection:
    from websockets.sync.client import connect as ws_connect  # for `tail` only

    return ws_connect(url, additional_headers=dict(headers), open_timeout=10)


@dataclass
class Terminal:
    """The streams a command talks to."""

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO

    @classmethod
    def system(cls) -> Terminal:
        return cls(sys.stdin, sys.stdout, sys.stderr)


@dataclass
class Context:
    api: MqlessClient
    out: Output
    stdin: TextIO
    ws_url: str
    ws_connect: WsConnect
    token: str | None = None


Handler = Callable[[Context, argparse.Namespace], int]


AddCommand = Callable[..., argparse.ArgumentParser]
"""`add(name, handler, help, **parser_options)`: a client command with the common flags."""


def run(
    args: argparse.Namespace,
    *,
    terminal: Terminal | None = None,
    transport: httpx.BaseTransport | None = None,
    ws_connect: WsConnect | None = None,
) -> int:
    """Run a client command and map its expected failures to a message and exit status."""
    terminal = terminal or Terminal.system()
    out = Output(terminal.stdout, terminal.stderr, as_json=args.json)
    url = args.url or os.environ.get("MQLESS_URL") or DEFAULT_URL
    ws_url = getattr(args, "ws_url", None) or os.environ.get("MQLESS_WS_URL") or DEFAULT_WS_URL
    handler: Handler = args.handler

    def command() -> int:
        token = token_from(args.token)
        with _http_client(url, transport) as http:
            context = Context(
                MqlessClient(http, token=token),
                out,
                terminal.stdin,
                ws_url,
                ws_connect or _default_ws_connect,
                token,
            )
            return handler(context, args)

    return reported(command, terminal)


def reported(command: Callable[[], int], terminal: Terminal) -> int:
    """Run a command; its expected failures become `mqless: <sentence>` and an exit status."""
    try:
        with _sigterm_as_interrupt():
            return command()
    except (UsageError, BadUrl) as exc:
        print_error(terminal.stderr, exc.message)
        return 2
    except ClientError as exc:
        print_error(terminal.stderr, exc.message)
        return 1
    except KeyboardInterrupt:
        print_error(terminal.stderr, "interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (`mqless consume q | head`): stop quietly, as Unix tools do
        if terminal.stdout is sys.stdout:
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (consume and tail settle and sum up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def token_from(flag: str | None) -> str | None:
    """The token from --token, else MQLESS_TOKEN; None when neither is set."""
    token = (flag if flag is not None else os.environ.get("MQLESS_TOKEN", "")).strip()
    if not token:
        return None
    if not re.fullmatch(r"[\x21-\x7e]+", token):
        source = "--token" if flag is not None else "MQLESS_TOKEN"
        raise UsageError(f"the token in {source} has spaces or characters that cannot be sent")
    return token


def _http_client(url: str, transport: httpx.BaseTransport | None) -> httpx.Client:
    # httpx (with httpcore, h11 and much of the standard library's HTTP and email modules)
    # is a third of a command's start: loaded here, so `--help` and a usage mistake go without
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadUrl(f"cannot use the URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadUrl(f"cannot use the URL {url!r}: expected http://HOST[:PORT] or https://...")
    # A plain-HTTP API (`mqless dev`) has no certificate to check, and loading the CA bundle
    # anyway was ~20 ms of each command's ~100 ms: TLS settings only for an https:// API.
    return httpx.Client(
        base_url=parsed,
        transport=transport,
        timeout=TIMEOUT_SECONDS,
        verify=parsed.scheme == "https",
    )


def print_error(stderr: TextIO, message: str) -> None:
    with contextlib.suppress(OSError):
        stderr.write(f"mqless: {message}\n")
        stderr.flush()


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def items_given(context: Context, given: list[str], what: str, key: str) -> list[str]:
    """The items named as arguments or else piped in on stdin, one per line (blank lines
    skipped; a JSON line, as `--json` commands print, gives its `key`). A terminal on stdin
    with no arguments is a usage mistake; an empty pipe is no items."""
    if given:
        return given
    if is_terminal(context.stdin):
        raise UsageError(f"no {what}: give them as arguments or pipe them in, one per line")
    items = []
    for line in context.stdin.read().splitlines():
        text = line.strip()
        if text.startswith("{"):
            try:
                text = str(json.loads(text)[key])
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"a JSON line on stdin without {key!r}: {text[:80]}") from None
        if text:
            items.append(text)
    return items


def report_failures(out: Output, failed: list[dict[str, Any]], total: int, what: str) -> int:
    """List the first failures on stderr; exit status 1 when there are any."""
    if not failed:
        return 0
    for failure in failed[:SHOWN_FAILURES]:
        label = next((f"{key} {failure[key]}" for key in ("line", "entry") if key in failure), None)
        label = label or str(failure.get("id"))
        out.note(f"  {label}: {failure.get('message')} ({failure.get('error')})")
    if len(failed) > SHOWN_FAILURES:
        out.note(f"  ... and {len(failed) - SHOWN_FAILURES} more")
    print_error(out.stderr, f"{len(failed)} of {total} {what}")
    return 1


def command_adder(commands: Any, common: argparse.ArgumentParser) -> AddCommand:
    """The `add` that the verb modules register their client commands with."""

    def add(name: str, handler: Handler, help_text: str, **extra: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], help=help_text, description=help_text, **extra
        )
        parser.set_defaults(run=run, handler=handler)
        return parser

    return add
