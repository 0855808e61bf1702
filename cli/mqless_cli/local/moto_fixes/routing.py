"""moto's routing of a request to its service's handler, found once per URL
(`requests_routed_once`): moto matched every request's URL against every service's pattern
and rebuilt the backend's URL table each time."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.dispatch import PLAIN_ORIGIN
from mqless_cli.local.moto_fixes.patching import patched

_UNKNOWN = object()
_ROUTES_KEPT = 256  # distinct URLs of JSON-protocol requests: a handful per process


@contextmanager
def requests_routed_once() -> Iterator[None]:
    """Find the handler of a JSON-protocol request's URL once per URL, not on every request.

    Upstream behaviour: `BotocoreStubber.process_request` matches the request's URL against
    the URL pattern of every service moto knows until one matches (DynamoDB is some way down
    the list), then builds the backend's whole URL table (`BaseBackend.urls`: its url bases
    times its paths, each also rewritten for China's domain) and compiles and tries each
    entry: about a twentieth of an in-process DynamoDB request. Both answers depend only on
    the URL (the service patterns are fixed at import) and on the backend's class (its
    table comes from its module's `url_bases` and `url_paths`) and moto's ISO-region
    setting, so for a request to `scheme://host[:port]/` (every DynamoDB, Streams and KMS
    request) they are kept per URL; so is the URL's AWS-domain equivalent (it depends on
    the URL and on moto's S3 custom endpoints variable, read each time). The service's
    backends are `get_backend`'s, taken from its module when that is imported, not through
    `importlib.import_module` on every request. What the request
    goes through otherwise is moto's own, in moto's order: the passthrough URLs and services,
    the service allow-list, the backend, the request recorder, the handler and its
    HTTPException. A URL no service's table handles, and any other URL, goes through
    moto's own code; so does every request when `process_request` is not moto's own when
    the block starts (someone wraps it: their wrapper runs as it is).

    Why it is long: `process_request` below is moto's own `BotocoreStubber.process_request`
    step by step, in its order, with the two look-ups kept; read side by side with moto's,
    it is easier to check whole than split.
    """
    import moto.backends
    from moto import core, moto_api
    from moto.core import base_backend, botocore_stubber, exceptions

    stubber: Any = botocore_stubber  # its names, as moto's own code reads them
    backends: Any = moto.backends
    iso_regions: Any = base_backend.enable_iso_regions  # type: ignore[attr-defined]
    http_exception: Any = exceptions.HTTPException  # type: ignore[attr-defined]
    default_account: str = core.DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]

    original: Any = stubber.BotocoreStubber.process_request
    if getattr(original, "__module__", None) != stubber.__name__:
        yield
        return
    # URL and moto's S3 custom endpoints setting -> the URL in AWS's domain, as moto cleans it
    clean_urls: dict[tuple[str, str | None], str] = {}
    services: dict[str, Any] = {}  # URL -> service of the first pattern matching it
    handlers: dict[tuple[Any, ...], Any] = {}  # (backend class, ISO, URL) -> handler

    def clean_url_of(url: str) -> str:
        key = (url, os.environ.get("MOTO_S3_CUSTOM_ENDPOINTS"))
        found = clean_urls.get(key)
        if found is None:
            parsed_url, _ = stubber.get_equivalent_url_in_aws_domain(url)
            found = f"{parsed_url.scheme}://{parsed_url.netloc}{parsed_url.path}"
            if len(clean_urls) >= _ROUTES_KEPT:
                clean_urls.clear()
            clean_urls[key] = found
        return found

    def service_of(clean_url: str) -> Any:
        found = services.get(clean_url, _UNKNOWN)
        if found is _UNKNOWN:
            found = next(
                (s for s, p in stubber.backend_index.backend_url_patterns if p.match(clean_url)),
                None,
            )
            if len(services) >= _ROUTES_KEPT:
                services.clear()
            services[clean_url] = found
        return found

    def handler_of(backend: Any, clean_url: str) -> Any:
        key = (type(backend), iso_regions(), clean_url)
        found = handlers.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            found = next(
                (h for url, h in backend.urls.items() if re.compile(url).match(clean_url)),
                None,
            )
            if len(handlers) >= _ROUTES_KEPT:
                handlers.clear()
            handlers[key] = found
        return found

    modules_of: dict[str, tuple[str, str]] = {}  # service -> (its module, its backends' name)

    def backends_of(service: str) -> Any:
        """`get_backend(service)`, taken from its module when that is imported (and not
        being imported by another thread: `import_module` would wait for it)."""
        names = modules_of.get(service)
        if names is None:
            safe = service.replace("-", "")
            names = (
                "moto." + backends.ALT_SERVICE_NAMES.get(safe, safe),
                f"{backends.ALT_BACKEND_NAMES.get(safe, safe)}_backends",
            )
            modules_of[service] = names
        module = sys.modules.get(names[0])
        if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
            return backends.get_backend(service)
        return getattr(module, names[1])

    def process_request(self: Any, request: Any) -> Any:
        url = request.url
        if type(url) is not str or PLAIN_ORIGIN.match(url) is None:
            return original(self, request)
        clean_url = clean_url_of(url)
        if stubber.passthrough_url(clean_url):
            return None
        service = service_of(clean_url)
        if service is None:
            return original(self, request)
        if stubber.passthrough_service(service):
            return None
        if not stubber.service_whitelisted(service):
            raise stubber.ServiceNotWhitelisted(service)
        backend_dict = backends_of(service)
        if isinstance(backend_dict, base_backend.BackendDict):
            if "us-east-1" in backend_dict[default_account]:
                backend = backend_dict[default_account]["us-east-1"]
            else:
                backend = backend_dict[default_account]["aws"]
        else:
            backend = backend_dict["global"]
        handler = handler_of(backend, clean_url)
        if handler is None:  # moto tries the next services' patterns: its own code does
            return original(self, request)
        normalized_request = stubber.normalize_request(request)
        try:
            moto_api.recorder._record_request(normalized_request)
            status, headers, body = handler(
                normalized_request, normalized_request.raw_url, normalized_request.headers
            )
        except http_exception as e:
            status = e.code
            headers = e.get_headers()
            body = e.get_body()
        return status, headers, body

    with patched(stubber.BotocoreStubber, "process_request", process_request):
        yield
