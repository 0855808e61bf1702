"""What a SAM template declares for the local runtime, read from the bound template:
functions (``Globals`` merged in the way SAM does) with their environment and triggers,
HTTP and WebSocket routes, Lambda authorizers, DynamoDB stream sources and schedules.
Functions, APIs and layers are only read: the local runtime plays those parts itself.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from mqless_cli.cfn.intrinsics import BoundTemplate
from mqless_cli.cfn.loader import (
    Json,
    TemplateError,
    as_flag,
    as_integer,
    as_mapping,
    as_sequence,
    as_text,
)
from mqless_cli.cfn.sam_auth import LAMBDA_FUNCTION, Authorizer, IdentitySource
from mqless_cli.cfn.sam_websocket import WebSocketApi, websocket_apis


class HttpRoute(NamedTuple):
    """One HTTP API route: the method and path API Gateway matches, and the function it calls.

    Its authorizer, if any, is in ``Stack.http_authorizers()``.
    """

    method: str
    path: str
    function: str


@dataclass(frozen=True)
class StreamSource:
    """A DynamoDB stream event source, with Lambda's defaults where the template is silent."""

    function: str
    stream_arn: str
    table: str | None
    starting_position: str = "TRIM_HORIZON"
    batch_size: int = 100
    maximum_batching_window_seconds: int = 0
    maximum_retry_attempts: int = -1
    maximum_record_age_seconds: int = -1
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    parallelization_factor: int = 1
    enabled: bool = True
    filter_patterns: tuple[str, ...] = ()


_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")


_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


# SAM's Identity lists of an HTTP API Lambda authorizer, and where each looks.
_SAM_IDENTITY = (
    ("Headers", "header"),
    ("QueryStrings", "querystring"),
    ("StageVariables", "stageVariables"),
    ("Context", "context"),
)


# API Gateway's default result TTL where an identity source allows caching.
_DEFAULT_AUTHORIZER_TTL = 300


@dataclass(frozen=True)
class Schedule:
    """A Schedule or ScheduleV2 event: which function runs, and when."""

    function: str
    expression: str
    enabled: bool = True
    input: str | None = None

    @property
    def rate_seconds(self) -> int | None:
        """The period of a ``rate(...)`` expression in seconds; None for cron/at expressions."""
        match = _RATE.fullmatch(self.expression.strip())
        if match is None:
            return None
        return int(match.group(1)) * _RATE_UNIT_SECONDS[match.group(2).rstrip("s")]


def _merge_globals(defaults: Json, own: Json) -> Json:
    """Merge a Globals section into a resource's properties the way SAM does.

    Mappings merge key by key, lists concatenate (globals first), anything else: the
    resource's own value wins.
    """
    if isinstance(defaults, dict) and isinstance(own, dict):
        merged = dict(defaults)
        for key, value in own.items():
            merged[key] = _merge_globals(defaults[key], value) if key in defaults else value
        return merged
    if isinstance(defaults, list) and isinstance(own, list):
        return [*defaults, *own]
    return own


class Stack(BoundTemplate):
    """What a bound SAM template declares for the local runtime: functions with their
    environment and triggers, HTTP and WebSocket routes, authorizers, stream sources and
    schedules."""

    def functions(self) -> dict[str, dict[str, Json]]:
        """Each AWS::Serverless::Function's properties, Globals.Function merged in, unresolved."""
        sam_globals = as_mapping(self.template.get("Globals", {}), "Globals")
        defaults = as_mapping(sam_globals.get("Function", {}), "Globals.Function")
        functions: dict[str, dict[str, Json]] = {}
        for logical_id, resource in self.declared("AWS::Serverless::Function"):
            own = as_mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            merged = _merge_globals(copy.deepcopy(defaults), copy.deepcopy(own))
            functions[logical_id] = as_mapping(merged, logical_id)
        return functions

    def environment(self, function: str) -> dict[str, str]:
        """The resolved environment variables of ``function``, every value a string."""
        properties = self.functions().get(function)
        if properties is None:
            raise TemplateError(f"{function!r} is not an AWS::Serverless::Function")
        environment = as_mapping(properties.get("Environment", {}), f"{function}.Environment")
        variables = as_mapping(self.resolve(environment.get("Variables", {})), f"{function} env")
        return {name: as_text(value, f"{function} ${name}") for name, value in variables.items()}

    def _events(self, *types: str) -> Iterator[tuple[str, dict[str, Json]]]:
        """Yield (function logical id, resolved event properties) for events of these types."""
        for logical_id, properties in self.functions().items():
            events = as_mapping(properties.get("Events", {}), f"{logical_id}.Events")
            for event_name, event_value in events.items():
                event = as_mapping(event_value, f"{logical_id}.Events.{event_name}")
                if event.get("Type") in types:
                    where = f"{logical_id}.Events.{event_name}.Properties"
                    yield logical_id, as_mapping(self.resolve(event.get("Properties", {})), where)

    def _http_events(self) -> Iterator[tuple[HttpRoute, dict[str, Json]]]:
        """Yield each HttpApi event as a route, with its resolved properties."""
        for function, event in self._events("HttpApi"):
            route = HttpRoute(
                method=as_text(event.get("Method", "ANY"), "Method").upper(),
                path=as_text(event.get("Path", "$default"), "Path"),
                function=function,
            )
            yield route, event

    def http_routes(self) -> list[HttpRoute]:
        """The HTTP API routes, in template order (``$default`` where no path is given)."""
        return [route for route, _ in self._http_events()]

    def http_authorizers(self) -> dict[HttpRoute, Authorizer]:
        """The Lambda authorizer each HTTP API route runs first; public routes are left out.

        A route's event names its authorizer in ``Auth.Authorizer`` (``NONE``: public), else
        its API's ``Auth.DefaultAuthorizer`` applies (an event without ``ApiId`` belongs to
        SAM's implicit API, configured by ``Globals.HttpApi``). Of an API's properties only
        what is read here is resolved, so others (a log group's ARN, an invoke role) cannot
        get in the way. JWT and IAM authorizers are left out: only functions run locally.
        """
        sam_globals = as_mapping(self.template.get("Globals", {}), "Globals")
        global_api = as_mapping(sam_globals.get("HttpApi", {}), "Globals.HttpApi")
        global_auth = as_mapping(global_api.get("Auth", {}), "Globals.HttpApi.Auth")
        auths: dict[str | None, dict[str, Json]] = {None: global_auth}  # API id -> its Auth
        for logical_id, resource in self.declared("AWS::Serverless::HttpApi"):
            properties = as_mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            own = properties.get("Auth", {})
            auth = _merge_globals(copy.deepcopy(global_auth), copy.deepcopy(own))
            auths[as_text(self.ref(logical_id), logical_id)] = as_mapping(
                auth, f"{logical_id}.Auth"
            )

        found: dict[HttpRoute, Authorizer] = {}
        known: dict[tuple[str | None, str], Authorizer | None] = {}
        for route, event in self._http_events():
            where = f"{route.method} {route.path}"
            api_id = event.get("ApiId")
            api = None if api_id is None else as_text(api_id, f"{where} ApiId")
            auth = auths.get(api, {})
            chosen = as_mapping(event.get("Auth", {}), f"{where} Auth").get("Authorizer")
            if chosen is None:
                chosen = self.resolve(auth.get("DefaultAuthorizer"))
            if chosen is None or as_text(chosen, f"{where} Authorizer") == "NONE":
                continue
            name = as_text(chosen, f"{where} Authorizer")
            if (api, name) not in known:
                declared = as_mapping(auth.get("Authorizers", {}), "Auth.Authorizers")
                if name not in declared:
                    raise TemplateError(f"{where} names authorizer {name!r}, not declared")
                known[api, name] = self._http_authorizer(name, as_mapping(declared[name], name))
            authorizer = known[api, name]
            if authorizer is not None:
                found[route] = authorizer
        return found

    def _http_authorizer(self, name: str, spec: dict[str, Json]) -> Authorizer | None:
        """A SAM HttpApi ``Auth.Authorizers`` entry; None unless it is a Lambda authorizer."""
        if "FunctionArn" not in spec:
            return None  # a JWT (OAuth2) or IAM authorizer
        arn = as_text(self.resolve(spec["FunctionArn"]), f"{name}.FunctionArn")
        match = LAMBDA_FUNCTION.search(arn)
        functions = self.lambda_functions_by_name()
        identity = as_mapping(self.resolve(spec.get("Identity", {})), f"{name}.Identity")
        sources = tuple(
            IdentitySource(location, as_text(item, f"{name}.Identity.{key}"))
            for key, location in _SAM_IDENTITY
            for item in as_sequence(identity.get(key, []), f"{name}.Identity.{key}")
        )
        ttl = as_integer(
            identity.get("ReauthorizeEvery", _DEFAULT_AUTHORIZER_TTL), "ReauthorizeEvery"
        )
        version = self.resolve(spec.get("AuthorizerPayloadFormatVersion", "2.0"))
        return Authorizer(
            name=name,
            function=functions.get(match.group("name")) if match is not None else None,
            identity_sources=sources,
            # API Gateway caches only what it can key on: no identity source, no cache
            ttl_seconds=ttl if sources else 0,
            simple_responses=as_flag(self.resolve(spec.get("EnableSimpleResponses", False))),
            payload_format_version=as_text(version, f"{name}.AuthorizerPayloadFormatVersion"),
        )

    def websocket_apis(self) -> list[WebSocketApi]:
        """The WebSocket APIs declared as raw ``AWS::ApiGatewayV2`` resources (sam_websocket)."""
        return websocket_apis(self, self.lambda_functions_by_name())

    def lambda_functions_by_name(self) -> dict[str, str]:
        """Deployed function name (``<stack>-<logical id>``) -> the function's logical id."""
        return {f"{self.stack_name}-{logical_id}": logical_id for logical_id in self.functions()}

    def stream_sources(self) -> list[StreamSource]:
        """The DynamoDB stream event sources, with Lambda's defaults filled in."""
        tables_by_stream = {
            arn: logical_id
            for (logical_id, attribute), arn in self._attributes.items()
            if attribute == "StreamArn"
        }
        sources = []
        for function, event in self._events("DynamoDB"):
            stream_arn = as_text(event.get("Stream"), f"{function} DynamoDB Stream")
            criteria = as_mapping(event.get("FilterCriteria", {}), "FilterCriteria")
            filters = as_sequence(criteria.get("Filters", []), "FilterCriteria.Filters")
            sources.append(
                StreamSource(
                    function=function,
                    stream_arn=stream_arn,
                    table=tables_by_stream.get(stream_arn),
                    starting_position=as_text(
                        event.get("StartingPosition", "TRIM_HORIZON"), "StartingPosition"
                    ),
                    batch_size=as_integer(event.get("BatchSize", 100), "BatchSize"),
                    maximum_batching_window_seconds=as_integer(
                        event.get("MaximumBatchingWindowInSeconds", 0), "MaximumBatchingWindow"
                    ),
                    maximum_retry_attempts=as_integer(
                        event.get("MaximumRetryAttempts", -1), "MaximumRetryAttempts"
                    ),
                    maximum_record_age_seconds=as_integer(
                        event.get("MaximumRecordAgeInSeconds", -1), "MaximumRecordAgeInSeconds"
                    ),
                    bisect_batch_on_function_error=as_flag(
                        event.get("BisectBatchOnFunctionError", False)
                    ),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in as_sequence(event.get("FunctionResponseTypes", []), "FunctionResponseTypes"),
                    parallelization_factor=as_integer(
                        event.get("ParallelizationFactor", 1), "ParallelizationFactor"
                    ),
                    enabled=as_flag(event.get("Enabled", True)),
                    filter_patterns=tuple(
                        as_text(as_mapping(item, "Filter").get("Pattern"), "Filter.Pattern")
                        for item in filters
                    ),
                )
            )
        return sources

    def schedules(self) -> list[Schedule]:
        """The Schedule and ScheduleV2 events of every function."""
        schedules = []
        for event_type in ("ScheduleV2", "Schedule"):
            expression_key = "ScheduleExpression" if event_type == "ScheduleV2" else "Schedule"
            for function, event in self._events(event_type):
                state = as_text(event.get("State", "ENABLED"), "State").upper()
                enabled = as_flag(event.get("Enabled", True)) and state == "ENABLED"
                payload = event.get("Input")
                schedules.append(
                    Schedule(
                        function=function,
                        expression=as_text(event.get(expression_key), f"{function} schedule"),
                        enabled=enabled,
                        input=None if payload is None else as_text(payload, "Input"),
                    )
                )
        return schedules
