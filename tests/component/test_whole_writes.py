"""Whole-segment lease writes (`storage/whole_writes.py`): a receive that takes a whole
segment, and the ack that settles it, are written as lists at once, with exactly the
outcome the per-reference writes have."""

from __future__ import annotations

from typing import Any

import pytest

from mqless.storage import keys
from mqless.storage.index import IndexStore
from mqless.storage.segments import SETTLED, Entry, Hold, NewRef, Ref, Segment, new_token
from mqless.storage.whole_writes import whole_claim, whole_holds

NOW = 1_800_000_000_000
LEASE = 30_000


@pytest.fixture
def index(dynamodb: Any, settings: Any) -> IndexStore:
    return IndexStore(dynamodb, settings.messages_table)


def _full_segment(index: IndexStore, count: int = 10) -> Segment:
    refs = [
        NewRef(Ref("L#orders#0", keys.new_item_id(NOW + i), 0), expires_at=NOW // 1000 + 3600)
        for i in range(count)
    ]
    index.append("orders", 0, refs)
    return index.segments("orders", 0, consistent=True)[0]


def _stored(index: IndexStore) -> Segment:
    return index.segments("orders", 0, consistent=True)[0]


def _take_all(index: IndexStore, seen: Segment, token: int) -> Segment | None:
    slots = [e.slot for e in seen.entries]
    return index.claim(seen, slots, now_ms=NOW, until_ms=NOW + LEASE, token=token)


def test_a_receive_of_a_whole_segment_is_one_comparison_per_list() -> None:
    # Given a full segment read with every reference free
    refs = [Ref("L#orders#0", f"i{n}", 0) for n in range(10)]
    seen = Segment(
        "orders",
        0,
        0,
        tuple(Entry(n, ref, until=0, token=0, count=0) for n, ref in enumerate(refs)),
    )

    # When a receive takes all of it
    made = whole_claim(seen, list(range(10)), (), NOW, NOW + LEASE, token=7)

    # Then the write compares and sets the three lists, not each reference
    assert made is not None
    (update, condition, _), _ = made
    assert (update, condition) == ("SET u = :u, t = :t, n = :n", "u = :ou AND t = :ot AND n = :on")
    assert whole_holds([Hold(n, 7) for n in range(10)], SETTLED) is not None


def test_a_whole_claim_leaves_what_the_per_reference_claim_would_and_knows_it(
    index: IndexStore,
) -> None:
    # Given a full segment, one of its references expired
    seen = _full_segment(index)

    # When a receive takes nine and settles the expired one in one write
    token = new_token()
    after = index.claim(
        seen, list(range(1, 10)), now_ms=NOW, until_ms=NOW + LEASE, token=token, settle=[0]
    )

    # Then the segment it answers is the one stored: nine leased once, one settled
    assert after == _stored(index)
    assert after is not None and after.entries[0].settled
    assert all((e.until, e.token, e.count) == (NOW + LEASE, token, 1) for e in after.entries[1:])


def test_a_whole_claim_on_a_stale_read_leases_nothing(index: IndexStore) -> None:
    # Given two receivers that read the same full segment, and the first took all of it
    seen = _full_segment(index)
    first = _take_all(index, seen, new_token())
    assert first is not None

    # When the second claims it from its read
    second = _take_all(index, seen, new_token())

    # Then it gets nothing and the first's leases stand
    assert second is None
    assert _stored(index) == first


def test_a_claim_beside_another_consumers_leases_is_not_failed_by_their_ack(
    index: IndexStore,
) -> None:
    # Given a full segment, half of it leased by a consumer, read by a second consumer
    seen = _full_segment(index)
    token = new_token()
    assert index.claim(seen, [0, 1, 2, 3, 4], now_ms=NOW, until_ms=NOW + LEASE, token=token)
    read = _stored(index)

    # When the first acks its half before the second claims the other half from its read
    assert index.set_until("orders", 0, 0, [Hold(n, token) for n in range(5)], SETTLED)
    taken = index.claim(read, [5, 6, 7, 8, 9], now_ms=NOW, until_ms=NOW + LEASE, token=9)

    # Then the second's claim is made all the same (their writes touch other references)
    assert taken is not None
    assert [e.settled for e in _stored(index).entries] == [True] * 5 + [False] * 5


def test_an_ack_of_a_whole_segment_settles_every_reference(index: IndexStore) -> None:
    # Given a full segment taken whole by one receive
    token = new_token()
    assert _take_all(index, _full_segment(index), token)

    # When its ten receipts are acked together
    acked = index.set_until("orders", 0, 0, [Hold(n, token) for n in range(10)], SETTLED)

    # Then every reference is settled
    assert acked and _stored(index).settled


def test_an_ack_of_a_whole_segment_with_one_lease_taken_over_settles_nothing(
    index: IndexStore,
) -> None:
    # Given a segment taken whole, one of whose leases ran out and was taken by another
    token = new_token()
    taken = _take_all(index, _full_segment(index), token)
    assert taken is not None
    later = NOW + LEASE + 1
    assert index.claim(taken, [3], now_ms=later, until_ms=later + LEASE, token=99)
    before = _stored(index)

    # When the first receiver acks all ten
    acked = index.set_until("orders", 0, 0, [Hold(n, token) for n in range(10)], SETTLED)

    # Then nothing changes (the stale receipt is found one at a time by the caller)
    assert not acked
    assert _stored(index) == before


def test_an_ack_of_a_whole_segment_with_one_settled_already_settles_nothing(
    index: IndexStore,
) -> None:
    # Given a segment taken whole, one of whose receipts was acked already
    token = new_token()
    assert _take_all(index, _full_segment(index), token)
    assert index.set_until("orders", 0, 0, [Hold(4, token)], SETTLED)
    before = _stored(index)

    # When all ten are acked together
    acked = index.set_until("orders", 0, 0, [Hold(n, token) for n in range(10)], SETTLED)

    # Then nothing changes: that one is no longer a lease to settle
    assert not acked
    assert _stored(index) == before


def test_a_release_of_a_whole_segment_frees_it_and_ends_its_receipts(index: IndexStore) -> None:
    # Given a segment taken whole
    token = new_token()
    assert _take_all(index, _full_segment(index), token)

    # When all ten are released (a nack)
    released = index.set_until(
        "orders", 0, 0, [Hold(n, token) for n in range(10)], NOW, release=True
    )

    # Then all are free now, and their receipts are stale
    assert released
    assert all(e.free_at(NOW) for e in _stored(index).entries)
    assert not index.set_until("orders", 0, 0, [Hold(0, token)], SETTLED)


def test_a_segment_that_may_still_grow_is_claimed_per_reference(index: IndexStore) -> None:
    # Given a segment of four references, not closed (more may be appended)
    seen = _full_segment(index, count=4)

    # When a receive takes all four, then four more are appended
    assert whole_claim(seen, [0, 1, 2, 3], (), NOW, NOW + LEASE, token=5) is None
    assert _take_all(index, seen, new_token())

    # Then the claim stands and the new ones are free
    index.append(
        "orders",
        0,
        [
            NewRef(Ref("L#orders#0", keys.new_item_id(NOW + 50 + i), 0), expires_at=NOW)
            for i in range(4)
        ],
    )
    assert [e.free_at(NOW) for e in _stored(index).entries] == [False] * 4 + [True] * 4
