"""What a function's first request makes: the AWS clients and services it uses, no others.

A cold function pays for every client and service it builds before it answers (issue 18:
KMS's client is ~8 ms of CPU, the topic service ~7 ms with its modules), so each is made
with its first use: a sweep that fires nothing never asks KMS, a pump with no consumer to
post to never makes the @connections client, and a queue's message or stream batch never
builds the topic service. `bench/cold_import.py` measures what that saves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from conftest_http import EVENTS, HttpApi, load_function

from mqless import wiring
from mqless_cli.cfn import Stack
from tests.lambda_support import FakeLambdaContext


def _become(function: str, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new execution environment of `function`: its template environment, no caches."""
    for name, value in stack.environment(function).items():
        monkeypatch.setenv(name, value)
    wiring.reset()


@pytest.fixture
def clients_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The services boto3 clients are made for from now on, in order."""
    made: list[str] = []
    real = boto3.client

    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        made.append(service)
        return real(service, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", client)
    return made


@pytest.fixture
def topic_service_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One entry each time the process-wide topic service is asked for."""
    asked: list[str] = []
    real: Callable[[], Any] = wiring.topic_service

    def topic_service() -> Any:
        asked.append("topic_service")
        return real()

    monkeypatch.setattr(wiring, "topic_service", topic_service)
    return asked


def _event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def test_a_sweep_with_nothing_scheduled_or_subscribed_asks_dynamodb_alone(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, clients_made: list[str]
) -> None:
    # Given a cold sweeper function (its environment names a @connections endpoint) over a
    # broker with nothing scheduled and no connection
    _become("SweeperFunction", stack, monkeypatch)
    assert wiring.websocket_settings().connections_endpoint
    handler = load_function("sweeper").lambda_handler
    # When its schedule invokes it
    report = handler(_event("sweeper_schedule.json"), FakeLambdaContext())
    # Then it swept without errors, and made a DynamoDB client only: no KMS client (nothing
    # was opened or sealed) and no @connections client (nobody to push to)
    assert report["errors"] == []
    assert clients_made == ["dynamodb"]
    wiring.reset()


def test_a_queue_batch_with_no_push_consumer_builds_no_topic_service_or_pusher_client(
    function_env: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    clients_made: list[str],
    topic_service_asked: list[str],
) -> None:
    # Given the sample batch's queue (made over HTTP), no push consumer anywhere, and a cold
    # dispatch function
    assert HttpApi(stack.http_routes()).put("/queues/orders", {}).status == 201
    _become("DispatchFunction", stack, monkeypatch)
    clients_made.clear()
    topic_service_asked.clear()
    handler = load_function("dispatch").lambda_handler
    # When the sample stream batch (a queue's new message) invokes it
    report = handler(_event("dispatch_queue_insert.json"), FakeLambdaContext())
    # Then it reports no failure, without the topic service (no topic message came) or a
    # @connections client (nothing to post); DynamoDB and KMS (the refs' signing key) it used
    assert report == {"batchItemFailures": []}
    assert topic_service_asked == []
    assert sorted(clients_made) == ["dynamodb", "kms"]
    wiring.reset()


def test_a_send_to_a_queue_over_http_builds_no_topic_service(
    function_env: dict[str, str], stack: Stack, topic_service_asked: list[str]
) -> None:
    # Given the HTTP function and a queue
    api = HttpApi(stack.http_routes())
    assert api.put("/queues/orders", {}).status == 201
    # When a message is sent to it, then received
    sent = api.post("/queues/orders/messages", {"body": "hello"})
    received = api.post("/queues/orders/receive", {})
    # Then both were done without the topic service ever being built
    assert sent.status == 201
    assert [m["body"] for m in received.json["messages"]] == ["hello"]
    assert topic_service_asked == []
