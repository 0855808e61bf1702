"""Topics: a publish is written once, into the topic's log; the dispatch function refers it to
durable subscriptions' queues (topic or pattern -> queue, with an attribute filter).

In these tests the dispatch function indexes what is written at once (tests/inline_dispatch.py),
except where a test pauses it to feed the dispatch function itself."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mqless import assembly, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import InvalidRequest, QueueNotFound
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.indexing import Indexer
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.domain.topics.subscription import SubscriptionSettings
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import from_wire, to_wire
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.transports.dispatch import handle_batch
from mqless.transports.websocket.sessions import Sessions
from mqless_cli.billing import Meter, observing_moto
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH
from tests.lambda_support import FakeLambdaContext


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


def _b64(value: object) -> str:
    assert isinstance(value, bytes)
    return base64.b64encode(value).decode()


def _published(aws: Aws) -> list[dict[str, Any]]:
    """The topic log items in the table, as the stream's NewImage would carry them."""
    page = aws.dynamodb.scan(
        TableName=aws.settings.messages_table,
        FilterExpression="begins_with(pk, :t)",
        ExpressionAttributeValues=to_wire({":t": "T#"}),
    )
    return [from_wire(i) for i in page["Items"]]


def _indexer(aws: Aws, topics: TopicService, clock: ManualClock) -> Indexer:
    """The dispatch function's indexer, over the test's tables."""
    return assembly.build_indexer(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        topics=topics,
        time=clock,
    )


def _bodies(broker: QueueService, queue: str) -> list[bytes]:
    got = broker.receive(ANONYMOUS, queue, max_messages=10)
    return sorted(d.body for d in got)


def test_publish_writes_once_whatever_the_number_of_subscriptions(
    topics: TopicService, broker: QueueService, aws: Aws
) -> None:
    # Given three durable subscriptions on one topic (and its data key made already)
    for name in ("a", "b", "c"):
        broker.put_queue(ANONYMOUS, name, QueueSettings())
        topics.subscribe(ANONYMOUS, "orders.created", name, SubscriptionSettings(queue=name))
    topics.publish(ANONYMOUS, "orders.created", NewMessage(body=b"warm-up"))

    # When a message is published (before the dispatch function runs)
    meter = Meter()
    with observing_moto(meter), INLINE_DISPATCH.paused():
        topics.publish(ANONYMOUS, "orders.created", NewMessage(body=b"hello"))

    # Then the publish itself is a single write: one log item, whatever the subscriptions
    usage = meter.usage()
    assert usage.count("dynamodb") == usage.count("dynamodb", "PutItem") == 1
    assert len(_published(aws)) == 2


def test_a_publish_reaches_every_matching_subscription_with_wildcards(
    topics: TopicService, broker: QueueService, aws: Aws
) -> None:
    # Given subscriptions on orders.>, orders.* and users.>, each feeding its own queue
    for queue, pattern in (("all", "orders.>"), ("created", "orders.*"), ("other", "users.>")):
        broker.put_queue(ANONYMOUS, queue, QueueSettings())
        topics.subscribe(ANONYMOUS, pattern, queue, SubscriptionSettings(queue=queue))

    # When a message with an attribute is published to orders.created
    topics.publish(ANONYMOUS, "orders.created", NewMessage(body=b"o1", attributes={"k": "v"}))

    # Then the orders.> and orders.* queues get it, attribute included, and the users.> queue
    # nothing
    all_ = broker.receive(ANONYMOUS, "all")
    assert [d.body for d in all_] == [b"o1"]
    assert all_[0].attributes == {"k": "v"}
    assert _bodies(broker, "created") == [b"o1"]
    assert _bodies(broker, "other") == []


def test_filter_policy_keeps_only_matching_messages(
    topics: TopicService, broker: QueueService, aws: Aws
) -> None:
    # Given a subscription whose filter policy keeps region=eu
    broker.put_queue(ANONYMOUS, "eu", QueueSettings())
    topics.subscribe(
        ANONYMOUS,
        "orders.created",
        "eu",
        SubscriptionSettings(queue="eu", filter_policy={"region": ["eu"]}),
    )

    # When a message for eu and one for us are published
    topics.publish(ANONYMOUS, "orders.created", NewMessage(body=b"eu", attributes={"region": "eu"}))
    topics.publish(ANONYMOUS, "orders.created", NewMessage(body=b"us", attributes={"region": "us"}))

    # Then its queue gets the eu one only
    assert _bodies(broker, "eu") == [b"eu"]


def test_a_retried_stream_batch_delivers_once_per_subscription(
    topics: TopicService, broker: QueueService, aws: Aws, clock: ManualClock
) -> None:
    # Given a subscription, and a message published to its topic, not yet indexed
    broker.put_queue(ANONYMOUS, "once", QueueSettings())
    topics.subscribe(ANONYMOUS, "t.x", "once", SubscriptionSettings(queue="once"))
    with INLINE_DISPATCH.paused():
        topics.publish(ANONYMOUS, "t.x", NewMessage(body=b"m"))

    # When the same stream records are indexed twice (Lambda retried the batch)
    indexer = _indexer(aws, topics, clock)
    first = indexer.index(_published(aws))
    again = indexer.index(_published(aws))

    # Then the subscription's queue got it once
    assert (first.appended, again.appended, again.duplicates) == (1, 0, 1)
    assert _bodies(broker, "once") == [b"m"]


def test_dispatch_handler_takes_a_lambda_stream_batch(
    topics: TopicService,
    broker: QueueService,
    aws: Aws,
    sessions: Sessions,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the dispatch function wired to these services, and a message published to a
    # subscription, not yet indexed, as a stream record beside an index write's
    monkeypatch.setattr(wiring, "topic_service", lambda: topics)
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)
    indexer = _indexer(aws, topics, clock)
    monkeypatch.setattr(wiring, "indexer", lambda: indexer)
    broker.put_queue(ANONYMOUS, "handler", QueueSettings())
    topics.subscribe(ANONYMOUS, "t.y", "handler", SubscriptionSettings(queue="handler"))
    with INLINE_DISPATCH.paused():
        topics.publish(ANONYMOUS, "t.y", NewMessage(body=b"via stream"))
    [item] = _published(aws)
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
        "dynamodb": {
            "Keys": to_wire({"pk": item["pk"], "sk": item["sk"]}),
            "NewImage": to_wire(item),
            "SequenceNumber": "100",
            "SizeBytes": 100,
            "StreamViewType": "NEW_IMAGE",
        },
    }
    index_record = {  # an index write: not the dispatch function's business
        **record,
        "eventID": "2",
        "dynamodb": {
            **record["dynamodb"],
            "Keys": to_wire({"pk": "I#handler#0", "sk": "S#0000000000"}),
            "SequenceNumber": "101",
        },
    }

    # When the dispatch handler gets both records in one batch
    # Lambda hands the records over as JSON: binary attributes arrive as base64 text
    event = json.loads(json.dumps({"Records": [record, index_record]}, default=_b64))
    response = handle_batch(event, FakeLambdaContext())

    # Then no record failed, and the subscription's queue got the message
    assert response == {"batchItemFailures": []}
    assert _bodies(broker, "handler") == [b"via stream"]


def test_subscriptions_are_listed_replaced_and_deleted(
    topics: TopicService, broker: QueueService
) -> None:
    # Given two queues
    broker.put_queue(ANONYMOUS, "q1", QueueSettings())
    broker.put_queue(ANONYMOUS, "q2", QueueSettings())
    # When subscription s on a.> is made for q1, made again for q2, listed, and deleted
    _, created = topics.subscribe(ANONYMOUS, "a.>", "s", SubscriptionSettings(queue="q1"))
    _, created_again = topics.subscribe(ANONYMOUS, "a.>", "s", SubscriptionSettings(queue="q2"))

    listed = topics.subscriptions(ANONYMOUS, "a.>")
    topics.unsubscribe(ANONYMOUS, "a.>", "s")

    # Then the second replaced the first, the list showed it feeding q2, and then none is left
    assert (created, created_again) == (True, False)
    assert [(s.name, s.queue) for s in listed] == [("s", "q2")]
    assert topics.subscriptions(ANONYMOUS, "a.>") == []


def test_subscribing_needs_an_existing_standard_queue_and_a_valid_policy(
    topics: TopicService, broker: QueueService
) -> None:
    # Given a FIFO queue and a standard one
    broker.put_queue(ANONYMOUS, "f.fifo", QueueSettings())
    broker.put_queue(ANONYMOUS, "ok", QueueSettings())
    # When a subscription would feed a missing queue, the FIFO queue, or the standard one with a
    # filter policy that is no policy, or a pattern with > before its end
    # Then the first is queue not found, and the others invalid requests
    with pytest.raises(QueueNotFound):
        topics.subscribe(ANONYMOUS, "t", "s", SubscriptionSettings(queue="missing"))
    with pytest.raises(InvalidRequest):
        topics.subscribe(ANONYMOUS, "t", "s", SubscriptionSettings(queue="f.fifo"))
    with pytest.raises(InvalidRequest):
        topics.subscribe(
            ANONYMOUS,
            "t",
            "s",
            SubscriptionSettings(queue="ok", filter_policy={"k": [{"nope": 1}]}),
        )
    with pytest.raises(InvalidRequest):
        topics.subscribe(ANONYMOUS, "a.>.b", "s", SubscriptionSettings(queue="ok"))


def test_publishing_refuses_queue_only_fields_and_wildcards(topics: TopicService) -> None:
    # Given a message with a FIFO group id, or a topic name with a wildcard
    # When it is published
    # Then it is an invalid request
    with pytest.raises(InvalidRequest):
        topics.publish(ANONYMOUS, "t", NewMessage(body=b"x", group_id="g"))
    with pytest.raises(InvalidRequest):
        topics.publish(ANONYMOUS, "orders.*", NewMessage(body=b"x"))


def test_routing_opens_a_message_once_whatever_the_number_of_subscriptions(
    broker: QueueService, aws: Aws, clock: ManualClock
) -> None:
    # Given five subscriptions whose filter policies read the (sealed) attributes
    cipher = EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock)
    topics = assembly.topic_service_over(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=cipher,
        clock=clock,
    )
    for i, region in enumerate(["eu", "eu", "us", "eu", "ap"]):
        broker.put_queue(ANONYMOUS, f"q{i}", QueueSettings())
        topics.subscribe(
            ANONYMOUS,
            "orders.>",
            f"s{i}",
            SubscriptionSettings(queue=f"q{i}", filter_policy={"region": [region]}),
        )
    with INLINE_DISPATCH.paused():
        topics.publish(ANONYMOUS, "orders.new", NewMessage(body=b"o", attributes={"region": "eu"}))
    [item] = _published(aws)
    # When the dispatch function routes it
    opened_before = cipher.stats.decrypts
    routes = topics.routes("orders.new", item)
    # Then it was opened once, and the filters picked the three "eu" subscriptions' queues
    assert cipher.stats.decrypts - opened_before == 1
    assert sorted(queue.name for queue, _ in routes) == ["q0", "q1", "q3"]
    _indexer(aws, topics, clock).index([item])
    assert [_bodies(broker, f"q{i}") for i in range(5)] == [[b"o"], [b"o"], [], [b"o"], []]
