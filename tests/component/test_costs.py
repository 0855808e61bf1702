"""What each queue operation bills on AWS, metered from the requests moto serves.

The meter (`mqless_cli.billing`) bills DynamoDB as AWS does: 1 write unit (WRU) per started
KB of the larger of the item before and after a write, a write whose condition fails
billed all the same (on the existing item, at least 1), every index write billed too.
These are storage engine v2's figures (docs/storage-engine.md): a body is written once
into a log item and never rewritten; leases and acks are small conditional updates of one
index segment (a FIFO queue's too) shared by up to 10 messages; the dispatch function
indexes new log items from the stream with one segment write per stream batch and queue
shard. There is no secondary index.

The tests send on queues of one shard, so that every step reads and writes exactly one
partition; with more shards a receive may also read (never write) the shards it finds
empty. In these tests the dispatch function's indexing runs as each log item is written
(tests/inline_dispatch.py): a stream batch of one item, the dearest case. Where a step is
measured apart from its indexing, indexing is paused around it and run on its own.
"""

from __future__ import annotations

from typing import Any

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.domain.topics.subscription import SubscriptionSettings
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import Item, from_wire
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless_cli.billing import Meter, Usage
from mqless_cli.billing.dynamodb import item_size, number_size
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS
ONE_SHARD = QueueSettings(shards=1)


class Steps:
    """Usage snapshots around the steps of a scenario: `steps.take()` after each one."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._last = meter.usage()

    def take(self) -> Usage:
        now = self._meter.usage()
        step, self._last = now - self._last, now
        return step


def _writes(usage: Usage, aws: Aws) -> float:
    """Write units billed on the messages table."""
    return usage.write_units.get(aws.settings.messages_table, 0)


def _requests(usage: Usage) -> dict[str, float]:
    """DynamoDB requests to the messages table and KMS calls; reads of the destinations
    table (queue configs, subscriptions: cached per process) left out."""
    return {k: v for k, v in usage.requests.items() if k.startswith(("dynamodb:", "kms:"))}


def _log_items(aws: Aws, queue: str) -> list[Item]:
    page = aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
    found = [from_wire(i) for i in page if i["pk"]["S"].startswith(f"L#{queue}#")]
    return sorted(found, key=lambda i: i["sk"])


def _item_size(aws: Aws, item: Item) -> int:
    """The item's size as DynamoDB bills it, read back in wire format."""
    stored = aws.dynamodb.get_item(
        TableName=aws.settings.messages_table,
        Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}},
    )["Item"]
    return item_size(stored)


def _expiry_bytes(item: Item) -> int:
    """What an item's expiry (`x`) adds to its size: 1 for the name, and the number (one
    byte per two significant digits, plus one: 6 for most epoch seconds)."""
    return 1 + number_size(str(item["x"]))


def _log_items_of_topic(aws: Aws, topic: str) -> list[Item]:
    page = aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
    return [from_wire(i) for i in page if i["pk"]["S"].startswith(f"T#{topic}#")]


def _warm(broker: QueueService, queue: str, **fields: Any) -> None:
    """One message through the queue: its config cached, a data key in hand, the stack's
    secret loaded, the index's first segment and cursor read."""
    broker.put_queue(P, queue, ONE_SHARD)
    broker.send(P, queue, NewMessage(body=b"warm-up", **fields))
    [warm] = broker.receive(P, queue)
    broker.ack(P, queue, [warm.receipt])


def _warm_with_batch(broker: QueueService, queue: str) -> None:
    """A batch of ten through the queue (what `_warm` does, for batches): its segment full."""
    broker.put_queue(P, queue, ONE_SHARD)
    done, _ = broker.send_batch(
        P, queue, [(f"w{i}", NewMessage(body=b"warm-up")) for i in range(10)]
    )
    assert len(done) == 10
    warm = broker.receive(P, queue, max_messages=10)
    broker.ack(P, queue, [d.receipt for d in warm])


def test_an_acked_512_byte_message_sent_alone_bills_4_write_units(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a queue in use
    _warm(broker, "costs")
    steps = Steps(meter)

    # When one message of 512 bytes is sent, indexed (alone in its stream batch), received
    # and acked
    with INLINE_DISPATCH.paused():
        broker.send(P, "costs", NewMessage(body=b"x" * 512))
    sent = steps.take()
    [logged] = _log_items(aws, "costs")[-1:]
    steps.take()
    INLINE_DISPATCH.index_table(aws.settings.messages_table, [logged])
    indexed = steps.take()
    [delivery] = broker.receive(P, "costs")
    received = steps.take()
    broker.ack(P, "costs", [delivery.receipt])
    acked = steps.take()

    # Then the send is one put of the log item: 512 + 33 (sealing) + 49 (keys, names, data
    # key id) + 7 (expiry) = 601 bytes: 1 unit, and no KMS call (the data key is cached)
    assert _requests(sent) == {"dynamodb:PutItem": 1}
    assert (_writes(sent, aws), _item_size(aws, logged)) == (1, 594 + _expiry_bytes(logged))
    # ... indexing reads the shard's last segments and appends to the last one: 1 unit
    assert _requests(indexed) == {"dynamodb:Query": 1, "dynamodb:UpdateItem": 1}
    assert _writes(indexed, aws) == 1
    # ... the receive reads segments from the floor (its cursor cached), takes the message
    # with one conditional update of its segment (1 unit) and reads the body
    assert _requests(received) == {
        "dynamodb:Query": 1,
        "dynamodb:UpdateItem": 1,
        "dynamodb:BatchGetItem": 1,
    }
    assert _writes(received, aws) == 1
    # ... the ack is one conditional update of the same segment: 1 unit
    assert _requests(acked) == {"dynamodb:UpdateItem": 1}
    assert _writes(acked, aws) == 1
    # 1 + 1 + 1 + 1 = 4 (3 + 1/b when b messages share the index write); nothing is written
    # to an index, and no condition failed
    total = sent + indexed + received + acked
    assert (_writes(total, aws), total.index_write_units(), total.failed_conditions) == (4, 0, {})


def test_a_waiting_512_byte_message_stores_89_bytes_beside_its_body_in_its_log_item(
    broker: QueueService, aws: Aws
) -> None:
    # Given a queue of one shard
    broker.put_queue(P, "costs", ONE_SHARD)
    segment_key = {"pk": "I#costs#0", "sk": "S#0000000000"}

    # When messages of 512 bytes are sent one by one (each its own log item), and indexed
    sizes = []
    for _ in range(3):
        broker.send(P, "costs", NewMessage(body=b"x" * 512))
        sizes.append(_item_size(aws, segment_key))
    logs = [_item_size(aws, item) for item in _log_items(aws, "costs")]

    # Then each log item holds its body and about 89 bytes: 33 of sealing (version, nonce,
    # tag, header length), 49 of keys and names (`pk` L#costs#0: 11, `sk` the item id: 28,
    # `b`: 1, `k` the data key id's 8 bytes: 9), and its expiry (1 + about 6: a number is
    # billed one byte per two significant digits, plus one). A lone body is `b` itself, not a
    # list of one (4 bytes), and the key id 8 bytes, not 16 hex digits: 101 before
    expiry = _expiry_bytes(_log_items(aws, "costs")[0])
    assert logs == [512 + 82 + expiry] * 3
    # ... and each waiting reference adds about 56 bytes to the index segment: the
    # reference and its MAC (42), free-from (2), lease token (2), receive count (2), expiry
    # (1 + about 6). (Leased, it grows by 13: a lease end in ms and a token. The segment's
    # own 66 bytes are shared by its 10 references; the data key's item, 131 bytes, by up to
    # 10,000 messages.)
    assert [b - a for a, b in zip(sizes, sizes[1:], strict=False)] == [49 + expiry] * 2
    # about 89 + 56 = 145 bytes a waiting message stores beside its body


def test_a_batch_of_ten_512_byte_messages_bills_9_write_units(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a queue in use, sent batches of ten
    _warm_with_batch(broker, "batched")
    entries = [(f"e{i}", NewMessage(body=b"x" * 512)) for i in range(10)]
    steps = Steps(meter)

    # When ten messages of 512 bytes are sent in one batch (and indexed), received in one
    # request and acked in one request
    done, failed = broker.send_batch(P, "batched", entries)
    sent = steps.take()
    received = broker.receive(P, "batched", max_messages=10)
    leased = steps.take()
    broker.ack(P, "batched", [d.receipt for d in received])
    acked = steps.take()

    # Then the ten bodies share one log item: 10 x (512 + 33 + 1) + 3 + 51 + 7 = 5,521 bytes:
    # 6 units; indexing puts the ten references in a segment of their own (the last one is
    # full: it holds the ten before), under 1 KB: 1 unit
    assert (len(done), failed) == (10, [])
    assert _requests(sent) == {"dynamodb:PutItem": 2, "dynamodb:Query": 1}
    [logged] = _log_items(aws, "batched")[-1:]
    assert _item_size(aws, logged) == 5_514 + _expiry_bytes(logged)
    assert _writes(sent, aws) == 6 + 1
    # ... the ten are leased with one update of that segment, and acked with another
    assert len(received) == 10
    assert (_writes(leased, aws), _writes(acked, aws)) == (1, 1)
    assert _requests(acked) == {"dynamodb:UpdateItem": 1}
    # 9 units for ten acknowledged messages: 0.9 a message
    assert _writes(sent + leased + acked, aws) == 9


def test_a_batch_after_single_messages_closes_their_segment_once_then_batches_align(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a queue in use by single messages (its segment holds one, with room for nine)
    _warm(broker, "mixed")
    steps = Steps(meter)

    # When two batches of ten 512-byte messages are sent (and indexed), each received in one
    # request and acked in one request
    bills = []
    for round in range(2):
        entries = [(f"e{i}", NewMessage(body=b"%d" % round * 512)) for i in range(10)]
        done, _ = broker.send_batch(P, "mixed", entries)
        received = broker.receive(P, "mixed", max_messages=10)
        broker.ack(P, "mixed", [d.receipt for d in received])
        assert (len(done), len(received)) == (10, 10)
        bills.append(steps.take())

    # Then the first batch does not fit the segment's room: it is not split over two
    # segments (its lease and its ack would be two writes each) but the segment is closed
    # (1 unit) and the batch starts the next one (1): 6 + 2 + 1 + 1 = 10
    assert _writes(bills[0], aws) == 10
    # ... and from then on a batch of ten fills a segment whole: 6 + 1 + 1 + 1 = 9
    assert _writes(bills[1], aws) == 9
    assert bills[0].failed_conditions == bills[1].failed_conditions == {}


def test_a_16_kb_message_bills_its_size_once(broker: QueueService, aws: Aws, meter: Meter) -> None:
    # Given a queue in use
    _warm(broker, "big")
    steps = Steps(meter)

    # When a 16 KB body is sent (and indexed), received and acked
    broker.send(P, "big", NewMessage(body=b"x" * 16 * 1024))
    sent = steps.take()
    [delivery] = broker.receive(P, "big")
    broker.ack(P, "big", [delivery.receipt])
    settled = steps.take()

    # Then only the send bills the body: 16,384 + 33 + 47 + 7 = 16,471 bytes, 17 units;
    # indexing 1; the lease and the ack touch the small segment only: 1 each. S + 4 = 20
    assert _writes(sent, aws) == 17 + 1
    assert _writes(settled, aws) == 1 + 1


def test_a_fifo_message_bills_5_write_units(broker: QueueService, aws: Aws, meter: Meter) -> None:
    # Given a FIFO queue in use
    _warm(broker, "costs.fifo", group_id="g")
    steps = Steps(meter)

    # When one message is sent, indexed, received and acked
    with INLINE_DISPATCH.paused():
        broker.send(P, "costs.fifo", NewMessage(body=b"x" * 512, group_id="g"))
    sent = steps.take()
    [logged] = _log_items(aws, "costs.fifo")[-1:]
    steps.take()
    INLINE_DISPATCH.index_table(aws.settings.messages_table, [logged])
    indexed = steps.take()
    [delivery] = broker.receive(P, "costs.fifo")
    received = steps.take()
    broker.ack(P, "costs.fifo", [delivery.receipt])
    acked = steps.take()

    # Then the send claims its dedup record (a conditional put: 1 unit) and puts its log
    # item (1 unit)
    assert _requests(sent) == {"dynamodb:PutItem": 2}
    assert _writes(sent, aws) == 2
    # ... indexing reads the queue's tail segment and appends the reference to it (1 unit)
    assert _requests(indexed) == {"dynamodb:BatchGetItem": 1, "dynamodb:UpdateItem": 1}
    assert _writes(indexed, aws) == 1
    # ... the receive reads the segments from the floor, leases the group's head (1 unit),
    # reads the body
    assert _requests(received) == {"dynamodb:BatchGetItem": 2, "dynamodb:UpdateItem": 1}
    assert _writes(received, aws) == 1
    # ... the ack settles it in its segment, no read first (1 unit)
    assert _requests(acked) == {"dynamodb:UpdateItem": 1}
    assert _writes(acked, aws) == 1
    # 2 + 1 + 1 + 1 = 5, no transaction (which bills every item twice)
    assert _writes(sent + indexed + received + acked, aws) == 5


def test_a_fifo_batch_of_ten_groups_bills_under_2_5_write_units_a_message(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    queue = "batches.fifo"

    def send_batch(round: int) -> tuple[Usage, Usage]:
        """Ten 512-byte messages of ten groups sent in one request, then indexed as one
        stream batch: what the send and the indexing billed."""
        entries = [
            (f"e{i}", NewMessage(body=b"%d.%d." % (round, i) * 128, group_id=f"g{i}"))
            for i in range(10)
        ]
        before = {i["sk"] for i in _log_items(aws, queue)}
        steps.take()
        with INLINE_DISPATCH.paused():
            done, failed = broker.send_batch(P, queue, entries)
        assert (len(done), failed) == (10, [])
        sent = steps.take()
        logged = [i for i in _log_items(aws, queue) if i["sk"] not in before]
        steps.take()
        INLINE_DISPATCH.index_table(aws.settings.messages_table, logged)
        return sent, steps.take()

    # Given a FIFO queue in use, sent batches of ten groups before
    _warm(broker, queue, group_id="g0")
    steps = Steps(meter)
    send_batch(0)
    broker.ack(P, queue, [d.receipt for d in broker.receive(P, queue, max_messages=10)])
    steps.take()

    # When ten more are sent in one batch and indexed, received in one request and acked
    # in one request
    sent, indexed = send_batch(1)
    received = broker.receive(P, queue, max_messages=10)
    leased = steps.take()
    broker.ack(P, queue, [d.receipt for d in received])
    acked = steps.take()

    # Then each message claims its dedup record (1 unit each: 10) and the ten groups, in
    # the queue's one log shard, share one log item (6 units of ~700 bytes, not ten items
    # of one unit each); their references share one segment: indexing them is one write,
    # leasing all ten groups' heads one write, acking them one write
    assert _writes(sent, aws) == 16
    assert _writes(indexed, aws) == 1
    assert sorted(d.group_id or "" for d in received) == sorted(f"g{i}" for i in range(10))
    assert (_writes(leased, aws), _writes(acked, aws)) == (1, 1)
    # 19 units for ten acknowledged messages: 1.9 a message
    assert _writes(sent + indexed + leased + acked, aws) == 19


def test_a_fifo_batch_of_ten_groups_over_ten_log_shards_writes_its_items_in_one_request(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a FIFO queue of 16 shards in use, whose groups g0-g9 fall in ten log shards
    queue = "spread.fifo"
    broker.put_queue(P, queue, QueueSettings(shards=16))
    broker.send(P, queue, NewMessage(body=b"warm-up", group_id="g0"))
    steps = Steps(meter)
    steps.take()

    # When ten 512-byte messages of the ten groups are sent in one batch
    entries = [(f"e{i}", NewMessage(body=b"1.%d." % i * 128, group_id=f"g{i}")) for i in range(10)]
    with INLINE_DISPATCH.paused():
        done, failed = broker.send_batch(P, queue, entries)
    sent = steps.take()

    # Then each message claims its dedup record (a conditional put each) and the ten log
    # items are written with one BatchWriteItem, billed as ten puts: 20 units
    assert (len(done), failed) == (10, [])
    assert _requests(sent) == {"dynamodb:PutItem": 10, "dynamodb:BatchWriteItem": 1}
    assert _writes(sent, aws) == 20


def test_fifo_stream_batches_of_six_groups_are_indexed_with_one_write_each(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    queue = "sixes.fifo"

    def index_six(round: int) -> Usage:
        """Six 512-byte messages of six groups sent in one request, then indexed as one
        stream batch (`mqless dev`'s stream batches hold ~5): what the indexing billed."""
        entries = [
            (f"e{i}", NewMessage(body=b"%d.%d." % (round, i) * 128, group_id=f"g{i}"))
            for i in range(6)
        ]
        before = {i["sk"] for i in _log_items(aws, queue)}
        with INLINE_DISPATCH.paused():
            done, failed = broker.send_batch(P, queue, entries)
        assert (len(done), failed) == (6, [])
        logged = [i for i in _log_items(aws, queue) if i["sk"] not in before]
        steps.take()
        INLINE_DISPATCH.index_table(aws.settings.messages_table, logged)
        return steps.take()

    # Given a FIFO queue in use (its segment holds one message, with room for nine)
    _warm(broker, queue, group_id="g0")
    steps = Steps(meter)

    # When three batches of six groups are sent, each indexed as one stream batch
    indexed = [index_six(round) for round in range(3)]

    # Then each is indexed with one write: the first fills the segment to seven and, its
    # room (3) being less than the batch, closes it in the same write; the next two each
    # start a segment, closed when made (room 4). A segment was closed in a write of its
    # own when the next batch did not fit: 1, 2, 2
    assert [_writes(used, aws) for used in indexed] == [1, 1, 1]
    assert all(used.failed_conditions == {} for used in indexed)
    # ... and all eighteen are received, each group in order
    received: list[Delivery] = []
    for _ in range(6):
        batch = broker.receive(P, queue, max_messages=10)
        if batch:
            broker.ack(P, queue, [d.receipt for d in batch])
        received += batch
    assert len(received) == 18
    for group in range(6):
        bodies = [d.body for d in received if d.group_id == f"g{group}"]
        assert bodies == [b"%d.%d." % (round, group) * 128 for round in range(3)]


def test_a_duplicate_fifo_send_bills_one_failed_condition_and_writes_no_body(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a FIFO message sent with a dedup id
    _warm(broker, "dedup.fifo", group_id="g")
    first = broker.send(P, "dedup.fifo", NewMessage(body=b"pay", group_id="g", dedup_id="p-1"))
    steps = Steps(meter)

    # When it is sent again within the dedup window
    again = broker.send(P, "dedup.fifo", NewMessage(body=b"pay", group_id="g", dedup_id="p-1"))
    duplicate = steps.take()

    # Then it answers the first id, having billed the refused conditional put of the dedup
    # record (its existing item is under 1 KB: 1 unit) and one read of that record; no log
    # item, no index write
    assert (again.duplicate, again.message_id) == (True, first.message_id)
    assert _requests(duplicate) == {"dynamodb:PutItem": 1, "dynamodb:GetItem": 1}
    assert (_writes(duplicate, aws), duplicate.failed_conditions) == (
        1,
        {aws.settings.messages_table: 1},
    )


def test_a_stale_ack_changes_nothing_and_bills_one_write_unit(
    broker: QueueService, aws: Aws, meter: Meter, clock: ManualClock
) -> None:
    # Given a message whose first lease ran out and which was leased again
    _warm(broker, "stale")
    broker.send(P, "stale", NewMessage(body=b"m"))
    [first] = broker.receive(P, "stale", visibility_timeout=10)
    clock.advance(11)
    [second] = broker.receive(P, "stale", visibility_timeout=10)
    steps = Steps(meter)

    # When the first consumer acks with its old receipt
    done, failed = broker.ack(P, "stale", [first.receipt])
    stale = steps.take()

    # Then nothing is acked, and the refused conditional update bills the segment (1 unit)
    assert (done, [f.error for f in failed]) == ([], ["stale_receipt"])
    assert _requests(stale) == {"dynamodb:UpdateItem": 1}
    assert (_writes(stale, aws), stale.failed_conditions) == (1, {aws.settings.messages_table: 1})
    # (and the second lease still holds it)
    assert broker.ack(P, "stale", [second.receipt])[0] == [second.receipt]


def test_an_ack_carried_by_the_next_receive_bills_one_write_with_its_lease(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a lone consumer holding the first of two messages that share a segment
    _warm(broker, "next")
    broker.send(P, "next", NewMessage(body=b"x" * 512))
    broker.send(P, "next", NewMessage(body=b"y" * 512))
    [first] = broker.receive(P, "next")
    steps = Steps(meter)

    # When it acks the first in the receive that takes the next ("ack and take the next")
    result = broker.ack_and_receive(P, "next", [first.receipt])
    both = steps.take()

    # Then the first is acked and the second leased, in one conditional update (1 unit)
    # where an ack and a receive bill two
    assert (result.acked, result.failed) == ([first.receipt], [])
    assert [m.body for m in result.messages] == [({b"x" * 512, b"y" * 512} - {first.body}).pop()]
    assert _writes(both, aws) == 1
    assert _requests(both) == {
        "dynamodb:Query": 1,
        "dynamodb:UpdateItem": 1,
        "dynamodb:BatchGetItem": 1,
    }
    assert broker.get_queue(P, "next")[1].in_flight == 1


def test_a_fifo_ack_carried_by_the_next_receive_of_another_group_bills_one_write(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a lone consumer of a FIFO queue holding group a's message, group b's message
    # in the same segment (one per request, as bench/cost.py's FIFO row sends them)
    _warm(broker, "next.fifo", group_id="g")
    broker.send(P, "next.fifo", NewMessage(body=b"a" * 512, group_id="a"))
    broker.send(P, "next.fifo", NewMessage(body=b"b" * 512, group_id="b"))
    [first] = broker.receive(P, "next.fifo", oldest_first=True)
    assert first.group_id == "a"
    steps = Steps(meter)

    # When it acks a's message in the receive that takes the next
    result = broker.ack_and_receive(P, "next.fifo", [first.receipt])
    both = steps.take()

    # Then a's message is acked and b's leased in one conditional update of their segment
    # (1 unit), where an ack written before the receive bills two
    assert (result.acked, result.failed) == ([first.receipt], [])
    assert [m.body for m in result.messages] == [b"b" * 512]
    assert _writes(both, aws) == 1
    assert _requests(both)["dynamodb:UpdateItem"] == 1


def test_an_ack_carried_by_a_receive_from_another_segment_bills_two_writes(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a lone consumer holding the last message of a full segment, the next message
    # in the segment after it
    _warm_with_batch(broker, "apart")
    done, _ = broker.send_batch(
        P, "apart", [(f"m{i}", NewMessage(body=b"x" * 100)) for i in range(10)]
    )
    held = broker.receive(P, "apart", max_messages=10)
    broker.ack(P, "apart", [d.receipt for d in held[:-1]])
    # (sent once the first segment's ten are held: a receive of ten from two segments with
    # messages takes from either, so the order of the test's steps must not leave it a choice)
    broker.send(P, "apart", NewMessage(body=b"next"))
    steps = Steps(meter)

    # When it acks the last with the receive that takes the next
    result = broker.ack_and_receive(P, "apart", [held[-1].receipt])
    apart = steps.take()

    # Then both happen, as two writes: the lease in one segment, the ack in the other
    assert result.acked == [held[-1].receipt]
    assert [m.body for m in result.messages] == [b"next"]
    assert _writes(apart, aws) == 2
    assert apart.failed_conditions == {}


def _topic_process(aws: Aws, clock: ManualClock) -> TopicService:
    """Topics in a function instance (and data-key cache) of their own."""
    return assembly.topic_service_over(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        clock=clock,
    )


def test_a_published_batch_bills_its_bodies_once_and_each_subscriber_3_write_units(
    broker: QueueService, aws: Aws, meter: Meter, clock: ManualClock
) -> None:
    # Given three durable subscriptions to a topic, each with a queue in use, published to
    # in batches of ten
    topics = _topic_process(aws, clock)
    subscribers = ("red", "green", "blue")
    for queue in subscribers:
        _warm_with_batch(broker, queue)
        topics.subscribe(P, "paint.>", queue, SubscriptionSettings(queue=queue))
    entries = [(f"e{i}", NewMessage(body=b"x" * 512)) for i in range(10)]
    warm_up = [(f"w{i}", NewMessage(body=b"warm-up")) for i in range(10)]
    topics.publish_batch(P, "paint.red", warm_up)
    [warm_item] = [str(i["sk"]) for i in _log_items_of_topic(aws, "paint.red")]
    for queue in subscribers:
        warm = broker.receive(P, queue, max_messages=10)
        broker.ack(P, queue, [d.receipt for d in warm])
    steps = Steps(meter)

    # When ten messages of 512 bytes are published in one batch (and indexed), then each
    # subscriber receives and acks them, ten at a time
    with INLINE_DISPATCH.paused():
        done, _ = topics.publish_batch(P, "paint.red", entries)
    published = steps.take()
    [logged] = [i for i in _log_items_of_topic(aws, "paint.red") if i["sk"] > warm_item]
    steps.take()
    INLINE_DISPATCH.index_table(aws.settings.messages_table, [logged])
    indexed = steps.take()
    per_subscriber = []
    for queue in subscribers:
        received = broker.receive(P, queue, max_messages=10)
        broker.ack(P, queue, [d.receipt for d in received])
        assert len(received) == 10
        per_subscriber.append(_writes(steps.take(), aws))

    # Then the publish is one log item whatever the number of subscriptions: 6 units
    assert len(done) == 10
    assert (_requests(published), _writes(published, aws)) == ({"dynamodb:PutItem": 1}, 6)
    # ... indexing appends one segment write per subscription's queue: 1 unit each
    assert _writes(indexed, aws) == len(subscribers)
    # ... and each subscriber leases and acks the ten with one update each: per message
    # and subscriber (1 + 1 + 1) / 10 = 0.3
    assert per_subscriber == [2, 2, 2]


def test_a_thousand_sends_cost_one_data_key(broker: QueueService, meter: Meter) -> None:
    # Given a fresh function instance (no data key yet)
    # When a thousand messages are sent to one queue (their indexing is the dispatch
    # function's, another instance: paused here)
    with INLINE_DISPATCH.paused():
        for i in range(1000):
            broker.send(P, "many", NewMessage(body=str(i).encode()))

    # Then KMS was asked for one data key in all: 0.001 calls per message
    assert meter.usage().count("kms") == 1
    assert meter.usage().count("kms", "GenerateDataKey") == 1


def test_no_move_costs_a_kms_call_per_message(
    broker: QueueService, aws: Aws, clock: ManualClock, meter: Meter
) -> None:
    # Given 50 messages published by one function instance to a topic with two durable
    # subscriptions, whose queues dead-letter a message after one delivery
    for queue in ("red", "blue"):
        broker.put_queue(P, queue, QueueSettings(visibility_timeout=10, max_receive_count=1))
    publisher = _topic_process(aws, clock)
    publisher.subscribe(P, "paint.>", "red", SubscriptionSettings(queue="red"))
    publisher.subscribe(P, "paint.blue", "blue", SubscriptionSettings(queue="blue"))
    steps = Steps(meter)
    for i in range(50):
        topic = "paint.blue" if i < 10 else "paint.red"
        publisher.publish(P, topic, NewMessage(body=f"m{i}".encode()))
    publishing = steps.take()

    # When the broker's instance delivers blue's ten, dead-letters them, redrives them,
    # delivers them again and moves them to another queue, where they are delivered
    assert len(broker.receive(P, "blue", max_messages=10)) == 10
    clock.advance(11)
    assert broker.sweep().dead_lettered == 10
    assert broker.redrive(P, "blue.dlq").moved == 10
    back = broker.receive(P, "blue", max_messages=10)
    for delivery in back:
        broker.move_message(P, "blue", delivery.message_id, to="archive")
    assert len(broker.receive(P, "archive", max_messages=10)) == 10
    moving = steps.take()

    # Then KMS saw calls per data key and per instance, never per message: the publisher
    # made one data key per topic; the dispatch function made the stack's secret (it signs
    # the references it indexes: the first use in this stack) and opened each topic's key
    # once (to read the attributes subscriptions filter on)
    assert (publishing.count("kms", "GenerateDataKey"), publishing.count("kms", "Decrypt")) == (
        2 + 1,
        2,
    )
    # ... and forty moves of ten messages cost the broker's instance two calls: the stack's
    # secret (receipts, references) and blue's topic key, opened once. Nothing is sealed
    # again: every move writes a reference to the one body the publish wrote
    assert (moving.count("kms", "GenerateDataKey"), moving.count("kms", "Decrypt")) == (0, 2)
