"""Durable subscriptions as stored, and the claims and progress of their replays.

Destinations table, one partition for them all (`pk = SUBSCRIPTION`, `sk = <topic>#<name>`):
the `Subscription` fields, `kind = subscription`, `charged_to` (the principal its quota was
charged to, credited on delete) and, while a replay runs, `replaying` (per topic log shard:
0, or the time its worker's claim ends) and `replay_at` (per shard, the last log item the
replay went past, where the next worker resumes). Creating one and charging its creator's
quota is one transaction (`quotas.put_new`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.access.quotas import Charge, Quota
from mqless.domain.topics.subscription import Subscription
from mqless.storage import quotas
from mqless.storage.dynamo import (
    Item,
    conditional_write,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SUBSCRIPTION_PARTITION: Final = "SUBSCRIPTION"


def _key(topic: str, name: str) -> dict[str, str]:
    return {"pk": SUBSCRIPTION_PARTITION, "sk": f"{topic}#{name}"}


@dataclass(frozen=True)
class ShardClaim:
    """A topic shard's replay, claimed: where the last worker stopped (None: the start)."""

    resume_after: str | None


@dataclass(frozen=True)
class Removed:
    """A deleted subscription: whom its quota was charged to (None: nobody)."""

    charged_to: str | None


class SubscriptionStore:
    """DynamoDB adapter for durable subscriptions; takes its client as an argument."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def find(self, topic: str, name: str) -> Subscription | None:
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table, Key=to_wire(_key(topic, name)), ConsistentRead=True
            )
        return _subscription(from_wire(found["Item"])) if "Item" in found else None

    def all(self) -> list[Subscription]:
        return [
            _subscription({k: v for k, v in values.items() if k not in ("pk", "sk", "kind")})
            for values in partition_items(self._db, self._table, SUBSCRIPTION_PARTITION)
        ]

    def create(self, subscription: Subscription, charge: Charge | None) -> bool:
        """Write a new subscription and charge its creator, all or nothing; False if one of
        that topic and name exists (QuotaExceeded past the limit)."""
        item = {
            **_key(subscription.topic, subscription.name),
            "kind": "subscription",
            **subscription.model_dump(),
            "charged_to": None if charge is None else charge.principal_id,
            # per topic shard, the last log item a replay went past (where the next resumes)
            **({"replay_at": {}} if subscription.replaying else {}),
        }
        return quotas.put_new(self._db, self._table, [item], charge)

    def replace(
        self,
        existing: Subscription,
        queue: str,
        filter_policy: dict[str, Any] | None,
        selector: str | None,
    ) -> Subscription | None:
        """`existing` with a new queue, filter and selector; None if it changed (was
        deleted and made again) since it was read."""
        values: dict[str, Any] = {":queue": queue, ":created": existing.created_at}
        sets, removes = ["#queue = :queue"], []
        if filter_policy is not None:
            sets.append("#filter = :filter")
            values[":filter"] = filter_policy
        else:
            removes.append("#filter")
        if selector is not None:
            sets.append("#selector = :selector")
            values[":selector"] = selector
        else:
            removes.append("#selector")
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        updated = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(_key(existing.topic, existing.name)),
            UpdateExpression=update,
            ConditionExpression="created_at = :created",
            ExpressionAttributeNames={
                "#queue": "queue",
                "#filter": "filter_policy",
                "#selector": "selector",
            },
            ExpressionAttributeValues=to_wire(values),
            ReturnValues="ALL_NEW",
        )
        if updated is None:
            return None
        return _subscription(from_wire(updated["Attributes"]))

    def delete(self, topic: str, name: str, *, owner: str | None = None) -> Removed | None:
        """Delete a subscription (only if `owner` owns it, when given); None if there was
        none to delete (or it is not `owner`'s)."""
        condition: dict[str, Any] = {"ConditionExpression": "attribute_exists(pk)"}
        if owner is not None:
            condition = {
                "ConditionExpression": "attribute_exists(pk) AND #owner = :me",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": to_wire({":me": owner}),
            }
        old = conditional_write(
            self._db.delete_item,
            TableName=self._table,
            Key=to_wire(_key(topic, name)),
            ReturnValues="ALL_OLD",
            **condition,
        )
        if old is None:
            return None
        charged_to = from_wire(old["Attributes"]).get("charged_to")
        return Removed(str(charged_to) if charged_to else None)

    def subscriptions_charged(self, principal_id: str) -> int:
        """How many durable subscriptions `principal_id` has been charged for."""
        return quotas.used(self._db, self._table, principal_id)[Quota.SUBSCRIPTIONS]

    def credit(self, principal_id: str) -> None:
        """Give back one durable subscription to the principal it was charged to."""
        quotas.credit(self._db, self._table, principal_id, Quota.SUBSCRIPTIONS)

    # ---- replay ---------------------------------------------------------------------------

    def claim_shard(
        self, subscription: Subscription, shard: int, *, now_ms: int, until_ms: int
    ) -> ShardClaim | None:
        """Claim a topic shard's replay until `until_ms` (only if no claim is running and the
        subscription is the one read); None if the claim was refused."""
        claimed = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(_key(subscription.topic, subscription.name)),
            UpdateExpression="SET #r.#s = :claim",
            ConditionExpression="#r.#s < :now AND created_at = :created",
            ExpressionAttributeNames={"#r": "replaying", "#s": str(shard)},
            ExpressionAttributeValues=to_wire(
                {":claim": until_ms, ":now": now_ms, ":created": subscription.created_at}
            ),
            ReturnValues="ALL_NEW",
        )
        if claimed is None:
            return None
        positions = from_wire(claimed["Attributes"]).get("replay_at") or {}
        return ShardClaim(str(positions.get(str(shard)) or "") or None)

    def note_progress(
        self,
        subscription: Subscription,
        shard: int,
        *,
        claim: int,
        position: str | None,
        next_claim: int | None,
    ) -> bool:
        """While `claim` holds the shard: record how far its replay went and hold it until
        `next_claim` (0: handed back), or with `next_claim` None mark the shard replayed.
        False if the claim was lost."""
        names = {"#r": "replaying", "#a": "replay_at", "#s": str(shard)}
        values: dict[str, Any] = {":claim": claim}
        if next_claim is None:
            update = "REMOVE #r.#s, #a.#s"
        else:
            values[":at"] = position or ""
            values[":next"] = next_claim
            update = "SET #r.#s = :next, #a.#s = :at"
        noted = conditional_write(
            self._db.update_item,
            TableName=self._table,
            Key=to_wire(_key(subscription.topic, subscription.name)),
            UpdateExpression=update,
            ConditionExpression="#r.#s = :claim",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_wire(values),
        )
        return noted is not None


def _subscription(values: Item) -> Subscription:
    values.setdefault("filter_policy", None)
    values.setdefault("selector", None)
    return Subscription.model_validate(values)
