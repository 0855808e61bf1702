"""What each principal has created, counted against per-principal quotas.

Queues (a dead-letter queue is a queue too) and durable subscriptions live until someone
deletes them, and each one costs the broker on every round: the sweeper walks every
queue, a publish writes once per matching durable subscription. So a principal that
creates them (on first send, on subscribe, with PUT) is charged for each on a counter
item in the destinations table (`pk = USAGE`, `sk = <principal id>`, one number per kind).

Creating and charging are one DynamoDB transaction whose condition keeps the counter at
or under the limit: concurrent creators cannot pass it together, and a refused creation
writes nothing. A created item records whom it was charged to (`charged_to`), so deleting
it credits that principal, whoever deletes it. Admins of everything (`admin` on `>`) are
not charged, nor is the broker itself when dead-lettering creates a declared dead-letter
queue that is missing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from mqless.domain.access.principals import EVERY_DESTINATION, Action, Policy, Principal
from mqless.domain.errors import Conflict, QuotaExceeded
from mqless.storage.dynamo import (
    Item,
    cancellation_codes,
    from_wire,
    is_condition_failure,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION: Final = "USAGE"
DEFAULT_QUEUES: Final = 100
DEFAULT_SUBSCRIPTIONS: Final = 100


class Quota(StrEnum):
    QUEUES = "queues"
    SUBSCRIPTIONS = "durable_subscriptions"


_PARAMETER = {
    Quota.QUEUES: "QueuesPerPrincipal",
    Quota.SUBSCRIPTIONS: "DurableSubscriptionsPerPrincipal",
}
_NOUN = {Quota.QUEUES: "queues", Quota.SUBSCRIPTIONS: "durable subscriptions"}


@dataclass(frozen=True)
class Limits:
    """How many of each a principal may create (template parameters, through Settings)."""

    queues: int = DEFAULT_QUEUES
    durable_subscriptions: int = DEFAULT_SUBSCRIPTIONS

    def of(self, quota: Quota) -> int:
        return self.queues if quota is Quota.QUEUES else self.durable_subscriptions


@dataclass(frozen=True)
class Charge:
    """`count` more of `quota` for a principal, `what` being created (for the refusal)."""

    principal_id: str
    quota: Quota
    count: int
    limit: int
    what: str

    def refused(self) -> QuotaExceeded:
        noun = _NOUN[self.quota]
        return QuotaExceeded(
            f"creating {self.what} would take {self.principal_id!r} past its quota of "
            f"{self.limit} {noun}: delete some it created, or ask an operator to raise "
            f"{_PARAMETER[self.quota]}",
            quota=self.quota.value,
            limit=self.limit,
        )


class Quotas:
    """Who is charged for a creation: every principal but the admins of everything."""

    def __init__(self, policy: Policy, limits: Limits | None = None) -> None:
        self._policy = policy
        self._limits = limits or Limits()

    def charge(
        self, principal: Principal | None, quota: Quota, count: int, what: str
    ) -> Charge | None:
        """The charge for `principal` creating `count` things; None if it is not charged
        (the broker itself, or an admin of everything)."""
        if principal is None or self._policy.permits(principal, Action.ADMIN, EVERY_DESTINATION):
            return None
        return Charge(principal.id, quota, count, self._limits.of(quota), what)


def put_new(
    dynamodb: DynamoDBClient, table: str, items: Sequence[Item], charge: Charge | None
) -> bool:
    """Put items that must not exist yet and apply `charge`, all or nothing.

    False (nothing written) if one of the items exists already; QuotaExceeded if the
    charge would pass its limit.
    """
    if charge is not None and charge.count > charge.limit:
        raise charge.refused()
    ops: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table,
                "Item": to_wire(item),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        for item in items
    ]
    if charge is not None:
        ops.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": to_wire(_key(charge.principal_id)),
                    "UpdateExpression": "ADD #quota :count",
                    "ConditionExpression": "attribute_not_exists(#quota) OR #quota <= :room",
                    "ExpressionAttributeNames": {"#quota": charge.quota.value},
                    "ExpressionAttributeValues": to_wire(
                        {":count": charge.count, ":room": charge.limit - charge.count}
                    ),
                }
            }
        )
    for attempt in range(5):
        try:
            with translated_errors():
                dynamodb.transact_write_items(TransactItems=cast(Any, ops))
            return True
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if not codes:
                raise
            failed = [code == "ConditionalCheckFailed" for code in codes]
            if any(failed[: len(items)]):
                return False
            if charge is not None and any(failed[len(items) :]):
                raise charge.refused() from exc
            time.sleep(0.01 * 2**attempt)  # TransactionConflict: another writer; retry
    raise Conflict("the destinations table was busy with the same items; retry")


def credit(dynamodb: DynamoDBClient, table: str, principal_id: str, quota: Quota) -> None:
    """Give one back to the principal a deleted thing was charged to (never below zero)."""
    try:
        with translated_errors():
            dynamodb.update_item(
                TableName=table,
                Key=to_wire(_key(principal_id)),
                UpdateExpression="ADD #quota :minus",
                ConditionExpression="#quota >= :one",
                ExpressionAttributeNames={"#quota": quota.value},
                ExpressionAttributeValues=to_wire({":minus": -1, ":one": 1}),
            )
    except ClientError as exc:
        if not is_condition_failure(exc):
            raise


def used(dynamodb: DynamoDBClient, table: str, principal_id: str) -> dict[Quota, int]:
    """How many of each the principal has been charged for (and not credited)."""
    with translated_errors():
        found = dynamodb.get_item(
            TableName=table, Key=to_wire(_key(principal_id)), ConsistentRead=True
        )
    values = from_wire(found.get("Item") or {})
    return {quota: int(values.get(quota.value, 0)) for quota in Quota}


def _key(principal_id: str) -> dict[str, str]:
    return {"pk": PARTITION, "sk": principal_id}
