"""Looks that take turns within a process.

Receivers of one process that read a shard's segments (or a FIFO queue's heads) at the same
moment see the same free references and choose among them: the later claims fail (each a
refused write, billed), and a standard queue's receivers that lost a race take tickets for
RACING_MS (`racing.py`), a write and a strongly consistent read more per receive. One after
another, each look reads what the one before it claimed. Looks of other processes still
race, and the claims' conditions still decide.

On AWS a function instance serves one request at a time, so the turns are never waited
for there; under `mqless dev` (every consumer in one process) and in a WebSocket
function's pumps they are. The locks are a fixed set shared by hash, so the memory they take
does not grow with the queues a process has seen (two looks that share a lock by chance
take turns too; nothing else follows).
"""

from __future__ import annotations

import threading
from typing import Final

STRIPES: Final = 64


class Turns:
    """A lock per (queue, shard), from a fixed set."""

    def __init__(self, stripes: int = STRIPES) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]

    def of(self, queue: str, shard: int = 0) -> threading.RLock:
        """The lock a look at this queue's shard (a FIFO queue's heads: shard 0) holds."""
        return self._locks[hash((queue, shard)) % len(self._locks)]
