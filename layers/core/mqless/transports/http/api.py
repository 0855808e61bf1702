"""The HTTP API: Powertools resolver with pydantic validation and OpenAPI, its error map, and
the routers of `mqless.transports.http.routes` (one per resource) included into it."""

from __future__ import annotations

import binascii
import importlib
import json
import threading
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from mqless import __version__
from mqless.domain.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    MqlessError,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    Throttled,
    Unauthorized,
)
from mqless.start_up import start_up_frozen
from mqless.transports.http.models.problem import Problem
from mqless.transports.http.routes import MODULES, module_serving

logger = Logger(service="mqless", child=True)


def client_json(text: str) -> Any:
    """A request body parsed as JSON; what the parser cannot hold is a JSONDecodeError.

    `json.loads` raises RecursionError for deep nesting (`[` x 100,000) and a plain
    ValueError for an integer over Python's 4,300-digit limit; Powertools turns only a
    JSONDecodeError into a validation error (our 400), so both become one.
    """
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise json.JSONDecodeError("nested too deeply", text, 0) from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise json.JSONDecodeError("a number has more than 4,300 digits", text, 0) from exc


app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=client_json)

# One mapping from the core's exceptions to HTTP statuses; the most specific class wins.
_STATUS: list[tuple[type[MqlessError], HTTPStatus]] = [
    (InvalidRequest, HTTPStatus.BAD_REQUEST),
    (Unauthorized, HTTPStatus.UNAUTHORIZED),
    (Forbidden, HTTPStatus.FORBIDDEN),
    (NotFound, HTTPStatus.NOT_FOUND),
    (Conflict, HTTPStatus.CONFLICT),
    (PayloadTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (Throttled, HTTPStatus.TOO_MANY_REQUESTS),
]


def _problem(status: int, code: str, message: str, **extra: Any) -> Response[str]:
    headers = {"Retry-After": [str(extra.pop("retry_after"))]} if "retry_after" in extra else None
    body = Problem(error=code, message=message, details=extra.pop("details", None))
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
        headers=headers,
    )


def status_of(exc: MqlessError) -> int:
    """The HTTP status for a core error."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return int(status)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR)


@app.exception_handler(MqlessError)
def _core_error(exc: MqlessError) -> Response[str]:
    status = status_of(exc)
    if status >= 500:
        logger.exception("core error", extra={"code": exc.code})
    if isinstance(exc, Throttled):
        return _problem(status, exc.code, exc.message, retry_after=exc.retry_after_seconds)
    if isinstance(exc, QuotaExceeded):
        details = [{"quota": exc.quota, "limit": exc.limit}]
        return _problem(status, exc.code, exc.message, details=details)
    return _problem(status, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[str]:
    details = []
    for error in exc.errors():
        # Powertools puts the whole body at ("body",); a field of it at ("body", name, ...)
        loc = [str(p) for p in error.get("loc", ())]
        field = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "request body"
        problem = str(error.get("msg", "")).removeprefix("Value error, ")
        details.append({"field": field, "problem": problem})
    if details and details[0]["problem"].startswith("JSON decode error"):
        why = (exc.errors()[0].get("ctx") or {}).get("error")
        message = "request body is not valid JSON" + (f": {why}" if why else "")
        return _problem(400, "invalid_request", message[:300])
    first = details[0] if details else {"field": "request body", "problem": "invalid"}
    return _problem(
        400, "invalid_request", f"{first['field']}: {first['problem']}", details=details
    )


@app.not_found
def _no_route(exc: NotFoundError) -> Response[str]:
    path = app.current_event.raw_path if app.current_event else "?"
    return _problem(404, "no_such_route", f"no route for {path}")


def _unreadable_body() -> bool:
    """The event says its body is base64 but it does not decode to UTF-8 text."""
    try:
        app.current_event.decoded_body  # noqa: B018 - decoding is the check
    except (binascii.Error, UnicodeDecodeError):
        return True
    return False


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    # Powertools decodes a base64 body before validation and lets a bad one escape as a
    # plain ValueError; that is the client's mistake, not ours.
    if isinstance(exc, ValueError) and _unreadable_body():
        return _problem(400, "invalid_request", "request body is not base64-encoded UTF-8 text")
    logger.exception("unhandled error")
    return _problem(500, "internal_error", "the broker failed; the request may be retried")


# ---- the routes, one router per resource, included with the first request for it ----------

_included: set[str] = set()
_including = threading.Lock()


def include_routes(*modules: str) -> None:
    """Import these routes modules and include their routers, once each.

    A request needs one module's routes (`routes.module_serving`); importing all seven and
    their models made a cold send's import and first request ~30 ms CPU longer (issue 18,
    bench/cold_import.py). Each new route's middleware stack is built here, under the
    lock, as its first call would build it: a resolver that serves threads must not build
    one route's stack on two of them at once (Powertools' private attributes, as in
    `mqless dev`'s resolver: the version is pinned in pyproject.toml).
    """
    if _included.issuperset(modules):
        return
    # what a routes module loads lives as long as the process, as the handler's imports do
    with _including, start_up_frozen():
        for name in modules:
            if name in _included:
                continue
            router = importlib.import_module(f"mqless.transports.http.routes.{name}").router
            before = {id(route) for route in [*app._static_routes, *app._dynamic_routes]}
            app.include_router(router)
            for route in [*app._static_routes, *app._dynamic_routes]:
                if id(route) not in before and not route._middleware_stack_built:
                    route._build_middleware_stack(
                        router_middlewares=app._router_middlewares, app=app
                    )
            _included.add(name)


# ---- the API describing itself --------------------------------------------------------------


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    include_routes(*MODULES)  # the console's routes stay out of the document as before
    document = app.get_openapi_json_schema(
        title="mqless",
        version=__version__,
        description="Queues with acks, redelivery, dead letters and FIFO groups, "
        'serverless on AWS. Errors are JSON problems: {"error", "message"}.',
    )
    document = json.dumps(_with_problems(_in_module_order(json.loads(document))))
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)


def _in_module_order(document: dict[str, Any]) -> dict[str, Any]:
    """The paths in the order of `routes.MODULES`, as Powertools lists them (paths with a
    parameter first), whichever requests included their routers first."""

    def place(path: str) -> tuple[bool, int]:
        module = module_serving(path)
        return "{" not in path, MODULES.index(module) if module else len(MODULES)

    paths = document.get("paths", {})
    document["paths"] = {path: paths[path] for path in sorted(paths, key=place)}
    return document


def _with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Say what errors really look like: a Problem with a 4xx/5xx, never Powertools' 422."""
    problem = {
        "description": "An error: a JSON problem saying what is wrong",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    gateway = {"$ref": "#/components/schemas/GatewayError"}
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    refused = {
        "401": "No credentials: API Gateway's own answer, before any function runs",
        "403": "Credentials refused (API Gateway), or an action the grants do not allow (a "
        "Problem with error `forbidden`), or a creation over the principal's quota "
        "(`quota_exceeded`)",
    }
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = problem
            for status, description in refused.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"anyOf": [gateway, problem_ref]}}},
                }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = Problem.model_json_schema()
    schemas["GatewayError"] = {
        "type": "object",
        "description": "API Gateway's own error body (authorizer refusals): no `error` code.",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    }
    # every documented route needs a bearer token (the console and this document do not,
    # and are not listed)
    document["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An mqless API key (mqk_...) or a JWT from the configured issuer. "
            "Without one API Gateway answers 401; with one it refuses, 403.",
        }
    }
    document["security"] = [{"bearer": []}]
    return document


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Handle one HTTP API event. Bodies are JSON whatever the content type says.

    `curl -d` labels its body application/x-www-form-urlencoded, which Powertools would
    parse as a form; this API has no form endpoints, so such bodies are read as JSON.
    """
    headers = event.get("headers") or {}
    content_type = str(headers.get("content-type", "")).lower()
    if event.get("body") and not content_type.startswith("application/json"):
        event = {**event, "headers": {**headers, "content-type": "application/json"}}
    serving = module_serving(str(event.get("rawPath") or ""))
    # a path no module serves is looked for in all of them, and is Powertools' 404 as before
    include_routes(*((serving,) if serving else MODULES))
    result: dict[str, Any] = app.resolve(event, context)
    return result
