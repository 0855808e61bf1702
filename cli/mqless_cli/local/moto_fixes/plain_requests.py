"""A DynamoDB request handed to moto's handler as the few values it reads, not as a werkzeug
request (`dynamodb_requests_left_plain`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.dispatch import PLAIN_ORIGIN, environ_of
from mqless_cli.local.moto_fixes.patching import patched

_TARGETS = ("DynamoDB_20120810.", "DynamoDBStreams_20120810.")
_JSON = frozenset({"application/x-amz-json-1.0", "application/x-amz-json-1.1"})
_LEFT_TO_WERKZEUG = frozenset({"content-encoding", "transfer-encoding", "host"})


class PlainRequest:
    """What moto's `BaseResponse.setup_class` and `parse_parameters` read of a JSON-protocol
    request to `scheme://host/` (no port, no query), as werkzeug's request gives it: the
    method, the URL (werkzeug's `raw_url` is the URL itself), path `/`, the headers over the
    same WSGI environ (moto's `EnvironHeaders`), the content type, no content encoding, the
    body as `data`, no form and no files (not form data). Anything else is read from the
    werkzeug request moto would have built, made on first use (`real`)."""

    from_wsgi_server = False
    raw_path = "/"
    path = "/"
    content_encoding = None

    def __init__(self, primitives: tuple[Any, ...], environ: dict[str, Any], build: Any) -> None:
        from moto.core.request import EnvironHeaders
        from werkzeug.datastructures import CombinedMultiDict, ImmutableMultiDict

        self.method, self.raw_url, _, body = primitives
        self.environ = environ
        self.headers = EnvironHeaders(environ)
        self.content_type = environ["CONTENT_TYPE"]
        self.data = body.encode() if type(body) is str else body
        self.form: Any = ImmutableMultiDict()
        self.files: Any = self.form
        self.values = CombinedMultiDict([ImmutableMultiDict(), self.form])
        self._primitives = primitives
        self._build = build
        self._real: Any = None

    @property
    def real(self) -> Any:
        """The werkzeug request moto builds from the same method, URL, headers and body."""
        if self._real is None:
            self._real = self._build(*self._primitives)
        return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real, name)


def _plain(method: Any, url: Any, headers: Any, body: Any) -> dict[str, Any] | None:
    """The WSGI environ of a DynamoDB or DynamoDB Streams JSON request to `scheme://host/`
    with a body, as werkzeug builds it; None for any other request."""
    if type(method) is not str or type(url) is not str or type(body) not in (bytes, str):
        return None
    origin = PLAIN_ORIGIN.match(url)
    if origin is None or origin.group(3) is not None or not body:
        return None
    items = [
        (key, value.decode("utf-8") if isinstance(value, bytes) else value)
        for key, value in headers.items()
    ]
    if not all(type(k) is str and type(v) is str for k, v in items):
        return None
    if any(k.lower() in _LEFT_TO_WERKZEUG or "_" in k for k, _ in items):
        return None  # a compressed body, a URL from another host, a name moto keeps as sent
    environ = environ_of(method, url, items, body.encode() if type(body) is str else body)
    if environ is None or environ.get("CONTENT_TYPE") not in _JSON:
        return None
    if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_TARGETS):
        return None
    from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY

    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {}  # no name moto keeps as sent
    return environ


@contextmanager
def dynamodb_requests_left_plain() -> Iterator[None]:
    """Hand moto's DynamoDB handler a JSON request as the values it reads, not as werkzeug's
    request.

    Upstream behaviour: `normalize_request` turns every botocore request into a werkzeug
    request (its environ, headers, URL parts, a stream read through the form parser) for
    `BaseResponse.setup_class`, which reads its method, URL, headers, content type and
    encoding, body, form and files, and passes it on to `parse_parameters`. For a DynamoDB
    or DynamoDB Streams JSON request to `scheme://host/` (every one botocore sends) those are
    known without werkzeug: the request is a `PlainRequest` holding them (the headers over
    the environ werkzeug would build), and setup runs as before over it. Anything else
    asked of it is asked of the werkzeug request, built then. Any other request, one with a
    content or transfer encoding, a Host header of its own (werkzeug's URL follows it) or a
    header name moto keeps as sent, goes the usual way.
    """
    from moto.core import request as moto_request

    current = vars(moto_request.Request)["from_primitives"]

    def from_primitives(cls: Any, method: str, url: str, headers: Any, body: Any = None) -> Any:
        environ = _plain(method, url, headers, body)
        if environ is None or cls is not moto_request.Request:
            return current.__func__(cls, method, url, headers, body)
        return PlainRequest(
            (method, url, headers, body),
            environ,
            lambda *primitives: current.__func__(cls, *primitives),
        )

    with patched(moto_request.Request, "from_primitives", classmethod(from_primitives)):
        yield
