"""Wiring: the default broker built from the environment, created once per process.

The handlers' composition root: each accessor builds its service on first use from one
`Settings` and the process-wide clients (through `mqless.assembly`'s builders, which tests
call with their own), then answers the same object; tests call `reset()` between cases.
Nothing here runs at import time, and each builder imports what it builds when it is first
called, so a function imports only what its own requests use: the authorizer and the
dispatch function never load the WebSocket sessions or the HTTP API's services (issue 18's
cold start; `bench/cold_import.py` measures it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import _lru_cache_wrapper, cache, wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

import boto3
from botocore.config import Config

from mqless import assembly
from mqless.domain.clock import Clock, SystemClock
from mqless.settings import AccessSettings, Settings, WebSocketSettings
from mqless.start_up import in_lambda, start_up_frozen

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

    from mqless.domain.access.authentication import Authenticator, IamPrincipals
    from mqless.domain.access.principals import Policy
    from mqless.domain.access.users import AccessControl
    from mqless.domain.queues.indexing import Indexer
    from mqless.domain.queues.service import QueueService
    from mqless.domain.scheduling import Scheduler
    from mqless.domain.topics.service import TopicService
    from mqless.observability.history import HistoryService
    from mqless.storage.connection_store import ConnectionStore
    from mqless.storage.destinations import QueueRegistry
    from mqless.storage.envelope import EnvelopeCipher
    from mqless.storage.log import LogStore
    from mqless.transports.websocket.pusher import Pusher
    from mqless.transports.websocket.sessions import Sessions

Built = TypeVar("Built")
Service = TypeVar("Service")
# every process-wide accessor's cache, captured when it is defined: reset() clears the real
# caches even while a test has patched a name
_ONCE: list[_lru_cache_wrapper[object]] = []


def _once(build: Callable[[], Built]) -> _lru_cache_wrapper[Built]:
    """Build on the first call, then answer the same object until `reset()`. In Lambda the
    build runs as the handler's import does (`mqless.start_up`): what it makes lives as long
    as the process."""

    @wraps(build)
    def build_frozen() -> Built:
        with start_up_frozen():
            return build()

    cached = cache(build_frozen)
    _ONCE.append(cached)
    return cached


class _OnFirstUse:
    """Stands for what `build` answers, and calls it on first use: a collaborator that a
    request may never touch (KMS for a sweep that fires nothing, the topic service for a
    queue send, the @connections client when nobody listens) costs nothing until it is
    used. In a cold function's first request that is ~8 ms CPU for KMS's client, ~3 ms for
    the @connections one and ~7 ms for the topic service and its modules (issue 18)."""

    def __init__(self, build: Callable[[], object]) -> None:
        self._build = build

    def __getattr__(self, name: str) -> object:
        return getattr(self._build(), name)


def _on_first_use(build: Callable[[], Service]) -> Service:
    """`build()`'s answer, made when it is first used (typed as what it stands for)."""
    return cast(Service, _OnFirstUse(build))


_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=2,
    read_timeout=10,
    max_pool_connections=32,
)


def _client(service: str, **options: Any) -> Any:
    """A client of boto3's default session; in Lambda, that session is the function's own,
    whose loader finds a service without listing them all (`mqless.aws_session`)."""
    if in_lambda():
        from mqless.aws_session import use_own_default_session

        use_own_default_session()
    return boto3.client(service, config=_CLIENT_CONFIG, **options)  # type: ignore[call-overload]


@_once
def dynamodb_client() -> DynamoDBClient:
    return cast("DynamoDBClient", _client("dynamodb"))


@_once
def kms_client() -> KMSClient:
    return cast("KMSClient", _client("kms"))


@_once
def cloudwatch_client() -> CloudWatchClient:
    return cast("CloudWatchClient", _client("cloudwatch"))


def _kms_on_first_use() -> KMSClient:
    """The KMS client for the services: made with their first KMS call (a send's data key,
    a read's decrypt), not with them."""
    return _on_first_use(lambda: kms_client())


@_once
def history() -> HistoryService:
    """The functions' own metrics, read back (the console's charts)."""
    from mqless.observability.history import HistoryService

    return HistoryService(cloudwatch_client(), registry(), policy(), clock())


@_once
def settings() -> Settings:
    return Settings.from_env()


@_once
def access_settings() -> AccessSettings:
    """AUTH_MODE and the JWT settings alone: every handler checks them before anything else."""
    return AccessSettings.from_env()


@_once
def websocket_settings() -> WebSocketSettings:
    """Where the WebSocket API is (the pusher, the web console)."""
    return WebSocketSettings.from_env()


@_once
def clock() -> Clock:
    """The process's time (tests replace it to move time without sleeping)."""
    return SystemClock()


@_once
def auth_required() -> bool:
    """AUTH_MODE: `required` (the default, and what template.yaml sets) or `off`."""
    return access_settings().auth_required


@_once
def policy() -> Policy:
    """Grants decide while authentication is on; with AUTH_MODE=off everything is allowed."""
    from mqless.domain.access.principals import AllowAll, GrantPolicy

    return GrantPolicy() if auth_required() else AllowAll()


@_once
def access() -> AccessControl:
    """Principals and API keys, managed under the process-wide policy."""
    return assembly.build_access_control(
        dynamodb_client(), settings().destinations_table, clock(), policy()
    )


@_once
def authenticator() -> Authenticator:
    """API keys always; JWTs too when JWT_ISSUER names an OIDC issuer."""
    from mqless.domain.access.authentication import (
        Authenticator,
        IssuerKeys,
        JwtSettings,
        JwtVerifier,
    )

    config = access_settings()
    issuer = config.jwt_issuer
    if not issuer:
        return Authenticator(access())
    jwt_settings = JwtSettings(
        issuer=issuer,
        audience=config.jwt_audience,
        principal_claim=config.jwt_principal_claim,
        groups_claim=config.jwt_groups_claim,
    )
    return Authenticator(access(), JwtVerifier(jwt_settings, IssuerKeys(issuer)))


@_once
def iam_principals() -> IamPrincipals:
    from mqless.domain.access.authentication import IamPrincipals

    return IamPrincipals(access())


@_once
def cipher() -> EnvelopeCipher:
    """The process-wide body cipher (one data-key cache for every service here)."""
    return assembly.build_cipher(settings(), _kms_on_first_use(), clock())


@_once
def connection_store() -> ConnectionStore:
    from mqless.storage.connection_store import ConnectionStore

    return ConnectionStore(dynamodb_client(), settings().destinations_table, clock())


@_once
def pusher() -> Pusher:
    """Pushes to WebSocket connections through the endpoint in CONNECTIONS_ENDPOINT."""
    from mqless.transports.websocket.pusher import ApiGatewayPusher

    endpoint = websocket_settings().connections_endpoint
    if not endpoint:
        return NoWebSocketApi()
    # the client is made with the first post: most pumps find no consumer to post to
    return ApiGatewayPusher(
        _on_first_use(cache(lambda: _client("apigatewaymanagementapi", endpoint_url=endpoint)))
    )


class NoWebSocketApi:
    """The pusher where no WebSocket API is configured: pushing is a deployment fault."""

    def post(self, connection_id: str, data: bytes) -> bool:
        raise RuntimeError("CONNECTIONS_ENDPOINT is not set: no WebSocket API to push to")

    def close(self, connection_id: str) -> None:
        self.post(connection_id, b"")


@_once
def sessions() -> Sessions:
    """WebSocket sessions (JSON and STOMP) over the process-wide services."""
    from mqless.transports.websocket.sessions import Sessions

    return Sessions(
        dynamodb=dynamodb_client(),
        table_name=settings().destinations_table,
        live=connection_store(),
        consumers=assembly.build_queue_consumers(
            dynamodb_client(),
            settings().destinations_table,
            queue_service(),
            pusher(),
            clock(),
        ),
        queues=queue_service(),
        topics=_on_first_use(lambda: topic_service()),
        pusher=pusher(),
        cipher=cipher(),
        clock=clock(),
        log=log_store(),
        scheduler=_on_first_use(lambda: scheduler()),
    )


@_once
def scheduler() -> Scheduler:
    """Scheduled sends, their firing by the sweeper, and an admin's list and cancel."""
    return assembly.build_scheduler(
        settings(),
        dynamodb=dynamodb_client(),
        queues=queue_service(),
        topics=_on_first_use(lambda: topic_service()),  # a queue's schedules never use it
        cipher=cipher(),
        policy=policy(),
        time=clock(),
    )


# The process-wide services share one data-key cache and one queue-config cache, so a
# function that both sends and pushes (or fans out) asks KMS and DynamoDB once, not per service.
@_once
def registry() -> QueueRegistry:
    from mqless.storage.destinations import QueueRegistry

    return QueueRegistry(dynamodb_client(), settings().destinations_table, clock())


@_once
def log_store() -> LogStore:
    """The process-wide log adapter (it caches the data keys bodies name)."""
    from mqless.storage.log import LogStore

    return LogStore(dynamodb_client(), settings().messages_table, clock())


@_once
def topic_service() -> TopicService:
    """The process-wide TopicService, built on first use from the environment."""
    service = assembly.build_topic_service(
        settings(),
        dynamodb=dynamodb_client(),
        kms=_kms_on_first_use(),
        cipher=cipher(),
        registry=registry(),
        policy=policy(),
        time=clock(),
        log=log_store(),
    )
    service.replay_with(indexer)  # made on first use: a replay refers as the indexer does
    return service


@_once
def indexer() -> Indexer:
    """The process-wide indexer (the dispatch function)."""
    return assembly.build_indexer(
        settings(),
        dynamodb=dynamodb_client(),
        kms=_kms_on_first_use(),
        registry=registry(),
        # a queue's batch never routes a topic message: the topic service is made for the
        # first one (its replays refer as this indexer does: `topic_service()` says so)
        topics=_on_first_use(lambda: topic_service()),
        time=clock(),
        refer_replays=False,
    )


@_once
def queue_service() -> QueueService:
    """The process-wide QueueService, built on first use from the environment."""
    return assembly.build_queue_service(
        settings(),
        dynamodb=dynamodb_client(),
        kms=_kms_on_first_use(),
        cipher=cipher(),
        registry=registry(),
        policy=policy(),
        time=clock(),
        log=log_store(),
    )


def reset() -> None:
    """Forget the cached clients, settings and services (tests switch environments)."""
    for cached in _ONCE:
        cached.cache_clear()
