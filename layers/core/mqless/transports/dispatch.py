"""The dispatch function's work: DynamoDB stream batches in, indexes and deliveries out.

- New log items (`L#` queue logs, `T#` topic logs) are indexed (`indexing.py`): one index
  write per queue shard per batch, however many messages the batch brings. Their queues'
  push consumers are then fed, and published topic messages pushed to live subscribers.
- A wake marker (`W#<queue>`) asks for the queue's push consumers to be fed again.
- Everything else (index, group, dedup and data-key items) passes by: the event source
  mapping's filter keeps most of it from invoking the function at all.

Indexing is idempotent, so a failed batch is simply retried: it is reported as failed from
its first log record on (Powertools' BatchProcessor reports by SequenceNumber, and Lambda
retries from the lowest one). Pushes and pumps run once the batch is indexed, once per
connection and per queue, so several messages for one connection go out in as few posts as
the frame size allows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

# before anything imports pydantic: Powertools' batch module then leaves out the parser models
# it types a `model=` with (it checks `sys.modules`), which this function never passes; after
# it, the module costs a cold start ~17 ms CPU more (test_cold_start checks the order holds)
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from mqless import wiring
from mqless.domain.errors import InvalidRequest
from mqless.storage import keys, wake
from mqless.storage.dynamo import Item, from_stream_image

if TYPE_CHECKING:
    # the push planning's modules (~22 ms CPU cold) load with the first batch that indexes
    from mqless.domain.push.feeding import PushPlan

logger = Logger(service="mqless", child=True)


class _Batch:
    """What the records of one batch ask for once they are all read."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, Item]] = []  # (sequence number, new image)
        self.published: list[Item] = []
        self.queues: set[str] = set()
        self.indexed: dict[str, set[int]] = {}  # standard queues: the shards appended to
        self.plans: dict[str, PushPlan] = {}  # queues whose new messages go out leased


def handle_record(record: DynamoDBRecord, batch: _Batch) -> None:
    """Note a new log item or wake marker; skip the rest."""
    if record.raw_event.get("eventName") != "INSERT":
        return
    change = record.raw_event.get("dynamodb", {})
    pk = str(from_stream_image(change.get("Keys", {})).get("pk", ""))
    queue = wake.queue_of(pk)
    if queue is not None:
        batch.queues.add(queue)
        return
    if not pk.startswith((keys.QUEUE_LOG, keys.TOPIC_LOG)):
        return
    item = from_stream_image(change.get("NewImage", {}))
    batch.logged.append((str(change.get("SequenceNumber", "")), item))
    if pk.startswith(keys.TOPIC_LOG):
        batch.published.append(item)


def handle_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Index a stream batch, then deliver; report failed records for a retry."""
    batch = _Batch()
    records = [r for r in event.get("Records") or [] if _is_stream_record(r)]
    if not records:
        return {"batchItemFailures": []}
    result = dict(
        process_partial_response(
            event={**event, "Records": records},
            record_handler=lambda record: handle_record(record, batch),
            # one processor per batch: it keeps per-batch state; a batch whose every record
            # failed is reported like any other (Lambda retries from the first failure)
            processor=BatchProcessor(
                event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
            ),
            context=context,
        )
    )
    if batch.logged:
        _plan_pushes(batch)
        try:
            report = wiring.indexer().index(
                (item for _, item in batch.logged),
                push={
                    queue: plan.lease
                    for queue, plan in batch.plans.items()
                    if plan.lease is not None
                },
            )
        except Exception:
            logger.exception("indexing a stream batch failed; it will be retried")
            earlier = result.get("batchItemFailures")
            reported: list[Any] = earlier if isinstance(earlier, list) else []
            failures = [*reported, {"itemIdentifier": batch.logged[0][0]}]
            return {"batchItemFailures": failures}
        batch.queues |= report.queues
        batch.indexed = report.shards
    deliver(batch)
    return result


def _plan_pushes(batch: _Batch) -> None:
    """For each standard queue the batch brings messages to: its push consumers, and one to
    append them leased to (one write for the index and the lease), if one has credit.

    A plan that cannot be made is no plan: the pump after indexing feeds them as ever.
    If the append then fails, what it leased runs out with the lease, as any lease whose
    push never happened (the stream batch is retried and appends nothing twice)."""
    sessions = wiring.sessions()
    queues = set()
    for _, item in batch.logged:
        try:
            kind, queue, _ = keys.parse_log_partition(str(item.get("pk", "")))
        except InvalidRequest:
            continue
        if kind == "queue":
            queues.add(queue)
    for queue in sorted(queues):
        try:
            plan = sessions.plan_push(queue)
        except Exception:
            logger.exception("planning a push failed; the pump feeds", extra={"queue": queue})
            continue
        if plan is not None:
            batch.plans[queue] = plan


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
    sessions = wiring.sessions()
    try:
        if batch.published:
            sessions.push_published(batch.published)
    except Exception:
        logger.exception("pushing to live subscribers failed")
    images = {(str(item["pk"]), str(item["sk"])): item for _, item in batch.logged}
    for queue in sorted(batch.queues):
        plan = batch.plans.get(queue)
        if plan is not None and plan.lease is not None:
            try:
                if sessions.push_leased(plan, images):
                    continue  # all it appended went out: nothing left for a pump
            except Exception:
                logger.exception("pushing leased messages failed", extra={"queue": queue})
                plan = None  # what it counted may be wrong now: the pump reads again
        # a queue woken by a marker (not indexed here) is pumped as any other pump is
        indexed = batch.indexed.get(queue)
        sessions.try_pump(
            queue, indexed=None if indexed is None else frozenset(indexed), planned=plan
        )
