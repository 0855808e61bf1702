"""Ack and take the next: a receive that carries receipts to acknowledge.

Where a receipt's message shares an index segment with what the receive leases, one
conditional write does both (tests/component/test_costs.py bills it). These tests hold the
semantics: each receipt is acked or refused as `ack` would, whatever the receive finds; a
stale receipt fails alone; competing receivers never lease a message twice and no ack is
lost when the combined write's condition fails. Each receiver is its own QueueService (its
own process on AWS); a stale read is staged as in tests/component/test_competing_receivers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage.destinations import QueueRegistry
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless_cli.billing import Meter
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS
QUEUE = "work"


@pytest.fixture
def receivers(aws: Aws, clock: ManualClock) -> list[QueueService]:
    """Two receivers, each its own QueueService over the same tables and clock, on a queue
    of one shard (every message in one sequence of segments)."""
    INLINE_DISPATCH.serve(aws.settings, clock)
    made = [
        assembly.build_queue_service(
            aws.settings,
            dynamodb=aws.dynamodb,
            kms=aws.kms,
            cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
            registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
            time=clock,
        )
        for _ in range(2)
    ]
    made[0].put_queue(P, QUEUE, QueueSettings(shards=1, visibility_timeout=60))
    return made


@contextmanager
def stale_reads(receiver: QueueService) -> Iterator[None]:
    """While the block runs, the receiver's eventually consistent reads of the queue's
    segments answer with the segments as they are when the block starts."""
    index = receiver.leases._index
    frozen = index.segments(QUEUE, 0, 0, limit=16)
    real = index.segments

    def segments(queue: str, shard: int, start: int = 0, **options: Any) -> list[Any]:
        if options.get("consistent"):
            return real(queue, shard, start, **options)
        return [s for s in frozen if s.seq >= start][: options.get("limit", 4)]

    index.segments = segments  # type: ignore[method-assign]
    try:
        yield
    finally:
        del index.segments


def send(broker: QueueService, body: str, queue: str = QUEUE, **fields: Any) -> str:
    return broker.send(P, queue, NewMessage(body=body.encode(), **fields)).message_id


def in_flight(broker: QueueService, queue: str = QUEUE) -> tuple[int, int]:
    counts = broker.get_queue(P, queue)[1]
    return counts.visible, counts.in_flight


def test_a_stale_receipt_is_refused_and_the_receive_still_returns_a_message(
    receivers: list[QueueService], meter: Meter
) -> None:
    # Given three messages in one segment, the first received and acked already
    broker = receivers[0]
    for body in ("a", "b", "c"):
        send(broker, body)
    [first] = broker.receive(P, QUEUE)
    assert broker.ack(P, QUEUE, [first.receipt])[0] == [first.receipt]
    before = meter.usage()

    # When its receipt is acked again with the next receive
    result = broker.ack_and_receive(P, QUEUE, [first.receipt])
    step = meter.usage() - before

    # Then that receipt alone is refused as stale, and a message of the same segment is
    # leased all the same (the combined write failed on the stale receipt: the lease was
    # written again on its own)
    assert result.acked == []
    assert [f.error for f in result.failed] == ["stale_receipt"]
    assert len(result.messages) == 1
    assert result.messages[0].message_id != first.message_id
    assert in_flight(broker) == (1, 1)
    # in three writes: the combined one refused, the receipt's own refused (as a stale ack
    # is), the lease alone; a lone receiver that lost no race does not start racing (no
    # ticket)
    assert sum(step.failed_conditions.values()) == 2
    assert sum(step.write_units.values()) == 3
    assert broker.leases.stats.tickets == 0


def test_a_live_and_a_stale_receipt_in_one_receive_ack_the_live_one(
    receivers: list[QueueService],
) -> None:
    # Given two received messages of one segment, one of them acked already, and a third
    broker = receivers[0]
    for body in ("a", "b", "c"):
        send(broker, body)
    first, second = broker.receive(P, QUEUE, max_messages=2)
    broker.ack(P, QUEUE, [first.receipt])

    # When both receipts are acked with the next receive
    result = broker.ack_and_receive(P, QUEUE, [first.receipt, second.receipt])

    # Then the live one is acked, the stale one reported, and the third message leased
    assert result.acked == [second.receipt]
    assert [(f.id, f.error) for f in result.failed] == [(first.receipt, "stale_receipt")]
    assert len(result.messages) == 1
    assert in_flight(broker) == (0, 1)


def test_an_ack_with_a_receive_that_finds_nothing_is_applied(
    receivers: list[QueueService],
) -> None:
    # Given the only message, received
    broker = receivers[0]
    send(broker, "only")
    [only] = broker.receive(P, QUEUE)

    # When it is acked with a receive that finds nothing more
    result = broker.ack_and_receive(P, QUEUE, [only.receipt])

    # Then the ack holds: nothing is left in flight, and its receipt is stale from now on
    assert (result.acked, result.messages) == ([only.receipt], [])
    assert in_flight(broker) == (0, 0)
    assert [f.error for f in broker.ack(P, QUEUE, [only.receipt])[1]] == ["stale_receipt"]


def test_an_ack_of_a_lease_that_ran_out_settles_it_and_does_not_lease_it_again(
    receivers: list[QueueService], clock: ManualClock
) -> None:
    # Given the only message, whose lease ran out before its consumer acked it (free
    # again, but leased to no one else: its receipt still acks it, as `ack` would)
    broker = receivers[0]
    send(broker, "slow")
    [slow] = broker.receive(P, QUEUE, visibility_timeout=10)
    clock.advance(11)

    # When it is acked with the next receive
    result = broker.ack_and_receive(P, QUEUE, [slow.receipt])

    # Then it is acked, and not handed out again by the same request
    assert (result.acked, result.messages) == ([slow.receipt], [])
    assert in_flight(broker) == (0, 0)


def test_the_message_after_the_last_in_a_segment_arrives_with_the_ack_of_the_last(
    receivers: list[QueueService],
) -> None:
    # Given a full segment of ten messages and an eleventh, in the next segment
    broker = receivers[0]
    sent = [send(broker, f"m{i}") for i in range(11)]

    # When a lone consumer takes them one at a time, each receive acking the one before
    got: list[str] = []
    held: list[str] = []
    for _ in range(12):
        result = broker.ack_and_receive(P, QUEUE, held) if held else None
        messages = result.messages if result else broker.receive(P, QUEUE)
        if result is not None:
            assert (result.acked, result.failed) == (held, [])
        got += [m.message_id for m in messages]
        held = [m.receipt for m in messages]
        if not messages:
            break

    # Then every message arrived once, the eleventh too, and every one was acked
    assert sorted(got) == sorted(sent)
    assert in_flight(broker) == (0, 0)


def test_a_lost_race_in_the_combined_write_loses_no_ack_and_leases_nothing_twice(
    receivers: list[QueueService], meter: Meter
) -> None:
    # Given b holding x, and a read of b's that still shows y free after a leased it
    a, b = receivers
    x = send(a, "x")
    y = send(a, "y")
    [held] = b.receive(P, QUEUE, oldest_first=True)
    assert held.message_id == x
    with stale_reads(b):
        z = send(a, "z")
        [taken_by_a] = a.receive(P, QUEUE, oldest_first=True)
        assert taken_by_a.message_id == y

        # When b acks x with a receive, choosing y (all its stale read shows free)
        result = b.ack_and_receive(P, QUEUE, [held.receipt])

    # Then the combined write was refused (y was a's), x is acked all the same, and b
    # leases z, not y: a's lease on y holds
    assert sum(meter.usage().failed_conditions.values()) == 1
    assert (result.acked, result.failed) == ([held.receipt], [])
    assert [m.message_id for m in result.messages] == [z]
    assert a.ack(P, QUEUE, [taken_by_a.receipt]) == ([taken_by_a.receipt], [])
    assert in_flight(a) == (0, 1)


def test_a_fifo_ack_with_the_next_receive_hands_over_the_groups_next_message(
    receivers: list[QueueService],
) -> None:
    # Given a FIFO group of two messages, the first received
    broker = receivers[0]
    broker.put_queue(P, "jobs.fifo", QueueSettings())
    send(broker, "first", "jobs.fifo", group_id="g")
    second = send(broker, "second", "jobs.fifo", group_id="g")
    [first] = broker.receive(P, "jobs.fifo")

    # When it is acked with the next receive
    result = broker.ack_and_receive(P, "jobs.fifo", [first.receipt])

    # Then the ack comes first: the group's next message is its head, and is leased
    assert result.acked == [first.receipt]
    assert [m.message_id for m in result.messages] == [second]


def test_a_fifo_ack_with_the_next_receive_takes_other_groups_heads_and_the_acked_groups_next(
    receivers: list[QueueService],
) -> None:
    # Given FIFO groups a and b of two messages each, a's first received
    broker = receivers[0]
    broker.put_queue(P, "mixed.fifo", QueueSettings(shards=1))
    a1 = send(broker, "a1", "mixed.fifo", group_id="a")
    a2 = send(broker, "a2", "mixed.fifo", group_id="a")
    b1 = send(broker, "b1", "mixed.fifo", group_id="b")
    send(broker, "b2", "mixed.fifo", group_id="b")
    [first] = broker.receive(P, "mixed.fifo", oldest_first=True)
    assert first.message_id == a1

    # When it is acked with a receive of up to ten
    result = broker.ack_and_receive(P, "mixed.fifo", [first.receipt], max_messages=10)

    # Then a1 is acked, and the receive gets b's head and a's next: one of each group
    assert result.acked == [first.receipt]
    assert sorted(m.message_id for m in result.messages) == sorted([a2, b1])
    assert broker.receive(P, "mixed.fifo", max_messages=10) == []


def test_a_stale_fifo_receipt_with_the_next_receive_fails_alone_and_its_group_stays_held(
    receivers: list[QueueService], clock: ManualClock
) -> None:
    # Given FIFO group a's head received by one receiver, its lease run out and the head
    # received again by the other, and group b's head waiting in the same segment
    first, second = receivers
    first.put_queue(P, "held.fifo", QueueSettings(shards=1, visibility_timeout=30))
    a1 = send(first, "a1", "held.fifo", group_id="a")
    send(first, "a2", "held.fifo", group_id="a")
    b1 = send(first, "b1", "held.fifo", group_id="b")
    [old] = first.receive(P, "held.fifo", oldest_first=True)
    clock.advance(31)
    [again] = second.receive(P, "held.fifo", oldest_first=True)
    assert old.message_id == again.message_id == a1

    # When the first acks its stale receipt with a receive of up to ten
    result = first.ack_and_receive(P, "held.fifo", [old.receipt], max_messages=10)

    # Then the stale receipt is refused, the receive gets b's head only (a1 is still held
    # by the second receiver, so a2 is not a head), and the second's lease still acks
    assert (result.acked, [f.id for f in result.failed]) == ([], [old.receipt[:200]])
    assert [m.message_id for m in result.messages] == [b1]
    assert second.ack(P, "held.fifo", [again.receipt]) == ([again.receipt], [])


@pytest.mark.parametrize("count", [0, 11])
def test_an_ack_of_no_receipts_or_more_than_ten_is_refused_and_leases_nothing(
    receivers: list[QueueService], count: int
) -> None:
    # Given a waiting message
    broker = receivers[0]
    send(broker, "waiting")
    # When a receive carries no receipts to ack, or eleven
    with pytest.raises(InvalidRequest, match="1 to 10 receipts"):
        broker.ack_and_receive(P, QUEUE, ["r"] * count)
    # Then nothing was leased
    assert in_flight(broker) == (1, 0)
