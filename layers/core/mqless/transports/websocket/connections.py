"""Live WebSocket connections: who is connected, how they speak, what they subscribed to.

Stored in the destinations table: `CONN#<id>` holds a connection (`#META`: principal,
protocol, STOMP version and session state) and its subscriptions (`SUB#<id>`: a topic
pattern, or the queue a push consumer reads, with a copy of what settling needs of the
consumer's record) and the temporary queues it made (`TMPQ#<queue>`, deleted when it
closes); the `CREDENTIALS` partition lists connections by when their credential expires
(`EXP#<epoch s>#<connection>`) and by the API key that opened them
(`KEY#<key id>#<connection>`), with a marker per key revoked in the last minutes
(`REVOKED#<key id>`), so the sweep finds the connections to close with keyed queries,
never a scan; the `TEMPQUEUES` partition lists temporary queues by when their connection
has surely ended (`<epoch s>#<connection>#<queue>`: API Gateway's 2-hour limit), so the
sweep deletes those whose connection ended without `$disconnect`; the `LIVE` partition
lists every live topic subscription
(`<pattern>#<connection>#<id>`, with the connection's protocol) so the dispatch function
finds who matches a published topic with one query. A frame reads its connection with the
first subscriptions in one request, fresh in every invocation as on AWS: an ACK needs no
other read to find its consumer. Queue consumers' credit and deliveries live with their
queue (`consumers.py`).
Connections are pushed to through a `Pusher` (API Gateway's @connections on AWS, the
local gateway under `mqless dev`); a gone connection is cleaned up when first noticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from mqless.domain.access.principals import Grant, Principal, parse_grants
from mqless.domain.clock import Clock
from mqless.domain.errors import InvalidRequest
from mqless.domain.push.pushes import Connection
from mqless.domain.topics.patterns import TopicIndex, validate_topic_pattern
from mqless.storage.dynamo import (
    batch_write,
    error_code,
    from_wire,
    partition_items,
    to_wire,
    translated_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient

LIVE_PARTITION = "LIVE"
_TEMP_QUEUE = "TMPQ#"  # a connection's temporary queue: `CONN#<id>`, `TMPQ#<queue>`
CONNECTIONS_PARTITION = "CONNECTIONS"
CREDENTIALS_PARTITION = "CREDENTIALS"
TEMP_QUEUES_PARTITION = "TEMPQUEUES"
CONNECTION_SECONDS = 3 * 60 * 60  # API Gateway closes connections after 2 hours
CONNECTION_MAX_SECONDS = 2 * 60 * 60  # ... and no connection outlives that
# A revoked key's marker outlives the authorizer's cached answers for the key (at most
# 5 minutes), so a connection opened from such an answer is closed by a later sweep too.
REVOKED_MARKER_SECONDS = 10 * 60
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100
# read with the connection's record in one request (still 1 read unit of 4 KB); a frame that
# names a subscription past these reads it on its own
SUBSCRIPTIONS_READ_WITH_CONNECTION = 10


class Pusher(Protocol):
    def post(self, connection_id: str, data: bytes) -> bool:
        """Send to a connection; False if it is gone."""

    def close(self, connection_id: str) -> None:
        """Close a connection (the client sees the socket close); gone ones are ignored."""


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

    def close(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except ClientError as exc:
            if error_code(exc) != "GoneException":
                raise


@dataclass(frozen=True)
class ConnectionInfo:
    """A connection's `#META` item."""

    connection: Connection
    principal: str
    stomp_connected: bool = False
    kind: str = "connection"
    grants: tuple[Grant, ...] = ()
    credential_expires_at: int | None = None
    """When the key or JWT the connection authenticated with expires (epoch seconds)."""
    key_id: str | None = None
    """The API key the connection authenticated with (revoking it closes the connection)."""
    subscriptions: Mapping[str, dict[str, Any]] | None = field(default=None, compare=False)
    """Subscription records read in the same request as the connection: this invocation's
    read, never kept across invocations, and dropped (None) by whoever changes the
    connection's subscriptions while still holding it. One not found here is read on its
    own: there may be more than were read, or a newer one."""

    @property
    def acting_as(self) -> Principal:
        """The principal that authenticated this connection, with the grants it had then."""
        return Principal(
            id=self.principal,
            kind=self.kind,
            grants=self.grants,
            expires_at=self.credential_expires_at,
            key_id=self.key_id,
        )


@dataclass(frozen=True)
class EndedCredential:
    """A connection whose credential stopped working: expired, or a revoked key."""

    connection_id: str
    kind: str  # the principal's: `jwt`, `api_key`
    revoked: bool
    index_key: str


@dataclass(frozen=True)
class OrphanedTempQueue:
    """A temporary queue whose connection has surely ended (API Gateway's 2-hour limit)."""

    connection_id: str
    queue: str
    index_key: str


@dataclass(frozen=True)
class LiveTarget:
    """A live topic subscription that a published message goes to."""

    connection: Connection
    subscription: str
    ack: str
    selector: str | None = None  # checked when it subscribed (`selectors.py`)


@dataclass(frozen=True)
class Disconnected:
    """What a closed connection held."""

    subscriptions: list[dict[str, Any]]
    temp_queues: list[str]


class LiveIndex:
    """Live topic subscriptions by pattern, as read at one moment."""

    def __init__(self, index: TopicIndex[LiveTarget]) -> None:
        self._index = index

    def match(self, topic: str) -> list[LiveTarget]:
        return sorted(self._index.match(topic), key=lambda t: (t.connection.id, t.subscription))


class LiveSubscriptions:
    """Connections, their subscriptions, and the index of live topic subscriptions."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, clock: Clock) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock

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
        grants = [g.model_dump(mode="json") for g in principal.grants]
        meta: dict[str, Any] = {
            "pk": f"CONN#{connection_id}",
            "sk": "#META",
            **record,
            "kind": principal.kind,
            "grants": grants,
        }
        if principal.expires_at is not None:
            meta["credential_expires_at"] = principal.expires_at
        if principal.key_id is not None:
            meta["key_id"] = principal.key_id
        self._write(
            [
                meta,
                # the list of connections, for operators (one partition, one query)
                {"pk": CONNECTIONS_PARTITION, "sk": connection_id, **record},
                *(
                    {
                        "pk": CREDENTIALS_PARTITION,
                        "sk": sk,
                        "kind": principal.kind,
                        "expires_at": record["expires_at"],
                    }
                    for sk in _credential_keys(meta, connection_id)
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
                    "destination": _destination_of(record),
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

    def connection(self, connection_id: str) -> ConnectionInfo | None:
        """The connection's record, with its first subscriptions read in the same request
        (an ACK then needs no read of its own); None if it is not (or no longer) connected."""
        with translated_errors():
            page = self._db.query(
                TableName=self._table,
                # "#META" sorts before "SUB#...", and "SUB$" after every subscription
                KeyConditionExpression="pk = :p AND sk BETWEEN :meta AND :subs",
                ExpressionAttributeValues=to_wire(
                    {":p": f"CONN#{connection_id}", ":meta": "#META", ":subs": "SUB$"}
                ),
                ConsistentRead=True,
                Limit=1 + SUBSCRIPTIONS_READ_WITH_CONNECTION,
            )
        items = [from_wire(found) for found in page.get("Items", [])]
        if not items or items[0]["sk"] != "#META":
            return None
        item = items[0]
        subscriptions = {s["id"]: s for s in map(_subscription, items[1:])}
        return ConnectionInfo(
            connection=Connection.stored(connection_id, item),
            principal=str(item["principal"]),
            stomp_connected=bool(item.get("stomp_connected", False)),
            kind=str(item.get("kind", "connection")),
            grants=parse_grants(list(item.get("grants") or [])),
            credential_expires_at=_optional_int(item.get("credential_expires_at")),
            key_id=None if item.get("key_id") is None else str(item["key_id"]),
            subscriptions=subscriptions,
        )

    def stomp_connected(self, connection_id: str, version: str) -> None:
        """Note that the STOMP session is open, in the version CONNECT negotiated."""
        for key in (
            {"pk": f"CONN#{connection_id}", "sk": "#META"},
            {"pk": CONNECTIONS_PARTITION, "sk": connection_id},
        ):
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
        """Add a live topic subscription to a connection; it gets no pushes once the
        connection's credential has expired (`credential_expires_at`), and only the
        messages its `selector` (checked already) selects."""
        validate_topic_pattern(pattern)
        self._check_room(connection.id)
        expires = self._clock.now_ms() // 1000 + CONNECTION_SECONDS
        live: dict[str, Any] = {
            "pk": LIVE_PARTITION,
            "sk": _live_key(pattern, connection.id, subscription_id),
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
        self._write(
            [
                {
                    "pk": f"CONN#{connection.id}",
                    "sk": f"SUB#{subscription_id}",
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
        """Note that a subscription of this connection is a push consumer of `queue`.

        `consumer`: what settling needs of the consumer's own record, which never changes
        while it exists (`consumers.settle_fields`): an ACK then reads one item, not two.
        """
        self._check_room(connection_id)
        item: dict[str, Any] = {
            "pk": f"CONN#{connection_id}",
            "sk": f"SUB#{subscription_id}",
            "kind": "queue",
            "queue": queue,
            "destination": destination,
            "expires_at": self._clock.now_ms() // 1000 + CONNECTION_SECONDS,
        }
        if consumer is not None:
            item["consumer"] = dict(consumer)
        self._write([item])

    def subscription(
        self,
        connection_id: str,
        subscription_id: str,
        *,
        read_with: ConnectionInfo | None = None,
    ) -> dict[str, Any] | None:
        """A subscription's record (`kind` topic or queue); None if there is none.

        `read_with`: the connection as this invocation read it; its subscriptions answer
        without another read when they can.
        """
        if read_with is not None and read_with.subscriptions is not None:
            record = read_with.subscriptions.get(subscription_id)
            if record is not None:
                return record
        with translated_errors():
            found = self._db.get_item(
                TableName=self._table,
                Key=to_wire({"pk": f"CONN#{connection_id}", "sk": f"SUB#{subscription_id}"}),
                ConsistentRead=True,
            )
        return _subscription(from_wire(found["Item"])) if "Item" in found else None

    def subscriptions(self, connection_id: str) -> list[dict[str, Any]]:
        return [
            _subscription(item)
            for item in partition_items(
                self._db, self._table, f"CONN#{connection_id}", prefix="SUB#"
            )
        ]

    def unsubscribe(self, connection_id: str, subscription_id: str) -> dict[str, Any] | None:
        """Remove one subscription; its record, or None if the connection had none."""
        with translated_errors():
            old = self._db.delete_item(
                TableName=self._table,
                Key=to_wire({"pk": f"CONN#{connection_id}", "sk": f"SUB#{subscription_id}"}),
                ReturnValues="ALL_OLD",
            )
        if "Attributes" not in old:
            return None
        record = _subscription(from_wire(old["Attributes"]))
        if record["kind"] == "topic":
            self._delete(
                [(LIVE_PARTITION, _live_key(record["pattern"], connection_id, subscription_id))]
            )
        return record

    def add_temp_queue(self, connection_id: str, queue: str) -> None:
        """Record that the connection made the temporary queue `queue` (it goes with it,
        or with the sweep once the connection has surely ended)."""
        now_s = self._clock.now_ms() // 1000
        index_key = _temp_queue_key(now_s + CONNECTION_MAX_SECONDS, connection_id, queue)
        self._write(
            [
                {
                    "pk": f"CONN#{connection_id}",
                    "sk": f"{_TEMP_QUEUE}{queue}",
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
        items = list(partition_items(self._db, self._table, f"CONN#{connection_id}"))
        subscriptions = [_subscription(i) for i in items if str(i["sk"]).startswith("SUB#")]
        temp_queues = [
            str(i["sk"])[len(_TEMP_QUEUE) :] for i in items if str(i["sk"]).startswith(_TEMP_QUEUE)
        ]
        keys = [(f"CONN#{connection_id}", str(i["sk"])) for i in items]
        keys.append((CONNECTIONS_PARTITION, connection_id))
        for item in items:
            if item["sk"] == "#META":
                keys += [
                    (CREDENTIALS_PARTITION, sk) for sk in _credential_keys(item, connection_id)
                ]
            elif str(item["sk"]).startswith(_TEMP_QUEUE) and item.get("index_key"):
                keys.append((TEMP_QUEUES_PARTITION, str(item["index_key"])))
        keys += [
            (LIVE_PARTITION, _live_key(s["pattern"], connection_id, s["id"]))
            for s in subscriptions
            if s["kind"] == "topic"
        ]
        self._delete(keys)
        return Disconnected(subscriptions, temp_queues)

    def ended_credentials(self) -> list[EndedCredential]:
        """Connections whose credential expired by now or whose API key was revoked: one
        query of the expired (in expiry order, none past now read), one of the revoked
        keys' markers, and one per key revoked in the last `REVOKED_MARKER_SECONDS`."""
        now_s = self._clock.now_ms() // 1000
        ended: dict[str, EndedCredential] = {}
        # "$" sorts after "#": every connection whose credential expired at or before now
        for item in self._credential_items("EXP#", f"EXP#{now_s:012d}$"):
            connection_id = str(item["sk"]).split("#", 2)[2]
            ended[connection_id] = EndedCredential(
                connection_id, str(item["kind"]), False, str(item["sk"])
            )
        for marker in self._credential_items("REVOKED#", "REVOKED$"):
            if int(marker.get("expires_at", 0)) <= now_s:
                continue  # past its life; TTL has not removed it yet
            key_id = str(marker["sk"])[len("REVOKED#") :]
            for item in self._credential_items(f"KEY#{key_id}#", f"KEY#{key_id}$"):
                connection_id = str(item["sk"]).split("#", 2)[2]
                ended[connection_id] = EndedCredential(
                    connection_id, str(item["kind"]), True, str(item["sk"])
                )
        return [ended[c] for c in sorted(ended)]

    def forget_credential(self, ended: EndedCredential) -> None:
        """Drop an index item whose connection's records are gone already (TTL)."""
        self._delete([(CREDENTIALS_PARTITION, ended.index_key)])

    def orphaned_temp_queues(self) -> list[OrphanedTempQueue]:
        """Temporary queues whose connection has surely ended by now (one query; none
        of the queues of connections that may still be open is read)."""
        now_s = self._clock.now_ms() // 1000
        due = partition_items(
            self._db, self._table, TEMP_QUEUES_PARTITION, between=("0", f"{now_s:012d}$")
        )
        orphans = []
        for item in due:
            _due, connection_id, queue = str(item["sk"]).split("#", 2)
            orphans.append(OrphanedTempQueue(connection_id, queue, str(item["sk"])))
        return orphans

    def forget_temp_queue(self, orphan: OrphanedTempQueue) -> None:
        """Drop a deleted temporary queue from the sweep's list."""
        self._delete(
            [
                (TEMP_QUEUES_PARTITION, orphan.index_key),
                (f"CONN#{orphan.connection_id}", f"{_TEMP_QUEUE}{orphan.queue}"),
            ]
        )

    def _credential_items(self, low: str, high: str) -> list[dict[str, Any]]:
        return list(
            partition_items(self._db, self._table, CREDENTIALS_PARTITION, between=(low, high))
        )

    def matching(self, topic: str) -> list[LiveTarget]:
        """Every live subscription whose pattern matches `topic`."""
        return self.index().match(topic)

    def index(self, prefix: str | None = None) -> LiveIndex:
        """Every live topic subscription (or those whose pattern starts with `prefix`), read
        once (one query), to match many topics."""
        index: TopicIndex[LiveTarget] = TopicIndex()
        now_s = self._clock.now_ms() // 1000
        for item in partition_items(self._db, self._table, LIVE_PARTITION, prefix=prefix):
            credential_expires_at = _optional_int(item.get("credential_expires_at"))
            if credential_expires_at is not None and credential_expires_at <= now_s:
                continue  # its key or JWT expired: no more pushes (its next frame closes it)
            target = LiveTarget(
                connection=Connection.stored(str(item["connection"]), item),
                subscription=str(item["subscription"]),
                ack=str(item.get("ack", "auto")),
                selector=None if item.get("selector") is None else str(item["selector"]),
            )
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


def revoked_key_marker(key_id: str, now_ms: int) -> dict[str, Any]:
    """The item that tells the sweep to close the connections an API key opened."""
    return {
        "pk": CREDENTIALS_PARTITION,
        "sk": f"REVOKED#{key_id}",
        "expires_at": now_ms // 1000 + REVOKED_MARKER_SECONDS,
    }


def _credential_keys(meta: Mapping[str, Any], connection_id: str) -> list[str]:
    """The `CREDENTIALS` items of a connection, from its `#META` item."""
    keys = []
    if meta.get("credential_expires_at") is not None:
        keys.append(f"EXP#{int(meta['credential_expires_at']):012d}#{connection_id}")
    if meta.get("key_id"):
        keys.append(f"KEY#{meta['key_id']}#{connection_id}")
    return keys


def _temp_queue_key(due_s: int, connection_id: str, queue: str) -> str:
    return f"{due_s:012d}#{connection_id}#{queue}"


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _live_key(pattern: str, connection_id: str, subscription_id: str) -> str:
    return f"{pattern}#{connection_id}#{subscription_id}"


def _destination_of(record: dict[str, Any]) -> str:
    """A subscription's destination as its client named it (`/topic/...`, `/queue/...`)."""
    if record["kind"] == "queue":
        return str(record.get("destination") or f"/queue/{record.get('queue', '')}")
    return f"/topic/{record.get('pattern', '')}"


def _subscription(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "id": str(item["sk"])[4:], "kind": str(item.get("kind", "topic"))}
