"""The `--realism` Lambda behaviours, each on its own: the concurrency cap, timeouts, API
Gateway's integration limit and cold starts, as a client of the local runtime meets them."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqless.observability import audit
from mqless_cli.local.cloud import LocalCloud
from mqless_cli.local.functions import (
    INSTANCE_CLOCK_SKEW_MS,
    FunctionHost,
    FunctionThrottled,
    FunctionTimedOut,
    LambdaLimits,
)
from mqless_cli.local.http_gateway import HttpGateway
from mqless_cli.local.realism import AWS, parse_realism, skewed_clocks

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: slow/
      Handler: app.handler
      Runtime: python3.11
      Timeout: {timeout}
      Events:
        Any:
          Type: HttpApi
          Properties:
            Path: /slow
            Method: POST
"""

# Sleeps as long as the event asks (or until a named gate opens); takes IMPORT_S to import,
# as a handler module with heavy imports does.
HANDLER = """\
import json, threading, time
IMPORT_S = {import_s}
time.sleep(IMPORT_S)
GATES = {{}}
CALLS = []

def handler(event, context):
    body = json.loads(event.get("body") or "{{}}") if "body" in event else event
    CALLS.append(body)
    if body.get("clock"):
        from mqless.domain.clock import SystemClock

        return {{"skew_ms": SystemClock().now_ms() - time.time_ns() // 1_000_000}}
    if "gate" in body:
        GATES.setdefault(body["gate"], threading.Event()).wait(5)
    time.sleep(body.get("sleep", 0))
    return {{"statusCode": 200, "body": json.dumps({{"slept": body.get("sleep", 0)}})}}
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LocalCloud]:
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "app.py").write_text(HANDLER.format(import_s=0.3))
    (tmp_path / "template.yaml").write_text(TEMPLATE.format(timeout=0.5))
    cloud = LocalCloud.start(tmp_path / "template.yaml")
    try:
        yield cloud
    finally:
        cloud.stop()


def _host(cloud: LocalCloud, **limits: object) -> FunctionHost:
    return FunctionHost(cloud.stack, cloud.template_path.parent, limits=LambdaLimits(**limits))  # type: ignore[arg-type]


def _open_gate(host: FunctionHost, name: str) -> None:
    import sys

    gates = sys.modules["mqless_function_SlowFunction"].GATES
    while name not in gates:
        time.sleep(0.01)
    gates[name].set()


def test_the_aws_preset_turns_on_lambdas_limits_with_awss_defaults() -> None:
    # Given / When the `aws` preset, and each Lambda behaviour named alone
    alone = parse_realism("lambda-concurrency=5")

    # Then `aws` caps concurrency at Lambda's default quota, enforces timeouts, waits 30 s
    # for an HTTP integration and 29 s for a WebSocket one, and starts instances cold; a
    # setting alone turns on only itself
    assert (AWS.lambda_concurrency, AWS.lambda_timeouts) == (1000, True)
    assert (AWS.integration_timeout_s, AWS.cold_starts) == (30, True)
    assert AWS.websocket_integration_timeout_s == 29
    assert (
        parse_realism("websocket-integration-timeout-s=0.5").websocket_integration_timeout_s == 0.5
    )
    assert alone.lambda_limits == LambdaLimits(concurrency=5)
    assert alone.integration_timeout_s == 0


def test_an_invocation_beyond_the_concurrency_cap_is_throttled_without_running(
    app: LocalCloud,
) -> None:
    # Given a cap of one invocation at a time, and one invocation running
    host = _host(app, concurrency=1)
    first = threading.Thread(target=host.invoke, args=("SlowFunction", {"gate": "a"}))
    first.start()
    while host._running < 1:
        time.sleep(0.01)

    # When a second invocation comes meanwhile
    with pytest.raises(FunctionThrottled) as throttled:
        host.invoke("SlowFunction", {"sleep": 0})

    # Then Lambda's throttle is what it gets, and the function never ran for it
    assert "Rate Exceeded" in str(throttled.value)
    _open_gate(host, "a")
    first.join()
    import sys

    assert sys.modules["mqless_function_SlowFunction"].CALLS == [{"gate": "a"}]
    # and once the first has finished, the next one runs
    assert host.invoke("SlowFunction", {"sleep": 0})["statusCode"] == 200


def test_a_function_running_past_its_timeout_is_cut_off_with_lambdas_message(
    app: LocalCloud,
) -> None:
    # Given timeouts enforced and a function whose template Timeout is 0.5 s
    host = _host(app, timeouts=True)

    # When an invocation runs for 2 s
    began = time.monotonic()
    with pytest.raises(FunctionTimedOut) as timed_out:
        host.invoke("SlowFunction", {"sleep": 2})

    # Then it is cut off at its Timeout with Lambda's own error message
    assert time.monotonic() - began < 1.5
    assert str(timed_out.value.error) == "Task timed out after 0.50 seconds"


def test_a_new_instance_waits_as_long_as_its_handler_took_to_import(app: LocalCloud) -> None:
    # Given cold starts on, and a function already warm (its import took 0.3 s)
    host = _host(app, cold_starts=True)
    host.invoke("SlowFunction", {"sleep": 0})
    began = time.monotonic()
    host.invoke("SlowFunction", {"sleep": 0})
    warm = time.monotonic() - began

    # When a second invocation comes while the warm instance is busy
    busy = threading.Thread(target=host.invoke, args=("SlowFunction", {"gate": "b"}))
    busy.start()
    while host._running < 1:
        time.sleep(0.01)
    began = time.monotonic()
    host.invoke("SlowFunction", {"sleep": 0})
    cold = time.monotonic() - began
    _open_gate(host, "b")
    busy.join()

    # Then that new instance starts cold (the import time again); a warm one does not
    assert warm < 0.1
    assert cold >= 0.3
    assert host.instances_started["SlowFunction"] == 2


def test_each_function_instance_reads_its_own_skewed_clock(app: LocalCloud) -> None:
    # Given clocks skewed by up to 5 s an instance, and one warm instance
    host = _host(app, clock_skew_ms=5000, seed=7)
    with skewed_clocks():
        first = host.invoke("SlowFunction", {"clock": True})["skew_ms"]
        again = host.invoke("SlowFunction", {"clock": True})["skew_ms"]

        # When a second instance starts while the first is busy, and reads the time
        busy = threading.Thread(target=host.invoke, args=("SlowFunction", {"gate": "c"}))
        busy.start()
        while host._running < 1:
            time.sleep(0.01)
        other = host.invoke("SlowFunction", {"clock": True})["skew_ms"]
        _open_gate(host, "c")
        busy.join()

    # Then each instance keeps its own skew, within the bound, and they differ
    assert abs(again - first) <= 2
    assert abs(first) <= 5001 and abs(other) <= 5001
    assert abs(other - first) > 2
    assert host.instances_started["SlowFunction"] == 2


def test_a_skewed_instance_stamps_its_audit_events_with_its_own_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given clock skew on, and an invocation on an instance whose clock is an hour ahead
    with skewed_clocks():
        on_instance = INSTANCE_CLOCK_SKEW_MS.set(3_600_000)
        try:
            # When it records an administrative action
            before = time.time_ns() // 1_000_000
            audit("queue.create", "alice", "orders")
            after = time.time_ns() // 1_000_000
        finally:
            INSTANCE_CLOCK_SKEW_MS.reset(on_instance)

    # Then the audit event carries that instance's (skewed) time
    [event] = [r.audit for r in caplog.records if r.getMessage() == "audit"]  # type: ignore[attr-defined]
    assert before + 3_600_000 <= event["at"] <= after + 3_600_000


@pytest.fixture
def gateway(app: LocalCloud) -> Iterator[HttpGateway]:
    served = HttpGateway(
        app.stack, _host(app), port=0, run_authorizers=False, integration_timeout_s=0.3
    )
    served.start()
    try:
        yield served
    finally:
        served.stop()


def test_an_http_route_answers_503_when_its_function_outlasts_the_integration_limit(
    gateway: HttpGateway,
) -> None:
    # Given an HTTP API that waits 0.3 s for its integration (30 s on AWS)
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)

    # When the function takes 1 s to answer
    connection.request("POST", "/slow", body=json.dumps({"sleep": 1}))
    response = connection.getresponse()

    # Then the client gets the HTTP API's 503, not a 500 and not the late answer
    assert response.status == 503
    assert json.loads(response.read()) == {"message": "Service Unavailable"}


@pytest.fixture
def capped_gateway(app: LocalCloud) -> Iterator[HttpGateway]:
    served = HttpGateway(app.stack, _host(app, concurrency=1), port=0, run_authorizers=False)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def test_an_http_request_a_throttled_function_cannot_take_gets_api_gateways_500(
    capped_gateway: HttpGateway,
) -> None:
    # Given a concurrency cap of one and one request whose function is still running
    host, port = capped_gateway.url.removeprefix("http://").split(":")
    first = http.client.HTTPConnection(host, int(port), timeout=10)
    first.request("POST", "/slow", body=json.dumps({"gate": "d"}))
    functions = capped_gateway._functions
    while functions._running < 1:
        time.sleep(0.01)

    # When another request comes meanwhile
    second = http.client.HTTPConnection(host, int(port), timeout=10)
    second.request("POST", "/slow", body=json.dumps({"sleep": 0}))
    refused = second.getresponse()

    # Then it gets what an HTTP API answers when Lambda throttles its integration (a 500:
    # API Gateway does not pass Lambda's 429 on), and the running request is unharmed
    assert refused.status == 500
    assert json.loads(refused.read()) == {"message": "Internal Server Error"}
    _open_gate(functions, "d")
    assert first.getresponse().status == 200
