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

from moto import mock_aws  # noqa: E402
from moto_stack import provisioned  # sets moto's AWS variables first

from mqless.clock import SystemClock  # noqa: E402
from mqless.consumers import QueueConsumers  # noqa: E402
from mqless.dedup import DedupHasher  # noqa: E402
from mqless.dynamo import from_wire  # noqa: E402
from mqless.envelope import EnvelopeCipher, KmsKeyProvider  # noqa: E402
from mqless.live import LiveSubscriptions  # noqa: E402
from mqless.models import NewMessage  # noqa: E402
from mqless.outbound import Connection  # noqa: E402
from mqless.principals import ANONYMOUS  # noqa: E402
from mqless.pubsub import TopicService  # noqa: E402
from mqless.queues import QueueService  # noqa: E402
from mqless.registry import QueueRegistry  # noqa: E402
from mqless.sessions import Sessions, Settle  # noqa: E402
from mqless.store import MessageStore  # noqa: E402
from mqless_cli.billing import Meter, Usage, observing_moto  # noqa: E402

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


def build() -> tuple[Sessions, CountingPusher, QueueService, TopicService, object, object]:
    dynamodb, kms, settings = provisioned()
    clock = SystemClock()
    cipher = EnvelopeCipher(KmsKeyProvider(kms, settings.kms_key_id), clock)
    table = settings.destinations_table
    queues = QueueService(
        registry=QueueRegistry(dynamodb, table, clock),
        store=MessageStore(dynamodb, settings.messages_table),
        cipher=cipher,
        dedup=DedupHasher(KmsKeyProvider(kms, settings.kms_key_id), dynamodb, table),
        clock=clock,
    )
    topics = TopicService(
        dynamodb=dynamodb,
        messages_table=settings.messages_table,
        destinations_table=table,
        queues=QueueRegistry(dynamodb, table, clock),
        cipher=cipher,
        clock=clock,
    )
    pusher = CountingPusher()
    sessions = Sessions(
        dynamodb=dynamodb,
        table_name=table,
        live=LiveSubscriptions(dynamodb, table, clock),
        consumers=QueueConsumers(dynamodb, table, queues, pusher, clock),
        queues=queues,
        topics=topics,
        pusher=pusher,
        cipher=cipher,
        clock=clock,
    )
    return sessions, pusher, queues, topics, dynamodb, kms


def queue_path(ack: str, prefetch: int) -> dict[str, float]:
    sessions, pusher, queues, _, _, _ = build()
    connection = Connection("bench-conn", "stomp", "1.2")
    sessions.open(connection, ANONYMOUS)
    info = sessions.info(connection.id)
    assert info is not None
    queue = f"push-{ack}"
    sessions.subscribe(info, "s", f"/queue/{queue}", ack=ack, prefetch=prefetch)  # type: ignore[arg-type]
    body = b"x" * 512
    delivered = 0
    # capture the ack ids the client would see, by wrapping the renderer's input
    from mqless import consumers as consumers_module

    seen: list[str] = []
    original = consumers_module.render

    def spy(conn: Connection, pushes: list) -> list[str]:  # type: ignore[type-arg]
        seen.extend(p.ack for p in pushes if p.ack)
        return original(conn, pushes)

    consumers_module.render = spy  # type: ignore[assignment]
    meter = Meter()
    counted = Usage()  # what delivering and settling billed, sends left out
    seconds = 0.0
    ack_frames = 0
    try:
        for first in range(0, N, STREAM_BATCH):
            for _ in range(STREAM_BATCH):
                queues.send(ANONYMOUS, queue, NewMessage(body=body))
            with observing_moto(meter):
                before = meter.usage()
                start = time.perf_counter()
                sessions.pump(queue)  # the dispatch function, once per stream batch
                while seen:  # the client's acks, each a $default invocation
                    ack_frames += 1
                    if ack == "client":
                        last = seen[-1]
                        seen.clear()
                        _, to_pump = sessions.settle(info, Settle(ack_id=last))
                    else:
                        _, to_pump = sessions.settle(info, Settle(ack_id=seen.pop(0)))
                    if to_pump:
                        sessions.pump(to_pump)
                seconds += time.perf_counter() - start
                counted = counted + (meter.usage() - before)
            delivered = first + STREAM_BATCH
    finally:
        consumers_module.render = original  # type: ignore[assignment]
    _, counts = queues.get_queue(ANONYMOUS, queue)
    assert counts.visible == counts.in_flight == 0, counts
    return {
        "ddb_req": counted.count("dynamodb") / delivered,
        "wru": sum(counted.write_units.values()) / delivered,
        "rru": counted.total_read_units() / delivered,
        "posts": pusher.posts / delivered,
        "units": pusher.units / delivered,
        "acks": ack_frames / delivered,
        "msg_s": delivered / seconds,
    }


def topic_path(subscribers: int) -> dict[str, float]:
    sessions, pusher, _, topics, dynamodb, _ = build()
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
        for i in dynamodb.scan(TableName=topics._messages)["Items"]  # noqa: SLF001
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
        f"\nPush delivery: {N} messages of 512 B per queue path, stream batches of "
        f"{STREAM_BATCH}; per message delivered (sends not counted)\n"
    )
    header = (
        f"{'path':<34}{'DDB req/msg':>12}{'WRU/msg':>9}{'posts/msg':>10}"
        f"{'32KB units':>11}{'acks/msg':>9}{'msg/s':>8}"
    )
    print(header)
    print("-" * len(header))
    costs = {}
    for name, ack, prefetch in (
        ("queue, auto", "auto", 10),
        ("queue, client-individual, pf 10", "client-individual", 10),
        ("queue, client (cumulative), pf 10", "client", 10),
    ):
        with mock_aws():
            row = queue_path(ack, prefetch)
            costs[name] = row
            print(
                f"{name:<34}{row['ddb_req']:>12.2f}{row['wru']:>9.2f}{row['posts']:>10.2f}"
                f"{row['units']:>11.2f}{row['acks']:>9.2f}{row['msg_s']:>8.0f}"
            )
    for subscribers in (1, 10, 50):
        with mock_aws():
            row = topic_path(subscribers)
        name = f"topic, {subscribers} live subscriber(s)"
        print(
            f"{name:<34}{row['ddb_req']:>12.2f}{row['wru']:>9.2f}{row['posts']:>10.2f}"
            f"{row['units']:>11.2f}{'-':>9}{row['msg_s']:>8.0f}"
        )
    print()
    print("Queue push, per million messages delivered and settled: table writes and reads,")
    print("WebSocket messages out (pushes) and in (acks, each also a Lambda invocation);")
    print("add the send ($0.625 of writes + the HTTP or WebSocket request):")
    for name, row in costs.items():
        dollars = (
            row["wru"] * DYNAMODB_PER_MILLION_WRITES
            + row["rru"] * DYNAMODB_PER_MILLION_READS
            + row["units"] * API_GATEWAY_PER_MILLION_MESSAGES
            + row["acks"] * (API_GATEWAY_PER_MILLION_MESSAGES + LAMBDA_PER_MILLION_INVOCATIONS)
        )
        print(f"  {name:<34} ${dollars:5.2f}")
    print("Topic messages to live subscribers: writes per publish stay 0 here (the publish")
    print("itself is 1 write); reads: one query of the live index per stream batch.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
