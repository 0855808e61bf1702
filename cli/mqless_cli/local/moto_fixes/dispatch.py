"""moto's handling of one request around the backend's work, made cheaper: the werkzeug
request built without werkzeug's test builder (`requests_normalized_directly`), DynamoDB
request bodies read without a shape walk per AttributeValue
(`request_attribute_values_read_directly`), JSON responses not searched for an XML request
id (`request_ids_not_searched_in_json`), the date header formatted once a second
(`response_dates_formatted_once_a_second`), an existing backend found without moto's lock
(`backends_found_without_the_lock`), an action's method name worked out once
(`action_names_converted_once`); a request's handler is found once per URL in `routing`
(`requests_routed_once`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from io import BytesIO
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched
from mqless_cli.local.moto_fixes.serialization import written_as_is


def _plain_map(value: Any) -> bool:
    """Whether a JSON object of AttributeValues (an item, a key, expression values) holds
    only values that moto's request parser would hand back as they are."""
    return type(value) is dict and all(
        type(k) is str and written_as_is(v) for k, v in value.items()
    )


@contextmanager
def request_attribute_values_read_directly() -> Iterator[None]:
    """Read a DynamoDB request's AttributeValues without walking their shape.

    Upstream behaviour: moto parses every JSON request body (already decoded by
    `json.loads`) through the operation's input shape. An AttributeValue is a structure of
    ten members: each is looked up in the value, and the one present parsed by its own shape
    (lists and maps element by element), into new dicts and lists. For text, numbers,
    booleans and null, and lists and maps of those, what comes out is the decoded JSON value
    itself (dicts and lists that nothing else holds): here such a value, or a map of them
    (an item, a key, ExpressionAttributeValues), is returned as it was decoded. Binary
    (base64-decoded by the parser), and anything unusual, is parsed as before; so is every
    value when the parser builds another kind of map than `dict`, or reads another protocol
    (REST JSON parses text and booleans its own way).
    """
    from moto.core.parse import BaseJSONParser, JSONParser

    parse_structure: Any = BaseJSONParser._parse_structure
    parse_map: Any = BaseJSONParser._parse_map

    def structure(self: Any, shape: Any, value: Any) -> Any:
        if (
            shape.name == "AttributeValue"
            and type(self) is JSONParser
            and self.MAP_TYPE is dict
            and written_as_is(value)
        ):
            return value
        return parse_structure(self, shape, value)

    def map_of(self: Any, shape: Any, value: Any) -> Any:
        if (
            shape.value.name == "AttributeValue"
            and shape.key.type_name == "string"
            and type(self) is JSONParser
            and self.MAP_TYPE is dict
            and _plain_map(value)
        ):
            return value
        return parse_map(self, shape, value)

    with ExitStack() as stack:
        stack.enter_context(patched(BaseJSONParser, "_parse_structure", structure))
        stack.enter_context(patched(BaseJSONParser, "_parse_map", map_of))
        yield


@contextmanager
def request_ids_not_searched_in_json() -> Iterator[None]:
    """Give a response its request id without searching a body that has no XML request id.

    Upstream behaviour: `BaseResponse._enrich_response` draws a request id for the
    `x-amzn-requestid` header, then writes it into the body with a regular expression that
    looks for `<RequestId>...</RequestId>` by trying a lookbehind at every character of the
    body: for a DynamoDB Query answer of a few kilobytes of JSON, about a percent of the
    request. A body without the text `<RequestId>` cannot match, so it is left as it is
    without the search (and a body that is not text, which the expression cannot search,
    is left as it is, as moto leaves it); any other body goes through moto's own code.
    """
    from moto.core import responses
    from moto.utilities.aws_headers import gen_amzn_requestid_long

    original = responses.BaseResponse._enrich_response

    def enrich(headers: dict[str, Any], body: Any) -> tuple[dict[str, Any], Any]:
        if isinstance(body, str) and (type(body) is not str or "<RequestId>" in body):
            return original(headers, body)
        if "status" in headers:
            headers["status"] = str(headers["status"])
        gen_amzn_requestid_long(headers)
        return headers, body

    with patched(responses.BaseResponse, "_enrich_response", staticmethod(enrich)):
        yield


PLAIN_ORIGIN = re.compile(
    r"(https?)://([a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*)(?::([1-9][0-9]{0,3}))?/\Z"
)
"""A URL of a JSON-protocol request (every DynamoDB, Streams and KMS one): scheme, host of
lower-case labels, an optional port below 10000, path `/`, nothing else (anything else is
built by werkzeug, which lower-cases, punycodes and checks what this leaves out)."""


def _environ(
    method: str,
    scheme: str,
    host: str,
    port: str | None,
    headers: list[tuple[str, str]],
    data: bytes,
) -> dict[str, Any] | None:
    """The WSGI environ werkzeug's `EnvironBuilder` builds for a request with a non-empty body
    to `scheme://host[:port]/` (None for a header werkzeug would refuse: moto's own code
    raises its error)."""
    netloc = f"{host}:{port}" if port else host
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "REQUEST_URI": "/",
        "RAW_URI": "/",
        "SERVER_NAME": host,
        "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
        "HTTP_HOST": netloc,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": BytesIO(data),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    content_type = None
    combined: dict[str, list[str]] = {}
    for key, value in headers:
        if "\r" in value or "\n" in value:
            return None
        lowered = key.lower()
        if lowered == "content-type":
            if content_type is None:
                content_type = value
        elif lowered != "content-length":
            combined.setdefault(f"HTTP_{key.upper().replace('-', '_')}", []).append(value)
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    environ["CONTENT_LENGTH"] = str(len(data))
    for name, values in combined.items():
        environ[name] = ", ".join(values)
    return environ


def environ_of(
    method: str, url: str, headers: list[tuple[str, str]], data: bytes
) -> dict[str, Any] | None:
    """The WSGI environ werkzeug builds for a request with a non-empty body to a URL of
    `PLAIN_ORIGIN` (None for another URL, or a header werkzeug would refuse)."""
    origin = PLAIN_ORIGIN.match(url)
    if origin is None:
        return None
    scheme, host, port = origin.groups()
    return _environ(method, scheme, host, port, headers, data)


_URL_ROOTS: dict[tuple[Any, ...], str] = {}
"""werkzeug's `url_root` of a request, by everything it is computed from (a handful of hosts)."""


def _keep_url_root(request: Any, cls: Any, environ: dict[str, Any]) -> None:
    """Give `request` the `url_root` werkzeug computed for an earlier request of the same
    scheme, host and server (it reads nothing else; trusted hosts, if set, are checked)."""
    if cls.trusted_hosts is not None:
        return
    key = (
        cls,
        environ["wsgi.url_scheme"],
        environ.get("HTTP_HOST"),
        environ["SERVER_NAME"],
        environ["SERVER_PORT"],
        environ["SCRIPT_NAME"],
    )
    root = _URL_ROOTS.get(key)
    if root is None:
        if len(_URL_ROOTS) > 64:
            _URL_ROOTS.clear()
        _URL_ROOTS[key] = request.url_root  # computed by werkzeug, kept on the request
    else:
        request.__dict__["url_root"] = root  # where werkzeug's cached_property keeps it


_JSON_TYPES = frozenset({"application/x-amz-json-1.0", "application/x-amz-json-1.1"})
"""Content types of JSON-protocol requests: not form data, which werkzeug would parse."""


def _read_as_data(request: Any) -> None:
    """Read a JSON-protocol request's body as werkzeug's `data` reads it: no form data for
    such a content type (werkzeug's form parser hands the stream back, with an empty form and
    no files), then the whole stream, kept. A compressed body is left to moto (it swaps the
    stream for a decompressing one before reading)."""
    environ = request.environ
    if environ.get("CONTENT_TYPE") not in _JSON_TYPES or "HTTP_CONTENT_ENCODING" in environ:
        return
    stream = request.stream  # werkzeug's own, kept on the request as it keeps it
    found = request.__dict__
    found["form"] = request.parameter_storage_class()
    found["files"] = request.parameter_storage_class()
    request._cached_data = stream.read()


@contextmanager
def requests_normalized_directly() -> Iterator[None]:
    """Turn a botocore request into moto's werkzeug request without werkzeug's test builder.

    Upstream behaviour: `Request.from_primitives` hands the method, URL, headers and body to
    werkzeug's `EnvironBuilder`, a general tool for tests (URL quoting, forms, files, header
    objects rebuilt twice), to get a WSGI environ: some four per cent of an in-process
    DynamoDB request. For the requests of JSON-protocol services (a non-empty body, sent to
    `https://host/`) the environ it builds is a fixed set of keys, the headers but
    Content-Type and Content-Length as `HTTP_` keys (repeated ones joined by commas),
    Content-Type as `CONTENT_TYPE` and the body's length as `CONTENT_LENGTH`: that environ is
    built here directly, and the request made from it as moto makes it. Any other request
    (another URL, an empty or streamed body) is built by werkzeug as before. The request's
    `url_root` (which moto reads twice a request, and werkzeug derives from the scheme, host
    and server through two URL re-encodings) is the one werkzeug computed for the first
    request to the same place. A JSON-protocol body (not form data, not compressed) is read
    as `data` without asking werkzeug's form parser (which hands such a stream back as is).
    """
    from moto.core import request as moto_request

    original = vars(moto_request.Request)["from_primitives"]

    def from_primitives(cls: Any, method: str, url: str, headers: Any, body: Any = None) -> Any:
        origin = PLAIN_ORIGIN.match(url) if type(url) is str else None
        if origin is None or type(method) is not str or type(body) not in (bytes, str) or not body:
            return original.__func__(cls, method, url, headers, body)
        items = [
            (key, value.decode("utf-8") if isinstance(value, bytes) else value)
            for key, value in headers.items()
            if key.lower() not in ["transfer-encoding"]
        ]
        if not all(type(k) is str and type(v) is str for k, v in items):
            return original.__func__(cls, method, url, headers, body)
        data = body.encode() if type(body) is str else body
        scheme, host, port = origin.groups()
        environ = _environ(method, scheme, host, port, items, data)
        if environ is None:
            return original.__func__(cls, method, url, headers, body)
        request = cls(environ)
        _keep_url_root(request, cls, environ)
        request.environ[moto_request.PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {
            moto_request.environ_key_for_header(key): key
            for key, _ in items
            if moto_request.should_preserve_original_header_name(key)
        }
        request.environ.setdefault("CONTENT_LENGTH", "0")
        _read_as_data(request)
        return request

    with patched(moto_request.Request, "from_primitives", classmethod(from_primitives)):
        yield


@contextmanager
def response_dates_formatted_once_a_second() -> Iterator[None]:
    """Format each response's `date` header once per second, not once per response.

    Upstream behaviour: `BaseResponse.setup_class` formats the current time as an HTTP date
    (werkzeug's `http_date`, through `email.utils`) for every request: about a percent of an
    in-process DynamoDB request. The text names the second, no finer, and a naive datetime
    is taken as UTC: the text of the last second formatted is kept and given again for any
    naive datetime within that same second; anything else is formatted as before.
    """
    from moto.core import responses

    original = responses.http_date  # type: ignore[attr-defined]
    # (the second, its text) as one tuple, read and replaced whole: requests run in threads
    last: list[tuple[datetime, str] | None] = [None]

    def http_date(timestamp: Any = None) -> str:
        if type(timestamp) is not datetime or timestamp.tzinfo is not None:
            return str(original(timestamp))
        second = timestamp.replace(microsecond=0)
        kept = last[0]
        if kept is None or kept[0] != second:
            kept = (second, str(original(second)))
            last[0] = kept
        return kept[1]

    with patched(responses, "http_date", http_date):
        yield


@contextmanager
def backends_found_without_the_lock() -> Iterator[None]:
    """Find an account's backend that exists already without taking moto's backend lock.

    Upstream behaviour: every `backends[account]` (several per request) takes moto's global
    backend lock, lists the accounts, and looks for the backend dict among all those in use
    by `==`, which moto defines in Python: about two per cent of an in-process DynamoDB
    request. When the account's backend exists and the dict is registered (found by
    identity), nothing would be created or registered: it is returned as it is. Otherwise
    moto's own code runs, lock and all.
    """
    from moto.core.base_backend import BackendDict

    original = BackendDict.__getitem__

    def getitem(self: Any, account_id: str) -> Any:
        if dict.__contains__(self, account_id):
            for registered in BackendDict._instances:  # type: ignore[misc]
                if registered is self:
                    return dict.__getitem__(self, account_id)
        return original(self, account_id)

    with patched(BackendDict, "__getitem__", getitem):
        yield


_ACTION_NAMES_KEPT = 1024  # operation names: a few dozen per process


@contextmanager
def action_names_converted_once() -> Iterator[None]:
    """Turn each action name into its handler method's name once, not on every request.

    Upstream behaviour: `BaseResponse.call_action` turns the request's action (`UpdateItem`)
    into the name of the handler's method (`update_item`) with `camelcase_to_underscores`,
    which walks the name character by character, asking each whether it is title case: some
    6 µs, for the same few names over and over. The name depends only on the text: each
    text's name is kept (for text only; anything else is converted as before).
    """
    from moto.core import responses

    original = responses.camelcase_to_underscores  # type: ignore[attr-defined]
    kept: dict[str, str] = {}

    def camelcase_to_underscores(argument: Any) -> Any:
        if type(argument) is not str:
            return original(argument)
        found = kept.get(argument)
        if found is None:
            found = original(argument)
            if len(kept) >= _ACTION_NAMES_KEPT:
                kept.clear()
            kept[argument] = found
        return found

    with patched(responses, "camelcase_to_underscores", camelcase_to_underscores):
        yield
