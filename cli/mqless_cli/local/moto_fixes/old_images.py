"""An UpdateItem's old image copied and written out only when its answer returns it, and
its prior copy made only when the stream records it."""

from __future__ import annotations

import copy
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

OLD_IMAGE_UNREAD = ("NONE", "ALL_NEW")
"""ReturnValues whose answer reads nothing of the item as it was before the update."""


@contextmanager
def update_old_images_copied_when_returned() -> Iterator[None]:
    """Copy the item an UpdateItem changes only when its ReturnValues answer with it.

    Upstream behaviour: `DynamoHandler.update_item` deep-copies the stored item before
    the update and writes the copy out as JSON, for every ReturnValues. Only ALL_OLD,
    UPDATED_OLD and UPDATED_NEW read it; with NONE (the default) and ALL_NEW the
    answer is built from the new item alone, and the copy (every list and map element
    of the item, twice) is thrown away. Here, for those two, the handler's one
    `copy.deepcopy` gives back no item, which the handler reads as an item to compare
    with that had nothing in it: the same answer. The item is still looked up first,
    so a malformed key is refused as before.
    """
    from moto.dynamodb import responses

    unread = threading.local()

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if getattr(unread, "old_image", False):
            return None
        return copy.deepcopy(value, memo)

    # the responses module uses `copy` for this one `deepcopy` only (moto 5.2)
    handler_copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
    original_update = responses.DynamoHandler.update_item

    def update_item(self: Any) -> Any:
        unread.old_image = self.body.get("ReturnValues", "NONE") in OLD_IMAGE_UNREAD
        try:
            return original_update(self)
        finally:
            unread.old_image = False

    with (
        patched(responses, "copy", handler_copy),
        patched(responses.DynamoHandler, "update_item", update_item),
    ):
        yield


# ---- the backend's prior copy: kept for the stream's old image only ---------------------

_OLD_IMAGE_STREAMED = ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
"""Stream view types whose records hold the item as it was before a write."""

_updating = threading.local()


def _streams_old_images(table: Any) -> bool:
    """Whether a table's stream records hold old images (False: no stream)."""
    spec = getattr(table, "stream_specification", None) or {}
    return table.stream_shard is not None and spec.get("StreamViewType") in _OLD_IMAGE_STREAMED


def _keys_alone(item: Any) -> Any:
    """An Item with `item`'s key values and no attributes: what a stream record without old
    images reads of the item as it was (its keys, and that there was one)."""
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    kept: Any = Item.__new__(Item)
    kept.hash_key, kept.range_key = item.hash_key, item.range_key
    kept.attrs = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.__init__(kept.attrs)
    return kept


class _PriorCopy:
    """`copy` for moto.dynamodb.models: inside an UpdateItem of a table whose stream keeps
    no old images, the item's prior copy is its keys alone (`_keys_alone`)."""

    def __init__(self, module_copy: Any) -> None:
        self._copy = module_copy  # what the module used before (another fix's, or `copy`)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.dynamo_type import Item

        if memo is None and type(value) is Item and getattr(_updating, "keys_only", False):
            _updating.keys_only = False  # the one prior copy of this update
            return _keys_alone(value)
        return self._copy.deepcopy(value, memo)


@contextmanager
def update_prior_items_copied_when_streamed() -> Iterator[None]:
    """Copy the item an UpdateItem changes only when the table's stream records it.

    Upstream behaviour: `DynamoDBBackend.update_item` deep-copies the stored item before
    it applies the update (every list and map element), for the one use it makes of it:
    the old image of the stream record it adds. A table without a stream adds no record,
    and a stream of KEYS_ONLY or NEW_IMAGE records reads only the copy's keys (and that
    there was an item: MODIFY, not INSERT). Here, for those, the copy holds the item's
    key values alone; records, their sizes and the update's answer are as before.
    """
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend

    original_update = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        table = self.tables.get(table_name)
        outer = getattr(_updating, "keys_only", False)
        _updating.keys_only = table is not None and not _streams_old_images(table)
        try:
            return original_update(self, table_name, *args, **kwargs)
        finally:
            _updating.keys_only = outer

    with (
        patched(dynamodb_models, "copy", _PriorCopy(vars(dynamodb_models)["copy"])),
        patched(DynamoDBBackend, "update_item", update_item),
    ):
        yield
