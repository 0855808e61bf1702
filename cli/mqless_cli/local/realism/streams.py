"""Streams as DynamoDB Streams and Lambda run them: shards that roll over, and a poller that
reads each shard at most 4 times a second and now and then hands a batch over twice."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.realism.settings import Realism, RealismReport
from mqless_cli.local.stream_records import Record
from mqless_cli.local.streams import StreamPoller

log = logging.getLogger(__name__)


class ShardRoller:
    """Closes each stream's open shard and opens a child every `every_s` seconds, as
    DynamoDB Streams does; DescribeStream lists closed shards with their ending sequence
    number and the child with its parent, and a closed shard's iterator ends once read."""

    def __init__(self, every_s: float, report: RealismReport | None = None) -> None:
        self._every = every_s
        self._report = report or RealismReport()
        self._closed: dict[str, list[Any]] = {}  # table ARN -> closed shards, oldest first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stack = ExitStack()
        self.rolls = 0

    def start(self) -> None:
        from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

        self._stack.enter_context(
            _patched(DynamoDBStreamsBackend, "describe_stream", self._describe_stream)
        )
        self._stack.enter_context(
            _patched(DynamoDBStreamsBackend, "get_shard_iterator", self._get_shard_iterator)
        )
        self._stack.enter_context(_patched(ShardIterator, "get", self._iterator_get))
        self._thread = threading.Thread(target=self._run, name="realism-shards", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stack.close()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.roll()
            except Exception:
                log.exception("realism: rolling stream shards failed")

    def roll(self) -> int:
        """Close every open shard and open its child now; how many were rolled."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.models.table import StreamShard

        from mqless_cli.local.moto_fixes import REQUEST_LOCK

        rolled = 0
        with REQUEST_LOCK.lock:  # no write may append to a shard while it closes
            for account in list(dynamodb_backends.keys()):
                for backend in list(dynamodb_backends[account].values()):
                    for table in list(backend.tables.values()):
                        parent = table.stream_shard
                        if parent is None:
                            continue
                        end = int(parent.starting_sequence_number) + len(parent.items)
                        setattr(parent, "realism_ending", end - 1)  # noqa: B010
                        child = StreamShard(parent.account_id, table)
                        child.id = f"shardId-{int(time.time() * 1000):020d}-{self.rolls:08x}"
                        child.starting_sequence_number = end + 1
                        setattr(child, "realism_parent", parent.id)  # noqa: B010
                        table.stream_shard = child
                        self._closed.setdefault(table.table_arn, []).append(parent)
                        rolled += 1
            self.rolls += 1
        self._report.count("shards_rolled", rolled)
        return rolled

    def _shards(self, table: Any) -> list[Any]:
        current = [table.stream_shard] if table.stream_shard is not None else []
        return [*self._closed.get(table.table_arn, []), *current]

    def _describe_stream(self, backend: Any, arn: str) -> dict[str, Any]:
        table = backend._get_table_from_arn(arn)
        described: dict[str, Any] = self._originals["describe_stream"](backend, arn)
        shards = []
        for shard in self._shards(table):
            entry = shard.to_json()
            ending = getattr(shard, "realism_ending", None)
            if ending is not None:
                entry["SequenceNumberRange"]["EndingSequenceNumber"] = str(ending)
            parent = getattr(shard, "realism_parent", None)
            if parent is not None:
                entry["ParentShardId"] = parent
            shards.append(entry)
        described["Shards"] = shards
        return described

    def _get_shard_iterator(
        self,
        backend: Any,
        arn: str,
        shard_id: str,
        shard_iterator_type: str,
        sequence_number: str | None = None,
    ) -> Any:
        from moto.dynamodbstreams.models import ShardIterator

        table = backend._get_table_from_arn(arn)
        for shard in self._shards(table):
            if shard.id == shard_id:
                iterator = ShardIterator(
                    backend,
                    shard,
                    shard_iterator_type,
                    None if sequence_number is None else int(sequence_number),
                )
                backend.shard_iterators[iterator.arn] = iterator
                return iterator
        from moto.core.exceptions import JsonRESTError

        raise JsonRESTError(
            "ResourceNotFoundException", f"Requested resource not found: {shard_id}"
        )

    def _iterator_get(self, iterator: Any, limit: int = 1000) -> dict[str, Any]:
        answer: dict[str, Any] = self._originals["get"](iterator, limit)
        ending = getattr(iterator.stream_shard, "realism_ending", None)
        if ending is not None and not answer["Records"] and iterator.sequence_number > ending:
            answer.pop("NextShardIterator", None)  # a closed shard, read to its end
        return answer

    @property
    def _originals(self) -> dict[str, Any]:
        return _ORIGINALS


_ORIGINALS: dict[str, Any] = {}


@contextmanager
def _patched(owner: Any, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    original = getattr(owner, name)
    _ORIGINALS[name] = original

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return replacement(self, *args, **kwargs)

    setattr(owner, name, method)
    try:
        yield
    finally:
        setattr(owner, name, original)


# ---- the stream -> Lambda side ------------------------------------------------------------


class RealisticStreamPoller(StreamPoller):
    """A stream poller that reads each shard at most every `stream_poll_ms` and hands a batch
    over again now and then after it succeeded (at-least-once)."""

    def __init__(self, *args: Any, realism: Realism, report: RealismReport, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poll_every = realism.stream_poll_ms / 1000
        self._redelivery = realism.stream_redelivery
        self._report = report
        self._draw = random.Random(realism.seed)
        self._last_read: dict[int, float] = {}

    def _get_records(self, iterator: str) -> tuple[list[dict[str, Any]], str | None]:
        thread = threading.get_ident()
        last = self._last_read.get(thread)
        if last is not None and self._poll_every:
            wait = last + self._poll_every - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
        self._last_read[thread] = time.monotonic()
        return super()._get_records(iterator)

    def _deliver(self, batch: list[Record]) -> None:
        super()._deliver(batch)
        if self._redelivery and self._draw.random() < self._redelivery:
            self._report.count("stream_redelivered", len(batch))
            super()._deliver(batch)


def stream_poller_factory(realism: Realism, report: RealismReport) -> Callable[..., StreamPoller]:
    """What makes a stream poller under `realism`."""
    if not realism.stream_poll_ms and not realism.stream_redelivery:
        return StreamPoller

    def make(*args: Any, **kwargs: Any) -> StreamPoller:
        return RealisticStreamPoller(*args, realism=realism, report=report, **kwargs)

    return make
