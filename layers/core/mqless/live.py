"""Live WebSocket subscribers: connections, their topic subscriptions, and pushing to them.

Stored in the destinations table: `CONN#<id>` holds a connection and its subscriptions;
the `LIVE` partition lists every live topic subscription (`<pattern>#<connection>#<id>`)
so the dispatch function finds who matches a published topic with one query.
Connections are pushed to through a `Pusher` (API Gateway's @connections on AWS, the
local gateway under `mqless dev`); a gone connection is cleaned up when first noticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from mqless.clock import Clock
from mqless.dynamo import (
    batch_write,
    error_code,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.errors import InvalidRequest
from mqless.topics import TopicIndex, validate_topic_pattern

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient

LIVE_PARTITION = "LIVE"
CONNECTION_SECONDS = 3 * 60 * 60  # API Gateway closes connections after 2 hours
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100


class Pusher(Protocol):
    def post(self, connection_id: str, data: bytes) -> bool:
        """Send to a connection; False if it is gone."""


class ApiGatewayPusher:
    """Pushes through API Gateway's @connections API (boto3 client passed in)."""

    def __init__(self, client: ApiGatewayManagementApiClient) -> None:
        self._client = client

    def post(self, connection_id: str, data: bytes) -> bool:
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as exc:
            if error_code(exc) == "GoneException":
                return False
            raise
        return True


class LiveSubscriptions:
    """Connections and their live topic subscriptions."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock

    def connect(self, connection_id: str, principal_id: str) -> None:
        """Record a new connection (it expires with API Gateway's 2-hour limit)."""
        now = self._clock.now_ms()
        with translated_errors():
            self._db.put_item(
                TableName=self._table,
                Item=to_wire(
                    {
                        "pk": f"CONN#{connection_id}",
                        "sk": "#META",
                        "principal": principal_id,
                        "connected_at": now,
                        "expires_at": now // 1000 + CONNECTION_SECONDS,
                    }
                ),
            )

    def subscribe(self, connection_id: str, subscription_id: str, pattern: str) -> None:
        """Add (or replace) a live topic subscription of a connection."""
        validate_topic_pattern(pattern)
        existing = self._connection_items(connection_id)
        subscriptions = [i for i in existing if str(i["sk"]).startswith("SUB#")]
        if len(subscriptions) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
            raise InvalidRequest(
                f"a connection may hold at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions"
            )
        self.unsubscribe(connection_id, subscription_id)
        expires = self._clock.now_ms() // 1000 + CONNECTION_SECONDS
        self._write(
            [
                {
                    "pk": f"CONN#{connection_id}",
                    "sk": f"SUB#{subscription_id}",
                    "pattern": pattern,
                    "expires_at": expires,
                },
                {
                    "pk": LIVE_PARTITION,
                    "sk": f"{pattern}#{connection_id}#{subscription_id}",
                    "pattern": pattern,
                    "connection": connection_id,
                    "subscription": subscription_id,
                    "expires_at": expires,
                },
            ]
        )

    def unsubscribe(self, connection_id: str, subscription_id: str) -> bool:
        """Remove one subscription; False if the connection had no such subscription."""
        with translated_errors():
            old = self._db.delete_item(
                TableName=self._table,
                Key=to_wire({"pk": f"CONN#{connection_id}", "sk": f"SUB#{subscription_id}"}),
                ReturnValues="ALL_OLD",
            )
        if "Attributes" not in old:
            return False
        pattern = from_wire(old["Attributes"])["pattern"]
        self._delete([(LIVE_PARTITION, f"{pattern}#{connection_id}#{subscription_id}")])
        return True

    def disconnect(self, connection_id: str) -> int:
        """Forget a connection and all its subscriptions; returns how many there were."""
        items = self._connection_items(connection_id)
        keys = [(f"CONN#{connection_id}", str(i["sk"])) for i in items]
        keys += [
            (LIVE_PARTITION, f"{i['pattern']}#{connection_id}#{str(i['sk'])[4:]}")
            for i in items
            if str(i["sk"]).startswith("SUB#")
        ]
        self._delete(keys)
        return sum(1 for i in items if str(i["sk"]).startswith("SUB#"))

    def matching(self, topic: str) -> list[tuple[str, str]]:
        """(connection, subscription id) of every live subscription matching `topic`."""
        index: TopicIndex = TopicIndex()
        for item in partition_items(self._db, self._table, LIVE_PARTITION):
            index.add(str(item["pattern"]), (str(item["connection"]), str(item["subscription"])))
        return sorted(index.match(topic))

    def _connection_items(self, connection_id: str) -> list[dict[str, Any]]:
        return list(partition_items(self._db, self._table, f"CONN#{connection_id}"))

    def _write(self, items: Iterable[dict[str, Any]]) -> None:
        batch_write(self._db, self._table, [{"PutRequest": {"Item": to_wire(i)}} for i in items])

    def _delete(self, keys: list[tuple[str, str]]) -> None:
        requests = [{"DeleteRequest": {"Key": to_wire({"pk": pk, "sk": sk})}} for pk, sk in keys]
        batch_write(self._db, self._table, requests)
