"""Queue administration: `create`, `update`, `delete`, `browse` and `move`.

`create` never replaces what exists (PUT would reset every setting it leaves out): an
existing queue with other settings is refused, and `update` (PATCH) changes only the
settings it names, as SQS's SetQueueAttributes does. `delete` says what it leaves behind
(the dead-letter queue, unless asked to delete it too and no other queue uses it).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mqless_cli.client import ApiError, ClientError
from mqless_cli.commands.arguments import bounded, duration_within
from mqless_cli.commands.context import (
    AddCommand,
    Context,
    UsageError,
    is_terminal,
    items_given,
    print_error,
    report_failures,
)
from mqless_cli.output import Output, age, count, message_text, timestamp

# the API's limits (mqless.domain.models), repeated so that a mistake is a usage error at once
MAX_VISIBILITY_SECONDS = 12 * 60 * 60
MIN_RETENTION_SECONDS = 60
MAX_RETENTION_SECONDS = 14 * 24 * 60 * 60
MAX_DELAY_SECONDS = 900
MAX_RECEIVE_COUNT = 1000
MAX_SHARDS = 64
MAX_PRIORITY = 9
MAX_BROWSE_PAGE = 100

SETTING_FLAGS = {
    "visibility_timeout": "--visibility-timeout",
    "max_receive_count": "--max-receive-count",
    "dead_letter_queue": "--dead-letter-queue",
    "retention_seconds": "--retention",
    "delay_seconds": "--delay",
    "shards": "--shards",
    "max_priority": "--max-priority",
}
"""Each setting of the API's queue document and the flag that sets it."""


def settings_named(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line names, as the API's fields (None: never dead-letter)."""
    named = {
        setting: getattr(args, setting)
        for setting in SETTING_FLAGS
        if getattr(args, setting) is not None
    }
    if args.no_dead_letter:
        if "dead_letter_queue" in named:
            raise UsageError("--no-dead-letter redelivers forever: it takes no --dead-letter-queue")
        named["max_receive_count"] = None
    return named


def settings_rows(queue: dict[str, Any]) -> list[list[str]]:
    """A queue's settings as name/value rows for people."""
    limit = queue.get("max_receive_count")
    if isinstance(limit, int):
        dead_letters = queue.get("dead_letter_queue")
        where = f"then to {dead_letters}" if dead_letters else "then dead-lettered"
        redelivery = f"{limit} deliveries, {where}"
    else:
        redelivery = "none: redelivered until acked or expired"
    kind = "fifo" if queue.get("fifo") else "standard"
    return [
        ["queue", f"{queue.get('name')} ({kind})"],
        ["visibility timeout", age(queue.get("visibility_timeout"))],
        ["max receive count", redelivery],
        ["retention", age(queue.get("retention_seconds"))],
        ["delay", f"{queue.get('delay_seconds', 0)} s"],
        ["shards", str(queue.get("shards", "-"))],
    ] + (
        [["priority lanes", f"{queue['max_priority'] + 1} (0-{queue['max_priority']})"]]
        if isinstance(queue.get("max_priority"), int)
        else []
    )


def _show(out: Output, heading: str, queue: dict[str, Any]) -> None:
    if out.as_json:
        out.document(queue)
        return
    out.line(heading)
    out.table(["SETTING", "VALUE"], settings_rows(queue), show_header=False)


# ---- create and update ----------------------------------------------------------------------


def _create(context: Context, args: argparse.Namespace) -> int:
    settings = settings_named(args)
    if args.fifo and not args.queue.endswith(".fifo"):
        raise UsageError(f"a FIFO queue's name ends in .fifo: {args.queue}.fifo")
    existing = _existing(context, args.queue)
    if existing is None:
        queue, _ = context.api.put_queue(args.queue, settings)
        _show(context.out, f"created queue {args.queue}", queue)
        return 0
    differing = {k: v for k, v in settings.items() if existing.get(k) != v}
    if differing:
        held = ", ".join(f"{k} {json.dumps(existing.get(k))}" for k in differing)
        flags = " ".join(
            "--no-dead-letter" if k == "max_receive_count" and v is None else SETTING_FLAGS[k]
            for k, v in differing.items()
        )
        raise ClientError(
            f"queue {args.queue!r} already exists with {held}: change its settings with "
            f"`mqless update {args.queue} {flags}`"
        )
    existing.pop("counts", None)
    _show(context.out, f"queue {args.queue} already exists", existing)
    return 0


def _existing(context: Context, name: str) -> dict[str, Any] | None:
    """The queue's document; None when there is none (or it may not be read: then the
    API's create decides)."""
    try:
        return context.api.queue(name)
    except ApiError as exc:
        if exc.code == "queue_not_found" or exc.status == 403:
            return None
        raise


def _update(context: Context, args: argparse.Namespace) -> int:
    changes = settings_named(args)
    if not changes:
        flags = ", ".join([*SETTING_FLAGS.values(), "--no-dead-letter"])
        raise UsageError(f"nothing to change: name a setting ({flags})")
    queue = context.api.update_queue(args.queue, changes)
    _show(context.out, f"updated queue {args.queue}", queue)
    return 0


# ---- delete ------------------------------------------------------------------------------------


def _delete(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    queue = context.api.queue(args.queue)
    dead_letters = queue.get("dead_letter_queue")
    targets = [args.queue]
    kept: list[str] = []
    keep_note = None
    if isinstance(dead_letters, str) and dead_letters != args.queue:
        if args.with_dead_letter_queue:
            listed = context.api.queues()
            sharing = sorted(
                str(q.get("name"))
                for q in listed
                if q.get("dead_letter_queue") == dead_letters and q.get("name") != args.queue
            )
            if sharing:
                kept.append(dead_letters)
                keep_note = f"{dead_letters} stays: also the dead-letter queue of " + ", ".join(
                    sharing
                )
            elif any(q.get("name") == dead_letters for q in listed):
                targets.append(dead_letters)
        else:
            kept.append(dead_letters)
            keep_note = (
                f"{dead_letters} stays: --with-dead-letter-queue deletes it too"
                if not args.yes
                else f"{dead_letters} stays (delete it too with --with-dead-letter-queue)"
            )
    if not args.yes and not _confirmed(context, queue, targets, keep_note):
        print_error(out.stderr, f"{args.queue} not deleted")
        return 1
    for name in targets:
        context.api.delete_queue(name)
    if out.as_json:
        out.document({"deleted": targets, "kept": kept})
    else:
        out.line("deleted " + " and ".join(targets))
    if keep_note is not None and (args.yes or args.with_dead_letter_queue):
        out.note(keep_note)
    return 0


def _confirmed(
    context: Context, queue: dict[str, Any], targets: list[str], keep_note: str | None
) -> bool:
    """Ask on the terminal, with the counts; without one, `--yes` is needed."""
    if not is_terminal(context.stdin):
        raise UsageError("delete removes the queue and its messages: confirm with --yes")
    counts = queue.get("counts") or {}
    approximate = bool(counts.get("approximate"))
    visible, in_flight, delayed = (
        count(counts.get(key), approximate=approximate)
        for key in ("visible", "in_flight", "delayed")
    )
    what = " and ".join(targets)
    kind = "queues" if len(targets) > 1 else "queue"
    question = (
        f"Delete {kind} {what} ({visible} visible, {in_flight} in flight, {delayed} delayed) "
        "with their messages? "
    )
    if keep_note:
        question += f"{keep_note}. "
    context.out.stderr.write(question + "[y/N] ")
    context.out.stderr.flush()
    return context.stdin.readline().strip().lower() in ("y", "yes")


# ---- browse and move ---------------------------------------------------------------------------

STATES = {"in_flight": "in flight", "delayed": "delayed"}


def _state(message: dict[str, Any]) -> str | None:
    """`in flight until …` or `delayed until …`; None for a visible message."""
    state = STATES.get(str(message.get("state")))
    if state is None:
        return None
    return f"{state} until {timestamp(message.get('visible_at'))}"


def _browse(context: Context, args: argparse.Namespace) -> int:
    """Pages of messages without leasing them: one page, or every page with --all."""
    out = context.out
    cursor: str | None = args.cursor
    shown = 0
    while True:
        page = context.api.browse(args.queue, limit=args.limit, cursor=cursor)
        for message in page.get("messages", []):
            shown += 1
            if out.as_json:
                out.document(message)
            else:
                out.line(message_text(message, state=_state(message)))
        cursor = page.get("cursor")
        if not cursor or not args.all:
            break
    if not shown:
        out.note(f"no messages in {args.queue}")
    elif cursor:
        out.note(f"more: mqless browse {args.queue} --cursor {cursor}  (or --all)")
    return 0


MOVE_FAILURES = (400, 404, 409)  # about that one message; anything else stops the command


def _move(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    ids = items_given(context, args.message_ids, "message ids", "message_id")
    if not ids:
        out.note("no message ids on stdin: nothing to move")
        return 0
    verb = "copied" if args.copy else "moved"
    failed: list[dict[str, Any]] = []
    for message_id in ids:
        try:
            answer = context.api.move(args.queue, message_id, to=args.to, copy=args.copy)
        except ApiError as exc:
            if exc.status not in MOVE_FAILURES:
                raise
            failed.append({"id": message_id, "error": exc.code, "message": exc.message})
            continue
        moved = str(answer.get("message_id", message_id))
        if out.as_json:
            out.document(
                {"message_id": moved, "from": args.queue, "to": args.to, "copy": args.copy}
            )
        else:
            out.line(f"{verb} {moved} from {args.queue} to {args.to}")
    return report_failures(out, failed, len(ids), f"messages could not be {verb}")


# ---- the command line --------------------------------------------------------------------------


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    _delivery_flags(parser)
    _storage_flags(parser)


def _delivery_flags(parser: argparse.ArgumentParser) -> None:
    """How messages are leased and when they are dead-lettered."""
    parser.add_argument(
        "--visibility-timeout",
        dest="visibility_timeout",
        type=duration_within(0, MAX_VISIBILITY_SECONDS),
        metavar="DURATION",
        help="lease length: SECONDS or 30s, 5m, 1h (0-12h; default 30 s)",
    )
    redelivery = parser.add_mutually_exclusive_group()
    redelivery.add_argument(
        "--max-receive-count",
        dest="max_receive_count",
        type=bounded(1, MAX_RECEIVE_COUNT),
        metavar="N",
        help="deliveries before a message goes to the dead-letter queue (1-1000; default 10)",
    )
    redelivery.add_argument(
        "--no-dead-letter",
        action="store_true",
        help="never dead-letter: redeliver until acked or expired",
    )
    parser.add_argument(
        "--dead-letter-queue",
        dest="dead_letter_queue",
        metavar="QUEUE",
        help="where over-limit messages go (default QUEUE.dlq; BASE.dlq.fifo for FIFO)",
    )


def _storage_flags(parser: argparse.ArgumentParser) -> None:
    """How long messages live, when they may first go out, and how the queue is laid out."""
    parser.add_argument(
        "--retention",
        dest="retention_seconds",
        type=duration_within(MIN_RETENTION_SECONDS, MAX_RETENTION_SECONDS),
        metavar="DURATION",
        help="message lifetime: SECONDS or 12h, 4d (1m-14d; default 4d)",
    )
    parser.add_argument(
        "--delay",
        dest="delay_seconds",
        type=duration_within(0, MAX_DELAY_SECONDS),
        metavar="SECONDS",
        help="hold every message back this long (0-900; default 0)",
    )
    parser.add_argument(
        "--shards",
        dest="shards",
        type=bounded(1, MAX_SHARDS),
        metavar="N",
        help="partitions (1-64; default 8; a standard queue's may grow, a FIFO queue's are "
        "fixed at creation)",
    )
    parser.add_argument(
        "--max-priority",
        dest="max_priority",
        type=bounded(1, MAX_PRIORITY),
        metavar="N",
        help="deliver higher priorities first: lanes for priorities 0..N (1-9; 9: every JMS "
        "priority; standard queues only, fixed at creation)",
    )


def register(add: AddCommand) -> None:
    """Add `create`, `update`, `delete`, `browse` and `move`."""
    create = add(
        "create",
        _create,
        "create a queue with these settings (a name ending in .fifo makes a FIFO queue); "
        "an existing queue is never changed",
    )
    create.add_argument("queue", metavar="QUEUE")
    create.add_argument("--fifo", action="store_true", help="check that the name ends in .fifo")
    _setting_flags(create)

    update = add(
        "update", _update, "change the settings named; the others keep their values (PATCH)"
    )
    update.add_argument("queue", metavar="QUEUE")
    _setting_flags(update)

    delete = add("delete", _delete, "delete a queue and its messages")
    delete.add_argument("queue", metavar="QUEUE")
    delete.add_argument(
        "--with-dead-letter-queue",
        "--with-dlq",
        dest="with_dead_letter_queue",
        action="store_true",
        help="delete its dead-letter queue too (unless another queue uses it)",
    )
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    browse = add("browse", _browse, "show messages without leasing them (oldest first)")
    browse.add_argument("queue", metavar="QUEUE")
    browse.add_argument(
        "--limit",
        type=bounded(1, MAX_BROWSE_PAGE),
        metavar="N",
        help="messages per page (1-100; default 20)",
    )
    browse.add_argument("--cursor", metavar="CURSOR", help="the next page, as the last one said")
    browse.add_argument("--all", action="store_true", help="every page, to the end")

    move = add("move", _move, "move (or copy) messages by id to another queue")
    move.add_argument("queue", metavar="QUEUE")
    move.add_argument(
        "message_ids",
        metavar="MESSAGE_ID",
        nargs="*",
        help="ids as `browse` shows them (default: stdin, one per line)",
    )
    move.add_argument("--to", required=True, metavar="QUEUE", help="created if it is new")
    move.add_argument("--copy", action="store_true", help="copy: the message stays here too")
