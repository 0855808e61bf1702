"""DynamoDB responses made with less of moto's generic machinery: results turned into plain
values by type (`dynamo_results_converted_directly`), AttributeValues written without the
attribute picker (`attribute_values_serialize_directly`), result members picked by names
listed once (`result_members_picked_by_kept_names`), values sized by type against a page's
size limit (`attribute_sizes_by_type`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


def written_as_is(value: Any) -> bool:
    """Whether moto's JSON serializer would write this AttributeValue unchanged: one member,
    of text, number, boolean or null types (and lists and maps of them); no binary, which
    it would base64-encode."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((member, inner),) = value.items()
    if member == "S" or member == "N":
        return type(inner) is str
    if member == "L":
        return type(inner) is list and all(written_as_is(v) for v in inner)
    if member == "M":
        # an empty name: moto writes that member into the map around it (a moto bug this
        # fix keeps, to answer byte for byte as moto does)
        return type(inner) is dict and all(
            type(k) is str and k != "" and written_as_is(v) for k, v in inner.items()
        )
    if member == "BOOL" or member == "NULL":
        return type(inner) is bool
    if member == "SS" or member == "NS":
        return type(inner) is list and all(type(v) is str for v in inner)
    return False


@contextmanager
def attribute_values_serialize_directly() -> Iterator[None]:
    """Serialize DynamoDB AttributeValues without moto's attribute picker.

    Upstream behaviour: moto's JSON response serializer fills each structure member through
    an attribute picker that tries up to six aliases per member. An AttributeValue has ten
    members of which one is set, so every attribute of every item returned costs some
    thirty lookups through alias providers: most of the time of a GetItem or a Query.

    Here an AttributeValue that moto built itself (a dict whose keys are member names, the
    shape `dynamo_to_dict` gives) is serialized member by member with moto's own
    serializers for each member, skipping only the alias search, which for such a dict
    always finds the member's own name. One with no binary in it (S, N, BOOL, NULL, SS, NS,
    and L and M of those) is already what the JSON serializer would write, member for
    member: it is written as it is, without walking it (a Query of eight index segments,
    some 600 numbers, spent half its time there). Anything else goes the original way.
    """
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(
        self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if shape.name == "AttributeValue" and key and written_as_is(value):
            self._default_serialize(serialized, value, shape, key)
            return
        if (
            shape.name == "AttributeValue"
            and isinstance(value, dict)
            and all(name in shape.members for name in value)
        ):
            wrapper: Any = self.MAP_TYPE() if key else serialized
            for member_key, member_shape in shape.members.items():
                member = value.get(member_key)
                if member is not None:
                    member_shape.parent = shape
                    self._serialize(wrapper, member, member_shape, member_key)
            if key:
                self._default_serialize(serialized, wrapper, shape, key)
            return
        original(self, serialized, value, shape, key)

    with patched(BaseJSONSerializer, "_serialize_type_structure", serialize_structure):
        yield


@contextmanager
def attribute_maps_written_at_once() -> Iterator[None]:
    """Write a map of AttributeValues (an item, a key) at once when each value would be
    written as it is.

    Upstream behaviour: moto's JSON serializer writes a map member by member, each through
    its generic `_serialize` (a method lookup and a path push and pop, then the structure
    serializer): for a Query of eight index segments, some thirty calls per item. When every
    name is non-empty text and every value is one that JSON writes unchanged (no binary:
    see `written_as_is`), the map written is a copy of the map with the same values, which
    is what is written here. Anything else (binary, an empty name, another serializer than
    moto's JSON one) is written as before.
    """
    from moto.core.serialize import BaseJSONSerializer, JSONSerializer

    original = BaseJSONSerializer._serialize_type_map

    def serialize_map(
        self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        member = shape.value
        if (
            member.name == "AttributeValue"
            and type(self) is JSONSerializer
            and not member.serialization
            and type(value) is dict
            and all(type(k) is str and k != "" and written_as_is(v) for k, v in value.items())
        ):
            self._default_serialize(serialized, self.MAP_TYPE(value), shape, key)
            return
        original(self, serialized, value, shape, key)

    with patched(BaseJSONSerializer, "_serialize_type_map", serialize_map):
        yield


_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})
"""Values `dynamo_to_dict` gives back as they are (exactly these types: a subclass, such as
a datetime, goes the original way)."""

_BINARY = frozenset({"B", "BS"})


def _converted(obj: Any, dynamo_type: Any, original: Any) -> Any:
    """`dynamo_to_dict(obj)`, with plain values, lists, dicts and non-binary DynamoTypes
    converted here and anything else by `original`."""
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if kind is dynamo_type:
        member = obj.type
        if member in _BINARY:
            return original(obj)
        value = obj.value
        return {
            member: value if type(value) in _PLAIN else _converted(value, dynamo_type, original)
        }
    if kind is list:
        return [_element(v, dynamo_type, original) for v in obj]
    if kind is dict:
        return {k: _element(v, dynamo_type, original) for k, v in obj.items()}
    return original(obj)


def _element(value: Any, dynamo_type: Any, original: Any) -> Any:
    """`_converted(value)` for a value inside a list or map (most of a result), with the
    common ones converted right here: a plain value, a text or number DynamoType, and a
    one-member map of a plain value (an AttributeValue an item written out already holds:
    converted, as a map, to a new map of the same member and value)."""
    kind = type(value)
    if kind is dict:
        if len(value) == 1:
            for member, inner in value.items():
                if type(inner) in _PLAIN:
                    return {member: inner}
        return _converted(value, dynamo_type, original)
    if kind is dynamo_type:
        inner = value.value
        if type(inner) in _PLAIN and value.type not in _BINARY:
            return {value.type: inner}
        return _converted(value, dynamo_type, original)
    if kind in _PLAIN:
        return value
    return _converted(value, dynamo_type, original)


@contextmanager
def dynamo_results_converted_directly() -> Iterator[None]:
    """Turn a DynamoDB result into plain values without asking each value what it is five
    times.

    Upstream behaviour: `dynamo_to_dict` (which every DynamoDB response goes through before
    it is serialized) tests each value, down to every number of every list, for being a
    datetime, a DynamoType, something with `to_json` (a failed attribute lookup for a plain
    string), a dict and a list, in that order: a twentieth of `mqless dev`'s CPU in the HTTP
    bench, most of it in Query results of index segments. Here plain values (exactly str,
    int, float, bool, None), lists, dicts and DynamoTypes other than binary ones are
    converted by their exact type, to the same result; anything else (binary, datetimes,
    objects with `to_json`, subclasses) goes the original way. Most of a Query's result is
    its items already written out (`Item.to_json`: each AttributeValue a one-member map of a
    plain value): such a map becomes a new map of the same member and value in one step,
    not through a conversion of the map and then of its value (a Query of four index
    segments: ~240 -> ~125 µs of conversion).
    """
    from moto.dynamodb import responses
    from moto.dynamodb.models import utilities
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = utilities.dynamo_to_dict

    def dynamo_to_dict(obj: Any) -> Any:
        return _converted(obj, DynamoType, original)

    # moto's own converter calls itself by its module's name (for the items of a result,
    # which have `to_json`): that name is patched too, so their values come back here
    with (
        patched(responses, "dynamo_to_dict", dynamo_to_dict),
        patched(utilities, "dynamo_to_dict", dynamo_to_dict),
    ):
        yield


@contextmanager
def attribute_sizes_by_type() -> Iterator[None]:
    """Size a number, a string or a list without asking it which of seven kinds it is.

    Upstream behaviour: `DynamoType.size` (which a Query and a Scan call twice for every
    item they return, against the 1 MB page limit) asks each value in turn whether it is
    a number, a set, a list, a map, a boolean, down to every element of every list. Here a
    number (its text's length), a string (its UTF-8 bytes) and a list (the sum of its
    elements, a number among them sized in place, without a call of its own) are sized by
    their type at once, to the same figure; every other value as before.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = DynamoType.size

    def size(self: Any) -> int:
        kind, value = self.type, self.value
        if kind == "N":
            return len(str(value))
        if kind == "S" and type(value) is str:
            return len(value.encode("utf-8"))
        if kind == "L" and type(value) is list:
            # a number in the list (an index segment is all numbers) is sized right here
            return sum(
                [
                    len(str(v.value)) if type(v) is DynamoType and v.type == "N" else v.size()
                    for v in value
                ]
            )
        return original(self)

    with patched(DynamoType, "size", size):
        yield


_KEYS_KEPT = 4096  # (member shape, parent, name) triples: a few hundred per service in use


@contextmanager
def result_members_picked_by_kept_names() -> Iterator[None]:
    """Pick each member of a result held in a dict by the names moto would try, listed once.

    Upstream behaviour: moto's JSON serializer finds each member of a structure it writes
    (every output member of every response: `Items`, `Count`, `LastEvaluatedKey`,
    `ConsumedCapacity`...) by asking six alias providers, made anew for each member, which
    names to try (the shape's name, the member's own, its snake_case form, its name less a
    prefix...), then trying each in turn. For a plain `dict` those names depend only on the
    member's name, its shape and the structure it belongs to (a dict has no `Meta` aliases,
    and its class name is always `dict`): here they are listed once per member shape and
    tried in the same order, with moto's own lookup. Anything else (an object, a dict
    subclass, a picker with other providers or with response transformers) is picked as
    before.

    Why it is long: this docstring (what moto does and why the names tried are the same);
    the code is two short closures.
    """
    from moto.core import serialize as moto_serialize
    from moto.core import utils as moto_utils

    serializer: Any = moto_serialize.ResponseSerializer
    original = serializer.get_value
    kept: dict[tuple[int, int, str], tuple[Any, Any, tuple[str, ...]]] = {}
    context_of: Any = moto_serialize.AttributePickerContext
    xformed: Any = moto_serialize.XFormedAttributePicker
    utils: Any = moto_utils
    missing: Any = utils.MISSING
    get_value: Any = moto_serialize.get_value  # type: ignore[attr-defined]

    def names(picker: Any, key: str, shape: Any) -> tuple[str, ...]:
        parent = getattr(shape, "parent", None)
        found = kept.get((id(shape), id(parent), key))
        if found is not None and found[0] is shape and found[1] is parent:
            return found[2]
        context = context_of(obj={}, key=key, shape=shape)
        listed = tuple(picker.get_possible_keys(context))
        if len(kept) >= _KEYS_KEPT:
            kept.clear()
        kept[(id(shape), id(parent), key)] = (shape, parent, listed)
        return listed

    def pick(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        if (
            type(value) is not dict
            or type(picker) is not xformed
            or picker.alias_providers is not moto_serialize.DEFAULT_ALIAS_PROVIDERS
            or picker.response_transformers
            or shape is None
        ):
            return original(self, value, key, shape)
        for name in names(picker, key, shape):
            found = get_value(value, name, missing)
            if found is not missing:
                return found
        return None

    with patched(serializer, "get_value", pick):
        yield
