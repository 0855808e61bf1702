"""The HTTP API's routes, one module per resource, each a Powertools Router.

`module_serving(path)` names the module whose router serves a path, so the resolver
imports only that one for a request (issue 18's cold start: a send loads neither the
access, topic, schedule nor operator routes, nor what they import). Every path of a
module's routes must map to it here: tests/unit/test_http_routes.py checks each route.
"""

from __future__ import annotations

from typing import Final

MODULES: Final = ("queues", "messages", "topics", "operations", "scheduled", "access", "console")

_OF_FIRST: Final = {
    "access": "access",
    "console": "console",
    "stats": "operations",
    "connections": "operations",
    "history": "operations",
}
# a destination's sub-resources (`/queues/<name>/<this>...`, `/topics/<name>/<this>...`)
_OF_SUB: Final = {
    "stats": "operations",
    "presence": "operations",
    "scheduled": "scheduled",
    "messages": "messages",
    "receive": "messages",
    "ack": "messages",
    "nack": "messages",
    "visibility": "messages",
}


def module_serving(path: str) -> str | None:
    """The routes module serving `path` (a request's raw path); None if no module does."""
    parts = path.strip("/").split("/")
    first = parts[0]
    if first in _OF_FIRST:
        return _OF_FIRST[first]
    if first not in ("queues", "topics"):
        return None
    sub = _OF_SUB.get(parts[2]) if len(parts) > 2 else None
    if first == "topics":
        return sub if sub in ("operations", "scheduled") else "topics"
    return sub or "queues"
