"""What each queue operation bills on AWS, metered from the requests moto serves.

The meter (`mqless_cli.billing`) bills DynamoDB by item size, index writes, transactions
and failed conditions, as AWS does (DESIGN.md §5). These are today's layout's figures;
`make bench` prints them for every path and body size.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mqless.clock import ManualClock
from mqless.dynamo import from_wire, to_wire
from mqless.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.models import NewMessage, QueueSettings
from mqless.principals import ANONYMOUS
from mqless.pubsub import SubscriptionSettings, TopicService
from mqless.queues import QueueService
from mqless.registry import QueueRegistry
from mqless_cli.billing import Meter, Usage, observing_moto
from tests.component.conftest import Aws


@pytest.fixture
def meter() -> Iterator[Meter]:
    found = Meter()
    with observing_moto(found):
        yield found


def table_and_index(usage: Usage, aws: Aws) -> tuple[float, float]:
    table = aws.settings.messages_table
    return usage.write_units.get(table, 0), usage.write_units.get(f"{table}/by_visibility", 0)


def test_an_acked_512_byte_standard_message_bills_3_table_and_4_index_write_units(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given an existing queue (its config cached, a data key already in hand)
    broker.send(ANONYMOUS, "costs", NewMessage(body=b"warm-up"))
    [warm] = broker.receive(ANONYMOUS, "costs")
    broker.ack(ANONYMOUS, "costs", [warm.receipt])

    # When one message of 512 bytes (an item under 1 KB) is sent, received and acked
    start = meter.usage()
    broker.send(ANONYMOUS, "costs", NewMessage(body=b"x" * 512))
    sent = meter.usage()
    [delivery] = broker.receive(ANONYMOUS, "costs")
    received = meter.usage()
    broker.ack(ANONYMOUS, "costs", [delivery.receipt])
    acked = meter.usage()

    # Then the send is one put (1 unit) entering the index (1); the lease one update (1)
    # that moves the index sort key (a delete and a put there: 2) after one index query;
    # the ack one delete (1) leaving the index (1): 3 + 4 = 7 write units, no KMS call
    assert (sent - start).requests == {"dynamodb:PutItem": 1}
    assert table_and_index(sent - start, aws) == (1, 1)
    assert (received - sent).requests == {"dynamodb:Query": 1, "dynamodb:UpdateItem": 1}
    assert table_and_index(received - sent, aws) == (1, 2)
    assert (acked - received).requests == {"dynamodb:DeleteItem": 1}
    assert table_and_index(acked - received, aws) == (1, 1)
    assert table_and_index(acked - start, aws) == (3, 4)


def test_a_16_kb_message_bills_its_size_on_every_table_write(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given an existing queue
    broker.send(ANONYMOUS, "big", NewMessage(body=b"warm-up"))
    [warm] = broker.receive(ANONYMOUS, "big")
    broker.ack(ANONYMOUS, "big", [warm.receipt])
    start = meter.usage()

    # When a 16 KB body is sent, received and acked
    broker.send(ANONYMOUS, "big", NewMessage(body=b"x" * 16 * 1024))
    [delivery] = broker.receive(ANONYMOUS, "big")
    broker.ack(ANONYMOUS, "big", [delivery.receipt])

    # Then each of the three table writes bills the 17 KB item (body + envelope and
    # attributes): 51 units; the index still 4
    assert table_and_index(meter.usage() - start, aws) == (51, 4)


def test_a_batch_of_ten_is_one_request_and_ten_items_written(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    broker.send(ANONYMOUS, "batched", NewMessage(body=b"warm-up"))
    entries = [(f"e{i}", NewMessage(body=f"m{i}".encode())) for i in range(10)]
    start = meter.usage()

    done, failed = broker.send_batch(ANONYMOUS, "batched", entries)

    usage = meter.usage() - start
    assert len(done) == 10 and failed == []
    assert usage.requests == {"dynamodb:BatchWriteItem": 1}
    assert table_and_index(usage, aws) == (10, 10)


def test_a_thousand_sends_cost_one_data_key(broker: QueueService, meter: Meter) -> None:
    # Given a fresh process (no data key yet)
    # When a thousand messages are sent to one queue
    for i in range(1000):
        broker.send(ANONYMOUS, "many", NewMessage(body=str(i).encode()))

    # Then KMS was asked for one data key in all: 0.001 calls per message
    assert meter.usage().count("kms") == 1
    assert meter.usage().count("kms", "GenerateDataKey") == 1


def test_a_fifo_message_bills_transactions_twice_per_item(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    broker.send(ANONYMOUS, "costs.fifo", NewMessage(body=b"warm", group_id="g"))
    [warm] = broker.receive(ANONYMOUS, "costs.fifo")
    broker.ack(ANONYMOUS, "costs.fifo", [warm.receipt])
    start = meter.usage()

    broker.send(ANONYMOUS, "costs.fifo", NewMessage(body=b"one", group_id="g"))
    sent = meter.usage()
    [delivery] = broker.receive(ANONYMOUS, "costs.fifo")
    received = meter.usage()
    broker.ack(ANONYMOUS, "costs.fifo", [delivery.receipt])
    acked = meter.usage()

    # a sequence read, then group + message + dedup record in one transaction: 3 x 2
    assert (sent - start).requests == {
        "dynamodb:GetItem": 1,
        "dynamodb:TransactWriteItems": 1,
    }
    assert table_and_index(sent - start, aws) == (6, 0)
    # lease the group (its index sort key moves: 2 there), read its head, mark it delivered
    assert (received - sent).requests == {"dynamodb:Query": 2, "dynamodb:UpdateItem": 2}
    assert table_and_index(received - sent, aws) == (2, 2)
    # delete the message and free the group in one transaction: 2 x 2, the group's
    # index entry moves again
    assert (acked - received).requests == {"dynamodb:TransactWriteItems": 1}
    assert table_and_index(acked - received, aws) == (4, 2)


def _topic_process(aws: Aws, clock: ManualClock) -> TopicService:
    """Topics in a process (and data-key cache) of their own."""
    return TopicService(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        clock=clock,
    )


def _kms(usage: Usage) -> dict[str, int]:
    return {k: v for k, v in usage.requests.items() if k.startswith("kms:")}


def test_sealing_again_on_every_move_costs_no_kms_call_per_message(
    broker: QueueService, aws: Aws, clock: ManualClock, meter: Meter
) -> None:
    # Given 50 messages published by one process to a topic with two subscriptions, whose
    # queues dead-letter a message after one delivery
    for queue in ("red", "blue"):
        broker.put_queue(
            ANONYMOUS, queue, QueueSettings(visibility_timeout=10, max_receive_count=1)
        )
    publisher, dispatcher = _topic_process(aws, clock), _topic_process(aws, clock)
    publisher.subscribe(ANONYMOUS, "paint.>", "red", SubscriptionSettings(queue="red"))
    publisher.subscribe(ANONYMOUS, "paint.blue", "blue", SubscriptionSettings(queue="blue"))
    for i in range(50):
        topic = "paint.blue" if i < 10 else "paint.red"
        publisher.publish(ANONYMOUS, topic, NewMessage(body=f"m{i}".encode()))
    published = aws.dynamodb.scan(
        TableName=aws.settings.messages_table,
        FilterExpression="begins_with(pk, :t)",
        ExpressionAttributeValues=to_wire({":t": "T#"}),
    )["Items"]

    # When the dispatch process fans them out (60 copies, each sealed for its queue)
    start = meter.usage()
    for item in published:
        dispatcher.fan_out(from_wire(item))
    fanned = meter.usage()
    # ... and the broker's process delivers blue's ten, dead-letters them and redrives them
    # (moves are transactions, which moto makes slow: ten of each are enough to count)
    assert len(broker.receive(ANONYMOUS, "blue", max_messages=10)) == 10
    clock.advance(11)
    assert broker.sweep().dead_lettered == 10
    assert broker.redrive(ANONYMOUS, "blue.dlq").moved == 10
    assert len(broker.receive(ANONYMOUS, "blue", max_messages=10)) == 10
    moved = meter.usage()

    # Then KMS saw one call per data key, not per message: fanning out opened the two
    # topics' keys and made one for each queue; the broker opened blue's key and made one
    # for blue.dlq and one for blue, where the redriven messages went back
    assert _kms(fanned - start) == {"kms:Decrypt": 2, "kms:GenerateDataKey": 2}
    assert _kms(moved - fanned) == {"kms:Decrypt": 1, "kms:GenerateDataKey": 2}
