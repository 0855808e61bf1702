"""A dispatch function with no lag, for tests: new log items are indexed as they are written.

On AWS a message is receivable once the dispatch function has indexed it from the stream
(docs/storage-engine.md), a fraction of a second after the send. Component tests call the
broker directly and expect to receive what they just sent, so every boto3 DynamoDB client
of the test process indexes the log items it writes right after the write succeeds, with
the real indexer (`mqless.domain.queues.indexing`), as if the dispatch function ran at
once. What the dispatch function does besides indexing (pushing, pumping) stays explicit
in the tests, and tests of the dispatch function itself feed it real stream records.

Installed among botocore's built-in handlers, so every client made later (the fixtures',
the functions' through `mqless.wiring`) has it. `paused()` turns it off, to see what happens
before the dispatch function runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.handlers import BUILTIN_HANDLERS

from mqless import assembly
from mqless.domain.clock import Clock, SystemClock
from mqless.domain.queues.indexing import Indexer
from mqless.settings import Settings
from mqless.storage import keys
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import from_wire
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider

_KEY = "inline_dispatch_items"


class InlineDispatch:
    """Indexes log items written through any boto3 DynamoDB client of this process."""

    def __init__(self) -> None:
        self._settings: dict[str, Settings] = {}
        self._indexers: dict[str, Indexer] = {}
        self._clients: tuple[Any, Any] | None = None
        self._local = threading.local()
        self.clock: Clock = SystemClock()
        self.paused_count = 0
        self.installed = False

    def serve(self, settings: Settings, clock: Clock | None = None) -> None:
        """Index what is written to this stack's messages table from now on."""
        self._settings[settings.messages_table] = settings
        self._indexers.clear()
        if clock is not None:
            self.clock = clock

    def install(self) -> None:
        """Every botocore session made from now on has the hooks: added to botocore's
        built-in handlers, the way moto adds its own stand-in for AWS."""
        if self.installed:
            return
        for operation in ("PutItem", "BatchWriteItem"):
            BUILTIN_HANDLERS.append((f"before-parameter-build.dynamodb.{operation}", self._note))
            BUILTIN_HANDLERS.append((f"after-call.dynamodb.{operation}", self._index))
        self.installed = True

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing written meanwhile is indexed (as when the dispatch function lags)."""
        self.paused_count += 1
        try:
            yield
        finally:
            self.paused_count -= 1

    def index_table(self, messages_table: str, images: list[dict[str, Any]]) -> None:
        """Index these log items now (what `paused` held back, say)."""
        indexer = self._indexer(messages_table)
        if indexer is not None and images:
            indexer.index(images)

    def _note(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        written: list[tuple[str, dict[str, Any]]] = []
        if "Item" in params:
            written.append((str(params.get("TableName", "")), params["Item"]))
        for table, requests in (params.get("RequestItems") or {}).items():
            for request in requests:
                put = request.get("PutRequest")
                if put:
                    written.append((str(table), put["Item"]))
        logged = [
            (table, item)
            for table, item in written
            if str(item.get("pk", {}).get("S", "")).startswith((keys.QUEUE_LOG, keys.TOPIC_LOG))
        ]
        if logged:
            context[_KEY] = logged

    def _index(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        logged = context.pop(_KEY, None)
        if not logged or self.paused_count or getattr(self._local, "busy", False):
            return
        if getattr(http_response, "status_code", 500) >= 300:
            return
        self._local.busy = True
        try:
            by_table: dict[str, list[dict[str, Any]]] = {}
            for table, item in logged:
                by_table.setdefault(table, []).append(from_wire(item))
            for table, images in by_table.items():
                self.index_table(table, images)
        finally:
            self._local.busy = False

    @contextmanager
    def clients_kept(self) -> Iterator[None]:
        """Every dispatch function started in the block (a cold one after each `forget`)
        uses the same two boto3 clients, made here, instead of making its own: a client
        holds no data, and making two cost ~25 ms CPU a test (for a test module over one
        moto: tests/component/conftest.py's `shared_aws`)."""
        self._clients = (
            boto3.client("dynamodb", region_name="us-east-1"),
            boto3.client("kms", region_name="us-east-1"),
        )
        try:
            yield
        finally:
            self._clients = None

    def forget(self) -> None:
        """Start the next batch with a cold dispatch function (its caches empty): tests empty
        the tables between cases, and a cached queue config or secret would outlive them."""
        self._indexers.clear()

    def _indexer(self, messages_table: str) -> Indexer | None:
        settings = self._settings.get(messages_table)
        if settings is None:
            return None
        found = self._indexers.get(messages_table)
        if found is None:
            dynamodb, kms = self._clients or (
                boto3.client("dynamodb", region_name="us-east-1"),
                boto3.client("kms", region_name="us-east-1"),
            )
            registry = QueueRegistry(dynamodb, settings.destinations_table, self.clock)
            topics = assembly.topic_service_over(
                dynamodb=dynamodb,
                messages_table=settings.messages_table,
                destinations_table=settings.destinations_table,
                queues=registry,
                cipher=EnvelopeCipher(KmsKeyProvider(kms, settings.kms_key_id), self.clock),
                clock=self.clock,
            )
            found = self._indexers[messages_table] = assembly.build_indexer(
                settings,
                dynamodb=dynamodb,
                kms=kms,
                registry=registry,
                topics=topics,
                time=self.clock,
            )
        return found


INLINE_DISPATCH = InlineDispatch()
