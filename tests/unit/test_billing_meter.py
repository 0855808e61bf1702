"""The meter's arithmetic: usage snapshots, list prices, SQS's bill for the same work."""

from __future__ import annotations

import math

import pytest

from mqless_cli.billing.dynamodb import Capacity
from mqless_cli.billing.meter import Meter, ceiling_per_second, price, sqs_reference


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sqs_bills_send_receive_and_delete_per_64_kb_chunk() -> None:
    """Given messages of 1 KB, 256 KB and exactly 64 KB, one per request
    When SQS's bill for the same work is computed
    Then send and receive count one request per started 64 KB chunk, delete one, at $0.40 per
    million
    """
    # 1 KB, one per request: send 1 + receive 1 + delete 1 = 3 requests at $0.40 per million
    one = sqs_reference(1_000_000, 1024)
    assert one.requests == 3_000_000
    assert one.dollars == pytest.approx(1.20)
    # 256 KB: send 4 chunks + receive 4 + delete 1 = 9 requests
    assert sqs_reference(1, 256 * 1024).requests == 9
    # 64 KB exactly is one chunk: 3 requests
    assert sqs_reference(1, 64 * 1024).requests == 3


def test_sqs_batches_of_ten_share_requests_until_the_batch_passes_64_kb() -> None:
    """Given batches of ten 1 KB bodies, and of ten 16 KB bodies
    When SQS's bill is computed
    Then a batch shares its requests (3 per ten small ones, $0.12 per million) until the batch
    passes 64 KB, when it counts per chunk (7 for 160 KB)
    """
    # ten 1 KB bodies: one 10 KB send, one receive, one delete per batch: $0.12 per million
    assert sqs_reference(1_000_000, 1024, batch=10).dollars == pytest.approx(0.12)
    # ten 16 KB bodies = 160 KB: 3 chunks to send, 3 to receive, 1 delete = 7 per batch
    assert sqs_reference(10, 16 * 1024, batch=10).requests == 7


def test_sqs_fifo_and_a_topic_through_sns() -> None:
    """Given a million 1 KB messages through a FIFO queue, and through a topic with 5 subscriptions
    When SQS's (and SNS's) bill is computed
    Then FIFO costs $0.50 per million requests, and the topic one SNS publish plus a receive and
    delete per subscription: 11 million requests, $4.50
    """
    # FIFO: 3 requests at $0.50 per million
    assert sqs_reference(1_000_000, 1024, fifo=True).dollars == pytest.approx(1.50)
    # a topic with 5 subscriptions: 1 SNS publish ($0.50/M) + 5 x (receive + delete) at
    # $0.40/M = 0.50 + 4.00
    topic = sqs_reference(1_000_000, 1024, subscribers=5)
    assert topic.requests == 11_000_000
    assert topic.dollars == pytest.approx(4.50)


def test_a_price_is_units_times_list_prices() -> None:
    """Given a meter that recorded writes on a table and an index, reads, a 600 KB HTTP request,
    WebSocket messages of 40 KB and 10 bytes, one invocation and one KMS call
    When the usage is priced
    Then each line is its billed units (HTTP per 512 KB, WebSocket per 32 KB, Lambda per started 100
    ms) times its list price
    """
    meter = Meter(clock=FakeClock())
    # 10 WRU on the table + 4 on an index, 2 RRU
    meter.record_dynamodb(
        "PutItem",
        [Capacity("t", None, "a", write_units=10), Capacity("t", "i", "x", write_units=4)],
    )
    meter.record_dynamodb("Query", [Capacity("t", None, "a", read_units=2)])
    meter.record_http_request(600 * 1024)  # over 512 KB: 2 requests billed
    meter.record_websocket_message("out", 40 * 1024)  # over 32 KB: 2 messages billed
    meter.record_websocket_message("in", 10)
    meter.record_invocation("HttpApiFunction", 512, 99.2)  # billed 100 ms at 0.5 GB
    meter.record_request("kms", "GenerateDataKey")

    bill = price(meter.usage(), connection_minutes=False).lines

    assert bill["DynamoDB writes"] == pytest.approx(14 * 0.625e-6)
    assert bill["DynamoDB reads"] == pytest.approx(2 * 0.125e-6)
    assert bill["API Gateway HTTP"] == pytest.approx(2 * 1e-6)
    assert bill["API Gateway WebSocket"] == pytest.approx(3 * 1e-6)
    assert bill["Lambda requests"] == pytest.approx(0.2e-6)
    assert bill["Lambda duration"] == pytest.approx(0.5 * 0.1 * 0.0000133334)
    assert bill["KMS"] == pytest.approx(3e-6)


def test_connection_minutes_count_open_connections_up_to_now() -> None:
    """Given two connections opened at 0 s, one closed at 60 s, and the clock at 90 s
    When the usage is read
    Then it counts 150 connection seconds (the open one up to now), priced as 2.5 minutes
    """
    clock = FakeClock()
    meter = Meter(clock=clock)
    meter.connection_opened("a")
    meter.connection_opened("b")
    clock.now = 60.0
    meter.connection_closed("a")
    clock.now = 90.0
    # a: 60 s closed; b: still open, 90 s so far -> 150 s = 2.5 minutes
    usage = meter.usage()
    assert usage.connection_seconds == 150
    assert price(usage).lines["API Gateway connection minutes"] == pytest.approx(2.5 * 0.25e-6)


def test_the_difference_of_two_snapshots_is_what_happened_in_between() -> None:
    """Given a usage snapshot taken after one PutItem
    When an UpdateItem with a failed condition is recorded and the first snapshot is subtracted from
    a second
    Then the difference holds only the update: its units, its failed condition and its request
    """
    meter = Meter(clock=FakeClock())
    meter.record_dynamodb("PutItem", [Capacity("t", None, "a", write_units=3)])
    before = meter.usage()
    meter.record_dynamodb(
        "UpdateItem", [Capacity("t", None, "a", write_units=2)], failed_conditions=1
    )

    delta = meter.usage() - before

    assert delta.write_units == {"t": 2}
    assert delta.failed_conditions == {"t": 1}
    assert delta.requests == {"dynamodb:UpdateItem": 1}


def test_the_hottest_partition_and_the_ceiling_it_implies() -> None:
    """Given writes of 6 WRU on a table key and 4 WRU plus 3 RRU on an index key
    When the hottest partition is asked for
    Then it is the table key (0.006 of its second against 0.005), and 6 WRU per message on one key
    caps it at about 166.67 messages a second (no units: no ceiling)
    """
    meter = Meter(clock=FakeClock())
    meter.record_dynamodb(
        "PutItem",
        [Capacity("t", None, "Q#a", write_units=6), Capacity("t", "i", "a", write_units=4)],
    )
    meter.record_dynamodb("Query", [Capacity("t", "i", "a", read_units=3)])

    name, wru, rru = meter.usage().hottest_partition()

    # t Q#a: 6/1000 = 0.006 of a second; t/i a: 4/1000 + 3/3000 = 0.005: the table's key
    assert (name, wru, rru) == ("t Q#a", 6, 0)
    # 6 WRU per message on one key: 1000 / 6 = 166.7 messages a second
    assert ceiling_per_second(6, 0, per=1) == pytest.approx(166.67, abs=0.01)
    assert ceiling_per_second(0, 0, per=1) == math.inf


def test_stream_reads_by_the_lambda_trigger_cost_nothing() -> None:
    # Given the stream poller's requests (what Lambda's event source mapping makes)
    meter = Meter(clock=FakeClock())
    for operation in ("DescribeStream", "GetShardIterator", "GetRecords"):
        meter.record_request("dynamodbstreams", operation)

    # When the usage is read and priced
    usage = meter.usage()
    # Then they are counted but not billed
    assert usage.count("dynamodbstreams") == 3
    assert price(usage).total == 0
