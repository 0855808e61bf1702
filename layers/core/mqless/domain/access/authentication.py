"""Authentication: who a token proves, and who an IAM caller is.

Tokens are mqless API keys (`mqk_...`, `api_keys.py`) or JWTs from one configured OIDC
issuer (Cognito or any other), verified against the issuer's published keys (JWKS) and
for one audience (required: an issuer mints tokens for many applications). Either way the
principal's grants come from the user list (`users.py`). A JWT's principal is
`jwt:<value of a configured claim>` (default `sub`), in a namespace of its own, so that no
claim value can name a key's principal (`admin`) or a group; each group in the groups
claim (default `cognito:groups`) adds the grants of `group:<name>`.

The Lambda authorizer's events and answers are a transport's (`transports/authorizer.py`);
the API functions read their caller from its context there too.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools import Logger

from mqless.domain.access.api_keys import KEY_EXPIRED as API_KEY_EXPIRED
from mqless.domain.access.api_keys import PREFIX as API_KEY_PREFIX
from mqless.domain.access.principals import Principal, group_principal_id, jwt_principal_id
from mqless.domain.errors import Unauthorized

if TYPE_CHECKING:
    # PyJWT (and the cryptography it loads) only where a JWT is verified: an API key's
    # request, and every cold start of a function that verifies none, does without it
    import jwt

    # the principals' management (users, their store) where a request looks one up: the
    # WebSocket function's import, whose $connect was authorized before it ran, does without
    from mqless.domain.access.users import AccessControl

logger = Logger(service="mqless", child=True)

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
        import jwt

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
        import jwt

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
