"""Every change `mqless dev` (and the test suite) makes to moto 5.2, in one place.

Each fix is a small patch applied as a context manager, written so that it could be offered
to moto as it stands: it says which behaviour of moto it changes and keeps DynamoDB's
semantics exactly (atomic transactions, conditional writes, stream order per shard).
`tests/component/test_moto_fixes.py` compares each one with moto's own behaviour.

- `atomic_requests`: one request at a time, as DynamoDB applies each request atomically
  (moto's in-process backend lets a thread switch fall between a condition and its write).
  It also measures how long each request held the lock (`REQUEST_LOCK`).
- `data_models_untracked`: moto keeps no list of every DynamoDB item, stream record and
  shard iterator it ever made (memory and garbage collection time grew with every request).
- `handler_methods_listed_once`: moto lists a response handler's methods once per class,
  not with `inspect.getmembers` on every request.
- `update_expressions_parsed_once`: each UpdateExpression text is parsed once, not twice
  per UpdateItem.
- `update_expression_structures_checked_once`: the checks of an UpdateExpression's structure
  (one clause of each kind, no overlapping paths, no key attribute) run once per expression,
  names and table keys, not on every UpdateItem; the checks of values and item still do.
- `condition_expressions_lexed_once`: each ConditionExpression text is lexed once, not on
  every conditional write.
- `transactions_undo_by_log`: a failed TransactWriteItems is undone from the prior image
  of each item it wrote, not by putting back a deep copy of every table it touched taken
  before every transaction (a cost that grew with everything ever stored and streamed).
  The tables stay the same objects, so stream shard iterators survive a rollback.
- `queries_read_one_partition`: a Query reads the partition it names (of the base table or
  an index) in key order, from its sort key condition and start key up to its limit, not
  every item of the table sorted.
- `attribute_values_serialize_directly`: DynamoDB responses write each AttributeValue
  without asking moto's attribute picker for each of its ten possible members.
- `updates_that_create_write_one_record`: an UpdateItem that creates its item writes one
  INSERT stream record, as DynamoDB does (moto writes a key-only INSERT first).
- `stream_records_expire`: stream records older than 24 hours are trimmed, as DynamoDB
  Streams does; reading before the oldest record left is a TrimmedDataAccessException.
- `shard_iterators_expire`: a shard iterator expires 15 minutes after it was issued
  (ExpiredIteratorException), instead of being kept for ever.
- `kms_key_pairs_made_on_first_use`: a KMS key's asymmetric key pair is generated when a
  request first uses it (Sign, Verify, GetPublicKey), not on CreateKey: moto made an RSA
  2048 pair for every key, symmetric ones included, which never use it.
- `random_strings_drawn_at_once`: a random string (every response's request id) is drawn
  with one `choices` call, not one `choice` call per character.

`fixed_moto()` applies them all, and `stream_writes_announced`, which is not a fix: it wakes
the local runtime's stream pollers when a record is written. `discard_shard_iterator` and
`discard_stream_records` are the local runtime's own shortcuts, not fixes either: its stream
pollers never reuse an iterator, and are a stream's only readers, so they drop iterators and
handled records at once.
"""

from __future__ import annotations

import bisect
import copy
import functools
import gc
import inspect
import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "REQUEST_LOCK",
    "STREAM_RETENTION",
    "SHARD_ITERATOR_LIFETIME",
    "STREAM_WRITES",
    "LockStats",
    "atomic_requests",
    "attribute_values_serialize_directly",
    "condition_expressions_lexed_once",
    "data_models_untracked",
    "discard_shard_iterator",
    "discard_stream_records",
    "fixed_moto",
    "handler_methods_listed_once",
    "kms_key_pairs_made_on_first_use",
    "queries_read_one_partition",
    "random_strings_drawn_at_once",
    "shard_iterators_expire",
    "stream_writes_announced",
    "stream_records_expire",
    "transactions_undo_by_log",
    "trim_stream",
    "update_expression_structures_checked_once",
    "update_expressions_parsed_once",
    "updates_that_create_write_one_record",
]

STREAM_RETENTION = timedelta(hours=24)
"""How long DynamoDB Streams keeps a record."""
SHARD_ITERATOR_LIFETIME = timedelta(minutes=15)
"""How long a DynamoDB Streams shard iterator stays valid after GetShardIterator/GetRecords."""
_HOUSEKEEPING_SECONDS = 60.0  # trim streams and iterators at most this often
SLOW_REQUEST_MS = 500.0
"""A request that holds the lock longer is logged (with the start of its body)."""

log = logging.getLogger(__name__)


_MISSING = object()


@contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """Set `owner.name` to `replacement` while the block runs."""
    original = vars(owner).get(name, _MISSING)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


# ---- one request at a time -----------------------------------------------------------------


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
                held = (time.perf_counter() - acquired) * 1000
                cpu = (time.thread_time() - cpu) * 1000
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
                        REQUEST_LOCK.gc_ms - gc_ms,
                        (body if isinstance(body, bytes) else str(body).encode())[:300],
                    )

    gc.callbacks.append(REQUEST_LOCK.on_gc)
    try:
        with _patched(BotocoreStubber, "process_request", atomic):
            yield
    finally:
        gc.callbacks.remove(REQUEST_LOCK.on_gc)


# ---- memory: data items are not tracked for the dashboard -----------------------------------


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


@contextmanager
def data_models_untracked() -> Iterator[None]:
    """Keep no list of every DynamoDB item, stream record and shard iterator ever made.

    Upstream behaviour: every `BaseModel` subclass appends each instance it creates to a
    class-level `instances_tracked` list (for the moto dashboard), which is emptied only
    when moto is reset. For DynamoDB that is every `Item` ever built (each write, each copy
    made for a query result, a stream image or a rollback), every `StreamRecord` and every
    `ShardIterator`: memory grows with every request, and Python's full garbage
    collections, which walk all of it, grow from milliseconds to seconds, stalling
    whichever request they fall in.

    Here those three classes are created without being tracked (the dashboard does not
    list them); what a table holds is unchanged, and is freed when deleted.
    """
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import StreamRecord
    from moto.dynamodbstreams.models import ShardIterator

    with ExitStack() as stack:
        for model in (Item, StreamRecord, ShardIterator):
            stack.enter_context(_patched(model, "__new__", staticmethod(_untracked_new)))
        yield


# ---- responses: a handler's methods listed once ---------------------------------------------


@contextmanager
def handler_methods_listed_once() -> Iterator[None]:
    """List a response handler's methods once per class, not on every request.

    Upstream behaviour: `BaseResponse.call_action` calls `method_names_from_class`, which
    runs `inspect.getmembers` over every attribute of the handler class, for each request
    (about a tenth of an in-process DynamoDB call). A class's methods do not change while
    requests are served, so the list is kept per class.
    """
    from moto.core import responses

    original = responses.method_names_from_class  # type: ignore[attr-defined]
    listed: dict[Any, list[str]] = {}

    def method_names(clazz: object) -> list[str]:
        names = listed.get(clazz)
        if names is None:
            names = listed[clazz] = original(clazz)
        return names

    with _patched(responses, "method_names_from_class", method_names):
        yield


# ---- update expressions parsed once ---------------------------------------------------------


@contextmanager
def update_expressions_parsed_once() -> Iterator[None]:
    """Keep the parse of each UpdateExpression text instead of parsing it on every use.

    Upstream behaviour: `UpdateExpressionParser.make` tokenizes and parses the expression
    each time, and an UpdateItem uses it twice (the response handler checks the names and
    values it uses, the backend validates and runs it): a seventh of an update's time.
    The tree is only read, or deep-copied by the validator before it is processed, so one
    parse per distinct text (the last 512) serves every request; a text that does not
    parse is refused as before, every time.
    """
    from moto.dynamodb.parsing import expressions

    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
    original = parser.make.__func__

    @functools.lru_cache(maxsize=512)
    def parsed(expression: str) -> Any:
        return original(parser, expression)

    def make(cls: type, expression: str) -> Any:
        if cls is not parser or not isinstance(expression, str):
            return original(cls, expression)
        return parsed(expression)

    with _patched(parser, "make", classmethod(make)):
        yield


# ---- update expressions: structure checked once ---------------------------------------------

_STRUCTURES_KEPT = 4096  # (expression, names, key attributes) whose structure passed


@contextmanager
def update_expression_structures_checked_once() -> Iterator[None]:
    """Check an UpdateExpression's structure once per expression, names and table keys.

    Upstream behaviour: every UpdateItem (twice when it creates its item) runs the
    validator's nine passes over a copy of the expression's tree. The first three only
    check its structure: one SET/ADD/REMOVE clause each (`ActionCountValidator`, which
    looks for clauses again at every nested node: quadratic in the number of actions),
    no overlapping paths (`OverlappingPathsValidator`), no key attribute updated
    (`UpdateHashRangeKeyValidator`). They read only the tree, the ExpressionAttributeNames
    and the table's key attributes, and change nothing; for the broker's segment updates
    (ten or more actions) they were a seventh of all the CPU `mqless dev` spent.

    Here, once they have passed for a tree (the parse `update_expressions_parsed_once`
    keeps for its text), names and key attributes, later validations of the same skip
    them; the passes that read values and the item run every time. An expression whose
    structure fails is checked (and refused) every time, as before.
    """
    from moto.dynamodb.parsing import validators

    structural = (
        validators.ActionCountValidator,
        validators.OverlappingPathsValidator,
        validators.UpdateHashRangeKeyValidator,
    )
    cls: Any = validators.UpdateExpressionValidator
    original_init = cls.__init__
    original_validate = cls.validate
    passed: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def init(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, expression, *args, **kwargs)
        try:
            names = tuple(sorted((self.expression_attribute_names or {}).items()))
            keys = tuple(self.table.table_key_attrs)
            self._structure_key = (id(expression), names, keys)
        except (AttributeError, TypeError):  # not what this fix knows: validate as before
            self._structure_key = None
        self._structure_tree = expression

    def validate(self: Any) -> Any:
        key = getattr(self, "_structure_key", None)
        processors = self.processors
        first = [isinstance(p, structural) for p in processors]
        # the structure checks must come first (they do in moto 5.2): else as upstream
        if key is None or first != sorted(first, reverse=True):
            return original_validate(self)
        known = key in passed
        node = self.node_to_validate
        for processor, checks_structure in zip(processors, first, strict=True):
            if checks_structure:
                if known:
                    continue
            elif not known:  # every structure check before this one passed
                with lock:
                    if len(passed) >= _STRUCTURES_KEPT:
                        passed.clear()
                    passed[key] = self._structure_tree  # kept alive: its id stays its own
                known = True
            node = processor.traverse(node)
        return node

    with _patched(cls, "__init__", init), _patched(cls, "validate", validate):
        yield


# ---- condition expressions lexed once ------------------------------------------------------


@contextmanager
def condition_expressions_lexed_once() -> Iterator[None]:
    """Keep the tokens of each ConditionExpression text instead of lexing it on every use.

    Upstream behaviour: `ConditionExpressionParser.parse` lexes the expression text on
    every conditional write and transaction item, trying a list of regular expressions at
    each position: half of the parse, about a twentieth of `mqless dev`'s CPU in the HTTP
    bench. The tokens depend on the text alone (names and values are looked up in later
    stages), so the last 512 distinct texts keep theirs; each use gets new token nodes
    (their `children` lists are fresh), and a text that does not lex is refused as before,
    every time.
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    original = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=512)
    def tokens(expression: str) -> tuple[tuple[Any, Any, Any, Any], ...]:
        lexed = original(ConditionExpressionParser(expression, None, None))
        return tuple((n.nonterminal, n.kind, n.text, n.value) for n in lexed)

    def lex(self: ConditionExpressionParser) -> Any:
        expression = self.condition_expression
        if not isinstance(expression, str):
            return original(self)
        node = self.Node
        return deque(
            node(nonterminal=nonterminal, kind=kind, text=text, value=value, children=[])
            for nonterminal, kind, text, value in tokens(expression)
        )

    with _patched(ConditionExpressionParser, "_lex_condition_expression", lex):
        yield


# ---- transactions: undo log instead of table copies ----------------------------------------

_undo = threading.local()


def _key_of(table: Any, attributes: Any) -> tuple[Any, Any] | None:
    """(hash, range) DynamoTypes of the item `attributes` names; None if a key is missing."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if not isinstance(attributes, dict) or table.hash_key_attr not in attributes:
        return None
    hash_key = DynamoType(attributes[table.hash_key_attr])
    if table.range_key_attr is None:
        return hash_key, None
    if table.range_key_attr not in attributes:
        return None
    return hash_key, DynamoType(attributes[table.range_key_attr])


def _stored(table: Any, hash_key: Any, range_key: Any) -> Any:
    """The item stored under a key, without creating a partition (`items` is a defaultdict)."""
    found = table.items.get(hash_key)
    if table.range_key_attr is None or found is None:
        return found
    return found.get(range_key)


def _store(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Put back `item` (None: no item) under a key, as it was before a transaction."""
    if table.range_key_attr is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is None:
        partition = table.items.get(hash_key)
        if partition is not None:
            partition.pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


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
            self.images[slot] = (table, copy.deepcopy(_stored(table, *key)))
        shard = table.stream_shard
        if shard is not None and id(table) not in self.streams:
            self.streams[id(table)] = (table, shard, _next_sequence(shard))

    def undo(self) -> None:
        for (_, hash_key, range_key), (table, prior) in self.images.items():
            _store(table, hash_key, range_key, prior)
            _reindex(table, hash_key, range_key)
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
    original_put, original_delete = DynamoDBBackend.put_item, DynamoDBBackend.delete_item
    original_update = DynamoDBBackend.update_item

    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        log = _UndoLog()
        outer = getattr(_undo, "log", None)
        _undo.log = log
        try:
            original_transact(self, transact_items)
        except BaseException:
            log.undo()
            raise
        finally:
            _undo.log = outer

    def recording(write: Callable[..., Any], key_argument: str) -> Callable[..., Any]:
        @functools.wraps(write)
        def wrapper(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
            log = getattr(_undo, "log", None)
            if log is not None and table_name in self.tables:
                table = self.tables[table_name]
                attributes = args[0] if args else kwargs.get(key_argument)
                log.remember(table, _key_of(table, attributes))
            return write(self, table_name, *args, **kwargs)

        return wrapper

    with ExitStack() as stack:
        stack.enter_context(_patched(dynamodb_models, "copy", _CopyKeepingTables()))
        stack.enter_context(_patched(DynamoDBBackend, "transact_write_items", transact))
        stack.enter_context(
            _patched(DynamoDBBackend, "put_item", recording(original_put, "item_attrs"))
        )
        stack.enter_context(
            _patched(DynamoDBBackend, "delete_item", recording(original_delete, "key"))
        )
        stack.enter_context(
            _patched(DynamoDBBackend, "update_item", recording(original_update, "key"))
        )
        yield


# ---- queries read one partition ------------------------------------------------------------

_query_scope = threading.local()
_BASE = ""  # the ordering of the base table (indexes have names)


class _Ordering:
    """A table's item keys by partition key value, each partition in moto's query order.

    For the base table or one index: `partitions` maps the partition key values to the
    sort tuples (index sort key, table hash key, table sort key) of its items, sorted as
    `Table.query` sorts them; `where` says where each item key is filed.
    """

    def __init__(
        self, table: Any, hash_attributes: tuple[str, ...], range_attribute: str | None
    ) -> None:
        self.hash_attributes = hash_attributes
        self.range_attribute = range_attribute
        self.has_table_range = table.range_key_attr is not None
        self.table_hash_name: str = table.hash_key_attr
        self.table_range_name: str | None = table.range_key_attr
        self.partitions: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        self.where: dict[tuple[Any, Any], tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
        for item in _all_stored(table):
            self.place((item.hash_key, item.range_key), item)

    def sort_tuple(self, values: Any, hash_key: Any, range_key: Any) -> tuple[Any, ...] | None:
        """(sort key, table hash key[, table range key]) from attribute values; None if a
        part is missing. Copies: moto may change an item's values in place."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        parts = []
        if self.range_attribute is not None:
            value = values.get(self.range_attribute)
            if value is None:
                return None
            parts.append(DynamoType(value))
        if hash_key is None or (self.has_table_range and range_key is None):
            return None
        parts.append(DynamoType(hash_key))
        if self.has_table_range:
            parts.append(DynamoType(range_key))
        return tuple(parts)

    def place(self, key: tuple[Any, Any], item: Any) -> None:
        """File the item stored under `key` (None: no longer stored) where it now belongs."""
        before = self.where.get(key)
        filed = None
        if item is not None:
            values = tuple(item.attrs.get(name) for name in self.hash_attributes)
            order = self.sort_tuple(item.attrs, item.hash_key, item.range_key)
            if order is not None and all(value is not None for value in values):
                filed = (values, order)
        if filed == before:
            return
        if before is not None:
            entries = self.partitions[before[0]]
            del entries[bisect.bisect_left(entries, before[1])]
            if not entries:
                del self.partitions[before[0]]
            del self.where[key]
        if filed is not None:
            bisect.insort(self.partitions.setdefault(filed[0], []), filed[1])
            self.where[key] = filed

    def window(self, values: tuple[Any, ...], arguments: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The sort tuples moto's query can look at, in moto's order: those of the partition
        that meet the sort key condition, from the exclusive start key on, at most `Limit`
        and a few more (moto reads one past the limit to know whether there is more)."""
        entries = self.partitions.get(values, [])
        if arguments.get("filter_kwargs"):
            return entries  # QueryFilter: moto's Limit counts what passes it, so no cut
        low, high = 0, len(entries)
        comparison = arguments.get("range_comparison")
        conditions = arguments.get("range_key_conditions") or []
        if comparison and self.range_attribute is not None and len(conditions) <= 1:
            bounds = arguments.get("range_objs") or []
            position = functools.partial(_position, comparison, [b.cast_value for b in bounds])
            low = bisect.bisect_left(entries, 0, key=lambda t: position(t[0].cast_value))
            high = bisect.bisect_left(entries, 1, lo=low, key=lambda t: position(t[0].cast_value))
        elif comparison or conditions:
            return entries  # a condition this ordering cannot place: moto checks them all
        limit, start = arguments.get("limit"), arguments.get("exclusive_start_key")
        forward = arguments.get("scan_index_forward") is not False
        at: int | None = None
        if start:
            found = self.sort_tuple(
                start, start.get(self.table_hash_name), start.get(self.table_range_name or "")
            )
            if found is None:
                return entries[low:high]  # no place to start from: moto walks the partition
            at = bisect.bisect_left(entries, found)
        # moto skips what comes up to the start key, then takes `limit` and looks at one more:
        # the window holds the start key's neighbours and `limit` + 2 beyond it
        if forward:
            if at is not None:
                low = max(low, at - 1)
            if limit:
                high = min(high, max(low, at if at is not None else low) + int(limit) + 3)
        else:
            if at is not None:
                high = min(high, at + 2)
            if limit:
                low = max(low, min(high, at if at is not None else high) - int(limit) - 3)
        # and one item on each side, whatever it is: moto answers with a LastEvaluatedKey
        # when any item follows the last one it returned, met the sort key condition or not
        return entries[max(0, low - 1) : high + 1]


def _position(comparison: str, bounds: list[Any], value: Any) -> int:
    """-1 if `value` sorts before the values a key condition accepts, 0 if it is one of
    them, 1 if after (accepted values are contiguous in sort order)."""
    if comparison == "=":
        return -1 if value < bounds[0] else (0 if value == bounds[0] else 1)
    if comparison in ("<", "<="):
        return 0 if (value < bounds[0] or (comparison == "<=" and value == bounds[0])) else 1
    if comparison in (">", ">="):
        return 0 if (value > bounds[0] or (comparison == ">=" and value == bounds[0])) else -1
    if comparison == "BETWEEN":
        return -1 if value < bounds[0] else (1 if value > bounds[1] else 0)
    if comparison == "BEGINS_WITH":
        if value.startswith(bounds[0]):
            return 0
        return -1 if value < bounds[0] else 1
    raise _Unordered(comparison)


class _Unordered(Exception):
    """A key condition that cannot be placed in sort order: read the whole partition."""


# table -> {"" (base table) or index name: ordering}; weak, so dropped tables take theirs along
_orderings: weakref.WeakKeyDictionary[Any, dict[str, _Ordering]] = weakref.WeakKeyDictionary()


def _all_stored(table: Any) -> Iterator[Any]:
    for stored in list(table.items.values()):
        if table.range_key_attr is None:
            yield stored
        else:
            yield from list(stored.values())


def _ordering(table: Any, index: Any) -> _Ordering:
    if index is None:
        name, hash_attributes = _BASE, (table.hash_key_attr,)
        range_attribute = table.range_key_attr
    else:
        name = index.name
        hash_attributes = tuple(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
        ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
        range_attribute = ranges[0] if len(ranges) == 1 else None
    known = _orderings.setdefault(table, {})
    ordering = known.get(name)
    if (
        ordering is None
        or ordering.hash_attributes != hash_attributes
        or ordering.range_attribute != range_attribute
    ):
        ordering = known[name] = _Ordering(table, hash_attributes, range_attribute)
    return ordering


def _reindex(table: Any, hash_key: Any, range_key: Any) -> None:
    """Keep the orderings of `table` (those built so far) in step with one item key."""
    known = _orderings.get(table)
    if not known:
        return
    key = (hash_key, range_key if table.range_key_attr is not None else None)
    item = _stored(table, hash_key, range_key)
    for ordering in known.values():
        ordering.place(key, item)


def _candidates(table: Any, arguments: dict[str, Any]) -> list[Any] | None:
    """The items the query can return (all of them, and more), or None to let moto read
    the whole table."""
    index_name = arguments.get("index_name")
    conditions = dict(arguments.get("hash_key_conditions") or [])
    index = None
    if index_name:
        index = next((i for i in table.all_indexes() if i.name == index_name), None)
        if index is None:
            return None  # moto answers the invalid index name
    elif arguments.get("hash_key") is not None:
        conditions = {table.hash_key_attr: arguments["hash_key"]}
    ordering = _ordering(table, index)
    if not all(name in conditions for name in ordering.hash_attributes):
        return None
    values = tuple(conditions[name] for name in ordering.hash_attributes)
    try:
        window = ordering.window(values, arguments)
    except (_Unordered, TypeError):  # values of another type than the key's: moto decides
        window = ordering.partitions.get(values, [])
    found = []
    for order in window:
        if ordering.has_table_range:
            found.append(_stored(table, order[-2], order[-1]))
        else:
            found.append(_stored(table, order[-1], None))
    return [item for item in found if item is not None]


class _CopyOnlyWhatIsChanged:
    """`copy` for moto.dynamodb.models.table: the results of a query that projects nothing
    are not copied.

    `Table.query` deep-copies every item it returns (a third of a Query's time for eight
    index segments), so that an index's projection or a ProjectionExpression can trim the
    copies. With neither, nothing changes them: the response is written from them at once,
    under the request lock, and no one keeps them. Upstream this is one line in
    `Table.query`: copy only when `index_name` or `projection_expressions` is set.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if getattr(_query_scope, "uncopied", False) and type(value) is list:
            _query_scope.uncopied = False  # the one copy of this query's results only
            return list(value)
        return copy.deepcopy(value, memo)


@contextmanager
def queries_read_one_partition() -> Iterator[None]:
    """Query only the items of the partition asked for, in key order, not the whole table.

    Upstream behaviour: `Table.query` starts from `self.all_items()` (every item of the
    table, sorted) and filters it by partition key, for the base table and for indexes
    alike, then sorts what is left and walks it to the sort key condition and the limit:
    a query costs as much as the table is big. DynamoDB keeps each partition in sort key
    order; upstream, moto would keep a sorted key list per partition (of the table and of
    each index) and start from there.

    Here each table (and each index, on its first query) gets such an ordering, kept in
    step by `Table.put_item`, `Table.delete_item`, `DynamoDBBackend.update_item` and
    transaction rollbacks. `Table.query` then runs unchanged over a small `all_items()`:
    the partition's items that meet the sort key condition, from the exclusive start key
    on, the limit and two more. moto's own code still checks every key condition, sorts,
    pages, counts and filters, so the answer is the same; the window only has to hold the
    items moto would have reached, which it does. A query that projects nothing returns
    its items uncopied (`_CopyOnlyWhatIsChanged`).
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models import table as table_module
    from moto.dynamodb.models.table import Table

    original_query, original_all_items = Table.query, Table.all_items
    original_put, original_delete = Table.put_item, Table.delete_item
    original_update = DynamoDBBackend.update_item
    signature = inspect.signature(original_query)

    def all_items(self: Table) -> list[Any]:
        scoped = getattr(_query_scope, "items", None)
        if scoped is not None and scoped[0] is self:
            # unsorted: Table.query sorts what it keeps by the full key, which is unique
            return list(scoped[1])
        return original_all_items(self)

    @functools.wraps(original_query)  # keeps its signature for other wrappers (billing)
    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        _query_scope.uncopied = not arguments.get("index_name") and not arguments.get(
            "projection_expressions"
        )
        try:
            candidates = _candidates(self, arguments)
            if candidates is None:
                return original_query(self, *args, **kwargs)
            outer = getattr(_query_scope, "items", None)
            _query_scope.items = (self, candidates)
            try:
                return original_query(self, *args, **kwargs)
            finally:
                _query_scope.items = outer
        finally:
            _query_scope.uncopied = False

    def put_item(self: Table, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        _reindex(self, item.hash_key, item.range_key)
        return item

    def delete_item(self: Table, hash_key: Any, range_key: Any) -> Any:
        try:
            return original_delete(self, hash_key, range_key)
        finally:
            _reindex(self, hash_key, range_key)

    def update_item(self: DynamoDBBackend, table_name: str, key: Any, *args: Any, **kw: Any) -> Any:
        try:
            return original_update(self, table_name, key, *args, **kw)
        finally:
            table = self.tables.get(table_name)
            found = _key_of(table, key) if table is not None else None
            if found is not None:
                _reindex(table, *found)

    with ExitStack() as stack:
        stack.enter_context(_patched(table_module, "copy", _CopyOnlyWhatIsChanged()))
        stack.enter_context(_patched(Table, "all_items", all_items))
        stack.enter_context(_patched(Table, "query", query))
        stack.enter_context(_patched(Table, "put_item", put_item))
        stack.enter_context(_patched(Table, "delete_item", delete_item))
        stack.enter_context(_patched(DynamoDBBackend, "update_item", update_item))
        yield


# ---- responses: AttributeValues written directly -------------------------------------------


def _written_as_is(value: Any) -> bool:
    """Whether moto's JSON serializer would write this AttributeValue unchanged: one member,
    of text, number, boolean or null types (and lists and maps of them); no binary, which
    it would base64-encode."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((member, inner),) = value.items()
    if member == "S" or member == "N":
        return type(inner) is str
    if member == "L":
        return type(inner) is list and all(_written_as_is(v) for v in inner)
    if member == "M":
        # an empty name: moto writes that member into the map around it (a moto bug this
        # fix keeps, to answer byte for byte as moto does)
        return type(inner) is dict and all(
            type(k) is str and k != "" and _written_as_is(v) for k, v in inner.items()
        )
    if member == "BOOL" or member == "NULL":
        return type(inner) is bool
    if member == "SS" or member == "NS":
        return type(inner) is list and all(type(v) is str for v in inner)
    return False


@contextmanager
def attribute_values_serialize_directly() -> Iterator[None]:
    """Serialize DynamoDB AttributeValues without moto's attribute picker.

    Upstream behaviour: moto's JSON response serializer fills each structure member through
    an attribute picker that tries up to six aliases per member. An AttributeValue has ten
    members of which one is set, so every attribute of every item returned costs some
    thirty lookups through alias providers: most of the time of a GetItem or a Query.

    Here an AttributeValue that moto built itself (a dict whose keys are member names, the
    shape `dynamo_to_dict` gives) is serialized member by member with moto's own
    serializers for each member, skipping only the alias search, which for such a dict
    always finds the member's own name. One with no binary in it (S, N, BOOL, NULL, SS, NS,
    and L and M of those) is already what the JSON serializer would write, member for
    member: it is written as it is, without walking it (a Query of eight index segments,
    some 600 numbers, spent half its time there). Anything else goes the original way.
    """
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(
        self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if shape.name == "AttributeValue" and key and _written_as_is(value):
            self._default_serialize(serialized, value, shape, key)
            return
        if (
            shape.name == "AttributeValue"
            and isinstance(value, dict)
            and all(name in shape.members for name in value)
        ):
            wrapper: Any = self.MAP_TYPE() if key else serialized
            for member_key, member_shape in shape.members.items():
                member = value.get(member_key)
                if member is not None:
                    member_shape.parent = shape
                    self._serialize(wrapper, member, member_shape, member_key)
            if key:
                self._default_serialize(serialized, wrapper, shape, key)
            return
        original(self, serialized, value, shape, key)

    with _patched(BaseJSONSerializer, "_serialize_type_structure", serialize_structure):
        yield


# ---- streams: one record per write ---------------------------------------------------------

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
        found = _key_of(table, key) if table is not None else None
        creating = found is not None and _stored(table, *found) is None
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
        stack.enter_context(_patched(DynamoDBBackend, "update_item", update_item))
        stack.enter_context(_patched(StreamShard, "add", add))
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
        stack.enter_context(_patched(StreamShard, "add", add))
        stack.enter_context(_patched(StreamShard, "get", get))
        stack.enter_context(_patched(StreamShard, "to_json", to_json))
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
        stack.enter_context(_patched(ShardIterator, "__init__", init))
        stack.enter_context(_patched(DynamoDBStreamsBackend, "get_records", get_records))
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


# ---- KMS: key pairs made when first used ---------------------------------------------------


class _KeyPairOnFirstUse:
    """Stands in for moto's key pair of a KMS key until something uses it: then the pair is
    generated (as moto would have at CreateKey) and every attribute is the real pair's."""

    def __init__(self, make: Callable[[str], Any], key_spec: str) -> None:
        self._make = make
        self._key_spec = key_spec
        self._pair: Any = None
        self._lock = threading.Lock()

    def made(self) -> bool:
        return self._pair is not None

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._pair is None:
                self._pair = self._make(self._key_spec)
        return getattr(self._pair, name)


@contextmanager
def kms_key_pairs_made_on_first_use() -> Iterator[None]:
    """Generate a KMS key's asymmetric key pair when a request first uses it.

    Upstream behaviour: `Key.__init__` calls `generate_private_key(key_spec)` for every key,
    and for SYMMETRIC_DEFAULT (and HMAC) specs that is an RSA 2048 pair: a tenth of a second
    or more of CPU per CreateKey for a pair that Encrypt, Decrypt and GenerateDataKey never
    touch (they use the key's own `key_material`). Every moto a test provisions pays it.

    Here the pair is made the first time Sign, Verify or GetPublicKey use it, of the same
    spec, with the same library call: what each request answers is unchanged.
    """
    from moto.kms import models, utils

    original = utils.generate_private_key

    def on_first_use(key_spec: str) -> Any:
        return _KeyPairOnFirstUse(original, key_spec)

    with _patched(models, "generate_private_key", on_first_use):
        yield


# ---- random strings drawn at once -----------------------------------------------------------


@contextmanager
def random_strings_drawn_at_once() -> Iterator[None]:
    """Draw moto's random strings with one `choices` call instead of a `choice` per character.

    Upstream behaviour: `MotoRandom.get_random_string` calls `self.choice(pool)` once per
    character, and every response gets a 52-character request id that way: about 2% of an
    in-process DynamoDB request. `self.choices(pool, k=length)` draws the same uniform
    characters from the same (seedable) generator in one call; a seeded moto still repeats
    its strings, they are only not the same strings as upstream's for a given seed.
    """
    import string

    from moto.moto_api._internal.moto_random import MotoRandom

    def get_random_string(
        self: MotoRandom, length: int = 20, include_digits: bool = True, lower_case: bool = False
    ) -> str:
        pool = string.ascii_letters + (string.digits if include_digits else "")
        drawn = "".join(self.choices(pool, k=length))
        return drawn.lower() if lower_case else drawn

    with _patched(MotoRandom, "get_random_string", get_random_string):
        yield


# ---- stream writes announced (the local runtime's pollers wait for them) -------------------


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
        with _patched(StreamShard, "add", add):
            yield
    finally:
        STREAM_WRITES.active = False


FIXES: tuple[Callable[[], Any], ...] = (
    atomic_requests,
    data_models_untracked,
    handler_methods_listed_once,
    update_expressions_parsed_once,
    update_expression_structures_checked_once,
    condition_expressions_lexed_once,
    transactions_undo_by_log,
    queries_read_one_partition,
    attribute_values_serialize_directly,
    updates_that_create_write_one_record,
    stream_records_expire,
    shard_iterators_expire,
    kms_key_pairs_made_on_first_use,
    random_strings_drawn_at_once,
    stream_writes_announced,
)
"""What `fixed_moto` applies, in this order."""

_applied = threading.Lock()
_users = 0
_stack: ExitStack | None = None


def discard_stream_records(stream_arn: str, shard_id: str, through_sequence: int) -> int:
    """Drop a moto stream shard's records up to `through_sequence`; how many (0 off moto).

    Not a fix: DynamoDB keeps records 24 hours for any reader. In `mqless dev` the local
    pollers are a stream's only readers (moto lives inside the process), so once every one
    of them has handled a record nobody can read it again, and keeping it would only grow
    memory with every write (see mqless_cli.local.streams).
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


@contextmanager
def fixed_moto() -> Iterator[None]:
    """Every fix of this module while the block runs; blocks may overlap in any order.

    The patches go on when the first block starts and come off when the last one ends, so
    two local clouds (or a test's moto next to a runtime's) never undo each other's patches.
    """
    global _users, _stack
    with _applied:
        if _users == 0:
            stack = ExitStack()
            for fix in FIXES:
                stack.enter_context(fix())
            _stack = stack
        _users += 1
    try:
        yield
    finally:
        with _applied:
            _users -= 1
            if _users == 0 and _stack is not None:
                _stack.close()
                _stack = None
