"""`mqless dev`'s shortcuts through a botocore client's call (cli/mqless_cli/local/
botocore_request_shortcuts.py and botocore_call_shortcuts.py): request members validated
and written, headers, URLs, standard-mode retry checks, event emission and parsers answer
as botocore answers, for less work."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
from tests.call_counts import count_calls
from tests.component.test_botocore_shortcuts import (
    RETRY_CASES,
    _dynamodb_model,
    validated_and_serialized,
)


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py): clients are made, no request leaves."""


# ---- request_members_validated_directly -------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=3), st.integers(-1, 2), st.none(), st.booleans(), st.binary(max_size=2)
)
"""Text of any length (empty included), and values botocore refuses where text is due."""

MEMBERS: dict[str, Any] = {
    "TableName": TEXTS,
    "IndexName": TEXTS,
    "UpdateExpression": TEXTS,
    "ConditionExpression": TEXTS,
    "KeyConditionExpression": TEXTS,
    "ReturnValues": TEXTS,
    "ConsistentRead": st.one_of(st.booleans(), st.integers(0, 1), st.text(max_size=1)),
    "ScanIndexForward": st.one_of(st.booleans(), st.none()),
    "Limit": st.one_of(st.integers(-1, 3), st.booleans(), st.floats(0, 2), st.text(max_size=1)),
    "ExpressionAttributeNames": st.one_of(
        st.dictionaries(TEXTS, TEXTS, max_size=3), st.lists(st.text(), max_size=1), st.text()
    ),
    "Key": st.one_of(st.just({"pk": {"S": "p"}}), st.just({"pk": {"N": 1}}), st.none()),
    "Unknown": st.text(max_size=1),
}
"""Members of DynamoDB requests (and one no operation has), each with odd values too."""


@settings(max_examples=400, deadline=None)
@given(
    operation=st.sampled_from(["GetItem", "UpdateItem", "DeleteItem", "Query", "PutItem"]),
    params=st.fixed_dictionaries({}, optional=MEMBERS),
)
def test_request_members_are_validated_as_botocore_validates_them(
    operation: str, params: dict[str, Any]
) -> None:
    # Given requests with any of their members, of any type and length, required ones missing,
    # unknown ones present
    expected = validated_and_serialized(operation, params)
    # When botocore validates (and writes) them with the shortcuts on
    with botocore_shortcuts():
        found = validated_and_serialized(operation, params)
    # Then the report of errors (same errors, same order), or the request written, is the same
    assert found == expected


def test_a_requests_plain_members_are_not_walked_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an UpdateItem of text, boolean and name-map members, and botocore's checks counted
    from botocore.validate import ParamValidator

    params = {
        "TableName": "messages",
        "Key": {"pk": {"S": "q"}, "sk": {"S": "-"}},
        "UpdateExpression": "SET #v = :v",
        "ConditionExpression": "attribute_exists(pk)",
        "ExpressionAttributeNames": {"#v": "v"},
        "ExpressionAttributeValues": {":v": {"N": "1"}},
        "ReturnValues": "ALL_NEW",
    }
    with botocore_shortcuts():
        texts = count_calls(monkeypatch, ParamValidator, "_validate_string")
        maps = count_calls(monkeypatch, ParamValidator, "_validate_map")
        # When it is validated with the shortcuts on
        verdict, _ = validated_and_serialized("UpdateItem", params)
    # Then it is valid, and no text and no map took botocore's walk
    assert verdict == "valid"
    assert texts() == 0
    assert maps() == 0


def test_a_requests_plain_members_are_written_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a Query of text, boolean and integer members, and botocore's default writer counted
    from botocore.serialize import JSONSerializer

    params = {
        "TableName": "messages",
        "IndexName": "by-time",
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": "q"}},
        "ConsistentRead": False,
        "ScanIndexForward": True,
        "Limit": 25,
    }
    expected = validated_and_serialized("Query", params)
    with botocore_shortcuts():
        defaults = count_calls(monkeypatch, JSONSerializer, "_default_serialize")
        # When it is written with the shortcuts on
        found = validated_and_serialized("Query", params)
    # Then the body is botocore's, byte for byte, and no member went to the default writer
    assert found == expected
    assert defaults() == 0


# ---- standard_successes_not_checked_for_retries -----------------------------------------


def standard_handlers() -> list[Any]:
    """The standard-mode retry handlers of new clients (DynamoDB as the functions make it,
    DynamoDB with two attempts, adaptive mode, KMS): new, so no retry quota is spent yet."""
    made = [
        boto3.client(
            "dynamodb",
            region_name="us-east-1",
            config=Config(retries={"mode": "standard", "max_attempts": 4}),
        ),
        boto3.client(
            "dynamodb",
            region_name="us-east-1",
            config=Config(retries={"mode": "standard", "max_attempts": 2}),
        ),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(retries={"mode": "adaptive"})
        ),
        boto3.client("kms", region_name="us-east-1", config=Config(retries={"mode": "standard"})),
    ]
    found = []
    for client in made:
        model = client.meta.service_model
        name = model.operation_names[0]
        event = f"needs-retry.{model.service_id.hyphenize()}.{name}"
        for handler in client.meta.events._emitter._handlers.prefix_search(event):
            if getattr(handler, "__name__", "") == "needs_retry":
                found.append((handler, model.operation_model(name)))
    return found


def standard_verdicts(handlers: list[Any]) -> list[Any]:
    """What each handler answers for each response at attempts 1, 2 and 5: retry or not,
    the request's retries context and the answer's metadata afterwards (or the error)."""
    from botocore.awsrequest import AWSResponse

    found = []
    for handler, operation in handlers:
        for status, headers, parsed, exception in RETRY_CASES:
            for attempt in (1, 2, 5):
                response = None
                answer: dict[str, Any] = {"ResponseMetadata": {"RequestId": "r"}, **parsed}
                if exception is None:
                    http = AWSResponse("https://h/", status, headers, None)
                    http._content = b""
                    response = (http, answer)
                context: dict[str, Any] = {"retries": {"attempt": attempt}}
                try:
                    verdict = handler(
                        attempts=attempt,
                        response=response,
                        caught_exception=exception,
                        request_dict={"context": context},
                        operation=operation,
                    )
                    found.append(("retry" if verdict else verdict, context, answer))
                except Exception as error:
                    found.append(("raised", type(error).__name__))
    return found


def test_standard_retry_checks_answer_as_botocores_do() -> None:
    # Given standard-mode retry handlers of several clients, and responses of every kind:
    # successes, checksums right and wrong, throttles, errors, server errors, exceptions, at
    # attempts below and at the maximum
    expected = standard_verdicts(standard_handlers())
    # When new handlers of the same clients are asked about each with the shortcuts on
    with botocore_shortcuts():
        found = standard_verdicts(standard_handlers())
    # Then each answers as botocore does: the same retries, contexts, metadata and errors
    assert found == expected
    assert any(f[0] == "retry" for f in expected)
    assert any(
        f[0] is None and f[2]["ResponseMetadata"].get("MaxAttemptsReached") for f in expected
    )


def test_a_standard_mode_success_is_not_asked_of_each_retry_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a DynamoDB client's standard-mode retry handler, and its retry checks counted
    from botocore.awsrequest import AWSResponse
    from botocore.retries.standard import StandardRetryConditions

    asked = count_calls(monkeypatch, StandardRetryConditions, "is_retryable")
    with botocore_shortcuts():
        handler, operation = standard_handlers()[0]  # registered while the shortcuts are on
        # When it is asked about ten successful responses
        contexts = [{"retries": {"attempt": 1}} for _ in range(10)]
        verdicts = [
            handler(
                attempts=1,
                response=(AWSResponse("https://h/", 200, {}, None), {}),
                caught_exception=None,
                request_dict={"context": context},
                operation=operation,
            )
            for context in contexts
        ]
    # Then none is retried, each request's context records the max attempts, and no check
    # was asked
    assert verdicts == [None] * 10
    assert contexts == [{"retries": {"attempt": 1, "max": 5}}] * 10  # 4 retries: 5 attempts
    assert asked() == 0


def test_a_clients_retry_checks_are_botocores_once_the_shortcuts_are_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client made while the shortcuts were on (its retry handler registered then)
    from botocore.awsrequest import AWSResponse
    from botocore.retries.standard import StandardRetryConditions

    with botocore_shortcuts():
        handler, operation = standard_handlers()[0]
    asked = count_calls(monkeypatch, StandardRetryConditions, "is_retryable")
    # When it is asked about a success after they came off
    verdict = handler(
        attempts=1,
        response=(AWSResponse("https://h/", 200, {}, None), {}),
        caught_exception=None,
        request_dict={"context": {}},
        operation=operation,
    )
    # Then botocore's own checks answer
    assert verdict is None
    assert asked() == 1


# ---- events_emitted_directly ------------------------------------------------------------


def emitted(client: Any) -> list[Any]:
    """What a client's events give to, and get back from, handlers registered as a library
    registers them (by service and operation, by service, for every service, first and last,
    under an event's old alias, with a unique id), by `emit` and `emit_until_response`."""
    seen: list[Any] = []
    events = client.meta.events

    def handler(tag: str, answer: Any = None) -> Any:
        def handle(**kwargs: Any) -> Any:
            seen.append((tag, sorted(kwargs)))
            return answer

        return handle

    events.register("before-parse.dynamodb.GetItem", handler("operation"))
    events.register("before-parse.dynamodb", handler("service", "answered"))
    events.register_first("before-parse", handler("every service first"))
    events.register_last("before-parse.dynamodb", handler("last"))
    events.register("before-parse.dynamodb.*", handler("unique"), unique_id="u")
    events.register("before-parse.dynamodb.*", handler("unique again"), unique_id="u")
    events.register("provide-client-params.apigateway.GetRestApi", handler("old alias", 1))
    for name in ("before-parse.dynamodb.GetItem", "provide-client-params.api-gateway.GetRestApi"):
        for _ in range(2):  # the second finds its handlers kept
            seen.append(("emit", events.emit(name, params={"a": 1}, model=None)))
            seen.append(("until", events.emit_until_response(name, params={})))
    seen.append(("none", events.emit("response-received.dynamodb.GetItem", request=None)))
    seen.append(("none", events.emit_until_response("response-received.dynamodb.GetItem")))
    return [(tag, named(value)) for tag, value in seen]


def named(value: Any) -> Any:
    """`value` with each handler in it given by its name (handlers differ between clients)."""
    if callable(value):
        return value.__qualname__
    if isinstance(value, list | tuple):
        return [named(v) for v in value]
    return value


def test_events_reach_their_handlers_as_botocore_emits_them() -> None:
    # Given handlers registered on a client in every way botocore allows
    expected = emitted(boto3.client("dynamodb", region_name="us-east-1"))
    # When the same events are emitted on a new client with the shortcuts on
    with botocore_shortcuts():
        found = emitted(boto3.client("dynamodb", region_name="us-east-1"))
    # Then the same handlers are called, in the same order, with the same arguments, and
    # the same responses come back
    assert found == expected
    assert ("old alias", ["event_name", "model", "params"]) in expected


def test_events_are_logged_at_debug_as_botocore_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    # Given botocore's event log at DEBUG
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.meta.events.register("before-parse.dynamodb.GetItem", lambda **_: None)
    client.meta.events.emit("before-parse.dynamodb.GetItem", params={})  # handlers kept
    # When an event is emitted with the shortcuts on
    with botocore_shortcuts(), caplog.at_level(logging.DEBUG, logger="botocore.hooks"):
        client.meta.events.emit("before-parse.dynamodb.GetItem", params={})
    # Then each handler's call is logged, as botocore logs it
    assert any("calling handler" in r.getMessage() for r in caplog.records)


def test_an_event_calls_its_handlers_without_a_log_call_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client's event with three handlers, emitted once, and the event log's calls
    # counted (the log is not at DEBUG)
    from botocore import hooks

    client = boto3.client("dynamodb", region_name="us-east-1")
    for _ in range(3):
        client.meta.events.register("before-parse.dynamodb.GetItem", lambda **_: None)
    client.meta.events.emit("before-parse.dynamodb.GetItem", params={})
    logged = count_calls(monkeypatch, hooks.logger, "debug")
    # When it is emitted ten times with the shortcuts on
    with botocore_shortcuts():
        for _ in range(10):
            client.meta.events.emit("before-parse.dynamodb.GetItem", params={})
    # Then no log call was made for a handler
    assert logged() == 0


# ---- header_dicts_read_directly ---------------------------------------------------------

NAMES = st.sampled_from(["Content-Length", "content-length", "X-Amz-Target", "x-amz-crc32", "É"])


def read_headers(pairs: list[tuple[Any, str]], asked: list[Any]) -> Any:
    """What botocore reads of a `HeadersDict` of `pairs`: whether each asked name is there,
    its value (or a default), the parser's lowercase copy (or the errors raised)."""
    from botocore.awsrequest import HeadersDict
    from botocore.parsers import lowercase_dict

    def attempt(read: Any) -> Any:
        try:
            return read()
        except Exception as error:
            return ("raised", type(error).__name__)

    headers = HeadersDict(pairs)
    return (
        [attempt(lambda n=name: n in headers) for name in asked],
        [attempt(lambda n=name: headers.get(n, "absent")) for name in asked],
        [attempt(lambda n=name: headers.get(n)) for name in asked],
        attempt(lambda: lowercase_dict(headers)),
        attempt(lambda: lowercase_dict({"A": 1, "b": 2})),
    )


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.one_of(NAMES, st.text(max_size=3)), st.text(max_size=3))),
    asked=st.lists(st.one_of(NAMES, st.text(max_size=2), st.integers(0, 1), st.none())),
)
def test_headers_are_read_as_botocore_reads_them(pairs: list[Any], asked: list[Any]) -> None:
    # Given headers of any names (the same name in other cases included), and names asked
    # about (present, absent, not text)
    expected = read_headers(pairs, asked)
    # When botocore reads them with the shortcuts on
    with botocore_shortcuts():
        found = read_headers(pairs, asked)
    # Then it finds the same names, values and lowercase copy (or the same errors)
    assert found == expected


def test_headers_are_read_without_a_lookup_per_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an answer's headers, and botocore's lookups by name counted
    from botocore import parsers
    from botocore.awsrequest import HeadersDict

    headers = HeadersDict({"x-amzn-RequestId": "r", "Content-Type": "json", "Date": "d"})
    looked_up = count_calls(monkeypatch, HeadersDict, "__getitem__")
    # When the parser copies them, and absent names are asked about, with the shortcuts on
    with botocore_shortcuts():
        copied = parsers.lowercase_dict(headers)  # as the parser finds it
        absent = ["Transfer-Encoding" in headers, headers.get("x-amz-crc32")]
    # Then the copy has every header, the absent names are absent, and no name was looked
    # up through a raised KeyError
    assert copied == {"x-amzn-requestid": "r", "content-type": "json", "date": "d"}
    assert absent == [False, None]
    assert looked_up() == 0


def built_headers(given: Any) -> Any:
    """A `HeadersDict` built from `given`: its names as spelled, values, and lookups in any
    case (or the error raised)."""
    from botocore.awsrequest import HeadersDict

    try:
        headers = HeadersDict(given)
    except Exception as error:
        return ("raised", type(error).__name__)
    return list(headers.items()), [headers.get(str(n).upper()) for n in headers]


@settings(max_examples=300, deadline=None)
@given(
    given=st.one_of(
        st.dictionaries(st.one_of(NAMES, st.text(max_size=3)), st.text(max_size=3)),
        st.lists(st.tuples(st.one_of(NAMES, st.text(max_size=3)), st.text(max_size=3))),
        st.lists(st.one_of(st.tuples(st.text(max_size=1)), st.text(min_size=3, max_size=3))),
        st.lists(st.tuples(st.integers(0, 2), st.text(max_size=1)), min_size=1),
    )
)
def test_headers_are_built_as_botocore_builds_them(given: Any) -> None:
    # Given header dicts and lists of pairs (names equal but for case, malformed pairs,
    # names that are not text)
    expected = built_headers(given)
    # When botocore builds a HeadersDict of each with the shortcuts on
    with botocore_shortcuts():
        found = built_headers(given)
    # Then it holds the same names, spellings and values (or raises the same error)
    assert found == expected


def test_headers_are_built_without_a_call_per_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a request's header pairs, and HeadersDict's writes counted
    from botocore.awsrequest import HeadersDict

    pairs = [("X-Amz-Target", "DynamoDB_20120810.GetItem"), ("Content-Type", "json")]
    written = count_calls(monkeypatch, HeadersDict, "__setitem__")
    # When a HeadersDict is built of them with the shortcuts on
    with botocore_shortcuts():
        headers = HeadersDict(pairs)
    # Then it holds them, and no header went through a call of its own
    assert dict(headers.items()) == dict(pairs)
    assert written() == 0


URL_CASES = [
    ("https://dynamodb.us-east-1.amazonaws.com", "/", None),
    ("https://dynamodb.us-east-1.amazonaws.com/", "/", None),
    ("https://h.example/base/", "/path", None),
    ("https://h.example/base", "/path?x=1", "prefix."),
    ("http://127.0.0.1:3001/stage", "", None),
    ("https://h.example", "/a b", "p-"),
]


def joined_urls() -> list[Any]:
    """The URL `prepare_request_dict` gives requests to each endpoint and path, twice."""
    from botocore.awsrequest import prepare_request_dict

    found = []
    for endpoint, path, prefix in URL_CASES * 2:
        request = {"url_path": path, "query_string": "", "headers": {}, "host_prefix": prefix}
        prepare_request_dict(request, endpoint_url=endpoint)
        found.append(request["url"])
    return found


def test_request_urls_are_the_ones_botocore_joins() -> None:
    # Given endpoints with and without paths and host prefixes, and request paths
    expected = joined_urls()
    # When requests are given their URLs with the shortcuts on (each twice)
    with botocore_shortcuts():
        found = joined_urls()
    # Then each URL is the one botocore joins
    assert found == expected


def test_a_request_url_is_joined_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given botocore's URL splitting counted
    from botocore import awsrequest

    with botocore_shortcuts():
        split = count_calls(monkeypatch, awsrequest, "urlsplit")
        # When ten requests to one endpoint and path are given their URLs
        for _ in range(10):
            request = {"url_path": "/", "query_string": "", "headers": {}}
            awsrequest.prepare_request_dict(request, endpoint_url="https://u.example")
    # Then the endpoint URL was split once
    assert split() == 1


# ---- response_parsers_made_once ---------------------------------------------------------

ANSWERS: list[tuple[str, int, bytes]] = [
    ("GetItem", 200, b'{"Item": {"pk": {"S": "a"}, "b": {"B": "AAE="}}}'),
    ("GetItem", 200, b"{}"),
    ("PutItem", 400, b'{"__type": "x#ConditionalCheckFailedException", "message": "no"}'),
    ("DescribeTable", 200, b'{"Table": {"CreationDateTime": 1767229261.5, "TableName": "t"}}'),
    ("Query", 500, b""),
]
"""DynamoDB answers: items with binary, empty, a modeled error, a time, a bare 500."""


def parsed_answers(factory: Any) -> list[Any]:
    """What the parsers `factory` makes for JSON make of each answer, asked each time."""
    model = _dynamodb_model()
    found = []
    for operation, status, body in ANSWERS * 2:
        response = {"body": body, "headers": {"x-amzn-requestid": "r"}, "status_code": status}
        shape = model.operation_model(operation).output_shape
        found.append(factory.create_parser("json").parse(response, shape))
    return found


def parsed_by_factories() -> list[Any]:
    """Answers parsed through a new factory, and through one whose defaults are set, then
    changed (a parser asked of the factory for each answer)."""
    from botocore.parsers import ResponseParserFactory

    plain, customized = ResponseParserFactory(), ResponseParserFactory()
    customized.set_parser_defaults(timestamp_parser=lambda value: ("parsed", value))
    found = [parsed_answers(plain), parsed_answers(customized)]
    customized.set_parser_defaults(timestamp_parser=lambda value: ("again", value))
    return [*found, parsed_answers(customized)]


def test_answers_are_parsed_as_by_new_parsers() -> None:
    # Given answers of every kind, and parser factories with defaults set and changed
    expected = parsed_by_factories()
    # When each answer is parsed by a parser asked of a factory, with the shortcuts on
    with botocore_shortcuts():
        found = parsed_by_factories()
    # Then every answer is parsed as a new parser parses it, changed defaults included
    assert found == expected
    times = [a.get("Table", {}).get("CreationDateTime") for a in found[2]]
    assert ("again", 1767229261.5) in times


def test_a_factory_makes_one_parser_for_many_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a parser factory, and parsers made counted
    from botocore.parsers import JSONParser, ResponseParserFactory

    factory = ResponseParserFactory()
    made = count_calls(monkeypatch, JSONParser, "__init__")
    # When it is asked for a JSON parser for ten answers with the shortcuts on
    with botocore_shortcuts():
        parsers = {id(factory.create_parser("json")) for _ in range(10)}
    # Then one parser was made
    assert len(parsers) == 1
    assert made() == 1
