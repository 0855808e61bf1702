"""What receiving from a FIFO queue reads and writes when several receivers share a process
(`mqless dev` serves every consumer from one; docs/storage-engine.md, "FIFO queues").

A FIFO receive reads the queue's segments from the floor and leases the groups' heads it
found with one conditional write per segment. Receivers of one process that read at the
same moment would choose the same heads: all but one of their writes refused (billed as
writes) and each followed by a strongly consistent read. These tests meter what such
receivers bill (`mqless_cli.billing`, as in test_costs.py).
"""

from __future__ import annotations

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.fifo_leases import FifoLeases
from mqless.domain.queues.service import QueueService
from mqless.storage import groups
from mqless.storage.dynamo import Item, from_wire
from mqless_cli.billing import Meter
from tests.call_counts import count_calls
from tests.component.conftest import Aws
from tests.component.receivers_at_once import meet_between_look_and_claim, receive_at_once
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS
QUEUE = "turns.fifo"


def _send_ten_groups(broker: QueueService, round: int = 0) -> None:
    """Ten messages of ten groups in one batch (bodies `m<i>`, then `.<round>` after the
    first round: the dedup id is the body's hash)."""
    suffix = b".%d" % round if round else b""
    entries = [(f"e{i}", NewMessage(body=b"m%d" % i + suffix, group_id=f"g{i}")) for i in range(10)]
    done, failed = broker.send_batch(P, QUEUE, entries)
    assert (len(done), failed) == (10, [])


def _log_items(aws: Aws) -> list[Item]:
    """The queue's log items, oldest first."""
    page = aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
    found = [from_wire(i) for i in page if i["pk"]["S"].startswith(f"L#{QUEUE}#")]
    return sorted(found, key=lambda i: i["sk"])


def test_receivers_of_one_process_that_look_at_once_lose_no_claim(
    broker: QueueService, aws: Aws, meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a FIFO queue holding the heads of ten groups in one segment
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    _send_ten_groups(broker)
    # ... and two receivers of one process whose looks would overlap: each, having found
    # its heads, waits (a second at most) for the other to have found its own
    meet_between_look_and_claim(monkeypatch, FifoLeases, "_find_heads", after=True)
    before = meter.usage()

    # When both receive up to ten at the same moment
    received = receive_at_once(broker, P, QUEUE)
    used = meter.usage() - before

    # Then the ten messages are delivered once each, leased in one write (1 unit), and no
    # write was refused: the second look came after the first one's claim
    assert sorted(d.body for d in received) == sorted(b"m%d" % i for i in range(10))
    assert used.failed_conditions.get(aws.settings.messages_table, 0) == 0
    assert used.write_units.get(aws.settings.messages_table, 0) == 1


def test_indexing_a_stream_batch_larger_than_the_tail_reads_the_segments_once(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a FIFO queue whose index holds three full segments and a tail of three, the
    # last ones appended by this process's dispatch function
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    for round in range(3):
        _send_ten_groups(broker, round)
    for i in range(3):
        broker.send(P, QUEUE, NewMessage(body=b"t%d" % i, group_id=f"t{i}"))
    # ... and five messages of five groups sent, not indexed yet
    with INLINE_DISPATCH.paused():
        for i in range(5):
            broker.send(P, QUEUE, NewMessage(body=b"n%d" % i, group_id=f"n{i}"))
    logged = _log_items(aws)[-5:]
    before = meter.usage()

    # When the dispatch function indexes them as one stream batch (more than the tail holds:
    # a retried batch's references could reach back past the segment before the tail)
    INLINE_DISPATCH.index_table(aws.settings.messages_table, logged)
    used = meter.usage() - before

    # Then it reads the tail, the segment after it, and the two before it in one request
    # (strongly consistent, under 4 KB each: 4 units; it was two requests and 5 units),
    # and appends the five to the tail in one write
    assert {k: v for k, v in used.requests.items() if k.startswith("dynamodb:")} == {
        "dynamodb:BatchGetItem": 1,
        "dynamodb:UpdateItem": 1,
    }
    assert used.read_units.get(aws.settings.messages_table, 0) == 4
    assert used.write_units.get(aws.settings.messages_table, 0) == 1
    # ... and every message is still received once
    received = broker.receive(P, QUEUE, max_messages=10)
    received += broker.receive(P, QUEUE, max_messages=10)
    assert len(received) == 10 + 3 + 5


def test_a_look_reads_no_settled_segment_again_and_stops_one_past_the_end(
    broker: QueueService, aws: Aws, meter: Meter
) -> None:
    # Given a FIFO queue whose first three segments are full and every message in them
    # acked (too few for the floor to move: it moves past four, one write)
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    for round in range(3):
        _send_ten_groups(broker, round)
        done, _ = broker.ack(
            P, QUEUE, [d.receipt for d in broker.receive(P, QUEUE, max_messages=10)]
        )
        assert len(done) == 10
    # ... and a fourth holding ten groups' heads, all received and not acked yet
    _send_ten_groups(broker, 3)
    assert len(broker.receive(P, QUEUE, max_messages=10)) == 10
    before = meter.usage()

    # When a consumer receives again (every group has a message in flight)
    again = broker.receive(P, QUEUE, max_messages=10)
    used = meter.usage() - before

    # Then it gets nothing, having read in one request the fourth segment and the two after
    # it (missing: each billed as the smallest read), eventually consistent: 1.5 units.
    # It read the settled three again before, and, finding them full, eight more: two
    # requests, 12 segments, 6 units
    assert again == []
    assert {k: v for k, v in used.requests.items() if k.startswith("dynamodb:")} == {
        "dynamodb:BatchGetItem": 1
    }
    assert used.read_units.get(aws.settings.messages_table, 0) == 1.5


def _reads(meter: Meter) -> int:
    return int(meter.usage().requests.get("dynamodb:BatchGetItem", 0))


def test_a_receive_right_after_one_that_found_every_group_in_flight_reads_nothing(
    broker: QueueService, meter: Meter
) -> None:
    # Given a FIFO queue whose ten groups each have a message in flight, and a receive of
    # this process that just found no head free (reading the segments)
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    _send_ten_groups(broker)
    _send_ten_groups(broker, 1)
    assert len(broker.receive(P, QUEUE, max_messages=10)) == 10
    assert broker.receive(P, QUEUE, max_messages=10) == []
    before = _reads(meter)
    # When another receive of this process looks at once
    got = broker.receive(P, QUEUE, max_messages=10)
    # Then it finds nothing without reading the segments again
    assert got == []
    assert _reads(meter) == before


def test_a_groups_next_message_is_received_at_once_after_its_head_is_acked(
    broker: QueueService,
) -> None:
    # Given a FIFO queue whose ten groups each have a message in flight, and a receive
    # that just found no head free
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    _send_ten_groups(broker)
    _send_ten_groups(broker, 1)
    held = broker.receive(P, QUEUE, max_messages=10)
    assert broker.receive(P, QUEUE, max_messages=10) == []
    # When group g3's message is acked
    (g3,) = [d for d in held if d.group_id == "g3"]
    assert broker.ack(P, QUEUE, [g3.receipt])[0] == [g3.receipt]
    # Then the next receive gets that group's next message, with no wait
    assert [d.body for d in broker.receive(P, QUEUE, max_messages=10)] == [b"m3.1"]


def test_a_head_whose_lease_ran_out_is_received_by_a_receive_after_one_that_found_none(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO queue of one group whose head was leased for 1 s, and a receive that
    # then found no head free
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    broker.send(P, QUEUE, NewMessage(body=b"first", group_id="g"))
    assert len(broker.receive(P, QUEUE, visibility_timeout=1)) == 1
    assert broker.receive(P, QUEUE) == []
    # When its lease runs out, with no write since
    clock.advance(1.001)
    # Then the next receive gets it again
    assert [(d.body, d.receive_count) for d in broker.receive(P, QUEUE)] == [(b"first", 2)]


def test_a_message_of_a_new_group_is_received_at_once_after_a_receive_that_found_none(
    broker: QueueService,
) -> None:
    # Given a FIFO queue of one group in flight, and a receive that found no head free
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    broker.send(P, QUEUE, NewMessage(body=b"first", group_id="g"))
    assert len(broker.receive(P, QUEUE)) == 1
    assert broker.receive(P, QUEUE) == []
    # When a message of another group is sent (and indexed by this process)
    broker.send(P, QUEUE, NewMessage(body=b"other", group_id="h"))
    # Then the next receive gets it, with no wait
    assert [d.body for d in broker.receive(P, QUEUE)] == [b"other"]


def test_acking_a_fifo_receive_decodes_no_segment(
    broker: QueueService, meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ten messages of ten groups received in one request (their heads leased from
    # one segment)
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    _send_ten_groups(broker)
    received = broker.receive(P, QUEUE, max_messages=10)
    decoded = count_calls(monkeypatch, groups, "segment_from_item")
    before = meter.usage()
    # When they are acked in one request
    acked, failed = broker.ack(P, QUEUE, [d.receipt for d in received])
    # Then all ten are acked with one write, and no segment came back to be decoded: an ack
    # needs only to know that its write held (the segment's seven lists were sent back,
    # serialised and parsed on every ack)
    assert (len(acked), failed) == (10, [])
    assert (
        meter.usage().requests.get("dynamodb:UpdateItem", 0)
        - before.requests.get("dynamodb:UpdateItem", 0)
        == 1
    )
    assert decoded() == 0
