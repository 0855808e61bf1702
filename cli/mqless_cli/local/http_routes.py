"""The HTTP API's routes, matched as API Gateway matches them.

A request takes the most specific route that matches its method (or `ANY`) and path: more
literal segments first, then fewer path parameters; `{name+}` is a greedy parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from mqless_cli.cfn import HttpRoute

__all__ = ["RouteTable"]


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    specificity: tuple[int, int]


def _compile(route: HttpRoute) -> _CompiledRoute:
    params: list[str] = []
    parts: list[str] = []
    literal = 0
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        single = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            params.append(greedy.group(1))
            parts.append(f"(?P<{greedy.group(1)}>.+)")
        elif single:
            params.append(single.group(1))
            parts.append(f"(?P<{single.group(1)}>[^/]+)")
        else:
            literal += 1
            parts.append(re.escape(segment))
    pattern = re.compile("^/" + "/".join(parts) + "$")
    # API Gateway prefers the most specific route: more literal segments, fewer greedy
    return _CompiledRoute(route, pattern, tuple(params), (literal, -len(params)))


class RouteTable:
    """The template's HTTP routes, most specific first."""

    def __init__(self, routes: Iterable[HttpRoute]) -> None:
        self._routes = sorted(
            (_compile(r) for r in routes),
            key=lambda c: c.specificity,
            reverse=True,
        )

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The route a request takes and its path parameters; None: none (a 404)."""
        for compiled in self._routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            found = compiled.pattern.match(path)
            if found:
                return compiled.route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None
