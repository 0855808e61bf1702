"""Authentication: API keys and JWTs become principals; the authorizer answers both APIs.

JWTs are signed here with a fresh RSA key and verified against a real OIDC issuer served
on this machine (discovery document and JWKS over HTTP), as the authorizer does in AWS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mqless.assembly import build_access_control
from mqless.domain.access.authentication import (
    JWT_LEEWAY_SECONDS,
    Authenticator,
    IamPrincipals,
    IssuerKeys,
    JwtSettings,
    JwtVerifier,
    iam_principal_id,
)
from mqless.domain.access.principals import ANONYMOUS, Action, GrantPolicy, Principal, parse_grants
from mqless.domain.access.users import EVERYTHING, AccessControl
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest, Unauthorized
from mqless.transports.authorizer import authorize, bearer_token
from mqless.transports.http.caller import http_caller
from mqless.transports.websocket.handler import websocket_caller
from mqless_cli.cfn import Stack, load_template
from tests.component.conftest import Aws
from tests.conftest import TEMPLATE

ROOT = Principal(id="root", kind="api_key", grants=EVERYTHING)
ORDERS = parse_grants([{"pattern": "orders.>", "actions": ["send", "receive"]}])
OPS = parse_grants([{"pattern": ">", "actions": ["admin"]}])


class Issuer:
    """An OIDC issuer on 127.0.0.1: discovery, JWKS, and tokens signed with its key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        self.requests: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks.json"}
                elif self.path == "/jwks.json":
                    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key()))
                    body = {"keys": [{**public, "kid": issuer.kid, "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, key: Any = None, kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "sub": "alice", "exp": now + 300, "iat": now, **claims}
        return jwt.encode(
            payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    served = Issuer()
    yield served
    served.server.shutdown()


@pytest.fixture
def access(aws: Aws, clock: ManualClock) -> AccessControl:
    return build_access_control(aws.dynamodb, aws.settings.destinations_table, clock, GrantPolicy())


@pytest.fixture
def authenticator(access: AccessControl, issuer: Issuer) -> Authenticator:
    settings = JwtSettings(issuer=issuer.url, audience="mqless-app")
    return Authenticator(access, JwtVerifier(settings, IssuerKeys(issuer.url)))


# ---- JWTs ---------------------------------------------------------------------------------


def test_a_jwt_is_its_subject_with_the_grants_of_the_subject_and_its_groups(
    authenticator: Authenticator, access: AccessControl, issuer: Issuer
) -> None:
    # Given grants for the JWT principal jwt:alice and for the group ops
    access.put_principal(ROOT, "jwt:alice", ORDERS)
    access.put_principal(ROOT, "group:ops", OPS)

    # When alice's JWT, in the groups ops and nobody, is authenticated
    principal = authenticator.authenticate(
        issuer.token(aud="mqless-app", **{"cognito:groups": ["ops", "nobody"]})
    )

    # Then she is jwt:alice, with her grants and those of ops
    assert (principal.id, principal.kind) == ("jwt:alice", "jwt")
    assert set(principal.grants) == {*ORDERS, *OPS}


def test_a_cognito_access_token_names_its_app_in_client_id(
    authenticator: Authenticator, access: AccessControl, issuer: Issuer
) -> None:
    # Given grants for jwt:alice
    access.put_principal(ROOT, "jwt:alice", ORDERS)

    # When her Cognito access token (its app in client_id, no aud) is authenticated
    principal = authenticator.authenticate(issuer.token(client_id="mqless-app"))

    # Then it is accepted for the app, with her grants
    GrantPolicy().check(principal, Action.SEND, "orders.eu")


def test_a_jwt_nobody_granted_anything_may_do_nothing(
    authenticator: Authenticator, issuer: Issuer
) -> None:
    # Given a JWT for a subject nobody granted anything
    # When it is authenticated
    principal = authenticator.authenticate(issuer.token(aud="mqless-app", sub="stranger"))

    # Then its principal has no grants and may not receive
    assert principal.grants == ()
    assert not GrantPolicy().permits(principal, Action.RECEIVE, "orders.eu")


@pytest.mark.parametrize(
    ("claims", "impersonated"),
    [
        ({"sub": "admin"}, "admin"),
        ({"sub": "group:admins"}, "group:admins"),
        ({"sub": "billing"}, "billing"),
        ({"sub": "iam:123456789012:role:Ops"}, "iam:123456789012:role:Ops"),
    ],
    ids=["the bootstrap admin", "a group", "a key's principal", "an IAM role"],
)
def test_a_jwt_subject_cannot_take_the_grants_of_a_principal_of_another_kind(
    authenticator: Authenticator,
    access: AccessControl,
    issuer: Issuer,
    claims: dict[str, Any],
    impersonated: str,
) -> None:
    # Given a principal of another kind granted everything (the bootstrap admin `admin`,
    # group `admins`, a key's principal, an IAM role)
    access.put_principal(ROOT, impersonated, EVERYTHING)
    # When a JWT from the trusted issuer names it as its subject
    principal = authenticator.authenticate(issuer.token(aud="mqless-app", **claims))
    # Then the caller is the JWT principal of that name, granted nothing
    assert principal.id == f"jwt:{claims['sub']}"
    assert principal.grants == ()
    assert not GrantPolicy().permits(principal, Action.ADMIN, ">")


def test_a_jwt_gets_what_was_granted_to_its_jwt_principal_only(
    authenticator: Authenticator, access: AccessControl, issuer: Issuer
) -> None:
    # Given the bootstrap admin `admin` and, apart, the JWT principal `jwt:admin`
    access.put_principal(ROOT, "admin", EVERYTHING)
    access.put_principal(ROOT, "jwt:admin", ORDERS)
    # When a JWT with subject `admin` authenticates
    principal = authenticator.authenticate(issuer.token(aud="mqless-app", sub="admin"))
    # Then it has what `jwt:admin` was granted, and nothing of the key principal `admin`
    assert principal.grants == ORDERS


def test_groups_come_from_the_groups_claim_only(
    authenticator: Authenticator, access: AccessControl, issuer: Issuer
) -> None:
    # Given group `admins` granted everything
    access.put_principal(ROOT, "group:admins", EVERYTHING)
    # When one JWT names it as its subject and another lists it in its groups claim
    as_subject = authenticator.authenticate(
        issuer.token(aud="mqless-app", sub="group:admins", **{"cognito:groups": []})
    )
    as_member = authenticator.authenticate(
        issuer.token(aud="mqless-app", sub="carol", **{"cognito:groups": ["admins"]})
    )
    # Then only the member gets the group's grants
    assert as_subject.grants == ()
    assert as_member.grants == EVERYTHING


@pytest.mark.parametrize("principal_id", ["jwt:alice", "group:admins", "iam:1:role:Ops"])
def test_no_api_key_is_issued_for_principals_that_other_credentials_prove(
    access: AccessControl, principal_id: str
) -> None:
    # Given a principal of the JWT, group or IAM namespace, with grants
    access.put_principal(ROOT, principal_id, ORDERS)
    # When an admin asks for an API key for it
    # Then it is refused: a key would let its holder act in a namespace it cannot prove
    with pytest.raises(InvalidRequest, match="proven by their own credentials"):
        access.issue_key(ROOT, principal_id)
    assert access.list_keys(ROOT, principal_id) == []


def test_an_issuer_without_an_audience_refuses_every_jwt_but_api_keys_still_work(
    access: AccessControl, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an authenticator configured with an issuer and no audience (by hand: the
    # template refuses to deploy so)
    verifier = JwtVerifier(JwtSettings(issuer=issuer.url), IssuerKeys(issuer.url))
    authenticator = Authenticator(access, verifier)
    access.put_principal(ROOT, "jwt:alice", ORDERS)
    access.put_principal(ROOT, "billing", ORDERS)
    key = access.issue_key(ROOT, "billing").token
    # When a valid JWT of that issuer, with any audience, authenticates
    for token in (issuer.token(aud="mqless-app"), issuer.token(aud="another-app")):
        # Then it is refused, saying why
        with pytest.raises(Unauthorized, match="configured without an audience"):
            authenticator.authenticate(token)
    # ...the configuration error is logged
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("configuration error: JWT_ISSUER is set without" in e for e in errors)
    # ...and API keys still work
    assert authenticator.authenticate(key).id == "billing"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "another-app"}, "another audience"),
        ({"iss": "https://evil.example"}, "invalid JWT"),
        ({"exp": int(time.time()) - 120}, "this JWT has expired"),
        ({"sub": ""}, "no 'sub' claim"),
        ({"kid": "rotated-away"}, "does not publish"),
        ({"key": "forged"}, "invalid JWT"),
    ],
)
def test_a_jwt_that_is_not_exactly_right_is_refused(
    authenticator: Authenticator, issuer: Issuer, change: dict[str, Any], reason: str
) -> None:
    # Given a JWT wrong in one way (another audience or issuer, expired, no subject, a key id the
    # issuer does not publish, signed with another key)
    claims: dict[str, Any] = {"aud": "mqless-app", **change}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = issuer.token(
        key=key if claims.pop("key", None) else None, kid=claims.pop("kid", None), **claims
    )

    # When it is authenticated
    # Then it is refused as unauthorized, saying why
    with pytest.raises(Unauthorized, match=reason):
        authenticator.authenticate(token)


def test_issuer_keys_are_fetched_once_and_unknown_key_ids_refetch_at_most_once_a_minute(
    issuer: Issuer,
) -> None:
    # Given the issuer's keys, not yet fetched, on a clock at 0 s
    now = [0.0]
    keys = IssuerKeys(issuer.url, now=lambda: now[0])
    issuer.requests.clear()

    # When its key is asked for twice, an unknown key id three times, and again a minute later
    keys.key("k1")
    keys.key("k1")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            keys.key("forged-kid")
    now[0] = 61.0
    with pytest.raises(Unauthorized):
        keys.key("forged-kid")

    # Then discovery + JWKS were fetched on first use, and once more after a minute: never per token
    assert issuer.requests.count("/jwks.json") == 2


def test_without_an_issuer_only_api_keys_are_accepted(access: AccessControl) -> None:
    # Given an authenticator with no JWT issuer
    # When a JWT is presented
    # Then it is refused as unauthorized: no JWT issuer
    with pytest.raises(Unauthorized, match="no JWT issuer"):
        Authenticator(access).authenticate("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")


def test_an_unreachable_issuer_refuses_instead_of_failing() -> None:
    # Given an issuer URL nobody listens on
    keys = IssuerKeys("http://127.0.0.1:9")

    # When a key is asked for
    # Then the token is refused as unauthorized (its keys cannot be read), not an error
    with pytest.raises(Unauthorized, match="cannot be read"):
        keys.key("k1")


# ---- what the authorizer reads ------------------------------------------------------------


def _authorizer_leading_keys() -> set[str]:
    """The partitions template.yaml lets the authorizer read (`dynamodb:LeadingKeys`)."""
    stack = Stack(load_template(TEMPLATE))
    [statement] = [
        s
        for policy in stack.functions()["AuthorizerFunction"]["Policies"]
        for s in policy["Statement"]
    ]
    return set(statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"])


def test_the_authorizer_reads_only_the_partitions_its_policy_allows(
    aws: Aws, authenticator: Authenticator, access: AccessControl, issuer: Issuer
) -> None:
    # Given a key, a revoked key, and a JWT principal with a group
    access.put_principal(ROOT, "billing", ORDERS)
    access.put_principal(ROOT, "jwt:alice", ORDERS)
    access.put_principal(ROOT, "group:ops", OPS)
    good = access.issue_key(ROOT, "billing").token
    revoked = access.issue_key(ROOT, "billing")
    access.revoke_key(ROOT, revoked.key_id)
    jwt_token = issuer.token(aud="mqless-app", **{"cognito:groups": ["ops"]})
    # When the authorizer answers them (and a key it does not know), recording every
    # DynamoDB call it makes
    calls: list[tuple[str, set[str]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "GetItem":
            keys = [params["Key"]]
        elif model.name == "BatchGetItem":
            keys = [k for table in params["RequestItems"].values() for k in table["Keys"]]
        else:
            keys = []
        calls.append((model.name, {k["pk"]["S"] for k in keys}))

    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)
    try:
        for token in (good, revoked.token, "mqk_0123456789abcdef01234567_" + "A" * 43, jwt_token):
            authorize(_http_authorizer_event(f"Bearer {token}"), authenticator)
    finally:
        aws.dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", record)
    # Then it only read items, of the partitions template.yaml's condition allows
    assert {name for name, _ in calls} == {"GetItem", "BatchGetItem"}
    read = set().union(*(partitions for _, partitions in calls))
    assert read == _authorizer_leading_keys()


# ---- the authorizer's answers ------------------------------------------------------------


def _http_authorizer_event(authorization: str | None) -> dict[str, Any]:
    headers = {"authorization": authorization} if authorization is not None else {}
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:api/$default/GET/queues",
        "identitySource": [authorization] if authorization else [],
        "routeKey": "GET /queues",
        "headers": headers,
        "requestContext": {"http": {"sourceIp": "203.0.113.7"}, "routeKey": "GET /queues"},
    }


def _ws_authorizer_event(
    query: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:ws/live/$connect",
        "headers": headers or {},
        "queryStringParameters": query,
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT"},
    }


def test_the_http_authorizer_passes_the_principal_and_grants_as_context(
    authenticator: Authenticator, access: AccessControl
) -> None:
    # Given a key for billing
    access.put_principal(ROOT, "billing", ORDERS)
    token = access.issue_key(ROOT, "billing").token

    # When the HTTP authorizer answers it as a Bearer token, with a wrong secret, and as Basic
    allowed = authorize(_http_authorizer_event(f"Bearer {token}"), authenticator)
    refused = authorize(_http_authorizer_event(f"Bearer {token}x"), authenticator)
    not_bearer = authorize(_http_authorizer_event(f"Basic {token}"), authenticator)

    # Then only the first is authorized, and its context gives the API billing with its grants
    assert allowed["isAuthorized"] is True
    caller = http_caller(
        {"requestContext": {"authorizer": {"lambda": allowed["context"]}}},
        required=True,
        now_s=time.time(),
        iam=lambda arn: ANONYMOUS,
    )
    assert (caller.id, caller.grants) == ("billing", ORDERS)
    assert refused == not_bearer == {"isAuthorized": False}


def test_the_websocket_authorizer_reads_the_query_string_or_the_header(
    authenticator: Authenticator, access: AccessControl
) -> None:
    # Given a key for billing
    access.put_principal(ROOT, "billing", ORDERS)
    token = access.issue_key(ROOT, "billing").token

    # When the WebSocket authorizer answers it in the access_token query parameter, in the
    # Authorization header, and an unknown key
    by_query = authorize(_ws_authorizer_event(query={"access_token": token}), authenticator)
    by_header = authorize(
        _ws_authorizer_event(headers={"Authorization": f"Bearer {token}"}), authenticator
    )
    wrong = authorize(_ws_authorizer_event(query={"access_token": "mqk_nope"}), authenticator)

    # Then both ways allow $connect with billing and its grants in the context, and the unknown key
    # is denied
    for answer in (by_query, by_header):
        [statement] = answer["policyDocument"]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Resource"].endswith("/$connect")
        caller = websocket_caller(
            {"requestContext": {"authorizer": {"principalId": "x", **answer["context"]}}},
            required=True,
            now_s=time.time(),
        )
        assert (caller.id, caller.grants) == ("billing", ORDERS)
    assert wrong["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_a_websocket_handshake_without_a_token_is_401_unless_it_offers_stomp(
    authenticator: Authenticator,
) -> None:
    # Given a handshake without a token
    # When the authorizer answers it
    # Then it is 401 (API Gateway's `Unauthorized`)
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(_ws_authorizer_event(), authenticator)

    # When it offers STOMP as its subprotocol (whose CONNECT frame carries the credentials)
    pending = authorize(
        _ws_authorizer_event(headers={"Sec-WebSocket-Protocol": "v11.stomp, v12.stomp"}),
        authenticator,
    )

    # Then it is allowed, as a pending caller with no grants
    assert pending["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert pending["context"]["kind"] == "pending"
    caller = websocket_caller(
        {"requestContext": {"authorizer": {"principalId": "x", **pending["context"]}}},
        required=True,
        now_s=time.time(),
    )
    assert (caller.id, caller.kind, caller.grants) == ("", "pending", ())


# ---- a credential's expiry caps the authorizer's (cached) answer ---------------------------


def _http_caller_at(context: dict[str, str], now_s: float) -> Principal:
    """The caller the HTTP function sees at `now_s` for this authorizer context."""
    return http_caller(
        {"requestContext": {"authorizer": {"lambda": context}}},
        required=True,
        iam=lambda arn: ANONYMOUS,
        now_s=now_s,
    )


def test_a_keys_expiry_travels_with_the_authorizers_answer_and_ends_it(
    authenticator: Authenticator, access: AccessControl, clock: ManualClock
) -> None:
    # Given a key that expires in 60 s, allowed by the HTTP authorizer now
    access.put_principal(ROOT, "billing", ORDERS)
    issued = access.issue_key(ROOT, "billing", ttl_seconds=60)
    answer = authorize(_http_authorizer_event(f"Bearer {issued.token}"), authenticator)
    # When API Gateway hands that (cached) answer to the function before and at the expiry
    assert answer["context"]["expires_at"] == str(issued.expires_at)
    assert issued.expires_at is not None
    before = _http_caller_at(answer["context"], issued.expires_at - 1)
    # Then it is the key's principal until then, and refused from then on
    assert before.id == "billing"
    with pytest.raises(Unauthorized, match="this API key has expired"):
        _http_caller_at(answer["context"], issued.expires_at)


def test_a_key_without_expiry_puts_none_in_the_authorizers_answer(
    authenticator: Authenticator, access: AccessControl
) -> None:
    # Given a key that never expires
    access.put_principal(ROOT, "billing", ORDERS)
    token = access.issue_key(ROOT, "billing").token
    # When the authorizer allows it
    answer = authorize(_http_authorizer_event(f"Bearer {token}"), authenticator)
    # Then its answer names no expiry, and works for as long as API Gateway keeps it
    assert "expires_at" not in answer["context"]
    assert _http_caller_at(answer["context"], time.time() + 10 * 365 * 86400).id == "billing"


def test_a_jwts_expiry_ends_the_authorizers_answer_too(
    authenticator: Authenticator, issuer: Issuer
) -> None:
    # Given a JWT that expires in 60 s, allowed by the HTTP authorizer now
    exp = int(time.time()) + 60
    token = issuer.token(aud="mqless-app", exp=exp)
    answer = authorize(_http_authorizer_event(f"Bearer {token}"), authenticator)
    # When API Gateway hands that answer to the function after the token's expiry (and
    # the clock skew the authorizer allows)
    # Then it is refused there, as the authorizer would refuse the token itself
    assert _http_caller_at(answer["context"], exp + JWT_LEEWAY_SECONDS - 1).id == "jwt:alice"
    with pytest.raises(Unauthorized, match="this JWT has expired"):
        _http_caller_at(answer["context"], exp + JWT_LEEWAY_SECONDS)


def test_a_websocket_connect_with_an_expired_credential_is_refused(
    authenticator: Authenticator, access: AccessControl, clock: ManualClock
) -> None:
    # Given the WebSocket authorizer's answer for a key that expires in 60 s
    access.put_principal(ROOT, "billing", ORDERS)
    issued = access.issue_key(ROOT, "billing", ttl_seconds=60)
    answer = authorize(_ws_authorizer_event(query={"access_token": issued.token}), authenticator)
    event = {"requestContext": {"authorizer": {"principalId": "billing", **answer["context"]}}}
    assert issued.expires_at is not None
    # When $connect reads it after the key expired
    # Then the caller is refused
    assert websocket_caller(event, required=True, now_s=issued.expires_at - 1).id == "billing"
    with pytest.raises(Unauthorized, match="this API key has expired"):
        websocket_caller(event, required=True, now_s=issued.expires_at)


# ---- the caller as the API functions see it ---------------------------------------------


def test_with_auth_required_a_request_without_a_principal_is_unauthorized() -> None:
    # Given auth required
    # When a request's authorizer context names no principal (none, empty, blank)
    # Then it is unauthorized
    for authorizer in ({}, {"lambda": {}}, {"lambda": {"principal": ""}}):
        with pytest.raises(Unauthorized):
            http_caller(
                {"requestContext": {"authorizer": authorizer}},
                required=True,
                now_s=time.time(),
                iam=lambda arn: ANONYMOUS,
            )
    # ...and without auth required, such a request is the anonymous caller
    assert http_caller({}, required=False, iam=lambda arn: ROOT, now_s=0) == ANONYMOUS


@pytest.mark.parametrize(
    ("arn", "principal_id"),
    [
        (
            "arn:aws:sts::123456789012:assumed-role/OrderService/i-0abc",
            "iam:123456789012:role:OrderService",
        ),
        ("arn:aws:iam::123456789012:user/ops/jane", "iam:123456789012:user:jane"),
        ("arn:aws:iam::123456789012:root", "iam:123456789012:root"),
    ],
)
def test_iam_callers_are_named_so_an_admin_can_grant_them(arn: str, principal_id: str) -> None:
    # Given an IAM caller's ARN (a role's session, a user under a path, the account root)
    # When it is named
    # Then it has the principal id an admin grants to: iam:ACCOUNT:role:NAME, iam:ACCOUNT:user:NAME,
    # iam:ACCOUNT:root
    assert iam_principal_id(arn) == principal_id


def test_an_iam_caller_gets_the_grants_kept_under_its_name(access: AccessControl) -> None:
    # Given grants kept under an IAM role's principal id
    access.put_principal(ROOT, "iam:123456789012:role:OrderService", ORDERS)
    iam = IamPrincipals(access)

    # When a request signed by a session of that role arrives
    caller = http_caller(
        {
            "requestContext": {
                "authorizer": {
                    "iam": {"userArn": "arn:aws:sts::123456789012:assumed-role/OrderService/s1"}
                }
            }
        },
        required=True,
        now_s=time.time(),
        iam=iam.principal,
    )

    # Then the caller is an IAM principal with those grants; an ARN that is no ARN is unauthorized
    assert (caller.kind, caller.grants) == ("iam", ORDERS)
    with pytest.raises(Unauthorized):
        iam_principal_id("not-an-arn")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_tokens_are_read_from_the_authorization_header(
    header: str | None, token: str | None
) -> None:
    # Given an Authorization header (Bearer in any case and spacing, Basic, Bearer alone, empty,
    # none)
    # When its bearer token is read
    # Then it is the token, or None when there is none
    assert bearer_token(header) == token
