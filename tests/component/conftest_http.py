"""Drive the HTTP function the way API Gateway does: load its handler by path, send v2 events.

Plain helpers, not fixtures: each test module builds its own fixture from them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mqless_cli.cfn import HttpRoute
from mqless_cli.local.http_resolver_threads import resolve_on_threads
from tests.lambda_support import FakeLambdaContext, http_event

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py by path under a unique module name, as `sam local` would."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"mqless_function_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Reply:
    """What a curl user sees: status, headers and the body (parsed when it is JSON)."""

    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    def is_problem(self, status: int, error: str) -> bool:
        """The reply is a JSON problem with this status and error code."""
        body = self.json
        return (
            self.status == status
            and self.headers.get("Content-Type") == "application/json"
            and body.get("error") == error
            and isinstance(body.get("message"), str)
            and bool(body["message"])
        )


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


class HttpApi:
    """Sends requests through the HTTP function's lambda_handler with routes from the template."""

    def __init__(self, routes: list[HttpRoute]) -> None:
        self.handler = load_function("http_api").lambda_handler
        resolve_on_threads()  # as `mqless dev` runs it: tests overlap requests on threads
        self._routes = [(r.method, r.path, _pattern(r.path)) for r in routes]

    def route_of(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        """The template route API Gateway would match, and its path parameters."""
        for route_method, route_path, pattern in self._routes:
            match = pattern.match(path)
            if match and route_method in (method, "ANY"):
                return route_path, match.groupdict()
        return path, {}  # no template route: API Gateway's $default would carry it

    def invoke(self, event: dict[str, Any]) -> Reply:
        response = self.handler(event, FakeLambdaContext())
        headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers.setdefault(name, ",".join(values))
        return Reply(response["statusCode"], headers, response.get("body") or "")

    def request(
        self, method: str, path: str, body: Any = None, *, raw_body: str | bytes | None = None
    ) -> Reply:
        route, params = self.route_of(method, path.partition("?")[0])
        event = http_event(method, path, body, route=route, raw_body=raw_body)
        if params:
            event["pathParameters"] = params
        return self.invoke(event)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def put(self, path: str, body: Any = None) -> Reply:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any = None) -> Reply:
        return self.request("PATCH", path, body)

    def post(self, path: str, body: Any = None, *, raw_body: str | bytes | None = None) -> Reply:
        return self.request("POST", path, body, raw_body=raw_body)

    def delete(self, path: str) -> Reply:
        return self.request("DELETE", path)
