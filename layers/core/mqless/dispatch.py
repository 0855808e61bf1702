"""The dispatch function's work: DynamoDB stream batches in, topic fan-out out.

Powertools' BatchProcessor reports failed records by SequenceNumber, so Lambda retries
only from the first failure; the fan-out itself is idempotent (conditional puts).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from mqless import runtime
from mqless.dynamo import from_stream_image
from mqless.websocket import push_topic_message

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def handle_record(record: DynamoDBRecord) -> None:
    """Fan out one published topic message (durable, then live); others are not ours."""
    change = record.raw_event.get("dynamodb", {})
    keys = from_stream_image(change.get("Keys", {}))
    if record.raw_event.get("eventName") != "INSERT" or not str(keys.get("pk", "")).startswith(
        "T#"
    ):
        return
    item = from_stream_image(change.get("NewImage", {}))
    runtime.topic_service().fan_out(item)
    push_topic_message(item)


def handle_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process a stream batch, reporting failed records for a partial retry."""
    result = process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
    return dict(result)
