"""Time limits on messages: per-message TTL, queue retention, and delivery delay."""

from __future__ import annotations

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService

P = ANONYMOUS


def test_a_message_is_delivered_within_its_ttl(broker: QueueService, clock: ManualClock) -> None:
    # Given a message with a 60 second TTL
    broker.send(P, "orders", NewMessage(body=b"fresh", ttl_seconds=60))
    # When it is received 58 seconds later
    clock.advance(58)
    received = broker.receive(P, "orders")
    # Then it is delivered
    assert [d.body for d in received] == [b"fresh"]


def test_a_message_past_its_ttl_is_never_delivered(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a message with a 60 second TTL
    broker.send(P, "orders", NewMessage(body=b"stale", ttl_seconds=60))
    # When a consumer receives after 61 seconds
    clock.advance(61)
    received = broker.receive(P, "orders")
    # Then nothing is delivered and the message is gone, not dead-lettered
    assert received == []
    assert broker.get_queue(P, "orders")[1].visible == 0
    assert broker.receive(P, "orders.dlq") == []


def test_a_message_expires_while_waiting_to_be_redelivered(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a message with a 60 second TTL, received once and not acked
    broker.send(P, "orders", NewMessage(body=b"once", ttl_seconds=60))
    broker.receive(P, "orders", visibility_timeout=50)
    # When its lease ends after its TTL has passed
    clock.advance(61)
    received = broker.receive(P, "orders")
    # Then it is not delivered again
    assert received == []


def test_expired_messages_do_not_hide_live_ones(broker: QueueService, clock: ManualClock) -> None:
    # Given five expired messages ahead of a live one
    for i in range(5):
        broker.send(P, "orders", NewMessage(body=f"old {i}".encode(), ttl_seconds=10))
    clock.advance(11)
    broker.send(P, "orders", NewMessage(body=b"live"))
    # When a consumer asks for one message
    received = broker.receive(P, "orders")
    # Then it gets the live one in that same call
    assert [d.body for d in received] == [b"live"]


def test_queue_retention_bounds_every_message(broker: QueueService, clock: ManualClock) -> None:
    # Given a queue keeping messages for 60 seconds, and a message asking for an hour
    broker.put_queue(P, "orders", QueueSettings(retention_seconds=60))
    broker.send(P, "orders", NewMessage(body=b"kept briefly", ttl_seconds=3600))
    # When a consumer receives after 61 seconds
    clock.advance(61)
    # Then the queue's retention won
    assert broker.receive(P, "orders") == []


def test_a_short_ttl_wins_over_a_long_retention(broker: QueueService, clock: ManualClock) -> None:
    # Given a queue with the default four-day retention and a message with a 5 second TTL
    broker.send(P, "orders", NewMessage(body=b"short-lived", ttl_seconds=5))
    # When a consumer receives after 6 seconds
    clock.advance(6)
    # Then the message's TTL won
    assert broker.receive(P, "orders") == []


def test_an_expired_fifo_head_gives_way_to_the_next_in_its_group(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO group whose head has a 10 second TTL and whose second message has none
    broker.send(P, "jobs.fifo", NewMessage(body=b"short", group_id="g", ttl_seconds=10))
    broker.send(P, "jobs.fifo", NewMessage(body=b"long", group_id="g"))
    # When a consumer receives after 11 seconds
    clock.advance(11)
    received = broker.receive(P, "jobs.fifo", max_messages=10)
    # Then the expired head is skipped and the next message is delivered
    assert [d.body for d in received] == [b"long"]


def test_a_delayed_message_waits_out_its_delay(broker: QueueService, clock: ManualClock) -> None:
    # Given a message sent with a 30 second delay
    broker.send(P, "orders", NewMessage(body=b"later", delay_seconds=30))
    # When a consumer receives at 29 and at 30 seconds
    clock.advance(29)
    early = broker.receive(P, "orders")
    clock.advance(1)
    on_time = broker.receive(P, "orders")
    # Then it is hidden until the delay has passed
    assert early == []
    assert [d.body for d in on_time] == [b"later"]


def test_a_delayed_message_is_counted_as_delayed(broker: QueueService) -> None:
    # Given a message sent with a delay
    broker.send(P, "orders", NewMessage(body=b"later", delay_seconds=30))
    # When the queue is inspected
    counts = broker.get_queue(P, "orders")[1]
    # Then it is delayed, neither visible nor in flight
    assert (counts.visible, counts.in_flight, counts.delayed) == (0, 0, 1)


def test_a_queue_delay_applies_to_messages_that_set_none(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue with a 20 second delay
    broker.put_queue(P, "orders", QueueSettings(delay_seconds=20))
    broker.send(P, "orders", NewMessage(body=b"queued"))
    # When a consumer receives at 19 and at 20 seconds
    clock.advance(19)
    early = broker.receive(P, "orders")
    clock.advance(1)
    # Then the queue's delay held it
    assert early == []
    assert [d.body for d in broker.receive(P, "orders")] == [b"queued"]


def test_a_message_delay_of_zero_overrides_the_queue_delay(broker: QueueService) -> None:
    # Given a queue with a 20 second delay
    broker.put_queue(P, "orders", QueueSettings(delay_seconds=20))
    # When a message is sent with delay_seconds 0
    broker.send(P, "orders", NewMessage(body=b"now", delay_seconds=0))
    # Then it can be received at once
    assert [d.body for d in broker.receive(P, "orders")] == [b"now"]


def test_a_delayed_fifo_message_holds_its_group_but_not_others(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given group a whose only message is delayed 30 seconds, and group b ready
    broker.send(P, "jobs.fifo", NewMessage(body=b"a0", group_id="a", delay_seconds=30))
    broker.send(P, "jobs.fifo", NewMessage(body=b"b0", group_id="b"))
    # When a consumer receives (and acks) now, and receives again after the delay
    now = broker.receive(P, "jobs.fifo", max_messages=10)
    broker.ack(P, "jobs.fifo", [d.receipt for d in now])
    clock.advance(30)
    later = broker.receive(P, "jobs.fifo", max_messages=10)
    # Then b goes now and a after its delay
    assert [d.body for d in now] == [b"b0"]
    assert [d.body for d in later] == [b"a0"]
