"""Each `--realism` behaviour on its own: moto then does what AWS does (and says so the way
AWS says it), where plain moto would not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mqless_cli.local.realism import (
    RealismReport,
    RealisticStreamPoller,
    ShardRoller,
    TtlReaper,
    parse_realism,
)
from tests.component.test_streams import StreamApp, app, wait_until  # noqa: F401

TABLE = "realism-t"
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def table(moto_aws: None) -> Iterator[str]:
    """A table keyed by `pk`, with TTL on `expires_at` and a stream."""
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    client.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    yield TABLE


def _put(client: Any, pk: str, **extra: Any) -> Any:
    item = {"pk": {"S": pk}, **{k: {"S": str(v)} for k, v in extra.items()}}
    return client.put_item(TableName=TABLE, Item=item)


# ---- partition throughput ----------------------------------------------------------------


@pytest.mark.realism("throttle=on,partition-wcu=5")
def test_writes_past_a_partitions_second_are_refused_as_aws_refuses_them(
    table: str, realism: RealismReport
) -> None:
    # Given a partition key that has taken its second's worth of writes (5 WCU here)
    client = boto3.client("dynamodb", config=NO_RETRIES)
    for _ in range(5):
        _put(client, "hot")

    # When one more write to it comes within the second
    with pytest.raises(ClientError) as refused:
        _put(client, "hot")

    # Then DynamoDB's throttling error comes back, and another key is not affected
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    _put(client, "cold")
    assert realism.throttled_writes == 1


@pytest.mark.realism("throttle=on,partition-wcu=5")
def test_the_sdk_retries_a_throttled_write_with_its_own_backoff(
    table: str, realism: RealismReport
) -> None:
    # Given a hot partition key and a client with the retries the broker's clients have
    client = boto3.client(
        "dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 4})
    )
    for _ in range(5):
        _put(client, "hot")

    # When one more write comes within the second
    answer = _put(client, "hot")

    # Then botocore backed off and retried it until the partition had room again
    assert answer["ResponseMetadata"]["RetryAttempts"] >= 1
    assert realism.throttled_writes >= 1


@pytest.mark.realism("throttle=on,partition-rcu=2")
def test_reads_past_a_partitions_second_are_refused(table: str, realism: RealismReport) -> None:
    # Given a key read for its second's worth (2 RCU: four eventually consistent reads)
    client = boto3.client("dynamodb", config=NO_RETRIES)
    _put(client, "hot")
    for _ in range(4):
        client.get_item(TableName=TABLE, Key={"pk": {"S": "hot"}})

    # When it is read again within the second
    with pytest.raises(ClientError) as refused:
        client.get_item(TableName=TABLE, Key={"pk": {"S": "hot"}})

    # Then the read is throttled
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert realism.throttled_reads == 1


# ---- KMS --------------------------------------------------------------------------------------


@pytest.mark.realism("kms-throttle=1")
def test_kms_requests_are_throttled_at_the_configured_rate(
    moto_aws: None, realism: RealismReport
) -> None:
    # Given KMS throttling every request
    client = boto3.client("kms", config=NO_RETRIES)

    # When a key is asked for
    with pytest.raises(ClientError) as refused:
        client.create_key()

    # Then KMS's ThrottlingException comes back
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert realism.kms_throttled == 1


# ---- GSI consistency ----------------------------------------------------------------------------


def test_a_strongly_consistent_query_on_a_global_index_is_an_error(table: str) -> None:
    # Given a table with a global secondary index, by-g
    # When a GSI is queried with ConsistentRead
    client = boto3.client("dynamodb")
    with pytest.raises(ClientError) as refused:
        client.query(
            TableName=TABLE,
            IndexName="by-g",
            KeyConditionExpression="g = :g",
            ExpressionAttributeValues={":g": {"S": "x"}},
            ConsistentRead=True,
        )

    # Then it is refused, as DynamoDB refuses it
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "global secondary indexes" in refused.value.response["Error"]["Message"]


# ---- read lag ----------------------------------------------------------------------------------


@pytest.mark.realism("read-lag-ms=2000,seed=7")
def test_eventually_consistent_reads_may_see_an_older_item(
    table: str, realism: RealismReport
) -> None:
    # Given an item written, and written again more than the lag later (a lag long enough
    # that a loaded machine's delay before the reads below still leaves most of it)
    client = boto3.client("dynamodb")
    _put(client, "k", v="old")
    time.sleep(2.5)
    _put(client, "k", v="new")

    # When it is read eventually and strongly consistent
    eventual = [
        client.get_item(TableName=TABLE, Key={"pk": {"S": "k"}})["Item"]["v"]["S"]
        for _ in range(10)
    ]
    strong = client.get_item(TableName=TABLE, Key={"pk": {"S": "k"}}, ConsistentRead=True)

    # Then eventual reads see the old one (the moment each reads falls before the second
    # write), a strongly consistent read the new one
    assert "old" in eventual
    assert strong["Item"]["v"]["S"] == "new"


# ---- TTL ---------------------------------------------------------------------------------------


def _expired_item(client: Any, pk: str, seconds_ago: int) -> None:
    client.put_item(
        TableName=TABLE,
        Item={"pk": {"S": pk}, "expires_at": {"N": str(int(time.time()) - seconds_ago)}},
    )


def _exists(client: Any, pk: str) -> bool:
    return "Item" in client.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True)


def test_ttl_at_once_deletes_an_expired_item_with_a_ttl_stream_record(table: str) -> None:
    # Given an item that expired a second ago and one that has not expired
    client = boto3.client("dynamodb")
    _expired_item(client, "old", 1)
    client.put_item(
        TableName=TABLE,
        Item={"pk": {"S": "live"}, "expires_at": {"N": str(int(time.time()) + 3600)}},
    )
    report = RealismReport()

    # When the TTL process runs with `ttl=at-once`
    deleted = TtlReaper(parse_realism("ttl=at-once"), report).sweep()

    # Then the expired one is gone, with the REMOVE record of a TTL delete; the other stays
    assert deleted == 1 and report.ttl_deleted == 1
    assert not _exists(client, "old") and _exists(client, "live")
    streams = boto3.client("dynamodbstreams")
    arn = streams.list_streams(TableName=TABLE)["Streams"][0]["StreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    remove = records[-1]
    assert remove["eventName"] == "REMOVE"
    assert remove["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}


def test_ttl_random_keeps_an_expired_item_readable_until_its_moment(table: str) -> None:
    # Given an item that just expired, and a TTL process that deletes up to 1,000 s late
    client = boto3.client("dynamodb")
    _expired_item(client, "late", 0)
    reaper = TtlReaper(parse_realism("ttl=random,ttl-max-delay-s=1000,seed=1"), RealismReport())

    # When it runs now, and again once the latest moment has passed
    now = time.time()
    first = reaper.sweep(now)
    still_there = _exists(client, "late")
    second = reaper.sweep(now + 1001)

    # Then the item is still readable at first (seed 1 draws a moment after now), gone after
    assert (first, still_there) == (0, True)
    assert second == 1 and not _exists(client, "late")


@pytest.mark.realism("ttl=at-once")
def test_the_fixtures_ttl_process_deletes_expired_items_in_the_background(
    table: str, realism: RealismReport
) -> None:
    # Given realism with TTL deletes at once, and an item that expired 10 s ago
    client = boto3.client("dynamodb")
    _expired_item(client, "gone", 10)

    # When the background TTL process has had a moment
    wait_until(lambda: not _exists(client, "gone"), what="the TTL delete", timeout=3)

    # Then it deleted the item, and counted it
    assert realism.ttl_deleted == 1


# ---- stream -> Lambda ----------------------------------------------------------------------------


def _realistic_poller(app: StreamApp, spec: str, report: RealismReport) -> RealisticStreamPoller:  # noqa: F811
    poller = RealisticStreamPoller(
        app.source,
        app.functions,
        boto3.Session(region_name="us-east-1").client("dynamodbstreams"),
        region=app.cloud.stack.region,
        realism=parse_realism(spec),
        report=report,
    )
    app.pollers.append(poller)
    poller.start()
    return poller


def test_a_batch_is_delivered_again_after_success_at_the_redelivery_rate(app: StreamApp) -> None:  # noqa: F811
    # Given a poller that hands every batch over twice (rate 1)
    report = RealismReport()
    _realistic_poller(app, "stream-redelivery=1", report)

    # When one record is written
    app.put("once")

    # Then the function sees it twice, in two invocations
    wait_until(lambda: len(app.deliveries()) == 2, what="the redelivery")
    assert app.delivered_keys() == ["once", "once"]
    assert len(app.batches()) == 2
    assert report.stream_redelivered == 1


def test_a_shard_is_read_at_most_four_times_a_second(app: StreamApp) -> None:  # noqa: F811
    # Given a poller reading every 250 ms
    poller = _realistic_poller(app, "stream-poll-ms=250", RealismReport())
    calls: list[float] = []
    original = poller._client.get_records

    def counted(**kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return original(**kwargs)

    poller._client.get_records = counted

    # When it runs for a second with records arriving all the time
    deadline = time.monotonic() + 1.0
    n = 0
    while time.monotonic() < deadline:
        app.put(f"k{n}")
        n += 1
        time.sleep(0.02)

    # Then it read the shard no more often than every 250 ms
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) <= 5
    assert all(gap >= 0.24 for gap in gaps)
    wait_until(lambda: len(app.deliveries()) == n, what="every record", timeout=5)


def test_a_rolled_shard_is_read_to_its_end_before_its_child(app: StreamApp) -> None:  # noqa: F811
    # Given a poller reading the stream, and shards that roll over on demand
    roller = ShardRoller(every_s=3600)  # rolled by hand below
    roller.start()
    try:
        poller = app.poller(shard_discovery_seconds=0.05)
        app.put("before-1")
        app.put("before-2")

        # When the shard is closed and a child opened, and more is written after
        assert roller.roll() >= 1
        app.put("after-1")
        app.put("after-2")

        # Then the stream lists the parent closed and the child with its parent, and the
        # function gets every record once, the parent's before the child's
        streams = boto3.Session(region_name="us-east-1").client("dynamodbstreams")
        shards = streams.describe_stream(StreamArn=app.source.stream_arn)["StreamDescription"][
            "Shards"
        ]
        parent, child = shards[-2], shards[-1]
        assert "EndingSequenceNumber" in parent["SequenceNumberRange"]
        assert child["ParentShardId"] == parent["ShardId"]
        wait_until(lambda: len(app.deliveries()) == 4, what="all four records")
        assert app.delivered_keys() == ["before-1", "before-2", "after-1", "after-2"]
        assert poller.stats.records == 4
    finally:
        roller.stop()
