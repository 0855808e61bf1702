"""AWS throttling reaches clients as 429 with Retry-After, never as a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mqless import wiring
from tests.component.conftest_http import load_function
from tests.lambda_support import FakeLambdaContext, http_event


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
def test_dynamodb_throttling_is_a_429_with_retry_after(
    function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    lambda_handler = load_function("http_api").lambda_handler

    # Given DynamoDB answering every write with a throttling error
    client = wiring.dynamodb_client()

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "slow down"}}, "PutItem")

    monkeypatch.setattr(client, "put_item", throttled)

    # When a client sends a message
    response = lambda_handler(
        http_event(
            "POST",
            "/queues/busy/messages",
            {"body": "hi"},
            route="/queues/{name}/messages",
        ),
        FakeLambdaContext(),
    )

    # Then it is told to retry later, with a problem body
    assert response["statusCode"] == 429
    assert json.loads(response["body"])["error"] == "throttled"
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    assert headers.get("retry-after") or multi.get("retry-after")
