"""Push delivery (WebSocket consumers and live topic subscribers): requests per message.

Billed by the meter (`mqless_cli.billing`): write units by item size, index writes and
failed conditions included. `bench/cost.py` measures the same paths all in, through the
functions and gateways; this one isolates the sessions layer.

Under moto, through the real services and the sessions layer, with a pusher that counts
@connections posts and their 32 KB billing units instead of sending them. Each path
runs as deployed: messages are sent, the dispatch function's pump runs once per stream
batch (here: every 10 sends), and acks come one frame per message (client-individual)
or one per 10 (client, cumulative). Sends are not counted (see bench/cost.py); what is
counted is delivering and settling.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from moto import mock_aws  # noqa: E402
from moto_stack import provisioned  # sets moto's AWS variables first

from mqless import assembly  # noqa: E402
from mqless.domain.access.principals import ANONYMOUS  # noqa: E402
from mqless.domain.clock import SystemClock  # noqa: E402
from mqless.domain.messages import NewMessage
from mqless.domain.push.pushes import Connection  # noqa: E402
from mqless.domain.topics.service import TopicService  # noqa: E402
from mqless.storage.connection_store import ConnectionStore  # noqa: E402
from mqless.storage.dynamo import from_wire  # noqa: E402
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider  # noqa: E402
from mqless.storage.log import LogStore  # noqa: E402
from mqless.transports.websocket.sessions import Sessions  # noqa: E402
from mqless_cli.billing import Meter, observing_moto  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "200"))
STREAM_BATCH = 10
DYNAMODB_PER_MILLION_WRITES = 0.625
DYNAMODB_PER_MILLION_READS = 0.125
API_GATEWAY_PER_MILLION_MESSAGES = 1.0  # WebSocket messages, per 32 KB
LAMBDA_PER_MILLION_INVOCATIONS = 0.20  # before duration


class CountingPusher:
    def __init__(self) -> None:
        self.posts = 0
        self.units = 0
        self.acks: dict[str, list[str]] = {}

    def post(self, connection_id: str, data: bytes) -> bool:
        self.posts += 1
        self.units += max(1, math.ceil(len(data) / (32 * 1024)))
        return True

    def close(self, connection_id: str) -> None:
        return None


def build() -> tuple[Sessions, CountingPusher, TopicService, Any, str]:
    dynamodb, kms, settings = provisioned()
    clock = SystemClock()
    cipher = EnvelopeCipher(KmsKeyProvider(kms, settings.kms_key_id), clock)
    table = settings.destinations_table
    queues = assembly.build_queue_service(settings, dynamodb=dynamodb, kms=kms, cipher=cipher)
    log = LogStore(dynamodb, settings.messages_table)
    topics = assembly.build_topic_service(
        settings, dynamodb=dynamodb, kms=kms, cipher=cipher, log=log
    )
    pusher = CountingPusher()
    sessions = Sessions(
        dynamodb=dynamodb,
        table_name=table,
        live=ConnectionStore(dynamodb, table, clock),
        consumers=assembly.build_queue_consumers(dynamodb, table, queues, pusher, clock),
        queues=queues,
        topics=topics,
        pusher=pusher,
        cipher=cipher,
        clock=clock,
        log=log,
    )
    return sessions, pusher, topics, dynamodb, settings.messages_table


def topic_path(subscribers: int) -> dict[str, float]:
    sessions, pusher, topics, dynamodb, messages_table = build()
    for i in range(subscribers):
        connection = Connection(f"live-{i}", "json")
        sessions.open(connection, ANONYMOUS)
        info = sessions.info(connection.id)
        assert info is not None
        sessions.subscribe(info, "t", "/topic/prices.>")
    messages = max(N // 4, STREAM_BATCH)
    for _ in range(messages):
        topics.publish(ANONYMOUS, "prices.acme", NewMessage(body=b"y" * 256))
    published = [
        from_wire(i)
        for i in dynamodb.scan(TableName=messages_table)["Items"]
        if i["pk"]["S"].startswith("T#")
    ]
    meter = Meter()
    with observing_moto(meter):
        start = time.perf_counter()
        for first in range(0, len(published), STREAM_BATCH):
            sessions.push_published(published[first : first + STREAM_BATCH])
        seconds = time.perf_counter() - start
    log = meter.usage()
    deliveries = messages * subscribers
    return {
        "ddb_req": log.count("dynamodb") / messages,
        "wru": sum(log.write_units.values()) / messages,
        "posts": pusher.posts / deliveries,
        "units": pusher.units / deliveries,
        "msg_s": deliveries / seconds,
    }


def main() -> int:
    print(
        "\nLive topic subscribers: what pushing a published message costs (queue push"
        "\nconsumers are in the cost table above: bench/cost.py)\n"
    )
    header = f"{'path':<34}{'DDB req/msg':>12}{'WRU/msg':>9}{'posts/msg':>10}{'32KB units':>11}"
    header += f"{'msg/s':>8}"
    print(header)
    print("-" * len(header))
    for subscribers in (1, 10, 50):
        with mock_aws():
            row = topic_path(subscribers)
        name = f"topic, {subscribers} live subscriber(s)"
        print(
            f"{name:<34}{row['ddb_req']:>12.2f}{row['wru']:>9.2f}{row['posts']:>10.2f}"
            f"{row['units']:>11.2f}{row['msg_s']:>8.0f}"
        )
    print()
    print("Writes per publish stay 0 here (the publish itself is 1 write); reads: one query")
    print("of the live index per stream batch.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
