"""Presence advisories: a STOMP client subscribed to `ActiveMQ.Advisory.Consumer.Queue.<q>`
(or `.Topic.<pattern>`) is told when consumers start and stop, with their count, as ActiveMQ's
advisory topics tell it; and nothing is published when nobody listens.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqless import wiring
from mqless.storage.dynamo import from_wire
from mqless.transports.websocket.sessions import Sessions
from tests.component.conftest import RecordingPusher
from tests.component.test_selector_subscriptions import _bodies
from tests.stomp_frames_sent import got, say, stomp_session


@pytest.fixture(autouse=True)
def _wired(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)


def _published(aws: Any) -> list[dict[str, Any]]:
    return [
        from_wire(i)
        for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
        if i["pk"]["S"].startswith("T#")
    ]


def _deliver_new(sessions: Sessions, aws: Any, done: set[str]) -> None:
    """Push topic messages published since the last call, as the dispatch function does."""
    fresh = [i for i in _published(aws) if f"{i['pk']}/{i['sk']}" not in done]
    done |= {f"{i['pk']}/{i['sk']}" for i in fresh}
    sessions.push_published(fresh)


def test_advisory_subscriber_is_told_when_queue_consumers_start_and_stop(
    pusher: RecordingPusher, sessions: Sessions, aws: Any
) -> None:
    # Given a client watching the consumer advisories of queue `orders`
    stomp_session("watch")
    say("watch", "SUBSCRIBE", id="0", destination="/topic/ActiveMQ.Advisory.Consumer.Queue.orders")
    done: set[str] = set()

    # When two consumers subscribe to the queue, then one disconnects
    stomp_session("c1")
    stomp_session("c2")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/orders")
    _deliver_new(sessions, aws, done)
    say("c2", "SUBSCRIBE", id="0", destination="/queue/orders")
    _deliver_new(sessions, aws, done)
    say("c1", "DISCONNECT")
    _deliver_new(sessions, aws, done)

    # Then it was told of each change, with the count after it
    told = [
        (m.header("advisoryType"), m.header("consumerCount"))
        for m in got(pusher, "watch", "MESSAGE")
    ]
    assert told == [("ConsumerInfo", "1"), ("ConsumerInfo", "2"), ("RemoveInfo", "1")]
    body = json.loads(_bodies(pusher, "watch")[0])
    assert body == {
        "destination": "/queue/orders",
        "consumerCount": 1,
        "advisoryType": "ConsumerInfo",
    }


def test_topic_subscribers_are_advised_by_topic_name_and_wildcard_patterns_are_not(
    pusher: RecordingPusher, sessions: Sessions, aws: Any
) -> None:
    # Given a client watching every topic consumer advisory
    stomp_session("watch")
    say("watch", "SUBSCRIBE", id="0", destination="/topic/ActiveMQ.Advisory.Consumer.Topic.>")
    done: set[str] = set()

    # When a client subscribes to a wildcard pattern, leaves it, then subscribes to a topic
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="p", destination="/topic/prices.*")
    say("c1", "UNSUBSCRIBE", id="p")
    _deliver_new(sessions, aws, done)
    nothing = got(pusher, "watch", "MESSAGE")
    say("c1", "SUBSCRIBE", id="q", destination="/topic/prices.acme")
    _deliver_new(sessions, aws, done)

    # Then a pattern (no topic name: `*` and `>` may not be in one) made no advisory, and the
    # topic's did, with its count
    assert nothing == []
    [started] = got(pusher, "watch", "MESSAGE")
    assert started.header("destination") == "/topic/ActiveMQ.Advisory.Consumer.Topic.prices.acme"
    assert (started.header("advisoryType"), started.header("consumerCount")) == (
        "ConsumerInfo",
        "1",
    )


def test_no_advisory_is_published_when_nobody_listens(sessions: Sessions, aws: Any) -> None:
    # Given no advisory subscriber / When consumers come and go
    stomp_session("c1")
    say("c1", "SUBSCRIBE", id="0", destination="/queue/quiet")
    say("c1", "SUBSCRIBE", id="1", destination="/topic/news")
    say("c1", "DISCONNECT")
    # Then nothing was published (no write for presence)
    assert _published(aws) == []
