"""The Lambda authorizer's events and answers, and the context the API functions read back.

One authorizer function serves both APIs (`authorize`):
- the HTTP API (payload 2.0, simple responses, cached by API Gateway per token): allowed,
  with the principal and its grants as context; or not;
- the WebSocket API's `$connect` (REQUEST, IAM policy): the token from the `access_token`
  query parameter or the `Authorization: Bearer` header. A handshake with neither that
  offers a STOMP subprotocol is let through as `pending`: nothing is stored for it, and its
  CONNECT frame must carry the token as `passcode` (`websocket/handler.py`). Anything else
  without a token is refused with 401 before any function runs or any state is written.

Who a token proves is `domain/access/authentication.py`'s to say; this module only reads
tokens out of events and writes the answer API Gateway expects. The context it writes
(`_context`) is read back by the API functions (`principal_from_context`): the two sides
of one format, kept together.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger

from mqless.domain.access.principals import Principal, parse_grants
from mqless.domain.errors import InvalidRequest, Unauthorized

if TYPE_CHECKING:
    from mqless.domain.access.authentication import Authenticator

logger = Logger(service="mqless", child=True)

PENDING: Final = "pending"
"""The kind of a WebSocket connection that will authenticate with STOMP CONNECT."""


def authorize(event: Mapping[str, Any], authenticator: Authenticator) -> dict[str, Any]:
    """Answer an HTTP API (payload 2.0) or WebSocket `$connect` authorizer event."""
    if "methodArn" in event:
        return _authorize_websocket(event, authenticator)
    return _authorize_http(event, authenticator)


def _authorize_http(event: Mapping[str, Any], authenticator: Authenticator) -> dict[str, Any]:
    token = bearer_token(event_header(event, "authorization"))
    try:
        principal = authenticator.authenticate(token or "")
    except Unauthorized as refused:
        _refused(event, refused)
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": _context(principal)}


def _authorize_websocket(event: Mapping[str, Any], authenticator: Authenticator) -> dict[str, Any]:
    query = event.get("queryStringParameters") or {}
    token = query.get("access_token") or bearer_token(event_header(event, "authorization"))
    if not token:
        # STOMP's modules load for a WebSocket handshake only, not to authorize HTTP
        from mqless.transports.websocket.stomp_negotiation import choose_subprotocol

        if choose_subprotocol(event_header(event, "sec-websocket-protocol")) is not None:
            pending = Principal(id="", kind=PENDING)
            return _policy("unauthenticated", "Allow", event["methodArn"], _context(pending))
        # API Gateway answers 401 when the authorizer raises exactly this
        raise Exception("Unauthorized")  # noqa: TRY002 - the message is API Gateway's contract
    try:
        principal = authenticator.authenticate(token)
    except Unauthorized as refused:
        _refused(event, refused)
        return _policy("refused", "Deny", event["methodArn"], {})
    return _policy(principal.id, "Allow", event["methodArn"], _context(principal))


def _policy(
    principal_id: str, effect: str, resource: str, context: dict[str, str]
) -> dict[str, Any]:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }


def _context(principal: Principal) -> dict[str, str]:
    grants = [g.model_dump(mode="json") for g in principal.grants]
    context = {
        "principal": principal.id,
        "kind": principal.kind,
        "grants": json.dumps(grants, separators=(",", ":")),
    }
    if principal.expires_at is not None:
        # API Gateway may serve this answer from its cache after the credential expired;
        # the functions refuse it from then on (`principal_from_context`)
        context["expires_at"] = str(principal.expires_at)
    if principal.key_id is not None:
        context["key_id"] = principal.key_id
    return context


def _refused(event: Mapping[str, Any], refused: Unauthorized) -> None:
    context = event.get("requestContext") or {}
    logger.warning(
        "authentication refused",
        extra={
            "reason": refused.message,
            "route": event.get("routeKey") or context.get("routeKey"),
            "source_ip": (context.get("http") or {}).get("sourceIp")
            or (context.get("identity") or {}).get("sourceIp"),
        },
    )


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def event_header(event: Mapping[str, Any], name: str) -> str | None:
    """A header of an API Gateway event, whatever its case (repeats joined with commas)."""
    for source in ("headers", "multiValueHeaders"):
        for key, value in (event.get(source) or {}).items():
            if str(key).lower() == name.lower():
                return ",".join(value) if isinstance(value, list) else str(value)
    return None


def principal_from_context(context: Mapping[str, Any], *, now_s: float) -> Principal:
    """The principal an authorizer's context describes; Unauthorized if it describes none,
    or if the credential that proved it has expired since (a cached answer).

    Every request of a caller carries the same context (API Gateway caches the answer per
    token): the principal it describes is read once and kept (`_known_principal`), and only
    its expiry is checked on each request."""
    values = (
        context.get("principal"),
        context.get("kind"),
        context.get("grants"),
        context.get("expires_at"),
        context.get("key_id"),
    )
    try:
        principal = _known_principal(*values)
    except TypeError:  # a value that cannot be a key (a list of grants): read every time
        principal = _principal(*values)
    if principal.expired(now_s):
        # authentication's modules (API keys, JWTs) load for an expired principal alone:
        # the API functions that read a context never authenticate (issue 18's cold start)
        from mqless.domain.access.authentication import refuse_if_expired

        refuse_if_expired(principal, now_s)
    return principal


def _principal(
    principal_id: Any, kind: Any, raw_grants: Any, raw_expiry: Any, key_id: Any
) -> Principal:
    """The principal of an authorizer context's values (immutable: it may be kept)."""
    if not isinstance(principal_id, str) or not principal_id:
        raise Unauthorized("authentication required")
    raw = raw_grants or "[]"
    try:
        grants = parse_grants(json.loads(raw) if isinstance(raw, str) else raw)
        expires_at = None if raw_expiry in (None, "") else int(str(raw_expiry))
    except (ValueError, InvalidRequest) as exc:
        raise Unauthorized("the authorizer's context cannot be read") from exc
    return Principal(
        id=principal_id,
        kind=str(kind or "api_key"),
        grants=grants,
        expires_at=expires_at,
        key_id=str(key_id) if key_id else None,
    )


# typed: a context's `1` and `True` are different kinds ("1", "True")
_known_principal = functools.lru_cache(maxsize=1024, typed=True)(_principal)
