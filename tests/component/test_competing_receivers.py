"""Competing receivers on one standard queue: after a lost race, tickets instead of guesses.

Each receiver is its own QueueService (its own process on AWS, its own caches). A receiver
that lost a race, or that sees in the shard's cursor that another took a ticket lately,
takes positions from the shard's ticket dispenser (one write that cannot fail) and leases
what is free there; a receiver that never competes never takes a ticket. A stale read is
staged by freezing what a receiver's eventually consistent segment reads answer (as
DynamoDB's may, moto's never do).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage import keys
from mqless.storage.destinations import QueueRegistry
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless_cli.billing import Meter
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS
QUEUE = "work"


@pytest.fixture
def receivers(aws: Aws, clock: ManualClock) -> list[QueueService]:
    """Four receivers, each its own QueueService over the same tables and clock."""
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
        for _ in range(4)
    ]
    made[0].put_queue(P, QUEUE, QueueSettings(shards=1, visibility_timeout=60))
    return made


@contextmanager
def stale_reads(receiver: QueueService, *, consistent_too: bool = False) -> Iterator[None]:
    """While the block runs, the receiver's eventually consistent reads of the queue's
    segments (and its strongly consistent queries of them, if `consistent_too`: a write
    that lands between its read and its own write) answer with the segments as they are
    when the block starts."""
    index = receiver.leases._index
    frozen = index.segments(QUEUE, 0, 0, limit=16)
    real = index.segments

    def segments(queue: str, shard: int, start: int = 0, **options: Any) -> list[Any]:
        if options.get("consistent") and not consistent_too:
            return real(queue, shard, start, **options)
        return [s for s in frozen if s.seq >= start][: options.get("limit", 4)]

    index.segments = segments  # type: ignore[method-assign]
    try:
        yield
    finally:
        del index.segments


def send(broker: QueueService, body: str) -> str:
    return broker.send(P, QUEUE, NewMessage(body=body.encode())).message_id


def b_loses_a_race(a: QueueService, b: QueueService) -> list[Delivery]:
    """Messages x and y sent; a leases x while b, reading stale, loses the race for it and
    takes y by ticket: from now on the queue's receivers race. What a and b leased."""
    send(a, "x")
    with stale_reads(b):
        send(a, "y")
        return a.receive(P, QUEUE, oldest_first=True) + b.receive(P, QUEUE)


def failed_writes(meter: Meter) -> int:
    return int(sum(meter.usage().failed_conditions.values()))


def test_a_receiver_that_loses_a_race_gets_another_free_message_in_the_same_receive(
    receivers: list[QueueService], meter: Meter
) -> None:
    # Given a message x, a receiver b whose reads still show x free after a leased it,
    # and a second message y
    a, b = receivers[:2]
    x = send(a, "x")
    with stale_reads(b):
        y = send(a, "y")
        assert [d.message_id for d in a.receive(P, QUEUE, oldest_first=True)] == [x]
        # When b receives one message
        got = b.receive(P, QUEUE)
    # Then b lost the race for x once, and got y by ticket in the same receive
    assert [d.message_id for d in got] == [y]
    assert failed_writes(meter) == 1


def test_once_receivers_race_a_stale_read_costs_no_failed_write(
    receivers: list[QueueService], meter: Meter
) -> None:
    # Given receivers that race (b lost a race, as above)
    a, b, c, d = receivers
    x = send(a, "x")
    with stale_reads(b):
        send(a, "y")
        a.receive(P, QUEUE, oldest_first=True)
        b.receive(P, QUEUE)
    before = failed_writes(meter)
    # When a message z is sent, c and d both read it free, and both receive
    z = send(a, "z")
    with stale_reads(c), stale_reads(d):
        got_c = c.receive(P, QUEUE)
        got_d = d.receive(P, QUEUE)
    # Then one of them got z, the other nothing, and no conditional write failed
    assert sorted(m.message_id for m in got_c + got_d) == [z]
    assert failed_writes(meter) == before
    assert x != z


def test_messages_sent_after_racing_receivers_ran_past_the_last_one_are_received(
    receivers: list[QueueService], clock: ManualClock
) -> None:
    # Given racing receivers whose stale reads made them take tickets past the last message
    a, b, c, _ = receivers
    b_loses_a_race(a, b)
    with stale_reads(c):
        assert c.receive(P, QUEUE) == []
    with stale_reads(b):
        assert b.receive(P, QUEUE) == []
    # When new messages are sent while they still race
    clock.advance(1)
    later = {send(a, f"later-{i}") for i in range(3)}
    # Then the racing receivers receive every one of them
    got = [m.message_id for r in (b, c, b) for m in r.receive(P, QUEUE)]
    assert sorted(got) == sorted(later)


def test_a_nacked_message_behind_the_dispenser_is_received_again_while_receivers_race(
    receivers: list[QueueService],
) -> None:
    # Given racing receivers, and a message b leased by ticket and nacked
    a, b, _, _ = receivers
    send(a, "x")
    with stale_reads(b):
        y = send(a, "y")
        a.receive(P, QUEUE, oldest_first=True)
        (leased,) = b.receive(P, QUEUE)
    assert leased.message_id == y
    b.nack(P, QUEUE, [leased.receipt])
    # When b receives again
    again = b.receive(P, QUEUE)
    # Then the nacked message comes back, its receive count counting both deliveries
    assert [(m.message_id, m.receive_count) for m in again] == [(y, 2)]


def test_a_lone_receiver_never_takes_a_ticket(
    receivers: list[QueueService], raw_items: Any
) -> None:
    # Given one receiver alone on a queue
    broker = receivers[0]
    sent = {send(broker, f"m{i}") for i in range(15)}
    # When it receives and acks every message
    got = set()
    while found := broker.receive(P, QUEUE, max_messages=4):
        got.update(m.message_id for m in found)
        broker.ack(P, QUEUE, [m.receipt for m in found])
    # Then it got them all, and the shard's dispenser was never written (no ticket billed)
    assert got == sent
    cursor = [i for i in raw_items(QUEUE) if i["sk"] == keys.CURSOR]
    assert all("d" not in i and "k" not in i for i in cursor)


def test_a_ticket_holder_that_lost_one_of_its_positions_still_leases_the_others(
    receivers: list[QueueService],
) -> None:
    # Given racing receivers (b leased by ticket), and two new messages m1 and m2
    a, b, _, _ = receivers
    b_loses_a_race(a, b)
    m1, m2 = send(a, "m1"), send(a, "m2")
    # When b reads both free, a leases m1 before b's write lands, and b receives two
    with stale_reads(b, consistent_too=True):
        assert [m.message_id for m in a.receive(P, QUEUE, oldest_first=True)] == [m1]
        got = b.receive(P, QUEUE, max_messages=2)
    # Then b still leases m2, which its ticket named and no other ticket will
    assert [m.message_id for m in got] == [m2]


def test_a_message_whose_ticket_holder_stopped_before_leasing_it_is_received_later(
    receivers: list[QueueService], clock: ManualClock
) -> None:
    # Given racing receivers, and a message m whose position went to a receiver that
    # stopped right after taking its ticket (a Lambda cut off by its timeout)
    a, b, c, d = receivers
    b_loses_a_race(a, b)
    m = send(a, "m")
    b.leases._index.take_positions(QUEUE, 0, 1, first=0, now_ms=clock.now_ms())
    assert c.receive(P, QUEUE) == []  # c sees m free, but its position was dispensed
    # When receivers keep racing for longer than a lease of 30 s would have held it
    clock.advance(20)
    with stale_reads(d):
        d.receive(P, QUEUE)  # another ticket: c still sees receivers race
    clock.advance(11)
    got = c.receive(P, QUEUE)
    # Then c receives m
    assert [msg.message_id for msg in got] == [m]


def test_racing_receivers_move_the_floor_past_settled_segments_without_a_failed_write(
    receivers: list[QueueService], meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given racing receivers (b lost one race), no chance drawn in their favour, and five
    # segments' worth of messages
    a, b, c, _ = receivers
    monkeypatch.setattr("mqless.domain.queues.racing.random.random", lambda: 0.99)
    leased = b_loses_a_race(a, b)
    a.ack(P, QUEUE, [m.receipt for m in leased])
    for i in range(0, 60, 10):
        a.send_batch(P, QUEUE, [(str(j), NewMessage(body=f"{i + j}".encode())) for j in range(10)])
    before = failed_writes(meter)
    # When b and c receive and ack them all, one at a time
    while found := b.receive(P, QUEUE) + c.receive(P, QUEUE):
        a.ack(P, QUEUE, [m.receipt for m in found])
    # Then the shard's floor moved past the settled segments, and no write failed
    assert a.leases._index.cursor(QUEUE, 0, consistent=True).floor >= 4
    assert failed_writes(meter) == before


def test_racing_receivers_pass_the_empty_places_a_batch_left_in_a_closed_segment(
    receivers: list[QueueService], meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given racing receivers (b lost a race) that have taken every single message, and a
    # batch of ten that did not fit the rest of their segment: it started the next one and
    # left eight places of the first empty, where the shard's dispenser now points
    a, b, c, _ = receivers
    monkeypatch.setattr("mqless.domain.queues.racing.random.random", lambda: 0.99)
    leased = b_loses_a_race(a, b)
    a.ack(P, QUEUE, [m.receipt for m in leased])
    batch = [(str(j), NewMessage(body=f"batch {j}".encode())) for j in range(10)]
    sent = [r.message_id for _, r in a.send_batch(P, QUEUE, batch)[0]]

    # When b and c receive one message at a time, taking turns, ten times
    got = [m for _ in range(5) for m in b.receive(P, QUEUE) + c.receive(P, QUEUE)]

    # Then no receive came back empty: each got the next message of the batch by ticket
    assert sorted(m.message_id for m in got) == sorted(sent)


def test_a_racing_receive_gets_no_more_than_it_asked_from_a_segment_of_twelve(
    receivers: list[QueueService], aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a segment of 12 references, as segments were before they held 10 (the index
    # written by an earlier version), and ten more messages in a segment after it
    a, b, _, _ = receivers
    monkeypatch.setattr("mqless.domain.queues.racing.random.random", lambda: 0.99)
    with monkeypatch.context() as old:
        old.setattr("mqless.storage.segments.MAX_REFS", 12)
        for i in range(12):
            send(a, f"m{i}")
    for i in range(10):
        send(a, f"n{i}")
    assert [len(s.entries) for s in a.leases._index.segments(QUEUE, 0, 0, limit=4)] == [12, 10]
    # ... the first nine leased, b racing (it lost a race for the first), and the shard's
    # dispenser at the tenth (as if tickets had handed out the nine)
    with stale_reads(b), monkeypatch.context() as oldest:
        # (b's guesses go to the oldest: it wants the first, which a took)
        oldest.setattr("mqless.domain.queues.taking.random.shuffle", lambda items: None)
        oldest.setattr(
            "mqless.domain.queues.claiming.random.sample", lambda items, k: list(items)[:k]
        )
        assert len(a.receive(P, QUEUE, oldest_first=True, max_messages=9)) == 9
        b.receive(P, QUEUE)
    a.leases._index.move_dispenser(QUEUE, 0, 9)

    # When b receives two messages
    got = b.receive(P, QUEUE, max_messages=2)

    # Then it gets two: the tenth and the first of the next segment (the old segment's 11th
    # and 12th are no ticket's position: `seq × 10 + slot` would give them the next
    # segment's first two)
    assert [m.body for m in got] == [b"m9", b"n0"]


def test_a_racing_receiver_that_reads_only_messages_dispensed_already_takes_no_ticket(
    receivers: list[QueueService], meter: Meter
) -> None:
    # Given racing receivers: b lost the race for x and took y by ticket, so b knows the
    # shard's dispenser is past both
    a, b, _, _ = receivers
    send(a, "x")
    with stale_reads(b):
        send(a, "y")
        a.receive(P, QUEUE, oldest_first=True)
        assert len(b.receive(P, QUEUE)) == 1
        before = meter.usage()
        # When b receives again, its read still showing x and y free, and nothing after them
        got = b.receive(P, QUEUE)
    # Then it gets nothing, and takes no ticket for positions past the last message: no
    # write, no read beyond the one it made
    spent = meter.usage() - before
    assert got == []
    assert {k: v for k, v in spent.requests.items() if k.startswith("dynamodb:")} == {}


def test_a_racing_ticket_for_a_message_another_receiver_took_is_refused_without_a_read(
    receivers: list[QueueService], meter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given racing receivers (b lost the race for x and took y by ticket), no chance drawn
    # in their favour, and a message z that c took by ticket while b's read still shows it
    # free
    a, b, c, _ = receivers
    monkeypatch.setattr("mqless.domain.queues.racing.random.random", lambda: 0.99)
    b_loses_a_race(a, b)
    z = send(a, "z")
    with stale_reads(b):
        assert [m.message_id for m in c.receive(P, QUEUE)] == [z]
        before = meter.usage()
        # When b receives
        got = b.receive(P, QUEUE)
    # Then it gets nothing, for one ticket refused (the dispenser was past the last
    # message b read): one failed write, and no read of positions past the last message
    spent = meter.usage() - before
    assert got == []
    assert {k: v for k, v in spent.requests.items() if k.startswith("dynamodb:")} == {
        "dynamodb:UpdateItem": 1
    }
    assert sum(spent.failed_conditions.values()) == 1


def test_a_racing_receiver_reaches_a_message_behind_more_settled_segments_than_a_look_reads(
    receivers: list[QueueService],
) -> None:
    # Given racing receivers (b lost the race for x and took y by ticket), and a push
    # consumer a that received and acked 40 batches of ten while they raced (it takes no
    # ticket, so the floor's move it saw was left for one)
    a, b, _, _ = receivers
    leased = b_loses_a_race(a, b)
    a.ack(P, QUEUE, [m.receipt for m in leased])
    for i in range(40):
        a.send_batch(P, QUEUE, [(str(j), NewMessage(body=f"{i}.{j}".encode())) for j in range(10)])
        got = a.receive(P, QUEUE, oldest_first=True, max_messages=10)
        a.ack(P, QUEUE, [m.receipt for m in got])
    # When a message m is sent after them, and b long-polls for it
    m = send(a, "m")
    found = b.receive(P, QUEUE, wait_seconds=2)
    # Then b receives m
    assert [d.message_id for d in found] == [m]
