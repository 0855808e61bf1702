"""`mqless invoke FUNCTION -e events/<file>.json`: what `sam local invoke` does, without Docker.

The function is the one template.yaml declares: its handler from its CodeUri, its layers'
ContentUri first on the import path (as Lambda puts layers under /opt), its environment
with the template's references resolved. It runs

- inside a running `mqless dev`, against its tables, keys and connections, when one
  answers at `--url` / `MQLESS_URL` (default http://127.0.0.1:8080): `mqless dev` serves
  Lambda's Invoke API there (`local/invocations.py`), which needs the dev token
  (`--token` / `MQLESS_TOKEN`); the function's logs are in the `mqless dev` terminal;
- else (nothing listens there, or `--fresh`) in this process, in a fresh stack: moto with
  the template's tables and key, gone when the command ends; its logs on stderr.

As `sam local invoke` prints it: the runtime's lines (START, END, REPORT) and the logs on
stderr, the function's answer on stdout, one line of JSON (an unhandled error as the
Python runtime reports it, `{"errorMessage", "errorType", ...}`, with exit status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mqless_cli.client import ClientError, bearer
from mqless_cli.commands.context import (
    DEFAULT_URL,
    Terminal,
    UsageError,
    reported,
    token_from,
)

if TYPE_CHECKING:
    import httpx

    from mqless_cli.cfn import Json, Stack

LAMBDA_RUNTIME_SLACK_SECONDS = 30  # beyond the function's own timeout, for the HTTP call
LAYER_TYPE = "AWS::Serverless::LayerVersion"


@dataclass(frozen=True)
class Outcome:
    """One invocation's result, wherever it ran."""

    request_id: str
    payload: str  # the answer as Lambda returns it: JSON text
    milliseconds: float
    failed: bool  # the function raised (Lambda's `Unhandled` function error)


def _function(stack: Stack, template: Path, logical_id: str) -> dict[str, Json]:
    functions = stack.functions()
    if logical_id not in functions:
        known = ", ".join(sorted(functions)) or "none"
        raise UsageError(
            f"no function {logical_id!r} in {template.name}: the functions are {known}"
        )
    return functions[logical_id]


def _event(args: argparse.Namespace, stdin: TextIO) -> Any:
    """The event: the file of -e (`-`: stdin), or `{}` (no -e, or --no-event)."""
    if args.event is not None and args.no_event:
        raise UsageError("give -e EVENT or --no-event, not both")
    if args.event is None:
        return {}
    source = "stdin" if args.event == "-" else args.event
    try:
        text = stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not JSON: {exc}") from exc


def layer_paths(stack: Stack, root: Path, properties: dict[str, Json]) -> list[str]:
    """The folders of the function's layers that this template builds (`!Ref` of an
    AWS::Serverless::LayerVersion with a local ContentUri), in the template's order."""
    layers = dict(stack.declared(LAYER_TYPE))
    paths = []
    declared = properties.get("Layers")
    for layer in declared if isinstance(declared, list) else []:
        reference = layer.get("Ref") if isinstance(layer, dict) else None
        resource = layers.get(str(reference)) if reference is not None else None
        content = (resource or {}).get("Properties")
        uri = content.get("ContentUri") if isinstance(content, dict) else None
        if isinstance(uri, str):
            paths.append(str((root / uri).resolve()))
    return paths


# ---- in a running `mqless dev` ------------------------------------------------------------


def _on_dev(
    url: str,
    token: str | None,
    logical_id: str,
    event: Any,
    timeout: float,
    transport: httpx.BaseTransport | None,
) -> Outcome | None:
    """Invoke through `mqless dev`'s Invoke API; None when nothing listens at `url`."""
    import httpx  # for this verb and the client commands only: `--help` starts without it

    path = f"/2015-03-31/functions/{logical_id}/invocations"
    try:
        with httpx.Client(base_url=url, transport=transport, timeout=timeout) as http:
            response = http.post(path, content=json.dumps(event), headers=bearer(token))
    except httpx.ConnectError:
        return None
    except httpx.InvalidURL as exc:
        raise UsageError(f"cannot use the URL {url!r}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise ClientError(f"{url} did not answer the invocation: {exc}") from exc
    error_type = response.headers.get("x-amzn-errortype")
    if response.status_code != 200 or error_type:
        raise _refused(url, response, error_type)
    return Outcome(
        request_id=response.headers.get("x-amzn-requestid", "-"),
        payload=response.text,
        milliseconds=float(response.headers.get("x-mqless-duration-ms", "0")),
        failed=response.headers.get("x-amz-function-error") is not None,
    )


def _refused(url: str, response: httpx.Response, error_type: str | None) -> Exception:
    try:
        message = str(response.json().get("message"))
    except (ValueError, AttributeError):
        message = response.text[:200]
    if error_type is None:
        # no Invoke API there: a deployed API, or another server altogether
        return ClientError(
            f"{url} answers, but not as `mqless dev` (HTTP {response.status_code} to Lambda's "
            "Invoke API): point --url or MQLESS_URL at a running `mqless dev`, or pass --fresh"
        )
    if response.status_code == 403:
        return ClientError(f"`mqless dev` at {url} refused: {message}")
    return ClientError(f"`mqless dev` at {url}: {message}")


# ---- in a fresh stack, in this process ----------------------------------------------------


@contextlib.contextmanager
def _restored() -> Iterator[None]:
    """Whatever the function's environment and import path were set to is undone after."""
    environment, path = dict(os.environ), list(sys.path)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        sys.path[:] = path


def _fresh(template: Path, logical_id: str, event: Any, logs: TextIO) -> Outcome:
    """Provision the template in moto, in this process, and invoke the function once."""
    import uuid  # (and platform): loaded by this path only, not by every command's start

    from mqless_cli.local.cloud import LocalCloud
    from mqless_cli.local.functions import FunctionError, FunctionHost
    from mqless_cli.local.invocations import error_payload

    with _restored():
        cloud = LocalCloud.start(template)
        try:
            stack = cloud.stack
            functions = FunctionHost(stack, template.parent)
            os.environ.update(stack.environment(logical_id))
            sys.path[:0] = layer_paths(stack, template.parent, stack.functions()[logical_id])
            request_id = str(uuid.uuid4())
            _line(logs, f"START RequestId: {request_id} Version: $LATEST")
            start = time.perf_counter()
            with contextlib.redirect_stdout(logs):  # the function's logs, as Lambda's: stderr
                try:
                    result = functions.invoke(logical_id, event, request_id=request_id)
                    payload, failed = json.dumps(result), False
                except FunctionError as failure:
                    payload = json.dumps(error_payload(failure.error, request_id))
                    failed = True
            elapsed = (time.perf_counter() - start) * 1000
        finally:
            cloud.stop()
    return Outcome(request_id, payload, elapsed, failed)


# ---- the command ----------------------------------------------------------------------------


def _line(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _invoke(
    args: argparse.Namespace, terminal: Terminal, transport: httpx.BaseTransport | None
) -> int:
    template = Path(args.template).resolve()
    if not template.is_file():
        raise UsageError(f"no template at {template}")
    # reading templates (PyYAML, the SAM transform) is for this verb only: every other verb
    # starts without it
    from mqless_cli.cfn import Stack, load_template

    stack = Stack(load_template(template))
    properties = _function(stack, template, args.function)
    event = _event(args, terminal.stdin)
    handler = f"{properties.get('Handler')} ({properties.get('Runtime', 'python')})"
    memory = properties.get("MemorySize", 128)
    timeout = float(str(properties.get("Timeout", 3))) + LAMBDA_RUNTIME_SLACK_SECONDS
    outcome = None
    if not args.fresh:
        url = args.url or os.environ.get("MQLESS_URL") or DEFAULT_URL
        outcome = _on_dev(url, token_from(args.token), args.function, event, timeout, transport)
        if outcome is not None:
            _line(terminal.stderr, f"Invoking {handler} in `mqless dev` at {url}")
            _line(terminal.stderr, f"START RequestId: {outcome.request_id} Version: $LATEST")
            _line(terminal.stderr, "(the function's logs are in the `mqless dev` terminal)")
        else:
            _line(terminal.stderr, f"no `mqless dev` at {url}: invoking in a fresh stack")
    if outcome is None:
        _line(terminal.stderr, f"Invoking {handler} in a fresh stack (moto in-process)")
        outcome = _fresh(template, args.function, event, terminal.stderr)
    _line(terminal.stderr, f"END RequestId: {outcome.request_id}")
    _line(
        terminal.stderr,
        f"REPORT RequestId: {outcome.request_id}\tDuration: {outcome.milliseconds:.2f} ms\t"
        f"Billed Duration: {math.ceil(outcome.milliseconds)} ms\tMemory Size: {memory} MB",
    )
    _line(terminal.stdout, outcome.payload)
    return 1 if outcome.failed else 0


def run_invoke(
    args: argparse.Namespace,
    *,
    terminal: Terminal | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """`mqless invoke`: 0, or 1 when the function raised or could not be reached, 2 for a
    usage mistake (failures as `mqless: <sentence>`)."""
    terminal = terminal or Terminal.system()
    return reported(lambda: _invoke(args, terminal, transport), terminal)


def register(commands: Any) -> None:
    """Add `invoke`."""
    help_text = (
        "invoke one function of the template with an event, as `sam local invoke -e` does, "
        "without Docker: in a running `mqless dev` if one answers at --url, else in a fresh stack"
    )
    parser = commands.add_parser("invoke", help=help_text, description=help_text)
    parser.add_argument("function", metavar="FUNCTION_LOGICAL_ID", help="e.g. HttpApiFunction")
    parser.add_argument(
        "-e", "--event", metavar="PATH", help="the event, a JSON file (`-`: stdin; default {})"
    )
    parser.add_argument("--no-event", action="store_true", help="invoke with an empty event {}")
    parser.add_argument(
        "-t", "--template", default="template.yaml", help="SAM template (default: %(default)s)"
    )
    parser.add_argument(
        "--url",
        help=f"where `mqless dev` runs (default: $MQLESS_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--token", help="`mqless dev`'s dev token (default: $MQLESS_TOKEN)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="always invoke in a fresh stack in this process, not in a running `mqless dev`",
    )
    parser.set_defaults(run=run_invoke)
