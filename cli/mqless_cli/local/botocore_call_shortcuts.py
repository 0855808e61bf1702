"""Work botocore's client repeats on the way of each call of `mqless dev` (its events, its
retry checks, its answer's parser), the same each time; `botocore_shortcuts` applies these
with the others. Requests, responses, retries and errors are unchanged.

- `standard_successes_not_checked_for_retries`: the standard retry mode (the functions'
  clients) builds no retry context and asks none of its six checks about a response that
  raised nothing, parsed no error code, has a status and headers none of them retries.

- `events_emitted_directly`: a client's events reach their handlers in fewer steps (the
  aliaser calls the emitter's `_emit`, which asks once, not per handler, whether it logs).

- `response_parsers_made_once`: a client's answers are parsed by one parser per protocol
  (a parser keeps nothing of what it parsed), not by two new objects per answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

__all__ = [
    "events_emitted_directly",
    "response_parsers_made_once",
    "standard_successes_not_checked_for_retries",
]


def _standard_plan(handler: Any) -> Any:
    """What the standard retry conditions of `handler` look at when no error code was
    parsed and nothing was raised: (its max attempts, the statuses it retries as transient,
    the checksum header DynamoDB's case checks); None if its policy is not botocore's
    standard composition (max attempts, then transient, throttled, modeled, or the IDP and
    DynamoDB checksum special cases) or a list of error codes holds None."""
    from botocore.retries import special, standard

    def kinds(*found: Any) -> list[type]:
        return [type(f) for f in found]

    policy: Any = handler._retry_policy
    conditions: Any = getattr(policy, "_retry_checker", None)
    if kinds(policy, conditions) != [standard.RetryPolicy, standard.StandardRetryConditions]:
        return None
    attempts: Any = conditions._max_attempts_checker
    either: Any = conditions._additional_checkers
    if kinds(attempts, either) != [standard.MaxAttemptsChecker, standard.OrRetryChecker]:
        return None
    if kinds(*either._checkers) != [
        standard.TransientRetryableChecker,
        standard.ThrottledRetryableChecker,
        standard.ModeledRetryableChecker,
        standard.OrRetryChecker,
    ]:
        return None
    transient, throttled, _, special_cases = either._checkers
    if kinds(*special_cases._checkers) != [
        special.RetryIDPCommunicationError,
        special.RetryDDBChecksumError,
    ]:
        return None
    if None in transient._transient_error_codes or None in throttled._throttled_error_codes:
        return None
    checksum: Any = special.RetryDDBChecksumError
    return (
        attempts._max_attempts,
        frozenset(transient._transient_status_codes),
        checksum._CHECKSUM_HEADER,
    )


_STANDARD_KEPT = 256  # retry handlers: one per client


@contextmanager
def standard_successes_not_checked_for_retries() -> Iterator[None]:
    """Answer that a response needs no retry without building a retry context and asking
    each of the standard retry mode's checks.

    botocore's standard retry mode (`retries={"mode": "standard"}`, which the functions'
    clients use) answers every response's `needs-retry` by making a `RetryContext` and
    asking the max-attempts check, then the transient, throttled and modeled checks and the
    IDP and DynamoDB checksum special cases in turn: some 8 µs for each successful request.
    When nothing was raised and the answer parsed holds no error code, the throttled,
    modeled and IDP checks say no; the transient check says no unless the status is one it
    retries; the checksum case says no unless the `x-amz-crc32` header is there (DynamoDB
    only). So for such a response, with a status no check retries and no checksum header,
    at an attempt below the maximum, the answer is no retry (None), after doing what
    botocore does on the way: the request's retries context records the max attempts, "Not
    retrying request." is logged, and the answer's `ResponseMetadata` is there. Any other
    response, a handler of another class or a policy of other checks goes botocore's own way,
    and so does every response once the block has ended (a client made during it keeps the
    method it registered).
    """
    from botocore.retries import standard

    handler_class: Any = standard.RetryHandler
    original: Any = handler_class.needs_retry
    plans: dict[int, tuple[Any, Any, Any]] = {}  # id -> (handler, its policy, plan)
    on = [True]  # a client registers the bound method: it outlives the patch

    def needs_retry(self: Any, **kwargs: Any) -> Any:
        response = kwargs.get("response")
        if (
            on[0]
            and type(self) is handler_class
            and response is not None
            and kwargs.get("caught_exception") is None
            and kwargs.get("operation") is not None
        ):
            kept = plans.get(id(self))
            if kept is None or kept[0] is not self or kept[1] is not self._retry_policy:
                kept = (self, self._retry_policy, _standard_plan(self))
                if len(plans) >= _STANDARD_KEPT:
                    plans.clear()
                plans[id(self)] = kept
            if _retried_by_none(kept[2], response, kwargs):
                return None
        return original(self, **kwargs)

    try:
        with patched(handler_class, "needs_retry", needs_retry):
            yield
    finally:
        on[0] = False


def _retried_by_none(plan: Any, response: Any, kwargs: dict[str, Any]) -> bool:
    """Whether no standard check of a `_standard_plan` retries this response (a success by
    its status, with no error code parsed, no checksum header, an attempt below the max);
    if so, what botocore does on the way to saying no is done: the max attempts recorded in
    the request's retries context, "Not retrying request." logged, `ResponseMetadata` set."""
    from botocore.retries import standard

    http, parsed = response
    if not (
        plan is not None
        and http is not None
        and type(parsed) is dict
        and _no_error_code(parsed)
        and kwargs["attempts"] < plan[0]
        and http.status_code not in plan[1]
        and not (
            kwargs["operation"].service_model.service_name == "dynamodb"
            and http.headers.get(plan[2]) is not None
        )
    ):
        return False
    context = kwargs["request_dict"]["context"]
    retries = context.get("retries") if context is not None else None
    if retries:
        retries["max"] = max(retries.get("max", 0), plan[0])
    standard.logger.debug("Not retrying request.")
    parsed.setdefault("ResponseMetadata", {})
    return True


def _no_error_code(parsed: dict[str, Any]) -> bool:
    """Whether botocore's `RetryContext.get_error_code` finds no code in a parsed answer."""
    error = parsed.get("Error", {})
    return not isinstance(error, dict) or error.get("Code") is None


@contextmanager
def events_emitted_directly() -> Iterator[None]:
    """Emit a client's events with fewer steps on the way, calling the same handlers.

    A client emits a dozen events per request through its `EventAliaser` (the alias of the
    name, kept), then `HierarchicalEmitter.emit` or `emit_until_response`, then `_emit`
    (the handlers, kept per name), which logs at DEBUG before calling each handler: some
    0.5 µs of steps per event and 0.2 µs per handler, a dozen handlers a request. Here the
    aliaser takes the kept alias and calls the emitter's `_emit` itself (for a
    `HierarchicalEmitter`, whose `emit` and `emit_until_response` do only that), and `_emit`
    asks once whether its logger is at DEBUG: when it is not, the handlers are called in
    the same order with the same arguments, and the same responses are returned, without
    the per-handler log call that would write nothing. At DEBUG, a name whose handlers are
    not yet kept, or another emitter or aliaser class, goes botocore's own way.
    """
    from botocore import hooks

    aliaser: Any = hooks.EventAliaser
    emitter_class: Any = hooks.HierarchicalEmitter
    original_emit: Any = aliaser.emit
    original_until: Any = aliaser.emit_until_response
    original_inner: Any = emitter_class._emit

    def emit(self: Any, event_name: str, **kwargs: Any) -> Any:
        emitter = self._emitter
        if type(self) is not aliaser or type(emitter) is not emitter_class:
            return original_emit(self, event_name, **kwargs)
        aliased = self._alias_name_cache.get(event_name)
        if aliased is None:
            aliased = self._alias_event_name(event_name)
        return emitter._emit(aliased, kwargs)

    def emit_until_response(self: Any, event_name: str, **kwargs: Any) -> Any:
        emitter = self._emitter
        if type(self) is not aliaser or type(emitter) is not emitter_class:
            return original_until(self, event_name, **kwargs)
        aliased = self._alias_name_cache.get(event_name)
        if aliased is None:
            aliased = self._alias_event_name(event_name)
        responses = emitter._emit(aliased, kwargs, stop_on_response=True)
        return responses[-1] if responses else (None, None)

    with (
        patched(aliaser, "emit", emit),
        patched(aliaser, "emit_until_response", emit_until_response),
        patched(emitter_class, "_emit", _handlers_called(original_inner, hooks.logger)),
    ):
        yield


def _handlers_called(original: Any, log: logging.Logger) -> Any:
    """`HierarchicalEmitter._emit` asking once whether `log` is at DEBUG: when it is not,
    an event's kept handlers are called, in order, without a log call each; at DEBUG, or
    for a name whose handlers are not kept yet, botocore's own `_emit` (`original`)."""

    def inner_emit(
        self: Any, event_name: str, kwargs: dict[str, Any], stop_on_response: bool = False
    ) -> Any:
        handlers = self._lookup_cache.get(event_name)
        if handlers is None or log.isEnabledFor(logging.DEBUG):
            return original(self, event_name, kwargs, stop_on_response)
        if not handlers:
            return []
        kwargs["event_name"] = event_name
        responses = []
        for handler in handlers:
            response = handler(**kwargs)
            responses.append((handler, response))
            if stop_on_response and response is not None:
                return responses
        return responses

    return inner_emit


_PARSERS_KEPT = 64  # (parser factory, protocol): one factory per client


@contextmanager
def response_parsers_made_once() -> Iterator[None]:
    """Parse a client's answers with one parser per protocol, not a new one per answer.

    botocore's endpoint asks its `ResponseParserFactory` for a parser for every answer,
    and the factory makes a new one each time (for JSON, a `JSONParser` and the event
    stream parser it makes in `__init__`): some 2 µs an answer. A parser holds only what
    it was made with (the factory's timestamp and blob parsers, its event stream parser)
    and keeps nothing of an answer it parses, so one made with the same defaults parses
    every answer alike. Here a factory gives the parser it made for a protocol again while
    its defaults and the protocol's parser class are the ones it was made with; a factory
    of another class, or changed defaults, makes a new parser as before.
    """
    from botocore import parsers

    factory_class: Any = parsers.ResponseParserFactory
    original: Any = factory_class.create_parser
    made: dict[tuple[int, str], tuple[Any, dict[str, Any], Any, Any]] = {}
    lock = threading.Lock()

    def create_parser(self: Any, protocol_name: Any) -> Any:
        if type(self) is not factory_class:
            return original(self, protocol_name)
        kind = parsers.PROTOCOL_PARSERS.get(protocol_name)
        kept = made.get((id(self), protocol_name))
        if kept is not None and kept[0] is self and kept[2] is kind and kept[1] == self._defaults:
            return kept[3]
        parser = original(self, protocol_name)
        with lock:
            if len(made) >= _PARSERS_KEPT:
                made.clear()
            made[(id(self), protocol_name)] = (self, dict(self._defaults), kind, parser)
        return parser

    with patched(factory_class, "create_parser", create_parser):
        yield
