"""Argument types and shared flags of the client commands: bounded numbers, durations
(`30d`, `12h`), `KEY=VALUE` attributes, and the flags every command takes (`--url`,
`--token`, `--json`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from mqless_cli.commands.context import DEFAULT_URL

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


def attribute(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def common_flags() -> argparse.ArgumentParser:
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


def message_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--attribute",
        action="append",
        type=attribute,
        metavar="KEY=VALUE",
        help="a message attribute (repeatable)",
    )
    parser.add_argument("--content-type", metavar="TYPE", help="the body's content type")
    parser.add_argument(
        "--priority",
        type=bounded(0, 9),
        metavar="N",
        help="JMS priority 0-9 (default 4): a queue with --max-priority delivers higher first",
    )
