"""One pump of a queue at a time in a process (`domain/push/pump_turns.py`)."""

from __future__ import annotations

import threading

from mqless.domain.push.pump_turns import PumpAsk, PumpTurns


def _in_another_thread(turns: PumpTurns, queue: str, ask: PumpAsk) -> bool:
    taken: list[bool] = []
    thread = threading.Thread(target=lambda: taken.append(turns.take(queue, ask)))
    thread.start()
    thread.join()
    return taken[0]


def test_a_pump_asked_for_while_another_thread_pumps_is_folded_into_its_next_round() -> None:
    # Given a thread pumping queue q
    turns = PumpTurns()
    assert turns.take("q", PumpAsk(indexed=frozenset({1})))

    # When two other threads ask for pumps of q meanwhile (one for shard 3, one a refill)
    folded = [
        _in_another_thread(turns, "q", PumpAsk(indexed=frozenset({3}))),
        _in_another_thread(turns, "q", PumpAsk(refill=True)),
    ]

    # Then neither runs, and the running pump is asked once more for both: a pump that
    # may lease without looking first, of any shard (a refill's pump reads them all)
    assert folded == [False, False]
    assert turns.done("q") == PumpAsk(indexed=None, refill=True)
    # and after that round nothing is left: the queue is free for the next pump
    assert turns.done("q") is None
    assert _in_another_thread(turns, "q", PumpAsk())


def test_asks_for_pumps_of_some_shards_are_joined_into_one_of_all_of_them() -> None:
    # Given a thread pumping queue q
    turns = PumpTurns()
    assert turns.take("q", PumpAsk())

    # When the dispatch function asks for pumps of what it indexed in shards 2 and 5
    _in_another_thread(turns, "q", PumpAsk(indexed=frozenset({2})))
    _in_another_thread(turns, "q", PumpAsk(indexed=frozenset({5})))

    # Then the next round is one pump of both shards' new messages
    assert turns.done("q") == PumpAsk(indexed=frozenset({2, 5}), refill=False)


def test_a_pump_of_the_same_queue_from_within_a_pump_runs_at_once() -> None:
    # Given a thread pumping queue q, and a pump of another queue in another thread
    turns = PumpTurns()
    assert turns.take("q", PumpAsk())
    assert _in_another_thread(turns, "other", PumpAsk())

    # When the same thread pumps q again from within (and finishes that inner pump)
    inner = turns.take("q", PumpAsk(refill=True))
    inner_done = turns.done("q")

    # Then it ran at once and asked nothing more of the outer pump, whose end frees q
    assert inner is True
    assert inner_done is None
    assert turns.busy_elsewhere("q") is False
    assert turns.done("q") is None
    assert _in_another_thread(turns, "q", PumpAsk())
