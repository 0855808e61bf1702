"""Tampered or forged items in the table are detected, never delivered, and never laundered.

Someone who can write the messages table (but not use the KMS key or know the stack's
secret) can alter, swap or copy items. In storage engine v2 (docs/storage-engine.md) that
means log items (`L#<queue>#<shard>`, `T#<topic>#<shard>`: sealed bodies), the data keys
they name (`K#<destination>`), and references: index segments (`I#`), FIFO segments
(`F#`) and reference items (`f` lists in a log). Every body is sealed for the log that
holds it and its message id, so an altered or copied body fails authentication where it
is read and is dead-lettered `integrity: …`. Every reference carries a MAC of the queue it
is in (`refs.py`), so a pointer written into another queue's index or log opens nothing:
it is dropped, not dead-lettered (that would refer the body to the dead-letter queue for
real), and no operator action or sweep may turn it into a genuine reference elsewhere.
Meanwhile every move the broker itself makes (durable subscription, dead letter, redrive,
move, copy) keeps working, headers and all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import Conflict
from mqless.domain.messages import NewMessage
from mqless.domain.models import BrowsedMessage, QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.domain.topics.subscription import SubscriptionSettings
from mqless.storage import keys
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import Item, from_wire, to_wire
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.storage.log import bodies_of
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH

P = ANONYMOUS
Tamper = Callable[..., Item]


@pytest.fixture
def topics(aws: Aws, clock: ManualClock) -> TopicService:
    """Topics as a publishing function instance runs them: a key cache of its own."""
    return assembly.topic_service_over(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        clock=clock,
    )


@pytest.fixture
def other_process(aws: Aws, clock: ManualClock) -> QueueService:
    """The broker in another function instance: it has written nothing, so it reads every
    data key from the table (the one that wrote a key keeps it, and its plaintext, cached)."""
    return assembly.build_queue_service(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        time=clock,
    )


def _stored(aws: Aws, prefix: str) -> list[Item]:
    """Every item of the messages table whose partition key starts with `prefix`."""
    pages = aws.dynamodb.get_paginator("scan").paginate(
        TableName=aws.settings.messages_table, ConsistentRead=True
    )
    found = [from_wire(i) for page in pages for i in page["Items"]]
    return sorted((i for i in found if str(i["pk"]).startswith(prefix)), key=lambda i: i["sk"])


def _put_raw(aws: Aws, item: Item) -> None:
    """Write an item as someone with table access (and no key) could. A log item written
    so reaches the dispatch function like any other: the stream does not know who wrote it."""
    aws.dynamodb.put_item(TableName=aws.settings.messages_table, Item=to_wire(item))


def _copy_data_key(aws: Aws, item: Item, *, to: str) -> None:
    """Copy the data key a log item names to where `to`'s log items look for theirs."""
    [key] = [k for k in _stored(aws, keys.DATA_KEYS) if k["sk"] == bytes(item["k"]).hex()]
    _put_raw(aws, dict(key, pk=keys.data_key_partition(to)))


def _dead_letters(broker: QueueService, dlq: str) -> list[BrowsedMessage]:
    """What an operator browsing the dead-letter queue sees."""
    found, _ = broker.browse(P, dlq, limit=100)
    return found


def _is_integrity(text: str | None) -> bool:
    return str(text).startswith("integrity")


# ---- altered bodies and data keys -----------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "at"),
    [("body", -1), ("body", 20), ("body", 0), ("dk", -1), ("dk", 50)],
    ids=["body-tag", "body-ciphertext", "body-version", "dk-tail", "dk-middle"],
)
def test_a_tampered_message_is_not_delivered_and_is_dead_lettered_for_integrity(
    broker: QueueService, other_process: QueueService, tamper: Tamper, attribute: str, at: int
) -> None:
    # Given a stored message one bit of whose sealed body (in its log item) or data key
    # (its K# item) was flipped
    sent = broker.send(P, "orders", NewMessage(body=b"pay 10 EUR to alice"))
    tamper("orders", attribute, at=at)
    # When a consumer served by a function instance that reads them from the table receives
    received = other_process.receive(P, "orders", max_messages=10)
    # Then nothing is delivered, and the dead-letter queue holds it with an integrity reason
    assert received == []
    [dead] = _dead_letters(other_process, "orders.dlq")
    assert (dead.message_id, dead.source_queue) == (sent.message_id, "orders")
    assert _is_integrity(dead.dead_letter_reason)
    assert other_process.get_queue(P, "orders")[1].visible == 0


@pytest.mark.parametrize("where", ["another log item", "another slot of the same item"])
def test_a_body_moved_onto_another_message_is_detected(
    broker: QueueService, aws: Aws, where: str
) -> None:
    # Given two messages (sent apart: two log items; sent in one batch: two slots of one
    # item), and the first's sealed body copied onto the second
    if where == "another log item":
        first = broker.send(P, "orders", NewMessage(body=b"pay 10 EUR to alice"))
        second = broker.send(P, "orders", NewMessage(body=b"pay 99 EUR to mallory"))
    else:
        done, _ = broker.send_batch(
            P,
            "orders",
            [("a", NewMessage(body=b"pay 10 EUR to alice")), ("b", NewMessage(body=b"pay 99"))],
        )
        (_, first), (_, second) = done
    logs = {i["sk"]: i for i in _stored(aws, "L#orders#")}
    source_item, source_slot = keys.locate(first.message_id)
    target_item, target_slot = keys.locate(second.message_id)
    target = logs[target_item]
    bodies = list(bodies_of(target))
    bodies[target_slot] = bodies_of(logs[source_item])[source_slot]
    stored = bodies if len(bodies) > 1 else bodies[0]  # a lone body is `b` itself
    _put_raw(aws, dict(target, b=stored, k=logs[source_item]["k"]))
    # When a consumer receives everything
    received = broker.receive(P, "orders", max_messages=10)
    # Then only the genuine first message is delivered; the swapped one is dead-lettered
    assert [(d.message_id, d.body) for d in received] == [
        (first.message_id, b"pay 10 EUR to alice")
    ]
    [dead] = _dead_letters(broker, "orders.dlq")
    assert dead.message_id == second.message_id
    assert _is_integrity(dead.dead_letter_reason)


def test_a_tampered_message_does_not_block_the_others(broker: QueueService, tamper: Tamper) -> None:
    # Given three messages, the middle one tampered with
    ids = [broker.send(P, "orders", NewMessage(body=f"m{i}".encode())).message_id for i in "012"]
    tamper("orders", "body", message_id=ids[1])
    # When a consumer asks for ten
    received = broker.receive(P, "orders", max_messages=10)
    # Then the two genuine ones are delivered in that same call
    assert sorted(d.body for d in received) == [b"m0", b"m2"]


def test_a_tampered_fifo_head_is_dead_lettered_and_the_group_moves_on(
    broker: QueueService, tamper: Tamper
) -> None:
    # Given a FIFO group whose head was tampered with
    head = broker.send(P, "jobs.fifo", NewMessage(body=b"first", group_id="g")).message_id
    broker.send(P, "jobs.fifo", NewMessage(body=b"second", group_id="g"))
    tamper("jobs.fifo", "body", message_id=head)
    # When a consumer receives
    received = broker.receive(P, "jobs.fifo", max_messages=10)
    # Then the second message is delivered and the head is in the FIFO dead-letter queue
    assert [d.body for d in received] == [b"second"]
    [dead] = _dead_letters(broker, "jobs.dlq.fifo")
    assert (dead.message_id, dead.group_id, dead.source_queue) == (head, "g", "jobs.fifo")
    assert _is_integrity(dead.dead_letter_reason)


# ---- log items copied where they do not belong ----------------------------------------------

# An item copied "as it is" keeps naming its data key by id; the K# item that holds that key
# is under the destination it was sealed for, so the copy's key is missing where it lands.
# Copying the key along too is all else someone without KMS can do.
COPIES = ["item only", "item and its data key"]


@pytest.mark.parametrize("copied", COPIES)
def test_a_log_item_copied_into_another_queues_log_is_not_delivered_there(
    broker: QueueService, aws: Aws, copied: str
) -> None:
    # Given a message of "payroll" copied as it is (id and all) into the log of "orders",
    # which holds a genuine message of its own (the dispatch function indexes the copy
    # there: the stream cannot tell who wrote it)
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data", attributes={"k": "v"}))
    broker.put_queue(P, "orders", QueueSettings())
    genuine = broker.send(P, "orders", NewMessage(body=b"an order"))
    [item] = _stored(aws, "L#payroll#")
    if copied == "item and its data key":
        _copy_data_key(aws, item, to="/queue/orders")
    _put_raw(aws, dict(item, pk=keys.queue_log("orders", 0)))
    # When an operator browses "orders" and a consumer of "orders" receives
    browsed, _ = broker.browse(P, "orders")
    received = broker.receive(P, "orders", max_messages=10)
    # Then the copy is unreadable there and is dead-lettered for integrity, not delivered,
    # and the queue's own message is delivered as usual
    by_id = {m.message_id: m for m in browsed}
    assert (by_id[sent.message_id].body, _is_integrity(by_id[sent.message_id].error)) == (
        None,
        True,
    )
    assert [(d.message_id, d.body) for d in received] == [(genuine.message_id, b"an order")]
    [dead] = _dead_letters(broker, "orders.dlq")
    assert (dead.message_id, dead.body, _is_integrity(dead.dead_letter_reason)) == (
        sent.message_id,
        None,
        True,
    )
    # And the original is still delivered on its own queue, headers intact
    [original] = broker.receive(P, "payroll")
    assert (original.body, original.attributes) == (b"salary data", {"k": "v"})


@pytest.mark.parametrize("copied", COPIES)
def test_a_topic_message_copied_into_a_queue_of_the_same_name_is_not_delivered(
    broker: QueueService, topics: TopicService, aws: Aws, copied: str
) -> None:
    # Given a message published to topic "orders" and copied as it is into queue "orders"
    broker.put_queue(P, "orders", QueueSettings())
    topics.publish(P, "orders", NewMessage(body=b"for the topic's subscribers only"))
    [item] = _stored(aws, "T#orders#")
    if copied == "item and its data key":
        _copy_data_key(aws, item, to="/queue/orders")
    _put_raw(aws, dict(item, pk=keys.queue_log("orders", 0)))
    # When a consumer of queue "orders" receives
    received = broker.receive(P, "orders")
    # Then nothing is delivered: the copy is dead-lettered for integrity
    assert received == []
    [dead] = _dead_letters(broker, "orders.dlq")
    assert _is_integrity(dead.dead_letter_reason)


@pytest.mark.parametrize("copied", COPIES)
def test_a_queue_message_copied_into_a_topics_log_is_fanned_out_to_no_one(
    broker: QueueService, topics: TopicService, aws: Aws, copied: str
) -> None:
    # Given a subscription of "audit" to topic "orders", a message of queue "orders" copied
    # as it is into the topic's log, and a genuine publish to the topic after it
    broker.put_queue(P, "audit", QueueSettings())
    topics.subscribe(P, "orders", "audit", SubscriptionSettings(queue="audit"))
    broker.send(P, "orders", NewMessage(body=b"not published"))
    [item] = _stored(aws, "L#orders#")
    forged = dict(item, pk=keys.topic_log("orders", 0))
    with INLINE_DISPATCH.paused():
        if copied == "item and its data key":
            _copy_data_key(aws, item, to="/topic/orders")
        _put_raw(aws, forged)
        topics.publish(P, "orders", NewMessage(body=b"published"))
    [published] = [i for i in _stored(aws, "T#orders#") if i["sk"] != forged["sk"]]
    # When the dispatch function indexes both in one stream batch
    INLINE_DISPATCH.index_table(aws.settings.messages_table, [forged, published])
    # Then the copy reaches no subscription, and the batch's genuine message still does
    assert [d.body for d in broker.receive(P, "audit", max_messages=10)] == [b"published"]


# ---- forged references ----------------------------------------------------------------------


def _forge_segment(aws: Aws, source_queue: str, *, into: str, **changes: Any) -> str:
    """Copy `source_queue`'s index segment (pointing at its real body) into `into`'s index
    shard 0, after any segment there; returns the message id it points at."""
    [segment] = _stored(aws, f"I#{source_queue}#")
    taken = [s["sk"] for s in _stored(aws, keys.index_partition(into, 0))]
    seq = len([sk for sk in taken if str(sk).startswith(keys.SEGMENT)])
    _put_raw(
        aws,
        {**segment, "pk": keys.index_partition(into, 0), "sk": keys.segment_key(seq), **changes},
    )
    log_index, item_id, slot, _ = str(segment["r"][0]).split(".")
    assert log_index == "0"
    return keys.message_id(item_id, int(slot))


def test_a_reference_written_into_another_queues_index_is_not_delivered(
    broker: QueueService, aws: Aws
) -> None:
    # Given a message of "payroll", and its index entry (a pointer at its body, with the
    # MAC it carries in payroll's index) copied into the index of "orders"
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data"))
    broker.put_queue(P, "orders", QueueSettings())
    genuine = broker.send(P, "orders", NewMessage(body=b"an order"))
    forged = _forge_segment(aws, "payroll", into="orders")
    assert forged == sent.message_id
    # When an operator browses "orders" and a consumer of "orders" receives
    browsed, _ = broker.browse(P, "orders")
    received = broker.receive(P, "orders", max_messages=10)
    # Then the pointer opens nothing: browsed as unreadable, not delivered, and not
    # dead-lettered either (that would give the body a genuine reference elsewhere)
    by_id = {m.message_id: m for m in browsed}
    assert (by_id[forged].body, _is_integrity(by_id[forged].error)) == (None, True)
    assert [d.body for d in received] == [b"an order"]
    assert received[0].message_id == genuine.message_id
    assert broker.receive(P, "orders", max_messages=10) == []
    assert _dead_letters(broker, "orders.dlq") == []
    # And payroll's consumer still gets its message
    assert [d.body for d in broker.receive(P, "payroll")] == [b"salary data"]


@pytest.mark.parametrize("mac", ["no MAC", "a MAC of another queue"])
def test_a_reference_item_written_into_a_queues_log_is_not_indexed_there(
    broker: QueueService, aws: Aws, clock: ManualClock, mac: str
) -> None:
    # Given a message of "payroll" dead-lettered into "payroll.dlq" (a genuine reference
    # item there, its MAC for payroll.dlq), and a reference item pointing at the same body
    # written into the log of "orders": made up, or that genuine one copied as it is
    broker.put_queue(P, "payroll", QueueSettings(visibility_timeout=10, max_receive_count=1))
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data"))
    assert len(broker.receive(P, "payroll")) == 1
    clock.advance(11)
    assert broker.sweep().dead_lettered == 1
    [genuine] = _stored(aws, "L#payroll.dlq#")
    broker.put_queue(P, "orders", QueueSettings())
    if mac == "no MAC":
        item_id, slot = keys.locate(sent.message_id)
        [[log, *_]] = genuine["f"]
        forged = {
            "pk": keys.queue_log("orders", 0),
            "sk": keys.new_item_id(clock.now_ms()),
            "f": [[log, item_id, slot, 0, "", ""]],
            "x": genuine["x"],
        }
    else:
        forged = dict(genuine, pk=keys.queue_log("orders", 0))
    # When the dispatch function indexes it (the stream hands it over like any log item)
    _put_raw(aws, forged)
    # Then "orders" holds nothing to browse or receive, and no dead letter
    assert broker.browse(P, "orders") == ([], None)
    assert broker.receive(P, "orders") == []
    assert _dead_letters(broker, "orders.dlq") == []
    # And the genuine dead letter is still where the broker put it
    assert [d.body for d in broker.receive(P, "payroll.dlq")] == [b"salary data"]


@pytest.mark.parametrize("kind", ["standard", "fifo"])
def test_a_forged_reference_over_the_receive_limit_is_not_dead_lettered_by_the_sweeper(
    broker: QueueService, aws: Aws, kind: str
) -> None:
    # Given a message of "payroll", and a pointer at its body written into the index (or
    # FIFO segments) of "orders" with a receive count past orders' limit of 3
    fifo = ".fifo" if kind == "fifo" else ""
    source, queue = f"payroll{fifo}", f"orders{fifo}"
    broker.send(P, source, NewMessage(body=b"salary data", group_id="g" if fifo else None))
    broker.put_queue(P, queue, QueueSettings(max_receive_count=3))
    if fifo:
        # the source's FIFO segment, its reference naming payroll's log shard outright
        [segment] = [i for i in _stored(aws, f"F#{source}#") if str(i["sk"]) != keys.CURSOR]
        where, rest = str(segment["r"][0]).split(".", 1)
        logs = [keys.queue_log(source, int(where.removeprefix("q")))]
        into = {"pk": keys.fifo_partition(queue, 0), "sk": keys.segment_key(0)}
        _put_raw(aws, {**segment, **into, "l": logs, "r": [f"0.{rest}"], "n": [7]})
    else:
        _forge_segment(aws, source, into=queue, n=[7])
    # When the sweeper runs (it dead-letters over-limit messages without waiting for a
    # consumer)
    report = broker.sweep()
    # Then it does not refer the body to orders' dead-letter queue: nothing there to read
    dlq = f"orders.dlq{fifo}"
    assert report.dead_lettered == 0
    assert broker.receive(P, dlq, max_messages=10) == []
    assert broker.receive(P, queue, max_messages=10) == []


def test_a_forged_reference_in_a_dead_letter_queue_is_not_redriven(
    broker: QueueService, aws: Aws
) -> None:
    # Given a message of "payroll", and a pointer at its body written into the index of
    # "orders.dlq" as if "orders" had dead-lettered it
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data"))
    broker.put_queue(P, "orders", QueueSettings())
    broker.put_queue(P, "orders.dlq", QueueSettings(max_receive_count=None))
    _forge_segment(aws, "payroll", into="orders.dlq", w=["orders\nprocessing failed"])
    # When an operator redrives the dead-letter queue back to its sources
    result = broker.redrive(P, "orders.dlq")
    # Then nothing moves, the forged entry is reported, and "orders" has nothing to deliver
    assert result.moved == 0
    assert [(f.id, _is_integrity(f.message)) for f in result.failed] == [(sent.message_id, True)]
    assert broker.receive(P, "orders", max_messages=10) == []


@pytest.mark.parametrize("copy", [False, True], ids=["move", "copy"])
def test_a_forged_reference_cannot_be_moved_or_copied(
    broker: QueueService, aws: Aws, copy: bool
) -> None:
    # Given a message of "payroll", and a pointer at its body written into the index of
    # "orders"
    sent = broker.send(P, "payroll", NewMessage(body=b"salary data"))
    broker.put_queue(P, "orders", QueueSettings())
    forged = _forge_segment(aws, "payroll", into="orders")
    # When an operator of "orders" moves (or copies) it to "archive" / Then it is refused,
    # saying why, as an unreadable message is
    with pytest.raises(Conflict, match="integrity"):
        broker.move_message(P, "orders", forged, to="archive", copy=copy)
    # And "archive" has nothing to deliver, while payroll's message is where it was
    assert broker.receive(P, "archive", max_messages=10) == []
    assert [d.message_id for d in broker.receive(P, "payroll")] == [sent.message_id]


# ---- what the broker moves keeps working ----------------------------------------------------


def test_messages_the_broker_moves_are_delivered_wherever_they_go(
    broker: QueueService, other_process: QueueService, topics: TopicService, clock: ManualClock
) -> None:
    # Given a message published to a topic, delivered by a durable subscription to a queue
    # that dead-letters after one delivery
    broker.put_queue(P, "audit", QueueSettings(visibility_timeout=10, max_receive_count=1))
    topics.subscribe(P, "shop.>", "audit", SubscriptionSettings(queue="audit"))
    headers = {
        "attributes": {"k": "v"},
        "correlation_id": "c-1",
        "content_type": "text/plain",
        "reply_to": "/queue/answers",
    }
    topics.publish(P, "shop.paid", NewMessage(body=b"paid", **headers))
    # When it fails its delivery (dead letter), is redriven, copied to another queue, and
    # moved on from there (each a reference to the one body the publish wrote)
    [first] = broker.receive(P, "audit")
    clock.advance(11)
    assert broker.receive(P, "audit") == []
    [dead] = broker.receive(P, "audit.dlq", visibility_timeout=0)
    assert broker.redrive(P, "audit.dlq").moved == 1
    [back] = broker.receive(P, "audit", visibility_timeout=0)
    broker.move_message(P, "audit", back.message_id, to="archive", copy=True)
    [copied] = broker.receive(P, "archive", visibility_timeout=0)
    broker.move_message(P, "archive", copied.message_id, to="final")
    # ... and a function instance that never saw it receives it at its last stop
    [moved] = other_process.receive(P, "final")
    # Then every stop delivered the same message, headers and origin intact
    seen = [first, dead, back, copied, moved]
    assert {(d.message_id, d.body, d.origin) for d in seen} == {
        (first.message_id, b"paid", "shop.paid")
    }
    assert {
        (tuple(d.attributes.items()), d.correlation_id, d.content_type, d.reply_to) for d in seen
    } == {((("k", "v"),), "c-1", "text/plain", "/queue/answers")}
    assert (dead.source_queue, dead.dead_letter_reason) == (
        "audit",
        "max_receive_count exceeded (1 deliveries)",
    )


def test_a_fifo_message_the_broker_moves_keeps_its_group_and_headers(
    broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO message that fails its one delivery and is redriven
    broker.put_queue(P, "jobs.fifo", QueueSettings(visibility_timeout=10, max_receive_count=1))
    sent = broker.send(
        P, "jobs.fifo", NewMessage(body=b"job", group_id="g", attributes={"k": "v"}, dedup_id="d")
    )
    broker.receive(P, "jobs.fifo")
    clock.advance(11)
    assert broker.sweep().dead_lettered == 1
    [dead] = broker.receive(P, "jobs.dlq.fifo", visibility_timeout=0)
    assert broker.redrive(P, "jobs.dlq.fifo").moved == 1
    # When it is received back on its queue
    [back] = broker.receive(P, "jobs.fifo")
    # Then both stops delivered it with its id, group, dedup id and attributes
    assert {(d.message_id, d.body, d.group_id, d.dedup_id) for d in (dead, back)} == {
        (sent.message_id, b"job", "g", "d")
    }
    assert dead.attributes == back.attributes == {"k": "v"}


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
