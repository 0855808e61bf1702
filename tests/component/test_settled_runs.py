"""A competing receiver's look begins past the settled segments at its shard's floor that a
look of its process read already (settled is for good), while the cursor it read them over
is cached: the floor is written only once such a run is long enough, and every look read
the shorter runs again before what waits behind them. A queue deleted and made again is
read from its floor once the cursor is read again, at once in the process that deleted it.
"""

from __future__ import annotations

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.domain.queues.shard_memory import FLOOR_CACHE_MS
from mqless_cli.billing import Meter
from tests.component.test_competing_receivers import receivers  # noqa: F401 - a fixture

P = ANONYMOUS
QUEUE = "settled"


def queries(meter: Meter) -> int:
    return int(meter.usage().requests.get("dynamodb:Query", 0))


def send_batches(broker: QueueService, count: int) -> list[set[str]]:
    """`count` batches of 10 (a segment each, in order); each batch's message ids."""
    sent = []
    for b in range(count):
        entries = [(f"e{i}", NewMessage(body=f"{b}.{i}".encode())) for i in range(10)]
        done, failed = broker.send_batch(P, QUEUE, entries)
        assert not failed
        sent.append({result.message_id for _, result in done})
    return sent


def ack(broker: QueueService, deliveries: list[Delivery]) -> None:
    for start in range(0, len(deliveries), 10):
        acked, failed = broker.ack(P, QUEUE, [d.receipt for d in deliveries[start : start + 10]])
        assert not failed


def lease_all(broker: QueueService, batches: int) -> list[Delivery]:
    leased: list[Delivery] = []
    for _ in range(batches):
        leased += broker.receive(P, QUEUE, max_messages=10)
    assert len(leased) == batches * 10
    return leased


@pytest.fixture
def queue(broker: QueueService) -> str:
    broker.put_queue(P, QUEUE, QueueSettings(shards=1, visibility_timeout=60))
    return QUEUE


def test_a_receive_after_one_that_read_settled_segments_at_the_floor_reads_past_them(
    broker: QueueService, queue: str, meter: Meter
) -> None:
    # Given 9 segments all leased, the first 3 acknowledged (too few to move the floor), and
    # a receive that read them on its way to a new batch behind the leased ones
    sent = send_batches(broker, 9)
    leased = lease_all(broker, 9)
    ack(broker, [d for d in leased if d.message_id in set().union(*sent[:3])])
    send_batches(broker, 1)
    assert len(broker.receive(P, queue, max_messages=10)) == 10
    newest = send_batches(broker, 1)[0]
    before = queries(meter)
    # When a receive of this process looks for the next new batch
    got = broker.receive(P, queue, max_messages=10)
    # Then it gets it in one read, which begins past the settled segments (from the floor,
    # 8 of them would be settled or leased, and a second read would reach the batch)
    assert {d.message_id for d in got} == newest
    assert queries(meter) - before == 1


def test_a_queue_deleted_and_made_again_by_this_process_is_read_from_its_floor(
    broker: QueueService, queue: str
) -> None:
    # Given a queue whose first 3 segments a receive read settled
    send_batches(broker, 3)
    ack(broker, lease_all(broker, 3))
    fourth = send_batches(broker, 1)[0]
    assert {d.message_id for d in broker.receive(P, queue, max_messages=10)} == fourth
    # When this process deletes it, makes it again and sends a batch to it
    broker.delete_queue(P, queue)
    broker.put_queue(P, queue, QueueSettings(shards=1, visibility_timeout=60))
    again = send_batches(broker, 1)[0]
    # Then a receive gets that batch at once
    assert {d.message_id for d in broker.receive(P, queue, max_messages=10)} == again


def test_a_queue_another_process_deleted_and_made_again_is_read_from_its_floor(
    receivers: list[QueueService],  # noqa: F811 - the fixture
    clock: ManualClock,
) -> None:
    # Given a queue whose first 3 segments a receive of one process read settled
    here, there = receivers[0], receivers[1]
    here.put_queue(P, QUEUE, QueueSettings(shards=1, visibility_timeout=60))
    send_batches(here, 3)
    ack(here, lease_all(here, 3))
    fourth = send_batches(here, 1)[0]
    assert {d.message_id for d in here.receive(P, QUEUE, max_messages=10)} == fourth
    # When another process deletes it, makes it again and sends a batch to it
    there.delete_queue(P, QUEUE)
    there.put_queue(P, QUEUE, QueueSettings(shards=1, visibility_timeout=60))
    again = send_batches(there, 1)[0]
    # Then the first process gets that batch once its cached cursor is read again
    clock.advance(FLOOR_CACHE_MS / 1000)
    got = here.receive(P, QUEUE, max_messages=10, wait_seconds=5)
    assert {d.message_id for d in got} == again
