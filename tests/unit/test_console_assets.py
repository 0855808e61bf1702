"""The web console's routes: the page, its assets, its configuration, and what they refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mqless import wiring
from mqless.transports.http import api
from tests.lambda_support import FakeLambdaContext, http_event

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
LOOPBACK = {"host": "127.0.0.1:8080"}
DEPLOYED = {"host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"}
WSS = "wss://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com/live"
FUNCTION_ENV = {
    "MESSAGES_TABLE": "messages",
    "DESTINATIONS_TABLE": "destinations",
    "KMS_KEY_ID": "key",
}


def get(path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = api.resolve(
        http_event("GET", path, headers=headers or DEPLOYED), FakeLambdaContext()
    )
    return result


def header(result: dict[str, Any], name: str) -> str:
    found = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    return str(found.get(name.lower(), ""))


def directives(result: dict[str, Any]) -> dict[str, list[str]]:
    policy = header(result, "Content-Security-Policy")
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            value = values.get(name)
            if value and not value.startswith("#"):
                self.urls.append(value)
        self._in_script = tag == "script"
        if any(name.startswith("on") for name in values) or "style" in values:
            self.inline_scripts += 1

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text inside each element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, str | None]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {"tag": tag, **dict(attrs)}
        self.elements.append(values)
        if tag not in ("input", "link", "meta", "br", "img"):
            self._open.append(values.get("id"))
            if values.get("id"):
                self.text[str(values["id"])] = ""

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def by_id(self, element_id: str) -> dict[str, str | None]:
        found = [e for e in self.elements if e.get("id") == element_id]
        assert len(found) == 1, f"one element #{element_id}, found {len(found)}"
        return found[0]


def elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


@pytest.fixture(autouse=True)
def no_websocket_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the settings every function has (template.yaml's Globals), nothing about the console
    for name, value in FUNCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WEBSOCKET_URL", raising=False)
    monkeypatch.delenv("AUTH_MODE", raising=False)
    wiring.reset()  # the settings are read once per process: read them again per test
    yield
    wiring.reset()


def test_the_page_is_html_that_loads_only_relative_files_of_its_own() -> None:
    # Given the API deployed behind API Gateway
    # When the browser asks for the console
    page = get("/console")

    # Then it is HTML whose every script, style and icon is a relative URL on this API
    assert page["statusCode"] == 200
    assert header(page, "Content-Type") == "text/html; charset=utf-8"
    found = references(page["body"])
    assert found.urls, "the page references its assets"
    for url in found.urls:
        assert "//" not in url and not url.startswith("/"), url
    # and nothing inline, which the Content-Security-Policy would refuse anyway
    assert found.inline_scripts == 0


def test_every_file_the_page_references_is_served() -> None:
    # Given the files the page references (console/app.js, ...)
    urls = references(get("/console")["body"]).urls

    # When each is fetched relative to /console, as the browser resolves them
    results = {url: get("/" + url) for url in urls}

    # Then each is there
    assert {url: r["statusCode"] for url, r in results.items()} == dict.fromkeys(urls, 200)


@pytest.mark.parametrize(
    ("file", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
def test_an_asset_is_served_with_its_content_type(file: str, content_type: str) -> None:
    """Given one of the console's assets: its script, style sheet or icon
    When the browser asks for it under /console/
    Then it is answered 200, as text (not base64), with a body and its own Content-Type
    """
    result = get(f"/console/{file}")

    assert result["statusCode"] == 200
    assert header(result, "Content-Type") == content_type
    assert not result.get("isBase64Encoded")
    assert result["body"]


@pytest.mark.parametrize("file", ["app.js", "app.css"])
def test_scripts_and_styles_fetch_nothing_from_other_sites(file: str) -> None:
    """Given the console's script and style sheet
    When they are fetched
    Then neither names an http(s) URL nor imports a style sheet
    """
    body = get(f"/console/{file}")["body"]

    assert "http://" not in body and "https://" not in body
    assert "@import" not in body


@pytest.mark.parametrize(
    "file",
    [
        "missing.js",
        "__init__.py",  # the package's code is not an asset
        "index.html",  # the page is /console only: its relative URLs resolve from there
        "..%2F..%2Fhttp%2Fapi.py",
        "%2e%2e",
        "app.js%00.css",
        "APP.JS",
        "x" * 2000 + ".js",
    ],
)
def test_anything_else_under_console_is_a_404_problem(file: str) -> None:
    # Given a name under /console that is no asset: missing, the package's code, the page's
    # own file, an encoded path out, a NUL, the wrong case, a 2000-character name
    # When a file the console does not have is asked for
    result = get(f"/console/{file}")

    # Then the answer is the API's usual JSON problem, never a 500
    assert result["statusCode"] == 404
    assert header(result, "Content-Type") == "application/json"
    problem = json.loads(result["body"])
    assert problem["error"] == "not_found"
    assert problem["message"]


def test_a_nested_path_under_console_is_no_route() -> None:
    """Given a path two segments deep under /console
    When it is asked for
    Then it is a 404 no_such_route problem
    """
    result = get("/console/a/app.js")

    assert result["statusCode"] == 404
    assert json.loads(result["body"])["error"] == "no_such_route"


@pytest.mark.parametrize("path", ["/console", "/console/app.js", "/console/config.json"])
def test_every_console_answer_carries_the_security_headers(path: str) -> None:
    """Given the console's page, script and configuration
    When each is fetched
    Then each carries nosniff, a no-cache or no-store Cache-Control, and a Content-Security-Policy
    that allows only this origin's scripts and styles, nothing by default and no framing
    """
    result = get(path)

    assert header(result, "X-Content-Type-Options") == "nosniff"
    assert header(result, "Cache-Control") in ("no-cache", "no-store")
    policy = directives(result)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_the_page_may_connect_only_to_its_api_and_the_configured_websocket_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a deployed stack that names its WebSocket API
    monkeypatch.setenv("WEBSOCKET_URL", WSS)

    # When the page is served
    page = get("/console")

    # Then its scripts may reach this origin and that WebSocket API, nothing else
    assert directives(page)["connect-src"] == [
        "'self'",
        "wss://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com",
    ]


def test_config_names_the_websocket_api_and_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given WEBSOCKET_URL set to the deployed WebSocket API
    When the console asks for config.json
    Then it is JSON, never cached, naming that URL, the version and that auth is required
    """
    monkeypatch.setenv("WEBSOCKET_URL", WSS)

    result = get("/console/config.json")

    assert result["statusCode"] == 200
    assert header(result, "Content-Type") == "application/json"
    assert header(result, "Cache-Control") == "no-store"
    assert json.loads(result["body"]) == {
        "websocket_url": WSS,
        "version": "0.1.0",
        "auth": "required",
    }


@pytest.mark.parametrize(
    ("auth_mode", "expected"),
    [
        (None, "required"),  # absent: the template's default
        ("required", "required"),
        ("off", "off"),  # `mqless dev --no-auth`
    ],
)
def test_config_says_whether_the_page_must_sign_in(
    monkeypatch: pytest.MonkeyPatch, auth_mode: str | None, expected: str
) -> None:
    # Given the function's AUTH_MODE
    if auth_mode is not None:
        monkeypatch.setenv("AUTH_MODE", auth_mode)

    # When the page asks for its configuration, without any token
    result = get("/console/config.json")

    # Then it is told whether to sign in first
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["auth"] == expected


@pytest.mark.parametrize("auth_mode", ["OFF ", "", "requierd"])
def test_a_mistyped_auth_mode_is_the_same_clear_error_for_the_console_and_the_api(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, auth_mode: str
) -> None:
    # Given a function deployed with an AUTH_MODE that is neither `required` nor `off`
    monkeypatch.setenv("AUTH_MODE", auth_mode)

    # When the console asks for its configuration, and a client lists the queues
    config = get("/console/config.json")
    queues = api.resolve(http_event("GET", "/queues"), FakeLambdaContext())

    # Then neither is told anything about signing in: both are the same internal error
    # (a deployment fault, not the caller's), never a page told it may skip the token
    for answer in (config, queues):
        assert answer["statusCode"] == 500
        assert json.loads(answer["body"]) == {
            "error": "internal_error",
            "message": "the broker failed; the request may be retried",
        }
    # and the function's log says what is wrong, in both places
    reason = f"AUTH_MODE must be 'required' or 'off', not {auth_mode!r}"
    logged = [str(r.exc_info[1]) for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert len(logged) == 2 and all(reason in text for text in logged), logged


def test_the_page_has_an_accessible_sign_in_form() -> None:
    # Given the page, as the browser gets it
    page = elements(get("/console")["body"])

    # When its sign-in view is looked for
    # Then there is a sign-in view: a form with a labelled password field for the token,
    # a submit button, and an alert region for its error, which the field points at
    form = page.by_id("signin-form")
    assert form["tag"] == "form"
    token = page.by_id("signin-token")
    assert token["tag"] == "input" and token["type"] == "password"
    labels = [e for e in page.elements if e["tag"] == "label" and e.get("for") == "signin-token"]
    assert len(labels) == 1
    assert page.text["signin-title"] == "Sign in"
    error = page.by_id("signin-error")
    assert error["role"] == "alert"
    assert "signin-error" in str(token.get("aria-describedby")).split()
    assert page.text["signin-form"].count("Sign in") == 1  # the submit button's text
    assert "hidden" in page.by_id("view-signin")

    # and a sign-out control, hidden until someone is signed in
    sign_out = page.by_id("sign-out")
    assert sign_out["tag"] == "button" and page.text["sign-out"] == "Sign out"
    assert "hidden" in sign_out


def test_the_script_keeps_the_token_for_this_tab_and_sends_it_with_every_call() -> None:
    # Given the console's script
    script = get("/console/app.js")["body"]

    # When it is read for how it keeps and sends the token
    # Then the token is kept in sessionStorage, under a key localStorage never sees
    assert 'TOKEN_KEY = "mqless.console.token"' in script
    assert 'tabStorage = keptIn("sessionStorage")' in script
    assert "storage.set(TOKEN_KEY" not in script.replace("tabStorage.set(TOKEN_KEY", "")
    # sent as a bearer token over HTTP, in the query string to the WebSocket API
    assert "init.headers.authorization = `Bearer ${token}`" in script
    assert 'searchParams.set("access_token", session.token)' in script
    # and it wires the sign-in form and the sign-out control
    assert '$("#signin-form")' in script and '$("#sign-out")' in script


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "LOCALHOST"])
def test_on_loopback_without_configuration_the_websocket_api_is_mqless_devs(host: str) -> None:
    # Given `mqless dev` with no WEBSOCKET_URL, and a browser on this machine
    name = host.split(":")[0].lower()

    # When the page asks for its configuration
    result = get("/console/config.json", {"host": host})

    # Then it gets the dev WebSocket port, and may connect to any port of that host
    assert json.loads(result["body"])["websocket_url"] == f"ws://{name}:8081"
    assert f"ws://{name}:*" in directives(get("/console", {"host": host}))["connect-src"]


def test_elsewhere_without_configuration_there_is_no_websocket_api() -> None:
    """Given a deployed API with no WEBSOCKET_URL set
    When the console's configuration and page are fetched
    Then the configuration names no WebSocket API and the page may connect only to its own origin
    """
    result = get("/console/config.json", DEPLOYED)

    assert json.loads(result["body"])["websocket_url"] is None
    assert directives(get("/console", DEPLOYED))["connect-src"] == ["'self'"]


@pytest.mark.parametrize(
    "value",
    [
        "https://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com/live",
        "wss://evil.example; script-src *",
        "wss://host:99999/",
        "not a url",
    ],
)
def test_a_malformed_websocket_url_is_ignored(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Given a WEBSOCKET_URL that is not a wss:// URL, carries a policy injection, has a bad port or
    is not a URL
    When the configuration and page are fetched
    Then the configuration names no WebSocket API and the policy keeps connect-src and script-src to
    'self'
    """
    monkeypatch.setenv("WEBSOCKET_URL", value)

    config = get("/console/config.json")
    policy = directives(get("/console"))

    assert json.loads(config["body"])["websocket_url"] is None
    assert policy["connect-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]


def test_a_forged_host_header_cannot_widen_the_policy() -> None:
    """Given a request whose Host header carries "; script-src *"
    When the page is fetched
    Then its policy still allows scripts and connections to 'self' only
    """
    page = get("/console", {"host": "127.0.0.1; script-src *"})

    policy = directives(page)
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]


def test_an_unchanged_asset_is_revalidated_without_a_body() -> None:
    # Given a browser holding app.js and its ETag
    first = get("/console/app.js")
    etag = header(first, "ETag")
    assert etag

    # When it revalidates
    again = get("/console/app.js", {**DEPLOYED, "if-none-match": etag})

    # Then nothing is sent again
    assert again["statusCode"] == 304
    assert not again.get("body")
    assert header(again, "ETag") == etag


def test_the_console_is_not_part_of_the_openapi_document() -> None:
    """Given the API's OpenAPI document
    When it is fetched
    Then no path in it starts with /console
    """
    document = json.loads(get("/openapi.json")["body"])

    assert not [path for path in document["paths"] if path.startswith("/console")]


@pytest.mark.parametrize("event", ["console_page.json", "console_asset.json"])
def test_the_sample_events_are_answered(event: str) -> None:
    # Given the sample events for `sam local invoke`
    payload = json.loads((EVENTS / event).read_text())

    # When the API answers each
    result = api.resolve(payload, FakeLambdaContext())

    # Then each is answered 200
    assert result["statusCode"] == 200
