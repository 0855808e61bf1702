"""Read a CloudFormation template (YAML or JSON) into plain values: short-form tags
(``!Ref``, ``!GetAtt``, ``!Sub`` ...) become their long form (``{"Ref": ...}``), and the typed
readers that the rest of ``cfn`` reads template values through.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import yaml

if TYPE_CHECKING:
    pass


Json: TypeAlias = str | int | float | bool | None | list["Json"] | dict[str, "Json"]
"""A value as YAML/JSON gives it: what a template is made of."""


Template: TypeAlias = dict[str, Json]
"""A whole template, intrinsic functions in their long form (``{"Ref": ...}``)."""


class TemplateError(Exception):
    """The template cannot be read, resolved or provisioned as written."""


# Short tags whose long form is ``Fn::<Name>``; ``!Ref`` and ``!Condition`` keep their names.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "GetAtt",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


# libyaml's SafeLoader where PyYAML was built with it: template.yaml (50 KB) parses in ~7 ms
# instead of ~60 ms, paid by every `mqless dev` and `mqless invoke` start. Both build the same
# values; only the parser is C (the resolvers and constructors below stay Python).
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CfnLoader(_SafeLoader):
    """A SafeLoader that reads CloudFormation short-form tags as long-form dicts."""


# CloudFormation keeps unquoted dates (2010-09-09) as strings; YAML 1.1 would make them dates.
CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _node_value(loader: CfnLoader, node: yaml.Node) -> Json:
    """Construct a tagged node's value whatever its kind (scalar, sequence or mapping)."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        items: list[Json] = loader.construct_sequence(node, deep=True)
        return items
    if isinstance(node, yaml.MappingNode):
        return {str(key): value for key, value in loader.construct_mapping(node, deep=True).items()}
    raise TemplateError(f"cannot read {node.tag} at {node.start_mark}")


def _intrinsic(key: str) -> Callable[[CfnLoader, yaml.Node], Json]:
    """Make a constructor that wraps a tagged node's value as ``{key: value}``."""

    def construct(loader: CfnLoader, node: yaml.Node) -> Json:
        value = _node_value(loader, node)
        if key == "Fn::GetAtt" and isinstance(value, str):
            # !GetAtt Resource.Attribute: the attribute itself may contain dots.
            resource, _, attribute = value.partition(".")
            value = [resource, attribute]
        return {key: value}

    return construct


CfnLoader.add_constructor("!Ref", _intrinsic("Ref"))
CfnLoader.add_constructor("!Condition", _intrinsic("Condition"))
for _name in _FN_TAGS:
    CfnLoader.add_constructor(f"!{_name}", _intrinsic(f"Fn::{_name}"))


def parse_template(text: str) -> Template:
    """Parse template text (YAML or JSON) into a dict with long-form intrinsics."""
    document = yaml.load(text, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    if not isinstance(document, dict):
        raise TemplateError("a template must be a mapping at the top level")
    return document


def load_template(path: str | os.PathLike[str]) -> Template:
    """Read the template file at ``path`` into a dict with long-form intrinsics."""
    with open(path, encoding="utf-8") as stream:
        return parse_template(stream.read())


def as_mapping(value: Json, where: str) -> dict[str, Json]:
    """Return ``value`` if it is a mapping, else fail naming ``where``."""
    if isinstance(value, dict):
        return value
    raise TemplateError(f"{where} must be a mapping, not {type(value).__name__}")


def as_sequence(value: Json, where: str) -> list[Json]:
    """Return ``value`` if it is a list, else fail naming ``where``."""
    if isinstance(value, list):
        return value
    raise TemplateError(f"{where} must be a list, not {type(value).__name__}")


def as_text(value: Json, where: str) -> str:
    """Render a scalar the way CloudFormation passes it on: as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where} must be a scalar, not {type(value).__name__}")


def as_flag(value: Json) -> bool:
    """Read a CloudFormation boolean, which may also be written as the string "true"."""
    return value if isinstance(value, bool) else str(value).lower() == "true"


def as_integer(value: Json, where: str) -> int:
    """Read a CloudFormation integer, which may also be written as a string."""
    try:
        return int(as_text(value, where))
    except ValueError as error:
        raise TemplateError(f"{where} must be an integer, not {value!r}") from error
