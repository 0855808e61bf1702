"""What API Gateway does around a Lambda authorizer, for both local gateways.

- Identity sources are read before the function runs: one missing or empty is a 401, and
  the function is not invoked.
- A response is either a simple response (`{"isAuthorized": bool, "context": {...}}`, HTTP
  APIs with simple responses enabled) or an IAM policy, evaluated against the ARN of what
  is called: an explicit Deny wins, no Allow is a Deny. Anything else is the authorizer's
  fault: a 500.
- Responses are cached per authorizer and identity-source values for the authorizer's TTL
  (never when there is no identity source); a cached policy is evaluated again for each
  route, as API Gateway does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mqless_cli.cfn import Authorizer, IdentitySource

__all__ = [
    "InvalidResponse",
    "ResponseCache",
    "Verdict",
    "identity_values",
    "outcome",
    "verdict",
]

MAX_CACHED = 10_000
"""Past this many cached responses, expired ones are dropped (then, if need be, all)."""


class InvalidResponse(Exception):
    """The authorizer answered something API Gateway cannot use: a 500 for the caller."""


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go on, and what the authorizer said about its caller."""

    allowed: bool
    context: dict[str, Any] = field(default_factory=dict)
    principal_id: str | None = None
    """An IAM policy response's `principalId` (simple responses have none)."""


def identity_values(
    sources: tuple[IdentitySource, ...],
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    context: Mapping[str, Any],
) -> list[str] | None:
    """The identity-source values in order; None if one is missing or empty (a 401)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    values = []
    for source in sources:
        value: Any = None
        if source.location == "header":
            value = lowered.get(source.name.lower())
        elif source.location == "querystring":
            value = query.get(source.name)
        elif source.location == "context":
            value = _path(context, source.name)
        # stageVariables: the local stage has none
        if value is None or value == "" or isinstance(value, dict | list):
            return None
        values.append(str(value))
    return values


def _path(document: Mapping[str, Any], dotted: str) -> Any:
    value: Any = document
    for step in dotted.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def verdict(response: Any, *, simple: bool, resource: str) -> Verdict:
    """Read an authorizer's response for a call of `resource`; InvalidResponse if unusable."""
    if not isinstance(response, dict):
        raise InvalidResponse(f"the authorizer returned {type(response).__name__}, not an object")
    context = response.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise InvalidResponse("the authorizer's context is not an object")
    if simple:
        authorized = response.get("isAuthorized")
        if not isinstance(authorized, bool):
            raise InvalidResponse("a simple response needs a boolean isAuthorized")
        return Verdict(authorized, context)
    principal = response.get("principalId")
    return Verdict(
        _policy_allows(response.get("policyDocument"), resource),
        context,
        None if principal is None else str(principal),
    )


def _policy_allows(document: Any, resource: str) -> bool:
    """Evaluate an IAM policy document for `execute-api:Invoke` on `resource`."""
    if not isinstance(document, dict):
        raise InvalidResponse("the authorizer's response has no policyDocument")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise InvalidResponse("the policy document has no Statement")
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict):
            raise InvalidResponse("a policy statement is not an object")
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise InvalidResponse(f"a policy statement's Effect is {effect!r}")
        actions = _strings(statement.get("Action"))
        resources = _strings(statement.get("Resource"))
        applies = any(
            _glob(action, "execute-api:Invoke", ignore_case=True) for action in actions
        ) and any(_glob(pattern, resource) for pattern in resources)
        if applies and effect == "Deny":
            return False
        allowed = allowed or applies
    return allowed


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidResponse(f"a policy statement's Action/Resource is {value!r}")


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: `*` any run of characters, `?` any one."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


CacheKey = tuple[str, tuple[str, ...]]


class ResponseCache:
    """Authorizer responses by (authorizer, identity-source values), each for its TTL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, tuple[float, Any]] = {}

    @staticmethod
    def key(authorizer: Authorizer, values: list[str]) -> CacheKey | None:
        """The cache key of a request, or None if this authorizer's responses are not cached."""
        if authorizer.ttl_seconds <= 0 or not authorizer.identity_sources:
            return None
        return authorizer.name, tuple(values)

    def get(self, key: CacheKey) -> tuple[bool, Any]:
        """(True, response) if a live response is cached under `key`, else (False, None)."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return False, None
            expires, response = found
            if expires <= self._clock():
                del self._entries[key]
                return False, None
            return True, response

    def put(self, key: CacheKey, response: Any, ttl_seconds: float) -> None:
        with self._lock:
            now = self._clock()
            if len(self._entries) >= MAX_CACHED:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= MAX_CACHED:
                    self._entries.clear()
            self._entries[key] = (now + ttl_seconds, response)


def outcome(response: Any, *, simple: bool, resource: str) -> str:
    """A response in a few words, for the console: `allow dev`, `deny`, `invalid response`."""
    try:
        found = verdict(response, simple=simple, resource=resource)
    except InvalidResponse:
        return "invalid response"
    if not found.allowed:
        return "deny"
    who = found.context.get("principal") or found.principal_id
    return f"allow {who}" if who else "allow"
