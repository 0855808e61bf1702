"""`mqless dev`'s Lambda Invoke API (what `mqless invoke` calls), without a server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mqless_cli.local.functions import FunctionError
from mqless_cli.local.invocations import InvokeApi

DEV_TOKEN = "mqk_dev"


@dataclass
class FakeFunctions:
    """The part of FunctionHost the Invoke API uses: its specs and `invoke`."""

    answer: Any = field(default_factory=lambda: {"statusCode": 200})
    raises: Exception | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    specs: dict[str, object] = field(default_factory=lambda: {"HttpApiFunction": object()})

    def invoke(self, logical_id: str, event: Any, **_: Any) -> Any:
        self.calls.append((logical_id, event))
        if self.raises is not None:
            raise FunctionError(logical_id, self.raises)
        return self.answer


def api(functions: FakeFunctions, token: str | None = DEV_TOKEN) -> InvokeApi:
    return InvokeApi(functions, stack_name="mqless", token=token)  # type: ignore[arg-type]


def test_the_dev_token_invokes_the_function_with_the_event() -> None:
    """Given `mqless dev`'s Invoke API and a caller with the dev token
    When it invokes HttpApiFunction with an event
    Then the function runs with that event and its answer comes back 200, with no function error
    """
    functions = FakeFunctions()
    reply = api(functions).handle("POST", "HttpApiFunction", b'{"a": 1}', f"Bearer {DEV_TOKEN}")
    assert (reply.status, json.loads(reply.body)) == (200, {"statusCode": 200})
    assert functions.calls == [("HttpApiFunction", {"a": 1})]
    assert "x-amz-function-error" not in reply.headers


def test_without_the_dev_token_nothing_runs() -> None:
    # Given a caller with another token, or none: any event would pass any authorizer
    functions = FakeFunctions()
    # When each invokes the function (the last sends the dev token without "Bearer ")
    for authorization in (None, "Bearer mqk_other", DEV_TOKEN):
        reply = api(functions).handle("POST", "HttpApiFunction", b"{}", authorization)
        # Then it is refused as Lambda refuses, and the function never ran
        assert (reply.status, reply.headers["x-amzn-errortype"]) == (403, "AccessDeniedException")
    assert functions.calls == []


def test_with_no_auth_everyone_may_invoke() -> None:
    """Given an Invoke API started without auth (no dev token)
    When a caller with no token invokes mqless-HttpApiFunction (the stack-prefixed name)
    Then it is answered 200
    """
    reply = api(FakeFunctions(), token=None).handle("POST", "mqless-HttpApiFunction", b"{}", None)
    assert reply.status == 200


def test_an_unknown_function_and_a_bad_event_are_refused_as_lambda_does() -> None:
    """Given a caller with the dev token
    When it invokes a function that does not exist, and HttpApiFunction with an event that is not
    JSON
    Then Lambda's ResourceNotFoundException (404, naming the functions there are) and
    InvalidRequestContentException (400) come back, and nothing ran
    """
    functions = FakeFunctions()
    unknown = api(functions).handle("POST", "Nope", b"{}", f"Bearer {DEV_TOKEN}")
    bad = api(functions).handle("POST", "HttpApiFunction", b"{not json", f"Bearer {DEV_TOKEN}")
    assert (unknown.status, unknown.headers["x-amzn-errortype"]) == (
        404,
        "ResourceNotFoundException",
    )
    assert "HttpApiFunction" in json.loads(unknown.body)["message"]
    assert (bad.status, bad.headers["x-amzn-errortype"]) == (400, "InvalidRequestContentException")
    assert functions.calls == []


def test_an_unhandled_error_is_the_runtimes_error_document() -> None:
    """Given a function that raises KeyError
    When the dev token invokes it
    Then the answer is 200 with x-amz-function-error Unhandled and the runtime's error document:
    type, message and the request id of the reply
    """
    functions = FakeFunctions(raises=KeyError("requestContext"))
    reply = api(functions).handle("POST", "HttpApiFunction", b"{}", f"Bearer {DEV_TOKEN}")
    document = json.loads(reply.body)
    assert (reply.status, reply.headers["x-amz-function-error"]) == (200, "Unhandled")
    assert (document["errorType"], document["errorMessage"]) == ("KeyError", "'requestContext'")
    assert document["requestId"] == reply.headers["x-amzn-requestid"]
