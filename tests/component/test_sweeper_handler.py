"""The sweeper function, invoked with the sample EventBridge Scheduler event."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest_http import EVENTS, load_function

from mqless import wiring
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless_cli.cfn import Stack
from tests.lambda_support import FakeLambdaContext

Sweep = Callable[[], dict[str, Any]]
NO_CONNECTIONS = {"connections_closed": 0, "temp_queues_deleted": 0, "scheduled_fired": 0}


@pytest.fixture
def sweep(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sweep]:
    """Invoke the sweeper as its schedule does, in its own environment from the template."""
    for name, value in stack.environment("SweeperFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    handler = load_function("sweeper").lambda_handler
    event = json.loads((EVENTS / "sweeper_schedule.json").read_text())

    def invoke() -> dict[str, Any]:
        report: dict[str, Any] = handler(event, FakeLambdaContext())
        return report

    yield invoke
    wiring.reset()


def test_sweep_of_an_empty_broker_reports_nothing_to_do(sweep: Sweep) -> None:
    # Given no queues, messages or connections
    # When the sweeper runs as its schedule invokes it
    # Then its report counts nothing done and no errors
    assert sweep() == {
        "queues": 0,
        "dead_lettered": 0,
        "expired": 0,
        "errors": [],
        "pushed": 0,
        **NO_CONNECTIONS,
    }


def test_sweep_dead_letters_and_expires_and_counts_both(
    sweep: Sweep, service: QueueService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the broker on a manual clock, a queue that dead-letters after one delivery,
    # a message delivered once whose lease ran out, and a message with a one-minute TTL
    monkeypatch.setattr(wiring, "queue_service", lambda: service)
    service.put_queue(ANONYMOUS, "orders", QueueSettings(max_receive_count=1))
    service.send(ANONYMOUS, "orders", NewMessage(body=b"poison"))
    assert len(service.receive(ANONYMOUS, "orders", visibility_timeout=0)) == 1
    service.send(ANONYMOUS, "orders", NewMessage(body=b"perishable", ttl_seconds=60))
    clock.advance(61)
    # When the schedule fires
    report = sweep()
    # Then one was dead-lettered and one dropped, over both queues, without errors
    assert report == {
        "queues": 2,
        "dead_lettered": 1,
        "expired": 1,
        "errors": [],
        "pushed": 0,
        **NO_CONNECTIONS,
    }
    (dead,) = service.receive(ANONYMOUS, "orders.dlq")
    assert dead.body == b"poison"
    assert service.receive(ANONYMOUS, "orders") == []
