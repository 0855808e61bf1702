"""Work botocore's client repeats to build each request of `mqless dev` (its members, its
headers, its URL), the same each time; `botocore_shortcuts` applies these with the others.
Requests and errors are unchanged.

- `request_members_validated_directly`: a request's text, boolean, integer and name-map
  members (TableName, expressions, ReturnValues, ConsistentRead, ExpressionAttributeNames)
  are checked for type and least length in one step each, not through botocore's
  validator walk; anything that fails or is of another shape is validated by botocore.

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
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

__all__ = [
    "header_dicts_built_directly",
    "header_dicts_read_directly",
    "request_members_serialized_directly",
    "request_members_validated_directly",
    "request_urls_joined_once",
]

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
    joined = functools.lru_cache(maxsize=_URLS_KEPT)(original)

    def urljoin(endpoint_url: Any, url_path: Any, host_prefix: Any) -> Any:
        if (
            type(endpoint_url) is not str
            or type(url_path) is not str
            or (host_prefix is not None and type(host_prefix) is not str)
        ):
            return original(endpoint_url, url_path, host_prefix)
        return joined(endpoint_url, url_path, host_prefix)

    with patched(module, "_urljoin", urljoin):
        yield
