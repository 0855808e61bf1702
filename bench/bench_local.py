"""`make bench-local`: how fast `mqless dev` is, with ActiveMQ beside it in the same run.

Every figure of issue 14's table, measured the way a user meets them:

- STOMP over WebSocket with unmodified @stomp/stompjs (bench/stompjs/throughput.mjs): one
  producer sends a burst of 1 KB messages, one client-individual consumer (prefetch 100)
  ACKs each. At 500, 2,000 and 10,000 messages, against `mqless dev` and against Debian's
  ActiveMQ 5.17 (STOMP over TCP on a loopback port, the same client through
  @stomp/tcp-wrapper). The ratio is the figure that counts: these machines are shared.
- HTTP: a standard queue with 8 consumers receiving and acking batches of 10, and a FIFO
  queue with 20 groups, both fed by 2 producers sending batches of 10.
- The longest any request held moto's request lock (`mqless dev` prints it when it stops),
  and the slowest answer to a cheap probe request sent every 100 ms throughout.
- The resident memory of the `mqless dev` process once 50,000 messages went through every
  path (STOMP, HTTP standard and FIFO, topic fan-out to a durable subscription, dead-letter
  moves).
- The wall time of `make test` (`--no-suite` skips it).

Setup is part of the run: `npm ci` in bench/stompjs, `apt-get install -y activemq` if it is
missing (needs root), a throwaway ActiveMQ instance in a temporary directory.

    python bench/bench_local.py [--repeat N] [--quick] [--no-suite] [--no-activemq]

It prints the table and writes it, with every STOMP run, to bench/results/local.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "stompjs"
ACTIVEMQ_JAR = Path("/usr/share/activemq/bin/activemq.jar")
BODY_BYTES = 1024
SOAK_MESSAGES = 50_000
MEMORY_GUARD_MB = 6144

TARGETS = {
    "stomp_rate": 400.0,  # msg/s at 2,000 messages
    "stomp_p99_ms": 2000.0,
    "stomp_flatness": 0.20,  # throughput at 10,000 within 20% of the one at 500
    "http_standard_rate": 500.0,
    "http_fifo_rate": 200.0,
    "lock_hold_ms": 100.0,
    "rss_mb": 400.0,
    "suite_seconds": 150.0,
}


def log(text: str) -> None:
    print(f"bench-local: {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# ---- the node client ---------------------------------------------------------------------


def ensure_node_modules() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("bench-local needs Node.js 20 with npm on PATH")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        log("npm ci in bench/stompjs")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    return node


def stompjs(node: str, options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the stompjs throughput client; its JSON result."""
    options = {"size": BODY_BYTES, "prefetch": 100, "deadlineMs": int(timeout * 1000), **options}
    done = subprocess.run(
        [node, str(NODE_DIR / "throughput.mjs"), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        cwd=NODE_DIR,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"stompjs client printed nothing:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ---- ActiveMQ ----------------------------------------------------------------------------

ACTIVEMQ_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="bench"
          persistent="true" dataDirectory="{data}">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


@contextlib.contextmanager
def activemq() -> Iterator[tuple[str, int]]:
    """Debian's ActiveMQ (installed if missing), a STOMP connector on a loopback port."""
    if not ACTIVEMQ_JAR.exists():
        log("apt-get install -y activemq")
        subprocess.run(
            ["apt-get", "install", "-y", "activemq"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-activemq-") as base:
        conf, data = Path(base, "conf"), Path(base, "data")
        conf.mkdir()
        data.mkdir()
        (conf / "activemq.xml").write_text(ACTIVEMQ_XML.format(data=data, port=port))
        process = subprocess.Popen(
            [
                "java",
                "-Xmx512M",
                f"-Dactivemq.home={ACTIVEMQ_JAR.parent.parent}",
                f"-Dactivemq.base={base}",
                f"-Dactivemq.conf={conf}",
                f"-Dactivemq.data={data}",
                "-jar",
                str(ACTIVEMQ_JAR),
                "start",
                f"xbean:file:{conf / 'activemq.xml'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not _stomp_answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ActiveMQ did not start")
                time.sleep(0.5)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _stomp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            return sock.recv(16).startswith(b"CONNECTED")
    except OSError:
        return False


# ---- mqless dev --------------------------------------------------------------------------


@dataclass
class DevServer:
    process: subprocess.Popen[str]
    http_url: str
    ws_url: str
    token: str | None = None
    lines: list[str] = field(default_factory=list)
    guard_tripped: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    @property
    def stomp_url(self) -> str:
        return self.ws_url if self.token is None else f"{self.ws_url}/?access_token={self.token}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return kb / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        time.sleep(0.2)  # let the reader take the last lines


def start_dev() -> DevServer:
    """`mqless dev` on any free ports (it binds them itself and prints its URLs)."""
    script = Path(sys.executable).with_name("mqless")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mqless_cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [
            *command,
            "dev",
            "--template",
            str(ROOT / "template.yaml"),
            "--http-port",
            "0",
            "--ws-port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    server = DevServer(process, "", "")
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            # keep what the bench reads; the per-invocation lines are many
            if not line.startswith("  ") or "dev token" in line or "lock" in line:
                server.lines.append(line)
            if line.startswith("  dev token "):
                server.token = line.split()[-1]
            if line.startswith("  HTTP API "):
                server.http_url = line.split()[-1]
            if line.startswith("  WebSocket API "):
                server.ws_url = line.split()[-1]
            if "mqless dev: ready" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120):
        server.stop()
        raise RuntimeError("mqless dev did not become ready:\n" + "\n".join(server.lines))
    return server


class Probe:
    """A cheap request every 100 ms: the slowest answer is how long a request can stall."""

    def __init__(self, server: DevServer) -> None:
        self._server = server
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.rss_peak = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self._server.http_url, headers=self._server.headers) as http:
            while not self._stop.wait(0.1):
                start = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    http.get("/queues/bench-probe", timeout=120)
                self.latencies.append((time.perf_counter() - start) * 1000)
                with contextlib.suppress(OSError, AttributeError):
                    self.rss_peak = max(self.rss_peak, self._server.rss_mb())
                if self.rss_peak > MEMORY_GUARD_MB and self._server.process.poll() is None:
                    # a shared machine: stop before `mqless dev` takes all of it
                    log(f"mqless dev passed {MEMORY_GUARD_MB} MB resident: stopping it")
                    self._server.guard_tripped = True
                    self._server.process.kill()


# ---- HTTP workloads ----------------------------------------------------------------------


@dataclass
class HttpResult:
    messages: int
    acked: int
    seconds: float
    latencies_ms: list[float]
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0


def http_workload(
    server: DevServer,
    queue: str,
    count: int,
    *,
    groups: int = 0,
    consumers: int = 8,
    producers: int = 2,
    deadline_s: float = 600.0,
) -> HttpResult:
    """`producers` send `count` messages in batches of 10; `consumers` receive and ack in 10s."""
    settings: dict[str, Any] = {"visibility_timeout": 60}
    with httpx.Client(base_url=server.http_url, headers=server.headers, timeout=60) as admin:
        admin.put(f"/queues/{queue}", json=settings).raise_for_status()
    acked = 0
    lock = threading.Lock()
    errors: list[str] = []
    latencies: list[float] = []
    stop = threading.Event()
    start = time.monotonic()
    end = start + deadline_s
    last_ack = start

    def produce(first: int, last: int) -> None:
        with httpx.Client(base_url=server.http_url, headers=server.headers, timeout=60) as http:
            for batch_start in range(first, last, 10):
                entries = []
                for seq in range(batch_start, min(last, batch_start + 10)):
                    entry: dict[str, Any] = {
                        "id": f"m{seq}",
                        "body": f"{seq:08d}".ljust(BODY_BYTES, "x"),
                        "attributes": {"sent": str(time.time())},
                    }
                    if groups:
                        entry["group_id"] = f"g{seq % groups}"
                    entries.append(entry)
                if stop.is_set():
                    return
                try:
                    http.post(f"/queues/{queue}/messages/batch", json={"entries": entries})
                except httpx.HTTPError as exc:  # a stall: counted, the run goes on
                    errors.append(f"send: {type(exc).__name__}")

    def consume() -> None:
        nonlocal acked, last_ack
        with httpx.Client(base_url=server.http_url, headers=server.headers, timeout=60) as http:
            while not stop.is_set() and time.monotonic() < end:
                try:
                    reply = http.post(
                        f"/queues/{queue}/receive", json={"max_messages": 10, "wait_seconds": 2}
                    )
                    if reply.status_code != 200:
                        continue
                    messages = reply.json()["messages"]
                    if not messages:
                        continue
                    now = time.time()
                    done = http.post(
                        f"/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in messages]}
                    )
                except httpx.HTTPError as exc:
                    errors.append(f"receive/ack: {type(exc).__name__}")
                    continue
                with lock:
                    latencies.extend(
                        (now - float(m["attributes"]["sent"])) * 1000 for m in messages
                    )
                    if done.status_code == 200:
                        acked += len(done.json().get("acked", []))
                        last_ack = time.monotonic()
                    if acked >= count:
                        stop.set()

    share = count // producers
    threads = [
        threading.Thread(
            target=produce, args=(i * share, count if i == producers - 1 else (i + 1) * share)
        )
        for i in range(producers)
    ] + [threading.Thread(target=consume) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return HttpResult(count, acked, last_ack - start, latencies, len(errors))


def topic_and_dead_letters(server: DevServer, count: int) -> int:
    """Publish `count` to a topic with a durable subscription; drain it; dead-letter 1 in 50."""
    queue, topic = f"soak-sub-{uuid.uuid4().hex[:6]}", f"soak.{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=server.http_url, headers=server.headers, timeout=60) as http:
        http.put(f"/queues/{queue}", json={"max_receive_count": 1}).raise_for_status()
        http.put(f"/topics/{topic}/subscriptions/all", json={"queue": queue}).raise_for_status()
        for first in range(0, count, 10):
            entries = [
                {"id": f"t{seq}", "body": f"{seq:08d}".ljust(BODY_BYTES, "t")}
                for seq in range(first, min(count, first + 10))
            ]
            http.post(f"/topics/{topic}/messages/batch", json={"entries": entries})
        handled, idle = 0, 0
        while handled < count and idle < 5:
            messages = http.post(
                f"/queues/{queue}/receive", json={"max_messages": 10, "wait_seconds": 2}
            ).json()["messages"]
            if not messages:
                idle += 1
                continue
            idle = 0
            receipts = [m["receipt"] for m in messages]
            # one in 50 is nacked: with max_receive_count 1 it moves to the dead-letter queue
            http.post(f"/queues/{queue}/nack", json={"receipts": receipts[:1]})
            http.post(f"/queues/{queue}/ack", json={"receipts": receipts[1:]})
            handled += len(messages)
    return count


# ---- the run -----------------------------------------------------------------------------


@dataclass
class Figures:
    stomp: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    activemq: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    http_standard: list[HttpResult] = field(default_factory=list)
    http_fifo: list[HttpResult] = field(default_factory=list)
    probe_max_ms: float | None = None
    probe_p99_ms: float | None = None
    lock_hold_ms: float | None = None
    lock_hold_cpu_ms: float | None = None  # of which the holding thread computed
    lock_cpu_ms: float | None = None  # the most CPU any one request used under the lock
    lock_line: str | None = None
    slow_requests: list[str] = field(default_factory=list)  # what held the lock over 500 ms
    messages: int = 0
    rss_mb: float | None = None
    rss_peak_mb: float | None = None
    soak_from: tuple[int, float] | None = None  # (messages, RSS MB) when the soak began
    suite_seconds: float | None = None
    memory_guard: bool = False


def run(args: argparse.Namespace) -> Figures:
    figures = Figures()
    node = ensure_node_modules()
    counts = [500, 2000, 10_000] if not args.quick else [100, 200, 500]
    broker = contextlib.nullcontext(None) if args.no_activemq else activemq()
    with broker as amq:
        if amq is not None:
            log(f"ActiveMQ on {amq[0]}:{amq[1]} (STOMP over TCP)")
            stompjs(
                node,
                {"tcp": {"host": amq[0], "port": amq[1]}, "queue": "warmup", "count": 2000},
                120,
            )
            for repeat in range(args.repeat):
                for count in counts:
                    if count == counts[-1] and repeat > 0:
                        continue  # the long run once: it is there for flatness
                    result = stompjs(
                        node,
                        {
                            "tcp": {"host": amq[0], "port": amq[1]},
                            "queue": f"amq-{count}-{repeat}",
                            "count": count,
                        },
                        300,
                    )
                    figures.activemq.setdefault(str(count), []).append(result)
                    log(f"ActiveMQ {count}: {_stomp_line(result)}")
        server = start_dev()
        log(f"mqless dev on {server.http_url} / {server.ws_url}")
        try:
            with Probe(server) as probe:
                for repeat in range(args.repeat):
                    for count in counts:
                        if not server.alive:
                            break
                        if count == counts[-1] and repeat > 0:
                            continue  # the long run once: it is there for flatness
                        result = stompjs(
                            node,
                            {
                                "url": server.stomp_url,
                                "queue": f"stomp-{count}-{repeat}",
                                "count": count,
                            },
                            args.stomp_deadline,
                        )
                        figures.stomp.setdefault(str(count), []).append(result)
                        figures.messages += result.get("received") or 0
                        log(f"mqless  {count}: {_stomp_line(result)}")
                    if not server.alive:
                        break
                    n = 500 if args.quick else 5000
                    standard = http_workload(
                        server,
                        f"std-{repeat}-{uuid.uuid4().hex[:6]}",
                        n,
                        deadline_s=args.http_deadline,
                    )
                    figures.http_standard.append(standard)
                    figures.messages += standard.acked
                    log(
                        f"HTTP standard: {standard.acked}/{n} acked in {standard.seconds:.1f} s"
                        f" = {standard.rate:.1f}/s ({standard.errors} request errors)"
                    )
                    n = 200 if args.quick else 2000
                    fifo = http_workload(
                        server,
                        f"fifo-{repeat}-{uuid.uuid4().hex[:6]}.fifo",
                        n,
                        groups=20,
                        deadline_s=args.http_deadline,
                    )
                    figures.http_fifo.append(fifo)
                    figures.messages += fifo.acked
                    log(
                        f"HTTP FIFO: {fifo.acked}/{n} acked in {fifo.seconds:.1f} s"
                        f" = {fifo.rate:.1f}/s ({fifo.errors} request errors)"
                    )
                soak_deadline = time.monotonic() + args.soak_seconds
                if server.alive:
                    figures.soak_from = (figures.messages, server.rss_mb())
                while (
                    server.alive
                    and figures.messages < SOAK_MESSAGES
                    and time.monotonic() < soak_deadline
                ):
                    left = SOAK_MESSAGES - figures.messages
                    step = min(left, 10_000)
                    log(f"soak: {figures.messages} messages so far; {step} more")
                    part = max(10, step // 4 // 10 * 10)
                    result = stompjs(
                        node,
                        {
                            "url": server.stomp_url,
                            "queue": f"soak-{uuid.uuid4().hex[:6]}",
                            "count": part,
                        },
                        args.stomp_deadline,
                    )
                    figures.messages += result.get("received") or 0
                    figures.messages += http_workload(
                        server, f"soak-{uuid.uuid4().hex[:6]}", part, deadline_s=args.http_deadline
                    ).acked
                    figures.messages += http_workload(
                        server,
                        f"soak-{uuid.uuid4().hex[:6]}.fifo",
                        part,
                        groups=20,
                        deadline_s=args.http_deadline,
                    ).acked
                    figures.messages += topic_and_dead_letters(server, part)
                time.sleep(2)
                figures.rss_mb = server.rss_mb() if server.alive else None
                figures.rss_peak_mb = probe.rss_peak
            figures.probe_max_ms = max(probe.latencies) if probe.latencies else None
            figures.probe_p99_ms = percentile(probe.latencies, 99)
        finally:
            server.stop()
            figures.memory_guard = server.guard_tripped
        figures.slow_requests = [line for line in server.lines if "held the request lock" in line]
        for line in server.lines:
            found = re.search(r"longest lock hold ([\d.]+) ms", line)
            if found:
                figures.lock_hold_ms = float(found.group(1))
                figures.lock_line = line.strip()
                computing = re.search(r"([\d.]+) ms of it computing", line)
                most = re.search(r"most CPU in one request ([\d.]+) ms", line)
                if computing and most:
                    figures.lock_hold_cpu_ms = float(computing.group(1))
                    figures.lock_cpu_ms = float(most.group(1))
    if not args.no_suite:
        log("make test (wall time)")
        start = time.monotonic()
        done = subprocess.run(["make", "test"], cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
        figures.suite_seconds = time.monotonic() - start
        if done.returncode != 0:
            log(f"make test failed ({done.returncode}): its wall time is not the figure")
            figures.suite_seconds = None
    return figures


def rss_projection(figures: Figures) -> tuple[float, float] | None:
    """(KB of RSS per message the soak added, RSS projected at SOAK_MESSAGES) from the
    growth measured over the soak; None if the soak reached SOAK_MESSAGES or measured nothing.

    A projection, not a measurement: it assumes the growth per message stays what it was.
    """
    if figures.soak_from is None or figures.rss_mb is None:
        return None
    messages, rss = figures.soak_from
    soaked = figures.messages - messages
    if figures.messages >= SOAK_MESSAGES or soaked < 1000:
        return None
    per_message_mb = (figures.rss_mb - rss) / soaked
    projected = figures.rss_mb + per_message_mb * (SOAK_MESSAGES - figures.messages)
    return per_message_mb * 1024, projected


def _stomp_line(result: dict[str, Any]) -> str:
    rate = result.get("perSecond")
    text = f"{result.get('received')}/{result.get('count')} received"
    if rate:
        text += f", {rate:.0f} msg/s, p50 {result.get('p50Ms')} ms, p99 {result.get('p99Ms')} ms"
    if result.get("error"):
        text += f" ({result['error']})"
    return text


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}{unit}" if abs(value) >= 10 else f"{value:.2f}{unit}"


def report(figures: Figures, args: argparse.Namespace) -> list[dict[str, str]]:
    counts = list(figures.stomp)
    rows: list[tuple[str, str, str, str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("ok" if ok else "MISSED")

    def stomp(count: str, key: str, source: dict[str, list[dict[str, Any]]]) -> float | None:
        return _median([r.get(key) for r in source.get(count, [])])

    mid = counts[1] if len(counts) > 1 else counts[0]
    ours_rate, amq_rate = (
        stomp(mid, "perSecond", figures.stomp),
        stomp(mid, "perSecond", figures.activemq),
    )
    ours_p99, amq_p99 = stomp(mid, "p99Ms", figures.stomp), stomp(mid, "p99Ms", figures.activemq)
    received = min((r.get("received") or 0) for r in figures.stomp[mid])
    ratio = f"1 : {amq_rate / ours_rate:,.1f}" if ours_rate and amq_rate else "-"
    rows.append(
        (
            f"STOMP/WS stompjs {mid} msgs, msg/s",
            _fmt(ours_rate),
            _fmt(amq_rate),
            ratio,
            ">= 400",
            verdict(
                ours_rate is not None
                and received == int(mid)
                and ours_rate >= TARGETS["stomp_rate"]
            ),
        )
    )
    rows.append(
        (
            "  same, p99 latency",
            _fmt(ours_p99, " ms"),
            _fmt(amq_p99, " ms"),
            "-",
            "<= 2,000 ms",
            verdict(ours_p99 is not None and ours_p99 <= TARGETS["stomp_p99_ms"]),
        )
    )
    first, last = counts[0], counts[-1]
    r_first, r_last = (
        stomp(first, "perSecond", figures.stomp),
        stomp(last, "perSecond", figures.stomp),
    )
    a_first, a_last = (
        stomp(first, "perSecond", figures.activemq),
        stomp(last, "perSecond", figures.activemq),
    )
    flat = r_last / r_first if r_first and r_last else None
    amq_flat = a_last / a_first if a_first and a_last else None
    rows.append(
        (
            f"  throughput at {last} / at {first}",
            _fmt(flat),
            _fmt(amq_flat),
            "-",
            "0.80 - 1.20",
            verdict(flat is not None and abs(flat - 1) <= TARGETS["stomp_flatness"]),
        )
    )
    std = _median([r.rate for r in figures.http_standard])
    std_lat = _median([percentile(r.latencies_ms, 50) for r in figures.http_standard])
    std_p95 = _median([percentile(r.latencies_ms, 95) for r in figures.http_standard])
    rows.append(
        (
            "HTTP standard, 8 consumers x 10, acked msg/s",
            _fmt(std),
            "-",
            "-",
            ">= 500",
            verdict(std is not None and std >= TARGETS["http_standard_rate"]),
        )
    )
    rows.append(
        (
            "  receive latency p50 / p95",
            f"{_fmt(std_lat, ' ms')} / {_fmt(std_p95, ' ms')}",
            "-",
            "-",
            "-",
            "-",
        )
    )
    fifo = _median([r.rate for r in figures.http_fifo])
    rows.append(
        (
            "HTTP FIFO, 20 groups, acked msg/s",
            _fmt(fifo),
            "-",
            "-",
            ">= 200",
            verdict(fifo is not None and fifo >= TARGETS["http_fifo_rate"]),
        )
    )
    rows.append(
        (
            "longest moto lock hold",
            _fmt(figures.lock_hold_ms, " ms"),
            "-",
            "-",
            "<= 100 ms",
            verdict(
                None
                if figures.lock_hold_ms is None
                else figures.lock_hold_ms <= TARGETS["lock_hold_ms"]
            ),
        )
    )
    rows.append(
        (
            # a long hold on a loaded machine is mostly the holder waiting for a CPU
            "  its own computing / most CPU one request used",
            f"{_fmt(figures.lock_hold_cpu_ms, ' ms')} / {_fmt(figures.lock_cpu_ms, ' ms')}",
            "-",
            "-",
            "-",
            "-",
        )
    )
    rows.append(
        (
            "  slowest probe request (p99 / max)",
            f"{_fmt(figures.probe_p99_ms, ' ms')} / {_fmt(figures.probe_max_ms, ' ms')}",
            "-",
            "-",
            "-",
            "-",
        )
    )
    rows.append(
        (
            f"RSS after {figures.messages:,} messages (peak)",
            f"{_fmt(figures.rss_mb, ' MB')} ({_fmt(figures.rss_peak_mb, ' MB')})",
            "-",
            "-",
            "<= 400 MB",
            verdict(
                None
                if figures.rss_mb is None
                else figures.messages >= SOAK_MESSAGES
                and max(figures.rss_mb, figures.rss_peak_mb or 0) <= TARGETS["rss_mb"]
            ),
        )
    )
    projection = rss_projection(figures)
    if projection is not None and figures.soak_from is not None:
        per_message_kb, projected = projection
        rows.append(
            (
                f"  RSS PROJECTED at {SOAK_MESSAGES:,} (not measured: +{per_message_kb:.1f} KB"
                f"/msg over the soak's {figures.messages - figures.soak_from[0]:,} messages)",
                _fmt(projected, " MB"),
                "-",
                "-",
                "<= 400 MB",
                "projection",
            )
        )
    rows.append(
        (
            "make test wall time",
            _fmt(figures.suite_seconds, " s"),
            "-",
            "-",
            "<= 150 s",
            verdict(
                None
                if figures.suite_seconds is None
                else figures.suite_seconds <= TARGETS["suite_seconds"]
            ),
        )
    )
    header = ("figure", "mqless dev", "ActiveMQ 5.17", "ratio", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(6)]
    print()
    for row in [header, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print()
    print(f"STOMP runs (median of {args.repeat}):")
    for count in counts:
        ours = [_stomp_line(r) for r in figures.stomp[count]]
        theirs = [_stomp_line(r) for r in figures.activemq.get(count, [])]
        print(f"  {count:>6}: mqless   {' | '.join(ours)}")
        if theirs:
            print(f"          ActiveMQ {' | '.join(theirs)}")
    if figures.lock_line:
        print(f"mqless dev said: {figures.lock_line}")
    for line in figures.slow_requests[:10]:
        print(f"  {line[:200]}")
    if figures.memory_guard:
        print(f"mqless dev was killed when it passed {MEMORY_GUARD_MB} MB resident")
    return [dict(zip(header, row, strict=True)) for row in rows]


def write_results(
    path: Path, table: list[dict[str, str]], figures: Figures, args: argparse.Namespace
) -> None:
    """The printed table and the STOMP runs as JSON (bench/results/local.json), to commit."""
    document = {
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        "arguments": {k: v for k, v in vars(args).items() if k != "results"},
        "table": table,
        "stomp": {"mqless": figures.stomp, "activemq": figures.activemq},
        "lock": figures.lock_line,
        "slow_requests": figures.slow_requests[:50],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each workload (median); the longest STOMP run goes once",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--no-suite", action="store_true", help="do not time `make test`")
    parser.add_argument("--no-activemq", action="store_true", help="mqless only")
    parser.add_argument(
        "--soak-seconds", type=float, default=900, help="time budget to reach 50,000 messages"
    )
    parser.add_argument("--stomp-deadline", type=float, default=900, help="seconds per STOMP run")
    parser.add_argument("--http-deadline", type=float, default=300, help="seconds per HTTP run")
    parser.add_argument(
        "--results",
        default=str(ROOT / "bench" / "results" / "local.json"),
        help="where to write the figures as JSON ('' for nowhere; --quick writes none)",
    )
    args = parser.parse_args()
    # `kill` (or a CI timeout) still stops mqless dev and ActiveMQ: the finally blocks run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = run(args)
    table = report(figures, args)
    if args.results and not args.quick:
        write_results(Path(args.results), table, figures, args)


if __name__ == "__main__":
    main()
