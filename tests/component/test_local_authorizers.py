"""The local gateways run Lambda authorizers the way API Gateway does.

In-process, with the fixture tests/e2e/fixtures/auth_app: its authorizers decide by the
token's name (`allow-<who>`, `deny`, `crash`, `garbage`), and its route functions answer
with the `requestContext.authorizer` they were given. Real clients drive the gateways (httpx,
`websockets`); a FunctionHost listener counts the authorizer's invocations.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mqless_cli.cfn import Stack, Template, load_template
from mqless_cli.local.functions import FunctionHost, Invocation
from mqless_cli.local.http_gateway import HttpGateway
from mqless_cli.local.ws_gateway import WebSocketGateway

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "e2e" / "fixtures" / "auth_app"
TIMEOUT = 5.0


@dataclass
class Local:
    """Both gateways of one stack, and every invocation their functions made."""

    http: HttpGateway
    ws: WebSocketGateway
    calls: list[Invocation] = field(default_factory=list)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.http.url}{path}", headers=headers, timeout=TIMEOUT)

    def invoked(self, function: str) -> int:
        return sum(1 for call in self.calls if call.function == function)

    def ws_open(self, query: str = "", **kwargs: Any) -> Any:
        return connect(f"{self.ws.url}/{self.ws.stage}{query}", open_timeout=TIMEOUT, **kwargs)

    def ws_refusal(self, query: str = "", **kwargs: Any) -> int:
        """The HTTP status a refused handshake got."""
        with pytest.raises(InvalidStatus) as refused, self.ws_open(query, **kwargs):
            pass
        return refused.value.response.status_code


def running(template: Template, *, run_authorizers: bool = True) -> Iterator[Local]:
    stack = Stack(template)
    calls: list[Invocation] = []
    functions = FunctionHost(stack, APP, listener=calls.append)
    http = HttpGateway(stack, functions, port=0, run_authorizers=run_authorizers)
    ws = WebSocketGateway(stack, functions, port=0, run_authorizers=run_authorizers)
    http.start()
    ws.start()
    try:
        yield Local(http, ws, calls)
    finally:
        ws.stop()
        http.stop()


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    yield from running(load_template(APP / "template.yaml"))


@pytest.fixture(scope="module")
def open_local() -> Iterator[Local]:
    """The same stack with authorizers off (`mqless dev --no-auth`)."""
    yield from running(load_template(APP / "template.yaml"), run_authorizers=False)


def fresh(name: str = "alice") -> str:
    """An allowing token no other test sent (responses are cached per token)."""
    return f"allow-{name}-{uuid.uuid4().hex[:8]}"


def ws_reply(client: Any) -> dict[str, Any]:
    """What the fixture's $default answers: the authorizer of $connect and of the message."""
    client.send("who am I?")
    reply: dict[str, Any] = json.loads(client.recv(timeout=TIMEOUT))
    return reply


# --- HTTP API -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""], ids=["no-header", "empty-header"])
def test_a_request_without_its_identity_source_is_401_without_invoking_the_authorizer(
    local: Local, token: str | None
) -> None:
    # Given a route whose authorizer's identity source is the Authorization header
    before = local.invoked("AuthorizerFunction")
    # When a request comes without it (or with it empty)
    headers = {} if token is None else {"Authorization": token}
    response = httpx.get(f"{local.http.url}/private", headers=headers, timeout=TIMEOUT)
    # Then API Gateway's 401 comes back, and neither the authorizer nor the route ran
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert local.invoked("AuthorizerFunction") == before


def test_an_authorized_request_reaches_the_route_with_the_authorizer_context(
    local: Local,
) -> None:
    # Given a route behind an authorizer that allows `allow-<who>` tokens
    # When a request's token is allowed as alice
    response = local.get("/private", "allow-alice")
    # Then the route runs, its event carrying the authorizer's context under `lambda`
    assert response.status_code == 200
    authorizer = response.json()["authorizer"]
    assert list(authorizer) == ["lambda"]
    assert authorizer["lambda"]["principal"] == "alice"


def test_the_authorizer_gets_the_payload_2_request_event(local: Local) -> None:
    # Given a route behind a Lambda authorizer that returns the event it saw
    # When a request with a query string and a cookie is authorized
    token = fresh()
    response = httpx.get(
        f"{local.http.url}/private?colour=red",
        headers={"Authorization": f"Bearer {token}", "Cookie": "a=1"},
        timeout=TIMEOUT,
    )
    seen = json.loads(response.json()["authorizer"]["lambda"]["seen"])
    # Then the authorizer saw the REQUEST event of payload format 2.0 for this route
    assert seen["version"] == "2.0"
    assert seen["type"] == "REQUEST"
    assert (
        seen["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:local/$default/GET/private"
    )
    assert seen["identitySource"] == [f"Bearer {token}"]
    assert seen["routeKey"] == "GET /private"
    assert (seen["rawPath"], seen["rawQueryString"]) == ("/private", "colour=red")
    assert seen["cookies"] == ["a=1"]
    assert seen["headers"]["authorization"] == f"Bearer {token}"
    assert seen["queryStringParameters"] == {"colour": "red"}
    assert seen["requestContext"]["http"]["method"] == "GET"
    assert seen["pathParameters"] == {} and seen["stageVariables"] == {}


def test_a_refusal_is_403_and_the_route_does_not_run(local: Local) -> None:
    # Given a token the authorizer does not authorize
    before = local.invoked("EchoFunction")
    # When it is used
    response = local.get("/private", "deny")
    # Then API Gateway's 403 comes back and the route's function never ran
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}
    assert local.invoked("EchoFunction") == before


@pytest.mark.parametrize("token", ["crash", "garbage"])
def test_an_authorizer_that_fails_or_answers_nonsense_is_a_500(local: Local, token: str) -> None:
    # Given a route behind an authorizer that raises on `crash` and answers `garbage` with nonsense
    # When the authorizer raises, or returns what is no simple response
    response = local.get("/private", token)
    # Then the caller gets API Gateway's 500
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_responses_are_cached_per_identity_source_value(local: Local) -> None:
    # Given an authorizer whose responses are cached (ReauthorizeEvery 300)
    token, other = fresh(), fresh("bob")
    before = local.invoked("AuthorizerFunction")
    # When the same token is sent twice, then another one
    first, second = local.get("/private", token), local.get("/private", token)
    third = local.get("/private", other)
    # Then the authorizer ran once per token, and the cached answer still let the request in
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert second.json()["authorizer"]["lambda"]["principal"].startswith("alice-")
    assert local.invoked("AuthorizerFunction") == before + 2


def test_a_failure_is_not_cached(local: Local) -> None:
    # Given an authorizer that failed for a token
    before = local.invoked("AuthorizerFunction")
    local.get("/private", "crash")
    # When the token is sent again
    again = local.get("/private", "crash")
    # Then the authorizer is asked again
    assert again.status_code == 500
    assert local.invoked("AuthorizerFunction") == before + 2


def test_a_public_route_runs_no_authorizer(local: Local) -> None:
    # Given a route whose event says `Auth: {Authorizer: NONE}`
    before = local.invoked("AuthorizerFunction") + local.invoked("PolicyAuthorizerFunction")
    # When it is called with no token
    response = local.get("/public")
    # Then it answers, with no authorizer context and no authorizer run
    assert response.status_code == 200
    assert response.json() == {"authorizer": None}
    after = local.invoked("AuthorizerFunction") + local.invoked("PolicyAuthorizerFunction")
    assert after == before


def test_a_policy_authorizer_lets_in_only_the_routes_its_policy_allows(local: Local) -> None:
    # Given an IAM-policy authorizer that allows /policy/a only
    # When /policy/a and /policy/b are called
    allowed = local.get("/policy/a?allow=a")
    refused = local.get("/policy/b?allow=a")
    # Then the first gets in with the policy's context, the second gets a 403
    assert allowed.status_code == 200
    assert allowed.json()["authorizer"] == {"lambda": {"principal": "policy-user"}}
    assert refused.status_code == 403


def test_an_explicit_deny_wins_over_an_allow(local: Local) -> None:
    # Given a policy that allows /policy/secret and also denies it
    # When it is called
    response = local.get("/policy/secret?allow=secret")
    # Then the Deny wins
    assert response.status_code == 403


def test_an_authorizer_without_identity_sources_runs_for_every_request(local: Local) -> None:
    # Given the policy authorizer, which has no identity source to key a cache on
    before = local.invoked("PolicyAuthorizerFunction")
    # When the same request is sent twice
    local.get("/policy/a?allow=a")
    local.get("/policy/a?allow=a")
    # Then it ran twice
    assert local.invoked("PolicyAuthorizerFunction") == before + 2


def test_the_authorizer_shows_in_the_console_like_any_invocation(local: Local) -> None:
    # Given a route behind an authorizer, every invocation recorded as the console lists it
    # When a request is authorized
    local.get("/private", fresh("carol"))
    # Then the authorizer's invocation is reported, saying who it let in
    summaries = [call.summary for call in local.calls if call.function == "AuthorizerFunction"]
    assert any(s.startswith("authorize GET /private -> allow carol-") for s in summaries)


def test_with_authorizers_off_every_route_is_public(open_local: Local) -> None:
    # Given the gateway of `mqless dev --no-auth`
    # When a protected route is called without a token
    response = open_local.get("/private")
    # Then it answers, and no authorizer ran
    assert response.status_code == 200
    assert response.json() == {"authorizer": None}
    assert open_local.invoked("AuthorizerFunction") == 0


# --- WebSocket API ------------------------------------------------------------------------


def test_a_handshake_the_authorizer_calls_unauthorized_is_refused_with_401(local: Local) -> None:
    # Given a $connect authorizer that raises Unauthorized when there is no token
    # When a client connects without one
    # Then the upgrade is refused with 401
    assert local.ws_refusal() == 401


@pytest.mark.parametrize(("token", "status"), [("deny", 403), ("crash", 500), ("garbage", 500)])
def test_a_denied_or_failed_authorization_refuses_the_handshake(
    local: Local, token: str, status: int
) -> None:
    # Given a WebSocket $connect behind an authorizer
    # When the authorizer answers Deny, raises, or answers what is no policy
    # Then the handshake is refused with 403, 500, 500
    assert local.ws_refusal(f"?access_token={token}") == status


@pytest.mark.parametrize("where", ["query", "header"])
def test_an_allowed_connection_carries_the_authorizer_context_on_every_event(
    local: Local, where: str
) -> None:
    # Given a token in the query string or the Authorization header
    if where == "query":
        client = local.ws_open("?access_token=allow-alice")
    else:
        client = local.ws_open(additional_headers={"Authorization": "Bearer allow-alice"})
    # When the connection is open and sends a message
    with client:
        reply = ws_reply(client)
    # Then $connect and the message both got principalId and context in their authorizer
    for event in ("connect", "message"):
        authorizer = reply[event]
        assert authorizer["principalId"] == "alice"
        assert authorizer["kind"] == "api_key"


def test_the_websocket_authorizer_gets_the_request_event_of_the_handshake(local: Local) -> None:
    # Given a WebSocket $connect behind an authorizer that returns the event it saw
    # When a client connects with a token and another query parameter
    with local.ws_open("?access_token=allow-alice&colour=red") as client:
        seen = json.loads(ws_reply(client)["connect"]["seen"])
    # Then the authorizer saw the REQUEST event API Gateway sends for $connect
    assert seen["type"] == "REQUEST"
    assert seen["methodArn"] == (
        "arn:aws:execute-api:us-east-1:123456789012:mqless-WsApi/live/$connect"
    )
    assert seen["queryStringParameters"] == {"access_token": "allow-alice", "colour": "red"}
    assert seen["multiValueQueryStringParameters"]["colour"] == ["red"]
    assert seen["headers"]["Upgrade"] == "websocket"
    assert seen["multiValueHeaders"]["Upgrade"] == ["websocket"]
    assert seen["stageVariables"] == {}
    context = seen["requestContext"]
    assert (context["routeKey"], context["eventType"]) == ("$connect", "CONNECT")
    assert context["connectionId"]


def test_a_missing_websocket_identity_source_is_401_without_invoking_the_authorizer() -> None:
    # Given a $connect authorizer whose identity source is the access_token query parameter
    template = load_template(APP / "template.yaml")
    resources: Any = template["Resources"]
    source = ["route.request.querystring.access_token"]
    resources["WsAuthorizer"]["Properties"]["IdentitySource"] = source
    for local in running(template):
        # When a client connects without it
        status = local.ws_refusal()
        # Then the handshake is refused with 401 and the authorizer never ran
        assert status == 401
        assert local.invoked("WsAuthorizerFunction") == 0


def test_with_authorizers_off_every_handshake_is_let_through(open_local: Local) -> None:
    # Given the gateway of `mqless dev --no-auth`
    # When a client connects without a token
    with open_local.ws_open() as client:
        reply = ws_reply(client)
    # Then it is connected, with no authorizer context, and no authorizer ran
    assert reply == {"connect": None, "message": None}
    assert open_local.invoked("WsAuthorizerFunction") == 0
