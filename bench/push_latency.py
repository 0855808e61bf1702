"""Publish -> WebSocket push latency under `--realism` (default: the `aws` preset).

The whole local runtime runs in this process (`DevRuntime`: moto, the functions, both
gateways, the stream poller that feeds the dispatch function), with the realism faults on:
a stream shard read every 250 ms, lagging reads, throttles, redelivered batches. A live
subscriber (WebSocket JSON protocol) listens on a topic; messages are published over HTTP
one at a time; the latency is from just before the POST to the push frame's arrival.
The stream poll dominates it on AWS too, so this is the best local estimate of what a
deployed subscriber sees (moto's own pace aside: the client shares this process's CPU).

Env: BENCH_MESSAGES (default 100), BENCH_REALISM (a `--realism` spec, default `aws`),
BENCH_GAP_SECONDS between publishes (default 0.1). Writes bench/results/push_latency.json.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mqless_cli.local.console import Console
from mqless_cli.local.realism import parse_realism
from mqless_cli.local.runtime import DevRuntime

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "push_latency.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    messages = int(os.environ.get("BENCH_MESSAGES", "100"))
    spec = os.environ.get("BENCH_REALISM", "aws")
    gap = float(os.environ.get("BENCH_GAP_SECONDS", "0.1"))
    realism = parse_realism(spec)
    runtime = DevRuntime(
        ROOT / "template.yaml",
        http_port=0,
        ws_port=0,
        schedules=False,
        console=Console(io.StringIO()),
        bill_period=3600,
        realism=realism,
    )
    runtime.start()
    out = sys.__stdout__
    try:
        assert runtime.http is not None and runtime.ws is not None
        token = runtime.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = runtime.ws.url + (f"/?access_token={token}" if token else "")
        arrived: dict[str, float] = {}
        ready = threading.Event()
        done = threading.Event()

        def listen() -> None:
            with connect(url, open_timeout=30) as socket:
                socket.send(
                    json.dumps({"action": "subscribe", "destination": "/topic/lat", "id": "s"})
                )
                while not done.is_set():
                    try:
                        frame: dict[str, Any] = json.loads(socket.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        return
                    at = time.monotonic()
                    # several messages of one stream batch come as one `batch` frame
                    for one in (
                        frame.get("frames", [frame]) if frame.get("type") == "batch" else [frame]
                    ):
                        if one.get("type") == "subscribed":
                            ready.set()
                        elif one.get("type") == "message":
                            arrived[str(one["body"])] = at

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert ready.wait(30), "the subscription was not confirmed"
        asked: dict[str, float] = {}
        with httpx.Client(base_url=runtime.http.url, headers=headers, timeout=60) as http:
            for n in range(messages):
                body = f"m{n}"
                asked[body] = time.monotonic()
                while True:
                    status = http.post("/topics/lat/messages", json={"body": body}).status_code
                    if status != 429:
                        break
                    time.sleep(0.2)
                time.sleep(gap)
        deadline = time.monotonic() + 30
        while len(arrived) < messages and time.monotonic() < deadline:
            time.sleep(0.1)
        done.set()
        listener.join(timeout=5)
        latencies = [(arrived[b] - asked[b]) * 1000 for b in asked if b in arrived] or [0.0]
        result = {
            "realism": spec,
            "messages": messages,
            "received": len(latencies),
            "p50_ms": round(percentile(latencies, 0.5), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "mean_ms": round(statistics.fmean(latencies), 1),
            "max_ms": round(max(latencies), 1),
            "faults": repr(runtime.faults),
            "stream": [repr(poller.stats) for poller in runtime._pollers],
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2), file=out)
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
