"""Which stream records `mqless dev` hands the dispatch function, and how much of the others
it reads to decide."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from mqless_cli.local import stream_filters
from mqless_cli.local.stream_filters import raw_filter
from mqless_cli.local.stream_records import lambda_record

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/messages/stream/2026-01-01T00:00:00.000"
# the dispatch function's FilterCriteria in template.yaml
PATTERN = json.dumps(
    {
        "eventName": ["INSERT"],
        "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "L#"}, {"prefix": "T#"}, {"prefix": "W#"}]}}},
    }
)


def _item(event: str, pk: str) -> dict[str, Any]:
    """A stream item as boto3 parses GetRecords: times as datetimes, binary as bytes."""
    image = {"pk": {"S": pk}, "body": {"B": b"x" * 1024}}
    return {
        "eventID": f"{event}-{pk}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 12, 7, tzinfo=UTC),
            "Keys": {"pk": {"S": pk}},
            "NewImage": image,
            "SequenceNumber": "100",
            "SizeBytes": 1100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_records_no_filter_matches_are_left_out_without_their_images_being_converted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the dispatch function's filter, and a record of what each conversion to Lambda's
    # shape was handed
    converted: list[set[str]] = []

    def recorded(raw: Mapping[str, Any], **where: str) -> dict[str, Any]:
        converted.append(set(raw["dynamodb"]))
        return lambda_record(raw, **where)

    monkeypatch.setattr(stream_filters, "lambda_record", recorded)
    accept = raw_filter([PATTERN], ARN, "us-east-1")
    insert, update = _item("INSERT", "L#orders#1"), _item("MODIFY", "Q#orders")

    # When a message's INSERT and a lease's MODIFY are read from the stream
    handed, left_out = accept(insert), accept(update)

    # Then the INSERT is handed over as Lambda shapes it, and the MODIFY left out
    assert handed == lambda_record(insert, stream_arn=ARN, region="us-east-1")
    assert left_out is None
    # with no image of the MODIFY converted: only the keys the filter looks at were
    assert [fields for fields in converted if "NewImage" in fields] == [set(insert["dynamodb"])]


@pytest.mark.parametrize(
    "pattern",
    [
        {"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "Q#"}]}}}},
        {"dynamodb": {"OldImage": [{"exists": False}]}, "eventName": ["MODIFY"]},
    ],
)
def test_a_filter_on_the_images_still_sees_them(pattern: dict[str, Any]) -> None:
    # Given a filter that looks at the images
    accept = raw_filter([json.dumps(pattern)], ARN, "us-east-1")
    update = _item("MODIFY", "Q#orders")

    # When a MODIFY whose new image it matches is read
    handed = accept(update)

    # Then it is handed over whole
    assert handed == lambda_record(update, stream_arn=ARN, region="us-east-1")
