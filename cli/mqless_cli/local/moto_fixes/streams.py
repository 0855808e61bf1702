"""The fixes of DynamoDB Streams (one record per creating update, 24-hour retention, expiring
shard iterators), the hook that announces stream writes, and the local runtime's shortcuts
that discard shard iterators and handled records."""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

from mqless_cli.local.moto_fixes.items import key_of, stored
from mqless_cli.local.moto_fixes.locking import REQUEST_LOCK
from mqless_cli.local.moto_fixes.patching import patched

STREAM_RETENTION = timedelta(hours=24)
"""How long DynamoDB Streams keeps a record."""
SHARD_ITERATOR_LIFETIME = timedelta(minutes=15)
"""How long a DynamoDB Streams shard iterator stays valid after GetShardIterator/GetRecords."""
_HOUSEKEEPING_SECONDS = 60.0  # trim streams and iterators at most this often


_creating = threading.local()


@contextmanager
def updates_that_create_write_one_record() -> Iterator[None]:
    """An UpdateItem that creates its item writes one INSERT stream record, not two.

    Upstream behaviour: `DynamoDBBackend.update_item` creates a missing item by calling
    `table.put_item` with its key attributes (a stream record: INSERT with the keys alone),
    applies the update, then adds its own record (a second INSERT, with the new image).
    DynamoDB writes one INSERT with the item as the update left it; a stream reader (a
    Lambda trigger) would otherwise handle every upsert twice.

    Here the record of that inner key-only put is not written; moto's own record of the
    update (old image none, new image complete) is the one INSERT.
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard

    original_update, original_add = DynamoDBBackend.update_item, StreamShard.add

    def update_item(self: DynamoDBBackend, table_name: str, key: Any, *args: Any, **kw: Any) -> Any:
        table = self.tables.get(table_name)
        found = key_of(table, key) if table is not None else None
        creating = found is not None and stored(table, *found) is None
        outer = getattr(_creating, "table", None)
        _creating.table = table if creating else None
        try:
            return original_update(self, table_name, key, *args, **kw)
        finally:
            _creating.table = outer

    def add(self: StreamShard, old: Any, new: Any) -> None:
        if old is None and getattr(_creating, "table", None) is self.table:
            _creating.table = None  # the key-only put; the update's own record follows
            return
        original_add(self, old, new)

    with ExitStack() as stack:
        stack.enter_context(patched(DynamoDBBackend, "update_item", update_item))
        stack.enter_context(patched(StreamShard, "add", add))
        yield


# ---- streams: 24-hour retention, expiring iterators ----------------------------------------

# shard -> its first sequence number ever (StartingSequenceNumber, which trimming keeps)
_first_sequence: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_last_trim: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


@functools.cache
def _streams_error() -> type[Exception]:
    """A moto service error of DynamoDB Streams (its code names the error shape)."""
    from moto.core.exceptions import ServiceException

    class StreamsError(ServiceException):
        pass

    return StreamsError


def _trimmed_data_access() -> Exception:
    return _streams_error()(
        "TrimmedDataAccessException",
        "The operation attempted to read past the oldest stream record in a shard.",
    )


def _expired_iterator() -> Exception:
    return _streams_error()(
        "ExpiredIteratorException", "The shard iterator has expired and can no longer be used."
    )


def _utcnow() -> Any:
    """moto's clock (looked up on each call, so that tests can move it)."""
    from moto.core import utils

    return utils.utcnow()


def _drop_oldest(shard: Any, count: int) -> int:
    """Drop a shard's `count` oldest records; sequence numbers go on from where they were,
    TRIM_HORIZON becomes the oldest record left, StartingSequenceNumber stays the same."""
    count = min(count, len(shard.items))
    if count > 0:
        _first_sequence.setdefault(shard, int(shard.starting_sequence_number))
        del shard.items[:count]
        shard.starting_sequence_number = int(shard.starting_sequence_number) + count
    return max(count, 0)


def trim_stream(shard: Any) -> int:
    """Drop a shard's records older than STREAM_RETENTION; how many were dropped."""
    cutoff = _utcnow() - STREAM_RETENTION
    records = shard.items
    old = 0
    while (
        old < len(records)
        and records[old].record["dynamodb"]["ApproximateCreationDateTime"] < cutoff
    ):
        old += 1
    return _drop_oldest(shard, old)


@contextmanager
def stream_records_expire() -> Iterator[None]:
    """Trim stream records older than 24 hours, as DynamoDB Streams does.

    Upstream behaviour: `StreamShard.items` keeps every record (with its old and new item
    images) for as long as the table exists, so memory grows with every write ever made.

    Here records older than 24 hours are dropped (checked on a write, at most once a minute:
    DynamoDB too trims "at any moment" after 24 hours). Sequence numbers go on unchanged;
    TRIM_HORIZON starts at the oldest record left; the shard's StartingSequenceNumber stays
    what it was; reading a position already trimmed is a TrimmedDataAccessException.
    """
    from moto.dynamodb.models.table import StreamShard

    original_add, original_get = StreamShard.add, StreamShard.get
    original_to_json = StreamShard.to_json

    def add(self: StreamShard, old: Any, new: Any) -> None:
        original_add(self, old, new)
        now = time.monotonic()
        if now - _last_trim.get(self, -_HOUSEKEEPING_SECONDS) >= _HOUSEKEEPING_SECONDS:
            _last_trim[self] = now
            trim_stream(self)

    def get(self: StreamShard, start: int, quantity: int) -> list[dict[str, Any]]:
        if start < int(self.starting_sequence_number):
            raise _trimmed_data_access()
        result: list[dict[str, Any]] = original_get(self, start, quantity)
        return result

    def to_json(self: StreamShard) -> dict[str, Any]:
        described: dict[str, Any] = original_to_json(self)
        first = _first_sequence.get(self)
        if first is not None:
            described["SequenceNumberRange"]["StartingSequenceNumber"] = str(first)
        return described

    with ExitStack() as stack:
        stack.enter_context(patched(StreamShard, "add", add))
        stack.enter_context(patched(StreamShard, "get", get))
        stack.enter_context(patched(StreamShard, "to_json", to_json))
        yield


_issued: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_last_sweep: dict[int, float] = {}


@contextmanager
def shard_iterators_expire() -> Iterator[None]:
    """Expire shard iterators 15 minutes after they were issued, as DynamoDB Streams does.

    Upstream behaviour: `DynamoDBStreamsBackend.shard_iterators` keeps every iterator ever
    issued (each GetRecords issues the next one; about 1.6 KB each), so a stream reader that
    polls grows memory for ever; an unknown iterator is an internal error (KeyError).

    Here each iterator notes when it was issued; GetRecords with one older than 15 minutes,
    or one the backend does not know, is an ExpiredIteratorException; and iterators past
    their lifetime are swept from the backend (at most once a minute).
    """
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

    original_init = ShardIterator.__init__
    original_get_records = DynamoDBStreamsBackend.get_records

    def init(self: ShardIterator, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _issued[self] = _utcnow()

    def get_records(self: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> Any:
        now = _utcnow()
        clock = time.monotonic()
        last = _last_sweep.get(id(self), -_HOUSEKEEPING_SECONDS)
        if clock - last >= _HOUSEKEEPING_SECONDS:
            _last_sweep[id(self)] = clock
            for arn, issued in list(self.shard_iterators.items()):
                if now - _issued.get(issued, now) > SHARD_ITERATOR_LIFETIME:
                    del self.shard_iterators[arn]
        found = self.shard_iterators.get(iterator_arn)
        if found is None or now - _issued.get(found, now) > SHARD_ITERATOR_LIFETIME:
            self.shard_iterators.pop(iterator_arn, None)
            raise _expired_iterator()
        return original_get_records(self, iterator_arn, limit)

    with ExitStack() as stack:
        stack.enter_context(patched(ShardIterator, "__init__", init))
        stack.enter_context(patched(DynamoDBStreamsBackend, "get_records", get_records))
        yield


def discard_shard_iterator(stream_arn: str, iterator: str) -> None:
    """Let moto drop a shard iterator its reader will not use again (a no-op off moto).

    Not a fix: a Lambda-like poller uses each iterator once, so the local runtime's pollers
    drop it at once instead of leaving it for the 15-minute sweep (at 20 polls a second
    that would be some 18,000 live iterators).
    """
    try:
        from moto.dynamodbstreams.models import dynamodbstreams_backends

        _, _, _, region, account = stream_arn.split(":")[:5]
        dynamodbstreams_backends[account][region].shard_iterators.pop(iterator, None)
    except Exception:  # not moto, or a moto that keeps them elsewhere
        return


class _StreamWrites:
    """How many DynamoDB stream records moto has written, and a wait for the next one."""

    def __init__(self) -> None:
        self._written = threading.Condition()
        self.count = 0
        self.active = False
        """Whether `stream_writes_announced` is on (else nothing counts: poll as before)."""

    def written(self) -> None:
        with self._written:
            self.count += 1
            self._written.notify_all()

    def wait_after(self, seen: int, timeout: float) -> bool:
        """Wait until a record is written after `count` was `seen` (or `timeout` passed);
        whether one was."""
        with self._written:
            return self._written.wait_for(lambda: self.count != seen, timeout)


STREAM_WRITES = _StreamWrites()
"""The stream records moto wrote, counted (`stream_writes_announced`)."""


@contextmanager
def stream_writes_announced() -> Iterator[None]:
    """Count every stream record moto writes, and wake whoever waits for one.

    Not a fix: a hook for the local runtime's stream pollers, which read a shard again as
    soon as something was written to a stream instead of asking GetRecords every few
    milliseconds while nothing was (an empty GetRecords costs a full in-process request).
    """
    from moto.dynamodb.models.table import StreamShard

    original = StreamShard.add

    def add(self: StreamShard, old: Any, new: Any) -> None:
        try:
            original(self, old, new)
        finally:
            STREAM_WRITES.written()

    STREAM_WRITES.active = True
    try:
        with patched(StreamShard, "add", add):
            yield
    finally:
        STREAM_WRITES.active = False


def discard_stream_records(stream_arn: str, shard_id: str, through_sequence: int) -> int:
    """Drop a moto stream shard's records up to `through_sequence`; how many (0 off moto).

    Not a fix: DynamoDB keeps records 24 hours for any reader. In `mqless dev` the local
    pollers are a stream's only readers (moto lives inside the process), so once every one
    of them has handled a record nobody can read it again, and keeping it would only grow
    memory with every write (see mqless_cli.local.stream_checkpoints).
    """
    try:
        from moto.dynamodbstreams.models import dynamodbstreams_backends

        _, _, _, region, account = stream_arn.split(":")[:5]
        table = dynamodbstreams_backends[account][region]._get_table_from_arn(stream_arn)
    except Exception:  # not moto, or the table is gone
        return 0
    with REQUEST_LOCK.lock:  # a write appending to the shard must not interleave
        shard = table.stream_shard
        if shard is None or shard.id != shard_id:
            return 0
        return _drop_oldest(shard, through_sequence - int(shard.starting_sequence_number) + 1)
