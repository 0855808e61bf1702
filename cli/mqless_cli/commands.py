"""The client commands of `mqless`: send, receive, consume, publish, tail, queues, stats,
purge and redrive, against a local (`mqless dev`) or deployed API.

Each command gets a `Context` (the API client, the output, stdin) and returns an exit
status. `run` maps every expected failure to `mqless: <message>` on stderr, in one place:
2 for a usage mistake, 1 for an API or connection failure, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TextIO

import httpx
import websockets
from websockets.sync.client import connect as ws_connect

from mqless_cli.client import TIMEOUT_SECONDS, ApiError, BadUrl, ClientError, MqlessClient
from mqless_cli.output import Output, Tracker, age, count, message_text

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_WS_URL = "ws://127.0.0.1:8081"
BATCH = 10  # the API's limit for batch sends, receives and acks
REDRIVE_CHUNK = 100  # messages per redrive call: well within API Gateway's 30 s
MAX_REDRIVE_CALL = 1000
SUBSCRIPTION_ID = "cli"
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


WsConnect = Callable[[str], WsConnection]


def _default_ws_connect(url: str) -> WsConnection:
    return ws_connect(url, open_timeout=10)


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


Handler = Callable[[Context, argparse.Namespace], int]


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
    try:
        with _sigterm_as_interrupt(), _http_client(url, transport) as http:
            context = Context(
                MqlessClient(http), out, terminal.stdin, ws_url, ws_connect or _default_ws_connect
            )
            return handler(context, args)
    except (UsageError, BadUrl) as exc:
        _error(terminal.stderr, exc.message)
        return 2
    except ClientError as exc:
        _error(terminal.stderr, exc.message)
        return 1
    except KeyboardInterrupt:
        _error(terminal.stderr, "interrupted")
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


def _http_client(url: str, transport: httpx.BaseTransport | None) -> httpx.Client:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadUrl(f"cannot use the URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadUrl(f"cannot use the URL {url!r}: expected http://HOST[:PORT] or https://...")
    return httpx.Client(base_url=parsed, transport=transport, timeout=TIMEOUT_SECONDS)


def _error(stderr: TextIO, message: str) -> None:
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
    if _is_terminal(context.stdin):
        raise UsageError("no message body: give BODY or pipe it on stdin")
    return context.stdin.read().removesuffix("\n")


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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
    return _report_failures(out, failed, total, "messages failed")


def _report_failures(out: Output, failed: list[dict[str, Any]], total: int, what: str) -> int:
    """List the first failures on stderr; exit status 1 when there are any."""
    if not failed:
        return 0
    for failure in failed[:SHOWN_FAILURES]:
        label = next((f"{key} {failure[key]}" for key in ("line", "entry") if key in failure), None)
        label = label or str(failure.get("id"))
        out.note(f"  {label}: {failure.get('message')} ({failure.get('error')})")
    if len(failed) > SHOWN_FAILURES:
        out.note(f"  ... and {len(failed) - SHOWN_FAILURES} more")
    _error(out.stderr, f"{len(failed)} of {total} {what}")
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
    try:
        answer = context.api.ack(queue, receipts)
    except ApiError as exc:
        if exc.status not in (400, 409):
            raise
        # every receipt failed: the API answers the first failure's status
        return [{"id": r, "error": exc.code, "message": exc.message} for r in receipts]
    failed: list[dict[str, Any]] = answer.get("failed", [])
    return failed


def _receive(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    messages = context.api.receive(
        args.queue,
        max_messages=args.max,
        wait_seconds=args.wait,
        visibility_timeout=args.visibility,
    )
    printed: list[str] = []
    for message in messages:
        if not out.as_json:
            out.line(message_text(message))
        printed.append(str(message.get("receipt")))
    failed = _settle(context, args.queue, printed) if args.ack else []
    if out.as_json:
        document: dict[str, Any] = {"messages": messages}
        if args.ack:
            failed_ids = {f.get("id") for f in failed}
            document["acked"] = [r for r in printed if r not in failed_ids]
            document["ack_failed"] = failed
        out.document(document)
    elif not messages:
        out.note(f"no messages in {args.queue}")
    elif args.ack and not failed:
        out.note(f"acked {len(printed)}")
    elif not args.ack:
        out.note(f"leased {len(messages)}, not acked: they come back when the lease ends (--ack)")
    return _report_failures(out, failed, len(printed), "acks failed")


def _consume(context: Context, args: argparse.Namespace) -> int:
    """Receive with long polls, print, ack; until --limit, an empty queue or Ctrl-C."""
    out = context.out
    limit: int | None = args.limit
    total = limit
    if args.until_empty:
        counts = context.api.queue(args.queue).get("counts", {})
        visible = counts.get("visible")
        if isinstance(visible, int):
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
                messages = context.api.receive(
                    args.queue, max_messages=wanted, wait_seconds=args.wait
                )
                if not messages and args.until_empty:
                    break
                for message in messages:
                    if out.as_json:
                        out.json_line(message)
                    else:
                        out.line(message_text(message))
                    printed.append(str(message.get("receipt")))
                failed += _settle(context, args.queue, printed)
                consumed += len(printed)
                bar.advance(len(printed))
                printed = []
    except KeyboardInterrupt:
        # Ctrl-C is how an open-ended consume stops: settle what was already printed
        failed += _settle(context, args.queue, printed)
        consumed += len(printed)
    out.note(f"consumed {consumed} message{'s' if consumed != 1 else ''} from {args.queue}")
    return _report_failures(out, failed, consumed, "acks failed (those messages come back)")


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
        out.json_line(frame)
    else:
        out.line(message_text(frame, destination=str(frame.get("destination", ""))))


def _open_ws(context: Context) -> WsConnection:
    url = context.ws_url
    try:
        return context.ws_connect(url)
    except websockets.InvalidURI as exc:
        raise BadUrl(f"cannot use the WebSocket URL {url!r}: {exc}") from exc
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
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
        if not _is_terminal(context.stdin):
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
            _error(out.stderr, f"{args.queue} not purged")
            return 1
    answer_doc = context.api.purge(args.queue)
    if out.as_json:
        out.document(answer_doc)
    else:
        out.line(f"purged {answer_doc.get('purged', 0)} messages from {args.queue}")
    return 0


def _redrive(context: Context, args: argparse.Namespace) -> int:
    """Move dead letters back in rounds until none is left (or --max moved)."""
    out = context.out
    counts = context.api.queue(args.queue).get("counts", {})
    visible = counts.get("visible")
    total = visible if isinstance(visible, int) else None
    if args.max is not None and total is not None:
        total = min(total, args.max)
    moved = 0
    failures: dict[str, dict[str, Any]] = {}
    with out.progress(f"redrive {args.queue}", total) as bar:
        while args.max is None or moved < args.max:
            remaining = REDRIVE_CHUNK if args.max is None else args.max - moved
            # messages that failed before are met again and count against the call's max
            wanted = min(min(REDRIVE_CHUNK, remaining) + len(failures), MAX_REDRIVE_CALL)
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
    return _report_failures(out, failed, moved + len(failed), "messages could not be moved")


# ---- the command line ------------------------------------------------------------------------


def _bounded(low: float, high: float, kind: type[int] | type[float] = int) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not within {low:g}-{high:g}")
        return value

    return parse


def _positive(text: str) -> int:
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
        "--delay", type=_bounded(0, 900), metavar="SECONDS", help="hold back delivery (0-900)"
    )
    send.add_argument(
        "--ttl", type=_positive, metavar="SECONDS", help="drop it if not delivered in time"
    )
    send.add_argument(
        "--count", type=_positive, metavar="N", help="send the body N times (10 per request)"
    )
    send.add_argument(
        "--file",
        metavar="PATH",
        help="send each non-blank line of PATH as a message (`-`: stdin), 10 per request",
    )

    receive = add("receive", _receive, "lease messages from a queue and print them")
    receive.add_argument("queue", metavar="QUEUE")
    receive.add_argument(
        "--max", type=_bounded(1, BATCH), default=1, metavar="N", help="up to N (1-10; default 1)"
    )
    receive.add_argument(
        "--wait",
        type=_bounded(0, 20, float),
        default=0.0,
        metavar="SECONDS",
        help="long poll: wait up to SECONDS for a message (0-20; default 0)",
    )
    receive.add_argument("--ack", action="store_true", help="ack what was printed")
    receive.add_argument(
        "--visibility",
        type=_bounded(0, 43200),
        metavar="SECONDS",
        help="lease length (default: the queue's visibility timeout)",
    )

    consume = add(
        "consume",
        _consume,
        "drain a queue: receive with long polls, print and ack until --limit or Ctrl-C",
    )
    consume.add_argument("queue", metavar="QUEUE")
    consume.add_argument("--limit", type=_positive, metavar="N", help="stop after N messages")
    consume.add_argument(
        "--until-empty", action="store_true", help="stop when a long poll comes back empty"
    )
    consume.add_argument(
        "--wait",
        type=_bounded(1, 20, float),
        default=20.0,
        metavar="SECONDS",
        help="long poll length (1-20; default 20)",
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
    tail.add_argument("--limit", type=_positive, metavar="N", help="stop after N messages")
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
    redrive.add_argument("--max", type=_positive, metavar="N", help="move at most N (default: all)")
    redrive.add_argument(
        "--to", metavar="QUEUE", help="move them here instead of each one's source queue"
    )
