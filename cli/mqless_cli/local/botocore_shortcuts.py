"""Work botocore repeats on every request of `mqless dev` that gives the same result each time.

Every AWS request of the local runtime (the functions' and its own) is answered in-process by
moto, so botocore's client side is a large share of a request's CPU time. What is kept here
is the same output for less work: requests, responses and errors are unchanged.

- `user_agents_built_once`: botocore builds the User-Agent header from a dozen components,
  each sanitized character by character, twice per request (when the request is made and
  again in a `request-created` handler): about a twelfth of an in-process DynamoDB request.
  The string depends only on the builder's fields and the features of the request's context,
  so it is built once per distinct set of them; a builder asked again with the same
  features is answered after one comparison of its fields, not a key built from each.

- `attribute_values_parsed_directly`: botocore parses every DynamoDB AttributeValue of a
  response as a structure of ten members, through a shape lookup per member and per list
  element: most of the CPU of a Query that returns index segments (lists of numbers). A
  value of text, numbers, booleans and null (and lists and maps of them) parses to itself,
  so such values are taken as JSON decoded them (nothing else holds them); binary and
  anything unusual parse as before.

- `attribute_maps_parsed_directly`: a map of AttributeValues (an item, a key) is parsed in
  one step, each value by the structure handler, not through a handler lookup per name and
  per value.

- `attribute_values_validated_directly`: botocore validates every AttributeValue of a request
  (items, keys, expression values) as a structure of ten members, through a handler per
  member and per list element. A value of text, numbers, booleans and null (and lists and
  maps of them) always passes, so it is let through at once; anything else is validated as
  before (and reported as before).

- `attribute_values_serialized_directly`: botocore's JSON serializer writes every
  AttributeValue of a request member by member into new dicts and lists; for the same
  values (no binary, which it base64-encodes) that is the value itself, which is what is
  put into the body to be written out as JSON.

- `answers_read_as_handed_over`: an answer moto handed over as the dict its serializer built
  (`moto_fixes.answers_handed_over`) is read as that dict, what `json.loads` of its text gives.

- `successes_not_checked_for_retries`: botocore's legacy retry checks (fifteen for DynamoDB)
  are not asked one by one about a response none of them can retry: no exception, a status
  none of them looks for, no checksum header.

- `endpoint_parameters_resolved_by_plan`: the endpoint ruleset's parameters of a request are
  resolved from a list, made once per operation, of where each one's value comes from,
  not by asking each of the nine parameters four sources in turn through cached look-ups
  (a twentieth of an in-process DynamoDB request).

`botocore_shortcuts()` applies them all (`LocalCloud` does, for its lifetime, and so does the
test suite's `moto_aws` fixture).

`requests_unsigned` (in `unsigned_requests`) is apart from these: it changes the request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.handover import parsed_body
from mqless_cli.local.moto_fixes.patching import patched
from mqless_cli.local.moto_fixes.serialization import written_as_is
from mqless_cli.local.shared_patches import SharedPatches

__all__ = [
    "answers_read_as_handed_over",
    "attribute_maps_parsed_directly",
    "attribute_values_parsed_directly",
    "attribute_values_serialized_directly",
    "attribute_values_validated_directly",
    "botocore_shortcuts",
    "endpoint_parameters_resolved_by_plan",
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


_AS_IS = frozenset({"S", "N"})
_FLAGS = frozenset({"BOOL", "NULL"})
_TEXT_SETS = frozenset({"SS", "NS"})


def _attribute_value(parse: Any, shape: Any, value: Any) -> Any:
    """An AttributeValue parsed as botocore's JSON parser parses it (`parse`: its structure
    handler, for what is not taken as it is): one member of text, number, boolean or
    null, or a list or map of AttributeValues, or a set of texts or numbers."""
    if written_as_is(value):
        return value  # decoded from the answer's JSON: no one else holds it
    if type(value) is dict and len(value) == 1:
        ((member, inner),) = value.items()
        if member in _AS_IS:
            if type(inner) is str:
                return {member: inner}
        elif member == "L":
            if type(inner) is list:
                return {
                    "L": [None if v is None else _attribute_value(parse, shape, v) for v in inner]
                }
        elif member == "M":
            if type(inner) is dict:
                return {
                    "M": {
                        k: None if v is None else _attribute_value(parse, shape, v)
                        for k, v in inner.items()
                    }
                }
        elif member in _FLAGS:
            if type(inner) is bool:
                return {member: inner}
        elif member in _TEXT_SETS and type(inner) is list and all(type(v) is str for v in inner):
            return {member: list(inner)}
    return parse(shape, value)


@contextmanager
def attribute_values_parsed_directly() -> Iterator[None]:
    """Parse DynamoDB AttributeValues (tables and streams) without a shape walk per value.

    botocore's `_handle_structure` gives an AttributeValue the members present in the JSON,
    each parsed by its shape: text and numbers as they are, booleans and null as they are,
    lists and maps member by member, binary base64-decoded. For every value but binary that
    is the JSON value itself, which is what is returned here: the very value `json.loads`
    made of the answer, which nothing else holds (botocore would make new dicts and lists
    equal to it); a value with binary in it, or of any other shape, is parsed by
    botocore's own handler.
    """
    from botocore.parsers import BaseJSONParser

    parser: Any = BaseJSONParser
    original: Any = parser._handle_structure

    def handle_structure(self: Any, shape: Any, value: Any) -> Any:
        if shape.name == "AttributeValue":
            return _attribute_value(lambda s, v: original(self, s, v), shape, value)
        return original(self, shape, value)

    with patched(parser, "_handle_structure", handle_structure):
        yield


@contextmanager
def attribute_maps_parsed_directly() -> Iterator[None]:
    """Parse a DynamoDB map of AttributeValues (an item, a key) in one step.

    botocore's `_handle_map` parses each name by the key's shape (text: itself) and each
    value by the value's shape, through a handler lookup for each: for an item of a dozen
    attributes, two dozen lookups. For a map of AttributeValues read by botocore's JSON
    parser, each name is kept as it is and each value parsed as botocore's structure
    handler parses it (`_handle_structure`, with whatever shortcut is on it), which is what
    the map handler would have done (a map of values that parse to themselves, the map as
    `json.loads` made it); any other map is parsed as before.
    """
    from botocore.parsers import BaseJSONParser, JSONParser

    parser: Any = BaseJSONParser
    original: Any = parser._handle_map

    def handle_map(self: Any, shape: Any, value: Any) -> Any:
        member = shape.value
        if (
            member.name == "AttributeValue"
            and shape.key.type_name == "string"
            and type(self) is JSONParser
            and type(value) is dict
        ):
            if all(type(k) is str and written_as_is(v) for k, v in value.items()):
                return value  # decoded from the answer's JSON: no one else holds it
            structure = parser._handle_structure  # with whatever shortcut is on it
            return {k: structure(self, member, v) for k, v in value.items()}
        return original(self, shape, value)

    with patched(parser, "_handle_map", handle_map):
        yield


_SHAPES_CHECKED: dict[int, tuple[Any, bool]] = {}
"""Whether a botocore shape (by id, kept alive here) is DynamoDB's AttributeValue."""

_PLAIN_MEMBERS = {
    "S": "string",
    "N": "string",
    "BOOL": "boolean",
    "NULL": "boolean",
    "L": "list",
    "M": "map",
    "SS": "list",
    "NS": "list",
}


def _unconstrained(shape: Any) -> bool:
    """Whether botocore checks nothing of a shape but its type, and writes it by its name."""
    return not (
        {"required", "min", "document", "union"} & set(shape.metadata)
        or "name" in shape.serialization
        or shape.serialization.get("hostLabel")
    )


def _is_attribute_value(shape: Any) -> bool:
    """Whether `shape` is DynamoDB's AttributeValue as its model gives it: a structure whose
    members S and N are text, BOOL and NULL booleans, L a list and M a map (of text names)
    of AttributeValues, SS and NS lists of text, with no constraint botocore checks beyond
    types and no member written under another name."""
    found = _SHAPES_CHECKED.get(id(shape))
    if found is not None and found[0] is shape:
        return found[1]
    verdict = _attribute_value_shape(shape)
    if len(_SHAPES_CHECKED) > 1024:
        _SHAPES_CHECKED.clear()
    _SHAPES_CHECKED[id(shape)] = (shape, verdict)
    return verdict


def _attribute_value_shape(shape: Any) -> bool:
    if shape.name != "AttributeValue" or shape.type_name != "structure":
        return False
    if not _unconstrained(shape) or shape.is_document_type or shape.is_tagged_union:
        return False
    members = shape.members
    for name, kind in _PLAIN_MEMBERS.items():
        member = members.get(name)
        if member is None or member.type_name != kind or not _unconstrained(member):
            return False
    for name in ("L", "SS", "NS"):
        if not _unconstrained(members[name].member):
            return False
    if members["L"].member.name != "AttributeValue":
        return False
    if {members["SS"].member.type_name, members["NS"].member.type_name} != {"string"}:
        return False
    mapped = members["M"]
    return (
        mapped.value.name == "AttributeValue"
        and mapped.key.type_name == "string"
        and _unconstrained(mapped.key)
    )


def _plain_map(shape: Any, value: Any) -> bool:
    """Whether `value`, for a map shape, is a dict of text names to AttributeValues that
    are written as they are (see `written_as_is`), its names unconstrained text."""
    return (
        type(value) is dict
        and _is_attribute_value(shape.value)
        and shape.key.type_name == "string"
        and _unconstrained(shape.key)
        and all(type(k) is str and written_as_is(v) for k, v in value.items())
    )


@contextmanager
def attribute_values_validated_directly() -> Iterator[None]:
    """Let a request's plain AttributeValues through botocore's parameter validation at once.

    botocore's `ParamValidator` checks an AttributeValue as a structure (a dict, each key a
    member), then each member by its shape: text for S and N, booleans for BOOL and NULL,
    lists and maps element by element (a handler lookup and a name built for each). A value
    of one member of text, number, boolean or null, or a list or map of such values, or a
    set of texts or numbers, with exactly those Python types (`written_as_is`), passes every
    one of those checks: it, or a map of them (an item, a key, expression values), is let
    through without them. Any other value (binary, a wrong type, an unknown member) is
    validated by botocore's own code, and any error is reported as botocore reports it.
    """
    from botocore.validate import ParamValidator

    validator: Any = ParamValidator
    original: Any = validator._validate

    def validate(self: Any, params: Any, shape: Any, errors: Any, name: str) -> None:
        if type(self) is ParamValidator:
            kind = shape.type_name
            if kind == "structure":
                if _is_attribute_value(shape) and written_as_is(params):
                    return
            elif kind == "map" and _plain_map(shape, params):
                return
        original(self, params, shape, errors, name)

    with patched(ParamValidator, "_validate", validate):
        yield


@contextmanager
def attribute_values_serialized_directly() -> Iterator[None]:
    """Put a request's plain AttributeValues into its JSON body as they are.

    botocore's JSON serializer writes an AttributeValue (and a map of them: an item, a key,
    expression values) into new dicts and lists, member by member in the value's own order,
    each text, number and boolean as it is; the body is then written out with `json.dumps`.
    For a value with no binary (which it would base64-encode) and exactly the Python types
    JSON writes (`written_as_is`), those new dicts and lists are equal to the value, and so
    is the JSON text: the value itself goes into the body. Anything else is serialized by
    botocore's own code.
    """
    from botocore.serialize import JSONSerializer

    serializer: Any = JSONSerializer
    structure: Any = serializer._serialize_type_structure
    map_of: Any = serializer._serialize_type_map

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: Any) -> None:
        if (
            key is not None
            and type(self) is JSONSerializer
            and self.MAP_TYPE is dict
            and _is_attribute_value(shape)
            and written_as_is(value)
        ):
            serialized[key] = value
            return
        structure(self, serialized, value, shape, key)

    def serialize_map(self: Any, serialized: Any, value: Any, shape: Any, key: Any) -> None:
        if type(self) is JSONSerializer and self.MAP_TYPE is dict and _plain_map(shape, value):
            serialized[key] = value
            return
        map_of(self, serialized, value, shape, key)

    with (
        patched(JSONSerializer, "_serialize_type_structure", serialize_structure),
        patched(JSONSerializer, "_serialize_type_map", serialize_map),
    ):
        yield


@contextmanager
def answers_read_as_handed_over() -> Iterator[None]:
    """Take a body moto handed over (`HandedOver`: the dict its serializer built from fresh
    plain values, which `json.loads` of its text gives back) as that dict, not decoded from
    JSON text. Any other body is read as before."""
    from botocore.parsers import BaseJSONParser

    parser: Any = BaseJSONParser
    original: Any = parser._parse_body_as_json

    def parse_body_as_json(self: Any, body_contents: Any) -> Any:
        written = parsed_body(body_contents)
        if written is not None:
            return written
        return original(self, body_contents)

    with patched(parser, "_parse_body_as_json", parse_body_as_json):
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
    import jmespath  # type: ignore[import-untyped]
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
        client_context = self._client_context
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
                self._register_endpoint_feature_ids(name, value)
        return provider_params

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
            plan = kept[3]
            if plan is not None:
                statuses, headers = plan
                http_response = response[0]
                if http_response.status_code not in statuses and not (
                    headers
                    and (
                        log.isEnabledFor(logging.DEBUG)
                        or any(http_response.headers.get(h) is not None for h in headers)
                    )
                ):
                    return False
        return original(self, attempt_number, response, caught_exception)

    with patched(multi, "__call__", call):
        yield


_SHORTCUTS = SharedPatches(
    user_agents_built_once,
    attribute_values_parsed_directly,
    attribute_maps_parsed_directly,
    attribute_values_validated_directly,
    attribute_values_serialized_directly,
    answers_read_as_handed_over,
    endpoint_parameters_resolved_by_plan,
    successes_not_checked_for_retries,
)


def botocore_shortcuts() -> AbstractContextManager[None]:
    """Every shortcut of this module while the block runs; blocks may overlap in any order
    (the patches go on with the first and come off with the last)."""
    return _SHORTCUTS.applied()
