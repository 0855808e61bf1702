"""The web console in a real browser: headless Chromium (Debian's) driven by Playwright.

Against `mqless dev` (authorizers on): sign in with the dev token, manage a queue from the
page, and tail a topic over the WebSocket API. Screenshots go to test-output/console-*.png for
a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, DevServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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
