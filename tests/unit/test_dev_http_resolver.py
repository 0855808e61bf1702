"""`mqless dev` runs the HTTP function's one Powertools resolver on a thread per request."""

from __future__ import annotations

import json
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from mqless_cli.local.http_resolver_threads import PerThreadResolver, resolve_on_threads
from tests.lambda_support import FakeLambdaContext, http_event

NAMES = [f"n{i}" for i in range(8)] * 8


def _fresh_api(monkeypatch: pytest.MonkeyPatch) -> APIGatewayHttpResolver:
    """A resolver built as the layer builds its own (validation on), with one route never
    called yet, standing where resolve_on_threads looks for the HTTP function's."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.get("/items/<name>")
    def item(name: str) -> dict[str, Any]:
        return {"name": name}

    monkeypatch.setitem(sys.modules, "mqless.transports.http.api", types.SimpleNamespace(app=app))
    return app


def _get(app: APIGatewayHttpResolver, name: str) -> tuple[int, str]:
    reply = app.resolve(http_event("GET", f"/items/{name}", authorizer=None), FakeLambdaContext())
    body = json.loads(reply["body"]) if reply["statusCode"] == 200 else {}
    return reply["statusCode"], body.get("name", "")


@pytest.mark.parametrize("attempt", range(12))
def test_a_routes_first_calls_on_many_threads_at_once_each_answer_their_own(
    monkeypatch: pytest.MonkeyPatch, attempt: int
) -> None:
    """Given the HTTP function's resolver, made per-thread as `mqless dev` makes it, and a
    route nobody has called yet (a fresh one each attempt: the race is not always lost)
    When 16 threads make its first 64 calls at once, switching as often as they can
    Then every call is answered 200 with its own path's name (Powertools builds a route's
    middleware on its first call: built twice at once, the frames wrap each other: a 500)
    """
    app = _fresh_api(monkeypatch)
    resolve_on_threads()
    assert isinstance(app, PerThreadResolver)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            replies = list(pool.map(lambda name: _get(app, name), NAMES))
    finally:
        sys.setswitchinterval(interval)
    assert replies == [(200, name) for name in NAMES]
