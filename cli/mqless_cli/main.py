"""The `mqless` command: its verbs live in `commands/`, one module per verb group;
`mqless dev` (`commands/dev.py`) runs the whole stack of template.yaml on this machine,
the other commands are a client of a local or deployed API."""

from __future__ import annotations

import argparse
from importlib import metadata

from mqless_cli import commands as client_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqless", description="Broker semantics without a broker to run."
    )
    parser.add_argument(
        "--version", action="version", version=f"mqless {metadata.version('mqless')}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    client_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
