"""The index of storage engine v2: appends in order, exclusive leases, token-checked settling."""

from __future__ import annotations

from typing import Any

import pytest

from mqless.storage import keys
from mqless.storage.index import IndexStore
from mqless.storage.segments import SETTLED, Hold, NewRef, Ref, new_token

NOW = 1_800_000_000_000


@pytest.fixture
def index(dynamodb: Any, settings: Any) -> IndexStore:
    return IndexStore(dynamodb, settings.messages_table)


def _refs(count: int, *, log: str = "L#orders#0", start: int = 0, **extra: Any) -> list[NewRef]:
    return [
        NewRef(
            Ref(log, keys.new_item_id(NOW + start + i), 0),
            expires_at=NOW // 1000 + 3600,
            **extra,
        )
        for i in range(count)
    ]


def test_appended_refs_come_back_in_order_ten_to_a_segment(index: IndexStore) -> None:
    # Given 40 references appended in three stream batches
    refs = _refs(40)
    index.append("orders", 0, refs[:5])
    index.append("orders", 0, refs[5:30])
    index.append("orders", 0, refs[30:])

    # When the index is read from its start
    segments = index.segments("orders", 0, 0, limit=10, consistent=True)

    # Then they are all there, in order, filling each segment before the next
    assert [e.ref for s in segments for e in s.entries] == [r.ref for r in refs]
    assert [len(s.entries) for s in segments] == [10, 10, 10, 10]
    assert [s.seq for s in segments] == [0, 1, 2, 3]


def test_a_retried_batch_appends_nothing_twice(index: IndexStore) -> None:
    # Given a batch already appended
    refs = _refs(20)
    index.append("orders", 0, refs[:12])

    # When the stream hands the whole batch again (a retry), with more after it
    report = index.append("orders", 0, refs)

    # Then only the new references are appended
    assert (report.appended, report.duplicates) == (8, 12)
    segments = index.segments("orders", 0, 0, limit=10, consistent=True)
    assert [e.ref for s in segments for e in s.entries] == [r.ref for r in refs]


def _batch(count: int, *, at: int) -> list[NewRef]:
    """The references of one log item: `count` bodies sent together."""
    item = keys.new_item_id(NOW + at)
    return [NewRef(Ref("L#orders#0", item, j), expires_at=NOW // 1000 + 3600) for j in range(count)]


def test_a_batch_that_does_not_fit_the_tails_room_starts_a_segment_of_its_own(
    index: IndexStore,
) -> None:
    # Given a segment holding three messages sent one by one
    index.append("orders", 0, _refs(3))

    # When a batch of ten sent together is appended, then another
    first, second = _batch(10, at=100), _batch(10, at=200)
    index.append("orders", 0, first)
    index.append("orders", 0, second)

    # Then neither batch is split over two segments (a receive of one leases it with one
    # write, an ack settles it with one): the first segment is closed with its three
    segments = index.segments("orders", 0, 0, limit=10, consistent=True)
    assert [len(s.entries) for s in segments] == [3, 10, 10]
    assert [s.closed for s in segments] == [True, False, False]
    assert [e.ref for e in segments[1].entries] == [r.ref for r in first]
    assert [e.ref for e in segments[2].entries] == [r.ref for r in second]


def test_a_closed_segment_takes_nothing_more_so_its_successor_stays_after_it(
    index: IndexStore,
) -> None:
    # Given a segment closed by a batch that did not fit its room (the batch went on to the
    # next segment)
    index.append("orders", 0, _refs(3))
    index.append("orders", 0, _batch(10, at=100))
    [stale] = index.segments("orders", 0, 0, limit=1, consistent=True)

    # When an appender that read the first segment before it was closed fills it (a topic's
    # dispatch invocation racing the queue's own): its write is refused, and it appends at
    # the tail instead
    late = _refs(2, start=500)
    open_view = type(stale)(stale.queue, stale.shard, stale.seq, stale.entries, logs=stale.logs)
    with pytest.raises(Exception) as refused:
        index._appender._fill(open_view, late)
    assert type(refused.value).__name__ == "_Contended"
    report = index.append("orders", 0, late)

    # Then the closed segment still holds its three, and the late references follow the batch
    segments = index.segments("orders", 0, 0, limit=10, consistent=True)
    assert [len(s.entries) for s in segments] == [3, 10, 2]
    assert [e.ref for e in segments[2].entries] == [r.ref for r in late]
    assert report.segments == [2]


def test_a_batch_larger_than_a_segment_fills_segments_whole(index: IndexStore) -> None:
    # Given an empty index
    # When a log item of 16 bodies is appended (the most one holds)
    index.append("orders", 0, _batch(16, at=0))

    # Then it fills one segment and starts the next, which takes later messages too
    index.append("orders", 0, _refs(2, start=100))
    segments = index.segments("orders", 0, 0, limit=10, consistent=True)
    assert [len(s.entries) for s in segments] == [10, 8]
    assert not any(s.closed for s in segments)


def test_refs_from_several_logs_share_a_segment(index: IndexStore) -> None:
    # Given references into a topic's log and a queue's own log, alternating
    refs = [*_refs(2, log="T#shop.orders#1"), *_refs(2, log="L#orders#0", start=5)]
    # When they are appended to one shard, in two batches
    index.append("orders", 0, refs[:1])
    index.append("orders", 0, refs[1:])

    # Then each keeps its log
    (segment,) = index.segments("orders", 0, 0, consistent=True)
    assert [e.ref.log for e in segment.entries] == [r.ref.log for r in refs]


def test_a_delayed_ref_is_not_free_before_its_time(index: IndexStore) -> None:
    # Given a reference appended to be visible only in 5 s
    index.append("orders", 0, _refs(1, visible_at=NOW + 5_000))
    # When its segment is read
    (segment,) = index.segments("orders", 0, consistent=True)
    (entry,) = segment.entries
    # Then the reference is not free now, and free at its time
    assert not entry.free_at(NOW)
    assert entry.free_at(NOW + 5_000)


def test_two_consumers_never_lease_the_same_ref(index: IndexStore) -> None:
    # Given one free reference seen by two consumers
    index.append("orders", 0, _refs(3))
    (seen,) = index.segments("orders", 0, consistent=True)

    # When both try to lease it
    first = index.claim(seen, [1], now_ms=NOW, until_ms=NOW + 30_000, token=new_token())
    second = index.claim(seen, [1], now_ms=NOW, until_ms=NOW + 30_000, token=new_token())

    # Then only the first gets it, and its receive count is 1
    assert first is not None and second is None
    assert first.entries[1].count == 1 and first.entries[1].until == NOW + 30_000


def test_leases_of_other_refs_of_a_segment_do_not_collide(index: IndexStore) -> None:
    # Given a segment of three free references, as one consumer read it
    index.append("orders", 0, _refs(3))
    (seen,) = index.segments("orders", 0, consistent=True)
    # When the first and then the third are leased from that same reading
    # Then both leases succeed
    assert index.claim(seen, [0], now_ms=NOW, until_ms=NOW + 1000, token=new_token())
    assert index.claim(seen, [2], now_ms=NOW, until_ms=NOW + 1000, token=new_token())


def test_an_ack_with_the_current_token_settles_and_a_stale_one_does_nothing(
    index: IndexStore,
) -> None:
    # Given a reference leased, its lease run out, and leased again by someone else
    index.append("orders", 0, _refs(1))
    (seen,) = index.segments("orders", 0, consistent=True)
    old, new = new_token(), new_token()
    leased = index.claim(seen, [0], now_ms=NOW, until_ms=NOW + 1000, token=old)
    assert leased is not None
    again = index.claim(leased, [0], now_ms=NOW + 2000, until_ms=NOW + 9000, token=new)
    assert again is not None and again.entries[0].count == 2

    # When the first holder acks late
    stale = index.set_until("orders", 0, 0, [Hold(0, old)], SETTLED)

    # Then nothing changes; the current holder's ack settles it
    assert not stale
    assert index.set_until("orders", 0, 0, [Hold(0, new)], SETTLED)
    assert index.segments("orders", 0, consistent=True)[0].entries[0].settled
    assert not index.set_until("orders", 0, 0, [Hold(0, new)], SETTLED)  # twice: stale


def test_a_released_ref_is_free_again_at_once_or_after_a_delay(index: IndexStore) -> None:
    # Given two references leased for 30 s
    index.append("orders", 0, _refs(2))
    (seen,) = index.segments("orders", 0, consistent=True)
    token = new_token()
    assert index.claim(seen, [0, 1], now_ms=NOW, until_ms=NOW + 30_000, token=token)

    # When the first is released at once and the second to be free again in 10 ms
    at_once = index.set_until("orders", 0, 0, [Hold(0, token)], NOW)
    delayed = index.set_until("orders", 0, 0, [Hold(1, token)], NOW + 10)
    # Then the first is free now, and the second not before 10 ms, and free from then
    assert at_once and delayed
    (delayed,) = index.segments("orders", 0, consistent=True)
    assert delayed.entries[0].free_at(NOW)
    assert not delayed.entries[1].free_at(NOW) and delayed.entries[1].free_at(NOW + 10)


def test_the_floor_only_moves_forward(index: IndexStore) -> None:
    # Given a shard whose floor is 0
    assert index.floor("orders", 0) == 0
    # When the floor is advanced to 3, then back to 2
    # Then the first moves it, the second is refused, and the floor stays 3
    assert index.advance_floor("orders", 0, 3)
    assert not index.advance_floor("orders", 0, 2)
    assert index.floor("orders", 0, consistent=True) == 3
