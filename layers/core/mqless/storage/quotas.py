"""Quota counters as stored, and the transaction that creates things and charges them.

`pk = USAGE`, `sk = <principal id>` in the destinations table: one number per kind of
thing created (`domain/access/quotas.py`'s `Quota`), added to as they are made and taken
from as they are deleted. `put_new` writes new items and the charge in one transaction, so
a refused creation writes nothing and concurrent creators cannot pass the limit together.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from mqless.domain.access.quotas import Charge, Quota
from mqless.domain.errors import Conflict
from mqless.storage.dynamo import (
    Item,
    cancellation_codes,
    conditional_write,
    from_wire,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION: Final = "USAGE"


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
        ops.append(_charging(table, charge))
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


def _charging(table: str, charge: Charge) -> dict[str, Any]:
    """The transaction's update that charges `charge`, refused past its limit."""
    return {
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


def credit(dynamodb: DynamoDBClient, table: str, principal_id: str, quota: Quota) -> None:
    """Give one back to the principal a deleted thing was charged to (never below zero)."""
    conditional_write(
        dynamodb.update_item,
        TableName=table,
        Key=to_wire(_key(principal_id)),
        UpdateExpression="ADD #quota :minus",
        ConditionExpression="#quota >= :one",
        ExpressionAttributeNames={"#quota": quota.value},
        ExpressionAttributeValues=to_wire({":minus": -1, ":one": 1}),
    )


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
