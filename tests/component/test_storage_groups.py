"""FIFO groups of storage engine v2: order kept through spills, one lease at a time."""

from __future__ import annotations

from typing import Any

import pytest

from mqless.storage import keys
from mqless.storage.groups import GroupStore
from mqless.storage.index import NewRef, Ref, new_token

NOW = 1_800_000_000_000


@pytest.fixture
def groups(dynamodb: Any, settings: Any) -> GroupStore:
    return GroupStore(dynamodb, settings.messages_table)


def _refs(count: int, start: int = 0) -> list[NewRef]:
    return [
        NewRef(Ref("L#pay.fifo#0", keys.new_item_id(NOW + start + i), 0), NOW // 1000 + 60)
        for i in range(count)
    ]


def _drain(groups: GroupStore, name: str) -> list[Ref]:
    """Lease, ack, repeat (taking spills in) until the group is empty; the order seen."""
    seen: list[Ref] = []
    now = NOW
    for _ in range(100):
        group = groups.group("pay.fifo", 0, name)
        assert group is not None
        if not group.refs:
            if not group.waiting_spills:
                return seen
            assert groups.take_spill(group) is not None
            continue
        count = min(3, len(group.refs))
        token = new_token()
        leased = groups.claim(group, count, now_ms=now, until_ms=now + 1000, token=token)
        assert leased is not None
        held = [(i, leased.refs[i].ref) for i in range(count)]
        seen.extend(ref for _, ref in held)
        assert groups.ack(leased, token, held, count) is not None
    raise AssertionError("group never emptied")


def test_a_group_delivers_everything_in_order_through_its_spills(groups: GroupStore) -> None:
    # Given 40 messages of one group appended in batches (more than the item holds)
    refs = _refs(40)
    for start in range(0, 40, 7):
        groups.append("pay.fifo", 0, "acct-7", refs[start : start + 7])

    # When a consumer drains it three at a time
    seen = _drain(groups, "acct-7")

    # Then it saw every message once, in order
    assert seen == [r.ref for r in refs]
    group = groups.group("pay.fifo", 0, "acct-7")
    assert group is not None and group.spilled > 0


def test_a_retried_append_adds_nothing_twice(groups: GroupStore) -> None:
    refs = _refs(5)
    groups.append("pay.fifo", 0, "g", refs[:3])
    assert groups.append("pay.fifo", 0, "g", refs) == 2
    group = groups.group("pay.fifo", 0, "g")
    assert group is not None and [r.ref for r in group.refs] == [r.ref for r in refs]


def test_a_leased_group_cannot_be_leased_again_until_its_lease_ends(groups: GroupStore) -> None:
    groups.append("pay.fifo", 0, "g", _refs(3))
    group = groups.group("pay.fifo", 0, "g")
    assert group is not None
    first = groups.claim(group, 1, now_ms=NOW, until_ms=NOW + 1000, token=new_token())
    assert first is not None
    assert groups.claim(group, 1, now_ms=NOW, until_ms=NOW + 1000, token=new_token()) is None
    assert not first.ready(NOW + 999) and first.ready(NOW + 1000)
    later = groups.claim(first, 1, now_ms=NOW + 1000, until_ms=NOW + 2000, token=new_token())
    assert later is not None and later.refs[0].count == 2


def test_a_partial_ack_keeps_the_group_until_the_rest_is_settled(groups: GroupStore) -> None:
    refs = _refs(4)
    groups.append("pay.fifo", 0, "g", refs)
    group = groups.group("pay.fifo", 0, "g")
    assert group is not None
    token = new_token()
    leased = groups.claim(group, 3, now_ms=NOW, until_ms=NOW + 1000, token=token)
    assert leased is not None

    after_one = groups.ack(leased, token, [(1, refs[1].ref)], 3)
    assert after_one is not None and after_one.leased_at(NOW) and after_one.refs[1].acked

    done = groups.ack(after_one, token, [(0, refs[0].ref), (2, refs[2].ref)], 3)
    assert done is not None and not done.leased_at(NOW)
    assert [r.ref for r in done.refs] == [refs[3].ref]


def test_an_ack_under_an_old_lease_is_refused(groups: GroupStore) -> None:
    refs = _refs(1)
    groups.append("pay.fifo", 0, "g", refs)
    group = groups.group("pay.fifo", 0, "g")
    assert group is not None
    old = new_token()
    leased = groups.claim(group, 1, now_ms=NOW, until_ms=NOW + 10, token=old)
    assert leased is not None
    again = groups.claim(leased, 1, now_ms=NOW + 20, until_ms=NOW + 1000, token=new_token())
    assert again is not None
    assert groups.ack(again, old, [(0, refs[0].ref)], 1) is None
