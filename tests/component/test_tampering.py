"""Tampered ciphertext in the table is detected, never delivered, and dead-lettered as such."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqless.dynamo import Item, to_wire
from mqless.models import NewMessage, QueueSettings
from mqless.principals import ANONYMOUS
from mqless.queues import QueueService

P = ANONYMOUS
RawItems = Callable[[str], list[Item]]
Tamper = Callable[..., Item]


def _dead_letters(raw_items: RawItems, dlq: str) -> list[Item]:
    return [i for i in raw_items(dlq) if str(i["sk"]).startswith("M#")]


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
