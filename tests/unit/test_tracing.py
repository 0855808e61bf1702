"""Traces keep timings and AWS calls, never what a handler returns or raises.

A handler's response can hold an API key's token (issuing a key) or decrypted message
bodies (receive, browse); Powertools' Tracer would store both, and any exception, as X-Ray
segment metadata unless told not to. These tests run handlers under a recording stand-in
for the X-Ray recorder and read the template's function environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mqless import observability
from mqless.observability import instrumented
from mqless_cli.cfn import Stack, load_template
from tests.lambda_support import FakeLambdaContext, RecordingTraceProvider

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
SECRET = "mqk_0123456789abcdef01234567_secret-token-that-must-stay-out-of-traces"


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> RecordingTraceProvider:
    """The tracer on, its provider replaced by a recorder, with Powertools' defaults in effect."""
    for name in ("POWERTOOLS_TRACER_CAPTURE_RESPONSE", "POWERTOOLS_TRACER_CAPTURE_ERROR"):
        monkeypatch.delenv(name, raising=False)
    recording = RecordingTraceProvider()
    monkeypatch.setattr(observability.tracer, "provider", recording)
    monkeypatch.setattr(observability.tracer, "disabled", False)  # on, as in Lambda
    return recording


def test_a_handlers_response_is_not_stored_in_its_trace(provider: RecordingTraceProvider) -> None:
    # Given a handler wearing the decorator every function wears, answering with a token
    @instrumented()
    def issue_key(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 201, "body": f'{{"token": "{SECRET}"}}'}

    # When it runs traced
    issue_key({}, FakeLambdaContext())
    # Then the trace got its annotations, but no value holding the response
    assert provider.recorded, "the handler ran in a traced subsegment"
    assert provider.holding(SECRET) == []


def test_a_handlers_error_is_not_stored_in_its_trace(provider: RecordingTraceProvider) -> None:
    # Given a handler that fails with a message holding something secret
    @instrumented()
    def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError(f"could not decrypt {SECRET}")

    # When it runs traced
    with pytest.raises(RuntimeError):
        fail({}, FakeLambdaContext())
    # Then the exception is not in the trace
    assert provider.recorded
    assert provider.holding(SECRET) == []


def test_every_function_is_deployed_with_response_and_error_capture_off() -> None:
    # Given the template's functions with Globals merged, as SAM deploys them
    stack = Stack(load_template(TEMPLATE))
    # When their environments are read
    capture = {
        name: (
            stack.environment(name).get("POWERTOOLS_TRACER_CAPTURE_RESPONSE"),
            stack.environment(name).get("POWERTOOLS_TRACER_CAPTURE_ERROR"),
        )
        for name in stack.functions()
    }
    # Then every one of them turns Powertools' payload capture off, so that a handler
    # decorated later without `instrumented` stores no payload either
    assert capture
    assert set(capture.values()) == {("false", "false")}
