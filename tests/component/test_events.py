"""The sample events in events/ are real-shaped, cover every route and work with the handlers.

Each file is fed to its function's lambda_handler the way `sam local invoke -e` would, with
the function's environment from template.yaml and its tables and key in moto. There are five
kinds, one per way the functions are invoked: HTTP API (payload format 2.0) requests for
HttpApiFunction, WebSocket API (Lambda proxy integration) events for WebSocketFunction,
DynamoDB stream batches for DispatchFunction, EventBridge Scheduler events for
SweeperFunction, and Lambda authorizer (REQUEST) events for AuthorizerFunction.

The requests and connections are those of `ops-admin`, an administrator of everything, holding
one fake (well-formed, never issued) API key: each sample carries that key where its client
sends it and, past the authorizer, the context the authorizer answers for `ops-admin`, so the
samples work with `sam local invoke` as they are. The authorizer's samples are answered with
a refusal for the fake key and with `ops-admin`'s context for a real key issued in moto.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    parse_api_gateway_arn,
)
from aws_lambda_powertools.utilities.parser.models import (
    ApiGatewayAuthorizerRequestV2,
    APIGatewayProxyEventV2Model,
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
    DynamoDBStreamModel,
)
from conftest_http import EVENTS, ROOT, HttpApi, Reply, load_function
from pydantic import BaseModel

from mqless import assembly, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.access.users import bootstrap_admin
from mqless.domain.clock import SystemClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import DEFAULT_RETENTION_SECONDS, DEFAULT_SHARDS
from mqless.domain.queues.receipts import decode_receipt
from mqless.domain.queues.service import QueueService
from mqless.settings import Settings
from mqless.storage import keys
from mqless.storage.dynamo import from_stream_image, from_wire
from mqless.storage.envelope import FORMAT_VERSION
from mqless.transports.websocket.json_protocol import parse_frame
from mqless.transports.websocket.stomp_frames import decode_frames
from mqless_cli.cfn import IdentitySource, Stack, WebSocketApi, load_template
from mqless_cli.local.authorizers import verdict
from mqless_cli.local.stream_filters import record_filter
from mqless_cli.local.ws_routes import select_route
from tests.component.conftest import RecordingPusher
from tests.component.shared_stack import (  # noqa: F401 - fixtures: one moto for the module
    shared_dynamodb,
    shared_kms,
    shared_settings,
    shared_stack,
)
from tests.lambda_support import FakeLambdaContext

# the functions' boto3 clients are made once for the module (tests/component/conftest.py)
pytestmark = pytest.mark.usefixtures("wiring_clients_kept")


def load(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


_HTTP_ROUTE_KEY = re.compile(r"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|ANY) /\S*")


def kinds_of(event: dict[str, Any]) -> set[str]:
    """The kinds of Lambda event that `event` looks like (a good sample is exactly one)."""
    kinds: set[str] = set()
    # an authorizer's event repeats the request's fields; API Gateway's proxy events have no
    # `type`, its authorizer events `type` REQUEST and the ARN of what is called
    authorizer = event.get("type") == "REQUEST"
    if authorizer and ("routeArn" in event or "methodArn" in event):
        kinds.add("authorizer")
    if (
        not authorizer
        and event.get("version") == "2.0"
        and _HTTP_ROUTE_KEY.fullmatch(str(event.get("routeKey")))
    ):
        kinds.add("http")
    context = event.get("requestContext")
    if not authorizer and isinstance(context, dict) and "eventType" in context:
        kinds.add("websocket")
    records = event.get("Records")
    if (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:dynamodb" for r in records)
    ):
        kinds.add("stream")
    if event.get("source") == "aws.scheduler":
        kinds.add("schedule")
    return kinds


ALL_EVENTS = sorted(EVENTS.glob("*.json"))


def _of_kind(kind: str) -> list[Path]:
    return [p for p in ALL_EVENTS if kinds_of(load(p)) == {kind}]


HTTP_EVENTS = _of_kind("http")
WEBSOCKET_EVENTS = _of_kind("websocket")
STREAM_EVENTS = _of_kind("stream")
SCHEDULE_EVENTS = _of_kind("schedule")
AUTHORIZER_EVENTS = _of_kind("authorizer")

SAMPLE_PRINCIPAL = "ops-admin"
SAMPLE_TOKEN = "mqk_c49f66a482ccd532e50c368a_sample-token_not-a-real-key_issue-your-own0"
"""The one fake API key of the samples: well formed, never issued by any deployment."""
API_KEY = re.compile(r"mqk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}")
SAMPLE_CONTEXT = {
    "principal": SAMPLE_PRINCIPAL,
    "kind": "api_key",
    "grants": '[{"pattern":">","actions":["send","receive","admin"]}]',
}
"""What the authorizer answers for `ops-admin`, administrator of everything."""


def body_of(event: dict[str, Any]) -> Any:
    return json.loads(event["body"])


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """The same request with another JSON body (content-length kept honest)."""
    changed = copy.deepcopy(event)
    changed["body"] = json.dumps(body, separators=(",", ":"))
    changed["headers"]["content-length"] = str(len(changed["body"].encode()))
    return changed


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


@pytest.fixture
def seeded(api: HttpApi) -> HttpApi:
    """`orders` (with its dead-letter queue `orders.dlq`) holding one message."""
    assert api.post("/queues/orders/messages", {"body": "seed"}).status == 201
    return api


@pytest.fixture(scope="module")
def template() -> Stack:
    """template.yaml as read (not provisioned): routes, authorizers, environments."""
    return Stack(load_template(ROOT / "template.yaml"))


def with_token(event: dict[str, Any], token: str) -> dict[str, Any]:
    """The same event with the samples' fake key replaced by `token` wherever it appears."""
    changed: dict[str, Any] = json.loads(json.dumps(event).replace(SAMPLE_TOKEN, token))
    return changed


# ---- the files themselves -------------------------------------------------------------------


# the function each non-HTTP kind is for, and the prefix its files carry
FILE_PREFIX = {
    "websocket": "ws_",
    "stream": "dispatch_",
    "schedule": "sweeper_",
    "authorizer": "authorizer_",
}


def test_every_event_file_is_one_kind_of_event() -> None:
    # Given every file in events/
    assert ALL_EVENTS, "events/ is empty"
    # When each is told apart by its shape (kinds_of)
    # Then each is exactly one of the kinds the functions take, named <what>_<case>.json
    for path in ALL_EVENTS:
        kinds = kinds_of(load(path))
        assert len(kinds) == 1, f"{path.name} looks like {sorted(kinds) or 'no event at all'}"
        assert re.fullmatch(r"[a-z]+_[a-z_]+\.json", path.name), path.name
        (kind,) = kinds
        if kind in FILE_PREFIX:
            assert path.name.startswith(FILE_PREFIX[kind]), f"{path.name}: {kind} event"
    # ... every kind has samples, and together they are all the files
    by_kind = {
        "http": HTTP_EVENTS,
        "websocket": WEBSOCKET_EVENTS,
        "stream": STREAM_EVENTS,
        "schedule": SCHEDULE_EVENTS,
        "authorizer": AUTHORIZER_EVENTS,
    }
    assert [kind for kind, paths in by_kind.items() if not paths] == []
    together = HTTP_EVENTS + WEBSOCKET_EVENTS + STREAM_EVENTS + SCHEDULE_EVENTS + AUTHORIZER_EVENTS
    assert sorted(together) == ALL_EVENTS


@pytest.mark.parametrize("path", HTTP_EVENTS, ids=lambda p: p.stem)
def test_http_event_is_shaped_like_api_gateway_payload_v2(path: Path) -> None:
    # Given a sample HTTP API event
    event = load(path)
    context = event["requestContext"]
    # When it is read as API Gateway's payload format 2.0
    method, route = event["routeKey"].split(" ", 1)
    # Then it carries what API Gateway sends, consistently
    assert event["version"] == "2.0"
    assert context["routeKey"] == event["routeKey"]
    assert context["http"]["method"] == method
    assert context["http"]["path"] == event["rawPath"]
    assert context["stage"] == "$default"
    assert event["headers"]["host"] == context["domainName"]
    assert context["domainName"].startswith(context["apiId"] + ".execute-api.")
    assert isinstance(context["timeEpoch"], int)
    assert event["isBase64Encoded"] is False
    # ... as Powertools' model of the event describes it
    APIGatewayProxyEventV2Model.model_validate(event)
    # ... path parameters that the route's placeholders take from rawPath
    names = re.findall(r"\{(\w+)\}", route)
    pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route)) + "$"
    match = re.match(pattern, event["rawPath"])
    assert match is not None
    # (decoded, as API Gateway hands them over: `orders.%3E` arrives as `orders.>`)
    decoded = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    assert event.get("pathParameters", {}) == decoded
    assert sorted(event.get("pathParameters", {})) == sorted(names)
    # ... and a JSON body whose content-length is its size
    if "body" in event:
        json.loads(event["body"])
        assert event["headers"]["content-type"] == "application/json"
        assert int(event["headers"]["content-length"]) == len(event["body"].encode())


def test_every_template_route_has_a_sample_event(stack: Stack) -> None:
    # Given the HTTP routes template.yaml declares
    routes = {f"{r.method} {r.path}" for r in stack.http_routes()}
    # When the sample events' route keys are collected
    sampled = {load(p)["routeKey"] for p in HTTP_EVENTS}
    # Then every route has one, and no sample names a route the template lacks
    assert routes - sampled == set()
    assert sampled - routes == set()


def test_http_event_carries_a_key_exactly_where_the_template_wants_one(template: Stack) -> None:
    # Given the routes the template puts behind a Lambda authorizer (the rest are public)
    guarded = {f"{r.method} {r.path}": a for r, a in template.http_authorizers().items()}
    public = {f"{r.method} {r.path}" for r in template.http_routes()} - set(guarded)
    assert public == {"GET /console", "GET /console/{file}", "GET /openapi.json"}
    # When each sample is matched to its route
    for path in HTTP_EVENTS:
        event = load(path)
        authorizer = guarded.get(event["routeKey"])
        if authorizer is None:
            # Then a public route's sample has neither a key nor an authorizer's say
            assert "authorization" not in event["headers"], path.name
            assert "authorizer" not in event["requestContext"], path.name
            continue
        # Then a guarded route's sample has the identity source the authorizer needs, the
        # samples' key as a bearer token ...
        assert authorizer.function == "AuthorizerFunction"
        assert authorizer.identity_sources == (IdentitySource("header", "Authorization"),)
        assert event["headers"]["authorization"] == f"Bearer {SAMPLE_TOKEN}", path.name
        # ... and, as API Gateway hands over a simple response's context, what the authorizer
        # says of `ops-admin`
        assert event["requestContext"]["authorizer"] == {"lambda": SAMPLE_CONTEXT}, path.name
    # (a key of the form mqless issues, for the principal the access samples administer)
    assert API_KEY.fullmatch(SAMPLE_TOKEN)


def test_schedule_event_targets_a_function_the_template_schedules(stack: Stack) -> None:
    # Given the sample schedule event and the template's schedules
    (path,) = SCHEDULE_EVENTS
    event = load(path)
    # When the functions the template schedules are listed
    scheduled = {s.function for s in stack.schedules() if s.enabled}
    # Then it is EventBridge Scheduler's default payload, for the sweeper's schedule
    assert "SweeperFunction" in scheduled
    assert event["source"] == "aws.scheduler"
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"][0].startswith("arn:aws:scheduler:")
    assert event["detail"] == "{}"


# ---- invoking the HTTP function with each file ---------------------------------------------


SAMPLE_RECEIPT_SECRET = b"mqless sample events: a secret no stack has"
"""The secret the samples' receipts are signed with (a stack signs with its own)."""


def sample_signer(message: bytes) -> bytes:
    """Signs receipt fields as a broker does (`dedup.DedupHasher.sign`), under the samples'
    secret."""
    return hmac.digest(SAMPLE_RECEIPT_SECRET, b"receipt\x00" + message, hashlib.sha256)


Expectation = Callable[[Reply], None]
"""Asserts what a user of the route sees in the reply (plain asserts: a failure shows a diff)."""


def _ok(reply: Reply, status: int = 200) -> Any:
    """The reply's JSON body, once its status is the one expected (else the body shows)."""
    assert reply.status == status, reply.text[:500]
    return reply.json


def _problem(status: int, error: str) -> Expectation:
    def expect(reply: Reply) -> None:
        body = reply.json
        seen = (reply.status, reply.headers.get("Content-Type"), body.get("error"))
        assert seen == (status, "application/json", error), reply.text[:500]
        assert isinstance(body.get("message"), str), reply.text[:500]
        assert body["message"] != ""

    return expect


def _not_this_brokers(reply: Reply) -> None:
    # the sample receipts are real receipts, signed by no deployment: refused before
    # anything is looked up, whichever stack they are sent to
    _problem(400, "invalid_request")(reply)
    failure = reply.json["failed"][0]
    assert failure["error"] == "invalid_request"
    assert "not one this broker gave out" in failure["message"]


def _created(reply: Reply) -> None:
    assert _ok(reply, 201)["message_id"]


def _queues_list(r: Reply) -> None:
    assert {"orders", "orders.dlq"} <= {q["name"] for q in _ok(r)["queues"]}


def _queue_get(r: Reply) -> None:
    assert _ok(r)["counts"]["visible"] == 1


def _queue_delete(r: Reply) -> None:
    assert (r.status, r.text) == (204, "")


def _queue_patch(r: Reply) -> None:
    # a partial update: the field sent changes, the others keep what they were
    body = _ok(r)
    assert (body["max_receive_count"], body["visibility_timeout"]) == (3, 30)


def _messages_send_fifo(r: Reply) -> None:
    # a FIFO send's sequence grows with time (and with every send of a process): a large
    # number, exact in JavaScript
    _created(r)
    sequence = r.json["sequence"]
    assert isinstance(sequence, int), sequence
    assert 1 < sequence < 2**53, sequence


def _messages_batch(r: Reply) -> None:
    body = _ok(r)
    assert [e["id"] for e in body["successful"]] == ["first", "second", "third"]
    assert body["failed"] == []


def _bodies_are_the_seed(r: Reply) -> None:
    assert [m["body"] for m in _ok(r)["messages"]] == ["seed"]


def _json_is(expected: Any) -> Expectation:
    def expect(reply: Reply) -> None:
        assert _ok(reply) == expected

    return expect


def _openapi_get(r: Reply) -> None:
    assert _ok(r)["openapi"].startswith("3.1")


def _topic_publish_batch(r: Reply) -> None:
    assert [e["id"] for e in _ok(r)["successful"]] == ["a", "b"]


def _subscription_put(r: Reply) -> None:
    body = _ok(r, 201)
    assert (body["queue"], body["topic"]) == ("orders", "orders.>")


def _stats_get(r: Reply) -> None:
    body = _ok(r)
    assert {"orders", "orders.dlq"} <= {q["name"] for q in body["queues"]}
    assert body["connections"] == 0


def _queue_stats(r: Reply) -> None:
    assert _ok(r)["visible"] == 1


def _topic_presence(r: Reply) -> None:
    body = _ok(r)
    assert (body["topic"], body["consumers"]) == ("orders.created", 0)


def _history_get(r: Reply) -> None:
    # `orders` was created just now: its history so far, minute by minute
    body = _ok(r)
    assert body["queue"] == "orders"
    assert len(body["timestamps"]) == 60
    assert set(body["totals"]) == {"sent", "delivered", "acked", "dead_lettered"}


def _console_page(r: Reply) -> None:
    assert r.status == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html" in r.text


def _console_asset(r: Reply) -> None:
    assert r.status == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/javascript")


def _access_principal_put(r: Reply) -> None:
    body = _ok(r, 201)
    assert body["id"] == "orders-service"
    assert [g["pattern"] for g in body["grants"]] == ["orders", "orders.>"]


EXPECTED: dict[str, Expectation] = {
    "queues_list": _queues_list,
    "queue_get": _queue_get,
    "queue_delete": _queue_delete,
    "queue_patch": _queue_patch,
    "messages_send": _created,
    "messages_send_binary": _created,
    "messages_send_fifo": _messages_send_fifo,
    "messages_batch": _messages_batch,
    "messages_receive": _bodies_are_the_seed,
    "messages_ack": _not_this_brokers,
    "messages_nack": _not_this_brokers,
    "messages_visibility": _not_this_brokers,
    "queue_purge": _json_is({"purged": 1}),
    "queue_redrive": _json_is({"moved": 0, "failed": []}),
    "openapi_get": _openapi_get,
    "topic_publish": _created,
    "topic_publish_batch": _topic_publish_batch,
    "subscriptions_list": _json_is({"subscriptions": []}),
    "subscription_put": _subscription_put,
    # the sample names a subscription that was never made
    "subscription_delete": _problem(404, "not_found"),
    "stats_get": _stats_get,
    "queue_stats": _queue_stats,
    "queue_presence": _json_is({"queue": "orders", "consumers": 0}),
    "topic_presence": _topic_presence,
    "messages_browse": _bodies_are_the_seed,
    # the samples name a message id that no queue holds
    "message_delete": _problem(404, "message_not_found"),
    "message_move": _problem(404, "message_not_found"),
    "connections_list": _json_is({"connections": []}),
    # the sample names a connection that is not open
    "connection_close": _problem(404, "not_found"),
    "history_get": _history_get,
    "console_page": _console_page,
    "console_asset": _console_asset,
    # access control: alone, the samples find no principal or key (see the sequence below)
    "access_principals_list": _json_is({"principals": []}),
    "access_principal_put": _access_principal_put,
    "access_principal_get": _problem(404, "not_found"),
    "access_principal_delete": _problem(404, "not_found"),
    "access_key_issue": _problem(404, "not_found"),
    "access_keys_list": _json_is({"keys": []}),
    "access_key_revoke": _problem(404, "not_found"),
    # scheduled messages: none is pending, so the samples' schedule id is not found
    "scheduled_list": _json_is({"scheduled": []}),
    "scheduled_cancel": _problem(404, "schedule_not_found"),
    "topic_scheduled_list": _json_is({"scheduled": []}),
    "topic_scheduled_cancel": _problem(404, "schedule_not_found"),
}


@pytest.mark.parametrize(
    "path", [p for p in HTTP_EVENTS if p.stem != "queue_put"], ids=lambda p: p.stem
)
def test_http_event_gets_the_expected_answer(seeded: HttpApi, path: Path) -> None:
    # Given `orders` exists and holds a message
    # When the sample event is invoked
    reply = seeded.invoke(load(path))
    # Then the function answers as a user of that route expects
    EXPECTED[path.stem](reply)


def test_every_http_event_has_an_expectation() -> None:
    # Given the HTTP samples (queue_put has a test of its own, which invokes it twice)
    # When their names are looked up in EXPECTED
    # Then each has an expectation, and no expectation names a sample that is not there
    assert {p.stem for p in HTTP_EVENTS} == set(EXPECTED) | {"queue_put"}


@pytest.mark.parametrize("stem", ["messages_ack", "messages_nack", "messages_visibility"])
def test_settle_event_carries_a_real_receipt_for_its_queue(stem: str) -> None:
    # Given a settle sample
    event = load(EVENTS / f"{stem}.json")
    (receipt,) = body_of(event)["receipts"]
    # When its receipt is read with the secret that signed it
    lease = decode_receipt(receipt, queue="orders", sign=sample_signer)
    # Then it is a receipt as a broker gives out: a lease on a message of the queue the
    # route names (a standard queue: a slot of an index segment)
    assert event["pathParameters"]["name"] == lease.queue == "orders"
    assert (lease.kind, lease.segment) == ("s", 0)
    assert 0 < lease.token < 2**31


def test_fifo_send_event_answers_a_sequence_that_grows_with_each_send(api: HttpApi) -> None:
    # Given the FIFO send sample, and the same with another dedup id
    event = load(EVENTS / "messages_send_fifo.json")
    later = with_body(event, {**body_of(event), "dedup_id": "order-1042-shipped"})
    # When both are sent, one after the other, and the first again
    first, second, again = (api.invoke(e) for e in (event, later, event))
    # Then the later message has the larger sequence, and the repeat (a duplicate within
    # the dedup window) answers with the first one's message id
    assert first.status == second.status == 201, (first.text, second.text)
    assert first.json["sequence"] < second.json["sequence"]
    assert again.json["message_id"] == first.json["message_id"]


GUARDED_HTTP_EVENTS = [p for p in HTTP_EVENTS if "authorizer" in load(p)["requestContext"]]


@pytest.mark.parametrize("path", GUARDED_HTTP_EVENTS, ids=lambda p: p.stem)
def test_http_event_without_the_authorizers_context_is_refused(api: HttpApi, path: Path) -> None:
    # Given a guarded route's sample that reaches the function with no authorizer's context
    # (invoked directly, or the route deployed without its authorizer), key still attached
    event = load(path)
    del event["requestContext"]["authorizer"]
    # When it is invoked
    reply = api.invoke(event)
    # Then the caller is told to authenticate: 401, a problem JSON
    _problem(401, "unauthorized")(reply)


def test_access_events_in_order_manage_a_principal_and_its_key(api: HttpApi) -> None:
    # Given the access samples, in the order an administrator would send them
    stems = ("principal_put", "principal_get", "key_issue", "keys_list", "key_revoke")
    put, get, issue, keys, revoke = (load(EVENTS / f"access_{s}.json") for s in stems)
    delete = load(EVENTS / "access_principal_delete.json")
    # When the principal is created, then read
    created = api.invoke(put)
    read = api.invoke(get)
    # Then it has the sample's grants
    assert created.status == 201, created.text
    assert read.status == 200, read.text
    assert read.json["id"] == "orders-service"
    assert read.json["grants"] == body_of(put)["grants"]
    # When a key is issued for it, its token is shown once, and listed without its secret
    issued = api.invoke(issue)
    assert issued.status == 201, issued.text
    assert issued.headers["Cache-Control"] == "no-store"
    assert API_KEY.fullmatch(issued.json["token"])
    assert issued.json["principal"] == "orders-service"
    assert isinstance(issued.json["expires_at"], int)
    key_id = issued.json["key_id"]
    listed = api.invoke(keys)
    assert listed.status == 200, listed.text
    assert [(k["key_id"], k["revoked"]) for k in listed.json["keys"]] == [(key_id, False)]
    assert issued.json["token"] not in listed.text
    # When the sample revocation names that key, it is revoked
    path = f"/access/keys/{key_id}"
    revoke["rawPath"] = revoke["requestContext"]["http"]["path"] = path
    revoke["pathParameters"] = {"key_id": key_id}
    assert api.invoke(revoke).status == 204
    assert [k["revoked"] for k in api.invoke(keys).json["keys"]] == [True]
    # When the principal is deleted, it is gone
    deleted = api.invoke(delete)
    assert (deleted.status, deleted.text) == (204, "")
    _problem(404, "not_found")(api.invoke(get))


def test_queue_put_event_creates_the_queue_with_its_settings(api: HttpApi) -> None:
    # Given no queue yet
    event = load(EVENTS / "queue_put.json")
    # When the sample PUT is invoked twice
    first = api.invoke(event)
    again = api.invoke(event)
    # Then it creates the queue with the sample's settings, then replaces them
    assert first.status == 201, first.text
    assert again.status == 200, again.text
    settings = body_of(event)
    assert {k: first.json[k] for k in settings} == settings
    assert first.json["name"] == "orders"


@pytest.mark.parametrize(
    ("stem", "field"),
    [("messages_ack", "acked"), ("messages_nack", "released"), ("messages_visibility", "changed")],
)
def test_settle_event_with_a_live_receipt_succeeds(api: HttpApi, stem: str, field: str) -> None:
    # Given a message sent and received with the sample events
    assert api.invoke(load(EVENTS / "messages_send.json")).status == 201
    received = api.invoke(load(EVENTS / "messages_receive.json"))
    (message,) = received.json["messages"]
    # When the sample settle event carries that delivery's receipt
    event = load(EVENTS / f"{stem}.json")
    reply = api.invoke(with_body(event, {**body_of(event), "receipts": [message["receipt"]]}))
    # Then it succeeds for that receipt
    assert reply.status == 200, reply.text
    assert reply.json[field] == [message["receipt"]]
    assert reply.json["failed"] == []


def test_received_sample_message_keeps_what_was_sent(api: HttpApi) -> None:
    # Given the sample message and the sample binary message sent
    for stem in ("messages_send", "messages_send_binary"):
        assert api.invoke(load(EVENTS / f"{stem}.json")).status == 201
    # When the sample long poll receives them
    received = api.invoke(load(EVENTS / "messages_receive.json")).json["messages"]
    # Then body, binary flag, headers and ids are as sent
    by_body = {m["body"]: m for m in received}
    for stem in ("messages_send", "messages_send_binary"):
        sent = body_of(load(EVENTS / f"{stem}.json"))
        got = by_body[sent["body"]]
        assert got["binary"] is sent.get("binary", False)
        assert got["attributes"] == sent["attributes"]
        assert got["content_type"] == sent["content_type"]
        assert got["correlation_id"] == sent.get("correlation_id")
        assert got["receive_count"] == 1


# ---- the sweeper ---------------------------------------------------------------------------


def test_sweeper_takes_the_schedule_event(function_env: dict[str, str]) -> None:
    # Given the sweeper function loaded as Lambda loads it
    handler = load_function("sweeper").lambda_handler
    # When the sample schedule event invokes it
    report = handler(load(EVENTS / "sweeper_schedule.json"), FakeLambdaContext())
    # Then it reports its sweep
    assert report == {
        "queues": 0,
        "dead_lettered": 0,
        "expired": 0,
        "errors": [],
        "scheduled_fired": 0,
        "pushed": 0,
        "connections_closed": 0,
        "temp_queues_deleted": 0,
    }


# ---- WebSocket API events ------------------------------------------------------------------

# Powertools' parser models of the three WebSocket proxy events: an independent description of
# what API Gateway sends (`$default` messages carry no headers; `$disconnect` carries
# API Gateway's own headers, not the client's).
WEBSOCKET_MODELS: dict[str, type[BaseModel]] = {
    "CONNECT": APIGatewayWebSocketConnectEventModel,
    "MESSAGE": APIGatewayWebSocketMessageEventModel,
    "DISCONNECT": APIGatewayWebSocketDisconnectEventModel,
}
ROUTE_OF_EVENT_TYPE = {"CONNECT": "$connect", "DISCONNECT": "$disconnect"}
# connection, message and request ids: 16 characters of URL-safe base64 (`BFaT_fALIAMCKug=`)
API_GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{15}=")

# The samples, in the order one JSON client and one STOMP client would cause them (a third
# client, a STOMP one that authenticates in CONNECT, is on its own further down).
WEBSOCKET_SEQUENCE = (
    "ws_connect_json",
    "ws_message_subscribe",
    "ws_message_publish",
    "ws_connect_stomp",
    "ws_message_stomp_connect",
    "ws_message_stomp_send",
    "ws_disconnect",
)
JSON_CLIENT = ("ws_connect_json", "ws_message_subscribe", "ws_message_publish", "ws_disconnect")
STOMP_CLIENT = ("ws_connect_stomp", "ws_message_stomp_connect", "ws_message_stomp_send")
PENDING_STOMP_CLIENT = ("ws_connect_stomp_pending", "ws_message_stomp_connect_passcode")
CLIENTS = (JSON_CLIENT, STOMP_CLIENT, PENDING_STOMP_CLIENT)


def ws_event(stem: str) -> dict[str, Any]:
    return load(EVENTS / f"{stem}.json")


def connection_of(stem: str) -> str:
    return str(ws_event(stem)["requestContext"]["connectionId"])


@pytest.fixture(scope="module")
def websocket_api() -> WebSocketApi:
    """The template's WebSocket API: stage, route selection expression and routes."""
    (found,) = Stack(load_template(ROOT / "template.yaml")).websocket_apis()
    return found


@pytest.mark.parametrize("path", WEBSOCKET_EVENTS, ids=lambda p: p.stem)
def test_websocket_event_is_shaped_like_api_gateway_sends_it(
    path: Path, websocket_api: WebSocketApi
) -> None:
    # Given a sample WebSocket event
    event = load(path)
    context = event["requestContext"]
    kind = context["eventType"]
    # When it is read as API Gateway's event of that type
    # Then Powertools' model of its event type takes it
    WEBSOCKET_MODELS[kind].model_validate(event)
    # ... its route is the one API Gateway picks: by event type, or by the template's route
    # selection expression for a message (no custom routes: `$default`)
    if kind == "MESSAGE":
        expected = select_route(
            websocket_api.route_selection_expression, event["body"], list(websocket_api.routes)
        )
    else:
        expected = ROUTE_OF_EVENT_TYPE[kind]
    assert expected is not None
    assert context["routeKey"] == expected
    assert websocket_api.routes[expected].function == "WebSocketFunction"
    # ... on the template's stage, from an API whose domain is its own
    assert context["stage"] == websocket_api.stage == "live"
    assert re.fullmatch(r"[a-z0-9]{10}", context["apiId"])
    assert context["domainName"] == f"{context['apiId']}.execute-api.us-east-1.amazonaws.com"
    # ... with the connection, request and timing fields
    assert API_GATEWAY_ID.fullmatch(context["connectionId"])
    assert API_GATEWAY_ID.fullmatch(context["requestId"])
    assert context["extendedRequestId"] == context["requestId"]
    assert context["messageDirection"] == "IN"
    assert isinstance(context["connectedAt"], int)
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["connectedAt"] <= context["requestTimeEpoch"]
    moment = datetime.fromtimestamp(context["requestTimeEpoch"] / 1000, UTC)
    assert context["requestTime"] == moment.strftime("%d/%b/%Y:%H:%M:%S +0000")
    assert context["identity"]["sourceIp"]
    assert event["isBase64Encoded"] is False
    # ... a message has its id and a text body, and no HTTP headers
    if kind == "MESSAGE":
        assert API_GATEWAY_ID.fullmatch(context["messageId"])
        assert isinstance(event["body"], str), event["body"]
        assert event["body"] != ""
        assert sorted({"headers", "multiValueHeaders"} & set(event)) == []
    else:
        assert "messageId" not in context
        assert "body" not in event
        assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
        assert event["headers"]["Host"] == context["domainName"]
    # ... a query string, where there is one, in both its forms
    query = event.get("queryStringParameters", {})
    assert event.get("multiValueQueryStringParameters", {}) == {k: [v] for k, v in query.items()}
    # ... and, $connect being authorized, what its authorizer said about the connection
    assert websocket_api.routes["$connect"].authorizer is not None
    assert set(context["authorizer"]) == {"principalId", "principal", "kind", "grants"}
    assert {k: type(v) for k, v in context["authorizer"].items()} == dict.fromkeys(
        context["authorizer"], str
    )
    # ... $connect has the upgrade request's headers, sent when the connection was made
    if kind == "CONNECT":
        headers = event["headers"]
        assert headers["Sec-WebSocket-Version"] == "13"
        assert len(base64.b64decode(headers["Sec-WebSocket-Key"], validate=True)) == 16
        assert headers["X-Forwarded-For"] == context["identity"]["sourceIp"]
        assert headers["X-Forwarded-Proto"] == "https"
        assert headers.get("User-Agent") == context["identity"].get("userAgent")
        assert context["requestTimeEpoch"] - context["connectedAt"] < 1000
    # ... and $disconnect says how the socket was closed
    if kind == "DISCONNECT":
        assert 1000 <= context["disconnectStatusCode"] <= 4999
        assert context["disconnectReason"]
        assert event["headers"]["X-Forwarded-For"] == ""
    else:
        assert sorted({"disconnectStatusCode", "disconnectReason"} & set(context)) == []


def test_websocket_samples_use_every_template_route(websocket_api: WebSocketApi) -> None:
    # Given the routes the sample events take
    sampled = {load(p)["requestContext"]["routeKey"] for p in WEBSOCKET_EVENTS}
    # When they are set beside the template's WebSocket routes
    # Then they are the template's WebSocket routes, every one of them
    assert sampled == set(websocket_api.routes) == {"$connect", "$default", "$disconnect"}


def test_websocket_samples_tell_three_connections_consistently() -> None:
    # Given the samples of the three clients, each in the order it causes them
    assert set(WEBSOCKET_SEQUENCE) <= {stem for client in CLIENTS for stem in client}
    assert sorted(stem for client in CLIENTS for stem in client) == sorted(
        p.stem for p in WEBSOCKET_EVENTS
    )
    # When their request contexts are set side by side
    contexts = {p.stem: load(p)["requestContext"] for p in WEBSOCKET_EVENTS}
    # Then all come from one API and stage
    assert len({(c["apiId"], c["domainName"], c["stage"]) for c in contexts.values()}) == 1
    # ... each client is one connection, opened once, from one address, each event later,
    # every event carrying what the authorizer said when it connected (API Gateway keeps it)
    for client in CLIENTS:
        opened = contexts[client[0]]
        assert opened["eventType"] == "CONNECT"
        times = [contexts[stem]["requestTimeEpoch"] for stem in client]
        assert times == sorted(times)
        for stem in client:
            assert contexts[stem]["connectionId"] == opened["connectionId"]
            assert contexts[stem]["connectedAt"] == opened["connectedAt"]
            assert contexts[stem]["identity"] == opened["identity"]
            assert contexts[stem]["authorizer"] == opened["authorizer"]
    assert len({connection_of(client[0]) for client in CLIENTS}) == len(CLIENTS)
    # ... and no two events share a request or message id
    request_ids = [c["requestId"] for c in contexts.values()]
    message_ids = [c["messageId"] for c in contexts.values() if "messageId" in c]
    assert len(set(request_ids)) == len(request_ids)
    assert len(set(message_ids)) == len(message_ids)


def test_websocket_message_bodies_are_what_the_protocols_take() -> None:
    # Given the sample messages of the JSON client and of the STOMP client
    # When each body is parsed by its protocol's parser
    # Then the JSON ones are JSON protocol frames ...
    assert parse_frame(ws_event("ws_message_subscribe")["body"]).action == "subscribe"
    assert parse_frame(ws_event("ws_message_publish")["body"]).action == "publish"
    # ... and the STOMP ones one STOMP frame each (content-length, where given, honest)
    (connect,) = decode_frames(ws_event("ws_message_stomp_connect")["body"])
    (send,) = decode_frames(ws_event("ws_message_stomp_send")["body"])
    assert (connect.command, connect.header("accept-version")) == ("CONNECT", "1.2,1.1,1.0")
    assert (send.command, send.header("destination")) == ("SEND", "/queue/orders")
    assert send.header("content-type") == "application/json"
    assert send.header("receipt")
    # ... the STOMP client offering the STOMP subprotocols when it connects
    offered = ws_event("ws_connect_stomp")["headers"]["Sec-WebSocket-Protocol"]
    assert offered == "v12.stomp, v11.stomp, v10.stomp"
    assert "Sec-WebSocket-Protocol" not in ws_event("ws_connect_json")["headers"]
    # ... and the STOMP client that brought no key sends it in CONNECT, login its principal
    (passcode_connect,) = decode_frames(ws_event("ws_message_stomp_connect_passcode")["body"])
    assert passcode_connect.command == "CONNECT"
    assert passcode_connect.header("accept-version") == "1.2,1.1,1.0"
    assert passcode_connect.header("login") == SAMPLE_PRINCIPAL
    assert passcode_connect.header("passcode") == SAMPLE_TOKEN
    assert connect.header("passcode") is None  # its connection is authenticated already


def test_websocket_clients_bring_their_key_the_way_they_can() -> None:
    # Given the three clients' handshakes
    browser, stomp, pending = (
        ws_event(stem)
        for stem in ("ws_connect_json", "ws_connect_stomp", "ws_connect_stomp_pending")
    )
    # When what each sends with its handshake is looked at
    # Then the browser (which cannot set headers on a WebSocket) puts it in the URL ...
    assert browser["queryStringParameters"] == {"access_token": SAMPLE_TOKEN}
    assert "Authorization" not in browser["headers"]
    # ... the STOMP client in an Authorization header
    assert stomp["headers"]["Authorization"] == f"Bearer {SAMPLE_TOKEN}"
    assert "queryStringParameters" not in stomp
    # ... and the browser STOMP client nowhere: it offers STOMP and will say it in CONNECT
    assert "Authorization" not in pending["headers"]
    assert "queryStringParameters" not in pending
    assert pending["headers"]["Sec-WebSocket-Protocol"] == "v12.stomp, v11.stomp, v10.stomp"
    # ... so the two with a key are `ops-admin`'s, the other pending (no one yet)
    for event in (browser, stomp):
        assert event["requestContext"]["authorizer"] == {
            "principalId": SAMPLE_PRINCIPAL,
            **SAMPLE_CONTEXT,
        }
    assert pending["requestContext"]["authorizer"] == {
        "principalId": "unauthenticated",
        "principal": "",
        "kind": "pending",
        "grants": "[]",
    }


# ---- invoking the WebSocket function with each file ----------------------------------------


def become(function: str, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply `function`'s environment from the template and start from fresh caches, as a
    new Lambda execution environment of that function would."""
    for name, value in stack.environment(function).items():
        monkeypatch.setenv(name, value)
    wiring.reset()


@pytest.fixture
def pushed(
    function_env: dict[str, str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> RecordingPusher:
    """What the functions post to WebSocket connections, recorded instead of sent to the
    @connections API (wiring.pusher() is what Sessions push through)."""
    recorder = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recorder)
    become("WebSocketFunction", stack, monkeypatch)
    return recorder


def invoke_ws(stem: str) -> dict[str, Any]:
    answer: dict[str, Any] = load_function("ws").lambda_handler(ws_event(stem), FakeLambdaContext())
    return answer


def test_websocket_events_in_order_get_what_the_clients_expect(pushed: RecordingPusher) -> None:
    # Given the samples' JSON client and STOMP client, nothing connected yet
    json_client, stomp_client = connection_of("ws_connect_json"), connection_of("ws_connect_stomp")
    # When the samples are invoked in the order the two clients cause them
    answers = {stem: invoke_ws(stem) for stem in WEBSOCKET_SEQUENCE}
    # Then both connections are accepted, the STOMP client's with the newest STOMP it offered
    assert answers["ws_connect_json"] == {"statusCode": 200}
    assert answers["ws_connect_stomp"] == {
        "statusCode": 200,
        "headers": {"Sec-WebSocket-Protocol": "v12.stomp"},
    }
    assert {stem: a["statusCode"] for stem, a in answers.items()} == dict.fromkeys(answers, 200)
    # ... the STOMP client gets CONNECTED (STOMP 1.2), then the RECEIPT its SEND asked for
    (send,) = decode_frames(ws_event("ws_message_stomp_send")["body"])
    connected, receipt = pushed.stomp_frames(stomp_client)
    assert connected.command == "CONNECTED"
    assert connected.header("version") == "1.2"
    assert receipt.command == "RECEIPT"
    assert receipt.header("receipt-id") == send.header("receipt")
    # ... the JSON client is told it is subscribed, then gets the receipt of its publish
    subscribe = body_of(ws_event("ws_message_subscribe"))
    publish = body_of(ws_event("ws_message_publish"))
    subscribed, published = pushed.json_frames(json_client)
    assert subscribed == {
        "type": "subscribed",
        "id": subscribe["id"],
        "destination": subscribe["destination"],
    }
    assert published["type"] == "receipt"
    assert published["receipt"] == publish["receipt"]
    assert uuid.UUID(published["message_id"]).version == 7
    # ... and the disconnected JSON client is forgotten (the STOMP one is still there)
    sessions = wiring.sessions()
    assert sessions.info(json_client) is None
    assert sessions.info(stomp_client) is not None
    listed = {c["id"]: c for c in sessions.live.list_connections()}
    assert json_client not in listed
    assert listed[stomp_client]["protocol"] == "stomp"
    # (a late message from it is answered with an error, and the socket closed)
    assert invoke_ws("ws_message_publish") == {"statusCode": 200}
    assert pushed.json_frames(json_client)[-1]["error"] == "unknown_connection"
    assert pushed.closed == [json_client]


def test_json_subscriber_gets_what_the_stomp_client_sent_once_the_stream_says_so(
    pushed: RecordingPusher, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the two clients connected, the JSON one subscribed to `orders`, the STOMP one
    # having sent to it (the WebSocket function does not push a SEND: the stream does)
    for stem in WEBSOCKET_SEQUENCE[:-1]:
        invoke_ws(stem)
    json_client = connection_of("ws_connect_json")
    assert [f["type"] for f in pushed.json_frames(json_client)] == ["subscribed", "receipt"]
    # When the dispatch function gets the stream record of a new message in `orders`
    become("DispatchFunction", stack, monkeypatch)
    handler = load_function("dispatch").lambda_handler
    report = handler(load(EVENTS / "dispatch_queue_insert.json"), FakeLambdaContext())
    # Then it reports no failure, and the subscriber got the STOMP client's message
    assert report == {"batchItemFailures": []}
    (send,) = decode_frames(ws_event("ws_message_stomp_send")["body"])
    subscribe = body_of(ws_event("ws_message_subscribe"))
    message = pushed.json_frames(json_client)[-1]
    assert message["type"] == "message"
    assert message["subscription"] == subscribe["id"]
    assert message["destination"] == send.header("destination") == subscribe["destination"]
    assert message["body"] == send.body.decode()
    assert message["content_type"] == send.header("content-type")
    assert message["ack"]  # client-individual: the subscriber acks each message


@pytest.fixture
def ops_admin_key(dynamodb: Any, settings: Settings) -> str:
    """A real API key of `ops-admin`, the samples' principal, issued in moto's tables."""
    access = assembly.build_access_control(dynamodb, settings.destinations_table, SystemClock())
    return bootstrap_admin(access, SAMPLE_PRINCIPAL).token


def stored_about(connection_id: str, dynamodb: Any, settings: Settings) -> list[dict[str, Any]]:
    """Every item of either table that mentions the connection."""
    return [
        item
        for table in (settings.messages_table, settings.destinations_table)
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
        if connection_id in json.dumps(item, default=str)
    ]


def test_pending_stomp_connection_is_opened_by_a_connect_with_a_real_key(
    pushed: RecordingPusher, dynamodb: Any, settings: Settings, ops_admin_key: str
) -> None:
    # Given the samples' STOMP client that brings no key to its handshake
    client = connection_of("ws_connect_stomp_pending")
    # When it connects
    answer = invoke_ws("ws_connect_stomp_pending")
    # Then the handshake goes on with the newest STOMP it offered, and nothing is stored
    assert answer == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "v12.stomp"}}
    assert stored_about(client, dynamodb, settings) == []
    assert wiring.sessions().info(client) is None
    # When its CONNECT carries a real key of `ops-admin` as passcode (login `ops-admin`)
    connect = with_token(ws_event("ws_message_stomp_connect_passcode"), ops_admin_key)
    assert load_function("ws").lambda_handler(connect, FakeLambdaContext()) == {"statusCode": 200}
    # Then the client is CONNECTED (STOMP 1.2), as `ops-admin`, and listed as a STOMP client
    (connected,) = pushed.stomp_frames(client)
    assert connected.command == "CONNECTED"
    assert connected.header("version") == "1.2"
    info = wiring.sessions().info(client)
    assert info is not None
    assert info.principal == SAMPLE_PRINCIPAL
    listed = {c["id"]: c for c in wiring.sessions().live.list_connections()}
    assert listed[client]["protocol"] == "stomp"
    assert stored_about(client, dynamodb, settings) != []
    assert pushed.closed == []


def test_pending_stomp_connect_with_the_fake_sample_key_is_refused_and_closed(
    pushed: RecordingPusher, dynamodb: Any, settings: Settings
) -> None:
    client = connection_of("ws_connect_stomp_pending")
    # Given the pending STOMP client connected
    invoke_ws("ws_connect_stomp_pending")
    # When its CONNECT carries the samples' key, which no deployment issued
    assert invoke_ws("ws_message_stomp_connect_passcode") == {"statusCode": 200}
    # Then it gets a STOMP ERROR, the socket is closed, and still nothing is stored
    (error,) = pushed.stomp_frames(client)
    assert error.command == "ERROR"
    assert error.header("message")
    assert pushed.closed == [client]
    assert stored_about(client, dynamodb, settings) == []


def test_connect_without_the_authorizers_context_is_refused(
    pushed: RecordingPusher, dynamodb: Any, settings: Settings
) -> None:
    # Given the JSON client's handshake reaching the function with no authorizer's say
    event = ws_event("ws_connect_json")
    del event["requestContext"]["authorizer"]
    # When it is invoked
    answer = load_function("ws").lambda_handler(event, FakeLambdaContext())
    # Then the handshake is refused 401 and nothing is stored
    assert answer == {"statusCode": 401}
    assert stored_about(connection_of("ws_connect_json"), dynamodb, settings) == []


# ---- the DynamoDB stream event -------------------------------------------------------------


def test_stream_event_is_a_messages_table_insert_that_dispatch_takes(stack: Stack) -> None:
    # Given the sample stream batch and the template's event source for DispatchFunction
    (path,) = STREAM_EVENTS
    event = load(path)
    (record,) = event["Records"]
    (source,) = [s for s in stack.stream_sources() if s.function == "DispatchFunction"]
    # When it is read as a stream event and passed through the template's filter
    # Then Powertools' model of a DynamoDB stream event takes it
    DynamoDBStreamModel.model_validate(event)
    # ... the template's FilterCriteria let it through (and would stop the same item's MODIFY)
    matches = record_filter(source.filter_patterns)
    assert source.filter_patterns != ()
    assert matches(record)
    assert not matches({**record, "eventName": "MODIFY"})
    assert source.report_batch_item_failures
    # ... it comes from the stream of the messages table, as CloudFormation names the table
    assert source.table == "MessagesTable"
    arn = re.fullmatch(
        r"arn:aws:dynamodb:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
        r"table/(?P<table>[A-Za-z0-9_.-]+)/stream/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}",
        record["eventSourceARN"],
    )
    assert arn is not None, record["eventSourceARN"]
    assert arn["region"] == record["awsRegion"] == stack.region
    assert arn["table"].startswith(f"{stack.stack_name}-MessagesTable-")
    # ... shaped as Lambda hands stream records over
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventName"] == "INSERT"
    assert record["eventVersion"] == "1.1"
    assert re.fullmatch(r"[0-9a-f]{32}", record["eventID"])
    change = record["dynamodb"]
    resources: Any = stack.template["Resources"]
    stream_spec = resources["MessagesTable"]["Properties"]["StreamSpecification"]
    assert change["StreamViewType"] == stream_spec["StreamViewType"]
    assert "OldImage" not in change  # an INSERT has no old image
    assert re.fullmatch(r"\d{21,40}", change["SequenceNumber"])
    assert isinstance(change["SizeBytes"], int), change["SizeBytes"]
    assert change["SizeBytes"] > 0
    # ... and would let no index, group, dedup or data-key write through
    for pk in ("I#orders#0", "F#orders.fifo#0", "D#orders.fifo#a", "K#/queue/orders"):
        other = copy.deepcopy(record)
        other["dynamodb"]["Keys"]["pk"] = {"S": pk}
        assert not matches(other), pk
    # ... about a new log item of queue `orders` (one of its shards), its keys those of the
    # new item (storage engine v2: docs/storage-engine.md)
    item_keys = from_stream_image(change["Keys"])
    item = from_stream_image(change["NewImage"])
    assert {name: item[name] for name in item_keys} == item_keys
    kind, queue, shard = keys.parse_log_partition(str(item_keys["pk"]))
    assert (kind, queue) == ("queue", "orders")
    assert 0 <= shard < DEFAULT_SHARDS
    # ... written when its id says (the item id is a UUIDv7, its first body's message id),
    # kept for the default retention
    item_id = str(item_keys["sk"])
    message_id = keys.message_id(item_id, 0)
    assert uuid.UUID(message_id).version == 7
    sent_s = keys.id_time_ms(item_id) // 1000
    assert sent_s <= change["ApproximateCreationDateTime"] <= sent_s + 1
    assert item["x"] == sent_s + DEFAULT_RETENTION_SECONDS
    # ... one body, sealed with its headers (binary values are base64 in stream JSON),
    # naming its data key by id (8 bytes); nothing its sender wrote beside them in the clear
    sealed = item["b"]  # a lone body is `b` itself, not a list of one
    assert isinstance(sealed, bytes), sealed
    assert sealed[0] == FORMAT_VERSION
    assert isinstance(item["k"], bytes), item["k"]
    assert len(item["k"]) == 8
    assert set(item) == {"pk", "sk", "b", "k", "x"}
    # ... the body of the STOMP client's SEND (its size: the sealed body is the body and its
    # headers plus 33 bytes of framing, nonce and tag)
    (send,) = decode_frames(ws_event("ws_message_stomp_send")["body"])
    headers = b'{"t":"application/json"}'
    assert len(sealed) == len(send.body) + len(headers) + 33


def test_stream_event_image_has_the_attributes_the_broker_stores(
    service: QueueService, dynamodb: Any, settings: Settings
) -> None:
    # Given a message like the sample's, sent to `orders` and stored by the broker
    (path,) = STREAM_EVENTS
    image = load(path)["Records"][0]["dynamodb"]["NewImage"]
    sent = service.send(
        ANONYMOUS,
        "orders",
        NewMessage(body=b'{"order_id":1043}', content_type="application/json"),
    )
    item_id, _ = keys.locate(sent.message_id)
    [stored] = [
        item
        for page in dynamodb.get_paginator("scan").paginate(TableName=settings.messages_table)
        for item in page["Items"]
        if item["sk"] == {"S": item_id}
    ]
    # When its stored item is set beside the sample's new image
    # Then the sample's new image has the same attributes, of the same DynamoDB types
    assert {name: next(iter(value)) for name, value in image.items()} == {
        name: next(iter(value)) for name, value in stored.items()
    }
    # (and the same ones after decoding: same shape of values)
    assert from_wire(stored).keys() == from_stream_image(image).keys()


def test_dispatch_takes_the_stream_event(
    pushed: RecordingPusher, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the dispatch function, and no push consumer anywhere
    become("DispatchFunction", stack, monkeypatch)
    handler = load_function("dispatch").lambda_handler
    # When the sample stream batch invokes the dispatch function
    report = handler(load(EVENTS / "dispatch_queue_insert.json"), FakeLambdaContext())
    # Then it reports no failed record, and there was no one to push to
    assert report == {"batchItemFailures": []}
    assert pushed.posts == {}


# ---- the authorizer's events ----------------------------------------------------------------

# the upgrade's hop-by-hop headers: shown to a WebSocket authorizer, not to the integration
HOP_BY_HOP = {"Connection": "upgrade", "content-length": "0", "Upgrade": "websocket"}
ACCOUNT_ID = "123456789012"  # the samples' AWS account (WebSocket events do not name it)


def _region(domain_name: str) -> str:
    return domain_name.split(".")[2]  # <api id>.execute-api.<region>.amazonaws.com


def http_authorizer_event(request: dict[str, Any]) -> dict[str, Any]:
    """The payload-2.0 event API Gateway sends the HTTP API's authorizer before `request`."""
    context = {k: v for k, v in request["requestContext"].items() if k != "authorizer"}
    route_arn = (
        f"arn:aws:execute-api:{_region(context['domainName'])}:{context['accountId']}:"
        f"{context['apiId']}/{context['stage']}/{context['http']['method']}{request['rawPath']}"
    )
    optional = ("cookies", "queryStringParameters", "pathParameters", "stageVariables")
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": route_arn,
        "identitySource": [request["headers"]["authorization"]],
        "routeKey": request["routeKey"],
        "rawPath": request["rawPath"],
        "rawQueryString": request["rawQueryString"],
        "headers": request["headers"],
        "requestContext": context,
        **{k: request[k] for k in optional if k in request},
    }


def websocket_authorizer_event(connect: dict[str, Any]) -> dict[str, Any]:
    """The REQUEST event API Gateway sends the `$connect` authorizer before `connect`."""
    context = {k: v for k, v in connect["requestContext"].items() if k != "authorizer"}
    headers = {**connect["headers"], **HOP_BY_HOP}
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{_region(context['domainName'])}:{ACCOUNT_ID}:"
        f"{context['apiId']}/{context['stage']}/$connect",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": connect.get("queryStringParameters", {}),
        "multiValueQueryStringParameters": connect.get("multiValueQueryStringParameters", {}),
        "stageVariables": {},
        "requestContext": context,
    }


def test_http_authorizer_event_is_what_api_gateway_sends_before_the_sample_send(
    template: Stack,
) -> None:
    # Given the HTTP authorizer's sample and the sample request it stands before
    event = load(EVENTS / "authorizer_http_request.json")
    request = load(EVENTS / "messages_send.json")
    # When it is set beside the event API Gateway builds from that request
    # Then Powertools' model of a payload-2.0 authorizer event takes it
    ApiGatewayAuthorizerRequestV2.model_validate(event)
    # ... it is that request's, as API Gateway would send it (no body, no authorizer's say yet)
    assert event == http_authorizer_event(request)
    assert "body" not in event
    assert "authorizer" not in event["requestContext"]
    # ... its identity source is the template's (the Authorization header), and its route ARN
    # names the request's API, stage, method and path
    guarded = {f"{r.method} {r.path}": a for r, a in template.http_authorizers().items()}
    assert guarded[request["routeKey"]].identity_sources == (
        IdentitySource("header", "Authorization"),
    )
    assert event["identitySource"] == [f"Bearer {SAMPLE_TOKEN}"]
    arn = parse_api_gateway_arn(event["routeArn"])
    context = request["requestContext"]
    assert (arn.api_id, arn.stage, arn.http_method) == (context["apiId"], "$default", "POST")
    assert "/" + arn.resource == request["rawPath"]
    assert arn.aws_account_id == context["accountId"]


def test_websocket_authorizer_event_is_what_api_gateway_sends_before_the_json_connect(
    websocket_api: WebSocketApi,
) -> None:
    # Given the WebSocket authorizer's sample and the JSON client's handshake
    event = load(EVENTS / "authorizer_ws_connect.json")
    connect = ws_event("ws_connect_json")
    # When it is set beside the event API Gateway builds from that handshake
    # Then it is that handshake's, as API Gateway sends it to a REQUEST authorizer
    assert event == websocket_authorizer_event(connect)
    assert event["queryStringParameters"] == {"access_token": SAMPLE_TOKEN}
    # ... for the route the template authorizes with AuthorizerFunction, and no other
    authorizer = websocket_api.routes["$connect"].authorizer
    assert authorizer is not None
    assert authorizer.function == "AuthorizerFunction"
    assert authorizer.identity_sources == ()  # the function looks at query and header itself
    authorized = {k for k, r in websocket_api.routes.items() if r.authorizer is not None}
    assert authorized == {"$connect"}
    arn = parse_api_gateway_arn(event["methodArn"], is_websocket_authorizer=True)
    assert (arn.api_id, arn.stage, arn.resource) == (
        connect["requestContext"]["apiId"],
        "live",
        "$connect",
    )


@pytest.fixture
def authorize(
    function_env: dict[str, str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], Any]:
    """Invoke the authorizer function, in its own environment from the template."""
    become("AuthorizerFunction", stack, monkeypatch)
    handler = load_function("authorizer").lambda_handler

    def invoke(event: dict[str, Any]) -> Any:
        return handler(event, FakeLambdaContext())

    return invoke


def test_http_authorizer_refuses_the_samples_fake_key(authorize: Callable[..., Any]) -> None:
    # Given the HTTP authorizer's sample, which carries the samples' fake key
    # When it invokes the authorizer
    answer = authorize(load(EVENTS / "authorizer_http_request.json"))
    # Then the request is not authorized (API Gateway answers 403 without calling the API)
    assert answer == {"isAuthorized": False}


def test_http_authorizer_answers_a_real_key_with_what_the_samples_carry(
    authorize: Callable[..., Any], ops_admin_key: str
) -> None:
    # Given the HTTP authorizer's sample holding a real key of `ops-admin`
    event = with_token(load(EVENTS / "authorizer_http_request.json"), ops_admin_key)
    assert event["identitySource"] == [f"Bearer {ops_admin_key}"]
    # When it invokes the authorizer
    answer = authorize(event)
    # Then the request is authorized with `ops-admin`'s grants as context: exactly what the
    # HTTP samples carry in requestContext.authorizer.lambda, and the id of the key (which
    # the samples leave out: it is new in every run)
    context = without_key_id(answer.pop("context"), ops_admin_key)
    assert answer == {"isAuthorized": True}
    assert context == SAMPLE_CONTEXT
    assert load(EVENTS / "messages_send.json")["requestContext"]["authorizer"] == {
        "lambda": context
    }


def without_key_id(context: dict[str, str], token: str) -> dict[str, str]:
    """An authorizer's context less its `key_id`, checked to be the id of `token`."""
    rest = dict(context)
    assert rest.pop("key_id") == token.removeprefix("mqk_").split("_", 1)[0]
    return rest


def _policy_document(effect: str, method_arn: str) -> dict[str, Any]:
    """An IAM policy that allows or denies calling `method_arn`, and nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}],
    }


def test_websocket_authorizer_denies_the_samples_fake_key(authorize: Callable[..., Any]) -> None:
    # Given the WebSocket authorizer's sample, which carries the samples' fake key
    # When it invokes the authorizer
    event = load(EVENTS / "authorizer_ws_connect.json")
    answer = authorize(event)
    # Then its policy denies `$connect` (API Gateway refuses the handshake with 403)
    assert answer["policyDocument"] == _policy_document("Deny", event["methodArn"])
    assert not verdict(answer, simple=False, resource=event["methodArn"]).allowed


@pytest.mark.parametrize("stem", [client[0] for client in CLIENTS])
def test_websocket_authorizer_answers_each_handshake_with_what_its_connect_sample_carries(
    authorize: Callable[..., Any], ops_admin_key: str, stem: str
) -> None:
    # Given the authorizer's event for a sample handshake, any key in it a real one
    connect = with_token(ws_event(stem), ops_admin_key)
    event = websocket_authorizer_event(connect)
    # When it invokes the authorizer
    answer = authorize(event)
    # Then its policy allows `$connect`, and principalId and context are exactly the
    # sample $connect event's requestContext.authorizer, with the key's id (none for a
    # STOMP handshake that brings its key in CONNECT)
    expected = ws_event(stem)["requestContext"]["authorizer"]
    if expected["kind"] != "pending":
        answer["context"] = without_key_id(answer["context"], ops_admin_key)
    assert answer == {
        "principalId": expected["principalId"],
        "policyDocument": _policy_document("Allow", event["methodArn"]),
        "context": {k: v for k, v in expected.items() if k != "principalId"},
    }
    assert verdict(answer, simple=False, resource=event["methodArn"]).allowed


def test_websocket_authorizer_refuses_a_keyless_handshake_that_offers_no_stomp(
    authorize: Callable[..., Any],
) -> None:
    # Given the JSON client's handshake without its access_token
    event = load(EVENTS / "authorizer_ws_connect.json")
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = {}
    # When it invokes the authorizer
    # Then it raises exactly `Unauthorized` (API Gateway answers the handshake 401)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(event)
