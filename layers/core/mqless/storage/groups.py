"""FIFO groups: each group's references in order, and the lease that gives it to one consumer.

`pk = F#<queue>#<shard>`, `sk = <len>:<group>`. A group item holds, in order, the
references of the group's messages not yet settled (up to 12: `r`, with per-reference
receive counts `n`, first-delivery times `v` and acked flags `a`), and the group's lease:
token `t`, end `u` (0: not leased), and `c`, how many references from the front it covers.
A lease takes one or several consecutive references of the group (as SQS FIFO does); the
group stays the lease holder's until every one of them is settled or the lease ends. An
ack of every covered reference removes them and frees the group in one write.

When a group has more waiting references than its item holds, the dispatch function
writes the next ones to spill segments (`pk = FS#<queue>#<shard>`, `sk = <len>:<group>#<n>`)
and counts them in `o`; a consumer that finds the item empty moves the next spill segment
in (`s` counts those taken). Order is kept: while spills wait, new references go to spills.

An emptied group item gets a TTL (`x`) beyond any message's retention; the next append or
lease removes it. So idle groups disappear for free, and no waiting reference is ever lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from mqless.dynamo import from_wire, is_condition_failure, to_wire, translated_errors
from mqless.errors import Throttled
from mqless.models import MAX_RETENTION_SECONDS
from mqless.storage import keys
from mqless.storage.index import NewRef, Ref, parse_ref

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_INLINE: Final = 10
MAX_ATTEMPTS: Final = 20
IDLE_SECONDS: Final = MAX_RETENTION_SECONDS + 24 * 60 * 60


@dataclass(frozen=True)
class GroupRef:
    ref: Ref
    count: int
    visible_at: int
    acked: bool
    expires_at: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Group:
    queue: str
    shard: int
    name: str
    refs: tuple[GroupRef, ...]
    logs: tuple[str, ...] = ()
    token: int = 0
    until: int = 0
    covered: int = 0
    spilled: int = 0
    taken: int = 0

    def leased_at(self, now_ms: int) -> bool:
        return self.covered > 0 and self.until > now_ms

    def ready(self, now_ms: int) -> bool:
        """Whether a lease may be taken now: not leased, and a reference is due."""
        if self.leased_at(now_ms):
            return False
        pending = [r for r in self.refs if not r.acked]
        return bool(pending) and pending[0].visible_at <= now_ms

    @property
    def waiting_spills(self) -> bool:
        return self.spilled > self.taken


class GroupStore:
    """DynamoDB adapter for FIFO groups; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    # ---- reading -------------------------------------------------------------------------

    def groups(self, queue: str, shard: int, *, consistent: bool = False) -> list[Group]:
        """Every group item of a shard (idle ones until their TTL removes them)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": to_wire({":p": keys.group_partition(queue, shard)}),
            "ConsistentRead": consistent,
        }
        found: list[Group] = []
        while True:
            with translated_errors():
                page = self._db.query(**kwargs)
            found.extend(_group(queue, shard, from_wire(i)) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def group(self, queue: str, shard: int, name: str) -> Group | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=self._key(queue, shard, name),
                ConsistentRead=True,
            )
        return _group(queue, shard, from_wire(found["Item"])) if "Item" in found else None

    # ---- appending (the dispatch function) ----------------------------------------------------

    def append(self, queue: str, shard: int, name: str, refs: Sequence[NewRef]) -> int:
        """Append references in order (a reference already there is not appended again)."""
        pending = list(refs)
        for _ in range(MAX_ATTEMPTS):
            group = self.group(queue, shard, name)
            present = {r.ref for r in group.refs if not r.acked} if group else set()
            if group is not None and group.waiting_spills:
                present |= {r.ref for r in self._spill(queue, shard, name, group.spilled - 1)}
            pending = [r for r in pending if r.ref not in present]
            if not pending:
                return 0
            try:
                if group is None:
                    inline, rest = pending[:MAX_INLINE], pending[MAX_INLINE:]
                    self._create(queue, shard, name, inline)
                    if rest:
                        continue  # the rest spills, against the item now there
                    return len(inline)
                if not group.waiting_spills and len(group.refs) < MAX_INLINE:
                    room = MAX_INLINE - len(group.refs)
                    self._extend(group, pending[:room])
                    if len(pending) > room:
                        continue
                    return len(pending)
                self._write_spill(group, pending[:MAX_INLINE])
                if len(pending) > MAX_INLINE:
                    continue
                return len(pending)
            except _Contended:
                continue
        raise Throttled(f"could not append to FIFO group {name!r} of {queue!r}: contention")

    def _create(self, queue: str, shard: int, name: str, refs: Sequence[NewRef]) -> None:
        logs = list(dict.fromkeys(r.ref.log for r in refs))
        item = {
            **from_wire(self._key(queue, shard, name)),
            "l": logs,
            "r": [_ref_text(r.ref, logs) for r in refs],
            "n": [r.count for r in refs],
            "v": [r.visible_at for r in refs],
            "a": [0] * len(refs),
            "e": [r.expires_at for r in refs],
            "t": 0,
            "u": 0,
            "c": 0,
            "o": 0,
            "s": 0,
            # always there (even empty): removing list elements needs the list
            "w": [r.reason for r in refs],
        }
        self._put(item)

    def _extend(self, group: Group, refs: Sequence[NewRef]) -> None:
        # stored refs name logs by their index in `l`: only ever add to it
        logs = list(dict.fromkeys([*group.logs, *(r.ref.log for r in refs)]))
        values: dict[str, Any] = {
            ":l": logs,
            ":r": [_ref_text(r.ref, logs) for r in refs],
            ":n": [r.count for r in refs],
            ":v": [r.visible_at for r in refs],
            ":a": [0] * len(refs),
            ":e": [r.expires_at for r in refs],
            ":w": [r.reason for r in refs],
            ":len": len(group.refs),
            ":o": group.spilled,
        }
        update = (
            "SET l = :l, r = list_append(r, :r), n = list_append(n, :n), "
            "v = list_append(v, :v), a = list_append(a, :a), e = list_append(e, :e), "
            "w = list_append(w, :w)"
        )
        self._update(group, update + " REMOVE x", "size(r) = :len AND o = :o", values)

    def _write_spill(self, group: Group, refs: Sequence[NewRef]) -> None:
        logs = list(dict.fromkeys(r.ref.log for r in refs))
        spill = {
            "pk": keys.group_spill_partition(group.queue, group.shard),
            "sk": keys.spill_key(group.name, group.spilled),
            "l": logs,
            "r": [_ref_text(r.ref, logs) for r in refs],
            "n": [r.count for r in refs],
            "v": [r.visible_at for r in refs],
            "e": [r.expires_at for r in refs],
            "w": [r.reason for r in refs],
            "x": max(r.expires_at for r in refs),
        }
        try:
            with translated_errors():
                self._db.put_item(
                    TableName=self._table,
                    Item=to_wire(spill),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
        self._update(
            group,
            "SET o = :next REMOVE x",
            "o = :o",
            {":o": group.spilled, ":next": group.spilled + 1},
        )

    def _spill(self, queue: str, shard: int, name: str, seq: int) -> list[GroupRef]:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(
                    {
                        "pk": keys.group_spill_partition(queue, shard),
                        "sk": keys.spill_key(name, seq),
                    }
                ),
                ConsistentRead=True,
            )
        if "Item" not in found:
            return []
        return list(_refs(from_wire(found["Item"])))

    def take_spill(self, group: Group) -> Group | None:
        """Move the next spill segment into an emptied group item (a consumer does this)."""
        refs = self._spill(group.queue, group.shard, group.name, group.taken)
        if not refs:
            return None
        logs = list(dict.fromkeys(r.ref.log for r in refs))
        values: dict[str, Any] = {
            ":l": logs,
            ":r": [_ref_text(r.ref, logs) for r in refs],
            ":n": [r.count for r in refs],
            ":v": [r.visible_at for r in refs],
            ":a": [0] * len(refs),
            ":e": [r.expires_at for r in refs],
            ":w": [r.reason for r in refs],
            ":s": group.taken,
            ":next": group.taken + 1,
            ":zero": 0,
        }
        try:
            return self._update(
                group,
                "SET l = :l, r = :r, n = :n, v = :v, a = :a, e = :e, w = :w, s = :next REMOVE x",
                "size(r) = :zero AND s = :s",
                values,
            )
        except _Contended:
            return None

    # ---- leasing and settling ---------------------------------------------------------------

    def claim(
        self, group: Group, count: int, *, now_ms: int, until_ms: int, token: int
    ) -> Group | None:
        """Lease the first `count` references of the group; None if it changed meanwhile."""
        sets = ["t = :tok", "u = :until", "c = :c"]
        for i in range(count):
            sets.append(f"n[{i}] = n[{i}] + :one")
        values: dict[str, Any] = {
            ":tok": token,
            ":until": until_ms,
            ":c": count,
            ":one": 1,
            ":now": now_ms,
            ":old": group.token,
            ":len": len(group.refs),
        }
        try:
            return self._update(
                group,
                "SET " + ", ".join(sets) + " REMOVE x",
                "u <= :now AND t = :old AND size(r) = :len",
                values,
            )
        except _Contended:
            return None

    def ack(
        self,
        group: Group,
        token: int,
        held: Sequence[tuple[int, Ref]],
        covered: int,
    ) -> Group | None:
        """Settle references `held` (position, ref) under the lease `token`. When that
        settles every covered one, they are removed and the group is free again, in the same
        write. None if the lease is not `token`'s any more (a stale receipt)."""
        queue, shard, name = group.queue, group.shard, group.name
        positions = sorted({p for p, _ in held})
        others = [j for j in range(covered) if j not in positions]
        values: dict[str, Any] = {":tok": token}
        checks = ["t = :tok"]
        logs = list(group.logs)
        for index, (position, ref) in enumerate(sorted(held, key=lambda h: h[0])):
            if ref.log not in logs:
                return None
            checks.append(f"r[{position}] = :r{index}")
            values[f":r{index}"] = _ref_text(ref, logs)
        whole = [f"a[{j}] = :yes" for j in others]
        removes = [f"{n}[{j}]" for j in range(covered) for n in ("r", "n", "v", "a", "e", "w")]
        try:
            return self._update_key(
                queue,
                shard,
                name,
                "SET u = :zero, c = :zero, x = :idle REMOVE " + ", ".join(removes),
                " AND ".join(checks + whole),
                {**values, ":zero": 0, ":idle": _idle_expiry(), **({":yes": 1} if whole else {})},
            )
        except _Contended:
            pass
        sets = [f"a[{p}] = :yes" for p in positions]
        try:
            return self._update_key(
                queue,
                shard,
                name,
                "SET " + ", ".join(sets),
                " AND ".join(checks),
                {**values, ":yes": 1},
            )
        except _Contended:
            return None

    def set_until(
        self, queue: str, shard: int, name: str, token: int, until: int, *, release: bool = False
    ) -> Group | None:
        """Extend the group's lease, or `release` it (the group is held until `until`, and
        the lease's receipts are stale from now on); None if it is not `token`'s any more."""
        update = "SET u = :u, t = :zero" if release else "SET u = :u"
        try:
            return self._update_key(
                queue,
                shard,
                name,
                update,
                "t = :tok AND c > :zero",
                {":u": until, ":tok": token, ":zero": 0},
            )
        except _Contended:
            return None

    def drop_acked(self, group: Group, now_ms: int) -> Group | None:
        """Remove the settled front of a group whose lease ended with only some acked."""
        front = 0
        for ref in group.refs:
            if not ref.acked:
                break
            front += 1
        if front == 0:
            return group
        removes = [f"{n}[{j}]" for j in range(front) for n in ("r", "n", "v", "a", "e", "w")]
        checks = [f"a[{j}] = :yes" for j in range(front)]
        try:
            return self._update(
                group,
                "SET c = :zero REMOVE " + ", ".join(removes),
                " AND ".join([*checks, "t = :tok", "u <= :now"]),
                {":yes": 1, ":zero": 0, ":tok": group.token, ":now": now_ms},
            )
        except _Contended:
            return None

    def give_back(self, group: Group, token: int) -> Group | None:
        """End a lease that delivered to no one: the group is free at once and the covered
        references' receive counts are as they were."""
        sets = ["u = :zero", "c = :zero"]
        sets += [f"n[{i}] = n[{i}] - :one" for i in range(group.covered)]
        try:
            return self._update(
                group,
                "SET " + ", ".join(sets),
                "t = :tok AND c = :c",
                {":zero": 0, ":one": 1, ":tok": token, ":c": group.covered},
            )
        except _Contended:
            return None

    # ---- operators ---------------------------------------------------------------------------

    def remove(self, queue: str, shard: int, name: str, ref: Ref) -> bool:
        """Take one reference out of a group, whatever its state (an operator's delete or
        move); False if it is not there."""
        for _ in range(MAX_ATTEMPTS):
            group = self.group(queue, shard, name)
            if group is None:
                return False
            found = [i for i, r in enumerate(group.refs) if r.ref == ref]
            if found:
                (position,) = found[:1]
                names_ = ("r", "n", "v", "a", "e", "w")
                update = "REMOVE " + ", ".join(f"{n}[{position}]" for n in names_)
                values: dict[str, Any] = {
                    ":text": _ref_text(ref, list(group.logs)),
                    ":len": len(group.refs),
                }
                if position < group.covered:
                    update = "SET c = c - :one " + update
                    values[":one"] = 1
                try:
                    self._update(group, update, f"r[{position}] = :text AND size(r) = :len", values)
                    return True
                except _Contended:
                    continue
            return self._remove_spilled(group, ref)
        return False

    def _remove_spilled(self, group: Group, ref: Ref) -> bool:
        for seq in range(group.taken, group.spilled):
            refs = self._spill(group.queue, group.shard, group.name, seq)
            found = [i for i, r in enumerate(refs) if r.ref == ref]
            if not found:
                continue
            position = found[0]
            names_ = ("r", "n", "v", "e", "w")
            try:
                with translated_errors():
                    self._db.update_item(
                        TableName=self._table,
                        Key=to_wire(
                            {
                                "pk": keys.group_spill_partition(group.queue, group.shard),
                                "sk": keys.spill_key(group.name, seq),
                            }
                        ),
                        UpdateExpression="REMOVE " + ", ".join(f"{n}[{position}]" for n in names_),
                        ConditionExpression="size(r) = :len",
                        ExpressionAttributeValues=to_wire({":len": len(refs)}),
                    )
                return True
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                return False
        return False

    def purge(self, queue: str, shard: int) -> int:
        """Empty every group of a shard; returns how many references were waiting."""
        purged = 0
        for group in self.groups(queue, shard, consistent=True):
            waiting = sum(1 for r in group.refs if not r.acked)
            for seq in range(group.taken, group.spilled):
                waiting += len(self._spill(queue, shard, group.name, seq))
            try:
                self._update(
                    group,
                    "SET l = :empty, r = :empty, n = :empty, v = :empty, a = :empty, "
                    "e = :empty, w = :empty, c = :zero, u = :zero, t = :zero, s = o, x = :idle",
                    "attribute_exists(pk)",
                    {":empty": [], ":zero": 0, ":idle": _idle_expiry()},
                )
            except _Contended:
                continue
            purged += waiting
        return purged

    def drop(self, queue: str, shard: int) -> None:
        """Delete a shard's group items and spills (the queue is being deleted)."""
        from mqless.storage.index import drop_partition

        drop_partition(self._db, self._table, keys.group_partition(queue, shard))
        drop_partition(self._db, self._table, keys.group_spill_partition(queue, shard))

    # ---- plumbing ---------------------------------------------------------------------------

    def _key(self, queue: str, shard: int, name: str) -> dict[str, Any]:
        return to_wire({"pk": keys.group_partition(queue, shard), "sk": keys.group_key(name)})

    def _put(self, item: dict[str, Any]) -> None:
        try:
            with translated_errors():
                self._db.put_item(
                    TableName=self._table,
                    Item=to_wire(item),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise _Contended from exc
            raise

    def _update(self, group: Group, update: str, condition: str, values: dict[str, Any]) -> Group:
        return self._update_key(group.queue, group.shard, group.name, update, condition, values)

    def _update_key(
        self,
        queue: str,
        shard: int,
        name: str,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> Group:
        try:
            with translated_errors():
                response = self._db.update_item(
                    TableName=self._table,
                    Key=self._key(queue, shard, name),
                    UpdateExpression=update,
                    ConditionExpression=f"attribute_exists(pk) AND ({condition})",
                    ExpressionAttributeValues=to_wire(values),
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise _Contended from exc
            raise
        return _group(queue, shard, from_wire(response.get("Attributes", {})))


class _Contended(Exception):
    """A conditional write found the group changed."""


def _idle_expiry() -> int:
    import time

    return int(time.time()) + IDLE_SECONDS


def _ref_text(ref: Ref, logs: list[str]) -> str:
    return f"{logs.index(ref.log)}.{ref.item}.{ref.slot}.{ref.mac}"


def _refs(item: dict[str, Any]) -> tuple[GroupRef, ...]:
    logs = [str(v) for v in item.get("l", [])]
    refs = [str(v) for v in item.get("r", [])]
    counts = [int(v) for v in item.get("n", [])]
    visible = [int(v) for v in item.get("v", [])]
    acked = [int(v) for v in item.get("a", [0] * len(refs))]
    expiry = [int(v) for v in item.get("e", [0] * len(refs))]
    reasons = [str(v) for v in item.get("w", [])] or [""] * len(refs)
    found = []
    for i, text in enumerate(refs):
        found.append(
            GroupRef(
                ref=parse_ref(text, logs),
                count=counts[i],
                visible_at=visible[i],
                acked=bool(acked[i]) if i < len(acked) else False,
                expires_at=expiry[i] if i < len(expiry) else 0,
                reason=reasons[i] if i < len(reasons) else "",
            )
        )
    return tuple(found)


def _group(queue: str, shard: int, item: dict[str, Any]) -> Group:
    return Group(
        queue=queue,
        shard=shard,
        name=keys.group_of_key(str(item["sk"])),
        refs=_refs(item),
        logs=tuple(str(v) for v in item.get("l", [])),
        token=int(item.get("t", 0)),
        until=int(item.get("u", 0)),
        covered=int(item.get("c", 0)),
        spilled=int(item.get("o", 0)),
        taken=int(item.get("s", 0)),
    )
