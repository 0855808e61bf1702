"""DynamoDB answers handed to botocore in-process as moto wrote them, not as JSON text
(`answers_handed_over`): moto wrote every answer out with `json.dumps`, checksummed the text,
and botocore read it back with `json.loads`, for a client in the same process."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

HANDING_OVER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mqless_handing_over", default=False
)
"""Whether the request being answered came through botocore's `before-send` (the stubber's
`__call__`): only that caller takes an answer that is not text."""


class HandedOver:
    """The body of a successful answer as moto's JSON serializer built it, before `json.dumps`:
    `written` is what botocore's `json.loads` of the text would give back (moto wrote it from
    a fresh result of plain values). Read as text (`str`, `decode`, `bytes`), it is the very
    text moto would have sent, written out on first use and kept."""

    __slots__ = ("_serializer", "_text", "written")

    def __init__(self, serializer: Any, written: dict[str, Any]) -> None:
        self._serializer = serializer
        self._text: str | None = None
        self.written = written

    def __str__(self) -> str:
        if self._text is None:
            self._text = str(self._serializer._serialize_body(self.written))
        return self._text

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return str(self)

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str(self).encode(encoding, errors)

    def __bytes__(self) -> bytes:
        return self.encode()

    def __len__(self) -> int:
        return len(self.encode())

    def __repr__(self) -> str:
        return f"HandedOver({self.written!r})"


_PLANS_KEPT = 256  # (handler class, action, content type): a few dozen per process
_PLANS: dict[tuple[Any, ...], Any] = {}
_UNKNOWN = object()


def answer_plan(handler: Any) -> Any:
    """(operation model, serializer class, status code, content type) of a handler's answer,
    or None where the answer is not JSON (another protocol, an event stream, an unknown
    operation): what `BaseResponse.serialized` and the serializer it makes work out from the
    handler's class, its action and its request's content type, worked out once for each."""
    from botocore.model import OperationNotFoundError
    from moto.core.serialize import JSONSerializer, get_serializer_class
    from moto.core.utils import get_service_model

    action = handler._get_action()
    key = (type(handler), handler.boto3_service_name, action, handler.headers.get("Content-Type"))
    found = _PLANS.get(key, _UNKNOWN)
    if found is not _UNKNOWN:
        return found
    service_model = get_service_model(handler.boto3_service_name)
    try:
        operation_model = service_model.operation_model(action)
    except OperationNotFoundError:
        found = None
    else:
        protocol = handler.determine_response_protocol(service_model)
        serializer_cls = get_serializer_class(service_model.service_name, protocol)
        found = None
        if serializer_cls is JSONSerializer and not operation_model.has_event_stream_output:
            serializer = serializer_cls(operation_model=operation_model)
            status = serializer._create_default_response()["status_code"]
            content_type = serializer._get_protocol_specific_content_type()
            found = (operation_model, serializer_cls, status, content_type)
    if len(_PLANS) >= _PLANS_KEPT:
        _PLANS.clear()
    _PLANS[key] = found
    return found


def handed_over_answer(handler: Any, write: Any) -> Any:
    """(status, headers, `HandedOver`) of a handler's answer whose members `write(serializer,
    picker, output shape)` builds into a dict; None where the answer is not JSON built as a
    dict (`answer_plan`, the serializer's map type) or `write` gives None.

    The steps are moto's own, in its order: the operation's model, the response protocol and
    its serializer class (`serialized`, worked out once: `answer_plan`), the serializer and
    its attribute picker as `ActionResult.execute_result` makes them, then `write` in place
    of `serialize` / `_serialize_result` / `_serialized_result_to_response` and their final
    `json.dumps`."""
    from moto import settings
    from moto.core.serialize import XFormedAttributePicker

    plan = answer_plan(handler)
    if plan is None:
        return None
    operation_model, serializer_cls, status, content_type = plan
    picker = XFormedAttributePicker(
        response_transformers=getattr(handler, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
    )
    serializer = serializer_cls(
        operation_model=operation_model,
        pretty_print=settings.PRETTIFY_RESPONSES,
        value_picker=picker,
    )
    if serializer.MAP_TYPE is not dict:
        return None
    written = write(serializer, picker, operation_model.output_shape)
    if written is None:
        return None
    headers = {"Content-Type": content_type}
    headers.update(handler.response_headers)
    return status, headers, HandedOver(serializer, written)


def _written_answer(handler: Any, action_result: Any) -> Any:
    """`BaseResponse.serialized(action_result)` with the body left as moto's serializer built
    it (`HandedOver`), for a DynamoDB result of plain values; None for anything else."""

    def write(serializer: Any, picker: Any, output_shape: Any) -> dict[str, Any]:
        written: dict[str, Any] = {}
        if output_shape is not None:
            serializer._serialize(written, action_result.result, output_shape, "")
        return written

    return handed_over_answer(handler, write)


@contextmanager
def answers_handed_over() -> Iterator[None]:
    """Hand a successful DynamoDB answer to botocore in-process as moto's serializer built it.

    Upstream behaviour: `BaseResponse.serialized` has the operation's serializer build the
    answer's members into a dict, writes it out with `json.dumps`, `amz_crc32` encodes and
    checksums the text, `BotocoreStubber.__call__` wraps it in a byte stream, and botocore
    reads it back with `json.loads`: text made to be parsed straight back in the same process.

    Here, for a request that came through botocore's `before-send` (the stubber's `__call__`)
    and a DynamoDB result (`DynamoResult`: moto's values made plain, every dict and list new),
    the body is `HandedOver`: the dict the serializer built, which is what `json.loads` of the
    text gives back (plain text, numbers, booleans, lists and maps). The text is written,
    byte for byte as moto writes it, only if something reads the body as text (a wrapper of
    `process_request`, botocore's parser without `answers_read_as_handed_over`). No text is
    checksummed: the answer has no `x-amz-crc32` header (botocore checks it only when
    present; no bytes crossed a wire to be damaged). Errors, other services, other results
    and callers other than botocore's `before-send` (a `requests` call, the server mode) get
    text as before.
    """
    from moto.core import botocore_stubber, responses
    from moto.utilities import aws_headers

    serialized = responses.BaseResponse.serialized
    checksum = aws_headers.gen_amz_crc32

    def gen_amz_crc32(response: Any, headerdict: Any = None) -> int:
        if type(response) is HandedOver:
            return 0  # no text was written: nothing to checksum, no header
        return int(checksum(response, headerdict))

    with ExitStack() as stack:
        stack.enter_context(patched(responses.BaseResponse, "serialized", _serializing(serialized)))
        stack.enter_context(patched(aws_headers, "gen_amz_crc32", gen_amz_crc32))
        stack.enter_context(patched(botocore_stubber.BotocoreStubber, "__call__", _stubbing()))
        yield


def _serializing(serialized: Any) -> Any:
    """`BaseResponse.serialized`, answering a DynamoDB result with a `HandedOver` body while a
    request from botocore's `before-send` is answered."""
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    def handed_over(self: Any, action_result: Any) -> Any:
        if (
            HANDING_OVER.get()
            and type(action_result) is DynamoResult
            and type(self) is DynamoHandler
            and not isinstance(action_result.result, Exception)
        ):
            answer = _written_answer(self, action_result)
            if answer is not None:
                return answer
        return serialized(self, action_result)

    return handed_over


def _stubbing() -> Any:
    """moto's `BotocoreStubber.__call__` (botocore's `before-send` handler), answering a
    `HandedOver` body with a `HandedOverResponse`; while it answers, the request is one
    from botocore's `before-send`."""
    from moto.core import botocore_stubber

    module: Any = botocore_stubber  # its names, as moto's own `__call__` reads them

    def call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return None
        token = HANDING_OVER.set(True)
        try:
            response = self.process_request(request)
        finally:
            HANDING_OVER.reset(token)
        if response is None:
            return None
        status, headers, body = response
        if type(body) is HandedOver:
            return HandedOverResponse(request.url, status, headers, body)
        return module.AWSResponse(request.url, status, headers, module.MockRawResponse(body))

    return call


def _response_class() -> Any:
    from botocore.awsrequest import AWSResponse

    class _HandedOverResponse(AWSResponse):
        """botocore's response to a request moto answered with a `HandedOver` body: its
        `content` is that body (read as text, the text moto would have sent)."""

        def __init__(self, url: str, status: int, headers: Any, body: HandedOver) -> None:
            super().__init__(url, status, headers, None)
            self._content = body

        @property
        def text(self) -> str:
            return str(self._content)

    return _HandedOverResponse


HandedOverResponse: Any = _response_class()


def parsed_body(body: Any) -> Any:
    """What `json.loads` makes of a response body's text, for a `HandedOver` body without
    writing it out (None for any other body)."""
    if type(body) is HandedOver:
        return body.written
    return None


__all__ = [
    "HANDING_OVER",
    "HandedOver",
    "HandedOverResponse",
    "answer_plan",
    "answers_handed_over",
    "handed_over_answer",
    "parsed_body",
]
