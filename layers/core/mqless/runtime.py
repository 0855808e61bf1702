"""Wiring: the default broker built from the environment, created once per process.

Nothing here runs at import time; handlers call `queue_service()` on their first
invocation, and tests call `reset()` between cases.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from mqless.clock import SystemClock
from mqless.envelope import EnvelopeCipher, KmsKeyProvider
from mqless.live import ApiGatewayPusher, LiveSubscriptions
from mqless.pubsub import TopicService
from mqless.queues import QueueService
from mqless.registry import QueueRegistry
from mqless.settings import Settings
from mqless.store import MessageStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=2,
    read_timeout=10,
    max_pool_connections=32,
)
_lock = threading.Lock()


@cache
def dynamodb_client() -> DynamoDBClient:
    return boto3.client("dynamodb", config=_CLIENT_CONFIG)


@cache
def kms_client() -> KMSClient:
    return boto3.client("kms", config=_CLIENT_CONFIG)


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def cipher() -> EnvelopeCipher:
    """The process-wide body cipher (one data-key cache for every service here)."""
    return _cipher(settings(), kms_client(), SystemClock())


@cache
def live_subscriptions() -> LiveSubscriptions:
    return LiveSubscriptions(dynamodb_client(), settings().destinations_table, SystemClock())


@cache
def pusher() -> ApiGatewayPusher:
    """Pushes to WebSocket connections through the endpoint in CONNECTIONS_ENDPOINT."""
    endpoint = os.environ.get("CONNECTIONS_ENDPOINT")
    if not endpoint:
        raise RuntimeError("CONNECTIONS_ENDPOINT is not set: no WebSocket API to push to")
    return ApiGatewayPusher(
        boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=_CLIENT_CONFIG)
    )


def _cipher(settings: Settings, kms: KMSClient, clock: SystemClock) -> EnvelopeCipher:
    return EnvelopeCipher(
        KmsKeyProvider(kms, settings.kms_key_id),
        clock,
        max_key_age_seconds=settings.data_key_max_age_seconds,
        max_messages_per_key=settings.data_key_max_messages,
    )


def build_queue_service(
    settings: Settings, *, dynamodb: DynamoDBClient, kms: KMSClient
) -> QueueService:
    """A QueueService over the given clients (what tests and the local runtime call)."""
    clock = SystemClock()
    return QueueService(
        registry=QueueRegistry(dynamodb, settings.destinations_table, clock),
        store=MessageStore(dynamodb, settings.messages_table),
        cipher=_cipher(settings, kms, clock),
        clock=clock,
    )


def build_topic_service(
    settings: Settings, *, dynamodb: DynamoDBClient, kms: KMSClient
) -> TopicService:
    """A TopicService over the given clients."""
    clock = SystemClock()
    return TopicService(
        dynamodb=dynamodb,
        messages_table=settings.messages_table,
        destinations_table=settings.destinations_table,
        queues=QueueRegistry(dynamodb, settings.destinations_table, clock),
        cipher=_cipher(settings, kms, clock),
        clock=clock,
    )


_service: QueueService | None = None
_topics: TopicService | None = None


def topic_service() -> TopicService:
    """The process-wide TopicService, built on first use from the environment."""
    global _topics
    with _lock:
        if _topics is None:
            _topics = build_topic_service(settings(), dynamodb=dynamodb_client(), kms=kms_client())
        return _topics


def queue_service() -> QueueService:
    """The process-wide QueueService, built on first use from the environment."""
    global _service
    with _lock:
        if _service is None:
            _service = build_queue_service(settings(), dynamodb=dynamodb_client(), kms=kms_client())
        return _service


def reset() -> None:
    """Forget the cached clients, settings and service (tests switch environments)."""
    global _service, _topics
    with _lock:
        _service = None
        _topics = None
    dynamodb_client.cache_clear()
    cipher.cache_clear()
    live_subscriptions.cache_clear()
    pusher.cache_clear()
    kms_client.cache_clear()
    settings.cache_clear()
