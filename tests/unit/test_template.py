"""template.yaml checks that `sam validate --lint` misses, and the template reader's rules."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqless.storage import keys, wake
from mqless_cli.cfn import (
    Authorizer,
    HttpRoute,
    IdentitySource,
    Json,
    Schedule,
    Stack,
    Template,
    TemplateError,
    load_template,
    parse_template,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
# GetAtt attributes of the resource types we use; a type missing here is not checked.
ATTRIBUTES = {
    "AWS::DynamoDB::Table": {"Arn", "StreamArn"},
    "AWS::KMS::Key": {"Arn", "KeyId"},
    "AWS::Logs::LogGroup": {"Arn"},
    "AWS::Serverless::Function": {"Arn"},
    "AWS::Serverless::HttpApi": {"ApiEndpoint", "ApiId"},
    "AWS::ApiGatewayV2::Api": {"ApiEndpoint", "ApiId"},
}
SAM_EVENT_TYPES = {
    "Api",
    "CloudWatchEvent",
    "CloudWatchLogs",
    "Cognito",
    "DocumentDB",
    "DynamoDB",
    "EventBridgeRule",
    "HttpApi",
    "IoTRule",
    "Kinesis",
    "MQ",
    "MSK",
    "S3",
    "SNS",
    "SQS",
    "Schedule",
    "ScheduleV2",
    "SelfManagedKafka",
}
# API Gateway gives up on an integration after 30 s; receive long-polls for up to 20 s.
LONGEST_LONG_POLL_SECONDS = 20
API_GATEWAY_TIMEOUT_SECONDS = 30


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(TEMPLATE_PATH)


Resources = dict[str, Any]
"""The template's Resources section; tests read it loosely and let assertions fail loudly."""


@pytest.fixture(scope="module")
def merged_functions(template: Template) -> dict[str, Any]:
    """The template's functions with Globals.Function merged in, as SAM deploys them."""
    return dict(Stack(template).functions())


@pytest.fixture(scope="module")
def resources(template: Template) -> Resources:
    declared = template["Resources"]
    assert isinstance(declared, dict)
    return declared


def properties_of(resources: Resources, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = resources[logical_id]["Properties"]
    return properties


def references(node: Json) -> Iterator[tuple[str, str | None]]:
    """Yield (name, attribute or None) for every Ref, GetAtt and Fn::Sub variable in ``node``."""
    if isinstance(node, list):
        for item in node:
            yield from references(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            yield value, None
        elif key == "Fn::GetAtt" and isinstance(value, list):
            yield str(value[0]), str(value[1])
        elif key == "Fn::Sub":
            source, local = (value[0], value[1]) if isinstance(value, list) else (value, {})
            assert isinstance(source, str) and isinstance(local, dict)
            for name in re.findall(r"\$\{([^!}][^}]*)\}", source):
                if name not in local:
                    logical_id, _, attribute = name.partition(".")
                    yield (name, None) if "::" in name else (logical_id, attribute or None)
            yield from references(local)
        else:
            yield from references(value)


def functions(resources: Resources) -> dict[str, dict[str, Any]]:
    return {
        name: properties_of(resources, name)
        for name, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def events(resources: Resources) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (function, event name, event) for every function event."""
    for function, properties in functions(resources).items():
        for name, event in properties.get("Events", {}).items():
            yield function, name, event


def mentions(node: Json, logical_id: str) -> bool:
    return any(name == logical_id for name, _ in references(node))


# --- reading CloudFormation YAML -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!Ref Stage", {"Ref": "Stage"}),
        ("!GetAtt Table.StreamArn", {"Fn::GetAtt": ["Table", "StreamArn"]}),
        ("!GetAtt [Table, Arn]", {"Fn::GetAtt": ["Table", "Arn"]}),
        ("!Sub arn:${AWS::Partition}:x", {"Fn::Sub": "arn:${AWS::Partition}:x"}),
        ("!Sub ['a-${X}', {X: !Ref Y}]", {"Fn::Sub": ["a-${X}", {"X": {"Ref": "Y"}}]}),
        ("!Join [',', [a, !Ref B]]", {"Fn::Join": [",", ["a", {"Ref": "B"}]]}),
        ("!If [IsProd, 1, 2]", {"Fn::If": ["IsProd", 1, 2]}),
        ("!Equals [!Ref Stage, prod]", {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}),
        ("!Not [!Condition IsProd]", {"Fn::Not": [{"Condition": "IsProd"}]}),
        (
            "!And [!Condition A, !Condition B]",
            {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        ),
        ("!Or [!Condition A, !Condition B]", {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]}),
        ("!Select [0, !Split [',', a]]", {"Fn::Select": [0, {"Fn::Split": [",", "a"]}]}),
        ("!FindInMap [M, a, b]", {"Fn::FindInMap": ["M", "a", "b"]}),
        ("!Base64 hello", {"Fn::Base64": "hello"}),
        ("!ImportValue shared-vpc", {"Fn::ImportValue": "shared-vpc"}),
        ("!GetAZs ''", {"Fn::GetAZs": ""}),
    ],
)
def test_short_form_tags_read_as_long_form_intrinsics(text: str, expected: Json) -> None:
    # Given a value written with a CloudFormation short-form tag
    # When the template is parsed
    parsed = parse_template(f"Value: {text}")
    # Then it is the long-form intrinsic CloudFormation documents
    assert parsed["Value"] == expected


def test_getatt_short_form_keeps_dots_inside_the_attribute_name() -> None:
    # Given a GetAtt whose attribute name itself has a dot
    # When it is parsed
    parsed = parse_template("Value: !GetAtt Db.Endpoint.Address")
    # Then only the first dot separates the resource from the attribute
    assert parsed["Value"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}


def test_unquoted_dates_stay_strings_as_in_cloudformation() -> None:
    # Given an unquoted date, as in AWSTemplateFormatVersion
    # When it is parsed
    parsed = parse_template("AWSTemplateFormatVersion: 2010-09-09")
    # Then it stays the string CloudFormation expects, not a date
    assert parsed["AWSTemplateFormatVersion"] == "2010-09-09"


def test_the_project_template_reads_alike_with_libyaml_and_pure_python_parsers() -> None:
    # Given template.yaml, and PyYAML built with libyaml (as its wheels are)
    import yaml

    from mqless_cli.cfn import CfnLoader

    class PurePythonCfnLoader(yaml.SafeLoader):
        yaml_constructors = CfnLoader.yaml_constructors
        yaml_implicit_resolvers = CfnLoader.yaml_implicit_resolvers

    text = TEMPLATE_PATH.read_text()
    # When it is read by the template reader and by PyYAML's pure Python parser with its rules
    # Then the reader parses with libyaml (a start of `mqless dev` 50 ms sooner) into the same
    # values
    assert issubclass(CfnLoader, yaml.CSafeLoader)
    assert parse_template(text) == yaml.load(text, Loader=PurePythonCfnLoader)


# --- resolving values without AWS ---------------------------------------------------------

SMALL_TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Retention: {Type: Number, Default: 30, MinValue: 1}
  Zones: {Type: CommaDelimitedList, Default: "a,b"}
Mappings:
  Sizes: {dev: {memory: 256}, prod: {memory: 1024}}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
Globals:
  Function:
    Runtime: python3.11
    Layers: [!Ref Layer]
    Environment: {Variables: {A: global, B: global, DEBUG: true}}
Resources:
  Layer: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: x}}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Layers: [extra]
      Environment: {Variables: {B: own, STAGE: !Ref Stage}}
      Events:
        Tick: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(5 minutes)}}
        Nightly: {Type: Schedule, Properties: {Schedule: "cron(0 3 * * ? *)", Enabled: false}}
  ProdOnly: {Type: AWS::Serverless::Function, Condition: IsProd, Properties: {}}
"""


def small_stack(**overrides: object) -> Stack:
    return Stack(parse_template(SMALL_TEMPLATE), stack_name="s", parameter_overrides=overrides)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Ref": "Stage"}, "dev"),
        ({"Ref": "Retention"}, "30"),
        ({"Ref": "Zones"}, ["a", "b"]),
        ({"Ref": "AWS::URLSuffix"}, "amazonaws.com"),
        ({"Ref": "Layer"}, "s-Layer"),
        (
            {"Fn::Sub": "${AWS::Partition}:${AWS::Region}:${Stage}:${!Literal}"},
            "aws:us-east-1:dev:${Literal}",
        ),
        ({"Fn::Sub": ["${A}-${Stage}", {"A": {"Ref": "AWS::StackName"}}]}, "s-dev"),
        ({"Fn::Join": ["/", ["a", {"Ref": "Stage"}]]}, "a/dev"),
        ({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}, "y"),
        ({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]}, 256),
        ({"Fn::If": ["IsProd", "big", "small"]}, "small"),
        ({"Fn::Base64": "hi"}, "aGk="),
        ({"Keep": 1, "Drop": {"Ref": "AWS::NoValue"}}, {"Keep": 1}),
    ],
)
def test_stack_resolves_intrinsics_against_parameters_and_pseudo_parameters(
    value: Json, expected: Json
) -> None:
    # Given a stack of a small template with default parameter values
    stack = small_stack()
    # When a value with intrinsics is resolved
    resolved = stack.resolve(value)
    # Then it is what CloudFormation would compute
    assert resolved == expected


def test_parameter_overrides_change_resolved_values_and_conditions() -> None:
    # Given a stack deployed to prod
    stack = small_stack(Stage="prod")
    # When values depending on the stage are resolved
    # Then they follow the override, conditions included
    assert stack.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]}) == 1024
    assert stack.condition("IsProd") is True
    assert stack.condition("IsDev") is False
    assert "ProdOnly" in stack.functions()


def test_resources_whose_condition_is_false_are_left_out() -> None:
    # Given a dev stack and a function only prod declares
    stack = small_stack()
    # When the functions are listed
    # Then the prod-only function is not among them
    assert list(stack.functions()) == ["Fn"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"Stage": "qa"}, "not one of"),
        ({"Retention": "0"}, "MinValue"),
        ({"Retention": "many"}, "not a number"),
        ({"Nope": "x"}, "undeclared"),
    ],
)
def test_parameter_overrides_are_checked_like_cloudformation_does(
    overrides: dict[str, str], complaint: str
) -> None:
    # Given a parameter override the template does not allow
    # When the stack is built
    # Then it is refused, saying why
    with pytest.raises(TemplateError, match=complaint):
        small_stack(**overrides)


RULES_TEMPLATE = """
Parameters:
  Issuer: {Type: String, Default: ""}
  Audience: {Type: String, Default: ""}
Rules:
  IssuerNeedsAudience:
    RuleCondition: !Not [!Equals [!Ref Issuer, ""]]
    Assertions:
      - Assert: !Not [!Equals [!Ref Audience, ""]]
        AssertDescription: Audience is required with Issuer
"""


@pytest.mark.parametrize(
    "overrides",
    [{}, {"Audience": "app"}, {"Issuer": "https://id.example", "Audience": "app"}],
    ids=["neither", "audience only", "both"],
)
def test_parameters_that_keep_every_rule_are_accepted(overrides: dict[str, str]) -> None:
    # Given a rule that applies only when Issuer is set
    # When the stack is built with parameters that keep it (or where it does not apply)
    stack = Stack(parse_template(RULES_TEMPLATE), parameter_overrides=overrides)
    # Then the parameters are taken
    assert stack.parameters["Audience"] == overrides.get("Audience", "")


def test_parameters_that_break_a_rule_are_refused_with_its_description() -> None:
    # Given a rule that an Issuer needs an Audience
    # When the stack is built with an Issuer alone
    # Then it is refused, as CloudFormation refuses the deployment, with the rule's words
    with pytest.raises(TemplateError, match="IssuerNeedsAudience: Audience is required"):
        Stack(parse_template(RULES_TEMPLATE), parameter_overrides={"Issuer": "https://i.example"})


def test_function_properties_merge_globals_the_way_sam_does() -> None:
    # Given a function that overrides some global settings
    stack = small_stack()
    # When its properties and environment are read
    function = stack.functions()["Fn"]
    environment = stack.environment("Fn")
    # Then scalars are overridden, lists concatenated, env vars merged key by key as strings
    assert function["Runtime"] == "python3.12"
    assert function["Layers"] == [{"Ref": "Layer"}, "extra"]
    assert environment == {"A": "global", "B": "own", "DEBUG": "true", "STAGE": "dev"}


def test_schedules_list_both_schedule_event_kinds_with_their_state() -> None:
    # Given a function with a ScheduleV2 rate and a disabled Schedule cron
    stack = small_stack()
    # When the schedules are read
    schedules = stack.schedules()
    # Then both are there, with the rate's period in seconds
    assert schedules == [
        Schedule("Fn", "rate(5 minutes)", enabled=True),
        Schedule("Fn", "cron(0 3 * * ? *)", enabled=False),
    ]
    assert [schedule.rate_seconds for schedule in schedules] == [300, None]


def test_getatt_of_an_unprovisioned_resource_is_an_error_not_a_guess() -> None:
    # Given a stack where nothing was provisioned
    stack = small_stack()
    # When an attribute of a resource is asked for
    # Then the stack refuses rather than inventing an ARN
    with pytest.raises(TemplateError, match="not provisioned"):
        stack.resolve({"Fn::GetAtt": ["Layer", "Arn"]})


# --- authorizers ----------------------------------------------------------------------------

AUTH_TEMPLATE = """
Globals:
  HttpApi:
    Auth:
      DefaultAuthorizer: Implicit
      Authorizers:
        Implicit:
          FunctionArn: !GetAtt Check.Arn
          AuthorizerPayloadFormatVersion: "2.0"
Resources:
  Check: {Type: AWS::Serverless::Function, Properties: {}}
  Logs: {Type: AWS::Logs::LogGroup}
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      AccessLogSettings: {DestinationArn: !GetAtt Logs.Arn}
      Auth:
        DefaultAuthorizer: Token
        Authorizers:
          Token:
            FunctionArn: !GetAtt Check.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            Identity: {Headers: [Authorization], QueryStrings: [t], ReauthorizeEvery: 60}
          Shared:
            FunctionArn: !Sub "arn:aws:lambda:us-east-1:123456789012:function:${Check}:live"
            AuthorizerPayloadFormatVersion: "2.0"
            Identity: {Headers: [Authorization]}
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: {issuer: https://issuer.example, audience: [mqless]}
          Elsewhere:
            FunctionArn: arn:aws:lambda:us-east-1:123456789012:function:not-ours
            AuthorizerPayloadFormatVersion: "2.0"
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Default: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /a, Method: get}}
        Public:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /b, Method: GET, Auth: {Authorizer: NONE}}
        Named:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /c, Method: GET, Auth: {Authorizer: Shared}}
        ByJwt:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /d, Method: GET, Auth: {Authorizer: Jwt}}
        NotOurs:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /e, Method: GET, Auth: {Authorizer: Elsewhere}}
        Implicit: {Type: HttpApi, Properties: {Path: /f, Method: GET}}
"""


def auth_stack(text: str = AUTH_TEMPLATE) -> Stack:
    return Stack(parse_template(text), stack_name="s")


def test_routes_without_their_own_auth_get_their_apis_default_authorizer() -> None:
    # Given an HTTP API whose DefaultAuthorizer is a cached simple-response Lambda authorizer
    # When the routes' authorizers are read
    authorizers = auth_stack().http_authorizers()
    # Then a route without Auth gets it, with its identity sources and TTL
    assert authorizers[HttpRoute("GET", "/a", "Fn")] == Authorizer(
        name="Token",
        function="Check",
        identity_sources=(
            IdentitySource("header", "Authorization"),
            IdentitySource("querystring", "t"),
        ),
        ttl_seconds=60,
        simple_responses=True,
    )


def test_a_route_can_opt_out_of_authorization_or_name_another_authorizer() -> None:
    # Given a template whose default authorizer is Token, a route with Authorizer NONE and a
    # route naming Shared
    # When the authorizers of a NONE route and of a route naming `Shared` are read
    authorizers = auth_stack().http_authorizers()
    # Then the first has none; the second gets Shared, IAM responses, API Gateway's 300 s TTL
    assert HttpRoute("GET", "/b", "Fn") not in authorizers
    assert authorizers[HttpRoute("GET", "/c", "Fn")] == Authorizer(
        name="Shared",
        function="Check",
        identity_sources=(IdentitySource("header", "Authorization"),),
        ttl_seconds=300,
        simple_responses=False,
    )


def test_jwt_authorizers_are_not_run_and_foreign_functions_are_unknown() -> None:
    # Given a route authorized by a JWT authorizer and one by a Lambda ARN not in the template
    # When the authorizers of a JWT route and of a route whose function is not in the template
    authorizers = auth_stack().http_authorizers()
    # Then the JWT route has none the local gateway could run; the other names no function
    assert HttpRoute("GET", "/d", "Fn") not in authorizers
    assert authorizers[HttpRoute("GET", "/e", "Fn")].function is None


def test_events_without_an_api_id_use_the_implicit_apis_global_auth() -> None:
    # Given an event with no ApiId, and Globals.HttpApi naming a default authorizer
    # When the authorizer of an event of SAM's implicit HTTP API is read
    authorizer = auth_stack().http_authorizers()[HttpRoute("GET", "/f", "Fn")]
    # Then it is Globals.HttpApi's default, uncached since it has no identity source
    assert authorizer == Authorizer(name="Implicit", function="Check")


def test_a_route_naming_an_undeclared_authorizer_is_an_error() -> None:
    # Given a route that names an authorizer its API does not declare
    text = AUTH_TEMPLATE.replace("Auth: {Authorizer: Shared}", "Auth: {Authorizer: Typo}")
    # When the authorizers are read
    # Then the template is refused, naming the route
    with pytest.raises(TemplateError, match="GET /c names authorizer 'Typo'"):
        auth_stack(text).http_authorizers()


WS_AUTH_TEMPLATE = """
Resources:
  Check: {Type: AWS::Serverless::Function, Properties: {}}
  Handle: {Type: AWS::Serverless::Function, Properties: {}}
  Ws:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Gate:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Ws
      AuthorizerType: REQUEST
      AuthorizerUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/functions/${Check.Arn}
      IdentitySource: [route.request.querystring.access_token, route.request.header.Auth]
      Name: gate
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Ws
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/functions/${Handle.Arn}
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Ws
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Gate
      Target: !Sub integrations/${Integration}
  Default:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Ws, RouteKey: $default, Target: !Sub "integrations/${Integration}"}
"""


def test_a_custom_websocket_route_knows_its_request_authorizer() -> None:
    # Given a WebSocket API whose $connect is CUSTOM with a REQUEST authorizer
    # When its routes are read
    (api,) = auth_stack(WS_AUTH_TEMPLATE).websocket_apis()
    # Then $connect has the authorizer (its function, its identity sources); $default none
    assert api.routes["$connect"].authorizer == Authorizer(
        name="gate",
        function="Check",
        identity_sources=(
            IdentitySource("querystring", "access_token"),
            IdentitySource("header", "Auth"),
        ),
    )
    assert api.routes["$connect"].function == "Handle"
    assert api.routes["$default"].authorizer is None


def test_a_custom_websocket_route_without_its_authorizer_is_an_error() -> None:
    # Given a CUSTOM route whose AuthorizerId names no authorizer
    text = WS_AUTH_TEMPLATE.replace("AuthorizerId: !Ref Gate", "AuthorizerId: nowhere")
    # When the routes are read
    # Then the template is refused
    with pytest.raises(TemplateError, match="Connect: AuthorizerId"):
        auth_stack(text).websocket_apis()


# --- template.yaml: references ------------------------------------------------------------


def test_every_ref_and_getatt_names_a_declared_parameter_resource_or_pseudo_parameter(
    template: Template, resources: Resources
) -> None:
    # Given everything the template declares, and what SAM generates for each function
    parameters = template.get("Parameters", {})
    assert isinstance(parameters, dict)
    generated = {f"{name}Role" for name in functions(resources)}
    known = set(parameters) | set(resources) | PSEUDO_PARAMETERS | generated
    # When every reference in the template is collected
    dangling = {name for name, _ in references(template) if name not in known}
    # Then none of them points at nothing
    assert dangling == set()


def test_every_getatt_asks_for_an_attribute_its_resource_has(
    template: Template, resources: Resources
) -> None:
    # Given every GetAtt in the template
    wrong = []
    for name, attribute in references(template):
        if attribute is None or name not in resources:
            continue
        resource_type = str(resources[name].get("Type"))
        available = set(ATTRIBUTES.get(resource_type, {attribute}))
        if resource_type == "AWS::DynamoDB::Table" and (
            "StreamSpecification" not in properties_of(resources, name)
        ):
            available.discard("StreamArn")
        # When the attribute is checked against what its resource type offers
        if attribute not in available:
            wrong.append(f"{name}.{attribute}")
    # Then all exist (a stream ARN only where the table has a stream)
    assert wrong == []


def test_every_http_api_event_points_at_a_declared_http_api(
    resources: Resources,
) -> None:
    # Given the HTTP APIs the template declares
    apis = {
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::HttpApi"
    }
    # When each HttpApi event's ApiId is read
    targets = {
        f"{function}.{name}": event["Properties"].get("ApiId")
        for function, name, event in events(resources)
        if event["Type"] == "HttpApi"
    }
    # Then each names one of them explicitly
    refs_to_apis = [{"Ref": api} for api in apis]
    assert targets
    assert {event: api for event, api in targets.items() if api not in refs_to_apis} == {}


def test_every_event_type_is_one_sam_knows(resources: Resources) -> None:
    # Given every function event
    # When its type is read
    unknown = {
        f"{function}.{name}": event["Type"]
        for function, name, event in events(resources)
        if event["Type"] not in SAM_EVENT_TYPES
    }
    # Then SAM knows it (a typo would otherwise deploy a function nothing calls)
    assert unknown == {}


def test_websocket_apis_declare_a_valid_protocol(resources: Resources) -> None:
    # Given the raw API Gateway v2 APIs (WebSocket APIs are declared this way)
    apis = {
        name: properties_of(resources, name)
        for name, resource in resources.items()
        if resource["Type"] == "AWS::ApiGatewayV2::Api"
    }
    # When their protocol is read
    wrong = {
        name: properties.get("ProtocolType")
        for name, properties in apis.items()
        if properties.get("ProtocolType") not in ("HTTP", "WEBSOCKET")
    }
    # Then it is one API Gateway accepts (lint misses a WEBSOCKETS typo)
    assert wrong == {}


# --- template.yaml: parameters ------------------------------------------------------------


def test_a_jwt_issuer_without_an_audience_cannot_be_deployed(template: Template) -> None:
    # Given the template's parameters with a JWT issuer but no audience
    issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example"
    # When the stack is built with them (CloudFormation evaluates Rules before any change)
    # Then it is refused, saying the audience is required
    with pytest.raises(TemplateError, match="JwtAudience is required when JwtIssuer is set"):
        Stack(template, parameter_overrides={"JwtIssuer": issuer})
    # ...while an issuer with its audience, or no issuer at all, is fine
    Stack(template, parameter_overrides={"JwtIssuer": issuer, "JwtAudience": "app-client"})
    Stack(template)


# --- template.yaml: functions -------------------------------------------------------------


def test_every_function_handler_exists_in_its_code_uri(
    resources: Resources,
) -> None:
    missing = []
    for name, properties in functions(resources).items():
        # Given a function's CodeUri and Handler
        module, _, handler = str(properties["Handler"]).rpartition(".")
        source = ROOT / str(properties["CodeUri"]) / f"{module.replace('.', '/')}.py"
        # When its module is read
        if not source.is_file():
            missing.append(f"{name}: {source.relative_to(ROOT)} does not exist")
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        } | {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        # Then it defines the handler at module level
        if handler not in defined:
            missing.append(f"{name}: {handler} is not defined in {source.relative_to(ROOT)}")
    assert missing == []


def test_every_function_runs_python311_on_arm64(merged_functions: dict[str, Any]) -> None:
    # Given the functions with Globals merged in
    # When their runtime and architecture are read
    platforms = {
        name: (properties.get("Runtime"), tuple(properties.get("Architectures", [])))
        for name, properties in merged_functions.items()
    }
    # Then they all match the layer build (python3.11, arm64)
    assert platforms
    assert set(platforms.values()) == {("python3.11", ("arm64",))}


def test_core_layer_is_built_for_the_functions_platform(
    resources: Resources,
) -> None:
    # Given the core layer
    layer = resources["CoreLayer"]
    properties = properties_of(resources, "CoreLayer")
    # When its build settings are read
    # Then sam builds it for python3.11 on arm64 from a folder that holds the package
    assert layer["Metadata"] == {"BuildMethod": "python3.11", "BuildArchitecture": "arm64"}
    assert properties["CompatibleRuntimes"] == ["python3.11"]
    assert properties["CompatibleArchitectures"] == ["arm64"]
    content = ROOT / str(properties["ContentUri"])
    assert (content / "requirements.txt").is_file()
    assert (content / "mqless" / "__init__.py").is_file()


def test_http_api_function_outlasts_a_long_poll_but_not_api_gateway(
    resources: Resources,
) -> None:
    # Given the HTTP API function
    timeout = properties_of(resources, "HttpApiFunction")["Timeout"]
    # When its timeout is read
    # Then a 20 s long poll fits, and the function stops before API Gateway's 30 s limit
    assert isinstance(timeout, int)
    assert LONGEST_LONG_POLL_SECONDS < timeout < API_GATEWAY_TIMEOUT_SECONDS


def resources_named_in_environment(
    properties: dict[str, Any], resources: Resources, resource_type: str
) -> set[str]:
    """The resources of ``resource_type`` that a function's environment variables refer to."""
    variables = properties.get("Environment", {}).get("Variables", {})
    return {
        name
        for name, _ in references(variables)
        if resources.get(name, {}).get("Type") == resource_type
    }


def test_functions_may_use_the_tables_their_environment_names(
    merged_functions: dict[str, Any], resources: Resources
) -> None:
    missing = []
    for name, properties in _data_path(merged_functions).items():
        # Given a function and the tables its environment names
        tables = resources_named_in_environment(properties, resources, "AWS::DynamoDB::Table")
        # When its DynamoDB statements are read
        policies = [
            statement
            for policy in properties.get("Policies", [])
            for statement in policy.get("Statement", [])
            if any(str(a).startswith("dynamodb:") for a in statement.get("Action", []))
        ]
        # Then each of those tables is granted
        missing += [
            f"{name} -> {table}"
            for table in tables
            if not any(mentions(policy, table) for policy in policies)
        ]
    assert missing == []


def test_functions_may_make_and_open_data_keys_with_the_key_their_environment_names(
    merged_functions: dict[str, Any], resources: Resources
) -> None:
    missing = []
    for name, properties in _data_path(merged_functions).items():
        # Given a function and the KMS keys its environment names
        keys = resources_named_in_environment(properties, resources, "AWS::KMS::Key")
        statements = [
            statement
            for policy in properties.get("Policies", [])
            if isinstance(policy, dict)
            for statement in policy.get("Statement", [])
        ]
        for key in keys:
            # When the actions its policy statements allow on that key are collected
            actions = {
                action
                for statement in statements
                if statement["Effect"] == "Allow" and mentions(statement["Resource"], key)
                for action in statement["Action"]
            }
            # Then envelope encryption's two calls are among them
            if not {"kms:GenerateDataKey", "kms:Decrypt"} <= actions:
                missing.append(f"{name} -> {key}")
    assert missing == []


def test_every_function_has_a_log_group_with_the_configured_retention(
    resources: Resources,
) -> None:
    # Given the log groups the template declares
    log_groups = {
        name: properties_of(resources, name)
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }
    # When they are matched to the function whose /aws/lambda/ group they name
    covered = {
        function
        for function in functions(resources)
        for group in log_groups.values()
        if group.get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
        and group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    }
    # Then every function has one
    assert covered == set(functions(resources))


# --- template.yaml: storage and encryption ------------------------------------------------


def test_messages_table_has_no_secondary_index(resources: Resources) -> None:
    # Given the messages table (storage engine v2: docs/storage-engine.md)
    table = properties_of(resources, "MessagesTable")
    # When its indexes and key attributes are read
    # Then there is no index to bill on every write: order comes from the stream, delivery
    # state from the queue's own index items; only the table's keys are declared
    assert "GlobalSecondaryIndexes" not in table
    assert "LocalSecondaryIndexes" not in table
    assert table["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]


def test_messages_table_streams_new_images_only(resources: Resources) -> None:
    # Given the messages table
    table = properties_of(resources, "MessagesTable")
    # When its stream is read
    # Then it carries each new item's image: what the dispatch function indexes and pushes
    # (it reads no old image, and a record half the size is cheaper to carry)
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def test_dispatch_is_invoked_only_by_new_log_items_and_wake_markers(
    merged_functions: dict[str, Any],
) -> None:
    # Given the dispatch function's stream event
    events = merged_functions["DispatchFunction"]["Events"]
    [stream] = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    assert stream["Stream"] == {"Fn::GetAtt": ["MessagesTable", "StreamArn"]}
    # When its filter is read
    [pattern] = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
    # Then only INSERTs of queue and topic log items and of wake markers invoke it: index
    # segments, FIFO groups, dedup records, data keys, leases and acks cost no invocation
    assert pattern == {
        "eventName": ["INSERT"],
        "dynamodb": {
            "Keys": {
                "pk": {"S": [{"prefix": p} for p in (keys.QUEUE_LOG, keys.TOPIC_LOG, wake.PREFIX)]}
            }
        },
    }
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize(
    ("table", "attribute"), [("MessagesTable", "x"), ("DestinationsTable", "expires_at")]
)
def test_tables_expire_items_on_their_ttl_attribute(
    resources: Resources, table: str, attribute: str
) -> None:
    # Given a table
    # When its TTL setting is read
    # Then DynamoDB expires its items, for free, by the attribute the core writes: `x` on
    # every messages-table item (one letter: its name is billed in every item), `expires_at`
    # on connections, held frames and the like
    assert properties_of(resources, table)["TimeToLiveSpecification"] == {
        "AttributeName": attribute,
        "Enabled": True,
    }


@pytest.mark.parametrize("table", ["MessagesTable", "DestinationsTable"])
def test_tables_are_encrypted_with_the_message_key_and_recoverable(
    resources: Resources, table: str
) -> None:
    # Given a table
    properties = properties_of(resources, table)
    # When its encryption and recovery settings are read
    # Then it uses the customer managed key and has point-in-time recovery
    assert properties["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "MessageKey"},
    }
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_message_key_rotates_and_trusts_no_wildcard_principal(
    resources: Resources,
) -> None:
    # Given the message key
    key = properties_of(resources, "MessageKey")
    # When its rotation and the principals of its policy are read
    principals = [
        principal
        for statement in key["KeyPolicy"]["Statement"]
        for principal in flatten_principal(statement["Principal"])
    ]
    # Then it rotates, and no statement opens it to "*"
    assert key["EnableKeyRotation"] is True
    assert principals
    assert "*" not in principals


def flatten_principal(principal: Any) -> list[Any]:
    """Every principal in a policy's Principal, whether "*", {"AWS": x} or {"AWS": [x, y]}."""
    if not isinstance(principal, dict):
        return [principal]
    values = principal.values()
    return [item for value in values for item in (value if isinstance(value, list) else [value])]


# ---- monitoring (issue #5) ------------------------------------------------------------------


def _alarms(resources: Resources) -> dict[str, Any]:
    return {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_the_alarms_an_operator_needs_are_there(resources: Resources) -> None:
    """Given the project's template.yaml
    When its CloudWatch alarms are read
    Then there are the six an operator needs; the dead-letter alarm reads the DeadLettered total the
    functions write (namespace and service dimension), the depth alarm the DeadLetterDepth maximum,
    and every alarm notifies the optional SNS topic only when one is given
    """
    alarms = _alarms(resources)
    assert set(alarms) == {
        "DeadLetterAlarm",
        "DeadLetterQueueNotEmptyAlarm",
        "DispatchErrorsAlarm",
        "StreamIteratorAgeAlarm",
        "ThrottlesAlarm",
        "Http5xxAlarm",
    }
    dead = alarms["DeadLetterAlarm"]
    # it reads the total the functions write (observability.py): namespace and dimension
    from mqless.observability import COUNTS, NAMESPACE

    assert (dead["Namespace"], dead["MetricName"]) == (NAMESPACE, "DeadLettered")
    assert "DeadLettered" in COUNTS
    assert dead["Dimensions"] == [{"Name": "service", "Value": "mqless"}]
    depth = alarms["DeadLetterQueueNotEmptyAlarm"]
    assert (depth["MetricName"], depth["Statistic"]) == ("DeadLetterDepth", "Maximum")
    for name, alarm in alarms.items():
        # every alarm notifies the optional SNS topic, and only when one is given
        for key in ("AlarmActions", "OKActions"):
            assert alarm[key] == {
                "Fn::If": ["NotifyAlarms", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }, name


def test_the_dashboard_is_valid_json_naming_metrics_we_write(resources: Resources) -> None:
    """Given the dashboard body in template.yaml, with its ${...} substitutions filled
    When it is parsed as JSON and its metric rows are read (with CloudWatch's "." and "..."
    shorthand)
    Then every metric of our namespace is one the functions write, and Sent, DeadLettered and the
    latency are among them
    """
    import json

    from mqless.observability import COUNTS, GAUGES, LATENCY, NAMESPACE

    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(rendered)["widgets"]
    ours = set()
    for widget in widgets:
        namespace = name = ""
        for row in widget["properties"]["metrics"]:
            # CloudWatch shorthand: "." repeats the row above's value, "..." all of them
            if row[0] != "...":
                namespace = namespace if row[0] == "." else row[0]
                name = name if row[1] == "." else row[1]
            if namespace == NAMESPACE:
                ours.add(name)
    assert ours <= COUNTS | GAUGES | {LATENCY}
    assert {"Sent", "DeadLettered", LATENCY} <= ours


def test_functions_can_tell_the_console_where_the_websocket_api_is(
    merged_functions: dict[str, Any],
) -> None:
    """Given the template's functions with Globals merged
    When the HTTP API function's environment is read
    Then its WEBSOCKET_URL refers to the WebSocket API
    """
    env = merged_functions["HttpApiFunction"]["Environment"]["Variables"]
    assert "WebSocketApi" in str(env["WEBSOCKET_URL"])


# ---- least privilege (issue #6) --------------------------------------------------------------


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in function["Policies"]:
        assert set(policy) == {"Statement"}, f"only inline statements, not {set(policy)}"
        statements.extend(policy["Statement"])
    return statements


def test_functions_get_only_the_actions_they_use(merged_functions: dict[str, Any]) -> None:
    """Given the template's functions with Globals merged
    When each policy statement is read
    Then it allows only the DynamoDB, KMS and @connections actions the core uses, on named resources
    (the metric reads on "*" only for the HTTP API function), KMS only under a purpose encryption
    context, and ManageConnections only on the WebSocket API's @connections
    """
    allowed = {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "execute-api:ManageConnections",
    }
    # reading metrics back (the console's charts): CloudWatch has no resource types for
    # these two actions, so their statement can only name "*"; nothing else may
    metric_reads = {"cloudwatch:GetMetricData", "cloudwatch:ListMetrics"}
    for name, function in merged_functions.items():
        for statement in _statements(function):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert statement["Effect"] == "Allow"
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            if set(actions) == metric_reads:
                assert name == "HttpApiFunction" and resources == ["*"], name
                continue
            assert set(actions) <= allowed, (name, actions)
            assert "*" not in resources, name
            if any(a.startswith("kms:") for a in actions):
                condition = statement["Condition"]["StringEquals"]
                assert condition in (
                    {"kms:EncryptionContext:mqless:purpose": "message-body"},
                    {"kms:EncryptionContext:mqless:purpose": "dedup-key"},
                ), name
            if "execute-api:ManageConnections" in actions:
                text = str(resources)
                assert "@connections/*" in text and "WebSocketApi" in text


def _data_path(functions: dict[str, Any]) -> dict[str, Any]:
    """The functions that touch messages (the authorizer inherits the same environment from
    Globals but reads only principals and keys: see the test below)."""
    return {name: f for name, f in functions.items() if name != "AuthorizerFunction"}


def test_the_authorizer_may_only_read_principals_and_keys(
    merged_functions: dict[str, Any],
) -> None:
    """Given the authorizer function's policy statements
    When they are read
    Then the one statement allows GetItem and BatchGetItem on the destinations table and nothing
    else
    """
    statements = _statements(merged_functions["AuthorizerFunction"])

    assert [(s["Action"], s["Resource"]) for s in statements] == [
        (
            ["dynamodb:GetItem", "dynamodb:BatchGetItem"],
            {"Fn::GetAtt": ["DestinationsTable", "Arn"]},
        )
    ]


def test_the_authorizer_may_read_only_the_partitions_of_keys_and_principals(
    merged_functions: dict[str, Any],
) -> None:
    from mqless.storage import api_keys, principals

    # Given the authorizer's one statement
    [statement] = _statements(merged_functions["AuthorizerFunction"])
    # When its condition is read
    condition = statement["Condition"]
    # Then every partition key of every item it asks for must be one of the two partitions
    # the core keeps keys and principals in (not queues, subscriptions or connections)
    assert list(condition) == ["ForAllValues:StringEquals"]
    leading = condition["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    assert sorted(leading) == sorted([api_keys.PARTITION, principals.PARTITION])


# ---- throttling and the key policy (issue 11, finding 11) -------------------------------------

API_GATEWAY_ACCOUNT_RATE = 10_000  # requests/s per account and region, shared by every API
API_GATEWAY_ACCOUNT_BURST = 5_000


@pytest.mark.parametrize(
    ("stage", "rate", "burst"),
    [
        ("HttpApi", "HttpApiRateLimit", "HttpApiBurstLimit"),
        ("ServiceHttpApiStage", "HttpApiRateLimit", "HttpApiBurstLimit"),
        ("WebSocketStage", "WebSocketRateLimit", "WebSocketBurstLimit"),
    ],
)
def test_every_api_stage_throttles_every_route_by_parameters(
    template: Template, resources: Resources, stage: str, rate: str, burst: str
) -> None:
    # Given an API stage (SAM's HttpApi makes its $default stage)
    settings = properties_of(resources, stage)["DefaultRouteSettings"]
    # When its default route settings are read
    # Then both limits come from the template's parameters
    assert settings == {
        "ThrottlingRateLimit": {"Ref": rate},
        "ThrottlingBurstLimit": {"Ref": burst},
    }
    # ...whose defaults sit below API Gateway's account quota, so one flood of this stack
    # leaves room for the account's other APIs
    parameters = template["Parameters"]
    assert isinstance(parameters, dict)
    assert 0 < int(parameters[rate]["Default"]) < API_GATEWAY_ACCOUNT_RATE
    assert 0 < int(parameters[burst]["Default"]) < API_GATEWAY_ACCOUNT_BURST


def cfn_generated_name(stack_name: str, logical_id: str, limit: int) -> str:
    """The name CloudFormation gives a resource the template does not name:
    `<stack>-<logical id>-<12 random characters>`, the first two cut to fit `limit` (13
    characters kept for the tail; the stack name gets half of the rest, or more where the
    logical id leaves it)."""
    tail = "-Ab3dEf6hIj9L"
    room = limit - len(tail) - 1
    stack_length = min(len(stack_name), max((room + 1) // 2, room - len(logical_id)))
    logical_length = min(len(logical_id), room - stack_length)
    return f"{stack_name[:stack_length]}-{logical_id[:logical_length]}{tail}"


def log_group_arns(resources: Resources, stack_name: str) -> dict[str, str]:
    """The ARN each declared log group gets in a stack of this name."""
    arns = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Logs::LogGroup":
            continue
        declared = resource["Properties"].get("LogGroupName")
        if declared is None:
            group = cfn_generated_name(stack_name, name, limit=512)
        else:
            # /aws/lambda/${Function}: a function is named by CloudFormation (64 at most)
            (function,) = re.fullmatch(r"/aws/lambda/\$\{(\w+)\}", declared["Fn::Sub"]).groups()
            group = "/aws/lambda/" + cfn_generated_name(stack_name, function, limit=64)
        arns[name] = f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"
    return arns


def logs_may_use_the_key(template: Template, stack_name: str, arn: str) -> bool:
    """Whether the key policy lets CloudWatch Logs use the key for log group `arn`."""
    stack = Stack(template, stack_name=stack_name)
    policy = stack.resolve(template["Resources"]["MessageKey"]["Properties"]["KeyPolicy"])
    [statement] = [s for s in policy["Statement"] if "Service" in s["Principal"]]
    patterns = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    patterns = patterns if isinstance(patterns, list) else [patterns]
    return any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns)


@pytest.mark.parametrize("stack_name", ["mqless", "mqless-production-eu-west-1-blue"])
def test_the_key_lets_cloudwatch_logs_encrypt_every_log_group_of_this_stack(
    template: Template, resources: Resources, stack_name: str
) -> None:
    # Given the names CloudFormation gives this stack's log groups (stack names up to 32
    # characters stay whole in a function's name)
    arns = log_group_arns(resources, stack_name)
    assert len(stack_name) <= 32 and len(arns) == 6
    # When the key policy is asked whether CloudWatch Logs may encrypt each of them
    refused = [
        name for name, arn in arns.items() if not logs_may_use_the_key(template, stack_name, arn)
    ]
    # Then it may, for all of them (else creating the log group fails the deployment)
    assert refused == []


@pytest.mark.parametrize(
    "other",
    [
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/payroll-Export-Ab3dEf6hIj9L",
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/mqless-prod-HttpApiFunction-X",
        "arn:aws:logs:us-east-1:123456789012:log-group:mqless-prod-HttpApiAccessLogGroup-X",
        "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/mqless",
    ],
    ids=["another app", "a stack whose name starts alike", "its access logs", "any other"],
)
def test_the_key_refuses_cloudwatch_logs_for_log_groups_of_anything_else(
    template: Template, other: str
) -> None:
    # Given a log group of the account that is not one of stack mqless's
    # When the key policy of stack mqless is asked whether CloudWatch Logs may use the key
    # Then it may not
    assert not logs_may_use_the_key(template, "mqless", other)


def test_the_kms_condition_matches_what_the_core_sends() -> None:
    """Given the KMS conditions the template's policies use
    When the core builds the encryption context for a message body and for a dedup key
    Then their purposes are message-body and dedup-key, the values the policies require
    """
    from mqless.domain.queues import dedup
    from mqless.storage.data_keys import encryption_context

    assert encryption_context("/queue/orders")["mqless:purpose"] == "message-body"
    assert dedup.encryption_context() == {"mqless:purpose": "dedup-key"}


def test_the_functions_that_sign_or_check_receipts_and_references_may_use_the_stack_secret(
    merged_functions: dict[str, Any],
) -> None:
    # Given the functions' KMS statements
    def purposes(function: dict[str, Any]) -> set[str]:
        return {
            statement["Condition"]["StringEquals"]["kms:EncryptionContext:mqless:purpose"]
            for statement in _statements(function)
            if any(str(a).startswith("kms:") for a in statement["Action"])
        }

    # When the purposes each function may use are collected
    granted = {name: purposes(function) for name, function in merged_functions.items()}
    # Then every function that touches messages holds the stack's secret (the dedup-key
    # purpose): it keys FIFO dedup records, signs and checks receipts (HTTP and WebSocket
    # consumers, push consumers fed by dispatch, the sweeper's own leases) and the MACs of
    # references (dispatch signs what it indexes; every reader checks them) ...
    assert {name for name, found in granted.items() if "dedup-key" in found} == {
        "HttpApiFunction",
        "WebSocketFunction",
        "DispatchFunction",
        "SweeperFunction",
    }
    # ... every one of them handles message bodies, and the authorizer neither
    assert {name for name, found in granted.items() if "message-body" in found} == (
        set(merged_functions) - {"AuthorizerFunction"}
    )
    assert granted["AuthorizerFunction"] == set()


def test_the_key_policy_names_no_wildcard_principal(resources: Resources) -> None:
    """Given the message key's key policy in template.yaml
    When its statements are read
    Then no statement's principal is "*"
    """
    for statement in resources["MessageKey"]["Properties"]["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]
        assert principal != "*" and principal.get("AWS") != "*"


def test_log_groups_are_encrypted_and_kept_as_configured(resources: Resources) -> None:
    """Given the template's log groups, the HTTP API access log among them
    When their properties are read
    Then each is encrypted with the message key and kept for LogRetentionDays
    """
    groups = {n: r for n, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert "HttpApiAccessLogGroup" in groups
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["MessageKey", "Arn"]}, name
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_every_waived_security_check_says_why(resources: Resources) -> None:
    """Given the template's resources
    When their checkov skips are read
    Then there is at least one, and each names a CKV_ check and says why in more than 40 characters
    """
    waived = 0
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV_"), name
            assert len(skip["comment"]) > 40, f"{name} {skip['id']}: say why"
            waived += 1
    assert waived > 0
