"""Read template.yaml and create the resources it declares through boto3 clients (moto or AWS).

The local runtime and the tests build their tables, streams, key and alias from the template
itself, so there is no second, hand-written copy of the infrastructure to drift out of date.

Only the stateful resources are created (``AWS::KMS::Key``, ``AWS::KMS::Alias``,
``AWS::DynamoDB::Table``). Everything else (functions, APIs, layers, log groups) is only read:
the local runtime plays those parts itself. A ``Ref`` to such a resource resolves to the
placeholder name ``{stack_name}-{LogicalId}`` (an ``AWS::ApiGatewayV2::Stage`` to its stage name,
as CloudFormation does), and the few attributes the local runtime needs are derived from it:
a function's ``Arn`` (``arn:aws:lambda:{region}:{account}:function:{stack_name}-{LogicalId}``)
and an ``AWS::ApiGatewayV2::Api``'s ``ApiId`` and ``ApiEndpoint``.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

Json: TypeAlias = str | int | float | bool | None | list["Json"] | dict[str, "Json"]
"""A value as YAML/JSON gives it: what a template is made of."""

Template: TypeAlias = dict[str, Json]
"""A whole template, intrinsic functions in their long form (``{"Ref": ...}``)."""

__all__ = [
    "Authorizer",
    "CfnLoader",
    "HttpRoute",
    "IdentitySource",
    "Json",
    "Schedule",
    "Stack",
    "StreamSource",
    "Template",
    "TemplateError",
    "WebSocketApi",
    "WebSocketRoute",
    "load_template",
    "parse_template",
    "provision",
]


class TemplateError(Exception):
    """The template cannot be read, resolved or provisioned as written."""


# --- reading -------------------------------------------------------------------------------

# Short tags whose long form is ``Fn::<Name>``; ``!Ref`` and ``!Condition`` keep their names.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "GetAtt",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short-form tags as long-form dicts."""


# CloudFormation keeps unquoted dates (2010-09-09) as strings; YAML 1.1 would make them dates.
CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _node_value(loader: CfnLoader, node: yaml.Node) -> Json:
    """Construct a tagged node's value whatever its kind (scalar, sequence or mapping)."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        items: list[Json] = loader.construct_sequence(node, deep=True)
        return items
    if isinstance(node, yaml.MappingNode):
        return {str(key): value for key, value in loader.construct_mapping(node, deep=True).items()}
    raise TemplateError(f"cannot read {node.tag} at {node.start_mark}")


def _intrinsic(key: str) -> Callable[[CfnLoader, yaml.Node], Json]:
    """Make a constructor that wraps a tagged node's value as ``{key: value}``."""

    def construct(loader: CfnLoader, node: yaml.Node) -> Json:
        value = _node_value(loader, node)
        if key == "Fn::GetAtt" and isinstance(value, str):
            # !GetAtt Resource.Attribute: the attribute itself may contain dots.
            resource, _, attribute = value.partition(".")
            value = [resource, attribute]
        return {key: value}

    return construct


CfnLoader.add_constructor("!Ref", _intrinsic("Ref"))
CfnLoader.add_constructor("!Condition", _intrinsic("Condition"))
for _name in _FN_TAGS:
    CfnLoader.add_constructor(f"!{_name}", _intrinsic(f"Fn::{_name}"))


def parse_template(text: str) -> Template:
    """Parse template text (YAML or JSON) into a dict with long-form intrinsics."""
    document = yaml.load(text, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    if not isinstance(document, dict):
        raise TemplateError("a template must be a mapping at the top level")
    return document


def load_template(path: str | os.PathLike[str]) -> Template:
    """Read the template file at ``path`` into a dict with long-form intrinsics."""
    with open(path, encoding="utf-8") as stream:
        return parse_template(stream.read())


# --- what the template declares for the local runtime ----------------------------------------


class HttpRoute(NamedTuple):
    """One HTTP API route: the method and path API Gateway matches, and the function it calls.

    Its authorizer, if any, is in ``Stack.http_authorizers()``.
    """

    method: str
    path: str
    function: str


class IdentitySource(NamedTuple):
    """One part of a request that an authorizer needs: ``("header", "Authorization")``.

    ``location`` is ``header``, ``querystring``, ``stageVariables`` or ``context``.
    """

    location: str
    name: str


@dataclass(frozen=True)
class Authorizer:
    """A Lambda (REQUEST) authorizer, as API Gateway runs it in front of a route."""

    name: str
    function: str | None
    """Logical id of the authorizer's function; None if it is no Lambda function of the template."""
    identity_sources: tuple[IdentitySource, ...] = ()
    """Checked before the function runs: one missing or empty means 401, uninvoked."""
    ttl_seconds: int = 0
    """How long a response is cached per identity-source values (0: not cached)."""
    simple_responses: bool = False
    """HTTP APIs: the function answers ``{"isAuthorized": ...}`` rather than an IAM policy."""
    payload_format_version: str = "2.0"


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


# The function a Lambda ARN or API Gateway invocation URI names (an alias/version may follow).
_LAMBDA_FUNCTION = re.compile(r"arn:[^:]+:lambda:[^:]*:[^:]*:function:(?P<name>[^/:]+)")

# SAM's Identity lists of an HTTP API Lambda authorizer, and where each looks.
_SAM_IDENTITY = (
    ("Headers", "header"),
    ("QueryStrings", "querystring"),
    ("StageVariables", "stageVariables"),
    ("Context", "context"),
)
# An ApiGatewayV2 identity source: route.request.header.X, $request.querystring.x, context.x...
_IDENTITY_SOURCE = re.compile(
    r"\$?(?:route\.)?(?:request\.)?(?P<location>header|querystring|stageVariables|context)"
    r"\.(?P<name>.+)"
)
# API Gateway's default result TTL where an identity source allows caching.
_DEFAULT_AUTHORIZER_TTL = 300


def _identity_sources(value: Json, where: str) -> tuple[IdentitySource, ...]:
    """An ApiGatewayV2 ``IdentitySource`` (a list, or one comma-separated string) as a tuple."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else _sequence(value, where)
    sources = []
    for item in items:
        text = _text(item, where).strip()
        match = _IDENTITY_SOURCE.fullmatch(text)
        if match is None:
            raise TemplateError(f"{where}: {text!r} is not an identity source")
        sources.append(IdentitySource(match.group("location"), match.group("name")))
    return tuple(sources)


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


# --- resolving intrinsics --------------------------------------------------------------------


class _NoValue:
    """The value of ``Ref: AWS::NoValue``: the enclosing property disappears."""


_NO_VALUE = _NoValue()
_Resolved: TypeAlias = "Json | _NoValue"

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _mapping(value: Json, where: str) -> dict[str, Json]:
    """Return ``value`` if it is a mapping, else fail naming ``where``."""
    if isinstance(value, dict):
        return value
    raise TemplateError(f"{where} must be a mapping, not {type(value).__name__}")


def _sequence(value: Json, where: str) -> list[Json]:
    """Return ``value`` if it is a list, else fail naming ``where``."""
    if isinstance(value, list):
        return value
    raise TemplateError(f"{where} must be a list, not {type(value).__name__}")


def _text(value: Json, where: str) -> str:
    """Render a scalar the way CloudFormation passes it on: as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where} must be a scalar, not {type(value).__name__}")


def _flag(value: Json) -> bool:
    """Read a CloudFormation boolean, which may also be written as the string "true"."""
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _integer(value: Json, where: str) -> int:
    """Read a CloudFormation integer, which may also be written as a string."""
    try:
        return int(_text(value, where))
    except ValueError as error:
        raise TemplateError(f"{where} must be an integer, not {value!r}") from error


def _partition(region: str) -> tuple[str, str]:
    """The partition and URL suffix of a region."""
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


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


def _parameter_values(
    template: Template, overrides: Mapping[str, object]
) -> dict[str, str | list[str]]:
    """Each parameter's value: override or default, checked against its constraints."""
    declared = _mapping(template.get("Parameters", {}), "Parameters")
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter overrides name undeclared parameters: {unknown}")
    values: dict[str, str | list[str]] = {}
    for name, spec_value in declared.items():
        spec = _mapping(spec_value, f"Parameters.{name}")
        where = f"parameter {name}"
        if name in overrides:
            raw = overrides[name]
            value = _text(raw if isinstance(raw, str | int | float | bool) else str(raw), where)
        elif "Default" in spec:
            value = _text(spec["Default"], where)
        else:
            raise TemplateError(f"{where} has no default and no override")
        kind = str(spec.get("Type", "String"))
        allowed = [_text(item, where) for item in _sequence(spec.get("AllowedValues", []), where)]
        if allowed and value not in allowed:
            raise TemplateError(f"{where} is {value!r}, not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if isinstance(pattern, str) and re.fullmatch(pattern, value) is None:
            raise TemplateError(f"{where} is {value!r}, which does not match {pattern!r}")
        if kind == "Number":
            try:
                number = float(value)
            except ValueError as error:
                raise TemplateError(f"{where} is {value!r}, not a number") from error
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if low is not None and number < float(_text(low, where)):
                raise TemplateError(f"{where} is {value}, below its MinValue {low}")
            if high is not None and number > float(_text(high, where)):
                raise TemplateError(f"{where} is {value}, above its MaxValue {high}")
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            values[name] = [item.strip() for item in value.split(",")] if value else []
        else:
            values[name] = value
    return values


@dataclass
class Stack:
    """A template bound to parameter values, with the physical ids of what was provisioned."""

    template: Template
    stack_name: str = "mqless"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    parameter_overrides: Mapping[str, object] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    """Logical id -> physical id (table name, key id, alias name) of provisioned resources."""
    parameters: dict[str, str | list[str]] = field(init=False)
    _attributes: dict[tuple[str, str], str] = field(init=False, default_factory=dict, repr=False)
    _conditions: dict[str, bool] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.parameters = _parameter_values(self.template, self.parameter_overrides)
        self._check_rules()

    def _check_rules(self) -> None:
        """Refuse parameter values that break an assertion of the Rules section, as
        CloudFormation does before it creates or changes anything."""
        rules = _mapping(self.template.get("Rules", {}), "Rules")
        for name, value in rules.items():
            where = f"Rules.{name}"
            rule = _mapping(value, where)
            if "RuleCondition" in rule and not self._truth(rule["RuleCondition"], where):
                continue
            for assertion in _sequence(rule.get("Assertions", []), f"{where}.Assertions"):
                spec = _mapping(assertion, f"{where}.Assertions")
                if not self._truth(spec["Assert"], where):
                    description = spec.get("AssertDescription", f"rule {name} does not hold")
                    raise TemplateError(f"{where}: {_text(description, where)}")

    # -- template sections ---------------------------------------------------------------

    def declared(self, resource_type: str | None = None) -> Iterator[tuple[str, dict[str, Json]]]:
        """Yield (logical id, resource) for resources whose Condition holds, optionally by type."""
        for logical_id, value in _mapping(self.template.get("Resources", {}), "Resources").items():
            resource = _mapping(value, f"Resources.{logical_id}")
            if resource_type is not None and resource.get("Type") != resource_type:
                continue
            condition = resource.get("Condition")
            if condition is not None and not self.condition(_text(condition, logical_id)):
                continue
            yield logical_id, resource

    def condition(self, name: str) -> bool:
        """Evaluate the named entry of the Conditions section."""
        if name not in self._conditions:
            conditions = _mapping(self.template.get("Conditions", {}), "Conditions")
            if name not in conditions:
                raise TemplateError(f"condition {name!r} is not declared")
            self._conditions[name] = False  # guards against a condition that refers to itself
            self._conditions[name] = self._truth(conditions[name], f"Conditions.{name}")
        return self._conditions[name]

    def _truth(self, value: Json, where: str) -> bool:
        """Evaluate a condition expression (Fn::Equals/Not/And/Or, Condition)."""
        if isinstance(value, bool):
            return value
        node = _mapping(value, where)
        if set(node) == {"Condition"}:
            return self.condition(_text(node["Condition"], where))
        if set(node) == {"Fn::Not"}:
            (operand,) = _sequence(node["Fn::Not"], where)
            return not self._truth(operand, where)
        if set(node) == {"Fn::And"}:
            return all(self._truth(item, where) for item in _sequence(node["Fn::And"], where))
        if set(node) == {"Fn::Or"}:
            return any(self._truth(item, where) for item in _sequence(node["Fn::Or"], where))
        if set(node) == {"Fn::Equals"}:
            left, right = (self.resolve(item) for item in _sequence(node["Fn::Equals"], where))
            if isinstance(left, list | dict) or isinstance(right, list | dict):
                return left == right
            return _text(left, where) == _text(right, where)
        raise TemplateError(f"{where} is not a condition: {value!r}")

    # -- values --------------------------------------------------------------------------

    def attribute(self, logical_id: str, attribute: str) -> str:
        """The value of ``Fn::GetAtt [logical_id, attribute]``.

        Provisioned resources answer with what was recorded; functions and WebSocket/HTTP APIs
        (never provisioned locally) with values derived from their placeholder names.
        """
        try:
            return self._attributes[logical_id, attribute]
        except KeyError:
            derived = self._derived_attribute(logical_id, attribute)
            if derived is not None:
                return derived
            state = "provisioned" if logical_id in self.resources else "not provisioned"
            raise TemplateError(
                f"{logical_id}.{attribute} is unknown ({logical_id} is {state})"
            ) from None

    def ref(self, name: str) -> Json:
        """The value of ``Ref: name``: a pseudo parameter, a parameter or a resource's id."""
        partition, url_suffix = _partition(self.region)
        pseudo: dict[str, Json] = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": partition,
            "AWS::URLSuffix": url_suffix,
            "AWS::StackId": (
                f"arn:{partition}:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            return list(value) if isinstance(value, list) else value
        if name in self.resources:
            return self.resources[name]
        resource = self._resource(name)
        if resource is not None:
            if resource.get("Type") == "AWS::ApiGatewayV2::Stage":
                # CloudFormation's Ref of a stage is its name (endpoints end in /{stage})
                properties = _mapping(resource.get("Properties", {}), f"{name}.Properties")
                if "StageName" in properties:
                    return _text(self.resolve(properties["StageName"]), f"{name}.StageName")
            return f"{self.stack_name}-{name}"
        raise TemplateError(f"Ref {name!r} names no parameter, pseudo parameter or resource")

    def _resource(self, logical_id: str) -> dict[str, Json] | None:
        """The declared resource ``logical_id`` (its Condition holding), or None."""
        for found, resource in self.declared():
            if found == logical_id:
                return resource
        return None

    def _derived_attribute(self, logical_id: str, attribute: str) -> str | None:
        """GetAtt values the local runtime can derive for resources it never provisions."""
        resource = self._resource(logical_id)
        if resource is None or logical_id in self.resources:
            return None
        resource_type = resource.get("Type")
        partition, url_suffix = _partition(self.region)
        if (
            resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function")
            and attribute == "Arn"
        ):
            return (
                f"arn:{partition}:lambda:{self.region}:{self.account_id}:function:"
                f"{self.stack_name}-{logical_id}"
            )
        if resource_type == "AWS::ApiGatewayV2::Api" and attribute in ("ApiId", "ApiEndpoint"):
            api_id = _text(self.ref(logical_id), f"{logical_id} id")
            if attribute == "ApiId":
                return api_id
            properties = _mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            protocol = _text(self.resolve(properties.get("ProtocolType", "HTTP")), "ProtocolType")
            scheme = "wss" if protocol.upper() == "WEBSOCKET" else "https"
            return f"{scheme}://{api_id}.execute-api.{self.region}.{url_suffix}"
        return None

    def resolve(self, value: Json) -> Json:
        """Resolve every intrinsic function in ``value`` against this stack."""
        resolved = self._resolve(value)
        return None if isinstance(resolved, _NoValue) else resolved

    def _resolve(self, value: Json) -> _Resolved:
        """Resolve ``value``; ``AWS::NoValue`` comes back as the _NO_VALUE marker."""
        if isinstance(value, list):
            items = (self._resolve(item) for item in value)
            return [item for item in items if not isinstance(item, _NoValue)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                name = _text(argument, "Ref")
                return _NO_VALUE if name == "AWS::NoValue" else self.ref(name)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self._resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if not isinstance(item, _NoValue)}

    def _function(self, name: str, argument: Json) -> _Resolved:
        """Evaluate one ``Fn::*`` intrinsic function."""
        if name == "Fn::If":
            condition, if_true, if_false = _sequence(argument, name)
            branch = if_true if self.condition(_text(condition, name)) else if_false
            return self._resolve(branch)
        if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self._truth({name: argument}, name)
        if name == "Fn::GetAtt":
            parts = self.resolve(argument)
            if isinstance(parts, str):
                parts = list(parts.partition(".")[::2])
            logical_id, attribute = _sequence(parts, name)
            return self.attribute(_text(logical_id, name), _text(attribute, name))
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::Join":
            delimiter, items = _sequence(argument, name)
            parts = _sequence(self.resolve(items), name)
            return _text(delimiter, name).join(_text(part, name) for part in parts)
        if name == "Fn::Select":
            index, items = _sequence(argument, name)
            choices = _sequence(self.resolve(items), name)
            return choices[_integer(self.resolve(index), name)]
        if name == "Fn::Split":
            delimiter, source = _sequence(argument, name)
            text = _text(self.resolve(source), name)
            return list(text.split(_text(delimiter, name)))
        if name == "Fn::FindInMap":
            return self._find_in_map(_sequence(argument, name))
        if name == "Fn::Base64":
            text = _text(self.resolve(argument), name)
            return base64.b64encode(text.encode()).decode()
        if name == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if name == "Fn::Length":
            return len(_sequence(self.resolve(argument), name))
        if name == "Fn::ToJsonString":
            return json.dumps(self.resolve(argument), separators=(",", ":"))
        raise TemplateError(f"{name} is not supported outside CloudFormation")

    def _sub(self, argument: Json) -> str:
        """Evaluate ``Fn::Sub`` in its string or ``[string, {variables}]`` form."""
        variables: dict[str, Json] = {}
        if isinstance(argument, list):
            source, names = argument
            variables = _mapping(self.resolve(names), "Fn::Sub variables")
        else:
            source = argument

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name], f"Fn::Sub ${{{name}}}")
            if "." in name:
                logical_id, _, attribute = name.partition(".")
                return self.attribute(logical_id, attribute)
            return _text(self.ref(name), f"Fn::Sub ${{{name}}}")

        return _SUB_VARIABLE.sub(substitute, _text(source, "Fn::Sub"))

    def _find_in_map(self, argument: list[Json]) -> Json:
        """Evaluate ``Fn::FindInMap [map, top key, second key, {DefaultValue}?]``."""
        map_name, top, second = (
            _text(self.resolve(part), "Fn::FindInMap") for part in argument[:3]
        )
        mappings = _mapping(self.template.get("Mappings", {}), "Mappings")
        table = _mapping(mappings.get(map_name, {}), f"Mappings.{map_name}")
        row = table.get(top)
        if isinstance(row, dict) and second in row:
            return row[second]
        if len(argument) > 3:
            return _mapping(argument[3], "Fn::FindInMap default").get("DefaultValue")
        raise TemplateError(f"Fn::FindInMap finds nothing at {map_name}.{top}.{second}")

    def outputs(self) -> dict[str, str]:
        """The Outputs section resolved (placeholders stand in for unprovisioned resources)."""
        outputs = _mapping(self.template.get("Outputs", {}), "Outputs")
        return {
            name: _text(self.resolve(_mapping(output, name).get("Value")), f"Outputs.{name}")
            for name, output in outputs.items()
            # an output whose Condition is false does not exist, as in CloudFormation
            if "Condition" not in _mapping(output, name)
            or self.condition(_text(_mapping(output, name)["Condition"], f"Outputs.{name}"))
        }

    # -- functions and their triggers ----------------------------------------------------

    def functions(self) -> dict[str, dict[str, Json]]:
        """Each AWS::Serverless::Function's properties, Globals.Function merged in, unresolved."""
        sam_globals = _mapping(self.template.get("Globals", {}), "Globals")
        defaults = _mapping(sam_globals.get("Function", {}), "Globals.Function")
        functions: dict[str, dict[str, Json]] = {}
        for logical_id, resource in self.declared("AWS::Serverless::Function"):
            own = _mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            merged = _merge_globals(copy.deepcopy(defaults), copy.deepcopy(own))
            functions[logical_id] = _mapping(merged, logical_id)
        return functions

    def environment(self, function: str) -> dict[str, str]:
        """The resolved environment variables of ``function``, every value a string."""
        properties = self.functions().get(function)
        if properties is None:
            raise TemplateError(f"{function!r} is not an AWS::Serverless::Function")
        environment = _mapping(properties.get("Environment", {}), f"{function}.Environment")
        variables = _mapping(self.resolve(environment.get("Variables", {})), f"{function} env")
        return {name: _text(value, f"{function} ${name}") for name, value in variables.items()}

    def _events(self, *types: str) -> Iterator[tuple[str, dict[str, Json]]]:
        """Yield (function logical id, resolved event properties) for events of these types."""
        for logical_id, properties in self.functions().items():
            events = _mapping(properties.get("Events", {}), f"{logical_id}.Events")
            for event_name, event_value in events.items():
                event = _mapping(event_value, f"{logical_id}.Events.{event_name}")
                if event.get("Type") in types:
                    where = f"{logical_id}.Events.{event_name}.Properties"
                    yield logical_id, _mapping(self.resolve(event.get("Properties", {})), where)

    def _http_events(self) -> Iterator[tuple[HttpRoute, dict[str, Json]]]:
        """Yield each HttpApi event as a route, with its resolved properties."""
        for function, event in self._events("HttpApi"):
            route = HttpRoute(
                method=_text(event.get("Method", "ANY"), "Method").upper(),
                path=_text(event.get("Path", "$default"), "Path"),
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
        sam_globals = _mapping(self.template.get("Globals", {}), "Globals")
        global_api = _mapping(sam_globals.get("HttpApi", {}), "Globals.HttpApi")
        global_auth = _mapping(global_api.get("Auth", {}), "Globals.HttpApi.Auth")
        auths: dict[str | None, dict[str, Json]] = {None: global_auth}  # API id -> its Auth
        for logical_id, resource in self.declared("AWS::Serverless::HttpApi"):
            properties = _mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            own = properties.get("Auth", {})
            auth = _merge_globals(copy.deepcopy(global_auth), copy.deepcopy(own))
            auths[_text(self.ref(logical_id), logical_id)] = _mapping(auth, f"{logical_id}.Auth")

        found: dict[HttpRoute, Authorizer] = {}
        known: dict[tuple[str | None, str], Authorizer | None] = {}
        for route, event in self._http_events():
            where = f"{route.method} {route.path}"
            api_id = event.get("ApiId")
            api = None if api_id is None else _text(api_id, f"{where} ApiId")
            auth = auths.get(api, {})
            chosen = _mapping(event.get("Auth", {}), f"{where} Auth").get("Authorizer")
            if chosen is None:
                chosen = self.resolve(auth.get("DefaultAuthorizer"))
            if chosen is None or _text(chosen, f"{where} Authorizer") == "NONE":
                continue
            name = _text(chosen, f"{where} Authorizer")
            if (api, name) not in known:
                declared = _mapping(auth.get("Authorizers", {}), "Auth.Authorizers")
                if name not in declared:
                    raise TemplateError(f"{where} names authorizer {name!r}, not declared")
                known[api, name] = self._http_authorizer(name, _mapping(declared[name], name))
            authorizer = known[api, name]
            if authorizer is not None:
                found[route] = authorizer
        return found

    def _http_authorizer(self, name: str, spec: dict[str, Json]) -> Authorizer | None:
        """A SAM HttpApi ``Auth.Authorizers`` entry; None unless it is a Lambda authorizer."""
        if "FunctionArn" not in spec:
            return None  # a JWT (OAuth2) or IAM authorizer
        arn = _text(self.resolve(spec["FunctionArn"]), f"{name}.FunctionArn")
        match = _LAMBDA_FUNCTION.search(arn)
        functions = {
            f"{self.stack_name}-{logical_id}": logical_id for logical_id in self.functions()
        }
        identity = _mapping(self.resolve(spec.get("Identity", {})), f"{name}.Identity")
        sources = tuple(
            IdentitySource(location, _text(item, f"{name}.Identity.{key}"))
            for key, location in _SAM_IDENTITY
            for item in _sequence(identity.get(key, []), f"{name}.Identity.{key}")
        )
        ttl = _integer(
            identity.get("ReauthorizeEvery", _DEFAULT_AUTHORIZER_TTL), "ReauthorizeEvery"
        )
        version = self.resolve(spec.get("AuthorizerPayloadFormatVersion", "2.0"))
        return Authorizer(
            name=name,
            function=functions.get(match.group("name")) if match is not None else None,
            identity_sources=sources,
            # API Gateway caches only what it can key on: no identity source, no cache
            ttl_seconds=ttl if sources else 0,
            simple_responses=_flag(self.resolve(spec.get("EnableSimpleResponses", False))),
            payload_format_version=_text(version, f"{name}.AuthorizerPayloadFormatVersion"),
        )

    def websocket_apis(self) -> list[WebSocketApi]:
        """The WebSocket APIs declared as raw ``AWS::ApiGatewayV2`` resources, in template order.

        Routes are joined to their integrations through ``Target: integrations/{id}``, to
        their route responses through ``RouteId`` and to their authorizers (``CUSTOM``) through
        ``AuthorizerId``; a route whose integration is not a Lambda function of this template
        gets ``function=None``. Only the properties needed here are resolved, so unrelated
        intrinsics (a role ARN, a log group) cannot get in the way.
        """

        def field(logical_id: str, resource: dict[str, Json], name: str) -> Json:
            properties = _mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            return self.resolve(properties.get(name))

        apis: dict[str, tuple[str, dict[str, Json]]] = {}  # api id -> (logical id, resource)
        for logical_id, resource in self.declared("AWS::ApiGatewayV2::Api"):
            protocol = field(logical_id, resource, "ProtocolType")
            if str(protocol).upper() == "WEBSOCKET":
                apis[_text(self.ref(logical_id), logical_id)] = (logical_id, resource)
        if not apis:
            return []

        functions = {
            f"{self.stack_name}-{logical_id}": logical_id for logical_id in self.functions()
        }
        integrations: dict[str, str | None] = {}  # integration id -> function logical id
        for logical_id, resource in self.declared("AWS::ApiGatewayV2::Integration"):
            kind = str(field(logical_id, resource, "IntegrationType")).upper()
            uri = field(logical_id, resource, "IntegrationUri")
            match = _LAMBDA_FUNCTION.search(uri) if isinstance(uri, str) else None
            function = None
            if kind in ("AWS_PROXY", "AWS") and match is not None:
                function = functions.get(match.group("name"))
            integrations[_text(self.ref(logical_id), logical_id)] = function

        two_way = {
            _text(field(logical_id, resource, "RouteId"), f"{logical_id}.RouteId")
            for logical_id, resource in self.declared("AWS::ApiGatewayV2::RouteResponse")
        }
        authorizers: dict[str, Authorizer] = {}  # authorizer id -> authorizer
        for logical_id, resource in self.declared("AWS::ApiGatewayV2::Authorizer"):
            authorizer_type = field(logical_id, resource, "AuthorizerType")
            if _text(authorizer_type, f"{logical_id}.AuthorizerType").upper() != "REQUEST":
                continue  # JWT authorizers belong to HTTP APIs
            uri = field(logical_id, resource, "AuthorizerUri")
            match = _LAMBDA_FUNCTION.search(uri) if isinstance(uri, str) else None
            name = field(logical_id, resource, "Name")
            authorizers[_text(self.ref(logical_id), logical_id)] = Authorizer(
                name=_text(name, f"{logical_id}.Name") if name is not None else logical_id,
                function=functions.get(match.group("name")) if match is not None else None,
                identity_sources=_identity_sources(
                    field(logical_id, resource, "IdentitySource"), f"{logical_id}.IdentitySource"
                ),
            )
        routes: dict[str, dict[str, WebSocketRoute]] = {api_id: {} for api_id in apis}
        for logical_id, resource in self.declared("AWS::ApiGatewayV2::Route"):
            api_id = _text(field(logical_id, resource, "ApiId"), f"{logical_id}.ApiId")
            if api_id not in routes:
                continue
            key = _text(field(logical_id, resource, "RouteKey"), f"{logical_id}.RouteKey")
            target = field(logical_id, resource, "Target")
            integration = target.partition("integrations/")[2] if isinstance(target, str) else ""
            authorizer = None
            authorization = field(logical_id, resource, "AuthorizationType")
            where = f"{logical_id}.AuthorizationType"
            if authorization is not None and _text(authorization, where) == "CUSTOM":
                authorizer_id = field(logical_id, resource, "AuthorizerId")
                authorizer = authorizers.get(_text(authorizer_id, f"{logical_id}.AuthorizerId"))
                if authorizer is None:
                    raise TemplateError(
                        f"{logical_id}: AuthorizerId names no REQUEST AWS::ApiGatewayV2::Authorizer"
                    )
            routes[api_id][key] = WebSocketRoute(
                route_key=key,
                function=integrations.get(integration),
                two_way=_text(self.ref(logical_id), logical_id) in two_way,
                authorizer=authorizer,
            )

        stages: dict[str, str] = {}
        for logical_id, resource in self.declared("AWS::ApiGatewayV2::Stage"):
            api_id = _text(field(logical_id, resource, "ApiId"), f"{logical_id}.ApiId")
            stages.setdefault(api_id, _text(self.ref(logical_id), logical_id))

        found = []
        for api_id, (logical_id, resource) in apis.items():
            expression = field(logical_id, resource, "RouteSelectionExpression")
            name = field(logical_id, resource, "Name")
            found.append(
                WebSocketApi(
                    logical_id=logical_id,
                    api_id=api_id,
                    name=_text(name, "Name") if name is not None else logical_id,
                    route_selection_expression=_text(
                        expression if expression is not None else "$request.body.action",
                        f"{logical_id}.RouteSelectionExpression",
                    ),
                    stage=stages.get(api_id),
                    routes=routes[api_id],
                )
            )
        return found

    def stream_sources(self) -> list[StreamSource]:
        """The DynamoDB stream event sources, with Lambda's defaults filled in."""
        tables_by_stream = {
            arn: logical_id
            for (logical_id, attribute), arn in self._attributes.items()
            if attribute == "StreamArn"
        }
        sources = []
        for function, event in self._events("DynamoDB"):
            stream_arn = _text(event.get("Stream"), f"{function} DynamoDB Stream")
            criteria = _mapping(event.get("FilterCriteria", {}), "FilterCriteria")
            filters = _sequence(criteria.get("Filters", []), "FilterCriteria.Filters")
            sources.append(
                StreamSource(
                    function=function,
                    stream_arn=stream_arn,
                    table=tables_by_stream.get(stream_arn),
                    starting_position=_text(
                        event.get("StartingPosition", "TRIM_HORIZON"), "StartingPosition"
                    ),
                    batch_size=_integer(event.get("BatchSize", 100), "BatchSize"),
                    maximum_batching_window_seconds=_integer(
                        event.get("MaximumBatchingWindowInSeconds", 0), "MaximumBatchingWindow"
                    ),
                    maximum_retry_attempts=_integer(
                        event.get("MaximumRetryAttempts", -1), "MaximumRetryAttempts"
                    ),
                    maximum_record_age_seconds=_integer(
                        event.get("MaximumRecordAgeInSeconds", -1), "MaximumRecordAgeInSeconds"
                    ),
                    bisect_batch_on_function_error=_flag(
                        event.get("BisectBatchOnFunctionError", False)
                    ),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in _sequence(event.get("FunctionResponseTypes", []), "FunctionResponseTypes"),
                    parallelization_factor=_integer(
                        event.get("ParallelizationFactor", 1), "ParallelizationFactor"
                    ),
                    enabled=_flag(event.get("Enabled", True)),
                    filter_patterns=tuple(
                        _text(_mapping(item, "Filter").get("Pattern"), "Filter.Pattern")
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
                state = _text(event.get("State", "ENABLED"), "State").upper()
                enabled = _flag(event.get("Enabled", True)) and state == "ENABLED"
                payload = event.get("Input")
                schedules.append(
                    Schedule(
                        function=function,
                        expression=_text(event.get(expression_key), f"{function} schedule"),
                        enabled=enabled,
                        input=None if payload is None else _text(payload, "Input"),
                    )
                )
        return schedules

    # -- provisioning bookkeeping --------------------------------------------------------

    def _record(self, logical_id: str, physical_id: str, attributes: Mapping[str, str]) -> None:
        """Remember a created resource's physical id and its GetAtt attributes."""
        self.resources[logical_id] = physical_id
        for attribute, value in attributes.items():
            self._attributes[logical_id, attribute] = value

    def _key_arn(self, key: str) -> str:
        """The ARN of a provisioned KMS key given its id (anything else passes through)."""
        for (logical_id, attribute), value in self._attributes.items():
            if attribute == "KeyId" and value == key:
                return self._attributes[logical_id, "Arn"]
        return key


# --- provisioning ----------------------------------------------------------------------------


def _properties(stack: Stack, logical_id: str, resource: dict[str, Json]) -> dict[str, Json]:
    """A resource's Properties with every intrinsic resolved."""
    resolved = stack.resolve(resource.get("Properties", {}))
    return _mapping(resolved, f"{logical_id}.Properties")


def _tags(value: Json, key: str = "Key", text: str = "Value") -> list[dict[str, str]]:
    """CloudFormation ``[{Key, Value}]`` tags in the key names an API wants."""
    return [
        {key: _text(tag["Key"], "Tag.Key"), text: _text(tag["Value"], "Tag.Value")}
        for tag in (_mapping(item, "Tags") for item in _sequence(value, "Tags"))
    ]


def _create_key(
    stack: Stack, logical_id: str, resource: dict[str, Json], clients: _Clients
) -> None:
    """Create an AWS::KMS::Key, its policy and rotation as declared."""
    properties = _properties(stack, logical_id, resource)
    kwargs: dict[str, Any] = {
        key: properties[key]
        for key in ("Description", "KeySpec", "KeyUsage", "MultiRegion", "Origin")
        if key in properties
    }
    if "KeyPolicy" in properties:
        policy = properties["KeyPolicy"]
        kwargs["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
    if "Tags" in properties:
        kwargs["Tags"] = _tags(properties["Tags"], key="TagKey", text="TagValue")
    metadata = clients.kms.create_key(**kwargs)["KeyMetadata"]
    key_id = metadata["KeyId"]
    if _flag(properties.get("EnableKeyRotation", False)):
        if "RotationPeriodInDays" in properties:
            days = _integer(properties["RotationPeriodInDays"], "RotationPeriodInDays")
            clients.kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=days)
        else:
            clients.kms.enable_key_rotation(KeyId=key_id)
    if not _flag(properties.get("Enabled", True)):
        clients.kms.disable_key(KeyId=key_id)
    stack._record(logical_id, key_id, {"Arn": metadata["Arn"], "KeyId": key_id})


def _create_alias(
    stack: Stack, logical_id: str, resource: dict[str, Json], clients: _Clients
) -> None:
    """Create an AWS::KMS::Alias pointing at its key."""
    properties = _properties(stack, logical_id, resource)
    alias = _text(properties.get("AliasName"), f"{logical_id}.AliasName")
    target = _text(properties.get("TargetKeyId"), f"{logical_id}.TargetKeyId")
    clients.kms.create_alias(AliasName=alias, TargetKeyId=target)
    stack._record(logical_id, alias, {})


def _throughput(value: Json, where: str) -> dict[str, int]:
    """Provisioned/on-demand throughput settings as the integers the API wants."""
    return {key: _integer(units, f"{where}.{key}") for key, units in _mapping(value, where).items()}


def _index(value: Json, where: str, *, is_global: bool) -> dict[str, Any]:
    """A GlobalSecondaryIndexes/LocalSecondaryIndexes entry in create_table's shape."""
    index = _mapping(value, where)
    kwargs: dict[str, Any] = {
        "IndexName": index["IndexName"],
        "KeySchema": index["KeySchema"],
        "Projection": index["Projection"],
    }
    if is_global:
        for key in ("ProvisionedThroughput", "OnDemandThroughput"):
            if key in index:
                kwargs[key] = _throughput(index[key], f"{where}.{key}")
    return kwargs


def _create_table(
    stack: Stack, logical_id: str, resource: dict[str, Json], clients: _Clients
) -> None:
    """Create an AWS::DynamoDB::Table with its indexes, stream, encryption, TTL and PITR."""
    properties = _properties(stack, logical_id, resource)
    name = _text(properties.get("TableName", f"{stack.stack_name}-{logical_id}"), "TableName")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    for key in ("ProvisionedThroughput", "OnDemandThroughput"):
        if key in properties:
            kwargs[key] = _throughput(properties[key], f"{logical_id}.{key}")
    for key, is_global in (("GlobalSecondaryIndexes", True), ("LocalSecondaryIndexes", False)):
        if key in properties:
            where = f"{logical_id}.{key}"
            indexes = _sequence(properties[key], where)
            kwargs[key] = [_index(index, where, is_global=is_global) for index in indexes]
    if "StreamSpecification" in properties:
        stream = _mapping(properties["StreamSpecification"], "StreamSpecification")
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    if "SSESpecification" in properties:
        sse = _mapping(properties["SSESpecification"], "SSESpecification")
        specification: dict[str, Any] = {"Enabled": _flag(sse.get("SSEEnabled", False))}
        if "SSEType" in sse:
            specification["SSEType"] = sse["SSEType"]
        if "KMSMasterKeyId" in sse:
            # DynamoDB reports the key by ARN whatever form it was given in; so do we.
            specification["KMSMasterKeyId"] = stack._key_arn(_text(sse["KMSMasterKeyId"], name))
        kwargs["SSESpecification"] = specification
    for key in ("TableClass", "DeletionProtectionEnabled"):
        if key in properties:
            kwargs[key] = properties[key]
    if "Tags" in properties:
        kwargs["Tags"] = _tags(properties["Tags"])

    dynamodb = clients.dynamodb
    dynamodb.create_table(**kwargs)
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    if "TimeToLiveSpecification" in properties:
        ttl = _mapping(properties["TimeToLiveSpecification"], "TimeToLiveSpecification")
        if _flag(ttl.get("Enabled", False)):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": _text(ttl["AttributeName"], "TTL AttributeName"),
                },
            )
    recovery = properties.get("PointInTimeRecoverySpecification")
    if isinstance(recovery, dict) and _flag(recovery.get("PointInTimeRecoveryEnabled", False)):
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    description = dynamodb.describe_table(TableName=name)["Table"]
    attributes = {"Arn": description["TableArn"]}
    if "LatestStreamArn" in description:
        attributes["StreamArn"] = description["LatestStreamArn"]
    stack._record(logical_id, name, attributes)


@dataclass(frozen=True)
class _Clients:
    """The boto3 clients provisioning uses."""

    dynamodb: DynamoDBClient
    kms: KMSClient


_Provisioner: TypeAlias = Callable[[Stack, str, dict[str, Json], _Clients], None]

# Creation order: keys before the aliases and tables that name them.
_PROVISIONERS: tuple[tuple[str, _Provisioner], ...] = (
    ("AWS::KMS::Key", _create_key),
    ("AWS::KMS::Alias", _create_alias),
    ("AWS::DynamoDB::Table", _create_table),
)


def provision(
    template: Template,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    stack_name: str = "mqless",
    region: str = "us-east-1",
    account_id: str = "123456789012",
    parameter_overrides: Mapping[str, object] | None = None,
) -> Stack:
    """Create the template's keys, aliases and tables with the given clients; return the Stack."""
    stack = Stack(
        template,
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameter_overrides=dict(parameter_overrides or {}),
    )
    clients = _Clients(dynamodb=dynamodb, kms=kms)
    for resource_type, create in _PROVISIONERS:
        for logical_id, resource in stack.declared(resource_type):
            create(stack, logical_id, resource, clients)
    return stack
