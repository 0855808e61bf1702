"""What a function's first request makes: the AWS clients and services it uses, no others.

A cold function pays for every client and service it builds before it answers (issue 18:
KMS's client is ~8 ms of CPU, the topic service ~7 ms with its modules), so each is made
with its first use: a sweep that fires nothing never asks KMS, a pump with no consumer to
post to never makes the @connections client, and a queue's message or stream batch never
builds the topic service. `bench/cold_import.py` measures what that saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from conftest_http import EVENTS, ROOT, HttpApi, load_function

from mqless import wiring
from mqless_cli.cfn import Stack
from tests.lambda_support import FakeLambdaContext

# A fresh interpreter, as a new execution environment is: template.yaml in moto, an optional
# setup (events to functions), then the modules of mqless that one function's import and
# first event load. The setup's modules are forgotten first, so only the measured function's
# own loads are reported.
_FRESH_FUNCTION = """
import importlib.util, json, os, sys
import boto3
from moto import mock_aws
from mqless_cli.cfn import load_template, provision
from tests.lambda_support import FakeLambdaContext

root, function, logical_id, event_file, setup = sys.argv[1], *sys.argv[2:6]


def invoke(name, logical, event):
    os.environ.update(stack.environment(logical))
    spec = importlib.util.spec_from_file_location("app", f"{root}/functions/{name}/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sample = json.loads(open(f"{root}/events/{event}").read())
    return module.lambda_handler(sample, FakeLambdaContext())


with mock_aws():
    stack = provision(
        load_template(f"{root}/template.yaml"),
        dynamodb=boto3.client("dynamodb"),
        kms=boto3.client("kms"),
    )
    for step in json.loads(setup):
        invoke(*step)
    for name in [m for m in sys.modules if m == "mqless" or m.startswith("mqless.")]:
        del sys.modules[name]
    before = set(sys.modules)
    answer = invoke(function, logical_id, event_file)
    loaded = sorted(m for m in set(sys.modules) - before if m.startswith("mqless"))
    print(json.dumps({"answer": answer, "loaded": loaded}))
"""


def _cold_function(
    function: str, logical_id: str, event: str, *, setup: tuple[tuple[str, str, str], ...] = ()
) -> tuple[Any, set[str]]:
    """What `function`'s first `event` answers in a new interpreter, and the mqless modules
    it loaded (after `setup`: (function, logical id, event) invoked before, in that same
    interpreter)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "layers" / "core"), str(ROOT / "cli"), str(ROOT)]
        ),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_FUNCTION,
            str(ROOT),
            function,
            logical_id,
            event,
            json.dumps(setup),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["answer"], set(result["loaded"])


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


@pytest.fixture
def dynamodb_queries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every DynamoDB Query made from now on, in order."""
    made: list[dict[str, Any]] = []
    real = BaseClient._make_api_call

    def make_api_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb" and operation == "Query":
            made.append(params)
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return made


def test_a_sweep_lists_the_queues_once(
    function_env: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_queries: list[dict[str, Any]],
) -> None:
    # Given two queues (made over HTTP) and a cold sweeper function
    api = HttpApi(stack.http_routes())
    assert api.put("/queues/orders", {}).status == 201
    assert api.put("/queues/invoices", {}).status == 201
    _become("SweeperFunction", stack, monkeypatch)
    dynamodb_queries.clear()
    handler = load_function("sweeper").lambda_handler
    # When its schedule invokes it
    report = handler(_event("sweeper_schedule.json"), FakeLambdaContext())
    # Then it swept both and their dead-letter queues, and read the list of queues once:
    # feeding their push consumers went over the list the sweep read
    assert report["queues"] == 4
    assert report["errors"] == []
    listings = [
        q for q in dynamodb_queries if {"S": "QUEUE"} in q["ExpressionAttributeValues"].values()
    ]
    assert len(listings) == 1
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


# the modules of the queue operations a send never runs, of the selector parser, and of
# scheduled delivery (a send with no schedule goes to the queue service)
_NOT_FOR_A_SEND = {
    "mqless.domain.scheduling.scheduler",
    "mqless.domain.scheduling.admin",
    "mqless.domain.queues.browsing",
    "mqless.domain.queues.moving",
    "mqless.domain.queues.redriving",
    "mqless.domain.queues.sweeping",
    "mqless.domain.queues.receiving",
    "mqless.domain.queues.selection",
    "mqless.domain.selectors",
}


# the HTTP API's routes modules other than the messages' one
_OTHER_ROUTES = {
    f"mqless.transports.http.routes.{name}"
    for name in ("queues", "topics", "operations", "scheduled", "access", "console")
}


def test_a_cold_send_over_http_loads_no_module_of_the_operations_it_does_not_run() -> None:
    # Given a new HTTP function (a fresh interpreter)
    # When its first request is the sample send
    answer, loaded = _cold_function("http_api", "HttpApiFunction", "messages_send.json")
    # Then the message was accepted, and neither browsing, moving, redriving, sweeping,
    # receiving, the selector parser nor the scheduler was loaded for it, nor the routes
    # (and their models) of queues, topics, schedules, operators, access and the console
    assert answer["statusCode"] == 201
    assert "mqless.domain.queues.sending" in loaded
    assert "mqless.transports.http.routes.messages" in loaded
    assert loaded & (_NOT_FOR_A_SEND | _OTHER_ROUTES) == set()


def test_a_cold_send_by_an_authorizers_caller_loads_no_authentication_or_principals() -> None:
    # Given a new HTTP function (a fresh interpreter)
    # When its first request is the sample send, whose caller the Lambda authorizer named
    answer, loaded = _cold_function("http_api", "HttpApiFunction", "messages_send.json")
    # Then the message was accepted without authentication (API keys, JWTs) or the
    # principals' management loaded: only an IAM caller's request reads its grants there
    assert answer["statusCode"] == 201
    assert "mqless.domain.access.authentication" not in loaded
    assert "mqless.domain.access.api_keys" not in loaded
    assert "mqless.domain.access.users" not in loaded


def test_a_cold_queue_batch_loads_no_queue_operation_module() -> None:
    # Given a queue (made over HTTP), and a new dispatch function in that process
    put_queue = ("http_api", "HttpApiFunction", "queue_put.json")
    # When its first event is the sample batch (a message of that queue, no push consumer)
    answer, loaded = _cold_function(
        "dispatch", "DispatchFunction", "dispatch_queue_insert.json", setup=(put_queue,)
    )
    # Then the batch was indexed without a failure, and no module of a queue operation
    # (sending, receiving, settling, sweeping...) or the selector parser was loaded
    assert answer == {"batchItemFailures": []}
    assert "mqless.domain.queues.indexing" in loaded
    assert loaded & (_NOT_FOR_A_SEND | {"mqless.domain.queues.sending"}) == set()


def _modules_after_import(function: str) -> set[str]:
    """The modules loaded once `function`'s handler module is imported in a new interpreter,
    as Lambda imports it (before any event)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers' / 'core'}:{ROOT / 'functions' / function}",
    }
    code = "import json, sys, app; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_dispatch_function_imports_no_parser_models_it_never_validates_with() -> None:
    # Given the dispatch function's module
    # When it has been imported in a new interpreter, as Lambda does
    loaded = _modules_after_import("dispatch")
    # Then Powertools' batch processing is there, without the parser models (stream records
    # are read as data classes: the batch module leaves its models out when it is imported
    # before pydantic)
    assert "aws_lambda_powertools.utilities.batch" in loaded
    assert "aws_lambda_powertools.utilities.parser" not in loaded


def test_the_dispatch_function_plans_pushes_with_its_first_batch_not_at_import() -> None:
    # Given the dispatch function's module
    # When it has been imported in a new interpreter, as Lambda does
    loaded = _modules_after_import("dispatch")
    # Then its batch handling is there, but not the push planning and the modules it brings
    # (indexing, consumers, deliveries): they load with the first batch that indexes
    # (test_a_cold_queue_batch_loads_no_queue_operation_module sees them loaded there)
    assert "mqless.transports.dispatch" in loaded
    assert "mqless.domain.push.feeding" not in loaded
    assert "mqless.domain.queues.indexing" not in loaded


def test_the_websocket_function_imports_no_authentication_or_principals_management() -> None:
    # Given the WebSocket function's module (its $connect is authorized before it runs)
    # When it has been imported in a new interpreter, as Lambda does
    loaded = _modules_after_import("ws")
    # Then what $connect uses is there (the authorizer's context, the connection store), but
    # not authentication (API keys, JWTs: a STOMP CONNECT's passcode and an expired
    # principal load it), nor the principals' management and its store
    assert "mqless.transports.authorizer" in loaded
    assert "mqless.storage.connection_store" in loaded
    assert "mqless.domain.access.authentication" not in loaded
    assert "mqless.domain.access.api_keys" not in loaded
    assert "mqless.domain.access.users" not in loaded
    assert "mqless.storage.principals" not in loaded


def test_the_dispatch_function_reads_its_settings_without_the_principals_models() -> None:
    # Given the dispatch function's module (its settings name the default quotas)
    # When it has been imported in a new interpreter, as Lambda does
    loaded = _modules_after_import("dispatch")
    # Then its settings are there, but not the quotas and the principals' models: they load
    # with the first batch's queue service, which charges creations
    assert "mqless.settings" in loaded
    assert "mqless.domain.access.quotas" not in loaded
    assert "mqless.domain.access.principals" not in loaded
