"""moto as the embedded AWS: start it in-process and create what template.yaml declares."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from mqless_cli.template import Stack, load_template, provision

REGION = "us-east-1"
# Requests to loopback (our own gateways' @connections API) must reach the real socket,
# not moto's stand-in, which accepts every connection id and never answers 410.
_PASSTHROUGH = {
    "core": {"passthrough": {"urls": [r"https?://(127\.\d+\.\d+\.\d+|localhost)(:\d+)?/.*"]}}
}

_AWS_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "mqless-local",
    "AWS_SECRET_ACCESS_KEY": "mqless-local",
    # boto3 >= 1.36 sends DynamoDB Streams calls to account endpoints moto cannot match
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


_atomic_lock = threading.RLock()


@contextmanager
def atomic_requests() -> Iterator[None]:
    """Give in-process moto DynamoDB's per-request atomicity while the block runs.

    DynamoDB applies each request (condition and write) atomically; moto's in-process
    backend does not, so a thread switch between its condition check and its write lets
    two conditional updates both succeed. Serialising moto's request handling restores
    the guarantee the broker's leases rely on; callers still interleave between requests.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def atomic(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with _atomic_lock:
            return original(self, *args, **kwargs)

    BotocoreStubber.process_request = atomic  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


@contextmanager
def streams_survive_rollbacks() -> Iterator[None]:
    """Keep a table's stream readable after moto rolls back a failed transaction.

    moto undoes a failed TransactWriteItems by putting back a deep copy of each table it
    touched, stream shard included. Shard iterators already handed out point at the
    replaced shard object, so a stream poller would read nothing ever again (the dispatch
    function would stop being invoked). Instead the table keeps its own shard, cut back
    to its length before the transaction: exactly what a rollback means for the stream.
    Requests are serialised (`atomic_requests`), so nothing else wrote in between.
    """
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items

    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        shards = {}
        for item in transact_items:
            table_name = next(iter(item.values())).get("TableName")
            table = self.tables.get(table_name) if table_name else None
            if table is not None and table.stream_shard is not None:
                shards[table_name] = (table.stream_shard, len(table.stream_shard.items))
        try:
            original(self, transact_items)
        except BaseException:
            for table_name, (shard, length) in shards.items():
                restored = self.tables.get(table_name)
                if restored is not None and restored.stream_shard is not shard:
                    del shard.items[length:]
                    restored.stream_shard = shard
            raise

    DynamoDBBackend.transact_write_items = transact  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]


@dataclass
class LocalCloud:
    """An in-process AWS (moto) holding the template's tables, streams, key and alias."""

    template_path: Path
    stack: Stack
    _mock: Any
    _atomic: Any = None
    _streams: Any = None

    @classmethod
    def start(cls, template_path: Path, *, stack_name: str = "mqless") -> LocalCloud:
        """Start moto and provision the template; sets the AWS variables for this process."""
        for name, value in _AWS_ENV.items():
            os.environ[name] = value
        os.environ.pop("AWS_PROFILE", None)
        mock = mock_aws(config=_PASSTHROUGH)  # type: ignore[call-overload]
        mock.start()
        atomic = atomic_requests()
        atomic.__enter__()
        streams = streams_survive_rollbacks()
        streams.__enter__()
        try:
            stack = provision(
                load_template(template_path),
                dynamodb=cls.client("dynamodb"),
                kms=cls.client("kms"),
                stack_name=stack_name,
                region=REGION,
            )
        except BaseException:
            streams.__exit__(None, None, None)
            atomic.__exit__(None, None, None)
            mock.stop()
            raise
        return cls(
            template_path=template_path,
            stack=stack,
            _mock=mock,
            _atomic=atomic,
            _streams=streams,
        )

    @staticmethod
    def client(service: str) -> Any:
        """A boto3 client for the embedded AWS."""
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]

    def stop(self) -> None:
        if self._streams is not None:
            self._streams.__exit__(None, None, None)
            self._streams = None
        if self._atomic is not None:
            self._atomic.__exit__(None, None, None)
            self._atomic = None
        self._mock.stop()
