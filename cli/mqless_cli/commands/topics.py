"""`mqless publish` and `subscribe` (alias `tail`): messages to a topic, and live topic
messages as they are published, over the WebSocket API.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

# the WebSocket client loads when `subscribe` runs, not with every other command
if TYPE_CHECKING:
    import websockets

from mqless_cli.client import (
    BadUrl,
    ClientError,
    auth_failure,
    bearer,
)
from mqless_cli.commands.arguments import message_flags, positive
from mqless_cli.commands.context import DEFAULT_WS_URL, AddCommand, Context, WsConnection
from mqless_cli.commands.messages import message_fields, read_body
from mqless_cli.output import (
    Output,
    message_text,
)

SUBSCRIPTION_ID = "cli"


def _publish(context: Context, args: argparse.Namespace) -> int:
    body = read_body(context, args.body)
    answer = context.api.publish(args.topic, {"body": body, **message_fields(args)})
    if context.out.as_json:
        context.out.document(answer)
    else:
        context.out.line(f"published {answer.get('message_id')} to {args.topic}")
    return 0


def frames_of(text: str | bytes) -> list[dict[str, Any]]:
    """The frames in one WebSocket message: a `batch` frame opened up."""
    try:
        frame = json.loads(text)
    except ValueError:
        return [{"type": "error", "error": "bad_frame", "message": "a frame that is not JSON"}]
    if not isinstance(frame, dict):
        return []
    if frame.get("type") == "batch":
        return [f for f in frame.get("frames", []) if isinstance(f, dict)]
    return [frame]


PING_SECONDS = 300


PING = json.dumps({"action": "ping"})


def _tail(context: Context, args: argparse.Namespace) -> int:
    import websockets

    out = context.out
    pattern = args.pattern.removeprefix("/topic/")
    destination = f"/topic/{pattern}"
    subscribe = json.dumps(
        {"action": "subscribe", "destination": destination, "id": SUBSCRIPTION_ID}
    )
    limit: int | None = args.limit
    printed: list[dict[str, Any]] = []  # grows as frames are printed, so Ctrl-C counts them
    announced = False
    quick_closes = 0
    try:
        while True:
            opened = time.monotonic()
            with _open_ws(context) as ws:
                ws.send(subscribe)
                _await_subscribed(ws, context.ws_url)
                if not announced:
                    out.note(f"tailing {destination} on {context.ws_url} (Ctrl-C to stop)")
                    announced = True
                try:
                    _print_until(out, ws, limit, printed)
                    break
                except websockets.ConnectionClosed as exc:
                    quick_closes = quick_closes + 1 if time.monotonic() - opened < 5 else 0
                    if exc.rcvd is None or exc.rcvd.code != 1001 or quick_closes >= 3:
                        raise ClientError(
                            f"{context.ws_url} closed the connection{_close_reason(exc)}"
                        ) from exc
                    # API Gateway closes idle (10 min) and old (2 h) connections: resume
                    out.note("the connection was closed (going away); reconnecting")
    except KeyboardInterrupt:
        pass
    seen = len(printed)
    out.note(f"received {seen} message{'s' if seen != 1 else ''} on {destination}")
    return 0


def _print_until(out: Output, ws: Any, limit: int | None, printed: list[dict[str, Any]]) -> None:
    """Print the messages of one connection, adding each to `printed`, until `limit` in all."""
    last_sent = time.monotonic()
    while limit is None or len(printed) < limit:
        if time.monotonic() - last_sent > PING_SECONDS:
            # API Gateway closes a connection idle for 10 minutes
            ws.send(PING)
            last_sent = time.monotonic()
        try:
            text = ws.recv(timeout=1.0)
        except TimeoutError:
            continue
        for frame in frames_of(text):
            if frame.get("type") == "message" and (limit is None or len(printed) < limit):
                _print_frame(out, frame)
                printed.append(frame)
            elif frame.get("type") == "error":
                out.note(f"mqless: the server says: {frame.get('message')}")


def _print_frame(out: Output, frame: dict[str, Any]) -> None:
    if out.as_json:
        out.document(frame)
    else:
        out.line(message_text(frame, destination=str(frame.get("destination", ""))))


def _open_ws(context: Context) -> WsConnection:
    import websockets

    url = context.ws_url
    try:
        return context.ws_connect(url, bearer(context.token))
    except websockets.InvalidURI as exc:
        raise BadUrl(f"cannot use the WebSocket URL {url!r}: {exc}") from exc
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            # the authorizer's verdict on the handshake (API Gateway sends no reason)
            refused = auth_failure(status, authenticated=context.token is not None)
            raise ClientError(refused) from exc
        raise ClientError(f"{url} refused the WebSocket connection (HTTP {status})") from exc
    except websockets.InvalidHandshake as exc:
        raise ClientError(f"{url} did not complete the WebSocket handshake: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        raise ClientError(
            f"cannot reach {url} ({reason or type(exc).__name__}): is `mqless dev` running? "
            "set --ws-url or MQLESS_WS_URL"
        ) from exc


def _await_subscribed(ws: WsConnection, url: str, timeout: float = 15.0) -> None:
    import websockets

    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            text = ws.recv(timeout=min(remaining, 1.0))
        except TimeoutError:
            continue
        except websockets.ConnectionClosed as exc:
            raise ClientError(f"{url} closed the connection{_close_reason(exc)}") from exc
        for frame in frames_of(text):
            if frame.get("type") == "subscribed":
                return
            if frame.get("type") == "error":
                if frame.get("error") == "forbidden":
                    raise ClientError(f"forbidden: {frame.get('message')}")
                raise ClientError(f"cannot subscribe: {frame.get('message')}")
    raise ClientError(f"{url} did not confirm the subscription within {timeout:.0f} s")


def _close_reason(exc: websockets.ConnectionClosed) -> str:
    if exc.rcvd is None:
        return ""
    reason = f": {exc.rcvd.reason}" if exc.rcvd.reason else ""
    return f" (code {exc.rcvd.code}{reason})"


def register(add: AddCommand) -> None:
    """Add `publish` and `subscribe` (alias `tail`)."""
    publish = add("publish", _publish, "publish a message to a topic")
    publish.add_argument("topic", metavar="TOPIC")
    publish.add_argument("body", metavar="BODY", nargs="?", help="the body (default: stdin)")
    message_flags(publish)

    tail = add(
        "subscribe",
        _tail,
        "print live topic messages as they are published (WebSocket), until --limit or Ctrl-C",
        aliases=["tail"],
    )
    tail.add_argument("pattern", metavar="PATTERN", help="topic name or pattern (`*`, final `>`)")
    tail.add_argument("--limit", type=positive, metavar="N", help="stop after N messages")
    tail.add_argument(
        "--ws-url",
        help=f"WebSocket API URL (default: $MQLESS_WS_URL or {DEFAULT_WS_URL}; "
        "deployed: WebSocketUrl)",
    )
