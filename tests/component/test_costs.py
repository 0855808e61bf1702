"""What each queue operation bills on AWS, counted from the requests the clients really send.

The figures are the cost model (DESIGN.md §5): an acknowledged standard message is three
table writes (in, lease, out) and data-key caching keeps KMS far below one call per message.
`make bench` prints the same counts as a table.
"""

from __future__ import annotations

from mqless.models import NewMessage
from mqless.principals import ANONYMOUS
from mqless.queues import QueueService
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
