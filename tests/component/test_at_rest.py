"""What the tables (and so their streams and backups) hold of a message: ciphertext for
everything its sender wrote, and no hash that would let a guessed body be confirmed."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
import pytest

from mqless import assembly, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.domain.topics.subscription import SubscriptionSettings
from mqless.storage.destinations import QueueRegistry
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from tests.component.conftest import Aws
from tests.lambda_support import websocket_event

P = ANONYMOUS
# What a sender writes, each easy to spot in a dump of the tables.
SECRETS = {
    "body": "body-9e1c",
    "attribute name": "attr-name-9e1c",
    "attribute value": "attr-value-9e1c",
    "content type": "application/x-9e1c",
    "correlation id": "corr-9e1c",
    "reply-to": "reply-9e1c",
    "dedup id": "dedup-9e1c",
}


def _message(**fields: Any) -> NewMessage:
    return NewMessage(
        body=SECRETS["body"].encode(),
        attributes={SECRETS["attribute name"]: SECRETS["attribute value"]},
        content_type=SECRETS["content type"],
        correlation_id=SECRETS["correlation id"],
        reply_to=SECRETS["reply-to"],
        **fields,
    )


def _dump(aws: Aws) -> str:
    """Every item of both tables, keys and values, as someone reading a backup sees them,
    and every image their streams carry (those hold what was written, even if it is gone)."""
    items: list[Any] = []
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    for table in (aws.settings.messages_table, aws.settings.destinations_table):
        for page in aws.dynamodb.get_paginator("scan").paginate(TableName=table):
            items.extend(page["Items"])
        stream_arn = aws.dynamodb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
        if stream_arn is None:
            continue
        description = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            iterator: str | None = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = streams.get_records(ShardIterator=iterator)
                items.extend(r["dynamodb"] for r in page["Records"])
                iterator = page.get("NextShardIterator") if page["Records"] else None
    return repr(items)


def _found(dump: str, secrets: dict[str, str]) -> list[str]:
    return [what for what, text in secrets.items() if text in dump]


@pytest.fixture
def topics(aws: Aws, clock: ManualClock) -> TopicService:
    return assembly.topic_service_over(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        clock=clock,
    )


def test_stored_messages_hold_their_headers_only_as_ciphertext(
    broker: QueueService, topics: TopicService, clock: ManualClock, aws: Aws
) -> None:
    # Given a message with every header on a standard queue, one on a FIFO queue with a
    # dedup id, one published to a topic and indexed for a durable subscription, a batch of
    # two (one log item), one dead-lettered, and one redriven and moved on from there
    broker.send(P, "orders", _message())
    broker.send(P, "jobs.fifo", _message(group_id="g", dedup_id=SECRETS["dedup id"]))
    broker.put_queue(P, "audit", QueueSettings())
    topics.subscribe(P, "shop.>", "audit", SubscriptionSettings(queue="audit"))
    topics.publish(P, "shop.paid", _message())
    broker.send_batch(P, "batched", [("a", _message()), ("b", _message())])
    for queue in ("fragile", "moving"):
        broker.put_queue(P, queue, QueueSettings(visibility_timeout=10, max_receive_count=1))
        broker.send(P, queue, _message())
        broker.receive(P, queue)
    clock.advance(11)
    broker.sweep()
    broker.redrive(P, "moving.dlq")
    [moving], _ = broker.browse(P, "moving")
    broker.move_message(P, "moving", moving.message_id, to="archive")
    # When someone reads the tables, and their streams, as they are stored
    dump = _dump(aws)
    # Then no body, attribute, content type, correlation id, reply-to or dedup id is there
    assert _found(dump, SECRETS) == []
    # (and the messages are all there: in their queues, the subscription, the batch, the
    # dead-letter queue and where the moved one went)
    queues = ("orders", "jobs.fifo", "audit", "batched", "fragile.dlq", "archive")
    browsed = {q: broker.browse(P, q)[0] for q in queues}
    assert {q: len(found) for q, found in browsed.items()} == {
        "orders": 1,
        "jobs.fifo": 1,
        "audit": 1,
        "batched": 2,
        "fragile.dlq": 1,
        "archive": 1,
    }
    expected = (SECRETS["body"], _message().attributes, SECRETS["correlation id"])
    assert {
        (m.body, tuple(m.attributes.items()), m.correlation_id)
        for found in browsed.values()
        for m in found
    } == {(expected[0], tuple(expected[1].items()), expected[2])}


def test_fifo_content_dedup_stores_no_hash_of_the_body_and_still_dedups(
    broker: QueueService, aws: Aws
) -> None:
    # Given a FIFO message with a guessable body and no dedup id
    first = broker.send(P, "votes.fifo", NewMessage(body=b"yes", group_id="g"))
    # When the same body is sent again within the dedup window
    again = broker.send(P, "votes.fifo", NewMessage(body=b"yes", group_id="g"))
    # Then it is a duplicate of the first, as before
    assert (again.duplicate, again.message_id) == (True, first.message_id)
    # And the tables hold no SHA-256 of the body (hex, as the dedup id was), keys included
    digest = hashlib.sha256(b"yes").hexdigest()
    assert digest not in _dump(aws)
    # And the consumer still sees the body's SHA-256 as the message's dedup id
    [delivery] = broker.receive(P, "votes.fifo")
    assert delivery.dedup_id == digest


def test_held_stomp_sends_keep_their_headers_sealed_until_commit(
    sessions: Sessions, broker: QueueService, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a STOMP client that sends inside a transaction, with headers of its own
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)

    def say(command: str, body: str = "", **headers: str) -> None:
        lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
        frame = "\n".join(lines) + "\n\n" + body + "\x00"
        handle_event(websocket_event("MESSAGE", "c1", frame))

    handle_event(websocket_event("CONNECT", "c1", **{"Sec-WebSocket-Protocol": "v12.stomp"}))
    say("CONNECT", **{"accept-version": "1.2", "host": "/"})
    say("BEGIN", transaction="t")
    say(
        "SEND",
        SECRETS["body"],
        destination="/queue/held",
        transaction="t",
        **{
            SECRETS["attribute name"]: SECRETS["attribute value"],
            "content-type": SECRETS["content type"],
            "correlation-id": SECRETS["correlation id"],
            "reply-to": SECRETS["reply-to"],
        },
    )
    # When the held frame is stored
    held = _dump(aws)
    say("COMMIT", transaction="t")
    # Then none of what the client wrote is in the tables in the clear
    assert _found(held, SECRETS) == []
    # And COMMIT sends the message with every header
    [delivery] = broker.receive(P, "held")
    assert delivery.attributes == {SECRETS["attribute name"]: SECRETS["attribute value"]}
    assert (delivery.content_type, delivery.correlation_id, delivery.reply_to) == (
        SECRETS["content type"],
        SECRETS["correlation id"],
        SECRETS["reply-to"],
    )
