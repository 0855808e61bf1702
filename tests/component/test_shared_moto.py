"""The queue tests' shared moto (tests/component/conftest.py): one provisioned moto per
module, and every test starts from empty tables (`aws` empties them in moto itself)."""

from __future__ import annotations

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.queues.service import QueueService
from mqless.storage.destinations import QueueRegistry
from tests.component.conftest import Aws, _empty_table

P = ANONYMOUS


def _scan(aws: Aws, table: str) -> list[object]:
    pages = aws.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def test_an_emptied_table_keeps_nothing_a_previous_test_left(
    aws: Aws, broker: QueueService, clock: ManualClock
) -> None:
    # Given what a test leaves behind: a queue with messages sent, one of them leased
    for n in range(3):
        broker.send(P, "left-over", NewMessage(body=f"m{n}".encode()))
    assert len(broker.receive(P, "left-over")) == 1
    partitions = {item["pk"]["S"] for item in _scan(aws, aws.settings.messages_table)}
    assert partitions
    assert _scan(aws, aws.settings.destinations_table)

    # When both tables are emptied as the `aws` fixture empties them before each test
    for table in (aws.settings.messages_table, aws.settings.destinations_table):
        _empty_table(table)

    # Then scans find nothing, queries (answered from moto_fixes' orderings) find nothing,
    # and the queue is gone
    assert _scan(aws, aws.settings.messages_table) == []
    assert _scan(aws, aws.settings.destinations_table) == []
    for pk in partitions:
        found = aws.dynamodb.query(
            TableName=aws.settings.messages_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
        )
        assert found["Items"] == [], pk
    registry = QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock)
    assert registry.find("left-over") is None

    # and what a new broker sends there afterwards is stored, queried and received as in a
    # new moto
    broker.send(P, "fresh", NewMessage(body=b"after"))
    assert [d.body for d in broker.receive(P, "fresh")] == [b"after"]
