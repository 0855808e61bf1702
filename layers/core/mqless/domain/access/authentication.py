"""Authentication: who a token proves, the authorizers that ask, and the caller of a request.

Tokens are mqless API keys (`mqk_...`, `apikeys.py`) or JWTs from one configured OIDC
issuer (Cognito or any other), verified against the issuer's published keys (JWKS) and
for one audience (required: an issuer mints tokens for many applications). Either way the
principal's grants come from the access store (`access.py`). A JWT's principal is
`jwt:<value of a configured claim>` (default `sub`), in a namespace of its own, so that no
claim value can name a key's principal (`admin`) or a group; each group in the groups
claim (default `cognito:groups`) adds the grants of `group:<name>`.

The authorizer function (one for both APIs) answers:
- the HTTP API (payload 2.0, simple responses, cached by API Gateway per token): allowed,
  with the principal and its grants as context; or not;
- the WebSocket API's `$connect` (REQUEST, IAM policy): the token from the `access_token`
  query parameter or the `Authorization: Bearer` header. A handshake with neither that
  offers a STOMP subprotocol is let through as `pending`: nothing is stored for it, and its
  CONNECT frame must carry the token as `passcode` (`websocket.py`). Anything else without a
  token is refused with 401 before any function runs or any state is written.

The HTTP and WebSocket functions read the caller from the authorizer's context
(`http_caller`, `websocket_caller`); with `AUTH_MODE=off` everyone is `anonymous` and
every action is allowed.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from aws_lambda_powertools import Logger

from mqless.domain.access.api_keys import KEY_EXPIRED as API_KEY_EXPIRED
from mqless.domain.access.api_keys import PREFIX as API_KEY_PREFIX
from mqless.domain.access.principals import (
    ANONYMOUS,
    Principal,
    group_principal_id,
    jwt_principal_id,
    parse_grants,
)
from mqless.domain.access.users import AccessControl
from mqless.domain.errors import InvalidRequest, Unauthorized
from mqless.transports.websocket.stomp_frames import choose_subprotocol

logger = Logger(service="mqless", child=True)

PENDING: Final = "pending"
"""The kind of a WebSocket connection that will authenticate with STOMP CONNECT."""
JWT_ALGORITHMS: Final = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
JWT_LEEWAY_SECONDS: Final = 30  # clock skew allowed between the issuer and us
JWT_EXPIRED: Final = "this JWT has expired"
MAX_TOKEN: Final = 8192
MAX_GROUPS: Final = 20


@dataclass(frozen=True)
class JwtSettings:
    """Where JWTs come from and what in them names the caller (template parameters)."""

    issuer: str
    audience: str = ""
    """Required: empty refuses every JWT (a configuration error, logged)."""
    principal_claim: str = "sub"
    groups_claim: str = "cognito:groups"


Fetch = Callable[[str], bytes]


def _https_get(url: str) -> bytes:
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise Unauthorized("the JWT issuer must be an https URL")
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - scheme checked
        body: bytes = response.read(1_000_000)
        return body


class IssuerKeys:
    """The issuer's signing keys, found through OIDC discovery and cached.

    Keys are fetched on first use and kept for an hour; a token signed with a key id not
    in the set refetches, at most once a minute, so a rotated key is picked up quickly and
    forged key ids cannot make us hammer the issuer.
    """

    def __init__(
        self,
        issuer: str,
        fetch: Fetch = _https_get,
        *,
        ttl_seconds: float = 3600,
        refetch_seconds: float = 60,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._refetch = refetch_seconds
        self._now = now
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None

    def key(self, key_id: str) -> jwt.PyJWK:
        with self._lock:
            now = self._now()
            stale = self._fetched_at is None or now - self._fetched_at > self._ttl
            unknown = key_id not in self._keys and (
                self._fetched_at is None or now - self._fetched_at > self._refetch
            )
            if stale or unknown:
                self._keys = self._load()
                self._fetched_at = now
            found = self._keys.get(key_id)
        if found is None:
            raise Unauthorized("the token is signed with a key the issuer does not publish")
        return found

    def _load(self) -> dict[str, jwt.PyJWK]:
        try:
            discovery = json.loads(self._fetch(f"{self._issuer}/.well-known/openid-configuration"))
            jwks = json.loads(self._fetch(str(discovery["jwks_uri"])))
            key_set = jwt.PyJWKSet.from_dict(jwks)
        except (OSError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            logger.warning("cannot read the JWT issuer's keys", extra={"error": str(exc)})
            raise Unauthorized("the JWT issuer's keys cannot be read") from exc
        return {str(k.key_id): k for k in key_set.keys if k.key_id}


@dataclass(frozen=True)
class JwtIdentity:
    """What a verified JWT says: its principal claim, its groups, and until when the
    token works (epoch seconds: `exp` plus the leeway the verification allows)."""

    subject: str
    groups: list[str]
    expires_at: int


class JwtVerifier:
    """Verify a JWT's signature, issuer, audience and lifetime; return who and which groups."""

    def __init__(self, settings: JwtSettings, keys: IssuerKeys) -> None:
        self._settings = settings
        self._keys = keys

    def verify(self, token: str) -> JwtIdentity:
        audience = self._settings.audience
        if not audience:
            # template.yaml's Rules refuse this at deploy; a function configured by hand
            # must still not take tokens the issuer minted for other applications
            logger.error(
                "configuration error: JWT_ISSUER is set without JWT_AUDIENCE; every JWT is "
                "refused (API keys still work)",
                extra={"issuer": self._settings.issuer},
            )
            raise Unauthorized(
                "JWTs are not accepted: the issuer is configured without an audience"
            )
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.key(str(header.get("kid", "")))
            claims = jwt.decode(
                token,
                key=key,
                algorithms=JWT_ALGORITHMS,
                issuer=self._settings.issuer,
                options={"require": ["exp", "iss"], "verify_aud": False},
                leeway=JWT_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized(JWT_EXPIRED) from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid JWT: {exc}") from exc
        # ID tokens carry `aud`; Cognito access tokens carry `client_id` instead
        claimed = claims.get("aud", claims.get("client_id"))
        claimed_list = claimed if isinstance(claimed, list) else [claimed]
        if audience not in claimed_list:
            raise Unauthorized("the JWT is for another audience")
        subject = claims.get(self._settings.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthorized(f"the JWT has no {self._settings.principal_claim!r} claim")
        groups = claims.get(self._settings.groups_claim) or []
        if isinstance(groups, str):
            groups = groups.split()
        names = [g for g in groups if isinstance(g, str)][:MAX_GROUPS]
        expires_at = int(claims["exp"]) + JWT_LEEWAY_SECONDS
        return JwtIdentity(subject=subject, groups=names, expires_at=expires_at)


class Authenticator:
    """Who a bearer token proves: an API key's principal, or a JWT's subject and groups."""

    def __init__(self, access: AccessControl, jwt_verifier: JwtVerifier | None = None) -> None:
        self._access = access
        self._jwt = jwt_verifier

    def authenticate(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN:
            raise Unauthorized("no usable token")
        if token.startswith(API_KEY_PREFIX):
            return self._access.principal_for_key(token)
        if self._jwt is None:
            raise Unauthorized("not an mqless API key (and no JWT issuer is configured)")
        identity = self._jwt.verify(token)
        principal_id = jwt_principal_id(identity.subject)
        grants = self._access.grants_of([principal_id, *map(group_principal_id, identity.groups)])
        return Principal(id=principal_id, kind="jwt", grants=grants, expires_at=identity.expires_at)


# ---- the authorizer function ------------------------------------------------------------


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


# ---- the caller, as the API functions see it --------------------------------------------


def principal_from_context(context: Mapping[str, Any], *, now_s: float) -> Principal:
    """The principal an authorizer's context describes; Unauthorized if it describes none,
    or if the credential that proved it has expired since (a cached answer)."""
    principal_id = context.get("principal")
    if not isinstance(principal_id, str) or not principal_id:
        raise Unauthorized("authentication required")
    raw = context.get("grants") or "[]"
    try:
        grants = parse_grants(json.loads(raw) if isinstance(raw, str) else raw)
        raw_expiry = context.get("expires_at")
        expires_at = None if raw_expiry in (None, "") else int(str(raw_expiry))
    except (ValueError, InvalidRequest) as exc:
        raise Unauthorized("the authorizer's context cannot be read") from exc
    principal = Principal(
        id=principal_id,
        kind=str(context.get("kind") or "api_key"),
        grants=grants,
        expires_at=expires_at,
        key_id=str(context["key_id"]) if context.get("key_id") else None,
    )
    refuse_if_expired(principal, now_s)
    return principal


def refuse_if_expired(principal: Principal, now_s: float) -> None:
    """Unauthorized once the credential that proved `principal` has expired."""
    if principal.expired(now_s):
        raise Unauthorized(JWT_EXPIRED if principal.kind == "jwt" else API_KEY_EXPIRED)


class IamPrincipals:
    """Principals of SigV4-signed calls (the IAM-authorized HTTP API), grants cached briefly.

    The id is derived from the caller's ARN so that an admin can grant it:
    `iam:<account>:role:<role name>` for an assumed role (any session),
    `iam:<account>:user:<user name>`, `iam:<account>:root`.
    """

    def __init__(
        self,
        access: AccessControl,
        *,
        ttl_seconds: float = 60,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._ttl = ttl_seconds
        self._now = now
        self._cache: dict[str, tuple[float, Principal]] = {}

    def principal(self, user_arn: str) -> Principal:
        principal_id = iam_principal_id(user_arn)
        cached = self._cache.get(principal_id)
        if cached is not None and self._now() - cached[0] < self._ttl:
            return cached[1]
        principal = Principal(
            id=principal_id, kind="iam", grants=self._access.grants_of([principal_id])
        )
        self._cache[principal_id] = (self._now(), principal)
        return principal


def iam_principal_id(user_arn: str) -> str:
    """`arn:aws:sts::1234:assumed-role/Role/session` -> `iam:1234:role:Role`, and so on."""
    parts = user_arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise Unauthorized("the IAM caller has no usable ARN")
    account, resource = parts[4], parts[5]
    kind, _, rest = resource.partition("/")
    names = rest.split("/")
    if kind == "assumed-role" and len(names) >= 1:
        return f"iam:{account}:role:{names[0]}"
    if kind in ("user", "role") and rest:
        return f"iam:{account}:{kind}:{names[-1]}"
    if kind == "root":
        return f"iam:{account}:root"
    raise Unauthorized("the IAM caller's ARN is of a kind mqless cannot grant")


def http_caller(
    event: Mapping[str, Any],
    *,
    required: bool,
    iam: Callable[[str], Principal],
    now_s: float,
) -> Principal:
    """The caller of an HTTP API request, from its authorizer context (at `now_s`)."""
    if not required:
        return ANONYMOUS
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if "lambda" in authorizer:
        return principal_from_context(authorizer["lambda"] or {}, now_s=now_s)
    user_arn = (authorizer.get("iam") or {}).get("userArn")
    if isinstance(user_arn, str) and user_arn:
        return iam(user_arn)
    raise Unauthorized("authentication required: send Authorization: Bearer <token>")


def websocket_caller(event: Mapping[str, Any], *, required: bool, now_s: float) -> Principal:
    """The caller of a `$connect` (at `now_s`); kind `pending` for a STOMP client that will
    send its token in CONNECT."""
    if not required:
        return ANONYMOUS
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if authorizer.get("kind") == PENDING:
        return Principal(id="", kind=PENDING)
    return principal_from_context(authorizer, now_s=now_s)
