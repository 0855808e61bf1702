"""`mqless send`, `receive` and `consume`: messages into and out of a queue."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from collections.abc import Iterable, Iterator
from typing import Any

from mqless_cli.client import (
    ClientError,
)
from mqless_cli.commands.arguments import bounded, message_flags, positive
from mqless_cli.commands.context import (
    BATCH,
    AddCommand,
    Context,
    UsageError,
    is_terminal,
    report_failures,
)
from mqless_cli.output import (
    Tracker,
    message_text,
)

DEFAULT_CONSUME_WAIT = 20.0  # the longest long poll: the fewest requests while waiting


EMPTY_WAIT_SECONDS = 2.0
"""`consume --until-empty`: a poll this long that finds nothing means the queue is empty.
Longer than the time a sent message takes to be indexed (0.3-1 s on AWS, milliseconds
under `mqless dev`), far shorter than a 20 s long poll."""


def message_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Every field of a send but the body, from the flags given."""
    fields: dict[str, Any] = {}
    if args.attribute:
        fields["attributes"] = dict(args.attribute)
    optional = {
        "content_type": args.content_type,
        "priority": getattr(args, "priority", None),
        "ttl_seconds": getattr(args, "ttl", None),
        "group_id": getattr(args, "group", None),
        "dedup_id": getattr(args, "dedup_id", None),
        "delay_seconds": getattr(args, "delay", None),
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    return fields


def read_body(context: Context, body: str | None) -> str:
    """The body from the argument, or else from stdin (one trailing newline dropped)."""
    if body is not None:
        return body
    if is_terminal(context.stdin):
        raise UsageError("no message body: give BODY or pipe it on stdin")
    return context.stdin.read().removesuffix("\n")


def _send(context: Context, args: argparse.Namespace) -> int:
    if args.file is not None and args.body is not None:
        raise UsageError("give BODY or --file, not both")
    if args.file is not None and args.count is not None:
        raise UsageError("--count repeats one body; --file sends each line: use one of them")
    fields = message_fields(args)
    if args.file is not None:
        lines = _read_lines(context, args.file)
        bodies = [body for _, body in lines]
        numbers = [number for number, _ in lines]
        return _send_bulk(context, args.queue, bodies, len(bodies), fields, line_numbers=numbers)
    body = read_body(context, args.body)
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
                failed += [_failure(entry, line_numbers) for entry in answer.get("failed", [])]
                done += len(chunk)
                bar.advance(len(chunk))
    except (ClientError, KeyboardInterrupt):
        if done:
            out.note(f"sent {len(message_ids)} of {total} messages to {queue} before stopping")
        raise
    _report_bulk(context, queue, message_ids, duplicates, failed, time.monotonic() - start)
    return report_failures(out, failed, total, "messages failed")


def _failure(entry: dict[str, Any], line_numbers: list[int] | None) -> dict[str, Any]:
    """A failed batch entry, named by its line of the file (or its place among the bodies)."""
    index = int(entry["id"])
    where = ("line", line_numbers[index]) if line_numbers else ("entry", index + 1)
    return {where[0]: where[1], "error": entry.get("error"), "message": entry.get("message")}


def _report_bulk(
    context: Context,
    queue: str,
    message_ids: dict[int, str],
    duplicates: int,
    failed: list[dict[str, Any]],
    elapsed: float,
) -> None:
    """What a bulk send did: a JSON document, or one line with its rate."""
    out = context.out
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


def register(add: AddCommand) -> None:
    """Add `send`, `receive` and `consume`."""
    _register_send(add)
    _register_receive(add)
    _register_consume(add)


def _register_send(add: AddCommand) -> None:
    send = add("send", _send, "send a message (or many) to a queue")
    send.add_argument("queue", metavar="QUEUE")
    send.add_argument("body", metavar="BODY", nargs="?", help="the body (default: stdin)")
    message_flags(send)
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


def _register_receive(add: AddCommand) -> None:
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


def _register_consume(add: AddCommand) -> None:
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
