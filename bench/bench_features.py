"""`make bench`: what the features beyond send/receive cost, billed as AWS bills (issue 16).

The same stack and meter as bench/cost.py (`mqless dev` in this process, moto as AWS, the
HTTP and WebSocket gateways on loopback, the stream handed to the dispatch function batch by
batch), one row per feature and unit of work:
- replay: a new durable subscription from "oldest" over REPLAY_MESSAGES (default 1,000)
  retained 512 B messages published in batches of 10; the replay itself (the PUT: the log
  read back, references appended, the wait for the join billed as Lambda time), and with the
  messages' receive and ack, per message; the publish beside it;
- selectors: a durable subscription's selector, per message it takes (publish, index,
  receive, ack) and per message it passes over (publish and dispatch only); a queue push
  consumer's selector, per message it takes and per message it passes over;
- presence: a GET of a queue's and of a topic's presence; a consumer's start and stop with
  nobody listening to its advisory topic and with a listener;
- request/reply with temporary queues (STOMP): the first round trip (the temp queue made on
  first use) and the next ones, request and reply;
- credentials that end: one sweep (the sweeper's once a minute) with N open connections.
Results: bench/results/features.json.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cost import ROOT, STOMP, Stack, body_of, say  # sets sys.path for the core
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from mqless_cli.billing import Usage, price  # noqa: E402
from mqless_cli.billing.prices import PRICES_AS_OF, REGION  # noqa: E402

REPLAY_MESSAGES = int(os.environ.get("REPLAY_MESSAGES", "1000"))
N = int(os.environ.get("BENCH_MESSAGES", "20"))
SWEEP_CONNECTIONS = [int(n) for n in os.environ.get("BENCH_SWEEP_CONNECTIONS", "10,50").split(",")]
RESULTS = ROOT / "bench" / "results" / "features.json"
SIZE = 512


def figures(label: str, unit: str, usage: Usage, count: int, note: str = "") -> dict[str, Any]:
    """Per-unit figures of what `count` units of work billed."""
    bill = price(usage, connection_minutes=False).per(count)
    return {
        "row": label,
        "unit": unit,
        "count": count,
        "wru": sum(usage.write_units.values()) / count,
        "rru": usage.total_read_units() / count,
        "dynamodb_requests": usage.count("dynamodb") / count,
        "http_requests": usage.http_requests.get("calls", 0) / count,
        "websocket_messages": (
            usage.websocket_messages.get("in", 0) + usage.websocket_messages.get("out", 0)
        )
        / count,
        "lambda_invocations": sum(usage.lambda_invocations.values()) / count,
        "kms_requests": usage.count("kms") / count,
        "dynamodb_dollars_per_million": bill.lines["DynamoDB writes"]
        + bill.lines["DynamoDB reads"],
        "dollars_per_million": bill.total,
        "dollars_per_million_by_service": bill.lines,
        "note": note,
    }


def measured(stack: Stack, work: Callable[[], Any]) -> Usage:
    before = stack.meter.usage()
    work()
    return stack.meter.usage() - before


def publish(stack: Stack, topic: str, count: int, batch: int, **attributes: str) -> None:
    """`count` messages of SIZE bytes in requests of `batch`, the stream drained every 16."""
    sent = 0
    while sent < count:
        entries = [
            {"id": f"e{i}", "body": body_of(sent + i, SIZE), "attributes": attributes}
            for i in range(min(batch, count - sent))
        ]
        if batch == 1:
            stack.api(
                "POST",
                f"/topics/{topic}/messages",
                {k: v for k, v in entries[0].items() if k != "id"},
            )
        else:
            stack.api("POST", f"/topics/{topic}/messages/batch", {"entries": entries})
        sent += len(entries)
        if sent % 16 < batch or sent == count:
            stack.stream.drain()


def consume(stack: Stack, queue: str, expected: int) -> None:
    got = 0
    while got < expected:
        found = stack.api("POST", f"/queues/{queue}/receive", {"max_messages": 10})["messages"]
        if not found:
            raise AssertionError(f"{queue}: received {got} of {expected}")
        stack.api("POST", f"/queues/{queue}/ack", {"receipts": [m["receipt"] for m in found]})
        got += len(found)
    left = stack.api("POST", f"/queues/{queue}/receive", {"max_messages": 10})["messages"]
    assert not left, f"{queue}: {len(left)} more than the {expected} expected"


# ---- a STOMP client ------------------------------------------------------------------------


class Stomp:
    """A STOMP 1.2 client over the local WebSocket gateway; each frame sent is waited for."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._socket: ClientConnection = connect(
            f"{stack.ws_url}/?access_token={stack.token}",
            subprotocols=[STOMP],  # type: ignore[list-item]
            open_timeout=60,
            max_size=None,
            legacy=True,
        )
        self._frames = 0
        self._base = stack.invocations("WebSocketFunction")
        self.send_frame("CONNECT", {"accept-version": "1.2", "host": "bench"})
        assert self.read()[0][0] == "CONNECTED"

    def send_frame(self, command: str, headers: dict[str, str], body: str = "") -> None:
        lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
        self._frames += 1
        self._socket.send("\n".join(lines) + "\n\n" + body + "\x00")
        self._stack.wait_for_invocations("WebSocketFunction", self._base + self._frames)

    def read(self, timeout: float = 60) -> list[tuple[str, dict[str, str]]]:
        text = self._socket.recv(timeout=timeout)
        assert isinstance(text, str)
        frames = []
        for raw in text.split("\x00"):
            raw = raw.lstrip("\r\n")
            if raw:
                head = raw.split("\n\n", 1)[0].split("\n")
                frames.append((head[0], dict(h.split(":", 1) for h in head[1:] if ":" in h)))
        for command, headers in frames:
            if command == "ERROR":
                raise RuntimeError(f"STOMP ERROR: {headers}")
        return frames

    def messages(self, count: int) -> list[dict[str, str]]:
        """The next `count` MESSAGE frames' headers. The stream is drained while waiting: a
        frame's invocation is counted when it starts, so what it wrote may reach the stream
        after the drain that followed it."""
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + 60
        while len(got) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} of {count} messages")
            try:
                got += [h for c, h in self.read(timeout=0.5) if c == "MESSAGE"]
            except TimeoutError:
                # drained only once nothing is running: a drain trims moto's stream, which
                # must not race a write
                self._stack.stream.drain()
        return got

    def nothing_pushed(self) -> bool:
        try:
            self._socket.recv(timeout=0.3)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self._socket.close()
        self._stack.wait_for_invocations("WebSocketFunction", self._base + self._frames + 1)


# ---- rows --------------------------------------------------------------------------------------


def replay(stack: Stack) -> list[dict[str, Any]]:
    topic, queue = "b-replay.news", "b-replay"
    published = measured(stack, lambda: publish(stack, topic, REPLAY_MESSAGES, 10))
    stack.api("PUT", f"/queues/{queue}", {})
    started = time.perf_counter()
    replayed = measured(
        stack,
        lambda: stack.api(
            "PUT", f"/topics/{topic}/subscriptions/{queue}", {"queue": queue, "start": "oldest"}
        ),
    )
    waited = time.perf_counter() - started
    stack.stream.drain()
    delivered = measured(stack, lambda: consume(stack, queue, REPLAY_MESSAGES))
    unit = "message replayed"
    return [
        figures(
            "topic publish, batches of 10 (what happened already)",
            "message",
            published,
            REPLAY_MESSAGES,
        ),
        figures(
            f"replay of {REPLAY_MESSAGES:,} retained messages into a new subscription (the PUT)",
            unit,
            replayed,
            REPLAY_MESSAGES,
            note=f"the PUT took {waited:.1f} s (it waits for the join), billed as Lambda time",
        ),
        figures(
            "replay + receive and ack in batches of 10", unit, replayed + delivered, REPLAY_MESSAGES
        ),
    ]


def selectors(stack: Stack) -> list[dict[str, Any]]:
    rows = []
    topic, queue = "b-sel.orders", "b-sel-eu"
    stack.api("PUT", f"/queues/{queue}", {})
    stack.api(
        "PUT",
        f"/topics/{topic}/subscriptions/{queue}",
        {"queue": queue, "selector": "region = 'eu'"},
    )
    publish(stack, topic, 10, 10, region="eu")  # warm
    consume(stack, queue, 10)
    for batch in (1, 10):
        taken = measured(
            stack,
            lambda b=batch: (publish(stack, topic, N, b, region="eu"), consume(stack, queue, N)),
        )
        passed = measured(stack, lambda b=batch: publish(stack, topic, N, b, region="us"))
        consume(stack, queue, 0)
        rows.append(figures(f"durable subscription selector takes, b={batch}", "message", taken, N))
        rows.append(
            figures(f"durable subscription selector passes over, b={batch}", "message", passed, N)
        )
    # a queue's push consumer with a selector: what it passes over stays for other consumers
    queue = "b-selq"
    stack.api("PUT", f"/queues/{queue}", {})
    consumer = Stomp(stack)
    consumer.send_frame(
        "SUBSCRIBE",
        {"id": "s", "destination": f"/queue/{queue}", "ack": "auto", "selector": "region = 'eu'"},
    )

    def send(region: str, count: int) -> None:
        for start in range(0, count, 10):
            entries = [
                {"id": f"e{i}", "body": body_of(start + i, SIZE), "attributes": {"region": region}}
                for i in range(10)
            ]
            stack.api("POST", f"/queues/{queue}/messages/batch", {"entries": entries})
            stack.stream.drain()

    try:
        send("eu", 10)  # warm
        consumer.messages(10)
        passed = measured(stack, lambda: send("us", N))
        assert consumer.nothing_pushed()
        taken = measured(stack, lambda: (send("eu", N), consumer.messages(N)))
    finally:
        consumer.close()
    rows.append(
        figures(
            "queue push consumer selector passes over, b=10",
            "message",
            passed,
            N,
            note="never leased; it waits for another consumer",
        )
    )
    rows.append(
        figures(
            "queue push consumer selector takes, b=10 (with the other messages waiting)",
            "message",
            taken,
            N,
        )
    )
    return rows


def presence(stack: Stack) -> list[dict[str, Any]]:
    queue, topic = "b-pres", "b-pres.news"
    stack.api("PUT", f"/queues/{queue}", {})
    stack.api("PUT", f"/topics/{topic}/subscriptions/{queue}", {"queue": queue})
    stack.api("GET", f"/queues/{queue}/presence")
    stack.api("GET", f"/topics/{topic}/presence")
    rows = [
        figures(
            "GET a queue's presence",
            "request",
            measured(
                stack, lambda: [stack.api("GET", f"/queues/{queue}/presence") for _ in range(N)]
            ),
            N,
        ),
        figures(
            "GET a topic's presence (1 durable subscription)",
            "request",
            measured(
                stack, lambda: [stack.api("GET", f"/topics/{topic}/presence") for _ in range(N)]
            ),
            N,
        ),
    ]
    consumer = Stomp(stack)

    def start_and_stop(count: int) -> None:
        for i in range(count):
            consumer.send_frame("SUBSCRIBE", {"id": f"c{i}", "destination": f"/queue/{queue}"})
            stack.stream.drain()
            consumer.send_frame("UNSUBSCRIBE", {"id": f"c{i}"})
            stack.stream.drain()

    start_and_stop(1)  # warm
    alone = measured(stack, lambda: start_and_stop(N))
    listener = Stomp(stack)
    listener.send_frame(
        "SUBSCRIBE",
        {"id": "a", "destination": f"/topic/ActiveMQ.Advisory.Consumer.Queue.{queue}"},
    )
    try:
        start_and_stop(1)
        listener.messages(2)
        watched = measured(stack, lambda: (start_and_stop(N), listener.messages(2 * N)))
    finally:
        listener.close()
        consumer.close()
    rows.append(
        figures(
            "a consumer starts and stops, nobody listening to advisories", "start+stop", alone, N
        )
    )
    rows.append(
        figures(
            "a consumer starts and stops, one advisory listener",
            "start+stop",
            watched,
            N,
            note="two advisories published and pushed",
        )
    )
    return rows


def request_reply(stack: Stack) -> list[dict[str, Any]]:
    responder = Stomp(stack)
    responder.send_frame("SUBSCRIBE", {"id": "r", "destination": "/queue/b-requests"})
    requester = Stomp(stack)

    def round_trip(n: int) -> None:
        requester.send_frame(
            "SEND",
            {
                "destination": "/queue/b-requests",
                "reply-to": "/temp-queue/replies",
                "correlation-id": f"c-{n}",
            },
            body_of(n, SIZE),
        )
        stack.stream.drain()
        [request] = responder.messages(1)
        responder.send_frame(
            "SEND",
            {"destination": request["reply-to"], "correlation-id": request["correlation-id"]},
            body_of(n, SIZE),
        )
        stack.stream.drain()
        [reply] = requester.messages(1)
        assert reply["correlation-id"] == f"c-{n}"

    def first() -> None:
        requester.send_frame("SUBSCRIBE", {"id": "replies", "destination": "/temp-queue/replies"})
        round_trip(0)

    try:
        made = measured(stack, first)
        steady = measured(stack, lambda: [round_trip(n) for n in range(1, N + 1)])
    finally:
        # $disconnect deletes the temp queue after the socket closes: give it time to finish
        ended = measured(stack, lambda: (requester.close(), time.sleep(2)))
        responder.close()
    return [
        figures(
            "request/reply, first round trip (temp queue made, subscribed)",
            "round trip",
            made,
            1,
        ),
        figures("request/reply, next round trips", "round trip", steady, N),
        figures(
            "request/reply, the requester disconnects (temp queue deleted)", "disconnect", ended, 1
        ),
    ]


def credential_sweep(stack: Stack) -> list[dict[str, Any]]:
    from mqless import wiring

    rows = []
    for count in SWEEP_CONNECTIONS:
        clients = [Stomp(stack) for _ in range(count)]
        try:
            wiring.sessions().sweep_connections()  # warm
            swept = measured(stack, wiring.sessions().sweep_connections)
        finally:
            for client in clients:
                client.close()
        row = figures(
            f"credentials that end: one sweep, {count} open connections", "sweep", swept, 1
        )
        bill = price(swept, connection_minutes=False)
        row["dollars_per_month_at_one_sweep_a_minute"] = bill.total * 60 * 24 * 30
        rows.append(row)
    return rows


# ---- output ------------------------------------------------------------------------------------

HEADER = (
    f"{'row':<78}{'unit':>17} |{'WRU':>7}{'RRU':>7}{'DDB':>6}{'HTTP':>5}{'WS':>5}{'λ':>5}"
    f" |{'$/M':>8}"
)


def show(r: dict[str, Any]) -> str:
    return (
        f"{r['row'][:78]:<78}{r['unit']:>17} |{r['wru']:>7.2f}{r['rru']:>7.2f}"
        f"{r['dynamodb_requests']:>6.1f}{r['http_requests']:>5.1f}{r['websocket_messages']:>5.1f}"
        f"{r['lambda_invocations']:>5.1f} |{r['dollars_per_million']:>8.2f}"
    )


def main() -> int:
    started = time.perf_counter()
    say(
        f"mqless bench: what features cost, {SIZE} B bodies, billed as AWS bills ({PRICES_AS_OF})\n"
    )
    stack = Stack()
    sections: dict[str, list[dict[str, Any]]] = {}
    try:
        say(HEADER)
        say("-" * len(HEADER))
        for name, run in (
            ("replay", replay),
            ("selectors", selectors),
            ("presence", presence),
            ("request_reply", request_reply),
            ("credential_sweep", credential_sweep),
        ):
            sections[name] = run(stack)
            for r in sections[name]:
                say(show(r))
    finally:
        stack.stop()
    say(
        "\nPer unit of work: WRU/RRU DynamoDB write/read units; DDB HTTP WS λ requests "
        "(DynamoDB, API Gateway HTTP, WebSocket messages both ways, Lambda invocations);\n"
        "$/M all in per million units (Lambda GB-s from durations measured here: an estimate;"
        " WebSocket connection minutes left out)."
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "generated": datetime.now(UTC).strftime("%Y-%m-%d"),
                "region": REGION,
                "prices_as_of": PRICES_AS_OF,
                "body_bytes": SIZE,
                "messages_per_row": N,
                "replay_messages": REPLAY_MESSAGES,
                **sections,
            },
            indent=1,
        )
        + "\n"
    )
    say(f"results: {RESULTS.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
