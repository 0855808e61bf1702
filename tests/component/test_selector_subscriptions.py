"""JMS message selectors on subscriptions: STOMP SUBSCRIBE's `selector` header, the JSON
protocol's `selector`, queue push consumers, live and durable topic subscriptions, and the
HTTP API's durable subscriptions.

Driven as the ws function is (API Gateway events through `websocket.handle_event`); what a
client sees is read from the frames posted back to it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.queues.service import QueueService
from mqless.domain.topics.service import TopicService
from mqless.storage.dynamo import from_wire
from mqless.transports.websocket.handler import handle_event
from mqless.transports.websocket.sessions import Sessions
from tests.component.conftest import RecordingPusher
from tests.lambda_support import websocket_event
from tests.stomp_frames_sent import got, say, stomp_session


@pytest.fixture(autouse=True)
def _wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)


def _bodies(pusher: RecordingPusher, connection_id: str) -> list[bytes]:
    return [f.body for f in got(pusher, connection_id, "MESSAGE")]


def _send(broker: QueueService, clock: ManualClock, queue: str, body: str, **attrs: str) -> None:
    broker.send(ANONYMOUS, queue, NewMessage(body=body.encode(), attributes=attrs))
    clock.advance(0.001)


def _publish_live(sessions: Sessions, aws: Any) -> int:
    """Push what was published to live subscribers, as the dispatch function does."""
    published = [
        from_wire(i)
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("T#")
    ]
    return sessions.push_published(published)


# ---- queue push consumers ---------------------------------------------------------------------


def test_queue_consumer_with_a_selector_gets_only_matching_messages_and_leaves_the_rest(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, clock: ManualClock
) -> None:
    # Given a queue holding red and blue messages, and a STOMP consumer that selects red ones
    for i, color in enumerate(["red", "blue", "red", "blue"]):
        _send(broker, clock, "paint", f"{color}-{i}", color=color)
    stomp_session("reds")

    # When it subscribes with a selector
    say(
        "reds",
        "SUBSCRIBE",
        id="0",
        destination="/queue/paint",
        ack="client-individual",
        selector="color = 'red'",
        receipt="sub",
    )

    # Then it is pushed the red ones only, and the blue ones stay in the queue, not leased
    assert got(pusher, "reds", "RECEIPT")[0].header("receipt-id") == "sub"
    assert _bodies(pusher, "reds") == [b"red-0", b"red-2"]
    _, counts = broker.get_queue(ANONYMOUS, "paint")
    assert (counts.visible, counts.in_flight) == (2, 2)

    # and a consumer without a selector gets the blue ones, none lost
    stomp_session("all")
    say("all", "SUBSCRIBE", id="0", destination="/queue/paint", ack="client-individual")
    assert _bodies(pusher, "all") == [b"blue-1", b"blue-3"]


def test_selector_sees_jms_headers_of_a_stomp_send(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given a consumer selecting on JMS headers that STOMP SEND sets
    stomp_session("c1")
    say(
        "c1",
        "SUBSCRIBE",
        id="0",
        destination="/queue/typed",
        selector="JMSType = 'order' AND JMSCorrelationID LIKE 'req-%' AND JMSPriority = 9 "
        "AND JMSDeliveryMode = 'PERSISTENT' AND JMSTimestamp > 0",
    )

    # When messages are sent with and without those headers
    say("c1", "SEND", "no", destination="/queue/typed", type="order", **{"correlation-id": "x"})
    say(
        "c1",
        "SEND",
        "yes",
        destination="/queue/typed",
        type="order",
        priority="9",
        **{"correlation-id": "req-1"},
    )
    sessions.pump("typed")

    # Then only the one they describe is delivered
    assert _bodies(pusher, "c1") == [b"yes"]


def test_messages_behind_non_matching_ones_still_reach_a_selector_consumer(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, clock: ManualClock
) -> None:
    # Given 60 non-matching messages (more segments than one look at the index reads)
    for i in range(60):
        _send(broker, clock, "deep", f"skip-{i}", kind="noise")
    _send(broker, clock, "deep", "wanted", kind="signal")
    stomp_session("c1")

    # When a selector consumer subscribes
    say("c1", "SUBSCRIBE", id="0", destination="/queue/deep", selector="kind = 'signal'")

    # Then it finds the matching one past the others, and leased nothing else
    assert _bodies(pusher, "c1") == [b"wanted"]
    _, counts = broker.get_queue(ANONYMOUS, "deep")
    assert counts.visible == 60


def test_fifo_consumer_with_a_selector_keeps_group_order(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, clock: ManualClock
) -> None:
    # Given a FIFO queue with a group whose head the selector rejects, and another group
    for body, group, tier in [("a1", "a", "free"), ("a2", "a", "gold"), ("b1", "b", "gold")]:
        broker.send(
            ANONYMOUS,
            "tiers.fifo",
            NewMessage(body=body.encode(), group_id=group, attributes={"tier": tier}),
        )
        clock.advance(0.001)
    stomp_session("gold")

    # When a consumer selects gold messages
    say("gold", "SUBSCRIBE", id="0", destination="/queue/tiers.fifo", selector="tier = 'gold'")

    # Then it gets group b's head, never a2 before a1 has gone
    assert _bodies(pusher, "gold") == [b"b1"]


# ---- errors ---------------------------------------------------------------------------------


def test_bad_stomp_selector_gets_an_error_naming_the_position(pusher: RecordingPusher) -> None:
    # Given a STOMP session / When it subscribes with a malformed selector
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/q", selector="color = 'red' AND")

    # Then an ERROR says where, and the socket closes (STOMP's rule for an ERROR)
    [error] = got(pusher, "c1", "ERROR")
    assert (error.header("message") or "").startswith("invalid selector at position 18:")
    assert pusher.closed == ["c1"]


def test_bad_json_selector_gets_an_error_frame_and_nothing_is_subscribed(
    pusher: RecordingPusher, sessions: Sessions
) -> None:
    # Given a JSON connection
    handle_event(websocket_event("CONNECT", "j1"))
    frame = {
        "action": "subscribe",
        "destination": "/queue/q",
        "id": "s",
        "selector": "price >",
        "receipt": "r1",
    }

    # When it subscribes with a malformed selector
    handle_event(websocket_event("MESSAGE", "j1", json.dumps(frame)))

    # Then an error frame names the position, and the connection holds no subscription
    [reply] = pusher.json_frames("j1")
    assert reply["type"] == "error" and reply["error"] == "invalid_selector"
    assert reply["message"].startswith("invalid selector at position 8:")
    assert reply["receipt"] == "r1"
    assert sessions.live.subscriptions("j1") == []


def test_json_subscriber_with_a_selector_gets_only_matching_messages(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService, clock: ManualClock
) -> None:
    # Given messages of two regions, and a JSON push consumer selecting one
    _send(broker, clock, "regions", "eu", region="eu")
    _send(broker, clock, "regions", "us", region="us")
    handle_event(websocket_event("CONNECT", "j1"))
    frame = {
        "action": "subscribe",
        "destination": "/queue/regions",
        "id": "s",
        "selector": "region IN ('us', 'ca')",
    }

    # When it subscribes
    handle_event(websocket_event("MESSAGE", "j1", json.dumps(frame)))

    # Then it is sent the matching message only
    messages = [f for f in pusher.json_frames("j1") if f.get("type") == "message"]
    assert [m["body"] for m in messages] == ["us"]


# ---- topics ---------------------------------------------------------------------------------


def test_live_topic_subscriber_with_a_selector_gets_only_matching_messages(
    pusher: RecordingPusher, sessions: Sessions, aws: Any
) -> None:
    # Given two live subscribers of one topic, one with a selector
    stomp_session("cheap")
    stomp_session("every")
    say("cheap", "SUBSCRIBE", id="0", destination="/topic/prices", selector="currency = 'EUR'")
    say("every", "SUBSCRIBE", id="0", destination="/topic/prices")

    # When prices in two currencies are published
    say("every", "SEND", "10", destination="/topic/prices", currency="EUR")
    say("every", "SEND", "11", destination="/topic/prices", currency="USD")
    _publish_live(sessions, aws)

    # Then the selector subscriber gets the EUR one, the other both
    assert _bodies(pusher, "cheap") == [b"10"]
    assert sorted(_bodies(pusher, "every")) == [b"10", b"11"]


def test_durable_subscription_with_a_selector_keeps_only_matching_messages(
    pusher: RecordingPusher, sessions: Sessions, broker: QueueService
) -> None:
    # Given a durable STOMP subscription with a selector, whose subscriber went away
    topics: TopicService = sessions._topics
    stomp_session("c1")
    say(
        "c1",
        "SUBSCRIBE",
        id="0",
        destination="/topic/audit.>",
        selector="severity = 'high'",
        **{"activemq.subscriptionName": "alarms"},
    )
    say("c1", "DISCONNECT")

    # When messages are published while it is away
    for severity in ("low", "high"):
        message = NewMessage(body=severity.encode(), attributes={"severity": severity})
        topics.publish(ANONYMOUS, "audit.login", message)

    # Then its queue was given only the matching one (filtered at fan-out)
    _, counts = broker.get_queue(ANONYMOUS, "alarms")
    assert counts.visible == 1
    # and the subscriber coming back with the same selector gets it
    stomp_session("c2")
    say(
        "c2",
        "SUBSCRIBE",
        id="0",
        destination="/topic/audit.>",
        selector="severity = 'high'",
        **{"activemq.subscriptionName": "alarms"},
    )
    assert _bodies(pusher, "c2") == [b"high"]
    assert topics.subscriptions(ANONYMOUS)[0].selector == "severity = 'high'"


def test_resuming_a_durable_subscription_with_another_selector_is_refused(
    pusher: RecordingPusher,
) -> None:
    # Given a durable subscription made with a selector
    stomp_session("c1")
    durable = {"activemq.subscriptionName": "picky"}
    say("c1", "SUBSCRIBE", id="0", destination="/topic/t", selector="a = 1", **durable)
    say("c1", "DISCONNECT")

    # When it is resumed with another selector
    stomp_session("c2")
    say("c2", "SUBSCRIBE", id="0", destination="/topic/t", selector="a = 2", **durable)

    # Then an ERROR says the selector differs (the subscription is never changed silently)
    [error] = got(pusher, "c2", "ERROR")
    assert "its selector is 'a = 1'" in (error.header("message") or "")
