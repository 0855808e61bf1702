"""The HTTP API's resolver: Powertools' own, with the request being resolved kept per thread.

It lives in the layer, not with `mqless dev`, because the resolver is built when
`mqless.transports.http.api` is imported, by the Lambda handler that `mqless dev` loads as it is; on
Lambda (one event per process at a time) the per-thread state is one thread's and costs
nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2


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
