"""The messages table: how queue messages, FIFO groups and dedup records are kept in DynamoDB.

Layout (one partition per queue, `pk = Q#<queue>`):
- standard message  `sk = M#<message id>`; `vq` + `visible_at` put it in the
  `by_visibility` index. `visible_at` is the moment it may be leased: send time plus
  delay, or the end of the current lease. A lease that runs out therefore needs no write
  to make the message visible again: the index already sorts it among the visible ones.
- FIFO message      `sk = M#<len>:<group>#<seq>`, not indexed. Its group's item
  `sk = G#<group>` is what the index holds: leasing the group is what makes at most
  one message of a group in flight, and the head (lowest seq) is always the one delivered.
- dedup record      `sk = D#<record id>`, the message id it stood for, kept 5 minutes;
  the record id is a keyed hash of the dedup id (`dedup.py`), never the id or a body hash.
- wake marker       `sk = W#<time>#<random>`: written only for its stream record, which
  asks the dispatch function to feed the queue's push consumers again (`wake`).

Every lease is a conditional write, so two receivers never hold the same message.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from mqless.dynamo import (
    Item,
    batch_write,
    cancellation_codes,
    from_wire,
    is_condition_failure,
    to_wire,
    translated_errors,
)
from mqless.ids import is_ascii_digits

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

INDEX = "by_visibility"
MAX_FIFO_ATTEMPTS = 25
COUNT_BOUND = 1000  # index entries a count reads at most (~25 read units)


def partition(queue: str) -> str:
    return f"Q#{queue}"


def standard_key(message_id: str) -> str:
    return f"M#{message_id}"


def _group_tag(group: str) -> str:
    # the length prefix keeps group "a" from matching group "a#b" in a prefix query
    return f"{len(group)}:{group}"


def fifo_key(group: str, seq: int) -> str:
    return f"M#{_group_tag(group)}#{seq:020d}"


def fifo_prefix(group: str) -> str:
    return f"M#{_group_tag(group)}#"


def group_key(group: str) -> str:
    return f"G#{group}"


def group_of_key(key: str) -> str | None:
    """The group named in a FIFO message key (`M#<len>:<group>#<seq>`), else None."""
    if not key.startswith("M#"):
        return None
    length, sep, rest = key[2:].partition(":")
    # few digits: group ids are at most 128 long
    if not sep or not is_ascii_digits(length) or len(length) > 4:
        return None
    size = int(length)
    group, tail = rest[:size], rest[size:]
    if len(group) != size or not tail.startswith("#") or not is_ascii_digits(tail[1:]):
        return None
    return group


def dedup_key(dedup_id: str) -> str:
    return f"D#{dedup_id}"


@dataclass(frozen=True)
class Candidate:
    """An index entry that looked leasable (the index may lag the table)."""

    key: str
    visible_at: int
    receive_count: int
    expires_at: int | None


@dataclass(frozen=True)
class Duplicate:
    """A FIFO send that matched a dedup record: the original message id."""

    message_id: str


class LeaseLost(Exception):
    """A conditional write found the lease gone (acked, or expired and taken by another)."""


class MessageStore:
    """DynamoDB adapter for the messages table; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    # ---- new messages -------------------------------------------------------------

    def put(self, item: Item) -> None:
        """Store one standard message (one write)."""
        with translated_errors():
            self._db.put_item(TableName=self._table, Item=to_wire(item))

    def put_many(self, items: Sequence[Item]) -> None:
        """Store up to 25 standard messages in one request, retrying unprocessed ones."""
        requests: list[Any] = [{"PutRequest": {"Item": to_wire(i)}} for i in items]
        batch_write(self._db, self._table, requests)

    def put_fifo(
        self,
        queue: str,
        item: Item,
        *,
        group: str,
        now_ms: int,
        dedup: tuple[str, int, int] | None = None,
        also: Sequence[dict[str, Any]] = (),
    ) -> int | Duplicate:
        """Append to a FIFO group atomically; returns the sequence number or the duplicate.

        `dedup` is (dedup id, window end ms, expiry epoch s); `also` are extra transaction
        items that must commit together with the append (a move's delete, say).
        """
        pk = partition(queue)
        for _ in range(MAX_FIFO_ATTEMPTS):
            with translated_errors():
                current = self._db.get_item(
                    TableName=self._table,
                    Key=to_wire({"pk": pk, "sk": group_key(group)}),
                    ConsistentRead=True,
                    ProjectionExpression="seq",
                ).get("Item")
            seq = int(from_wire(current).get("seq", 0)) if current else 0
            if current:
                group_condition = "seq = :seq"
                condition_values: dict[str, Any] = {":seq": seq}
            else:
                group_condition = "attribute_not_exists(pk)"
                condition_values = {}
            message = dict(item, pk=pk, sk=fifo_key(group, seq + 1), seq=seq + 1)
            ops: list[dict[str, Any]] = [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_wire({"pk": pk, "sk": group_key(group)}),
                        "UpdateExpression": "SET seq = :next, vq = :q, grp = :g, "
                        "visible_at = if_not_exists(visible_at, :avail) ADD pending :one",
                        "ConditionExpression": group_condition,
                        "ExpressionAttributeValues": to_wire(
                            {
                                ":next": seq + 1,
                                ":q": queue,
                                ":g": group,
                                ":avail": int(item.get("avail", now_ms)),
                                ":one": 1,
                                **condition_values,
                            }
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_wire(message),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
            if dedup is not None:
                dedup_id, until_ms, expires_s = dedup
                ops.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_wire(
                                {
                                    "pk": pk,
                                    "sk": dedup_key(dedup_id),
                                    "message_id": item["id"],
                                    "dedup_until": until_ms,
                                    "expires_at": expires_s,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(pk) OR dedup_until < :now",
                            "ExpressionAttributeValues": to_wire({":now": now_ms}),
                        }
                    }
                )
            ops.extend(also)
            try:
                with translated_errors():
                    self._db.transact_write_items(TransactItems=cast(Any, ops))
                return seq + 1
            except ClientError as exc:
                codes = cancellation_codes(exc)
                if not codes:
                    raise
                if dedup is not None and codes[2] == "ConditionalCheckFailed":
                    original = self._dedup_record(queue, dedup[0])
                    if original is not None and int(original.get("dedup_until", 0)) >= now_ms:
                        return Duplicate(str(original["message_id"]))
                    continue
                extra_codes = codes[3 if dedup is not None else 2 :]
                if any(c == "ConditionalCheckFailed" for c in extra_codes):
                    raise LeaseLost("the message being moved was taken by another") from exc
                if any(c in ("ConditionalCheckFailed", "TransactionConflict") for c in codes):
                    continue  # another sender appended first: read the new seq and retry
                raise
        raise LeaseLost(f"could not append to FIFO group {group!r}: too much contention")

    def put_with(self, item: Item, also: Sequence[dict[str, Any]]) -> None:
        """Store a standard message together with other writes, all or nothing."""
        ops: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_wire(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *also,
        ]
        try:
            with translated_errors():
                self._db.transact_write_items(TransactItems=cast(Any, ops))
        except ClientError as exc:
            if cancellation_codes(exc):
                raise LeaseLost("the message being moved was taken by another") from exc
            raise

    def _dedup_record(self, queue: str, dedup_id: str) -> Item | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": partition(queue), "sk": dedup_key(dedup_id)}),
                ConsistentRead=True,
            ).get("Item")
        return from_wire(found) if found else None

    # ---- leasing -------------------------------------------------------------------

    def candidates(
        self, queue: str, now_ms: int, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[Candidate], dict[str, Any] | None]:
        """Index entries (messages or FIFO groups) visible at `now_ms`, oldest first."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX,
            "KeyConditionExpression": "vq = :q AND visible_at <= :now",
            "ExpressionAttributeValues": to_wire({":q": queue, ":now": now_ms}),
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        with translated_errors():
            page = self._db.query(**kwargs)
        found = [from_wire(i) for i in page.get("Items", [])]
        return (
            [
                Candidate(
                    str(i["sk"]),
                    int(i["visible_at"]),
                    int(i.get("receive_count", 0)),
                    int(i["expires_at"]) if "expires_at" in i else None,
                )
                for i in found
            ],
            page.get("LastEvaluatedKey"),
        )

    def lease(
        self, queue: str, key: str, *, now_ms: int, until_ms: int, lease_id: str, owner: str
    ) -> Item | None:
        """Take a visible standard message; None if someone else was faster."""
        return self._conditional_update(
            queue,
            key,
            "SET visible_at = :until, lease_id = :lease, lease_owner = :owner, "
            "first_rx = if_not_exists(first_rx, :now) ADD receive_count :one",
            "attribute_exists(pk) AND visible_at <= :now",
            {":until": until_ms, ":lease": lease_id, ":owner": owner, ":now": now_ms, ":one": 1},
        )

    def lease_group(
        self, queue: str, group_sk: str, *, now_ms: int, until_ms: int, lease_id: str
    ) -> Item | None:
        """Take a FIFO group (and so the right to deliver its head)."""
        return self._conditional_update(
            queue,
            group_sk,
            "SET visible_at = :until, lease_id = :lease",
            "attribute_exists(pk) AND visible_at <= :now",
            {":until": until_ms, ":lease": lease_id, ":now": now_ms},
        )

    def head_of_group(self, queue: str, group: str) -> Item | None:
        """The oldest message of a FIFO group (strongly consistent)."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :p AND begins_with(sk, :prefix)",
                ExpressionAttributeValues=to_wire(
                    {":p": partition(queue), ":prefix": fifo_prefix(group)}
                ),
                Limit=1,
                ConsistentRead=True,
            )
        items = page.get("Items", [])
        return from_wire(items[0]) if items else None

    def lease_head(
        self, queue: str, key: str, *, now_ms: int, until_ms: int, lease_id: str, owner: str
    ) -> Item | None:
        """Mark a FIFO group's head as delivered under the group's lease."""
        return self._conditional_update(
            queue,
            key,
            "SET lease_id = :lease, lease_owner = :owner, lease_until = :until, "
            "first_rx = if_not_exists(first_rx, :now) ADD receive_count :one",
            "attribute_exists(pk)",
            {":lease": lease_id, ":owner": owner, ":until": until_ms, ":now": now_ms, ":one": 1},
        )

    def release_group(self, queue: str, group: str, lease_id: str, visible_at: int) -> bool:
        """Give a FIFO group back (now or later); False if the lease was already gone."""
        return (
            self._conditional_update(
                queue,
                group_key(group),
                "SET visible_at = :at REMOVE lease_id",
                "lease_id = :lease",
                {":at": visible_at, ":lease": lease_id},
            )
            is not None
        )

    def drop_empty_group(self, queue: str, group: str, lease_id: str, seq: int) -> bool:
        """Delete a group item that has no messages, unless a send appended meanwhile."""
        return self._conditional_delete(
            queue,
            group_key(group),
            "lease_id = :lease AND seq = :seq",
            {":lease": lease_id, ":seq": seq},
        )

    # ---- settling leases -----------------------------------------------------------

    def delete_leased(self, queue: str, key: str, lease_id: str) -> bool:
        """Ack a standard message: delete it only under the caller's lease."""
        return self._conditional_delete(queue, key, "lease_id = :lease", {":lease": lease_id})

    def delete_leased_fifo(
        self, queue: str, key: str, group: str, lease_id: str, now_ms: int
    ) -> bool:
        """Ack a FIFO message and hand its group on to the next message, atomically."""
        return self.transact(
            [
                self.delete_op(queue, key, lease_id),
                self.group_done_op(queue, group, lease_id, now_ms),
            ]
        )

    def release(self, queue: str, key: str, lease_id: str, visible_at: int) -> Item | None:
        """Nack a standard message: visible again at `visible_at`; None if the lease is gone."""
        return self._conditional_update(
            queue,
            key,
            "SET visible_at = :at REMOVE lease_id, lease_owner",
            "lease_id = :lease",
            {":at": visible_at, ":lease": lease_id},
        )

    def give_back(
        self, queue: str, key: str, lease_id: str, visible_at: int, *, first: bool
    ) -> Item | None:
        """Return a standard message leased but delivered to no one (a redrive that cannot
        move it, a sweep that found it within limits): visible again, its receive count
        as before the lease (`first`: the lease was its first, so no first receive either).
        One write, as a release is; None if the lease is gone."""
        return self._conditional_update(
            queue,
            key,
            "SET visible_at = :at REMOVE lease_id, lease_owner"
            + (", first_rx" if first else "")
            + " ADD receive_count :minus_one",
            "lease_id = :lease",
            {":at": visible_at, ":lease": lease_id, ":minus_one": -1},
        )

    def release_fifo(
        self,
        queue: str,
        key: str,
        group: str,
        lease_id: str,
        visible_at: int,
        *,
        uncounted: bool = False,
        first: bool = False,
    ) -> bool:
        """Nack a FIFO message: its group (and so it) is visible again at `visible_at`.

        `uncounted`: the message was delivered to no one, so its receive count goes back to
        what it was before the lease (and `first`: it had never been received).
        """
        message_update = "REMOVE lease_id, lease_owner, lease_until"
        values: dict[str, Any] = {":lease": lease_id}
        if uncounted:
            message_update += (", first_rx" if first else "") + " ADD receive_count :minus_one"
            values[":minus_one"] = -1
        return self.transact(
            [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_wire({"pk": partition(queue), "sk": key}),
                        "UpdateExpression": message_update,
                        "ConditionExpression": "lease_id = :lease",
                        "ExpressionAttributeValues": to_wire(values),
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_wire({"pk": partition(queue), "sk": group_key(group)}),
                        "UpdateExpression": "SET visible_at = :at REMOVE lease_id",
                        "ConditionExpression": "lease_id = :lease",
                        "ExpressionAttributeValues": to_wire(
                            {":lease": lease_id, ":at": visible_at}
                        ),
                    }
                },
            ]
        )

    def extend(self, queue: str, key: str, lease_id: str, until_ms: int) -> bool:
        """Change a standard message's lease end; False if the lease is gone."""
        return (
            self._conditional_update(
                queue,
                key,
                "SET visible_at = :until",
                "lease_id = :lease",
                {":until": until_ms, ":lease": lease_id},
            )
            is not None
        )

    def extend_fifo(self, queue: str, key: str, group: str, lease_id: str, until_ms: int) -> bool:
        """Change a FIFO lease's end (held on the group); False if the lease is gone."""
        return self.transact(
            [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_wire({"pk": partition(queue), "sk": key}),
                        "UpdateExpression": "SET lease_until = :until",
                        "ConditionExpression": "lease_id = :lease",
                        "ExpressionAttributeValues": to_wire(
                            {":lease": lease_id, ":until": until_ms}
                        ),
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_wire({"pk": partition(queue), "sk": group_key(group)}),
                        "UpdateExpression": "SET visible_at = :until",
                        "ConditionExpression": "lease_id = :lease",
                        "ExpressionAttributeValues": to_wire(
                            {":lease": lease_id, ":until": until_ms}
                        ),
                    }
                },
            ]
        )

    # ---- transaction pieces (for moves between queues) -------------------------------

    def delete_op(self, queue: str, key: str, lease_id: str) -> dict[str, Any]:
        """A transaction item deleting a message held under `lease_id`."""
        return {
            "Delete": {
                "TableName": self._table,
                "Key": to_wire({"pk": partition(queue), "sk": key}),
                "ConditionExpression": "lease_id = :lease",
                "ExpressionAttributeValues": to_wire({":lease": lease_id}),
            }
        }

    def group_done_op(
        self, queue: str, group: str, lease_id: str, now_ms: int, *, keep_lease: bool = False
    ) -> dict[str, Any]:
        """A transaction item counting one message out of a FIFO group (freeing the group)."""
        expression = (
            "ADD pending :minus"
            if keep_lease
            else ("SET visible_at = :now REMOVE lease_id ADD pending :minus")
        )
        values: dict[str, Any] = {":lease": lease_id, ":minus": -1}
        if not keep_lease:
            values[":now"] = now_ms
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_wire({"pk": partition(queue), "sk": group_key(group)}),
                "UpdateExpression": expression,
                "ConditionExpression": "lease_id = :lease",
                "ExpressionAttributeValues": to_wire(values),
            }
        }

    # ---- admin -----------------------------------------------------------------------

    def wake(self, queue: str, now_ms: int) -> None:
        """Write a marker (`W#...`) whose stream record brings the dispatch function back
        to feed the queue's push consumers; it expires by itself within the hour."""
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(
                    {
                        "pk": partition(queue),
                        "sk": f"W#{now_ms:013d}#{os.urandom(4).hex()}",
                        "expires_at": now_ms // 1000 + 3600,
                    }
                ),
            )

    def keys(self, queue: str, prefixes: Iterable[str] = ("M#", "G#")) -> list[str]:
        """Sort keys of a queue's items with the given prefixes (for purge and delete)."""
        found: list[str] = []
        for prefix in prefixes:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": to_wire({":p": partition(queue), ":prefix": prefix}),
                "ProjectionExpression": "sk",
            }
            while True:
                with translated_errors():
                    page = self._db.query(**kwargs)
                found.extend(str(from_wire(i)["sk"]) for i in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found

    def delete_keys(self, queue: str, keys: Sequence[str]) -> None:
        """Delete items unconditionally, 25 per request."""
        pk = partition(queue)
        requests: list[Any] = [
            {"DeleteRequest": {"Key": to_wire({"pk": pk, "sk": k})}} for k in keys
        ]
        batch_write(self._db, self._table, requests)

    def count_standard(
        self, queue: str, now_ms: int, bound: int = COUNT_BOUND
    ) -> tuple[int, int, int, bool]:
        """(visible, in flight, delayed, bounded) from the index; in flight = delivered at
        least once. Each count reads at most `bound` index entries; `bounded` says one
        stopped there (the counts are then lower bounds)."""
        visible, _, more_visible = self._count(
            bound,
            IndexName=INDEX,
            KeyConditionExpression="vq = :q AND visible_at <= :now",
            ExpressionAttributeValues=to_wire({":q": queue, ":now": now_ms}),
        )
        in_flight, hidden, more_hidden = self._count(
            bound,
            IndexName=INDEX,
            KeyConditionExpression="vq = :q AND visible_at > :now",
            FilterExpression="receive_count > :zero",
            ExpressionAttributeValues=to_wire({":q": queue, ":now": now_ms, ":zero": 0}),
        )
        return visible, in_flight, hidden - in_flight, more_visible or more_hidden

    def count_fifo(
        self, queue: str, now_ms: int, bound: int = COUNT_BOUND
    ) -> tuple[int, int, int, bool]:
        """(visible, in flight, delayed, bounded) from the queue's partition."""
        in_flight, total, more_total = self._count(
            bound,
            KeyConditionExpression="pk = :p AND begins_with(sk, :m)",
            FilterExpression="lease_until > :now",
            ExpressionAttributeValues=to_wire({":p": partition(queue), ":m": "M#", ":now": now_ms}),
        )
        delayed, _, _ = self._count(
            bound,
            KeyConditionExpression="pk = :p AND begins_with(sk, :m)",
            FilterExpression="avail > :now AND (attribute_not_exists(lease_until) "
            "OR lease_until <= :now)",
            ExpressionAttributeValues=to_wire({":p": partition(queue), ":m": "M#", ":now": now_ms}),
        )
        return total - in_flight - delayed, in_flight, delayed, more_total

    def oldest_visible_ms(self, queue: str, now_ms: int, *, fifo: bool) -> int | None:
        """When the oldest visible message was sent (standard: from its time-ordered id,
        among the first 100 visible entries), or since when the oldest visible FIFO group
        has waited; None if nothing is visible."""
        candidates, _ = self.candidates(queue, now_ms, 1 if fifo else 100)
        if not candidates:
            return None
        if fifo:
            return min(c.visible_at for c in candidates)
        return min(_id_time_ms(c.key[2:], c.visible_at) for c in candidates)

    def browse(
        self, queue: str, limit: int, start: dict[str, Any] | None
    ) -> tuple[list[Item], dict[str, Any] | None]:
        """A page of the queue's messages in key order (send order), without leasing."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :m)",
            "ExpressionAttributeValues": to_wire({":p": partition(queue), ":m": "M#"}),
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        with translated_errors():
            page = self._db.query(**kwargs)
        return [from_wire(i) for i in page.get("Items", [])], page.get("LastEvaluatedKey")

    def get(self, queue: str, key: str) -> Item | None:
        """One item of the queue's partition, read consistently; None if there is none."""
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": partition(queue), "sk": key}),
                ConsistentRead=True,
            )
        return from_wire(found["Item"]) if "Item" in found else None

    def find_message(self, queue: str, message_id: str, *, fifo: bool) -> Item | None:
        """A message by id: one read for a standard queue; FIFO keys hold group and
        sequence, so there it is a filtered walk of the partition."""
        if not fifo:
            with translated_errors():
                found = self._db.get_item(
                    TableName=self._table,
                    Key=to_wire({"pk": partition(queue), "sk": standard_key(message_id)}),
                    ConsistentRead=True,
                )
            return from_wire(found["Item"]) if "Item" in found else None
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :m)",
            "FilterExpression": "id = :id",
            "ExpressionAttributeValues": to_wire(
                {":p": partition(queue), ":m": "M#", ":id": message_id}
            ),
            "ConsistentRead": True,
        }
        while True:
            with translated_errors():
                page = self._db.query(**kwargs)
            if page.get("Items"):
                return from_wire(page["Items"][0])
            if "LastEvaluatedKey" not in page:
                return None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def delete_existing_op(self, queue: str, key: str) -> dict[str, Any]:
        """A transaction step deleting an item that must still be there."""
        return {
            "Delete": {
                "TableName": self._table,
                "Key": to_wire({"pk": partition(queue), "sk": key}),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    def delete_message(self, queue: str, key: str) -> bool:
        """Delete a message whatever its state; False if it was not there."""
        return self._conditional_delete(queue, key, "sk = :sk", {":sk": key})

    # ---- plumbing ----------------------------------------------------------------------

    def _count(self, bound: int, **query: Any) -> tuple[int, int, bool]:
        """(matching, read, bounded) of a COUNT query that reads at most `bound` entries."""
        kwargs: dict[str, Any] = {"TableName": self._table, "Select": "COUNT", **query}
        matching = read = 0
        while True:
            kwargs["Limit"] = bound - read
            with translated_errors():
                page = self._db.query(**kwargs)
            matching += int(page.get("Count", 0))
            read += int(page.get("ScannedCount", 0))
            if "LastEvaluatedKey" not in page:
                return matching, read, False
            if read >= bound:
                return matching, read, True
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _conditional_update(
        self, queue: str, key: str, update: str, condition: str, values: dict[str, Any]
    ) -> Item | None:
        try:
            with translated_errors():
                response = self._db.update_item(
                    TableName=self._table,
                    Key=to_wire({"pk": partition(queue), "sk": key}),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=to_wire(values),
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return None
            raise
        return from_wire(response.get("Attributes", {}))

    def _conditional_delete(
        self, queue: str, key: str, condition: str, values: dict[str, Any]
    ) -> bool:
        try:
            with translated_errors():
                self._db.delete_item(
                    TableName=self._table,
                    Key=to_wire({"pk": partition(queue), "sk": key}),
                    ConditionExpression=condition,
                    ExpressionAttributeValues=to_wire(values),
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def transact(self, ops: list[dict[str, Any]]) -> bool:
        """Run a transaction; False if a condition failed, retrying plain write conflicts."""
        for attempt in range(5):
            try:
                with translated_errors():
                    self._db.transact_write_items(TransactItems=cast(Any, ops))
            except ClientError as exc:
                codes = cancellation_codes(exc)
                if not codes:
                    raise
                if "ConditionalCheckFailed" in codes or attempt == 4:
                    return False
                time.sleep(0.01 * 2**attempt)  # TransactionConflict: another writer, retry
                continue
            return True
        return False


def _id_time_ms(message_id: str, fallback: int) -> int:
    """The send time in a UUIDv7-shaped message id (its first 48 bits)."""
    try:
        return int(uuid.UUID(message_id)) >> 80
    except ValueError:
        return fallback
