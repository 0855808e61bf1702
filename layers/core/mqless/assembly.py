"""The broker's services, each built over the clients, settings and collaborators it is given.

What tests, the benches and the local runtime call to build a service over their own
clients (moto's) and clock; `mqless.wiring` calls the same builders with the process-wide
ones, once per process. Each builder imports what it builds when it is called, so a
function loads only the services its requests use (issue 18's cold start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqless.domain.clock import Clock, SystemClock
from mqless.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

    from mqless.domain.access.principals import Policy
    from mqless.domain.access.quotas import Quotas
    from mqless.domain.access.users import AccessControl
    from mqless.domain.push.consumers import QueueConsumers
    from mqless.domain.push.pushes import Pusher as PushPoster
    from mqless.domain.queues.indexing import Indexer
    from mqless.domain.queues.service import QueueService
    from mqless.domain.scheduling import Scheduler
    from mqless.domain.topics.service import TopicService
    from mqless.storage.destinations import QueueRegistry
    from mqless.storage.envelope import EnvelopeCipher
    from mqless.storage.log import LogStore
    from mqless.storage.sealing import BodyCipher


def build_scheduler(
    settings: Settings,
    *,
    dynamodb: DynamoDBClient,
    queues: QueueService,
    topics: TopicService,
    cipher: BodyCipher,
    policy: Policy,
    time: Clock,
) -> Scheduler:
    """A Scheduler over the given services (what tests call)."""
    from mqless.domain.scheduling import Scheduler
    from mqless.storage.schedules import ScheduleStore

    return Scheduler(
        store=ScheduleStore(dynamodb, settings.messages_table),
        queues=queues,
        topics=topics,
        cipher=cipher,
        clock=time,
        policy=policy,
        lookahead_seconds=settings.schedule_lookahead_seconds,
    )


def build_cipher(settings: Settings, kms: KMSClient, time: Clock) -> EnvelopeCipher:
    """An envelope cipher over KMS with the settings' data-key cache limits."""
    from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider

    return EnvelopeCipher(
        KmsKeyProvider(kms, settings.kms_key_id),
        time,
        max_key_age_seconds=settings.data_key_max_age_seconds,
        max_messages_per_key=settings.data_key_max_messages,
    )


def build_queue_service(
    settings: Settings,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    cipher: EnvelopeCipher | None = None,
    registry: QueueRegistry | None = None,
    policy: Policy | None = None,
    time: Clock | None = None,
    log: LogStore | None = None,
) -> QueueService:
    """A QueueService over the given clients (what tests and the local runtime call)."""
    from mqless.domain.access.principals import AllowAll
    from mqless.domain.access.quotas import Quotas
    from mqless.domain.queues.dedup import DedupHasher
    from mqless.domain.queues.service import QueueService
    from mqless.storage.dedup_records import DedupRecords
    from mqless.storage.dedup_secret import DedupSecretStore
    from mqless.storage.destinations import QueueRegistry
    from mqless.storage.envelope import KmsKeyProvider
    from mqless.storage.groups import FifoIndex
    from mqless.storage.index import IndexStore
    from mqless.storage.log import LogStore
    from mqless.storage.wake import WakeMarkers

    time = time or SystemClock()
    policy = policy or AllowAll()
    table = settings.messages_table
    return QueueService(
        registry=registry or QueueRegistry(dynamodb, settings.destinations_table, time),
        log=log or LogStore(dynamodb, table, time),
        index=IndexStore(dynamodb, table),
        fifo=FifoIndex(dynamodb, table, time),
        dedup_records=DedupRecords(dynamodb, table),
        wake=WakeMarkers(dynamodb, table),
        cipher=cipher or build_cipher(settings, kms, time),
        dedup=DedupHasher(
            KmsKeyProvider(kms, settings.kms_key_id),
            DedupSecretStore(dynamodb, settings.destinations_table),
        ),
        clock=time,
        policy=policy,
        quotas=Quotas(policy, settings.limits),
    )


def build_topic_service(
    settings: Settings,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    cipher: EnvelopeCipher | None = None,
    registry: QueueRegistry | None = None,
    policy: Policy | None = None,
    time: Clock | None = None,
    log: LogStore | None = None,
) -> TopicService:
    """A TopicService over the given clients."""
    from mqless.domain.access.principals import AllowAll
    from mqless.domain.access.quotas import Quotas
    from mqless.storage.destinations import QueueRegistry

    time = time or SystemClock()
    policy = policy or AllowAll()
    return topic_service_over(
        dynamodb=dynamodb,
        messages_table=settings.messages_table,
        destinations_table=settings.destinations_table,
        queues=registry or QueueRegistry(dynamodb, settings.destinations_table, time),
        cipher=cipher or build_cipher(settings, kms, time),
        clock=time,
        policy=policy,
        quotas=Quotas(policy, settings.limits),
        log=log,
    )


def topic_service_over(
    *,
    dynamodb: DynamoDBClient,
    messages_table: str,
    destinations_table: str,
    queues: QueueRegistry,
    cipher: BodyCipher,
    clock: Clock,
    policy: Policy | None = None,
    quotas: Quotas | None = None,
    log: LogStore | None = None,
) -> TopicService:
    """A TopicService over one DynamoDB client and the two tables (what tests call)."""
    from mqless.domain.topics.service import TopicService
    from mqless.storage.log import LogStore
    from mqless.storage.subscriptions import SubscriptionStore

    return TopicService(
        subscriptions=SubscriptionStore(dynamodb, destinations_table),
        log=log or LogStore(dynamodb, messages_table, clock),
        queues=queues,
        cipher=cipher,
        clock=clock,
        policy=policy,
        quotas=quotas,
    )


def build_queue_consumers(
    dynamodb: DynamoDBClient,
    table_name: str,
    queues: QueueService,
    pusher: PushPoster,
    time: Clock,
    *,
    budget: int | None = None,
) -> QueueConsumers:
    """Queue push consumers over the given client (what tests call), rendering pushes with
    the WebSocket transport's `render`."""
    from mqless.domain.push.consumers import QueueConsumers
    from mqless.domain.push.feeding import PUMP_BUDGET
    from mqless.storage.deliveries import DeliveryRecords
    from mqless.storage.push_consumers import PushConsumers
    from mqless.transports.websocket.render import render

    return QueueConsumers(
        PushConsumers(dynamodb, table_name),
        DeliveryRecords(dynamodb, table_name),
        queues,
        pusher,
        render,
        time,
        budget=PUMP_BUDGET if budget is None else budget,
    )


def build_indexer(
    settings: Settings,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    registry: QueueRegistry,
    topics: TopicService,
    time: Clock,
    refer_replays: bool = True,
) -> Indexer:
    """The dispatch function's indexer over the given clients; `topics`' replays refer their
    messages as it does unless `refer_replays` is false (the caller wires them itself)."""
    from mqless.domain.queues.dedup import DedupHasher
    from mqless.domain.queues.indexing import Indexer
    from mqless.storage.dedup_secret import DedupSecretStore
    from mqless.storage.envelope import KmsKeyProvider
    from mqless.storage.groups import FifoIndex
    from mqless.storage.index import IndexStore

    table = settings.messages_table
    indexer = Indexer(
        queues=registry,
        index=IndexStore(dynamodb, table),
        fifo=FifoIndex(dynamodb, table, time),
        topics=topics,
        clock=time,
        mac=DedupHasher(
            KmsKeyProvider(kms, settings.kms_key_id),
            DedupSecretStore(dynamodb, settings.destinations_table),
        ).mac,
    )
    if refer_replays:
        topics.replay_with(lambda: indexer)  # replays refer their messages as it does
    return indexer


def build_access_control(
    dynamodb: DynamoDBClient, table_name: str, time: Clock, policy: Policy | None = None
) -> AccessControl:
    """Principals and API keys in the given destinations table (what tests and the CLI call)."""
    from mqless.domain.access.api_keys import ApiKeys
    from mqless.domain.access.users import AccessControl
    from mqless.storage.api_keys import ApiKeyRecords
    from mqless.storage.principals import PrincipalRecords

    return AccessControl(
        PrincipalRecords(dynamodb, table_name),
        ApiKeys(ApiKeyRecords(dynamodb, table_name), time),
        time,
        policy,
    )
