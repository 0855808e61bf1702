"""`mqless queues`, `stats`, `purge` and `redrive`: queue operations."""

from __future__ import annotations

import argparse
from typing import Any

from mqless_cli.commands.arguments import positive
from mqless_cli.commands.context import (
    AddCommand,
    Context,
    UsageError,
    is_terminal,
    print_error,
    report_failures,
)
from mqless_cli.output import (
    Output,
    age,
    count,
)

REDRIVE_CHUNK = 100  # messages per redrive call: well within API Gateway's 30 s


REDRIVE_STEPS = 20


MAX_REDRIVE_CALL = 1000


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


def _every_queue(context: Context) -> dict[str, Any]:
    """The overview with every queue: its pages, each asked for with the last one's cursor."""
    overview = context.api.overview()
    queues = list(overview.get("queues", []))
    while overview.get("cursor"):
        page = context.api.overview(cursor=overview["cursor"])
        queues += page.get("queues", [])
        overview = {**page, "queues": queues}
    return overview


def _queues(context: Context, args: argparse.Namespace) -> int:
    queues = _every_queue(context).get("queues", [])
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
    overview = _every_queue(context)
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


def register(add: AddCommand) -> None:
    """Add `queues`, `stats`, `purge` and `redrive`."""
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
