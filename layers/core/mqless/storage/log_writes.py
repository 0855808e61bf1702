"""Writing a send's log items in as few requests as their order allows (`LogStore.put_many`).

A BatchWriteItem bills each item as its own PutItem but orders nothing among its items,
and a FIFO group's messages must reach its log shard's stream in the order they were
sent: so a round holds at most one item of a log partition, and the next round starts
once it is written. A send that fails learns which items were certainly not written
(DynamoDB answered with an error, or left them unprocessed, or their round was never
tried), so that it can release their dedup records (`sending.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from mqless.domain.errors import MqlessError, Throttled
from mqless.storage.dynamo import translated_errors


def write_in_rounds(
    db: Any,
    table: str,
    items: Sequence[tuple[str, Mapping[str, Any]]],
    unwritten: Callable[[set[str]], None],
) -> None:
    """Write wire-format items, each with its partition, in the order given (one PutItem
    for a round of one, else one BatchWriteItem); if a write fails, `unwritten` hears the
    sort keys of the items certainly not written before the error is raised."""
    rounds: list[list[Mapping[str, Any]]] = []
    taken: dict[str, int] = {}  # partition: rounds it has an item in
    for partition, item in items:
        number = taken.get(partition, 0)
        taken[partition] = number + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(item)
    for number, round_items in enumerate(rounds):
        later = {_sort_key(i) for r in rounds[number + 1 :] for i in r}
        try:
            _write_round(db, table, round_items)
        except _Refused as refused:
            unwritten(refused.items | later)
            raise refused.error from refused.error.__cause__
        except Exception:
            unwritten(later)  # this round's may or may not have been written
            raise


def _write_round(db: Any, table: str, items: list[Mapping[str, Any]]) -> None:
    """Write items of distinct partitions (one PutItem, or one BatchWriteItem retrying
    what DynamoDB leaves unprocessed); `_Refused` names those it refused outright."""
    if len(items) == 1:
        try:
            with translated_errors():
                db.put_item(TableName=table, Item=items[0])
        except (ClientError, MqlessError) as exc:  # an error answer: nothing written
            raise _Refused({_sort_key(items[0])}, exc) from exc
        return
    pending: dict[str, Any] = {table: [{"PutRequest": {"Item": i}} for i in items]}
    for attempt in range(8):
        try:
            with translated_errors():
                response = db.batch_write_item(RequestItems=pending)
        except (ClientError, MqlessError) as exc:  # an error answer: nothing written
            raise _Refused(_pending_keys(pending), exc) from exc
        pending = response.get("UnprocessedItems") or {}
        if not pending:
            return
        time.sleep(min(0.05 * 2**attempt, 1.0))
    throttled = Throttled("DynamoDB left writes unprocessed; retry shortly")
    raise _Refused(_pending_keys(pending), throttled)


class _Refused(Exception):
    """A write DynamoDB answered with an error or left unprocessed: `items` not written."""

    def __init__(self, items: set[str], error: Exception) -> None:
        super().__init__(str(error))
        self.items = items
        self.error = error


def _sort_key(item: Mapping[str, Any]) -> str:
    return str(item["sk"]["S"])


def _pending_keys(pending: Mapping[str, Any]) -> set[str]:
    return {_sort_key(r["PutRequest"]["Item"]) for rs in pending.values() for r in rs}
