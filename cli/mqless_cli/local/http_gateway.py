"""An HTTP API gateway on loopback: requests in, payload-format-2.0 events to the functions.

Routes come from the template's `HttpApi` events (`Stack.http_routes()`); each request
becomes the event API Gateway would send, and the function's answer is mapped back the
way HTTP APIs map it (a dict with `statusCode`, or anything else as a 200 JSON body).
The same server answers the WebSocket API's `@connections` management calls, so the
unchanged boto3 `apigatewaymanagementapi` client reaches live sockets.

A route with a Lambda authorizer (`Stack.http_authorizers()`) runs it first, as HTTP APIs
do (`authorizers.py`): a missing identity source is a 401 without invoking it, a denial a
403, a failed or unusable answer a 500; on success the route's event carries the
authorizer's context in `requestContext.authorizer.lambda`.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.awsrequest import AWSResponse, HTTPHeaders

from mqless_cli.cfn import HttpRoute, Stack
from mqless_cli.local.authorizers import (
    InvalidResponse,
    ResponseCache,
    identity_values,
    outcome,
    verdict,
)
from mqless_cli.local.functions import FunctionError, FunctionHost, IntegrationTimedOut
from mqless_cli.local.invocations import INVOKE_PATH, InvokeApi
from mqless_cli.local.ws_connections import ConnectionGone

if TYPE_CHECKING:
    from mqless_cli.billing import Meter

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # HTTP API payload quota
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "+json",
    "+xml",
)
_CONNECTIONS = re.compile(r"^(?:/[^/@]+)?/@connections/(?P<id>[^/?]+)$")
LOCAL_BILL_PATH = "/_local/bill"
"""The live bill of `mqless dev` (JSON); this gateway's own route, absent from AWS."""
_JSON = {"content-type": "application/json"}


class Connections(Protocol):
    """The @connections operations the WebSocket gateway provides."""

    def post(self, connection_id: str, data: bytes) -> None: ...

    def get(self, connection_id: str) -> dict[str, Any]: ...

    def delete(self, connection_id: str) -> None: ...


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    specificity: tuple[int, int]


def _compile(route: HttpRoute) -> _CompiledRoute:
    params: list[str] = []
    parts: list[str] = []
    literal = 0
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        single = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            params.append(greedy.group(1))
            parts.append(f"(?P<{greedy.group(1)}>.+)")
        elif single:
            params.append(single.group(1))
            parts.append(f"(?P<{single.group(1)}>[^/]+)")
        else:
            literal += 1
            parts.append(re.escape(segment))
    pattern = re.compile("^/" + "/".join(parts) + "$")
    # API Gateway prefers the most specific route: more literal segments, fewer greedy
    return _CompiledRoute(route, pattern, tuple(params), (literal, -len(params)))


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
        self._routes = sorted(
            (_compile(r) for r in stack.http_routes()),
            key=lambda c: c.specificity,
            reverse=True,
        )
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

    # ---- routing ---------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for compiled in self._routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            found = compiled.pattern.match(path)
            if found:
                return compiled.route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def event(
        self,
        *,
        method: str,
        raw_path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        route: HttpRoute,
        params: dict[str, str],
        source_ip: str,
    ) -> dict[str, Any]:
        """The HTTP API payload-format-2.0 event for this request."""
        merged: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in headers:
            key = name.lower()
            if key == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
                continue
            merged[key] = f"{merged[key]},{value}" if key in merged else value
        query_params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_params[name] = f"{query_params[name]},{value}" if name in query_params else value
        now = datetime.now(UTC)
        content_type = merged.get("content-type", "")
        text_body: str | None = None
        encoded = False
        if body:
            if _is_text(content_type):
                try:
                    text_body = body.decode("utf-8")
                except UnicodeDecodeError:
                    text_body, encoded = base64.b64encode(body).decode(), True
            else:
                text_body, encoded = base64.b64encode(body).decode(), True
        route_key = f"{route.method} {route.path}"
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": merged,
            "requestContext": {
                "accountId": self._stack.account_id,
                "apiId": "local",
                "domainName": merged.get("host", "localhost"),
                "domainPrefix": merged.get("host", "localhost").split(".")[0],
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": merged.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": encoded,
        }
        if cookies:
            event["cookies"] = cookies
        if query_params:
            event["queryStringParameters"] = query_params
        if params:
            event["pathParameters"] = params
        if text_body is not None:
            event["body"] = text_body
        return event

    def authorize(
        self, route: HttpRoute, event: dict[str, Any], request_line: str
    ) -> _Reply | None:
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
            return _Reply(401, dict(_JSON), [], b'{"message":"Unauthorized"}')
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
                return _server_error()
            request = self._authorizer_event(event, values, resource)
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
                return _server_error()
        try:
            found = verdict(response, simple=authorizer.simple_responses, resource=resource)
        except InvalidResponse:
            return _server_error()
        if key is not None and not cached:
            self._authorizer_cache.put(key, response, authorizer.ttl_seconds)
        if not found.allowed:
            return _Reply(403, dict(_JSON), [], b'{"message":"Forbidden"}')
        event["requestContext"]["authorizer"] = {"lambda": copy.deepcopy(found.context)}
        return None

    def _authorizer_event(
        self, event: dict[str, Any], values: list[str], resource: str
    ) -> dict[str, Any]:
        """The payload-format-2.0 REQUEST event an HTTP API sends its Lambda authorizer."""
        return copy.deepcopy(
            {
                "version": "2.0",
                "type": "REQUEST",
                "routeArn": resource,
                "identitySource": values,
                "routeKey": event["routeKey"],
                "rawPath": event["rawPath"],
                "rawQueryString": event["rawQueryString"],
                "cookies": event.get("cookies", []),
                "headers": event["headers"],
                "queryStringParameters": event.get("queryStringParameters", {}),
                "requestContext": event["requestContext"],
                "pathParameters": event.get("pathParameters", {}),
                "stageVariables": {},
            }
        )

    def invoke(
        self, route: HttpRoute, event: dict[str, Any], summary: Callable[[Any], str]
    ) -> _Reply:
        try:
            result = self._functions.invoke(
                route.function, event, summary=summary, wait_s=self.integration_timeout_s
            )
        except IntegrationTimedOut:
            # what an HTTP API answers when its integration gives no answer in time
            return _Reply(503, dict(_JSON), [], b'{"message":"Service Unavailable"}')
        except FunctionError:
            return _server_error()
        return _reply_from(result)

    def connections(self) -> Connections | None:
        return self._connections

    def manage(self, method: str, connection_id: str, body: bytes) -> _Reply:
        """The @connections API: POST sends, GET describes, DELETE closes."""
        connections = self._connections
        json_type = {"content-type": "application/json"}
        if connections is None:
            return _Reply(404, json_type, [], b'{"message":"No WebSocket API is running"}')
        try:
            if method == "POST":
                connections.post(unquote(connection_id), body)
                return _Reply(200, json_type, [], b"")
            if method == "GET":
                info = connections.get(unquote(connection_id))
                return _Reply(200, json_type, [], json.dumps(_wire_connection(info)).encode())
            if method == "DELETE":
                connections.delete(unquote(connection_id))
                return _Reply(204, json_type, [], b"")
        except ConnectionGone:
            return _Reply(
                410, {**json_type, "x-amzn-errortype": "GoneException"}, [], b'{"message":null}'
            )
        except ValueError as exc:
            return _Reply(
                413,
                {**json_type, "x-amzn-errortype": "PayloadTooLargeException"},
                [],
                json.dumps({"message": str(exc)}).encode(),
            )
        return _Reply(405, json_type, [], b'{"message":"Method Not Allowed"}')

    def answer_in_process(self, request: Any, **_: Any) -> Any:
        """A botocore `before-send` handler: @connections calls to this gateway are answered
        here, without the round trip through a socket and this server's request thread.

        The client is the unchanged boto3 `apigatewaymanagementapi` client and the answer
        the one the HTTP route gives (status, headers, body), so it parses the same way
        (410 GoneException, 413 PayloadTooLargeException). Anything else: None (not ours).
        """
        parts = urlsplit(str(request.url))
        if f"{parts.scheme}://{parts.netloc}" != self.url:
            return None
        found = _CONNECTIONS.match(parts.path)
        if found is None:
            return None
        body = request.body or b""
        if not isinstance(body, bytes):
            body = body.read() if hasattr(body, "read") else str(body).encode()
        reply = self.manage(str(request.method), found.group("id"), body)
        headers = HTTPHeaders()
        for name, value in {**reply.headers, "content-length": str(len(reply.body))}.items():
            headers[name] = value
        return AWSResponse(str(request.url), reply.status, headers, _RawBody(reply.body))

    @property
    def cors(self) -> bool:
        return self._cors


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the standard library listens with a backlog of 5: a burst of clients connecting at
    # once (50 competing consumers) would be reset
    request_queue_size = 128


class _RawBody(io.BytesIO):
    """A response body as botocore reads it (`stream()`), for in-process answers."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes


def _server_error() -> _Reply:
    return _Reply(500, dict(_JSON), [], b'{"message":"Internal Server Error"}')


def _wire_connection(info: dict[str, Any]) -> dict[str, Any]:
    """GetConnection's JSON as API Gateway sends it (botocore reads these lower-case names)."""
    identity = info.get("Identity", {})
    return {
        "connectedAt": info.get("ConnectedAt"),
        "lastActiveAt": info.get("LastActiveAt"),
        "identity": {"sourceIp": identity.get("SourceIp"), "userAgent": identity.get("UserAgent")},
    }


def _is_text(content_type: str) -> bool:
    lowered = content_type.lower()
    return not lowered or any(t in lowered for t in _TEXT_TYPES)


def _reply_from(result: Any) -> _Reply:
    """Map a function's return value the way HTTP APIs do for payload format 2.0."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(name).lower()] = ",".join(str(v) for v in values)
        raw = result.get("body")
        if raw is None:
            body = b""
        elif result.get("isBase64Encoded"):
            body = base64.b64decode(str(raw))
        else:
            body = str(raw).encode()
        return _Reply(int(result["statusCode"]), headers, list(result.get("cookies") or []), body)
    if isinstance(result, str):
        return _Reply(200, {"content-type": "application/json"}, [], result.encode())
    return _Reply(200, {"content-type": "application/json"}, [], json.dumps(result).encode())


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
            self._send(
                _Reply(
                    413,
                    {"content-type": "application/json"},
                    [],
                    b'{"message":"Request Entity Too Large"}',
                )
            )
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        invoke = INVOKE_PATH.match(parts.path)
        if invoke and self.owner.invocations is not None:
            answer = self.owner.invocations.handle(
                self.command,
                unquote(invoke.group("name")),
                body,
                self.headers.get("authorization"),
            )
            self._send(_Reply(answer.status, dict(answer.headers), [], answer.body))
            return
        connections = _CONNECTIONS.match(parts.path)
        if connections:
            self._send(self.owner.manage(self.command, connections.group("id"), body))
            return
        if parts.path == LOCAL_BILL_PATH and self.owner.bill is not None:
            bill = json.dumps(self.owner.bill()).encode()
            self._send(_Reply(200, {**_JSON, "cache-control": "no-store"}, [], bill))
            return
        if self.owner.meter is not None:  # every request that reaches the API
            self.owner.meter.record_http_request(len(body))
        if (
            self.command == "OPTIONS"
            and self.owner.cors
            and self.headers.get("access-control-request-method")
        ):
            self._send(_Reply(204, self._cors_headers(preflight=True), [], b""))
            return
        found = self.owner.match(self.command, parts.path)
        if found is None:
            self._send(
                _Reply(404, {"content-type": "application/json"}, [], b'{"message":"Not Found"}')
            )
            return
        route, params = found
        event = self.owner.event(
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
        self._send(reply)

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

    def _send(self, reply: _Reply) -> None:
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
