"""`mqless dev`'s botocore shortcuts (cli/mqless_cli/local/botocore_shortcuts.py): the same
requests as botocore makes, for less work."""

from __future__ import annotations

import functools
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.context import get_context, start_as_current_context
from botocore.regions import EndpointResolverBuiltins
from botocore.useragent import UserAgentString, register_feature_id
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
from tests.call_counts import count_calls
from tests.component.test_moto_fixes import VALUES


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py): clients are made, no request leaves."""


def clients() -> list[Any]:
    """Clients whose User-Agent differs: services, client config, app id, extras."""
    return [
        boto3.client("dynamodb", region_name="us-east-1"),
        boto3.client("kms", region_name="us-east-1"),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(user_agent_extra="extra/1")
        ),
        boto3.client("dynamodb", region_name="us-east-1", config=Config(user_agent_appid="app")),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(retries={"mode": "adaptive"})
        ),
        boto3.client("dynamodb", region_name="us-east-1", config=Config(user_agent="legacy/1")),
    ]


def user_agents(made: list[Any]) -> list[str]:
    """Each client's User-Agent, outside any request context and inside two contexts that
    recorded different features, asked twice each (the second may come from a cache)."""
    found = []
    for client in made:
        creator = client._user_agent_creator
        for feature in (None, "RETRY_MODE_STANDARD", "PAGINATOR"):
            with start_as_current_context():
                if feature is not None:
                    register_feature_id(feature)
                found += [creator.to_string(), creator.to_string()]
    return found


def test_user_agents_are_the_strings_botocore_builds() -> None:
    """Given clients of different services and configs, and request contexts with different
    features, When their User-Agent is asked with the shortcuts on,
    Then every string is the one botocore builds without them."""
    made = clients()
    expected = user_agents(made)
    with botocore_shortcuts():
        found = user_agents(made)
    assert found == expected
    assert len(set(expected)) > len(made)  # the features made a difference


def test_a_clients_user_agent_is_built_once_per_set_of_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a client, When its User-Agent is asked for many requests with the shortcuts on,
    Then botocore builds it once (not twice per request)."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    builds = count_calls(monkeypatch, UserAgentString, "_build_os_metadata")
    with botocore_shortcuts():
        for _ in range(10):
            with start_as_current_context():
                client._user_agent_creator.to_string()
    assert builds() == 1


def test_the_shortcuts_come_off_with_the_last_block() -> None:
    """Given two overlapping blocks, When the first ends, Then the shortcuts stay on; when the
    last ends, botocore's own method is back."""
    original = UserAgentString.to_string
    first, second = botocore_shortcuts(), botocore_shortcuts()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert UserAgentString.to_string is not original
    second.__exit__(None, None, None)
    assert UserAgentString.to_string is original


def parsed_query(items: list[dict[str, Any]]) -> Any:
    """A DynamoDB Query response body holding `items` (binary as base64 text, as on the
    wire), parsed by botocore's JSON parser for the Query output shape."""
    import base64
    import json

    from botocore.parsers import create_parser

    def wire(value: Any) -> Any:
        ((member, inner),) = value.items()
        if member == "B":
            return {"B": base64.b64encode(inner).decode()}
        if member == "BS":
            return {"BS": [base64.b64encode(b).decode() for b in inner]}
        if member == "L":
            return {"L": [wire(v) for v in inner]}
        if member == "M":
            return {"M": {k: wire(v) for k, v in inner.items()}}
        return value

    body = {"Items": [{k: wire(v) for k, v in i.items()} for i in items], "Count": len(items)}
    response = {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}
    return create_parser("json").parse(response, _query_output_shape())


@functools.cache
def _query_output_shape() -> Any:
    """DynamoDB's Query output shape, loaded once (`_dynamodb_model`)."""
    return _dynamodb_model().operation_model("Query").output_shape


@functools.cache
def _dynamodb_model() -> Any:
    """DynamoDB's service model, loaded once, as a client's is: a new botocore session reads
    it again (~20 ms), twice an example, which was most of the properties' time."""
    import botocore.session

    return botocore.session.get_session().get_service_model("dynamodb")


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=5)))
def test_attribute_values_parse_as_botocore_parses_them(items: list[dict[str, Any]]) -> None:
    # Given any items (every AttributeValue type, nested maps and lists) in a Query answer
    expected = parsed_query(items)
    # When botocore parses the answer with the shortcuts on
    with botocore_shortcuts():
        found = parsed_query(items)
    # Then the parsed items are the same
    assert found == expected


def test_an_item_of_numbers_is_parsed_without_a_shape_walk_per_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an item holding a list of 200 numbers, and botocore's shape walk counted
    from botocore.parsers import BaseJSONParser

    walked = count_calls(monkeypatch, BaseJSONParser, "_parse_shape")
    item = {"l": {"L": [{"N": str(n)} for n in range(200)]}}
    # When botocore parses a Query answer holding it with the shortcuts on
    with botocore_shortcuts():
        found = parsed_query([item])
    # Then the numbers are all there, and no number took a walk of its own
    assert found["Items"] == [item]
    assert walked() < 20


# ---- attribute_values_validated_directly, attribute_values_serialized_directly ------------

ODD_VALUES = st.one_of(
    VALUES,
    st.sampled_from(
        [
            {"S": 1},
            {"N": 1.5},
            {"BOOL": "yes"},
            {"NULL": 1},
            {"X": "unknown"},
            {},
            {"S": "a", "N": "1"},
            {"L": ({"S": "tuple"},)},
            {"M": {1: {"S": "number name"}}},
            {"M": {"": {"S": "empty name"}}},
            {"SS": ["a", 2]},
            {"NS": ("1", "2")},
            {"L": [{"S": None}]},
            {"B": "text as binary"},
            "not a value",
            None,
        ]
    ),
)
"""Any AttributeValue, and values botocore refuses or reads its own way."""


def request_of(operation: str, values: dict[str, Any]) -> dict[str, Any]:
    """Parameters of a DynamoDB write holding `values` in its item or key and expression values."""
    holder = "Item" if operation == "PutItem" else "Key"
    return {
        "TableName": "t",
        holder: values,
        "ExpressionAttributeValues": {f":{k}": v for k, v in values.items()},
    }


def validated_and_serialized(operation: str, params: dict[str, Any]) -> Any:
    """botocore's validation report of a request, and its serialized body when valid."""
    from botocore.serialize import create_serializer
    from botocore.validate import ParamValidator

    operation_model = _dynamodb_model().operation_model(operation)
    report = ParamValidator().validate(params, operation_model.input_shape)
    if report.has_errors():
        return "invalid", report.generate_report()
    return "valid", create_serializer("json").serialize_to_request(params, operation_model)


@settings(max_examples=300, deadline=None)
@given(
    operation=st.sampled_from(["PutItem", "UpdateItem", "DeleteItem"]),
    values=st.dictionaries(st.text(max_size=4), ODD_VALUES, max_size=4),
)
def test_requests_are_validated_and_written_as_botocore_does(
    operation: str, values: dict[str, Any]
) -> None:
    # Given any AttributeValues (binary, sets, nested, wrong types, unknown members)
    params = request_of(operation, values)
    expected = validated_and_serialized(operation, params)
    # When botocore validates and writes a request holding them with the shortcuts on
    with botocore_shortcuts():
        found = validated_and_serialized(operation, params)
    # Then the report of errors, or the request written (body bytes included), is the same
    assert found == expected


def test_an_item_of_numbers_is_validated_and_written_without_a_walk_per_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an item holding a list of 200 numbers, and botocore's walks counted
    from botocore.serialize import JSONSerializer
    from botocore.validate import ParamValidator

    item = {"pk": {"S": "p"}, "l": {"L": [{"N": str(n)} for n in range(200)]}}
    params = request_of("PutItem", item)
    with botocore_shortcuts():
        checked = count_calls(monkeypatch, ParamValidator, "_validate_structure")
        written = count_calls(monkeypatch, JSONSerializer, "_serialize")
        # When botocore validates and writes a PutItem of it with the shortcuts on
        verdict, request = validated_and_serialized("PutItem", params)
    # Then the body holds every number, and no number took a walk of its own
    assert verdict == "valid"
    assert json.loads(request["body"])["Item"] == item
    assert checked() < 5
    assert written() < 10


def endpoint_clients() -> list[Any]:
    """Clients whose endpoint parameters differ: services, regions, FIPS, dual-stack, an
    endpoint URL, account-id endpoint modes, an account id in the credentials."""
    session = boto3.session.Session(
        aws_access_key_id="a", aws_secret_access_key="b", aws_account_id="123456789012"
    )
    return [
        boto3.client("dynamodb", region_name="us-east-1"),
        boto3.client("dynamodbstreams", region_name="eu-west-1"),
        boto3.client("kms", region_name="us-east-1"),
        boto3.client(
            "dynamodb", region_name="us-gov-west-1", config=Config(use_fips_endpoint=True)
        ),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(use_dualstack_endpoint=True)
        ),
        boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://localhost:4566"),
        session.client(
            "dynamodb", region_name="us-east-1", config=Config(account_id_endpoint_mode="required")
        ),
        session.client("dynamodb", region_name="us-east-1"),
    ]


ENDPOINT_ARGUMENTS: list[dict[str, Any]] = [
    {},
    {"TableName": "t"},
    {"TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/t"},
    {"StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"},
    {"TransactItems": [{"Put": {"TableName": "a"}}, {"Update": {"TableName": "b"}}]},
    {"RequestItems": {"a": {}, "b": {}}},
    {"KeyId": "k"},
]
"""Request arguments that some operations take endpoint parameters from."""


def endpoints(made: list[Any]) -> list[Any]:
    """For every client, operation and arguments: the endpoint parameters botocore resolves
    and the feature ids it registers (or the error it raises), and the endpoint's URL."""
    found: list[Any] = []
    for client in made:
        resolver = client._ruleset_resolver
        model = client.meta.service_model
        for name in model.operation_names:
            operation = model.operation_model(name)
            for arguments in ENDPOINT_ARGUMENTS:
                with start_as_current_context():
                    try:
                        params = resolver._get_provider_params(operation, arguments, {})
                        url = client._resolve_endpoint_ruleset(operation, arguments, {})[0]
                        features = sorted(get_context().features)  # type: ignore[union-attr]
                        found.append((name, params, url, features))
                    except Exception as error:
                        found.append((name, "raised", type(error).__name__, str(error)))
    return found


def test_endpoint_parameters_are_the_ones_botocore_resolves() -> None:
    # Given clients of different services, regions and endpoint settings, and a handler that
    # customizes a builtin for one of them
    made = endpoint_clients()

    def customized(builtins: dict[Any, Any], **_: Any) -> None:
        builtins[EndpointResolverBuiltins.AWS_REGION] = "eu-central-1"

    made[1].meta.events.register("before-endpoint-resolution.dynamodb-streams", customized)
    expected = endpoints(made)
    # When every operation's endpoint is resolved with the shortcuts on (twice: the second
    # time from the plans the first made)
    with botocore_shortcuts():
        found = [endpoints(made), endpoints(made)]
    # Then the parameters, features, URLs and errors are the ones botocore gives
    assert found == [expected, expected]
    assert any("eu-central-1" in str(entry) for entry in expected)
    assert any(entry[1] == "raised" for entry in expected)


def test_endpoint_parameters_are_not_asked_of_four_sources_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client, and botocore's look-up of a parameter's sources counted
    from botocore.regions import EndpointRulesetResolver

    client = boto3.client("dynamodb", region_name="us-east-1")
    operation = client.meta.service_model.operation_model("PutItem")
    asked = count_calls(monkeypatch, EndpointRulesetResolver, "_resolve_param_from_context")
    with botocore_shortcuts():
        # When the endpoint of ten PutItem requests is resolved with the shortcuts on
        urls = {
            client._resolve_endpoint_ruleset(operation, {"TableName": f"t{n}"}, {})[0]
            for n in range(10)
        }
    # Then each has its endpoint, and no parameter's sources were asked one by one
    assert urls == {"https://dynamodb.us-east-1.amazonaws.com"}
    assert asked() == 0


def test_a_builder_changed_after_its_string_was_kept_gets_the_string_botocore_builds() -> None:
    # Given a client's User-Agent builder asked once with the shortcuts on
    client = boto3.client("dynamodb", region_name="us-east-1")
    creator = client._user_agent_creator
    with botocore_shortcuts(), start_as_current_context():
        creator.to_string()
        # When its client features and its extra text change, and it is asked again
        creator._client_features.add("W")
        with_feature = creator.to_string()
        creator._session_user_agent_extra = "other/2"
        with_extra = creator.to_string()
    # Then each string is the one botocore builds for the builder as it is then
    with start_as_current_context():
        creator._session_user_agent_extra = "other/2"
        assert with_extra == creator.to_string()
        assert "other/2" in with_extra and "W" in with_feature.split(" m/")[1]


def test_a_clients_user_agent_is_not_keyed_anew_for_each_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client's User-Agent builder, and the shortcut's key building counted
    from mqless_cli.local import botocore_client_shortcuts as shortcuts

    client = boto3.client("dynamodb", region_name="us-east-1")
    keyed = count_calls(monkeypatch, shortcuts, "_hashable")
    with botocore_shortcuts():
        # When its User-Agent is asked twice in each of ten request contexts
        found = set()
        for _ in range(10):
            with start_as_current_context():
                register_feature_id("RETRY_MODE_STANDARD")
                found |= {client._user_agent_creator.to_string() for _ in range(2)}
    # Then it is one string, and the key was built from the builder's fields only once
    assert len(found) == 1
    assert keyed() <= len(vars(client._user_agent_creator))


def retry_handlers() -> list[Any]:
    """The legacy retry handler of clients of DynamoDB, Streams and KMS, and of one
    configured with its own retry settings."""
    made = [
        boto3.client("dynamodb", region_name="us-east-1"),
        boto3.client("dynamodbstreams", region_name="us-east-1"),
        boto3.client("kms", region_name="us-east-1"),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(retries={"max_attempts": 2})
        ),
    ]
    return [
        handler
        for client in made
        for handler in client.meta.events._emitter._handlers.prefix_search(
            "needs-retry.dynamodb.GetItem"
            if client.meta.service_model.service_name == "dynamodb"
            else f"needs-retry.{client.meta.service_model.service_id.hyphenize()}.Op"
        )
        if type(handler).__name__ == "RetryHandler"
    ]


RETRY_CASES: list[tuple[int, dict[str, str], dict[str, Any], Exception | None]] = [
    (200, {}, {}, None),
    (200, {"x-amz-crc32": "0"}, {}, None),  # the body's checksum is 0: no retry
    (200, {"x-amz-crc32": "12345"}, {}, None),  # a wrong checksum: ChecksumError
    (400, {}, {"Error": {"Code": "ProvisionedThroughputExceededException"}}, None),
    (400, {}, {"Error": {"Code": "ThrottlingException"}}, None),
    (400, {}, {"Error": {"Code": "ConditionalCheckFailedException"}}, None),
    (429, {}, {}, None),
    (500, {}, {}, None),
    (503, {}, {}, None),
    (509, {}, {}, None),
    (204, {}, {}, None),
    (0, {}, {}, ConnectionError("refused")),
]
"""Responses (status, headers, parsed answer) and exceptions a retry check is asked about."""


def retry_verdicts(handlers: list[Any]) -> list[Any]:
    """What each handler answers for each case at each attempt: the delay, or the error."""
    from botocore.awsrequest import AWSResponse

    found = []
    for handler in handlers:
        for status, headers, parsed, exception in RETRY_CASES:
            for attempt in (1, 5):
                response = None
                if exception is None:
                    http = AWSResponse("https://h/", status, headers, None)
                    http._content = b""
                    response = (http, {"ResponseMetadata": {}, **parsed})
                context: dict[str, Any] = {"retries": {"attempt": attempt}}
                try:
                    verdict = handler(
                        attempts=attempt,
                        response=response,
                        caught_exception=exception,
                        request_dict={"context": context},
                    )
                    found.append(("delay" if verdict else verdict, context))
                except Exception as error:
                    found.append(("raised", type(error).__name__))
    return found


def test_retry_checks_answer_as_botocores_do() -> None:
    # Given the legacy retry handlers of several clients, and responses of every kind:
    # successes, checksums right and wrong, throttles, errors, server errors, exceptions
    handlers = retry_handlers()
    expected = retry_verdicts(handlers)
    # When each is asked about each response with the shortcuts on
    with botocore_shortcuts():
        found = retry_verdicts(handlers)
    # Then each answers as botocore does: the same retries, errors and raised exceptions
    assert found == expected
    assert ("raised", "ChecksumError") in expected and (
        "delay",
        {"retries": {"attempt": 1, "max": 5}},
    ) in expected


def test_a_success_is_not_asked_of_each_retry_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a DynamoDB client's retry handler, and its status checks counted
    from botocore.awsrequest import AWSResponse
    from botocore.retryhandler import HTTPStatusCodeChecker

    handler = retry_handlers()[0]
    asked = count_calls(monkeypatch, HTTPStatusCodeChecker, "_check_response")
    response = (AWSResponse("https://h/", 200, {}, None), {"ResponseMetadata": {}})
    with botocore_shortcuts():
        # When it is asked about ten successful responses
        verdicts = [
            handler(
                attempts=1, response=response, caught_exception=None, request_dict={"context": {}}
            )
            for _ in range(10)
        ]
    # Then none is retried, and no status check was asked
    assert verdicts == [None] * 10
    assert asked() == 0


# ---- epoch times --------------------------------------------------------------------------


@functools.cache
def time_shape() -> Any:
    """The shape of a StreamRecord's ApproximateCreationDateTime."""
    from botocore.loaders import Loader
    from botocore.model import ServiceModel

    model = ServiceModel(Loader().load_service_model("dynamodbstreams", "service-2"))
    return model.shape_for("StreamRecord").members["ApproximateCreationDateTime"]


def parsed_time(value: Any) -> Any:
    """What botocore's JSON parser makes of a StreamRecord's ApproximateCreationDateTime."""
    from botocore.parsers import JSONParser

    return JSONParser()._handle_timestamp(time_shape(), value)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.integers(-(2**33), 2**34),
        st.floats(-(2.0**33), 2.0**34, allow_nan=False, allow_infinity=False),
    )
)
def test_epoch_times_parse_as_botocore_parses_them(value: Any) -> None:
    # Given botocore's own reading of an epoch time (in this process's zone)
    expected = parsed_time(value)
    # When it is read with the shortcuts on
    with botocore_shortcuts():
        found = parsed_time(value)
    # Then it is the same datetime: same instant, wall time, zone class, offset and fold
    assert (found, found.replace(tzinfo=None), found.fold) == (
        expected,
        expected.replace(tzinfo=None),
        expected.fold,
    )
    assert (type(found.tzinfo), found.utcoffset(), found.tzname()) == (
        type(expected.tzinfo),
        expected.utcoffset(),
        expected.tzname(),
    )


def test_an_epoch_time_is_read_without_dateutils_fromutc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a zone without daylight saving time (this process's, as in a container on UTC)
    from dateutil.tz import tzlocal

    if tzlocal()._hasdst:
        pytest.skip("the local zone has daylight saving time: botocore's own way is taken")
    converted = count_calls(monkeypatch, tzlocal, "fromutc")
    # When an answer's epoch time is read with the shortcuts on
    with botocore_shortcuts():
        found = parsed_time(1_767_229_261.005)
    # Then it is botocore's datetime, made without dateutil's conversion from UTC
    assert found.timestamp() == 1_767_229_261.005
    assert converted() == 0
