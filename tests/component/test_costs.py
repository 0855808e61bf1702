"""What each queue operation bills on AWS, counted from the requests the clients really send.

The figures are the cost model (DESIGN.md §5): an acknowledged standard message is three
table writes (in, lease, out) and data-key caching keeps KMS far below one call per message.
`make bench` prints the same counts as a table.
"""

from __future__ import annotations

from mqless.clock import ManualClock
from mqless.dynamo import from_wire, to_wire
from mqless.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.models import NewMessage, QueueSettings
from mqless.principals import ANONYMOUS
from mqless.pubsub import SubscriptionSettings, TopicService
from mqless.queues import QueueService
from mqless.registry import QueueRegistry
from mqless_cli.awscalls import counting
from tests.component.conftest import Aws


def test_a_standard_message_costs_one_write_in_one_lease_and_one_out(
    broker: QueueService, aws: Aws
) -> None:
    # Given an existing queue (its config cached, a data key already in hand)
    broker.send(ANONYMOUS, "costs", NewMessage(body=b"warm-up"))
    [warm] = broker.receive(ANONYMOUS, "costs")
    broker.ack(ANONYMOUS, "costs", [warm.receipt])

    # When one message is sent, received and acked
    with counting(aws.dynamodb, aws.kms) as sent:
        broker.send(ANONYMOUS, "costs", NewMessage(body=b"x" * 512))
    with counting(aws.dynamodb, aws.kms) as received:
        [delivery] = broker.receive(ANONYMOUS, "costs")
    with counting(aws.dynamodb, aws.kms) as acked:
        broker.ack(ANONYMOUS, "costs", [delivery.receipt])

    # Then each step is one write and no KMS call; receiving adds one index query
    assert sent.calls == {("dynamodb", "PutItem"): 1}
    assert received.calls == {("dynamodb", "Query"): 1, ("dynamodb", "UpdateItem"): 1}
    assert acked.calls == {("dynamodb", "DeleteItem"): 1}
    assert sent.write_units + received.write_units + acked.write_units == 3


def test_a_batch_of_ten_is_one_request_and_ten_writes(broker: QueueService, aws: Aws) -> None:
    broker.send(ANONYMOUS, "batched", NewMessage(body=b"warm-up"))
    entries = [(f"e{i}", NewMessage(body=f"m{i}".encode())) for i in range(10)]

    with counting(aws.dynamodb, aws.kms) as log:
        done, failed = broker.send_batch(ANONYMOUS, "batched", entries)

    assert len(done) == 10 and failed == []
    assert log.calls == {("dynamodb", "BatchWriteItem"): 1}
    assert log.write_units == 10


def test_a_thousand_sends_cost_one_data_key(broker: QueueService, aws: Aws) -> None:
    # Given a fresh process (no data key yet)
    # When a thousand messages are sent to one queue
    with counting(aws.kms) as log:
        for i in range(1000):
            broker.send(ANONYMOUS, "many", NewMessage(body=str(i).encode()))

    # Then KMS was asked for one data key in all: 0.001 calls per message
    assert log.calls == {("kms", "GenerateDataKey"): 1}


def test_a_fifo_message_costs_a_transaction_in_and_out(broker: QueueService, aws: Aws) -> None:
    broker.send(ANONYMOUS, "costs.fifo", NewMessage(body=b"warm", group_id="g"))
    [warm] = broker.receive(ANONYMOUS, "costs.fifo")
    broker.ack(ANONYMOUS, "costs.fifo", [warm.receipt])

    with counting(aws.dynamodb) as sent:
        broker.send(ANONYMOUS, "costs.fifo", NewMessage(body=b"one", group_id="g"))
    with counting(aws.dynamodb) as received:
        [delivery] = broker.receive(ANONYMOUS, "costs.fifo")
    with counting(aws.dynamodb) as acked:
        broker.ack(ANONYMOUS, "costs.fifo", [delivery.receipt])

    # a sequence read, then group + message + dedup record in one transaction
    assert sent.calls == {("dynamodb", "GetItem"): 1, ("dynamodb", "TransactWriteItems"): 1}
    assert sent.write_units == 6
    # lease the group, read its head, mark the head delivered
    assert received.calls == {("dynamodb", "Query"): 2, ("dynamodb", "UpdateItem"): 2}
    # delete the message and free the group together
    assert acked.calls == {("dynamodb", "TransactWriteItems"): 1}


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


def test_sealing_again_on_every_move_costs_no_kms_call_per_message(
    broker: QueueService, aws: Aws, clock: ManualClock
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
    with counting(aws.kms) as fanning:
        for item in published:
            dispatcher.fan_out(from_wire(item))
    # ... and the broker's process delivers blue's ten, dead-letters them and redrives them
    # (moves are transactions, which moto makes slow: ten of each are enough to count)
    with counting(aws.kms) as moving:
        assert len(broker.receive(ANONYMOUS, "blue", max_messages=10)) == 10
        clock.advance(11)
        assert broker.sweep().dead_lettered == 10
        assert broker.redrive(ANONYMOUS, "blue.dlq").moved == 10
        assert len(broker.receive(ANONYMOUS, "blue", max_messages=10)) == 10

    # Then KMS saw one call per data key, not per message: fanning out opened the two
    # topics' keys and made one for each queue; the broker opened blue's key and made one
    # for blue.dlq and one for blue, where the redriven messages went back
    assert fanning.calls == {("kms", "Decrypt"): 2, ("kms", "GenerateDataKey"): 2}
    assert moving.calls == {("kms", "Decrypt"): 1, ("kms", "GenerateDataKey"): 2}
