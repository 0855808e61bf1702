"""The shortcuts on the way of one in-process request (botocore to moto and back): each one
answers what moto and botocore answer without it, and does less work.

The end-to-end check sends the same requests (every kind `mqless dev` sends, errors included)
to a moto with every other fix and shortcut, then to the same with these on, and compares
every parsed response and error; the others count the work each shortcut leaves out.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqless_cli.local import botocore_shortcuts as shortcuts
from mqless_cli.local import moto_fixes
from tests.call_counts import count_calls
from tests.component.test_moto_fixes import TABLE, VALUES, item, key, moto

ON_THE_WAY: tuple[Callable[[], Any], ...] = (
    moto_fixes.requests_normalized_directly,
    moto_fixes.dynamodb_requests_left_plain,
    moto_fixes.request_attribute_values_read_directly,
    moto_fixes.attribute_maps_written_at_once,
    moto_fixes.request_ids_not_searched_in_json,
    moto_fixes.response_dates_formatted_once_a_second,
    moto_fixes.backends_found_without_the_lock,
    moto_fixes.requests_routed_once,
    moto_fixes.result_members_picked_by_kept_names,
    moto_fixes.answers_handed_over,
    moto_fixes.action_names_converted_once,
    moto_fixes.dynamo_results_converted_directly,
    shortcuts.attribute_maps_parsed_directly,
    shortcuts.attribute_values_validated_directly,
    shortcuts.attribute_values_serialized_directly,
    shortcuts.answers_read_as_handed_over,
    shortcuts.endpoint_parameters_resolved_by_plan,
)
"""The shortcuts this file checks."""


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py); each test starts its own motos."""


@contextmanager
def applied(patches: tuple[Callable[[], Any], ...]) -> Iterator[None]:
    with ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch())
        yield


@contextmanager
def everything_else() -> Iterator[None]:
    """Every moto fix and botocore shortcut of `mqless dev` but those of this file."""
    others = [p for p in moto_fixes.FIXES if p not in ON_THE_WAY]
    others += [
        shortcuts.user_agents_built_once,
        shortcuts.attribute_values_parsed_directly,
    ]
    with applied(tuple(others)):
        yield


_RANDOM = {"RequestId", "x-amzn-requestid", "date", "x-amz-crc32", "content-length"}
_RANDOM_RECORD = {"eventID", "ApproximateCreationDateTime", "SizeBytes"}


def plain(answer: Any) -> Any:
    """An answer without what differs between any two runs (request ids, times, event ids)."""
    if isinstance(answer, dict):
        return {k: plain(v) for k, v in answer.items() if k not in _RANDOM | _RANDOM_RECORD}
    if isinstance(answer, list):
        return [plain(v) for v in answer]
    return answer


def ask(call: Callable[..., Any], **params: Any) -> Any:
    """A call's parsed answer, or its error's parsed answer (or what botocore raised: moto
    writes a map member with an empty name into the map around it, which botocore cannot
    parse)."""
    try:
        return plain(call(**copy.deepcopy(params)))
    except ClientError as error:
        return ("error", plain(error.response))
    except Exception as error:
        return ("raised", type(error).__name__, str(error))


def requests_of_mqless(db: Any, streams: Any, values: list[dict[str, Any]]) -> list[Any]:
    """Every kind of request `mqless dev` sends (and some refused), holding `values`; the
    answers."""
    attributes = {f"a{n}": v for n, v in enumerate(values)}
    index = {"L": [{"N": str(n)} for n in range(30)]}
    answers = [
        ask(db.put_item, TableName=TABLE, Item=item("p", "s1", idx=index, **attributes)),
        ask(db.put_item, TableName=TABLE, Item=item("p", "s2", gk={"S": "g"}, gr={"N": "1"})),
        ask(
            db.put_item,
            TableName=TABLE,
            Item=item("p", "s1"),
            ConditionExpression="attribute_not_exists(pk)",
        ),
        ask(db.get_item, TableName=TABLE, Key=key("p", "s1"), ConsistentRead=False),
        ask(
            db.update_item,
            TableName=TABLE,
            Key=key("p", "c"),
            UpdateExpression="SET d = if_not_exists(d, :first) + :n, k = :now",
            ExpressionAttributeValues={":first": {"N": "0"}, ":n": {"N": "10"}, ":now": {"N": "7"}},
            ReturnValues="ALL_NEW",
        ),
        ask(
            db.update_item,
            TableName=TABLE,
            Key=key("p", "s1"),
            UpdateExpression="SET #x = :v",
            ExpressionAttributeNames={"#x": "x"},
            ExpressionAttributeValues={":v": values[0] if values else {"S": "v"}},
            ReturnValues="ALL_OLD",
        ),
        ask(db.update_item, TableName=TABLE, Key=key("p", "s1"), UpdateExpression="SET = :v"),
        ask(
            db.query,
            TableName=TABLE,
            KeyConditionExpression="pk = :p AND sk >= :s",
            ExpressionAttributeValues={":p": {"S": "p"}, ":s": {"S": "s"}},
            Limit=8,
        ),
        ask(
            db.query,
            TableName=TABLE,
            IndexName="by_g",
            KeyConditionExpression="gk = :g",
            ExpressionAttributeValues={":g": {"S": "g"}},
        ),
        ask(db.query, TableName="missing", KeyConditionExpression="pk = :p"),
        ask(
            db.batch_get_item,
            RequestItems={TABLE: {"Keys": [key("p", "s1"), key("p", "s9")]}},
        ),
        ask(
            db.transact_write_items,
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("t", "1", **attributes)}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": item("p", "s2"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ],
        ),
        ask(db.delete_item, TableName=TABLE, Key=key("p", "s2"), ReturnValues="ALL_OLD"),
    ]
    arn = db.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    start = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = ask(streams.get_records, ShardIterator=start, Limit=100)
    if isinstance(records, dict):
        records.pop("NextShardIterator")
    answers.append(records)
    answers.append(ask(streams.get_records, ShardIterator="nonsense"))
    return answers


def compared(values: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """The answers to `requests_of_mqless` without, then with, this file's shortcuts."""
    with moto(fixed=False) as (db, streams), everything_else():
        expected = requests_of_mqless(db, streams, values)
    with moto(fixed=False) as (db, streams), everything_else(), applied(ON_THE_WAY):
        found = requests_of_mqless(db, streams, values)
    return expected, found


def test_every_request_of_mqless_is_answered_as_without_the_shortcuts() -> None:
    # Given items of text, numbers, lists and maps, and one of binary
    values = [{"S": "text"}, {"N": "12.5"}, {"L": [{"N": "1"}, {"S": "x"}]}, {"B": b"\x00\xff"}]
    # When mqless' requests (refused ones too) go to moto without and with the shortcuts
    expected, found = compared(values)
    # Then every answer and every error is the same
    assert found == expected
    assert any(isinstance(a, tuple) and a[0] == "error" for a in expected)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(VALUES, min_size=1, max_size=4))
def test_any_values_are_answered_as_without_the_shortcuts(values: list[dict[str, Any]]) -> None:
    # Given any AttributeValues (binary, sets, nested lists and maps, empty names)
    # When mqless' requests holding them go to moto without and with the shortcuts
    expected, found = compared(values)
    # Then every answer is the same
    assert found == expected


# ---- requests_normalized_directly --------------------------------------------------------


HEADER_NAMES = st.sampled_from(
    [
        "Content-Type",
        "content-type",
        "Content-Length",
        "X-Amz-Target",
        "x-amz-target",
        "User-Agent",
        "Transfer-Encoding",
        "Host",
        "X-Amz-Meta-My_Key",
        "amz-sdk-request",
        "Accept-Encoding",
        "Content-Encoding",
    ]
)
HEADER_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.sampled_from(
        ["application/x-amz-json-1.0", "application/x-amz-json-1.1", "gzip", "a\nb", "x\r"]
    ),
    st.binary(max_size=6).map(lambda b: b.hex().encode()),
)
URLS = st.one_of(
    st.sampled_from(
        [
            "https://dynamodb.us-east-1.amazonaws.com/",
            "https://streams.dynamodb.us-east-1.amazonaws.com/",
            "http://localhost:4566/",
            "https://kms.us-east-1.amazonaws.com:443/",
            "https://dynamodb.us-east-1.amazonaws.com/path",
            "https://dynamodb.us-east-1.amazonaws.com/?a=1",
            "https://Dynamodb.us-east-1.amazonaws.com/",
            "https://a..b/",
            "https://host:99999/",
        ]
    ),
    st.builds(
        lambda scheme, host, port: f"{scheme}://{host}{port}/",
        st.sampled_from(["http", "https"]),
        st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z0-9-]{1,8}){0,2}", fullmatch=True),
        st.sampled_from(["", ":80", ":8080", ":1"]),
    ),
)


def built(url: str, headers: list[tuple[str, Any]], body: Any) -> Any:
    """moto's request for these primitives: its environ (the body read out of it), its
    data, then its form, files and what is left of its stream; or the error raised."""
    from botocore.compat import HTTPHeaders
    from moto.core.request import Request

    sent = HTTPHeaders()
    for name, value in headers:
        sent[name] = value
    try:
        request = Request.from_primitives("POST", url, sent, body)
        environ = dict(request.environ)
        environ["wsgi.input"] = environ["wsgi.input"].getvalue()
        environ.pop("werkzeug.request")
        data = read(request)
        after = (dict(request.form), dict(request.files), request.stream.read())
        return environ, request.raw_url, list(request.headers.items()), data, after
    except Exception as error:  # moto's own error for what it refuses
        return ("error", type(error), str(error))


def read(request: Any) -> Any:
    """The body werkzeug reads from a request, or the error it raises."""
    try:
        return request.data
    except Exception as error:
        return ("error", type(error), str(error))


@settings(max_examples=300, deadline=None)
@given(
    url=URLS,
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    body=st.one_of(st.binary(max_size=20), st.text(max_size=20), st.none()),
)
def test_requests_are_built_as_werkzeug_builds_them(
    url: str, headers: list[tuple[str, Any]], body: Any
) -> None:
    # Given any method, URL, headers (repeated, odd, refused) and body
    # When moto builds its request from them without and with the shortcut
    expected = built(url, headers, body)
    with moto_fixes.requests_normalized_directly():
        found = built(url, headers, body)
    # Then the environ, body, URL and headers are the same (or the same error is raised)
    assert found == expected


def test_a_dynamodb_request_is_built_without_werkzeugs_test_builder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto with the shortcut, and werkzeug's test builder counted
    from werkzeug.test import EnvironBuilder

    with moto(fixed=True) as (db, _):
        builds = count_calls(monkeypatch, EnvironBuilder, "__init__")
        # When an item is written and read
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"N": "1"}))
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    # Then it reads back, and werkzeug's test builder built neither request
    assert found["v"] == {"N": "1"}
    assert builds() == 0


def test_requests_to_one_host_compute_their_url_root_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given ten DynamoDB requests' primitives, and werkzeug's URL building counted
    from werkzeug.sansio import request as sansio_request

    rebuilt = count_calls(monkeypatch, sansio_request, "get_current_url")
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", "A.B")]
    url = "https://dynamodb.eu-west-3.amazonaws.com/"
    # When moto builds its requests with the shortcut on
    with moto_fixes.requests_normalized_directly():
        found = {built(url, headers, b"{}")[1] for _ in range(10)}
    # Then each has the URL werkzeug gives, built once
    assert found == {url}
    assert rebuilt() == 1


# ---- request_attribute_values_read_directly -----------------------------------------------


def parsed_put_item(item_value: dict[str, Any]) -> Any:
    """A PutItem body holding `item_value` (binary as base64 text, as on the wire), as moto's
    JSON request parser reads it."""
    from botocore.serialize import create_serializer
    from moto.core.parse import JSONParser
    from moto.core.utils import get_service_model

    model = get_service_model("dynamodb").operation_model("PutItem")
    body = create_serializer("json").serialize_to_request(
        {"TableName": TABLE, "Item": item_value, "ExpressionAttributeValues": item_value}, model
    )["body"]
    return JSONParser(model).parse({"body": body, "headers": {}})  # type: ignore[typeddict-item]


@settings(max_examples=200, deadline=None)
@given(attributes=st.dictionaries(st.text(max_size=6), VALUES, max_size=5))
def test_request_values_are_read_as_moto_reads_them(attributes: dict[str, Any]) -> None:
    # Given any item (every AttributeValue type, nested maps and lists, empty names)
    expected = parsed_put_item(attributes)
    # When moto reads a request holding it with the shortcut on
    with moto_fixes.request_attribute_values_read_directly():
        found = parsed_put_item(attributes)
    # Then what the handler gets is the same
    assert found == expected


def test_a_written_item_is_read_without_a_walk_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an item holding 20 texts and a list of 200 numbers, and moto's parser counted
    from moto.core.parse import JSONParser

    written = item("p", "a", l={"L": [{"N": str(n)} for n in range(200)]})
    written.update({f"a{n}": {"S": str(n)} for n in range(20)})
    walks = count_calls(monkeypatch, JSONParser, "_parse_shape")
    # When moto reads a request writing it with the shortcut on
    with moto_fixes.request_attribute_values_read_directly():
        found = parsed_put_item(written)
    # Then the item is all there, and no value took a walk of its own
    assert found["Item"] == written
    assert walks() < 20


# ---- attribute_maps_written_at_once, attribute_maps_parsed_directly ----------------------


def test_an_item_is_written_and_parsed_in_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an item of 40 attributes in a moto with the shortcuts, and both walks counted
    from botocore.parsers import JSONParser
    from moto.core.serialize import BaseJSONSerializer

    stored = item("p", "a", **{f"a{n}": {"S": str(n)} for n in range(40)})
    with moto(fixed=True) as (db, _), shortcuts.botocore_shortcuts():
        db.put_item(TableName=TABLE, Item=stored)
        written = count_calls(monkeypatch, BaseJSONSerializer, "_serialize")
        parsed = count_calls(monkeypatch, JSONParser, "_parse_shape")
        # When it is read
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    # Then it reads back whole, and neither side visited its attributes one by one
    assert found == stored
    assert written() < 10
    assert parsed() < 10


# ---- request_ids_not_searched_in_json ------------------------------------------------------


def test_a_json_answer_is_not_searched_for_an_xml_request_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given moto's responses, with their regular expression searches counted
    from moto.core import responses

    searches = count_calls(monkeypatch, responses.re, "sub")
    headers: dict[str, Any] = {"status": 200}
    # When a JSON answer and an XML one get their request ids with the shortcut on
    with moto_fixes.request_ids_not_searched_in_json():
        _, json_body = responses.BaseResponse._enrich_response(headers, '{"Items": []}')
        xml_headers: dict[str, Any] = {}
        _, xml_body = responses.BaseResponse._enrich_response(
            xml_headers, "<R><RequestId>x</RequestId></R>"
        )
    # Then both have a request id, the XML one in its body too, and only it was searched
    assert json_body == '{"Items": []}'
    assert headers["status"] == "200" and len(headers["x-amzn-requestid"]) == 52
    assert xml_body == f"<R><RequestId>{xml_headers['x-amzn-requestid']}</RequestId></R>"
    assert searches() == 1


def test_the_shortcuts_are_on_in_mqless_dev() -> None:
    """Given `mqless dev`'s patches (moto_fixes.FIXES and botocore_shortcuts), When listed,
    Then every shortcut of this file is one of them."""
    applied_by_dev = set(moto_fixes.FIXES) | set(shortcuts._SHORTCUTS._patches)
    assert set(ON_THE_WAY) <= applied_by_dev


# ---- backends_found_without_the_lock ------------------------------------------------------


def test_a_request_finds_its_backend_without_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a moto holding an item, and moto's backend creation path counted
    from moto.core.base_backend import BackendDict
    from moto.dynamodb.models import dynamodb_backends

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        created = count_calls(monkeypatch, BackendDict, "_create_account_specific_backend")
        # When it is read, and a backend of an account never used is asked for
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
        other = dynamodb_backends["111122223333"]["us-east-1"]
        registered = "111122223333" in dynamodb_backends
    # Then the read went without it, and the new account's backend was made by moto's path
    assert found == item("p", "a")
    assert created() == 1
    assert other.account_id == "111122223333" and registered


# ---- requests_routed_once --------------------------------------------------------------


def test_requests_to_one_url_find_their_handler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a moto holding an item, and the walks over moto's service URL patterns counted
    import moto.backend_index as backend_index

    walks = [0]

    class Counted(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            walks[0] += 1
            return super().__iter__()

    counted = Counted(backend_index.backend_url_patterns)
    monkeypatch.setattr(backend_index, "backend_url_patterns", counted)
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"N": "1"}))
        first = walks[0]
        # When it is read ten times
        found = [db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"] for _ in range(10)]
    # Then every read answers, and none walked the services' patterns again
    assert found == [item("p", "a", v={"N": "1"})] * 10
    assert first > 0
    assert walks[0] == first


def test_requests_take_their_backends_from_the_imported_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto holding an item, and moto's imports of a service's backends counted
    from moto import backends

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"N": "1"}))
        imports = count_calls(monkeypatch, backends, "_import_backend")
        # When it is read ten times
        found = [db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"] for _ in range(10)]
    # Then every read answers, and none imported the backends' module again
    assert found == [item("p", "a", v={"N": "1"})] * 10
    assert imports() == 0


# ---- action_names_converted_once --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(
        st.one_of(st.text(max_size=12), st.from_regex(r"[A-Z][a-zA-Z]{0,14}")), max_size=4
    )
)
def test_action_names_convert_as_moto_converts_them(names: list[str]) -> None:
    # Given any texts (action names, and odd ones), each asked twice
    from moto.core import responses

    expected = [responses.camelcase_to_underscores(n) for n in names * 2]  # type: ignore[attr-defined]
    # When the responses convert them with the fix on
    with moto_fixes.action_names_converted_once():
        found = [responses.camelcase_to_underscores(n) for n in names * 2]  # type: ignore[attr-defined]
    # Then every name is the one moto gives
    assert found == expected


def test_an_action_is_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given moto's conversion of action names counted, and a moto holding an item
    from moto.core import responses

    conversions = count_calls(monkeypatch, responses, "camelcase_to_underscores")
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"N": "1"}))
        before = conversions()
        # When it is read ten times
        found = [db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"] for _ in range(10)]
    # Then every read answers, and GetItem was converted once
    assert found == [item("p", "a", v={"N": "1"})] * 10
    assert conversions() - before == 1


# ---- result_members_picked_by_kept_names ------------------------------------------------


def results_of_moto() -> list[tuple[str, str, Any]]:
    """moto's results to DescribeTable, DescribeStream and Query (nested structures, lists
    and maps, members present and absent): (service, operation, result)."""
    from moto.dynamodb.models import dynamodb_backends

    with moto(fixed=False) as (db, streams):
        db.put_item(TableName=TABLE, Item=item("p", "a", gk={"S": "g"}, gr={"N": "1"}))
        table = dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE]
        arn = db.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        return [
            ("dynamodb", "DescribeTable", {"Table": table.describe(base_key="TableDescription")}),
            ("dynamodb", "DescribeTable", table.describe(base_key="Table")),
            ("dynamodbstreams", "DescribeStream", streams.describe_stream(StreamArn=arn)),
            ("dynamodb", "Query", {"Items": [item("p", "a")], "Count": 1, "ScannedCount": 1}),
            ("dynamodb", "Query", {"Count": 0, "LastEvaluatedKey": key("p", "a")}),
        ]


def written(results: list[tuple[str, str, Any]]) -> list[str]:
    """Each result as moto's JSON serializer writes it."""
    from moto.core.serialize import XFormedAttributePicker, get_serializer_class
    from moto.core.utils import get_service_model

    answers = []
    for service, operation, result in results:
        serializer = get_serializer_class(service, "json")(
            operation_model=get_service_model(service).operation_model(operation),
            value_picker=XFormedAttributePicker(),
        )
        answers.append(str(serializer.serialize(copy.deepcopy(result))["body"]))
    return answers


def test_results_are_written_as_moto_writes_them() -> None:
    # Given moto's results of table and stream descriptions and queries
    results = results_of_moto()
    expected = written(results)
    # When moto's serializer writes them with the shortcut on (twice: names listed, then kept)
    with moto_fixes.result_members_picked_by_kept_names():
        found = [written(results), written(results)]
    # Then every answer is the same text
    assert found == [expected, expected]
    assert '"KeySchema"' in expected[1] and '"StreamLabel"' in expected[2]


def test_members_of_results_are_picked_without_asking_aliases_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto holding an item, and moto's alias providers counted
    from moto.core.serialize import NoAlias

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a"))
        db.get_item(TableName=TABLE, Key=key("p", "a"))
        asked = count_calls(monkeypatch, NoAlias, "has_alias")
        # When it is read ten times
        found = [db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"] for _ in range(10)]
    # Then every read answers, and no alias was asked for
    assert found == [item("p", "a")] * 10
    assert asked() == 0


# ---- response_dates_formatted_once_a_second ------------------------------------------------

TIMES = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=st.just(datetime.timezone(datetime.timedelta(hours=2)))),
    st.dates(),
    st.integers(min_value=0, max_value=2**33),
)


def formatted(http_date: Callable[[Any], str], time: Any) -> Any:
    """The date text for `time`, or the error raised."""
    try:
        return http_date(time)
    except Exception as error:
        return ("error", type(error))


@settings(max_examples=200, deadline=None)
@given(times=st.lists(TIMES, min_size=1, max_size=5))
def test_response_dates_are_the_text_werkzeug_writes(times: list[Any]) -> None:
    # Given any times (naive, aware, dates, timestamps), some within one second
    from moto.core import responses
    from werkzeug.http import http_date

    times += [t.replace(microsecond=999_999) for t in times if type(t) is datetime.datetime]
    expected = [formatted(http_date, t) for t in times]
    # When moto's responses format them with the shortcut on
    with moto_fixes.response_dates_formatted_once_a_second():
        found = [formatted(responses.http_date, t) for t in times]  # type: ignore[attr-defined]
    # Then each text (or error, out of range) is werkzeug's
    assert found == expected


def test_a_second_of_responses_formats_its_date_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 100 response times within one second, and the date formatting counted
    import email.utils

    from moto.core import responses

    formats = count_calls(monkeypatch, email.utils, "format_datetime")
    times = [datetime.datetime(2026, 12, 7, 9, 0, 0, n * 1000) for n in range(100)]
    # When moto's responses format them with the shortcut on
    with moto_fixes.response_dates_formatted_once_a_second():
        found = {responses.http_date(t) for t in times}  # type: ignore[attr-defined]
    # Then they all read that second, formatted once
    assert found == {"Mon, 07 Dec 2026 09:00:00 GMT"}
    assert formats() == 1


def test_a_json_request_body_is_read_without_werkzeugs_form_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto holding an item, and werkzeug's form parsing counted
    from werkzeug.formparser import FormDataParser

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"N": "1"}))
        parsed = count_calls(monkeypatch, FormDataParser, "parse")
        # When it is read ten times
        found = [db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"] for _ in range(10)]
    # Then every read answers, and no request body went through the form parser
    assert found == [item("p", "a", v={"N": "1"})] * 10
    assert parsed() == 0


# ---- answers_handed_over, answers_read_as_handed_over ----------------------------------


def test_an_answer_is_handed_over_without_json_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a moto holding an item with the shortcuts, and JSON writing and reading counted
    import json

    from moto.core.serialize import BaseJSONSerializer

    with moto(fixed=True) as (db, _), shortcuts.botocore_shortcuts():
        db.put_item(TableName=TABLE, Item=item("p", "a", l={"L": [{"N": "1"}, {"S": "x"}]}))
        written = count_calls(monkeypatch, BaseJSONSerializer, "_serialize_body")
        loaded = count_calls(monkeypatch, json, "loads")
        # When it is read, queried, and another item written
        found = db.get_item(TableName=TABLE, Key=key("p", "a"))
        page = db.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
        )
        db.put_item(TableName=TABLE, Item=item("p", "b"))
    # Then each answers as moto answers, and no answer was written out as JSON to be read back
    assert found["Item"] == item("p", "a", l={"L": [{"N": "1"}, {"S": "x"}]})
    assert found["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(found["ResponseMetadata"]["RequestId"]) == 52
    assert page["Count"] == 1 and page["Items"] == [found["Item"]]
    assert written() == 0
    assert loaded() == 3  # the three request bodies moto reads


def answered_bodies(patches: tuple[Callable[[], Any], ...]) -> list[Any]:
    """The bodies moto answers a write, a Query and a refused write with, as
    `process_request` hands them back (to the meter, to realism), with `patches` on."""
    from moto.core import botocore_stubber

    bodies: list[Any] = []
    with moto(fixed=False) as (db, _), applied(patches):
        original = botocore_stubber.BotocoreStubber.process_request

        def recorded(self: Any, request: Any) -> Any:
            answer = original(self, request)
            bodies.append(answer[2])
            return answer

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(botocore_stubber.BotocoreStubber, "process_request", recorded)
            db.put_item(TableName=TABLE, Item=item("p", "a", m={"M": {"x": {"BOOL": True}}}))
            db.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "p"}},
            )
            ask(db.update_item, TableName=TABLE, Key=key("p", "a"), UpdateExpression="SET = :v")
    return bodies


def test_a_handed_over_answer_read_as_text_is_the_text_moto_writes() -> None:
    # Given the bodies moto answers with, without and with the answers handed over
    others = tuple(p for p in moto_fixes.FIXES if p is not moto_fixes.answers_handed_over)
    expected = answered_bodies(others)
    found = answered_bodies((*others, moto_fixes.answers_handed_over))
    # When they are read as text (as a wrapper of process_request reads them)
    texts = [str(body) for body in found]
    # Then the answers were handed over (the error as text), and read the same
    assert [type(body).__name__ for body in found] == ["HandedOver", "HandedOver", "str"]
    assert texts == expected


# ---- dynamodb_requests_left_plain ----------------------------------------------------------

TARGETS = st.sampled_from(
    ["DynamoDB_20120810.GetItem", "DynamoDBStreams_20120810.GetRecords", "TrentService.Sign"]
)


def set_up(url: str, headers: list[tuple[str, Any]], body: Any) -> Any:
    """What moto's DynamoDB handler holds once set up for a request of these primitives (its
    request aside), or the error raised."""
    from botocore.compat import HTTPHeaders
    from moto.core.request import normalize_request
    from moto.dynamodb.responses import DynamoHandler

    sent = HTTPHeaders()
    for name, value in headers:
        sent[name] = value
    try:
        from botocore.awsrequest import AWSPreparedRequest

        request = normalize_request(AWSPreparedRequest("POST", url, sent, body, False))
        handler = DynamoHandler()
        handler.setup_class(request, request.raw_url, request.headers)
    except Exception as error:
        return ("error", type(error), str(error))
    held = dict(vars(handler))
    held.pop("normalized_request")
    held["headers"] = list(held["headers"].items())
    held["form_data"] = dict(held["form_data"])
    held["response_headers"].pop("date")
    return held, request.raw_url, list(request.headers.items()), request.data


@settings(max_examples=200, deadline=None)
@given(
    url=URLS,
    target=TARGETS,
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    body=st.one_of(
        st.just(b'{"TableName": "t", "Key": {"pk": {"S": "a"}}}'),
        st.text(max_size=20),
        st.binary(max_size=10),
    ),
)
def test_dynamodb_requests_are_set_up_as_from_werkzeugs_request(
    url: str, target: str, headers: list[tuple[str, Any]], body: Any
) -> None:
    # Given any DynamoDB-like request (URLs, odd headers, bodies), JSON-typed or not
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", target), *headers]
    with moto_fixes.requests_normalized_directly():
        expected = set_up(url, headers, body)
        # When moto's handler is set up for it with the shortcut on
        with moto_fixes.dynamodb_requests_left_plain():
            found = set_up(url, headers, body)
    # Then it holds the same parameters, headers, URL parts and body (or raises the same)
    assert found == expected


def test_a_dynamodb_request_is_set_up_without_a_werkzeug_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto holding an item, and werkzeug's requests counted
    from werkzeug.wrappers import Request

    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item=item("p", "a", v={"N": "1"}))
        made = count_calls(monkeypatch, Request, "__init__")
        # When it is read ten times
        found = [db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"] for _ in range(10)]
    # Then every read answers, and no werkzeug request was made for any
    assert found == [item("p", "a", v={"N": "1"})] * 10
    assert made() == 0


# ---- dynamo_results_converted_directly: items already written out ----------------------


def written_out_result(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A Query result as moto's handler gives it to `dynamo_to_dict`: each item written out
    (`Item.to_json`: AttributeValues as plain maps), the last one still of DynamoTypes."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    out = [copy.deepcopy(i) for i in items]
    if out:
        out[-1] = {k: DynamoType(v) for k, v in out[-1].items()}
    return {"Items": out, "Count": len(out), "ScannedCount": len(out)}


def containers(value: Any) -> list[int]:
    """The ids of every dict and list in `value`."""
    if isinstance(value, dict):
        return [id(value), *(i for v in value.values() for i in containers(v))]
    if isinstance(value, list):
        return [id(value), *(i for v in value for i in containers(v))]
    return []


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.dictionaries(st.text(max_size=4), VALUES, max_size=4), max_size=3))
def test_results_of_written_out_items_convert_as_moto_converts_them(
    items: list[dict[str, Any]],
) -> None:
    # Given a result of items written out as plain maps (and one of DynamoTypes)
    from moto.dynamodb import responses
    from moto.dynamodb.models.utilities import dynamo_to_dict

    result = written_out_result(items)
    expected = dynamo_to_dict(result)
    # When the DynamoDB responses convert it with the fix on
    with moto_fixes.dynamo_results_converted_directly():
        found = responses.dynamo_to_dict(result)
    # Then the plain values are the same, in new maps and lists (none of the result's own)
    assert found == expected
    assert not set(containers(found)) & set(containers(result))


def test_a_written_out_item_of_numbers_is_converted_without_a_call_per_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a result holding an item written out with a list of 200 numbers, and the
    # conversions counted
    from moto.dynamodb import responses

    from mqless_cli.local.moto_fixes import serialization

    numbers = {"L": [{"N": str(n)} for n in range(200)]}
    result = {"Items": [{"pk": {"S": "p"}, "l": numbers}], "Count": 1}
    conversions = count_calls(monkeypatch, serialization, "_converted")
    # When the DynamoDB responses convert it with the fix on
    with moto_fixes.dynamo_results_converted_directly():
        found = responses.dynamo_to_dict(result)
    # Then every number is there, and no number took a conversion of its own
    assert found == result
    assert conversions() < 10
