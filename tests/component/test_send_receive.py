"""Sending and receiving: what goes in comes out, batches, limits and long polls."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest, PayloadTooLarge
from mqless.domain.messages import NewMessage
from mqless.domain.models import MAX_BODY_BYTES, QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage.dynamo import Item
from mqless.storage.log import bodies_of

RawItems = Callable[[str], list[Item]]

P = ANONYMOUS


def _text(body: str, **fields: object) -> NewMessage:
    return NewMessage(body=body.encode(), **fields)


def test_a_sent_message_is_received_with_everything_the_producer_set(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a message with attributes, content type, correlation id and reply-to
    sent_at = clock.now_ms()
    result = broker.send(
        P,
        "orders",
        _text(
            '{"order": 42}',
            attributes={"tenant": "acme", "priority": "high"},
            content_type="application/json",
            correlation_id="corr-1",
            reply_to="replies",
        ),
    )
    clock.advance(2)
    # When a consumer receives it
    [delivery] = broker.receive(P, "orders")
    # Then it carries the same id, body and headers, a receipt, its first receive count and
    # the time it was sent
    assert delivery.message_id == result.message_id
    assert delivery.body == b'{"order": 42}'
    assert delivery.binary is False
    assert delivery.attributes == {"tenant": "acme", "priority": "high"}
    assert delivery.content_type == "application/json"
    assert delivery.correlation_id == "corr-1"
    assert delivery.reply_to == "replies"
    assert delivery.queue == "orders"
    assert delivery.receipt
    assert delivery.receive_count == 1
    assert delivery.sent_at == sent_at


def test_a_binary_message_comes_back_byte_for_byte(broker: QueueService) -> None:
    # Given a body that is not text
    body = bytes(range(256))
    broker.send(P, "blobs", NewMessage(body=body, binary=True))
    # When it is received
    [delivery] = broker.receive(P, "blobs")
    # Then the bytes and the binary flag are as sent
    assert delivery.body == body
    assert delivery.binary is True


def test_a_message_at_the_size_limit_is_accepted(broker: QueueService) -> None:
    # Given a body plus attributes of exactly 256 KiB
    attributes = {"k": "v" * 98}
    body = b"x" * (MAX_BODY_BYTES - 99)
    # When it is sent and received
    broker.send(P, "big", NewMessage(body=body, attributes=attributes))
    [delivery] = broker.receive(P, "big")
    # Then it arrives whole
    assert delivery.body == body


def test_a_message_over_the_size_limit_is_refused_and_not_stored(broker: QueueService) -> None:
    # Given a body of 256 KiB with one attribute on top
    message = NewMessage(body=b"x" * MAX_BODY_BYTES, attributes={"k": "v"})
    # When it is sent
    with pytest.raises(PayloadTooLarge) as caught:
        broker.send(P, "big", message)
    # Then it is refused as too large, and nothing is waiting
    assert caught.value.code == "payload_too_large"
    assert broker.receive(P, "big") == []


def test_a_dedup_id_on_a_standard_queue_is_an_invalid_request(broker: QueueService) -> None:
    # Given a standard queue
    # When a message with a dedup id is sent to it
    with pytest.raises(InvalidRequest) as caught:
        broker.send(P, "orders", _text("x", dedup_id="d1"))
    # Then the caller is told dedup ids are for FIFO queues
    assert caught.value.code == "invalid_request"
    assert "FIFO" in caught.value.message


def test_a_batch_returns_one_result_per_entry_in_order(broker: QueueService) -> None:
    # Given a batch of ten messages
    entries = [(f"e{i}", _text(f"body {i}")) for i in range(10)]
    # When it is sent
    done, failed = broker.send_batch(P, "orders", entries)
    # Then each entry has its own message id, in the order given, and all ten are received
    assert failed == []
    assert [entry_id for entry_id, _ in done] == [f"e{i}" for i in range(10)]
    ids = [result.message_id for _, result in done]
    assert len(set(ids)) == 10
    received = broker.receive(P, "orders", max_messages=10)
    assert {d.message_id: d.body for d in received} == {
        ids[i]: f"body {i}".encode() for i in range(10)
    }


def test_a_bad_entry_fails_alone_and_the_rest_are_stored(broker: QueueService) -> None:
    # Given a batch whose middle entry is too large
    entries = [
        ("small-1", _text("one")),
        ("huge", NewMessage(body=b"x" * (MAX_BODY_BYTES + 1))),
        ("small-2", _text("two")),
    ]
    # When it is sent
    done, failed = broker.send_batch(P, "orders", entries)
    # Then only that entry failed, with its reason, and the others arrive
    assert [entry_id for entry_id, _ in done] == ["small-1", "small-2"]
    assert [(f.id, f.error) for f in failed] == [("huge", "payload_too_large")]
    received = broker.receive(P, "orders", max_messages=10)
    assert sorted(d.body for d in received) == [b"one", b"two"]


@pytest.mark.parametrize("size", [0, 11])
def test_a_batch_holds_one_to_ten_entries(broker: QueueService, size: int) -> None:
    # Given a batch of the wrong size
    entries = [(str(i), _text("x")) for i in range(size)]
    # When it is sent
    with pytest.raises(InvalidRequest) as caught:
        broker.send_batch(P, "orders", entries)
    # Then it is refused whole
    assert caught.value.code == "invalid_request"


def test_batch_entry_ids_must_be_unique(broker: QueueService) -> None:
    # Given two entries with the same id
    entries = [("same", _text("a")), ("same", _text("b"))]
    # When the batch is sent
    with pytest.raises(InvalidRequest) as caught:
        broker.send_batch(P, "orders", entries)
    # Then it is refused and nothing is stored
    assert caught.value.code == "invalid_request"
    assert broker.list_queues(P) == []


def test_receiving_from_an_empty_queue_returns_nothing_at_once(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given an empty queue
    broker.put_queue(P, "orders", QueueSettings())
    start = clock.now_ms()
    # When a consumer receives without waiting
    received = broker.receive(P, "orders")
    # Then it gets nothing and did not wait
    assert received == []
    assert clock.now_ms() == start


def test_a_long_poll_on_an_empty_queue_waits_the_full_time(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given an empty queue
    broker.put_queue(P, "orders", QueueSettings())
    start = clock.now_ms()
    # When a consumer long-polls for 20 seconds
    received = broker.receive(P, "orders", wait_seconds=20)
    # Then it gets nothing after 20 seconds, not before and not much later
    assert received == []
    assert 20_000 <= clock.now_ms() - start < 21_000


def test_a_long_poll_returns_as_soon_as_a_message_becomes_visible(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a message that becomes visible in 3 seconds
    broker.send(P, "orders", _text("soon", delay_seconds=3))
    start = clock.now_ms()
    # When a consumer long-polls for 20 seconds
    [delivery] = broker.receive(P, "orders", wait_seconds=20)
    # Then it gets the message shortly after it became visible
    assert delivery.body == b"soon"
    assert 3_000 <= clock.now_ms() - start < 5_000


def test_receive_returns_at_most_max_messages(broker: QueueService) -> None:
    # Given 15 messages
    for start in (0, 10):
        broker.send_batch(
            P, "orders", [(str(i), _text(f"m{i}")) for i in range(start, min(start + 10, 15))]
        )
    # When a consumer asks for 10, then for 10 more
    first = broker.receive(P, "orders", max_messages=10)
    second = broker.receive(P, "orders", max_messages=10)
    # Then it gets 10 and then the other 5, never the same one twice
    assert len(first) == 10
    assert len(second) == 5
    bodies = {d.body for d in first} | {d.body for d in second}
    assert bodies == {f"m{i}".encode() for i in range(15)}


def test_a_leased_message_is_not_given_to_a_second_consumer(broker: QueueService) -> None:
    # Given a message received by one consumer
    broker.send(P, "orders", _text("only once"))
    broker.receive(P, "orders")
    # When another consumer receives while the lease holds
    received = broker.receive(P, "orders", max_messages=10)
    # Then it gets nothing
    assert received == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_messages": 0},
        {"max_messages": 11},
        {"wait_seconds": -1},
        {"wait_seconds": 21},
        {"visibility_timeout": -1},
        {"visibility_timeout": 12 * 3600 + 1},
    ],
    ids=lambda a: f"{next(iter(a))}={next(iter(a.values()))}",
)
def test_receive_arguments_out_of_range_are_invalid_requests(
    broker: QueueService, arguments: dict[str, int]
) -> None:
    # Given a queue with a message
    broker.send(P, "orders", _text("x"))
    # When a consumer receives with an argument out of range
    with pytest.raises(InvalidRequest) as caught:
        broker.receive(P, "orders", **arguments)  # type: ignore[arg-type]
    # Then it is refused, and the message is still there for a proper request
    assert caught.value.code == "invalid_request"
    assert len(broker.receive(P, "orders")) == 1


def test_the_queue_visibility_timeout_sets_the_lease(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue with a 10 second visibility timeout and a received message
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=10))
    broker.send(P, "orders", _text("x"))
    broker.receive(P, "orders")
    # When 9 seconds pass, and then 2 more
    clock.advance(9)
    during = broker.receive(P, "orders")
    clock.advance(2)
    after = broker.receive(P, "orders")
    # Then the message stays hidden during the lease and comes back after it
    assert during == []
    assert [d.body for d in after] == [b"x"]


def test_a_receive_may_override_the_visibility_timeout(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue with the default 30 second visibility timeout
    broker.send(P, "orders", _text("x"))
    # When a consumer receives with a 5 second lease and 6 seconds pass
    broker.receive(P, "orders", visibility_timeout=5)
    clock.advance(6)
    # Then the message is visible again, and counts its second delivery
    [again] = broker.receive(P, "orders")
    assert again.body == b"x"
    assert again.receive_count == 2


def test_messages_of_different_queues_do_not_mix(broker: QueueService) -> None:
    # Given one message in each of two queues
    broker.send(P, "a", _text("for a"))
    broker.send(P, "b", _text("for b"))
    # When each queue is received from
    from_a = broker.receive(P, "a", max_messages=10)
    from_b = broker.receive(P, "b", max_messages=10)
    # Then each gets only its own
    assert [d.body for d in from_a] == [b"for a"]
    assert [d.body for d in from_b] == [b"for b"]


def test_a_stored_message_holds_only_ciphertext(broker: QueueService, raw_items: RawItems) -> None:
    # Given a message with a recognisable body
    broker.send(P, "orders", _text("top secret payload"))
    # When the table is read directly: the queue's log, index and all
    stored = raw_items("orders")
    [item] = [i for i in stored if i["pk"].startswith("L#orders#")]
    # Then the body is not there in clear, anywhere
    assert all(b"top secret payload" not in body for body in bodies_of(item))
    assert "top secret payload" not in repr(stored)
