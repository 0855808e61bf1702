"""`make bench`: what each broker operation costs in AWS requests, measured under moto.

For every path (standard and FIFO; one message per call and batches of 10) it sends,
receives and acks N messages through the real QueueService, counting the requests the
boto3 clients actually make (botocore event hooks), DynamoDB write units as billed for
items under 1 KB (transactions bill two per item), and KMS calls. Then it prices a
million acknowledged messages at on-demand us-east-1 rates beside SQS.
Figures exclude index (GSI) writes; see the README's cost section for those.
"""

from __future__ import annotations

import os
import sys
import time

from moto import mock_aws  # noqa: E402
from moto_stack import ROOT, provisioned  # sets moto's AWS variables first

from mqless.clock import SystemClock  # noqa: E402
from mqless.dedup import DedupHasher  # noqa: E402
from mqless.envelope import EnvelopeCipher, KmsKeyProvider  # noqa: E402
from mqless.models import NewMessage  # noqa: E402
from mqless.principals import ANONYMOUS  # noqa: E402
from mqless.queues import QueueService  # noqa: E402
from mqless.registry import QueueRegistry  # noqa: E402
from mqless.store import MessageStore  # noqa: E402
from mqless_cli.awscalls import CallLog, counting  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "200"))
DYNAMODB_PER_MILLION_WRITES = 0.625
DYNAMODB_PER_MILLION_READS = 0.125
KMS_PER_MILLION = 3.0
SQS_PER_MILLION = 0.40


def _row(name: str, log: CallLog, messages: int, seconds: float) -> dict[str, float | str]:
    return {
        "operation": name,
        "ddb_req": log.count("dynamodb") / messages,
        "wru": log.write_units / messages,
        "kms": log.count("kms") / messages,
        "msg_s": messages / seconds if seconds else 0.0,
    }


def run_path(service: QueueService, clients: tuple[object, ...], queue: str, batch: int) -> list:
    fifo = queue.endswith(".fifo")
    # moto copies every table on each transaction (its rollback), so FIFO paths slow down
    # as the tables fill; fewer messages keep `make bench` short. Per-message counts hold.
    count = N // 4 if fifo else N
    rows = []
    body = b"x" * 512

    def message(i: int) -> NewMessage:
        if fifo:
            return NewMessage(body=body + str(i).encode(), group_id=f"g{i % 20}")
        return NewMessage(body=body)

    with counting(*clients) as log:
        start = time.perf_counter()
        if batch == 1:
            for i in range(count):
                service.send(ANONYMOUS, queue, message(i))
        else:
            for i in range(0, count, batch):
                entries = [(f"e{j}", message(i + j)) for j in range(batch)]
                service.send_batch(ANONYMOUS, queue, entries)
        rows.append(_row("send", log, count, time.perf_counter() - start))

    # Receive and ack in turns, as a consumer does (a FIFO group frees only on ack).
    received = 0
    receive_log, ack_log = CallLog(), CallLog()
    receive_seconds = ack_seconds = 0.0
    while received < count:
        with counting(*clients) as log:
            start = time.perf_counter()
            got = service.receive(ANONYMOUS, queue, max_messages=batch, visibility_timeout=300)
            receive_seconds += time.perf_counter() - start
        receive_log.merge(log)
        if not got:
            break
        received += len(got)
        with counting(*clients) as log:
            start = time.perf_counter()
            service.ack(ANONYMOUS, queue, [d.receipt for d in got])
            ack_seconds += time.perf_counter() - start
        ack_log.merge(log)
    rows.append(_row("receive", receive_log, max(received, 1), receive_seconds))
    rows.append(_row("ack", ack_log, max(received, 1), ack_seconds))
    assert received == count, f"{queue}: received {received} of {count}"
    return rows


def main() -> int:
    with mock_aws():
        dynamodb, kms, settings = provisioned()
        clock = SystemClock()
        service = QueueService(
            registry=QueueRegistry(dynamodb, settings.destinations_table, clock),
            store=MessageStore(dynamodb, settings.messages_table),
            cipher=EnvelopeCipher(KmsKeyProvider(kms, settings.kms_key_id), clock),
            dedup=DedupHasher(
                KmsKeyProvider(kms, settings.kms_key_id), dynamodb, settings.destinations_table
            ),
            clock=clock,
        )
        print(
            f"mqless bench: {N} messages of 512 B per standard path, {N // 4} per FIFO path, "
            "moto in-process, one core\n"
        )
        header = f"{'path':<22}{'op':<9}{'DDB req/msg':>12}{'WRU/msg':>9}{'KMS/msg':>9}{'msg/s':>8}"
        print(header)
        print("-" * len(header))
        totals: dict[str, float] = {}
        for queue, batch in (
            ("bench-standard", 1),
            ("bench-standard-b", 10),
            ("bench.fifo", 1),
            ("bench-b.fifo", 10),
        ):
            path = f"{'FIFO' if queue.endswith('.fifo') else 'standard'} x{batch}"
            rows = run_path(service, (dynamodb, kms), queue, batch)
            wru = kms_calls = reads = 0.0  # reads: non-write DynamoDB requests, ~1 RRU each
            for row in rows:
                print(
                    f"{path:<22}{row['operation']:<9}{row['ddb_req']:>12.2f}{row['wru']:>9.2f}"
                    f"{row['kms']:>9.4f}{row['msg_s']:>8.0f}"
                )
                wru += float(row["wru"])
                kms_calls += float(row["kms"])
                reads += float(row["ddb_req"]) - float(row["wru"]) / (2 if "FIFO" in path else 1)
            totals[path] = (
                wru * DYNAMODB_PER_MILLION_WRITES
                + max(reads, 0) * DYNAMODB_PER_MILLION_READS
                + kms_calls * KMS_PER_MILLION
            )
        print()
        print("Cost of one million acknowledged messages (send + receive + ack): table writes,")
        print("reads (~1 RRU per read request) and KMS, on-demand us-east-1, before index writes;")
        print("SQS bills 3 requests at $0.40 per million:")
        sqs = 3 * SQS_PER_MILLION
        for path, dollars in totals.items():
            print(f"  {path:<14} ${dollars:6.2f}   ({dollars / sqs:.2f}x SQS ${sqs:.2f})")
    envelope = ROOT / "bench" / "bench_envelope.py"
    if envelope.exists():
        print()
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, str(envelope)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
