"""Work botocore repeats on every request of `mqless dev` that gives the same result each time.

Every AWS request of the local runtime (the functions' and its own) is answered in-process by
moto, so botocore's client side is a large share of a request's CPU time. What is kept here
is the same output for less work: requests, responses and errors are unchanged.

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

The client's own shortcuts are in `botocore_client_shortcuts` (User-Agent, endpoint
parameters, epoch times, legacy retry checks), `botocore_request_shortcuts` (a request's
members, headers and URL) and `botocore_call_shortcuts` (events, standard retry checks,
parsers). `botocore_shortcuts()` applies them all (`LocalCloud` does, for its lifetime,
and so does the test suite's `moto_aws` fixture).

`requests_unsigned` (in `unsigned_requests`) is apart from these: it changes the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from mqless_cli.local.botocore_call_shortcuts import (
    events_emitted_directly,
    response_parsers_made_once,
    standard_successes_not_checked_for_retries,
)
from mqless_cli.local.botocore_client_shortcuts import (
    endpoint_parameters_resolved_by_plan,
    epoch_times_parsed_directly,
    successes_not_checked_for_retries,
    user_agents_built_once,
)
from mqless_cli.local.botocore_request_shortcuts import (
    header_dicts_built_directly,
    header_dicts_read_directly,
    request_members_serialized_directly,
    request_members_validated_directly,
    request_urls_joined_once,
)
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
    "epoch_times_parsed_directly",
    "successes_not_checked_for_retries",
    "user_agents_built_once",
]


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


_MAPS_CHECKED: dict[int, tuple[Any, bool]] = {}
"""Whether a botocore map shape (by id, kept alive here) maps unconstrained text names to
DynamoDB's AttributeValue."""


def _attribute_value_map(shape: Any) -> bool:
    """Whether the map shape `shape` maps unconstrained text names to AttributeValues
    (worked out once per shape: its key's constraints are read from its metadata)."""
    found = _MAPS_CHECKED.get(id(shape))
    if found is not None and found[0] is shape:
        return found[1]
    verdict = (
        _is_attribute_value(shape.value)
        and shape.key.type_name == "string"
        and _unconstrained(shape.key)
    )
    if len(_MAPS_CHECKED) > 1024:
        _MAPS_CHECKED.clear()
    _MAPS_CHECKED[id(shape)] = (shape, verdict)
    return verdict


def _plain_map(shape: Any, value: Any) -> bool:
    """Whether `value`, for a map shape, is a dict of text names to AttributeValues that
    are written as they are (see `written_as_is`), its names unconstrained text."""
    return (
        type(value) is dict
        and _attribute_value_map(shape)
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


_SHORTCUTS = SharedPatches(
    user_agents_built_once,
    attribute_values_parsed_directly,
    attribute_maps_parsed_directly,
    attribute_values_validated_directly,
    attribute_values_serialized_directly,
    answers_read_as_handed_over,
    endpoint_parameters_resolved_by_plan,
    epoch_times_parsed_directly,
    successes_not_checked_for_retries,
    standard_successes_not_checked_for_retries,
    request_members_validated_directly,
    events_emitted_directly,
    header_dicts_read_directly,
    header_dicts_built_directly,
    request_members_serialized_directly,
    request_urls_joined_once,
    response_parsers_made_once,
)


def botocore_shortcuts() -> AbstractContextManager[None]:
    """Every shortcut of this module while the block runs; blocks may overlap in any order
    (the patches go on with the first and come off with the last)."""
    return _SHORTCUTS.applied()
