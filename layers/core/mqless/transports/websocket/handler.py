"""The WebSocket API's entry point: `$connect`, `$default` and `$disconnect` land here.

`$connect` picks the protocol: a client that offers a STOMP subprotocol (`v12.stomp`,
`v11.stomp`, `v10.stomp`) gets the newest one echoed and speaks STOMP
(`stomp_session.py`); any other client speaks the JSON protocol (`json_protocol.py`),
unless its first message is a STOMP CONNECT. `$disconnect` releases what the connection
held at once. Pushes to subscribers come from `connections.py` (push consumers' pumps,
`live_pushes.py`).

Authentication happens before `$connect` runs (`transports/authorizer.py`): the
connection is stored with its principal and grants. A STOMP client that brought no token
is `pending`: nothing is stored for it until its CONNECT frame proves who it is with
`passcode` (and, if given, a `login` equal to the principal's id); any other first frame
closes it. Once the key or JWT a connection authenticated with expires, its next frame
is answered with an error (STOMP ERROR, or a JSON `unauthorized` error) and the
connection is closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS, Principal
from mqless.domain.errors import Throttled, Unauthorized
from mqless.domain.push.pushes import Connection
from mqless.storage.connections import ConnectionInfo
from mqless.transports.authorizer import PENDING, event_header, principal_from_context
from mqless.transports.websocket.opening import open_connection
from mqless.transports.websocket.stomp_frames import Frame, StompError, decode_frames, encode_frame
from mqless.transports.websocket.stomp_negotiation import SUBPROTOCOLS, choose_subprotocol

logger = Logger(service="mqless", child=True)


def handle_event(event: dict[str, Any]) -> dict[str, Any]:
    """One API Gateway WebSocket event ($connect, $default, $disconnect)."""
    context = event.get("requestContext", {})
    connection_id = str(context.get("connectionId", ""))
    kind = context.get("eventType")
    try:
        return _handle_event(event, connection_id, kind)
    except Throttled as exc:
        return _throttled(event, connection_id, kind, exc)


def _throttled(
    event: dict[str, Any], connection_id: str, kind: Any, exc: Throttled
) -> dict[str, Any]:
    """AWS throttled us past the SDK's retries, before the protocol could answer: tell the
    client to retry, in its protocol (a function error would reach it as a bare 500 or an
    "Internal server error" frame, with nothing saying that a retry helps)."""
    logger.warning("throttled", extra={"connection_id": connection_id, "event_type": kind})
    if kind == "CONNECT":
        return {"statusCode": 429, "headers": {"Retry-After": str(exc.retry_after_seconds)}}
    if kind == "DISCONNECT":
        # the connection's leases are not released now: they run out as any lease does
        return {"statusCode": 200}
    text = event.get("body") or ""
    why = f"{exc.message} (after {exc.retry_after_seconds} s)"
    pusher = wiring.sessions().pusher
    if text.lstrip().startswith("{"):
        pusher.post(connection_id, _error_reply(stomp=False, code=exc.code, message=why))
        return {"statusCode": 200}
    # STOMP: an ERROR closes the connection (STOMP 1.2, "ERROR"); the frame was not acted on
    pusher.post(connection_id, encode_frame(_throttled_frame(text, why)).encode())
    pusher.close(connection_id)
    return {"statusCode": 200}


def _error_reply(*, stomp: bool, code: str, message: str) -> bytes:
    """`render.error_reply`, imported when an error is told: `render.py` loads the message
    models, which `$connect` does not use (issue 18's cold start)."""
    from mqless.transports.websocket.render import error_reply

    return error_reply(stomp=stomp, code=code, message=message)


def _throttled_frame(text: str, why: str) -> Frame:
    headers = [("message", why)]
    try:
        receipt = next(f.header("receipt") for f in decode_frames(text) if f.header("receipt"))
    except (StompError, StopIteration):
        receipt = None
    if receipt is not None:
        headers.append(("receipt-id", receipt))
    return Frame("ERROR", tuple(headers))


def _handle_event(event: dict[str, Any], connection_id: str, kind: Any) -> dict[str, Any]:
    if kind == "CONNECT":
        try:
            principal = websocket_caller(
                event, required=wiring.auth_required(), now_s=wiring.clock().now_ms() / 1000
            )
        except Unauthorized:
            logger.warning("$connect without an authorizer's principal: refused")
            return {"statusCode": 401}
        subprotocol = choose_subprotocol(event_header(event, "Sec-WebSocket-Protocol"))
        if subprotocol is None:
            if principal.kind == PENDING:
                return {"statusCode": 401}  # only STOMP can authenticate after the handshake
            # the connection store alone: `wiring.sessions()` would build every service a
            # connection's frames use, which `$connect` does not need (issue 18's cold start)
            open_connection(wiring.connection_store(), Connection(connection_id), principal)
            return {"statusCode": 200}
        if principal.kind != PENDING:
            version = SUBPROTOCOLS[subprotocol]
            connection = Connection(connection_id, "stomp", version)
            open_connection(wiring.connection_store(), connection, principal)
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": subprotocol}}
    if kind == "DISCONNECT":
        wiring.sessions().close(connection_id)
        return {"statusCode": 200}
    handle_message(connection_id, event.get("body") or "")
    return {"statusCode": 200}


def websocket_caller(event: Mapping[str, Any], *, required: bool, now_s: float) -> Principal:
    """The caller of a `$connect` (at `now_s`); kind `pending` for a STOMP client that will
    send its token in CONNECT."""
    if not required:
        return ANONYMOUS
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if authorizer.get("kind") == PENDING:
        return Principal(id="", kind=PENDING)
    return principal_from_context(authorizer, now_s=now_s)


def handle_message(connection_id: str, text: str) -> None:
    """Act on one WebSocket message from a connection, in the protocol it speaks."""
    # the protocols' modules load with the first message that needs them: `$connect` and
    # `$disconnect` (a cold start's usual first event) use neither (issue 18's cold start)
    from mqless.domain.access.authentication import refuse_if_expired
    from mqless.transports.websocket.json_protocol import handle_text
    from mqless.transports.websocket.stomp_session import StompSession, looks_like_connect

    sessions = wiring.sessions()
    info = sessions.info(connection_id)
    if info is None and wiring.auth_required() and looks_like_connect(text):
        info = _authenticate_stomp(connection_id, text)
        if info is None:
            return
    if info is None:
        # Unknown connection: its record expired, $connect never completed, or a STOMP
        # client that brought no token sent something before its CONNECT.
        logger.warning("message from an unknown connection", extra={"connection_id": connection_id})
        if looks_like_connect(text) or not text.lstrip().startswith("{"):
            why = (
                "not connected: send CONNECT first, with your token as passcode"
                if wiring.auth_required()
                else "unknown connection; reconnect"
            )
            reply = _error_reply(stomp=True, code="unknown_connection", message=why)
        else:
            reply = _error_reply(stomp=False, code="unknown_connection", message="reconnect")
        sessions.pusher.post(connection_id, reply)
        sessions.pusher.close(connection_id)
        return
    try:
        refuse_if_expired(info.acting_as, wiring.clock().now_ms() / 1000)
    except Unauthorized as expired:
        _close_expired(info, expired)
        return
    if info.connection.protocol == "json" and looks_like_connect(text):
        # A STOMP client that offered no subprotocol (stomp.py does not by default)
        sessions.live.connect(connection_id, info.acting_as, protocol="stomp", version="1.2")
        info = sessions.info(connection_id)
        assert info is not None
    if info.connection.protocol == "stomp":
        StompSession(sessions, info).handle(text)
    else:
        handle_text(sessions, info, text)


def _close_expired(info: ConnectionInfo, expired: Unauthorized) -> None:
    """Tell a connection its credential expired, in its protocol, and close it."""
    wiring.sessions().end_session(info, expired)


def _authenticate_stomp(connection_id: str, text: str) -> ConnectionInfo | None:
    """Open a pending STOMP connection whose CONNECT proves its principal; else ERROR and
    close (nothing stored)."""
    sessions = wiring.sessions()
    try:
        connect = decode_frames(text, version="1.2")[0]
        passcode = connect.header("passcode")
        if not passcode:
            raise Unauthorized(
                "authentication required: send your API key (or JWT) as the CONNECT "
                "passcode, or connect with ?access_token="
            )
        principal = wiring.authenticator().authenticate(passcode)
        login = connect.header("login")
        if login and login != principal.id:
            raise Unauthorized("login does not name the principal the passcode proves")
    except (Unauthorized, StompError, IndexError) as exc:
        reason = exc.message if isinstance(exc, (Unauthorized, StompError)) else "no frame"
        logger.warning("STOMP CONNECT refused", extra={"connection_id": connection_id})
        why = reason[:200].replace("\n", " ")
        sessions.pusher.post(
            connection_id, _error_reply(stomp=True, code="unauthorized", message=why)
        )
        sessions.pusher.close(connection_id)
        return None
    sessions.open(Connection(connection_id, "stomp", "1.2"), principal)
    return sessions.info(connection_id)
