"""Real threads against one moto backend: a message is never leased twice while its lease holds.

Each worker is its own QueueService over its own boto3 clients on the wall clock, as
separate Lambda invocations would be. Only the AWS side is shared.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
import pytest

from mqless.assembly import build_queue_service
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService

P = ANONYMOUS
WORKERS = 8
LEASE = 120  # far longer than the test: any second delivery would be a double lease
T = TypeVar("T")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clients() -> list[tuple[Any, Any]]:
    """A DynamoDB and a KMS client per worker; made once, as they hold no AWS state."""
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return [
        (
            boto3.client("dynamodb", region_name="us-east-1", **credentials),
            boto3.client("kms", region_name="us-east-1", **credentials),
        )
        for _ in range(WORKERS)
    ]


@pytest.fixture
def workers(aws: Any, clients: list[tuple[Any, Any]]) -> list[QueueService]:
    """One broker per worker, each over its own clients, on the wall clock."""
    return [build_queue_service(aws.settings, dynamodb=db, kms=kms) for db, kms in clients]


def _run(workers: list[QueueService], work: Callable[[int, QueueService], T]) -> list[T]:
    """Run `work` on every worker at once (released together) and return their results."""
    start = threading.Barrier(len(workers))

    def go(index: int) -> T:
        start.wait()
        return work(index, workers[index])

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        return list(pool.map(go, range(len(workers))))


def _consume(broker: QueueService, queue: str, on_delivery: Callable[[Delivery], None]) -> None:
    """Receive and ack until a few receives in a row come back empty."""
    empty = 0
    while empty < 3:
        received = broker.receive(P, queue, max_messages=3, visibility_timeout=LEASE)
        if not received:
            empty += 1
            continue
        empty = 0
        for delivery in received:
            on_delivery(delivery)
        acked, failed = broker.ack(P, queue, [d.receipt for d in received])
        assert failed == []


def test_competing_consumers_get_every_message_exactly_once(workers: list[QueueService]) -> None:
    # Given 30 messages on a standard queue
    admin = workers[0]
    admin.put_queue(P, "orders", QueueSettings(visibility_timeout=LEASE))
    sent = set()
    for batch in range(3):
        done, _ = admin.send_batch(
            P, "orders", [(str(i), NewMessage(body=f"{batch}-{i}".encode())) for i in range(10)]
        )
        sent.update(result.message_id for _, result in done)
    deliveries: list[str] = []
    lock = threading.Lock()

    def record(delivery: Delivery) -> None:
        with lock:
            deliveries.append(delivery.message_id)

    # When eight consumers receive and ack concurrently until the queue is empty
    _run(workers, lambda _, broker: _consume(broker, "orders", record))
    # Then every message was delivered once and only once, and none is left
    assert Counter(deliveries).most_common(1)[0][1] == 1
    assert set(deliveries) == sent
    counts = admin.get_queue(P, "orders")[1]
    assert (counts.visible, counts.in_flight) == (0, 0)


def test_competing_consumers_acking_with_their_next_receive_lose_no_ack_and_no_message_twice(
    workers: list[QueueService],
) -> None:
    # Given 40 messages on a standard queue of one shard (every receiver in the same
    # segments, so combined ack-and-lease writes collide)
    admin = workers[0]
    admin.put_queue(P, "orders", QueueSettings(visibility_timeout=LEASE, shards=1))
    sent = set()
    for batch in range(4):
        done, _ = admin.send_batch(
            P, "orders", [(str(i), NewMessage(body=f"{batch}-{i}".encode())) for i in range(10)]
        )
        sent.update(result.message_id for _, result in done)
    deliveries: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def consume(_: int, broker: QueueService) -> None:
        held: list[str] = []
        empty = 0
        while empty < 3:
            if held:
                result = broker.ack_and_receive(
                    P, "orders", held, max_messages=2, visibility_timeout=LEASE
                )
                received = result.messages
                with lock:
                    refused.extend(f.error for f in result.failed)
            else:
                received = broker.receive(P, "orders", max_messages=2, visibility_timeout=LEASE)
            with lock:
                deliveries.extend(d.message_id for d in received)
            held = [d.receipt for d in received]
            empty = 0 if received else empty + 1

    # When eight consumers receive concurrently, each acking what it holds with its next
    # receive, until the queue is empty
    _run(workers, consume)
    # Then every message was delivered once and only once, every ack held, none is left
    assert Counter(deliveries).most_common(1)[0][1] == 1
    assert set(deliveries) == sent
    assert refused == []
    counts = admin.get_queue(P, "orders")[1]
    assert (counts.visible, counts.in_flight) == (0, 0)


def test_consumers_racing_for_one_message_lease_it_once(workers: list[QueueService]) -> None:
    # Given one message
    admin = workers[0]
    sent = admin.send(P, "orders", NewMessage(body=b"the only one")).message_id
    # When eight consumers receive it at the same moment
    results = _run(workers, lambda _, broker: broker.receive(P, "orders", visibility_timeout=LEASE))
    # Then exactly one of them holds it
    winners = [r for r in results if r]
    assert len(winners) == 1
    assert [d.message_id for d in winners[0]] == [sent]


def test_concurrent_fifo_consumers_keep_each_group_in_order_one_at_a_time(
    workers: list[QueueService],
) -> None:
    # Given three groups of five messages each on a FIFO queue
    admin = workers[0]
    admin.put_queue(P, "jobs.fifo", QueueSettings(visibility_timeout=LEASE))
    groups = ["a", "b", "c"]
    for i in range(5):
        admin.send_batch(
            P,
            "jobs.fifo",
            [(g, NewMessage(body=f"{g}{i}".encode(), group_id=g)) for g in groups],
        )
    order: dict[str, list[bytes]] = defaultdict(list)
    holder: dict[str, bytes | None] = {}
    overlaps: list[str] = []
    lock = threading.Lock()

    def consume(_: int, broker: QueueService) -> None:
        empty = 0
        while empty < 3:
            received = broker.receive(P, "jobs.fifo", max_messages=2, visibility_timeout=LEASE)
            if not received:
                empty += 1
                continue
            empty = 0
            with lock:
                for d in received:
                    group = str(d.group_id)
                    if holder.get(group) is not None:
                        overlaps.append(f"{d.body!r} while {holder[group]!r} in flight")
                    holder[group] = d.body
                    order[group].append(d.body)
            time.sleep(0.002)  # the work, during which the group must stay with us
            with lock:
                # given up before the ack is sent, so a later delivery is never a false alarm
                for d in received:
                    holder[str(d.group_id)] = None
            broker.ack(P, "jobs.fifo", [d.receipt for d in received])

    # When eight consumers receive and ack concurrently until the queue is empty
    _run(workers, consume)
    # Then no group ever had two messages out at once, and each came out in send order
    assert overlaps == []
    assert dict(order) == {g: [f"{g}{i}".encode() for i in range(5)] for g in groups}
