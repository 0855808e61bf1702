"""Replay: a durable subscription created with a `start` gets what the topic's log still
holds from then on, then what is published, in publish order per topic shard, none twice.

The dispatch function runs inline (tests/inline_dispatch.py) with its own view of the
subscriptions, as on AWS; one topic shard is used (`one_shard`) so that a queue's order is
the publish order throughout.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mqless import assembly, wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.errors import Conflict, InvalidRequest
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.domain.topics import replay
from mqless.domain.topics import service as topic_service
from mqless.domain.topics.replay import REPLAY_JOIN_MS
from mqless.domain.topics.service import TopicService
from mqless.domain.topics.subscription import SubscriptionSettings
from mqless.storage.destinations import QueueRegistry
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from tests.component.conftest import Aws, RecordingPusher
from tests.lambda_support import websocket_event

TOPIC = "news.eu"


def _topics(aws: Aws, clock: ManualClock, *, replays: bool = True) -> TopicService:
    service = assembly.topic_service_over(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=aws.settings.destinations_table,
        queues=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        clock=clock,
    )
    if replays:  # as `wiring.topic_service()` is: replays refer messages as the indexer does
        assembly.build_indexer(
            aws.settings,
            dynamodb=aws.dynamodb,
            kms=aws.kms,
            registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
            topics=service,
            time=clock,
        )
    return service


@pytest.fixture
def topics(aws: Aws, clock: ManualClock) -> TopicService:
    return _topics(aws, clock)


@pytest.fixture(autouse=True)
def one_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every publish goes to topic shard 0: one order for the whole topic."""
    monkeypatch.setattr(topic_service.random, "randrange", lambda n: 0)


def _publish(topics: TopicService, *bodies: str, **attributes: str) -> None:
    for body in bodies:
        topics.publish(ANONYMOUS, TOPIC, NewMessage(body=body.encode(), attributes=attributes))


def _drain(broker: QueueService, queue: str) -> list[str]:
    """Every message the queue delivers, in order, each acked."""
    got: list[str] = []
    while batch := broker.receive(ANONYMOUS, queue, max_messages=10):
        got += [d.body.decode() for d in batch]
        broker.ack(ANONYMOUS, queue, [d.receipt for d in batch])
    return got


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_a_subscription_from_the_oldest_gets_every_retained_message_then_live_ones_once(
    topics: TopicService, broker: QueueService, clock: ManualClock
) -> None:
    # Given messages published to a topic before a subscription existed
    broker.put_queue(ANONYMOUS, "catch-up", QueueSettings())
    _publish(topics, "m1", "m2", "m3")
    clock.advance(60)

    # When a durable subscription is created from the oldest retained message
    created, _ = topics.subscribe(
        ANONYMOUS, TOPIC, "catch-up", SubscriptionSettings(queue="catch-up", start="oldest")
    )
    # and more is published once it is live
    _publish(topics, "m4", "m5")

    # Then its queue gets every one, in publish order, none twice
    assert created.replay_from == 0 and created.replaying == {}
    assert _drain(broker, "catch-up") == ["m1", "m2", "m3", "m4", "m5"]


def test_a_replay_into_a_queue_with_priority_lanes_delivers_the_highest_first(
    topics: TopicService, broker: QueueService, clock: ManualClock
) -> None:
    # Given a low-priority and an urgent message published before a subscription existed
    broker.put_queue(ANONYMOUS, "catch-up-lanes", QueueSettings(max_priority=9))
    for body, priority in (("low", 1), ("urgent", 9)):
        topics.publish(ANONYMOUS, TOPIC, NewMessage(body=body.encode(), priority=priority))
    clock.advance(60)

    # When a durable subscription feeding a queue with priority lanes replays them
    topics.subscribe(
        ANONYMOUS,
        TOPIC,
        "catch-up-lanes",
        SubscriptionSettings(queue="catch-up-lanes", start="oldest"),
    )

    # Then the queue delivers them by priority, as it would have had they come live
    got = broker.receive(ANONYMOUS, "catch-up-lanes", max_messages=10)
    assert [(d.body, d.priority) for d in got] == [(b"urgent", 9), (b"low", 1)]


def test_messages_published_while_a_subscription_joins_are_delivered_once_in_order(
    aws: Aws, broker: QueueService, clock: ManualClock
) -> None:
    # Given a subscription from the oldest made by a process that cannot replay (so the
    # dispatch function does it), with a message before it and one while it joins
    topics = _topics(aws, clock, replays=False)
    broker.put_queue(ANONYMOUS, "joined", QueueSettings())
    _publish(topics, "before")
    clock.advance(1)
    created, _ = topics.subscribe(
        ANONYMOUS, TOPIC, "joined", SubscriptionSettings(queue="joined", start="oldest")
    )
    assert created.replaying == {"0": 0, "1": 0, "2": 0, "3": 0}
    _publish(topics, "joining")
    assert _drain(broker, "joined") == []  # the replay's, not yet replayed

    # When messages are published once it is live
    clock.advance(REPLAY_JOIN_MS / 1000)
    _publish(topics, "live1", "live2")

    # Then the first of them replays what came before it: each once, in publish order
    assert _drain(broker, "joined") == ["before", "joining", "live1", "live2"]


def test_a_subscription_from_a_time_gets_only_messages_published_at_or_after_it(
    topics: TopicService, broker: QueueService, clock: ManualClock
) -> None:
    # Given messages published before and after a moment
    broker.put_queue(ANONYMOUS, "since", QueueSettings())
    _publish(topics, "old")
    clock.advance(10)
    moment = clock.now_ms()
    _publish(topics, "new1", "new2")
    clock.advance(10)

    # When a subscription starts at that moment (an ISO-8601 time)
    topics.subscribe(
        ANONYMOUS, TOPIC, "since", SubscriptionSettings(queue="since", start=_iso(moment))
    )

    # Then it gets those published at or after it only
    assert _drain(broker, "since") == ["new1", "new2"]


def test_a_selector_and_a_filter_policy_apply_to_replayed_messages(
    topics: TopicService, broker: QueueService, clock: ManualClock
) -> None:
    # Given messages of two regions and two priorities published before the subscriptions
    for name in ("eu-only", "urgent-only"):
        broker.put_queue(ANONYMOUS, name, QueueSettings())
    _publish(topics, "eu-low", region="eu", priority="1")
    _publish(topics, "us-high", region="us", priority="9")
    _publish(topics, "eu-high", region="eu", priority="9")

    # When subscriptions with a selector and with a filter policy replay them
    topics.subscribe(
        ANONYMOUS,
        TOPIC,
        "eu-only",
        SubscriptionSettings(queue="eu-only", selector="region = 'eu'", start="oldest"),
    )
    topics.subscribe(
        ANONYMOUS,
        TOPIC,
        "urgent-only",
        SubscriptionSettings(
            queue="urgent-only",
            filter_policy={"priority": [{"numeric": [">", 5]}]},
            start="oldest",
        ),
    )

    # Then each gets what it selects only
    assert _drain(broker, "eu-only") == ["eu-low", "eu-high"]
    assert _drain(broker, "urgent-only") == ["us-high", "eu-high"]


def test_a_start_before_retention_gets_from_the_oldest_message_still_retained(
    topics: TopicService, broker: QueueService, clock: ManualClock
) -> None:
    # Given a message whose time to live has ended (still in the table: TTL deletes late)
    # and one still retained
    broker.put_queue(ANONYMOUS, "late", QueueSettings())
    topics.publish(ANONYMOUS, TOPIC, NewMessage(body=b"expired", ttl_seconds=60))
    clock.advance(120)
    _publish(topics, "retained")

    # When a subscription starts a year before
    a_year_ago = clock.now_ms() - 365 * 24 * 3600 * 1000
    topics.subscribe(
        ANONYMOUS, TOPIC, "late", SubscriptionSettings(queue="late", start=_iso(a_year_ago))
    )

    # Then it gets what the topic still holds, from the oldest retained on
    assert _drain(broker, "late") == ["retained"]


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ("yesterday", "is not 'oldest', 'now' or an ISO-8601 time"),
        ("2026-12-07T00:00:00", "needs a time zone"),
        ("2999-01-01T00:00:00Z", "is in the future"),
    ],
)
def test_a_bad_start_is_refused_and_creates_nothing(
    topics: TopicService, broker: QueueService, start: str, says: str
) -> None:
    # Given a queue
    broker.put_queue(ANONYMOUS, "bad", QueueSettings())
    # When a subscription would replay from a start that is no time, has no time zone, or is in the
    # future
    # Then it is refused, saying why, and no subscription is made
    with pytest.raises(InvalidRequest, match=says):
        topics.subscribe(ANONYMOUS, TOPIC, "bad", SubscriptionSettings(queue="bad", start=start))
    assert topics.subscriptions(ANONYMOUS) == []


def test_a_start_on_a_pattern_is_refused(topics: TopicService, broker: QueueService) -> None:
    # Given a queue
    broker.put_queue(ANONYMOUS, "all", QueueSettings())
    # When a subscription on the pattern news.> asks to start from the oldest message
    # Then it is refused (a replay start is not for a pattern), and no subscription is made
    with pytest.raises(InvalidRequest, match="not a pattern"):
        topics.subscribe(
            ANONYMOUS, "news.>", "all", SubscriptionSettings(queue="all", start="oldest")
        )
    assert topics.subscriptions(ANONYMOUS) == []


# ---- STOMP and JSON subscribers ------------------------------------------------------------


@pytest.fixture
def ws(
    sessions: Sessions, aws: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> TopicService:
    """The WebSocket function over `sessions`, whose topics replay (as `runtime`'s do)."""
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)
    topics: TopicService = sessions._topics
    assembly.build_indexer(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        topics=topics,
        time=clock,
    )
    return topics


def _stomp(connection_id: str, command: str, **headers: str) -> None:
    lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
    handle_event(websocket_event("MESSAGE", connection_id, "\n".join(lines) + "\n\n\x00"))


def _stomp_session(connection_id: str) -> None:
    handle_event(
        websocket_event("CONNECT", connection_id, **{"Sec-WebSocket-Protocol": "v12.stomp"})
    )
    _stomp(connection_id, "CONNECT", **{"accept-version": "1.2", "host": "/"})


def test_a_stomp_durable_subscriber_from_the_first_offset_gets_what_it_missed(
    ws: TopicService, pusher: RecordingPusher
) -> None:
    # Given messages published before anyone subscribed
    _publish(ws, "missed1", "missed2")

    # When a STOMP client subscribes durably with RabbitMQ's `x-stream-offset: first`
    _stomp_session("c1")
    _stomp(
        "c1",
        "SUBSCRIBE",
        id="0",
        destination=f"/topic/{TOPIC}",
        **{"activemq.subscriptionName": "reader", "x-stream-offset": "first"},
    )

    # Then it is pushed what the topic held, in order
    frames = pusher.stomp_frames("c1")
    assert [f.body for f in frames if f.command == "MESSAGE"] == [b"missed1", b"missed2"]


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"activemq.subscriptionName": "r", "x-stream-offset": "last"}, "is not 'first'"),
        ({"activemq.subscriptionName": "r", "x-stream-offset": "timestamp=soon"}, "is not"),
        ({"x-stream-offset": "first"}, "is for a durable topic subscription"),
    ],
)
def test_a_stomp_subscribe_with_a_bad_or_misplaced_offset_gets_an_error_frame(
    ws: TopicService, pusher: RecordingPusher, headers: dict[str, str], says: str
) -> None:
    # Given a STOMP session
    _stomp_session("c1")
    # When it subscribes durably with x-stream-offset last or timestamp=soon, or with an offset but
    # no durable name
    _stomp("c1", "SUBSCRIBE", id="0", destination=f"/topic/{TOPIC}", **headers)

    # Then an ERROR frame says why, and no subscription is made
    [error] = [f for f in pusher.stomp_frames("c1") if f.command == "ERROR"]
    assert says in (error.header("message") or "")
    assert ws.subscriptions(ANONYMOUS) == []


def test_a_json_durable_subscriber_from_a_time_gets_what_was_published_since(
    ws: TopicService, pusher: RecordingPusher, clock: ManualClock
) -> None:
    # Given a message before a moment and one after it
    _publish(ws, "before")
    clock.advance(5)
    moment = clock.now_ms()
    _publish(ws, "after")

    # When a JSON client subscribes durably from that moment
    handle_event(websocket_event("CONNECT", "j1"))
    subscribe = {
        "action": "subscribe",
        "destination": f"/topic/{TOPIC}",
        "id": "s1",
        "durable": "since-moment",
        "start": _iso(moment),
    }
    handle_event(websocket_event("MESSAGE", "j1", json.dumps(subscribe)))

    # Then it is pushed the message published since, and nothing before it
    frames = pusher.json_frames("j1")
    assert [f["body"] for f in frames if f.get("type") == "message"] == ["after"]


# ---- a replay that stops is resumed where it stopped ------------------------------------------


def test_a_replay_cut_short_by_its_deadline_is_resumed_by_the_next_publish_each_message_once(
    topics: TopicService, broker: QueueService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five retained messages, and a replay that records its place every two log items
    # and has no time to spare (it hands its shard back at the first record)
    monkeypatch.setattr(replay, "REPLAY_CHUNK", 2)
    monkeypatch.setattr(replay, "REPLAY_BUDGET_MS", 0, raising=False)
    broker.put_queue(ANONYMOUS, "resumed", QueueSettings())
    _publish(topics, "m1", "m2", "m3", "m4", "m5")

    # When the subscription is created, its replay stops after two of them
    created, _ = topics.subscribe(
        ANONYMOUS, TOPIC, "resumed", SubscriptionSettings(queue="resumed", start="oldest")
    )
    assert created.replaying == {"0": 0}
    # and a message published once it is live reaches the dispatch function
    _publish(topics, "live")

    # Then the dispatch function resumed the replay where it stopped: each once, in order
    assert _drain(broker, "resumed") == ["m1", "m2", "m3", "m4", "m5", "live"]


def test_a_replay_whose_worker_died_is_resumed_once_its_claim_ends_none_twice(
    topics: TopicService, broker: QueueService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five retained messages, and a replay (recording its place every two log items)
    # whose worker dies after referring its second chunk, before recording how far it went
    monkeypatch.setattr(replay, "REPLAY_CHUNK", 2)
    broker.put_queue(ANONYMOUS, "crashed", QueueSettings())
    _publish(topics, "m1", "m2", "m3", "m4", "m5")
    replayer = topics._replayer
    assert replayer is not None
    real = replayer()
    calls = []

    class DiesAfterSecondAppend:
        def append_replayed(self, target: object, items: object) -> int:
            appended = real.append_replayed(target, items)  # type: ignore[arg-type]
            calls.append(appended)
            if len(calls) == 2:
                raise RuntimeError("Lambda timed out")
            return appended

    topics.replay_with(DiesAfterSecondAppend)
    with pytest.raises(RuntimeError, match="timed out"):
        topics.subscribe(
            ANONYMOUS, TOPIC, "crashed", SubscriptionSettings(queue="crashed", start="oldest")
        )

    # When its claim has ended and a message published since reaches the dispatch function
    clock.advance(replay.REPLAY_CLAIM_MS / 1000 + 1)
    _publish(topics, "live")

    # Then the replay resumed from its last record: what the dead worker referred after it
    # is not referred twice, and nothing is missing
    assert _drain(broker, "crashed") == ["m1", "m2", "m3", "m4", "m5", "live"]


def test_a_live_message_waits_while_its_shard_is_still_being_replayed(
    aws: Aws, broker: QueueService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a subscription whose replay the dispatch function does (its maker cannot), a
    # dispatch function with no time to spare, and three retained messages
    monkeypatch.setattr(replay, "REPLAY_CHUNK", 2)
    monkeypatch.setattr(replay, "REPLAY_DISPATCH_BUDGET_MS", 0, raising=False)
    topics = _topics(aws, clock, replays=False)
    broker.put_queue(ANONYMOUS, "waits", QueueSettings())
    _publish(topics, "m1", "m2", "m3")
    topics.subscribe(ANONYMOUS, TOPIC, "waits", SubscriptionSettings(queue="waits", start="oldest"))
    clock.advance(REPLAY_JOIN_MS / 1000)

    # When a live message reaches the dispatch function, which replays two and stops
    with pytest.raises(Conflict, match="still being replayed"):
        _publish(topics, "live")
    # Then the live one is not delivered ahead of the rest of the replay
    assert _drain(broker, "waits") == ["m1", "m2"]
