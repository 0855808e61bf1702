"""What receiving from a FIFO queue reads and writes when several receivers share a process
(`mqless dev` serves every consumer from one; docs/storage-engine.md, "FIFO queues").

A FIFO receive reads the queue's segments from the floor and leases the groups' heads it
found with one conditional write per segment. Receivers of one process that read at the
same moment would choose the same heads: all but one of their writes refused (billed as
writes) and each followed by a strongly consistent read. These tests meter what such
receivers bill (`mqless_cli.billing`, as in test_costs.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.fifo_leases import FifoLeases
from mqless.domain.queues.service import QueueService
from mqless.storage.dynamo import Item, from_wire
from mqless_cli.billing import Meter, observing_moto
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS
QUEUE = "turns.fifo"


@pytest.fixture
def meter() -> Iterator[Meter]:
    found = Meter()
    with observing_moto(found):
        yield found


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
    both_looked = threading.Barrier(2, timeout=1)
    find_heads = FifoLeases._find_heads

    def find_heads_at_once(self: FifoLeases, *args: Any, **kwargs: Any) -> Any:
        heads = find_heads(self, *args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):  # the other did not look
            both_looked.wait()
        return heads

    monkeypatch.setattr(FifoLeases, "_find_heads", find_heads_at_once)
    before = meter.usage()

    # When both receive up to ten at the same moment
    def receive(_: int) -> list[Delivery]:
        return broker.receive(P, QUEUE, max_messages=10)

    with ThreadPoolExecutor(max_workers=2) as pool:
        received = [d for ds in pool.map(receive, range(2)) for d in ds]
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
