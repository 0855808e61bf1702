"""Schedules: messages to send later (docs/scheduled-delivery.md), in the messages table.

- schedule  `pk = J#<destination>`, `sk = <due ms>#<schedule id>`: the sealed body (`b`,
            bound to the destination and the schedule id, as a log item's body is to its
            message id) with its KMS-encrypted data key inline (`dk`: a cron schedule may
            live longer than a data key item, `storage/log.py`), the FIFO group (`g`), each
            delivery's TTL (`t`), the schedule's rule (`d` delay ms, `p` period ms, `r`
            repeat, `c` cron) and where in it this item is (`a` anchor: the send or cron
            time the delays count from, `k` the repeat this item delivers), `x` its expiry.
- cursor    `pk = J`, `sk = <destination>`: `f` the highest schedule key fired, `l` until
            when a sweeper holds the destination (one fires it at a time).

A schedule is never rewritten in place: firing one moves the cursor past it (DynamoDB's TTL
deletes it later, for free), and a repeating one is put again under its next due time.
The stream filter passes only log and wake items: nothing here wakes the dispatch function.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mqless.storage import keys
from mqless.storage.dynamo import (
    Item,
    conditional_write,
    from_wire,
    put_if_absent,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEEP_FIRED_SECONDS: Final = 2 * 24 * 60 * 60  # a fired schedule waits for TTL this long


@dataclass(frozen=True)
class Rule:
    """When a schedule delivers: `repeat + 1` times, `period_ms` apart, `delay_ms` after its
    anchor (the send time, or each time `cron` fires)."""

    delay_ms: int = 0
    period_ms: int = 0
    repeat: int = 0
    cron: str | None = None


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule as stored: one pending delivery of a sealed message."""

    destination: str  # /queue/<name> or /topic/<name>
    schedule_id: str
    due_ms: int
    body: bytes
    encrypted_key: bytes
    rule: Rule
    anchor_ms: int
    index: int  # which of the anchor's repeats this is (0: the first)
    group: str | None = None
    ttl_seconds: int | None = None

    @property
    def sort_key(self) -> str:
        return keys.schedule_key(self.due_ms, self.schedule_id)


class ScheduleStore:
    """DynamoDB adapter for schedules and their cursors; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name
        self._cursors_known: set[str] = set()

    # ---- schedules ----------------------------------------------------------------------

    def put(self, schedule: StoredSchedule) -> None:
        """Write a schedule (the first, or the next due time of a repeating one). The
        destination's cursor is made first, once per process, so a sweeper finds it."""
        self._ensure_cursor(schedule.destination)
        rule = schedule.rule
        item: dict[str, Any] = {
            "pk": keys.schedule_partition(schedule.destination),
            "sk": schedule.sort_key,
            "b": schedule.body,
            "dk": schedule.encrypted_key,
            "a": schedule.anchor_ms,
            "x": schedule.due_ms // 1000 + KEEP_FIRED_SECONDS,
        }
        optional = {
            "d": rule.delay_ms,
            "p": rule.period_ms,
            "r": rule.repeat,
            "k": schedule.index,
            "c": rule.cron,
            "g": schedule.group,
            "t": schedule.ttl_seconds,
        }
        item.update({name: value for name, value in optional.items() if value})
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(item))

    def pending(
        self, destination: str, *, after: str, until_ms: int | None = None, consistent: bool = False
    ) -> Iterator[StoredSchedule]:
        """A destination's schedules past the cursor `after`, due by `until_ms` (None: all),
        in due order."""
        names = {"#pk": "pk", "#sk": "sk"}
        # a key condition takes no empty string: every schedule key sorts at or above "0"
        values: dict[str, Any] = {
            ":pk": keys.schedule_partition(destination),
            ":after": after or "0",
        }
        condition = "#pk = :pk AND #sk > :after"
        if until_ms is not None:
            condition = "#pk = :pk AND #sk BETWEEN :after AND :until"
            values[":until"] = keys.due_bound(until_ms)
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_wire(values),
            "ConsistentRead": consistent,
        }
        while True:
            with translated_errors():
                page = self._db.query(**request)
            for raw in page.get("Items", []):
                item = from_wire(raw)
                if str(item["sk"]) != after:  # BETWEEN includes the cursor's own key
                    yield _schedule(destination, item)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def any_due(self, destination: str, *, after: str, until_ms: int) -> bool:
        """Whether anything past the cursor is due by `until_ms` (eventually consistent, one
        item read: the sweeper's cheap look before it takes the destination)."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :after AND :until",
                ExpressionAttributeValues=to_wire(
                    {
                        ":pk": keys.schedule_partition(destination),
                        ":after": after + "\x00",  # strictly after the cursor
                        ":until": keys.due_bound(until_ms),
                    }
                ),
                Limit=1,
            )
        return bool(page.get("Items"))

    def delete(self, destination: str, sort_key: str) -> None:
        with translated_errors():
            self._db.delete_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.schedule_partition(destination), "sk": sort_key}),
            )

    # ---- cursors ------------------------------------------------------------------------

    def cursors(self) -> list[tuple[str, str]]:
        """(destination, cursor) of every destination that has had schedules."""
        found: list[tuple[str, str]] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_wire({":pk": keys.SCHEDULE_CURSORS}),
        }
        while True:
            with translated_errors():
                page = self._db.query(**request)
            for raw in page.get("Items", []):
                item = from_wire(raw)
                found.append((str(item["sk"]), str(item.get("f", ""))))
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def cursor(self, destination: str) -> str:
        """The highest schedule key fired in a destination ("" before the first)."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": keys.SCHEDULE_CURSORS, "sk": destination}),
                ConsistentRead=True,
            )
        return str(from_wire(found["Item"]).get("f", "")) if "Item" in found else ""

    def hold(self, destination: str, *, now_ms: int, until_ms: int) -> str | None:
        """Take the destination until `until_ms` (None if someone else holds it); the
        cursor as it is now."""
        answer = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire({"pk": keys.SCHEDULE_CURSORS, "sk": destination}),
            UpdateExpression="SET l = :until",
            # an existing cursor only: an update would make one for any name
            ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(l) OR l < :now)",
            ExpressionAttributeValues=to_wire({":until": until_ms, ":now": now_ms}),
            ReturnValues="ALL_NEW",
        )
        if answer is None:
            return None
        return str(from_wire(answer["Attributes"]).get("f", ""))

    def release(self, destination: str, *, held_until: int, fired: str | None) -> None:
        """Let go of the destination, moving its cursor to `fired` (None: unchanged)."""
        update = "REMOVE l"
        values: dict[str, Any] = {":held": held_until}
        if fired is not None:
            update = "SET f = :fired REMOVE l"
            values[":fired"] = fired
        # a failed condition: our hold ran out and another sweeper took over; it goes on
        # from the cursor
        conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire({"pk": keys.SCHEDULE_CURSORS, "sk": destination}),
            UpdateExpression=update,
            ConditionExpression="l = :held",
            ExpressionAttributeValues=to_wire(values),
        )

    def _ensure_cursor(self, destination: str) -> None:
        if destination in self._cursors_known:
            return
        put_if_absent(self._db, self._table, {"pk": keys.SCHEDULE_CURSORS, "sk": destination})
        self._cursors_known.add(destination)


def _schedule(destination: str, item: Item) -> StoredSchedule:
    due_ms, schedule_id = keys.parse_schedule_key(str(item["sk"]))
    cron = item.get("c")
    ttl = item.get("t")
    return StoredSchedule(
        destination=destination,
        schedule_id=schedule_id,
        due_ms=due_ms,
        body=bytes(item.get("b") or b""),
        encrypted_key=bytes(item.get("dk") or b""),
        rule=Rule(
            delay_ms=int(item.get("d", 0)),
            period_ms=int(item.get("p", 0)),
            repeat=int(item.get("r", 0)),
            cron=str(cron) if cron else None,
        ),
        anchor_ms=int(item.get("a", due_ms)),
        index=int(item.get("k", 0)),
        group=str(item["g"]) if item.get("g") else None,
        ttl_seconds=int(ttl) if ttl else None,
    )
