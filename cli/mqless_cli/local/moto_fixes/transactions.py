"""`transactions_undo_by_log`: a failed TransactWriteItems undone from an undo log."""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.items import key_of, store, stored
from mqless_cli.local.moto_fixes.patching import patched
from mqless_cli.local.moto_fixes.queries import reindex

_undo = threading.local()


class _UndoLog:
    """Prior images of what one transaction wrote, and where each stream stood."""

    def __init__(self) -> None:
        self.images: dict[tuple[int, Any, Any], tuple[Any, Any]] = {}
        self.streams: dict[int, tuple[Any, Any, int]] = {}

    def remember(self, table: Any, key: tuple[Any, Any] | None) -> None:
        if key is None:
            return
        slot = (id(table), *key)
        if slot not in self.images:
            self.images[slot] = (table, copy.deepcopy(stored(table, *key)))
        shard = table.stream_shard
        if shard is not None and id(table) not in self.streams:
            self.streams[id(table)] = (table, shard, _next_sequence(shard))

    def undo(self) -> None:
        for (_, hash_key, range_key), (table, prior) in self.images.items():
            store(table, hash_key, range_key, prior)
            reindex(table, hash_key, range_key)
        for table, shard, next_sequence in self.streams.values():
            if table.stream_shard is shard:
                del shard.items[max(0, next_sequence - shard.starting_sequence_number) :]


def _next_sequence(shard: Any) -> int:
    return int(shard.starting_sequence_number) + len(shard.items)


class _CopyKeepingTables:
    """`copy` for moto.dynamodb.models: while an undo log is open, a Table is not copied.

    moto's transact_write_items deep-copies each table it touches before it starts, and on
    failure puts the copies back. With an undo log doing the rollback, the "copy" is the
    table itself and moto's own restore puts back the very same object.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if isinstance(value, Table) and getattr(_undo, "log", None) is not None:
            return value
        return copy.deepcopy(value, memo)


_WRITES = (("put_item", "item_attrs"), ("delete_item", "key"), ("update_item", "key"))
"""The backend writes a transaction is made of, and the argument naming each one's item."""


def _undone_on_failure(transact_write_items: Callable[..., Any]) -> Callable[..., Any]:
    """`transact_write_items` with an undo log open while it runs, played back if it fails."""

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        log = _UndoLog()
        outer = getattr(_undo, "log", None)
        _undo.log = log
        try:
            transact_write_items(self, transact_items)
        except BaseException:
            log.undo()
            raise
        finally:
            _undo.log = outer

    return transact


def _recording_prior_images(write: Callable[..., Any], key_argument: str) -> Callable[..., Any]:
    """A backend write (its item's key given first, or as `key_argument`) that, inside a
    transaction, first records the prior image of the item it changes in the undo log."""

    @functools.wraps(write)
    def wrapper(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        log = getattr(_undo, "log", None)
        if log is not None and table_name in self.tables:
            table = self.tables[table_name]
            attributes = args[0] if args else kwargs.get(key_argument)
            log.remember(table, key_of(table, attributes))
        return write(self, table_name, *args, **kwargs)

    return wrapper


@contextmanager
def transactions_undo_by_log() -> Iterator[None]:
    """Undo a failed TransactWriteItems from an undo log, not from copies of whole tables.

    Upstream behaviour: `DynamoDBBackend.transact_write_items` takes `copy.deepcopy(table)`
    of every table named in the transaction (every item, every stream record ever written)
    before it starts, and assigns the copies back to `self.tables` if anything fails. The
    cost grows with all that was ever stored and streamed, on every transaction; and the
    restored tables are new objects, so stream shard iterators handed out earlier point at
    a shard that no longer receives records.

    Here each write of the transaction first records the prior image of the one item it
    changes (a deep copy of that item, or "none") and where the table's stream ended. On
    any failure the items are put back, the stream is cut back to where it ended (the
    records of the cancelled writes never existed), and the error is raised as before.
    Conditions, error codes and cancellation reasons are moto's own: its code still runs.
    """
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend

    original_transact = DynamoDBBackend.transact_write_items
    with ExitStack() as stack:
        stack.enter_context(patched(dynamodb_models, "copy", _CopyKeepingTables()))
        stack.enter_context(
            patched(DynamoDBBackend, "transact_write_items", _undone_on_failure(original_transact))
        )
        for write, key_argument in _WRITES:
            recording = _recording_prior_images(getattr(DynamoDBBackend, write), key_argument)
            stack.enter_context(patched(DynamoDBBackend, write, recording))
        yield
