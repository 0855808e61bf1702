"""`mqless dev`: the whole stack of template.yaml on this machine, with moto as the
embedded AWS (no account, no Docker). Its flags are declared in `register`, below."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any


def _dev(args: argparse.Namespace) -> int:
    from mqless_cli.local.runtime import DevRuntime

    template = Path(args.template).resolve()
    refused = _refusal(args, template)
    if refused is not None:
        message, status = refused
        print(f"mqless dev: {message}", file=sys.stderr)
        return status
    runtime = DevRuntime(
        template,
        host=args.host,
        http_port=args.http_port,
        ws_port=args.ws_port,
        schedule_rate=args.schedule_rate,
        verbose=args.verbose,
        auth=not args.no_auth,
        realism=args.realism,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        runtime.start()
    except Exception as exc:  # a bad template or a taken port: say so, no traceback
        print(f"mqless dev: cannot start: {_start_failure(args, exc)}", file=sys.stderr)
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


def _refusal(args: argparse.Namespace, template: Path) -> tuple[str, int] | None:
    """Why `mqless dev` cannot start with these arguments, and its exit status; None: it can."""
    if not template.is_file():
        return f"no template at {template}", 2
    if args.http_port == args.ws_port and args.http_port != 0:
        return (
            f"--http-port and --ws-port are both {args.http_port}: the two APIs need a port each",
            2,
        )
    busy = _busy_port(args.host, {"--http-port": args.http_port, "--ws-port": args.ws_port})
    if busy is not None:
        flag, port = busy
        return (
            f"cannot start: port {port} is in use (another `mqless dev`, or another program): "
            f"stop it, or choose another port with {flag} PORT",
            1,
        )
    return None


def _start_failure(args: argparse.Namespace, exc: Exception) -> str:
    """What to tell the user when the runtime failed to start."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        # taken after the check above (a race): which one is not known here
        return (
            f"port {args.http_port} or {args.ws_port} is in use: choose others with "
            "--http-port PORT and --ws-port PORT"
        )
    return f"{type(exc).__name__}: {exc}"


def _realism(spec: str) -> Any:
    from mqless_cli.local.realism import parse_realism

    try:
        return parse_realism(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _busy_port(host: str, ports: dict[str, int]) -> tuple[str, int] | None:
    """The first (flag, port) another program listens on, found before anything starts
    (the servers would fail with a bare `[Errno 98]` after moto and the tables are up)."""
    for flag, port in ports.items():
        if port == 0:
            continue  # any free port
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except OSError:
            return None  # a host that cannot be resolved: the servers will say so
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # as the servers bind: a port left in TIME_WAIT by a stopped `mqless dev` is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return flag, port
                return None
    return None


def register(commands: Any) -> None:
    """Add `mqless dev` and its flags."""
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
    dev.add_argument(
        "--realism",
        type=_realism,
        default=None,
        metavar="SPEC",
        help="reproduce AWS behaviours moto hides: `aws` (the documented defaults), or "
        "key=value pairs after it or alone, e.g. `aws,stream-redelivery=0.05` or "
        "`throttle=on,kms-throttle=0.1` (README: `--realism`)",
    )
    dev.set_defaults(run=_dev)
