"""An UpdateItem's old image copied and written out only when its answer returns it."""

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
