"""An HTTP API gateway on loopback: requests in, payload-format-2.0 events to the functions.

Routes come from the template's `HttpApi` events (`Stack.http_routes()`); each request
becomes the event API Gateway would send, and the function's answer is mapped back the
way HTTP APIs map it (a dict with `statusCode`, or anything else as a 200 JSON body).
The same server answers the WebSocket API's `@connections` management calls
(`http_connections.py`), so the unchanged boto3 `apigatewaymanagementapi` client reaches
live sockets. The events and the answers' mapping are `http_payload.py`'s, route matching
`http_routes.py`'s; this module holds the authorizers' and functions' runs and the server
loop.

A route with a Lambda authorizer (`Stack.http_authorizers()`) runs it first, as HTTP APIs
do (`authorizers.py`): a missing identity source is a 401 without invoking it, a denial a
403, a failed or unusable answer a 500; on success the route's event carries the
authorizer's context in `requestContext.authorizer.lambda`.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit

from mqless_cli.cfn import HttpRoute, Stack
from mqless_cli.local.authorizers import (
    InvalidResponse,
    ResponseCache,
    identity_values,
    outcome,
    verdict,
)
from mqless_cli.local.functions import FunctionError, FunctionHost, IntegrationTimedOut
from mqless_cli.local.http_connections import (
    CONNECTIONS_PATH,
    Connections,
    answer_in_process,
    manage,
)
from mqless_cli.local.http_payload import (
    JSON_TYPE,
    Reply,
    authorizer_event,
    reply_from,
    request_event,
    server_error,
)
from mqless_cli.local.http_routes import RouteTable
from mqless_cli.local.invocations import INVOKE_PATH, InvokeApi

if TYPE_CHECKING:
    from mqless_cli.billing import Meter

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # HTTP API payload quota
LOCAL_BILL_PATH = "/_local/bill"
"""The live bill of `mqless dev` (JSON); this gateway's own route, absent from AWS."""


class HttpGateway:
    """A threaded HTTP server in front of the template's HTTP API functions."""

    def __init__(
        self,
        stack: Stack,
        functions: FunctionHost,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        connections: Connections | None = None,
        cors: bool = True,
        run_authorizers: bool = True,
        meter: Meter | None = None,
        bill: Callable[[], dict[str, Any]] | None = None,
        integration_timeout_s: float | None = None,
    ) -> None:
        """`run_authorizers=False` lets every request through as if its route were public.
        `meter` is told of every request API Gateway would bill; `bill` answers
        `GET /_local/bill`. `integration_timeout_s`: how long a route waits for its function
        before answering 503 (an HTTP API's integration limit; `--realism`)."""
        self.meter = meter
        self.bill = bill
        self.integration_timeout_s = integration_timeout_s
        self._stack = stack
        self.account_id = stack.account_id
        """The account the events name (`requestContext.accountId`)."""
        self._functions = functions
        self._connections = connections
        self.invocations: InvokeApi | None = None
        """Lambda's Invoke API for `mqless invoke` (`local/invocations.py`), once set."""
        self._cors = cors
        self._authorizers = stack.http_authorizers() if run_authorizers else {}
        for authorizer in set(self._authorizers.values()):
            if authorizer.payload_format_version != "2.0":
                raise ValueError(
                    f"authorizer {authorizer.name}: only payload format 2.0 authorizers run "
                    f"locally, not {authorizer.payload_format_version}"
                )
        self._authorizer_cache = ResponseCache()
        self.routes = RouteTable(stack.http_routes())
        gateway = self

        class Handler(_RequestHandler):
            owner = gateway

        self._server = _Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def set_connections(self, connections: Connections) -> None:
        self._connections = connections

    def start(self) -> None:
        self._thread = threading.Thread(
            # stop() waits for the loop to notice: look every 50 ms, not every half second
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="http-gateway",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for a serve_forever() that ran
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---- a route's run ----------------------------------------------------------------------

    def authorize(self, route: HttpRoute, event: dict[str, Any], request_line: str) -> Reply | None:
        """Run the route's authorizer for `event`: None to go on (the event now carries the
        authorizer's context), else the answer API Gateway gives instead (401, 403, 500)."""
        authorizer = self._authorizers.get(route)
        if authorizer is None:
            return None
        values = identity_values(
            authorizer.identity_sources,
            headers=event["headers"],
            query=event.get("queryStringParameters", {}),
            context=event["requestContext"],
        )
        if values is None:
            return Reply(401, dict(JSON_TYPE), [], b'{"message":"Unauthorized"}')
        context = event["requestContext"]
        resource = (
            f"arn:{self._stack.ref('AWS::Partition')}:execute-api:{self._stack.region}:"
            f"{self._stack.account_id}:{context['apiId']}/{context['stage']}/"
            f"{context['http']['method']}{event['rawPath']}"
        )
        key = ResponseCache.key(authorizer, values)
        cached, response = self._authorizer_cache.get(key) if key is not None else (False, None)
        if not cached:
            if authorizer.function not in self._functions.specs:
                return server_error()
            request = authorizer_event(event, values, resource)
            simple = authorizer.simple_responses
            try:
                response = self._functions.invoke(
                    str(authorizer.function),
                    request,
                    summary=lambda r: (
                        f"authorize {request_line} -> "
                        f"{outcome(r, simple=simple, resource=resource)}"
                    ),
                )
            except FunctionError:
                return server_error()
        try:
            found = verdict(response, simple=authorizer.simple_responses, resource=resource)
        except InvalidResponse:
            return server_error()
        if key is not None and not cached:
            self._authorizer_cache.put(key, response, authorizer.ttl_seconds)
        if not found.allowed:
            return Reply(403, dict(JSON_TYPE), [], b'{"message":"Forbidden"}')
        event["requestContext"]["authorizer"] = {"lambda": copy.deepcopy(found.context)}
        return None

    def invoke(
        self, route: HttpRoute, event: dict[str, Any], summary: Callable[[Any], str]
    ) -> Reply:
        try:
            result = self._functions.invoke(
                route.function, event, summary=summary, wait_s=self.integration_timeout_s
            )
        except IntegrationTimedOut:
            # what an HTTP API answers when its integration gives no answer in time
            return Reply(503, dict(JSON_TYPE), [], b'{"message":"Service Unavailable"}')
        except FunctionError:
            return server_error()
        return reply_from(result)

    def connections(self) -> Connections | None:
        return self._connections

    def answer_in_process(self, request: Any, **_: Any) -> Any:
        """A botocore `before-send` handler: @connections calls to this gateway are answered
        here, without the round trip through a socket and this server's request thread
        (`http_connections.answer_in_process`). Anything else: None (not ours)."""
        return answer_in_process(request, self.url, self._connections)

    @property
    def cors(self) -> bool:
        return self._cors


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the standard library listens with a backlog of 5: a burst of clients connecting at
    # once (50 competing consumers) would be reset
    request_queue_size = 128


class _RequestHandler(BaseHTTPRequestHandler):
    owner: HttpGateway
    protocol_version = "HTTP/1.1"
    server_version = "mqless-dev"
    # headers and body go out as two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms a response on Linux) on a keep-alive connection
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # the console reports invocations; no per-request access log

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) matches no route: API Gateway's 404, not the
        # standard library's 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(Reply(413, dict(JSON_TYPE), [], b'{"message":"Request Entity Too Large"}'))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        reply = self._local_answer(parts.path, body)
        if reply is None:
            if self.owner.meter is not None:  # every request that reaches the API
                self.owner.meter.record_http_request(len(body))
            reply = self._api_answer(parts, body)
        self._send(reply)

    def _local_answer(self, path: str, body: bytes) -> Reply | None:
        """The answer of a path of this gateway's own (Lambda's Invoke API, @connections,
        the bill); None for the API's paths."""
        invoke = INVOKE_PATH.match(path)
        if invoke and self.owner.invocations is not None:
            answer = self.owner.invocations.handle(
                self.command,
                unquote(invoke.group("name")),
                body,
                self.headers.get("authorization"),
            )
            return Reply(answer.status, dict(answer.headers), [], answer.body)
        connections = CONNECTIONS_PATH.match(path)
        if connections:
            return manage(self.owner.connections(), self.command, connections.group("id"), body)
        if path == LOCAL_BILL_PATH and self.owner.bill is not None:
            bill = json.dumps(self.owner.bill()).encode()
            return Reply(200, {**JSON_TYPE, "cache-control": "no-store"}, [], bill)
        return None

    def _api_answer(self, parts: SplitResult, body: bytes) -> Reply:
        """The API's answer: a CORS preflight's, a 404, or the route's (authorizer first)."""
        if (
            self.command == "OPTIONS"
            and self.owner.cors
            and self.headers.get("access-control-request-method")
        ):
            return Reply(204, self._cors_headers(preflight=True), [], b"")
        found = self.owner.routes.match(self.command, parts.path)
        if found is None:
            return Reply(404, dict(JSON_TYPE), [], b'{"message":"Not Found"}')
        route, params = found
        event = request_event(
            account_id=self.owner.account_id,
            method=self.command,
            raw_path=parts.path,
            query=parts.query,
            headers=list(self.headers.items()),
            body=body,
            route=route,
            params=params,
            source_ip=self.client_address[0],
        )
        request_line = f"{self.command} {parts.path}"

        def summary(result: Any) -> str:
            status = result.get("statusCode", 200) if isinstance(result, dict) else 200
            return f"{request_line} -> {status if result is not None else 500}"

        reply = self.owner.authorize(route, event, request_line)
        if reply is None:
            reply = self.owner.invoke(route, event, summary)
        if self.owner.cors:
            reply.headers.update(self._cors_headers(preflight=False))
        return reply

    def _cors_headers(self, *, preflight: bool) -> dict[str, str]:
        headers = {"access-control-allow-origin": self.headers.get("origin") or "*"}
        if preflight:
            headers.update(
                {
                    "access-control-allow-methods": "GET,POST,PUT,DELETE,OPTIONS",
                    "access-control-allow-headers": self.headers.get(
                        "access-control-request-headers", "content-type,authorization"
                    ),
                    "access-control-max-age": "600",
                }
            )
        return headers

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(
                reply.status,
                HTTPStatus(reply.status).phrase
                if reply.status in HTTPStatus._value2member_map_
                else None,
            )
            for name, value in reply.headers.items():
                self.send_header(name, value)
            for cookie in reply.cookies:
                self.send_header("set-cookie", cookie)
            self.send_header("content-length", str(len(reply.body)))
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            self.end_headers()
            if self.command != "HEAD" and reply.body:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
