"""How a batch of stream records is delivered to a function, as Lambda's event source mapping
does: partial batch responses, bisection on function errors, retries with exponential
backoff, and records skipped once their retries run out or they grow too old."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from mqless_cli.cfn import StreamSource
from mqless_cli.local.functions import FunctionError, FunctionHost
from mqless_cli.local.stream_records import Record

__all__ = ["BatchDelivery", "PollerStats"]


log = logging.getLogger(__name__)


class _Failed(NamedTuple):
    """How an invocation failed: retry from this index; raised or reported."""

    retry_from: int
    function_error: bool


@dataclass(frozen=True)
class PollerStats:
    """What a poller has done so far."""

    batches: int = 0
    """Invocations of the function."""
    records: int = 0
    """Records handed to the function, redeliveries included."""
    retries: int = 0
    """Re-invocations after a failure (bisected halves are not retries)."""
    bisections: int = 0
    """Failed batches split in two."""
    dropped: int = 0
    """Records skipped after their retries ran out or they grew too old."""
    filtered: int = 0
    """Records that matched no filter and were never delivered."""


class BatchDelivery:
    """Hands batches of one event source mapping to its function, with Lambda's retry policy."""

    def __init__(
        self,
        source: StreamSource,
        functions: FunctionHost,
        *,
        stop: threading.Event,
        count: Callable[[str, int], None],
        max_retries: int,
        backoff_seconds: float,
        max_backoff_seconds: float,
    ) -> None:
        """`stop`: set when the poller stops (a delivery under way gives up waiting);
        `count(name, amount)`: adds to one of the poller's `PollerStats` counters."""
        self.source = source
        self._functions = functions
        self._stop = stop
        self._count = count
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds

    def deliver(self, batch: list[Record]) -> None:
        """Invoke until every record of `batch` succeeded or was skipped; in stream order."""
        segments: deque[tuple[list[Record], int]] = deque([(batch, 0)])
        while segments and not self._stop.is_set():
            records, retries = segments.popleft()
            records = self._drop_expired(records)
            if not records:
                continue
            failed = self._invoke(records)
            if failed is None:
                continue
            bisect = self.source.bisect_batch_on_function_error and failed.function_error
            if bisect and len(records) > 1:
                half = len(records) // 2
                segments.appendleft((records[half:], retries))
                segments.appendleft((records[:half], retries))
                self._count("bisections", 1)
                continue
            remaining = records[failed.retry_from :]
            retries += 1
            if retries > self._max_retries:
                self._drop(remaining, f"still failing after {self._max_retries} retries")
                continue
            self._count("retries", 1)
            delay = min(self._max_backoff, self._backoff * 2 ** (retries - 1))
            if self._stop.wait(delay):
                return
            segments.appendleft((remaining, retries))

    def _invoke(self, records: list[Record]) -> _Failed | None:
        """One invocation with `records`; None if the whole batch succeeded."""
        self._count("batches", 1)
        self._count("records", len(records))
        try:
            response = self._functions.invoke(
                self.source.function,
                {"Records": records},
                summary=lambda result: _summary(records, result),
            )
        except FunctionError:
            return _Failed(0, function_error=True)  # the host's listener has reported it
        except Exception as exc:  # the function could not even be loaded
            log.error("%s: cannot invoke: %s", self.source.function, exc)
            return _Failed(0, function_error=True)
        if not self.source.report_batch_item_failures:
            return None
        return self._reported_failure(response, records)

    def _reported_failure(self, response: Any, records: list[Record]) -> _Failed | None:
        """Read a partial batch response the way Lambda does."""
        if response is None:
            return None
        failures = response.get("batchItemFailures") if isinstance(response, dict) else response
        if failures is None or failures == []:
            return None
        if not isinstance(response, dict) or not isinstance(failures, list):
            return self._whole_batch_failed(f"returned {response!r}, not batchItemFailures")
        positions = {record["dynamodb"]["SequenceNumber"]: i for i, record in enumerate(records)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(identifier, str) or identifier not in positions:
                return self._whole_batch_failed(
                    f"itemIdentifier {identifier!r} is not a SequenceNumber of this batch"
                )
            indexes.append(positions[identifier])
        return _Failed(min(indexes), function_error=False)

    def _whole_batch_failed(self, reason: str) -> _Failed:
        log.warning("%s: %s: the whole batch failed", self.source.function, reason)
        return _Failed(0, function_error=False)

    def _drop_expired(self, records: list[Record]) -> list[Record]:
        """The records not older than MaximumRecordAgeInSeconds; the others are dropped."""
        max_age = self.source.maximum_record_age_seconds
        if max_age < 0:
            return records
        now = time.time()
        fresh: list[Record] = []
        expired: list[Record] = []
        for record in records:
            created = record["dynamodb"].get("ApproximateCreationDateTime", now)
            (expired if now - created > max_age else fresh).append(record)
        if expired:
            self._drop(expired, f"older than MaximumRecordAgeInSeconds ({max_age} s)")
        return fresh

    def _drop(self, records: list[Record], reason: str) -> None:
        self._count("dropped", len(records))
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        log.warning(
            "%s: skipped %d stream record(s) %s..%s: %s (no OnFailure destination locally)",
            self.source.function,
            len(records),
            first["SequenceNumber"],
            last["SequenceNumber"],
            reason,
        )


def _summary(records: list[Record], result: Any) -> str:
    """The console line for one invocation."""
    text = f"{len(records)} stream record{'s' if len(records) != 1 else ''}"
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if isinstance(failures, list) and failures:
        text += f", {len(failures)} reported failed"
    return text
