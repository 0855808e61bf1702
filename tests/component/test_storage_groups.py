"""A FIFO queue's index (storage engine v2, docs/storage-engine.md "FIFO queues"): one
sequence of segments for the whole queue, references tagged with their group, segments
rotating over the queue's shards, each lease and settle one conditional write."""

from __future__ import annotations

from typing import Any

import pytest

from mqless.storage import keys
from mqless.storage.fifo_segments import MAX_REFS, FifoSegment, GroupedRef, group_tag
from mqless.storage.groups import FifoIndex
from mqless.storage.segments import SETTLED, Hold, NewRef, Ref, new_token
from mqless_cli.billing import Meter

NOW = 1_800_000_000_000
QUEUE = "pay.fifo"
SHARDS = 4


@pytest.fixture
def fifo(dynamodb: Any, settings: Any) -> FifoIndex:
    return FifoIndex(dynamodb, settings.messages_table)


def _refs(count: int, group: str = "g", start: int = 0) -> list[GroupedRef]:
    return [
        GroupedRef(
            NewRef(Ref(keys.queue_log(QUEUE, 1), keys.new_item_id(NOW + start + i), 0, "m"), 0),
            group,
        )
        for i in range(count)
    ]


def _all(fifo: FifoIndex) -> list[FifoSegment]:
    return list(fifo.ordered(QUEUE, SHARDS, 0, consistent=True))


def _partition_of(dynamodb: Any, settings: Any, seq: int) -> str:
    found = dynamodb.scan(TableName=settings.messages_table)["Items"]
    [pk] = [i["pk"]["S"] for i in found if i["sk"]["S"] == keys.segment_key(seq)]
    return str(pk)


def test_references_appended_in_stream_batches_come_back_in_order_over_rotating_shards(
    fifo: FifoIndex, dynamodb: Any, settings: Any
) -> None:
    # Given 35 references of two groups appended as stream batches of 7
    refs = [r for i in range(5) for r in _refs(7, group=f"g{i % 2}", start=7 * i)]
    for start in range(0, 35, 7):
        fifo.append(QUEUE, SHARDS, refs[start : start + 7])

    # When the queue's segments are read from the start
    segments = _all(fifo)

    # Then every reference is there once, in the order appended, with its group's tag
    entries = [e for s in segments for e in s.entries]
    assert [e.ref for e in entries] == [r.new.ref for r in refs]
    assert [e.tag for e in entries] == [group_tag(r.group) for r in refs]
    # ... in consecutive segments of at most 10, segment n under the partition key of
    # shard n mod 4
    assert [s.seq for s in segments] == list(range(len(segments)))
    assert all(len(s.entries) <= MAX_REFS for s in segments)
    assert [_partition_of(dynamodb, settings, s.seq) for s in segments] == [
        keys.fifo_partition(QUEUE, s.seq % SHARDS) for s in segments
    ]


def test_a_stream_batch_that_does_not_fit_the_tail_starts_a_segment_of_its_own(
    fifo: FifoIndex,
) -> None:
    # Given a tail segment holding 3 references
    fifo.append(QUEUE, SHARDS, _refs(3))
    # When a stream batch of 10 comes
    report = fifo.append(QUEUE, SHARDS, _refs(10, start=100))
    # Then the tail is closed and the ten go into one new segment (a receive leases all
    # of their heads with one write)
    first, second = _all(fifo)
    assert (len(first.entries), first.full, len(second.entries)) == (3, True, 10)
    assert report.segments == [1]


def test_a_stream_batch_that_leaves_less_room_than_itself_closes_its_segment_at_once(
    fifo: FifoIndex, meter: Meter, settings: Any
) -> None:
    # Given a stream batch of 6 appended to an empty queue (the room left, 4, is less
    # than the batch: the next batch, much like it, would not fit)
    fifo.append(QUEUE, SHARDS, _refs(6))
    before = meter.usage()
    # When the next stream batch of 5 comes
    report = fifo.append(QUEUE, SHARDS, _refs(5, start=100))
    used = meter.usage() - before
    # Then it goes into a new segment with one write, the first one having been closed when
    # it was made (a close of its own was one more write: 2 WRU where 1 does)
    first, second = _all(fifo)
    assert (len(first.entries), first.full, len(second.entries)) == (6, True, 5)
    assert report.segments == [1]
    assert {k: v for k, v in used.requests.items() if "Item" in k} == {
        "dynamodb:BatchGetItem": 1,
        "dynamodb:PutItem": 1,
    }
    assert used.write_units.get(settings.messages_table, 0) == 1


def test_a_retried_stream_batch_appends_nothing_twice(fifo: FifoIndex) -> None:
    # Given five references, the first three already appended
    refs = _refs(5)
    fifo.append(QUEUE, SHARDS, refs[:3])
    # When all five are appended (a retried stream batch)
    report = fifo.append(QUEUE, SHARDS, refs)
    # Then two are appended and three found duplicates: each reference once, in order
    assert (report.appended, report.duplicates) == (2, 3)
    assert [e.ref for s in _all(fifo) for e in s.entries] == [r.new.ref for r in refs]


def test_an_appender_that_remembers_a_deleted_queues_tail_appends_to_the_new_queue(
    fifo: FifoIndex, dynamodb: Any, settings: Any
) -> None:
    # Given an appender (the dispatch function) that appended to a queue, and the queue
    # deleted by another process and made again
    fifo.append(QUEUE, SHARDS, _refs(3))
    FifoIndex(dynamodb, settings.messages_table).drop(QUEUE, 0)
    for shard in range(1, SHARDS):
        FifoIndex(dynamodb, settings.messages_table).drop(QUEUE, shard)
    # When it appends to the new queue
    again = _refs(2, start=500)
    fifo.append(QUEUE, SHARDS, again)
    # Then the new queue's readers find those references from its start
    assert [e.ref for s in _all(fifo) for e in s.entries] == [r.new.ref for r in again]


def test_a_leased_head_cannot_be_leased_again_until_its_lease_ends(fifo: FifoIndex) -> None:
    # Given a group's head, leased for 1 s
    fifo.append(QUEUE, SHARDS, _refs(3))
    [segment] = _all(fifo)
    first = fifo.claim(segment, [0], now_ms=NOW, until_ms=NOW + 1000, token=new_token())
    assert first is not None
    # When another lease is tried during that second, and once it ended
    # Then the first is refused; the head is free exactly when the lease ends, and then leased again
    # (receive count 2)
    assert fifo.claim(segment, [0], now_ms=NOW, until_ms=NOW + 1000, token=new_token()) is None
    assert not first.entries[0].free_at(NOW + 999) and first.entries[0].free_at(NOW + 1000)
    later = fifo.claim(first, [0], now_ms=NOW + 1000, until_ms=NOW + 2000, token=new_token())
    assert later is not None and later.entries[0].count == 2


def test_one_write_leases_the_heads_of_several_groups_and_one_settles_them(
    fifo: FifoIndex,
) -> None:
    # Given one stream batch with the first messages of three groups
    fifo.append(QUEUE, SHARDS, [*_refs(1, "a"), *_refs(1, "b", 10), *_refs(1, "c", 20)])
    [segment] = _all(fifo)
    token = new_token()
    # When one claim takes all three heads, and one write settles them under that lease
    leased = fifo.claim(segment, [0, 1, 2], now_ms=NOW, until_ms=NOW + 1000, token=token)
    assert leased is not None
    holds = [Hold(slot, token) for slot in (0, 1, 2)]
    assert fifo.set_until(QUEUE, SHARDS, segment.seq, holds, SETTLED)
    # Then all three are settled
    [settled] = _all(fifo)
    assert all(e.settled for e in settled.entries)


def test_a_settle_under_an_old_lease_is_refused(fifo: FifoIndex) -> None:
    # Given a reference whose lease ran out and which was leased again under another token
    fifo.append(QUEUE, SHARDS, _refs(1))
    [segment] = _all(fifo)
    old = new_token()
    leased = fifo.claim(segment, [0], now_ms=NOW, until_ms=NOW + 10, token=old)
    assert leased is not None
    again = fifo.claim(leased, [0], now_ms=NOW + 20, until_ms=NOW + 1000, token=new_token())
    assert again is not None
    # When it is settled under the old lease's token
    # Then the settle is refused, and the reference stays unsettled
    assert not fifo.set_until(QUEUE, SHARDS, segment.seq, [Hold(0, old)], SETTLED)
    [now] = _all(fifo)
    assert not now.entries[0].settled


def test_readers_stop_at_a_segment_still_filling(fifo: FifoIndex) -> None:
    # Given a full segment and a tail holding 2
    fifo.append(QUEUE, SHARDS, _refs(MAX_REFS))
    fifo.append(QUEUE, SHARDS, _refs(2, start=100))
    # When the queue's segments are read
    # Then a reader sees both, the tail last, not full
    first, tail = _all(fifo)
    assert (first.full, tail.full, len(tail.entries)) == (True, False, 2)


def test_a_segment_removed_by_its_ttl_behind_the_tail_is_passed_over(
    fifo: FifoIndex, dynamodb: Any, settings: Any
) -> None:
    # Given three full segments and the first of them removed by DynamoDB's TTL (every
    # reference in it long expired)
    for start in range(3):
        fifo.append(QUEUE, SHARDS, _refs(MAX_REFS, start=100 * start))
    dynamodb.delete_item(
        TableName=settings.messages_table,
        Key={"pk": {"S": keys.fifo_partition(QUEUE, 0)}, "sk": {"S": keys.segment_key(0)}},
    )
    # When a reader reads from the start
    segments = _all(fifo)
    # Then it passes over the hole and reads the others
    assert [len(s.entries) for s in segments] == [0, MAX_REFS, MAX_REFS]
