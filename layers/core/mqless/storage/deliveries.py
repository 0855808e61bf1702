"""Delivery records: what a queue push consumer holds, one item per push, not per message.

Destinations table, beside the consumer it belongs to (`push_consumers.py`), `pk = QC#<queue>`:
```
sk  D#<tag>#<epoch>#<seq, 10 digits>   one per push (one outbox flush to one consumer)
g   gen: 8 random hex digits, which the push's ack ids carry
u   when its leases end (ms); past it the record holds nothing
r   the leases, in push order ("<shard>.<segment>.<position>.<token>", FIFO:
    "g<shard>.<position>.<token>.<group>": a receipt without its queue and MAC, ~20 bytes)
m   the last 6 bytes of each message id, in the same order, as one binary (STOMP 1.0/1.1
    consumers only: they ack by message id)
a   positions settled one at a time (a number set): client-individual acks and nacks, and
    messages set aside as undeliverable when the push was rendered
lo  the lowest seq that still held anything when this record was written
b   how many messages the consumer was pushed before this push (its first message's number)
f   present if this push left the consumer with no credit (client-individual acks read it)
expires_at  TTL, hours after the leases end (a consumer lives at most 2 hours)
```
`<epoch>` is drawn when the consumer subscribes, so a subscription id used again on the same
connection starts from no records. `seq` is dense from 0 and each record is written only if
its seq is new (a conditional put): a pump writes `newest + 1` after reading the newest, so
of two pumps that read the same records and leased for the same credit only one writes its
record; the other gives its messages back. Records are never deleted (DynamoDB's TTL does it,
for free): the newest is what the next seq follows from, and `lo` in it is where reading
stops, so old records cost nothing to skip.

Every write here is one small item (a push of ten 512-byte messages: ~350 bytes, 1 WRU).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.queues.receipts import Lease
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

RECORD: Final = "D#"
SEQ_DIGITS: Final = 10
# records read at once from the newest: usually all that may be live (a prefetch-100 consumer
# pushed ten at a time holds ten; a page of 8 made its every credit read two queries)
FIRST_PAGE: Final = 16
# a consumer fed in small pushes (the dispatch function's, a stream batch each: 1-5
# messages under a burst) holds more: its first page is as long as its last read needed,
# up to this (the same bytes as the two queries it took, in one)
LONGEST_FIRST_PAGE: Final = 64
SPANS_KEPT: Final = 1024  # consumers whose last read's length a process keeps


def partition(queue: str) -> str:
    """The partition of a queue's push consumers and their delivery records."""
    return f"QC#{queue}"


def record_prefix(tag: str, epoch: str) -> str:
    """Sort-key prefix of one consumer's records (`tag` names connection and subscription)."""
    return f"{RECORD}{tag}#{epoch}#"


@dataclass(frozen=True)
class DeliveryRecord:
    """One push to one consumer: its leases in push order, and which are settled."""

    seq: int
    gen: str
    until: int
    leases: tuple[Lease, ...]
    id_tags: bytes = b""  # `id_tag` of each message, concatenated (STOMP 1.0/1.1 only)
    settled: frozenset[int] = frozenset()
    low: int = 0
    base: int = 0  # the number of the push's first message among all the consumer was pushed
    full: bool = False  # the push left the consumer with no credit (`credit.py`)

    def holds(self, position: int, now_ms: int, after: int = -1) -> bool:
        """Whether the message at `position` is still this push's, unsettled: its lease has
        not ended, it was not settled one by one, and it is past `after` (a cumulative ack's
        watermark, as `watermark(seq, position)`)."""
        return (
            self.until > now_ms
            and 0 <= position < len(self.leases)
            and position not in self.settled
            and watermark(self.seq, position) > after
        )

    def held(self, now_ms: int, after: int = -1) -> list[int]:
        """Positions still held (`holds`)."""
        return [p for p in range(len(self.leases)) if self.holds(p, now_ms, after)]

    def position_of(self, message_id: str) -> int | None:
        """Where a message is in this push, by its id (a record that kept id tags)."""
        tag = id_tag(message_id)
        for position in range(len(self.id_tags) // ID_TAG_BYTES):
            if self.id_tags[position * ID_TAG_BYTES : (position + 1) * ID_TAG_BYTES] == tag:
                return position
        return None


ID_TAG_BYTES: Final = 6


def id_tag(message_id: str) -> bytes:
    """What a record keeps of a message id: its last 6 bytes (44 random bits and the body's
    slot in its log item), enough to tell apart the messages one consumer holds."""
    try:
        return uuid.UUID(message_id).bytes[-ID_TAG_BYTES:]
    except (ValueError, AttributeError, TypeError):
        return b""


POSITIONS: Final = 4096  # more than a push ever holds (at most the prefetch, 1,000)


def watermark(seq: int, position: int) -> int:
    """A push position as one number that orders as pushes do (a cumulative ack's mark)."""
    return seq * POSITIONS + position


def seq_of(mark: int) -> int:
    return mark // POSITIONS if mark >= 0 else 0


class DeliveryRecords:
    """DynamoDB adapter for delivery records; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name
        self._spans: dict[tuple[str, str], int] = {}  # records the last `recent` returned

    def recent(
        self, queue: str, prefix: str, *, floor: int = 0, upto: int | None = None
    ) -> list[DeliveryRecord]:
        """A consumer's records that may still hold something, newest first: from the newest
        (or `upto`) down to the `lo` it names, and not below `floor`. Strongly consistent:
        what a pump counts as in flight is never less than what is."""
        high = _sk(prefix, upto) if upto is not None else prefix + "~"  # "~" sorts after digits
        span = self._spans.get((queue, prefix), 0)
        first_page = min(LONGEST_FIRST_PAGE, max(FIRST_PAGE, span + 2))
        page = self._query(queue, _sk(prefix, floor), high, limit=first_page)
        records = [_record(queue, from_wire(item)) for item in page.get("Items", [])]
        if not records:
            return []
        bound = max(floor, records[0].low)
        if records[-1].seq > bound and "LastEvaluatedKey" in page:
            below = records[-1].seq - 1
            start: dict[str, Any] | None = None
            while True:
                more = self._query(queue, _sk(prefix, bound), _sk(prefix, below), start=start)
                records += [_record(queue, from_wire(item)) for item in more.get("Items", [])]
                start = more.get("LastEvaluatedKey")
                if start is None:
                    break
        found = [r for r in records if r.seq >= bound]
        if len(self._spans) >= SPANS_KEPT:
            self._spans.clear()
        self._spans[(queue, prefix)] = len(found)
        return found

    def put(self, queue: str, prefix: str, record: DeliveryRecord, *, expires_at: int) -> bool:
        """Write a new record; False if its seq is taken (another pump wrote it first)."""
        item: Item = {
            "pk": partition(queue),
            "sk": _sk(prefix, record.seq),
            "g": record.gen,
            "u": record.until,
            "r": _compact(record.leases),
            "m": record.id_tags or None,
            "a": set(record.settled) or None,
            "lo": record.low,
            "b": record.base or None,
            "f": 1 if record.full else None,
            "expires_at": expires_at,
        }
        return put_if_absent(self._db, self._table, item)

    def settle(
        self, queue: str, prefix: str, seq: int, position: int, *, gen: str, now_ms: int
    ) -> DeliveryRecord | None:
        """Mark a position of a record settled, only while the record's gen is `gen`, its
        leases have not ended and that position is not settled already; the record as it
        is now, or None (also for a position the record does not have)."""
        found = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire({"pk": partition(queue), "sk": _sk(prefix, seq)}),
            UpdateExpression="ADD a :ps",
            ConditionExpression="g = :g AND u > :now "
            "AND (attribute_not_exists(a) OR NOT contains(a, :p))",
            ExpressionAttributeValues=to_wire(
                {":g": gen, ":now": now_ms, ":ps": {position}, ":p": position}
            ),
            ReturnValues="ALL_NEW",
        )
        if found is None:
            return None
        record = _record(queue, from_wire(found["Attributes"]))
        # a position past the record's end (an ack id made up) settled nothing real
        return record if position < len(record.leases) else None

    def release(
        self, queue: str, prefix: str, record: DeliveryRecord, positions: Sequence[int]
    ) -> None:
        """Mark positions settled whatever their state (a push that did not reach its
        client gave them back to the queue): they free their credit at once."""
        conditional_write(  # refused: the record was written again (another gen)
            self._db.update_item,
            TableName=self._table,
            Key=to_wire({"pk": partition(queue), "sk": _sk(prefix, record.seq)}),
            UpdateExpression="ADD a :ps",
            ConditionExpression="g = :g",
            ExpressionAttributeValues=to_wire({":g": record.gen, ":ps": set(positions)}),
        )

    def _query(
        self,
        queue: str,
        low: str,
        high: str,
        *,
        limit: int | None = None,
        start: dict[str, Any] | None = None,
    ) -> Any:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": to_wire(
                {":p": partition(queue), ":low": low, ":high": high}
            ),
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        if limit is not None:
            kwargs["Limit"] = limit
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        with translated_errors():
            return self._db.query(**kwargs)


def _sk(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:0{SEQ_DIGITS}d}"


def _record(queue: str, item: Item) -> DeliveryRecord:
    sk = str(item["sk"])
    return DeliveryRecord(
        seq=int(sk[sk.rindex("#") + 1 :]),
        gen=str(item["g"]),
        until=int(item["u"]),
        leases=_leases(queue, [str(text) for text in item.get("r", [])]),
        id_tags=bytes(item.get("m", b"")),
        settled=frozenset(int(p) for p in item.get("a", set())),
        low=int(item.get("lo", 0)),
        base=int(item.get("b", 0)),
        full="f" in item,
    )


def _compact(leases: Sequence[Lease]) -> list[str]:
    """Leases as a record keeps them: a run of leases taken together (one segment, one
    token) as one string, "<shard>.<segment>.<token>.<position>,<position>,..." or, for a
    FIFO queue's segment, "g<shard>.<token>.<positions>.<segment>" (ten leases: ~40 bytes).
    The queue is the partition's; no MAC: only the broker writes records, and the queue's
    conditions settle a lease only while its token is current."""
    runs: list[tuple[Lease, list[int]]] = []
    for lease in leases:
        if runs and _same_run(runs[-1][0], lease):
            runs[-1][1].append(lease.position)
        else:
            runs.append((lease, [lease.position]))
    texts = []
    for first, positions in runs:
        listed = ",".join(str(p) for p in positions)
        if first.kind == "g":
            texts.append(f"g{first.shard}.{first.token}.{listed}.{first.place}")
        else:
            texts.append(f"{first.shard}.{first.place}.{first.token}.{listed}")
    return texts


def _same_run(a: Lease, b: Lease) -> bool:
    return (a.kind, a.shard, a.place, a.token) == (b.kind, b.shard, b.place, b.token)


def _leases(queue: str, texts: Sequence[str]) -> tuple[Lease, ...]:
    leases: list[Lease] = []
    for text in texts:
        if text.startswith("g"):
            shard, token, listed, group = text[1:].split(".", 3)
            kind, place = "g", group
        else:
            shard, place, token, listed = text.split(".")
            kind = "s"
        leases += [
            Lease(queue, int(shard), "g" if kind == "g" else "s", place, int(p), int(token))
            for p in listed.split(",")
        ]
    return tuple(leases)
