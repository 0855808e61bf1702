"""Replay against `mqless dev`: a stomp.py client that was away subscribes durably with
RabbitMQ's `x-stream-offset: first` and gets what the topic still holds, then live ones."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import DevServer
from tests.e2e.test_stomppy import QUIET, stomppy, unique

# the subscribe answers once the replay is in the queue: the join waits for every
# dispatcher's view of the subscriptions (about 8 s, docs/storage-engine.md "Replay")
REPLAY_WAIT = 30.0


def test_stomppy_durable_subscriber_from_the_first_offset_gets_what_it_missed_then_live_ones(
    mqless_dev: DevServer,
) -> None:
    topic, name = unique("replay") + ".news", unique("missed")
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # Given three messages published while nobody was subscribed
        for n in range(1, 4):
            published = http.post(f"/topics/{topic}/messages", json={"body": f"m{n}"})
            assert published.status_code == 201, published.text

        with stomppy(mqless_dev) as (connection, recorder):
            # When stomp.py subscribes durably from the first retained message
            connection.subscribe(
                f"/topic/{topic}",
                id="catch-up",
                ack="client-individual",
                receipt="subscribed",
                headers={"activemq.subscriptionName": name, "x-stream-offset": "first"},
            )
            recorder.wait_for(
                "RECEIPT subscribed",
                lambda: any(
                    f.cmd == "RECEIPT" and f.headers.get("receipt-id") == "subscribed"
                    for f in recorder.frames
                ),
                timeout=REPLAY_WAIT,
            )
            # and one more is published once it is subscribed
            assert http.post(f"/topics/{topic}/messages", json={"body": "m4"}).status_code == 201
            messages = recorder.messages(4)
            for message in messages:
                connection.ack(message.headers["ack"])
            time.sleep(QUIET)
            everything = recorder.of("MESSAGE")
            errors = recorder.of("ERROR")

    # Then it got the three it missed and the live one, none twice (order is kept per topic
    # shard only: the HTTP publishes may come from different function instances, so shards,
    # and a live message may be pushed before a replayed one of another shard)
    assert sorted(m.body for m in messages) == ["m1", "m2", "m3", "m4"]
    assert len(everything) == 4 and errors == []
