"""Dead letters: the receive limit, where over-limit messages go and how they come back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS, GrantPolicy, Principal, parse_grants
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest, NotADeadLetterQueue
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage import keys
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import Item

P = ANONYMOUS
LEASE = 10
RawItems = Callable[[str], list[Item]]


@pytest.fixture
def queue(broker: QueueService) -> str:
    """A queue that gives a message two deliveries, then dead-letters it to orders.dlq."""
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=LEASE, max_receive_count=2))
    return "orders"


def _fail_deliveries(
    broker: QueueService, clock: ManualClock, queue: str, times: int
) -> list[Delivery]:
    """Receive the queue's message `times` times, letting each lease run out."""
    seen = []
    for _ in range(times):
        seen.extend(broker.receive(P, queue))
        clock.advance(LEASE + 1)
    return seen


def test_a_message_is_delivered_up_to_max_receive_count_times(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message on a queue with max_receive_count 2
    broker.send(P, queue, NewMessage(body=b"poison"))
    # When consumers keep receiving it without acking
    seen = _fail_deliveries(broker, clock, queue, 3)
    # Then it was delivered twice, and the third receive found nothing
    assert [d.receive_count for d in seen] == [1, 2]


def test_an_over_limit_message_lands_in_the_dead_letter_queue_with_reason_and_source(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message that failed its two deliveries
    sent = broker.send(
        P, queue, NewMessage(body=b"poison", attributes={"k": "v"}, correlation_id="c-1")
    )
    _fail_deliveries(broker, clock, queue, 2)
    # When the next receive passes by
    assert broker.receive(P, queue) == []
    # Then the dead-letter queue holds it, body and headers intact, saying why and from where
    [dead] = broker.receive(P, "orders.dlq")
    assert dead.message_id == sent.message_id
    assert dead.body == b"poison"
    assert dead.attributes == {"k": "v"}
    assert dead.correlation_id == "c-1"
    assert dead.source_queue == "orders"
    assert dead.dead_letter_reason is not None
    assert "max_receive_count" in dead.dead_letter_reason
    assert broker.get_queue(P, queue)[1].visible == 0


def test_a_nack_counts_as_a_failed_delivery(broker: QueueService, queue: str) -> None:
    # Given a message nacked at once after each of its two deliveries
    broker.send(P, queue, NewMessage(body=b"rejected"))
    for _ in range(2):
        [delivery] = broker.receive(P, queue)
        broker.nack(P, queue, [delivery.receipt])
    # When it is received a third time
    third = broker.receive(P, queue)
    # Then it is not delivered: it went to the dead-letter queue
    assert third == []
    assert [d.body for d in broker.receive(P, "orders.dlq")] == [b"rejected"]


def test_an_acked_message_is_not_dead_lettered_on_its_last_delivery(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message on its second and last allowed delivery
    broker.send(P, queue, NewMessage(body=b"late success"))
    _fail_deliveries(broker, clock, queue, 1)
    [last] = broker.receive(P, queue)
    # When it is acked
    acked, _ = broker.ack(P, queue, [last.receipt])
    # Then it is gone from both queues
    assert acked == [last.receipt]
    clock.advance(LEASE + 1)
    assert broker.receive(P, queue) == []
    assert broker.receive(P, "orders.dlq") == []


def test_other_messages_are_still_delivered_when_one_is_dead_lettered(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a poison message that used up its deliveries, and a fresh one behind it
    broker.send(P, queue, NewMessage(body=b"poison"))
    _fail_deliveries(broker, clock, queue, 2)
    broker.send(P, queue, NewMessage(body=b"fresh"))
    # When a consumer receives
    received = broker.receive(P, queue, max_messages=10)
    # Then it gets the fresh one in the same call
    assert [d.body for d in received] == [b"fresh"]


def test_a_named_dead_letter_queue_receives_the_message(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue dead-lettering after one delivery to "graveyard"
    broker.put_queue(
        P,
        "orders",
        QueueSettings(visibility_timeout=LEASE, max_receive_count=1, dead_letter_queue="graveyard"),
    )
    broker.send(P, "orders", NewMessage(body=b"poison"))
    # When the message fails its one delivery and is received again
    _fail_deliveries(broker, clock, "orders", 2)
    # Then it is in graveyard
    [dead] = broker.receive(P, "graveyard")
    assert (dead.body, dead.source_queue) == (b"poison", "orders")


def test_a_message_is_never_lost_on_a_queue_without_a_dead_letter_queue(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue with no receive limit
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=LEASE, max_receive_count=None))
    broker.send(P, "orders", NewMessage(body=b"stubborn"))
    # When it fails many deliveries
    seen = _fail_deliveries(broker, clock, "orders", 12)
    # Then it is delivered every time
    assert [d.receive_count for d in seen] == list(range(1, 13))


def test_redrive_moves_dead_letters_back_to_their_source_queue(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message in orders.dlq that came from orders
    sent = broker.send(P, queue, NewMessage(body=b"retry me", attributes={"k": "v"}))
    _fail_deliveries(broker, clock, queue, 3)
    # When the dead-letter queue is redriven
    result = broker.redrive(P, "orders.dlq")
    # Then the message is back on orders as if new: first delivery, no dead-letter marks
    assert result.moved == 1
    assert result.failed == []
    [back] = broker.receive(P, queue)
    assert back.message_id == sent.message_id
    assert back.body == b"retry me"
    assert back.attributes == {"k": "v"}
    assert back.receive_count == 1
    assert back.dead_letter_reason is None
    assert back.source_queue is None
    assert broker.get_queue(P, "orders.dlq")[1].visible == 0


def test_redrive_can_target_another_queue(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a dead letter from orders, and a queue "repairs"
    broker.send(P, queue, NewMessage(body=b"fix me"))
    _fail_deliveries(broker, clock, queue, 3)
    broker.put_queue(P, "repairs", QueueSettings())
    # When the dead-letter queue is redriven into repairs
    result = broker.redrive(P, "orders.dlq", destination="repairs")
    # Then the message is on repairs, not on orders
    assert result.moved == 1
    assert [d.body for d in broker.receive(P, "repairs")] == [b"fix me"]
    assert broker.receive(P, queue) == []


def test_redrive_into_a_queue_that_does_not_exist_creates_it_as_a_move_does(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a dead letter from orders, and no queue "repairs"
    broker.send(P, queue, NewMessage(body=b"fix me"))
    _fail_deliveries(broker, clock, queue, 3)
    # When the dead-letter queue is redriven into repairs
    result = broker.redrive(P, "orders.dlq", destination="repairs")
    # Then repairs is made with the defaults (as a send or a move would make it) and holds it
    assert (result.moved, result.failed) == (1, [])
    assert broker.get_queue(P, "repairs")[0].dead_letter_queue == "repairs.dlq"
    assert [d.body for d in broker.receive(P, "repairs")] == [b"fix me"]


def test_redrive_moves_no_more_than_asked(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given three dead letters
    for i in range(3):
        broker.send(P, queue, NewMessage(body=f"m{i}".encode()))
    for _ in range(3):
        broker.receive(P, queue, max_messages=10)
        clock.advance(LEASE + 1)
    assert broker.get_queue(P, "orders.dlq")[1].visible == 3
    # When two are redriven
    result = broker.redrive(P, "orders.dlq", max_messages=2)
    # Then two moved and one stays behind
    assert result.moved == 2
    assert broker.get_queue(P, "orders.dlq")[1].visible == 1
    assert broker.get_queue(P, queue)[1].visible == 2


def test_redrive_of_a_fifo_group_moves_no_more_than_asked(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given three dead letters of one FIFO group
    broker.put_queue(P, "jobs.fifo", QueueSettings(visibility_timeout=LEASE, max_receive_count=1))
    for i in range(3):
        broker.send(P, "jobs.fifo", NewMessage(body=f"m{i}".encode(), group_id="g"))
    for _ in range(4):
        broker.receive(P, "jobs.fifo")
        clock.advance(LEASE + 1)
    assert broker.get_queue(P, "jobs.dlq.fifo")[1].visible == 3
    # When one is redriven
    result = broker.redrive(P, "jobs.dlq.fifo", max_messages=1)
    # Then only the oldest moved, and the other two stay, still in order
    assert result.moved == 1
    assert [d.body for d in broker.receive(P, "jobs.fifo")] == [b"m0"]
    assert [d.body for d in broker.receive(P, "jobs.dlq.fifo")] == [b"m1"]


def test_redrive_to_a_deleted_source_fails_per_message_and_keeps_it(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a dead letter whose source queue has since been deleted
    sent = broker.send(P, queue, NewMessage(body=b"orphan"))
    _fail_deliveries(broker, clock, queue, 3)
    broker.delete_queue(P, queue)
    # When the dead-letter queue is redriven
    result = broker.redrive(P, "orders.dlq")
    # Then nothing moved, the message is reported, and it is still in the dead-letter queue
    assert result.moved == 0
    assert [(f.id, f.error) for f in result.failed] == [(sent.message_id, "redrive_failed")]
    [kept] = broker.receive(P, "orders.dlq")
    assert kept.body == b"orphan"


def test_redrive_into_itself_is_refused(broker: QueueService, queue: str) -> None:
    # Given a queue
    # When it is redriven into itself
    with pytest.raises(InvalidRequest) as caught:
        broker.redrive(P, queue, destination=queue)
    # Then the call is refused
    assert caught.value.code == "invalid_request"


def test_redriving_an_empty_queue_moves_nothing(broker: QueueService, queue: str) -> None:
    # Given an empty dead-letter queue
    # When it is redriven
    result = broker.redrive(P, "orders.dlq")
    # Then nothing moved and nothing failed
    assert (result.moved, result.failed) == (0, [])


def test_a_fifo_dead_letter_keeps_its_group_and_frees_the_group(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO queue allowing one delivery, with two messages in group g
    broker.put_queue(P, "jobs.fifo", QueueSettings(visibility_timeout=LEASE, max_receive_count=1))
    broker.send(P, "jobs.fifo", NewMessage(body=b"first", group_id="g"))
    broker.send(P, "jobs.fifo", NewMessage(body=b"second", group_id="g"))
    # When the first fails its delivery and the queue is received from again
    _fail_deliveries(broker, clock, "jobs.fifo", 1)
    [next_up] = broker.receive(P, "jobs.fifo")
    # Then the second message is delivered, and the first waits in the FIFO dead-letter queue
    assert next_up.body == b"second"
    [dead] = broker.receive(P, "jobs.dlq.fifo")
    assert (dead.body, dead.group_id, dead.source_queue) == (b"first", "g", "jobs.fifo")


def test_a_fifo_dead_letter_is_redriven_to_the_end_of_its_group(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO dead letter from group g, and a newer message in group g
    broker.put_queue(P, "jobs.fifo", QueueSettings(visibility_timeout=LEASE, max_receive_count=1))
    broker.send(P, "jobs.fifo", NewMessage(body=b"first", group_id="g"))
    _fail_deliveries(broker, clock, "jobs.fifo", 2)
    broker.send(P, "jobs.fifo", NewMessage(body=b"newer", group_id="g"))
    # When the dead-letter queue is redriven
    assert broker.redrive(P, "jobs.dlq.fifo").moved == 1
    # Then the group delivers the newer message first, then the redriven one
    bodies = []
    for _ in range(2):
        [d] = broker.receive(P, "jobs.fifo")
        bodies.append(d.body)
        broker.ack(P, "jobs.fifo", [d.receipt])
    assert bodies == [b"newer", b"first"]


def test_a_message_without_a_dead_letter_queue_is_quarantined_not_lost(
    broker: QueueService, raw_items: RawItems, tamper: Callable[..., Item]
) -> None:
    # Given a queue with no dead-letter queue holding a message whose body was altered
    broker.put_queue(P, "orders", QueueSettings(max_receive_count=None))
    sent = broker.send(P, "orders", NewMessage(body=b"evidence"))
    tamper("orders", "body")
    # When a consumer receives
    received = broker.receive(P, "orders")
    # Then it is not delivered and not counted, but kept aside with the reason (a reference
    # in the queue's quarantine log, which nothing delivers)
    assert received == []
    counts = broker.get_queue(P, "orders")[1]
    assert (counts.visible, counts.in_flight, counts.delayed) == (0, 0, 0)
    [kept] = [i for i in raw_items("orders") if i["pk"] == "L#orders#quarantine"]
    [(_, item_id, slot, _, reason, _)] = kept["f"]
    assert keys.message_id(item_id, slot) == sent.message_id
    assert reason.startswith("orders\nintegrity")


def test_redrive_drops_dead_letters_past_their_lifetime_instead_of_reviving_them(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a dead letter whose dead-letter queue keeps messages for one minute
    broker.put_queue(ANONYMOUS, "short.dlq", QueueSettings(retention_seconds=60))
    broker.put_queue(
        ANONYMOUS,
        "short",
        QueueSettings(max_receive_count=1, dead_letter_queue="short.dlq"),
    )
    broker.send(ANONYMOUS, "short", NewMessage(body=b"old"))
    broker.receive(ANONYMOUS, "short", visibility_timeout=0)
    broker.receive(ANONYMOUS, "short")  # over the limit: moved to short.dlq
    clock.advance(120)

    # When the dead-letter queue is redriven after that minute
    result = broker.redrive(ANONYMOUS, "short.dlq")

    # Then nothing comes back to the source queue
    assert result.moved == 0
    assert broker.receive(ANONYMOUS, "short") == []


def test_redriving_back_to_the_source_needs_send_on_it(
    broker: QueueService, clock: ManualClock, queue: str, aws: Any
) -> None:
    # Given a dead letter from orders, and an operator who administers only orders.dlq
    broker.send(P, queue, NewMessage(body=b"poison"))
    _fail_deliveries(broker, clock, queue, 2)
    broker.sweep()
    guarded = assembly.build_queue_service(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        policy=GrantPolicy(),
        time=clock,
    )
    operator = Principal(
        id="dlq-ops", grants=parse_grants([{"pattern": "orders.dlq", "actions": ["admin"]}])
    )
    # When the operator redrives it back to its source
    result = guarded.redrive(operator, "orders.dlq")
    # Then it is not moved (moving back is sending to orders), and says why
    assert result.moved == 0
    assert [f.message for f in result.failed] == ["'dlq-ops' may not send 'orders'"]
    assert broker.get_queue(P, "orders.dlq")[1].visible == 1
    assert broker.get_queue(P, queue)[1].visible == 0


# ---- redrive is for dead-letter queues, and leaves what it cannot move as it was --------------


def _receive_counts(broker: QueueService, queue: str) -> dict[str, int]:
    """Each message of the queue and its receive count, as an operator browses them."""
    found, _ = broker.browse(P, queue, limit=100)
    return {m.message_id: m.receive_count for m in found}


@pytest.mark.parametrize("destination", [None, "elsewhere"], ids=["back", "to a destination"])
def test_redrive_of_a_queue_that_is_not_a_dead_letter_queue_is_refused_and_touches_nothing(
    broker: QueueService, raw_items: RawItems, queue: str, destination: str | None
) -> None:
    # Given live messages on orders, one of them delivered once and given back
    for body in (b"a", b"b", b"c"):
        broker.send(P, queue, NewMessage(body=body))
    [taken] = broker.receive(P, queue)
    broker.nack(P, queue, [taken.receipt])
    broker.put_queue(P, "elsewhere", QueueSettings())
    before = sorted(map(repr, raw_items(queue)))
    # When someone asks to redrive orders, which is no queue's dead-letter queue
    with pytest.raises(NotADeadLetterQueue) as refused:
        broker.redrive(P, queue, destination=destination)
    # Then it is refused, saying why, and not one item of orders changed (receive counts,
    # visibility, leases), so a second call cannot dead-letter anything either
    assert refused.value.code == "not_a_dead_letter_queue"
    assert "'orders' is not a dead-letter queue" in refused.value.message
    assert sorted(map(repr, raw_items(queue))) == before
    assert broker.get_queue(P, queue)[1].visible == 3
    assert broker.get_queue(P, "elsewhere")[1].visible == 0


def test_a_queue_some_queue_names_as_its_dead_letter_queue_can_be_redriven(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given orders, whose dead-letter queue is parking (not a .dlq name), and a dead letter
    broker.put_queue(P, "parking", QueueSettings(max_receive_count=None))
    broker.put_queue(
        P,
        "orders",
        QueueSettings(visibility_timeout=LEASE, max_receive_count=1, dead_letter_queue="parking"),
    )
    broker.send(P, "orders", NewMessage(body=b"retry me"))
    _fail_deliveries(broker, clock, "orders", 2)
    # When parking is redriven
    result = broker.redrive(P, "parking")
    # Then the dead letter is back on orders
    assert result.moved == 1
    assert [d.body for d in broker.receive(P, "orders")] == [b"retry me"]


def test_a_default_dead_letter_queue_can_be_redriven_after_its_source_is_gone(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a dead letter in orders.dlq, orders since deleted, and a queue to take it
    broker.send(P, queue, NewMessage(body=b"orphan"))
    _fail_deliveries(broker, clock, queue, 3)
    broker.delete_queue(P, queue)
    broker.put_queue(P, "repairs", QueueSettings())
    # When orders.dlq (a default dead-letter queue name) is redriven into repairs
    result = broker.redrive(P, "orders.dlq", destination="repairs")
    # Then it moves
    assert result.moved == 1
    assert [d.body for d in broker.receive(P, "repairs")] == [b"orphan"]


def test_redrive_leaves_the_receive_count_of_what_it_cannot_move_as_it_was(
    broker: QueueService, clock: ManualClock, raw_items: RawItems, queue: str
) -> None:
    # Given in orders.dlq two messages sent straight to it (no source queue), one of which
    # someone received once, and a dead letter from orders
    broker.send(P, "orders.dlq", NewMessage(body=b"looked at"))
    [looked] = broker.receive(P, "orders.dlq")
    broker.nack(P, "orders.dlq", [looked.receipt])
    broker.send(P, "orders.dlq", NewMessage(body=b"never delivered"))
    broker.send(P, queue, NewMessage(body=b"dead"))
    _fail_deliveries(broker, clock, queue, 3)
    before = _receive_counts(broker, "orders.dlq")
    assert sorted(before.values()) == [0, 1, 2]
    # When the dead-letter queue is redriven back to the sources, twice
    first = broker.redrive(P, "orders.dlq")
    second = broker.redrive(P, "orders.dlq")
    # Then the dead letter moved, the two without a source are reported each time...
    assert (first.moved, len(first.failed), second.moved, len(second.failed)) == (1, 2, 0, 2)
    # ...and their receive counts are what they were: a redrive is no delivery
    after = _receive_counts(broker, "orders.dlq")
    assert after == {i: n for i, n in before.items() if n != 2}
    # ...and both are still there to be received
    assert len(broker.receive(P, "orders.dlq", max_messages=10)) == 2


def test_redrive_of_a_fifo_dead_letter_queue_leaves_what_it_cannot_move_uncounted(
    broker: QueueService, raw_items: RawItems
) -> None:
    # Given a FIFO dead-letter queue holding a message sent straight to it
    broker.put_queue(P, "jobs.fifo", QueueSettings(max_receive_count=1))
    broker.send(P, "jobs.dlq.fifo", NewMessage(body=b"no source", group_id="g"))
    # When it is redriven back to the sources, twice
    results = [broker.redrive(P, "jobs.dlq.fifo") for _ in range(2)]
    # Then it is reported each time, and never counted as received
    assert [(r.moved, len(r.failed)) for r in results] == [(0, 1), (0, 1)]
    assert list(_receive_counts(broker, "jobs.dlq.fifo").values()) == [0]


def test_a_dead_letters_receive_count_and_reason_agree_when_browsed(
    broker: QueueService, clock: ManualClock, queue: str
) -> None:
    # Given a message that failed the two deliveries its queue allows
    broker.send(P, queue, NewMessage(body=b"poison"))
    _fail_deliveries(broker, clock, queue, 3)

    # When the dead-letter queue is browsed (as its console page lists it)
    [browsed], _ = broker.browse(P, "orders.dlq", limit=10)

    # Then its receive count is the deliveries the reason names
    assert browsed.receive_count == 2
    assert browsed.dead_letter_reason is not None
    assert "(2 deliveries)" in browsed.dead_letter_reason


def test_a_message_two_receivers_find_over_its_limit_at_once_is_dead_lettered_once(
    broker: QueueService, aws: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue that dead-letters after one delivery, and its message delivered once
    # with a lease of 0 s (free again at once)
    broker.put_queue(P, "jobs", QueueSettings(visibility_timeout=LEASE, max_receive_count=1))
    broker.send(P, "jobs", NewMessage(body=b"retry me"))
    [first] = broker.receive(P, "jobs", visibility_timeout=0)
    # When two receivers (two function instances) find it over its limit at the same
    # moment: the other receives while the first is moving it to the dead-letter queue
    other = assembly.build_queue_service(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        time=clock,
    )
    refer = broker._mover.refer
    second: list[Delivery] = []

    def racing(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(broker._mover, "refer", refer)
        clock.advance(1)  # a second later: the first receiver's lease of 0 s has ended
        second.extend(other.receive(P, "jobs", visibility_timeout=0))
        refer(*args, **kwargs)

    monkeypatch.setattr(broker._mover, "refer", racing)
    assert broker.receive(P, "jobs", visibility_timeout=0) == []
    # Then neither delivers it, and the dead-letter queue holds it once
    assert second == []
    dead = broker.receive(P, "jobs.dlq", max_messages=10)
    assert [d.message_id for d in dead] == [first.message_id]
    assert broker.receive(P, "jobs.dlq", max_messages=10) == []
