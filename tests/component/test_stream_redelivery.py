"""Lambda hands a stream record over at least once: the dispatch function may index a log
item again after its message was delivered and acked, and that must not bring it back.

Found by `--realism` (`stream-redelivery`) and the delivery checker
(`test_broker_under_realism.py`): a redelivered batch appended a settled message's
reference again, and the message was delivered a second time after its ack.
"""

from __future__ import annotations

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from tests.component.conftest import Aws, RawItems
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS


def _log_items(raw_items: RawItems, queue: str) -> list[dict[str, object]]:
    return [i for i in raw_items(queue) if str(i["pk"]).startswith(f"L#{queue}#")]


@pytest.mark.parametrize("queue", ["orders", "orders.fifo"])
def test_a_log_item_indexed_again_after_its_ack_does_not_bring_the_message_back(
    broker: QueueService, aws: Aws, raw_items: RawItems, queue: str
) -> None:
    # Given a message sent (indexed by the dispatch function), received and acked
    broker.put_queue(P, queue, QueueSettings(max_receive_count=None))
    broker.send(
        P, queue, NewMessage(body=b"once", group_id="g" if queue.endswith(".fifo") else None)
    )
    [delivery] = broker.receive(P, queue)
    acked, _ = broker.ack(P, queue, [delivery.receipt])
    assert acked

    # When the stream hands the dispatch function the same log item again
    INLINE_DISPATCH.index_table(aws.settings.messages_table, _log_items(raw_items, queue))

    # Then nothing is delivered again and the queue is empty
    assert broker.receive(P, queue, max_messages=10) == []
    _, counts = broker.get_queue(P, queue)
    assert (counts.visible, counts.in_flight) == (0, 0)


@pytest.mark.parametrize("queue", ["orders", "orders.fifo"])
def test_a_log_item_indexed_again_while_its_message_waits_is_delivered_once(
    broker: QueueService, aws: Aws, raw_items: RawItems, queue: str
) -> None:
    # Given a message sent and indexed, not yet received
    broker.put_queue(P, queue, QueueSettings(max_receive_count=None))
    broker.send(
        P, queue, NewMessage(body=b"once", group_id="g" if queue.endswith(".fifo") else None)
    )

    # When the stream hands its log item over again
    INLINE_DISPATCH.index_table(aws.settings.messages_table, _log_items(raw_items, queue))

    # Then it is delivered once
    [delivery] = broker.receive(P, queue, max_messages=10)
    assert delivery.body == b"once"
    assert broker.receive(P, queue, max_messages=10) == []


@pytest.mark.parametrize("queue", ["orders", "orders.fifo"])
def test_a_redelivered_batch_longer_than_the_last_segments_appends_nothing_twice(
    broker: QueueService, aws: Aws, raw_items: RawItems, queue: str
) -> None:
    # Given 40 messages in one shard (more than the last two index segments hold), each
    # indexed as it was sent, then 35 of them received and acked
    broker.put_queue(P, queue, QueueSettings(max_receive_count=None, shards=1))
    group = "g" if queue.endswith(".fifo") else None
    for n in range(40):
        broker.send(P, queue, NewMessage(body=f"m{n}".encode(), group_id=group))
    acked = set()
    for _ in range(35):
        [delivery] = broker.receive(P, queue)
        assert broker.ack(P, queue, [delivery.receipt])[0]
        acked.add(delivery.body)

    # When the stream hands the dispatch function all 40 log items again, as one batch
    INLINE_DISPATCH.index_table(aws.settings.messages_table, _log_items(raw_items, queue))

    # Then only the 5 that were never acked are delivered, each once
    bodies = []
    while batch := broker.receive(P, queue, max_messages=10):
        bodies += [d.body for d in batch]
        broker.ack(P, queue, [d.receipt for d in batch])
    assert sorted(bodies) == sorted({f"m{n}".encode() for n in range(40)} - acked)
