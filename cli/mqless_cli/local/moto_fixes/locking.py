"""One request at a time: `atomic_requests`, the lock it holds (`REQUEST_LOCK`) and what it
measured (`LockStats`)."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mqless_cli.local.moto_fixes.patching import patched

SLOW_REQUEST_MS = 500.0
"""A request that holds the lock longer is logged (with the start of its body)."""

log = logging.getLogger(__name__)


@dataclass
class LockStats:
    """How long requests held, and waited for, the lock that makes them atomic."""

    requests: int = 0
    longest_hold_ms: float = 0.0
    longest_hold_operation: str = ""
    longest_hold_cpu_ms: float = 0.0
    """CPU time the longest hold's own thread used: the rest of it, the thread waited for
    the CPU (other threads ran: the GIL, a busy machine) or for a garbage collection."""
    longest_cpu_ms: float = 0.0
    """The most CPU time any one request used under the lock: its own work."""
    longest_cpu_operation: str = ""
    longest_wait_ms: float = 0.0
    by_operation: Counter[str] = field(default_factory=Counter)
    """Requests per operation (`DynamoDB.Query`, `KMS.GenerateDataKey`, ...)."""

    def summary(self) -> str:
        """One line for people: how many requests, and the longest lock hold and wait."""
        busiest = ", ".join(f"{name} {n}" for name, n in self.by_operation.most_common(8))
        return (
            f"{self.requests} AWS requests; longest lock hold {self.longest_hold_ms:.1f} ms "
            f"({self.longest_hold_operation or '-'}, {self.longest_hold_cpu_ms:.1f} ms of it "
            f"computing), longest wait {self.longest_wait_ms:.1f} ms; most CPU in one request "
            f"{self.longest_cpu_ms:.1f} ms ({self.longest_cpu_operation or '-'})"
            f"; most requested: {busiest or '-'}"
        )


class _RequestLock:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stats = LockStats()
        self.gc_ms = 0.0  # time spent in garbage collections so far (any thread)
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A `gc.callbacks` hook: collections are timed, to tell them apart in a long hold."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_ms += (time.perf_counter() - self._gc_started) * 1000

    def reset(self) -> None:
        self.stats = LockStats()


REQUEST_LOCK = _RequestLock()
"""The lock `atomic_requests` serialises moto's requests with, and what it measured."""


def _operation(request: Any) -> str:
    """`Service.Operation` of a JSON-protocol request (the others: method and path)."""
    target = request.headers.get("X-Amz-Target")
    if target:
        text = target.decode() if isinstance(target, bytes) else str(target)
        service, _, operation = text.partition(".")
        return f"{_SERVICES.get(service, service)}.{operation}"
    path = urlsplit(str(request.url)).path
    return f"{request.method} {'/@connections' if '/@connections/' in path else path}"


_SERVICES = {
    "DynamoDB_20120810": "DynamoDB",
    "DynamoDBStreams_20120810": "DynamoDBStreams",
    "TrentService": "KMS",
}


def _note_request(
    stats: LockStats,
    request: Any,
    arrived: float,
    acquired: float,
    cpu_started: float,
    gc_ms_before: float,
) -> None:
    """Measure one request that has just released the lock: it arrived at `arrived`, held
    the lock from `acquired`, its thread's CPU clock then read `cpu_started` and garbage
    collections had taken `gc_ms_before`. A hold over SLOW_REQUEST_MS is logged."""
    held = (time.perf_counter() - acquired) * 1000
    cpu = (time.thread_time() - cpu_started) * 1000
    operation = _operation(request)
    stats.requests += 1
    stats.by_operation[operation] += 1
    stats.longest_wait_ms = max(stats.longest_wait_ms, (acquired - arrived) * 1000)
    if held > stats.longest_hold_ms:
        stats.longest_hold_ms = held
        stats.longest_hold_operation = operation
        stats.longest_hold_cpu_ms = cpu
    if cpu > stats.longest_cpu_ms:
        stats.longest_cpu_ms = cpu
        stats.longest_cpu_operation = operation
    if held > SLOW_REQUEST_MS:
        body = request.body or b""
        log.warning(
            "%s held the request lock for %.0f ms (every other request waited; "
            "%.0f ms of it computing, %.0f ms in garbage collection): %s",
            operation,
            held,
            cpu,
            REQUEST_LOCK.gc_ms - gc_ms_before,
            (body if isinstance(body, bytes) else str(body).encode())[:300],
        )


@contextmanager
def atomic_requests() -> Iterator[None]:
    """Give in-process moto DynamoDB's per-request atomicity while the block runs.

    DynamoDB applies each request (condition and write) atomically; moto's in-process
    backend does not, so a thread switch between its condition check and its write lets
    two conditional updates both succeed. Serialising moto's request handling restores
    the guarantee the broker's leases rely on; callers still interleave between requests.
    The longest hold (and the request that held it) is kept in `REQUEST_LOCK.stats`.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def atomic(self: BotocoreStubber, request: Any) -> Any:
        stats = REQUEST_LOCK.stats
        arrived = time.perf_counter()
        with REQUEST_LOCK.lock:
            acquired, cpu, gc_ms = time.perf_counter(), time.thread_time(), REQUEST_LOCK.gc_ms
            try:
                return original(self, request)
            finally:
                _note_request(stats, request, arrived, acquired, cpu, gc_ms)

    gc.callbacks.append(REQUEST_LOCK.on_gc)
    try:
        with patched(BotocoreStubber, "process_request", atomic):
            yield
    finally:
        gc.callbacks.remove(REQUEST_LOCK.on_gc)
