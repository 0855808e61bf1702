"""What one in-process AWS request costs `mqless dev`: µs of CPU per request, by operation.

moto is set up as `mqless dev` sets it up (`LocalCloud`: every moto fix, botocore's
shortcuts, unsigned requests, and the billing meter around each request), over
template.yaml's tables. Each operation is sent `--count` times (interleaved, so a busy
machine slows them alike) on items shaped like the broker's (a message of a few hundred
bytes, a lease with a conditional update, a partition of index segments read by Query).
The figure is the thread's CPU time (not wall-clock time), the median of blocks of 50.

    PYTHONPATH=layers/core:cli python bench/bench_requests.py [--count N] [--profile FILE]

`--profile FILE` writes a cProfile of the timed loop (read it with `pstats`).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 50
"""Requests of each operation timed together: the figure is the median block (the machine
is shared: a block that other processes slowed is left out)."""


def _operations(dynamodb: Any, table: str) -> dict[str, Callable[[int], Any]]:
    """Each operation to time, as a call taking the iteration number."""
    body = "x" * 300
    segment = [{"N": str(1_700_000_000_000 + i)} for i in range(40)]
    for s in range(4):  # a partition of index segments, as the dispatch function writes them
        dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": "idx#q"}, "sk": {"S": f"seg#{s:04d}"}, "m": {"L": segment}},
        )
    dynamodb.put_item(
        TableName=table,
        Item={"pk": {"S": "lease#q"}, "sk": {"S": "-"}, "v": {"N": "0"}},
    )

    def put(i: int) -> Any:
        return dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": "log#q"},
                "sk": {"S": f"m#{i:08d}"},
                "b": {"S": body},
                "h": {"M": {"content-type": {"S": "text/plain"}, "n": {"N": str(i)}}},
                "x": {"N": "1800000000"},
            },
        )

    def get(i: int) -> Any:
        return dynamodb.get_item(
            TableName=table,
            Key={"pk": {"S": "log#q"}, "sk": {"S": f"m#{i:08d}"}},
            ConsistentRead=True,
        )

    def update(i: int) -> Any:
        return dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": "lease#q"}, "sk": {"S": "-"}},
            UpdateExpression="SET #v = :next, #o = :owner",
            ConditionExpression="#v = :seen",
            ExpressionAttributeNames={"#v": "v", "#o": "o"},
            ExpressionAttributeValues={
                ":next": {"N": str(i + 1)},
                ":seen": {"N": str(i)},
                ":owner": {"S": "consumer-1"},
            },
            ReturnValues="ALL_NEW",
        )

    def query(_: int) -> Any:
        return dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
            ExpressionAttributeValues={":p": {"S": "idx#q"}, ":s": {"S": "seg#"}},
            ConsistentRead=True,
        )

    return {"PutItem": put, "GetItem": get, "UpdateItem (conditional)": update, "Query": query}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="requests per operation")
    parser.add_argument("--profile", help="write a cProfile of the timed loop here")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

    from mqless_cli.billing import Meter, observing_moto
    from mqless_cli.local.cloud import LocalCloud

    cloud = LocalCloud.start(ROOT / "template.yaml")
    meter = Meter()
    try:
        with observing_moto(meter):
            dynamodb = cloud.client("dynamodb")
            table = cloud.stack.environment("HttpApiFunction")["MESSAGES_TABLE"]
            operations = _operations(dynamodb, table)
            for call in operations.values():  # warm up: first-use caches
                for i in range(20):
                    call(i)
            blocks: dict[str, list[float]] = {name: [] for name in operations}
            profile = cProfile.Profile() if args.profile else None
            for block in range(args.count // BLOCK):
                spent = dict.fromkeys(operations, 0.0)
                for i in range(20 + block * BLOCK, 20 + (block + 1) * BLOCK):
                    for name, call in operations.items():
                        if profile is not None:
                            profile.enable()
                        started = time.thread_time()
                        call(i)
                        spent[name] += time.thread_time() - started
                        if profile is not None:
                            profile.disable()
                for name, seconds in spent.items():
                    blocks[name].append(seconds / BLOCK)
            if profile is not None:
                profile.dump_stats(args.profile)
    finally:
        cloud.stop()
    medians = {name: statistics.median(found) for name, found in blocks.items()}
    for name, seconds in medians.items():
        print(f"{name:26} {seconds * 1e6:8.0f} µs/request")
    print(f"{'mean':26} {statistics.mean(medians.values()) * 1e6:8.0f} µs/request")


if __name__ == "__main__":
    main()
