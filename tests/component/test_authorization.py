"""Grants decide every action, over HTTP, the WebSocket JSON protocol and STOMP.

Each action is tried by a principal whose grants allow exactly it and by principals that
just miss (the right action on the destinations below it, or the other actions on it).
The first succeeds; the others are refused with a message naming who, what and where,
and leave both tables exactly as they were.

Everything goes through the functions' entry points with the template's environment
(AUTH_MODE=required, so `wiring` wires GrantPolicy): HTTP API payload-2.0 events carrying
the authorizer's context, and WebSocket events whose `$connect` carries what the
WebSocket authorizer allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any

import pytest

from mqless import assembly, wiring
from mqless.domain import names
from mqless.domain.access.principals import Principal, parse_grants
from mqless.domain.access.users import EVERYTHING
from mqless.domain.clock import ManualClock, SystemClock
from mqless.domain.models import QueueSettings
from mqless.domain.push.pushes import Connection
from mqless.storage.dynamo import from_wire
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.stomp_frames import Frame
from mqless_cli.billing import Meter, observing_moto
from mqless_cli.cfn import Stack
from tests.component.conftest import Aws, RecordingPusher
from tests.component.conftest_http import EVENTS, HttpApi, Reply, load_function
from tests.lambda_support import (
    FakeLambdaContext,
    authorizer_context,
    http_event,
    websocket_event,
)

# the functions' boto3 clients are made once for the module (tests/component/conftest.py)
pytestmark = pytest.mark.usefixtures("wiring_clients_kept")

ACTIONS = ("send", "receive", "admin")
ALLOWED = "alice"
REFUSED = "mallory"
ROOT = Principal(id="root", kind="api_key", grants=EVERYTHING)
ADMIN_CTX = authorizer_context("test-admin", [{"pattern": ">", "actions": list(ACTIONS)}])
PENDING_CTX = {"principal": "", "kind": "pending", "grants": "[]"}

Grants = tuple[dict[str, Any], ...]
Snapshot = list[tuple[str, str]]


def grant(pattern: str, *actions: str) -> dict[str, Any]:
    return {"pattern": pattern, "actions": list(actions)}


def caller(principal: str, grants: Grants) -> dict[str, str]:
    """The authorizer's context for a principal with these grants."""
    return authorizer_context(principal, list(grants))


# ---- fixtures: the template's functions over one moto per module --------------------------


def _stack(aws: Aws) -> Stack:
    assert aws.stack is not None
    return aws.stack


@pytest.fixture(autouse=True)
def pusher(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingPusher]:
    """Every test: empty tables, the functions' environment from the template (so `wiring`
    builds the services with GrantPolicy), and pushes recorded instead of posted."""
    for name, value in _stack(aws).environment("WebSocketFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    recording = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recording)
    yield recording
    wiring.reset()


@pytest.fixture
def api(aws: Aws) -> HttpApi:
    """The HTTP function with the template's routes; `api.get(...)` etc. act as an admin."""
    return HttpApi(_stack(aws).http_routes())


def snapshot(aws: Aws) -> Snapshot:
    """Every item of both tables, comparable: a refused action must leave this unchanged."""
    found: Snapshot = []
    for table in (aws.settings.messages_table, aws.settings.destinations_table):
        for page in aws.dynamodb.get_paginator("scan").paginate(
            TableName=table, ConsistentRead=True
        ):
            found += [(table, json.dumps(i, sort_keys=True, default=str)) for i in page["Items"]]
    return sorted(found)


def as_(api: HttpApi, who: dict[str, str] | None, method: str, url: str, body: Any = None) -> Reply:
    """A request through the HTTP function with this authorizer context (None: none)."""
    route, params = api.route_of(method, url.partition("?")[0])
    event = http_event(method, url, body, route=route, authorizer=who)
    if params:
        event["pathParameters"] = params
    return api.invoke(event)


def ok(reply: Reply, status: int = 200) -> Any:
    assert reply.status == status, reply.text
    return reply.json if reply.text else None


def assert_problem(reply: Reply, status: int, error: str) -> None:
    """The reply is a JSON problem with this status and error code, and a message (plain
    asserts, so a failure shows what came instead)."""
    seen = (reply.status, reply.headers.get("Content-Type"), reply.json.get("error"))
    assert seen == (status, "application/json", error), reply.text
    assert isinstance(reply.json.get("message"), str), reply.text
    assert reply.json["message"], reply.text


# ---- HTTP: one table row per route -------------------------------------------------------

Given = Callable[[HttpApi], dict[str, str]]


def _nothing(api: HttpApi) -> dict[str, str]:
    return {}


def _a_queue(api: HttpApi) -> dict[str, str]:
    ok(api.put("/queues/orders", {}), 201)
    return {}


def _a_message(api: HttpApi) -> dict[str, str]:
    sent = ok(api.post("/queues/orders/messages", {"body": "hello"}), 201)
    return {"message_id": sent["message_id"]}


def _a_schedule(api: HttpApi) -> dict[str, str]:
    sent = ok(api.post("/queues/orders/messages", {"body": "later", "delay_seconds": 7200}), 201)
    return {"schedule_id": sent["message_id"]}


def _a_topic_schedule(api: HttpApi) -> dict[str, str]:
    sent = ok(api.post("/topics/shop.orders/messages", {"body": "later", "cron": "0 * * * *"}), 201)
    return {"schedule_id": sent["message_id"]}


def _a_lease(api: HttpApi) -> dict[str, str]:
    _a_message(api)
    [leased] = ok(api.post("/queues/orders/receive", {}))["messages"]
    return {"receipt": leased["receipt"]}


def _a_connection(api: HttpApi) -> dict[str, str]:
    wiring.sessions().open(Connection("c1"), Principal(id="ops", grants=EVERYTHING))
    return {"connection_id": "c1"}


def _a_message_and_an_archive(api: HttpApi) -> dict[str, str]:
    ok(api.put("/queues/archive", {}), 201)
    return _a_message(api)


def _a_message_in_the_dlq(api: HttpApi) -> dict[str, str]:
    _a_queue(api)  # orders, and orders.dlq with it
    ok(api.post("/queues/orders.dlq/messages", {"body": "back to orders"}), 201)
    return {}


def _an_audit_queue(api: HttpApi) -> dict[str, str]:
    ok(api.put("/queues/audit", {}), 201)
    return {}


def _a_subscription(api: HttpApi) -> dict[str, str]:
    _an_audit_queue(api)
    ok(api.put("/topics/shop.orders/subscriptions/audit", {"queue": "audit"}), 201)
    return {}


def _a_principal(api: HttpApi) -> dict[str, str]:
    ok(api.put("/access/principals/svc", {"grants": [grant("orders", "send")]}), 201)
    return {}


def _a_key(api: HttpApi) -> dict[str, str]:
    _a_principal(api)
    issued = ok(api.post("/access/principals/svc/keys", {}), 201)
    return {"key_id": issued["key_id"]}


@dataclass(frozen=True)
class Refusal:
    """Grants that just miss an action, and what the refusal must say is missing."""

    label: str
    _: KW_ONLY
    grants: Grants
    missing: str  # "<action> <destination>", as the 403's message says it

    @property
    def message(self) -> str:
        return f"{REFUSED!r} may not {self.missing}"


def lacking(action: str, destination: str) -> tuple[Refusal, ...]:
    """The near misses of `action` on `destination`."""
    missing = f"{action} {destination!r}"
    return (
        # `x.*` covers x.a, x.b... but not x itself
        Refusal("below it", grants=(grant(f"{destination}.*", *ACTIONS),), missing=missing),
        Refusal(
            "other actions",
            grants=(grant(destination, *(a for a in ACTIONS if a != action)),),
            missing=missing,
        ),
    )


def lacking_everything(missing: str) -> tuple[Refusal, ...]:
    """The near misses of `admin` on every destination (`>` alone grants it)."""
    return (
        Refusal("admin of orders.>", grants=(grant("orders.>", *ACTIONS),), missing=missing),
        Refusal("send and receive on >", grants=(grant(">", "send", "receive"),), missing=missing),
    )


ADMIN_OF_EVERYTHING: Grants = (grant(">", "admin"),)
MANAGE_ACCESS = "manage principals and keys (that needs admin on '>')"
EVERY_DESTINATION = "admin every destination (that needs a grant on '>')"


@dataclass(frozen=True)
class Route:
    """One route of the HTTP API and who may use it."""

    method: str
    route: str  # as template.yaml declares it
    _: KW_ONLY
    url: str  # the request's path; {names} come from what `given` returns
    allowed: Grants
    refused: tuple[Refusal, ...]
    status: int  # what the allowed principal gets
    body: Any = None  # a callable gets what `given` returned
    given: Given = _nothing
    changes: bool = True  # whether the allowed request writes anything

    def request(self, api: HttpApi, who: dict[str, str] | None, values: dict[str, str]) -> Reply:
        body = self.body(values) if callable(self.body) else self.body
        return as_(api, who, self.method, self.url.format(**values), body)


ROUTES = [
    # queue admin
    Route(
        "PUT",
        "/queues/{name}",
        url="/queues/orders",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=201,
        body={"visibility_timeout": 45},
    ),
    Route(
        "PATCH",
        "/queues/{name}",
        url="/queues/orders",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        body={"visibility_timeout": 45},
        given=_a_queue,
    ),
    Route(
        "GET",
        "/queues/{name}",
        url="/queues/orders",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        given=_a_queue,
        changes=False,
    ),
    Route(
        "DELETE",
        "/queues/{name}",
        url="/queues/orders",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=204,
        given=_a_message,
    ),
    Route(
        "POST",
        "/queues/{name}/purge",
        url="/queues/orders/purge",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        given=_a_message,
    ),
    Route(
        "POST",
        "/queues/{name}/redrive",
        url="/queues/orders.dlq/redrive",
        allowed=(grant("orders.dlq", "admin"), grant("orders", "send")),
        refused=(
            Refusal(
                "admin of the DLQ only",
                grants=(grant("orders.dlq", "admin"),),
                missing="send 'orders'",
            ),
            Refusal(
                "no admin of the DLQ",
                grants=(grant("orders", "send"), grant("orders.dlq", "send", "receive")),
                missing="admin 'orders.dlq'",
            ),
        ),
        status=200,
        body={"destination": "orders"},
        given=_a_message_in_the_dlq,
    ),
    # messages
    Route(
        "POST",
        "/queues/{name}/messages",
        url="/queues/orders/messages",
        allowed=(grant("orders", "send"),),
        refused=lacking("send", "orders"),
        status=201,
        body={"body": "hello"},
        given=_a_queue,
    ),
    Route(
        "POST",
        "/queues/{name}/messages/batch",
        url="/queues/orders/messages/batch",
        allowed=(grant("orders", "send"),),
        refused=lacking("send", "orders"),
        status=200,
        body={"entries": [{"id": "1", "body": "a"}, {"id": "2", "body": "b"}]},
        given=_a_queue,
    ),
    Route(
        "POST",
        "/queues/{name}/receive",
        url="/queues/orders/receive",
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        status=200,
        body={},
        given=_a_message,
    ),
    Route(
        "POST",
        "/queues/{name}/ack",
        url="/queues/orders/ack",
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        status=200,
        body=lambda v: {"receipts": [v["receipt"]]},
        given=_a_lease,
    ),
    Route(
        "POST",
        "/queues/{name}/nack",
        url="/queues/orders/nack",
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        status=200,
        body=lambda v: {"receipts": [v["receipt"]]},
        given=_a_lease,
    ),
    Route(
        "POST",
        "/queues/{name}/visibility",
        url="/queues/orders/visibility",
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        status=200,
        body=lambda v: {"receipts": [v["receipt"]], "visibility_timeout": 300},
        given=_a_lease,
    ),
    # operations
    Route(
        "GET",
        "/queues/{name}/stats",
        url="/queues/orders/stats",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        given=_a_message,
        changes=False,
    ),
    # presence: whoever may receive from the destination may ask
    Route(
        "GET",
        "/queues/{name}/presence",
        url="/queues/orders/presence",
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        status=200,
        given=_a_queue,
        changes=False,
    ),
    Route(
        "GET",
        "/topics/{name}/presence",
        url="/topics/shop.orders/presence",
        allowed=(grant("shop.orders", "receive"),),
        refused=lacking("receive", "shop.orders"),
        status=200,
        given=_a_subscription,
        changes=False,
    ),
    Route(
        "GET",
        "/queues/{name}/messages",
        url="/queues/orders/messages",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        given=_a_message,
        changes=False,
    ),
    Route(
        "DELETE",
        "/queues/{name}/messages/{message_id}",
        url="/queues/orders/messages/{message_id}",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=204,
        given=_a_message,
    ),
    Route(
        "POST",
        "/queues/{name}/messages/{message_id}/move",
        url="/queues/orders/messages/{message_id}/move",
        allowed=(grant("orders", "admin"), grant("archive", "send")),
        refused=(
            Refusal(
                "admin of the source only",
                grants=(grant("orders", "admin"),),
                missing="send 'archive'",
            ),
            Refusal(
                "no admin of the source",
                grants=(grant("archive", "send"), grant("orders", "send", "receive")),
                missing="admin 'orders'",
            ),
        ),
        status=200,
        body={"to": "archive"},
        given=_a_message_and_an_archive,
    ),
    Route(
        "GET",
        "/connections",
        url="/connections",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(EVERY_DESTINATION),
        status=200,
        changes=False,
    ),
    Route(
        "DELETE",
        "/connections/{connection_id}",
        url="/connections/{connection_id}",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(EVERY_DESTINATION),
        status=204,
        given=_a_connection,
    ),
    Route(
        "GET",
        "/history",
        url="/history?queue=orders",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        given=_a_queue,
        changes=False,
    ),
    # topics
    Route(
        "POST",
        "/topics/{name}/messages",
        url="/topics/shop.orders/messages",
        allowed=(grant("shop.orders", "send"),),
        refused=lacking("send", "shop.orders"),
        status=201,
        body={"body": "hello"},
    ),
    Route(
        "POST",
        "/topics/{name}/messages/batch",
        url="/topics/shop.orders/messages/batch",
        allowed=(grant("shop.orders", "send"),),
        refused=lacking("send", "shop.orders"),
        status=200,
        body={"entries": [{"id": "1", "body": "a"}]},
    ),
    Route(
        "GET",
        "/topics/{name}/subscriptions",
        url="/topics/shop.orders/subscriptions",
        allowed=(grant("shop.orders", "admin"),),
        refused=lacking("admin", "shop.orders"),
        status=200,
        given=_a_subscription,
        changes=False,
    ),
    Route(
        "PUT",
        "/topics/{name}/subscriptions/{sub}",
        url="/topics/shop.orders/subscriptions/audit",
        allowed=(grant("shop.orders", "admin"), grant("audit", "send")),
        refused=(
            Refusal(
                "admin of the topic only",
                grants=(grant("shop.orders", "admin"),),
                missing="send 'audit'",
            ),
            Refusal(
                "no admin of the topic",
                grants=(grant("audit", "send"), grant("shop.orders", "send", "receive")),
                missing="admin 'shop.orders'",
            ),
        ),
        status=201,
        body={"queue": "audit"},
        given=_an_audit_queue,
    ),
    Route(
        "DELETE",
        "/topics/{name}/subscriptions/{sub}",
        url="/topics/shop.orders/subscriptions/audit",
        allowed=(grant("shop.orders", "admin"),),
        refused=lacking("admin", "shop.orders"),
        status=204,
        given=_a_subscription,
    ),
    # scheduled messages: an admin's list and cancel (ActiveMQ's BROWSE and REMOVE)
    Route(
        "GET",
        "/queues/{name}/scheduled",
        url="/queues/orders/scheduled",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=200,
        given=_a_schedule,
        changes=False,
    ),
    Route(
        "DELETE",
        "/queues/{name}/scheduled/{schedule_id}",
        url="/queues/orders/scheduled/{schedule_id}",
        allowed=(grant("orders", "admin"),),
        refused=lacking("admin", "orders"),
        status=204,
        given=_a_schedule,
    ),
    Route(
        "GET",
        "/topics/{name}/scheduled",
        url="/topics/shop.orders/scheduled",
        allowed=(grant("shop.orders", "admin"),),
        refused=lacking("admin", "shop.orders"),
        status=200,
        given=_a_topic_schedule,
        changes=False,
    ),
    Route(
        "DELETE",
        "/topics/{name}/scheduled/{schedule_id}",
        url="/topics/shop.orders/scheduled/{schedule_id}",
        allowed=(grant("shop.orders", "admin"),),
        refused=lacking("admin", "shop.orders"),
        status=204,
        given=_a_topic_schedule,
    ),
    # access control: admin of everything only
    Route(
        "GET",
        "/access/principals",
        url="/access/principals",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=200,
        given=_a_principal,
        changes=False,
    ),
    Route(
        "PUT",
        "/access/principals/{principal_id}",
        url="/access/principals/svc",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=201,
        body={"grants": [grant(">", *ACTIONS)]},
    ),
    Route(
        "GET",
        "/access/principals/{principal_id}",
        url="/access/principals/svc",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=200,
        given=_a_principal,
        changes=False,
    ),
    Route(
        "DELETE",
        "/access/principals/{principal_id}",
        url="/access/principals/svc",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=204,
        given=_a_key,
    ),
    Route(
        "POST",
        "/access/principals/{principal_id}/keys",
        url="/access/principals/svc/keys",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=201,
        body={},
        given=_a_principal,
    ),
    Route(
        "GET",
        "/access/keys",
        url="/access/keys",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=200,
        given=_a_key,
        changes=False,
    ),
    Route(
        "DELETE",
        "/access/keys/{key_id}",
        url="/access/keys/{key_id}",
        allowed=ADMIN_OF_EVERYTHING,
        refused=lacking_everything(MANAGE_ACCESS),
        status=204,
        given=_a_key,
    ),
]
# Listings answer everyone, with only what the caller administers (tests further down)
LISTINGS = [
    Route(
        "GET",
        "/queues",
        url="/queues",
        allowed=(),
        refused=(),
        status=200,
        given=_a_queue,
        changes=False,
    ),
    Route(
        "GET",
        "/stats",
        url="/stats",
        allowed=(),
        refused=(),
        status=200,
        given=_a_queue,
        changes=False,
    ),
]
PUBLIC = {("GET", "/console"), ("GET", "/console/{file}"), ("GET", "/openapi.json")}


def _route_id(route: Route) -> str:
    return f"{route.method} {route.route}"


REFUSALS = [
    pytest.param(route, refusal, id=f"{_route_id(route)} [{refusal.label}]")
    for route in ROUTES
    for refusal in route.refused
]


def test_every_authenticated_route_of_the_template_is_covered_here(aws: Aws) -> None:
    # Given the routes template.yaml declares
    declared = {(r.method, r.path) for r in _stack(aws).http_routes()}
    # When those the table and the filtered-listing tests cover are taken away
    covered = [(r.method, r.route) for r in ROUTES + LISTINGS]
    # Then only the public routes are left, and nothing is covered twice or made up
    assert declared - set(covered) == PUBLIC
    assert set(covered) <= declared
    assert len(covered) == len(set(covered))


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
def test_a_principal_granted_exactly_the_action_may_use_the_route(
    api: HttpApi, aws: Aws, route: Route
) -> None:
    # Given what the route acts on
    values = route.given(api)
    before = snapshot(aws)
    # When a principal whose grants allow exactly this action calls it
    reply = route.request(api, caller(ALLOWED, route.allowed), values)
    # Then it succeeds, and what it writes shows (so the refusals below could see it too)
    assert reply.status == route.status, reply.text
    assert (snapshot(aws) != before) is route.changes


@pytest.mark.parametrize(("route", "refusal"), REFUSALS)
def test_a_principal_without_the_grant_gets_403_and_nothing_changes(
    api: HttpApi, aws: Aws, route: Route, refusal: Refusal
) -> None:
    # Given what the route acts on
    values = route.given(api)
    before = snapshot(aws)
    # When a principal whose grants just miss the action calls it
    reply = route.request(api, caller(REFUSED, refusal.grants), values)
    # Then 403 says who may not do what where, and both tables are as they were
    assert reply.status == 403, reply.text
    assert reply.headers.get("Content-Type") == "application/json"
    assert reply.json == {"error": "forbidden", "message": refusal.message}
    assert snapshot(aws) == before


@pytest.mark.parametrize("route", ROUTES + LISTINGS, ids=_route_id)
def test_a_request_without_an_authorizer_context_is_401_and_changes_nothing(
    api: HttpApi, aws: Aws, route: Route
) -> None:
    # Given what the route acts on
    values = route.given(api)
    before = snapshot(aws)
    # When the request arrives without the authorizer's context (a route left without one)
    reply = route.request(api, None, values)
    # Then it is refused as unauthenticated, and nothing changes
    assert_problem(reply, 401, "unauthorized")
    assert "Authorization: Bearer" in reply.json["message"]
    assert snapshot(aws) == before


def test_the_public_routes_need_no_authorizer_context(api: HttpApi) -> None:
    # Given a request that reaches the function without the authorizer's context
    # When it fetches the OpenAPI document
    reply = as_(api, None, "GET", "/openapi.json")
    # Then it is served
    assert reply.status == 200
    assert "/queues/{name}" in reply.json["paths"]


def _two_teams(api: HttpApi) -> None:
    """Queues of two teams, a durable subscription of each, and a live subscriber of each."""
    for queue in ("orders", "payroll"):
        ok(api.put(f"/queues/{queue}", {}), 201)
    ok(api.put("/topics/orders.created/subscriptions/orders-audit", {"queue": "orders"}), 201)
    ok(api.put("/topics/payroll.paid/subscriptions/payroll-audit", {"queue": "payroll"}), 201)
    ws_connect("watcher", ADMIN_CTX)
    json_frame("watcher", action="subscribe", destination="/topic/orders.>", id="a")
    json_frame("watcher", action="subscribe", destination="/topic/payroll.>", id="b")


@pytest.mark.parametrize(
    ("grants", "expected"),
    [
        ((grant("orders.>", "admin"),), ["orders", "orders.dlq"]),
        ((grant("orders", "admin"),), ["orders", "orders.dlq"]),
        ((grant(">", "send", "receive"),), []),
        (ADMIN_OF_EVERYTHING, ["orders", "orders.dlq", "payroll", "payroll.dlq"]),
    ],
    ids=["orders.> admin", "orders admin", "send+receive on >", "admin of >"],
)
def test_listing_queues_shows_only_those_the_principal_administers(
    api: HttpApi, grants: Grants, expected: list[str]
) -> None:
    # Given the queues of two teams
    _two_teams(api)
    # When a principal lists the queues
    reply = as_(api, caller(ALLOWED, grants), "GET", "/queues")
    # Then it sees only those it may administer (none is not a refusal)
    assert sorted(q["name"] for q in ok(reply)["queues"]) == expected


def test_stats_show_only_what_the_principal_administers_and_no_connection_count(
    api: HttpApi,
) -> None:
    # Given the queues, subscriptions and live subscribers of two teams
    _two_teams(api)
    # When an admin of orders.> asks for the overview
    overview = ok(as_(api, caller(ALLOWED, (grant("orders.>", "admin"),)), "GET", "/stats"))
    # Then it sees its team's queues and topics only, and not how many connections there are
    assert sorted(q["name"] for q in overview["queues"]) == ["orders", "orders.dlq"]
    assert overview["topics"] == [
        {
            "pattern": "orders.>",
            "subscriptions": [],
            "live_subscribers": 1,
        },
        {
            "pattern": "orders.created",
            "subscriptions": [{"name": "orders-audit", "queue": "orders"}],
            "live_subscribers": 0,
        },
    ]
    assert overview["connections"] is None


def test_stats_of_an_admin_of_everything_show_everything(api: HttpApi) -> None:
    # Given the queues, subscriptions and live subscribers of two teams
    _two_teams(api)
    # When an admin of everything asks for the overview
    overview = ok(as_(api, caller(ALLOWED, ADMIN_OF_EVERYTHING), "GET", "/stats"))
    # Then it sees every queue and topic, and the connection count
    assert len(overview["queues"]) == 4
    assert [t["pattern"] for t in overview["topics"]] == [
        "orders.>",
        "orders.created",
        "payroll.>",
        "payroll.paid",
    ]
    assert overview["connections"] == 1


def test_naming_a_dead_letter_queue_needs_a_grant_on_it(api: HttpApi, aws: Aws) -> None:
    # Given an admin of orders only
    orders_admin = caller(REFUSED, (grant("orders", "admin"),))
    before = snapshot(aws)
    # When it creates orders with payroll as its dead-letter queue
    reply = as_(api, orders_admin, "PUT", "/queues/orders", {"dead_letter_queue": "payroll"})
    # Then it is refused (else orders' failures would be written into payroll) and no
    # queue is made
    assert reply.status == 403, reply.text
    assert snapshot(aws) == before


@pytest.mark.parametrize("url", ["/queues/orders/messages/batch", "/topics/orders/messages/batch"])
def test_a_batch_of_only_malformed_entries_is_still_refused(api: HttpApi, url: str) -> None:
    # Given a principal that may not send to orders
    nobody = caller(REFUSED, (grant("payroll", *ACTIONS),))
    # When it sends a batch whose one entry does not decode
    entries = [{"id": "1", "body": "not base64!", "binary": True}]
    reply = as_(api, nobody, "POST", url, {"entries": entries})
    # Then the answer is the refusal, as for any other batch
    assert reply.json == {"error": "forbidden", "message": f"{REFUSED!r} may not send 'orders'"}


UNREADABLE_GRANTS = {"principal": "x", "kind": "api_key", "grants": '[{"pattern": "a..b"}]'}


def test_an_authorizer_context_with_unreadable_grants_is_401(api: HttpApi) -> None:
    # Given an authorizer context whose grants do not parse (a pattern with an empty part)
    # When a request carrying it arrives
    reply = as_(api, UNREADABLE_GRANTS, "GET", "/queues")
    # Then the caller is not authenticated (it is not the caller's request that is wrong)
    assert_problem(reply, 401, "unauthorized")


# ---- WebSocket: events as API Gateway sends them -------------------------------------------


def ws_connect(
    connection_id: str, who: dict[str, str] | None, subprotocol: str | None = None
) -> dict[str, Any]:
    """A `$connect` the WebSocket authorizer let through with `who` as its context."""
    headers = {} if subprotocol is None else {"Sec-WebSocket-Protocol": subprotocol}
    event = websocket_event("CONNECT", connection_id, authorizer=who, **headers)
    result: dict[str, Any] = handle_event(event)
    return result


def ws_say(connection_id: str, text: str) -> None:
    handle_event(websocket_event("MESSAGE", connection_id, text))


def json_frame(connection_id: str, **frame: Any) -> None:
    ws_say(connection_id, json.dumps(frame))


def made_by_admin(queue: str) -> None:
    """An empty queue an admin of everything made (what is tested is not creating it)."""
    wiring.queue_service().put_queue(ROOT, queue, QueueSettings())


def sent_as_admin(destination: str, body: str = "hello") -> None:
    """A message sent by an admin's own connection (its answers are not looked at)."""
    ws_connect("admin-tool", ADMIN_CTX)
    json_frame("admin-tool", action="publish", destination=destination, body=body)


def test_a_connect_without_an_authorizer_context_is_refused_and_stores_nothing(
    pusher: RecordingPusher, aws: Aws
) -> None:
    # Given empty tables
    before = snapshot(aws)
    # When $connect arrives with no principal in its authorizer context, JSON or STOMP
    json_client = ws_connect("json", None)
    stomp_client = ws_connect("stomp", None, "v12.stomp")
    # Then both are refused, and nothing is stored
    assert json_client == {"statusCode": 401}
    assert stomp_client == {"statusCode": 401}
    assert snapshot(aws) == before


def test_a_connect_with_unreadable_grants_is_refused_with_401(aws: Aws) -> None:
    # Given empty tables
    before = snapshot(aws)
    # When $connect carries grants that do not parse
    response = ws_connect("c1", UNREADABLE_GRANTS)
    # Then it is refused as unauthenticated, and nothing is stored
    assert response == {"statusCode": 401}
    assert snapshot(aws) == before


# ---- WebSocket JSON protocol --------------------------------------------------------------


@dataclass(frozen=True)
class JsonAction:
    """A JSON frame, the grants that allow it exactly, and the near misses."""

    label: str
    _: KW_ONLY
    frame: dict[str, Any]
    allowed: Grants
    refused: tuple[Refusal, ...]
    answer: str  # the type of the frame the allowed client gets back
    given: Callable[[], None] = lambda: None


# a consumer's own durable subscription: receive on the topic and on its queue, and create
# on both (the subscription is the topic's, the queue is new)
DURABLE_ALLOWED = (grant("shop.orders", "receive", "create"), grant("audit", "receive", "create"))
DURABLE_REFUSED = (
    Refusal(
        "the topic only",
        grants=(grant("shop.orders", "receive", "create"),),
        missing="receive 'audit'",
    ),
    Refusal(
        "the queue only",
        grants=(grant("audit", "receive", "create"),),
        missing="receive 'shop.orders'",
    ),
    Refusal(
        "no create right on the topic",
        grants=(grant("shop.orders", "receive"), grant("audit", "receive", "create")),
        missing="create 'shop.orders'",
    ),
)
JSON_ACTIONS = [
    JsonAction(
        "subscribe to a queue",
        frame={"action": "subscribe", "destination": "/queue/orders", "id": "s1"},
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        answer="subscribed",
        given=lambda: made_by_admin("orders"),
    ),
    JsonAction(
        "subscribe to a topic",
        frame={"action": "subscribe", "destination": "/topic/shop.orders", "id": "s1"},
        allowed=(grant("shop.orders", "receive"),),
        refused=lacking("receive", "shop.orders"),
        answer="subscribed",
    ),
    JsonAction(
        "subscribe to a one-segment pattern",
        frame={"action": "subscribe", "destination": "/topic/shop.*", "id": "s1"},
        allowed=(grant("shop.*", "receive"),),
        refused=(
            Refusal(
                "one topic it matches",
                grants=(grant("shop.orders", *ACTIONS),),
                missing="receive 'shop.*'",
            ),
            *lacking("receive", "shop.*"),
        ),
        answer="subscribed",
    ),
    JsonAction(
        "subscribe to a tail pattern",
        frame={"action": "subscribe", "destination": "/topic/shop.>", "id": "s1"},
        allowed=(grant("shop.>", "receive"),),
        refused=(
            # shop.* covers shop.a but not shop.a.b, which shop.> also matches
            Refusal(
                "a narrower pattern",
                grants=(grant("shop.*", *ACTIONS),),
                missing="receive 'shop.>'",
            ),
            Refusal(
                "other actions",
                grants=(grant("shop.>", "send", "admin"),),
                missing="receive 'shop.>'",
            ),
        ),
        answer="subscribed",
    ),
    JsonAction(
        "subscribe durably to a topic",
        frame={
            "action": "subscribe",
            "destination": "/topic/shop.orders",
            "id": "s1",
            "durable": "audit",
        },
        allowed=DURABLE_ALLOWED,
        refused=DURABLE_REFUSED,
        answer="subscribed",
    ),
    JsonAction(
        "publish to a queue",
        frame={"action": "publish", "destination": "/queue/orders", "body": "hi", "receipt": "r1"},
        allowed=(grant("orders", "send"),),
        refused=lacking("send", "orders"),
        answer="receipt",
        given=lambda: made_by_admin("orders"),
    ),
    JsonAction(
        "publish to a topic",
        frame={
            "action": "publish",
            "destination": "/topic/shop.orders",
            "body": "hi",
            "receipt": "r1",
        },
        allowed=(grant("shop.orders", "send"),),
        refused=lacking("send", "shop.orders"),
        answer="receipt",
    ),
]
JSON_REFUSALS = [
    pytest.param(action, refusal, id=f"{action.label} [{refusal.label}]")
    for action in JSON_ACTIONS
    for refusal in action.refused
]


@pytest.mark.parametrize("action", JSON_ACTIONS, ids=lambda a: a.label)
def test_a_json_client_granted_exactly_the_action_may_do_it(
    pusher: RecordingPusher, aws: Aws, action: JsonAction
) -> None:
    # Given a connection whose principal may do exactly this
    action.given()
    ws_connect("c1", caller(ALLOWED, action.allowed))
    before = snapshot(aws)
    # When it sends the frame
    json_frame("c1", **action.frame)
    # Then it is answered as usual, and the broker holds what it did
    [answer] = pusher.json_frames("c1")
    assert answer["type"] == action.answer, answer
    assert snapshot(aws) != before


@pytest.mark.parametrize(("action", "refusal"), JSON_REFUSALS)
def test_a_json_client_without_the_grant_gets_a_forbidden_error_and_nothing_is_stored(
    pusher: RecordingPusher, aws: Aws, action: JsonAction, refusal: Refusal
) -> None:
    # Given a connection whose principal's grants just miss this action
    action.given()
    ws_connect("c1", caller(REFUSED, refusal.grants))
    before = snapshot(aws)
    # When it sends the frame
    json_frame("c1", **{**action.frame, "receipt": "r9"})
    # Then an error frame says who may not do what where; no subscription, consumer, queue
    # or message is stored, and the connection stays open
    assert pusher.json_frames("c1") == [
        {"type": "error", "error": "forbidden", "message": refusal.message, "receipt": "r9"}
    ]
    assert snapshot(aws) == before
    assert pusher.closed == []


def _json_delivery(pusher: RecordingPusher) -> str:
    """A message leased to alice's client-individual subscription of orders; its ack id."""
    made_by_admin("orders")
    ws_connect("alice", caller(ALLOWED, (grant("orders", "receive"),)))
    json_frame(
        "alice",
        action="subscribe",
        destination="/queue/orders",
        id="s1",
        ack="client-individual",
    )
    sent_as_admin("/queue/orders")
    wiring.sessions().pump("orders")  # the stream record's doing when deployed
    [message] = [f for f in pusher.json_frames("alice") if f["type"] == "message"]
    ack: str = message["ack"]
    return ack


@pytest.mark.parametrize("settle", ["ack", "nack"])
def test_a_json_subscriber_settles_its_own_delivery(
    pusher: RecordingPusher, aws: Aws, settle: str
) -> None:
    # Given a message leased to alice's subscription
    ack = _json_delivery(pusher)
    before = snapshot(aws)
    # When alice settles it
    json_frame("alice", action=settle, id=ack, receipt="r1")
    # Then it is settled (a nacked message comes again, after the receipt)
    answers = [f for f in pusher.json_frames("alice") if f["type"] != "message"]
    assert answers[-1] == {"type": "receipt", "receipt": "r1"}
    assert snapshot(aws) != before


@pytest.mark.parametrize("settle", ["ack", "nack"])
def test_a_json_client_cannot_settle_a_delivery_held_by_another_connection(
    pusher: RecordingPusher, aws: Aws, settle: str
) -> None:
    # Given a message leased to alice's subscription s1, and mallory subscribed as s1 to a
    # queue she may read
    ack = _json_delivery(pusher)
    made_by_admin("payroll")
    ws_connect("mallory", caller(REFUSED, (grant("payroll", "receive"),)))
    json_frame(
        "mallory",
        action="subscribe",
        destination="/queue/payroll",
        id="s1",
        ack="client-individual",
    )
    before = snapshot(aws)
    # When mallory presents alice's ack id
    json_frame("mallory", action=settle, id=ack, receipt="r1")
    # Then she is told it is not hers to settle, and alice's lease is untouched
    error = pusher.json_frames("mallory")[-1]
    assert (error["type"], error["error"], error["receipt"]) == ("error", "not_in_flight", "r1")
    assert snapshot(aws) == before


# ---- STOMP --------------------------------------------------------------------------------


def stomp(connection_id: str, command: str, body: str = "", **headers: str) -> None:
    """One STOMP frame; `content_type=` is `content-type:`, dotted names stay as given."""
    lines = [command] + [f"{k.replace('_', '-')}:{v}" for k, v in headers.items()]
    ws_say(connection_id, "\n".join(lines) + "\n\n" + body + "\x00")


def stomp_session(connection_id: str, who: dict[str, str]) -> None:
    ws_connect(connection_id, who, "v12.stomp")
    stomp(connection_id, "CONNECT", accept_version="1.2", host="/")


def frames(pusher: RecordingPusher, connection_id: str, command: str) -> list[Frame]:
    return [f for f in pusher.stomp_frames(connection_id) if f.command == command]


def assert_refused(pusher: RecordingPusher, connection_id: str, message: str, frame: str) -> None:
    """The STOMP client got one ERROR saying `message` about `frame`, then was closed."""
    [error] = frames(pusher, connection_id, "ERROR")
    assert error.header("message") == message
    assert error.body.decode() == f"{message}\n\nThe frame was {frame}."
    assert pusher.closed == [connection_id]
    assert wiring.sessions().info(connection_id) is None


@dataclass(frozen=True)
class StompAction:
    """A STOMP frame (command and headers), the grants that allow it, and the near misses."""

    label: str
    _: KW_ONLY
    command: str
    headers: dict[str, str]
    allowed: Grants
    refused: tuple[Refusal, ...]
    body: str = ""
    given: Callable[[], None] = lambda: None


DURABLE = {"activemq.subscriptionName": "audit"}
STOMP_ACTIONS = [
    StompAction(
        "SEND to a queue",
        command="SEND",
        headers={"destination": "/queue/orders"},
        allowed=(grant("orders", "send"),),
        refused=lacking("send", "orders"),
        body="hello",
        given=lambda: made_by_admin("orders"),
    ),
    StompAction(
        "SEND to a topic",
        command="SEND",
        headers={"destination": "/topic/shop.orders"},
        allowed=(grant("shop.orders", "send"),),
        refused=lacking("send", "shop.orders"),
        body="hello",
    ),
    StompAction(
        "SUBSCRIBE to a queue",
        command="SUBSCRIBE",
        headers={"destination": "/queue/orders", "id": "0"},
        allowed=(grant("orders", "receive"),),
        refused=lacking("receive", "orders"),
        given=lambda: sent_as_admin("/queue/orders"),
    ),
    StompAction(
        "SUBSCRIBE to a topic",
        command="SUBSCRIBE",
        headers={"destination": "/topic/shop.orders", "id": "0"},
        allowed=(grant("shop.orders", "receive"),),
        refused=lacking("receive", "shop.orders"),
    ),
    StompAction(
        "SUBSCRIBE to a tail pattern",
        command="SUBSCRIBE",
        headers={"destination": "/topic/shop.>", "id": "0"},
        allowed=(grant("shop.>", "receive"),),
        refused=(
            Refusal(
                "a narrower pattern",
                grants=(grant("shop.*", *ACTIONS),),
                missing="receive 'shop.>'",
            ),
        ),
    ),
    StompAction(
        "SUBSCRIBE durably to a topic",
        command="SUBSCRIBE",
        headers={"destination": "/topic/shop.orders", "id": "0", **DURABLE},
        allowed=DURABLE_ALLOWED,
        refused=DURABLE_REFUSED,
    ),
]
STOMP_REFUSALS = [
    pytest.param(action, refusal, id=f"{action.label} [{refusal.label}]")
    for action in STOMP_ACTIONS
    for refusal in action.refused
]


@pytest.mark.parametrize("action", STOMP_ACTIONS, ids=lambda a: a.label)
def test_a_stomp_client_granted_exactly_the_action_may_do_it(
    pusher: RecordingPusher, aws: Aws, action: StompAction
) -> None:
    # Given a session whose principal may do exactly this
    action.given()
    stomp_session("c1", caller(ALLOWED, action.allowed))
    before = snapshot(aws)
    # When it sends the frame, asking for a receipt
    stomp("c1", action.command, action.body, **action.headers, receipt="r1")
    # Then the receipt comes, no ERROR, and the broker holds what it did
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["r1"]
    assert frames(pusher, "c1", "ERROR") == []
    assert snapshot(aws) != before


@pytest.mark.parametrize(("action", "refusal"), STOMP_REFUSALS)
def test_a_stomp_client_without_the_grant_gets_an_error_is_closed_and_nothing_is_stored(
    pusher: RecordingPusher, aws: Aws, action: StompAction, refusal: Refusal
) -> None:
    # Given what the frame acts on, before the client connects
    action.given()
    before = snapshot(aws)
    # When a session whose principal's grants just miss it sends the frame
    stomp_session("c1", caller(REFUSED, refusal.grants))
    stomp("c1", action.command, action.body, **action.headers, receipt="r1")
    # Then one ERROR says who may not do what where, the connection is closed (as STOMP
    # says), and nothing is left of it or of what it tried
    assert_refused(pusher, "c1", refusal.message, action.command)
    assert frames(pusher, "c1", "ERROR")[0].header("receipt-id") == "r1"
    assert snapshot(aws) == before


def _stomp_delivery(pusher: RecordingPusher) -> str:
    """A message leased to alice's client-individual STOMP subscription; its ack id."""
    made_by_admin("orders")
    stomp_session("alice", caller(ALLOWED, (grant("orders", "receive"),)))
    stomp("alice", "SUBSCRIBE", destination="/queue/orders", id="0", ack="client-individual")
    sent_as_admin("/queue/orders")
    wiring.sessions().pump("orders")
    [message] = frames(pusher, "alice", "MESSAGE")
    return message.header("ack") or ""


@pytest.mark.parametrize("command", ["ACK", "NACK"])
def test_a_stomp_subscriber_settles_its_own_delivery(
    pusher: RecordingPusher, aws: Aws, command: str
) -> None:
    # Given a message leased to alice's subscription
    ack = _stomp_delivery(pusher)
    before = snapshot(aws)
    # When alice settles it
    stomp("alice", command, id=ack, receipt="r1")
    # Then it is settled
    assert [f.header("receipt-id") for f in frames(pusher, "alice", "RECEIPT")] == ["r1"]
    assert snapshot(aws) != before


@pytest.mark.parametrize("command", ["ACK", "NACK"])
def test_a_stomp_client_cannot_settle_a_delivery_held_by_another_session(
    pusher: RecordingPusher, aws: Aws, command: str
) -> None:
    # Given a message leased to alice's subscription 0, and mallory subscribed as 0 to a
    # queue she may read
    ack = _stomp_delivery(pusher)
    made_by_admin("payroll")
    stomp_session("mallory", caller(REFUSED, (grant("payroll", "receive"),)))
    stomp("mallory", "SUBSCRIBE", destination="/queue/payroll", id="0", ack="client-individual")
    before = snapshot(aws)
    # When mallory presents alice's ack id
    stomp("mallory", command, id=ack, receipt="r1")
    # Then she gets an ERROR (the message is not in flight on her session), and alice's
    # lease is untouched
    [error] = frames(pusher, "mallory", "ERROR")
    assert "not in flight" in (error.header("message") or "")
    assert snapshot(aws) == before


def test_a_transaction_whose_send_is_allowed_commits(pusher: RecordingPusher, api: HttpApi) -> None:
    # Given a session that may send to orders, inside a transaction
    made_by_admin("orders")
    stomp_session("c1", caller(ALLOWED, (grant("orders", "send"),)))
    stomp("c1", "BEGIN", transaction="tx")
    stomp("c1", "SEND", "held", destination="/queue/orders", transaction="tx")
    # When it commits
    stomp("c1", "COMMIT", transaction="tx", receipt="done")
    # Then the message is in the queue
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["done"]
    browsed = ok(api.get("/queues/orders/messages"))
    assert [m["body"] for m in browsed["messages"]] == ["held"]


def test_a_send_into_a_transaction_is_refused_when_it_is_sent_and_nothing_is_kept(
    pusher: RecordingPusher, aws: Aws
) -> None:
    # Given a session that may not send to payroll, in a transaction
    before = snapshot(aws)
    stomp_session("c1", caller(REFUSED, (grant("orders", "send"),)))
    stomp("c1", "BEGIN", transaction="tx")
    # When it sends to payroll inside the transaction
    stomp("c1", "SEND", "held", destination="/queue/payroll", transaction="tx")
    # Then that SEND is refused at once (so a COMMIT can never half-apply), the connection
    # closes, and nothing is left: no message, no queue, no held frame, no transaction
    assert_refused(pusher, "c1", f"{REFUSED!r} may not send 'payroll'", "SEND")
    assert snapshot(aws) == before


def test_a_transaction_with_one_refused_send_stores_none_of_its_sends(
    pusher: RecordingPusher, aws: Aws
) -> None:
    # Given a transaction holding an allowed SEND
    made_by_admin("orders")
    before = snapshot(aws)
    stomp_session("c1", caller(REFUSED, (grant("orders", "send"),)))
    stomp("c1", "BEGIN", transaction="tx")
    stomp("c1", "SEND", "allowed", destination="/queue/orders", transaction="tx")
    # When the second SEND is refused
    stomp("c1", "SEND", "refused", destination="/queue/payroll", transaction="tx")
    # Then the refusal ended the session and dropped the transaction: the allowed SEND is
    # not stored either (the socket is closed, so no COMMIT can follow)
    assert_refused(pusher, "c1", f"{REFUSED!r} may not send 'payroll'", "SEND")
    assert snapshot(aws) == before


def test_a_stomp_client_cannot_delete_a_durable_subscription_it_did_not_make(
    pusher: RecordingPusher, api: HttpApi, aws: Aws
) -> None:
    # Given an operator's durable subscriptions `audit` and `mine` of shop.orders
    _a_subscription(api)
    ok(api.put("/queues/mine", {}), 201)
    ok(api.put("/topics/shop.orders/subscriptions/mine", {"queue": "mine"}), 201)
    # and mallory, who may read shop.orders and both queues, attached to `mine`
    readable = ("shop.orders", "mine", "audit")
    stomp_session("m", caller(REFUSED, tuple(grant(d, "receive") for d in readable)))
    stomp(
        "m",
        "SUBSCRIBE",
        destination="/topic/shop.orders",
        id="0",
        receipt="subscribed",
        **{"activemq.subscriptionName": "mine"},
    )
    assert [f.header("receipt-id") for f in frames(pusher, "m", "RECEIPT")] == ["subscribed"]
    # When she unsubscribes naming `audit`
    stomp("m", "UNSUBSCRIBE", id="0", **DURABLE)
    # Then she is told it is not hers, and the operator's subscriptions are still there
    [error] = frames(pusher, "m", "ERROR")
    assert error.header("message") == (
        f"{REFUSED!r} may not delete durable subscription 'audit' of 'shop.orders': "
        "only its owner or an admin of 'shop.orders' may"
    )
    found = ok(api.get("/topics/shop.orders/subscriptions"))["subscriptions"]
    assert sorted(s["name"] for s in found) == ["audit", "mine"]


def test_a_session_keeps_the_grants_it_connected_with(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given bob, connected while he may send to orders only
    made_by_admin("orders")
    ok(api.put("/access/principals/bob", {"grants": [grant("orders", "send")]}), 201)
    stomp_session("c1", caller("bob", (grant("orders", "send"),)))
    # When an admin then grants him payroll instead
    ok(api.put("/access/principals/bob", {"grants": [grant("payroll", "send")]}))
    # Then his open session still acts with the grants it connected with (API Gateway
    # authorizes a WebSocket once, at $connect): orders yes, payroll no
    stomp("c1", "SEND", "hi", destination="/queue/orders", receipt="r1")
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["r1"]
    stomp("c1", "SEND", "hi", destination="/queue/payroll")
    assert_refused(pusher, "c1", "'bob' may not send 'payroll'", "SEND")


# ---- STOMP clients that authenticate with CONNECT ------------------------------------------


@pytest.fixture
def bob_key(aws: Aws) -> str:
    """A real API key of bob, who may send to orders."""
    access = assembly.build_access_control(
        aws.dynamodb, aws.settings.destinations_table, SystemClock()
    )
    access.put_principal(ROOT, "bob", parse_grants([grant("orders", "send")]))
    return access.issue_key(ROOT, "bob").token


def test_a_pending_stomp_handshake_stores_nothing(pusher: RecordingPusher, aws: Aws) -> None:
    # Given empty tables
    before = snapshot(aws)
    # When a STOMP client without a token completes the handshake
    response = ws_connect("c1", PENDING_CTX, "v12.stomp")
    # Then it is let through to send CONNECT, and nothing is stored for it yet
    assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "v12.stomp"}}
    assert snapshot(aws) == before


def test_a_pending_client_that_speaks_json_is_refused(pusher: RecordingPusher, aws: Aws) -> None:
    # Given empty tables
    before = snapshot(aws)
    # When a token-less handshake offers no STOMP subprotocol (only STOMP can log in later)
    response = ws_connect("c1", PENDING_CTX)
    # Then it is refused and nothing is stored
    assert response == {"statusCode": 401}
    assert snapshot(aws) == before


@pytest.mark.parametrize("login", [None, "bob"], ids=["no login", "login = the principal"])
def test_connect_with_an_api_key_as_passcode_opens_a_session_with_its_grants(
    pusher: RecordingPusher, bob_key: str, login: str | None
) -> None:
    # Given a pending STOMP connection, and the orders queue
    made_by_admin("orders")
    ws_connect("c1", PENDING_CTX, "v12.stomp")
    # When it sends CONNECT with bob's API key as passcode
    credentials = {"passcode": bob_key} | ({"login": login} if login else {})
    stomp("c1", "CONNECT", accept_version="1.2", host="/", **credentials)
    # Then the session is bob's: it may send to orders...
    assert len(frames(pusher, "c1", "CONNECTED")) == 1
    info = wiring.sessions().info("c1")
    assert info is not None and info.principal == "bob"
    stomp("c1", "SEND", "hi", destination="/queue/orders", receipt="r1")
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["r1"]
    # ...and nothing else
    stomp("c1", "SEND", "hi", destination="/queue/payroll")
    assert_refused(pusher, "c1", "'bob' may not send 'payroll'", "SEND")


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ({}, "authentication required"),
        ({"passcode": "wrong"}, "not an mqless API key"),
        ({"passcode": "mqk_0123456789abcdef01234567_" + "A" * 43}, "unknown or wrong"),
        ({"passcode": "{key}", "login": "alice"}, "login does not name the principal"),
    ],
    ids=["no passcode", "not a key", "unknown key", "login of someone else"],
)
def test_connect_without_a_valid_passcode_gets_an_error_and_nothing_is_stored(
    pusher: RecordingPusher, aws: Aws, bob_key: str, credentials: dict[str, str], reason: str
) -> None:
    # Given a pending STOMP connection
    ws_connect("c1", PENDING_CTX, "v12.stomp")
    before = snapshot(aws)
    # When its CONNECT does not prove a principal
    headers = {k: v.format(key=bob_key) for k, v in credentials.items()}
    stomp("c1", "CONNECT", accept_version="1.2", host="/", **headers)
    # Then it gets an ERROR saying why, is closed, and nothing is stored for it
    [error] = pusher.stomp_frames("c1")
    assert error.command == "ERROR"
    assert reason in (error.header("message") or ""), error.header("message")
    assert pusher.closed == ["c1"]
    assert snapshot(aws) == before


def test_a_pending_client_whose_first_frame_is_not_connect_is_closed(
    pusher: RecordingPusher, aws: Aws
) -> None:
    # Given a pending STOMP connection
    ws_connect("c1", PENDING_CTX, "v12.stomp")
    before = snapshot(aws)
    # When it sends a SEND before any CONNECT
    stomp("c1", "SEND", "hi", destination="/queue/orders")
    # Then it gets an ERROR saying what to do, is closed, and nothing is stored
    [error] = pusher.stomp_frames("c1")
    assert (error.command, error.header("message")) == (
        "ERROR",
        "not connected: send CONNECT first, with your token as passcode",
    )
    assert pusher.closed == ["c1"]
    assert snapshot(aws) == before


# ---- dead letters belong to whoever may act on their queue ---------------------------------
# The principals of the review: low sends, rx sends and receives, opx administers, all on
# `orders.*` and none on `orders`, whose dead-letter queue is `orders.dlq`.

LOW = (grant("orders.*", "send", "create"),)
RX = (grant("orders.*", "send", "receive"),)
OPX = (grant("orders.*", "admin"),)


@dataclass(frozen=True)
class DeadLetterReach:
    """A request on `orders.dlq` by a principal whose grants cover `orders.*`, and what the
    403 says it may not do."""

    who: str
    grants: Grants
    method: str
    url: str
    body: Any = None
    missing: str = "admin 'orders.dlq'"  # "<action> <destination>", as the 403 says it


DEAD_LETTER_REACHES = [
    pytest.param(
        DeadLetterReach(
            who="rx",
            grants=RX,
            method="POST",
            url="/queues/orders.dlq/receive",
            body={},
            missing="receive 'orders.dlq'",
        ),
        id="rx receives from orders.dlq",
    ),
    pytest.param(
        DeadLetterReach(
            who="rx",
            grants=RX,
            method="POST",
            url="/queues/orders.dlq/messages",
            body={"body": "x"},
            missing="send 'orders.dlq'",
        ),
        id="rx sends to orders.dlq",
    ),
    pytest.param(
        DeadLetterReach(who="opx", grants=OPX, method="GET", url="/queues/orders.dlq/messages"),
        id="opx browses orders.dlq",
    ),
    pytest.param(
        DeadLetterReach(who="opx", grants=OPX, method="GET", url="/queues/orders.dlq"),
        id="opx reads orders.dlq's settings",
    ),
    pytest.param(
        DeadLetterReach(who="opx", grants=OPX, method="POST", url="/queues/orders.dlq/purge"),
        id="opx purges orders.dlq",
    ),
    pytest.param(
        DeadLetterReach(who="opx", grants=OPX, method="POST", url="/queues/orders.dlq/redrive"),
        id="opx redrives orders.dlq",
    ),
    pytest.param(
        DeadLetterReach(who="opx", grants=OPX, method="DELETE", url="/queues/orders.dlq"),
        id="opx deletes orders.dlq",
    ),
    pytest.param(
        DeadLetterReach(
            who="opx",
            grants=OPX,
            method="PUT",
            url="/queues/orders.dlq",
            body={"max_receive_count": 1, "dead_letter_queue": "orders.eu"},
        ),
        id="opx gives orders.dlq a dead-letter queue of its own",
    ),
    pytest.param(
        DeadLetterReach(
            who="opx",
            grants=OPX,
            method="PUT",
            url="/queues/orders.eu",
            body={"dead_letter_queue": "orders.dlq"},
        ),
        id="opx makes orders.dlq the dead-letter queue of orders.eu",
    ),
]


@pytest.mark.parametrize("reach", DEAD_LETTER_REACHES)
def test_a_sibling_wildcard_grant_cannot_reach_a_queues_dead_letters(
    api: HttpApi, aws: Aws, reach: DeadLetterReach
) -> None:
    # Given orders with a dead letter in orders.dlq
    _a_message_in_the_dlq(api)
    before = snapshot(aws)
    # When a principal whose grants cover orders.* but not orders acts on orders.dlq
    reply = as_(api, caller(reach.who, reach.grants), reach.method, reach.url, reach.body)
    # Then it is refused as for any destination outside its grants, and nothing changes
    assert reply.status == 403, reply.text
    assert reply.json == {"error": "forbidden", "message": f"{reach.who!r} may not {reach.missing}"}
    assert snapshot(aws) == before


def test_a_sender_on_sibling_queues_cannot_create_a_queues_dead_letter_queue_first(
    api: HttpApi, aws: Aws
) -> None:
    # Given no queue at all, and low, who may send to and create orders.* queues
    before = snapshot(aws)
    # When low sends to orders.dlq before orders exists (to own its dead letters later)
    reply = as_(api, caller("low", LOW), "POST", "/queues/orders.dlq/messages", {"body": "mine"})
    # Then it is refused, and no queue is made
    assert reply.json == {"error": "forbidden", "message": "'low' may not send 'orders.dlq'"}
    assert snapshot(aws) == before


def test_whoever_may_receive_from_a_queue_receives_its_dead_letters(api: HttpApi) -> None:
    # Given orders with a dead letter in orders.dlq
    _a_message_in_the_dlq(api)
    # When a consumer granted receive on orders (and nothing on orders.dlq) receives there
    reply = as_(
        api, caller("worker", (grant("orders", "receive"),)), "POST", "/queues/orders.dlq/receive"
    )
    # Then it gets the dead letter
    assert [m["body"] for m in ok(reply)["messages"]] == ["back to orders"]


def test_a_grant_naming_dlq_gives_dead_letters_and_not_their_queues(api: HttpApi) -> None:
    # Given orders with a dead letter in orders.dlq
    _a_message_in_the_dlq(api)
    operator = caller("dlq-operator", (grant("*.dlq", "admin"),))
    # When an operator granted admin on *.dlq browses orders.dlq, then orders
    dead_letters = as_(api, operator, "GET", "/queues/orders.dlq/messages")
    source = as_(api, operator, "GET", "/queues/orders/messages")
    # Then the dead letters are its to see, the queue they came from is not
    assert [m["body"] for m in ok(dead_letters)["messages"]] == ["back to orders"]
    assert source.json == {"error": "forbidden", "message": "'dlq-operator' may not admin 'orders'"}


# ---- creating a queue needs the create right ------------------------------------------------

NOT_CREATED = (
    "queue 'orders.p1' does not exist, and {who!r} may not create it "
    "(creating a queue on first use needs the create right on 'orders.p1')"
)


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/queues/orders.p1/messages", {"body": "p"}),
        ("/queues/orders.p1/messages/batch", {"entries": [{"id": "1", "body": "p"}]}),
    ],
    ids=["send", "send batch"],
)
def test_a_send_to_a_missing_queue_without_the_create_right_is_404_and_creates_nothing(
    api: HttpApi, aws: Aws, url: str, body: Any
) -> None:
    # Given no queue, and a principal that may send to orders.* but not create there
    before = snapshot(aws)
    # When it sends to a queue that does not exist
    reply = as_(api, caller("low", (grant("orders.*", "send"),)), "POST", url, body)
    # Then, as SQS answers a send to a missing queue, 404 says why, and nothing is created
    assert reply.status == 404, reply.text
    assert reply.json == {"error": "queue_not_found", "message": NOT_CREATED.format(who="low")}
    assert snapshot(aws) == before


def test_a_send_with_the_create_right_creates_the_queue_and_its_dead_letter_queue(
    api: HttpApi,
) -> None:
    # Given a principal that may send to and create orders.* queues
    # When it sends to a queue that does not exist
    reply = as_(api, caller("maker", LOW), "POST", "/queues/orders.p1/messages", {"body": "p"})
    # Then the queue is created with its dead-letter queue, both recorded as its doing
    ok(reply, 201)
    for queue in ("orders.p1", "orders.p1.dlq"):
        assert ok(api.get(f"/queues/{queue}"))["created_by"] == "maker"


def test_moving_a_message_to_a_missing_queue_needs_the_create_right(api: HttpApi, aws: Aws) -> None:
    # Given a message in orders, and an admin of orders who may send to archive
    values = _a_message(api)
    mover = caller("mover", (grant("orders", "admin"), grant("archive", "send")))
    before = snapshot(aws)
    # When it moves the message to archive, which does not exist
    url = f"/queues/orders/messages/{values['message_id']}/move"
    reply = as_(api, mover, "POST", url, {"to": "archive"})
    # Then 404 says archive would need creating, and the message stays where it was
    assert_problem(reply, 404, "queue_not_found")
    assert "needs the create right on 'archive'" in reply.json["message"]
    assert snapshot(aws) == before


def test_redriving_into_a_missing_queue_needs_the_create_right(api: HttpApi, aws: Aws) -> None:
    # Given a dead letter in orders.dlq, and an admin of it who may send to repairs
    _a_message_in_the_dlq(api)
    redriver = caller("redriver", (grant("orders.>", "admin"), grant("repairs", "send")))
    before = snapshot(aws)
    # When it redrives the dead letters into repairs, which does not exist
    reply = as_(api, redriver, "POST", "/queues/orders.dlq/redrive", {"destination": "repairs"})
    # Then 404 says repairs would need creating (the rule of sends and moves), and the dead
    # letter stays where it was
    assert_problem(reply, 404, "queue_not_found")
    assert "needs the create right on 'repairs'" in reply.json["message"]
    assert snapshot(aws) == before


def test_a_json_subscribe_to_a_missing_queue_without_the_create_right_creates_nothing(
    pusher: RecordingPusher, aws: Aws
) -> None:
    # Given a connection of a consumer that may receive from orders.* but not create there
    ws_connect("c1", caller("rx", RX))
    before = snapshot(aws)
    # When it subscribes to a queue that does not exist
    json_frame("c1", action="subscribe", destination="/queue/orders.p1", id="s1")
    # Then an error frame says the queue is not there and why, and nothing is stored
    assert pusher.json_frames("c1") == [
        {"type": "error", "error": "queue_not_found", "message": NOT_CREATED.format(who="rx")}
    ]
    assert snapshot(aws) == before


@pytest.mark.parametrize(
    "frames_sent",
    [
        [("SUBSCRIBE", {"destination": "/queue/orders.p1", "id": "0"})],
        [
            ("BEGIN", {"transaction": "tx"}),
            ("SEND", {"destination": "/queue/orders.p1", "transaction": "tx"}),
        ],
    ],
    ids=["SUBSCRIBE", "SEND in a transaction"],
)
def test_a_stomp_client_without_the_create_right_is_told_at_once_and_nothing_is_stored(
    pusher: RecordingPusher, aws: Aws, frames_sent: list[tuple[str, dict[str, str]]]
) -> None:
    # Given a session that may send to and receive from orders.* but not create there
    before = snapshot(aws)
    stomp_session("c1", caller("rx", RX))
    # When it subscribes to, or sends in a transaction to, a queue that does not exist
    for command, headers in frames_sent:
        stomp("c1", command, **headers)
    # Then one ERROR says the queue is not there and why (a held SEND is refused when it
    # is sent, not at COMMIT), the connection is closed, and nothing is left
    assert_refused(pusher, "c1", NOT_CREATED.format(who="rx"), frames_sent[-1][0])
    assert snapshot(aws) == before


# ---- durable subscriptions are their owner's ----------------------------------------------

CONSUMER = (grant("shop.orders", "receive", "create"), grant("audit", "receive", "create"))
READER = (grant("shop.orders", "receive"), grant("audit", "receive"))  # may create nothing
FILTER = {"kind": ["refund"]}


def _operators_subscription(api: HttpApi, queue: str) -> None:
    """An operator's filtered durable subscription `audit` of shop.orders feeding `queue`."""
    ok(api.put(f"/queues/{queue}", {}), 201)
    settings = {"queue": queue, "filter_policy": FILTER}
    ok(api.put("/topics/shop.orders/subscriptions/audit", settings), 201)


def _the_subscription(api: HttpApi) -> dict[str, Any]:
    [found] = ok(api.get("/topics/shop.orders/subscriptions"))["subscriptions"]
    return dict(found)


HIJACK = (
    "durable subscription 'audit' of 'shop.orders' exists and it delivers to another queue, "
    "not 'audit': subscribing by its name reattaches to it and never changes it (unsubscribe "
    "it first, or choose another name)"
)


def test_a_json_durable_subscribe_cannot_replace_someone_elses_subscription(
    pusher: RecordingPusher, api: HttpApi, aws: Aws
) -> None:
    # Given an operator's subscription `audit` of shop.orders feeding audit-store, filtered
    _operators_subscription(api, "audit-store")
    subscription = _the_subscription(api)
    ws_connect("c1", caller("rx", READER))
    before = snapshot(aws)
    # When rx subscribes durably to shop.orders under the same name (its queue: audit)
    json_frame(
        "c1",
        action="subscribe",
        destination="/topic/shop.orders",
        id="s1",
        durable="audit",
        receipt="r1",
    )
    # Then it is refused as a conflict that says what differs (not where it delivers: rx
    # may not see that), and the subscription, its queue and filter are as they were
    assert pusher.json_frames("c1") == [
        {"type": "error", "error": "conflict", "message": HIJACK, "receipt": "r1"}
    ]
    assert snapshot(aws) == before
    assert _the_subscription(api) == subscription


def test_a_stomp_durable_subscribe_cannot_replace_someone_elses_subscription(
    pusher: RecordingPusher, api: HttpApi, aws: Aws
) -> None:
    # Given an operator's subscription `audit` of shop.orders feeding audit-store, filtered
    _operators_subscription(api, "audit-store")
    subscription = _the_subscription(api)
    before = snapshot(aws)
    # When rx subscribes durably with activemq.subscriptionName audit
    stomp_session("c1", caller("rx", READER))
    stomp("c1", "SUBSCRIBE", destination="/topic/shop.orders", id="0", **DURABLE)
    # Then an ERROR says what differs, the connection closes, and nothing changed
    assert_refused(pusher, "c1", HIJACK, "SUBSCRIBE")
    assert snapshot(aws) == before
    assert _the_subscription(api) == subscription


def test_a_subscribe_by_the_owner_that_would_change_the_queue_says_where_it_delivers(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given the operator's own subscription `audit` feeding audit-store
    _operators_subscription(api, "audit-store")
    # When the operator subscribes durably as `audit` over the WebSocket
    ws_connect("c1", ADMIN_CTX)
    json_frame("c1", action="subscribe", destination="/topic/shop.orders", id="s", durable="audit")
    # Then the conflict names the queue it delivers to (the owner may see it)
    [error] = pusher.json_frames("c1")
    assert error["error"] == "conflict"
    assert "it delivers to queue 'audit-store', not 'audit'" in error["message"]


@pytest.mark.parametrize("protocol", ["json", "stomp"])
def test_a_consumer_resubscribing_by_name_reattaches_without_changing_the_subscription(
    pusher: RecordingPusher, api: HttpApi, aws: Aws, protocol: str
) -> None:
    # Given an operator's filtered subscription `audit` feeding the audit queue
    _operators_subscription(api, "audit")
    subscription = _the_subscription(api)
    # When a consumer that may read it subscribes durably by that name
    if protocol == "json":
        ws_connect("c1", caller("rx", READER))
        json_frame(
            "c1", action="subscribe", destination="/topic/shop.orders", id="s", durable="audit"
        )
        assert [f["type"] for f in pusher.json_frames("c1")] == ["subscribed"]
    else:
        stomp_session("c1", caller("rx", READER))
        stomp("c1", "SUBSCRIBE", destination="/topic/shop.orders", id="0", receipt="r", **DURABLE)
        assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["r"]
    # Then it consumes the subscription's queue, whose queue, filter and owner are unchanged
    assert _the_subscription(api) == subscription
    assert subscription["filter_policy"] == FILTER
    assert subscription["owner"] == "test-admin"


def test_a_consumers_durable_subscription_is_owned_by_it_and_reattached_on_reconnect(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given rx's own durable subscription, made over STOMP, and rx gone
    stomp_session("c1", caller("rx", CONSUMER))
    stomp("c1", "SUBSCRIBE", destination="/topic/shop.orders", id="0", **DURABLE)
    stomp("c1", "DISCONNECT")
    made = _the_subscription(api)
    # When rx comes back and subscribes under the same name
    stomp_session("c2", caller("rx", CONSUMER))
    stomp("c2", "SUBSCRIBE", destination="/topic/shop.orders", id="0", receipt="r", **DURABLE)
    # Then it is attached to the same subscription, which is rx's
    assert [f.header("receipt-id") for f in frames(pusher, "c2", "RECEIPT")] == ["r"]
    assert _the_subscription(api) == made
    assert (made["owner"], made["queue"]) == ("rx", "audit")


def test_an_operators_put_replaces_a_consumers_subscription_and_keeps_its_owner(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given rx's own durable subscription `audit`
    stomp_session("c1", caller("rx", CONSUMER))
    stomp("c1", "SUBSCRIBE", destination="/topic/shop.orders", id="0", **DURABLE)
    ok(api.put("/queues/audit-store", {}), 201)
    # When an admin of the topic replaces it explicitly with PUT
    reply = api.put(
        "/topics/shop.orders/subscriptions/audit", {"queue": "audit-store", "filter_policy": FILTER}
    )
    # Then it is replaced (200, not created), and it is still rx's
    replaced = ok(reply, 200)
    assert (replaced["queue"], replaced["filter_policy"], replaced["owner"]) == (
        "audit-store",
        FILTER,
        "rx",
    )
    assert _the_subscription(api) == replaced


def test_a_consumer_without_admin_cannot_replace_a_subscription_over_http(
    api: HttpApi, aws: Aws
) -> None:
    # Given an operator's subscription `audit` feeding audit-store
    _operators_subscription(api, "audit-store")
    before = snapshot(aws)
    # When rx, who may read the topic and the audit queue, PUTs its own settings
    reply = as_(
        api,
        caller("rx", (*READER, grant("audit", "send"))),
        "PUT",
        "/topics/shop.orders/subscriptions/audit",
        {"queue": "audit"},
    )
    # Then it is refused: replacing is an operator's act
    assert reply.json == {"error": "forbidden", "message": "'rx' may not admin 'shop.orders'"}
    assert snapshot(aws) == before


def test_the_owner_of_a_durable_subscription_may_delete_it(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given rx's own durable subscription `audit`
    stomp_session("c1", caller("rx", CONSUMER))
    stomp("c1", "SUBSCRIBE", destination="/topic/shop.orders", id="0", **DURABLE)
    # When rx unsubscribes naming it
    stomp("c1", "UNSUBSCRIBE", id="0", receipt="gone", **DURABLE)
    # Then it is deleted
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["gone"]
    assert ok(api.get("/topics/shop.orders/subscriptions"))["subscriptions"] == []


# ---- a credential's expiry ends what was authorized with it ---------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The functions' clock, moved by the test instead of slept through."""
    moved = ManualClock(start_ms=SystemClock().now_ms())
    monkeypatch.setattr(wiring, "clock", lambda: moved)
    return moved


def authorizer_answer(token: str, *, websocket: bool = False) -> dict[str, str]:
    """The authorizer function's context for `token` (HTTP request, or WebSocket $connect),
    which API Gateway caches and hands to the functions."""
    handler = load_function("authorizer").lambda_handler
    if websocket:
        event: dict[str, Any] = {
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:ws/live/$connect",
            "queryStringParameters": {"access_token": token},
            "requestContext": {"routeKey": "$connect", "requestId": "r1"},
        }
        answer = handler(event, FakeLambdaContext())
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    else:
        event = {
            "version": "2.0",
            "type": "REQUEST",
            "routeKey": "POST /queues/{name}/messages",
            "headers": {"authorization": f"Bearer {token}"},
            "requestContext": {"requestId": "r1", "http": {"sourceIp": "203.0.113.7"}},
        }
        answer = handler(event, FakeLambdaContext())
        assert answer["isAuthorized"] is True
    context: dict[str, str] = answer["context"]
    return context


def bobs_key(api: HttpApi, *grants: dict[str, Any], ttl_seconds: int = 60) -> str:
    """A key of bob (with these grants) that expires in `ttl_seconds`, issued over the API."""
    ok(api.put("/access/principals/bob", {"grants": list(grants)}), 201)
    issued = ok(api.post("/access/principals/bob/keys", {"ttl_seconds": ttl_seconds}), 201)
    token: str = issued["token"]
    return token


def stored_messages(aws: Aws) -> list[dict[str, Any]]:
    return aws.dynamodb.scan(TableName=aws.settings.messages_table, ConsistentRead=True)["Items"]


def test_an_http_request_with_a_cached_allow_for_an_expired_key_is_401(
    api: HttpApi, aws: Aws, clock: ManualClock
) -> None:
    # Given bob's key, good for 60 s, and the authorizer's answer for it (API Gateway
    # caches that answer for up to 5 minutes)
    made_by_admin("orders")
    cached = authorizer_answer(bobs_key(api, grant("orders", "send")))
    sent = as_(api, cached, "POST", "/queues/orders/messages", {"body": "in time"})
    assert sent.status == 201, sent.text
    before = stored_messages(aws)
    # When the key's 60 s are over and API Gateway serves the cached answer again
    clock.advance(60)
    late = as_(api, cached, "POST", "/queues/orders/messages", {"body": "too late"})
    # Then the function refuses it: 401, saying the key expired, and nothing is stored
    assert_problem(late, 401, "unauthorized")
    assert "this API key has expired" in late.json["message"]
    assert stored_messages(aws) == before


def test_a_stomp_connection_whose_key_expired_gets_an_error_and_is_closed(
    pusher: RecordingPusher, api: HttpApi, aws: Aws, clock: ManualClock
) -> None:
    made_by_admin("orders")
    # Given a STOMP session opened with bob's key, good for 60 s
    answer = authorizer_answer(bobs_key(api, grant("orders", "send")), websocket=True)
    stomp_session("c1", answer)
    stomp("c1", "SEND", "in time", destination="/queue/orders", receipt="r1")
    assert [f.header("receipt-id") for f in frames(pusher, "c1", "RECEIPT")] == ["r1"]
    before = stored_messages(aws)
    # When it sends a frame after the key expired
    clock.advance(60)
    stomp("c1", "SEND", "too late", destination="/queue/orders", receipt="r2")
    # Then it gets an ERROR saying so, no RECEIPT, is closed, and nothing is stored
    [error] = frames(pusher, "c1", "ERROR")
    assert error.header("message") == (
        "this API key has expired: reconnect with a valid credential"
    )
    assert len(frames(pusher, "c1", "RECEIPT")) == 1
    assert pusher.closed == ["c1"]
    assert wiring.sessions().info("c1") is None
    assert stored_messages(aws) == before


def test_a_json_connection_whose_key_expired_gets_an_error_and_is_closed(
    pusher: RecordingPusher, api: HttpApi, aws: Aws, clock: ManualClock
) -> None:
    made_by_admin("orders")
    # Given a JSON connection opened with bob's key, good for 60 s
    answer = authorizer_answer(bobs_key(api, grant("orders", "send")), websocket=True)
    ws_connect("c1", answer)
    json_frame("c1", action="publish", destination="/queue/orders", body="hi", receipt="r1")
    assert pusher.json_frames("c1")[-1]["type"] == "receipt"
    before = stored_messages(aws)
    # When it sends a frame after the key expired
    clock.advance(60)
    json_frame("c1", action="publish", destination="/queue/orders", body="late", receipt="r2")
    # Then it gets an `unauthorized` error saying so, is closed, and nothing is stored
    assert pusher.json_frames("c1")[-1] == {
        "type": "error",
        "error": "unauthorized",
        "message": "this API key has expired: reconnect with a valid credential",
    }
    assert pusher.closed == ["c1"]
    assert wiring.sessions().info("c1") is None
    assert stored_messages(aws) == before


def test_no_queue_message_is_pushed_to_a_consumer_whose_key_expired(
    pusher: RecordingPusher, api: HttpApi, clock: ManualClock
) -> None:
    made_by_admin("orders")
    # Given bob's STOMP consumer of orders, opened with a key good for 60 s
    answer = authorizer_answer(bobs_key(api, grant("orders", "receive")), websocket=True)
    stomp_session("c1", answer)
    stomp("c1", "SUBSCRIBE", destination="/queue/orders", id="s1", ack="auto")
    ok(api.post("/queues/orders/messages", {"body": "in time"}), 201)
    wiring.sessions().pump("orders")  # the stream record's doing when deployed
    assert [f.body for f in frames(pusher, "c1", "MESSAGE")] == [b"in time"]
    # When a message arrives after the key expired (the consumer sent nothing since)
    clock.advance(60)
    ok(api.post("/queues/orders/messages", {"body": "too late"}), 201)
    wiring.sessions().pump("orders")
    # Then it is not pushed to bob; it stays in the queue for someone who may have it
    assert [f.body for f in frames(pusher, "c1", "MESSAGE")] == [b"in time"]
    assert ok(api.get("/queues/orders/stats"))["visible"] == 1


def test_no_topic_message_is_pushed_to_a_live_subscriber_whose_key_expired(
    pusher: RecordingPusher, api: HttpApi, aws: Aws, clock: ManualClock
) -> None:
    # Given bob's live subscription to topic news, opened with a key good for 60 s
    answer = authorizer_answer(bobs_key(api, grant("news", "receive")), websocket=True)
    stomp_session("c1", answer)
    stomp("c1", "SUBSCRIBE", destination="/topic/news", id="s1")
    # When news is published after the key expired, and dispatch pushes it
    clock.advance(60)
    ok(api.post("/topics/news/messages", {"body": "too late"}), 201)
    published = [from_wire(i) for i in stored_messages(aws) if i["pk"]["S"].startswith("T#")]
    assert published
    pushed = wiring.sessions().push_published(published)
    # Then bob gets nothing
    assert pushed == 0
    assert frames(pusher, "c1", "MESSAGE") == []


# ---- temporary queues (request/reply) ------------------------------------------------------

REQUESTER = (grant("requests", "send"), grant("temp-queue.>", "send", "receive"))


def _request_through_a_temp_queue(pusher: RecordingPusher, responder: Grants) -> Frame:
    """bob (a responder with `responder` grants) has received alice's request, whose
    reply-to is alice's temp queue; the request as bob got it."""
    made_by_admin("requests")
    stomp_session("bob", caller("bob", (grant("requests", "receive"), *responder)))
    stomp("bob", "SUBSCRIBE", destination="/queue/requests", id="0")
    stomp_session("alice", caller(ALLOWED, REQUESTER))
    stomp("alice", "SUBSCRIBE", destination="/temp-queue/replies", id="r")
    stomp("alice", "SEND", "q?", destination="/queue/requests", reply_to="/temp-queue/replies")
    wiring.sessions().pump("requests")
    [request] = frames(pusher, "bob", "MESSAGE")
    return request


def test_a_responder_with_send_on_temp_queues_may_reply_to_a_temp_queue(
    pusher: RecordingPusher,
) -> None:
    # Given alice (no create right anywhere) made a temp queue and bob got her request
    request = _request_through_a_temp_queue(pusher, (grant("temp-queue.>", "send"),))
    reply_to = request.header("reply-to") or ""
    # When bob, granted send on temp-queue.>, replies to it
    stomp("bob", "SEND", "a!", destination=reply_to, receipt="r1")
    wiring.sessions().pump(reply_to.removeprefix("/remote-temp-queue/"))
    # Then alice receives the reply
    assert frames(pusher, "bob", "ERROR") == []
    assert [f.body for f in frames(pusher, "alice", "MESSAGE")] == [b"a!"]


def test_a_responder_without_send_on_temp_queues_may_not_reply_to_one(
    pusher: RecordingPusher,
) -> None:
    # Given bob got alice's request but has no grant on temp-queue.>
    request = _request_through_a_temp_queue(pusher, ())
    reply_to = request.header("reply-to") or ""
    # When bob replies to its reply-to
    stomp("bob", "SEND", "a!", destination=reply_to)
    # Then bob is refused, naming the temp queue
    queue = reply_to.removeprefix("/remote-temp-queue/")
    assert_refused(pusher, "bob", f"'bob' may not send {queue!r}", "SEND")


def test_another_requester_may_not_receive_from_a_temp_queue_over_http(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given alice's temp queue holds a reply, and carol is a requester too (granted send
    # and receive on temp-queue.>, as every requester must be)
    request = _request_through_a_temp_queue(pusher, (grant("temp-queue.>", "send"),))
    queue = (request.header("reply-to") or "").removeprefix("/remote-temp-queue/")
    stomp("bob", "SEND", "for alice only", destination=f"/remote-temp-queue/{queue}")
    # When carol (or alice herself) receives from it over HTTP
    carols = as_(api, caller("carol", REQUESTER), "POST", f"/queues/{queue}/receive", {})
    # Then she is refused with a problem naming the rule, and the reply still reaches alice
    assert_problem(carols, 403, "forbidden")
    assert "private to the WebSocket connection" in carols.json["message"]
    wiring.sessions().pump(queue)
    assert [f.body for f in frames(pusher, "alice", "MESSAGE")] == [b"for alice only"]


def test_a_queue_may_not_be_made_under_the_temp_queue_prefix_over_http(api: HttpApi) -> None:
    # Given an admin of everything
    # When it makes a queue whose name a connection's temp queue could have
    reply = api.put("/queues/temp-queue.0123456789abcdef.replies", {})
    # Then it is refused: the prefix is kept for temporary queues, made by the broker alone
    assert_problem(reply, 400, "invalid_request")
    assert "temp-queue." in reply.json["message"]


# ---- credentials that end, end: the sweep closes their connections -----------------------


def scheduled_sweep() -> dict[str, Any]:
    """The sweeper function, invoked as its schedule (every minute) does."""
    event = json.loads((EVENTS / "sweeper_schedule.json").read_text())
    report: dict[str, Any] = load_function("sweeper").lambda_handler(event, FakeLambdaContext())
    return report


def key_id_of(token: str) -> str:
    """The id in an API key's token (`mqk_<key id>_<secret>`), as DELETE /access/keys takes it."""
    return token.removeprefix("mqk_").split("_", 1)[0]


def holding_one_message(connection_id: str, who: dict[str, str]) -> None:
    """A STOMP session of `who`, a push consumer of `orders` holding the lease of the one
    message there (`made_by_admin` and `sent_as_admin` came first)."""
    stomp_session(connection_id, who)
    stomp(connection_id, "SUBSCRIBE", id="0", destination="/queue/orders", ack="client")
    wiring.sessions().pump("orders")


def another_consumer_gets(pusher: RecordingPusher) -> list[str]:
    """What an admin's new push consumer of `orders` is sent at once."""
    stomp_session("c2", ADMIN_CTX)
    stomp("c2", "SUBSCRIBE", id="0", destination="/queue/orders", ack="client")
    wiring.sessions().pump("orders")
    return [f.body.decode() for f in frames(pusher, "c2", "MESSAGE")]


def test_a_stomp_connection_whose_key_is_revoked_gets_an_error_and_the_next_sweep_closes_it(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given bob's STOMP session, opened with a key that never expires, holding a lease
    made_by_admin("orders")
    sent_as_admin("/queue/orders", "held")
    ok(api.put("/access/principals/bob", {"grants": [grant("orders", "receive")]}), 201)
    token: str = ok(api.post("/access/principals/bob/keys", {}), 201)["token"]
    holding_one_message("c1", authorizer_answer(token, websocket=True))
    assert [f.body for f in frames(pusher, "c1", "MESSAGE")] == [b"held"]
    # When an admin revokes the key, and the scheduled sweep runs
    assert api.delete(f"/access/keys/{key_id_of(token)}").status == 204
    report = scheduled_sweep()
    # Then bob gets an ERROR saying why, is closed, and another consumer gets the message
    [error] = frames(pusher, "c1", "ERROR")
    assert error.header("message") == "this API key was revoked: reconnect with a valid credential"
    assert pusher.closed == ["c1"]
    assert wiring.sessions().info("c1") is None
    assert report["connections_closed"] == 1
    assert another_consumer_gets(pusher) == ["held"]


def test_deleting_a_principal_closes_the_connections_its_keys_opened_at_the_next_sweep(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given bob's JSON connection, opened with his key
    made_by_admin("orders")
    ws_connect(
        "c1",
        authorizer_answer(bobs_key(api, grant("orders", "send"), ttl_seconds=3600), websocket=True),
    )
    # When an admin deletes bob, and the sweep runs
    assert api.delete("/access/principals/bob").status == 204
    scheduled_sweep()
    # Then bob's connection gets an `unauthorized` error saying why and is closed
    assert pusher.json_frames("c1")[-1] == {
        "type": "error",
        "error": "unauthorized",
        "message": "this API key was revoked: reconnect with a valid credential",
    }
    assert pusher.closed == ["c1"]


def test_a_stomp_connection_whose_jwt_expired_is_closed_by_the_next_sweep_and_its_lease_freed(
    pusher: RecordingPusher, clock: ManualClock
) -> None:
    # Given alice's STOMP session, opened with a JWT good for 90 s more, holding a lease
    made_by_admin("orders")
    sent_as_admin("/queue/orders", "held")
    jwt_answer = {
        "principal": "jwt:alice",
        "kind": "jwt",
        "grants": json.dumps([grant("orders", "receive")]),
        "expires_at": str(clock.now_ms() // 1000 + 90),
    }
    holding_one_message("c1", jwt_answer)
    # When the sweep runs before the JWT expires, and again in the minute after
    clock.advance(89)
    scheduled_sweep()
    assert pusher.closed == []
    clock.advance(1)
    scheduled_sweep()
    # Then the second sweep sends an ERROR saying so and closes it; the message is free
    [error] = frames(pusher, "c1", "ERROR")
    assert error.header("message") == "this JWT has expired: reconnect with a valid credential"
    assert pusher.closed == ["c1"]
    assert another_consumer_gets(pusher) == ["held"]


def test_the_sweep_leaves_a_connection_whose_key_is_valid_alone(
    pusher: RecordingPusher, api: HttpApi
) -> None:
    # Given bob's STOMP session with a valid key, holding a lease, and alice's key revoked
    made_by_admin("orders")
    sent_as_admin("/queue/orders", "held")
    holding_one_message(
        "c1",
        authorizer_answer(
            bobs_key(api, grant("orders", "receive"), ttl_seconds=3600), websocket=True
        ),
    )
    ok(api.put("/access/principals/alice", {"grants": []}), 201)
    alices: str = ok(api.post("/access/principals/alice/keys", {}), 201)["token"]
    assert api.delete(f"/access/keys/{key_id_of(alices)}").status == 204
    # When the sweep runs
    report = scheduled_sweep()
    # Then bob's session is untouched: no ERROR, open, still holding its message
    assert report["connections_closed"] == 0
    assert frames(pusher, "c1", "ERROR") == []
    assert pusher.closed == []
    assert wiring.sessions().info("c1") is not None
    assert another_consumer_gets(pusher) == []


def test_the_sweep_deletes_a_temp_queue_whose_connection_ended_without_disconnect(
    pusher: RecordingPusher, clock: ManualClock
) -> None:
    # Given a STOMP session that made a temporary queue, then lost its socket without a
    # $disconnect reaching mqless
    stomp_session("c1", ADMIN_CTX)
    stomp("c1", "SUBSCRIBE", id="r", destination="/temp-queue/replies")
    temp_queue = names.temp_queue_name("c1", "replies")
    assert wiring.queue_service().has_queue(temp_queue)
    # When the sweep runs while the connection might still be open (under API Gateway's
    # 2-hour limit), and again once it cannot be
    clock.advance(2 * 60 * 60 - 1)
    assert scheduled_sweep()["temp_queues_deleted"] == 0
    assert wiring.queue_service().has_queue(temp_queue)
    clock.advance(1)
    report = scheduled_sweep()
    # Then the second sweep deletes the queue, and forgets the connection
    assert report["temp_queues_deleted"] == 1
    assert not wiring.queue_service().has_queue(temp_queue)
    assert wiring.sessions().info("c1") is None
    assert scheduled_sweep()["temp_queues_deleted"] == 0


def test_a_sweep_that_closes_nothing_bills_three_queries_however_many_connections_are_open(
    aws: Aws, clock: ManualClock
) -> None:
    # Given 100 open connections, each opened with an API key that expires in an hour
    sessions = wiring.sessions()
    in_an_hour = clock.now_ms() // 1000 + 3600
    for n in range(100):
        bob = Principal(id="bob", kind="api_key", expires_at=in_an_hour, key_id=f"{n:024x}")
        sessions.open(Connection(f"c{n}"), bob)
    # When the sweep looks for connections to close and temporary queues to delete
    meter = Meter()
    with observing_moto(meter):
        report = sessions.sweep_connections()
    # Then it read no connection: one query of expired credentials, one of revoked keys,
    # one of temporary queues due, each billed its minimum read unit
    usage = meter.usage()
    assert (report.closed, report.temp_queues) == (0, 0)
    assert {k: v for k, v in usage.requests.items() if k.startswith("dynamodb:")} == {
        "dynamodb:Query": 3
    }
    assert usage.read_units == {aws.settings.destinations_table: 3}


def test_replaying_a_topic_into_a_subscription_needs_the_right_to_receive_from_it(
    api: HttpApi, aws: Aws
) -> None:
    # Given a message published to shop.orders and an operator of its subscriptions who
    # may not receive from it (admin of the topic, send to the audit queue)
    _an_audit_queue(api)
    ok(api.post("/topics/shop.orders/messages", {"body": "secret"}), 201)
    before = snapshot(aws)
    operator = caller(REFUSED, (grant("shop.orders", "admin"), grant("audit", "send")))

    # When it creates a subscription that replays what the topic holds into audit
    reply = as_(
        api,
        operator,
        "PUT",
        "/topics/shop.orders/subscriptions/audit",
        {"queue": "audit", "start": "oldest"},
    )

    # Then it is refused as a subscriber would be, and nothing is stored
    assert_problem(reply, 403, "forbidden")
    assert reply.json["message"] == f"{REFUSED!r} may not receive 'shop.orders'"
    assert snapshot(aws) == before


@pytest.mark.parametrize(
    "start",
    [
        pytest.param("soon", id="a word"),
        pytest.param("2026-12-07T00:00:00", id="a time without its zone"),
        pytest.param("2999-01-01T00:00:00Z", id="a time to come"),
        pytest.param(5, id="a number, not a string"),
    ],
)
def test_a_subscription_with_a_bad_start_is_400_and_nothing_is_stored(
    api: HttpApi, aws: Aws, start: object
) -> None:
    # Given the queue a durable subscription would deliver to
    _an_audit_queue(api)
    before = snapshot(aws)
    # When an administrator makes a subscription whose start is none of "oldest", "now"
    # or a past ISO-8601 time with its zone
    reply = api.put("/topics/shop.orders/subscriptions/audit", {"queue": "audit", "start": start})
    # Then 400 says the request is wrong, and nothing is stored
    assert_problem(reply, 400, "invalid_request")
    assert snapshot(aws) == before
