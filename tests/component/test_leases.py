"""Leases: ack, nack, visibility changes, and receipts that have gone stale."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.receipts import decode_receipt
from mqless.domain.queues.service import QueueService

P = ANONYMOUS
LEASE = 30


@pytest.fixture
def queue(broker: QueueService) -> str:
    """A standard queue with a 30 second lease that never dead-letters."""
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=LEASE, max_receive_count=None))
    return "orders"


def _deliver(broker: QueueService, queue: str, body: str = "work") -> Delivery:
    broker.send(P, queue, NewMessage(body=body.encode()))
    [delivery] = broker.receive(P, queue)
    return delivery


def _visible(broker: QueueService, queue: str) -> int:
    return broker.get_queue(P, queue)[1].visible


def test_an_acked_message_is_never_delivered_again(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a received message
    delivery = _deliver(broker, queue)
    # When it is acked and its lease would long have run out
    acked, failed = broker.ack(P, queue, [delivery.receipt])
    clock.advance(LEASE * 10)
    # Then the ack succeeded and the queue is empty
    assert (acked, failed) == ([delivery.receipt], [])
    assert broker.receive(P, queue, max_messages=10) == []
    counts = broker.get_queue(P, queue)[1]
    assert (counts.visible, counts.in_flight, counts.delayed) == (0, 0, 0)


def test_a_batch_of_receipts_is_acked_together(broker: QueueService, queue: str) -> None:
    # Given three received messages
    for i in range(3):
        broker.send(P, queue, NewMessage(body=f"m{i}".encode()))
    receipts = [d.receipt for d in broker.receive(P, queue, max_messages=3)]
    # When all three receipts are acked in one call
    acked, failed = broker.ack(P, queue, receipts)
    # Then all are acked
    assert sorted(acked) == sorted(receipts)
    assert failed == []


@pytest.mark.parametrize("count", [0, 11])
def test_acks_take_one_to_ten_receipts(broker: QueueService, queue: str, count: int) -> None:
    # Given a number of receipts outside 1-10
    receipts = [f"r1.{i}" for i in range(count)]
    # When they are acked
    with pytest.raises(InvalidRequest) as caught:
        broker.ack(P, queue, receipts)
    # Then the call is refused
    assert caught.value.code == "invalid_request"


def test_an_unacked_message_comes_back_after_its_lease(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a received message that is neither acked nor released
    first = _deliver(broker, queue)
    # When the lease runs out
    clock.advance(LEASE + 1)
    [second] = broker.receive(P, queue)
    # Then the same message is delivered again, with a new receipt and a higher count
    assert second.message_id == first.message_id
    assert second.body == first.body
    assert second.receipt != first.receipt
    assert second.receive_count == 2


def test_a_stale_receipt_cannot_ack_the_newer_lease(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message whose lease expired and which was delivered to a second consumer
    first = _deliver(broker, queue)
    clock.advance(LEASE + 1)
    [second] = broker.receive(P, queue)
    # When the first consumer acks with its old receipt
    acked, failed = broker.ack(P, queue, [first.receipt])
    # Then the ack is refused as stale and the message stays with the second consumer
    assert acked == []
    assert [(f.id, f.error) for f in failed] == [(first.receipt, "stale_receipt")]
    assert broker.get_queue(P, queue)[1].in_flight == 1
    assert broker.ack(P, queue, [second.receipt]) == ([second.receipt], [])


def test_a_stale_receipt_cannot_extend_the_newer_lease(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message re-delivered to a second consumer with a 10 second lease
    first = _deliver(broker, queue)
    clock.advance(LEASE + 1)
    [second] = broker.receive(P, queue, visibility_timeout=10)
    # When the first consumer tries to extend the lease by an hour
    changed, failed = broker.change_visibility(P, queue, [first.receipt], 3600)
    # Then it is refused, and the message is visible again when the second lease ends
    assert changed == []
    assert [f.error for f in failed] == ["stale_receipt"]
    clock.advance(11)
    [third] = broker.receive(P, queue)
    assert third.message_id == second.message_id
    assert third.receive_count == 3


def test_a_stale_receipt_cannot_release_the_newer_lease(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message re-delivered to a second consumer
    first = _deliver(broker, queue)
    clock.advance(LEASE + 1)
    broker.receive(P, queue)
    # When the first consumer nacks with its old receipt
    released, failed = broker.nack(P, queue, [first.receipt])
    # Then it is refused, and the message stays hidden for the second consumer
    assert released == []
    assert [f.error for f in failed] == ["stale_receipt"]
    assert broker.receive(P, queue) == []


def test_acking_twice_is_stale_the_second_time(broker: QueueService, queue: str) -> None:
    # Given a message acked once
    delivery = _deliver(broker, queue)
    broker.ack(P, queue, [delivery.receipt])
    # When the same receipt is acked again
    acked, failed = broker.ack(P, queue, [delivery.receipt])
    # Then the second ack is reported stale
    assert acked == []
    assert [f.error for f in failed] == ["stale_receipt"]


def test_a_malformed_receipt_fails_alone_in_a_batch(broker: QueueService, queue: str) -> None:
    # Given one good receipt and one that is not a receipt at all
    delivery = _deliver(broker, queue)
    # When both are acked in one call
    acked, failed = broker.ack(P, queue, ["garbage", delivery.receipt])
    # Then the good one is acked and the bad one is reported as invalid
    assert acked == [delivery.receipt]
    assert [(f.id, f.error) for f in failed] == [("garbage", "invalid_request")]


def test_a_receipt_from_another_queue_is_refused(broker: QueueService, queue: str) -> None:
    # Given a message received from another queue
    elsewhere = _deliver(broker, "invoices")
    # When its receipt is used to ack on "orders"
    acked, failed = broker.ack(P, queue, [elsewhere.receipt])
    # Then it is refused as invalid and the message is still leased on its own queue
    assert acked == []
    assert [f.error for f in failed] == ["invalid_request"]
    assert broker.ack(P, "invoices", [elsewhere.receipt]) == ([elsewhere.receipt], [])


def test_a_forged_receipt_deletes_nothing(broker: QueueService, queue: str) -> None:
    # Given a received message, and a receipt for it with a guessed token, signed by
    # someone without the broker's secret
    delivery = _deliver(broker, queue)
    secret = broker._dedup  # noqa: SLF001 - the broker's own signer, to read the receipt
    real = decode_receipt(delivery.receipt, queue=queue, sign=secret.sign)
    forged = replace(real, token=real.token ^ 1).encode(lambda data: b"\0" * 32)
    # When the forged receipt is acked
    acked, failed = broker.ack(P, queue, [forged])
    # Then it is refused as not one the broker gave out, and the real receipt still works
    assert acked == []
    assert [f.error for f in failed] == ["invalid_request"]
    assert broker.ack(P, queue, [delivery.receipt]) == ([delivery.receipt], [])


def test_a_nacked_message_is_delivered_again_at_once(broker: QueueService, queue: str) -> None:
    # Given a received message
    first = _deliver(broker, queue)
    # When it is nacked
    released, failed = broker.nack(P, queue, [first.receipt])
    # Then it can be received again straight away, counting a second delivery
    assert (released, failed) == ([first.receipt], [])
    [again] = broker.receive(P, queue)
    assert again.message_id == first.message_id
    assert again.receive_count == 2


def test_a_nack_with_a_delay_hides_the_message_until_then(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a received message
    first = _deliver(broker, queue)
    # When it is nacked with a 60 second delay
    broker.nack(P, queue, [first.receipt], delay_seconds=60)
    # Then it is not delivered after 59 seconds but is after 60
    clock.advance(59)
    assert broker.receive(P, queue) == []
    clock.advance(1)
    assert [d.message_id for d in broker.receive(P, queue)] == [first.message_id]


@pytest.mark.parametrize("delay", [-1, 12 * 3600 + 1])
def test_a_nack_delay_out_of_range_is_refused(broker: QueueService, queue: str, delay: int) -> None:
    # Given a received message
    delivery = _deliver(broker, queue)
    # When it is nacked with a delay out of range
    with pytest.raises(InvalidRequest) as caught:
        broker.nack(P, queue, [delivery.receipt], delay_seconds=delay)
    # Then the call is refused and the lease is untouched
    assert caught.value.code == "invalid_request"
    assert broker.receive(P, queue) == []


def test_a_nacked_receipt_is_stale_afterwards(broker: QueueService, queue: str) -> None:
    # Given a message that was nacked
    delivery = _deliver(broker, queue)
    broker.nack(P, queue, [delivery.receipt])
    # When its receipt is used to ack
    acked, failed = broker.ack(P, queue, [delivery.receipt])
    # Then the ack is stale: the consumer gave the message up
    assert acked == []
    assert [f.error for f in failed] == ["stale_receipt"]
    assert _visible(broker, queue) == 1


def test_extending_a_lease_keeps_the_message_hidden_longer(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a received message with a 30 second lease
    delivery = _deliver(broker, queue)
    clock.advance(20)
    # When the consumer extends it to 60 seconds from now
    changed, failed = broker.change_visibility(P, queue, [delivery.receipt], 60)
    # Then it stays hidden past the original 30 seconds, and comes back after 60 more
    assert (changed, failed) == ([delivery.receipt], [])
    clock.advance(59)
    assert broker.receive(P, queue) == []
    clock.advance(1)
    assert [d.message_id for d in broker.receive(P, queue)] == [delivery.message_id]


def test_an_extended_lease_can_still_be_acked(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message whose lease was extended past its original end
    delivery = _deliver(broker, queue)
    broker.change_visibility(P, queue, [delivery.receipt], 120)
    clock.advance(LEASE + 10)
    # When the consumer acks with the same receipt
    acked, _ = broker.ack(P, queue, [delivery.receipt])
    # Then the ack succeeds
    assert acked == [delivery.receipt]


def test_a_visibility_of_zero_releases_the_message(broker: QueueService, queue: str) -> None:
    # Given a received message
    delivery = _deliver(broker, queue)
    # When its visibility is set to 0
    broker.change_visibility(P, queue, [delivery.receipt], 0)
    # Then it is visible at once
    assert [d.message_id for d in broker.receive(P, queue)] == [delivery.message_id]


def test_a_visibility_out_of_range_is_refused(broker: QueueService, queue: str) -> None:
    # Given a received message
    delivery = _deliver(broker, queue)
    # When its visibility is set past 12 hours
    with pytest.raises(InvalidRequest) as caught:
        broker.change_visibility(P, queue, [delivery.receipt], 12 * 3600 + 1)
    # Then the call is refused
    assert caught.value.code == "invalid_request"


def test_malformed_receipts_are_invalid_for_nack_and_visibility_too(
    broker: QueueService, queue: str
) -> None:
    # Given receipts that are not this broker's
    bad = ["", "r1.", "r1.%%%", "x" * 5000]
    # When they are nacked and extended
    _, nack_failed = broker.nack(P, queue, bad[:3])
    _, vis_failed = broker.change_visibility(P, queue, bad[1:], 10)
    # Then each is an invalid_request entry, ids cut to a sane length
    assert [f.error for f in nack_failed + vis_failed] == ["invalid_request"] * 6
    assert all(len(f.id) <= 200 for f in vis_failed)
