"""One pump of a queue at a time in a process: a pump asked for while another thread runs
one is folded into it, and that one runs once more when it is done.

Two pumps of one queue at once in one process count the same consumers' credit, lease for
it and race to write their delivery records: the loser gives its leases back (a write per
segment) and its reads were for nothing. `mqless dev` serves the dispatch function and
every WebSocket frame from one process, so under a burst an ack's refill pump and the
dispatch function's pump of a stream batch often overlap. On AWS a Lambda instance serves
one event at a time: nothing is folded there.

A folded pump loses nothing: what it was asked for (the shards just indexed, a refill) is
joined to what the running pump does next, in the running pump's thread, right after it.
The dispatch function's plan (`Feeder.plan_push`) leases nothing in the append while
another thread pumps the queue: its record would race that pump's, and the pump's next
round takes the batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class PumpAsk:
    """What a pump is asked to do: feed after an append to these shards (None: any pump),
    or a refill (an ack's freed credit: no look first)."""

    indexed: frozenset[int] | None = None
    refill: bool = False

    def joined(self, other: PumpAsk) -> PumpAsk:
        """One pump that does what both asked (any pump covers a pump of some shards)."""
        if self.indexed is None or other.indexed is None:
            indexed = None
        else:
            indexed = self.indexed | other.indexed
        return PumpAsk(indexed=indexed, refill=self.refill or other.refill)


@dataclass
class _Running:
    thread: int
    depth: int = 1  # a pump of the same queue called from within one (same thread)
    pending: PumpAsk | None = None


class PumpTurns:
    """The queues a thread of this process is pumping, and what was asked of them meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def take(self, queue: str, ask: PumpAsk) -> bool:
        """Whether this thread pumps the queue now (then it calls `done` after); False when
        another thread pumps it: the ask is folded into that pump's next round."""
        me = threading.get_ident()
        with self._lock:
            running = self._running.get(queue)
            if running is None:
                self._running[queue] = _Running(thread=me)
                return True
            if running.thread == me:
                running.depth += 1
                return True
            running.pending = ask if running.pending is None else running.pending.joined(ask)
            return False

    def done(self, queue: str) -> PumpAsk | None:
        """This thread's pump of the queue is done: what it must do once more (folded asks),
        or None, and the queue is free."""
        with self._lock:
            running = self._running[queue]
            if running.depth > 1:
                running.depth -= 1
                return None
            pending, running.pending = running.pending, None
            if pending is None:
                del self._running[queue]
            return pending

    def leave(self, queue: str) -> None:
        """This thread's pump of the queue stopped short (what was folded into it is
        dropped: the process is going down)."""
        with self._lock:
            running = self._running[queue]
            running.depth -= 1
            if running.depth == 0:
                del self._running[queue]

    def busy_elsewhere(self, queue: str) -> bool:
        """Whether another thread of this process pumps the queue now."""
        with self._lock:
            running = self._running.get(queue)
        return running is not None and running.thread != threading.get_ident()


TURNS = PumpTurns()
"""The process's pump turns (every Feeder of the process shares them)."""
