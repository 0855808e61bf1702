"""Tampered ciphertext in the table is detected, never delivered, and dead-lettered as such.

Someone who can write the messages table (but not use the KMS key) can alter, swap or copy
items; every such item must fail authentication where it is read, while messages that the
broker itself moves (dead letters, redrive, move/copy, fan-out) keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqless.clock import ManualClock
from mqless.dynamo import Item, from_wire, to_wire
from mqless.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.errors import Conflict
from mqless.models import NewMessage, QueueSettings
from mqless.principals import ANONYMOUS
from mqless.pubsub import SubscriptionSettings, TopicService
from mqless.queues import QueueService
from mqless.registry import QueueRegistry

P = ANONYMOUS
RawItems = Callable[[str], list[Item]]
Tamper = Callable[..., Item]


def _dead_letters(raw_items: RawItems, dlq: str) -> list[Item]:
    return [i for i in raw_items(dlq) if str(i["sk"]).startswith("M#")]


@pytest.fixture
def topics(aws: Any, clock: ManualClock) -> TopicService:
    """Topics as the dispatch function runs them: a process (and key cache) of its own."""
    return TopicService(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        clock=clock,
    )


def _published(aws: Any) -> list[Item]:
    """The topic items in the table, as the stream hands them to the dispatch function."""
    page = aws.dynamodb.scan(
        TableName=aws.settings.messages_table,
        FilterExpression="begins_with(pk, :t)",
        ExpressionAttributeValues=to_wire({":t": "T#"}),
    )
    return [from_wire(i) for i in page["Items"]]


def _put_raw(aws: Any, item: Item) -> None:
    """Write an item as someone with table access (and no key) could."""
    aws.dynamodb.put_item(TableName=aws.settings.messages_table, Item=to_wire(item))


@pytest.mark.parametrize(
    ("attribute", "at"),
    [("body", -1), ("body", 20), ("body", 0), ("dk", -1), ("dk", 50)],
    ids=["body-tag", "body-ciphertext", "body-version", "dk-tail", "dk-middle"],
)
def test_a_tampered_message_is_not_delivered_and_is_dead_lettered_for_integrity(
    broker: QueueService, raw_items: RawItems, tamper: Tamper, attribute: str, at: int
) -> None:
    # Given a stored message one bit of whose sealed body or data key was flipped
    sent = broker.send(P, "orders", NewMessage(body=b"pay 10 EUR to alice"))
    tamper("orders", attribute, at=at)
    # When a consumer receives
    received = broker.receive(P, "orders", max_messages=10)
    # Then nothing is delivered, and the dead-letter queue holds it with an integrity reason
    assert received == []
    [dead] = _dead_letters(raw_items, "orders.dlq")
    assert dead["id"] == sent.message_id
    assert dead["dl_source"] == "orders"
    assert str(dead["dl_reason"]).startswith("integrity")
    assert broker.get_queue(P, "orders")[1].visible == 0


def test_a_body_moved_onto_another_message_is_detected(
    broker: QueueService, raw_items: RawItems, aws: Any
) -> None:
    # Given two messages, and the first's sealed body and key copied onto the second
    first = broker.send(P, "orders", NewMessage(body=b"pay 10 EUR to alice"))
    second = broker.send(P, "orders", NewMessage(body=b"pay 99 EUR to mallory"))
    items = {i["id"]: i for i in raw_items("orders") if str(i["sk"]).startswith("M#")}
    source, target = items[first.message_id], items[second.message_id]
    aws.dynamodb.update_item(
        TableName=aws.settings.messages_table,
        Key=to_wire({"pk": target["pk"], "sk": target["sk"]}),
        UpdateExpression="SET body = :b, dk = :k",
        ExpressionAttributeValues=to_wire({":b": source["body"], ":k": source["dk"]}),
    )
    # When a consumer receives everything
    received = broker.receive(P, "orders", max_messages=10)
    # Then only the genuine first message is delivered; the swapped one is dead-lettered
    assert [(d.message_id, d.body) for d in received] == [
        (first.message_id, b"pay 10 EUR to alice")
    ]
    [dead] = _dead_letters(raw_items, "orders.dlq")
    assert dead["id"] == second.message_id
    assert str(dead["dl_reason"]).startswith("integrity")


def test_a_message_copied_and_relabelled_for_another_queue_is_detected(
    broker: QueueService, raw_items: RawItems, aws: Any
) -> None:
    # Given a message of "payroll" copied, id and all, into "orders" and labelled as sent there
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data"))
    broker.put_queue(P, "orders", QueueSettings())
    [item] = [i for i in raw_items("payroll") if str(i["sk"]).startswith("M#")]
    copied = dict(item, pk="Q#orders", vq="orders", origin="orders")
    aws.dynamodb.put_item(TableName=aws.settings.messages_table, Item=to_wire(copied))
    # When a consumer of "orders" receives
    received = broker.receive(P, "orders")
    # Then the copy is not delivered, and the original still is on its own queue
    assert received == []
    assert str(_dead_letters(raw_items, "orders.dlq")[0]["dl_reason"]).startswith("integrity")
    assert [d.message_id for d in broker.receive(P, "payroll")] == [sent.message_id]


def test_a_tampered_message_does_not_block_the_others(broker: QueueService, tamper: Tamper) -> None:
    # Given three messages, the middle one tampered with
    ids = [broker.send(P, "orders", NewMessage(body=f"m{i}".encode())).message_id for i in "012"]
    tamper("orders", "body", message_id=ids[1])
    # When a consumer asks for ten
    received = broker.receive(P, "orders", max_messages=10)
    # Then the two genuine ones are delivered in that same call
    assert sorted(d.body for d in received) == [b"m0", b"m2"]


def test_a_tampered_fifo_head_is_dead_lettered_and_the_group_moves_on(
    broker: QueueService, raw_items: RawItems, tamper: Tamper
) -> None:
    # Given a FIFO group whose head was tampered with
    head = broker.send(P, "jobs.fifo", NewMessage(body=b"first", group_id="g")).message_id
    broker.send(P, "jobs.fifo", NewMessage(body=b"second", group_id="g"))
    tamper("jobs.fifo", "body", message_id=head)
    # When a consumer receives
    received = broker.receive(P, "jobs.fifo", max_messages=10)
    # Then the second message is delivered and the head is in the FIFO dead-letter queue
    assert [d.body for d in received] == [b"second"]
    [dead] = _dead_letters(raw_items, "jobs.dlq.fifo")
    assert (dead["id"], dead["grp"]) == (head, "g")
    assert str(dead["dl_reason"]).startswith("integrity")


def test_a_message_copied_raw_into_another_queue_is_not_delivered_there(
    broker: QueueService, raw_items: RawItems, aws: Any
) -> None:
    # Given a message of "payroll" copied as it is (id, origin and all) into "orders"
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data", attributes={"k": "v"}))
    broker.put_queue(P, "orders", QueueSettings())
    [item] = [i for i in raw_items("payroll") if str(i["sk"]).startswith("M#")]
    _put_raw(aws, dict(item, pk="Q#orders", vq="orders"))
    # When an operator browses "orders" and a consumer of "orders" receives
    [browsed], _ = broker.browse(P, "orders")
    received = broker.receive(P, "orders")
    # Then the copy is unreadable there and is dead-lettered for integrity, not delivered
    assert (browsed.body, str(browsed.error).startswith("integrity")) == (None, True)
    assert received == []
    [dead] = _dead_letters(raw_items, "orders.dlq")
    assert (dead["id"], str(dead["dl_reason"]).startswith("integrity")) == (
        sent.message_id,
        True,
    )
    # And the original is still delivered on its own queue, headers intact
    [original] = broker.receive(P, "payroll")
    assert (original.body, original.attributes) == (b"salary data", {"k": "v"})


def test_a_topic_message_copied_raw_into_a_queue_of_the_same_name_is_not_delivered(
    broker: QueueService, topics: TopicService, raw_items: RawItems, aws: Any
) -> None:
    # Given a message published to topic "orders" and copied as it is into queue "orders"
    broker.put_queue(P, "orders", QueueSettings())
    topics.publish(P, "orders", NewMessage(body=b"for the topic's subscribers only"))
    [item] = _published(aws)
    _put_raw(aws, dict(item, pk="Q#orders", vq="orders", visible_at=item["sent_at"]))
    # When a consumer of queue "orders" receives
    received = broker.receive(P, "orders")
    # Then nothing is delivered: the copy is dead-lettered for integrity
    assert received == []
    [dead] = _dead_letters(raw_items, "orders.dlq")
    assert str(dead["dl_reason"]).startswith("integrity")


def test_a_fanned_out_copy_moved_raw_into_another_queue_is_not_delivered_there(
    broker: QueueService, topics: TopicService, raw_items: RawItems, aws: Any
) -> None:
    # Given a topic message fanned out to subscription queue "audit", and that copy moved
    # as it is into "orders", which subscribes to nothing
    for queue in ("audit", "orders"):
        broker.put_queue(P, queue, QueueSettings())
    topics.subscribe(P, "shop.>", "audit", SubscriptionSettings(queue="audit"))
    topics.publish(P, "shop.paid", NewMessage(body=b"card 4111"))
    [published] = _published(aws)
    topics.fan_out(published)
    [copy] = [i for i in raw_items("audit") if str(i["sk"]).startswith("M#")]
    _put_raw(aws, dict(copy, pk="Q#orders", vq="orders"))
    # When consumers of both queues receive
    in_orders = broker.receive(P, "orders")
    in_audit = broker.receive(P, "audit")
    # Then only the subscription's queue delivers it
    assert in_orders == []
    assert str(_dead_letters(raw_items, "orders.dlq")[0]["dl_reason"]).startswith("integrity")
    assert [(d.body, d.origin) for d in in_audit] == [(b"card 4111", "shop.paid")]


def test_a_queue_message_copied_raw_into_a_topic_is_fanned_out_to_no_one(
    broker: QueueService, topics: TopicService, raw_items: RawItems, aws: Any
) -> None:
    # Given a subscription of "audit" to topic "orders", and a message of queue "orders"
    # copied as it is into the topic's partition
    broker.put_queue(P, "audit", QueueSettings())
    topics.subscribe(P, "orders", "audit", SubscriptionSettings(queue="audit"))
    broker.send(P, "orders", NewMessage(body=b"not published"))
    [item] = [i for i in raw_items("orders") if str(i["sk"]).startswith("M#")]
    forged = dict(item, pk="T#orders")
    _put_raw(aws, forged)
    # When the dispatch function handles it
    report = topics.fan_out(forged)
    # Then it reaches no subscription
    assert (report.delivered, broker.receive(P, "audit")) == (0, [])


def test_messages_the_broker_moves_are_delivered_wherever_they_go(
    broker: QueueService, topics: TopicService, clock: ManualClock, aws: Any
) -> None:
    # Given a message fanned out from a topic to a subscription queue with one delivery
    broker.put_queue(P, "audit", QueueSettings(visibility_timeout=10, max_receive_count=1))
    broker.put_queue(P, "archive", QueueSettings())
    topics.subscribe(P, "shop.>", "audit", SubscriptionSettings(queue="audit"))
    headers = {"attributes": {"k": "v"}, "correlation_id": "c-1", "content_type": "text/plain"}
    topics.publish(P, "shop.paid", NewMessage(body=b"paid", **headers))
    [published] = _published(aws)
    topics.fan_out(published)
    # When it fails its delivery (dead letter), is redriven, then copied to another queue
    [first] = broker.receive(P, "audit")
    clock.advance(11)
    assert broker.receive(P, "audit") == []
    [dead] = broker.receive(P, "audit.dlq", visibility_timeout=0)
    assert broker.redrive(P, "audit.dlq").moved == 1
    [back] = broker.receive(P, "audit", visibility_timeout=0)
    broker.move_message(P, "audit", back.message_id, to="archive", copy=True)
    [copied] = broker.receive(P, "archive")
    # Then every stop delivered the same message, headers and origin intact
    seen = [first, dead, back, copied]
    assert {(d.message_id, d.body, d.origin) for d in seen} == {
        (first.message_id, b"paid", "shop.paid")
    }
    assert {(tuple(d.attributes.items()), d.correlation_id, d.content_type) for d in seen} == {
        ((("k", "v"),), "c-1", "text/plain")
    }


def test_a_tampered_message_cannot_be_moved_and_stays_where_it_is(
    broker: QueueService, tamper: Tamper
) -> None:
    # Given a message whose sealed body was altered in the table
    sent = broker.send(P, "orders", NewMessage(body=b"pay 10 EUR to alice"))
    tamper("orders", "body")
    # When an operator moves it to another queue / Then it is refused, saying why
    with pytest.raises(Conflict, match="integrity"):
        broker.move_message(P, "orders", sent.message_id, to="archive")
    # And it is still where it was (to be inspected or deleted), the target untouched
    [kept], _ = broker.browse(P, "orders")
    assert (kept.message_id, kept.body) == (sent.message_id, None)
    assert broker.browse(P, "archive")[0] == []


def test_redrive_leaves_an_unreadable_dead_letter_in_place_and_says_why(
    broker: QueueService, tamper: Tamper, clock: ManualClock
) -> None:
    # Given a tampered message that delivery dead-lettered, and a genuine dead letter
    broker.put_queue(P, "orders", QueueSettings(visibility_timeout=10, max_receive_count=1))
    bad = broker.send(P, "orders", NewMessage(body=b"tampered"))
    tamper("orders", "body", message_id=bad.message_id)
    assert broker.receive(P, "orders") == []
    good = broker.send(P, "orders", NewMessage(body=b"genuine"))
    assert [d.body for d in broker.receive(P, "orders")] == [b"genuine"]
    clock.advance(11)
    assert broker.receive(P, "orders") == []
    # When the dead-letter queue is redriven
    result = broker.redrive(P, "orders.dlq")
    # Then the genuine one goes back and is delivered; the tampered one stays, with a reason
    assert result.moved == 1
    [failure] = result.failed
    assert (failure.id, failure.message.startswith("integrity")) == (bad.message_id, True)
    [left], _ = broker.browse(P, "orders.dlq")
    assert left.message_id == bad.message_id
    assert [d.message_id for d in broker.receive(P, "orders")] == [good.message_id]
