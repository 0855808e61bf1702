"""A priority queue's lane marks: which lanes are in use, which a receiver found empty.

`pk = I#<queue>#0`, `sk = P`: per lane, `a<lane>` when an appender last marked it in use (ms)
and `e<lane>` when a receiver last marked it empty. Receives skip a lane marked empty after
its last use, so an idle priority costs no read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from mqless.storage import keys
from mqless.storage.dynamo import conditional_write, from_wire, to_wire, translated_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class LaneMarks:
    """A priority queue's lane marks: per lane, when an appender last marked it in use
    (ms) and when a receiver last found it empty (ms; 0: never). A lane is skipped by
    receives while it is marked empty after its last use (`empty_after_use`)."""

    used: dict[int, int] = field(default_factory=dict)
    emptied: dict[int, int] = field(default_factory=dict)

    def skippable(self, lane: int) -> bool:
        return self.emptied.get(lane, 0) > self.used.get(lane, 0)


LANE_MARK_EVERY_MS: Final = 5 * 60_000
"""An appender marks a lane in use before appending to it when its mark is older than 5
minutes (or the lane is marked empty): one write per lane per 5 minutes, whatever the
traffic, and a read of the marks per stream batch."""
LANE_QUIET_MS: Final = 2 * LANE_MARK_EVERY_MS
"""A receiver marks a lane empty only when no appender has marked it for this long: every
append since was then made over 5 minutes before the receiver's read, which shows it."""


def read_lane_marks(db: DynamoDBClient, table: str, queue: str) -> LaneMarks:
    """A priority queue's lane marks, strongly consistent (1 RRU): a mark written
    before an append must be seen by the receive the append wakes."""
    with translated_errors():
        found = db.get_item(
            TableName=table,
            Key=to_wire({"pk": keys.index_partition(queue, 0), "sk": keys.LANE_MARKS}),
            ConsistentRead=True,
        )
    item = from_wire(found.get("Item", {}))
    marks = LaneMarks()
    for name, value in item.items():
        if name[:1] in ("a", "e") and name[1:].isdigit():
            into = marks.used if name[0] == "a" else marks.emptied
            into[int(name[1:])] = int(value)
    return marks


def mark_lane_used(db: DynamoDBClient, table: str, queue: str, lane: int, now_ms: int) -> None:
    """Mark a lane in use (before appending to it): one unconditional write."""
    with translated_errors():
        db.update_item(
            TableName=table,
            Key=to_wire({"pk": keys.index_partition(queue, 0), "sk": keys.LANE_MARKS}),
            UpdateExpression=f"SET a{lane} = :now",
            ExpressionAttributeValues=to_wire({":now": now_ms}),
        )


def mark_lane_empty(db: DynamoDBClient, table: str, queue: str, lane: int, used_seen: int) -> bool:
    """Mark a lane empty: only while its in-use mark is still `used_seen` (0: none),
    so that an appender's mark since wins (False). The empty mark is `used_seen + 1`,
    not a clock: any later in-use mark is higher, whatever the clocks."""
    if used_seen:
        condition, values = f"a{lane} = :seen", {":seen": used_seen, ":e": used_seen + 1}
    else:
        condition, values = f"attribute_not_exists(a{lane})", {":e": 1}
    marked = conditional_write(
        db.update_item,
        TableName=table,
        Key=to_wire({"pk": keys.index_partition(queue, 0), "sk": keys.LANE_MARKS}),
        UpdateExpression=f"SET e{lane} = :e",
        ConditionExpression=condition,
        ExpressionAttributeValues=to_wire(values),
    )
    return marked is not None
