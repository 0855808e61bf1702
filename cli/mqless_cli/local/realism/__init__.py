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

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from mqless_cli.local.consistency import lagging_reads
from mqless_cli.local.functions import INSTANCE_CLOCK_SKEW_MS
from mqless_cli.local.realism.settings import AWS, OFF, Realism, RealismReport, parse_realism
from mqless_cli.local.realism.streams import (
    RealisticStreamPoller,
    ShardRoller,
    stream_poller_factory,
)
from mqless_cli.local.realism.throttles import faulty_aws
from mqless_cli.local.realism.ttl import TtlReaper

__all__ = [
    "AWS",
    "OFF",
    "Realism",
    "RealismReport",
    "RealisticStreamPoller",
    "ShardRoller",
    "TtlReaper",
    "faulty_aws",
    "parse_realism",
    "realistic_aws",
    "skewed_clocks",
    "stream_poller_factory",
]

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
