"""The client commands of `mqless`: send, receive, consume, publish, tail, queues, stats,
purge and redrive, principals and keys, against a local (`mqless dev`) or deployed API;
and `bootstrap`, which writes a deployed stack's first admin key with AWS credentials.
The other verbs live in modules of their own, on the same `Context` and `run`:
`settling` (ack, nack, extend), `queue_admin` (create, update, delete, browse, move),
`subscriptions`; and `invoke` (`sam local invoke` without Docker).

Each command gets a `Context` (the API client, the output, stdin) and returns an exit
status. `run` maps every expected failure to `mqless: <message>` on stderr, in one place:
2 for a usage mistake, 1 for an API or connection failure, never a traceback.
The token (`--token` or `MQLESS_TOKEN`) goes in an `Authorization: Bearer` header, over
HTTP and in the WebSocket handshake alike (never in a URL, which logs and errors show).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TextIO

import httpx
import websockets
from websockets.sync.client import connect as ws_connect

from mqless_cli.client import (
    TIMEOUT_SECONDS,
    BadUrl,
    ClientError,
    MqlessClient,
    auth_failure,
    bearer,
)
from mqless_cli.output import (
    Output,
    Tracker,
    age,
    count,
    expires,
    expiry,
    grants_text,
    key_status,
    message_text,
    timestamp,
)

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_WS_URL = "ws://127.0.0.1:8081"
BATCH = 10  # the API's limit for batch sends, receives and acks
REDRIVE_CHUNK = 100  # messages per redrive call: well within API Gateway's 30 s
REDRIVE_STEPS = 20
MAX_REDRIVE_CALL = 1000
SUBSCRIPTION_ID = "cli"
DEFAULT_CONSUME_WAIT = 20.0  # the longest long poll: the fewest requests while waiting
EMPTY_WAIT_SECONDS = 2.0
"""`consume --until-empty`: a poll this long that finds nothing means the queue is empty.
Longer than the time a sent message takes to be indexed (0.3-1 s on AWS, milliseconds
under `mqless dev`), far shorter than a 20 s long poll."""
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
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadUrl(f"cannot use the URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadUrl(f"cannot use the URL {url!r}: expected http://HOST[:PORT] or https://...")
    return httpx.Client(base_url=parsed, transport=transport, timeout=TIMEOUT_SECONDS)


def print_error(stderr: TextIO, message: str) -> None:
    with contextlib.suppress(OSError):
        stderr.write(f"mqless: {message}\n")
        stderr.flush()


# ---- send and publish ------------------------------------------------------------------------


def _message_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Every field of a send but the body, from the flags given."""
    fields: dict[str, Any] = {}
    if args.attribute:
        fields["attributes"] = dict(args.attribute)
    optional = {
        "content_type": args.content_type,
        "ttl_seconds": getattr(args, "ttl", None),
        "group_id": getattr(args, "group", None),
        "dedup_id": getattr(args, "dedup_id", None),
        "delay_seconds": getattr(args, "delay", None),
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    return fields


def _read_body(context: Context, body: str | None) -> str:
    """The body from the argument, or else from stdin (one trailing newline dropped)."""
    if body is not None:
        return body
    if is_terminal(context.stdin):
        raise UsageError("no message body: give BODY or pipe it on stdin")
    return context.stdin.read().removesuffix("\n")


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


def _send(context: Context, args: argparse.Namespace) -> int:
    if args.file is not None and args.body is not None:
        raise UsageError("give BODY or --file, not both")
    if args.file is not None and args.count is not None:
        raise UsageError("--count repeats one body; --file sends each line: use one of them")
    fields = _message_fields(args)
    if args.file is not None:
        lines = _read_lines(context, args.file)
        bodies = [body for _, body in lines]
        numbers = [number for number, _ in lines]
        return _send_bulk(context, args.queue, bodies, len(bodies), fields, line_numbers=numbers)
    body = _read_body(context, args.body)
    if args.count is not None:
        return _send_bulk(
            context, args.queue, itertools.repeat(body, args.count), args.count, fields
        )
    answer = context.api.send(args.queue, {"body": body, **fields})
    if context.out.as_json:
        context.out.document(answer)
        return 0
    extra = ""
    if answer.get("duplicate"):
        extra = " (a duplicate of a message sent within 5 minutes: not stored again)"
    elif answer.get("sequence") is not None:
        extra = f" (sequence {answer['sequence']} in its group)"
    context.out.line(f"sent {answer.get('message_id')} to {args.queue}{extra}")
    return 0


def _read_lines(context: Context, path: str) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank line of the file (`-`: stdin)."""
    try:
        if path == "-":
            text = context.stdin.read()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise UsageError(f"{path} holds no message (one message per non-blank line)")
    return lines


def _send_bulk(
    context: Context,
    queue: str,
    bodies: Iterable[str],
    total: int,
    fields: dict[str, Any],
    *,
    line_numbers: list[int] | None = None,
) -> int:
    """Send many messages, 10 per batch request, with a progress bar."""
    out = context.out
    message_ids: dict[int, str] = {}
    failed: list[dict[str, Any]] = []
    duplicates = 0
    done = 0
    start = time.monotonic()
    source = iter(bodies)
    try:
        with out.progress(f"send {queue}", total) as bar:
            while chunk := list(itertools.islice(source, BATCH)):
                entries = [
                    {"id": str(done + offset), "body": body, **fields}
                    for offset, body in enumerate(chunk)
                ]
                answer = context.api.send_batch(queue, entries)
                for entry in answer.get("successful", []):
                    message_ids[int(entry["id"])] = str(entry["message_id"])
                    duplicates += bool(entry.get("duplicate"))
                for entry in answer.get("failed", []):
                    index = int(entry["id"])
                    where = ("line", line_numbers[index]) if line_numbers else ("entry", index + 1)
                    failed.append(
                        {
                            where[0]: where[1],
                            "error": entry.get("error"),
                            "message": entry.get("message"),
                        }
                    )
                done += len(chunk)
                bar.advance(len(chunk))
    except (ClientError, KeyboardInterrupt):
        if done:
            out.note(f"sent {len(message_ids)} of {total} messages to {queue} before stopping")
        raise
    elapsed = time.monotonic() - start
    if out.as_json:
        out.document(
            {
                "queue": queue,
                "sent": len(message_ids),
                "duplicates": duplicates,
                "failed": failed,
                "message_ids": [message_ids[i] for i in sorted(message_ids)],
            }
        )
    else:
        rate = f", {len(message_ids) / elapsed:.0f}/s" if elapsed > 0 else ""
        dup = f" ({duplicates} duplicates not stored again)" if duplicates else ""
        out.line(f"sent {len(message_ids)} messages to {queue} in {elapsed:.1f} s{rate}{dup}")
    return report_failures(out, failed, total, "messages failed")


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


def _publish(context: Context, args: argparse.Namespace) -> int:
    body = _read_body(context, args.body)
    answer = context.api.publish(args.topic, {"body": body, **_message_fields(args)})
    if context.out.as_json:
        context.out.document(answer)
    else:
        context.out.line(f"published {answer.get('message_id')} to {args.topic}")
    return 0


# ---- receive and consume ---------------------------------------------------------------------


def _settle(context: Context, queue: str, receipts: list[str]) -> list[dict[str, Any]]:
    """Ack the receipts; the ones that failed (a lease that ran out), as the API lists them."""
    if not receipts:
        return []
    failed: list[dict[str, Any]] = context.api.ack(queue, receipts).get("failed", [])
    return failed


def _receive(context: Context, args: argparse.Namespace) -> int:
    """Lease and print; the receipts are printed too unless --ack settles them here."""
    out = context.out
    messages = context.api.receive(
        args.queue,
        max_messages=args.max,
        wait_seconds=args.wait,
        visibility_timeout=args.visibility,
    )
    for message in messages:
        if out.as_json:
            out.document(message)
        else:
            out.line(message_text(message, receipt=not args.ack))
    receipts = [str(message.get("receipt")) for message in messages]
    failed = _settle(context, args.queue, receipts) if args.ack else []
    if not messages:
        out.note(f"no messages in {args.queue}")
    elif args.ack and not failed:
        out.note(f"acked {len(receipts)}")
    elif not args.ack:
        out.note(
            f"leased {len(messages)}, not acked: settle with "
            f"`mqless ack|nack|extend {args.queue} RECEIPT...`, or they come back when the "
            "lease ends (--ack acks at once)"
        )
    return report_failures(out, failed, len(receipts), "acks failed")


def _consume(context: Context, args: argparse.Namespace) -> int:
    """Receive with long polls, print, ack; until --limit, an empty queue or Ctrl-C.

    With --until-empty, a queue is empty when a poll of EMPTY_WAIT_SECONDS finds nothing:
    the counts cannot say so, since a message sent a moment ago is receivable (and counted)
    only once the dispatch function has indexed it, well within that time.
    """
    out = context.out
    limit: int | None = args.limit
    wait: float = args.wait if args.wait is not None else DEFAULT_CONSUME_WAIT
    total = limit
    if args.until_empty:
        if args.wait is None:
            wait = EMPTY_WAIT_SECONDS
        counts = context.api.queue(args.queue).get("counts", {})
        visible = counts.get("visible")
        if isinstance(visible, int):
            # for the bar only: messages sent but not yet indexed are not counted
            total = visible if limit is None else min(limit, visible)
    consumed = 0
    failed: list[dict[str, Any]] = []
    printed: list[str] = []
    show_bar = limit is not None or args.until_empty
    bar_context = out.progress(f"consume {args.queue}", total) if show_bar else _no_bar()
    try:
        with bar_context as bar:
            while limit is None or consumed < limit:
                wanted = BATCH if limit is None else min(BATCH, limit - consumed)
                messages = context.api.receive(args.queue, max_messages=wanted, wait_seconds=wait)
                if not messages and args.until_empty:
                    break
                for message in messages:
                    if out.as_json:
                        out.document(message)
                    else:
                        out.line(message_text(message))
                    printed.append(str(message.get("receipt")))
                failed += _settle(context, args.queue, printed)
                consumed += len(printed)
                if total is not None and consumed > total:
                    bar.total(consumed)  # more arrived (or were indexed) while draining
                bar.advance(len(printed))
                printed = []
    except KeyboardInterrupt:
        # Ctrl-C is how an open-ended consume stops: settle what was already printed
        failed += _settle(context, args.queue, printed)
        consumed += len(printed)
    out.note(f"consumed {consumed} message{'s' if consumed != 1 else ''} from {args.queue}")
    return report_failures(out, failed, consumed, "acks failed (those messages come back)")


@contextlib.contextmanager
def _no_bar() -> Iterator[Tracker]:
    yield Tracker(None, None)


# ---- tail: live topic messages over the WebSocket API ----------------------------------------


def frames_of(text: str | bytes) -> list[dict[str, Any]]:
    """The frames in one WebSocket message: a `batch` frame opened up."""
    try:
        frame = json.loads(text)
    except ValueError:
        return [{"type": "error", "error": "bad_frame", "message": "a frame that is not JSON"}]
    if not isinstance(frame, dict):
        return []
    if frame.get("type") == "batch":
        return [f for f in frame.get("frames", []) if isinstance(f, dict)]
    return [frame]


PING_SECONDS = 300
PING = json.dumps({"action": "ping"})


def _tail(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    pattern = args.pattern.removeprefix("/topic/")
    destination = f"/topic/{pattern}"
    subscribe = json.dumps(
        {"action": "subscribe", "destination": destination, "id": SUBSCRIPTION_ID}
    )
    limit: int | None = args.limit
    seen = 0
    announced = False
    quick_closes = 0
    try:
        while True:
            opened = time.monotonic()
            with _open_ws(context) as ws:
                ws.send(subscribe)
                _await_subscribed(ws, context.ws_url)
                if not announced:
                    out.note(f"tailing {destination} on {context.ws_url} (Ctrl-C to stop)")
                    announced = True
                try:
                    last_sent = time.monotonic()
                    while limit is None or seen < limit:
                        if time.monotonic() - last_sent > PING_SECONDS:
                            # API Gateway closes a connection idle for 10 minutes
                            ws.send(PING)
                            last_sent = time.monotonic()
                        try:
                            text = ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        for frame in frames_of(text):
                            if frame.get("type") == "message" and (limit is None or seen < limit):
                                _print_frame(out, frame)
                                seen += 1
                            elif frame.get("type") == "error":
                                out.note(f"mqless: the server says: {frame.get('message')}")
                    break
                except websockets.ConnectionClosed as exc:
                    quick_closes = quick_closes + 1 if time.monotonic() - opened < 5 else 0
                    if exc.rcvd is None or exc.rcvd.code != 1001 or quick_closes >= 3:
                        raise ClientError(
                            f"{context.ws_url} closed the connection{_close_reason(exc)}"
                        ) from exc
                    # API Gateway closes idle (10 min) and old (2 h) connections: resume
                    out.note("the connection was closed (going away); reconnecting")
    except KeyboardInterrupt:
        pass
    out.note(f"received {seen} message{'s' if seen != 1 else ''} on {destination}")
    return 0


def _print_frame(out: Output, frame: dict[str, Any]) -> None:
    if out.as_json:
        out.document(frame)
    else:
        out.line(message_text(frame, destination=str(frame.get("destination", ""))))


def _open_ws(context: Context) -> WsConnection:
    url = context.ws_url
    try:
        return context.ws_connect(url, bearer(context.token))
    except websockets.InvalidURI as exc:
        raise BadUrl(f"cannot use the WebSocket URL {url!r}: {exc}") from exc
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            # the authorizer's verdict on the handshake (API Gateway sends no reason)
            refused = auth_failure(status, authenticated=context.token is not None)
            raise ClientError(refused) from exc
        raise ClientError(f"{url} refused the WebSocket connection (HTTP {status})") from exc
    except websockets.InvalidHandshake as exc:
        raise ClientError(f"{url} did not complete the WebSocket handshake: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        raise ClientError(
            f"cannot reach {url} ({reason or type(exc).__name__}): is `mqless dev` running? "
            "set --ws-url or MQLESS_WS_URL"
        ) from exc


def _await_subscribed(ws: WsConnection, url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            text = ws.recv(timeout=min(remaining, 1.0))
        except TimeoutError:
            continue
        except websockets.ConnectionClosed as exc:
            raise ClientError(f"{url} closed the connection{_close_reason(exc)}") from exc
        for frame in frames_of(text):
            if frame.get("type") == "subscribed":
                return
            if frame.get("type") == "error":
                if frame.get("error") == "forbidden":
                    raise ClientError(f"forbidden: {frame.get('message')}")
                raise ClientError(f"cannot subscribe: {frame.get('message')}")
    raise ClientError(f"{url} did not confirm the subscription within {timeout:.0f} s")


def _close_reason(exc: websockets.ConnectionClosed) -> str:
    if exc.rcvd is None:
        return ""
    reason = f": {exc.rcvd.reason}" if exc.rcvd.reason else ""
    return f" (code {exc.rcvd.code}{reason})"


# ---- operations: queues, stats, purge, redrive -----------------------------------------------

QUEUE_HEADERS = [
    "QUEUE",
    "TYPE",
    ">VISIBLE",
    ">IN FLIGHT",
    ">DELAYED",
    ">OLDEST",
    "DEAD-LETTER QUEUE",
    ">DLQ VISIBLE",
    ">CONSUMERS",
]


def queue_row(stats: dict[str, Any]) -> list[str]:
    """A queue's stats as a row of the `queues` table."""
    approximate = bool(stats.get("approximate"))
    return [
        str(stats.get("name")),
        "fifo" if stats.get("fifo") else "standard",
        count(stats.get("visible"), approximate=approximate),
        count(stats.get("in_flight"), approximate=approximate),
        count(stats.get("delayed"), approximate=approximate),
        age(stats.get("oldest_age_seconds")),
        str(stats.get("dead_letter_queue") or "-"),
        count(stats.get("dead_letter_visible")),
        count(stats.get("consumers")),
    ]


def _queue_table(out: Output, queues: list[dict[str, Any]]) -> None:
    if not queues:
        out.note("no queues yet (a queue is created by `mqless send` or PUT /queues/NAME)")
        return
    out.table(QUEUE_HEADERS, [queue_row(q) for q in sorted(queues, key=lambda q: q["name"])])
    if any(q.get("approximate") for q in queues):
        out.note("N+: at least N (a count reached its bound)")


def _queues(context: Context, args: argparse.Namespace) -> int:
    queues = context.api.overview().get("queues", [])
    if context.out.as_json:
        context.out.document({"queues": queues})
    else:
        _queue_table(context.out, queues)
    return 0


def _stats(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    if args.queue is not None:
        stats = context.api.queue_stats(args.queue)
        if out.as_json:
            out.document(stats)
        else:
            out.table(["FIELD", "VALUE"], queue_fields(stats), show_header=False)
        return 0
    overview = context.api.overview()
    if out.as_json:
        out.document(overview)
        return 0
    _queue_table(out, overview.get("queues", []))
    topics = overview.get("topics", [])
    if topics:
        out.line()
        out.table(
            ["TOPIC PATTERN", ">LIVE SUBSCRIBERS", "DURABLE SUBSCRIPTIONS"],
            [
                [
                    str(topic.get("pattern")),
                    count(topic.get("live_subscribers")),
                    ", ".join(
                        f"{s.get('name')} -> {s.get('queue')}"
                        for s in topic.get("subscriptions", [])
                    )
                    or "-",
                ]
                for topic in topics
            ],
        )
    out.line()
    out.line(f"WebSocket connections: {overview.get('connections', 0)}")
    return 0


def queue_fields(stats: dict[str, Any]) -> list[list[str]]:
    """One queue's stats as name/value rows."""
    approximate = bool(stats.get("approximate"))
    dlq = stats.get("dead_letter_queue")
    dead_letters = f"{dlq} ({count(stats.get('dead_letter_visible'))} visible)" if dlq else "none"
    return [
        ["queue", f"{stats.get('name')} ({'fifo' if stats.get('fifo') else 'standard'})"],
        ["visible", count(stats.get("visible"), approximate=approximate)],
        ["in flight", count(stats.get("in_flight"), approximate=approximate)],
        ["delayed", count(stats.get("delayed"), approximate=approximate)],
        ["oldest message", age(stats.get("oldest_age_seconds"))],
        ["dead-letter queue", dead_letters],
        ["consumers", count(stats.get("consumers"))],
    ]


def _purge(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    if not args.yes:
        if not is_terminal(context.stdin):
            raise UsageError("purge deletes every message: confirm with --yes")
        counts = context.api.queue(args.queue).get("counts", {})
        approximate = bool(counts.get("approximate"))
        visible, in_flight, delayed = (
            count(counts.get(key, 0), approximate=approximate)
            for key in ("visible", "in_flight", "delayed")
        )
        question = (
            f"Delete every message in {args.queue} ({visible} visible, {in_flight} in flight, "
            f"{delayed} delayed)? [y/N] "
        )
        out.stderr.write(question)
        out.stderr.flush()
        answer = context.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print_error(out.stderr, f"{args.queue} not purged")
            return 1
    answer_doc = context.api.purge(args.queue)
    if out.as_json:
        out.document(answer_doc)
    else:
        out.line(f"purged {answer_doc.get('purged', 0)} messages from {args.queue}")
    return 0


def redrive_chunk(total: int | None) -> int:
    """Messages per redrive call: a twentieth of the total, so the bar moves in steps of
    about 5 % (one call each), and at most REDRIVE_CHUNK, well within API Gateway's 30 s."""
    if total is None:
        return REDRIVE_CHUNK
    return max(1, min(REDRIVE_CHUNK, total // REDRIVE_STEPS))


def _redrive(context: Context, args: argparse.Namespace) -> int:
    """Move dead letters back in rounds until none is left (or --max moved)."""
    out = context.out
    counts = context.api.queue(args.queue).get("counts", {})
    visible = counts.get("visible")
    total = visible if isinstance(visible, int) else None
    if args.max is not None and total is not None:
        total = min(total, args.max)
    moved = 0
    chunk = redrive_chunk(total)
    failures: dict[str, dict[str, Any]] = {}
    with out.progress(f"redrive {args.queue}", total) as bar:
        while args.max is None or moved < args.max:
            remaining = chunk if args.max is None else args.max - moved
            # messages that failed before are met again and count against the call's max
            wanted = min(min(chunk, remaining) + len(failures), MAX_REDRIVE_CALL)
            answer = context.api.redrive(args.queue, max_messages=wanted, destination=args.to)
            for failure in answer.get("failed", []):
                failures[str(failure.get("id"))] = failure
            step = int(answer.get("moved", 0))
            moved += step
            bar.advance(step)
            if step == 0:
                break
    failed = list(failures.values())
    if out.as_json:
        out.document({"queue": args.queue, "moved": moved, "failed": failed})
    else:
        where = f" to {args.to}" if args.to else ""
        out.line(f"moved {moved} message{'s' if moved != 1 else ''} from {args.queue}{where}")
    return report_failures(out, failed, moved + len(failed), "messages could not be moved")


# ---- access: principals and API keys --------------------------------------------------------

AUTHORIZER_CACHE_NOTE = (
    "API Gateway caches each token's authorization for up to 5 minutes: "
    "a token already in use may keep its old access that long"
)


def _principals_list(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    principals = context.api.principals()
    if out.as_json:
        out.document({"principals": principals})
        return 0
    if not principals:
        out.note("no principals yet (create one: mqless principals set ID --grant PATTERN=ACTIONS)")
        return 0
    out.table(
        ["PRINCIPAL", "GRANTS", "UPDATED"],
        [
            [str(p.get("id")), grants_text(p.get("grants")), timestamp(p.get("updated_at"))]
            for p in sorted(principals, key=lambda p: str(p.get("id")))
        ],
    )
    return 0


def _principals_show(context: Context, args: argparse.Namespace) -> int:
    principal = context.api.principal(args.id)
    if context.out.as_json:
        context.out.document(principal)
        return 0
    grants = [grants_text([grant]) for grant in principal.get("grants") or []] or ["(none)"]
    rows = [["principal", str(principal.get("id"))]]
    rows += [["grants" if n == 0 else "", grant] for n, grant in enumerate(grants)]
    rows += [
        ["created", timestamp(principal.get("created_at"))],
        ["updated", timestamp(principal.get("updated_at"))],
    ]
    context.out.table(["FIELD", "VALUE"], rows, show_header=False)
    return 0


def _principals_set(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    principal, created = context.api.put_principal(args.id, args.grant)
    if out.as_json:
        out.document(principal)
        return 0
    grants = grants_text(principal.get("grants"))
    out.line(f"{'created' if created else 'updated'} principal {args.id}: {grants}")
    if not created:
        out.note(AUTHORIZER_CACHE_NOTE)
    return 0


def _principals_delete(context: Context, args: argparse.Namespace) -> int:
    context.api.delete_principal(args.id)
    if context.out.as_json:
        context.out.document({"principal": args.id, "deleted": True})
        return 0
    context.out.line(f"deleted principal {args.id} and revoked its keys")
    context.out.note(AUTHORIZER_CACHE_NOTE)
    return 0


def _keys_issue(context: Context, args: argparse.Namespace) -> int:
    """The token alone on stdout (`export MQLESS_TOKEN=$(mqless keys issue ...)`)."""
    issued = context.api.issue_key(args.principal, ttl_seconds=args.ttl)
    _print_issued(context.out, issued)
    return 0


def _print_issued(out: Output, issued: Mapping[str, Any], *, where: str = "") -> None:
    if out.as_json:
        out.document(dict(issued))
        return
    out.line(str(issued.get("token")))
    out.note(
        f"issued key {issued.get('key_id')} for {issued.get('principal')}{where}; "
        f"{expiry(issued.get('expires_at'))}"
    )
    out.note("the token is shown only now: keep it secret (use it as MQLESS_TOKEN or --token)")


def _keys_list(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    keys = context.api.keys(args.principal)
    if out.as_json:
        out.document({"keys": keys})
        return 0
    if not keys:
        whose = f" for {args.principal}" if args.principal else ""
        out.note(f"no API keys{whose} (issue one: mqless keys issue PRINCIPAL)")
        return 0
    now = time.time()
    out.table(
        ["KEY ID", "PRINCIPAL", "CREATED", "EXPIRES", "STATUS"],
        [
            [
                str(key.get("key_id")),
                str(key.get("principal")),
                timestamp(key.get("created_at")),
                expires(key.get("expires_at")),
                key_status(key, now),
            ]
            for key in sorted(
                keys, key=lambda k: (str(k.get("principal")), k.get("created_at") or 0)
            )
        ],
    )
    return 0


def _keys_revoke(context: Context, args: argparse.Namespace) -> int:
    context.api.revoke_key(args.key_id)
    if context.out.as_json:
        context.out.document({"key_id": args.key_id, "revoked": True})
        return 0
    context.out.line(f"revoked key {args.key_id}")
    context.out.note(AUTHORIZER_CACHE_NOTE)
    return 0


ACTIONS = ("send", "receive", "create", "admin")  # mqless.principals.Action


def parse_grant(text: str) -> dict[str, Any]:
    """`PATTERN=ACTIONS` (`orders.*=send,receive`, `>=admin`) as the API's grant document."""
    pattern, sep, listed = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(
            f"expected PATTERN=ACTIONS such as 'orders.*=send,receive', got {text!r}"
        )
    actions = [action.strip().lower() for action in listed.split(",") if action.strip()]
    if not actions:
        raise argparse.ArgumentTypeError(
            f"no actions in {text!r}: give some of {','.join(ACTIONS)}"
        )
    unknown = [action for action in actions if action not in ACTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown action {unknown[0]!r} in {text!r}: the actions are {', '.join(ACTIONS)}"
        )
    # the broker's own rule, so a pattern refused here would be refused by the API too
    from mqless.errors import InvalidRequest
    from mqless.principals import MAX_PATTERN, validate_grant_pattern

    if len(pattern) > MAX_PATTERN:
        raise argparse.ArgumentTypeError(f"pattern longer than {MAX_PATTERN} characters")
    try:
        validate_grant_pattern(pattern)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return {"pattern": pattern, "actions": list(dict.fromkeys(actions))}


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(text: str) -> int:
    """Seconds from `3600`, `90s`, `45m`, `12h`, `30d`, `2w` or a sum such as `1d12h`."""
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        return int(cleaned)
    if re.fullmatch(r"(\d+[smhdw])+", cleaned):
        return sum(
            int(number) * DURATION_UNITS[unit]
            for number, unit in re.findall(r"(\d+)([smhdw])", cleaned)
        )
    raise argparse.ArgumentTypeError(
        f"expected SECONDS or a duration such as 30d, 12h, 45m, got {text!r}"
    )


def parse_duration(text: str) -> int:
    """A positive duration in seconds (`_seconds`)."""
    seconds = _seconds(text)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive duration")
    return seconds


def duration_within(low: int, high: int) -> Callable[[str], int]:
    """A duration flag (`_seconds`) that must lie within low..high seconds."""

    def parse(text: str) -> int:
        seconds = _seconds(text)
        if not low <= seconds <= high:
            raise argparse.ArgumentTypeError(
                f"{text} is not within {_span(low)}-{_span(high)} ({low}-{high} s)"
            )
        return seconds

    return parse


def _span(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds >= DURATION_UNITS[unit] and seconds % DURATION_UNITS[unit] == 0:
            return f"{seconds // DURATION_UNITS[unit]}{unit}"
    return f"{seconds}s"


# ---- bootstrap: the first admin key of a deployed stack, with AWS credentials ----------------

DESTINATIONS_TABLE_ID = "DestinationsTable"


def run_bootstrap(
    args: argparse.Namespace, *, terminal: Terminal | None = None, session: Any = None
) -> int:
    """`mqless bootstrap`: no HTTP and no token; the operator's AWS credentials write it."""
    terminal = terminal or Terminal.system()
    out = Output(terminal.stdout, terminal.stderr, as_json=args.json)
    return reported(lambda: _bootstrap(out, args, session), terminal)


def _bootstrap(out: Output, args: argparse.Namespace, session: Any) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError
    from botocore.exceptions import ClientError as AwsError

    from mqless.access import AccessControl, bootstrap_admin
    from mqless.clock import SystemClock
    from mqless.errors import MqlessError

    session = session or boto3.Session()
    table: str | None = args.table
    try:
        if args.stack:
            cloudformation = session.client("cloudformation", region_name=args.region)
            table = _stack_table(cloudformation, args.stack)
        else:
            table = args.table
        dynamodb = session.client("dynamodb", region_name=args.region)
        access = AccessControl(dynamodb, table, SystemClock())
        issued = bootstrap_admin(access, args.principal, ttl_seconds=args.ttl)
    except NoRegionError as exc:
        raise ClientError("no AWS region: pass --region or set AWS_REGION") from exc
    except NoCredentialsError as exc:
        raise ClientError(
            "no AWS credentials: bootstrap writes to the stack's table with your own "
            "(set AWS_PROFILE, or run `aws sso login` or `aws configure`)"
        ) from exc
    except AwsError as exc:
        raise ClientError(_aws_failure(exc, table, args.stack)) from exc
    except BotoCoreError as exc:
        raise ClientError(f"AWS call failed: {exc}") from exc
    except MqlessError as exc:
        raise ClientError(exc.message) from exc
    region = dynamodb.meta.region_name
    _print_issued(
        out,
        issued.model_dump(mode="json"),
        where=f" (admin of everything) in {table} ({region})",
    )
    return 0


def _stack_table(cloudformation: Any, stack: str) -> str:
    """The physical name of the stack's destinations table."""
    answer = cloudformation.describe_stack_resource(
        StackName=stack, LogicalResourceId=DESTINATIONS_TABLE_ID
    )
    return str(answer["StackResourceDetail"]["PhysicalResourceId"])


def _aws_failure(exc: Any, table: str | None, stack: str | None) -> str:
    """One sentence for an AWS refusal during bootstrap."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", "")) or str(exc)
    if code == "ResourceNotFoundException":
        return (
            f"no table {table!r} in this region: give the stack's {DESTINATIONS_TABLE_ID} "
            "(or --stack NAME) and its --region"
        )
    if code == "ValidationError" and stack:
        return f"cannot find the destinations table of stack {stack!r}: {message}"
    if "AccessDenied" in code or code == "UnrecognizedClientException":
        return f"AWS refused: {message}"
    return f"AWS error {code}: {message}"


# ---- the command line ------------------------------------------------------------------------


def bounded(low: float, high: float, kind: type[int] | type[float] = int) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not within {low:g}-{high:g}")
        return value

    return parse


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


def _attribute(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help=f"HTTP API URL (default: $MQLESS_URL or {DEFAULT_URL}; deployed: HttpApiUrl)",
    )
    common.add_argument(
        "--token",
        help="API key or JWT, sent as `Authorization: Bearer` (default: $MQLESS_TOKEN; "
        "`mqless dev` prints its dev token)",
    )
    common.add_argument(
        "--json", action="store_true", help="machine-readable output (JSON; JSON lines for streams)"
    )
    return common


def _message_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--attribute",
        action="append",
        type=_attribute,
        metavar="KEY=VALUE",
        help="a message attribute (repeatable)",
    )
    parser.add_argument("--content-type", metavar="TYPE", help="the body's content type")


def register(commands: Any) -> None:
    """Add the client commands to the `mqless` subcommand parsers."""
    common = _common()

    def add(name: str, handler: Handler, help_text: str, **extra: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], help=help_text, description=help_text, **extra
        )
        parser.set_defaults(run=run, handler=handler)
        return parser

    send = add("send", _send, "send a message (or many) to a queue")
    send.add_argument("queue", metavar="QUEUE")
    send.add_argument("body", metavar="BODY", nargs="?", help="the body (default: stdin)")
    _message_flags(send)
    send.add_argument("--group", metavar="ID", help="FIFO queues: the message group")
    send.add_argument("--dedup-id", metavar="ID", help="FIFO queues: the deduplication id")
    send.add_argument(
        "--delay", type=bounded(0, 900), metavar="SECONDS", help="hold back delivery (0-900)"
    )
    send.add_argument(
        "--ttl", type=positive, metavar="SECONDS", help="drop it if not delivered in time"
    )
    send.add_argument(
        "--count", type=positive, metavar="N", help="send the body N times (10 per request)"
    )
    send.add_argument(
        "--file",
        metavar="PATH",
        help="send each non-blank line of PATH as a message (`-`: stdin), 10 per request",
    )

    receive = add("receive", _receive, "lease messages from a queue and print them")
    receive.add_argument("queue", metavar="QUEUE")
    receive.add_argument(
        "--max", type=bounded(1, BATCH), default=1, metavar="N", help="up to N (1-10; default 1)"
    )
    receive.add_argument(
        "--wait",
        type=bounded(0, 20, float),
        default=0.0,
        metavar="SECONDS",
        help="long poll: wait up to SECONDS for a message (0-20; default 0)",
    )
    receive.add_argument("--ack", action="store_true", help="ack what was printed")
    receive.add_argument(
        "--visibility",
        type=bounded(0, 43200),
        metavar="SECONDS",
        help="lease length (default: the queue's visibility timeout)",
    )

    consume = add(
        "consume",
        _consume,
        "drain a queue: receive with long polls, print and ack until --limit or Ctrl-C",
    )
    consume.add_argument("queue", metavar="QUEUE")
    consume.add_argument("--limit", type=positive, metavar="N", help="stop after N messages")
    consume.add_argument(
        "--until-empty",
        action="store_true",
        help=f"stop when a poll finds nothing (each poll waits {EMPTY_WAIT_SECONDS:g} s "
        "unless --wait is given)",
    )
    consume.add_argument(
        "--wait",
        type=bounded(1, 20, float),
        default=None,
        metavar="SECONDS",
        help=f"long poll length (1-20; default {DEFAULT_CONSUME_WAIT:g}, "
        f"{EMPTY_WAIT_SECONDS:g} with --until-empty)",
    )

    publish = add("publish", _publish, "publish a message to a topic")
    publish.add_argument("topic", metavar="TOPIC")
    publish.add_argument("body", metavar="BODY", nargs="?", help="the body (default: stdin)")
    _message_flags(publish)

    tail = add(
        "subscribe",
        _tail,
        "print live topic messages as they are published (WebSocket), until --limit or Ctrl-C",
        aliases=["tail"],
    )
    tail.add_argument("pattern", metavar="PATTERN", help="topic name or pattern (`*`, final `>`)")
    tail.add_argument("--limit", type=positive, metavar="N", help="stop after N messages")
    tail.add_argument(
        "--ws-url",
        help=f"WebSocket API URL (default: $MQLESS_WS_URL or {DEFAULT_WS_URL}; "
        "deployed: WebSocketUrl)",
    )

    add("queues", _queues, "list queues with their counts")

    stats = add("stats", _stats, "queue counts and health; topics and connections")
    stats.add_argument("queue", metavar="QUEUE", nargs="?", help="one queue in detail")

    purge = add("purge", _purge, "delete every message in a queue")
    purge.add_argument("queue", metavar="QUEUE")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    redrive = add(
        "redrive", _redrive, "move a dead-letter queue's messages back to where they came from"
    )
    redrive.add_argument("queue", metavar="QUEUE", help="the dead-letter queue, e.g. orders.dlq")
    redrive.add_argument("--max", type=positive, metavar="N", help="move at most N (default: all)")
    redrive.add_argument(
        "--to", metavar="QUEUE", help="move them here instead of each one's source queue"
    )

    # the verbs kept in modules of their own; imported here, as they import this one
    from mqless_cli import queue_admin, settling, subscriptions

    settling.register(add)
    queue_admin.register(add)
    subscriptions.register(commands, common)
    _register_access(commands, common)
    _register_bootstrap(commands)


def _register_access(commands: Any, common: argparse.ArgumentParser) -> None:
    """`mqless principals ...` and `mqless keys ...` (the Access API; admin on everything)."""

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    def add(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        parser.set_defaults(run=run, handler=handler)
        return parser

    principals = group("principals", "who may do what: principals and their grants")
    add(principals, "list", _principals_list, "list principals with their grants")
    show = add(principals, "show", _principals_show, "one principal's grants")
    show.add_argument("id", metavar="ID")
    put = add(
        principals,
        "set",
        _principals_set,
        "create a principal or replace its grants (its keys get the new grants)",
    )
    put.add_argument("id", metavar="ID", help="1-128 of A-Z a-z 0-9 _ . @ : + = , -")
    put.add_argument(
        "--grant",
        action="append",
        type=parse_grant,
        required=True,
        metavar="PATTERN=ACTIONS",
        help="actions (send, receive, create, admin) on destinations matching PATTERN "
        "(`orders.*=send,receive`, `'>=admin'` for everything); repeatable",
    )
    delete = add(principals, "delete", _principals_delete, "delete a principal and revoke its keys")
    delete.add_argument("id", metavar="ID")

    keys = group("keys", "API keys: issue, list, revoke")
    issue = add(keys, "issue", _keys_issue, "issue an API key for a principal (printed once)")
    issue.add_argument("principal", metavar="PRINCIPAL")
    issue.add_argument(
        "--ttl",
        type=parse_duration,
        metavar="DURATION",
        help="expire after SECONDS or a duration such as 30d, 12h (default: never)",
    )
    listing = add(keys, "list", _keys_list, "list API keys (never their secrets)")
    listing.add_argument("--principal", metavar="ID", help="only this principal's keys")
    revoke = add(keys, "revoke", _keys_revoke, "revoke an API key")
    revoke.add_argument("key_id", metavar="KEY_ID")


def _register_bootstrap(commands: Any) -> None:
    help_text = (
        "create (or reset) a deployed stack's first admin principal and issue it a key, "
        "writing to DynamoDB with your own AWS credentials"
    )
    bootstrap = commands.add_parser("bootstrap", help=help_text, description=help_text)
    where = bootstrap.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--table", metavar="NAME", help=f"the stack's destinations table ({DESTINATIONS_TABLE_ID})"
    )
    where.add_argument(
        "--stack", metavar="NAME", help="find the table in this CloudFormation stack"
    )
    bootstrap.add_argument(
        "--principal", default="admin", metavar="ID", help="its id (default: %(default)s)"
    )
    bootstrap.add_argument(
        "--ttl",
        type=parse_duration,
        metavar="DURATION",
        help="the key expires after SECONDS or a duration such as 30d (default: never)",
    )
    bootstrap.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    bootstrap.add_argument("--json", action="store_true", help="machine-readable output")
    bootstrap.set_defaults(run=run_bootstrap)
