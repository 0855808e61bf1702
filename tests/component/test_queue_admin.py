"""Queue administration: create, replace, list, inspect, purge and delete queues."""

from __future__ import annotations

from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS, Action, Principal
from mqless.domain.clock import ManualClock
from mqless.domain.errors import Forbidden, MqlessError
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage.destinations import QueueRegistry

P = ANONYMOUS


def _send(broker: QueueService, queue: str, body: str = "hello", **fields: object) -> str:
    return broker.send(P, queue, NewMessage(body=body.encode(), **fields)).message_id


def test_put_queue_creates_a_queue_with_the_settings_given(broker: QueueService) -> None:
    # Given no queue called "orders"
    settings = QueueSettings(
        visibility_timeout=45, max_receive_count=3, retention_seconds=3600, delay_seconds=5
    )
    # When it is put with explicit settings
    config, created = broker.put_queue(P, "orders", settings)
    # Then it is created, and reading it back shows those settings
    assert created is True
    stored, _ = broker.get_queue(P, "orders")
    assert stored == config
    assert (stored.visibility_timeout, stored.max_receive_count) == (45, 3)
    assert (stored.retention_seconds, stored.delay_seconds) == (3600, 5)
    assert stored.fifo is False


def test_put_queue_on_an_existing_queue_replaces_its_settings(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue created a minute ago
    first, _ = broker.put_queue(P, "orders", QueueSettings(visibility_timeout=10))
    clock.advance(60)
    # When it is put again with other settings
    config, created = broker.put_queue(P, "orders", QueueSettings(visibility_timeout=90))
    # Then it is updated, not created, and keeps its creation time
    assert created is False
    stored, _ = broker.get_queue(P, "orders")
    assert stored.visibility_timeout == 90
    assert stored.created_at == first.created_at
    assert stored.updated_at == first.created_at + 60_000


def test_replacing_settings_keeps_the_messages(broker: QueueService) -> None:
    # Given a queue holding a message
    broker.put_queue(P, "orders", QueueSettings())
    message_id = _send(broker, "orders")
    # When its settings are replaced
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=5))
    # Then the message is still there to receive
    assert [d.message_id for d in broker.receive(P, "orders")] == [message_id]


def test_a_fifo_suffix_creates_a_fifo_queue(broker: QueueService) -> None:
    # Given a name ending in .fifo
    # When the queue is put
    config, _ = broker.put_queue(P, "orders.fifo", QueueSettings())
    # Then it is FIFO, with a FIFO dead-letter queue
    assert config.fifo is True
    assert config.dead_letter_queue == "orders.dlq.fifo"
    dlq, _ = broker.get_queue(P, "orders.dlq.fifo")
    assert dlq.fifo is True


def test_a_queue_gets_a_default_dead_letter_queue_that_keeps_what_it_is_given(
    broker: QueueService,
) -> None:
    # Given a queue put with default settings
    # When it is created
    config, _ = broker.put_queue(P, "orders", QueueSettings())
    # Then its dead-letter queue exists too and never dead-letters further
    assert config.dead_letter_queue == "orders.dlq"
    dlq, _ = broker.get_queue(P, "orders.dlq")
    assert dlq.max_receive_count is None
    assert dlq.dead_letter_queue is None


def test_settings_read_back_from_the_table_are_the_settings_given(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue that never dead-letters, and a dead-letter queue made for another
    broker.put_queue(P, "orders", QueueSettings(max_receive_count=None, visibility_timeout=0))
    broker.put_queue(P, "invoices", QueueSettings())
    # When their configs are read after the per-process cache has expired
    clock.advance(60)
    orders, _ = broker.get_queue(P, "orders")
    dlq, _ = broker.get_queue(P, "invoices.dlq")
    # Then "no limit" is still no limit, not the default of 10
    assert (orders.max_receive_count, orders.dead_letter_queue) == (None, None)
    assert orders.visibility_timeout == 0
    assert (dlq.max_receive_count, dlq.dead_letter_queue) == (None, None)


def test_a_named_dead_letter_queue_is_created_with_the_queue(broker: QueueService) -> None:
    # Given settings naming a dead-letter queue that does not exist yet
    settings = QueueSettings(max_receive_count=2, dead_letter_queue="graveyard")
    # When the queue is put
    broker.put_queue(P, "orders", settings)
    # Then the named queue exists (and no default orders.dlq was made)
    names = [q.name for q in broker.list_queues(P)]
    assert names == ["graveyard", "orders"]


def test_a_queue_without_a_receive_limit_has_no_dead_letter_queue(broker: QueueService) -> None:
    # Given settings with max_receive_count null
    # When the queue is put
    config, _ = broker.put_queue(P, "orders", QueueSettings(max_receive_count=None))
    # Then there is no dead-letter queue, and none was created
    assert config.dead_letter_queue is None
    assert [q.name for q in broker.list_queues(P)] == ["orders"]


@pytest.mark.parametrize(
    ("name", "queue_settings"),
    [
        ("orders", QueueSettings(dead_letter_queue="orders")),
        ("orders", QueueSettings(dead_letter_queue="graveyard.fifo")),
        ("orders.fifo", QueueSettings(dead_letter_queue="graveyard")),
        ("bad name", QueueSettings()),
        ("x" * 80, QueueSettings()),
    ],
    ids=["itself", "standard-to-fifo", "fifo-to-standard", "bad-name", "no-room-for-dlq-name"],
)
def test_an_impossible_queue_is_refused_and_nothing_is_created(
    broker: QueueService, name: str, queue_settings: QueueSettings
) -> None:
    # Given settings that cannot make a working queue
    # When the queue is put
    with pytest.raises(MqlessError) as caught:
        broker.put_queue(P, name, queue_settings)
    # Then the caller gets invalid_request and no queue exists
    assert caught.value.code == "invalid_request"
    assert broker.list_queues(P) == []


def test_sending_to_an_unknown_queue_creates_it_with_defaults(broker: QueueService) -> None:
    # Given no queue called "events"
    # When a message is sent to it
    _send(broker, "events")
    # Then the queue exists with the default settings, and so does its dead-letter queue
    config, counts = broker.get_queue(P, "events")
    assert config.visibility_timeout == 30
    assert config.max_receive_count == 10
    assert config.retention_seconds == 4 * 24 * 3600
    assert config.dead_letter_queue == "events.dlq"
    assert counts.visible == 1
    assert [q.name for q in broker.list_queues(P)] == ["events", "events.dlq"]


def test_sending_to_an_unknown_fifo_queue_creates_a_fifo_queue(broker: QueueService) -> None:
    # Given no queue called "events.fifo"
    # When a message with a group is sent to it
    _send(broker, "events.fifo", group_id="g")
    # Then a FIFO queue exists
    config, _ = broker.get_queue(P, "events.fifo")
    assert config.fifo is True


def test_list_queues_returns_every_queue_by_name(broker: QueueService) -> None:
    # Given three queues created out of order
    for name in ("zebra", "apple", "mango.fifo"):
        broker.put_queue(P, name, QueueSettings(max_receive_count=None))
    # When the queues are listed
    listed = broker.list_queues(P)
    # Then all three come back, sorted by name
    assert [q.name for q in listed] == ["apple", "mango.fifo", "zebra"]


def test_get_queue_counts_visible_in_flight_and_delayed_messages(broker: QueueService) -> None:
    # Given a queue with two ready messages, one of which is then received, and one delayed
    _send(broker, "orders", "a")
    _send(broker, "orders", "b")
    _send(broker, "orders", "c", delay_seconds=60)
    broker.receive(P, "orders")
    # When the queue is read
    _, counts = broker.get_queue(P, "orders")
    # Then each state is counted
    assert (counts.visible, counts.in_flight, counts.delayed) == (1, 1, 1)


def test_get_queue_counts_a_fifo_queue(broker: QueueService) -> None:
    # Given a FIFO queue with two messages in one group (one received) and one delayed group
    _send(broker, "orders.fifo", "a", group_id="g1")
    _send(broker, "orders.fifo", "b", group_id="g1")
    _send(broker, "orders.fifo", "c", group_id="g2", delay_seconds=60)
    broker.receive(P, "orders.fifo")
    # When the queue is read
    _, counts = broker.get_queue(P, "orders.fifo")
    # Then one is in flight, one waits behind it, one is delayed
    assert (counts.visible, counts.in_flight, counts.delayed) == (1, 1, 1)


def test_counts_follow_the_clock(broker: QueueService, clock: ManualClock) -> None:
    # Given a received message and a delayed one
    _send(broker, "orders", "a")
    _send(broker, "orders", "b", delay_seconds=10)
    broker.receive(P, "orders", visibility_timeout=20)
    # When time passes beyond both the delay and the lease
    clock.advance(21)
    # Then both count as visible again
    _, counts = broker.get_queue(P, "orders")
    assert (counts.visible, counts.in_flight, counts.delayed) == (2, 0, 0)


@pytest.mark.parametrize("operation", ["get", "delete", "purge", "receive"])
def test_an_unknown_queue_is_not_found(broker: QueueService, operation: str) -> None:
    # Given no queue called "ghost"
    calls = {
        "get": lambda: broker.get_queue(P, "ghost"),
        "delete": lambda: broker.delete_queue(P, "ghost"),
        "purge": lambda: broker.purge(P, "ghost"),
        "receive": lambda: broker.receive(P, "ghost"),
    }
    # When it is used
    with pytest.raises(MqlessError) as caught:
        calls[operation]()
    # Then the caller is told it does not exist, and it was not created on the way
    assert caught.value.code == "queue_not_found"
    assert broker.list_queues(P) == []


@pytest.mark.parametrize("operation", ["put", "get", "delete", "purge", "send", "receive"])
def test_an_invalid_queue_name_is_an_invalid_request(broker: QueueService, operation: str) -> None:
    # Given a name with a slash in it
    bad = "a/b"
    calls = {
        "put": lambda: broker.put_queue(P, bad, QueueSettings()),
        "get": lambda: broker.get_queue(P, bad),
        "delete": lambda: broker.delete_queue(P, bad),
        "purge": lambda: broker.purge(P, bad),
        "send": lambda: _send(broker, bad),
        "receive": lambda: broker.receive(P, bad),
    }
    # When it is used
    with pytest.raises(MqlessError) as caught:
        calls[operation]()
    # Then the caller gets invalid_request
    assert caught.value.code == "invalid_request"


def test_delete_queue_removes_the_queue(broker: QueueService) -> None:
    # Given a queue
    broker.put_queue(P, "orders", QueueSettings(max_receive_count=None))
    # When it is deleted
    broker.delete_queue(P, "orders")
    # Then it is no longer listed or found
    assert broker.list_queues(P) == []
    with pytest.raises(MqlessError) as caught:
        broker.get_queue(P, "orders")
    assert caught.value.code == "queue_not_found"


def test_a_deleted_queue_keeps_none_of_its_messages(broker: QueueService) -> None:
    # Given a queue holding messages, deleted
    _send(broker, "orders", "old-1")
    _send(broker, "orders", "old-2")
    broker.delete_queue(P, "orders")
    # When a queue of the same name is made again by a send
    new_id = _send(broker, "orders", "new")
    # Then only the new message is there
    deliveries = broker.receive(P, "orders", max_messages=10)
    assert [d.message_id for d in deliveries] == [new_id]


def test_a_deleted_fifo_queue_forgets_its_dedup_ids(broker: QueueService) -> None:
    # Given a FIFO queue that accepted dedup id "d1", then was deleted
    first = _send(broker, "orders.fifo", group_id="g", dedup_id="d1")
    broker.delete_queue(P, "orders.fifo")
    # When "d1" is sent again to a new queue of that name
    result = broker.send(P, "orders.fifo", NewMessage(body=b"again", group_id="g", dedup_id="d1"))
    # Then it is a new message, not a duplicate of the deleted one
    assert result.duplicate is False
    assert result.message_id != first
    assert [d.body for d in broker.receive(P, "orders.fifo")] == [b"again"]


def test_purge_deletes_every_message_and_keeps_the_queue(broker: QueueService) -> None:
    # Given a queue with three messages, one of them in flight
    for body in ("a", "b", "c"):
        _send(broker, "orders", body)
    broker.receive(P, "orders")
    # When it is purged
    purged = broker.purge(P, "orders")
    # Then all three are gone, counted, and the queue still works
    assert purged == 3
    _, counts = broker.get_queue(P, "orders")
    assert (counts.visible, counts.in_flight, counts.delayed) == (0, 0, 0)
    _send(broker, "orders", "d")
    assert [d.body for d in broker.receive(P, "orders")] == [b"d"]


def test_purge_empties_a_fifo_queue_and_frees_its_groups(broker: QueueService) -> None:
    # Given a FIFO group with a message in flight and one waiting
    _send(broker, "orders.fifo", "a", group_id="g")
    _send(broker, "orders.fifo", "b", group_id="g")
    broker.receive(P, "orders.fifo")
    # When the queue is purged and a new message is sent to the same group
    assert broker.purge(P, "orders.fifo") == 2
    _send(broker, "orders.fifo", "c", group_id="g")
    # Then the new message is delivered at once (the group is not stuck behind the old lease)
    assert [d.body for d in broker.receive(P, "orders.fifo")] == [b"c"]


# ---- every operation asks the policy, with the caller's principal -----------------------


class DenyPrincipal:
    """A policy refusing one principal everything, recording what it was asked."""

    def __init__(self, denied: str) -> None:
        self.denied = denied
        self.asked: list[tuple[str, Action, str]] = []

    def check(self, principal: Principal, action: Action, destination: str) -> None:
        self.asked.append((principal.id, action, destination))
        if principal.id == self.denied:
            raise Forbidden(f"{principal.id} may not {action} {destination}")

    def permits(self, principal: Principal, action: Action, destination: str) -> bool:
        self.asked.append((principal.id, action, destination))
        return principal.id != self.denied


@pytest.fixture
def guarded(aws: Any, clock: ManualClock) -> tuple[QueueService, DenyPrincipal]:
    """A broker over the same tables whose policy refuses "mallory"."""
    policy = DenyPrincipal("mallory")
    broker = assembly.build_queue_service(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        policy=policy,
        time=clock,
    )
    return broker, policy


MALLORY = Principal(id="mallory", kind="user")


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("put_queue", Action.ADMIN),
        ("get_queue", Action.ADMIN),
        ("delete_queue", Action.ADMIN),
        ("purge", Action.ADMIN),
        ("redrive", Action.ADMIN),
        ("send", Action.SEND),
        ("send_batch", Action.SEND),
        ("receive", Action.RECEIVE),
        ("ack", Action.RECEIVE),
        ("nack", Action.RECEIVE),
        ("change_visibility", Action.RECEIVE),
    ],
)
def test_every_operation_asks_the_policy_about_the_calling_principal(
    guarded: tuple[QueueService, DenyPrincipal], operation: str, action: Action
) -> None:
    # Given a queue holding a leased message, and a policy that refuses "mallory"
    broker, policy = guarded
    _send(broker, "orders", "keep me")
    receipt = broker.receive(P, "orders", visibility_timeout=0)[0].receipt
    message = NewMessage(body=b"x")
    calls = {
        "put_queue": lambda who: broker.put_queue(who, "orders", QueueSettings()),
        "get_queue": lambda who: broker.get_queue(who, "orders"),
        "delete_queue": lambda who: broker.delete_queue(who, "orders"),
        "purge": lambda who: broker.purge(who, "orders"),
        "redrive": lambda who: broker.redrive(who, "orders.dlq"),
        "send": lambda who: broker.send(who, "orders", message),
        "send_batch": lambda who: broker.send_batch(who, "orders", [("1", message)]),
        "receive": lambda who: broker.receive(who, "orders"),
        "ack": lambda who: broker.ack(who, "orders", [receipt]),
        "nack": lambda who: broker.nack(who, "orders", [receipt]),
        "change_visibility": lambda who: broker.change_visibility(who, "orders", [receipt], 5),
    }
    policy.asked.clear()
    # When mallory calls the operation
    with pytest.raises(Forbidden) as caught:
        calls[operation](MALLORY)
    # Then it is refused as forbidden, the policy was asked with mallory's id and the right
    # action, and the message is untouched
    assert caught.value.code == "forbidden"
    assert policy.asked[0][:2] == ("mallory", action)
    _, counts = broker.get_queue(P, "orders")
    assert counts.visible == 1


def test_a_listing_shows_only_the_queues_the_caller_administers(
    guarded: tuple[QueueService, DenyPrincipal],
) -> None:
    # Given a queue (with its dead-letter queue), and a policy that refuses mallory everything
    broker, policy = guarded
    _send(broker, "orders", "x")

    # When mallory, then an administrator, lists the queues
    # Then mallory sees none (the policy was asked about admin on orders), the administrator both
    assert broker.list_queues(MALLORY) == []
    assert [q.name for q in broker.list_queues(P)] == ["orders", "orders.dlq"]
    assert ("mallory", Action.ADMIN, "orders") in policy.asked
