"""A DynamoDB Streams record in the shape Lambda hands it to a function."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["Record", "lambda_record"]


Record = dict[str, Any]


def lambda_record(raw: Mapping[str, Any], *, stream_arn: str, region: str) -> Record:
    """A DynamoDB Streams record (as boto3 parses it) in the shape Lambda delivers it."""
    wire = {key: _wire(value) for key, value in raw.items()}
    record: Record = {
        "eventID": wire.pop("eventID", None),
        "eventName": wire.pop("eventName", None),
        "eventVersion": "1.1",
        "eventSource": wire.pop("eventSource", "aws:dynamodb"),
        "awsRegion": region,
        "dynamodb": wire.pop("dynamodb", {}),
    }
    wire.pop("eventVersion", None)
    wire.pop("awsRegion", None)
    record.update(wire)  # userIdentity (TTL deletes) and anything else the stream gives
    record["eventSourceARN"] = stream_arn
    return record


def _wire(value: Any) -> Any:
    """boto3's parsed values back to JSON: epoch seconds for times, base64 for binary."""
    if isinstance(value, datetime):
        return float(int(value.timestamp()))  # DynamoDB Streams rounds down to the second
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_wire(item) for item in value]
    return value
