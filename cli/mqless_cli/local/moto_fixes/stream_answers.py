"""DynamoDB Streams GetRecords answers written from a plan of the answer's shape and handed to
botocore in-process as the dict moto's serializer would build (`stream_records_handed_over`)."""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.handover import HANDING_OVER, handed_over_answer
from mqless_cli.local.moto_fixes.patching import patched
from mqless_cli.local.moto_fixes.serialization import written_as_is

_PLANS: dict[int, tuple[Any, Any]] = {}  # id(structure shape) -> (shape, its plan or None)
_GENERIC = "generic"
_TAKEN_AS_IS = {"string": str, "integer": int, "long": int}
"""Members written as they are when of exactly this type (not a bool, an enum, a subclass)."""


def fresh(value: Any) -> Any:
    """A copy of a JSON value sharing no dict or list with it (text, numbers kept)."""
    kind = type(value)
    if kind is dict:
        return {k: fresh(v) for k, v in value.items()}
    if kind is list:
        return [fresh(v) for v in value]
    return value


def _candidates(picker: Any, shape: Any, key: str, member: Any) -> set[str]:
    """The names moto's attribute picker tries for a member of a structure held in a dict."""
    from moto.core.serialize import AttributePickerContext

    member.parent = shape  # as the serializer sets it before picking
    return set(picker.get_possible_keys(AttributePickerContext(obj={}, key=key, shape=member)))


def _kind(member: Any) -> str:
    """How a member is written: text, an integer, a time, a map of AttributeValues, a
    structure, a list of structures; anything else by moto's serializer (`_GENERIC`)."""
    kind = member.type_name
    if kind in ("string", "integer", "long", "timestamp", "structure"):
        return kind if not (kind == "structure" and member.is_document_type) else _GENERIC
    if kind == "map" and member.value.name == "AttributeValue" and not member.value.serialization:
        return "item" if member.key.type_name == "string" else _GENERIC
    if kind == "list" and member.member.type_name == "structure":
        return "list" if not member.member.is_document_type else _GENERIC
    return _GENERIC


def _plan(picker: Any, shape: Any) -> Any:
    """(member keys, [(key, member shape, kind)]) of a structure whose members a dict holds
    under their own names, each found by moto's picker only under its own (None if not)."""
    found = _PLANS.get(id(shape))
    if found is not None and found[0] is shape:
        return found[1]
    keys = frozenset(shape.members)
    plan: Any = (keys, [])
    for key, member in shape.members.items():
        if member.serialization.get("name", key) != key or _candidates(
            picker, shape, key, member
        ) & keys != {key}:
            plan = None
            break
        plan[1].append((key, member, _kind(member)))
    _PLANS[id(shape)] = (shape, plan)
    return plan


def _unix_time(serializer: Any, shape: Any, value: Any) -> Any:
    """A time as moto's timestamp serializer writes it. A naive datetime in the JSON default
    format (which moto takes as UTC: `parse_to_aware_datetime`) is its epoch seconds, with
    its milliseconds if it has microseconds (`_timestamp_unixtimestamp`), worked out here
    without making it aware first (a datetime made anew, a tzinfo's singleton looked up)."""
    times = serializer._timestamp_serializer
    if (
        type(value) is datetime.datetime
        and value.tzinfo is None
        and shape.serialization.get("timestampFormat", times.default_format) == "unixtimestamp"
    ):
        seconds = calendar.timegm(value.timetuple())
        if value.microsecond:
            return seconds + (value.microsecond // 1000) / 1000.0
        return seconds
    found: dict[str, Any] = {}
    times.serialize(found, value, shape, "time")
    return found["time"]


def _item(serializer: Any, shape: Any, value: dict[str, Any]) -> dict[str, Any]:
    """A map of AttributeValues as moto's serializer writes it (no dict shared with `value`):
    a value it writes as it is copied, a binary one base64-encoded, any other (and any under
    an empty name) by moto."""
    written: dict[str, Any] = {}
    generic = False
    for name, attribute in value.items():
        if not name:  # moto writes its members into the map itself (a moto bug kept)
            pass
        elif written_as_is(attribute):
            written[name] = fresh(attribute)
            continue
        elif type(attribute) is dict and len(attribute) == 1:
            binary = attribute.get("B")
            if type(binary) in (bytes, str):
                written[name] = {"B": serializer._base64(binary)}
                continue
        generic = True
        serializer._serialize(written, attribute, shape.value, name)
    return fresh(written) if generic else written


def _structure(serializer: Any, picker: Any, shape: Any, value: Any) -> Any:
    """A structure held in a dict written as moto's serializer writes it, member by member in
    the shape's order (None where the plan does not apply: the caller asks moto)."""
    plan = _plan(picker, shape) if type(value) is dict else None
    if plan is None or not value.keys() <= plan[0]:
        return None
    written: dict[str, Any] = {}
    for key, member, kind in plan[1]:
        found = value.get(key)
        if found is None:
            continue
        if not _write(serializer, picker, written, key, member, kind, found):
            serializer._serialize(written, found, member, key)
            if key in written:
                written[key] = fresh(written[key])
    return written


def _write(
    serializer: Any,
    picker: Any,
    written: dict[str, Any],
    key: str,
    member: Any,
    kind: str,
    found: Any,
) -> bool:
    """Write one member as moto's serializer would, by its kind; whether it was written."""
    if type(found) is _TAKEN_AS_IS.get(kind):
        written[key] = found  # what moto writes of them: str(text), int(integer)
    elif kind == "timestamp":
        written[key] = _unix_time(serializer, member, found)
    elif kind == "item" and type(found) is dict:
        written[key] = _item(serializer, member, found)
    elif kind == "structure":
        inner = _structure(serializer, picker, member, found)
        if inner is None:
            return False
        written[key] = inner
    elif kind == "list" and type(found) is list:
        entries = [_structure(serializer, picker, member.member, v) for v in found]
        if any(entry is None for entry in entries):
            return False
        written[key] = entries
    else:
        return False
    return True


def _records_answer(handler: Any, result: Any) -> Any:
    """(status, headers, `HandedOver`) of a GetRecords result, written from its shape's plan;
    None where moto's own serializer must write it."""
    from moto.core import serialize

    if type(result) is not dict or getattr(handler, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None):
        return None

    def write(serializer: Any, picker: Any, output_shape: Any) -> Any:
        if output_shape is None or picker.alias_providers is not serialize.DEFAULT_ALIAS_PROVIDERS:
            return None
        return _structure(serializer, picker, output_shape, result)

    return handed_over_answer(handler, write)


@contextmanager
def stream_records_handed_over() -> Iterator[None]:
    """Write a GetRecords answer from a plan of its shape and hand it to botocore as a dict.

    Upstream behaviour: moto's JSON serializer writes each stream record member by member,
    asking its attribute picker for each of a Record's seven members and a StreamRecord's
    seven, and each AttributeValue of the keys and images through its generic dispatch; the
    answer is then written out with `json.dumps` and read back by botocore with
    `json.loads`, in the same process. A GetRecords of 70 records of a kilobyte: some 8 ms.

    Here, for a GetRecords answered to botocore's `before-send` (as `answers_handed_over`
    does for DynamoDB), a structure held in a dict whose keys are its members' own names
    (the picker would find each there and nowhere else: checked once per shape) is written
    member by member in the shape's order: text and integers as they are, times by moto's
    own timestamp rules, AttributeValues written as they are copied, binary
    base64-encoded, anything else by moto's serializer (and copied): the dict moto's
    serializer builds, sharing nothing with the stored records (which `json.loads` of its
    text gives back). It is handed over as `HandedOver` (its text, if read, is moto's byte
    for byte). Any other answer, result or caller goes moto's way.
    """
    from moto.core.responses import ActionResult, BaseResponse
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    serialized = BaseResponse.serialized

    def handed_over(self: Any, action_result: Any) -> Any:
        if (
            HANDING_OVER.get()
            and type(self) is DynamoDBStreamsHandler
            and type(action_result) is ActionResult
            and self._get_action() == "GetRecords"
        ):
            answer = _records_answer(self, action_result.result)
            if answer is not None:
                return answer
        return serialized(self, action_result)

    with patched(BaseResponse, "serialized", handed_over):
        yield


__all__ = ["fresh", "stream_records_handed_over"]
