"""Receivers of one process waiting on an idle standard queue share what they found empty.

A shard that a look read to its end with nothing free in it is not read again by a look
of this process that began after it, until something may be free there: this process
appended to it or released a lease in it, or a lease or delay the look saw ran out. A lone
receiver's own looks are a poll pause apart, so it reads every shard at each of them as
before; N receivers polling one idle queue in one process (`mqless dev`, a WebSocket
function's pumps) read each shard about once per pause, not N times.
"""

from __future__ import annotations

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage import index
from mqless_cli.billing import Meter

P = ANONYMOUS
QUEUE = "idle"
SHARDS = 8


@pytest.fixture
def queue(broker: QueueService) -> str:
    broker.put_queue(P, QUEUE, QueueSettings(shards=SHARDS, visibility_timeout=60))
    return QUEUE


def queries(meter: Meter) -> int:
    return int(meter.usage().requests.get("dynamodb:Query", 0))


def test_a_receive_right_after_one_that_found_every_shard_empty_reads_no_shard(
    broker: QueueService, queue: str, meter: Meter
) -> None:
    # Given an idle queue of 8 shards that one receive just found empty (reading each)
    assert broker.receive(P, queue, max_messages=10) == []
    before = queries(meter)
    # When another receive of this process looks at once
    got = broker.receive(P, queue, max_messages=10)
    # Then it finds nothing without reading any shard again (it read all 8 before)
    assert got == []
    assert queries(meter) == before


def test_a_message_sent_after_every_shard_was_found_empty_is_received_at_once(
    broker: QueueService, queue: str
) -> None:
    # Given an idle queue of 8 shards that a receive just found empty
    assert broker.receive(P, queue) == []
    # When a message is sent (and indexed by this process's dispatch function)
    sent = broker.send(P, queue, NewMessage(body=b"late")).message_id
    # Then the next receive gets it, with no wait
    assert [d.message_id for d in broker.receive(P, queue)] == [sent]


def test_a_message_whose_lease_ran_out_is_received_by_a_receive_that_found_its_shard_empty(
    broker: QueueService, queue: str, clock: ManualClock
) -> None:
    # Given a message leased for 1 s, and a receive that then found every shard empty
    sent = broker.send(P, queue, NewMessage(body=b"again")).message_id
    assert len(broker.receive(P, queue, visibility_timeout=1)) == 1
    assert broker.receive(P, queue) == []
    # When its lease runs out, with no write since
    clock.advance(1.001)
    # Then the next receive gets it again
    got = broker.receive(P, queue)
    assert [(d.message_id, d.receive_count) for d in got] == [(sent, 2)]


def test_a_message_another_process_indexed_is_received_within_a_long_polls_first_pause(
    broker: QueueService, queue: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an idle queue that a receive just found empty, and a message indexed by
    # another process (this one learns of no write)
    assert broker.receive(P, queue) == []
    with monkeypatch.context() as elsewhere:
        elsewhere.setattr(index.FREEINGS, "wrote", lambda queue, shard: None)
        sent = broker.send(P, queue, NewMessage(body=b"from afar")).message_id
    started = clock.now_ms()
    # When a receive long-polls for it
    got = broker.receive(P, queue, wait_seconds=5)
    # Then it gets it by its second look, one pause (50 ms) after its first
    assert [d.message_id for d in got] == [sent]
    assert clock.now_ms() - started <= 50


def test_a_message_a_selector_passed_over_is_received_at_once_by_a_plain_receive(
    broker: QueueService, queue: str
) -> None:
    # Given a blue message, and a consumer selecting red ones that just looked and took none
    sent = broker.send(P, queue, NewMessage(body=b"b", attributes={"color": "blue"})).message_id
    assert broker.receive(P, queue, selector="color = 'red'") == []
    # When a receive of this process without a selector looks at once
    got = broker.receive(P, queue)
    # Then it gets the blue message (its shard was not taken for empty)
    assert [d.message_id for d in got] == [sent]
