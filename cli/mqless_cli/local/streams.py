"""Feed a DynamoDB stream to a function the way Lambda's event source mapping does.

What is mirrored (AWS Lambda developer guide: "Lambda parameters for Amazon DynamoDB event
source mappings", "Configuring partial batch response with DynamoDB and Lambda", "Retaining
discarded records for a DynamoDB event source", "Using event filtering with a DynamoDB event
source"):

- One reader per shard, records handed over in stream order; the shard waits while its
  batch is being processed or retried. Shards that appear later are read from their start.
- Batches of up to BatchSize records. With MaximumBatchingWindowInSeconds 0 a batch goes
  out as soon as records are there; otherwise records are gathered until the batch is
  full or the window has passed.
- The event is ``{"Records": [...]}``: each record as DynamoDB Streams gives it, with
  ``eventVersion`` "1.1", ``awsRegion``, ``ApproximateCreationDateTime`` in epoch seconds,
  binary attributes in base64, and the ``eventSourceARN`` that moto leaves out.
- FilterCriteria: a record is delivered if any filter matches it; the others are skipped
  for good. Supported: exact values, ``prefix``, ``suffix``, ``equals-ignore-case``,
  ``anything-but``, ``numeric`` and ``exists``. A filter using anything else is logged and
  treated as matching everything (so nothing is lost locally that AWS would deliver).
- Success is a return without error, and (with ReportBatchItemFailures) a response whose
  ``batchItemFailures`` is absent, null or empty. Listed failures checkpoint before the
  lowest failed SequenceNumber and only the records from there on are retried. An empty,
  null or unknown ``itemIdentifier``, or a response of another shape, fails the whole batch.
  Without ReportBatchItemFailures the response is ignored.
- A function error fails the whole batch. BisectBatchOnFunctionError splits a failed batch
  in two (the halves in order) without using up retries; a single record is retried.
- After MaximumRetryAttempts retries, or once a record is older than
  MaximumRecordAgeInSeconds, the records are skipped and logged (an OnFailure destination
  is not written locally) and the shard moves on. MaximumRetryAttempts -1 means "until the
  record expires" (24 hours on AWS): locally it is capped at ``dev_retry_cap`` retries.
- Not mirrored: ParallelizationFactor (one batch per shard at a time), tumbling windows,
  the 6 MB invocation payload limit, Lambda's own retry backoff (here: exponential from
  ``retry_backoff_seconds``).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

from mqless_cli.cfn import StreamSource
from mqless_cli.local.functions import FunctionError, FunctionHost
from mqless_cli.local.moto_fixes import (
    STREAM_WRITES,
    discard_shard_iterator,
    discard_stream_records,
)

__all__ = [
    "CHECKPOINTS",
    "DEV_RETRY_CAP",
    "PollerStats",
    "StreamCheckpoints",
    "StreamPoller",
    "lambda_record",
    "record_filter",
]

log = logging.getLogger(__name__)

DEV_RETRY_CAP = 10
"""Retries allowed locally where the template says -1 (retry until the record expires)."""

_GET_RECORDS_LIMIT = 1000  # the DynamoDB Streams maximum
_FIRST_IDLE_WAIT = 0.005  # the idle backoff starts here and doubles up to idle_poll_seconds
_WINDOW_POLL = 0.01  # how often to look for more records while a batching window is open
_QUIET_READ_SECONDS = 1.0
"""With moto's stream writes announced (`STREAM_WRITES`), a shard read to its end is read
again when a record is written, and at least this often (a shard closing writes nothing)."""

Record = dict[str, Any]


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


class StreamCheckpoints:
    """How far each local poller of a shard has handled its records; what all of them have
    handled is dropped from the (moto) stream.

    DynamoDB keeps records 24 hours for any reader. Under `mqless dev` the pollers are a
    stream's only readers (moto lives inside the process), so a record every one of them
    has handled can never be read again: keeping it for a day would make memory grow with
    every write (and every full garbage collection slower).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._positions: dict[tuple[str, str], dict[int, int | None]] = {}

    def join(self, stream_arn: str, shard_id: str, reader: int) -> None:
        """A reader starts on a shard (nothing handled yet: nothing is dropped meanwhile)."""
        with self._lock:
            self._positions.setdefault((stream_arn, shard_id), {})[reader] = None

    def leave(self, stream_arn: str, shard_id: str, reader: int) -> None:
        with self._lock:
            readers = self._positions.get((stream_arn, shard_id), {})
            readers.pop(reader, None)
            if not readers:
                self._positions.pop((stream_arn, shard_id), None)

    def handled(self, stream_arn: str, shard_id: str, reader: int, sequence: str) -> None:
        """`reader` is done with every record up to `sequence`."""
        with self._lock:
            readers = self._positions.get((stream_arn, shard_id))
            if readers is None or reader not in readers:
                return
            readers[reader] = int(sequence)
            positions = [p for p in readers.values() if p is not None]
            everyone = len(positions) == len(readers)
        if everyone:
            discard_stream_records(stream_arn, shard_id, min(positions))


CHECKPOINTS = StreamCheckpoints()
"""The checkpoints of every poller of this process."""


class _Failed(NamedTuple):
    """How an invocation failed: retry from this index; raised or reported."""

    retry_from: int
    function_error: bool


class StreamPoller:
    """Reads one DynamoDB stream and invokes one function with Lambda's batch semantics."""

    def __init__(
        self,
        source: StreamSource,
        functions: FunctionHost,
        streams_client: Any,
        *,
        region: str,
        idle_poll_seconds: float = 0.05,
        retry_backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 2.0,
        dev_retry_cap: int = DEV_RETRY_CAP,
        shard_discovery_seconds: float = 2.0,
        discard_handled: bool = False,
    ) -> None:
        """`discard_handled`: drop from the stream what this poller (and every other one of
        the shard, see `StreamCheckpoints`) has handled; only where they are its only readers.
        """
        self.source = source
        self._functions = functions
        self._client = streams_client
        self._region = region
        self._idle_poll = idle_poll_seconds
        self._backoff = retry_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._discovery_every = shard_discovery_seconds
        self._max_retries = (
            source.maximum_retry_attempts if source.maximum_retry_attempts >= 0 else dev_retry_cap
        )
        self._dev_retry_cap = dev_retry_cap
        self._matches = record_filter(source.filter_patterns)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((field.name for field in fields(PollerStats)), 0)
        self._shards: dict[str, threading.Thread] = {}
        self._closed: set[str] = set()
        self._supervisor: threading.Thread | None = None
        self._describe_failing = False
        self._discard_handled = discard_handled

    @property
    def stats(self) -> PollerStats:
        """A snapshot of the counters."""
        with self._lock:
            return PollerStats(**self._counts)

    def start(self) -> None:
        """Start reading: one daemon thread per shard, and one that looks for new shards."""
        if self._supervisor is not None:
            raise RuntimeError("this poller has already been started")
        name = f"{self.source.function} <- {self.source.table or self.source.stream_arn}"
        if not self.source.enabled:
            log.info("%s: event source mapping disabled in the template; not polling", name)
            return
        if self.source.maximum_retry_attempts < 0:
            log.info(
                "%s: MaximumRetryAttempts -1 retries until the record expires (24 h on AWS); "
                "locally capped at %d retries",
                name,
                self._dev_retry_cap,
            )
        if self.source.parallelization_factor > 1:
            log.info(
                "%s: ParallelizationFactor %d is run as 1 locally (one batch per shard at a time)",
                name,
                self.source.parallelization_factor,
            )
        # Discover synchronously so that a LATEST position is fixed before start() returns.
        self._discover(self.source.starting_position)
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"stream-poller {name}", daemon=True
        )
        self._supervisor.start()

    def stop(self) -> None:
        """Stop reading and wait for the threads (an invocation under way is let finish)."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5.0)
        for thread in [self._supervisor, *list(self._shards.values())]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5.0)
                if thread.is_alive():
                    log.warning("%s did not stop within 5 s", thread.name)

    # -- shards ------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(self._discovery_every):
            self._discover("TRIM_HORIZON")

    def _discover(self, position: str) -> None:
        """Start a reader for every shard not yet read whose parent (if any) is done."""
        try:
            shards = self._describe_shards()
        except Exception as exc:  # the stream may come and go with its table
            if not self._describe_failing:
                log.warning("%s: cannot describe %s: %s", self.source.function, self._arn, exc)
            self._describe_failing = True
            return
        self._describe_failing = False
        known = set(self._shards)
        for shard in shards:
            shard_id = shard["ShardId"]
            parent = shard.get("ParentShardId")
            if shard_id in self._shards or (parent in known and parent not in self._closed):
                continue
            try:
                iterator = self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType=position
                )["ShardIterator"]
            except Exception as exc:
                log.warning("%s: no iterator for %s: %s", self.source.function, shard_id, exc)
                continue
            thread = threading.Thread(
                target=self._read_shard,
                args=(shard_id, iterator),
                name=f"stream-shard {self.source.function} {shard_id}",
                daemon=True,
            )
            self._shards[shard_id] = thread
            thread.start()

    def _describe_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamArn": self._arn}
        while True:
            description = self._client.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs["ExclusiveStartShardId"] = last

    @property
    def _arn(self) -> str:
        return self.source.stream_arn

    def _read_shard(self, shard_id: str, iterator: str | None) -> None:
        """Read one shard in order, handing batches to the function until stopped or closed."""
        pending: deque[Record] = deque()
        last_sequence: str | None = None
        gathering_since = 0.0
        idle_wait = 0.0
        batch_size = max(1, self.source.batch_size)
        window = max(0, self.source.maximum_batching_window_seconds)
        if self._discard_handled:
            CHECKPOINTS.join(self._arn, shard_id, id(self))
        # what was written to streams when the last read began, and whether it read to the
        # shard's end: with nothing written since, another read would find nothing
        written_seen, read_to_end, last_read = -1, False, 0.0
        try:
            while not self._stop.is_set():
                if iterator is not None and len(pending) < batch_size:
                    if (
                        not pending
                        and read_to_end
                        and self._nothing_written(written_seen, last_read)
                    ):
                        continue
                    was_empty = not pending
                    written_seen, last_read = STREAM_WRITES.count, time.monotonic()
                    try:
                        raw, iterator = self._get_records(iterator)
                    except Exception as exc:
                        log.warning(
                            "%s: reading %s failed: %s", self.source.function, shard_id, exc
                        )
                        self._stop.wait(self._idle_poll)
                        iterator = self._reopen(shard_id, last_sequence)
                        continue
                    read_to_end = STREAM_WRITES.active and len(raw) < self._read_limit
                    for item in raw:
                        last_sequence = item["dynamodb"]["SequenceNumber"]
                        record = lambda_record(item, stream_arn=self._arn, region=self._region)
                        if self._matches(record):
                            pending.append(record)
                        else:
                            self._count("filtered")
                    if was_empty and pending:
                        gathering_since = time.monotonic()
                if not pending:
                    if last_sequence is not None:
                        self._handled(shard_id, last_sequence)  # filtered ones included
                    if iterator is None:
                        return  # the shard is closed and everything in it was handled
                    if read_to_end:
                        continue  # the next round waits for a write (`_nothing_written`)
                    idle_wait = min(self._idle_poll, max(idle_wait * 2, _FIRST_IDLE_WAIT))
                    self._stop.wait(idle_wait)
                    continue
                idle_wait = 0.0  # records are flowing: poll again at once
                if (
                    len(pending) < batch_size
                    and iterator is not None
                    and time.monotonic() - gathering_since < window
                ):
                    self._stop.wait(_WINDOW_POLL)
                    continue
                batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                self._deliver(batch)
                gathering_since = time.monotonic()
                if not self._stop.is_set():  # stopped midway: the batch may not be done
                    done = last_sequence if not pending else batch[-1]["dynamodb"]["SequenceNumber"]
                    if done is not None:
                        self._handled(shard_id, done)
        finally:
            if self._discard_handled:
                CHECKPOINTS.leave(self._arn, shard_id, id(self))
            with self._lock:
                self._closed.add(shard_id)

    @property
    def _read_limit(self) -> int:
        return min(_GET_RECORDS_LIMIT, self.source.batch_size)

    def _nothing_written(self, seen: int, last_read: float) -> bool:
        """Wait (up to the idle poll) for a stream record written since `seen`; whether
        there is still none, and a read is not due anyway (`_QUIET_READ_SECONDS`)."""
        if STREAM_WRITES.count != seen or time.monotonic() - last_read >= _QUIET_READ_SECONDS:
            return False
        return not STREAM_WRITES.wait_after(seen, self._idle_poll) and (
            time.monotonic() - last_read < _QUIET_READ_SECONDS
        )

    def _handled(self, shard_id: str, sequence: str) -> None:
        if self._discard_handled:
            CHECKPOINTS.handled(self._arn, shard_id, id(self), sequence)

    def _get_records(self, iterator: str) -> tuple[list[dict[str, Any]], str | None]:
        response = self._client.get_records(ShardIterator=iterator, Limit=self._read_limit)
        discard_shard_iterator(self._arn, iterator)
        return response.get("Records", []), response.get("NextShardIterator")

    def _reopen(self, shard_id: str, last_sequence: str | None) -> str | None:
        """A fresh iterator just after the last record read (the old one failed)."""
        kwargs: dict[str, Any] = {"StreamArn": self._arn, "ShardId": shard_id}
        if last_sequence is None:
            kwargs["ShardIteratorType"] = self.source.starting_position
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = last_sequence
        warned = False
        while not self._stop.is_set():
            try:
                return str(self._client.get_shard_iterator(**kwargs)["ShardIterator"])
            except Exception as exc:
                if not warned:
                    log.warning("%s: cannot reopen %s: %s", self.source.function, shard_id, exc)
                    warned = True
                self._stop.wait(1.0)
        return None

    # -- delivery ----------------------------------------------------------------------

    def _deliver(self, batch: list[Record]) -> None:
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
                self._count("bisections")
                continue
            remaining = records[failed.retry_from :]
            retries += 1
            if retries > self._max_retries:
                self._drop(remaining, f"still failing after {self._max_retries} retries")
                continue
            self._count("retries")
            delay = min(self._max_backoff, self._backoff * 2 ** (retries - 1))
            if self._stop.wait(delay):
                return
            segments.appendleft((remaining, retries))

    def _invoke(self, records: list[Record]) -> _Failed | None:
        """One invocation with `records`; None if the whole batch succeeded."""
        self._count("batches")
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

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount


def _summary(records: list[Record], result: Any) -> str:
    """The console line for one invocation."""
    text = f"{len(records)} stream record{'s' if len(records) != 1 else ''}"
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if isinstance(failures, list) and failures:
        text += f", {len(failures)} reported failed"
    return text


# --- the record Lambda hands over ---------------------------------------------------------


def lambda_record(raw: Mapping[str, Any], *, stream_arn: str, region: str) -> Record:
    """A DynamoDB Streams record (as boto3 parses it) in the shape Lambda delivers it."""
    wire = {key: _wire(value) for key, value in raw.items()}
    record: Record = {
        "eventID": wire.pop("eventID", None),
        "eventName": wire.pop("eventName", None),
        "eventVersion": "1.1",
        "eventSource": wire.pop("eventSource", "aws:dynamodb"),
        "awsRegion": region,
        "dynamodb": wire.pop("dynamodb", {}),
    }
    wire.pop("eventVersion", None)
    wire.pop("awsRegion", None)
    record.update(wire)  # userIdentity (TTL deletes) and anything else the stream gives
    record["eventSourceARN"] = stream_arn
    return record


def _wire(value: Any) -> Any:
    """boto3's parsed values back to JSON: epoch seconds for times, base64 for binary."""
    if isinstance(value, datetime):
        return float(int(value.timestamp()))  # DynamoDB Streams rounds down to the second
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_wire(item) for item in value]
    return value


# --- FilterCriteria ------------------------------------------------------------------------

Matcher = Callable[[Record], bool]


class _Unsupported(Exception):
    """A filter pattern uses syntax this local runtime does not evaluate."""


def record_filter(patterns: Iterable[str]) -> Matcher:
    """A predicate for FilterCriteria patterns: true if any pattern matches (or none given)."""
    matchers: list[Matcher] = []
    for text in patterns:
        try:
            pattern = json.loads(text)
            if not isinstance(pattern, dict):
                raise _Unsupported("a pattern must be a JSON object")
            _check(pattern)
        except (ValueError, _Unsupported) as exc:
            log.warning(
                "filter pattern %s is not evaluated locally (%s): it matches every record",
                text,
                exc,
            )
            return lambda record: True
        matchers.append(functools.partial(_matches, pattern))
    if not matchers:
        return lambda record: True
    return lambda record: any(match(record) for match in matchers)


_OPERATORS = {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists"}


def _check(pattern: dict[str, Any]) -> None:
    """Raise _Unsupported for any syntax `_matches` does not implement."""
    for key, value in pattern.items():
        if key.startswith("$"):
            raise _Unsupported(f"{key} is not supported")
        if isinstance(value, dict):
            _check(value)
        elif isinstance(value, list):
            for rule in value:
                if isinstance(rule, dict):
                    unknown = set(rule) - _OPERATORS
                    if unknown or len(rule) != 1:
                        raise _Unsupported(f"operator {sorted(rule)} is not supported")
                    if "numeric" in rule:
                        _numeric_pairs(rule["numeric"])
                elif isinstance(rule, list):
                    raise _Unsupported("nested lists are not a pattern")
        else:
            raise _Unsupported(f"{key}: values must be in a list or a nested object")


def _matches(pattern: dict[str, Any], event: Any) -> bool:
    for key, rules in pattern.items():
        present = isinstance(event, dict) and key in event
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(rules, dict):
            if not present or not _matches(rules, value):
                return False
            continue
        candidates = value if isinstance(value, list) else [value]
        if not any(_rule(rule, item, present) for rule in rules for item in candidates or [None]):
            return False
    return True


def _rule(rule: Any, value: Any, present: bool) -> bool:
    """Does one rule of a pattern's list accept `value` (absent when not `present`)?"""
    if not isinstance(rule, dict):
        if not present:
            return False
        if _is_number(rule) and _is_number(value):
            return float(rule) == float(value)
        return bool(rule == value and type(rule) is type(value))
    ((operator, operand),) = rule.items()
    if operator == "exists":
        return bool(operand) == present
    if not present:
        return False
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(operand)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(operand).lower()
    if operator == "anything-but":
        if isinstance(operand, dict):
            return not _rule(operand, value, present)
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(_rule(item, value, present) for item in excluded)
    if operator == "numeric":
        # As in EventBridge patterns, only JSON numbers compare: DynamoDB's {"N": "5"} is a string.
        if not _is_number(value):
            return False
        return all(_COMPARE[op](float(value), bound) for op, bound in _numeric_pairs(operand))
    return False


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _numeric_pairs(operand: Any) -> list[tuple[str, float]]:
    if not isinstance(operand, list) or len(operand) % 2 or not operand:
        raise _Unsupported(f"numeric {operand!r} is not [op, value, ...]")
    pairs = list(zip(operand[::2], operand[1::2], strict=True))
    for op, bound in pairs:
        if op not in _COMPARE or not _is_number(bound):
            raise _Unsupported(f"numeric {operand!r} is not [op, value, ...]")
    return [(op, float(bound)) for op, bound in pairs]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
