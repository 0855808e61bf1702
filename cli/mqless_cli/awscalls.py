"""Count the AWS requests a piece of code makes, by hooking botocore's event system.

Used by the component tests and `make bench` to report what each broker operation
bills: DynamoDB requests and write units, KMS requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Write units per request, as DynamoDB bills them for items up to 1 KB (on-demand):
# a transaction bills two units per item it touches.
_WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem"}


@dataclass
class CallLog:
    """What was called: request counts per (service, operation) and DynamoDB write units."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    write_units: int = 0

    def count(self, service: str, operation: str | None = None) -> int:
        return sum(n for (s, o), n in self.calls.items() if s == service and operation in (None, o))

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        self.calls[(service, operation)] += 1
        if service != "dynamodb":
            return
        if operation in _WRITE_OPERATIONS:
            self.write_units += 1
        elif operation == "BatchWriteItem":
            self.write_units += sum(len(v) for v in params.get("RequestItems", {}).values())
        elif operation == "TransactWriteItems":
            self.write_units += 2 * len(params.get("TransactItems", []))

    def merge(self, other: CallLog) -> None:
        self.calls.update(other.calls)
        self.write_units += other.write_units

    def reset(self) -> None:
        self.calls.clear()
        self.write_units = 0


@contextmanager
def counting(*clients: Any) -> Iterator[CallLog]:
    """Record every request the given boto3 clients send while the block runs."""
    log = CallLog()

    def hook(model: Any, params: dict[str, Any], **_: Any) -> None:
        log.record(model.service_model.endpoint_prefix, model.name, params)

    # before-parameter-build sees the caller's parameters once per API call (retries of
    # the same call are not counted: the bill counts them, so figures are a lower bound)
    for client in clients:
        client.meta.events.register("before-parameter-build.*.*", hook)
    try:
        yield log
    finally:
        for client in clients:
            client.meta.events.unregister("before-parameter-build.*.*", hook)
