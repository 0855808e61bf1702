"""Fixtures for the queue component tests: a broker over moto, fresh for every test.

Provisioning template.yaml in a new moto costs about half a second (two tables, a KMS
key, fresh clients), more than most queue tests take to run. So the queue tests share
one provisioned moto per test module (`shared_aws`) and start each test from empty
tables instead (`aws`): no queue, no message, no dedup record survives from one test
to the next. Tests of provisioning itself use the per-test fixtures of tests/conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from mqless import assembly, wiring
from mqless.domain.clock import ManualClock
from mqless.domain.queues.service import QueueService
from mqless.settings import Settings
from mqless.storage import keys
from mqless.storage.connection_store import ConnectionStore
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import Item, from_wire, to_wire
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.storage.log import LogStore, bodies_of
from mqless.transports.websocket.sessions import Sessions
from mqless.transports.websocket.stomp_frames import Frame, decode_frames
from mqless_cli.billing import Meter, observing_moto
from mqless_cli.cfn import Stack, provision
from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
from mqless_cli.local.moto_fixes import fixed_moto
from mqless_cli.local.moto_fixes.queries import reindex
from mqless_cli.local.unsigned_requests import requests_unsigned
from tests.conftest import MOTO_CONFIG, project_template
from tests.inline_dispatch import INLINE_DISPATCH

FAKE_AWS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}

RawItems = Callable[[str], list[Item]]
Tamper = Callable[..., Item]


@dataclass(frozen=True)
class Aws:
    """The moto AWS a queue test runs against."""

    dynamodb: Any
    kms: Any
    settings: Settings
    stack: Stack | None = None
    """What was provisioned from template.yaml (routes, function environments)."""


@pytest.fixture(scope="session", autouse=True)
def one_botocore_loader() -> Iterator[None]:
    """Every botocore session of the run reads AWS's service models, endpoints and rulesets
    through one loader, which keeps each file it read, as the sessions of one process would
    if they were one session. `LocalCloud.start` (and the `mqless dev` runtime over it) sets
    up a new default boto3 session, as moto's start does unless told not to: each new
    session read and parsed the models again for its first clients, ~0.3 CPU-s a test of
    test_streams. What is read is AWS's published data, never changed by a client."""
    shared: dict[str | None, botocore.loaders.Loader] = {}
    create = botocore.loaders.create_loader

    def create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in shared:
            shared[search_path_string] = create(search_path_string)
        return shared[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", create_loader)
        yield


@pytest.fixture(scope="module")
def shared_aws() -> Iterator[Aws]:
    """One moto with template.yaml's tables and key, for a whole test module, run as `mqless
    dev` runs it (as the per-test `moto_aws` of tests/conftest.py does): its fixes
    (mqless_cli.local.moto_fixes), botocore's shortcuts and unsigned requests."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAKE_AWS_ENV.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        with (
            mock_aws(config=MOTO_CONFIG),  # type: ignore[call-overload]
            fixed_moto(),
            botocore_shortcuts(),
            requests_unsigned(),
        ):
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            kms = boto3.client("kms", region_name="us-east-1")
            stack = provision(project_template(), dynamodb=dynamodb, kms=kms)
            settings = Settings.from_env(stack.environment("HttpApiFunction"))
            INLINE_DISPATCH.serve(settings)
            with INLINE_DISPATCH.clients_kept():
                yield Aws(dynamodb=dynamodb, kms=kms, settings=settings, stack=stack)


@pytest.fixture(scope="module")
def wiring_clients_kept(shared_aws: Aws) -> Iterator[None]:
    """The functions' boto3 clients (`mqless.wiring`) made once for the module, as a warm
    Lambda container keeps them, not again after each test's `wiring.reset()`: a client
    holds no data (the services over it are still rebuilt), and making one cost ~10-25 ms
    CPU a test. For modules over one moto whose tests neither throttle nor retry (a
    client's retry quota would carry over) nor change a client's event handlers."""
    made: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    make = wiring._client

    def kept(service: str, **options: Any) -> Any:
        key = (service, tuple(sorted(options.items())))
        if key not in made:
            made[key] = make(service, **options)
        return made[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiring, "_client", kept)
        yield


@pytest.fixture
def aws(shared_aws: Aws) -> Aws:
    """The module's moto with both tables emptied: the test starts from nothing."""
    for table in (shared_aws.settings.messages_table, shared_aws.settings.destinations_table):
        _empty_table(table)
    INLINE_DISPATCH.forget()
    return shared_aws


def _empty_table(name: str) -> None:
    """Drop every item of a moto table, in moto itself (and from the query orderings that
    mqless_cli.local.moto_fixes keeps beside its items).

    Deleting them through the API (a scan, then a BatchWriteItem per 25) cost ~90 ms a test,
    a tenth of a component test's time: each delete is a moto request with its stream record.
    The table, its indexes, its stream and the records written so far stay, as they did.
    """
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(name)
    if table.range_key_attr is None:
        keys = [(hash_key, None) for hash_key in table.items]
    else:
        keys = [(h, r) for h, partition in table.items.items() for r in partition]
    table.items.clear()
    for hash_key, range_key in keys:
        reindex(table, hash_key, range_key)


@pytest.fixture
def meter() -> Iterator[Meter]:
    """What the test's AWS requests bill, by AWS's rules (`mqless_cli.billing`)."""
    found = Meter()
    with observing_moto(found):
        yield found


@pytest.fixture
def broker(aws: Aws, clock: ManualClock) -> QueueService:
    """A QueueService over empty tables, on the manual clock (tests move time, never sleep)."""
    INLINE_DISPATCH.serve(aws.settings, clock)
    return assembly.build_queue_service(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        cipher=EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock),
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        time=clock,
    )


@pytest.fixture
def raw_items(aws: Aws) -> RawItems:
    """Every stored item of a queue, as plain values (docs/storage-engine.md): its log items
    (`L#<queue>#<shard>`: the bodies), its index (`I#`: segments and cursor) and its FIFO
    groups (`F#`, `FS#`)."""

    def items(queue: str) -> list[Item]:
        prefixes = [f"{p}{queue}#" for p in ("L#", "I#", "F#", "FS#")]
        pages = aws.dynamodb.get_paginator("scan").paginate(
            TableName=aws.settings.messages_table, ConsistentRead=True
        )
        found = [from_wire(i) for page in pages for i in page["Items"]]
        return [i for i in found if str(i["pk"]).startswith(tuple(prefixes))]

    return items


@pytest.fixture
def tamper(aws: Aws, raw_items: RawItems) -> Tamper:
    """Flip one bit of what is stored of a message, as someone with write access to the table
    could: `body` (its sealed body in its log item) or `dk` (the KMS-encrypted data key its
    log item names); returns the log item as it was before."""

    def flip(queue: str, attribute: str, *, message_id: str | None = None, at: int = -1) -> Item:
        logs = [i for i in raw_items(queue) if str(i["pk"]).startswith("L#") and "b" in i]
        if message_id is None:
            item, slot = logs[0], 0
        else:
            item_id, slot = keys.locate(message_id)
            item = next(i for i in logs if i["sk"] == item_id)
        if attribute == "body":
            bodies = list(bodies_of(item))
            altered = bytearray(bodies[slot])
            altered[at] ^= 0x01
            bodies[slot] = bytes(altered)
            key = {"pk": item["pk"], "sk": item["sk"]}
            # stored as it was: a lone body is `b` itself, several a list
            name, value = "b", bodies if isinstance(item["b"], list) else bodies[0]
        else:
            named = item["k"]
            key = {
                "pk": f"K#/queue/{queue}",
                "sk": named.hex() if isinstance(named, bytes) else named,
            }
            stored = from_wire(
                aws.dynamodb.get_item(TableName=aws.settings.messages_table, Key=to_wire(key))[
                    "Item"
                ]
            )
            altered = bytearray(stored["k"])
            altered[at] ^= 0x01
            name, value = "k", bytes(altered)
        aws.dynamodb.update_item(
            TableName=aws.settings.messages_table,
            Key=to_wire(key),
            UpdateExpression="SET #a = :v",
            ExpressionAttributeNames={"#a": name},
            ExpressionAttributeValues=to_wire({":v": value}),
        )
        return item

    return flip


class RecordingPusher:
    """Stands in for API Gateway's @connections: keeps what was posted, per connection.

    A connection in `gone` answers like a closed socket (GoneException), one in `broken`
    like API Gateway failing (a ClientError), and a post over 128 KB is refused as API
    Gateway refuses it (PayloadTooLargeException); `close` is what the server does after
    a STOMP ERROR or DISCONNECT.
    """

    def __init__(self) -> None:
        self.posts: dict[str, list[str]] = {}
        self.gone: set[str] = set()
        self.broken: set[str] = set()
        self.closed: list[str] = []

    def post(self, connection_id: str, data: bytes) -> bool:
        if connection_id in self.gone:
            return False
        if connection_id in self.broken:
            raise _client_error("InternalServerError", "the gateway failed")
        if len(data) > 128 * 1024:
            raise _client_error("PayloadTooLargeException", "Message too long")
        self.posts.setdefault(connection_id, []).append(data.decode())
        return True

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)
        self.gone.add(connection_id)

    def json_frames(self, connection_id: str) -> list[dict[str, Any]]:
        """Every JSON frame the connection got, `batch` frames opened up."""
        frames: list[dict[str, Any]] = []
        for text in self.posts.get(connection_id, []):
            frame = json.loads(text)
            frames.extend(frame["frames"] if frame["type"] == "batch" else [frame])
        return frames

    def stomp_frames(self, connection_id: str) -> list[Frame]:
        """Every STOMP frame the connection got (several may share one post)."""
        return [f for text in self.posts.get(connection_id, []) for f in decode_frames(text)]

    def take(self, connection_id: str) -> list[str]:
        """The posts so far, forgetting them (the next call sees only newer ones)."""
        return self.posts.pop(connection_id, [])


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "PostToConnection")


@pytest.fixture
def pusher() -> RecordingPusher:
    return RecordingPusher()


@pytest.fixture
def sessions(
    aws: Aws, broker: QueueService, clock: ManualClock, pusher: RecordingPusher
) -> Sessions:
    """WebSocket sessions over the test broker, pushing into `pusher`."""
    return build_sessions(aws, broker, clock, pusher)


def build_sessions(
    aws: Aws, broker: QueueService, clock: ManualClock, pusher: RecordingPusher
) -> Sessions:
    """The WebSocket function's sessions, as one function instance (container) builds them:
    a second one shares the tables but none of the first's memory."""
    table = aws.settings.destinations_table
    cipher = EnvelopeCipher(KmsKeyProvider(aws.kms, aws.settings.kms_key_id), clock)
    topics = assembly.topic_service_over(
        dynamodb=aws.dynamodb,
        messages_table=aws.settings.messages_table,
        destinations_table=table,
        queues=QueueRegistry(aws.dynamodb, table, clock),
        cipher=cipher,
        clock=clock,
    )
    return Sessions(
        dynamodb=aws.dynamodb,
        table_name=table,
        live=ConnectionStore(aws.dynamodb, table, clock),
        consumers=assembly.build_queue_consumers(aws.dynamodb, table, broker, pusher, clock),
        queues=broker,
        topics=topics,
        pusher=pusher,
        cipher=cipher,
        clock=clock,
        log=LogStore(aws.dynamodb, aws.settings.messages_table),
    )
