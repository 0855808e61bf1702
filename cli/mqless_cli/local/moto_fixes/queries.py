"""`queries_read_one_partition`: a Query reads the partition it names, in key order;
`query_items_sized_once`: it sizes each item it reads once.

Why it is long: the partition orderings are kept in step by every write that changes an
item's keys (put, delete, update, rollback), and their docstrings say why each query's
answer stays moto's; the sizing fix wraps the same `Table.query`.
"""

from __future__ import annotations

import bisect
import copy
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.items import all_stored, key_of, stored
from mqless_cli.local.moto_fixes.patching import patched

_query_scope = threading.local()
_BASE = ""  # the ordering of the base table (indexes have names)


class _Ordering:
    """A table's item keys by partition key value, each partition in moto's query order.

    For the base table or one index: `partitions` maps the partition key values to the
    sort tuples (index sort key, table hash key, table sort key) of its items, sorted as
    `Table.query` sorts them; `where` says where each item key is filed. What it keeps of
    an item are the item's own key values (scalars: moto never changes one in place), one
    tuple of partition key values per partition, its entry in a list and a dict, and two
    tuples: no copies (an ordering kept copies of each key value, ~300 bytes an item).
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
        self.partition_keys: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # each key itself
        for item in all_stored(table):
            self.place((item.hash_key, item.range_key), item)

    def sort_tuple(self, values: Any, hash_key: Any, range_key: Any) -> tuple[Any, ...] | None:
        """(sort key, table hash key[, table range key]) from attribute values; None if a
        part is missing. A scalar value (S, N, B: what keys are) is held as it is, moto never
        changes one in place; other values are copied, moto may change those in place."""
        parts = []
        if self.range_attribute is not None:
            value = values.get(self.range_attribute)
            if value is None:
                return None
            parts.append(_held(value))
        if hash_key is None or (self.has_table_range and range_key is None):
            return None
        parts.append(_held(hash_key))
        if self.has_table_range:
            parts.append(_held(range_key))
        return tuple(parts)

    def place(self, key: tuple[Any, Any], item: Any) -> None:
        """File the item stored under `key` (None: no longer stored) where it now belongs."""
        before = self.where.get(key)
        filed = None
        if item is not None:
            values = tuple(item.attrs.get(name) for name in self.hash_attributes)
            order = self.sort_tuple(item.attrs, item.hash_key, item.range_key)
            if order is not None and all(value is not None for value in values):
                # one tuple of partition key values per partition, shared by its items
                filed = (self.partition_keys.get(values, values), order)
        if filed == before:
            return
        if before is not None:
            entries = self.partitions[before[0]]
            del entries[bisect.bisect_left(entries, before[1])]
            if not entries:
                del self.partitions[before[0]]
                del self.partition_keys[before[0]]
            del self.where[key]
        if filed is not None:
            self.partition_keys.setdefault(filed[0], filed[0])
            bisect.insort(self.partitions.setdefault(filed[0], []), filed[1])
            # filed under the item's own key values (equal to `key`), not a copy of them
            self.where[(item.hash_key, key[1] if item.range_key is None else item.range_key)] = (
                filed
            )

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


def _held(value: Any) -> Any:
    """`value` as a DynamoType an ordering can keep: itself if it is a scalar one."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if type(value) is DynamoType and value.type in _SCALARS:
        return value
    return DynamoType(value)


_SCALARS = frozenset(("S", "N", "B"))


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


def reindex(table: Any, hash_key: Any, range_key: Any) -> None:
    """Keep the orderings of `table` (those built so far) in step with one item key."""
    known = _orderings.get(table)
    if not known:
        return
    key = (hash_key, range_key if table.range_key_attr is not None else None)
    item = stored(table, hash_key, range_key)
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
            found.append(stored(table, order[-2], order[-1]))
        else:
            found.append(stored(table, order[-1], None))
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


def _scoped_all_items(original_all_items: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`Table.all_items` that, inside a windowed query of that table, is the window."""

    def all_items(self: Any) -> list[Any]:
        scoped = getattr(_query_scope, "items", None)
        if scoped is not None and scoped[0] is self:
            # unsorted: Table.query sorts what it keeps by the full key, which is unique
            return list(scoped[1])
        result: list[Any] = original_all_items(self)
        return result

    return all_items


def _windowed_query(original_query: Callable[..., Any]) -> Callable[..., Any]:
    """`Table.query` run over the window `_candidates` finds (when it finds one), its
    results uncopied when it projects nothing."""
    signature = inspect.signature(original_query)

    @functools.wraps(original_query)  # keeps its signature for other wrappers (billing)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
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

    return query


def _reindexing_writes(table_class: Any, backend_class: Any) -> list[tuple[Any, str, Any]]:
    """(owner, method name, replacement) of each write that keeps the orderings in step:
    `Table.put_item`, `Table.delete_item` and `DynamoDBBackend.update_item`."""
    original_put, original_delete = table_class.put_item, table_class.delete_item
    original_update = backend_class.update_item

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        reindex(self, item.hash_key, item.range_key)
        return item

    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        try:
            return original_delete(self, hash_key, range_key)
        finally:
            reindex(self, hash_key, range_key)

    def update_item(self: Any, table_name: str, key: Any, *args: Any, **kw: Any) -> Any:
        try:
            return original_update(self, table_name, key, *args, **kw)
        finally:
            table = self.tables.get(table_name)
            found = key_of(table, key) if table is not None else None
            if found is not None:
                reindex(table, *found)

    return [
        (table_class, "put_item", put_item),
        (table_class, "delete_item", delete_item),
        (backend_class, "update_item", update_item),
    ]


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

    with ExitStack() as stack:
        stack.enter_context(patched(table_module, "copy", _CopyOnlyWhatIsChanged()))
        stack.enter_context(patched(Table, "all_items", _scoped_all_items(Table.all_items)))
        stack.enter_context(patched(Table, "query", _windowed_query(Table.query)))
        for owner, name, replacement in _reindexing_writes(Table, DynamoDBBackend):
            stack.enter_context(patched(owner, name, replacement))
        yield


# ---- each item a query returns sized once ---------------------------------------------------

_sizing = threading.local()


def _sized_once(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Table.query` or `Table.scan`, each item it sizes sized once while it runs."""

    @functools.wraps(original)  # keeps its signature for other wrappers (billing)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(_sizing, "sizes", None)
        _sizing.sizes = {}
        try:
            return original(self, *args, **kwargs)
        finally:
            _sizing.sizes = outer

    return run


@contextmanager
def query_items_sized_once() -> Iterator[None]:
    """Size each item a Query (or Scan) reads once, not twice.

    Upstream behaviour: `Table.query` and `Table.scan` size every item they return twice
    (`Item.size()`: once against the 1 MB page limit, once to add it to the page's size),
    each time walking all its attributes (in the stompjs bench, a quarter of a Query's
    time in moto's handler went to sizing items). Nothing changes an item while the table
    reads it (a request runs alone: `atomic_requests`), so here an item's size is kept from
    its first sizing to the end of the query or scan, by the item (held, so that its id
    stays its own); the same figure, as before, everywhere else.
    """
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    original_size = Item.size

    def size(self: Any) -> int:
        sizes = getattr(_sizing, "sizes", None)
        if sizes is None:
            return original_size(self)
        kept = sizes.get(id(self))
        if kept is not None and kept[0] is self:
            return int(kept[1])
        found = original_size(self)
        sizes[id(self)] = (self, found)
        return found

    with (
        patched(Item, "size", size),
        patched(Table, "query", _sized_once(Table.query)),
        patched(Table, "scan", _sized_once(Table.scan)),
    ):
        yield
