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
