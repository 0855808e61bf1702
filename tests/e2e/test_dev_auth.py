"""`mqless dev` authenticates as the deployed stack does: its authorizer runs in front of
every route but the public ones, with the dev token it prints at start; `--no-auth` turns
that off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import ROOT, DevServer


def handshake_status(url: str, **kwargs: Any) -> int:
    """101 if the WebSocket handshake succeeded, else the HTTP status it was refused with."""

    async def attempt() -> int:
        try:
            async with websockets.connect(url, **kwargs):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(attempt())


def test_the_dev_token_is_printed_with_how_to_use_it(mqless_dev: DevServer) -> None:
    # Given a started `mqless dev`
    # When its output is read
    # Then it printed an API key as its dev token, and a line saying how to use it
    assert mqless_dev.token is not None and mqless_dev.token.startswith("mqk_")
    mqless_dev.wait_for_output(f"export MQLESS_TOKEN={mqless_dev.token}")


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "Unauthorized"),
        ({"Authorization": "Bearer mqk_not-a-real-key"}, 403, "Forbidden"),
        ({"Authorization": "Basic ZGV2OmRldg=="}, 403, "Forbidden"),
    ],
    ids=["no-token", "wrong-token", "not-a-bearer-token"],
)
def test_a_request_without_a_valid_token_is_refused_by_the_gateway(
    mqless_dev: DevServer, headers: dict[str, str], status: int, message: str
) -> None:
    # Given `mqless dev`, whose routes need its dev token
    # When a protected route is called without the dev token
    response = httpx.get(f"{mqless_dev.http_url}/queues", headers=headers, timeout=30)
    # Then API Gateway's answer comes back: 401 with no Authorization, else 403
    assert response.status_code == status
    assert response.json() == {"message": message}


def test_the_dev_token_lets_a_request_in_and_the_console_shows_the_authorizer(
    mqless_dev: DevServer,
) -> None:
    # Given `mqless dev` and the dev token it printed
    # When a protected route is called with the dev token
    response = httpx.get(
        f"{mqless_dev.http_url}/queues", headers=mqless_dev.auth_headers(), timeout=30
    )
    # Then it answers, and the console shows the authorizer letting `dev` in
    assert response.status_code == 200, response.text
    line = mqless_dev.wait_for_output("authorize GET /queues -> allow dev")
    assert "AuthorizerFunction" in line


@pytest.mark.parametrize("path", ["/console", "/console/app.js", "/openapi.json"])
def test_the_console_and_the_api_description_need_no_token(
    mqless_dev: DevServer, path: str
) -> None:
    # Given `mqless dev`: the console, its files and /openapi.json are public routes
    # When a public route is called without a token
    response = httpx.get(f"{mqless_dev.http_url}{path}", timeout=30)
    # Then it answers
    assert response.status_code == 200, response.text


def test_a_websocket_handshake_without_a_token_is_refused(mqless_dev: DevServer) -> None:
    # Given `mqless dev`, whose WebSocket $connect has an authorizer
    # When a client opens a WebSocket with no token and no STOMP subprotocol
    # Then the handshake is refused with 401
    assert handshake_status(mqless_dev.ws_url) == 401


def test_a_websocket_handshake_with_a_wrong_token_is_refused(mqless_dev: DevServer) -> None:
    # Given `mqless dev`, whose WebSocket $connect has an authorizer
    # When a client opens a WebSocket with a token that is no valid key
    # Then the handshake is refused with 403
    assert handshake_status(f"{mqless_dev.ws_url}/?access_token=mqk_nope") == 403


@pytest.mark.parametrize("where", ["query", "header"])
def test_a_websocket_handshake_with_the_dev_token_is_accepted(
    mqless_dev: DevServer, where: str
) -> None:
    # Given `mqless dev` and the dev token it printed
    # When a client opens a WebSocket with the dev token in the URL or a header
    if where == "query":
        status = handshake_status(mqless_dev.authed_ws_url)
    else:
        status = handshake_status(mqless_dev.ws_url, additional_headers=mqless_dev.auth_headers())
    # Then the handshake succeeds
    assert status == 101


def test_a_stomp_client_without_a_token_connects_and_authenticates_with_its_passcode(
    mqless_dev: DevServer,
) -> None:
    async def scenario() -> tuple[str | None, str]:
        # Given a client offering STOMP 1.2, with no token in its handshake
        async with websockets.connect(
            mqless_dev.ws_url,
            subprotocols=["v12.stomp"],  # type: ignore[list-item]
        ) as ws:
            # When it sends CONNECT with the dev token as its passcode
            await ws.send(
                f"CONNECT\naccept-version:1.2\nhost:mqless\npasscode:{mqless_dev.token}\n\n\x00"
            )
            reply = await asyncio.wait_for(ws.recv(), 10)
            return ws.subprotocol, str(reply)

    subprotocol, reply = asyncio.run(scenario())
    # Then the handshake was let through and CONNECT is answered with CONNECTED
    assert subprotocol == "v12.stomp"
    assert reply.startswith("CONNECTED\n"), reply


def test_with_no_auth_everything_is_let_through(
    dev_server: Callable[..., DevServer], mqless_dev: DevServer
) -> None:
    # Given `mqless dev --no-auth`
    server = dev_server(ROOT / "template.yaml", "--no-auth")
    # Then it says so and prints no token
    server.wait_for_output("auth           off (--no-auth)")
    assert server.token is None
    # When a queue is made and used over HTTP, and a WebSocket opened, all without a token
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        created = http.put("/queues/open", json={})
        sent = http.post("/queues/open/messages", json={"body": "hi"})
    status = handshake_status(server.ws_url)
    # Then all of it is let in, where a server with authentication refuses it
    assert created.status_code == 201, created.text
    assert sent.status_code == 201, sent.text
    assert status == 101
    refused = httpx.put(f"{mqless_dev.http_url}/queues/open", json={}, timeout=30)
    assert refused.status_code == 401
