"""The conditional writes of index segments, shared by standard and FIFO queues: the
updates that lease and settle references, one segment's conditional update, the floor.

Leases and settlements are conditional per reference, so two consumers never hold the same
reference, and writes to other references of the same segment never make them fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from mqless.storage import keys
from mqless.storage.dynamo import conditional_write, from_wire, to_wire
from mqless.storage.segments import SETTLED, Hold, Segment, segment_from_item, segment_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import ReturnValueType


SegmentUpdate = tuple[str, str, dict[str, Any]]
"""An UpdateItem of a segment: its update expression, condition and values."""

OPEN_AT_LENGTH: Final = "size(r) = :len AND attribute_not_exists(z)"
"""The condition of an appender's fill or close (standard and FIFO alike): it applies only
to the segment as the appender read it, and never to a closed one: a closed segment's
successor may exist, and a reference appended behind it could already be below the floor,
or behind the dispenser."""


class SegmentChanged(Exception):
    """A conditional write found the segment changed (or, a put, made) since it was read."""


def claim_update(
    slots: Sequence[int],
    settle: Sequence[int],
    now_ms: int,
    until_ms: int,
    token: int,
    acks: Sequence[Hold] = (),
) -> SegmentUpdate:
    """The update, condition and values that lease `slots` of a segment (standard or FIFO)
    under `token` until `until_ms` and settle `settle`, each only while free at `now_ms`,
    and settle `acks` (leases acknowledged in the same request), each only while its lease
    is the one named and not settled. The slots of the three must not overlap."""
    sets: list[str] = []
    conditions: list[str] = []
    values: dict[str, Any] = {":zero": 0, ":now": now_ms}
    if slots:
        values.update({":until": until_ms, ":tok": token, ":one": 1})
    for slot in slots:
        sets.append(f"u[{slot}] = :until, t[{slot}] = :tok, n[{slot}] = n[{slot}] + :one")
        conditions.append(f"u[{slot}] BETWEEN :zero AND :now")
    if settle or acks:
        values[":done"] = SETTLED
    for slot in settle:
        sets.append(f"u[{slot}] = :done")
        conditions.append(f"u[{slot}] BETWEEN :zero AND :now")
    for number, hold in enumerate(acks):
        sets.append(f"u[{hold.slot}] = :done")
        conditions.append(f"t[{hold.slot}] = :a{number} AND u[{hold.slot}] <> :done")
        values[f":a{number}"] = hold.token
    return "SET " + ", ".join(sets), " AND ".join(conditions), values


def holds_update(
    holds: Sequence[Hold], until: int, *, release: bool = False, uncount: bool = False
) -> SegmentUpdate:
    """The update, condition and values that set leased refs of a segment (standard or
    FIFO) to `until` (SETTLED, a new lease end), each only while its lease is the one named
    and not settled. `release` also ends the lease (its receipts go stale); `uncount` also
    takes it back out of the receive count (it delivered to no one)."""
    sets: list[str] = []
    conditions: list[str] = []
    values: dict[str, Any] = {":v": until, ":done": SETTLED}
    if uncount:
        values[":one"] = 1
    if release or uncount:
        values[":none"] = 0
    for index, hold in enumerate(holds):
        sets.append(f"u[{hold.slot}] = :v")
        if release or uncount:
            sets.append(f"t[{hold.slot}] = :none")
        if uncount:
            sets.append(f"n[{hold.slot}] = n[{hold.slot}] - :one")
        conditions.append(f"t[{hold.slot}] = :t{index} AND u[{hold.slot}] <> :done")
        values[f":t{index}"] = hold.token
    return "SET " + ", ".join(sets), " AND ".join(conditions), values


def settle_any_update(slots: Sequence[int]) -> SegmentUpdate:
    """The update, condition and values that settle `slots` whatever their lease (an
    operator's delete or move, a purge), each only while not settled already."""
    return (
        "SET " + ", ".join(f"u[{s}] = :done" for s in slots),
        " AND ".join(f"u[{s}] <> :done" for s in slots),
        {":done": SETTLED},
    )


def update_segment(
    db: DynamoDBClient, table: str, queue: str, shard: int, seq: int, write: SegmentUpdate
) -> Segment:
    """Make `write` to one existing segment of a standard queue's shard; the segment after
    it. Raises SegmentChanged if its condition failed (nothing was written)."""
    item = updated_segment_item(db, table, segment_key(queue, shard, seq), write)
    return segment_from_item(queue, shard, item)


def updated_segment_item(
    db: DynamoDBClient, table: str, key: Mapping[str, Any], write: SegmentUpdate
) -> dict[str, Any]:
    """Make `write` to the existing segment item at `key` (a standard or FIFO one); its
    attributes after it. Raises SegmentChanged if its condition failed or the item is gone
    (nothing was written)."""
    response = _segment_update(db, table, key, write, "ALL_NEW")
    if response is None:
        raise SegmentChanged
    return from_wire(response.get("Attributes", {}))


def segment_written(
    db: DynamoDBClient, table: str, key: Mapping[str, Any], write: SegmentUpdate
) -> bool:
    """`updated_segment_item` for a writer that needs no answer (acks, releases, appends):
    whether the write was made. DynamoDB bills it the same; the item is not sent back, so
    neither serialised nor parsed (a FIFO segment's seven lists, on every ack)."""
    return _segment_update(db, table, key, write) is not None


def _segment_update(
    db: DynamoDBClient,
    table: str,
    key: Mapping[str, Any],
    write: SegmentUpdate,
    answer: ReturnValueType = "NONE",
) -> Any:
    """The conditional UpdateItem of an existing segment both writers make (`answer`: its
    ReturnValues; NONE is DynamoDB's default); None if the condition failed."""
    update, condition, values = write
    return conditional_write(
        db.update_item,
        TableName=table,
        Key=to_wire(key),
        UpdateExpression=update,
        ConditionExpression=f"attribute_exists(pk) AND ({condition})",
        ExpressionAttributeValues=to_wire(values),
        ReturnValues=answer,
    )


def raise_floor(db: DynamoDBClient, table: str, pk: str, to: int) -> bool:
    """Move the floor in the cursor of partition `pk` up to `to`, never down (one
    conditional update); False if it was there already. Standard shards and FIFO queues
    keep their floors alike."""
    raised = conditional_write(
        db.update_item,
        TableName=table,
        Key=to_wire({"pk": pk, "sk": keys.CURSOR}),
        UpdateExpression="SET f = :to",
        ConditionExpression="attribute_not_exists(f) OR f < :to",
        ExpressionAttributeValues=to_wire({":to": to}),
    )
    return raised is not None
