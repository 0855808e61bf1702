"""Scheduled delivery (docs/scheduled-delivery.md): what a message delayed by an hour costs,
beside an ordinary one, billed as AWS bills it.

Under moto, through the real services (send, the dispatch function's indexing, the
sweeper's firing, receive, ack) on a clock this script moves: the hour passes at once.
The meter (`mqless_cli.billing`) bills DynamoDB by item size (writes, reads, failed
conditions) and counts KMS requests. The requests around them are the same for both
paths and are added at list price: three HTTP API requests (send, receive, ack) and the
three function invocations behind them, and the dispatch function's invocation per stream
batch (1/16 of one a message, as `bench/cost.py` feeds it). The sweeper runs each minute
whether or not anything is scheduled: its invocation is the stack's, not a message's.

Rows, 512 B bodies, sent one per request:
- ordinary: send, index (16 a stream batch), receive, ack; and one alone in its batch;
- scheduled 1 h, with BENCH_MESSAGES (default 100) falling due in the same sweep: the
  sweep's hold on the destination and its cursor move are shared by them;
- scheduled 1 h, alone in its sweep: a destination whose sweep fires one message.
Writes bench/results/scheduled.json.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto import mock_aws
from moto_stack import ROOT, provisioned  # sets moto's AWS variables first

from mqless import assembly  # noqa: E402
from mqless.domain.access.principals import ANONYMOUS, AllowAll  # noqa: E402
from mqless.domain.clock import ManualClock  # noqa: E402
from mqless.domain.messages import NewMessage
from mqless.storage.destinations import QueueRegistry  # noqa: E402
from mqless.storage.dynamo import from_wire  # noqa: E402
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider  # noqa: E402
from mqless.storage.schedules import Rule  # noqa: E402
from mqless_cli.billing import PRICES, Meter, Usage, observing_moto  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "100"))
BODY = 512
HOUR_MS = 3_600_000
STREAM_RECORDS = 16
RESULTS = ROOT / "bench" / "results" / "scheduled.json"


class Stack:
    """The services over moto, on a clock this script moves."""

    def __init__(self) -> None:
        dynamodb, kms, settings = provisioned()
        self.dynamodb = dynamodb
        self.table = settings.messages_table
        self.clock = ManualClock(int(datetime.now(UTC).timestamp() * 1000))
        cipher = EnvelopeCipher(KmsKeyProvider(kms, settings.kms_key_id), self.clock)
        registry = QueueRegistry(dynamodb, settings.destinations_table, self.clock)
        self.queues = assembly.build_queue_service(
            settings, dynamodb=dynamodb, kms=kms, cipher=cipher, registry=registry, time=self.clock
        )
        topics = assembly.build_topic_service(
            settings, dynamodb=dynamodb, kms=kms, cipher=cipher, registry=registry, time=self.clock
        )
        self.indexer = assembly.build_indexer(
            settings, dynamodb=dynamodb, kms=kms, registry=registry, topics=topics, time=self.clock
        )
        self.scheduler = assembly.build_scheduler(
            settings,
            dynamodb=dynamodb,
            queues=self.queues,
            topics=topics,
            cipher=cipher,
            policy=AllowAll(),
            time=self.clock,
        )
        self._indexed: set[tuple[str, str]] = set()

    def new_log_items(self) -> list[dict[str, Any]]:
        """Log items not indexed yet (what the stream would hand the dispatch function)."""
        found = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table):
            for raw in page["Items"]:
                item = from_wire(raw)
                key = (str(item["pk"]), str(item["sk"]))
                if key[0].startswith("L#") and key not in self._indexed:
                    self._indexed.add(key)
                    found.append(item)
        return found

    def index(self, meter: Meter) -> None:
        items = self.new_log_items()  # unmetered: the stream's records are free to Lambda
        with observing_moto(meter):
            for start in range(0, len(items), STREAM_RECORDS):
                self.indexer.index(items[start : start + STREAM_RECORDS])

    def consume(self, queue: str, expected: int, meter: Meter) -> None:
        with observing_moto(meter):
            got = 0
            while got < expected:
                deliveries = self.queues.receive(ANONYMOUS, queue, max_messages=1)
                if not deliveries:
                    raise AssertionError(f"{queue}: {got} of {expected} received")
                self.queues.ack(ANONYMOUS, queue, [d.receipt for d in deliveries])
                got += len(deliveries)


def body(n: int) -> bytes:
    return (f"{n:08d}" + "x" * BODY)[:BODY].encode()


def warm(stack: Stack, queue: str) -> None:
    """The queue made, its data key cached and its cursor written, unmetered: each is once
    per queue (or per 5 minutes and 10,000 messages), not per message."""
    stack.queues.send(ANONYMOUS, queue, NewMessage(body=b"warm-up"))
    warm_up = NewMessage(body=b"warm-up")
    sent = stack.scheduler.send(ANONYMOUS, "queue", queue, warm_up, Rule(delay_ms=HOUR_MS))
    stack.scheduler.cancel(ANONYMOUS, "queue", queue, sent.message_id)
    stack.index(Meter())
    stack.consume(queue, 1, Meter())


def ordinary(stack: Stack, queue: str, count: int) -> Usage:
    warm(stack, queue)
    meter = Meter()
    with observing_moto(meter):
        for n in range(count):
            stack.queues.send(ANONYMOUS, queue, NewMessage(body=body(n)))
    stack.index(meter)
    stack.consume(queue, count, meter)
    return meter.usage()


def scheduled(stack: Stack, queue: str, count: int) -> Usage:
    """`count` messages delayed an hour, all falling due in one sweep."""
    warm(stack, queue)
    meter = Meter()
    rule = Rule(delay_ms=HOUR_MS)
    with observing_moto(meter):
        for n in range(count):
            stack.scheduler.send(ANONYMOUS, "queue", queue, NewMessage(body=body(n)), rule)
    stack.clock.advance(HOUR_MS / 1000 - 30)  # the sweep half a minute before they are due
    with observing_moto(meter):
        report = stack.scheduler.fire_due()
    assert report.fired == count and not report.errors, report
    stack.index(meter)
    stack.clock.advance(30)
    stack.consume(queue, count, meter)
    return meter.usage()


def per_message(usage: Usage, count: int) -> dict[str, float]:
    """Billed units and dollars per message; requests around DynamoDB at list price."""
    wru = sum(usage.write_units.values()) / count
    rru = usage.total_read_units() / count
    kms = usage.count("kms") / count
    dynamodb = wru * PRICES.dynamodb_write_unit + rru * PRICES.dynamodb_read_unit
    around = 3 * PRICES.http_api_request + (3 + 1 / STREAM_RECORDS) * PRICES.lambda_request
    return {
        "write_units": round(wru, 3),
        "read_units": round(rru, 3),
        "failed_conditions": round(sum(usage.failed_conditions.values()) / count, 3),
        "kms_requests": round(kms, 4),
        "dynamodb_per_million": round(dynamodb * 1e6, 3),
        "kms_per_million": round(kms * PRICES.kms_request * 1e6, 3),
        "all_in_per_million": round((dynamodb + kms * PRICES.kms_request + around) * 1e6, 3),
    }


def main() -> int:
    rows: dict[str, dict[str, float]] = {}
    with mock_aws():
        stack = Stack()
        rows["ordinary"] = per_message(ordinary(stack, "plain", N), N)
        rows["ordinary, alone in its stream batch"] = per_message(ordinary(stack, "single", 1), 1)
        rows[f"scheduled 1 h, {N} due in one sweep"] = per_message(scheduled(stack, "later", N), N)
        rows["scheduled 1 h, alone in its sweep"] = per_message(scheduled(stack, "lone", 1), 1)
    print(f"\nScheduled delivery: per message, {BODY} B, one per request ({N} messages)\n")
    header = f"{'path':<36}{'WRU':>7}{'RRU':>7}{'KMS':>7}{'DynamoDB $/M':>14}{'all in $/M':>12}"
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(
            f"{name:<36}{row['write_units']:>7.2f}{row['read_units']:>7.2f}"
            f"{row['kms_requests']:>7.3f}{row['dynamodb_per_million']:>14.2f}"
            f"{row['all_in_per_million']:>12.2f}"
        )
    print(
        "\nall in: DynamoDB and KMS as metered, plus 3 HTTP API requests and 3 1/16 Lambda"
        "\ninvocations a message (the same on both paths; durations not included)."
    )
    RESULTS.write_text(
        json.dumps(
            {"messages": N, "body_bytes": BODY, "rows": rows},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
