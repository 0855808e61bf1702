"""WebSocket connections' reads and writes: who is connected, how they speak, what they
subscribed to, and the indexes the sweep and the dispatch function query.

Keys and item shapes are `connections.py`'s. A frame reads its connection with its first
subscriptions in one request, or once its STOMP session is connected takes it from this
process's memory (`remembered_connections.py`: what may be remembered on AWS, how long).
Push consumers' credit and deliveries live with their queue (`domain/push/consumers.py`);
the sweep finds connections to close and temporary queues to delete by keyed queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from mqless.domain.access.principals import Principal
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest
from mqless.domain.push.pushes import Connection
from mqless.domain.topics.patterns import TopicIndex, validate_topic_pattern
from mqless.storage.connections import (
    CONNECTION_MAX_SECONDS,
    CONNECTION_SECONDS,
    CONNECTIONS_PARTITION,
    CREDENTIALS_PARTITION,
    LIVE_PARTITION,
    META,
    SUBSCRIPTION,
    TEMP_QUEUE,
    TEMP_QUEUES_PARTITION,
    ConnectionInfo,
    Disconnected,
    LiveIndex,
    LiveTarget,
    connection_info,
    connection_partition,
    credential_sort_keys,
    destination_of,
    listed_key,
    live_sort_key,
    live_target,
    meta_item,
    meta_key,
    subscription_key,
    subscription_record,
    temp_queue_index_sort_key,
    temp_queue_key,
)
from mqless.storage.dynamo import (
    batch_write,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)
from mqless.storage.remembered_connections import RememberedConnections

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_SUBSCRIPTIONS_PER_CONNECTION: Final = 100
# read with the connection's record in one request (still 1 read unit of 4 KB); a frame that
# names a subscription past these reads it on its own
SUBSCRIPTIONS_READ_WITH_CONNECTION: Final = 10


class ConnectionStore:
    """Connections, their subscriptions, and the index of live topic subscriptions."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock
        self._remembered = RememberedConnections()

    def connect(
        self,
        connection_id: str,
        principal: Principal,
        *,
        protocol: str = "json",
        version: str = "1.2",
    ) -> None:
        """Record a new connection (it expires with API Gateway's 2-hour limit).

        The principal's grants are kept with it: a connection acts with the grants it
        authenticated with until it closes (API Gateway authorizes once, at `$connect`),
        or until the credential it authenticated with expires.
        """
        now = self._clock.now_ms()
        record = {
            "principal": principal.id,
            "protocol": protocol,
            "version": version,
            "connected_at": now,
            "expires_at": now // 1000 + CONNECTION_SECONDS,
        }
        meta = meta_item(connection_id, principal, record)
        self._remembered.forget(connection_id)
        self._write(
            [
                meta,
                # the list of connections, for operators (one partition, one query)
                {**listed_key(connection_id), **record},
                *(
                    {
                        "pk": CREDENTIALS_PARTITION,
                        "sk": sk,
                        "kind": principal.kind,
                        "expires_at": record["expires_at"],
                    }
                    for sk in credential_sort_keys(meta, connection_id)
                ),
            ]
        )

    def list_connections(self, limit: int = 100) -> list[dict[str, Any]]:
        """Open connections (at most `limit`), each with its subscriptions."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues=to_wire({":p": CONNECTIONS_PARTITION}),
                Limit=limit,
            )
        connections = []
        for item in (from_wire(i) for i in page.get("Items", [])):
            # the same items a count would read (and bill): the names cost nothing more
            subscribed = [
                {
                    "id": record["id"],
                    "kind": record["kind"],
                    "destination": destination_of(record),
                }
                for record in self.subscriptions(str(item["sk"]))
            ]
            connections.append(
                {
                    "id": str(item["sk"]),
                    "protocol": str(item.get("protocol", "json")),
                    "principal": str(item.get("principal", "")),
                    "connected_at": int(item.get("connected_at", 0)),
                    "subscriptions": len(subscribed),
                    "subscribed_to": subscribed,
                }
            )
        return connections

    def count_connections(self) -> int:
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues=to_wire({":p": CONNECTIONS_PARTITION}),
                Select="COUNT",
            )
        return int(page.get("Count", 0))

    def live_counts(self) -> dict[str, int]:
        """Live subscriptions per topic pattern."""
        counts: dict[str, int] = {}
        for item in partition_items(self._db, self._table, LIVE_PARTITION):
            pattern = str(item["pattern"])
            counts[pattern] = counts.get(pattern, 0) + 1
        return counts

    def for_frame(self, connection_id: str) -> ConnectionInfo | None:
        """The connection as its frames need it: remembered by this process (no read) when it
        may be (`remembered_connections.py`), else read (`connection`) and remembered."""
        now = self._clock.now_ms()
        if (info := self._remembered.get(connection_id, now)) is None:
            self._remembered.read(info := self.connection(connection_id), now)
        return info

    def connection(self, connection_id: str) -> ConnectionInfo | None:
        """The connection's record, with its first subscriptions read in the same request
        (an ACK then needs no read of its own); None if it is not (or no longer) connected."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                # "#META" sorts before "SUB#...", and "SUB$" after every subscription
                KeyConditionExpression="pk = :p AND sk BETWEEN :meta AND :subs",
                ExpressionAttributeValues=to_wire(
                    {":p": connection_partition(connection_id), ":meta": META, ":subs": "SUB$"}
                ),
                ConsistentRead=True,
                Limit=1 + SUBSCRIPTIONS_READ_WITH_CONNECTION,
            )
        items = [from_wire(found) for found in page.get("Items", [])]
        if not items or items[0]["sk"] != META:
            return None
        return connection_info(connection_id, items[0], items[1:])

    def stomp_connected(self, connection_id: str, version: str) -> None:
        """Note that the STOMP session is open, in the version CONNECT negotiated."""
        self._remembered.forget(connection_id)
        for key in (meta_key(connection_id), listed_key(connection_id)):
            with translated_errors():
                self._db.update_item(
                    TableName=self._table,
                    Key=to_wire(key),
                    UpdateExpression="SET stomp_connected = :yes, version = :v, protocol = :p",
                    ExpressionAttributeValues=to_wire({":yes": True, ":v": version, ":p": "stomp"}),
                )

    def subscribe(
        self,
        connection: Connection,
        subscription_id: str,
        pattern: str,
        *,
        ack: str = "auto",
        credential_expires_at: int | None = None,
        selector: str | None = None,
    ) -> None:
        """Add a live topic subscription to a connection; no pushes once its credential
        has expired (`credential_expires_at`), and only what its `selector` selects."""
        validate_topic_pattern(pattern)
        self._check_room(connection.id)
        expires = self._clock.now_ms() // 1000 + CONNECTION_SECONDS
        live: dict[str, Any] = {
            "pk": LIVE_PARTITION,
            "sk": live_sort_key(pattern, connection.id, subscription_id),
            "pattern": pattern,
            "connection": connection.id,
            "protocol": connection.protocol,
            "version": connection.version,
            "subscription": subscription_id,
            "ack": ack,
            "expires_at": expires,
        }
        if credential_expires_at is not None:
            live["credential_expires_at"] = credential_expires_at
        if selector is not None:
            live["selector"] = selector
        self._remembered.saw(connection.id, subscription_id, None)  # topics are not remembered
        self._write(
            [
                {
                    **subscription_key(connection.id, subscription_id),
                    "kind": "topic",
                    "pattern": pattern,
                    "expires_at": expires,
                },
                live,
            ]
        )

    def add_queue_subscription(
        self,
        connection_id: str,
        subscription_id: str,
        queue: str,
        destination: str,
        *,
        consumer: Mapping[str, Any] | None = None,
    ) -> None:
        """Note that a subscription of this connection is a push consumer of `queue`;
        `consumer`: what settling needs of the consumer's own record, which never changes
        while it exists (`consumers.settle_fields`): an ACK then reads one item, not two."""
        self._check_room(connection_id)
        item: dict[str, Any] = {
            **subscription_key(connection_id, subscription_id),
            "kind": "queue",
            "queue": queue,
            "destination": destination,
            "expires_at": self._clock.now_ms() // 1000 + CONNECTION_SECONDS,
        }
        if consumer is not None:
            item["consumer"] = dict(consumer)
        self._write([item])
        self._remembered.saw(connection_id, subscription_id, subscription_record(item))

    def subscription(
        self,
        connection_id: str,
        subscription_id: str,
        *,
        read_with: ConnectionInfo | None = None,
    ) -> dict[str, Any] | None:
        """A subscription's record (`kind` topic or queue); None if there is none.

        `read_with`: the connection as this invocation has it; its subscriptions answer
        without another read when they can (those of a `remembered` connection may have
        changed in another process since: see `remembered_connections.py`).
        """
        if read_with is not None and read_with.subscriptions is not None:
            record = read_with.subscriptions.get(subscription_id)
            if record is not None:
                return record
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire(subscription_key(connection_id, subscription_id)),
                ConsistentRead=True,
            )
        record = subscription_record(from_wire(found["Item"])) if "Item" in found else None
        self._remembered.saw(connection_id, subscription_id, record)
        return record

    def subscriptions(self, connection_id: str) -> list[dict[str, Any]]:
        return [
            subscription_record(item)
            for item in partition_items(
                self._db, self._table, connection_partition(connection_id), prefix=SUBSCRIPTION
            )
        ]

    def unsubscribe(self, connection_id: str, subscription_id: str) -> dict[str, Any] | None:
        """Remove one subscription; its record, or None if the connection had none."""
        self._remembered.saw(connection_id, subscription_id, None)
        with translated_errors():
            old = self._db.delete_item(
                TableName=self._table,
                Key=to_wire(subscription_key(connection_id, subscription_id)),
                ReturnValues="ALL_OLD",
            )
        if "Attributes" not in old:
            return None
        record = subscription_record(from_wire(old["Attributes"]))
        if record["kind"] == "topic":
            live = live_sort_key(record["pattern"], connection_id, subscription_id)
            self._delete([(LIVE_PARTITION, live)])
        return record

    def add_temp_queue(self, connection_id: str, queue: str) -> None:
        """Record that the connection made the temporary queue `queue` (it goes with it,
        or with the sweep once the connection has surely ended)."""
        now_s = self._clock.now_ms() // 1000
        index_key = temp_queue_index_sort_key(now_s + CONNECTION_MAX_SECONDS, connection_id, queue)
        self._write(
            [
                {
                    **temp_queue_key(connection_id, queue),
                    "expires_at": now_s + CONNECTION_SECONDS,
                    "index_key": index_key,
                },
                # no TTL: it must outlive the connection's records to find the queue
                {"pk": TEMP_QUEUES_PARTITION, "sk": index_key},
            ]
        )

    def disconnect(self, connection_id: str) -> Disconnected:
        """Forget a connection and everything it held; returns its subscriptions and the
        temporary queues it made (to be deleted now)."""
        self._remembered.forget(connection_id)
        partition = connection_partition(connection_id)
        items = list(partition_items(self._db, self._table, partition))
        subscriptions = [
            subscription_record(i) for i in items if str(i["sk"]).startswith(SUBSCRIPTION)
        ]
        temp_queues = [
            str(i["sk"])[len(TEMP_QUEUE) :] for i in items if str(i["sk"]).startswith(TEMP_QUEUE)
        ]
        keys = [(partition, str(i["sk"])) for i in items]
        keys.append((CONNECTIONS_PARTITION, connection_id))
        for item in items:
            if item["sk"] == META:
                keys += [
                    (CREDENTIALS_PARTITION, sk) for sk in credential_sort_keys(item, connection_id)
                ]
            elif str(item["sk"]).startswith(TEMP_QUEUE) and item.get("index_key"):
                keys.append((TEMP_QUEUES_PARTITION, str(item["index_key"])))
        keys += [
            (LIVE_PARTITION, live_sort_key(s["pattern"], connection_id, s["id"]))
            for s in subscriptions
            if s["kind"] == "topic"
        ]
        self._delete(keys)
        return Disconnected(subscriptions, temp_queues)

    def matching(self, topic: str) -> list[LiveTarget]:
        """Every live subscription whose pattern matches `topic`."""
        return self.index().match(topic)

    def index(self, prefix: str | None = None) -> LiveIndex:
        """Every live topic subscription (or those whose pattern starts with `prefix`), read
        once (one query), to match many topics."""
        index: TopicIndex[LiveTarget] = TopicIndex()
        now_s = self._clock.now_ms() // 1000
        for item in partition_items(self._db, self._table, LIVE_PARTITION, prefix=prefix):
            credential_expires_at = item.get("credential_expires_at")
            if credential_expires_at is not None and int(credential_expires_at) <= now_s:
                continue  # its key or JWT expired: no more pushes (its next frame closes it)
            target = live_target(item)
            index.add(str(item["pattern"]), target)
        return LiveIndex(index)

    def _check_room(self, connection_id: str) -> None:
        if len(self.subscriptions(connection_id)) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
            raise InvalidRequest(
                f"a connection may hold at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions"
            )

    def _write(self, items: Iterable[dict[str, Any]]) -> None:
        batch_write(self._db, self._table, [{"PutRequest": {"Item": to_wire(i)}} for i in items])

    def _delete(self, keys: list[tuple[str, str]]) -> None:
        requests = [{"DeleteRequest": {"Key": to_wire({"pk": pk, "sk": sk})}} for pk, sk in keys]
        batch_write(self._db, self._table, requests)
