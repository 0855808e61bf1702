"""What one poll of the console's overview (`GET /stats`) costs on AWS, by the number of
queues, billed as AWS bills (the stack and meter of bench/cost.py).

N queues (BENCH_STATS_QUEUES, default "10,100") of the default settings, each with the
dead-letter queue they make and one message; then one poll of `/stats` as a client that
asks for no page makes it (the first 100 queues by name), as the console makes it (its
page of 25), and of one queue's stats (the console's queue page), each 2.5 s after the
last (the console's pace: the shards' cached floors are read again). Figures: DynamoDB
requests and read units (4 KB units, half for eventually consistent reads) and the poll's
price per million polls, all in (API Gateway, Lambda).

    PYTHONPATH=layers/core:cli python bench/bench_stats.py
"""

from __future__ import annotations

import os
import time
from typing import Any

from cost import Stack, say  # sets sys.path for the core

from mqless.domain.queues.shard_memory import FLOOR_CACHE_MS  # noqa: E402
from mqless_cli.billing import Usage, price  # noqa: E402

COUNTS = [int(n) for n in os.environ.get("BENCH_STATS_QUEUES", "10,100").split(",")]
POLLS = {
    "no page asked (/stats)": "/stats",
    "console page (/stats?limit=25)": "/stats?limit=25",
    "one queue's page (/queues/bench-000/stats)": "/queues/bench-000/stats",
}


def _dynamodb(usage: Usage) -> tuple[int, float]:
    requests = sum(v for k, v in usage.requests.items() if k.startswith("dynamodb:"))
    return int(requests), usage.total_read_units()


def _poll(stack: Stack, path: str) -> tuple[Usage, Any]:
    stack.api("GET", path)  # warm: queue configs cached, as in a console that keeps polling
    # the console polls 2 s after the last answer: by then every shard cursor the last poll
    # cached is stale and read again, as on AWS (a margin, so that none turns stale mid-poll)
    time.sleep(FLOOR_CACHE_MS / 1000 + 0.5)
    before = stack.meter.usage()
    answer = stack.api("GET", path)
    return stack.meter.usage() - before, answer


def main() -> None:
    stack = Stack()
    try:
        made = 0
        for count in COUNTS:
            for i in range(made, count):
                stack.api("PUT", f"/queues/bench-{i:03d}", {})
                stack.api("POST", f"/queues/bench-{i:03d}/messages", {"body": "x" * 200})
            made = count
            for label, path in POLLS.items():
                usage, answer = _poll(stack, path)
                requests, units = _dynamodb(usage)
                dollars = price(usage).total * 1_000_000
                say(
                    f"{count:4d} queues ({2 * count} with dead-letter queues), {label}: "
                    f"{len(answer.get('queues', [answer]))} listed, {requests} DynamoDB requests, "
                    f"{units:g} read units; ${dollars:,.2f} per million polls"
                )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
