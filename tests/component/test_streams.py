"""The local stream poller hands DynamoDB stream records to a function as Lambda does.

Each test starts the stream fixture app (tests/e2e/fixtures/stream_app) in moto; its stream
function journals every delivery to a file, and fails records on request: `fail_times` (a
partial batch response) or `raise_times` (an exception) for the first N deliveries.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from mqless_cli.cfn import StreamSource
from mqless_cli.local.cloud import LocalCloud
from mqless_cli.local.functions import FunctionHost
from mqless_cli.local.stream_filters import record_filter
from mqless_cli.local.streams import StreamPoller

APP = Path(__file__).resolve().parents[1] / "e2e" / "fixtures" / "stream_app" / "template.yaml"
WAIT = 5.0
# moto resets boto3's default session on every start, and reloading the service models
# costs ~0.1 s a client: one session for all tests keeps them loaded (moto still answers).
SESSION = boto3.Session(region_name="us-east-1")
# LocalCloud sets these for the whole process; the tests put them back afterwards.
AWS_VARIABLES = (
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE",
    "AWS_PROFILE",
)


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.005)


@dataclass
class StreamApp:
    """The fixture app in moto, with helpers to write items and read the journal."""

    cloud: LocalCloud
    functions: FunctionHost
    journal_path: Path
    pollers: list[StreamPoller] = field(default_factory=list)
    dynamodb: Any = field(default_factory=lambda: SESSION.client("dynamodb"))

    @property
    def source(self) -> StreamSource:
        return self.cloud.stack.stream_sources()[0]

    @property
    def table(self) -> str:
        return self.cloud.stack.resources["EventsTable"]

    def poller(self, source: StreamSource | None = None, **options: Any) -> StreamPoller:
        """A started poller (stopped at teardown); retries back off briefly in tests."""
        options.setdefault("retry_backoff_seconds", 0.01)
        poller = StreamPoller(
            source or self.source,
            self.functions,
            SESSION.client("dynamodbstreams"),
            region=self.cloud.stack.region,
            **options,
        )
        self.pollers.append(poller)
        poller.start()
        return poller

    def put(self, pk: str, **attributes: Any) -> None:
        item = {"pk": {"S": pk}}
        for name, value in attributes.items():
            if isinstance(value, bytes):
                item[name] = {"B": value}
            elif isinstance(value, int):
                item[name] = {"N": str(value)}
            else:
                item[name] = {"S": str(value)}
        self.dynamodb.put_item(TableName=self.table, Item=item)

    def delete(self, pk: str) -> None:
        self.dynamodb.delete_item(TableName=self.table, Key={"pk": {"S": pk}})

    def deliveries(self) -> list[dict[str, Any]]:
        """Every record the stream function received, in the order it received them."""
        if not self.journal_path.exists():
            return []
        # the function may be writing right now: a last line without its newline is not yet whole
        lines = self.journal_path.read_text(encoding="utf-8").split("\n")[:-1]
        return [entry for entry in map(json.loads, lines) if entry["kind"] == "stream"]

    def delivered_keys(self) -> list[str]:
        """The pk of each delivered record, in delivery order."""
        return [key_of(entry["record"]) for entry in self.deliveries()]

    def batches(self) -> list[list[str]]:
        """The pks of each invocation's records, invocation by invocation."""
        grouped: dict[str, list[str]] = {}
        for entry in self.deliveries():
            grouped.setdefault(entry["batch"], []).append(key_of(entry["record"]))
        return list(grouped.values())


def key_of(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamApp]:
    for name in AWS_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("STREAM_APP_JOURNAL", str(journal))
    cloud = LocalCloud.start(APP)
    stream_app = StreamApp(cloud, FunctionHost(cloud.stack, APP.parent), journal)
    yield stream_app
    for poller in stream_app.pollers:
        poller.stop()
    cloud.stop()


def test_records_reach_the_function_in_the_shape_lambda_delivers(app: StreamApp) -> None:
    # Given a running poller
    poller = app.poller()
    started = time.time()
    # When an item is inserted, modified and removed
    app.put("a", colour="red", blob=b"\x00\xff")
    app.put("a", colour="blue")
    app.delete("a")
    # Then three records arrive, shaped as Lambda's DynamoDB event source mapping sends them
    wait_until(lambda: len(app.deliveries()) == 3, what="three records")
    records = [entry["record"] for entry in app.deliveries()]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    for record in records:
        assert record["eventSourceARN"] == app.source.stream_arn
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventVersion"] == "1.1"
        assert record["awsRegion"] == "us-east-1"
        assert record["eventID"]
        stream = record["dynamodb"]
        assert stream["Keys"] == {"pk": {"S": "a"}}
        assert stream["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(stream["SequenceNumber"], str)
        assert isinstance(stream["SizeBytes"], int)
        assert started - 1 <= stream["ApproximateCreationDateTime"] <= time.time()
    insert, modify, remove = (r["dynamodb"] for r in records)
    assert insert["NewImage"]["colour"] == {"S": "red"}
    assert base64.b64decode(insert["NewImage"]["blob"]["B"]) == b"\x00\xff"
    assert "OldImage" not in insert
    assert (modify["OldImage"]["colour"], modify["NewImage"]["colour"]) == (
        {"S": "red"},
        {"S": "blue"},
    )
    assert remove["OldImage"]["colour"] == {"S": "blue"} and "NewImage" not in remove
    sequence = [int(r["SequenceNumber"]) for r in (insert, modify, remove)]
    assert sequence == sorted(sequence)
    assert poller.stats.batches >= 1 and poller.stats.records == 3


def test_batches_hold_at_most_batch_size_records(app: StreamApp) -> None:
    # Given 25 records already in the stream and a BatchSize of 10
    for n in range(25):
        app.put(f"k{n:02}")
    # When the poller starts from TRIM_HORIZON
    poller = app.poller()
    # Then they arrive as batches of 10, 10 and 5, in order
    wait_until(lambda: len(app.deliveries()) == 25, what="25 records")
    assert [len(batch) for batch in app.batches()] == [10, 10, 5]
    assert app.delivered_keys() == [f"k{n:02}" for n in range(25)]
    assert poller.stats.batches == 3


def test_partial_failure_retries_from_the_failed_record_only(app: StreamApp) -> None:
    # Given a batch whose third record the function reports failed once
    for n in range(5):
        app.put(f"k{n}", **({"fail_times": 1} if n == 2 else {}))
    # When the poller delivers it
    poller = app.poller()
    # Then the retry holds the failed record and those after it, and nothing before it
    wait_until(lambda: poller.stats.batches == 2, what="the retry")
    time.sleep(0.1)  # room for a wrong third delivery to show up
    assert app.batches() == [["k0", "k1", "k2", "k3", "k4"], ["k2", "k3", "k4"]]
    assert [entry["attempt"] for entry in app.deliveries() if key_of(entry["record"]) == "k2"] == [
        1,
        2,
    ]
    assert (poller.stats.retries, poller.stats.dropped) == (1, 0)


def test_a_function_error_is_retried_until_the_batch_succeeds(app: StreamApp) -> None:
    # Given a batch that makes the function raise on its first two deliveries
    app.put("k0", raise_times=2)
    app.put("k1")
    # When the poller delivers it
    poller = app.poller()
    # Then the same batch is delivered three times, and no record is lost
    wait_until(lambda: len(app.batches()) == 3, what="three deliveries")
    time.sleep(0.1)
    assert app.batches() == [["k0", "k1"]] * 3
    assert (poller.stats.retries, poller.stats.dropped) == (2, 0)


def test_a_poison_batch_is_dropped_after_the_retry_limit_and_the_shard_moves_on(
    app: StreamApp,
) -> None:
    # Given a record that always makes the function raise (MaximumRetryAttempts is 3)
    app.put("poison", raise_times=99)
    poller = app.poller()
    # When its retries run out
    wait_until(lambda: poller.stats.dropped == 1, what="the poison record dropped")
    # Then it was delivered once plus three retries, and later records still flow
    assert app.delivered_keys() == ["poison"] * 4
    app.put("after")
    wait_until(lambda: "after" in app.delivered_keys(), what="the record after the poison one")
    assert app.delivered_keys().count("after") == 1


def test_bisect_on_function_error_isolates_the_failing_record(app: StreamApp) -> None:
    # Given BisectBatchOnFunctionError and a batch with one record that always raises
    app.put("good-1")
    app.put("poison", raise_times=99)
    app.put("good-2")
    source = dataclasses.replace(app.source, bisect_batch_on_function_error=True)
    # When the poller delivers it
    poller = app.poller(source)
    wait_until(lambda: app.delivered_keys().count("good-2") == 3, what="good-2 on its own")
    # Then the batch is halved until the poison record is alone; only it is dropped
    assert app.batches() == [
        ["good-1", "poison", "good-2"],
        ["good-1"],
        ["poison", "good-2"],
        ["poison"],
        ["poison"],
        ["poison"],
        ["poison"],
        ["good-2"],
    ]
    assert (poller.stats.bisections, poller.stats.retries) == (2, 3)


def test_records_older_than_the_maximum_record_age_are_skipped(app: StreamApp) -> None:
    # Given a record already in the stream, and a maximum record age it has outlived
    # (AWS's minimum is 60 s; 0 makes any record too old without a test that waits)
    app.put("stale")
    source = dataclasses.replace(app.source, maximum_record_age_seconds=0)
    # When the poller reads it
    poller = app.poller(source)
    # Then it is skipped without reaching the function
    wait_until(lambda: poller.stats.dropped == 1, what="the stale record dropped")
    assert app.deliveries() == [] and poller.stats.batches == 0


def test_records_of_a_shard_arrive_in_write_order(app: StreamApp) -> None:
    # Given a running poller
    app.poller()
    # When 40 writes (inserts, then updates of the same items) land while it polls
    writes = [f"k{n:02}" for n in range(20)] * 2
    for n, key in enumerate(writes):
        app.put(key, version=n)
    # Then the function sees every write once, in the order it was made
    wait_until(lambda: len(app.deliveries()) == 40, what="40 records")
    deliveries = app.deliveries()
    assert [key_of(entry["record"]) for entry in deliveries] == writes
    versions = [
        int(entry["record"]["dynamodb"]["NewImage"]["version"]["N"]) for entry in deliveries
    ]
    assert versions == list(range(40))


def test_a_written_record_reaches_the_function_quickly(app: StreamApp) -> None:
    # Given a running, idle poller
    app.poller()
    latencies = []
    # When 20 items are written one after another, each once the previous one arrived
    for n in range(20):
        written = time.time()
        app.put(f"k{n}")
        wait_until(lambda n=n: len(app.deliveries()) == n + 1, what=f"record {n}")
        latencies.append(app.deliveries()[-1]["received_at"] - written)
    # Then each reaches the function well within a poll interval or two
    mean = sum(latencies) / len(latencies)
    print(f"put_item -> handler: mean {mean * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert mean < 0.5


def test_records_keep_flowing_after_a_failed_transaction(app: StreamApp) -> None:
    # Given a poller that has delivered one record
    app.poller()
    app.put("before")
    wait_until(lambda: app.delivered_keys() == ["before"], what="the first record")
    # When a transaction writes one item, then fails its condition on another (moto rolls
    # back by putting back a copy of the table, stream shard and all)
    refused = False
    try:
        app.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": app.table, "Item": {"pk": {"S": "rolled-back"}}}},
                {
                    "ConditionCheck": {
                        "TableName": app.table,
                        "Key": {"pk": {"S": "absent"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    except app.dynamodb.exceptions.TransactionCanceledException:
        refused = True
    app.put("after")
    # Then the rolled-back write never reaches the function, and later writes still do
    assert refused
    wait_until(lambda: "after" in app.delivered_keys(), what="the record after the rollback")
    assert app.delivered_keys() == ["before", "after"]


def test_filter_criteria_keep_only_matching_records(app: StreamApp) -> None:
    # Given a filter for inserts of items whose kind starts with "keep"
    pattern = {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {"kind": {"S": [{"prefix": "keep"}]}}},
    }
    source = dataclasses.replace(app.source, filter_patterns=(json.dumps(pattern),))
    poller = app.poller(source)
    # When matching and non-matching changes are written
    app.put("a", kind="keep-me")
    app.put("b", kind="drop-me")
    app.put("a", kind="keep-me-too")  # a MODIFY
    app.put("c", kind="keep-this")
    # Then only the matching records reach the function
    wait_until(
        lambda: poller.stats.filtered == 2 and len(app.delivered_keys()) == 2, what="all four"
    )
    assert app.delivered_keys() == ["a", "c"]
    assert poller.stats.filtered == 2


def test_an_invalid_item_identifier_fails_the_whole_batch(app: StreamApp) -> None:
    # Given a function that answers with an itemIdentifier that is not in its batch, once
    calls: list[list[str]] = []

    class Functions:
        def invoke(self, logical_id: str, event: Any, *, summary: Any = "") -> Any:
            calls.append([key_of(record) for record in event["Records"]])
            return {"batchItemFailures": [{"itemIdentifier": ""}] if len(calls) == 1 else []}

    app.put("k0")
    app.put("k1")
    poller = StreamPoller(
        app.source,
        Functions(),  # type: ignore[arg-type]
        SESSION.client("dynamodbstreams"),
        region="us-east-1",
        retry_backoff_seconds=0.01,
    )
    app.pollers.append(poller)
    # When the poller delivers the batch
    poller.start()
    # Then the whole batch is retried
    wait_until(lambda: len(calls) == 2, what="the retry")
    assert calls == [["k0", "k1"], ["k0", "k1"]]


def test_stop_returns_promptly(app: StreamApp) -> None:
    # Given an idle running poller
    poller = app.poller()
    time.sleep(0.2)
    # When it is stopped
    began = time.monotonic()
    poller.stop()
    # Then it is done within a second
    assert time.monotonic() - began < 1.0


def test_an_idle_poller_does_not_pile_up_shard_iterators_in_moto(app: StreamApp) -> None:
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    # Given an empty stream
    # When a poller polls it for a while (dozens of GetRecords)
    app.poller(idle_poll_seconds=0.005)
    time.sleep(0.3)
    # Then moto holds only the iterator in use, not one per poll (1.6 KB each, forever)
    assert len(dynamodbstreams_backends["123456789012"]["us-east-1"].shard_iterators) <= 2


def test_an_idle_shard_is_read_again_only_once_something_is_written(
    app: StreamApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a poller that read its shard to the end, When nothing is written for half a
    second, Then it asks GetRecords at most once more (an empty read costs a whole request
    of the embedded AWS; it used to ask every 5-50 ms); and when a record is then written,
    it reaches the function at once."""
    reads = 0
    original = StreamPoller._get_records

    def counted(self: StreamPoller, iterator: str) -> Any:
        nonlocal reads
        reads += 1
        return original(self, iterator)

    monkeypatch.setattr(StreamPoller, "_get_records", counted)
    app.poller()
    app.put("first")
    wait_until(lambda: len(app.deliveries()) == 1, what="the first record")
    time.sleep(0.1)  # the read after the batch, which finds the shard's end
    before = reads
    time.sleep(0.5)
    assert reads - before <= 1
    written = time.time()
    app.put("second")
    wait_until(lambda: len(app.deliveries()) == 2, what="the second record")
    assert app.deliveries()[-1]["received_at"] - written < 0.5


def test_a_shard_read_to_its_end_is_read_at_lambdas_base_rate(
    app: StreamApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a poller that read its shard to the end, When records are written one by one
    for a third of a second, Then it reads the shard no more than Lambda's 4 times a second
    ("polls shards ... at a base rate of 4 times per second"), so they reach the function in
    a few batches, not one per write."""
    reads: list[float] = []
    original = StreamPoller._get_records

    def timed(self: StreamPoller, iterator: str) -> Any:
        reads.append(time.monotonic())
        return original(self, iterator)

    monkeypatch.setattr(StreamPoller, "_get_records", timed)
    app.poller()
    app.put("first")
    wait_until(lambda: len(app.deliveries()) == 1, what="the first record")
    batches_before = len(app.batches())
    # When
    for n in range(12):
        app.put(f"k{n:02}")
        time.sleep(0.03)
    wait_until(lambda: len(app.deliveries()) == 13, what="13 records")
    # Then
    gaps = [later - earlier for earlier, later in zip(reads, reads[1:], strict=False)]
    assert min(gaps) >= 0.24, gaps
    assert len(app.batches()) - batches_before <= 3, app.batches()
    assert app.delivered_keys() == ["first", *(f"k{n:02}" for n in range(12))]


def stream_length(app: StreamApp) -> int:
    """How many records the table's stream holds (what a TRIM_HORIZON reader would get)."""
    from moto.dynamodb.models import dynamodb_backends

    shard = dynamodb_backends["123456789012"]["us-east-1"].tables[app.table].stream_shard
    return len(shard.items)


def test_records_every_local_poller_has_handled_leave_the_stream(app: StreamApp) -> None:
    # Given two pollers of the stream that drop what they have handled (as mqless dev's do:
    # they are its only readers)
    first = app.poller(discard_handled=True)
    second = app.poller(discard_handled=True)
    # When records are written and both have handled them
    for n in range(5):
        app.put(f"k{n}")
    wait_until(lambda: first.stats.records == second.stats.records == 5, what="both pollers")
    # Then the stream no longer holds them, and what comes next still reaches both
    wait_until(lambda: stream_length(app) == 0, what="the handled records dropped")
    app.put("later")
    wait_until(lambda: app.delivered_keys().count("later") == 2, what="the next record")


def test_a_poller_that_keeps_records_leaves_the_stream_whole(app: StreamApp) -> None:
    # Given a poller that does not drop what it handled (the default)
    poller = app.poller()
    # When records are written and handled
    for n in range(5):
        app.put(f"k{n}")
    wait_until(lambda: poller.stats.records == 5, what="five records")
    # Then the stream still holds them (DynamoDB keeps records 24 hours)
    assert stream_length(app) == 5


def test_filter_patterns_follow_event_pattern_rules() -> None:
    # Given a MODIFY record of 120 bytes, key q.a, n = 5 and no old image
    record = {
        "eventName": "MODIFY",
        "dynamodb": {"NewImage": {"n": {"N": "5"}}, "SizeBytes": 120, "Keys": {"pk": {"S": "q.a"}}},
    }

    # When event-pattern filters are matched against it
    def matches(pattern: dict[str, Any]) -> bool:
        return record_filter([json.dumps(pattern)])(record)

    # Then lists, anything-but, numeric ranges, suffix and exists match as in EventBridge (numeric
    # does not match the N string "5"), and of several patterns one is enough
    assert matches({"eventName": ["INSERT", "MODIFY"]})
    assert not matches({"eventName": [{"anything-but": ["MODIFY"]}]})
    assert matches({"dynamodb": {"SizeBytes": [{"numeric": [">", 100, "<=", 200]}]}})
    assert matches({"dynamodb": {"Keys": {"pk": {"S": [{"suffix": ".a"}]}}}})
    assert matches({"dynamodb": {"OldImage": [{"exists": False}]}})
    assert not matches({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": ["=", 5]}]}}}})
    assert record_filter(
        [json.dumps({"eventName": ["INSERT"]}), json.dumps({"dynamodb": {"SizeBytes": [120]}})]
    )(record)


def test_an_unsupported_filter_pattern_is_logged_and_lets_everything_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a filter pattern using $or, which is not evaluated locally
    # When the filter is made and a record is tested
    with caplog.at_level(logging.WARNING):
        matches = record_filter([json.dumps({"$or": [{"eventName": ["INSERT"]}]})])
    # Then the record passes, and a warning says the pattern is not evaluated locally
    assert matches({"eventName": "REMOVE"})
    assert "not evaluated locally" in caplog.text
