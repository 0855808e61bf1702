"""`mqless dev --realism`: the AWS behaviours moto hides, brought back on purpose.

moto answers at once, never throttles, never expires a TTL item and never hands a stream
record over twice. AWS does all of these, and a broker built on it must be right under each
of them; this module makes the embedded AWS do them when asked. Each behaviour is a field of
`Realism` and can be turned on alone; `AWS` holds the defaults `--realism aws` uses, each
taken from AWS's documentation:

- `read_lag_ms` (500): eventually consistent reads "may not reflect the results of a
  recently completed write operation" (DynamoDB Developer Guide, *DynamoDB read
  consistency*); here they see each item as it was up to 500 ms ago
  (`consistency.lagging_reads`). A `ConsistentRead` Query on a GSI is a ValidationException
  on AWS ("Strongly consistent reads are not supported on global secondary indexes", API
  Reference, *Query*); moto already refuses it, so nothing is added for it.
- `stream_poll_ms` (250): "Lambda polls shards in your DynamoDB stream for records at a base
  rate of 4 times per second" (Lambda Developer Guide, *Using AWS Lambda with Amazon
  DynamoDB*); the template's batching window comes on top, as before.
- `stream_redelivery` (0.01): "Lambda event source mappings process each event at least
  once, and duplicate processing of records can occur" (same page); here a batch that
  succeeded is handed over once more at this rate.
- `shard_roll_minutes` (240): DynamoDB Streams shards "are ephemeral: they are created and
  deleted automatically by DynamoDB"; a shard's records must be processed before its
  children's (Developer Guide, *DynamoDB Streams*: "process a parent shard before you
  process a child shard"). AWS gives no period; users report a roll over about every 4 hours.
  Here the open shard of every stream is closed and a child opened this often; the poller
  finishes the parent, then finds the child (its discovery runs every 2 s).
- `throttle` (on; `partition_wcu` 1,000, `partition_rcu` 3,000): "Each partition on the table
  can serve up to 3,000 read request units or 1,000 write request units" (AWS Knowledge
  Center, *My on-demand DynamoDB table is throttled*), enforced per partition key value over
  a sliding second; the SDK retries as it does on AWS.
- `dynamodb_throttle` (0): a share of all DynamoDB requests throttled whatever their
  partition's load; on-demand tables also throttle when traffic "exceed[s] double your
  previous traffic's peak within 30 minutes" (same Knowledge Center page). Off in `aws`: a
  fault for tests (`dynamodb-throttle=1` throttles everything).
- `ttl` (`random`, `ttl_max_delay_s` 300): "DynamoDB typically deletes expired items within
  two days of expiration ... Items that have expired and not been deleted will still show up
  in reads" (API Reference, *UpdateTimeToLive*); here at a random moment up to 300 s after
  expiry (`at-once`, or `never`: moto's own behaviour).
- `kms_throttle` (0.01): KMS "throttles API requests that exceed certain boundaries, and
  returns a ThrottlingException" (KMS Developer Guide, *Throttling AWS KMS requests*); here a
  share of KMS requests, whatever the rate.

- `lambda_concurrency` (1,000): "Concurrent executions | 1,000" per Region (Lambda Developer
  Guide, *Lambda quotas*); an invocation beyond it is throttled without running. Behind an
  API Gateway proxy integration Lambda's 429 reaches the client as a 500 "Internal Server
  Error": "If the backend service is throttled ... the API Gateway API might return an
  Internal server error" (AWS Knowledge Center, *API Gateway internal server error*), so the
  HTTP gateway answers 500 and the WebSocket gateway an `Internal server error` frame.
- `lambda_timeouts` (on): a function is stopped at its template `Timeout` ("Task timed out
  after N seconds"); through an HTTP API that is the 500 of any failed invocation.
- `integration_timeout_s` (30): an HTTP API waits at most 30 s for its integration
  ("Maximum integration timeout | 30 seconds | No", API Gateway Developer Guide, *Quotas for
  configuring and running an HTTP API*; REST APIs 29 s), then answers 503 "Service
  Unavailable" (what HTTP API users report; the Knowledge Center's *API Gateway 504 errors*
  names 504 for REST APIs).
- `websocket_integration_timeout_s` (29): a WebSocket API's route waits at most 29 s
  ("Integration timeout | 50 milliseconds - 29 seconds for all integration types", API
  Gateway Developer Guide, *Quotas for configuring and running a WebSocket API*), then sends
  the client `{"message": "Endpoint request timed out", "connectionId":..., "requestId":...}`
  (the frame AWS users report) and keeps the connection; the function runs on.
- `cold_starts` (on): each new instance of a function (one more running at once) first
  waits as long as its handler module took to import here, measured on its first load
  (Lambda's Init phase runs the code outside the handler before the first invocation of
  each execution environment; Lambda Developer Guide, *Lambda execution environment
  lifecycle*).

The throttles are answered the way AWS answers them (HTTP 400 with the error type), before
moto sees the request, so botocore retries them exactly as it retries AWS's: what reaches
the broker is what would reach it on AWS once the SDK has given up.

- `clock_skew_ms` (0 in `aws`): each new function instance's clock is off by a random
  amount up to this many ms either way, for every read of the core's `SystemClock`
  (`skewed_clocks`): leases, message ids, expiry, item TTLs, STOMP `expires`, audit times.
  Durations the core times with `time.monotonic` (cache ages) are not skewed: an offset
  does not change an interval. AWS documents no bound for Lambda's clocks, so `aws` leaves
  it off; set it to test how the broker takes skew (`clock-skew-ms=50`).

Not reproduced: shard splits (a roll always opens one child); the integration limit on
the WebSocket API's `$connect` (only message routes are limited).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mqless_cli.billing.dynamodb import Capacity, item_size, query_read
from mqless_cli.billing.moto_observer import _charges, _schema, _touched, dynamodb_backend
from mqless_cli.local.consistency import lagging_reads
from mqless_cli.local.functions import INSTANCE_CLOCK_SKEW_MS, LambdaLimits
from mqless_cli.local.streams import Record, StreamPoller

log = logging.getLogger(__name__)

TtlMode = Literal["never", "random", "at-once"]


class Realism(BaseModel):
    """Which AWS behaviours the embedded AWS reproduces; all off by default (plain moto)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    read_lag_ms: Annotated[
        float, Field(ge=0, description="Eventually consistent reads see state up to this old.")
    ] = 0
    stream_poll_ms: Annotated[
        float, Field(ge=0, description="Least time between two reads of one stream shard.")
    ] = 0
    stream_redelivery: Annotated[
        float, Field(ge=0, le=1, description="Chance a stream batch is handed over again.")
    ] = 0
    throttle: Annotated[
        bool, Field(description="Per partition key limits over a sliding second.")
    ] = False
    partition_wcu: Annotated[float, Field(gt=0, description="Write units per key a second.")] = 1000
    partition_rcu: Annotated[float, Field(gt=0, description="Read units per key a second.")] = 3000
    dynamodb_throttle: Annotated[
        float, Field(ge=0, le=1, description="Chance any DynamoDB request is throttled.")
    ] = 0
    shard_roll_minutes: Annotated[
        float, Field(ge=0, description="Close each stream shard and open a child this often.")
    ] = 0
    ttl: Annotated[TtlMode, Field(description="When expired items are deleted.")] = "never"
    ttl_max_delay_s: Annotated[
        float, Field(ge=0, description="`random` TTL: the latest deletion after expiry.")
    ] = 300
    kms_throttle: Annotated[
        float, Field(ge=0, le=1, description="Chance a KMS request is throttled.")
    ] = 0
    lambda_concurrency: Annotated[
        int, Field(ge=0, description="Invocations running at once, all functions; 0: no cap.")
    ] = 0
    lambda_timeouts: Annotated[
        bool, Field(description="Stop a function at its template Timeout.")
    ] = False
    integration_timeout_s: Annotated[
        float, Field(ge=0, description="How long an HTTP route waits for its function; 0: ever.")
    ] = 0
    websocket_integration_timeout_s: Annotated[
        float,
        Field(ge=0, description="How long a WebSocket route waits for its function; 0: ever."),
    ] = 0
    cold_starts: Annotated[
        bool, Field(description="A new function instance waits its handler's import time.")
    ] = False
    clock_skew_ms: Annotated[
        float, Field(ge=0, description="Each function instance's clock off by up to this.")
    ] = 0
    seed: Annotated[int | None, Field(description="Seed of every random draw.")] = None

    @property
    def lambda_limits(self) -> LambdaLimits:
        """What the function host enforces."""
        return LambdaLimits(
            concurrency=self.lambda_concurrency,
            timeouts=self.lambda_timeouts,
            cold_starts=self.cold_starts,
            clock_skew_ms=self.clock_skew_ms,
            seed=self.seed,
        )

    @property
    def active(self) -> bool:
        """Whether anything differs from plain moto."""
        return self != OFF

    def describe(self) -> str:
        """One line for the console: what is on."""
        on = [
            f"{name.replace('_', '-')}={value}"
            for name, value in self.model_dump().items()
            if value != OFF.model_dump()[name]
        ]
        return ", ".join(on) or "off"


OFF = Realism()
AWS = Realism(
    read_lag_ms=500,
    shard_roll_minutes=240,
    stream_poll_ms=250,
    stream_redelivery=0.01,
    throttle=True,
    ttl="random",
    kms_throttle=0.01,
    lambda_concurrency=1000,
    lambda_timeouts=True,
    integration_timeout_s=30,
    websocket_integration_timeout_s=29,
    cold_starts=True,
)
_PRESETS = {"aws": AWS, "off": OFF}


def parse_realism(spec: str) -> Realism:
    """`aws`, `off`, or `key=value` pairs (dashes or underscores), comma separated, optionally
    after a preset: `aws,stream-redelivery=0.05` or `throttle=on,kms-throttle=0.1`."""
    base = OFF
    values: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" not in part:
            if part not in _PRESETS or values:
                raise ValueError(
                    f"{part!r}: expected a preset ({', '.join(_PRESETS)}) first, or key=value"
                )
            base = _PRESETS[part]
            continue
        key, _, value = part.partition("=")
        name = key.strip().replace("-", "_")
        if name not in Realism.model_fields:
            known = ", ".join(n.replace("_", "-") for n in Realism.model_fields)
            raise ValueError(f"unknown realism setting {key.strip()!r} (known: {known})")
        values[name] = value.strip()
    try:
        return Realism.model_validate({**base.model_dump(), **values})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_", "-")
        raise ValueError(f"{where}: {first['msg']}") from None


# ---- the faults ------------------------------------------------------------------------------


@dataclass
class RealismReport:
    """What the faults did so far."""

    throttled_writes: int = 0
    throttled_reads: int = 0
    throttled_anyway: int = 0
    kms_throttled: int = 0
    ttl_deleted: int = 0
    stream_redelivered: int = 0
    shards_rolled: int = 0
    lag: Any = None
    """`consistency.LagReport` while reads lag."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


_WRITES = frozenset(("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"))
_READS = frozenset(("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"))
_KMS_THROTTLED = (
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
)


class PartitionThroughput:
    """Units each partition key consumed over the last second, table and index apart."""

    def __init__(self, write_limit: float, read_limit: float) -> None:
        self.write_limit = write_limit
        self.read_limit = read_limit
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str | None, str], deque[tuple[float, float, float]]] = (
            defaultdict(deque)
        )

    def record_dynamodb(
        self, operation: str, charges: Sequence[Capacity], *, failed_conditions: int = 0
    ) -> None:
        """What a request consumed."""
        now = time.monotonic()
        with self._lock:
            for charge in charges:
                key = (charge.table, charge.index, charge.partition)
                self._used[key].append((now, charge.write_units, charge.read_units))

    def over(self, keys: Sequence[tuple[str, str | None, str]], *, write: bool) -> bool:
        """Whether any of these partitions has used its second's worth already."""
        now = time.monotonic()
        limit = self.write_limit if write else self.read_limit
        with self._lock:
            for key in keys:
                used = self._used.get(key)
                if not used:
                    continue
                while used and used[0][0] < now - 1.0:
                    used.popleft()
                total = sum(w if write else r for _, w, r in used)
                if total >= limit:
                    return True
        return False


def _error(type_name: str, message: str, **extra: Any) -> tuple[int, dict[str, str], str]:
    body = json.dumps({"__type": type_name, "message": message, **extra})
    return 400, {"Content-Type": "application/x-amz-json-1.0"}, body


def _partitions(backend: Any, operation: str, params: dict[str, Any], touched: Any) -> list[Any]:
    """The (table, index, partition key value) a request touches, as the meter names them."""
    if operation == "Query":
        found = _query_partition(backend, params)
        return [found] if found is not None else []
    return [(t.schema.name, None, t.schema.partition(t.key)) for t in touched]


def _consumed(
    backend: Any, operation: str, params: dict[str, Any], touched: Any, result: Any
) -> list[Capacity]:
    """What an answered request consumed, as the bill counts it; a Query by the items it
    returned (the bill's own capture of what moto read is not re-entrant)."""
    if result is None:
        return []
    status, _, body = result
    if operation == "Query":
        found = _query_partition(backend, params)
        schema = _schema(backend, params.get("TableName", ""))
        if found is None or schema is None or not 200 <= int(status) < 300:
            return []
        items = json.loads(_text(body) or "{}").get("Items", [])
        consistent = bool(params.get("ConsistentRead"))
        _, index, partition = found
        return [
            query_read(
                schema, index, partition, [item_size(i) for i in items], consistent=consistent
            )
        ]
    if operation == "Scan":
        return []
    charges, _ = _charges(backend, operation, params, touched, [], status, body)
    return charges


_EQUALS = re.compile(r"([#\w.]+)\s*=\s*(:\w+)")


def _query_partition(backend: Any, params: dict[str, Any]) -> Any:
    table = params.get("TableName", "")
    schema = _schema(backend, table)
    if schema is None:
        return None
    index = params.get("IndexName")
    hash_key = schema.index(index).hash_key if index else schema.hash_key
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    for name, placeholder in _EQUALS.findall(params.get("KeyConditionExpression", "")):
        if names.get(name, name) == hash_key and placeholder in values:
            value = values[placeholder]
            return (table, index, str(next(iter(value.values()))))
    return None


@contextmanager
def faulty_aws(realism: Realism, report: RealismReport) -> Iterator[None]:
    """While the block runs, in-process moto throttles as `realism` says."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    throughput = PartitionThroughput(realism.partition_wcu, realism.partition_rcu)
    draw = random.Random(realism.seed)
    draw_lock = threading.Lock()

    def chance(rate: float) -> bool:
        with draw_lock:
            return draw.random() < rate

    def process_request(self: Any, request: Any) -> Any:
        target = _text(request.headers.get("X-Amz-Target"))
        prefix, _, operation = target.partition(".")
        if prefix == "TrentService":
            if realism.kms_throttle and chance(realism.kms_throttle):
                report.count("kms_throttled")
                return _error("ThrottlingException", _KMS_THROTTLED)
            return original(self, request)
        if prefix != "DynamoDB_20120810":
            return original(self, request)
        if realism.dynamodb_throttle and chance(realism.dynamodb_throttle):
            report.count("throttled_anyway")
            return _error(
                "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "Throughput exceeds the current throughput limit for your account.",
            )
        if not realism.throttle:
            return original(self, request)
        write = operation in _WRITES
        if not write and operation not in _READS:
            return original(self, request)
        params = json.loads(_text(request.body) or "{}")
        backend = dynamodb_backend(request)
        touched = [] if operation in ("Query", "Scan") else _touched(backend, operation, params)
        keys = _partitions(backend, operation, params, touched)
        if throughput.over(keys, write=write):
            report.count("throttled_writes" if write else "throttled_reads")
            kind = "Write" if write else "Read"
            return _error(
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "Throughput exceeds the current capacity for one or more partitions of your "
                "table or index.",
                ThrottlingReasons=[{"reason": f"Table{kind}KeyRangeThroughputExceeded"}],
            )
        result = original(self, request)
        throughput.record_dynamodb(
            operation, _consumed(backend, operation, params, touched, result)
        )
        return result

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        if BotocoreStubber.process_request is process_request:
            BotocoreStubber.process_request = original  # type: ignore[method-assign]


# ---- TTL ----------------------------------------------------------------------------------


class TtlReaper:
    """Deletes expired items of every table with TTL on, as DynamoDB's background process
    does: each at its own moment after expiry (`random`) or at once (`at-once`), with the
    stream record a TTL delete writes (a REMOVE by `dynamodb.amazonaws.com`)."""

    def __init__(self, realism: Realism, report: RealismReport, *, every_s: float = 0.5) -> None:
        self._mode = realism.ttl
        self._max_delay = realism.ttl_max_delay_s
        self._report = report
        self._every = every_s
        self._draw = random.Random(realism.seed)
        self._due: dict[tuple[str, str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="realism-ttl", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.sweep()
            except Exception:  # a table deleted midway: the next sweep sees the new state
                log.exception("realism: TTL sweep failed")

    def sweep(self, now: float | None = None) -> int:
        """Delete what is due now; returns how many items were deleted."""
        from moto.dynamodb.models import dynamodb_backends

        from mqless_cli.local.moto_fixes import REQUEST_LOCK

        now = time.time() if now is None else now
        deleted = 0
        with REQUEST_LOCK.lock:
            for account in list(dynamodb_backends.keys()):
                for region, backend in list(dynamodb_backends[account].items()):
                    for table in list(backend.tables.values()):
                        deleted += self._sweep_table(f"{account}/{region}", table, now)
        if deleted:
            self._report.count("ttl_deleted", deleted)
        return deleted

    def _sweep_table(self, where: str, table: Any, now: float) -> int:
        if table.ttl.get("TimeToLiveStatus") != "ENABLED":
            return 0
        attribute = table.ttl.get("AttributeName")
        deleted = 0
        for item in list(table.all_items()):
            value = item.attrs.get(attribute)
            if value is None or value.type != "N":
                continue  # DynamoDB ignores a TTL attribute that is not a number
            expires = float(value.value)
            if expires > now:
                continue
            identity = (where, table.name, repr((item.hash_key, item.range_key)))
            due = self._due.get(identity)
            if due is None:
                delay = 0.0 if self._mode == "at-once" else self._draw.uniform(0, self._max_delay)
                due = self._due[identity] = expires + delay
            if due > now:
                continue
            self._due.pop(identity, None)
            shard = table.stream_shard
            last = shard.items[-1] if shard is not None and shard.items else None
            table.delete_item(item.hash_key, item.range_key)
            if shard is not None and shard.items and shard.items[-1] is not last:
                # what marks a TTL delete in the stream (DynamoDB Developer Guide, *TTL and
                # DynamoDB Streams*)
                shard.items[-1].record["userIdentity"] = {
                    "Type": "Service",
                    "PrincipalId": "dynamodb.amazonaws.com",
                }
            deleted += 1
        return deleted


# ---- stream shards that roll over ------------------------------------------------------------


class ShardRoller:
    """Closes each stream's open shard and opens a child every `every_s` seconds, as
    DynamoDB Streams does; DescribeStream lists closed shards with their ending sequence
    number and the child with its parent, and a closed shard's iterator ends once read."""

    def __init__(self, every_s: float, report: RealismReport | None = None) -> None:
        self._every = every_s
        self._report = report or RealismReport()
        self._closed: dict[str, list[Any]] = {}  # table ARN -> closed shards, oldest first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stack = ExitStack()
        self.rolls = 0

    def start(self) -> None:
        from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

        self._stack.enter_context(
            _patched(DynamoDBStreamsBackend, "describe_stream", self._describe_stream)
        )
        self._stack.enter_context(
            _patched(DynamoDBStreamsBackend, "get_shard_iterator", self._get_shard_iterator)
        )
        self._stack.enter_context(_patched(ShardIterator, "get", self._iterator_get))
        self._thread = threading.Thread(target=self._run, name="realism-shards", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stack.close()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.roll()
            except Exception:
                log.exception("realism: rolling stream shards failed")

    def roll(self) -> int:
        """Close every open shard and open its child now; how many were rolled."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.models.table import StreamShard

        from mqless_cli.local.moto_fixes import REQUEST_LOCK

        rolled = 0
        with REQUEST_LOCK.lock:  # no write may append to a shard while it closes
            for account in list(dynamodb_backends.keys()):
                for backend in list(dynamodb_backends[account].values()):
                    for table in list(backend.tables.values()):
                        parent = table.stream_shard
                        if parent is None:
                            continue
                        end = int(parent.starting_sequence_number) + len(parent.items)
                        setattr(parent, "realism_ending", end - 1)  # noqa: B010
                        child = StreamShard(parent.account_id, table)
                        child.id = f"shardId-{int(time.time() * 1000):020d}-{self.rolls:08x}"
                        child.starting_sequence_number = end + 1
                        setattr(child, "realism_parent", parent.id)  # noqa: B010
                        table.stream_shard = child
                        self._closed.setdefault(table.table_arn, []).append(parent)
                        rolled += 1
            self.rolls += 1
        self._report.count("shards_rolled", rolled)
        return rolled

    def _shards(self, table: Any) -> list[Any]:
        current = [table.stream_shard] if table.stream_shard is not None else []
        return [*self._closed.get(table.table_arn, []), *current]

    def _describe_stream(self, backend: Any, arn: str) -> dict[str, Any]:
        table = backend._get_table_from_arn(arn)
        described: dict[str, Any] = self._originals["describe_stream"](backend, arn)
        shards = []
        for shard in self._shards(table):
            entry = shard.to_json()
            ending = getattr(shard, "realism_ending", None)
            if ending is not None:
                entry["SequenceNumberRange"]["EndingSequenceNumber"] = str(ending)
            parent = getattr(shard, "realism_parent", None)
            if parent is not None:
                entry["ParentShardId"] = parent
            shards.append(entry)
        described["Shards"] = shards
        return described

    def _get_shard_iterator(
        self,
        backend: Any,
        arn: str,
        shard_id: str,
        shard_iterator_type: str,
        sequence_number: str | None = None,
    ) -> Any:
        from moto.dynamodbstreams.models import ShardIterator

        table = backend._get_table_from_arn(arn)
        for shard in self._shards(table):
            if shard.id == shard_id:
                iterator = ShardIterator(
                    backend,
                    shard,
                    shard_iterator_type,
                    None if sequence_number is None else int(sequence_number),
                )
                backend.shard_iterators[iterator.arn] = iterator
                return iterator
        from moto.core.exceptions import JsonRESTError

        raise JsonRESTError(
            "ResourceNotFoundException", f"Requested resource not found: {shard_id}"
        )

    def _iterator_get(self, iterator: Any, limit: int = 1000) -> dict[str, Any]:
        answer: dict[str, Any] = self._originals["get"](iterator, limit)
        ending = getattr(iterator.stream_shard, "realism_ending", None)
        if ending is not None and not answer["Records"] and iterator.sequence_number > ending:
            answer.pop("NextShardIterator", None)  # a closed shard, read to its end
        return answer

    @property
    def _originals(self) -> dict[str, Any]:
        return _ORIGINALS


_ORIGINALS: dict[str, Any] = {}


@contextmanager
def _patched(owner: Any, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    original = getattr(owner, name)
    _ORIGINALS[name] = original

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return replacement(self, *args, **kwargs)

    setattr(owner, name, method)
    try:
        yield
    finally:
        setattr(owner, name, original)


# ---- the stream -> Lambda side ------------------------------------------------------------


class RealisticStreamPoller(StreamPoller):
    """A stream poller that reads each shard at most every `stream_poll_ms` and hands a batch
    over again now and then after it succeeded (at-least-once)."""

    def __init__(self, *args: Any, realism: Realism, report: RealismReport, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poll_every = realism.stream_poll_ms / 1000
        self._redelivery = realism.stream_redelivery
        self._report = report
        self._draw = random.Random(realism.seed)
        self._last_read: dict[int, float] = {}

    def _get_records(self, iterator: str) -> tuple[list[dict[str, Any]], str | None]:
        thread = threading.get_ident()
        last = self._last_read.get(thread)
        if last is not None and self._poll_every:
            wait = last + self._poll_every - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
        self._last_read[thread] = time.monotonic()
        return super()._get_records(iterator)

    def _deliver(self, batch: list[Record]) -> None:
        super()._deliver(batch)
        if self._redelivery and self._draw.random() < self._redelivery:
            self._report.count("stream_redelivered", len(batch))
            super()._deliver(batch)


def stream_poller_factory(realism: Realism, report: RealismReport) -> Callable[..., StreamPoller]:
    """What makes a stream poller under `realism`."""
    if not realism.stream_poll_ms and not realism.stream_redelivery:
        return StreamPoller

    def make(*args: Any, **kwargs: Any) -> StreamPoller:
        return RealisticStreamPoller(*args, realism=realism, report=report, **kwargs)

    return make


# ---- clocks ------------------------------------------------------------------------------


@contextmanager
def skewed_clocks() -> Iterator[None]:
    """While the block runs, the core's `SystemClock` reads the time of the function instance
    that runs the invocation (`FunctionHost` draws each instance's skew); outside any
    invocation it reads true time."""
    from mqless.domain.clock import SystemClock

    original = SystemClock.now_ms

    def now_ms(self: SystemClock) -> int:
        return original(self) + round(INSTANCE_CLOCK_SKEW_MS.get())

    SystemClock.now_ms = now_ms  # type: ignore[method-assign]
    try:
        yield
    finally:
        SystemClock.now_ms = original  # type: ignore[method-assign]


# ---- all together ---------------------------------------------------------------------------


@contextmanager
def realistic_aws(realism: Realism) -> Iterator[RealismReport]:
    """Turn on, for the block, every fault of `realism` that lives in the embedded AWS (the
    stream poller's are `stream_poller_factory`'s)."""
    report = RealismReport()
    with ExitStack() as stack:
        if realism.read_lag_ms:
            report.lag = stack.enter_context(lagging_reads(realism.read_lag_ms, seed=realism.seed))
        if realism.throttle or realism.kms_throttle or realism.dynamodb_throttle:
            stack.enter_context(faulty_aws(realism, report))
        if realism.shard_roll_minutes:
            roller = ShardRoller(realism.shard_roll_minutes * 60, report)
            roller.start()
            stack.callback(roller.stop)
        if realism.clock_skew_ms:
            stack.enter_context(skewed_clocks())
        if realism.ttl != "never":
            reaper = TtlReaper(realism, report)
            reaper.start()
            stack.callback(reaper.stop)
        yield report


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
