"""Which route a WebSocket message takes, and what a route sends back to the client.

A message is routed by the API's route selection expression (`$request.body.<path>`);
non-JSON or unmatched messages go to `$default`, and with no `$default` the client gets a
`Forbidden` error frame. A two-way route (one with a RouteResponse) sends the function's
body back.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["error_frame", "evaluate_selection_expression", "route_response", "select_route"]


class _Missing:
    """A selection expression path that the message does not have."""


_MISSING = _Missing()

_BODY_VARIABLE = re.compile(
    r"\$\{request\.body\.(?P<braced>[^}]+)\}"
    r"|\$request\.body\.(?P<bare>[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+|\[\d+\])*)"
)
_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _lookup(document: Any, path: str) -> Any:
    """Follow a `a.b[0].c` path into parsed JSON; _MISSING where it leads nowhere."""
    value = document
    for name, index in _PATH_STEP.findall(path):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return _MISSING
    return value


def evaluate_selection_expression(expression: str, body: str) -> str | None:
    """The route key a route selection expression gives for a message; None if it cannot.

    `$request.body.<path>` and `${request.body.<path>}` are replaced by the (stringified) value
    at that JSON path of the message; `\\$` is a literal dollar sign. A message that is not JSON
    (nesting or numbers past what the parser holds included), or lacks a path the expression
    uses, gives None.
    """
    document: Any = _MISSING
    if _BODY_VARIABLE.search(expression):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            # not JSON, or JSON nested deeper (or a number longer) than the parser holds:
            # either way the message selects no route, and the socket must not close 1011
            return None
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = _lookup(document, match.group("braced") or match.group("bare"))
        if value is _MISSING:
            missing = True
            return ""
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    key = _BODY_VARIABLE.sub(substitute, expression)
    return None if missing else key.replace("\\$", "$")


def select_route(expression: str, body: str, route_keys: Sequence[str]) -> str | None:
    """The route a message takes: the matching custom route, else `$default`, else None."""
    key = evaluate_selection_expression(expression, body)
    if key is not None and key in route_keys and key not in ("$connect", "$disconnect"):
        return key
    return "$default" if "$default" in route_keys else None


def error_frame(message: str, connection_id: str, request_id: str) -> str:
    """API Gateway's error frame, spacing included."""
    return (
        f'{{"message": {json.dumps(message)}, "connectionId":{json.dumps(connection_id)}, '
        f'"requestId":{json.dumps(request_id)}}}'
    )


def route_response(result: Any) -> str | None:
    """What a two-way route sends back for a function's result (None: nothing)."""
    if result is None:
        return None
    if isinstance(result, dict) and ("statusCode" in result or "body" in result):
        body = result.get("body")
        if body is None:
            return None
        if result.get("isBase64Encoded") and isinstance(body, str):
            return base64.b64decode(body).decode("utf-8", errors="replace")
        return body if isinstance(body, str) else json.dumps(body)
    return result if isinstance(result, str) else json.dumps(result)
