"""The sample events in events/ are real-shaped, cover every route and work with the handlers.

Each file is fed to its function's lambda_handler the way `sam local invoke -e` would, with
the function's environment from template.yaml and its tables and key in moto. There are four
kinds, one per way the functions are invoked: HTTP API (payload format 2.0) requests for
HttpApiFunction, WebSocket API (Lambda proxy integration) events for WebSocketFunction,
DynamoDB stream batches for DispatchFunction, and EventBridge Scheduler events for
SweeperFunction.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
    DynamoDBStreamModel,
)
from conftest_http import EVENTS, ROOT, HttpApi, Reply, load_function
from pydantic import BaseModel

from mqless import runtime
from mqless.dynamo import from_stream_image, from_wire, to_wire
from mqless.envelope import FORMAT_VERSION
from mqless.json_protocol import parse_frame
from mqless.models import NewMessage
from mqless.principals import ANONYMOUS
from mqless.queues import QueueService
from mqless.settings import Settings
from mqless.stomp import decode_frames
from mqless.store import partition, standard_key
from mqless_cli.local.streams import record_filter
from mqless_cli.local.ws_gateway import select_route
from mqless_cli.template import Stack, WebSocketApi, load_template
from tests.component.conftest import RecordingPusher
from tests.lambda_support import FakeLambdaContext


def load(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


_HTTP_ROUTE_KEY = re.compile(r"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|ANY) /\S*")


def kinds_of(event: dict[str, Any]) -> set[str]:
    """The kinds of Lambda event that `event` looks like (a good sample is exactly one)."""
    kinds: set[str] = set()
    if event.get("version") == "2.0" and _HTTP_ROUTE_KEY.fullmatch(str(event.get("routeKey"))):
        kinds.add("http")
    context = event.get("requestContext")
    if isinstance(context, dict) and "eventType" in context:
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


# ---- the files themselves -------------------------------------------------------------------


# the function each non-HTTP kind is for, and the prefix its files carry
FILE_PREFIX = {"websocket": "ws_", "stream": "dispatch_", "schedule": "sweeper_"}


def test_every_event_file_is_one_kind_of_event() -> None:
    # Given every file in events/
    assert ALL_EVENTS, "events/ is empty"
    # Then each is exactly one of the kinds the functions take, named <what>_<case>.json
    for path in ALL_EVENTS:
        kinds = kinds_of(load(path))
        assert len(kinds) == 1, f"{path.name} looks like {sorted(kinds) or 'no event at all'}"
        assert re.fullmatch(r"[a-z]+_[a-z_]+\.json", path.name), path.name
        (kind,) = kinds
        if kind in FILE_PREFIX:
            assert path.name.startswith(FILE_PREFIX[kind]), f"{path.name}: {kind} event"
    # ... every kind has samples, and together they are all the files
    assert HTTP_EVENTS and WEBSOCKET_EVENTS and STREAM_EVENTS and SCHEDULE_EVENTS
    assert sorted(HTTP_EVENTS + WEBSOCKET_EVENTS + STREAM_EVENTS + SCHEDULE_EVENTS) == ALL_EVENTS


@pytest.mark.parametrize("path", HTTP_EVENTS, ids=lambda p: p.stem)
def test_http_event_is_shaped_like_api_gateway_payload_v2(path: Path) -> None:
    # Given a sample HTTP API event
    event = load(path)
    context = event["requestContext"]
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


def test_schedule_event_targets_a_function_the_template_schedules(stack: Stack) -> None:
    # Given the sample schedule event and the template's schedules
    (path,) = SCHEDULE_EVENTS
    event = load(path)
    scheduled = {s.function for s in stack.schedules() if s.enabled}
    # Then it is EventBridge Scheduler's default payload, for the sweeper's schedule
    assert "SweeperFunction" in scheduled
    assert event["source"] == "aws.scheduler"
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"][0].startswith("arn:aws:scheduler:")
    assert event["detail"] == "{}"


# ---- invoking the HTTP function with each file ---------------------------------------------


def _stale(reply: Reply) -> bool:
    # the sample receipts are well formed but their leases never existed
    return reply.is_problem(409, "stale_receipt") and reply.json["failed"][0]["error"] == (
        "stale_receipt"
    )


def _created(reply: Reply) -> bool:
    return reply.status == 201 and bool(reply.json["message_id"])


EXPECTED: dict[str, Callable[[Reply], bool]] = {
    "queues_list": lambda r: (
        r.status == 200 and {"orders", "orders.dlq"} <= {q["name"] for q in r.json["queues"]}
    ),
    "queue_get": lambda r: r.status == 200 and r.json["counts"]["visible"] == 1,
    "queue_delete": lambda r: r.status == 204 and r.text == "",
    "messages_send": _created,
    "messages_send_binary": _created,
    "messages_send_fifo": lambda r: _created(r) and r.json["sequence"] == 1,
    "messages_batch": lambda r: (
        r.status == 200
        and [e["id"] for e in r.json["successful"]] == ["first", "second", "third"]
        and r.json["failed"] == []
    ),
    "messages_receive": lambda r: (
        r.status == 200 and [m["body"] for m in r.json["messages"]] == ["seed"]
    ),
    "messages_ack": _stale,
    "messages_nack": _stale,
    "messages_visibility": _stale,
    "queue_purge": lambda r: r.status == 200 and r.json == {"purged": 1},
    "queue_redrive": lambda r: r.status == 200 and r.json == {"moved": 0, "failed": []},
    "openapi_get": lambda r: r.status == 200 and r.json["openapi"].startswith("3.1"),
    "topic_publish": _created,
    "topic_publish_batch": lambda r: (
        r.status == 200 and [e["id"] for e in r.json["successful"]] == ["a", "b"]
    ),
    "subscriptions_list": lambda r: r.status == 200 and r.json == {"subscriptions": []},
    "subscription_put": lambda r: (
        r.status == 201 and r.json["queue"] == "orders" and r.json["topic"] == "orders.>"
    ),
    # the sample names a subscription that was never made
    "subscription_delete": lambda r: r.is_problem(404, "not_found"),
    "stats_get": lambda r: (
        r.status == 200
        and {"orders", "orders.dlq"} <= {q["name"] for q in r.json["queues"]}
        and r.json["connections"] == 0
    ),
    "queue_stats": lambda r: r.status == 200 and r.json["visible"] == 1,
    "messages_browse": lambda r: (
        r.status == 200 and [m["body"] for m in r.json["messages"]] == ["seed"]
    ),
    # the samples name a message id that no queue holds
    "message_delete": lambda r: r.is_problem(404, "message_not_found"),
    "message_move": lambda r: r.is_problem(404, "message_not_found"),
    "connections_list": lambda r: r.status == 200 and r.json == {"connections": []},
    "console_page": lambda r: (
        r.status == 200 and r.headers["Content-Type"].startswith("text/html") and "<html" in r.text
    ),
    "console_asset": lambda r: (
        r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
    ),
}


@pytest.mark.parametrize(
    "path", [p for p in HTTP_EVENTS if p.stem != "queue_put"], ids=lambda p: p.stem
)
def test_http_event_gets_the_expected_answer(seeded: HttpApi, path: Path) -> None:
    # Given `orders` exists and holds a message
    # When the sample event is invoked
    reply = seeded.invoke(load(path))
    # Then the function answers as a user of that route expects
    assert EXPECTED[path.stem](reply), f"{path.stem}: {reply.status} {reply.text[:500]}"


def test_every_http_event_has_an_expectation() -> None:
    assert {p.stem for p in HTTP_EVENTS} == set(EXPECTED) | {"queue_put"}


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
    assert report == {"queues": 0, "dead_lettered": 0, "expired": 0, "errors": [], "pushed": 0}


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

# The samples, in the order one JSON client and one STOMP client would cause them.
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
        assert isinstance(event["body"], str) and event["body"]
        assert "headers" not in event and "multiValueHeaders" not in event
    else:
        assert "messageId" not in context and "body" not in event
        assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
        assert event["headers"]["Host"] == context["domainName"]
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
        assert "disconnectStatusCode" not in context and "disconnectReason" not in context


def test_websocket_samples_use_every_template_route(websocket_api: WebSocketApi) -> None:
    # Given the routes the sample events take
    sampled = {load(p)["requestContext"]["routeKey"] for p in WEBSOCKET_EVENTS}
    # Then they are the template's WebSocket routes, every one of them
    assert sampled == set(websocket_api.routes) == {"$connect", "$default", "$disconnect"}


def test_websocket_samples_tell_two_connections_consistently() -> None:
    # Given the samples in the order two clients cause them
    assert sorted(WEBSOCKET_SEQUENCE) == sorted(p.stem for p in WEBSOCKET_EVENTS)
    assert sorted(JSON_CLIENT + STOMP_CLIENT) == sorted(WEBSOCKET_SEQUENCE)
    contexts = {stem: ws_event(stem)["requestContext"] for stem in WEBSOCKET_SEQUENCE}
    # Then all come from one API and stage
    assert len({(c["apiId"], c["domainName"], c["stage"]) for c in contexts.values()}) == 1
    # ... each client is one connection, opened once, from one address, each event later
    for client in (JSON_CLIENT, STOMP_CLIENT):
        opened = contexts[client[0]]
        assert opened["eventType"] == "CONNECT"
        times = [contexts[stem]["requestTimeEpoch"] for stem in client]
        assert times == sorted(times)
        for stem in client:
            assert contexts[stem]["connectionId"] == opened["connectionId"]
            assert contexts[stem]["connectedAt"] == opened["connectedAt"]
            assert contexts[stem]["identity"] == opened["identity"]
    assert connection_of("ws_connect_json") != connection_of("ws_connect_stomp")
    # ... and no two events share a request or message id
    request_ids = [c["requestId"] for c in contexts.values()]
    message_ids = [c["messageId"] for c in contexts.values() if "messageId" in c]
    assert len(set(request_ids)) == len(request_ids)
    assert len(set(message_ids)) == len(message_ids)


def test_websocket_message_bodies_are_what_the_protocols_take() -> None:
    # Given the sample messages of the JSON client and of the STOMP client
    # Then the JSON ones are JSON protocol frames ...
    assert parse_frame(ws_event("ws_message_subscribe")["body"]).action == "subscribe"
    assert parse_frame(ws_event("ws_message_publish")["body"]).action == "publish"
    # ... and the STOMP ones one STOMP frame each (content-length, where given, honest)
    (connect,) = decode_frames(ws_event("ws_message_stomp_connect")["body"])
    (send,) = decode_frames(ws_event("ws_message_stomp_send")["body"])
    assert connect.command == "CONNECT" and connect.header("accept-version") == "1.2,1.1,1.0"
    assert send.command == "SEND" and send.header("destination") == "/queue/orders"
    assert send.header("content-type") == "application/json" and send.header("receipt")
    # ... the STOMP client offering the STOMP subprotocols when it connects
    offered = ws_event("ws_connect_stomp")["headers"]["Sec-WebSocket-Protocol"]
    assert offered == "v12.stomp, v11.stomp, v10.stomp"
    assert "Sec-WebSocket-Protocol" not in ws_event("ws_connect_json")["headers"]


# ---- invoking the WebSocket function with each file ----------------------------------------


def become(function: str, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply `function`'s environment from the template and start from fresh caches, as a
    new Lambda execution environment of that function would."""
    for name, value in stack.environment(function).items():
        monkeypatch.setenv(name, value)
    runtime.reset()


@pytest.fixture
def pushed(
    function_env: dict[str, str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> RecordingPusher:
    """What the functions post to WebSocket connections, recorded instead of sent to the
    @connections API (runtime.pusher() is what Sessions push through)."""
    recorder = RecordingPusher()
    monkeypatch.setattr(runtime, "pusher", lambda: recorder)
    become("WebSocketFunction", stack, monkeypatch)
    return recorder


def invoke_ws(stem: str) -> dict[str, Any]:
    answer: dict[str, Any] = load_function("ws").lambda_handler(ws_event(stem), FakeLambdaContext())
    return answer


def test_websocket_events_in_order_get_what_the_clients_expect(pushed: RecordingPusher) -> None:
    json_client, stomp_client = connection_of("ws_connect_json"), connection_of("ws_connect_stomp")
    # When the samples are invoked in the order the two clients cause them
    answers = {stem: invoke_ws(stem) for stem in WEBSOCKET_SEQUENCE}
    # Then both connections are accepted, the STOMP client's with the newest STOMP it offered
    assert answers["ws_connect_json"] == {"statusCode": 200}
    assert answers["ws_connect_stomp"] == {
        "statusCode": 200,
        "headers": {"Sec-WebSocket-Protocol": "v12.stomp"},
    }
    assert all(answer["statusCode"] == 200 for answer in answers.values())
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
    sessions = runtime.sessions()
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


# ---- the DynamoDB stream event -------------------------------------------------------------


def test_stream_event_is_a_messages_table_insert_that_dispatch_takes(stack: Stack) -> None:
    # Given the sample stream batch and the template's event source for DispatchFunction
    (path,) = STREAM_EVENTS
    event = load(path)
    (record,) = event["Records"]
    (source,) = [s for s in stack.stream_sources() if s.function == "DispatchFunction"]
    # Then Powertools' model of a DynamoDB stream event takes it
    DynamoDBStreamModel.model_validate(event)
    # ... the template's FilterCriteria let it through (and would stop the same item's MODIFY)
    matches = record_filter(source.filter_patterns)
    assert source.filter_patterns and matches(record)
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
    assert isinstance(change["SizeBytes"], int) and change["SizeBytes"] > 0
    # ... about a message of queue `orders`, its keys those of the new item
    keys = from_stream_image(change["Keys"])
    item = from_stream_image(change["NewImage"])
    assert keys == {"pk": partition("orders"), "sk": standard_key(str(item["id"]))}
    assert {name: item[name] for name in keys} == keys
    assert item["vq"] == item["origin"] == "orders"
    # ... made when its id says (UUIDv7: milliseconds first) and visible at once
    assert int(uuid.UUID(str(item["id"]))) >> 80 == item["sent_at"] == item["visible_at"]
    assert change["ApproximateCreationDateTime"] == item["sent_at"] // 1000
    # ... its body sealed (binary attributes are base64 in stream JSON)
    assert isinstance(item["body"], bytes) and item["body"][0] == FORMAT_VERSION
    assert isinstance(item["dk"], bytes) and item["dk"]


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
    stored = dynamodb.get_item(
        TableName=settings.messages_table,
        Key=to_wire({"pk": partition("orders"), "sk": standard_key(sent.message_id)}),
    )["Item"]
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
