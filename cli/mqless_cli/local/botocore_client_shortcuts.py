"""Work botocore's client repeats on every request of `mqless dev` to make it and judge its
answer, the same each time (the AttributeValue shortcuts are `botocore_shortcuts`'; that
module applies these too). Requests, responses and errors are unchanged.

- `user_agents_built_once`: botocore builds the User-Agent header from a dozen components,
  each sanitized character by character, twice per request (when the request is made and
  again in a `request-created` handler): about a twelfth of an in-process DynamoDB request.
  The string depends only on the builder's fields and the features of the request's context,
  so it is built once per distinct set of them; a builder asked again with the same
  features is answered after one comparison of its fields, not a key built from each.

- `endpoint_parameters_resolved_by_plan`: the endpoint ruleset's parameters of a request are
  resolved from a list, made once per operation, of where each one's value comes from,
  not by asking each of the nine parameters four sources in turn through cached look-ups
  (a twentieth of an in-process DynamoDB request).

- `epoch_times_parsed_directly`: a time an answer gives in epoch seconds (every stream
  record's) is made the local-zone datetime botocore makes of it, without dateutil's
  Python `fromutc` (some 25 µs each), where the local zone has no daylight saving time.

- `successes_not_checked_for_retries`: botocore's legacy retry checks (fifteen for DynamoDB)
  are not asked one by one about a response none of them can retry: no exception, a status
  none of them looks for, no checksum header.

- `standard_successes_not_checked_for_retries`: the same for the standard retry mode (the
  functions' clients): no retry context built and six checks asked about a response that
  raised nothing, parsed no error code, has a status and headers none of them retries.

- `request_members_validated_directly`: a request's text, boolean, integer and name-map
  members (TableName, expressions, ReturnValues, ConsistentRead, ExpressionAttributeNames)
  are checked for type and least length in one step each, not through botocore's
  validator walk; anything that fails or is of another shape is validated by botocore.

- `events_emitted_directly`: a client's events reach their handlers in fewer steps (the
  aliaser calls the emitter's `_emit`, which asks once, not per handler, whether it logs).

- `request_members_serialized_directly`: a JSON request's top-level text, boolean and
  integer members are put in its body as they are, not through a failed lookup of a
  method for their type and botocore's default writer.

- `header_dicts_read_directly`: a request's or answer's `HeadersDict` is asked for a name
  without a `KeyError` raised for each absent one, and the parser's lowercase copy of an
  answer's headers is made from its dict in one step.

- `header_dicts_built_directly`: a `HeadersDict` made from a dict or a list of pairs puts
  them in its dict directly, not through `MutableMapping.update` and a call per header.

- `request_urls_joined_once`: a request's URL (endpoint URL joined with its path) is made
  once per distinct endpoint, path and host prefix, not split and rejoined per request.

- `response_parsers_made_once`: a client's answers are parsed by one parser per protocol
  (a parser keeps nothing of what it parsed), not by two new objects per answer.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

__all__ = [
    "endpoint_parameters_resolved_by_plan",
    "epoch_times_parsed_directly",
    "events_emitted_directly",
    "header_dicts_built_directly",
    "header_dicts_read_directly",
    "request_members_serialized_directly",
    "request_urls_joined_once",
    "response_parsers_made_once",
    "request_members_validated_directly",
    "standard_successes_not_checked_for_retries",
    "successes_not_checked_for_retries",
    "user_agents_built_once",
]

_USER_AGENTS_KEPT = 256  # distinct (builder, features) pairs: a few per client and operation


def _hashable(value: Any) -> Any:
    """A builder field as part of a cache key (sets and lists by content, the rest as is:
    a Config object is hashed by identity, which the key keeps alive)."""
    if isinstance(value, set | frozenset):
        return frozenset(value)
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _snapshot(fields: dict[str, Any]) -> dict[str, Any] | None:
    """A builder's fields as they are now, to compare with them later: a set copied (its
    elements are hashable), the rest as they are; None if a field is a list or a dict (its
    elements could change unseen)."""
    snapshot: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, list | dict):
            return None
        snapshot[name] = frozenset(value) if isinstance(value, set) else value
    return snapshot


@contextmanager
def user_agents_built_once() -> Iterator[None]:
    """Keep each User-Agent string botocore builds, keyed by everything it is built from.

    `UserAgentString.to_string` reads only the builder's own fields (platform, session and
    client config, client features) and the features recorded in the current request
    context; the key is all of them, so the string returned is the one botocore would
    build. A field that cannot be part of a key builds the string as before.

    A builder asked again with the same features (twice per request) is answered from the
    string it was last given for them, when its fields are still equal to what they were
    then (one comparison of its fields, not a key rebuilt from each of them).
    """
    from botocore.context import get_context
    from botocore.useragent import UserAgentString

    original: Any = UserAgentString.to_string
    built: dict[Any, str] = {}
    # (builder id, features) -> (builder, its fields then, its string)
    last: dict[tuple[int, frozenset[str]], tuple[Any, dict[str, Any], str]] = {}
    lock = threading.Lock()

    def to_string(self: UserAgentString) -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        fields = vars(self)
        recent = last.get((id(self), features))
        if recent is not None and recent[0] is self and recent[1] == fields:
            return recent[2]
        try:
            key = (tuple((k, _hashable(v)) for k, v in fields.items()), features)
            found = built.get(key)
        except TypeError:  # an unhashable field: no key, build it
            return str(original(self))
        if found is None:
            found = str(original(self))
            with lock:
                if len(built) >= _USER_AGENTS_KEPT:
                    built.clear()
                built[key] = found
        snapshot = _snapshot(fields)
        if snapshot is not None:
            with lock:
                if len(last) >= _USER_AGENTS_KEPT:
                    last.clear()
                last[(id(self), features)] = (self, snapshot, found)
        return found

    with patched(UserAgentString, "to_string", to_string):
        yield


_PLAN = "mqless_endpoint_parameter_plan"
"""Key of an operation's plan in the resolver's own `_instance_cache`."""


def _parameter_plan(resolver: Any, operation_model: Any) -> Any:
    """Where each endpoint parameter of `operation_model` takes its value from, in the
    ruleset's order, as `_resolve_param_from_context` and `_resolve_param_as_builtin` look:
    (name, static value, request member, operation context path, client context variable,
    builtin name); None for a parameter with an unknown builtin (botocore raises its error)."""
    from botocore.regions import EndpointResolverBuiltins

    known = set(EndpointResolverBuiltins.__members__.values())
    static = resolver._get_static_context_params(operation_model)
    dynamic = resolver._get_dynamic_context_params(operation_model)
    from_operation = operation_model.operation_context_parameters
    from_client = resolver._get_client_context_params()
    plan = []
    for name, definition in resolver._param_definitions.items():
        builtin = definition.builtin
        if builtin is not None and builtin not in known:
            return None
        path = from_operation[name]["path"] if name in from_operation else None
        plan.append(
            (name, static.get(name), dynamic.get(name), path, from_client.get(name), builtin)
        )
    return tuple(plan)


def _planned_params(resolver: Any, plan: Any, call_args: Any, builtins: Any) -> dict[str, Any]:
    """A request's endpoint parameters, looked up as `_parameter_plan` lists for each (the
    request's member, the path searched in its arguments, the client's context, the builtin,
    called if callable), each found one's feature ids registered as botocore does."""
    import jmespath  # type: ignore[import-untyped]

    client_context = resolver._client_context
    provider_params = {}
    for name, static, member, path, variable, builtin in plan:
        value = static
        if value is None and member is not None:
            value = call_args.get(member)
        if value is None and path is not None:
            value = jmespath.search(path, call_args)
        if value is None and variable is not None:
            value = client_context.get(variable)
        if value is None and builtin is not None:
            value = builtins.get(builtin)
            if callable(value):
                value = value()
        if value is not None:
            provider_params[name] = value
            resolver._register_endpoint_feature_ids(name, value)
    return provider_params


@contextmanager
def endpoint_parameters_resolved_by_plan() -> Iterator[None]:
    """Resolve a request's endpoint ruleset parameters from a plan made once per operation.

    botocore's `EndpointRulesetResolver._get_provider_params` emits
    `before-endpoint-resolution` for the builtins, then for each of the ruleset's parameters
    (DynamoDB has nine) asks, through four lookups in its instance cache, for an operation's
    static context value, the request member that gives it, an operation context path and a
    client context variable, then the builtin: some 28 µs a request. Which of those exist
    for a parameter depends only on the resolver and the operation (botocore caches each of
    them per operation itself); here they are listed once per operation, and each request
    looks up its values in the same order (the request's member, the path searched in its
    arguments, the client's context, the builtins as the event's handlers left them, a
    callable builtin called), and registers the same feature ids. A resolver of another
    class, or a parameter with an unknown builtin, is resolved by botocore's own code.
    """
    from botocore.regions import EndpointRulesetResolver

    resolver_class: Any = EndpointRulesetResolver
    original: Any = resolver_class._get_provider_params

    def get_provider_params(
        self: Any, operation_model: Any, call_args: Any, request_context: Any
    ) -> Any:
        if type(self) is not resolver_class:
            return original(self, operation_model, call_args, request_context)
        key = (_PLAN, operation_model)
        plan = self._instance_cache.get(key)
        if plan is None:
            plan = _parameter_plan(self, operation_model)
            if plan is None:
                return original(self, operation_model, call_args, request_context)
            self._instance_cache[key] = plan
        builtins = self._get_customized_builtins(operation_model, call_args, request_context)
        return _planned_params(self, plan, call_args, builtins)

    with patched(resolver_class, "_get_provider_params", get_provider_params):
        yield


_CHECKS_KEPT = 256  # retry checkers: one per client


def _retry_plan(checkers: Any) -> tuple[frozenset[int], tuple[str, ...]] | None:
    """What a legacy `MultiChecker`'s checks look at: the statuses that some check may retry
    and the checksum headers checked; None if a check is of another kind."""
    from botocore import retryhandler

    statuses = set()
    headers = []
    for checker in checkers:
        kind = type(checker)
        if kind in (retryhandler.HTTPStatusCodeChecker, retryhandler.ServiceErrorCodeChecker):
            statuses.add(checker._status_code)
        elif kind is retryhandler.CRC32Checker:
            headers.append(checker._header_name)
        elif kind is not retryhandler.ExceptionRaiser:
            return None
    return frozenset(statuses), tuple(headers)


def _retried_by_none(
    plan: tuple[frozenset[int], tuple[str, ...]] | None, http_response: Any, log: Any
) -> bool:
    """Whether no check of a `_retry_plan` can retry this response (it raised nothing): its
    status is none they look for, and no checksum header is there to check (or botocore's
    retry log is at DEBUG, where the checksum check logs that it skipped)."""
    if plan is None:
        return False
    statuses, headers = plan
    return http_response.status_code not in statuses and not (
        headers
        and (
            log.isEnabledFor(logging.DEBUG)
            or any(http_response.headers.get(h) is not None for h in headers)
        )
    )


@contextmanager
def successes_not_checked_for_retries() -> Iterator[None]:
    """Answer that a response needs no retry without asking each legacy retry check.

    botocore's legacy retry mode (the default) runs every check of a `MultiChecker` on
    every response until one says retry: for DynamoDB fifteen (five HTTP statuses, seven
    error codes each with its status, the CRC32 checksum, an exception raiser), some 10 µs
    for each successful request. A status check and an error-code check retry only their
    own status; the exception raiser only acts on an exception; the checksum check only
    when its header is present (it then compares, or raises). So for a response with no
    exception, a status no check looks for and no checksum header, none of them retries
    and the answer is no (as botocore's own loop gives), without the loop. Any other
    response, a checker of another kind, or botocore's retry log at DEBUG (the checksum
    check logs that it skipped) goes botocore's own way.
    """
    from botocore import retryhandler

    multi: Any = retryhandler.MultiChecker
    original: Any = multi.__call__
    plans: dict[int, tuple[Any, Any, int, Any]] = {}  # id -> (checker, its list, length, plan)
    log = retryhandler.logger

    def call(self: Any, attempt_number: Any, response: Any, caught_exception: Any) -> Any:
        if caught_exception is None and response is not None and type(self) is multi:
            checkers = self._checkers
            kept = plans.get(id(self))
            if (
                kept is None
                or kept[0] is not self
                or kept[1] is not checkers
                or kept[2] != len(checkers)
            ):
                kept = (self, checkers, len(checkers), _retry_plan(checkers))
                if len(plans) >= _CHECKS_KEPT:
                    plans.clear()
                plans[id(self)] = kept
            if _retried_by_none(kept[3], response[0], log):
                return False
        return original(self, attempt_number, response, caught_exception)

    with patched(multi, "__call__", call):
        yield


def _local_time(value: Any) -> Any:
    """What botocore's `parse_timestamp` makes of an epoch time (`fromtimestamp(value,
    tzlocal())`), for a local zone without daylight saving time: the UTC time shifted by
    the zone's one offset, in a new `tzlocal` (dateutil finds no fold in such a zone); None
    for a zone with daylight saving time."""
    from dateutil.tz import tzlocal  # type: ignore[import-untyped]

    zone = tzlocal()
    if zone._hasdst:
        return None
    utc = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return (utc.replace(tzinfo=None) + zone._std_offset).replace(tzinfo=zone)


@contextmanager
def epoch_times_parsed_directly() -> Iterator[None]:
    """Make an answer's epoch time the datetime botocore makes of it, without dateutil's
    `fromutc`.

    botocore's JSON parser reads a timestamp given in epoch seconds with `parse_timestamp`:
    `datetime.fromtimestamp(value, tzlocal())`, whose conversion from UTC runs dateutil's
    `tzlocal.fromutc` in Python (the zone's offset and daylight saving time asked of
    `time.localtime` three times, the fold worked out): some 25 µs for each stream record
    a GetRecords answers. In a zone without daylight saving time (`time.daylight` 0, as in
    a container on UTC) the offset is one constant and no wall time is ambiguous: the result
    is the UTC time plus that offset, in a new `tzlocal`, fold 0, which is made here
    directly. A parser with another timestamp parser, a value that is not an int or a
    float, a platform where botocore tries other zones, or a zone with daylight saving
    time goes botocore's way.
    """
    from botocore import parsers, utils
    from dateutil.tz import tzlocal

    parser: Any = parsers.BaseJSONParser
    original: Any = parser._handle_timestamp
    default = parsers.DEFAULT_TIMESTAMP_PARSER

    def handle_timestamp(self: Any, shape: Any, value: Any) -> Any:
        if (
            self._timestamp_parser is default
            and type(value) in (int, float)
            and utils.get_tzinfo_options() == (tzlocal,)
        ):
            try:
                found = _local_time(value)
            except (OverflowError, OSError, ValueError):
                found = None
            if found is not None:
                return found
        return original(self, shape, value)

    with patched(parser, "_handle_timestamp", handle_timestamp):
        yield


_KINDS_KEPT = 1024  # structure shapes: the inputs of a few dozen operations and their parts
_MEMBER_KINDS: dict[int, tuple[Any, dict[str, Any]]] = {}
"""For a structure shape (by id, kept alive here): how each member is checked at once."""


def _least(shape: Any) -> float:
    """The least length or value botocore's `range_check` lets through for `shape`."""
    if "min" in shape.metadata:
        return float(shape.metadata["min"])
    if shape.serialization.get("hostLabel"):
        return 1.0
    return float("-inf")


def _member_kind(shape: Any) -> Any:
    """How a member of this shape is checked without botocore's walk: ("string", least
    length), ("boolean",), ("integer", least value), ("names", least key length, least
    value length) for a map of text to text; None for any other shape (botocore checks it)."""
    from botocore.utils import is_json_value_header

    kind = shape.type_name
    if kind == "string" and not is_json_value_header(shape):
        return ("string", _least(shape))
    if kind == "boolean":
        return ("boolean",)
    if kind in ("integer", "long"):
        return ("integer", _least(shape))
    if kind == "map":
        key, value = shape.key, shape.value
        plain = (
            key.type_name == "string"
            and value.type_name == "string"
            and not is_json_value_header(key)
            and not is_json_value_header(value)
        )
        if plain:
            return ("names", _least(key), _least(value))
    return None


def _member_kinds(shape: Any) -> dict[str, Any]:
    found = _MEMBER_KINDS.get(id(shape))
    if found is not None and found[0] is shape:
        return found[1]
    kinds = {name: _member_kind(member) for name, member in shape.members.items()}
    if len(_MEMBER_KINDS) >= _KINDS_KEPT:
        _MEMBER_KINDS.clear()
    _MEMBER_KINDS[id(shape)] = (shape, kinds)
    return kinds


def _passes(kind: Any, value: Any) -> bool:
    """Whether botocore's checks of a member of this kind report nothing for `value` (its
    type as `isinstance` sees it, a length or value no less than the least allowed)."""
    what = kind[0]
    if what == "string":
        return isinstance(value, str) and len(value) >= kind[1]
    if what == "boolean":
        return isinstance(value, bool)
    if what == "integer":
        return isinstance(value, int) and value >= kind[1]
    return isinstance(value, dict) and all(
        isinstance(k, str) and len(k) >= kind[1] and isinstance(v, str) and len(v) >= kind[2]
        for k, v in value.items()
    )


@contextmanager
def request_members_validated_directly() -> Iterator[None]:
    """Check a request's text, boolean, integer and name-map members in one step each.

    botocore's `ParamValidator._validate_structure` checks the required members and the
    unknown ones, then each member through `_validate` (a special-case check, a handler
    looked up by type name, a type-check wrapper, `range_check`): some 2 µs for each of a
    DynamoDB request's TableName, expressions, ReturnValues, ConsistentRead and names. For
    a member of text, boolean, integer or a map of text to text (not a JSON-value header),
    botocore reports nothing when the value is of a type `isinstance` accepts and its length
    or value is no less than the shape's least: that is checked here directly, and such a
    member is let through. A member that fails that check, or of any other shape, is
    validated by botocore's own `_validate` (with whatever shortcut is on it), in botocore's
    order; a structure missing a required member, holding an unknown one, a tagged union,
    or a value that is not a dict, is validated by botocore's own code: every error is
    reported as botocore reports it.
    """
    from botocore.validate import ParamValidator

    validator: Any = ParamValidator
    original: Any = validator._validate_structure

    def validate(self: Any, value: Any, shape: Any, errors: Any, name: str) -> None:
        self._validate(value, shape, errors, name)  # with whatever shortcut is on it

    def validate_structure(self: Any, params: Any, shape: Any, errors: Any, name: str) -> None:
        if (
            type(self) is not ParamValidator
            or not isinstance(params, dict)
            or shape.is_tagged_union
        ):
            return original(self, params, shape, errors, name)  # type: ignore[no-any-return]
        members = shape.members
        if any(p not in members for p in params) or any(
            r not in params for r in shape.metadata.get("required", ())
        ):
            return original(self, params, shape, errors, name)  # type: ignore[no-any-return]
        kinds = _member_kinds(shape)
        for param, value in params.items():
            kind = kinds[param]
            if kind is None or not _passes(kind, value):
                validate(self, value, members[param], errors, f"{name}.{param}")
        return None

    with patched(validator, "_validate_structure", validate_structure):
        yield


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
    log = standard.logger

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
            plan = kept[2]
            http, parsed = response
            if (
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
                context = kwargs["request_dict"]["context"]
                retries = context.get("retries") if context is not None else None
                if retries:
                    retries["max"] = max(retries.get("max", 0), plan[0])
                log.debug("Not retrying request.")
                parsed.setdefault("ResponseMetadata", {})
                return None
        return original(self, **kwargs)

    try:
        with patched(handler_class, "needs_retry", needs_retry):
            yield
    finally:
        on[0] = False


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
    log = hooks.logger

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

    def inner_emit(
        self: Any, event_name: str, kwargs: dict[str, Any], stop_on_response: bool = False
    ) -> Any:
        handlers = self._lookup_cache.get(event_name)
        if handlers is None or log.isEnabledFor(logging.DEBUG):
            return original_inner(self, event_name, kwargs, stop_on_response)
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

    with (
        patched(aliaser, "emit", emit),
        patched(aliaser, "emit_until_response", emit_until_response),
        patched(emitter_class, "_emit", inner_emit),
    ):
        yield


@contextmanager
def header_dicts_read_directly() -> Iterator[None]:
    """Read botocore's `HeadersDict` (a request's or response's headers) without a raised
    `KeyError` for each absent name, and copy it with lowercase names in one step.

    `HeadersDict` keeps each header under a `_HeaderKey` (the name and its lowercase form).
    Asking whether a name is there (`in`, `get`) goes through `Mapping`'s defaults, which
    look it up and catch the `KeyError` an absent name raises: some 1.3 µs for each of the
    three absent names a request asks about (Transfer-Encoding, Content-Length,
    x-amz-crc32). `lowercase_dict`, run by the response parser on every answer's headers,
    iterates the names and looks each one up again through a new `_HeaderKey`: some 11 µs
    for a DynamoDB answer's headers. Here, for an exact `HeadersDict`, a name is looked up
    in its dict by the same `_HeaderKey` without the exception, and the parser's copy is
    made from the dict's keys' lowercase forms and their values, which is what
    `lowercase_dict` makes of it. Any other mapping is read as before.
    """
    from botocore import awsrequest, parsers

    headers_class: Any = awsrequest.HeadersDict
    key_class: Any = awsrequest._HeaderKey
    original_contains: Any = headers_class.__contains__
    original_get: Any = headers_class.get
    original_lowercase: Any = parsers.lowercase_dict

    def contains(self: Any, key: Any) -> bool:
        if type(self) is not headers_class or type(key) is not str:
            return bool(original_contains(self, key))
        return key_class(key) in self._dict

    def get(self: Any, key: Any, default: Any = None) -> Any:
        if type(self) is not headers_class or type(key) is not str:
            return original_get(self, key, default)
        return self._dict.get(key_class(key), default)

    def lowercase_dict(original: Any) -> Any:
        if type(original) is not headers_class or not all(
            type(key._key) is str for key in original._dict
        ):
            return original_lowercase(original)
        return {key._lower: value for key, value in original._dict.items()}

    with (
        patched(headers_class, "__contains__", contains),
        patched(headers_class, "get", get),
        patched(parsers, "lowercase_dict", lowercase_dict),
    ):
        yield


_WRITTEN_AS_IS = ("string", "boolean", "integer", "long")
"""Shape types botocore's JSON serializer writes as they are (by `_default_serialize`)."""

_STRUCTURE_PLANS: dict[tuple[int, type], tuple[Any, dict[str, tuple[str, bool]]]] = {}


def _structure_plan(serializer_class: type, shape: Any) -> dict[str, tuple[str, bool]]:
    """For each member of a structure shape: the name it is written under, and whether
    `serializer_class` writes its value as it is (a text, boolean or integer shape that
    its `_serialize` sends to `_default_serialize`, having no method of its own)."""
    key = (id(shape), serializer_class)
    found = _STRUCTURE_PLANS.get(key)
    if found is not None and found[0] is shape:
        return found[1]
    plan = {}
    for name, member in shape.members.items():
        kind = member.type_name
        as_is = kind in _WRITTEN_AS_IS and not hasattr(serializer_class, f"_serialize_type_{kind}")
        plan[name] = (member.serialization.get("name", name), as_is)
    if len(_STRUCTURE_PLANS) >= _KINDS_KEPT:
        _STRUCTURE_PLANS.clear()
    _STRUCTURE_PLANS[key] = (shape, plan)
    return plan


@contextmanager
def request_members_serialized_directly() -> Iterator[None]:
    """Write a JSON request's text, boolean and integer members into its body as they are.

    botocore's `JSONSerializer._serialize_type_structure` writes each member of a request
    through `_serialize`, which looks up a method named for the member's type
    (`_serialize_type_string`, ...) and, finding none for text, booleans and integers,
    falls back to `_default_serialize`, which puts the value in the body under the
    member's name (its wire name if the model gives one): a failed attribute lookup and
    two calls for each of a DynamoDB request's TableName, expressions, ReturnValues and
    ConsistentRead. Here the request's top-level members of those types are put in the
    body under the same name, in the same order, directly; every other member is written
    by `_serialize` as before (with whatever shortcut is on it). A nested structure, a
    document, or a serializer of another class is written by botocore's own code.
    """
    from botocore.serialize import JSONSerializer

    serializer: Any = JSONSerializer
    original: Any = serializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: Any) -> None:
        write = self._serialize  # with whatever shortcut is on the writers it calls
        if key is not None or type(self) is not JSONSerializer or shape.is_document_type:
            original(self, serialized, value, shape, key)
            return
        plan = _structure_plan(serializer, shape)
        members = shape.members
        for name, member_value in value.items():
            wire_name, as_is = plan[name]
            if as_is:
                serialized[wire_name] = member_value
            else:
                write(serialized, member_value, members[name], wire_name)

    with patched(serializer, "_serialize_type_structure", serialize_structure):
        yield


@contextmanager
def header_dicts_built_directly() -> Iterator[None]:
    """Build a `HeadersDict` from a dict or a list of pairs without `MutableMapping.update`.

    botocore builds two `HeadersDict` a request (the prepared request's, from the request's
    header pairs, and the answer's, from the dict the stubber answered), each through
    `MutableMapping.update`: an ABC check of the argument, then `__setitem__` called per
    header. For one positional argument that is exactly a dict or a list, and no keyword,
    each name and value is put in its dict under a `_HeaderKey`, in the same order, as
    `__setitem__` puts it (a later name equal to an earlier one but for case replaces its
    value and keeps the first spelling, as there). Anything else is built as before.
    """
    from botocore import awsrequest

    headers_class: Any = awsrequest.HeadersDict
    key_class: Any = awsrequest._HeaderKey
    original: Any = headers_class.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if type(self) is not headers_class or kwargs or len(args) != 1:
            original(self, *args, **kwargs)
            return
        (given,) = args
        kind = type(given)
        if kind is dict:
            pairs = given.items()
        elif kind is list:
            pairs = given
        else:
            original(self, *args, **kwargs)
            return
        self._dict = held = {}
        for name, value in pairs:
            held[key_class(name)] = value

    with patched(headers_class, "__init__", init):
        yield


_URLS_KEPT = 256  # (endpoint URL, request path, host prefix): a few per client


@contextmanager
def request_urls_joined_once() -> Iterator[None]:
    """Join a request's endpoint URL and path once per distinct pair, not per request.

    `prepare_request_dict` gives every request its URL through `awsrequest._urljoin`,
    which splits the endpoint URL, joins its path with the request's and puts it back
    together (`urlunsplit`): some 3 µs a request, for a result that depends only on its
    three arguments, text (the endpoint URL, the request's path, a host prefix or None).
    Here the URL made for each such triple is kept (a few hundred at most) and given
    again; any other arguments are joined by botocore's own function.
    """
    from botocore import awsrequest

    module: Any = awsrequest
    original: Any = module._urljoin
    joined: dict[tuple[str, str, str | None], Any] = {}
    lock = threading.Lock()

    def urljoin(endpoint_url: Any, url_path: Any, host_prefix: Any) -> Any:
        if (
            type(endpoint_url) is not str
            or type(url_path) is not str
            or (host_prefix is not None and type(host_prefix) is not str)
        ):
            return original(endpoint_url, url_path, host_prefix)
        key = (endpoint_url, url_path, host_prefix)
        found = joined.get(key)
        if found is None:
            found = original(endpoint_url, url_path, host_prefix)
            with lock:
                if len(joined) >= _URLS_KEPT:
                    joined.clear()
                joined[key] = found
        return found

    with patched(module, "_urljoin", urljoin):
        yield


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
