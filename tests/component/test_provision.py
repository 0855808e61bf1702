"""Provisioning template.yaml's tables, streams, key and alias in moto, from the template itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage import keys
from mqless.storage.dynamo import from_wire
from mqless_cli.cfn import (
    HttpRoute,
    Stack,
    StreamSource,
    load_template,
    parse_template,
    provision,
)
from mqless_cli.local.stream_filters import record_filter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
TABLES = ["MessagesTable", "DestinationsTable"]


# The aws_env, dynamodb, kms and stack fixtures come from tests/conftest.py.


def test_messages_table_is_created_with_no_secondary_index(
    stack: Stack, dynamodb: DynamoDBClient
) -> None:
    # Given the provisioned template
    # When the messages table is described
    table = dynamodb.describe_table(TableName=stack.resources["MessagesTable"])["Table"]
    # Then it is keyed by pk and sk, billed on demand, and has no index to write to
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table.get("GlobalSecondaryIndexes", []) == []
    assert table.get("LocalSecondaryIndexes", []) == []
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_tables_are_named_after_the_stack_and_logical_id(
    dynamodb: DynamoDBClient, kms: KMSClient
) -> None:
    # Given a stack name other than the default
    # When the template is provisioned under it
    stack = provision(load_template(TEMPLATE_PATH), dynamodb=dynamodb, kms=kms, stack_name="orders")
    # Then the tables and the alias carry that name, and exist
    assert stack.resources["MessagesTable"] == "orders-MessagesTable"
    assert stack.resources["DestinationsTable"] == "orders-DestinationsTable"
    assert stack.resources["MessageKeyAlias"] == "alias/orders-messages"
    assert sorted(dynamodb.list_tables()["TableNames"]) == [
        "orders-DestinationsTable",
        "orders-MessagesTable",
    ]


def test_messages_table_stream_delivers_new_images(
    stack: Stack, dynamodb: DynamoDBClient, service: QueueService
) -> None:
    # Given the provisioned messages table and its stream
    streams = boto3.client("dynamodbstreams")
    stream_arn = stack.attribute("MessagesTable", "StreamArn")
    description = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
    # When a message is sent (one log item written)
    sent = service.send(ANONYMOUS, "orders", NewMessage(body=b"hello"))
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn,
        ShardId=description["Shards"][0]["ShardId"],
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    # Then the stream carries its log item as an INSERT with the new image only
    assert description["StreamViewType"] == "NEW_IMAGE"
    item_id, _ = keys.locate(sent.message_id)
    [logged] = [r for r in records if r["dynamodb"]["Keys"]["sk"] == {"S": item_id}]
    assert logged["eventName"] == "INSERT"
    assert logged["dynamodb"]["NewImage"]["pk"]["S"].startswith("L#orders#")
    assert "OldImage" not in logged["dynamodb"]


@pytest.mark.parametrize(
    ("table", "attribute"), [("MessagesTable", "x"), ("DestinationsTable", "expires_at")]
)
def test_tables_expire_items_on_their_ttl_attribute(
    stack: Stack, dynamodb: DynamoDBClient, table: str, attribute: str
) -> None:
    # Given the provisioned template
    # When a table's TTL is described
    ttl = dynamodb.describe_time_to_live(TableName=stack.resources[table])
    # Then it is enabled on the attribute the core writes there
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": attribute,
    }


def test_every_stored_message_item_carries_the_ttl_attribute(
    stack: Stack, dynamodb: DynamoDBClient, service: QueueService, clock: ManualClock
) -> None:
    # Given a standard and a FIFO message sent at a known time to queues that keep them a day
    for queue in ("orders", "jobs.fifo"):
        service.put_queue(ANONYMOUS, queue, QueueSettings(retention_seconds=86_400))
    service.send(ANONYMOUS, "orders", NewMessage(body=b"a"))
    service.send(ANONYMOUS, "jobs.fifo", NewMessage(body=b"b", group_id="g"))
    # When the messages table is read
    pages = dynamodb.get_paginator("scan").paginate(TableName=stack.resources["MessagesTable"])
    items = [from_wire(i) for page in pages for i in page["Items"]]
    # Then every item written per message expires by itself, for free: the log items (the
    # bodies) at the end of their retention, the index segment with them, and the FIFO
    # dedup record a minute after its 5-minute window
    sent_at = clock.now_ms() // 1000
    logs = [i for i in items if str(i["pk"]).startswith(keys.QUEUE_LOG)]
    assert [i["x"] for i in logs] == [sent_at + 86_400] * 2
    segments = [i for i in items if str(i["pk"]).startswith(keys.INDEX)]
    assert [i["x"] for i in segments] == [sent_at + 86_400]
    [dedup] = [i for i in items if str(i["pk"]).startswith(keys.DEDUP)]
    assert dedup["x"] == sent_at + 300 + 60


@pytest.mark.parametrize("table", TABLES)
def test_tables_are_encrypted_with_the_message_key(
    stack: Stack, dynamodb: DynamoDBClient, table: str
) -> None:
    # Given the provisioned template
    # When a table's encryption is described
    sse = dynamodb.describe_table(TableName=stack.resources[table])["Table"]["SSEDescription"]
    # Then it is the customer managed message key, reported by ARN as DynamoDB does
    assert sse["Status"] == "ENABLED"
    assert sse["SSEType"] == "KMS"
    assert sse["KMSMasterKeyArn"] == stack.attribute("MessageKey", "Arn")


@pytest.mark.parametrize("table", TABLES)
def test_tables_have_point_in_time_recovery(
    stack: Stack, dynamodb: DynamoDBClient, table: str
) -> None:
    # Given the provisioned template
    # When a table's backups are described
    backups = dynamodb.describe_continuous_backups(TableName=stack.resources[table])
    # Then point-in-time recovery is on
    recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"


def test_alias_resolves_to_the_rotating_message_key(stack: Stack, kms: KMSClient) -> None:
    # Given the provisioned template
    # When the alias is looked up
    key = kms.describe_key(KeyId=stack.resources["MessageKeyAlias"])["KeyMetadata"]
    # Then it is the message key, described as in the template, with rotation on
    assert stack.resources["MessageKeyAlias"] == "alias/mqless-messages"
    assert key["KeyId"] == stack.resources["MessageKey"]
    assert key["Arn"] == stack.attribute("MessageKey", "Arn")
    assert key["Description"].startswith("mqless message bodies")
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True


def test_http_api_environment_names_the_created_tables_and_key(
    stack: Stack, dynamodb: DynamoDBClient, kms: KMSClient
) -> None:
    # Given the provisioned template
    # When the HTTP API function's environment is resolved
    environment = stack.environment("HttpApiFunction")
    # Then it names the created tables and key, and they work
    assert environment["MESSAGES_TABLE"] == stack.resources["MessagesTable"]
    assert environment["DESTINATIONS_TABLE"] == stack.resources["DestinationsTable"]
    assert environment["KMS_KEY_ID"] == stack.resources["MessageKey"]
    assert dynamodb.describe_table(TableName=environment["MESSAGES_TABLE"])["Table"]
    data_key = kms.generate_data_key(KeyId=environment["KMS_KEY_ID"], KeySpec="AES_256")
    assert len(data_key["Plaintext"]) == 32
    assert environment["POWERTOOLS_SERVICE_NAME"] == "mqless"


def test_environment_carries_parameter_overrides_as_strings(
    dynamodb: DynamoDBClient, kms: KMSClient
) -> None:
    # Given parameter overrides for the data key cache and log level
    overrides = {"DataKeyMaxAgeSeconds": 60, "LogLevel": "DEBUG"}
    # When the template is provisioned with them
    stack = provision(
        load_template(TEMPLATE_PATH), dynamodb=dynamodb, kms=kms, parameter_overrides=overrides
    )
    # Then every function sees them, as strings like Lambda gives them
    for function in ("HttpApiFunction", "SweeperFunction"):
        environment = stack.environment(function)
        assert environment["DATA_KEY_MAX_AGE_SECONDS"] == "60"
        assert environment["DATA_KEY_MAX_MESSAGES"] == "10000"
        assert environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"


def test_http_routes_send_each_route_to_the_http_api_function(stack: Stack) -> None:
    # Given the provisioned template
    # When its HTTP routes are listed
    routes = stack.http_routes()
    # Then receive and the other queue routes go to the HTTP API function, each once
    assert ("POST", "/queues/{name}/receive", "HttpApiFunction") in routes
    assert HttpRoute("GET", "/openapi.json", "HttpApiFunction") in routes
    assert ("POST", "/topics/{name}/messages", "HttpApiFunction") in routes
    assert len(routes) == len(set(routes)) == 42  # 36, two presence, four scheduled


def test_dispatch_reads_only_new_log_items_and_wake_markers_from_the_stream(stack: Stack) -> None:
    # Given the stack built from template.yaml
    # When the stream triggers are listed
    [source] = stack.stream_sources()
    # Then the dispatch function gets INSERTs of log items (queue and topic) and of wake
    # markers, with partial batch retries
    assert source.function == "DispatchFunction"
    assert source.stream_arn == stack.attribute("MessagesTable", "StreamArn")
    assert source.report_batch_item_failures
    matches = record_filter(source.filter_patterns)

    def insert(pk: str) -> dict[str, Any]:
        return {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": "1"}}}}

    assert [matches(insert(pk)) for pk in ("L#orders#0", "T#shop.paid#3", "W#orders")] == [True] * 3
    # ... and none of the writes that leasing, acking and indexing make
    assert [matches(insert(pk)) for pk in ("I#orders#0", "F#jobs.fifo#0", "D#jobs.fifo#a")] == [
        False
    ] * 3
    assert not matches({**insert("L#orders#0"), "eventName": "MODIFY"})


def test_schedules_run_the_sweeper_every_minute(stack: Stack) -> None:
    # Given the provisioned template
    # When its schedules are listed
    sweeps = [schedule for schedule in stack.schedules() if schedule.function == "SweeperFunction"]
    # Then the sweeper runs once a minute
    assert [(sweep.expression, sweep.rate_seconds, sweep.enabled) for sweep in sweeps] == [
        ("rate(1 minute)", 60, True)
    ]


def test_outputs_name_the_created_resources(stack: Stack) -> None:
    # Given the provisioned template
    # When its outputs are resolved
    outputs = stack.outputs()
    # Then they point at the created tables, key and alias
    assert outputs["MessagesTableName"] == stack.resources["MessagesTable"]
    assert outputs["DestinationsTableName"] == stack.resources["DestinationsTable"]
    assert outputs["MessageKeyArn"] == stack.attribute("MessageKey", "Arn")
    assert outputs["MessageKeyAlias"] == "alias/mqless-messages"


STREAM_TEMPLATE = """
Resources:
  Events:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: events
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Dispatch:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.lambda_handler
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Events.StreamArn
            StartingPosition: LATEST
            BatchSize: 25
            BisectBatchOnFunctionError: true
            FunctionResponseTypes: [ReportBatchItemFailures]
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT"]}'
"""


def test_stream_sources_point_at_the_created_table_stream(
    dynamodb: DynamoDBClient, kms: KMSClient
) -> None:
    # Given a template whose function reads a table's stream
    # When it is provisioned
    stack = provision(parse_template(STREAM_TEMPLATE), dynamodb=dynamodb, kms=kms)
    # Then the stream source names the real stream ARN, with the template's settings
    # and Lambda's defaults for the rest
    stream_arn = dynamodb.describe_table(TableName="events")["Table"]["LatestStreamArn"]
    assert stack.stream_sources() == [
        StreamSource(
            function="Dispatch",
            stream_arn=stream_arn,
            table="Events",
            starting_position="LATEST",
            batch_size=25,
            bisect_batch_on_function_error=True,
            report_batch_item_failures=True,
            filter_patterns=('{"eventName": ["INSERT"]}',),
        )
    ]
    assert stack.stream_sources()[0].maximum_retry_attempts == -1
