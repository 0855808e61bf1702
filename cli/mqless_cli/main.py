"""The `mqless` command. `mqless dev` runs the whole stack of template.yaml on this machine;
the other commands (`commands.py`) are a client of a local or deployed API."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mqless_cli import commands as client_commands


def _dev(args: argparse.Namespace) -> int:
    from mqless_cli.local.runtime import DevRuntime

    template = Path(args.template).resolve()
    if not template.is_file():
        print(f"mqless dev: no template at {template}", file=sys.stderr)
        return 2
    runtime = DevRuntime(
        template,
        host=args.host,
        http_port=args.http_port,
        ws_port=args.ws_port,
        schedule_rate=args.schedule_rate,
        verbose=args.verbose,
        auth=not args.no_auth,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        runtime.start()
    except Exception as exc:  # a bad template or a taken port: say so, no traceback
        print(f"mqless dev: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        runtime.stop()
        return 1
    try:
        while not stop.wait(0.5):
            pass
    finally:
        runtime.console.line("mqless dev: stopping")
        runtime.stop()
        runtime.console.line("mqless dev: stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqless", description="Broker semantics without a broker to run."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser(
        "dev",
        help="run the whole stack locally (moto as AWS; no account, no Docker)",
        description="Run template.yaml's HTTP API, WebSocket API, stream triggers and "
        "schedules on this machine, with moto as the embedded AWS.",
    )
    dev.add_argument(
        "--template", default="template.yaml", help="SAM template (default: %(default)s)"
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    dev.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="HTTP API port; 0: any free one, printed at start (default: %(default)s)",
    )
    dev.add_argument(
        "--ws-port",
        type=int,
        default=8081,
        help="WebSocket API port; 0: any free one, printed at start (default: %(default)s)",
    )
    dev.add_argument(
        "--schedule-rate",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run scheduled functions this often instead of their template rate",
    )
    dev.add_argument("--verbose", action="store_true", help="print function logs in full")
    dev.add_argument(
        "--no-auth",
        action="store_true",
        help="run no authorizer: every request is let in as `anonymous` (AUTH_MODE=off)",
    )
    dev.set_defaults(run=_dev)
    client_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
