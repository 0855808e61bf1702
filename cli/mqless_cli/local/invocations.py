"""Lambda's Invoke API on `mqless dev`'s HTTP port: how `mqless invoke` reaches its state.

`POST /2015-03-31/functions/{FunctionName}/invocations` with the event as the body, as
Lambda (and `sam local start-lambda`) serve it, so `aws lambda invoke --endpoint-url` and
boto3's Lambda client work too. The function runs inside `mqless dev`, against its tables,
keys and connections; its logs go to the dev console, as every invocation's do.

A caller may hand any event to any function (a request with any authorizer context, for
one), so with authorizers on only the dev token may call it; with `--no-auth` everyone is
let in anyway.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mqless_cli.local import functions as host_module
from mqless_cli.local.functions import FunctionError, FunctionHost

LOCAL_RUNTIME = Path(host_module.__file__).parent
"""The local runtime's own code: its frames are not the function's."""

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
DURATION_HEADER = "x-mqless-duration-ms"
"""How long the function ran, for the caller's REPORT line (Lambda puts it in the logs)."""


@dataclass(frozen=True)
class InvokeReply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _refusal(status: int, error_type: str, message: str) -> InvokeReply:
    """An Invoke API error as Lambda answers it (botocore reads the type header)."""
    body = json.dumps({"Type": "User", "message": message}).encode()
    headers = {"content-type": "application/json", "x-amzn-errortype": error_type}
    return InvokeReply(status, headers, body)


class InvokeApi:
    """Runs one function of the stack with the event in a request's body."""

    def __init__(self, functions: FunctionHost, *, stack_name: str, token: str | None) -> None:
        """`token`: the one bearer token let in; None lets everyone in (`--no-auth`)."""
        self._functions = functions
        self._stack_name = stack_name
        self._token = token

    def handle(self, method: str, name: str, body: bytes, authorization: str | None) -> InvokeReply:
        if method != "POST":
            return _refusal(405, "MethodNotAllowedException", "invoke with POST")
        if self._token is not None and not hmac.compare_digest(
            (authorization or "").encode(), f"Bearer {self._token}".encode()
        ):
            return _refusal(
                403,
                "AccessDeniedException",
                "invoking a function of `mqless dev` needs its dev token "
                "(Authorization: Bearer <dev token>, as MQLESS_TOKEN)",
            )
        logical_id = self.function(name)
        if logical_id is None:
            known = ", ".join(sorted(self._functions.specs))
            return _refusal(
                404, "ResourceNotFoundException", f"no function {name!r}: the functions are {known}"
            )
        try:
            event = json.loads(body or b"{}")
        except ValueError as exc:
            return _refusal(400, "InvalidRequestContentException", f"the event is not JSON: {exc}")
        request_id = str(uuid.uuid4())
        start = time.perf_counter()
        headers = {
            "content-type": "application/json",
            "x-amzn-requestid": request_id,
            "x-amz-executed-version": "$LATEST",
        }
        try:
            result = self._functions.invoke(
                logical_id, event, summary="invoke (Lambda Invoke API)", request_id=request_id
            )
        except FunctionError as failure:
            headers[DURATION_HEADER] = f"{(time.perf_counter() - start) * 1000:.2f}"
            headers["x-amz-function-error"] = "Unhandled"
            payload = error_payload(failure.error, request_id)
            return InvokeReply(200, headers, json.dumps(payload).encode())
        headers[DURATION_HEADER] = f"{(time.perf_counter() - start) * 1000:.2f}"
        return InvokeReply(200, headers, json.dumps(result).encode())

    def function(self, name: str) -> str | None:
        """The logical id `name` means: itself, or the deployed name `<stack>-<id>`."""
        for logical_id in self._functions.specs:
            if name in (logical_id, f"{self._stack_name}-{logical_id}"):
                return logical_id
        return None


def error_payload(error: BaseException, request_id: str) -> dict[str, object]:
    """An unhandled exception as the Python runtime reports it in the response."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        # the function's frames: not the local runtime's (the host that called it, and the
        # per-thread resolver it runs the HTTP function's routing in)
        "stackTrace": traceback.format_list(
            [
                frame
                for frame in traceback.extract_tb(error.__traceback__)
                if Path(frame.filename).parent != LOCAL_RUNTIME
            ]
        ),
    }
