"""A queue's shard cursors read together (the sweep's round), as each would be read alone."""

from __future__ import annotations

from typing import Any

import pytest

from mqless.storage.index import IndexStore
from mqless.storage.segments import Cursor
from tests.call_counts import count_calls


@pytest.fixture
def index(dynamodb: Any, settings: Any) -> IndexStore:
    return IndexStore(dynamodb, settings.messages_table)


def test_shard_cursors_read_together_are_those_read_one_by_one(
    index: IndexStore, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue whose shards 2 and 5 have floors, and whose other shards have no cursor
    assert index.advance_floor("orders", 2, 7)
    assert index.advance_floor("orders", 5, 3)
    requests = count_calls(monkeypatch, dynamodb, "batch_get_item")
    # When the cursors of its eight shards are read together
    together = index.cursors("orders", range(8))
    # Then they are what reading each alone gives (a shard without one: a new cursor), in
    # one request
    assert together == {shard: index.cursor("orders", shard) for shard in range(8)}
    assert together[2].floor == 7 and together[0] == Cursor()
    assert requests() == 1


class _LeavesOneUnprocessed:
    """DynamoDB answering a BatchGetItem with one key it could not process, every time."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        table, request = next(iter(RequestItems.items()))
        kept, left = request["Keys"][:-1], request["Keys"][-1:]
        answer: dict[str, Any] = {"Responses": {table: []}}
        if kept:
            answer = self._real.batch_get_item(RequestItems={table: {**request, "Keys": kept}})
        return {**answer, "UnprocessedKeys": {table: {**request, "Keys": left}}}


def test_a_shard_cursor_left_unprocessed_is_not_answered_as_a_new_one(
    dynamodb: Any, settings: Any
) -> None:
    # Given a queue whose last shard has a floor, and DynamoDB leaving that key unprocessed
    # however often it is asked
    assert IndexStore(dynamodb, settings.messages_table).advance_floor("orders", 3, 9)
    index = IndexStore(_LeavesOneUnprocessed(dynamodb), settings.messages_table)  # type: ignore[arg-type]
    # When the queue's four cursors are read together
    together = index.cursors("orders", range(4))
    # Then that shard is left out (its reader reads it alone), not taken for a floor of 0
    assert sorted(together) == [0, 1, 2]
