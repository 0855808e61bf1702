"""AWS list prices the meter bills at: on-demand, us-east-1, no free tier.

Sources (the public pricing pages, as published when this was written, 2026-12):
- DynamoDB on-demand: https://aws.amazon.com/dynamodb/pricing/on-demand/ — $0.625 per
  million write request units, $0.125 per million read request units (the rates since
  the on-demand price cut of 2024-11-01). Reads of the stream by a Lambda trigger and
  TTL deletes are free.
- API Gateway: https://aws.amazon.com/api-gateway/pricing/ — HTTP APIs $1.00 per million
  requests (first 300 million a month), metered in 512 KB increments; WebSocket APIs
  $1.00 per million messages (first billion), metered in 32 KB increments, messages sent
  and received (@connections posts included), plus $0.25 per million connection minutes.
- Lambda: https://aws.amazon.com/lambda/pricing/ — $0.20 per million requests; Arm
  (arm64, what template.yaml deploys) $0.0000133334 per GB-second, billed per 1 ms.
- KMS: https://aws.amazon.com/kms/pricing/ — $0.03 per 10,000 requests ($1 a month per key
  is not per message and left out).
- SQS, the reference: https://aws.amazon.com/sqs/pricing/ — $0.40 per million requests for
  standard queues, $0.50 for FIFO queues; "each 64 KB chunk of a payload is billed as
  1 request"; a batch of up to 10 messages is one request.
- CloudWatch: https://aws.amazon.com/cloudwatch/pricing/ — logs ingested (standard class)
  $0.50 per GB: the functions' EMF metric documents are log lines, each billed as its UTF-8
  bytes plus 26 bytes of event overhead (PutLogEvents' own size rule); CloudWatch turns them
  into metrics without a PutMetricData request. Custom metrics $0.30 per metric a month
  (first 10,000) and GetMetricData $0.01 per 1,000 metrics requested are per queue and
  per console view, not per message, and left out.
- SNS, the reference for topics: https://aws.amazon.com/sns/pricing/ — $0.50 per million
  publish requests (64 KB chunks, as SQS), deliveries to SQS queues free.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-12"
REGION = "us-east-1"
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """Dollars per unit of each meter."""

    dynamodb_write_unit: float = 0.625 / MILLION
    dynamodb_read_unit: float = 0.125 / MILLION
    http_api_request: float = 1.00 / MILLION
    http_api_request_bytes: int = 512 * 1024
    websocket_message: float = 1.00 / MILLION
    websocket_message_bytes: int = 32 * 1024
    websocket_connection_minute: float = 0.25 / MILLION
    lambda_request: float = 0.20 / MILLION
    lambda_gb_second: float = 0.0000133334  # arm64
    kms_request: float = 0.03 / 10_000
    sqs_standard_request: float = 0.40 / MILLION
    sqs_fifo_request: float = 0.50 / MILLION
    sqs_request_bytes: int = 64 * 1024
    sqs_batch: int = 10
    sns_publish_request: float = 0.50 / MILLION
    cloudwatch_logs_gb: float = 0.50
    log_event_overhead_bytes: int = 26
    cloudwatch_custom_metric_month: float = 0.30
    cloudwatch_metrics_requested: float = 0.01 / 1000


PRICES = Prices()
