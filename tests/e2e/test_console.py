"""The web console in a real browser: headless Chromium (Debian's) driven by Playwright.

Against `mqless dev` (authorizers on): sign in with the dev token, manage a queue from the
page, and tail a topic over the WebSocket API. Screenshots go to test-output/console-*.png for
a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, DevServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# each test's queues go when it ends: the page's /stats reads every queue there is
pytestmark = pytest.mark.usefixtures("queues_deleted_after")

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = ROOT / "test-output"
WAIT_MS = 10_000
TOKEN_KEY = "mqless.console.token"
DEV_TOKEN = re.compile(r"dev token\b.*?\b(mqk_[0-9a-f]{24}_[A-Za-z0-9_-]{43})")
# well formed, never issued: the authorizer refuses it
WRONG_TOKEN = "mqk_" + "0" * 24 + "_" + "A" * 43
# the browser logs each refused request as an error: tests that expect refusals allow them
REFUSED = re.compile(r"status of (401|403) ")
# every form control of the page (shown or not) has a label or an accessible name
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll("input, textarea, select")]
    .filter((c) => c.labels.length === 0 && !c.getAttribute("aria-label"))
    .map((c) => c.id || c.outerHTML)"""


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.fail(f"{CHROMIUM} is missing; installing it needs root or sudo", pytrace=False)
        command = ["sudo", "-n", *command]
    return subprocess.run(
        command,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed with apt-get when it is missing (never skipped)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it", pytrace=False)
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt_get(*install)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        _apt_get("update")
        result = _apt_get(*install)
    if result.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(
            "could not install Debian's chromium for the console tests "
            f"(apt-get exited {result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def allowed_console_errors() -> list[re.Pattern[str]]:
    """Console errors a test expects (a refused token, say); it appends to this list."""
    return []


@pytest.fixture
def dev_token(mqless_dev: DevServer) -> str:
    """The admin token `mqless dev` prints on its `dev token` line."""
    token = getattr(mqless_dev, "token", None)
    if token:
        return str(token)
    match = DEV_TOKEN.search(mqless_dev.wait_for_output("dev token"))
    assert match, f"no token on the `dev token` line:\n{mqless_dev.output()}"
    return match.group(1)


@pytest.fixture
def page(
    browser: Browser, mqless_dev: DevServer, allowed_console_errors: list[re.Pattern[str]]
) -> Iterator[Page]:
    """A fresh page; any script error, refused connection (CSP) or 5xx fails the test."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("console", lambda msg: _note_console(msg, problems, allowed_console_errors))
    yield opened
    context.close()
    if problems:
        failures = [
            line for line in mqless_dev.output().splitlines() if "-> 5" in line or "ERROR" in line
        ]
        pytest.fail(
            "the browser reported problems:\n"
            + "\n".join(problems)
            + "\n`mqless dev` answered:\n"
            + "\n".join(failures),
            pytrace=False,
        )


def _note_console(message: Any, problems: list[str], allowed: list[re.Pattern[str]]) -> None:
    if message.type != "error":
        return
    url = str(message.location.get("url", "?"))
    # the create form asks GET /queues/<name> first, and a 404 is the answer it hopes for
    if "status of 404" in message.text and re.search(r"/queues/[^/]+$", url):
        return
    if any(pattern.search(message.text) for pattern in allowed):
        return
    problems.append(f"console error: {message.text} ({url})")


def _screenshot(page: Page, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\n  screenshot: {path}")
    return path


def _sign_in(page: Page, token: str) -> None:
    """Sign in from the sign-in view the page shows first."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def _stored(page: Page) -> dict[str, str]:
    stored: dict[str, str] = page.evaluate(
        """() => ({session: JSON.stringify(sessionStorage), local: JSON.stringify(localStorage)})"""
    )
    return stored


def test_console_page_and_assets_come_with_security_headers(mqless_dev: DevServer) -> None:
    # Given the console under mqless dev, and a browser that holds no token
    with httpx.Client(base_url=mqless_dev.http_url, timeout=10) as client:
        # When the browser asks for the page, its assets and its configuration
        page = client.get("/console")
        script = client.get("/console/app.js")
        config = client.get("/console/config.json")
        missing = client.get("/console/missing.js")

    # Then each has its type, and the page may only talk to itself and the WebSocket API
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")
    assert page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "ws://127.0.0.1:" in policy
    assert config.json()["websocket_url"].startswith("ws://127.0.0.1:")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    # and the page is told to sign in first
    assert config.json()["auth"] == "required"


def test_signing_in_with_the_dev_token_opens_the_console_for_this_tab_only(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given the console, opened without a token
    page.goto(f"{mqless_dev.http_url}/console")

    # Then it asks for one before anything else: no sections, no data
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.get_by_label("Access token")).to_be_focused()
    expect(page.get_by_label("Access token")).to_have_attribute("type", "password")
    expect(page.get_by_role("navigation")).to_have_count(0)
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_hidden()
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    _screenshot(page, "signin", capsys)

    # When the dev token is typed and submitted from the keyboard
    page.get_by_label("Access token").fill(dev_token)
    page.get_by_label("Access token").press("Enter")

    # Then the queue list opens, and the token is kept for this tab only
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_focused()
    expect(page.locator("#queues-updated")).to_contain_text("Updated")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    stored = _stored(page)
    assert dev_token in stored["session"]
    assert dev_token not in stored["local"]

    # When the page is reloaded, the tab is still signed in
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_visible()
    expect(page.locator("#queues-updated")).to_contain_text("Updated")

    # When the user signs out
    page.get_by_role("button", name="Sign out").click()

    # Then the sign-in view is back, the token is gone, and a reload does not bring it back
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation")).to_have_count(0)
    assert dev_token not in _stored(page)["session"]
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()


def test_under_no_auth_the_console_opens_without_signing_in(
    dev_server: Callable[..., DevServer], browser: Browser
) -> None:
    from playwright.sync_api import expect

    # Given `mqless dev --no-auth`
    server = dev_server(ROOT / "template.yaml", "--no-auth")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        # When the console is opened, with no token
        page = context.new_page()
        page.goto(f"{server.http_url}/console")

        # Then the queue list loads at once, and there is nothing to sign in or out of
        expect(page.get_by_role("heading", level=1, name="Queues")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#queues-updated")).to_contain_text("Updated", timeout=WAIT_MS)
        expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_hidden()
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    finally:
        context.close()


def test_a_wrong_token_shows_the_error_and_no_data(
    mqless_dev: DevServer,
    page: Page,
    dev_token: str,
    allowed_console_errors: list[re.Pattern[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from playwright.sync_api import expect

    allowed_console_errors.append(REFUSED)
    # Given a queue the console would list to someone signed in
    name = f"console-secret-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=mqless_dev.http_url, timeout=10) as client:
        created = client.put(
            f"/queues/{name}", json={}, headers={"authorization": f"Bearer {dev_token}"}
        )
    assert created.status_code in (200, 201), created.text

    # When a token the API never issued is submitted
    page.goto(f"{mqless_dev.http_url}/console")
    page.get_by_label("Access token").fill(WRONG_TOKEN)
    page.get_by_role("button", name="Sign in").click()

    # Then the sign-in view says it was not accepted, and shows nothing of the API's
    alert = page.locator("#signin-error")
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_contain_text("did not accept that token")
    expect(page.get_by_label("Access token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    expect(page.locator("body")).not_to_contain_text(name)
    assert WRONG_TOKEN not in _stored(page)["session"]
    _screenshot(page, "signin-refused", capsys)


def test_a_token_the_api_refuses_later_brings_back_the_sign_in_view(
    mqless_dev: DevServer,
    page: Page,
    dev_token: str,
    allowed_console_errors: list[re.Pattern[str]],
) -> None:
    from playwright.sync_api import expect

    allowed_console_errors.append(REFUSED)
    # Given a tab signed in on the queue list
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)
    expect(page.locator("#queues-updated")).to_contain_text("Updated")

    # When the token it holds stops being accepted (here: replaced by one never issued)
    page.evaluate(f"() => sessionStorage.setItem({TOKEN_KEY!r}, {WRONG_TOKEN!r})")
    page.reload()

    # Then its first refused call sends it back to the sign-in view, saying why
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("refused the token")
    expect(page.get_by_role("navigation")).to_have_count(0)
    assert WRONG_TOKEN not in _stored(page)["session"]

    # And signing in again returns to where it was
    _sign_in(page, dev_token)
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_visible()


def test_an_action_the_principal_may_not_take_is_that_actions_error_not_a_sign_out(
    mqless_dev: DevServer,
    page: Page,
    dev_token: str,
    allowed_console_errors: list[re.Pattern[str]],
) -> None:
    from playwright.sync_api import expect

    allowed_console_errors.append(REFUSED)
    # Given a principal that may only send to and receive from `allowed.>` queues
    principal = f"console-limited-{uuid.uuid4().hex[:8]}"
    admin = {"authorization": f"Bearer {dev_token}"}
    with httpx.Client(base_url=mqless_dev.http_url, timeout=10, headers=admin) as client:
        grants = [{"pattern": "allowed.>", "actions": ["send", "receive"]}]
        put = client.put(f"/access/principals/{principal}", json={"grants": grants})
        assert put.status_code == 201, put.text
        issued = client.post(f"/access/principals/{principal}/keys", json={})
        assert issued.status_code == 201, issued.text
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, issued.json()["token"])

    # When it tries to create a queue outside its grants
    denied = f"denied-{uuid.uuid4().hex[:8]}"
    page.get_by_label("Queue name").fill(denied)
    page.get_by_role("button", name="Create queue").click()

    # Then that action fails with mqless's reason, and the tab stays signed in
    expect(page.locator("#problem")).to_contain_text("forbidden")
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_hidden()


def test_a_queue_is_created_filled_browsed_and_purged_from_the_console(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    name = f"console-{uuid.uuid4().hex[:8]}"
    archive = f"{name}-archive"

    # Given the console's queue list, signed in with the dev token (reloaded: the tab keeps it)
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_visible()
    expect(page.locator("#version")).to_have_text("v0.1.0")
    for landmark in ("banner", "navigation", "main", "contentinfo"):
        expect(page.get_by_role(landmark)).to_have_count(1)
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    # When a queue is created from the keyboard
    page.get_by_label("Queue name").fill(name)
    page.get_by_label("Queue name").press("Enter")

    # Then it is listed with nothing in it
    expect(page.get_by_role("status")).to_have_text(f"Created queue {name}.")
    row = page.locator("#queue-table tbody tr", has=page.get_by_role("link", name=name, exact=True))
    expect(row.locator("td").nth(1)).to_have_text("0")

    # When three messages are sent from the queue's page
    row.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_focused()
    queue_page = page.get_by_role("region", name=name, exact=True)
    for body in ("first message", "second message", "third message"):
        queue_page.get_by_label("Body").fill(body)
        queue_page.get_by_label("Attributes").fill("tenant=acme, region=eu")
        queue_page.get_by_role("button", name="Send message").click()
        expect(page.get_by_role("status")).to_contain_text("Sent message")

    # Then the count shows them and browsing lists them, with their attributes
    visible = page.locator('#queue-counts dd[data-stat="visible"]')
    expect(visible).to_have_text("3")
    messages = page.locator("#browse-table tbody tr")
    expect(messages).to_have_count(3)
    first = messages.filter(has_text="first message")
    expect(first).to_contain_text("tenant=acme")
    expect(first).to_contain_text("visible")
    _screenshot(page, "queue", capsys)

    # When one message is deleted (confirmed) and another moved to a second queue
    messages.filter(has_text="first message").get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete message").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted message")
    expect(messages).to_have_count(2)
    messages.filter(has_text="second message").get_by_role("button", name="Move").click()
    page.get_by_role("dialog").get_by_label("Target queue").fill(archive)
    page.get_by_role("dialog").get_by_role("button", name="Move").click()
    expect(page.get_by_role("status")).to_contain_text(f"to {archive}")
    expect(visible).to_have_text("1")
    expect(messages).to_have_count(1)

    # Then the queue list shows the new counts
    page.get_by_role("navigation").get_by_role("link", name="Queues").click()
    expect(row.locator("td").nth(1)).to_have_text("1")
    archive_row = page.locator(
        "#queue-table tbody tr", has=page.get_by_role("link", name=archive, exact=True)
    )
    expect(archive_row.locator("td").nth(1)).to_have_text("1")
    _screenshot(page, "queues", capsys)

    # When the queue is purged, confirming with the keyboard (Cancel has the focus first)
    row.get_by_role("link", name=name, exact=True).click()
    page.get_by_role("button", name="Purge…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_have_text(f"Purge {name}?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    _screenshot(page, "purge-dialog", capsys)
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Purge")).to_be_focused()
    page.keyboard.press("Enter")

    # Then the queue is empty
    expect(page.get_by_role("status")).to_have_text(f"Purged 1 message from {name}.")
    expect(visible).to_have_text("0")
    expect(page.locator("#browse-status")).to_have_text("No messages.")
    page.get_by_role("navigation").get_by_role("link", name="Queues").click()
    expect(row.locator("td").nth(1)).to_have_text("0")


def test_a_topic_tail_shows_what_is_published_over_http(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    topic = f"console.t{uuid.uuid4().hex[:8]}"

    # Given the topics page (the sign-in view keeps the route), tailing `<topic>.>` on the dev
    # server's WebSocket API, which gets the token in its URL
    page.goto(f"{mqless_dev.http_url}/console#/topics")
    _sign_in(page, dev_token)
    topics = page.get_by_role("region", name="Topics")
    url = topics.get_by_label("WebSocket URL")
    expect(url).to_have_value(_starts_with("ws://127.0.0.1:"))
    url.fill(mqless_dev.ws_url)  # the dev server runs on a free port, not 8081
    topics.get_by_label("Topic or pattern").fill(f"{topic}.>")
    topics.get_by_role("button", name="Start tail").click()
    expect(page.locator("#tail-status")).to_have_text(f"Tailing {topic}.> on {mqless_dev.ws_url}.")

    # When a message is published over HTTP from the page
    topics.get_by_label("Topic", exact=True).fill(f"{topic}.orders")
    topics.get_by_label("Body").fill('{"order": 42}')
    topics.get_by_label("Attributes").fill("region=eu")
    topics.get_by_role("button", name="Publish over HTTP").click()
    expect(page.locator("#notice")).to_contain_text(f"to {topic}.orders")

    # Then the tail shows it, with its topic and attributes
    entry = page.locator("#tail-log li").first
    expect(entry).to_contain_text('{"order": 42}')
    expect(entry).to_contain_text(f"{topic}.orders")
    expect(entry).to_contain_text("region=eu")
    expect(page.locator("#topic-table")).to_contain_text(f"{topic}.>")
    _screenshot(page, "topics", capsys)

    # And the tail's WebSocket is listed among the connections, as the token's principal
    page.get_by_role("navigation").get_by_role("link", name="Connections").click()
    connection = page.locator("#connection-table tbody tr").first
    expect(connection).to_contain_text("JSON")
    expect(connection.locator("td").nth(1)).to_have_text("dev")
    _screenshot(page, "connections", capsys)


def _starts_with(prefix: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(prefix))


def test_the_redrive_panel_is_shown_on_dead_letter_queues_only(
    mqless_dev: DevServer, page: Page, dev_token: str
) -> None:
    from playwright.sync_api import expect

    # Given a live queue (its dead-letter queue is <name>.dlq) holding a dead letter, and a
    # queue `parking` that another queue names as its dead-letter queue
    name = f"console-dl-{uuid.uuid4().hex[:8]}"
    parking = f"{name}-parking"
    admin = {"authorization": f"Bearer {dev_token}"}
    with httpx.Client(base_url=mqless_dev.http_url, timeout=30, headers=admin) as client:
        assert client.put(f"/queues/{name}", json={"max_receive_count": 1}).status_code == 201
        assert client.put(f"/queues/{parking}", json={}).status_code == 201
        other = {"dead_letter_queue": parking}
        assert client.put(f"/queues/{name}-other", json=other).status_code == 201
        client.post(f"/queues/{name}/messages", json={"body": "poison"}).raise_for_status()
        # (a sent message is receivable once the stream has indexed it: wait for it)
        first = client.post(
            f"/queues/{name}/receive", json={"visibility_timeout": 0, "wait_seconds": 5}
        )
        assert len(first.raise_for_status().json()["messages"]) == 1
        # over its limit at the next receive: dead-lettered to <name>.dlq
        client.post(f"/queues/{name}/receive", json={}).raise_for_status()
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)
    redrive = page.get_by_role("button", name="Redrive")

    # When the live queue's page is opened
    page.goto(f"{mqless_dev.http_url}/console#/queues/{name}")
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    # Then it offers no redrive (the other actions are there)
    expect(page.get_by_role("button", name="Purge…")).to_be_visible()
    expect(redrive).to_be_hidden()

    # When the queue that another queue names as its dead-letter queue is opened
    page.goto(f"{mqless_dev.http_url}/console#/queues/{parking}")
    expect(page.get_by_role("heading", level=1, name=parking)).to_be_visible()
    # Then it offers redrive
    expect(redrive).to_be_visible()

    # When the default dead-letter queue is opened and redriven from the page
    page.goto(f"{mqless_dev.http_url}/console#/queues/{name}.dlq")
    expect(page.get_by_role("heading", level=1, name=f"{name}.dlq")).to_be_visible()
    redrive.click()
    # Then its dead letter goes back to the live queue
    expect(page.get_by_role("status")).to_have_text("Redrove 1 message.")
    page.goto(f"{mqless_dev.http_url}/console#/queues/{name}")
    expect(page.locator('#queue-counts dd[data-stat="visible"]')).to_have_text("1")
    expect(redrive).to_be_hidden()


def test_under_mqless_dev_the_console_shows_what_the_work_would_cost_on_aws(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given two messages sent to a queue over HTTP
    queue = f"billed-{uuid.uuid4().hex[:8]}"
    for body in ("one", "two"):
        sent = httpx.post(
            f"{mqless_dev.http_url}/queues/{queue}/messages",
            json={"body": body},
            headers={"Authorization": f"Bearer {dev_token}"},
        )
        assert sent.status_code == 201, sent.text

    # When the console is opened
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)

    # Then its bill panel shows the messages sent so far and a price per million beside SQS's
    bill = page.get_by_role("region", name=re.compile("^Bill"))
    expect(bill).to_be_visible()
    sent_count = bill.locator('[data-bill="sent"]')
    expect(sent_count).to_have_text(re.compile(r"^\d+$"))
    assert int(sent_count.inner_text()) >= 2
    expect(bill.locator('[data-bill="per_million"]')).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
    expect(bill.locator('[data-bill="sqs"]')).to_have_text("$1.20")
    _screenshot(page, "bill", capsys)


def test_where_there_is_no_local_bill_the_panel_stays_hidden(
    mqless_dev: DevServer,
    page: Page,
    dev_token: str,
    allowed_console_errors: list[re.Pattern[str]],
) -> None:
    from playwright.sync_api import expect

    # Given an API without the local-only route, as a deployed one answers it (the browser
    # logs that 404 as an error)
    allowed_console_errors.append(re.compile("status of 404"))
    page.route(
        "**/_local/bill",
        lambda route: route.fulfill(
            status=404, content_type="application/json", body='{"message":"Not Found"}'
        ),
    )

    # When the console is opened
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)

    # Then it works as ever and shows no bill
    expect(page.get_by_role("heading", level=1, name="Queues")).to_be_visible()
    expect(page.locator("#bill")).to_be_hidden()


def _admin(mqless_dev: DevServer, dev_token: str) -> httpx.Client:
    return httpx.Client(
        base_url=mqless_dev.http_url,
        timeout=30,
        headers={"authorization": f"Bearer {dev_token}"},
    )


def _no_sideways_scroll(page: Page) -> None:
    """Neither the page nor a table scrolls sideways at the window's width."""
    overflowing = page.evaluate(
        """() => [document.documentElement, ...document.querySelectorAll(".table-wrap")]
            .filter((e) => e.offsetParent !== null || e === document.documentElement)
            .filter((e) => e.scrollWidth > e.clientWidth + 1)
            .map((e) => `${e.id || e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""
    )
    assert overflowing == []


def _listed(page: Page) -> list[str]:
    """The queue table's rows, top to bottom, by queue name."""
    names: list[str] = page.evaluate(
        """() => [...document.querySelectorAll("#queue-table tbody tr")]
            .map((r) => r.dataset.name)"""
    )
    return names


def _dead_letter_one(client: httpx.Client, name: str) -> None:
    """Send `name` one message and fail it past max_receive_count 1: it goes to <name>.dlq."""
    assert client.put(f"/queues/{name}", json={"max_receive_count": 1}).status_code == 201
    client.post(f"/queues/{name}/messages", json={"body": "poison"}).raise_for_status()
    first = client.post(
        f"/queues/{name}/receive", json={"visibility_timeout": 0, "wait_seconds": 5}
    )
    assert len(first.raise_for_status().json()["messages"]) == 1
    client.post(f"/queues/{name}/receive", json={}).raise_for_status()


def test_the_queue_list_is_searched_sorted_filtered_and_fits_a_laptop_screen(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given queues sharing a prefix: one holding a dead letter (its DLQ beside it), one
    # FIFO queue holding two messages, and one with a long name
    prefix = f"list{uuid.uuid4().hex[:6]}"
    source, fifo = f"{prefix}-orders", f"{prefix}-payments.fifo"
    long_name = f"{prefix}-" + "a-rather-long-queue-name-for-an-integration" * 1
    with _admin(mqless_dev, dev_token) as client:
        _dead_letter_one(client, source)
        for n in ("1", "2"):
            sent = client.post(f"/queues/{fifo}/messages", json={"body": n, "group_id": "g"})
            assert sent.status_code == 201, sent.text
        assert client.put(f"/queues/{long_name}", json={}).status_code == 201
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)
    rows = page.locator("#queue-table tbody tr")

    # When the list is searched for the prefix
    page.get_by_label("Search").fill(prefix)

    # Then only those queues are listed, by name, each dead-letter queue right under its source
    expect(rows).to_have_count(6)
    assert _listed(page) == [
        long_name,
        f"{long_name}.dlq",
        source,
        f"{source}.dlq",
        fifo,
        f"{prefix}-payments.dlq.fifo",
    ]
    expect(rows.nth(3).locator("th")).to_contain_text(f"dead-letter queue of {source}")
    # and the overall charts are drawn above it
    overview = page.get_by_role("region", name=re.compile("^Last hour, every queue"))
    expect(overview.get_by_role("img", name="Messages per second")).to_be_visible()
    expect(overview.get_by_role("img", name="Depth")).to_be_visible()
    # and at a laptop's 1280 px nothing scrolls sideways
    _no_sideways_scroll(page)
    _screenshot(page, "queues-overview", capsys)

    # When it is sorted by visible messages, most first
    page.get_by_role("button", name="Visible").click()
    # Then the FIFO queue with two comes first, and each DLQ still follows its source
    expect(page.locator("#queue-table th[data-sort=visible]")).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(rows.nth(0).locator("th")).to_contain_text(fifo)
    listed = _listed(page)
    assert listed[:3] == [fifo, f"{prefix}-payments.dlq.fifo", source]
    assert listed[listed.index(source) + 1] == f"{source}.dlq"

    # When only the queues with dead letters waiting are shown
    page.get_by_label("Show").select_option("waiting")
    # Then the source and its DLQ are listed, and the list says how many it hides
    expect(rows).to_have_count(2)
    assert _listed(page) == [source, f"{source}.dlq"]
    expect(page.locator("#queues-shown")).to_contain_text("Showing 2 of")
    _screenshot(page, "queues-filtered", capsys)

    # When dead-letter queues only are shown, each links back to its source
    page.get_by_label("Show").select_option("dlq")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text=f"{source}.dlq")).to_contain_text(f"dead letters of {source}")

    # When FIFO queues only are shown, the FIFO ones alone are
    page.get_by_label("Show").select_option("fifo")
    expect(rows).to_have_count(2)
    assert _listed(page) == [fifo, f"{prefix}-payments.dlq.fifo"]


def test_the_queue_list_asks_for_the_page_it_shows_and_pages_on(
    mqless_dev: DevServer, page: Page, dev_token: str
) -> None:
    from playwright.sync_api import expect

    # Given 27 queues sharing a prefix (the console shows 25 a page)
    prefix = f"paged{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i:02d}" for i in range(27)]
    with _admin(mqless_dev, dev_token) as client:
        for name in names:
            client.put(f"/queues/{name}", json={"max_receive_count": None}).raise_for_status()

    # When the queue list is searched for them
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)
    # (the module's server may hold no other queue: the unsearched list can look the same,
    # so the search's own request is waited for, not the list alone)
    with page.expect_request(lambda r: f"/stats?limit=25&name={prefix}" in r.url):
        page.get_by_label("Search").fill(prefix)

    # Then the console asked the API for that page only; the first 25 are listed, and the
    # page says which of how many
    pager = page.get_by_role("group", name="Pages of queues")
    expect(pager).to_contain_text("Queues 1–25 of 27")
    assert _listed(page) == names[:25]

    # When the next page is shown
    pager.get_by_role("button", name="Next page").click()

    # Then the last two are listed, with no next page; and the previous one comes back
    expect(pager).to_contain_text("Queues 26–27 of 27")
    assert _listed(page) == names[25:]
    expect(pager.get_by_role("button", name="Next page")).to_be_hidden()
    pager.get_by_role("button", name="Previous page").click()
    expect(pager).to_contain_text("Queues 1–25 of 27")


def test_a_queue_is_created_with_settings_which_its_page_shows_and_changes(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given the console, signed in with the dev token
    name = f"settings-{uuid.uuid4().hex[:8]}"
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)

    # When a queue is created with a visibility timeout of 45 s and 3 receives
    create = page.locator("#create-queue")
    create.get_by_label("Queue name").fill(name)
    create.locator("summary").click()
    create.get_by_label("Visibility timeout (s)").fill("45")
    create.get_by_label("Max receives").fill("3")
    create.get_by_role("button", name="Create queue").click()
    expect(page.get_by_role("status")).to_have_text(f"Created queue {name}.")
    # Then the form is empty again
    expect(create.get_by_label("Queue name")).to_have_value("")
    expect(create.get_by_label("Visibility timeout (s)")).to_have_value("")

    # When its page is opened, it shows those settings
    page.goto(f"{mqless_dev.http_url}/console#/queues/{name}")
    settings = page.locator("#settings-form")
    expect(settings.get_by_label("Visibility timeout (s)")).to_have_value("45")
    expect(settings.get_by_label("Max receives")).to_have_value("3")
    expect(settings.get_by_label("Dead-letter queue")).to_have_value(f"{name}.dlq")
    expect(page.locator("#settings-dates")).to_contain_text("Created")
    _screenshot(page, "queue-settings", capsys)

    # When the visibility timeout is changed to 60 and saved
    settings.get_by_label("Visibility timeout (s)").fill("60")
    settings.get_by_role("button", name="Save settings").click()

    # Then only that setting changed: the receive limit kept its value
    expect(page.get_by_role("status")).to_have_text(f"Saved visibility_timeout of {name}.")
    with _admin(mqless_dev, dev_token) as client:
        stored = client.get(f"/queues/{name}").json()
    assert (stored["visibility_timeout"], stored["max_receive_count"]) == (60, 3)
    expect(settings.get_by_label("Visibility timeout (s)")).to_have_value("60")


def test_a_queues_page_charts_its_last_hour_and_shows_a_messages_every_detail(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given a queue sent two messages, one with headers and attributes, one received and acked
    name = f"detail-{uuid.uuid4().hex[:8]}"
    body = '{"order": 42, "lines": ["' + "x" * 200 + '"]}'
    # (the chart's latest point is this minute's: sending in a minute's last seconds could let
    # the page open in the next, whose rate is 0; CI saw that once. From send to chart takes
    # ~2 s, 5 s under load: 15 s to spare is enough, and waits a quarter as long as 30 did)
    if (second := time.time() % 60) > 45:
        time.sleep(60 - second)
    with _admin(mqless_dev, dev_token) as client:
        sent = client.post(
            f"/queues/{name}/messages",
            json={
                "body": body,
                "attributes": {"tenant": "acme", "region": "eu"},
                "correlation_id": "corr-7",
                "reply_to": "replies",
                "content_type": "application/json",
            },
        )
        assert sent.status_code == 201, sent.text
        client.post(f"/queues/{name}/messages", json={"body": "second"}).raise_for_status()
        # (each is receivable once the stream has indexed it: receive until both came)
        leased: dict[str, str] = {}
        for _ in range(5):
            got = client.post(
                f"/queues/{name}/receive", json={"max_messages": 10, "wait_seconds": 2}
            ).json()["messages"]
            leased.update({m["body"]: m["receipt"] for m in got})
            if len(leased) == 2:
                break
        acked = client.post(f"/queues/{name}/ack", json={"receipts": [leased["second"]]})
        assert acked.status_code == 200, acked.text

    # When its page is opened
    page.goto(f"{mqless_dev.http_url}/console#/queues/{name}")
    _sign_in(page, dev_token)

    # Then the last hour is charted, with the totals since the queue was created
    history = page.get_by_role("region", name="Last hour")
    expect(history.get_by_role("img", name="Messages per second")).to_be_visible()
    expect(history.get_by_role("img", name="Depth")).to_be_visible()
    expect(history.locator("dd").nth(0)).to_have_text("2")  # enqueued
    expect(history.locator("dd").nth(2)).to_have_text("1")  # acked
    expect(history).to_contain_text("Enqueued 0.03")  # this minute, per second
    _screenshot(page, "queue-history", capsys)

    # When the message's details are opened
    row = page.locator("#browse-table tbody tr").filter(has_text="order")
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Details").click()

    # Then every header and attribute, the full body and the receive count are shown, and
    # its date with its time
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", level=2)).to_have_text(
        f"Message {sent.json()['message_id']}"
    )
    for text in ("corr-7", "replies", "application/json", "tenant", "acme", "region"):
        expect(dialog).to_contain_text(text)
    expect(dialog.locator("#message-body")).to_have_text(body)
    expect(dialog.locator("dd").filter(has_text="in flight")).to_have_count(1)
    year = str(time.gmtime().tm_year)
    expect(dialog.locator("#message-fields")).to_contain_text(year)
    _screenshot(page, "message-detail", capsys)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # and the list shows dates too, not only times
    expect(row.locator("td").nth(1)).to_contain_text(year)


def test_what_is_typed_on_one_queues_page_is_not_on_the_next(
    mqless_dev: DevServer, page: Page, dev_token: str
) -> None:
    from playwright.sync_api import expect

    first, second = (f"forms-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with _admin(mqless_dev, dev_token) as client:
        for name in (first, second):
            assert client.put(f"/queues/{name}", json={}).status_code == 201
    page.goto(f"{mqless_dev.http_url}/console#/queues/{first}")
    _sign_in(page, dev_token)

    # Given a body and attributes typed (not sent) on one queue's page
    expect(page.get_by_role("heading", level=1, name=first)).to_be_visible()
    send = page.locator("#send-form")
    send.get_by_label("Body").fill("meant for the first queue")
    send.get_by_label("Attributes").fill("tenant=acme")

    # When another queue's page is opened
    page.goto(f"{mqless_dev.http_url}/console#/queues/{second}")
    expect(page.get_by_role("heading", level=1, name=second)).to_be_visible()

    # Then its form is empty
    expect(send.get_by_label("Body")).to_have_value("")
    expect(send.get_by_label("Attributes")).to_have_value("")


def test_a_dead_letter_queue_links_its_source_and_its_receive_count_agrees_with_the_reason(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given a message dead-lettered after one delivery, then received once from the DLQ
    name = f"agree-{uuid.uuid4().hex[:8]}"
    with _admin(mqless_dev, dev_token) as client:
        _dead_letter_one(client, name)
        again = client.post(
            f"/queues/{name}.dlq/receive", json={"visibility_timeout": 0, "wait_seconds": 5}
        )
        assert len(again.raise_for_status().json()["messages"]) == 1

    # When the dead-letter queue's page is opened
    page.goto(f"{mqless_dev.http_url}/console#/queues/{name}.dlq")
    _sign_in(page, dev_token)

    # Then it names its source, offers redrive, and its receive count explains itself
    expect(page.locator("#queue-dlq-of")).to_have_text(f"Dead-letter queue of {name}.")
    expect(page.get_by_role("button", name="Redrive")).to_be_visible()
    row = page.locator("#browse-table tbody tr").first
    expect(row).to_contain_text("max_receive_count exceeded (1 deliveries)")
    expect(row.locator("td").nth(2)).to_have_text(f"2 (1 in {name}, 1 here)")
    # and its chart counts the dead letter that arrived as enqueued, saying from where
    history = page.get_by_role("region", name="Last hour")
    expect(history.locator("dd").nth(0)).to_have_text("1")
    expect(history).to_contain_text(f"Enqueued includes the dead letters arriving from {name}.")
    _screenshot(page, "dead-letters", capsys)
    # and its source's page links to it, with no redrive
    page.locator("#queue-dlq-of").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    expect(page.get_by_role("button", name="Redrive")).to_be_hidden()


def test_topics_show_publish_counts_and_durable_subscriptions_made_from_the_console(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given the console's topics page, signed in with the dev token
    topic = f"shop.t{uuid.uuid4().hex[:8]}"
    queue = f"sub-{uuid.uuid4().hex[:8]}"
    page.goto(f"{mqless_dev.http_url}/console#/topics")
    _sign_in(page, dev_token)
    expect(page.get_by_role("region", name="Topics")).to_be_visible()

    # When a durable subscription of `<topic>.>` into a queue is created from the page
    form = page.locator("#subscription-form")
    form.get_by_label("Pattern to subscribe to").fill(f"{topic}.>")
    form.get_by_label("Subscription name").fill("archive")
    form.get_by_label("Queue").fill(queue)
    form.get_by_label("Filter policy").fill('{"region": ["eu"]}')
    form.get_by_role("button", name="Create subscription").click()

    # Then it is listed under its pattern, and the form is empty again
    notice = page.locator("#notice")
    expect(notice).to_have_text(f"Subscription archive: {topic}.> → {queue} (queue created).")
    listed = page.locator("#topic-table tbody tr").filter(has_text=f"{topic}.>")
    expect(listed).to_contain_text(f"archive → {queue}")
    expect(form.get_by_label("Queue")).to_have_value("")

    # When two messages are published to a matching topic and the page is opened again
    with _admin(mqless_dev, dev_token) as client:
        for region in ("eu", "us"):
            published = client.post(
                f"/topics/{topic}.orders/messages",
                json={"body": region, "attributes": {"region": region}},
            )
            assert published.status_code == 201, published.text
    page.goto(f"{mqless_dev.http_url}/console#/")
    page.goto(f"{mqless_dev.http_url}/console#/topics")

    # Then the topic's publish count is 2
    count = page.locator("#published-table tbody tr").filter(has_text=f"{topic}.orders")
    expect(count.locator("td")).to_have_text("2")
    _screenshot(page, "topics-subscriptions", capsys)

    # When the subscription is deleted (confirmed)
    listed.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete subscription").click()
    # Then it is gone
    expect(notice).to_have_text(f"Deleted subscription archive of {topic}.>.")
    expect(page.locator("#topic-table")).not_to_contain_text(f"{topic}.>")


def test_admins_manage_principals_grants_and_keys_from_the_console(
    mqless_dev: DevServer,
    page: Page,
    dev_token: str,
    capsys: pytest.CaptureFixture[str],
    allowed_console_errors: list[re.Pattern[str]],
) -> None:
    from playwright.sync_api import expect

    allowed_console_errors.append(REFUSED)
    principal = f"svc-{uuid.uuid4().hex[:8]}"
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, dev_token)

    # Given an admin: the Access section is offered
    nav = page.get_by_role("navigation")
    nav.get_by_role("link", name="Access").click()
    expect(page.get_by_role("heading", level=1, name="Access")).to_be_focused()

    # When a principal is created with two grants
    page.get_by_label("Principal", exact=True).fill(principal)
    page.get_by_label("Grants").fill(
        f"{principal}.>: send, receive, create\n{principal}.ops: admin"
    )
    page.get_by_role("button", name="Save principal").click()

    # Then it is listed with them
    expect(page.get_by_role("status")).to_contain_text(f"Saved principal {principal}")
    row = page.locator("#principal-table tbody tr").filter(has_text=principal)
    expect(row).to_contain_text(f"{principal}.>: send, receive, create")

    # When a key is issued for it
    row.get_by_role("button", name="Issue key").click()

    # Then its token is shown once, and the key is listed
    issued = page.get_by_role("region", name="New API key")
    expect(issued).to_be_visible()
    token = page.locator("#issued-key-token").inner_text()
    assert token.startswith("mqk_")
    key_id = page.locator("#issued-key-id").inner_text()
    expect(row).to_contain_text(key_id)
    _screenshot(page, "access", capsys)
    page.get_by_role("button", name="Done").click()
    expect(issued).to_be_hidden()
    # and the key works
    with httpx.Client(base_url=mqless_dev.http_url, timeout=10) as client:
        works = client.post(
            f"/queues/{principal}.jobs/messages",
            json={"body": "x"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert works.status_code == 201, works.text

    # When the key is revoked, then the principal deleted (each confirmed)
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_have_text(f"Revoked key {key_id}.")
    expect(row).not_to_contain_text(key_id)
    row.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete principal").click()

    # Then it is gone
    expect(page.get_by_role("status")).to_have_text(f"Deleted principal {principal}.")
    expect(page.locator("#principal-table")).not_to_contain_text(principal)


def test_the_access_section_is_not_offered_to_a_principal_that_is_no_admin(
    mqless_dev: DevServer, page: Page, dev_token: str
) -> None:
    from playwright.sync_api import expect

    # Given a principal that may only send and receive on its own queues
    principal = f"limited-{uuid.uuid4().hex[:8]}"
    with _admin(mqless_dev, dev_token) as client:
        grants = [{"pattern": f"{principal}.>", "actions": ["send", "receive"]}]
        assert client.put(f"/access/principals/{principal}", json={"grants": grants}).is_success
        token = client.post(f"/access/principals/{principal}/keys", json={}).json()["token"]

    # When it signs in
    page.goto(f"{mqless_dev.http_url}/console")
    _sign_in(page, token)

    # Then the queue list works and no Access section is offered
    expect(page.locator("#queues-updated")).to_contain_text("Updated")
    expect(page.get_by_role("navigation").get_by_role("link", name="Access")).to_be_hidden()


def test_connections_show_subscriptions_and_connected_since_and_one_can_be_closed(
    mqless_dev: DevServer, page: Page, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    # Given a WebSocket client (outside the page) subscribed to a topic pattern and a queue
    from websockets.sync.client import connect

    topic = f"conn.t{uuid.uuid4().hex[:8]}"
    queue = f"conn-{uuid.uuid4().hex[:8]}"
    url = f"{mqless_dev.ws_url}?access_token={dev_token}"
    with connect(url) as socket:
        socket.send(
            json.dumps({"action": "subscribe", "destination": f"/topic/{topic}.>", "id": "live"})
        )
        assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"
        socket.send(
            json.dumps({"action": "subscribe", "destination": f"/queue/{queue}", "id": "work"})
        )
        assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"

        # When the connections page is opened
        page.goto(f"{mqless_dev.http_url}/console#/connections")
        _sign_in(page, dev_token)

        # Then the connection is listed with its principal, its subscriptions by name and
        # when it connected (a date, not only a time)
        row = page.locator("#connection-table tbody tr").filter(has_text=f"/topic/{topic}.>")
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(1)).to_have_text("dev")
        expect(row.locator("td").nth(2)).to_contain_text(queue)
        expect(row.locator("td").nth(3)).to_contain_text(str(time.gmtime().tm_year))
        _no_sideways_scroll(page)
        _screenshot(page, "connections-detail", capsys)

        # When it is closed from the page (confirmed)
        row.get_by_role("button", name="Close…").click()
        page.get_by_role("dialog").get_by_role("button", name="Close connection").click()

        # Then it is listed no more, and the client's socket is closed
        expect(page.get_by_role("status")).to_contain_text("Closed connection")
        expect(row).to_have_count(0)
        with pytest.raises(Exception, match="(?i)close|1000|1001|1006|1005"):
            for _ in range(10):
                socket.recv(timeout=5)
