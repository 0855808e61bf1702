"""Two receivers of one process whose looks overlap: each, having looked, waits (a second at
most) for the other to have looked too before it claims what it found."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mqless.domain.access.principals import Principal
from mqless.domain.messages import Delivery
from mqless.domain.queues.service import QueueService


def meet_between_look_and_claim(
    monkeypatch: pytest.MonkeyPatch, owner: type, method: str, *, after: bool
) -> None:
    """Patch `owner.method` so two callers meet there: `after` the call when it is the look
    (the caller's claim comes next), else before it when it is the claim."""
    both_looked = threading.Barrier(2, timeout=1)
    original = getattr(owner, method)

    def meet() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # the other did not look
            both_looked.wait()

    def meeting(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not after:
            meet()
        result = original(self, *args, **kwargs)
        if after:
            meet()
        return result

    monkeypatch.setattr(owner, method, meeting)


def receive_at_once(broker: QueueService, principal: Principal, queue: str) -> list[Delivery]:
    """What two receivers, each asking for up to ten at the same moment, received."""

    def receive(_: int) -> list[Delivery]:
        return broker.receive(principal, queue, max_messages=10)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return [d for ds in pool.map(receive, range(2)) for d in ds]
