"""The dispatch function's work: DynamoDB stream batches in, deliveries out.

- A published topic message (`T#` INSERT) is copied into each matching durable
  subscription's queue, then pushed to the live subscribers.
- A new item in a queue's partition (`Q#` INSERT: a message, a FIFO group, a wake
  marker) means the queue's push consumers may have something to take: the queue is
  pumped once per batch, however many of its records the batch holds.

Powertools' BatchProcessor reports failed records by SequenceNumber, so Lambda retries
only from the first failure. The fan-out is idempotent (conditional puts); pushes and
pumps run after the batch, once per connection and per queue, so several messages for
one connection travel in as few posts as the frame size allows.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from mqless import runtime
from mqless.dynamo import Item, from_stream_image

logger = Logger(service="mqless", child=True)


class _Batch:
    """What the records of one batch ask for once they are all handled."""

    def __init__(self) -> None:
        self.published: list[Item] = []
        self.queues: set[str] = set()


def handle_record(record: DynamoDBRecord, batch: _Batch) -> None:
    """Fan out one published topic message; note queues with new items; skip the rest."""
    if record.raw_event.get("eventName") != "INSERT":
        return
    change = record.raw_event.get("dynamodb", {})
    pk = str(from_stream_image(change.get("Keys", {})).get("pk", ""))
    if pk.startswith("T#"):
        item = from_stream_image(change.get("NewImage", {}))
        runtime.topic_service().fan_out(item)
        batch.published.append(item)
    elif pk.startswith("Q#"):
        batch.queues.add(pk[2:])


def handle_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process a stream batch, reporting failed records for a partial retry."""
    batch = _Batch()
    records = [r for r in event.get("Records") or [] if _is_stream_record(r)]
    if not records:
        return {"batchItemFailures": []}
    result = process_partial_response(
        event={**event, "Records": records},
        record_handler=lambda record: handle_record(record, batch),
        # one processor per batch: it keeps per-batch state; a batch whose every record
        # failed is reported like any other (Lambda retries from the first failure)
        processor=BatchProcessor(
            event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
        ),
        context=context,
    )
    deliver(batch)
    return dict(result)


def _is_stream_record(record: Any) -> bool:
    """What Lambda sends has a `dynamodb` object; anything else cannot be one of ours."""
    if isinstance(record, dict) and isinstance(record.get("dynamodb"), dict):
        return True
    logger.warning("skipping a malformed stream record", extra={"record": str(record)[:200]})
    return False


def deliver(batch: _Batch) -> None:
    """Push the batch's topic messages to live subscribers and feed its queues' consumers.

    Live pushes are at most once (a live subscriber that is not there misses messages,
    as on any broker); a failing pump loses nothing, its leases return to the queue.
    """
    sessions = runtime.sessions()
    try:
        if batch.published:
            sessions.push_published(batch.published)
    except Exception:
        logger.exception("pushing to live subscribers failed")
    for queue in sorted(batch.queues):
        sessions.try_pump(queue)
