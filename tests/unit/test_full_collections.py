"""`mqless dev`'s full garbage collections walk only what is new since the last one."""

from __future__ import annotations

import gc
import weakref

from mqless_cli.local.full_collections import survivors_frozen


class Stored:
    """Stands for one of moto's stored values (a `DynamoType`: an object the collector tracks)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.cycle: object = None


def _walked(objects: list[Stored]) -> int:
    """How many of these objects a collection would walk."""
    ids = {id(o) for o in objects}
    return sum(1 for o in gc.get_objects() if id(o) in ids)


def test_what_survived_a_full_collection_is_not_walked_by_the_next() -> None:
    """Given mqless dev's policy and a thousand stored values that survived a full collection
    When later full collections run
    Then none of those values is walked again (a pause no longer grows with what is kept),
    and without the policy every one of them would be
    """
    with survivors_frozen():
        kept = [Stored(str(n)) for n in range(1000)]
        gc.collect()
        assert _walked(kept) == 0
        gc.collect()
        assert _walked(kept) == 0
    plain = [Stored(str(n)) for n in range(1000)]
    gc.collect()
    assert _walked(plain) == 1000


def test_what_is_frozen_is_still_freed_and_new_cycles_still_collected() -> None:
    """Given mqless dev's policy and a stored value that survived a full collection
    When its last reference goes, and a reference cycle made afterwards is dropped
    Then the value is freed at once, and the next full collection frees the cycle
    """
    with survivors_frozen():
        stored = Stored("item")
        gc.collect()
        gone = weakref.ref(stored)
        del stored
        assert gone() is None
        cycle = Stored("a")
        cycle.cycle = cycle
        dropped = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert dropped() is None


def test_the_policy_ends_with_its_block() -> None:
    """Given mqless dev's policy, entered and left (the runtime stopped)
    When a full collection runs
    Then what survives it is walked as before, and the collector's hooks are as they were
    """
    hooks = list(gc.callbacks)
    with survivors_frozen():
        pass
    after = [Stored(str(n)) for n in range(100)]
    gc.collect()
    assert _walked(after) == 100
    assert gc.callbacks == hooks
