"""The WebSocket APIs a template declares as raw ``AWS::ApiGatewayV2`` resources.

Routes are joined to their integrations through ``Target: integrations/{id}``, to their
route responses through ``RouteId`` and to their authorizers (``CUSTOM``) through
``AuthorizerId``; a route whose integration is not a Lambda function of this template gets
``function=None``. Only the properties needed here are resolved, so unrelated intrinsics (a
role ARN, a log group) cannot get in the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from mqless_cli.cfn.intrinsics import BoundTemplate
from mqless_cli.cfn.loader import Json, TemplateError, as_mapping, as_text
from mqless_cli.cfn.sam_auth import LAMBDA_FUNCTION, Authorizer, identity_sources


class WebSocketRoute(NamedTuple):
    """One WebSocket API route: its key, the function its integration calls, and whether it is
    two-way (a RouteResponse sends the integration's answer back to the client)."""

    route_key: str
    function: str | None
    """Logical id of the Lambda function behind an AWS_PROXY/AWS integration; None otherwise."""
    two_way: bool
    authorizer: Authorizer | None = None
    """The Lambda authorizer of a ``CUSTOM`` route (API Gateway allows one on ``$connect``)."""


@dataclass(frozen=True)
class WebSocketApi:
    """An ``AWS::ApiGatewayV2::Api`` with ``ProtocolType: WEBSOCKET`` and its routes."""

    logical_id: str
    api_id: str
    name: str
    route_selection_expression: str
    stage: str | None
    routes: Mapping[str, WebSocketRoute]
    """Route key -> route."""


def websocket_apis(template: BoundTemplate, functions: Mapping[str, str]) -> list[WebSocketApi]:
    """The template's WebSocket APIs in template order; ``functions`` maps each deployed
    function name to its logical id."""
    apis: dict[str, tuple[str, dict[str, Json]]] = {}  # api id -> (logical id, resource)
    for logical_id, resource in template.declared("AWS::ApiGatewayV2::Api"):
        protocol = _field(template, logical_id, resource, "ProtocolType")
        if str(protocol).upper() == "WEBSOCKET":
            apis[as_text(template.ref(logical_id), logical_id)] = (logical_id, resource)
    if not apis:
        return []
    routes = _routes(template, set(apis), functions)
    stages = _stages(template)
    found = []
    for api_id, (logical_id, resource) in apis.items():
        expression = _field(template, logical_id, resource, "RouteSelectionExpression")
        name = _field(template, logical_id, resource, "Name")
        found.append(
            WebSocketApi(
                logical_id=logical_id,
                api_id=api_id,
                name=as_text(name, "Name") if name is not None else logical_id,
                route_selection_expression=as_text(
                    expression if expression is not None else "$request.body.action",
                    f"{logical_id}.RouteSelectionExpression",
                ),
                stage=stages.get(api_id),
                routes=routes[api_id],
            )
        )
    return found


def _field(template: BoundTemplate, logical_id: str, resource: dict[str, Json], name: str) -> Json:
    """One property of a resource, resolved (the others are left alone)."""
    properties = as_mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
    return template.resolve(properties.get(name))


def _integrations(template: BoundTemplate, functions: Mapping[str, str]) -> dict[str, str | None]:
    """Integration id -> the logical id of the Lambda function it calls (None: not one)."""
    integrations: dict[str, str | None] = {}
    for logical_id, resource in template.declared("AWS::ApiGatewayV2::Integration"):
        kind = str(_field(template, logical_id, resource, "IntegrationType")).upper()
        uri = _field(template, logical_id, resource, "IntegrationUri")
        match = LAMBDA_FUNCTION.search(uri) if isinstance(uri, str) else None
        function = None
        if kind in ("AWS_PROXY", "AWS") and match is not None:
            function = functions.get(match.group("name"))
        integrations[as_text(template.ref(logical_id), logical_id)] = function
    return integrations


def _authorizers(template: BoundTemplate, functions: Mapping[str, str]) -> dict[str, Authorizer]:
    """Authorizer id -> its REQUEST (Lambda) authorizer; JWT ones belong to HTTP APIs."""
    authorizers: dict[str, Authorizer] = {}
    for logical_id, resource in template.declared("AWS::ApiGatewayV2::Authorizer"):
        authorizer_type = _field(template, logical_id, resource, "AuthorizerType")
        if as_text(authorizer_type, f"{logical_id}.AuthorizerType").upper() != "REQUEST":
            continue
        uri = _field(template, logical_id, resource, "AuthorizerUri")
        match = LAMBDA_FUNCTION.search(uri) if isinstance(uri, str) else None
        name = _field(template, logical_id, resource, "Name")
        authorizers[as_text(template.ref(logical_id), logical_id)] = Authorizer(
            name=as_text(name, f"{logical_id}.Name") if name is not None else logical_id,
            function=functions.get(match.group("name")) if match is not None else None,
            identity_sources=identity_sources(
                _field(template, logical_id, resource, "IdentitySource"),
                f"{logical_id}.IdentitySource",
            ),
        )
    return authorizers


def _routes(
    template: BoundTemplate, api_ids: set[str], functions: Mapping[str, str]
) -> dict[str, dict[str, WebSocketRoute]]:
    """API id -> route key -> route, for the WebSocket APIs named."""
    integrations = _integrations(template, functions)
    authorizers = _authorizers(template, functions)
    two_way = {
        as_text(_field(template, logical_id, resource, "RouteId"), f"{logical_id}.RouteId")
        for logical_id, resource in template.declared("AWS::ApiGatewayV2::RouteResponse")
    }
    routes: dict[str, dict[str, WebSocketRoute]] = {api_id: {} for api_id in api_ids}
    for logical_id, resource in template.declared("AWS::ApiGatewayV2::Route"):
        api_id = as_text(_field(template, logical_id, resource, "ApiId"), f"{logical_id}.ApiId")
        if api_id not in routes:
            continue
        key = as_text(_field(template, logical_id, resource, "RouteKey"), f"{logical_id}.RouteKey")
        target = _field(template, logical_id, resource, "Target")
        integration = target.partition("integrations/")[2] if isinstance(target, str) else ""
        routes[api_id][key] = WebSocketRoute(
            route_key=key,
            function=integrations.get(integration),
            two_way=as_text(template.ref(logical_id), logical_id) in two_way,
            authorizer=_route_authorizer(template, logical_id, resource, authorizers),
        )
    return routes


def _route_authorizer(
    template: BoundTemplate,
    logical_id: str,
    resource: dict[str, Json],
    authorizers: Mapping[str, Authorizer],
) -> Authorizer | None:
    """The authorizer of a ``CUSTOM`` route; None for any other authorization type."""
    authorization = _field(template, logical_id, resource, "AuthorizationType")
    where = f"{logical_id}.AuthorizationType"
    if authorization is None or as_text(authorization, where) != "CUSTOM":
        return None
    authorizer_id = _field(template, logical_id, resource, "AuthorizerId")
    authorizer = authorizers.get(as_text(authorizer_id, f"{logical_id}.AuthorizerId"))
    if authorizer is None:
        raise TemplateError(
            f"{logical_id}: AuthorizerId names no REQUEST AWS::ApiGatewayV2::Authorizer"
        )
    return authorizer


def _stages(template: BoundTemplate) -> dict[str, str]:
    """API id -> the name of its first stage."""
    stages: dict[str, str] = {}
    for logical_id, resource in template.declared("AWS::ApiGatewayV2::Stage"):
        api_id = as_text(_field(template, logical_id, resource, "ApiId"), f"{logical_id}.ApiId")
        stages.setdefault(api_id, as_text(template.ref(logical_id), logical_id))
    return stages
