"""`mqless ack`, `nack` and `extend`: settle leases by receipt, as `receive` printed them.

Receipts come as arguments or on stdin, one per line (`mqless receive q --json | mqless ack q`
works as it is: a JSON line gives its `receipt`), 10 per request as the API takes them.
Each receipt succeeds or fails on its own; the failures are listed and the exit status is 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mqless_cli.client import MqlessClient
from mqless_cli.commands.arguments import duration_within
from mqless_cli.commands.context import (
    BATCH,
    AddCommand,
    Context,
    items_given,
    report_failures,
)

MAX_LEASE_SECONDS = 12 * 60 * 60  # the API's limit for a lease and a nack's delay

Settle = Callable[[MqlessClient, str, list[str], argparse.Namespace], dict[str, Any]]


def _settle_all(
    context: Context, args: argparse.Namespace, settle: Settle, done_key: str
) -> tuple[list[str], list[dict[str, Any]]] | None:
    """Settle every receipt given, 10 per request: (settled, failed); None if none given."""
    receipts = items_given(context, args.receipts, "receipts", "receipt")
    if not receipts:
        return None
    done: list[str] = []
    failed: list[dict[str, Any]] = []
    for start in range(0, len(receipts), BATCH):
        answer = settle(context.api, args.queue, receipts[start : start + BATCH], args)
        done += answer.get(done_key, [])
        failed += answer.get("failed", [])
    return done, failed


def _run(
    context: Context,
    args: argparse.Namespace,
    settle: Settle,
    done_key: str,
    sentence: Callable[[int], str],
    failed_verb: str,
) -> int:
    out = context.out
    outcome = _settle_all(context, args, settle, done_key)
    if outcome is None:
        out.note(f"no receipts on stdin: nothing to {args.command}")
        return 0
    done, failed = outcome
    if out.as_json:
        out.document({done_key: done, "failed": failed})
    elif done:
        out.line(sentence(len(done)))
    total = len(done) + len(failed)
    return report_failures(out, failed, total, f"receipts could not be {failed_verb}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _ack(context: Context, args: argparse.Namespace) -> int:
    return _run(
        context,
        args,
        lambda api, queue, receipts, _: api.ack(queue, receipts),
        "acked",
        lambda n: f"acked {_plural(n, 'message')} in {args.queue}",
        "acked",
    )


def _nack(context: Context, args: argparse.Namespace) -> int:
    when = f"in {args.delay} s" if args.delay else "now"
    return _run(
        context,
        args,
        lambda api, queue, receipts, a: api.nack(queue, receipts, delay_seconds=a.delay),
        "released",
        lambda n: f"released {_plural(n, 'message')} in {args.queue}: delivered again {when}",
        "released",
    )


def _extend(context: Context, args: argparse.Namespace) -> int:
    return _run(
        context,
        args,
        lambda api, queue, receipts, a: api.change_visibility(
            queue, receipts, visibility_timeout=a.visibility
        ),
        "changed",
        lambda n: (
            f"changed {_plural(n, 'lease')} in {args.queue}: visible again in "
            f"{args.visibility} s unless acked"
        ),
        "changed",
    )


def register(add: AddCommand) -> None:
    """Add `ack`, `nack` and `extend`."""

    def settle_command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser = add(name, handler, help_text)
        parser.add_argument("queue", metavar="QUEUE")
        parser.add_argument(
            "receipts",
            metavar="RECEIPT",
            nargs="*",
            help="receipts as `receive` printed them (default: stdin, one per line)",
        )
        return parser

    settle_command("ack", _ack, "acknowledge leased messages (done: they are deleted)")
    nack = settle_command(
        "nack", _nack, "release leased messages, to be delivered again now or after --delay"
    )
    nack.add_argument(
        "--delay",
        type=duration_within(0, MAX_LEASE_SECONDS),
        default=0,
        metavar="SECONDS",
        help="deliver them again after this long (0-12h; default 0: now)",
    )
    extend = settle_command(
        "extend", _extend, "change leases: the messages stay leased for --visibility from now"
    )
    extend.add_argument(
        "--visibility",
        type=duration_within(0, MAX_LEASE_SECONDS),
        required=True,
        metavar="SECONDS",
        help="seconds (or 5m, 1h) from now until they are visible again (0-12h)",
    )
