"""FIFO queues: order within a group, one in flight per group, and publish deduplication."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest, Throttled
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage.groups import FifoIndex
from tests.component.conftest import Aws

P = ANONYMOUS
Q = "jobs.fifo"
LEASE = 30


@pytest.fixture(autouse=True)
def queue(broker: QueueService) -> str:
    broker.put_queue(P, Q, QueueSettings(visibility_timeout=LEASE, max_receive_count=None))
    return Q


def _send(broker: QueueService, body: str, group: str = "g", **fields: object) -> str:
    return broker.send(P, Q, NewMessage(body=body.encode(), group_id=group, **fields)).message_id


def _drain(broker: QueueService) -> list[bytes]:
    """Receive and ack one message at a time until the queue is empty."""
    bodies = []
    while received := broker.receive(P, Q):
        [delivery] = received
        bodies.append(delivery.body)
        broker.ack(P, Q, [delivery.receipt])
    return bodies


def test_a_group_is_delivered_in_the_order_it_was_sent(broker: QueueService) -> None:
    # Given five messages sent to one group
    for i in range(5):
        _send(broker, f"m{i}")
    # When a consumer receives and acks them one at a time
    bodies = _drain(broker)
    # Then they come out in the order they went in
    assert bodies == [b"m0", b"m1", b"m2", b"m3", b"m4"]


def test_only_one_message_of_a_group_is_in_flight(broker: QueueService) -> None:
    # Given three messages in one group
    for i in range(3):
        _send(broker, f"m{i}")
    # When a consumer asks for ten, and another consumer asks too
    first = broker.receive(P, Q, max_messages=10)
    second = broker.receive(P, Q, max_messages=10)
    # Then only the head is delivered, and the second consumer gets nothing
    assert [d.body for d in first] == [b"m0"]
    assert second == []


def test_the_next_message_of_a_group_follows_the_ack(broker: QueueService) -> None:
    # Given a group of two whose head is in flight
    _send(broker, "m0")
    _send(broker, "m1")
    [head] = broker.receive(P, Q)
    # When the head is acked
    broker.ack(P, Q, [head.receipt])
    # Then the next message is delivered
    assert [d.body for d in broker.receive(P, Q)] == [b"m1"]


def test_different_groups_are_delivered_side_by_side(broker: QueueService) -> None:
    # Given two messages in each of three groups
    for group in ("a", "b", "c"):
        _send(broker, f"{group}0", group)
        _send(broker, f"{group}1", group)
    # When a consumer asks for ten
    received = broker.receive(P, Q, max_messages=10)
    # Then it gets the head of each group
    assert sorted(d.body for d in received) == [b"a0", b"b0", b"c0"]
    assert {d.group_id for d in received} == {"a", "b", "c"}


def test_a_group_is_not_held_up_by_another_group(broker: QueueService) -> None:
    # Given group a with its head in flight, and group b waiting
    _send(broker, "a0", "a")
    _send(broker, "a1", "a")
    broker.receive(P, Q)
    _send(broker, "b0", "b")
    # When another consumer receives
    received = broker.receive(P, Q, max_messages=10)
    # Then it gets b's message, not a's second
    assert [d.body for d in received] == [b"b0"]


def test_an_expired_lease_redelivers_the_same_head(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a group of two whose head was received and not acked
    _send(broker, "m0")
    _send(broker, "m1")
    [first] = broker.receive(P, Q)
    # When the lease runs out
    clock.advance(LEASE + 1)
    [again] = broker.receive(P, Q, max_messages=10)
    # Then the head comes again (order holds), counting a second delivery
    assert (again.message_id, again.receive_count) == (first.message_id, 2)


def test_a_nacked_head_comes_back_before_the_rest(broker: QueueService) -> None:
    # Given a group of two whose head was received
    _send(broker, "m0")
    _send(broker, "m1")
    [head] = broker.receive(P, Q)
    # When the head is nacked
    broker.nack(P, Q, [head.receipt])
    # Then it is delivered again before m1
    assert [d.body for d in broker.receive(P, Q, max_messages=10)] == [b"m0"]


def test_a_nack_delay_holds_the_whole_group(broker: QueueService, clock: ManualClock) -> None:
    # Given a group of two whose head was nacked with a 60 second delay
    _send(broker, "m0")
    _send(broker, "m1")
    [head] = broker.receive(P, Q)
    broker.nack(P, Q, [head.receipt], delay_seconds=60)
    # When a consumer receives before and after the delay
    before = broker.receive(P, Q, max_messages=10)
    clock.advance(60)
    after = broker.receive(P, Q, max_messages=10)
    # Then nothing of the group is delivered during the delay, and then the head
    assert before == []
    assert [d.body for d in after] == [b"m0"]


def test_extending_a_fifo_lease_holds_the_group(broker: QueueService, clock: ManualClock) -> None:
    # Given a group of two whose head's lease was extended to 100 seconds
    _send(broker, "m0")
    _send(broker, "m1")
    [head] = broker.receive(P, Q)
    changed, _ = broker.change_visibility(P, Q, [head.receipt], 100)
    # When the original lease would have ended
    clock.advance(LEASE + 1)
    # Then neither the head nor the next message is delivered, and the ack still works
    assert changed == [head.receipt]
    assert broker.receive(P, Q, max_messages=10) == []
    assert broker.ack(P, Q, [head.receipt]) == ([head.receipt], [])


def test_a_stale_fifo_receipt_cannot_ack_the_redelivery(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a head whose lease expired and which was delivered again
    _send(broker, "m0")
    _send(broker, "m1")
    [first] = broker.receive(P, Q)
    clock.advance(LEASE + 1)
    [second] = broker.receive(P, Q)
    # When the first consumer acks with its old receipt
    acked, failed = broker.ack(P, Q, [first.receipt])
    # Then it is stale, and the group stays with the second consumer (m1 is not released)
    assert acked == []
    assert [f.error for f in failed] == ["stale_receipt"]
    assert broker.receive(P, Q, max_messages=10) == []
    assert broker.ack(P, Q, [second.receipt]) == ([second.receipt], [])
    assert [d.body for d in broker.receive(P, Q)] == [b"m1"]


def test_a_duplicate_dedup_id_returns_the_original_id_and_is_not_stored_twice(
    broker: QueueService,
) -> None:
    # Given a message sent with dedup id "order-42"
    first = broker.send(P, Q, NewMessage(body=b"charge", group_id="g", dedup_id="order-42"))
    # When the same dedup id is sent again, even with another body
    again = broker.send(P, Q, NewMessage(body=b"charge!", group_id="g", dedup_id="order-42"))
    # Then the send succeeds with the original id, and only one message is delivered
    assert again.message_id == first.message_id
    assert (first.duplicate, again.duplicate) == (False, True)
    assert _drain(broker) == [b"charge"]


def test_a_duplicate_body_without_dedup_id_is_deduplicated_by_content(
    broker: QueueService,
) -> None:
    # Given a message sent without a dedup id
    first = _send(broker, "same body")
    # When the same body is sent again
    again = broker.send(P, Q, NewMessage(body=b"same body", group_id="g"))
    # Then it is recognised by its content hash
    assert (again.message_id, again.duplicate) == (first, True)
    assert _drain(broker) == [b"same body"]


def test_different_bodies_without_dedup_id_are_both_kept(broker: QueueService) -> None:
    # Given two different bodies sent without dedup ids
    _send(broker, "one")
    _send(broker, "two")
    # When the queue is drained
    # Then both are there, in order
    assert _drain(broker) == [b"one", b"two"]


def test_a_duplicate_is_caught_even_after_the_original_was_acked(broker: QueueService) -> None:
    # Given a message that was delivered and acked
    first = _send(broker, "once", dedup_id="d1")
    assert _drain(broker) == [b"once"]
    # When it is sent again within five minutes
    again = broker.send(P, Q, NewMessage(body=b"once", group_id="g", dedup_id="d1"))
    # Then it is still a duplicate and is not delivered again
    assert (again.message_id, again.duplicate) == (first, True)
    assert broker.receive(P, Q) == []


def test_the_dedup_window_is_five_minutes(broker: QueueService, clock: ManualClock) -> None:
    # Given a message sent with dedup id "d1" and acked
    first = _send(broker, "tick", dedup_id="d1")
    _drain(broker)
    # When the same dedup id is sent just inside and just past five minutes
    clock.advance(299)
    inside = broker.send(P, Q, NewMessage(body=b"tick", group_id="g", dedup_id="d1"))
    clock.advance(2)
    past = broker.send(P, Q, NewMessage(body=b"tick", group_id="g", dedup_id="d1"))
    # Then the first is a duplicate and the second a new message
    assert (inside.message_id, inside.duplicate) == (first, True)
    assert past.duplicate is False
    assert past.message_id != first
    assert _drain(broker) == [b"tick"]


def test_dedup_spans_groups(broker: QueueService) -> None:
    # Given a message with dedup id "d1" in group a
    first = _send(broker, "x", "a", dedup_id="d1")
    # When the same dedup id is sent to group b
    again = broker.send(P, Q, NewMessage(body=b"x", group_id="b", dedup_id="d1"))
    # Then it is a duplicate (dedup is per queue, as in SQS)
    assert (again.message_id, again.duplicate) == (first, True)


def test_a_fifo_send_needs_a_group(broker: QueueService) -> None:
    # Given a FIFO queue
    # When a message without a group is sent
    with pytest.raises(InvalidRequest) as caught:
        broker.send(P, Q, NewMessage(body=b"x"))
    # Then it is refused, naming what is missing
    assert caught.value.code == "invalid_request"
    assert "group_id" in caught.value.message


def test_sequence_numbers_grow_within_a_group(broker: QueueService) -> None:
    # Given a group
    # When three messages are sent
    results = [broker.send(P, Q, NewMessage(body=f"{i}".encode(), group_id="g")) for i in range(3)]
    # Then their sequence numbers increase
    sequences = [r.sequence for r in results]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 3


def test_a_fifo_batch_keeps_its_order_and_dedups_within_itself(broker: QueueService) -> None:
    # Given a batch for one group whose third entry repeats the first's dedup id
    entries = [
        ("a", NewMessage(body=b"m0", group_id="g", dedup_id="d0")),
        ("b", NewMessage(body=b"m1", group_id="g", dedup_id="d1")),
        ("c", NewMessage(body=b"m0 again", group_id="g", dedup_id="d0")),
        ("d", NewMessage(body=b"m2", group_id="g", dedup_id="d2")),
    ]
    # When it is sent
    done, failed = broker.send_batch(P, Q, entries)
    # Then every entry succeeds, the repeat points at the first, and the group keeps order
    assert failed == []
    results = dict(done)
    assert results["c"].message_id == results["a"].message_id
    assert results["c"].duplicate is True
    assert _drain(broker) == [b"m0", b"m1", b"m2"]


def test_a_batch_entry_without_group_fails_alone(broker: QueueService) -> None:
    # Given a FIFO batch where one entry has no group
    entries = [
        ("ok", NewMessage(body=b"fine", group_id="g")),
        ("bad", NewMessage(body=b"no group")),
    ]
    # When it is sent
    done, failed = broker.send_batch(P, Q, entries)
    # Then only that entry fails
    assert [entry_id for entry_id, _ in done] == ["ok"]
    assert [(f.id, f.error) for f in failed] == [("bad", "invalid_request")]


def test_groups_with_similar_names_do_not_mix(broker: QueueService) -> None:
    # Given groups whose names are prefixes of each other, or contain the key separator
    for group in ("a", "a#b", "a#", "ab"):
        _send(broker, f"head of {group}", group)
        _send(broker, f"tail of {group}", group)
    # When a consumer asks for ten
    received: list[Delivery] = broker.receive(P, Q, max_messages=10)
    # Then it gets exactly each group's head
    assert sorted(d.body for d in received) == sorted(
        f"head of {g}".encode() for g in ("a", "a#b", "a#", "ab")
    )


def test_a_queue_delay_holds_new_fifo_messages(broker: QueueService, clock: ManualClock) -> None:
    # Given a FIFO queue with a 10 second delay
    broker.put_queue(P, "slow.fifo", QueueSettings(delay_seconds=10, max_receive_count=None))
    broker.send(P, "slow.fifo", NewMessage(body=b"later", group_id="g"))
    # When a consumer receives before and after the delay
    before = broker.receive(P, "slow.fifo")
    clock.advance(10)
    after = broker.receive(P, "slow.fifo")
    # Then the message waits out the delay
    assert before == []
    assert [d.body for d in after] == [b"later"]


def test_an_emptied_group_can_be_used_again(broker: QueueService) -> None:
    # Given a group that was drained to empty
    _send(broker, "first")
    assert _drain(broker) == [b"first"]
    # When a new message is sent to the same group
    _send(broker, "second")
    # Then it is delivered
    assert _drain(broker) == [b"second"]


def test_a_stale_read_of_an_expired_head_still_in_flight_does_not_free_its_group(
    broker: QueueService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a group of two sent 30 s apart to a queue keeping messages 60 s, its head
    # received with a lease that outlasts its retention
    broker.put_queue(P, Q, QueueSettings(visibility_timeout=300, retention_seconds=60))
    _send(broker, "m0")
    clock.advance(30)
    _send(broker, "m1")
    shards = broker.get_queue(P, Q)[0].shards
    before_lease = FifoIndex.segments(broker._fifo, Q, shards, range(4))
    [head] = broker.receive(P, Q)
    # ... and a receiver whose eventually consistent read of the segments is from before
    # that lease (the head shown free and, once 60 s are past, expired)
    fresh = FifoIndex.segments

    def stale(self: FifoIndex, queue: str, shards: int, seqs: Any, **kw: Any) -> Any:
        return before_lease if not kw.get("consistent") else fresh(self, queue, shards, seqs, **kw)

    monkeypatch.setattr(FifoIndex, "segments", stale)
    clock.advance(31)
    # When it receives
    received = broker.receive(P, Q, max_messages=10)
    # Then the group's second message is not delivered while its head is still in flight
    assert (head.body, received) == (b"m0", [])


ONE_LOG_SHARD = QueueSettings(visibility_timeout=LEASE, max_receive_count=2, shards=1)


def test_groups_that_share_a_log_item_each_keep_their_order_and_their_group(
    broker: QueueService,
) -> None:
    # Given a FIFO queue of one log shard, sent two batches that interleave three groups
    # (each batch's bodies share one log item, whatever their groups)
    broker.put_queue(P, "shared.fifo", ONE_LOG_SHARD)
    for round in range(2):
        entries = [
            (f"e{i}", NewMessage(body=f"{group}{round}{i}".encode(), group_id=group))
            for i, group in enumerate("abcab")
        ]
        broker.send_batch(P, "shared.fifo", entries)
    # When a consumer takes everything, acking each receive
    received: list[Delivery] = []
    while batch := broker.receive(P, "shared.fifo", max_messages=10):
        received += batch
        broker.ack(P, "shared.fifo", [d.receipt for d in batch])
    # Then each group's messages come with their group, in the order sent
    assert len(received) == 10
    for group in "abc":
        bodies = [d.body.decode() for d in received if d.group_id == group]
        assert bodies == sorted(bodies, key=lambda b: (b[1], b[2]))
        assert all(body[0] == group for body in bodies)
        assert len(bodies) == (4 if group in "ab" else 2)


def test_a_dead_letter_from_a_shared_log_item_is_redriven_into_its_own_group(
    broker: QueueService,
) -> None:
    # Given a batch of two groups sharing a log item, whose group b message was nacked
    # past its limit into the dead-letter queue
    broker.put_queue(P, "poison.fifo", ONE_LOG_SHARD)
    broker.send_batch(
        P,
        "poison.fifo",
        [
            ("a", NewMessage(body=b"fine", group_id="a")),
            ("b", NewMessage(body=b"poison", group_id="b")),
        ],
    )
    for _ in range(2):
        for d in broker.receive(P, "poison.fifo", max_messages=10):
            if d.group_id == "b":
                broker.nack(P, "poison.fifo", [d.receipt])
            else:
                broker.ack(P, "poison.fifo", [d.receipt])
    assert broker.receive(P, "poison.fifo", max_messages=10) == []
    [dead] = broker.receive(P, "poison.dlq.fifo")
    assert (dead.body, dead.group_id) == (b"poison", "b")
    broker.nack(P, "poison.dlq.fifo", [dead.receipt])
    # When the dead-letter queue is redriven
    broker.redrive(P, "poison.dlq.fifo")
    # Then the message is back in its source queue, in its own group
    [back] = broker.receive(P, "poison.fifo", max_messages=10)
    assert (back.body, back.group_id) == (b"poison", "b")


def test_a_group_sent_with_changing_lifetimes_in_one_batch_keeps_its_order(
    broker: QueueService,
) -> None:
    # Given one batch of a group whose messages alternate between two lifetimes (bodies
    # of one log item share one expiry), with another group between them
    entries = [
        (f"e{i}", NewMessage(body=f"m{i}".encode(), group_id=group, ttl_seconds=ttl))
        for i, (group, ttl) in enumerate(
            [("g", 600), ("h", 600), ("g", 900), ("g", 600), ("h", 900), ("g", 900)]
        )
    ]
    # When it is sent and the group drained
    broker.send_batch(P, Q, entries)
    # Then each group comes out in the order sent
    received: list[Delivery] = []
    while batch := broker.receive(P, Q, max_messages=10):
        received += batch
        broker.ack(P, Q, [d.receipt for d in batch])
    assert [d.body for d in received if d.group_id == "g"] == [b"m0", b"m2", b"m3", b"m5"]
    assert [d.body for d in received if d.group_id == "h"] == [b"m1", b"m4"]


def test_a_batch_whose_log_write_is_throttled_can_be_sent_again_without_being_taken_for_a_copy(
    broker: QueueService, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB refusing batch writes (throttled), and a batch of three groups
    def throttled(**_: object) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "BatchWriteItem",
        )

    entries = [
        (f"e{i}", NewMessage(body=f"m{i}".encode(), group_id=group, dedup_id=f"d{i}"))
        for i, group in enumerate(["g0", "g1", "g2"])
    ]
    monkeypatch.setattr(aws.dynamodb, "batch_write_item", throttled)
    # When it is sent, fails, and is sent again once DynamoDB takes writes
    with pytest.raises(Throttled):
        broker.send_batch(P, Q, entries)
    monkeypatch.undo()
    done, failed = broker.send_batch(P, Q, entries)
    # Then the second send is accepted as new messages, and all three are delivered
    assert failed == [] and [r.duplicate for _, r in done] == [False, False, False]
    received = broker.receive(P, Q, max_messages=10)
    assert sorted(d.body for d in received) == [b"m0", b"m1", b"m2"]
