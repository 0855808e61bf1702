"""The sweeper: dead letters and expired messages are dealt with without waiting for a receiver."""

from __future__ import annotations

from typing import Any

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.observability import metrics
from tests.call_counts import count_calls
from tests.component.conftest import Aws

P = ANONYMOUS
LEASE = 10


@pytest.fixture
def queue(broker: QueueService) -> str:
    """A queue that dead-letters after two deliveries."""
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=LEASE, max_receive_count=2))
    return "orders"


@pytest.fixture
def gauges(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], float]:
    """The gauges measured from now on, by (name, queue): the last value of each."""
    measured: dict[tuple[str, str], float] = {}

    def gauge(name: str, value: float, *, queue: str) -> None:
        measured[(name, queue)] = value

    monkeypatch.setattr(metrics, "gauge", gauge)
    return measured


def _use_up_deliveries(broker: QueueService, clock: ManualClock, queue: str) -> None:
    for _ in range(2):
        assert broker.receive(P, queue, max_messages=10)
        clock.advance(LEASE + 1)


def test_the_sweeper_moves_an_over_limit_message_to_the_dead_letter_queue(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message that failed all its deliveries, and no receiver since
    sent = broker.send(P, queue, NewMessage(body=b"poison"))
    _use_up_deliveries(broker, clock, queue)
    # When the sweeper runs
    report = broker.sweep()
    # Then the message is in the dead-letter queue, not in the source
    assert report.dead_lettered == 1
    assert broker.get_queue(P, queue)[1].visible == 0
    [dead] = broker.receive(P, "orders.dlq")
    assert (dead.message_id, dead.source_queue) == (sent.message_id, "orders")
    assert dead.dead_letter_reason is not None
    assert "max_receive_count" in dead.dead_letter_reason


def test_the_sweeper_drops_expired_messages(broker: QueueService, clock: ManualClock) -> None:
    # Given two messages past their TTL and one still live
    broker.send(P, "events", NewMessage(body=b"old-1", ttl_seconds=5))
    broker.send(P, "events", NewMessage(body=b"old-2", ttl_seconds=5))
    broker.send(P, "events", NewMessage(body=b"live"))
    clock.advance(6)
    # When the sweeper runs
    report = broker.sweep()
    # Then the expired ones are gone and the live one stays
    assert report.expired == 2
    assert broker.get_queue(P, "events")[1].visible == 1
    assert [d.body for d in broker.receive(P, "events", max_messages=10)] == [b"live"]


def test_the_sweeper_leaves_healthy_messages_as_they_were(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message delivered once (of two allowed) and released, and a fresh one
    broker.send(P, queue, NewMessage(body=b"tried once"))
    [first] = broker.receive(P, queue)
    broker.nack(P, queue, [first.receipt])
    broker.send(P, queue, NewMessage(body=b"fresh"))
    # When the sweeper runs
    report = broker.sweep()
    # Then it moved and dropped nothing, and did not count a delivery against either message
    assert (report.dead_lettered, report.expired, report.errors) == (0, 0, [])
    received = broker.receive(P, queue, max_messages=10)
    assert {d.body: d.receive_count for d in received} == {b"tried once": 2, b"fresh": 1}


def test_the_sweeper_leaves_a_message_in_flight_alone(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message on its last allowed delivery, still leased, past its TTL
    broker.send(P, queue, NewMessage(body=b"slow work", ttl_seconds=15))
    broker.receive(P, queue)
    clock.advance(LEASE + 1)
    [last] = broker.receive(P, queue, visibility_timeout=60)
    clock.advance(10)
    # When the sweeper runs during the lease
    report = broker.sweep()
    # Then it does not touch it: the consumer can still ack
    assert (report.dead_lettered, report.expired) == (0, 0)
    assert broker.ack(P, queue, [last.receipt]) == ([last.receipt], [])


def test_the_sweeper_visits_every_queue(broker: QueueService, clock: ManualClock) -> None:
    # Given expired messages in two queues
    for name in ("a", "b"):
        broker.send(P, name, NewMessage(body=b"old", ttl_seconds=1))
    clock.advance(2)
    # When the sweeper runs
    report = broker.sweep()
    # Then it visited every queue (a, b and their dead-letter queues) and cleared both
    assert report.queues == 4
    assert report.expired == 2


def test_the_sweeper_dead_letters_an_over_limit_fifo_head_and_keeps_the_group_going(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO group whose head used up its one delivery, and a second message behind it
    broker.put_queue(P, "jobs.fifo", QueueSettings(visibility_timeout=LEASE, max_receive_count=1))
    broker.send(P, "jobs.fifo", NewMessage(body=b"poison", group_id="g"))
    broker.send(P, "jobs.fifo", NewMessage(body=b"next", group_id="g"))
    broker.receive(P, "jobs.fifo")
    clock.advance(LEASE + 1)
    # When the sweeper runs
    report = broker.sweep()
    # Then the head is dead-lettered, and the next message is delivered on its first try
    assert report.dead_lettered == 1
    [dead] = broker.receive(P, "jobs.dlq.fifo")
    assert dead.body == b"poison"
    [following] = broker.receive(P, "jobs.fifo")
    assert (following.body, following.receive_count) == (b"next", 1)


def test_the_sweeper_drops_an_expired_fifo_head(broker: QueueService, clock: ManualClock) -> None:
    # Given a FIFO group whose head has expired
    broker.send(P, "jobs.fifo", NewMessage(body=b"old", group_id="g", ttl_seconds=5))
    broker.send(P, "jobs.fifo", NewMessage(body=b"new", group_id="g"))
    clock.advance(6)
    # When the sweeper runs
    report = broker.sweep()
    # Then the head is gone and the rest of the group is untouched
    assert report.expired == 1
    [following] = broker.receive(P, "jobs.fifo")
    assert (following.body, following.receive_count) == (b"new", 1)


def test_sweeping_twice_does_nothing_the_second_time(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a swept queue
    broker.send(P, queue, NewMessage(body=b"poison"))
    _use_up_deliveries(broker, clock, queue)
    broker.sweep()
    # When the sweeper runs again
    report = broker.sweep()
    # Then it finds nothing to do and the dead letter is still there, once
    assert (report.dead_lettered, report.expired) == (0, 0)
    assert broker.get_queue(P, "orders.dlq")[1].visible == 1


def test_a_sweep_reads_each_shard_once_for_its_work_and_the_depth_it_publishes(
    aws: Aws, broker: QueueService, monkeypatch: pytest.MonkeyPatch, gauges: dict[Any, float]
) -> None:
    # Given a queue holding three messages, one of them leased (nothing for the sweep to do),
    # and its dead-letter queue
    for body in (b"1", b"2", b"3"):
        broker.send(P, "eu", NewMessage(body=body))
    assert broker.receive(P, "eu", max_messages=1)
    shards = sum(len(broker.config_of(q).index_shards()) for q in broker.queue_names())
    queries = count_calls(monkeypatch, aws.dynamodb, "query")
    # When the sweeper runs
    report = broker.sweep()
    # Then it published the queue's depth, three, having queried each shard of both queues
    # once (the registry's listing aside): the sweep's own read is what it counted
    assert report.errors == []
    assert gauges[("Depth", "eu")] == 3
    assert queries() == shards + 1


def test_a_shard_the_sweep_changed_is_read_again_for_its_depth(
    broker: QueueService, clock: ManualClock, queue: str, gauges: dict[Any, float]
) -> None:
    # Given a message past its receive limit, and another one waiting
    broker.send(P, queue, NewMessage(body=b"poison"))
    _use_up_deliveries(broker, clock, queue)
    broker.send(P, queue, NewMessage(body=b"fine"))
    # When the sweeper dead-letters the first
    report = broker.sweep()
    # Then the depth it publishes is what is left after the move: one message, not two
    assert report.dead_lettered == 1
    assert gauges[("Depth", queue)] == 1


def test_a_sweep_reads_each_queues_floors_in_one_request(
    aws: Aws, broker: QueueService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue with a message, and its dead-letter queue, whose floors this process
    # read long enough ago to read them again
    broker.send(P, "eu", NewMessage(body=b"1"))
    assert broker.receive(P, "eu", max_messages=1)
    clock.advance(60)
    single = count_calls(monkeypatch, aws.dynamodb, "get_item")
    together = count_calls(monkeypatch, aws.dynamodb, "batch_get_item")
    # When the sweeper runs
    report = broker.sweep()
    # Then it read each queue's shard floors in one request, and no floor alone
    assert report.errors == []
    assert together() == 2
    assert single() == 0
