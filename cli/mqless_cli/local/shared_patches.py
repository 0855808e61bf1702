"""Patches that many overlapping blocks share: on with the first block, off with the last.

Two local clouds in one process (or a test's moto beside a runtime's) each ask for the same
process-wide patches; neither may take them off while the other still runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager


class SharedPatches:
    """Applies `patches` (context manager factories, in order) once for every overlapping
    `applied()` block, whatever order the blocks start and end in."""

    def __init__(self, *patches: Callable[[], AbstractContextManager[object]]) -> None:
        self._patches = patches
        self._lock = threading.Lock()
        self._users = 0
        self._stack: ExitStack | None = None

    @contextmanager
    def applied(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                stack = ExitStack()
                for patch in self._patches:
                    stack.enter_context(patch())
                self._stack = stack
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._stack is not None:
                    self._stack.close()
                    self._stack = None
