"""`mqless dev`'s full garbage collections walk only what is new since the last one.

What the embedded AWS stores lives as long as the process: every item of every table is a
moto `Item` of `DynamoType`s (one per attribute and list element: some forty objects the
collector tracks per message sent), and the query orderings keep their keys. CPython's full
collection walks every tracked object each time; it runs about as often as the tracked set
grows by a quarter, so each one takes longer as history grows, and it runs inside whatever
request allocated last, holding the request lock (`moto_fixes.atomic_requests`) while every
other request waits: stompjs runs of 500, 2,000 and 10,000 messages in one `mqless dev` left
490,000 tracked objects, and requests that held the lock 0.8 s, 0.78 s of it collecting.

`survivors_frozen` moves what survives each full collection into the permanent generation
(`gc.freeze()`), as the runtime's start does once for the modules and moto's backends: the
next full collection walks only what was made since. What is frozen is still freed when its
last reference goes (stored items and their values hold no cycles); only a reference cycle
that was alive at a full collection and dies later is left to the process's end, which
Python's own `gc.freeze` documentation accepts for the same purpose. Deployed functions
freeze their own start-up in the same way (`mqless/start_up.py`, in Lambda only).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _freeze_after_full(phase: str, info: dict[str, Any]) -> None:
    """A `gc.callbacks` hook: after a full collection, freeze what survived it."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


@contextmanager
def survivors_frozen() -> Iterator[None]:
    """While the block runs, what survives a full collection is not walked by the next."""
    gc.callbacks.append(_freeze_after_full)
    try:
        yield
    finally:
        gc.callbacks.remove(_freeze_after_full)
