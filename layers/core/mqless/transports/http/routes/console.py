"""The web console: one static page and its assets, served by the HTTP API.

GET /console is the page, GET /console/{file} its assets (read from the
`mqless.transports.http.console` package), GET /console/config.json what the page cannot
know by itself: the WebSocket API's URL (env `WEBSOCKET_URL`), the version, and whether
it must sign in (env `AUTH_MODE`). All three are public: the page signs in with a token,
then sends it on every API call.

`mqless dev` points the template's WEBSOCKET_URL at its own WebSocket gateway. When the
variable is unset and the page was requested from 127.0.0.1 or localhost (the Host
header), the page gets `ws://<that host>:8081` (`mqless dev`'s default `--ws-port`;
WebSocketSettings.loopback_websocket_port), and
on those hosts its Content-Security-Policy allows any port, so a URL typed in the page
(kept in the browser) reaches a gateway started with another `--ws-port`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mqless import __version__, wiring
from mqless.domain.errors import NotFound

logger = Logger(service="mqless", child=True)
router = Router()

PACKAGE = "mqless.transports.http.console"
PAGE = "index.html"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

# what may be served, by suffix (all UTF-8 text); anything else in the package is not
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# the files carry no version in their names: browsers revalidate, and an unchanged file
# costs a 304 without a body
REVALIDATE = "no-cache"
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_WS_NETLOC = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def _asset_names() -> frozenset[str]:
    """The files of the console package that may be served (the page itself is /console)."""
    root = resources.files(PACKAGE)
    return frozenset(
        entry.name
        for entry in root.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")
        and any(entry.name.endswith(suffix) for suffix in CONTENT_TYPES)
    )


@cache
def _asset(name: str) -> Asset:
    body = resources.files(PACKAGE).joinpath(name).read_bytes()
    suffix = name[name.rindex(".") :]
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body=body, content_type=CONTENT_TYPES[suffix], etag=etag)


def _request_host() -> str | None:
    """The hostname (no port) the browser asked for, when it is a well-formed one."""
    host = str(router.current_event.headers.get("host") or "")
    if not _HOST.fullmatch(host):
        return None
    return host.rsplit(":", 1)[0].lower()


def websocket_url() -> str | None:
    """The WebSocket API's URL: WEBSOCKET_URL, else the `mqless dev` default on loopback."""
    configured = wiring.websocket_settings().websocket_url
    if configured:
        if _websocket_origin(configured) is not None:
            return configured
        logger.warning("ignoring a malformed WEBSOCKET_URL", extra={"value": configured[:200]})
        return None
    host = _request_host()
    if host in LOOPBACK_HOSTS:
        return f"ws://{host}:{wiring.websocket_settings().loopback_websocket_port}"
    return None


def auth_mode() -> str:
    """AUTH_MODE, by the rule every function reads it with: a typo is a deployment fault
    (SettingsError, an internal error), never a page told that it needs no token."""
    return wiring.access_settings().auth_mode


def _websocket_origin(url: str) -> str | None:
    """`scheme://host[:port]` of a ws:// or wss:// URL; None when it is not one."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("ws", "wss") or not _WS_NETLOC.fullmatch(parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def content_security_policy() -> str:
    """Only this origin, plus the WebSocket API (any port of a loopback host under dev)."""
    connect = ["'self'"]
    url = websocket_url()
    origin = _websocket_origin(url) if url else None
    if origin:
        connect.append(origin)
    host = _request_host()
    if host in LOOPBACK_HOSTS:
        connect.append(f"ws://{host}:*")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(dict.fromkeys(connect))}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _headers(cache_control: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": cache_control,
    }


def _serve(name: str) -> Response[Any]:
    asset = _asset(name)
    headers = {**_headers(REVALIDATE), "ETag": asset.etag}
    if_none_match = str(router.current_event.headers.get("if-none-match") or "")
    if asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=headers, body="")
    # every asset is UTF-8 text: it travels as text (bytes would be base64-encoded)
    body = asset.body.decode("utf-8")
    return Response(status_code=200, content_type=asset.content_type, headers=headers, body=body)


@router.get("/console", include_in_schema=False)
def console_page() -> Response[Any]:
    return _serve(PAGE)


# a static route: Powertools tries these before /console/<file>
@router.get("/console/config.json", include_in_schema=False)
def console_config() -> Response[str]:
    config = {
        "websocket_url": websocket_url(),
        "version": __version__,
        "auth": auth_mode(),
    }
    return Response(
        status_code=200,
        content_type="application/json",
        headers=_headers("no-store"),
        body=json.dumps(config, separators=(",", ":")),
    )


@router.get("/console/<file>", include_in_schema=False)
def console_asset(file: str) -> Response[Any]:
    # the page is only /console: its relative asset URLs resolve from there
    if file == PAGE or file not in _asset_names():
        raise NotFound(f"the console has no file named {file[:100]!r}")
    return _serve(file)
