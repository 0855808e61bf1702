"""The local WebSocket gateway behaves like API Gateway's WebSocket APIs.

In-process: moto (LocalCloud) holds the fixture's events table, the fixture's functions run
through FunctionHost, and the HTTP gateway serves the @connections API so that the fixture's
`$default` function reaches the socket with the unchanged boto3 `apigatewaymanagementapi`
client. Real `websockets` clients drive it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from mqless_cli.cfn import Stack, load_template
from mqless_cli.local.cloud import LocalCloud
from mqless_cli.local.functions import FunctionHost, LambdaLimits
from mqless_cli.local.http_gateway import HttpGateway
from mqless_cli.local.ws_connections import ConnectionGone
from mqless_cli.local.ws_gateway import WebSocketGateway
from mqless_cli.local.ws_limits import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from mqless_cli.local.ws_routes import evaluate_selection_expression, select_route

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "e2e" / "fixtures" / "ws_app"
TEMPLATE = APP / "template.yaml"
USER_AGENT = "mqless-test/1.0"
TIMEOUT = 5.0

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    """Poll until `probe` returns something, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@dataclass
class Local:
    """The running pieces: moto, the function host, the WebSocket and HTTP gateways."""

    cloud: LocalCloud
    functions: FunctionHost
    gateway: WebSocketGateway
    http: HttpGateway

    def open(self, query: str = "", **kwargs: Any) -> ClientConnection:
        return open_client(self.gateway, query, **kwargs)

    def event(self, connection_id: str, event_type: str) -> dict[str, Any] | None:
        """The CONNECT/DISCONNECT event the fixture's functions recorded, if any yet."""
        item = self.cloud.client("dynamodb").get_item(
            TableName=self.cloud.stack.resources["EventsTable"],
            Key={"connectionId": {"S": connection_id}, "eventType": {"S": event_type}},
            ConsistentRead=True,
        )
        if "Item" not in item:
            return None
        event: dict[str, Any] = json.loads(item["Item"]["event"]["S"])
        return event

    def management(self) -> Any:
        """The boto3 @connections client a function would use."""
        return boto3.client(
            "apigatewaymanagementapi", endpoint_url=os.environ["CONNECTIONS_ENDPOINT"]
        )


def open_client(gateway: WebSocketGateway, query: str = "", **kwargs: Any) -> ClientConnection:
    client: ClientConnection = connect(
        f"{gateway.url}/{gateway.stage}{query}",
        user_agent_header=USER_AGENT,
        open_timeout=TIMEOUT,
        **kwargs,
    )
    return client


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    saved = dict(os.environ)
    cloud = LocalCloud.start(TEMPLATE)
    functions = FunctionHost(cloud.stack, APP)
    gateway = WebSocketGateway(cloud.stack, functions, port=0)
    http = HttpGateway(cloud.stack, functions, port=0, connections=gateway)
    try:
        os.environ.update(functions.environment())
        # what `mqless dev` does: API Gateway's management endpoint becomes the local one
        os.environ["CONNECTIONS_ENDPOINT"] = f"{http.url}/{gateway.stage}"
        gateway.start()
        http.start()
        yield Local(cloud, functions, gateway, http)
    finally:
        gateway.stop()
        http.stop()
        cloud.stop()
        os.environ.clear()
        os.environ.update(saved)


def connection_id(client: ClientConnection) -> str:
    """Ask the two-way `echo` route who we are."""
    client.send(json.dumps({"action": "echo", "data": "who"}))
    reply = json.loads(client.recv(timeout=TIMEOUT))
    assert isinstance(reply["connectionId"], str)
    return reply["connectionId"]


def close_code(client: ClientConnection) -> ConnectionClosed:
    """Wait for the server to close the connection; return how it closed."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=TIMEOUT)
    return closed.value


def send_until_closed(client: ClientConnection, message: Any) -> ConnectionClosed:
    """Send what the server refuses; return how it closed (maybe while still sending)."""
    try:
        client.send(message)
    except ConnectionClosed as closed:
        return closed
    return close_code(client)


# --- route selection (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "body", "expected"),
    [
        ("$request.body.action", '{"action": "echo"}', "echo"),
        ("${request.body.action}", '{"action": "echo"}', "echo"),
        ("$request.body.meta.kind", '{"meta": {"kind": "stomp"}}', "stomp"),
        ("$request.body.items[1].t", '{"items": [{"t": "a"}, {"t": "b"}]}', "b"),
        ("${request.body.version}-beta", '{"version": 2}', "2-beta"),
        ("$request.body.flag", '{"flag": true}', "true"),
        ("$request.body.action", '{"other": 1}', None),
        ("$request.body.action", "not json", None),
        ("$request.body.action", "[1, 2]", None),
        ("\\$default", "anything", "$default"),
        # JSON Python's parser cannot hold (RecursionError; over 4,300 digits, ValueError)
        ("$request.body.action", "[" * 100_000, None),
        ("$request.body.action", '{"action": ' + "[" * 5_000 + "}", None),
        ("$request.body.action", '{"action": ' + "9" * 5_000 + "}", None),
    ],
)
def test_selection_expressions_evaluate_against_the_json_body(
    expression: str, body: str, expected: str | None
) -> None:
    # Given a route selection expression and a message
    # When it is evaluated
    # Then it gives the stringified value at that JSON path, or nothing
    assert evaluate_selection_expression(expression, body) == expected


def test_unmatched_messages_go_to_default_and_without_default_to_nothing() -> None:
    # Given routes with and without a $default route
    with_default = ["$connect", "$default", "echo"]
    without_default = ["$connect", "echo"]
    expression = "$request.body.action"
    # When messages are routed
    # Then a matching key wins, anything else takes $default if there is one
    assert select_route(expression, '{"action": "echo"}', with_default) == "echo"
    assert select_route(expression, '{"action": "nope"}', with_default) == "$default"
    assert select_route(expression, "plain text", with_default) == "$default"
    assert select_route(expression, '{"action": "$connect"}', with_default) == "$default"
    assert select_route(expression, '{"action": "nope"}', without_default) is None


# --- $connect --------------------------------------------------------------------------------


def test_connect_is_accepted_and_the_function_gets_api_gateways_connect_event(
    local: Local,
) -> None:
    # Given a client connecting with a query string and subprotocols
    with local.open("?a=1&a=2&b=", subprotocols=["v12.stomp"]) as client:
        me = connection_id(client)
        # When the $connect event recorded by the function is read
        event = wait_for(lambda: local.event(me, "CONNECT"))
    # Then it has the shape API Gateway gives it
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["connectionId"] == me
    assert context["apiId"] == local.gateway.api.api_id
    assert context["stage"] == "prod"
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": USER_AGENT}
    assert isinstance(context["connectedAt"], int)
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["requestId"] == context["extendedRequestId"]
    assert len(me) == 16 and me.endswith("=")
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["headers"]["Sec-WebSocket-Protocol"] == "v12.stomp"
    assert event["multiValueHeaders"]["User-Agent"] == [USER_AGENT]
    assert event["isBase64Encoded"] is False


def test_connect_is_refused_with_the_functions_status(local: Local) -> None:
    # Given a $connect function that answers 403 to ?deny=1
    # When a client connects with it
    with pytest.raises(InvalidStatus) as refused:
        local.open("?deny=1")
    # Then the upgrade is refused with that status
    assert refused.value.response.status_code == 403


def test_a_crashing_connect_function_refuses_the_upgrade_with_502(local: Local) -> None:
    # Given a $connect function that raises on ?crash=1
    # When a client connects with it
    with pytest.raises(InvalidStatus) as refused:
        local.open("?crash=1")
    # Then the upgrade is refused as API Gateway refuses it (502)
    assert refused.value.response.status_code == 502


def test_the_subprotocol_chosen_by_connect_is_echoed(local: Local) -> None:
    # Given a client offering several STOMP versions
    # When it connects
    with local.open(subprotocols=["v10.stomp", "v11.stomp", "v12.stomp"]) as client:
        # Then the one $connect returned is the connection's subprotocol
        assert client.subprotocol == "v12.stomp"


def test_without_a_subprotocol_from_connect_the_handshake_completes_without_one(
    local: Local,
) -> None:
    # Given a client offering only a subprotocol the $connect function does not pick
    # When it connects
    with local.open(subprotocols=["chat"]) as client:
        # Then the connection opens, with no subprotocol
        assert client.subprotocol is None
        assert connection_id(client)


# --- messages --------------------------------------------------------------------------------


def test_non_json_and_unknown_actions_reach_default_with_a_message_event(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        me = connection_id(client)
        # When it sends text that is not JSON, and JSON with an unknown action
        client.send("hello")
        plain = json.loads(client.recv(timeout=TIMEOUT))
        client.send(json.dumps({"action": "nope"}))
        unknown = json.loads(client.recv(timeout=TIMEOUT))
    # Then $default got both (and answered through @connections)
    assert plain["body"] == "hello"
    assert json.loads(unknown["body"]) == {"action": "nope"}
    for reply in (plain, unknown):
        context = reply["requestContext"]
        assert context["routeKey"] == "$default"
        assert context["eventType"] == "MESSAGE"
        assert context["connectionId"] == me
        assert isinstance(context["messageId"], str)
    assert plain["requestContext"]["messageId"] != unknown["requestContext"]["messageId"]


def test_json_nested_too_deep_for_the_parser_reaches_default_and_the_socket_stays_open(
    local: Local,
) -> None:
    # Given a connected client
    with local.open() as client:
        # When it sends JSON nested deeper than Python's parser goes (within the 32 KB frame)
        nested = "[" * 30_000
        client.send(nested)
        reply = json.loads(client.recv(timeout=TIMEOUT))
        # Then it was routed like any message that selects no route: to $default
        assert reply["body"] == nested
        assert reply["requestContext"]["routeKey"] == "$default"
        # and the connection is still open (no 1011)
        client.send("after")
        assert json.loads(client.recv(timeout=TIMEOUT))["body"] == "after"


def test_a_two_way_route_sends_the_functions_body_back(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        # When it sends to the `echo` route, which has a route response
        client.send(json.dumps({"action": "echo", "data": {"n": 1}}))
        reply = json.loads(client.recv(timeout=TIMEOUT))
    # Then the function's body comes back as a frame
    assert reply["echo"] == {"n": 1}
    assert reply["routeKey"] == "echo"


def test_one_connections_messages_are_handled_in_order(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        # When it sends five messages at once
        for n in range(5):
            client.send(f"m{n}")
        # Then the replies come back in the order sent
        bodies = [json.loads(client.recv(timeout=TIMEOUT))["body"] for _ in range(5)]
    assert bodies == [f"m{n}" for n in range(5)]


def test_a_failing_function_gets_the_client_an_internal_server_error_frame(
    local: Local,
) -> None:
    # Given a $default function that raises on "crash"
    with local.open() as client:
        me = connection_id(client)
        # When the client sends it
        client.send("crash")
        frame = client.recv(timeout=TIMEOUT)
        # Then it gets API Gateway's error frame, and the connection stays open
        assert isinstance(frame, str)
        error = json.loads(frame)
        assert frame.startswith('{"message": "Internal server error", "connectionId":"')
        assert error["connectionId"] == me
        assert isinstance(error["requestId"], str)
        assert connection_id(client) == me


def test_a_message_lambda_throttles_gets_the_client_an_internal_server_error_frame(
    local: Local,
) -> None:
    # Given an open connection, and Lambda's concurrency cap (`--realism`) used up by an
    # invocation running elsewhere in the account
    with local.open() as client:
        me = connection_id(client)
        local.functions.limits = LambdaLimits(concurrency=1)
        with local.functions._lock:
            local.functions._running += 1
        try:
            # When the client sends a message
            client.send("hello")
            frame = client.recv(timeout=TIMEOUT)
        finally:
            with local.functions._lock:
                local.functions._running -= 1
            local.functions.limits = LambdaLimits()
        # Then it gets the error frame API Gateway sends when its integration fails, and the
        # connection stays open
        assert isinstance(frame, str)
        assert frame.startswith('{"message": "Internal server error", "connectionId":"')
        assert connection_id(client) == me


def test_a_message_outlasting_the_integration_limit_gets_an_endpoint_timed_out_frame(
    local: Local,
) -> None:
    # Given an open connection, and routes that wait 0.3 s for their function (`--realism`;
    # 29 s on AWS)
    with local.open() as client:
        me = connection_id(client)
        local.gateway.integration_timeout_s = 0.3
        try:
            # When the client sends a message whose function takes 1 s
            client.send("sleep 1")
            frame = client.recv(timeout=TIMEOUT)
            # Then it gets the frame API Gateway sends when an integration times out, and the
            # connection stays open
            assert isinstance(frame, str)
            assert frame.startswith('{"message": "Endpoint request timed out", "connectionId":"')
            assert json.loads(frame)["connectionId"] == me
            assert connection_id(client) == me
            # and the function ran on: what it posts still arrives, as Lambda's would
            late = json.loads(client.recv(timeout=TIMEOUT))
            assert late["body"] == "sleep 1"
        finally:
            local.gateway.integration_timeout_s = None


def test_without_a_default_route_unmatched_messages_get_a_forbidden_frame(local: Local) -> None:
    # Given the same API without its $default route
    template = load_template(TEMPLATE)
    resources = template["Resources"]
    assert isinstance(resources, dict)
    del resources["DefaultRoute"]
    stack = Stack(template)
    gateway = WebSocketGateway(stack, FunctionHost(stack, APP), port=0)
    gateway.start()
    try:
        with open_client(gateway) as client:
            me = connection_id(client)
            # When a message matches no route
            client.send("hello")
            frame = client.recv(timeout=TIMEOUT)
            # Then API Gateway's Forbidden frame comes back, and routed messages still work
            assert isinstance(frame, str)
            assert frame.startswith('{"message": "Forbidden", "connectionId":"')
            assert json.loads(frame)["connectionId"] == me
            assert connection_id(client) == me
    finally:
        gateway.stop()


def test_a_binary_frame_closes_the_connection_with_1003(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        me = connection_id(client)
        # When it sends a binary frame
        closed = send_until_closed(client, b"\x00\x01\x02")
    # Then the gateway closes with 1003, and $disconnect hears it
    assert closed.rcvd is not None and closed.rcvd.code == 1003
    disconnect = wait_for(lambda: local.event(me, "DISCONNECT"))
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1003


def test_a_frame_over_32_kb_closes_the_connection_with_1009(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        # When it sends one frame just over the frame limit
        closed = send_until_closed(client, "x" * (MAX_FRAME_BYTES + 1))
    # Then the gateway closes with 1009
    assert closed.rcvd is not None and closed.rcvd.code == 1009


def test_a_message_over_128_kb_closes_the_connection_with_1009(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        # When it sends a message over the limit, in frames each within the frame limit
        closed = send_until_closed(client, ["x" * MAX_FRAME_BYTES] * 4 + ["x"])
    # Then the gateway closes with 1009
    assert closed.rcvd is not None and closed.rcvd.code == 1009


def test_fragmented_messages_within_the_limits_are_reassembled_both_ways(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        # When it sends 96 KB in three 32 KB frames
        body = "y" * (3 * MAX_FRAME_BYTES)
        client.send([body[i : i + MAX_FRAME_BYTES] for i in range(0, len(body), MAX_FRAME_BYTES)])
        # Then $default gets the whole message, and its over-32 KB answer arrives whole
        reply = json.loads(client.recv(timeout=TIMEOUT))
    assert reply["body"] == body


def test_client_close_runs_disconnect_with_the_close_status(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        me = connection_id(client)
        # When it closes normally
        client.close()
    # Then $disconnect runs with API Gateway's status and reason, and the id is gone
    event = wait_for(lambda: local.event(me, "DISCONNECT"))
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1000
    assert context["disconnectReason"] == "Connection Closed Normally"
    assert event["headers"]["Host"].startswith("127.0.0.1:")
    with pytest.raises(ConnectionGone):
        local.gateway.post(me, b"late")


# --- the @connections API --------------------------------------------------------------------


def test_post_sends_a_text_frame_and_get_describes_the_connection(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        me = connection_id(client)
        # When the backend posts to it and asks about it
        local.gateway.post(me, "héllo".encode())
        received = client.recv(timeout=TIMEOUT)
        info = local.gateway.get(me)
    # Then the client got the text, and the description has its identity and times
    assert received == "héllo"
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": USER_AGENT}
    connected = datetime.fromisoformat(info["ConnectedAt"])
    active = datetime.fromisoformat(info["LastActiveAt"])
    assert connected <= active


def test_post_over_128_kb_is_refused(local: Local) -> None:
    # Given a connected client
    with local.open() as client:
        me = connection_id(client)
        # When the backend posts more than the message limit
        # Then the post is refused (the HTTP side answers 413 PayloadTooLargeException)
        with pytest.raises(ValueError, match="too long"):
            local.gateway.post(me, b"z" * (MAX_MESSAGE_BYTES + 1))


def test_unknown_connections_are_gone(local: Local) -> None:
    # Given an id that never connected
    # When @connections posts to it, gets it, or deletes it
    # Then every @connections operation says it is gone
    with pytest.raises(ConnectionGone):
        local.gateway.post("AAAAAAAAAAAAAAA=", b"x")
    with pytest.raises(ConnectionGone):
        local.gateway.get("AAAAAAAAAAAAAAA=")
    with pytest.raises(ConnectionGone):
        local.gateway.delete("AAAAAAAAAAAAAAA=")


def test_delete_closes_the_socket_then_disconnect_runs_and_the_connection_is_gone(
    local: Local,
) -> None:
    # Given a connected client
    with local.open() as client:
        me = connection_id(client)
        # When the backend deletes the connection
        local.gateway.delete(me)
        closed = close_code(client)
    # Then the client is closed normally and $disconnect reports it as API Gateway does
    assert closed.rcvd is not None and closed.rcvd.code == 1000
    event = wait_for(lambda: local.event(me, "DISCONNECT"))
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert event["requestContext"]["disconnectReason"] == "Connection Closed Normally"
    # And from then on the connection is gone, through boto3 (410 GoneException) too
    with pytest.raises(ConnectionGone):
        local.gateway.post(me, b"x")
    with pytest.raises(ConnectionGone):
        local.gateway.get(me)
    with pytest.raises(ConnectionGone):
        local.gateway.delete(me)
    with pytest.raises(ClientError) as gone:
        local.management().post_to_connection(ConnectionId=me, Data=b"x")
    assert gone.value.response["Error"]["Code"] == "GoneException"


def test_the_functions_connections_calls_are_answered_in_process(local: Local) -> None:
    # Given an HTTP gateway that listens but never serves a request, answering boto3's
    # @connections calls in-process (as mqless dev does for its functions)
    idle = HttpGateway(local.cloud.stack, local.functions, port=0, connections=local.gateway)
    session = boto3.Session(region_name="us-east-1")
    session.events.register("before-send.apigatewaymanagementapi", idle.answer_in_process)
    management = session.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{idle.url}/{local.gateway.stage}",
        config=Config(read_timeout=2, retries={"max_attempts": 1}),
    )
    try:
        with local.open() as client:
            me = connection_id(client)
            # When a function posts to a connection, asks about it, and posts too much
            management.post_to_connection(ConnectionId=me, Data="héllo".encode())
            received = client.recv(timeout=TIMEOUT)
            info = management.get_connection(ConnectionId=me)
            with pytest.raises(ClientError) as too_big:
                management.post_to_connection(ConnectionId=me, Data=b"z" * (MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ClientError) as gone:
            management.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x")
    finally:
        idle.stop()
    # Then each gets the answer the HTTP route gives, without the server's help
    assert received == "héllo"
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": USER_AGENT}
    assert too_big.value.response["Error"]["Code"] == "PayloadTooLargeException"
    assert gone.value.response["Error"]["Code"] == "GoneException"


def test_clients_of_the_embedded_aws_send_unsigned_requests(local: Local) -> None:
    # Given a client made while mqless dev's embedded AWS runs (moto checks no signature)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    sent: list[Any] = []
    dynamodb.meta.events.register(
        "before-send.dynamodb", lambda request, **_: sent.append(request.headers)
    )
    # When it calls DynamoDB
    dynamodb.list_tables()
    # Then the request went without SigV4 (signing is a fifth of an in-process call)
    assert sent and "Authorization" not in sent[0]


def test_an_idle_http_gateway_stops_at_once(local: Local) -> None:
    # Given an HTTP gateway serving, idle
    gateway = HttpGateway(local.cloud.stack, local.functions, port=0)
    gateway.start()
    time.sleep(0.1)
    # When it is stopped (Ctrl-C on mqless dev; every end-to-end test's server)
    started = time.monotonic()
    gateway.stop()
    # Then it does not sit out the rest of a half-second poll first
    assert time.monotonic() - started < 0.25


# --- timeouts and shutdown -------------------------------------------------------------------


def test_idle_connections_are_closed_with_1001_and_stop_disconnects_the_rest(
    local: Local,
) -> None:
    # Given a gateway with a very short idle timeout
    stack = local.cloud.stack
    gateway = WebSocketGateway(stack, FunctionHost(stack, APP), port=0, idle_timeout=0.3)
    gateway.start()
    stopped = False
    try:
        with open_client(gateway) as idle:
            idle_id = connection_id(idle)
            # When the client stays silent
            closed = close_code(idle)
        # Then it is closed with 1001 "Going away", and $disconnect hears it
        assert closed.rcvd is not None and closed.rcvd.code == 1001
        event = wait_for(lambda: local.event(idle_id, "DISCONNECT"))
        assert event["requestContext"]["disconnectReason"] == "Going away"
        # And when the gateway stops with a connection open, its $disconnect runs too
        with open_client(gateway) as busy:
            busy_id = connection_id(busy)
            gateway.stop()
            stopped = True
            closed = close_code(busy)
        assert closed.rcvd is not None and closed.rcvd.code == 1001
        event = wait_for(lambda: local.event(busy_id, "DISCONNECT"))
        assert event["requestContext"]["disconnectStatusCode"] == 1001
    finally:
        if not stopped:
            gateway.stop()
