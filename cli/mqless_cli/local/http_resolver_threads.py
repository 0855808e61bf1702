"""`mqless dev` runs the HTTP function's one resolver on many threads: give it per-thread state.

On Lambda one process handles one event at a time, so Powertools' resolver keeps the event
being resolved on itself, and the layer builds it so. `mqless dev` (and the component tests'
HTTP harness) load the HTTP handler once and call it from a thread per request, where
overlapping requests would read or clear each other's route arguments. `resolve_on_threads`
turns the layer's resolver into a `PerThreadResolver` in place, once, after the handler is
loaded: the one change the local runtime makes to Lambda code, kept here rather than in it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

__all__ = ["PerThreadResolver", "resolve_on_threads"]


class PerThreadResolver(APIGatewayHttpResolver):
    """Powertools' HTTP resolver, keeping the request being resolved per thread.

    Powertools keeps the current event and route context on the resolver (and on its base
    class), which is right for Lambda, where one process handles one event at a time. The
    local runtime (`mqless dev`) serves requests on threads with one resolver; without
    this, overlapping requests read or clear each other's route arguments.
    """

    _local = threading.local()

    @property  # type: ignore[override]
    def current_event(self) -> APIGatewayProxyEventV2:
        event: APIGatewayProxyEventV2 = self._local.event
        return event

    @current_event.setter
    def current_event(self, event: APIGatewayProxyEventV2) -> None:
        self._local.event = event

    @property
    def lambda_context(self) -> Any:
        return getattr(self._local, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, context: Any) -> None:
        self._local.lambda_context = context

    @property
    def context(self) -> dict[str, Any]:
        found: dict[str, Any] | None = getattr(self._local, "context", None)
        if found is None:
            found = self._local.context = {}
        return found

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._local.context = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self._local.event = self._to_proxy_event(dict(event))
        self._local.lambda_context = context
        self._local.context = {}
        return super().resolve(event, context)


def resolve_on_threads() -> None:
    """Make the HTTP function's resolver (`mqless.transports.http.api.app`) per-thread.

    A no-op until the HTTP function has been loaded, and after its first call. The subclass
    adds properties only, so the instance keeps every route and setting it was built with.
    """
    import sys

    api = sys.modules.get("mqless.transports.http.api")
    resolver = getattr(api, "app", None)
    if isinstance(resolver, APIGatewayHttpResolver) and not isinstance(resolver, PerThreadResolver):
        resolver.__class__ = PerThreadResolver
        _build_middleware_stacks(resolver)


def _build_middleware_stacks(resolver: APIGatewayHttpResolver) -> None:
    """Build every route's middleware stack now, on one thread.

    Powertools builds a route's stack on its first call, by wrapping frames one at a time
    into an attribute of the route: two threads making the first call at once wrap each
    other's frames (a 500, `MiddlewareFrame.__call__() got an unexpected keyword argument`).
    Lambda never overlaps calls in one process; `mqless dev` does. Building the stacks before
    any request is what the first call would do, once (Powertools' private attributes: the
    version is pinned in pyproject.toml).
    """
    for route in [*resolver._static_routes, *resolver._dynamic_routes]:
        if not route._middleware_stack_built:
            route._build_middleware_stack(
                router_middlewares=resolver._router_middlewares, app=resolver
            )
