"""The dispatch function, handed by hand the stream records Lambda would hand it.

On AWS (and under `mqless dev`) Lambda's event source mapping hands DispatchFunction the
INSERT records of the messages table that template.yaml's FilterCriteria lets through: queue
log items (`L#`), published topic messages (`T#`) and wake markers (`W#`). Push tests run it
by hand, so that they see what a consumer gets before the dispatch function runs and after.

The records are built from the items as they are stored (a NEW_IMAGE stream record carries
the whole new item), filtered with the template's own patterns
(`mqless_cli.local.stream_filters`, what `mqless dev` filters with).
"""

from __future__ import annotations

from typing import Any

import pytest

from mqless import assembly, wiring
from mqless.domain.clock import SystemClock
from mqless.storage.destinations import QueueRegistry
from mqless.transports.dispatch import handle_batch
from mqless.transports.websocket.sessions import Sessions
from mqless_cli.local.stream_filters import record_filter
from tests.component.conftest import Aws
from tests.lambda_support import FakeLambdaContext

Record = dict[str, Any]


class DispatchFunction:
    """DispatchFunction wired to `sessions`; each call hands it the records of what was
    written to the messages table since the last call (one stream batch)."""

    def __init__(self, aws: Aws, sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
        assert aws.stack is not None
        [source] = [s for s in aws.stack.stream_sources() if s.function == "DispatchFunction"]
        self._wanted = record_filter(source.filter_patterns)
        self._aws = aws
        self._seen: set[tuple[str, str]] = set()
        self._sequence = 0
        self.last: list[Record] = []
        """The records of the last batch handed over (to hand them over again: a retry)."""
        monkeypatch.setattr(wiring, "sessions", lambda: sessions)
        # `$connect` stores the connection through the store alone (no sessions built)
        monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)
        registry = QueueRegistry(aws.dynamodb, aws.settings.destinations_table, SystemClock())
        topics = assembly.build_topic_service(
            aws.settings, dynamodb=aws.dynamodb, kms=aws.kms, registry=registry
        )
        indexer = assembly.build_indexer(
            aws.settings,
            dynamodb=aws.dynamodb,
            kms=aws.kms,
            registry=registry,
            topics=topics,
            time=SystemClock(),
        )
        monkeypatch.setattr(wiring, "indexer", lambda: indexer)

    def new_records(self) -> list[Record]:
        """The stream records of the items written since the last look that the template's
        filter passes, in the order the table returns them."""
        table = self._aws.settings.messages_table
        pages = self._aws.dynamodb.get_paginator("scan").paginate(
            TableName=table, ConsistentRead=True
        )
        records = []
        for item in (i for page in pages for i in page["Items"]):
            key = (item["pk"]["S"], item["sk"]["S"])
            if key in self._seen:
                continue
            self._seen.add(key)
            self._sequence += 1
            record = {
                "eventID": str(self._sequence),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"pk": item["pk"], "sk": item["sk"]},
                    "NewImage": item,
                    "SequenceNumber": str(self._sequence),
                    "StreamViewType": "NEW_IMAGE",
                },
            }
            if self._wanted(record):
                records.append(record)
        return records

    def hand_over(self, records: list[Record]) -> dict[str, Any]:
        """Invoke the function with these records (one batch); its partial-batch answer."""
        self.last = records
        return dict(handle_batch({"Records": records}, FakeLambdaContext()))

    def __call__(self) -> dict[str, Any]:
        """Hand over what was written since the last call."""
        return self.hand_over(self.new_records())
