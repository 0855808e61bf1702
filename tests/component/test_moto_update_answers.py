"""moto fixes to UpdateItem's answer and validation: the same answers as moto's, less work.

Each behaviour is compared with plain moto 5.2 (every fix off) on the same requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.call_counts import count_calls
from tests.component.test_moto_fixes import TABLE, answer_of, key, moto


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py); each test starts its own motos."""


RETURN_VALUES = st.sampled_from(["NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW", "X"])
UPDATES = st.sampled_from(
    [
        ("SET n = :v", {":v": {"N": "1"}}),
        ("SET l = list_append(if_not_exists(l, :e), :v)", {":v": {"L": [{"S": "x"}]}}),
        ("SET m = :v REMOVE n", {":v": {"M": {"a": {"S": "b"}}}}),
        ("ADD n :v", {":v": {"N": "2"}}),
        ("REMOVE l, m", None),
        ("SET gk = :v", {":v": {"N": "1"}}),  # a secondary index key of the wrong type
        ("SET gk = :v", {":v": {"S": ""}}),  # an empty index key
        ("SET gk = :v, gr = :n", {":v": {"S": "g"}, ":n": {"N": "3"}}),
        ("SET sk = :v", {":v": {"S": "y"}}),  # a table key
        ("SET l = list_append(l, :v)", {":v": {"S": "not a list"}}),
        ("SET n = n + :v", {":v": {"N": "1"}}),
    ]
)
KEYS = st.sampled_from(["a", "b"])


def answers(updates: list[tuple[str, tuple[str, dict[str, Any] | None], str]], fixed: bool) -> list:
    """What moto answers to each update in turn (its result, or its error code and message)."""
    found: list[Any] = []
    with moto(fixed=fixed) as (db, _):
        for sort_key, (expression, values), return_values in updates:
            request: dict[str, Any] = {
                "TableName": TABLE,
                "Key": key("p", sort_key),
                "UpdateExpression": expression,
                "ReturnValues": return_values,
            }
            if values is not None:
                values = dict(values)
                if "if_not_exists" in expression:
                    values[":e"] = {"L": []}
                request["ExpressionAttributeValues"] = values
            found.append(answer_of(db.update_item, **request))
    return found


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates=st.lists(st.tuples(KEYS, UPDATES, RETURN_VALUES), min_size=1, max_size=12))
def test_updates_answer_as_moto_answers(updates: list[Any]) -> None:
    # Given a sequence of updates (some refused) with every kind of ReturnValues
    # When plain moto and fixed moto each apply them
    # Then each answers every update alike: the same result, or the same error
    assert answers(updates, fixed=True) == answers(updates, fixed=False)


def test_an_update_that_returns_no_old_image_does_not_write_the_old_item_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.dynamodb.models.dynamo_type import Item

    # Given a stored item on fixed moto, with the writing out of items counted
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "n": {"N": "0"}})
        written = count_calls(monkeypatch, Item, "to_json")
        request = {
            "TableName": TABLE,
            "Key": key("p", "a"),
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
        # When one update answers with the old item, and one answers nothing
        old = db.update_item(**request, ReturnValues="ALL_OLD")
        after_all_old = written()
        db.update_item(**request, ReturnValues="NONE")
        after_none = written() - after_all_old
    # Then the first wrote the old item out and the second did not: one item fewer
    assert old["Attributes"]["n"] == {"N": "0"}
    assert after_none == after_all_old - 1


def test_an_update_is_not_walked_by_passes_that_cannot_act_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.dynamodb.parsing import validators

    # Given a stored item on fixed moto, with the function, type and empty-key passes counted
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "l": {"L": []}})
        walks = {
            name: count_calls(monkeypatch, getattr(validators, name), "traverse")
            for name in (
                "UpdateExpressionFunctionEvaluator",
                "TypeMismatchValidator",
                "EmptyStringKeyValueValidator",
            )
        }

        def update(expression: str, values: dict[str, Any]) -> dict[str, int]:
            before = {name: count() for name, count in walks.items()}
            db.update_item(
                TableName=TABLE,
                Key=key("p", "a"),
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
            )
            return {name: count() - before[name] for name, count in walks.items()}

        # When one update sets plain attributes, one appends to a list, one sets an index key
        plain = update("SET n = :n, s = :s", {":n": {"N": "1"}, ":s": {"S": "x"}})
        appending = update("SET l = list_append(l, :l)", {":l": {"L": [{"S": "x"}]}})
        keyed = update("SET gk = :g, gr = :r", {":g": {"S": "g"}, ":r": {"N": "1"}})
        stored = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    # Then the first is walked by none of them, the second by the function pass only,
    # the third by the two key passes only; and every update was applied
    assert plain == dict.fromkeys(walks, 0)
    assert appending == {**dict.fromkeys(walks, 0), "UpdateExpressionFunctionEvaluator": 1}
    assert keyed == {**dict.fromkeys(walks, 1), "UpdateExpressionFunctionEvaluator": 0}
    assert stored["l"] == {"L": [{"S": "x"}]}
    assert (stored["n"], stored["gk"]) == ({"N": "1"}, {"S": "g"})


def test_updates_refused_by_the_value_passes_are_refused_as_moto_refuses_them() -> None:
    # Given updates that a function, a key type or an empty key make moto refuse
    refused = [
        ("a", ("SET l = list_append(l, :v)", {":v": {"S": "not a list"}}), "NONE"),
        ("a", ("SET gk = :v", {":v": {"N": "1"}}), "NONE"),
        ("a", ("SET gk = :v", {":v": {"S": ""}}), "ALL_NEW"),
    ]
    # When plain and fixed moto each apply them to a new item, then to a stored one
    setup = [("a", ("SET l = :v", {":v": {"L": []}}), "NONE")]
    expected = answers(refused + setup + refused, fixed=False)
    found = answers(refused + setup + refused, fixed=True)
    # Then both refuse them alike (and the refusals are refusals)
    assert found == expected
    assert all(isinstance(a, tuple) for a in expected[:3] + expected[4:])


def test_updates_reading_missing_attributes_answer_as_moto_answers() -> None:
    # Given updates whose values read attributes an item may not have (refused, unless
    # if_not_exists gives a default), and ones that read only what it has
    reading = [
        ("a", ("SET n = gone + :v", {":v": {"N": "1"}}), "ALL_NEW"),
        ("a", ("SET o = if_not_exists(gone, :e), p = :v", {":v": {"N": "1"}}), "ALL_NEW"),
        ("a", ("SET l = list_append(gone, :v)", {":v": {"L": []}}), "NONE"),
        ("a", ("SET n = n + :v", {":v": {"N": "1"}}), "UPDATED_NEW"),
        ("a", ("SET m.x = :v", {":v": {"N": "1"}}), "NONE"),
        ("a", ("SET l[3] = :v", {":v": {"N": "1"}}), "ALL_NEW"),
    ]
    # When plain and fixed moto each apply them to a new item, then to a stored one
    setup = [("a", ("SET l = :v, n = :n", {":v": {"L": []}, ":n": {"N": "0"}}), "NONE")]
    expected = answers(reading + setup + reading, fixed=False)
    found = answers(reading + setup + reading, fixed=True)
    # Then both answer them alike (refusing the reads of what is missing)
    assert found == expected
    assert isinstance(expected[0], tuple) and not isinstance(expected[1], tuple)


def test_an_update_reading_only_stored_attributes_is_not_checked_for_missing_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.dynamodb.parsing import validators

    # Given a stored item, on fixed moto, with the pass refusing missing attributes counted
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "n": {"N": "1"}})
        checks = count_calls(monkeypatch, validators.NoneExistingPathChecker, "traverse")

        def update(expression: str) -> int:
            before = checks()
            db.update_item(
                TableName=TABLE,
                Key=key("p", "a"),
                UpdateExpression=expression,
                ExpressionAttributeValues={":v": {"N": "2"}},
            )
            return checks() - before

        # When one update reads a stored attribute, and one a missing one with a default
        stored = update("SET n = n + :v, s = :v")
        defaulted = update("SET d = if_not_exists(gone, :v)")
    # Then only the second is walked by that pass
    assert (stored, defaulted) == (0, 1)


# ---- the meter's capture of a Query or Scan --------------------------------------------


def reads(fixed: bool, metered: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """A filtered, projected Query (in pages) and Scan on moto: their answers, the meter's
    read units, and how many times `inspect` bound a call's arguments meanwhile."""
    import inspect
    from contextlib import nullcontext

    from mqless_cli.billing import Meter, observing_moto

    meter = Meter()
    with moto(fixed=fixed) as (db, _), observing_moto(meter) if metered else nullcontext():
        for n in range(5):
            db.put_item(TableName=TABLE, Item={**key("p", f"s{n}"), "n": {"N": str(n)}})
        binds = count_calls(monkeypatch, inspect.Signature, "bind")
        pages = []
        request: dict[str, Any] = {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "n > :one",
            "ProjectionExpression": "sk, n",
            "ExpressionAttributeValues": {":p": {"S": "p"}, ":one": {"N": "1"}},
            "Limit": 2,
        }
        while True:
            page = db.query(**request)
            page.pop("ResponseMetadata")
            pages.append(page)
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        scanned = db.scan(
            TableName=TABLE,
            FilterExpression="n < :one",
            ProjectionExpression="n",
            ExpressionAttributeValues={":one": {"N": "3"}},
        )
        scanned.pop("ResponseMetadata")
        monkeypatch.undo()
        return pages, scanned, dict(meter.usage().read_units), binds()


def test_a_metered_query_answers_as_moto_answers_without_binding_its_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given plain moto unmetered, and fixed moto metered
    # When each answers a filtered, projected Query in pages and a Scan
    plain_pages, plain_scan, _, _ = reads(False, False, monkeypatch)
    pages, scan, read_units, binds = reads(True, True, monkeypatch)
    # Then the metered answers are moto's, the meter billed what was read before the filter
    # (five small items twice: three query pages and a scan, rounded up each), and the
    # meter never asked `inspect` to bind a call (fixed moto's own Query asks once a page)
    assert (pages, scan) == (plain_pages, plain_scan)
    assert [p["Count"] for p in pages] == [0, 2, 1]
    assert read_units == {TABLE: 2.0}
    assert binds == len(pages)


# ---- the backend's prior copy of the item --------------------------------------------------


def streamed_updates(stream: str | None, fixed: bool) -> list[Any]:
    """The stream records (sizes included) and answers of updates that change and fail to
    change an item, on a table whose stream is `stream` (plain moto streams an update that
    creates its item twice: `test_an_update_that_creates_an_item_streams_one_insert`)."""
    from tests.component.test_moto_fixes import iterator, read_all

    with moto(fixed=fixed, stream=stream) as (db, streams):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "n": {"N": "0"}})
        found: list[Any] = []
        for sort_key, expression, condition in [
            ("a", "SET n = :n, l = :l", None),
            ("a", "SET l = list_append(l, :l) REMOVE n", None),
            ("a", "SET n = :n", "attribute_not_exists(pk)"),  # refused
            ("b", "SET n = :n", "attribute_exists(pk)"),  # refused: no item
            ("a", "ADD n :n", "attribute_exists(pk)"),
        ]:
            request: dict[str, Any] = {
                "TableName": TABLE,
                "Key": key("p", sort_key),
                "UpdateExpression": expression,
                "ExpressionAttributeValues": {
                    ":n": {"N": "1"},
                    ":l": {"L": [{"S": "x"}, {"M": {"k": {"N": "2"}}}]},
                },
                "ReturnValues": "ALL_NEW",
            }
            if condition:
                request["ConditionExpression"] = condition
            try:
                found.append(db.update_item(**request)["Attributes"])
            except ClientError as refused:
                found.append(refused.response["Error"]["Code"])
        if stream:
            for r in read_all(streams, iterator(db, streams)):
                # SizeBytes: fixed moto's is DynamoDB's (test_moto_stream_records.py)
                r["dynamodb"].pop("SizeBytes")
                r["dynamodb"].pop("ApproximateCreationDateTime")
                found.append((r["eventName"], r["dynamodb"]))
    return found


@pytest.mark.parametrize("stream", ["NEW_IMAGE", "KEYS_ONLY", "NEW_AND_OLD_IMAGES", None])
def test_updates_stream_and_answer_as_moto_whatever_the_stream_keeps(
    stream: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table whose stream keeps new images, keys, both images, or that has none (and
    # a clock that stands still)
    from moto.core.utils import utcnow

    now = utcnow().replace(microsecond=678000)
    monkeypatch.setattr("moto.dynamodb.models.table.utcnow", lambda: now)
    # When plain moto and fixed moto each apply the same updates
    # Then the answers and the stream records (keys, images, order) are the same
    assert streamed_updates(stream, fixed=True) == streamed_updates(stream, fixed=False)


def test_an_update_on_a_table_streaming_new_images_copies_nothing_of_the_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an item of a list of 50 values, on a table whose stream keeps new images only
    from moto.dynamodb.models.dynamo_type import DynamoType

    with moto(fixed=True, stream="NEW_IMAGE") as (db, _):
        values = {":l": {"L": [{"S": str(i)} for i in range(50)]}, ":n": {"N": "1"}}
        db.update_item(
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="SET l = :l",
            ExpressionAttributeValues={":l": values[":l"]},
        )
        copies = count_calls(monkeypatch, DynamoType, "__deepcopy__")
        # When it is updated (answering nothing)
        db.update_item(
            TableName=TABLE,
            Key=key("p", "a"),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": values[":n"]},
        )
    # Then none of its values was copied (the stream's record reads its keys alone)
    assert copies() == 0


# ---- the clauses of a kept parse -------------------------------------------------------------

SEGMENT_UPDATE = ", ".join(f"u[{i}] = :u, #t[{i}] = :t" for i in range(10))


def names_and_values_answers(fixed: bool) -> list[Any]:
    """Answers to one update text sent with its names and values, then with a name and a
    value more than it uses, then with one fewer (each twice)."""
    found: list[Any] = []
    with moto(fixed=fixed) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "u": {"L": []}, "t": {"L": []}})
        for names, values in 2 * [
            ({"#t": "t"}, {":u": {"N": "1"}, ":t": {"S": "x"}}),
            ({"#t": "t", "#x": "x"}, {":u": {"N": "1"}, ":t": {"S": "x"}, ":x": {"N": "0"}}),
            ({}, {":u": {"N": "1"}}),
        ]:
            request: dict[str, Any] = {"ExpressionAttributeValues": values}
            if names:
                request["ExpressionAttributeNames"] = names
            try:
                db.update_item(
                    TableName=TABLE,
                    Key=key("p", "a"),
                    UpdateExpression=f"SET {SEGMENT_UPDATE}",
                    ReturnValues="ALL_NEW",
                    **request,
                )
                found.append("applied")
            except ClientError as refused:
                error = refused.response["Error"]
                found.append((error["Code"], error["Message"]))
    return found


def test_an_update_text_used_again_checks_its_names_and_values_as_moto_does() -> None:
    # Given one update text, When it is sent with the names and values it uses, with more,
    # and with fewer, again and again, on plain and on fixed moto
    # Then each answers alike: applied, refused for the unused, refused for the undefined
    found = names_and_values_answers(fixed=True)
    assert found == names_and_values_answers(fixed=False)
    assert found[0] == "applied" and found[1] != "applied" and found[2] != "applied"


def test_an_update_text_used_again_is_not_searched_again_for_its_names_and_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.dynamodb.parsing.ast_nodes import Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    # Given an update of twenty actions applied once on fixed moto
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "u": {"L": []}, "t": {"L": []}})

        def update() -> None:
            db.update_item(
                TableName=TABLE,
                Key=key("p", "a"),
                UpdateExpression=f"SET {SEGMENT_UPDATE}",
                ExpressionAttributeNames={"#t": "t"},
                ExpressionAttributeValues={":u": {"N": "1"}, ":t": {"S": "x"}},
            )

        update()
        kept = UpdateExpressionParser.make(f"SET {SEGMENT_UPDATE}")
        searched: list[Any] = []
        original = Node.find_clauses

        def noted(self: Any, clause_types: Any) -> Any:
            searched.append(self)
            return original(self, clause_types)

        monkeypatch.setattr(Node, "find_clauses", noted)
        # When it is applied again
        update()
    # Then no part of its kept parse below the top is searched again for clauses
    below_the_top = [n for n in searched if n is not kept and _within(n, kept)]
    assert below_the_top == []


def _within(node: Any, tree: Any) -> bool:
    """Whether `node` is part of `tree` (follows its parents up)."""
    while node is not None:
        if node is tree:
            return True
        node = getattr(node, "parent", None)
    return False


def test_an_update_resolves_its_paths_without_asking_each_node_what_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import abc

    from moto.dynamodb.parsing.ast_nodes import UpdateExpressionDeleteAction

    # Given a stored item of a list, and an update of its ten elements applied once
    with moto(fixed=True) as (db, _):
        db.put_item(TableName=TABLE, Item={**key("p", "a"), "u": {"L": [{"N": "0"}] * 10}})

        def update(value: str) -> None:
            db.update_item(
                TableName=TABLE,
                Key=key("p", "a"),
                UpdateExpression="SET " + ", ".join(f"u[{i}] = :v" for i in range(10)),
                ExpressionAttributeValues={":v": {"N": value}},
            )

        update("1")
        asked: list[Any] = []
        original = abc.ABCMeta.__instancecheck__

        def noted(cls: Any, instance: Any) -> bool:
            if cls is UpdateExpressionDeleteAction and _asker() == "pre_processing_of_child":
                asked.append(instance)
            return original(cls, instance)

        monkeypatch.setattr(abc.ABCMeta, "__instancecheck__", noted)
        # When it is applied again
        update("2")
        monkeypatch.undo()
        stored = db.get_item(TableName=TABLE, Key=key("p", "a"))["Item"]
    # Then the path resolving pass asked no node whether it is a DELETE action (one of the
    # four it asks about), and the update was applied
    assert asked == []
    assert stored["u"]["L"] == [{"N": "2"}] * 10


def _asker() -> str:
    """The function that called `isinstance` (the frame above this one's caller: the
    check itself runs in C)."""
    import sys

    return sys._getframe(2).f_code.co_name
