"""STOMP over the WebSocket function, as a client's frames reach it: API Gateway's `$connect`
and message events handed to the handler (`handle_event`), and the frames the function
pushed back, as a `RecordingPusher` kept them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.stomp_frames import Frame
from tests.lambda_support import websocket_event

if TYPE_CHECKING:
    from tests.component.conftest import RecordingPusher

SUBPROTOCOLS = {"1.2": "v12.stomp", "1.1": "v11.stomp", "1.0": "v10.stomp"}


def open_connection(connection_id: str, offer: str = "v12.stomp") -> dict[str, Any]:
    """`$connect` offering the subprotocol `offer`; the function's answer."""
    result: dict[str, Any] = handle_event(
        websocket_event("CONNECT", connection_id, **{"Sec-WebSocket-Protocol": offer})
    )
    return result


def say(connection_id: str, command: str, body: str = "", **headers: str) -> None:
    """Send one frame. A header given as content_type= is content-type:, as STOMP spells it;
    upper-case names stay as given."""
    names = {k: k if k.isupper() else k.replace("_", "-") for k in headers}
    lines = [command] + [f"{names[k]}:{v}" for k, v in headers.items()]
    handle_event(
        websocket_event("MESSAGE", connection_id, "\n".join(lines) + "\n\n" + body + "\x00")
    )


def stomp_session(connection_id: str, version: str = "1.2") -> None:
    """Connect and send CONNECT for STOMP `version`."""
    open_connection(connection_id, SUBPROTOCOLS[version])
    say(connection_id, "CONNECT", accept_version=version, host="/")


def got(pusher: RecordingPusher, connection_id: str, command: str | None = None) -> list[Frame]:
    """The frames pushed to a connection (those of one `command`, if given)."""
    frames = pusher.stomp_frames(connection_id)
    return [f for f in frames if command is None or f.command == command]
