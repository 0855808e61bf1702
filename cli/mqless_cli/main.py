"""The `mqless` command: its verbs live in `commands/`, one module per verb group;
`mqless dev` (`commands/dev.py`) runs the whole stack of template.yaml on this machine,
the other commands are a client of a local or deployed API."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import Any

# httpx imports its own command line client (`httpx._main`: click, pygments, rich) whenever
# click is installed, and falls back to a stub when that import fails. A user's install has
# no click, so it never loads; the dev environment has it (schemathesis needs it), and it
# added ~20 ms to every `mqless` command run by the tests. The CLI never uses it: block it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from mqless_cli import commands as client_commands  # noqa: E402 - after the block above


class _VersionAction(argparse.Action):
    """`--version`, reading the installed version only when asked (importlib.metadata is
    one of the slower imports of a command's start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="show program's version number and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib import metadata

        sys.stdout.write(f"mqless {metadata.version('mqless')}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqless", description="Broker semantics without a broker to run."
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    client_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command: from the command line (`argv` None), the process ends with it."""
    command = None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        result: int = args.run(args)
        return result
    finally:
        if argv is None and command != "dev":
            # The interpreter's shutdown runs full collections over every object the
            # command's imports made (~15 ms of a ~115 ms `mqless send`) and finds no garbage
            # worth the walk: the process is ending. Frozen objects are left out of them.
            # Not after `mqless dev`: a server's exit is no command's start-up, and whatever
            # its last garbage holds is still finalized as before.
            gc.freeze()


if __name__ == "__main__":
    raise SystemExit(main())
