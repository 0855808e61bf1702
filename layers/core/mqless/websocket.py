"""The WebSocket API's entry point: `$connect`, `$default` and `$disconnect` land here.

`$connect` picks the protocol: a client that offers a STOMP subprotocol (`v12.stomp`,
`v11.stomp`, `v10.stomp`) gets the newest one echoed and speaks STOMP
(`stomp_session.py`); any other client speaks the JSON protocol (`json_protocol.py`),
unless its first message is a STOMP CONNECT. `$disconnect` releases what the connection
held at once. Pushes to subscribers come from `sessions.py` and `consumers.py`.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from mqless import runtime
from mqless.json_protocol import handle_text
from mqless.outbound import Connection
from mqless.principals import ANONYMOUS
from mqless.stomp import Frame, encode_frame
from mqless.stomp_session import SUBPROTOCOLS, StompSession, choose_subprotocol, looks_like_connect

logger = Logger(service="mqless", child=True)


def handle_event(event: dict[str, Any]) -> dict[str, Any]:
    """One API Gateway WebSocket event ($connect, $default, $disconnect)."""
    context = event.get("requestContext", {})
    connection_id = str(context.get("connectionId", ""))
    kind = context.get("eventType")
    sessions = runtime.sessions()
    if kind == "CONNECT":
        subprotocol = choose_subprotocol(_header(event, "Sec-WebSocket-Protocol"))
        if subprotocol is None:
            sessions.open(Connection(connection_id), ANONYMOUS)
            return {"statusCode": 200}
        version = SUBPROTOCOLS[subprotocol]
        sessions.open(Connection(connection_id, "stomp", version), ANONYMOUS)
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": subprotocol}}
    if kind == "DISCONNECT":
        sessions.close(connection_id)
        return {"statusCode": 200}
    handle_message(connection_id, event.get("body") or "")
    return {"statusCode": 200}


def handle_message(connection_id: str, text: str) -> None:
    """Act on one WebSocket message from a connection, in the protocol it speaks."""
    sessions = runtime.sessions()
    info = sessions.info(connection_id)
    if info is None:
        # Unknown connection: its record expired, or $connect never completed.
        logger.warning("message from an unknown connection", extra={"connection_id": connection_id})
        if looks_like_connect(text) or not text.lstrip().startswith("{"):
            reply = encode_frame(Frame("ERROR", (("message", "unknown connection; reconnect"),)))
        else:
            reply = json.dumps(
                {"type": "error", "error": "unknown_connection", "message": "reconnect"}
            )
        sessions.pusher.post(connection_id, reply.encode())
        sessions.pusher.close(connection_id)
        return
    if info.connection.protocol == "json" and looks_like_connect(text):
        # A STOMP client that offered no subprotocol (stomp.py does not by default)
        sessions.live.connect(connection_id, info.principal, protocol="stomp", version="1.2")
        info = sessions.info(connection_id)
        assert info is not None
    if info.connection.protocol == "stomp":
        StompSession(sessions, info).handle(text)
    else:
        handle_text(sessions, info, text)


def _header(event: dict[str, Any], name: str) -> str | None:
    for source in ("headers", "multiValueHeaders"):
        headers = event.get(source) or {}
        for key, value in headers.items():
            if key.lower() == name.lower():
                return ",".join(value) if isinstance(value, list) else str(value)
    return None
