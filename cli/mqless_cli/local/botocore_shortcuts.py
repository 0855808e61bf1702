"""Work botocore repeats on every request of `mqless dev` that gives the same result each time.

Every AWS request of the local runtime (the functions' and its own) is answered in-process by
moto, so botocore's client side is a large share of a request's CPU time. What is kept here
is the same output for less work: requests, responses and errors are unchanged.

- `user_agents_built_once`: botocore builds the User-Agent header from a dozen components,
  each sanitized character by character, twice per request (when the request is made and
  again in a `request-created` handler): about a twelfth of an in-process DynamoDB request.
  The string depends only on the builder's fields and the features of the request's context,
  so it is built once per distinct set of them.

- `attribute_values_parsed_directly`: botocore parses every DynamoDB AttributeValue of a
  response as a structure of ten members, through a shape lookup per member and per list
  element: most of the CPU of a Query that returns index segments (lists of numbers). A
  value of text, numbers, booleans and null (and lists and maps of them) parses to itself,
  so such values are copied as they are; binary and anything unusual parse as before.

- `attribute_maps_parsed_directly`: a map of AttributeValues (an item, a key) is parsed in
  one step, each value by the structure handler, not through a handler lookup per name and
  per value.

`botocore_shortcuts()` applies them all (`LocalCloud` does, for its lifetime, and so does the
test suite's `moto_aws` fixture).

- `requests_unsigned`: clients of boto3's default session send requests unsigned while it
  holds (moto checks no signature; signing is about a fifth of an in-process call). It is
  apart from the shortcuts above because it changes the request: only for clients whose
  every request moto answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched
from mqless_cli.local.shared_patches import SharedPatches

__all__ = [
    "attribute_maps_parsed_directly",
    "attribute_values_parsed_directly",
    "botocore_shortcuts",
    "requests_unsigned",
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


@contextmanager
def user_agents_built_once() -> Iterator[None]:
    """Keep each User-Agent string botocore builds, keyed by everything it is built from.

    `UserAgentString.to_string` reads only the builder's own fields (platform, session and
    client config, client features) and the features recorded in the current request
    context; the key is all of them, so the string returned is the one botocore would
    build. A field that cannot be part of a key builds the string as before.
    """
    from botocore.context import get_context
    from botocore.useragent import UserAgentString

    original: Any = UserAgentString.to_string
    built: dict[Any, str] = {}
    lock = threading.Lock()

    def to_string(self: UserAgentString) -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        try:
            key = (tuple((k, _hashable(v)) for k, v in vars(self).items()), features)
            found = built.get(key)
        except TypeError:  # an unhashable field: no key, build it
            return str(original(self))
        if found is not None:
            return found
        value = str(original(self))
        with lock:
            if len(built) >= _USER_AGENTS_KEPT:
                built.clear()
            built[key] = value
        return value

    with patched(UserAgentString, "to_string", to_string):
        yield


_AS_IS = frozenset({"S", "N"})
_FLAGS = frozenset({"BOOL", "NULL"})
_TEXT_SETS = frozenset({"SS", "NS"})


def _attribute_value(parse: Any, shape: Any, value: Any) -> Any:
    """An AttributeValue parsed as botocore's JSON parser parses it (`parse`: its structure
    handler, for what is not copied as it is): one member of text, number, boolean or
    null, or a list or map of AttributeValues, or a set of texts or numbers."""
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
    is the JSON value itself, which is what is returned here (new dicts and lists, as
    botocore makes); a value with binary in it, or of any other shape, is parsed by
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
    the map handler would have done; any other map is parsed as before.
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
            structure = parser._handle_structure  # with whatever shortcut is on it
            return {k: structure(self, member, v) for k, v in value.items()}
        return original(self, shape, value)

    with patched(parser, "_handle_map", handle_map):
        yield


_SHORTCUTS = SharedPatches(
    user_agents_built_once, attribute_values_parsed_directly, attribute_maps_parsed_directly
)


def botocore_shortcuts() -> AbstractContextManager[None]:
    """Every shortcut of this module while the block runs; blocks may overlap in any order
    (the patches go on with the first and come off with the last)."""
    return _SHORTCUTS.applied()


def _unsigned(**_: Any) -> Any:
    """botocore `choose-signer`: send the request unsigned."""
    import botocore

    return botocore.UNSIGNED


@contextmanager
def requests_unsigned() -> Iterator[None]:
    """Clients of boto3's default session (made before or during the block) send their
    requests unsigned while the block runs: for clients whose every request moto answers."""
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    events.register("choose-signer", _unsigned)
    try:
        yield
    finally:
        events.unregister("choose-signer", _unsigned)
