"""Feed a DynamoDB stream to a function the way Lambda's event source mapping does.

What is mirrored (AWS Lambda developer guide: "Lambda parameters for Amazon DynamoDB event
source mappings", "Configuring partial batch response with DynamoDB and Lambda", "Retaining
discarded records for a DynamoDB event source", "Using event filtering with a DynamoDB event
source"):

- One reader per shard, records handed over in stream order; the shard waits while its
  batch is being processed or retried. Shards that appear later are read from their start.
- A shard read to its end is read again no sooner than `poll_interval_seconds` (0.25 s)
  after that read began: "Lambda polls shards in your DynamoDB stream for records at a base
  rate of 4 times per second" (Lambda developer guide, "Using AWS Lambda with Amazon
  DynamoDB"), so what is written meanwhile goes out in one batch, not one per write. A read
  that filled a batch (more may wait) is followed at once.
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

The poller (this module) reads shards and gathers batches; `stream_records` shapes each
record as Lambda hands it over, `stream_filters` applies FilterCriteria, `stream_delivery`
invokes the function with Lambda's retry policy and `stream_checkpoints` tracks what every
poller of a shard has handled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

from mqless_cli.cfn import StreamSource
from mqless_cli.local.functions import FunctionHost
from mqless_cli.local.moto_fixes import STREAM_WRITES, discard_shard_iterator
from mqless_cli.local.stream_checkpoints import CHECKPOINTS
from mqless_cli.local.stream_delivery import BatchDelivery, PollerStats
from mqless_cli.local.stream_filters import raw_filter
from mqless_cli.local.stream_records import Record

__all__ = ["DEV_RETRY_CAP", "PollerStats", "StreamPoller"]


log = logging.getLogger(__name__)

DEV_RETRY_CAP = 10
"""Retries allowed locally where the template says -1 (retry until the record expires)."""

_GET_RECORDS_LIMIT = 1000  # the DynamoDB Streams maximum
_FIRST_IDLE_WAIT = 0.005  # the idle backoff starts here and doubles up to idle_poll_seconds
_WINDOW_POLL = 0.01  # how often to look for more records while a batching window is open
POLL_INTERVAL_SECONDS = 0.25
"""Lambda's base polling rate of a DynamoDB stream shard: 4 times a second."""
_QUIET_READ_SECONDS = 1.0
"""With moto's stream writes announced (`STREAM_WRITES`), a shard read to its end is read
again when a record is written, and at least this often (a shard closing writes nothing)."""


@dataclass
class _ShardRead:
    """Where the reading of one shard stands."""

    shard_id: str
    iterator: str | None
    """The next read's iterator; None once the shard is closed and read to its end."""
    pending: deque[Record] = field(default_factory=deque)
    """Records read and not handed over yet."""
    last_sequence: str | None = None
    """The SequenceNumber of the last record read."""
    gathering_since: float = 0.0
    """When the batch being gathered got its first record (for the batching window)."""
    idle_wait: float = 0.0
    """How long the last idle round waited (it doubles up to the idle poll)."""
    written_seen: int = -1
    """`STREAM_WRITES.count` when the last read began."""
    read_to_end: bool = False
    """Whether the last read reached the shard's end: with nothing written since, another
    read would find nothing."""
    last_read: float = 0.0
    """When the last read began (monotonic)."""


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
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        """`discard_handled`: drop from the stream what this poller (and every other one of
        the shard, see `StreamCheckpoints`) has handled; only where they are its only readers.
        `poll_interval_seconds`: the least time between the start of a read that reached
        the shard's end and the next read of it (Lambda's base rate, above).
        """
        self.source = source
        self._client = streams_client
        self._idle_poll = idle_poll_seconds
        self._poll_interval = poll_interval_seconds
        self._discovery_every = shard_discovery_seconds
        self._dev_retry_cap = dev_retry_cap
        self._accept = raw_filter(source.filter_patterns, source.stream_arn, region)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((stat.name for stat in fields(PollerStats)), 0)
        self._shards: dict[str, threading.Thread] = {}
        self._closed: set[str] = set()
        self._supervisor: threading.Thread | None = None
        self._describe_failing = False
        self._discard_handled = discard_handled
        self._delivery = BatchDelivery(
            source,
            functions,
            stop=self._stop,
            count=self._count,
            max_retries=(
                source.maximum_retry_attempts
                if source.maximum_retry_attempts >= 0
                else dev_retry_cap
            ),
            backoff_seconds=retry_backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )

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
        shard = _ShardRead(shard_id, iterator)
        batch_size = max(1, self.source.batch_size)
        window = max(0, self.source.maximum_batching_window_seconds)
        if self._discard_handled:
            CHECKPOINTS.join(self._arn, shard_id, id(self))
        try:
            while not self._stop.is_set():
                if len(shard.pending) < batch_size and not self._read_more(shard):
                    continue
                if not shard.pending:
                    if self._idle(shard):
                        return  # the shard is closed and everything in it was handled
                    continue
                shard.idle_wait = 0.0  # records are flowing: poll again at once
                if (
                    len(shard.pending) < batch_size
                    and shard.iterator is not None
                    and time.monotonic() - shard.gathering_since < window
                ):
                    self._stop.wait(_WINDOW_POLL)
                    continue
                self._hand_over(shard, batch_size)
        finally:
            if self._discard_handled:
                CHECKPOINTS.leave(self._arn, shard_id, id(self))
            with self._lock:
                self._closed.add(shard_id)

    def _read_more(self, shard: _ShardRead) -> bool:
        """Read the shard's next records into `pending` (those no filter matches are counted
        and left out); False if the round must start over: nothing was written since the
        shard was read to its end, or the read failed (and the iterator was reopened)."""
        iterator = shard.iterator
        if iterator is None:
            return True  # closed and read to its end: hand over what is pending
        if shard.read_to_end:
            early = shard.last_read + self._poll_interval - time.monotonic()
            if early > 0:  # Lambda's base rate: what is written meanwhile waits for the read
                if shard.pending:
                    return True  # a batching window gathers: it hands over what it has
                self._stop.wait(early)
                return False
        if (
            not shard.pending
            and shard.read_to_end
            and self._nothing_written(shard.written_seen, shard.last_read)
        ):
            return False
        was_empty = not shard.pending
        shard.written_seen, shard.last_read = STREAM_WRITES.count, time.monotonic()
        try:
            raw, shard.iterator = self._get_records(iterator)
        except Exception as exc:
            log.warning("%s: reading %s failed: %s", self.source.function, shard.shard_id, exc)
            self._stop.wait(self._idle_poll)
            shard.iterator = self._reopen(shard.shard_id, shard.last_sequence)
            return False
        shard.read_to_end = STREAM_WRITES.active and len(raw) < self._read_limit
        for item in raw:
            shard.last_sequence = item["dynamodb"]["SequenceNumber"]
            record = self._accept(item)
            if record is not None:
                shard.pending.append(record)
            else:
                self._count("filtered")
        if was_empty and shard.pending:
            shard.gathering_since = time.monotonic()
        return True

    def _idle(self, shard: _ShardRead) -> bool:
        """Nothing to hand over: checkpoint what was read, then wait before reading again;
        True if the shard is closed and everything in it was handled."""
        if shard.last_sequence is not None:
            self._handled(shard.shard_id, shard.last_sequence)  # filtered ones included
        if shard.iterator is None:
            return True
        if shard.read_to_end:
            return False  # the next round waits for a write (`_nothing_written`)
        shard.idle_wait = min(self._idle_poll, max(shard.idle_wait * 2, _FIRST_IDLE_WAIT))
        self._stop.wait(shard.idle_wait)
        return False

    def _hand_over(self, shard: _ShardRead, batch_size: int) -> None:
        """Deliver the next batch of pending records, then checkpoint what is done."""
        pending = shard.pending
        batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
        self._deliver(batch)
        shard.gathering_since = time.monotonic()
        if not self._stop.is_set():  # stopped midway: the batch may not be done
            done = shard.last_sequence if not pending else batch[-1]["dynamodb"]["SequenceNumber"]
            if done is not None:
                self._handled(shard.shard_id, done)

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
        self._delivery.deliver(batch)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount
