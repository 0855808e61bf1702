"""`make bench`: what one acknowledged message costs on AWS, all in, billed as AWS bills.

The whole local runtime runs in this process (`mqless dev` without its stream pollers and
schedules): moto as AWS, the template's functions, the HTTP and WebSocket gateways on
loopback. Clients use the real entry points: HTTP requests through the gateway (its
authorizer included, cached as API Gateway caches it), STOMP over WebSocket. The stream
is handed to the dispatch function here, one batch per client request that wrote new
items (what Lambda's poller does at low traffic with no batching window; at high traffic
it gathers more records per invocation, so dispatch's share is an upper bound).

The meter (`mqless_cli.billing`) bills what happened: DynamoDB by item size, index writes,
transactions and failed conditions; API Gateway requests and WebSocket messages in their
size units; Lambda invocations and GB-seconds at the template's MemorySize (durations as
measured here, moto in-process: an estimate); KMS requests. Results go to
bench/results/cost.json.

BENCH_MESSAGES (default 20) messages per cell, half that on the FIFO and 5-subscription
paths (fan-out multiplies the work; every figure is per message and the layout bills the
same each time), except the FIFO ceiling cell (1 KB, one per request: two rotations of
its segments over its shards, 320 messages); BENCH_SIZES
(e.g. "256,1024") and BENCH_PATHS (e.g. "standard,fifo") narrow the table;
BENCH_CONSUMERS (default 50) competing consumers share BENCH_CONTENDED (default 1,000: 20 a
consumer, so that each consumer's first receive, made before any ticket exists, is not most of
the figure; 200 gives ~0.08 failed writes per lease, nearly all of them first receives)
messages, once with moto's reads (always current) and once with eventually consistent reads
that may return the state of up to BENCH_READ_LAG_MS (default 1000; 0 skips that run) ago.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT / "cli")]

from websockets.sync.client import ClientConnection, connect  # noqa: E402

from mqless.domain.access.principals import ANONYMOUS  # noqa: E402
from mqless.domain.models import DEFAULT_FIFO_SHARDS, DEFAULT_SHARDS  # noqa: E402
from mqless.settings import Settings  # noqa: E402
from mqless.storage.fifo_segments import MAX_REFS as FIFO_SEGMENT_REFS  # noqa: E402
from mqless_cli.billing import Usage, price, sqs_reference  # noqa: E402
from mqless_cli.billing.meter import ceiling_per_second  # noqa: E402
from mqless_cli.billing.prices import PRICES, PRICES_AS_OF, REGION  # noqa: E402
from mqless_cli.local.cloud import LocalCloud  # noqa: E402
from mqless_cli.local.consistency import lagging_reads  # noqa: E402
from mqless_cli.local.console import Console  # noqa: E402
from mqless_cli.local.runtime import DevRuntime  # noqa: E402
from mqless_cli.local.stream_filters import record_filter  # noqa: E402
from mqless_cli.local.stream_records import lambda_record  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "20"))
# new messages in each stream batch the dispatch function is handed: 1 is a trickle (each
# message indexed on its own), 16 a busy queue (Lambda polls a shard about 4 times a second)
STREAM_RECORDS = int(os.environ.get("BENCH_STREAM_RECORDS", "16"))
KIB = 1024
MAX_BODY = 256 * KIB  # the send limit counts body and attributes; these messages have none
SIZES = [
    int(s) for s in os.environ.get("BENCH_SIZES", "256,512,1024,4096,16384,65536,262144").split(",")
]
PUSH_LIMIT = 128 * KIB  # API Gateway's WebSocket message quota: a push frame cannot be larger
# a lone consumer that acks each message in the receive that takes the next (`ack` in
# POST /queues/{name}/receive): one request, and one index write where they share a segment
ACK_WITH_NEXT = "standard, ack with next"
FIFO_ACK_WITH_NEXT = "fifo, ack with next"
ACKS_WITH_NEXT = (ACK_WITH_NEXT, FIFO_ACK_WITH_NEXT)
FIFO_PATHS = ("fifo", FIFO_ACK_WITH_NEXT)
# max_priority 9; one per request, message n has priority n % 10; in batches of 10, each
# batch one priority (batch k: k % 10), as a producer's batch of like messages would be
PRIORITY_PATH = "standard, priorities 10"
PRIORITY_SIZES = (512,)  # what lanes add does not depend on the body's size
ALL_PATHS = (
    "standard",
    ACK_WITH_NEXT,
    PRIORITY_PATH,
    "fifo",
    FIFO_ACK_WITH_NEXT,
    "topic, 1 sub",
    "topic, 5 subs",
    "push, auto",
    "push, client",
    "push, client-individual",
)
PATHS = list(ALL_PATHS)
if "BENCH_PATHS" in os.environ:
    wanted = os.environ["BENCH_PATHS"].split(",")
    PATHS = [
        p
        for p in ALL_PATHS
        if any(
            p.replace(" ", "").startswith(w) or (w == "priorities" and p == PRIORITY_PATH)
            for w in wanted
        )
    ]
CONSUMERS = int(os.environ.get("BENCH_CONSUMERS", "50"))
CONTENDED = int(os.environ.get("BENCH_CONTENDED", "1000"))
# what a receive that finds nothing costs, by shard count (every shard is read): EMPTY_RECEIVES
# back to back, and one long poll of LONG_POLL_S (0: none; it takes that long, per count)
EMPTY_SHARDS = [int(n) for n in os.environ.get("BENCH_EMPTY_SHARDS", "4,8").split(",") if n]
EMPTY_RECEIVES = int(os.environ.get("BENCH_EMPTY_RECEIVES", "20"))
LONG_POLL_S = int(os.environ.get("BENCH_LONG_POLL_S", "20"))
# DynamoDB: eventually consistent reads "may not reflect the results of a recently completed
# write"; its FAQ put consistency across copies at "usually within a second". What matters
# is how many leases happen within the lag: 50 receivers here run ~100 times slower than
# on AWS (one process, moto), so 1 s here is about as many leases as ~10 ms there.
READ_LAG_MS = int(os.environ.get("BENCH_READ_LAG_MS", "1000"))
RESULTS = ROOT / "bench" / "results" / "cost.json"
STOMP = "v12.stomp"
GROUPS = 30  # FIFO groups: issue 13 measures one FIFO queue's ceiling with 30 or more
# A FIFO queue's segments (10 references each) rotate over its shards: a sample shorter than
# one rotation sees one segment's partition take every lease and ack. Its ceiling cell (1 KB,
# one per request) runs two rotations, so each partition key shows its share of the load.
FIFO_CEILING_MESSAGES = 2 * DEFAULT_FIFO_SHARDS * FIFO_SEGMENT_REFS


def say(text: str = "") -> None:
    """Print to the terminal (the runtime routes sys.stdout to its console)."""
    print(text, file=sys.__stdout__, flush=True)


# ---- the stack ---------------------------------------------------------------------------


class Stack:
    """`mqless dev` in this process, plus the clients' side of it."""

    def __init__(self) -> None:
        self.runtime = DevRuntime(
            ROOT / "template.yaml",
            http_port=0,
            ws_port=0,
            streams=False,
            schedules=False,
            console=Console(io.StringIO()),
            bill_period=3600,
        )
        self.runtime.start()
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the functions' loggers, made lazily
        assert self.runtime.http is not None and self.runtime.ws is not None
        self.meter = self.runtime.meter
        self.token = self.runtime.token
        self.http_url = self.runtime.http.url
        self.ws_url = self.runtime.ws.url
        self.stream = StreamDriver(self.runtime)
        self._api = Api(self.http_url, self.token)

    def stop(self) -> None:
        self.runtime.stop()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return self._api.call(method, path, body)

    def invocations(self, function: str) -> float:
        return self.meter.usage().lambda_invocations.get(function, 0)

    def wait_for_invocations(self, function: str, count: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.invocations(function) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{function}: {self.invocations(function)} of {count}")
            time.sleep(0.002)


class Api:
    """An HTTP client on one keep-alive connection to the local HTTP API."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._connection = http.client.HTTPConnection(self._host, self._port, timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        self._connection.request(method, path, body=data, headers=self._headers)
        response = self._connection.getresponse()
        payload = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None


class StreamDriver:
    """Hands the messages table's stream to the dispatch function as Lambda's event source
    mapping does (its BatchSize and FilterCriteria), synchronously, batch by batch."""

    def __init__(self, runtime: DevRuntime) -> None:
        assert runtime.cloud is not None and runtime.functions is not None
        [self.source] = runtime.cloud.stack.stream_sources()
        self._functions = runtime.functions
        self._client = LocalCloud.client("dynamodbstreams")
        self._matches = record_filter(self.source.filter_patterns)
        shards = self._client.describe_stream(StreamArn=self.source.stream_arn)
        self._iterators = {
            shard["ShardId"]: self._client.get_shard_iterator(
                StreamArn=self.source.stream_arn,
                ShardId=shard["ShardId"],
                ShardIteratorType="LATEST",
            )["ShardIterator"]
            for shard in shards["StreamDescription"]["Shards"]
        }

    def drain(self) -> int:
        """Invoke dispatch until the stream holds nothing new (fan-out writes more);
        returns how many invocations that took."""
        invocations = 0
        while True:
            delivered = False
            for shard_id, iterator in list(self._iterators.items()):
                response = self._client.get_records(
                    ShardIterator=iterator, Limit=self.source.batch_size
                )
                self._iterators[shard_id] = response["NextShardIterator"]
                records = [
                    record
                    for raw in response.get("Records", [])
                    if self._matches(
                        record := lambda_record(
                            raw, stream_arn=self.source.stream_arn, region=REGION
                        )
                    )
                ]
                if response.get("Records"):
                    delivered = True
                if records:
                    self._functions.invoke(self.source.function, {"Records": records})
                    invocations += 1
            if not delivered:
                _trim_streams()
                return invocations


def _trim_streams() -> None:
    """Drop the stream records already read from moto's shards. DynamoDB keeps 24 hours of
    stream; moto keeps all of it and copies it whole on every transaction (its rollback),
    which would make the FIFO rows slower and slower."""
    from moto.dynamodb.models import dynamodb_backends

    for account in list(dynamodb_backends.values()):
        for backend in list(account.values()):
            for table in backend.tables.values():
                shard = table.stream_shard
                if shard is not None and shard.items:
                    shard.starting_sequence_number += len(shard.items)
                    shard.items = []


# ---- one cell of the table -----------------------------------------------------------------


@dataclass
class Cell:
    path: str
    body: int
    batch: int
    messages: int
    usage: Usage
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def body_of(n: int, size: int) -> str:
    """A distinct body of `size` bytes (FIFO deduplicates equal bodies)."""
    prefix = f"{n:010d}"
    return prefix + "x" * (size - len(prefix))


def measure(stack: Stack, path: str, size: int, batch: int, run: int) -> Cell:
    """Run N messages down `path`; what the measured part billed."""
    name = f"b{run}-{path.split(',')[0].split(' ')[0]}"
    if path in FIFO_PATHS:
        name += ".fifo"
    if path == PRIORITY_PATH:
        name += "-priorities"
        stack.api("PUT", f"/queues/{name}", {"max_priority": 9})
    counter = iter(range(10**9))
    requests = iter(range(10**9))

    def new_messages(count: int) -> list[dict[str, Any]]:
        entries = []
        request = next(requests)
        for _ in range(count):
            n = next(counter)
            entry: dict[str, Any] = {"body": body_of(n, size)}
            if path in FIFO_PATHS:
                entry["group_id"] = f"g{n % GROUPS}"
            if path == PRIORITY_PATH:
                entry["priority"] = n % 10 if count == 1 else request % 10
            entries.append(entry)
        return entries

    def send(destination: str, entries: list[dict[str, Any]]) -> None:
        if len(entries) == 1:
            stack.api("POST", f"{destination}/messages", entries[0])
        else:
            batch_entries = [{"id": f"e{i}", **e} for i, e in enumerate(entries)]
            result = stack.api("POST", f"{destination}/messages/batch", {"entries": batch_entries})
            assert not result.get("failed"), result

    held: list[str] = []  # ack with next: receipts the next receive acks

    def consume(queue: str, expected: int) -> None:
        got = 0
        while got < expected:
            request: dict[str, Any] = {"max_messages": min(batch, expected - got)}
            if path in ACKS_WITH_NEXT and held:
                request["ack"] = list(held)
            answer = stack.api("POST", f"/queues/{queue}/receive", request)
            assert len(answer.get("acked", [])) == len(request.get("ack", [])), answer
            found = answer["messages"]
            if not found:
                raise AssertionError(f"{queue}: received {got} of {expected}")
            receipts = [m["receipt"] for m in found]
            if path in ACKS_WITH_NEXT:
                held[:] = receipts
            else:
                stack.api("POST", f"/queues/{queue}/ack", {"receipts": receipts})
            got += len(found)

    def ack_held() -> None:
        """The last receipts of a run: acked on their own (no receive follows)."""
        if held:
            stack.api("POST", f"/queues/{name}/ack", {"receipts": list(held)})
            held.clear()

    if path in ("standard", *FIFO_PATHS, ACK_WITH_NEXT, PRIORITY_PATH):
        destination = f"/queues/{name}"

        def step(requests: list[list[dict[str, Any]]]) -> None:
            for entries in requests:
                send(destination, entries)
            stack.stream.drain()
            for entries in requests:
                consume(name, len(entries))

        return _run(stack, path, size, batch, new_messages, step, ack_held)

    if path.startswith("topic"):
        subscribers = 5 if "5" in path else 1
        topic = f"{name}.events"
        queues = [f"{name}-sub{i}" for i in range(subscribers)]
        for queue in queues:
            stack.api("PUT", f"/queues/{queue}", {})
            stack.api("PUT", f"/topics/{topic}/subscriptions/{queue}", {"queue": queue})

        def publish(requests: list[list[dict[str, Any]]]) -> None:
            for entries in requests:
                send(f"/topics/{topic}", entries)
            stack.stream.drain()  # indexed into each subscription's queue
            for queue in queues:
                for entries in requests:
                    consume(queue, len(entries))

        return _run(stack, path, size, batch, new_messages, publish)

    ack = path.split(", ")[1]
    if size >= PUSH_LIMIT:
        return Cell(path, size, batch, 0, Usage(), note="over API Gateway's 128 KB push limit")
    consumer = StompConsumer(stack, name, ack)
    try:

        def push(requests: list[list[dict[str, Any]]]) -> None:
            for entries in requests:
                send(f"/queues/{name}", entries)
            stack.stream.drain()  # dispatch pumps the queue: pushes over @connections
            consumer.take(sum(len(entries) for entries in requests))

        return _run(stack, path, size, batch, new_messages, push)
    finally:
        consumer.close()


def _run(
    stack: Stack,
    path: str,
    size: int,
    batch: int,
    new_messages: Callable[[int], list[dict[str, Any]]],
    step: Callable[[list[list[dict[str, Any]]]], None],
    finish: Callable[[], None] = lambda: None,
) -> Cell:
    """Send `count` messages in requests of `batch`; the dispatch function gets a stream batch
    of STREAM_RECORDS new messages at a time (what Lambda gathers from a busy queue), then
    the consumers take them; `finish` settles what they still hold (each measured message
    is acked once, within the measure)."""
    requests_per_drain = max(1, STREAM_RECORDS // batch)
    step([new_messages(batch)])  # warm: queue made, data key cached, functions loaded
    finish()
    wanted = max(10, N // 2) if path in (*FIFO_PATHS, "topic, 5 subs") else N
    if (path, size, batch) == ("fifo", KIB, 1):
        wanted = max(wanted, FIFO_CEILING_MESSAGES)
    count = max(batch, wanted // batch * batch)
    before = stack.meter.usage()
    sent = 0
    while sent < count:
        requests = [
            new_messages(batch) for _ in range(min(requests_per_drain, (count - sent) // batch))
        ]
        step(requests)
        sent += batch * len(requests)
    finish()
    return Cell(path, size, batch, count, stack.meter.usage() - before)


class StompConsumer:
    """A STOMP client subscribed to one queue with an ack mode and a prefetch of 10."""

    def __init__(self, stack: Stack, queue: str, ack: str) -> None:
        self._stack = stack
        self._ack = ack
        self._socket: ClientConnection = connect(
            f"{stack.ws_url}/?access_token={stack.token}",
            subprotocols=[STOMP],  # type: ignore[list-item]
            open_timeout=60,
            max_size=None,
            legacy=True,  # closed by close(), not a with block
        )
        self._frames = 0
        self._base = stack.invocations("WebSocketFunction")  # $connect ran in the handshake
        self._send("CONNECT\naccept-version:1.2\nhost:bench\n\n\x00")
        assert self._read()[0][0] == "CONNECTED"
        self._send(
            f"SUBSCRIBE\nid:s1\ndestination:/queue/{queue}\nack:{ack}\n"
            "activemq.prefetchSize:10\n\n\x00"
        )

    def take(self, count: int) -> None:
        """Receive `count` messages, acknowledging each push as it arrives as the ack mode says
        (a `client` consumer acks a push's last message, which covers the push): with a
        prefetch of 10, more than 10 waiting messages arrive only as earlier ones are acked."""
        taken = 0
        while taken < count:
            acks = []
            for command, headers in self._read():
                if command == "ERROR":
                    raise RuntimeError(f"STOMP ERROR: {headers}")
                if command == "MESSAGE":
                    acks.append(headers.get("ack", ""))
            taken += len(acks)
            if acks and self._ack == "client-individual":
                for ack_id in acks:
                    self._send(f"ACK\nid:{ack_id}\n\n\x00")
            elif acks and self._ack == "client":
                self._send(f"ACK\nid:{acks[-1]}\n\n\x00")  # cumulative: the whole push

    def close(self) -> None:
        self._socket.close()
        # $disconnect runs after the socket closes: let it finish before the next cell
        self._stack.wait_for_invocations("WebSocketFunction", self._base + self._frames + 1)

    def _send(self, frame: str) -> None:
        self._frames += 1
        self._socket.send(frame)
        # each frame is one invocation of the WebSocket function: wait for it to finish
        self._stack.wait_for_invocations("WebSocketFunction", self._base + self._frames)

    def _read(self) -> list[tuple[str, dict[str, str]]]:
        text = self._socket.recv(timeout=60)
        assert isinstance(text, str)
        frames = []
        for raw in text.split("\x00"):
            raw = raw.lstrip("\r\n")
            if not raw:
                continue
            head = raw.split("\n\n", 1)[0].split("\n")
            headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
            frames.append((head[0], headers))
        return frames


# ---- what a stored message weighs ------------------------------------------------------------


def stored_overhead(stack: Stack, size: int = 1024) -> dict[str, Any]:
    """Bytes a stored standard message takes beyond its body and attributes: its log item as
    DynamoDB sizes it (keys, envelope, names), and its share of the index segment that
    references it (a segment holds up to 12)."""
    from mqless_cli.billing.dynamodb import item_size

    queue = "b-stored"
    stack.api("POST", f"/queues/{queue}/messages", {"body": body_of(0, size)})
    stack.stream.drain()
    dynamodb = LocalCloud.client("dynamodb")
    table = os.environ["MESSAGES_TABLE"]
    found = [
        i
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for i in page["Items"]
    ]
    [logged] = [i for i in found if i["pk"]["S"].startswith(f"L#{queue}#")]
    [segment] = [i for i in found if i["pk"]["S"].startswith(f"I#{queue}#") and "r" in i]
    per_entry = item_size(segment) - item_size({"pk": segment["pk"], "sk": segment["sk"]})
    return {
        "body": size,
        "item_bytes": item_size(logged),
        "bytes_beyond_body": item_size(logged) - size,
        "index_entry_bytes": per_entry // max(1, len(segment["r"]["L"])),
    }


# ---- receives that find nothing ---------------------------------------------------------------


def empty_receives(stack: Stack, shards: int, lanes: str = "") -> dict[str, Any]:
    """What a receive of an empty queue of `shards` shards bills (it reads every shard, the
    cursors cached for 2 s), and a long poll of LONG_POLL_S that finds nothing (it looks
    again after 0.05 s, doubling to every 1 s): all in, Lambda's duration included.

    `lanes`: a queue of 10 priority lanes (`shards` each), "in use" (a message of every
    priority sent and acked just before: every lane is read) or "quiet" (made and never
    sent to: its first receive marks the lanes empty, later ones read the marks only)."""
    queue = f"b-empty-{shards}" + (f"-lanes-{lanes.replace(' ', '-')}" if lanes else "")
    if lanes:
        stack.api("PUT", f"/queues/{queue}", {"shards": shards, "max_priority": 9})
    else:
        stack.api("PUT", f"/queues/{queue}", {"shards": shards})
    if lanes == "in use":
        for priority in range(10):
            stack.api("POST", f"/queues/{queue}/messages", {"body": "x", "priority": priority})
        stack.stream.drain()
        got = stack.api("POST", f"/queues/{queue}/receive", {"max_messages": 10})["messages"]
        stack.api("POST", f"/queues/{queue}/ack", {"receipts": [m["receipt"] for m in got]})
    stack.api("POST", f"/queues/{queue}/receive", {"max_messages": 1})  # caches warm
    before = stack.meter.usage()
    for _ in range(EMPTY_RECEIVES):
        stack.api("POST", f"/queues/{queue}/receive", {"max_messages": 1})
    quick = stack.meter.usage() - before
    found: dict[str, Any] = {"shards": shards, "receives": EMPTY_RECEIVES}
    if lanes:
        found["priority_lanes"] = f"10, {lanes}"
    bill = price(quick, connection_minutes=False).per(EMPTY_RECEIVES)
    found["empty_receive_rru"] = quick.total_read_units() / EMPTY_RECEIVES
    found["empty_receive_dollars_per_million"] = bill.total
    found["empty_receive_dynamodb_dollars_per_million"] = bill.lines["DynamoDB reads"]
    if LONG_POLL_S:
        before = stack.meter.usage()
        stack.api(
            "POST", f"/queues/{queue}/receive", {"max_messages": 1, "wait_seconds": LONG_POLL_S}
        )
        poll = stack.meter.usage() - before
        bill = price(poll, connection_minutes=False).per(1)
        found["long_poll_seconds"] = LONG_POLL_S
        found["long_poll_rru"] = poll.total_read_units()
        found["long_poll_dollars_per_million"] = bill.total
        found["long_poll_dynamodb_dollars_per_million"] = bill.lines["DynamoDB reads"]
        found["long_poll_lambda_dollars_per_million"] = bill.lines["Lambda duration"]
    return found


def show_empty(run: dict[str, Any]) -> str:
    lanes = (
        f" x 10 lanes ({run['priority_lanes'].split(', ')[1]})" if "priority_lanes" in run else ""
    )
    line = (
        f"  {run['shards']:>2} shards{lanes}: an empty receive {run['empty_receive_rru']:.1f} RRU "
        f"(${run['empty_receive_dynamodb_dollars_per_million']:.2f}/M in DynamoDB, "
        f"${run['empty_receive_dollars_per_million']:.2f}/M all in)"
    )
    if "long_poll_rru" in run:
        line += (
            f"; a {run['long_poll_seconds']} s long poll {run['long_poll_rru']:.1f} RRU "
            f"(${run['long_poll_dynamodb_dollars_per_million']:.2f}/M in DynamoDB, "
            f"${run['long_poll_dollars_per_million']:.2f}/M all in, of which Lambda's duration "
            f"${run['long_poll_lambda_dollars_per_million']:.2f})"
        )
    return line


# ---- 50 competing consumers ----------------------------------------------------------------


def contention(stack: Stack) -> dict[str, Any]:
    """CONSUMERS receivers compete for CONTENDED messages of one queue: once with moto's
    reads (always current), once with eventually consistent reads that may answer with
    the state of up to READ_LAG_MS ago, as DynamoDB's may."""
    runs = {"current_reads": compete(stack, "b-contended", lag_ms=0)}
    if READ_LAG_MS:
        runs["lagging_reads"] = compete(stack, "b-contended-lag", lag_ms=READ_LAG_MS)
    return runs


def compete(stack: Stack, queue: str, *, lag_ms: int) -> dict[str, Any]:
    """Each consumer is its own Lambda instance (on AWS, 50 concurrent receives run in 50
    instances): its own QueueService, clients and caches. Each receives one message at a
    time and acks it, until all CONTENDED are acked."""
    # imported here, once the runtime runs: its logger then writes to the runtime's
    # console, not over the bench's table
    from mqless.assembly import build_queue_service

    for start in range(0, CONTENDED, 10):
        entries = [{"id": f"e{i}", "body": body_of(start + i, 1024)} for i in range(10)]
        stack.api("POST", f"/queues/{queue}/messages/batch", {"entries": entries})
    stack.stream.drain()
    settings = Settings.from_env()
    instances = [
        build_queue_service(
            settings, dynamodb=LocalCloud.client("dynamodb"), kms=LocalCloud.client("kms")
        )
        for _ in range(CONSUMERS)
    ]
    leased = [0] * CONSUMERS
    latencies: list[float] = []
    empty = [0]
    remaining = [CONTENDED]
    lock = threading.Lock()
    ready = threading.Barrier(CONSUMERS + 1)

    def consumer(index: int) -> None:
        broker = instances[index]
        ready.wait()
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
            asked = time.perf_counter()
            found = broker.receive(ANONYMOUS, queue, max_messages=1)
            took = time.perf_counter() - asked
            if not found:
                with lock:
                    empty[0] += 1
                continue
            broker.ack(ANONYMOUS, queue, [found[0].receipt])
            with lock:
                leased[index] += 1
                remaining[0] -= 1
                latencies.append(took)

    threads = [threading.Thread(target=consumer, args=(i,)) for i in range(CONSUMERS)]
    for thread in threads:
        thread.start()
    before = stack.meter.usage()
    with lagging_reads(lag_ms) if lag_ms else contextlib.nullcontext():
        started = time.perf_counter()
        ready.wait()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    usage = stack.meter.usage() - before
    failed = sum(usage.failed_conditions.values())
    latencies.sort()
    return {
        "consumers": CONSUMERS,
        "messages": CONTENDED,
        "read_lag_ms": lag_ms,
        "failed_conditional_writes": failed,
        "failed_per_successful_lease": failed / CONTENDED,
        "lost_lease_claims": sum(i.leases.stats.lost for i in instances),
        "ticket_writes": sum(i.leases.stats.tickets for i in instances),
        "wru_per_message": usage.base_write_units() / CONTENDED,
        "rru_per_message": usage.total_read_units() / CONTENDED,
        "empty_receives": empty[0],
        "leases_per_consumer_min": min(leased),
        "leases_per_consumer_max": max(leased),
        "consumers_with_none": sum(1 for n in leased if n == 0),
        "receive_ms_p50": 1000 * latencies[len(latencies) // 2],
        "receive_ms_p99": 1000 * latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
        "seconds": seconds,
        "dynamodb_per_million": sum(
            dollars
            for line, dollars in price(usage, connection_minutes=False).per(CONTENDED).lines.items()
            if line.startswith("DynamoDB")
        ),
    }


def show_contention(run: dict[str, Any]) -> str:
    reads = (
        f"reads up to {run['read_lag_ms']} ms old"
        if run["read_lag_ms"]
        else "current reads (moto's)"
    )
    return (
        f"  {reads}: {run['failed_per_successful_lease']:.2f} failed conditional writes per "
        f"lease ({run['failed_conditional_writes']:,.0f}, {run['lost_lease_claims']} of them "
        f"lost lease claims; {run['ticket_writes']} ticket writes); "
        f"{run['wru_per_message']:.2f} WRU and "
        f"{run['rru_per_message']:.2f} RRU per message (lease + ack + failures + tickets; "
        f"${run['dynamodb_per_million']:.2f} per million in DynamoDB); leases per "
        f"consumer {run['leases_per_consumer_min']}-{run['leases_per_consumer_max']}, "
        f"{run['consumers_with_none']} got none; receive p50 {run['receive_ms_p50']:.0f} ms, "
        f"p99 {run['receive_ms_p99']:.0f} ms; {run['empty_receives']:,} empty receives; "
        f"{run['seconds']:.1f} s"
    )


# ---- the table -----------------------------------------------------------------------------


def row(cell: Cell) -> dict[str, Any]:
    """Per-message figures of a cell, and its price beside SQS's."""
    m = cell.messages
    u = cell.usage
    subscribers = 5 if "5 subs" in cell.path else 1 if "1 sub" in cell.path else 0
    sqs = sqs_reference(
        1_000_000,
        cell.body,
        batch=cell.batch,
        fifo=cell.path in FIFO_PATHS,
        subscribers=subscribers,
    )
    if not m:
        return {"path": cell.path, "body": cell.body, "batch": cell.batch, "note": cell.note}
    bill = price(u, connection_minutes=False).per(m)
    partition, hot_wru, hot_rru = u.hottest_partition()
    return {
        "path": cell.path,
        "body": cell.body,
        "batch": cell.batch,
        "messages": m,
        "wru_table": u.base_write_units() / m,
        "wru_index": u.index_write_units() / m,
        "rru": u.total_read_units() / m,
        "failed_conditions": sum(u.failed_conditions.values()) / m,
        "dynamodb_requests": u.count("dynamodb") / m,
        "http_requests": u.http_requests.get("calls", 0) / m,
        "websocket_messages": (
            u.websocket_messages.get("in", 0) + u.websocket_messages.get("out", 0)
        )
        / m,
        "lambda_invocations": sum(u.lambda_invocations.values()) / m,
        "kms_requests": u.count("kms") / m,
        "metric_log_bytes": u.metric_log_bytes / m,
        "metrics_dollars_per_million": bill.lines["CloudWatch Logs (EMF metrics)"],
        "dollars_per_million": bill.total,
        "dollars_per_million_by_service": bill.lines,
        "sqs_dollars_per_million": sqs.dollars,
        "times_sqs": bill.total / sqs.dollars,
        "hottest_partition": partition,
        "hottest_partition_wru_per_message": hot_wru / m,
        "hottest_partition_rru_per_message": hot_rru / m,
        "ceiling_messages_per_second": _finite(ceiling_per_second(hot_wru, hot_rru, m)),
        "note": cell.note,
    }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def issue_13_figures(
    rows: list[dict[str, Any]], stored: dict[str, Any], contended: dict[str, Any]
) -> dict[str, Any]:
    """The figures issue 13 (storage engine v2) sets targets for, from this run."""

    def find(path: str, body: int, batch: int) -> dict[str, Any]:
        for r in rows:
            if (r["path"], r["body"], r["batch"]) == (path, body, batch) and "messages" in r:
                return r
        return {}

    def wru(r: dict[str, Any]) -> float | None:
        return r["wru_table"] + r["wru_index"] if r else None

    figures: dict[str, Any] = {
        "standard_512B_x1_wru": wru(find("standard", 512, 1)),
        "standard_512B_x10_wru": wru(find("standard", 512, 10)),
        "standard_wru_by_kb": {
            str(b // KIB): wru(find("standard", b, 1)) for b in SIZES if b >= KIB
        },
        # the same, each ack carried by the receive that takes the next message
        "standard_512B_x1_ack_with_next_wru": wru(find(ACK_WITH_NEXT, 512, 1)),
        "standard_wru_by_kb_ack_with_next": {
            str(b // KIB): wru(find(ACK_WITH_NEXT, b, 1)) for b in SIZES if b >= KIB
        },
        "bytes_stored_beyond_body": stored.get("bytes_beyond_body"),
        "bytes_stored_in_the_index": stored.get("index_entry_bytes"),
        "fifo_x1_wru": wru(find("fifo", 512, 1)),
        "fifo_x10_wru": wru(find("fifo", 512, 10)),
        "fifo_x1_ack_with_next_wru": wru(find(FIFO_ACK_WITH_NEXT, 512, 1)),
        # one producer's messages share one shard (its order kept); many producers (Lambda
        # instances) spread a busy queue over every shard, each its own partition keys
        "ceiling_standard_1KB_msg_s": _times(
            find("standard", KIB, 1).get("ceiling_messages_per_second"), DEFAULT_SHARDS
        ),
        "ceiling_fifo_1KB_msg_s": find("fifo", KIB, 1).get("ceiling_messages_per_second"),
        "competing_consumers_failed_per_lease": contended.get("current_reads", {}).get(
            "failed_per_successful_lease"
        ),
        "competing_consumers_failed_per_lease_lagging_reads": contended.get(
            "lagging_reads", {}
        ).get("failed_per_successful_lease"),
        "all_in_512B_http_x10": find("standard", 512, 10).get("dollars_per_million"),
        "all_in_512B_push_x10_cumulative": find("push, client", 512, 10).get("dollars_per_million"),
    }
    for subscribers in (1, 5):
        r = find(f"topic, {subscribers} sub{'s' if subscribers > 1 else ''}", 512, 10)
        value = wru(r)
        figures[f"topic_{subscribers}_subs_x10_wru_per_subscriber"] = (
            None if value is None else value / subscribers
        )
    return figures


def _times(value: Any, factor: int) -> Any:
    return None if value is None else value * factor


def show_figures(figures: dict[str, Any]) -> list[str]:
    def f(value: Any, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    by_kb = ", ".join(f"{kb} KB {f(v, 1)}" for kb, v in figures["standard_wru_by_kb"].items())
    by_kb_next = ", ".join(
        f"{kb} KB {f(v, 1)}" for kb, v in figures["standard_wru_by_kb_ack_with_next"].items()
    )
    return [
        "Issue 13's figures, today (write units per acked message, table + index):",
        f"  standard 512 B: {f(figures['standard_512B_x1_wru'])} one per request, "
        f"{f(figures['standard_512B_x10_wru'])} in batches of 10; by body: {by_kb}",
        f"  standard 512 B, one per request, each ack in the next receive: "
        f"{f(figures['standard_512B_x1_ack_with_next_wru'], 2)}; by body: {by_kb_next}",
        f"  bytes stored per message beyond its body: {f(figures['bytes_stored_beyond_body'], 0)}"
        f" in its log item, {f(figures['bytes_stored_in_the_index'], 0)} in the index",
        f"  topic, batches of 10, per subscriber: "
        f"{f(figures['topic_1_subs_x10_wru_per_subscriber'])} (1 sub), "
        f"{f(figures['topic_5_subs_x10_wru_per_subscriber'])} (5 subs)",
        f"  FIFO 512 B: {f(figures['fifo_x1_wru'])} one per request, "
        f"{f(figures['fifo_x10_wru'])} in batches of 10, "
        f"{f(figures['fifo_x1_ack_with_next_wru'])} one per request, each ack in the next receive",
        f"  one queue's ceiling (1 KB, one per request): standard "
        f"{f(figures['ceiling_standard_1KB_msg_s'], 0)} msg/s ({DEFAULT_SHARDS} shards), "
        f"FIFO ({GROUPS} groups) {f(figures['ceiling_fifo_1KB_msg_s'], 0)} msg/s",
        f"  {CONSUMERS} competing consumers: "
        f"{f(figures['competing_consumers_failed_per_lease'], 2)} failed conditional writes "
        "per successful lease with current reads, "
        f"{f(figures['competing_consumers_failed_per_lease_lagging_reads'], 2)} with reads up "
        f"to {READ_LAG_MS} ms old",
        f"  all in, 512 B: HTTP batches of 10 ${f(figures['all_in_512B_http_x10'], 2)}/M; "
        f"push (batch send, 10 per frame, cumulative ack) "
        f"${f(figures['all_in_512B_push_x10_cumulative'], 2)}/M",
    ]


# GET /history (the console's charts) reads 9 series a view: 4 rates, 4 totals and depth
HISTORY_SERIES = 9
HISTORY_REFRESH_S = 30


def metrics_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the metrics behind the console's charts cost: per message (the EMF documents the
    functions print, billed as CloudWatch Logs ingestion) and per hour a chart is open."""
    by_path: dict[str, dict[str, float]] = {}
    for r in rows:
        if "messages" in r and r["body"] == 512:
            by_path[f"{r['path']} x{r['batch']}"] = {
                "emf_bytes_per_message": r["metric_log_bytes"],
                "dollars_per_million_messages": r["metrics_dollars_per_million"],
            }
    views_per_hour = 3600 / HISTORY_REFRESH_S
    return {
        "by_path_512B": by_path,
        "history_dollars_per_console_hour": views_per_hour
        * HISTORY_SERIES
        * PRICES.cloudwatch_metrics_requested,
        "custom_metric_dollars_per_month": PRICES.cloudwatch_custom_metric_month,
    }


def show_metrics_figures(figures: dict[str, Any]) -> list[str]:
    lines = ["The console's charts (issue 17), from the functions' own EMF metrics:"]
    for path, f in figures["by_path_512B"].items():
        lines.append(
            f"  {path:<32} {f['emf_bytes_per_message']:>6,.0f} EMF bytes a message "
            f"(CloudWatch Logs, $0.50/GB): ${f['dollars_per_million_messages']:.3f}/M, in $/M"
        )
    lines.append(
        f"  reading them back (GET /history, GetMetricData $0.01 per 1,000 series, "
        f"{HISTORY_SERIES} series every {HISTORY_REFRESH_S} s): "
        f"${figures['history_dollars_per_console_hour']:.4f} per hour a chart is open; "
        f"each queue's or topic's metrics ${figures['custom_metric_dollars_per_month']:.2f} "
        "a metric a month (CloudWatch custom metrics); nothing per message"
    )
    return lines


HEADER = (
    f"{'path':<24}{'body':>7}{'b':>3} |{'WRU tbl':>8}{'idx':>6}{'RRU':>6}{'fail':>6} |"
    f"{'DDB':>6}{'HTTP':>5}{'WS':>5}{'λ':>5}{'KMS':>6} |{'$/M':>8}{'SQS':>6}{'×SQS':>6} |"
    f"{'hot WRU':>8}{'msg/s':>7}"
)


def show(r: dict[str, Any]) -> str:
    body = f"{r['body'] // KIB} KB" if r["body"] >= KIB else f"{r['body']} B"
    head = f"{r['path']:<24}{body:>7}{r['batch']:>3} |"
    if "messages" not in r:
        return head + f"  n/a: {r['note']}"
    ceiling = r["ceiling_messages_per_second"]
    return (
        head + f"{r['wru_table']:>8.1f}{r['wru_index']:>6.1f}{r['rru']:>6.1f}"
        f"{r['failed_conditions']:>6.2f} |"
        f"{r['dynamodb_requests']:>6.1f}{r['http_requests']:>5.1f}{r['websocket_messages']:>5.1f}"
        f"{r['lambda_invocations']:>5.1f}{r['kms_requests']:>6.3f} |"
        f"{r['dollars_per_million']:>8.2f}{r['sqs_dollars_per_million']:>6.2f}"
        f"{r['times_sqs']:>6.1f} |{r['hottest_partition_wru_per_message']:>8.1f}"
        f"{'-' if ceiling is None else f'{ceiling:,.0f}':>7}"
    )


LEGEND = """
Per message sent (a topic's: per message published, every subscription's delivery
included), billed as AWS bills, us-east-1 on-demand list prices ({asof}):
  WRU tbl / idx  DynamoDB write units on the table / on secondary indexes (none since
                 storage engine v2; 1 per started KB of the item: a put or update the
                 larger of before and after, a delete the deleted item)
  RRU            read units (4 KB, half when eventually consistent; queries bill what they
                 read before filters)   fail  conditional writes refused (billed too)
  DDB HTTP WS λ KMS   requests: DynamoDB, API Gateway HTTP, WebSocket messages (both ways,
                 @connections posts included), Lambda invocations, KMS
  $/M            all in per million messages: DynamoDB + API Gateway + Lambda (GB-s at
                 512 MB, arm64, from durations measured here with moto in-process: an
                 estimate) + KMS + CloudWatch Logs for the functions' EMF metric
                 documents ($0.50/GB: what the console's charts read); WebSocket
                 connection minutes left out (a consumer connected all month: $0.011)
  SQS            SQS's bill for the same work: send + receive + delete, one request per
                 64 KB chunk, 10 per request in batches ($0.40/M; FIFO $0.50/M); a topic
                 publishes once to SNS ($0.50/M), delivery to each queue free
  hot WRU        write units per message on the busiest partition key (table or index);
  msg/s          the ceiling it implies: 1,000 WCU/s and 3,000 RCU/s a key (for a standard
                 queue, one shard's: this bench has one producer, whose messages share a
                 shard; the queue's {shards} shards take {shards} times that from many)
  b              messages per request (1, or batches of 10)
The dispatch function is handed stream batches of {records} new messages (BENCH_STREAM_RECORDS:
16 is a busy queue; at 1, a trickle, each message pays one more index write); the 256 KB
rows use a 256 KiB body (262,144 bytes, the send limit with no attributes).
"""


def main() -> int:
    started = time.perf_counter()
    say(
        f"mqless bench: cost per message, {N} messages per cell, through the HTTP and "
        "WebSocket gateways of mqless dev (moto in-process)\n"
    )
    stack = Stack()
    rows: list[dict[str, Any]] = []
    try:
        say(HEADER)
        say("-" * len(HEADER))
        run = 0
        for path in PATHS:
            path_started = time.perf_counter()
            for size in SIZES:
                if path == PRIORITY_PATH and size not in PRIORITY_SIZES:
                    continue
                # acks ride on the next receive only where both are in one segment: a batch
                # of 10 fills a segment of its own, so its row would be the standard one
                for batch in (1,) if path in ACKS_WITH_NEXT else (1, 10):
                    run += 1
                    cell = measure(stack, path, min(size, MAX_BODY), batch, run)
                    r = row(cell)
                    rows.append(r)
                    say(show(r))
            say(f"{'':<24}({time.perf_counter() - path_started:.0f} s)")
        contended = contention(stack) if CONSUMERS else {}
        stored = stored_overhead(stack)
        empty = [empty_receives(stack, shards) for shards in EMPTY_SHARDS]
        if PRIORITY_PATH in PATHS:
            empty += [empty_receives(stack, 1, lanes) for lanes in ("quiet", "in use")]
    finally:
        stack.stop()
    if contended:
        say(
            f"{CONSUMERS} competing consumers on one queue, {CONTENDED} messages of 1 KB, "
            "each consumer its own instance (receive 1, ack it):"
        )
        for run in contended.values():
            say(show_contention(run))
    if empty:
        say("Receives that find nothing (each reads every shard of the queue):")
        for found in empty:
            say(show_empty(found))
    figures = issue_13_figures(rows, stored, contended)
    say()
    for line in show_figures(figures):
        say(line)
    metrics = metrics_figures(rows)
    say()
    for line in show_metrics_figures(metrics):
        say(line)
    say(LEGEND.format(asof=PRICES_AS_OF, shards=DEFAULT_SHARDS, records=STREAM_RECORDS))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "generated": datetime.now(UTC).strftime("%Y-%m-%d"),
                "messages_per_cell": N,
                "region": REGION,
                "prices_as_of": PRICES_AS_OF,
                "stream_batches": "one dispatch invocation per client request that wrote items",
                "rows": rows,
                "competing_consumers": contended,
                "stored_message": stored,
                "empty_receives": empty,
                "issue_13_figures": figures,
                "console_metrics": metrics,
            },
            indent=1,
        )
        + "\n"
    )
    say(f"results: {RESULTS.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
