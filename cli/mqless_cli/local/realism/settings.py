"""What `--realism` turns on (`Realism`, its presets and its parser) and what the faults did
(`RealismReport`); the package docstring says where each default comes from."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mqless_cli.local.functions import LambdaLimits

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
