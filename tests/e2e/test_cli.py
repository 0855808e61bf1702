"""The `mqless` client commands as a user runs them: a subprocess against `mqless dev`.

Every command carries the dev token `mqless dev` prints (as MQLESS_TOKEN), unless a test
gives another token, or none.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevServer, _mqless_command, free_port

NO_TOKEN = ""
"""`token=NO_TOKEN`: run the command without any credential."""


def _env(server: DevServer, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MQLESS_"))}
    env.update(MQLESS_URL=server.http_url, MQLESS_WS_URL=server.ws_url, PYTHONUNBUFFERED="1")
    token = server.token if token is None else token
    if token:
        env["MQLESS_TOKEN"] = token
    return env


def mqless(
    server: DevServer,
    *args: str,
    stdin: str | None = None,
    timeout: float = 60,
    token: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `mqless ARGS` to the end, with the server's URLs and a token in the environment."""
    return subprocess.run(
        [*_mqless_command(), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=_env(server, token),
        timeout=timeout,
    )


def start(server: DevServer, *args: str, token: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_mqless_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(server, token),
    )


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def json_lines(result: subprocess.CompletedProcess[str]) -> list[Any]:
    """`--json` output of a command that prints many documents: one per line."""
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def no_traceback(result: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout


# ---- send, receive, ack ----------------------------------------------------------------------


def test_send_then_receive_with_ack_empties_the_queue(mqless_dev: DevServer) -> None:
    queue = name("cli-send")
    # Given a message sent with attributes
    sent = as_json(mqless(mqless_dev, "send", queue, "hello", "-a", "tenant=acme", "--json"))
    # When it is received with --ack
    received = mqless(mqless_dev, "receive", queue, "--ack", "--wait", "5", "--json")
    # Then it is the same message, acked, and the queue holds nothing
    [message] = json_lines(received)
    assert (message["message_id"], message["body"]) == (sent["message_id"], "hello")
    assert message["attributes"] == {"tenant": "acme"}
    assert received.stderr == "acked 1\n"
    stats = as_json(mqless(mqless_dev, "stats", queue, "--json"))
    assert (stats["visible"], stats["in_flight"]) == (0, 0)


def test_receive_prints_a_readable_message(mqless_dev: DevServer) -> None:
    queue = name("cli-human")
    # Given a JSON message sent with its content type
    mqless(mqless_dev, "send", queue, "--content-type", "application/json", stdin='{"id": 7}\n')
    # When it is received without --json
    result = mqless(mqless_dev, "receive", queue, "--wait", "5")
    # Then it prints a header (date, time, message id), its content type, its receipt and its body,
    # and says on stderr that it is not acked
    assert result.returncode == 0, result.stderr
    header, details, receipt, body = result.stdout.splitlines()
    assert len(header.split()) == 3  # date, time, message id
    assert details == "  [content-type=application/json]"
    assert receipt.startswith("  receipt: r")
    assert body == '  {"id": 7}'
    assert "not acked: settle with `mqless ack|nack|extend" in result.stderr


def test_bulk_send_with_count_and_file(mqless_dev: DevServer, tmp_path: Path) -> None:
    queue = name("cli-bulk")
    # Given a file of three lines and a blank one
    lines = tmp_path / "lines.txt"
    lines.write_text("first\nsecond\n\nthird\n")
    # When one body is sent 23 times with --count, and the file with --file
    counted = as_json(mqless(mqless_dev, "send", queue, "same", "--count", "23", "--json"))
    from_file = mqless(mqless_dev, "send", queue, "--file", str(lines))
    # Then --count sent 23 distinct messages, --file one per non-blank line: 26 in all
    assert counted["sent"] == 23 and len(set(counted["message_ids"])) == 23
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.startswith(f"sent 3 messages to {queue} in ")
    visible_soon(mqless_dev, queue, 26)  # counted once indexed (up to 0.25 s a stream hop)


# ---- consume ---------------------------------------------------------------------------------


def test_consume_limit_takes_exactly_that_many_and_acks_them(mqless_dev: DevServer) -> None:
    queue = name("cli-consume")
    # Given five messages
    mqless(mqless_dev, "send", queue, "m", "--count", "5")
    # When `consume --limit 3` runs
    result = mqless(mqless_dev, "consume", queue, "--limit", "3", "--json")
    # Then it prints three, says so on stderr and acked them: two stay visible, none leased
    assert result.returncode == 0, result.stderr
    consumed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["body"] for m in consumed] == ["m", "m", "m"]
    assert result.stderr == f"consumed 3 messages from {queue}\n"
    stats = as_json(mqless(mqless_dev, "stats", queue, "--json"))
    assert (stats["visible"], stats["in_flight"]) == (2, 0)


def test_consume_until_empty_drains_the_queue(mqless_dev: DevServer) -> None:
    queue = name("cli-drain")
    # Given twelve messages
    mqless(mqless_dev, "send", queue, "m", "--count", "12")
    # When `consume --until-empty` runs
    result = mqless(mqless_dev, "consume", queue, "--until-empty", "--wait", "1")
    # Then it prints all twelve, says so on stderr, and the queue is empty
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines().count("  m") == 12
    assert result.stderr == f"consumed 12 messages from {queue}\n"
    assert as_json(mqless(mqless_dev, "stats", queue, "--json"))["visible"] == 0


def test_ctrl_c_stops_consume_with_status_0(mqless_dev: DevServer) -> None:
    queue = name("cli-sigint")
    # Given a `consume` that took the queue's one message and is long-polling again
    mqless(mqless_dev, "send", queue, "only")
    consumer = start(mqless_dev, "consume", queue, "--wait", "2")
    try:
        printed = _printed_until(consumer, "  only")
        # it consumed the message and is long-polling again (a poll lasts 2 s)
        _acked_soon(mqless_dev, queue)
        time.sleep(1)
        # When it gets Ctrl-C (SIGINT)
        consumer.send_signal(signal.SIGINT)
        stdout, stderr = consumer.communicate(timeout=30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    # Then it exits 0, having printed the message and its count
    assert consumer.returncode == 0, stderr
    assert "  only" in printed + stdout
    assert stderr == f"consumed 1 message from {queue}\n"


# ---- publish and tail ------------------------------------------------------------------------


def _printed_until(process: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    """What `process` printed on stdout up to `text`, waiting for it (rather than sleeping
    for as long as that might take). Read from the pipe itself, so that nothing is left in
    a buffer out of select's sight and `communicate` gets the rest."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    printed = b""
    while text.encode() not in printed:
        assert time.monotonic() < deadline, f"it never printed {text!r}:\n{printed.decode()}"
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"it ended without printing {text!r}:\n{printed.decode()}"
            printed += chunk
    return printed.decode()


def _acked_soon(server: DevServer, queue: str, timeout: float = 10) -> None:
    """Wait until `queue` holds nothing visible or in flight: what was sent is acked."""
    with httpx.Client(base_url=server.http_url, headers=server.auth_headers(), timeout=30) as http:
        deadline = time.monotonic() + timeout
        while True:
            counts = http.get(f"/queues/{queue}").json()["counts"]
            if counts["visible"] == counts["in_flight"] == 0:
                return
            assert time.monotonic() < deadline, f"{queue} was never emptied: {counts}"
            time.sleep(0.1)


def _wait_for_tail(process: subprocess.Popen[str]) -> str:
    """Block until `tail` says it is subscribed; return that line."""
    assert process.stderr is not None
    line = process.stderr.readline()
    assert line.startswith("tailing "), line
    return line


def test_tail_prints_published_messages_until_its_limit(mqless_dev: DevServer) -> None:
    topic = name("clitail")
    # Given `tail TOPIC.> --limit 2`, subscribed
    tail = start(mqless_dev, "tail", f"{topic}.>", "--limit", "2", "--json")
    try:
        _wait_for_tail(tail)
        # When two messages are published under the topic and one elsewhere
        first = as_json(mqless(mqless_dev, "publish", f"{topic}.eu", "one", "-a", "k=v", "--json"))
        mqless(mqless_dev, "publish", "elsewhere", "not for us")
        second = as_json(mqless(mqless_dev, "publish", f"{topic}.us", "two", "--json"))
        stdout, stderr = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    # Then it prints the two, in order, with attributes and destination, and exits 0 at its limit
    assert tail.returncode == 0, stderr
    frames = [json.loads(line) for line in stdout.splitlines()]
    assert [f["message_id"] for f in frames] == [first["message_id"], second["message_id"]]
    assert [f["body"] for f in frames] == ["one", "two"]
    assert frames[0]["attributes"] == {"k": "v"}
    assert frames[0]["destination"] == f"/topic/{topic}.eu"


def test_ctrl_c_stops_tail_cleanly(mqless_dev: DevServer) -> None:
    topic = name("clictrlc")
    # Given `subscribe TOPIC` that has received one published message
    tail = start(mqless_dev, "subscribe", topic)
    try:
        _wait_for_tail(tail)
        mqless(mqless_dev, "publish", topic, "live")
        printed = _printed_until(tail, "  live")
        # When it gets Ctrl-C (SIGINT)
        tail.send_signal(signal.SIGINT)
        stdout, stderr = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    # Then it exits 0, having printed the message and its count
    assert tail.returncode == 0
    assert "  live" in printed + stdout
    assert stderr == f"received 1 message on /topic/{topic}\n"


# ---- queues, stats, purge, redrive -----------------------------------------------------------


def test_queues_and_stats_show_the_counts(mqless_dev: DevServer) -> None:
    queue = name("cli-stats")
    # Given a queue with four messages
    mqless(mqless_dev, "send", queue, "x", "--count", "4")
    visible_soon(mqless_dev, queue, 4)
    # When `queues --json`, `queues` and `stats` run
    listed = as_json(mqless(mqless_dev, "queues", "--json"))["queues"]
    table = mqless(mqless_dev, "queues")
    overview = mqless(mqless_dev, "stats")
    # Then the JSON and the table show its four visible messages (and its dead-letter queue), under
    # column headers, and the overview counts WebSocket connections
    mine = next(q for q in listed if q["name"] == queue)
    assert (mine["visible"], mine["dead_letter_queue"]) == (4, f"{queue}.dlq")
    assert table.stdout.splitlines()[0].split()[:3] == ["QUEUE", "TYPE", "VISIBLE"]
    row = next(line for line in table.stdout.splitlines() if line.startswith(queue + " "))
    assert row.split()[:5] == [queue, "standard", "4", "0", "0"]
    assert "WebSocket connections:" in overview.stdout


def test_purge_needs_yes_without_a_terminal_and_then_purges(mqless_dev: DevServer) -> None:
    queue = name("cli-purge")
    # Given a queue with three messages, and no terminal to ask on
    mqless(mqless_dev, "send", queue, "x", "--count", "3")
    visible_soon(mqless_dev, queue, 3)  # a purge deletes what is indexed, as on AWS
    # When it is purged without --yes, then with it
    refused = mqless(mqless_dev, "purge", queue)
    purged = mqless(mqless_dev, "purge", queue, "--yes", "--json")
    # Then the first is a usage error (exit 2) asking for --yes, and the second purges all three
    assert refused.returncode == 2
    assert refused.stderr == "mqless: purge deletes every message: confirm with --yes\n"
    assert as_json(purged) == {"purged": 3}
    assert as_json(mqless(mqless_dev, "stats", queue, "--json"))["visible"] == 0


def test_redrive_moves_every_dead_letter_back(mqless_dev: DevServer) -> None:
    queue = name("cli-redrive")
    # Given messages dead-lettered after one delivery each
    headers = mqless_dev.auth_headers()
    with httpx.Client(base_url=mqless_dev.http_url, headers=headers, timeout=30) as http:
        http.put(f"/queues/{queue}", json={"max_receive_count": 1}).raise_for_status()
    mqless(mqless_dev, "send", queue, "retry me", "--count", "12")
    for _ in range(2):
        mqless(mqless_dev, "receive", queue, "--max", "10", "--visibility", "0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # an over-limit message is dead-lettered at its next delivery attempt or sweep
        mqless(mqless_dev, "receive", queue, "--max", "10", "--visibility", "0")
        if as_json(mqless(mqless_dev, "stats", queue, "--json"))["dead_letter_visible"] == 12:
            break
        time.sleep(0.5)
    # When the dead-letter queue is redriven in rounds of 5
    first = mqless(mqless_dev, "redrive", f"{queue}.dlq", "--max", "5")
    rest = as_json(mqless(mqless_dev, "redrive", f"{queue}.dlq", "--json"))
    # Then every message is back in its source queue
    assert first.stdout == f"moved 5 messages from {queue}.dlq\n"
    assert rest == {"queue": f"{queue}.dlq", "moved": 7, "failed": []}
    visible_soon(mqless_dev, queue, 12)  # a moved message is counted once indexed


def test_redrive_of_a_live_queue_is_refused_and_leaves_its_messages_alone(
    mqless_dev: DevServer,
) -> None:
    queue = name("cli-live")
    # Given a queue with messages that were never delivered
    mqless(mqless_dev, "send", queue, "live", "--count", "3")
    # When someone runs redrive on it (not on its dead-letter queue), twice
    results = [mqless(mqless_dev, "redrive", queue) for _ in range(2)]
    # Then each run says the queue is no dead-letter queue and exits 1...
    for result in results:
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith(f"mqless: '{queue}' is not a dead-letter queue")
        assert no_traceback(result)
    # ...and the messages are all still there, never counted as received
    stats = as_json(mqless(mqless_dev, "stats", queue, "--json"))
    assert (stats["visible"], stats["in_flight"], stats["dead_letter_visible"]) == (3, 0, 0)
    received = json_lines(mqless(mqless_dev, "receive", queue, "--max", "10", "--json"))
    assert sorted(m["receive_count"] for m in received) == [1, 1, 1]


# ---- settling by receipt, queue administration, subscriptions (issue 17) ----------------------


def visible_soon(server: DevServer, queue: str, count: int, timeout: float = 10) -> None:
    """Wait until `queue` shows `count` visible (a sent or moved message is counted, and
    receivable, once the dispatch function has indexed it). A wait between a test's steps,
    not a command under test: it asks the API (`mqless stats` reads the same document),
    without starting a CLI process a poll."""
    with httpx.Client(base_url=server.http_url, headers=server.auth_headers(), timeout=30) as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http.get(f"/queues/{queue}/stats").json()["visible"] == count:
                return
            time.sleep(0.1)
    raise AssertionError(f"{queue} never showed {count} visible")


def test_receipts_piped_from_receive_into_ack_settle_the_leases(mqless_dev: DevServer) -> None:
    queue = name("cli-pipe")
    # Given two messages leased by `receive --json` (one JSON document per line)
    mqless(mqless_dev, "send", queue, "m", "--count", "2")
    received = mqless(mqless_dev, "receive", queue, "--max", "2", "--wait", "5", "--json")
    assert len(json_lines(received)) == 2
    # When its output is piped into `mqless ack` (as with `| mqless ack QUEUE`)
    acked = mqless(mqless_dev, "ack", queue, stdin=received.stdout)
    # Then both are acked and gone
    assert (acked.returncode, acked.stdout) == (0, f"acked 2 messages in {queue}\n")
    stats = as_json(mqless(mqless_dev, "stats", queue, "--json"))
    assert (stats["visible"], stats["in_flight"]) == (0, 0)


def test_extend_then_nack_by_receipt(mqless_dev: DevServer) -> None:
    queue = name("cli-nack")
    # Given a message received with --json, its receipt at hand
    mqless(mqless_dev, "send", queue, "again")
    [message] = json_lines(mqless(mqless_dev, "receive", queue, "--wait", "5", "--json"))
    receipt = message["receipt"]
    # When its lease is extended, then it is given back
    extended = mqless(mqless_dev, "extend", queue, receipt, "--visibility", "2m")
    in_flight = as_json(mqless(mqless_dev, "stats", queue, "--json"))["in_flight"]
    released = mqless(mqless_dev, "nack", queue, receipt)
    # Then it stayed leased, then came back at once, to be delivered again
    assert extended.stdout == f"changed 1 lease in {queue}: visible again in 120 s unless acked\n"
    assert in_flight == 1
    assert released.stdout == f"released 1 message in {queue}: delivered again now\n"
    [again] = json_lines(mqless(mqless_dev, "receive", queue, "--json"))
    assert (again["message_id"], again["receive_count"]) == (message["message_id"], 2)


def test_create_update_and_delete_a_queue_with_its_dead_letter_queue(
    mqless_dev: DevServer,
) -> None:
    queue = name("cli-admin")
    # Given a queue created with settings
    created = as_json(
        mqless(mqless_dev, "create", queue, "--visibility-timeout", "1m",
               "--max-receive-count", "3", "--shards", "2", "--json")
    )  # fmt: skip
    assert (created["visibility_timeout"], created["max_receive_count"], created["shards"]) == (
        60,
        3,
        2,
    )
    # When it is created again, with the same and with other settings
    same = mqless(mqless_dev, "create", queue, "--visibility-timeout", "60")
    other = mqless(mqless_dev, "create", queue, "--visibility-timeout", "30")
    # Then the first changes nothing, the second is refused and names `update`
    assert same.returncode == 0 and same.stdout.startswith(f"queue {queue} already exists\n")
    assert other.returncode == 1
    assert f"`mqless update {queue} --visibility-timeout`" in other.stderr
    # When one setting is updated
    updated = as_json(mqless(mqless_dev, "update", queue, "--delay", "5", "--json"))
    # Then only it changed
    assert (updated["delay_seconds"], updated["visibility_timeout"]) == (5, 60)
    # When it is deleted with its dead-letter queue
    deleted = as_json(mqless(mqless_dev, "delete", queue, "--with-dlq", "--yes", "--json"))
    # Then both are gone
    assert deleted == {"deleted": [queue, f"{queue}.dlq"], "kept": []}
    listed = {q["name"] for q in as_json(mqless(mqless_dev, "queues", "--json"))["queues"]}
    assert {queue, f"{queue}.dlq"} & listed == set()


def test_create_a_fifo_queue(mqless_dev: DevServer) -> None:
    # Given a name that ends in .fifo
    queue = name("cli-fifo") + ".fifo"
    # When it is created with --fifo
    created = as_json(mqless(mqless_dev, "create", queue, "--fifo", "--json"))
    # Then the queue is FIFO
    assert created["fifo"] is True
    # When a name without .fifo is created with --fifo
    misnamed = mqless(mqless_dev, "create", name("cli-fifo"), "--fifo")
    # Then it is a usage error (exit 2) that names the suffix
    assert misnamed.returncode == 2 and "ends in .fifo" in misnamed.stderr


def test_browse_pages_then_move_and_copy_by_id(mqless_dev: DevServer) -> None:
    queue, archive, audit = name("cli-browse"), name("cli-archive"), name("cli-audit")
    # Given three visible messages
    mqless(mqless_dev, "send", queue, "m", "--count", "3")
    visible_soon(mqless_dev, queue, 3)
    # When the first page of two is browsed, then every page
    page = mqless(mqless_dev, "browse", queue, "--limit", "2")
    first_page = json_lines(mqless(mqless_dev, "browse", queue, "--limit", "2", "--json"))
    every = json_lines(mqless(mqless_dev, "browse", queue, "--limit", "2", "--all", "--json"))
    # Then a page holds two, says how to get the next, and --all follows the cursors
    assert len(first_page) == 2, first_page
    assert f"more: mqless browse {queue} --cursor " in page.stderr
    assert len(every) == 3 and {m["state"] for m in every} == {"visible"}
    # When the first is copied and moved, by id
    first = every[0]["message_id"]
    copied = mqless(mqless_dev, "move", queue, first, "--to", audit, "--copy")
    moved = mqless(mqless_dev, "move", queue, first, "--to", archive)
    # Then it is in both, and no longer in the queue
    assert copied.stdout == f"copied {first} from {queue} to {audit}\n"
    assert moved.stdout == f"moved {first} from {queue} to {archive}\n"
    visible_soon(mqless_dev, archive, 1)
    visible_soon(mqless_dev, audit, 1)
    visible_soon(mqless_dev, queue, 2)


def test_subscriptions_create_list_and_delete(mqless_dev: DevServer) -> None:
    # Given a queue for a subscription to feed
    topic, queue = name("clitopic"), name("cli-sub")
    mqless(mqless_dev, "create", queue)  # a subscription feeds a queue that exists
    # When a subscription on TOPIC.> filtered on region=eu is created and listed
    created = mqless(mqless_dev, "subscriptions", "create", f"{topic}.>", "eu", "--queue", queue,
                     "--filter", '{"region": ["eu"]}')  # fmt: skip
    # Then it is listed with its queue and its filter
    assert created.returncode == 0, created.stderr
    listed = json_lines(mqless(mqless_dev, "subscriptions", "list", f"{topic}.>", "--json"))
    assert [(s["name"], s["queue"], s["filter_policy"]) for s in listed] == [
        ("eu", queue, {"region": ["eu"]})
    ]
    # a message published under the topic with region=eu reaches the queue
    mqless(mqless_dev, "publish", f"{topic}.orders", "for eu", "-a", "region=eu")
    visible_soon(mqless_dev, queue, 1)
    # When it is deleted
    deleted = mqless(mqless_dev, "subscriptions", "delete", f"{topic}.>", "eu")
    # Then it says the queue stays, and the topic lists no subscription
    assert deleted.stdout == f"deleted subscription eu on {topic}.> (its queue stays)\n"
    assert mqless(mqless_dev, "subscriptions", "list", f"{topic}.>", "--json").stdout == ""


def test_consume_until_empty_on_an_empty_queue_ends_in_seconds(mqless_dev: DevServer) -> None:
    queue = name("cli-empty")
    # Given an empty queue
    mqless(mqless_dev, "create", queue)
    # When `consume --until-empty` runs on it
    started = time.monotonic()
    result = mqless(mqless_dev, "consume", queue, "--until-empty")
    elapsed = time.monotonic() - started
    # Then it exits 0, having consumed nothing, within seconds (not after a 20 s long poll)
    assert (result.returncode, result.stderr) == (0, f"consumed 0 messages from {queue}\n")
    assert elapsed < 10, f"took {elapsed:.1f} s (a 20 s long poll?)"


def test_version_names_the_package(mqless_dev: DevServer) -> None:
    # Given the installed CLI
    # When `mqless --version` runs
    result = mqless(mqless_dev, "--version")
    # Then it exits 0 and prints `mqless` and a version number
    assert result.returncode == 0
    assert re.fullmatch(r"mqless \d+\.\d+\.\d+\S*\n", result.stdout)


# ---- access: principals, keys, and what a limited key may do --------------------------------
#
# The gateway caches each token's authorization for 300 s, as API Gateway does: a token
# that was used keeps working that long after it is revoked. These tests revoke tokens
# before their first use, so no cached answer can hide the revocation.

REFUSED_TOKEN = "mqless: forbidden: the token was refused (unknown, revoked or expired?)\n"


def limited_key(server: DevServer, grant: str, *, ttl: str = "1h") -> tuple[str, str, str]:
    """A new principal with one grant, and a key for it: (principal, key id, token)."""
    principal = name("clerk")
    created = mqless(server, "principals", "set", principal, "--grant", grant)
    assert created.returncode == 0, created.stderr
    issued = as_json(mqless(server, "keys", "issue", principal, "--ttl", ttl, "--json"))
    return principal, issued["key_id"], issued["token"]


def test_principals_set_show_and_list(mqless_dev: DevServer) -> None:
    # Given a principal name not used yet
    principal = name("reader")
    # When it is set with two grants, set again with one, shown and listed
    created = mqless(
        mqless_dev,
        "principals",
        "set",
        principal,
        "--grant",
        "shop.*=receive",
        "--grant",
        "audit=send",
    )
    replaced = mqless(mqless_dev, "principals", "set", principal, "--grant", "shop.>=receive")
    shown = mqless(mqless_dev, "principals", "show", principal)
    listed = as_json(mqless(mqless_dev, "principals", "list", "--json"))["principals"]
    # Then the first set created it, the second replaced its grants, and show and list give the new
    # grant only
    assert created.stdout == f"created principal {principal}: shop.*=receive audit=send\n"
    assert replaced.stdout == f"updated principal {principal}: shop.>=receive\n"
    assert shown.stdout.splitlines()[:2] == [f"principal  {principal}", "grants     shop.>=receive"]
    mine = next(p for p in listed if p["id"] == principal)
    assert mine["grants"] == [{"pattern": "shop.>", "actions": ["receive"]}]


def test_a_limited_key_sends_where_its_grants_allow_and_is_refused_elsewhere(
    mqless_dev: DevServer,
) -> None:
    prefix = name("orders")
    own, other = f"{prefix}.eu", name("billing")
    for queue in (own, other):  # made by the admin: creating a queue is not the clerk's job
        assert mqless(mqless_dev, "send", queue, "setup").returncode == 0
    # Given a principal that may send and receive on PREFIX.*, and a key for it
    principal, _, token = limited_key(mqless_dev, f"{prefix}.*=send,receive")
    # When it sends to its queue and to another
    allowed = mqless(mqless_dev, "send", own, "hello", token=token)
    refused = mqless(mqless_dev, "send", other, "hello", token=token)
    # Then the first is stored and the second refused in one sentence
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("sent ")
    assert refused.returncode == 1
    assert refused.stderr.startswith("mqless: forbidden: ")
    assert principal in refused.stderr and other in refused.stderr
    assert refused.stderr.count("\n") == 1 and no_traceback(refused)


def test_a_limited_key_may_not_manage_access(mqless_dev: DevServer) -> None:
    # Given a key whose principal may only send to its own queues
    _, _, token = limited_key(mqless_dev, f"{name('mine')}.>=send")
    # When it lists principals
    refused = mqless(mqless_dev, "principals", "list", token=token)
    # Then it is refused as forbidden (exit 1)
    assert refused.returncode == 1
    assert refused.stderr.startswith("mqless: forbidden: ")


def test_a_revoked_key_is_refused_and_listed_as_revoked(mqless_dev: DevServer) -> None:
    queue = name("revoke")
    # Given a queue and a key that may send to it
    mqless(mqless_dev, "send", queue, "setup")
    principal, key_id, token = limited_key(mqless_dev, f"{queue}=send")
    # When the key is revoked (before its first use: nothing cached) and then used
    revoked = mqless(mqless_dev, "keys", "revoke", key_id)
    refused = mqless(mqless_dev, "send", queue, "late", token=token)
    listed = as_json(mqless(mqless_dev, "keys", "list", "--principal", principal, "--json"))
    # Then the API refuses it, and says it is revoked
    assert revoked.stdout == f"revoked key {key_id}\n"
    assert (refused.returncode, refused.stderr) == (1, REFUSED_TOKEN)
    assert [(k["key_id"], k["revoked"]) for k in listed["keys"]] == [(key_id, True)]


def test_deleting_a_principal_stops_its_keys(mqless_dev: DevServer) -> None:
    queue = name("gone")
    # Given a queue and a key that may send to it (never used: nothing cached)
    mqless(mqless_dev, "send", queue, "setup")
    principal, _, token = limited_key(mqless_dev, f"{queue}=send")
    # When the key's principal is deleted and the key then used
    deleted = mqless(mqless_dev, "principals", "delete", principal)
    refused = mqless(mqless_dev, "send", queue, "late", token=token)
    # Then the principal is deleted and the key refused
    assert deleted.returncode == 0, deleted.stderr
    assert (refused.returncode, refused.stderr) == (1, REFUSED_TOKEN)


def test_keys_list_shows_an_issued_key_as_active_with_its_expiry(mqless_dev: DevServer) -> None:
    # Given a key issued for two days
    principal, key_id, _ = limited_key(mqless_dev, f"{name('x')}=send", ttl="2d")
    # When its principal's keys are listed as a table
    table = mqless(mqless_dev, "keys", "list", "--principal", principal)
    # Then its one row shows the key, the principal, an expiry (not "never") and "active"
    [row] = [line.split() for line in table.stdout.splitlines()[1:]]
    assert (row[0], row[1], row[-1]) == (key_id, principal, "active")
    assert row[4] != "never"  # created date, time; expires date, time


def test_without_a_token_the_cli_says_how_to_give_one(mqless_dev: DevServer) -> None:
    # Given no token
    # When `mqless queues` runs
    result = mqless(mqless_dev, "queues", token=NO_TOKEN)
    # Then it exits 1, saying to set MQLESS_TOKEN or pass --token
    assert (result.returncode, result.stderr) == (
        1,
        "mqless: not authenticated: set MQLESS_TOKEN or pass --token\n",
    )


def test_a_made_up_token_is_refused(mqless_dev: DevServer) -> None:
    # Given a well-formed token that was never issued
    # When `mqless queues` uses it
    result = mqless(mqless_dev, "queues", "--token", "mqk_" + "0" * 24 + "_" + "A" * 43)
    # Then it exits 1: the token was refused
    assert (result.returncode, result.stderr) == (1, REFUSED_TOKEN)


def test_tail_with_a_limited_key_is_refused_outside_its_grants(mqless_dev: DevServer) -> None:
    topic = name("news")
    # Given a key that may receive on TOPIC.* only
    _, _, token = limited_key(mqless_dev, f"{topic}.*=receive")
    # When it tails another topic
    refused = mqless(mqless_dev, "tail", name("secret"), "--limit", "1", token=token)
    # Then it is refused as forbidden (exit 1)
    assert refused.returncode == 1
    assert refused.stderr.startswith("mqless: forbidden: ")


def test_tail_with_a_limited_key_gets_its_topics(mqless_dev: DevServer) -> None:
    topic = name("feed")
    # Given a key that may receive on TOPIC.*, tailing TOPIC.*
    _, _, token = limited_key(mqless_dev, f"{topic}.*=receive")
    tail = start(mqless_dev, "tail", f"{topic}.*", "--limit", "1", "--json", token=token)
    try:
        _wait_for_tail(tail)
        # When a message is published on TOPIC.a
        published = as_json(mqless(mqless_dev, "publish", f"{topic}.a", "one", "--json"))
        stdout, stderr = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    # Then the tail prints it and exits 0 at its limit of one
    assert tail.returncode == 0, stderr
    assert json.loads(stdout)["message_id"] == published["message_id"]


def test_tail_with_a_refused_token_fails_the_handshake(mqless_dev: DevServer) -> None:
    # Given a key that was revoked before its first use
    _, key_id, token = limited_key(mqless_dev, f"{name('t')}.*=receive")
    mqless(mqless_dev, "keys", "revoke", key_id)
    # When `tail` connects with it
    refused = mqless(mqless_dev, "tail", "x", token=token)
    # Then the handshake is refused and it exits 1: the token was refused
    assert (refused.returncode, refused.stderr) == (1, REFUSED_TOKEN)


def test_tail_without_a_token_fails_the_handshake(mqless_dev: DevServer) -> None:
    # Given no token
    # When `tail` connects
    refused = mqless(mqless_dev, "tail", "x", token=NO_TOKEN)
    # Then it exits 1, saying to set MQLESS_TOKEN or pass --token
    assert (refused.returncode, refused.stderr) == (
        1,
        "mqless: not authenticated: set MQLESS_TOKEN or pass --token\n",
    )


# ---- errors ----------------------------------------------------------------------------------


def test_an_unknown_queue_is_an_api_error_without_a_traceback(mqless_dev: DevServer) -> None:
    # Given a queue that was never made
    # When `receive` asks for it
    result = mqless(mqless_dev, "receive", name("never-made"))
    # Then it exits 1 with the API's error in one line, no traceback
    assert result.returncode == 1
    assert result.stderr.startswith("mqless: queue ") and "does not exist" in result.stderr
    assert no_traceback(result)


def test_a_url_nobody_listens_on_gets_the_dev_hint(mqless_dev: DevServer) -> None:
    # Given a URL nobody listens on
    url = f"http://127.0.0.1:{free_port()}"
    # When `mqless queues` uses it
    result = mqless(mqless_dev, "queues", "--url", url)
    # Then it exits 1, asking whether `mqless dev` is running
    assert result.returncode == 1
    assert result.stderr == (
        f"mqless: cannot reach {url} (connection refused): "
        "is `mqless dev` running? set --url or MQLESS_URL\n"
    )


def test_tail_without_a_websocket_server_gets_the_dev_hint(mqless_dev: DevServer) -> None:
    # Given a WebSocket URL nobody listens on
    # When `tail` uses it
    result = mqless(mqless_dev, "tail", "x", "--ws-url", f"ws://127.0.0.1:{free_port()}")
    # Then it exits 1 naming --ws-url and MQLESS_WS_URL, without a traceback
    assert result.returncode == 1
    assert "set --ws-url or MQLESS_WS_URL" in result.stderr
    assert no_traceback(result)


@pytest.mark.parametrize(
    "args",
    [("send", "q", "x", "--delay", "-1"), ("receive",), ("send", "q", "x", "--file", "f")],
)
def test_usage_mistakes_exit_2(mqless_dev: DevServer, args: tuple[str, ...]) -> None:
    # Given a usage mistake (a negative delay, no queue, a body and --file both)
    # When it runs
    result = mqless(mqless_dev, *args)
    # Then it exits 2 without a traceback
    assert result.returncode == 2
    assert no_traceback(result)
