"""A template bound to parameter values: Parameters checked against their constraints,
Rules asserted, Conditions evaluated, and ``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` and the other
intrinsic functions resolved as CloudFormation resolves them.

A ``Ref`` to a resource that is not provisioned resolves to the placeholder name
``{stack_name}-{LogicalId}`` (an ``AWS::ApiGatewayV2::Stage`` to its stage name, as
CloudFormation does), and the few attributes the local runtime needs are derived from it:
a function's ``Arn`` (``arn:aws:lambda:{region}:{account}:function:{stack_name}-{LogicalId}``)
and an ``AWS::ApiGatewayV2::Api``'s ``ApiId`` and ``ApiEndpoint``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    pass
from mqless_cli.cfn.loader import (
    Json,
    Template,
    TemplateError,
    as_integer,
    as_mapping,
    as_sequence,
    as_text,
)


class _NoValue:
    """The value of ``Ref: AWS::NoValue``: the enclosing property disappears."""


_NO_VALUE = _NoValue()


_Resolved: TypeAlias = "Json | _NoValue"


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def aws_partition(region: str) -> tuple[str, str]:
    """The partition and URL suffix of a region."""
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


def _parameter_values(
    template: Template, overrides: Mapping[str, object]
) -> dict[str, str | list[str]]:
    """Each parameter's value: override or default, checked against its constraints."""
    declared = as_mapping(template.get("Parameters", {}), "Parameters")
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter overrides name undeclared parameters: {unknown}")
    values: dict[str, str | list[str]] = {}
    for name, spec_value in declared.items():
        spec = as_mapping(spec_value, f"Parameters.{name}")
        where = f"parameter {name}"
        if name in overrides:
            raw = overrides[name]
            value = as_text(raw if isinstance(raw, str | int | float | bool) else str(raw), where)
        elif "Default" in spec:
            value = as_text(spec["Default"], where)
        else:
            raise TemplateError(f"{where} has no default and no override")
        kind = str(spec.get("Type", "String"))
        allowed = [
            as_text(item, where) for item in as_sequence(spec.get("AllowedValues", []), where)
        ]
        if allowed and value not in allowed:
            raise TemplateError(f"{where} is {value!r}, not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if isinstance(pattern, str) and re.fullmatch(pattern, value) is None:
            raise TemplateError(f"{where} is {value!r}, which does not match {pattern!r}")
        if kind == "Number":
            try:
                number = float(value)
            except ValueError as error:
                raise TemplateError(f"{where} is {value!r}, not a number") from error
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if low is not None and number < float(as_text(low, where)):
                raise TemplateError(f"{where} is {value}, below its MinValue {low}")
            if high is not None and number > float(as_text(high, where)):
                raise TemplateError(f"{where} is {value}, above its MaxValue {high}")
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            values[name] = [item.strip() for item in value.split(",")] if value else []
        else:
            values[name] = value
    return values


@dataclass
class BoundTemplate:
    """A template bound to parameter values: its conditions, ``Ref``, ``GetAtt`` and ``Fn::``
    functions resolved, with the physical ids of what was provisioned."""

    template: Template
    stack_name: str = "mqless"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    parameter_overrides: Mapping[str, object] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    """Logical id -> physical id (table name, key id, alias name) of provisioned resources."""
    parameters: dict[str, str | list[str]] = field(init=False)
    _attributes: dict[tuple[str, str], str] = field(init=False, default_factory=dict, repr=False)
    _conditions: dict[str, bool] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.parameters = _parameter_values(self.template, self.parameter_overrides)
        self._check_rules()

    def _check_rules(self) -> None:
        """Refuse parameter values that break an assertion of the Rules section, as
        CloudFormation does before it creates or changes anything."""
        rules = as_mapping(self.template.get("Rules", {}), "Rules")
        for name, value in rules.items():
            where = f"Rules.{name}"
            rule = as_mapping(value, where)
            if "RuleCondition" in rule and not self._truth(rule["RuleCondition"], where):
                continue
            for assertion in as_sequence(rule.get("Assertions", []), f"{where}.Assertions"):
                spec = as_mapping(assertion, f"{where}.Assertions")
                if not self._truth(spec["Assert"], where):
                    description = spec.get("AssertDescription", f"rule {name} does not hold")
                    raise TemplateError(f"{where}: {as_text(description, where)}")

    # -- template sections ---------------------------------------------------------------

    def declared(self, resource_type: str | None = None) -> Iterator[tuple[str, dict[str, Json]]]:
        """Yield (logical id, resource) for resources whose Condition holds, optionally by type."""
        for logical_id, value in as_mapping(
            self.template.get("Resources", {}), "Resources"
        ).items():
            resource = as_mapping(value, f"Resources.{logical_id}")
            if resource_type is not None and resource.get("Type") != resource_type:
                continue
            condition = resource.get("Condition")
            if condition is not None and not self.condition(as_text(condition, logical_id)):
                continue
            yield logical_id, resource

    def condition(self, name: str) -> bool:
        """Evaluate the named entry of the Conditions section."""
        if name not in self._conditions:
            conditions = as_mapping(self.template.get("Conditions", {}), "Conditions")
            if name not in conditions:
                raise TemplateError(f"condition {name!r} is not declared")
            self._conditions[name] = False  # guards against a condition that refers to itself
            self._conditions[name] = self._truth(conditions[name], f"Conditions.{name}")
        return self._conditions[name]

    def _truth(self, value: Json, where: str) -> bool:
        """Evaluate a condition expression (Fn::Equals/Not/And/Or, Condition)."""
        if isinstance(value, bool):
            return value
        node = as_mapping(value, where)
        if set(node) == {"Condition"}:
            return self.condition(as_text(node["Condition"], where))
        if set(node) == {"Fn::Not"}:
            (operand,) = as_sequence(node["Fn::Not"], where)
            return not self._truth(operand, where)
        if set(node) == {"Fn::And"}:
            return all(self._truth(item, where) for item in as_sequence(node["Fn::And"], where))
        if set(node) == {"Fn::Or"}:
            return any(self._truth(item, where) for item in as_sequence(node["Fn::Or"], where))
        if set(node) == {"Fn::Equals"}:
            left, right = (self.resolve(item) for item in as_sequence(node["Fn::Equals"], where))
            if isinstance(left, list | dict) or isinstance(right, list | dict):
                return left == right
            return as_text(left, where) == as_text(right, where)
        raise TemplateError(f"{where} is not a condition: {value!r}")

    # -- values --------------------------------------------------------------------------

    def attribute(self, logical_id: str, attribute: str) -> str:
        """The value of ``Fn::GetAtt [logical_id, attribute]``.

        Provisioned resources answer with what was recorded; functions and WebSocket/HTTP APIs
        (never provisioned locally) with values derived from their placeholder names.
        """
        try:
            return self._attributes[logical_id, attribute]
        except KeyError:
            derived = self._derived_attribute(logical_id, attribute)
            if derived is not None:
                return derived
            state = "provisioned" if logical_id in self.resources else "not provisioned"
            raise TemplateError(
                f"{logical_id}.{attribute} is unknown ({logical_id} is {state})"
            ) from None

    def ref(self, name: str) -> Json:
        """The value of ``Ref: name``: a pseudo parameter, a parameter or a resource's id."""
        partition, url_suffix = aws_partition(self.region)
        pseudo: dict[str, Json] = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": partition,
            "AWS::URLSuffix": url_suffix,
            "AWS::StackId": (
                f"arn:{partition}:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            return list(value) if isinstance(value, list) else value
        if name in self.resources:
            return self.resources[name]
        resource = self._resource(name)
        if resource is not None:
            if resource.get("Type") == "AWS::ApiGatewayV2::Stage":
                # CloudFormation's Ref of a stage is its name (endpoints end in /{stage})
                properties = as_mapping(resource.get("Properties", {}), f"{name}.Properties")
                if "StageName" in properties:
                    return as_text(self.resolve(properties["StageName"]), f"{name}.StageName")
            return f"{self.stack_name}-{name}"
        raise TemplateError(f"Ref {name!r} names no parameter, pseudo parameter or resource")

    def _resource(self, logical_id: str) -> dict[str, Json] | None:
        """The declared resource ``logical_id`` (its Condition holding), or None."""
        for found, resource in self.declared():
            if found == logical_id:
                return resource
        return None

    def _derived_attribute(self, logical_id: str, attribute: str) -> str | None:
        """GetAtt values the local runtime can derive for resources it never provisions."""
        resource = self._resource(logical_id)
        if resource is None or logical_id in self.resources:
            return None
        resource_type = resource.get("Type")
        partition, url_suffix = aws_partition(self.region)
        if (
            resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function")
            and attribute == "Arn"
        ):
            return (
                f"arn:{partition}:lambda:{self.region}:{self.account_id}:function:"
                f"{self.stack_name}-{logical_id}"
            )
        if resource_type == "AWS::ApiGatewayV2::Api" and attribute in ("ApiId", "ApiEndpoint"):
            api_id = as_text(self.ref(logical_id), f"{logical_id} id")
            if attribute == "ApiId":
                return api_id
            properties = as_mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
            protocol = as_text(self.resolve(properties.get("ProtocolType", "HTTP")), "ProtocolType")
            scheme = "wss" if protocol.upper() == "WEBSOCKET" else "https"
            return f"{scheme}://{api_id}.execute-api.{self.region}.{url_suffix}"
        return None

    def resolve(self, value: Json) -> Json:
        """Resolve every intrinsic function in ``value`` against this stack."""
        resolved = self._resolve(value)
        return None if isinstance(resolved, _NoValue) else resolved

    def _resolve(self, value: Json) -> _Resolved:
        """Resolve ``value``; ``AWS::NoValue`` comes back as the _NO_VALUE marker."""
        if isinstance(value, list):
            items = (self._resolve(item) for item in value)
            return [item for item in items if not isinstance(item, _NoValue)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                name = as_text(argument, "Ref")
                return _NO_VALUE if name == "AWS::NoValue" else self.ref(name)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self._resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if not isinstance(item, _NoValue)}

    def _function(self, name: str, argument: Json) -> _Resolved:
        """Evaluate one ``Fn::*`` intrinsic function."""
        if name == "Fn::If":
            condition, if_true, if_false = as_sequence(argument, name)
            branch = if_true if self.condition(as_text(condition, name)) else if_false
            return self._resolve(branch)
        if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self._truth({name: argument}, name)
        if name == "Fn::GetAtt":
            parts = self.resolve(argument)
            if isinstance(parts, str):
                parts = list(parts.partition(".")[::2])
            logical_id, attribute = as_sequence(parts, name)
            return self.attribute(as_text(logical_id, name), as_text(attribute, name))
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::Join":
            delimiter, items = as_sequence(argument, name)
            parts = as_sequence(self.resolve(items), name)
            return as_text(delimiter, name).join(as_text(part, name) for part in parts)
        if name == "Fn::Select":
            index, items = as_sequence(argument, name)
            choices = as_sequence(self.resolve(items), name)
            return choices[as_integer(self.resolve(index), name)]
        if name == "Fn::Split":
            delimiter, source = as_sequence(argument, name)
            text = as_text(self.resolve(source), name)
            return list(text.split(as_text(delimiter, name)))
        if name == "Fn::FindInMap":
            return self._find_in_map(as_sequence(argument, name))
        if name == "Fn::Base64":
            text = as_text(self.resolve(argument), name)
            return base64.b64encode(text.encode()).decode()
        if name == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if name == "Fn::Length":
            return len(as_sequence(self.resolve(argument), name))
        if name == "Fn::ToJsonString":
            return json.dumps(self.resolve(argument), separators=(",", ":"))
        raise TemplateError(f"{name} is not supported outside CloudFormation")

    def _sub(self, argument: Json) -> str:
        """Evaluate ``Fn::Sub`` in its string or ``[string, {variables}]`` form."""
        variables: dict[str, Json] = {}
        if isinstance(argument, list):
            source, names = argument
            variables = as_mapping(self.resolve(names), "Fn::Sub variables")
        else:
            source = argument

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return as_text(variables[name], f"Fn::Sub ${{{name}}}")
            if "." in name:
                logical_id, _, attribute = name.partition(".")
                return self.attribute(logical_id, attribute)
            return as_text(self.ref(name), f"Fn::Sub ${{{name}}}")

        return _SUB_VARIABLE.sub(substitute, as_text(source, "Fn::Sub"))

    def _find_in_map(self, argument: list[Json]) -> Json:
        """Evaluate ``Fn::FindInMap [map, top key, second key, {DefaultValue}?]``."""
        map_name, top, second = (
            as_text(self.resolve(part), "Fn::FindInMap") for part in argument[:3]
        )
        mappings = as_mapping(self.template.get("Mappings", {}), "Mappings")
        table = as_mapping(mappings.get(map_name, {}), f"Mappings.{map_name}")
        row = table.get(top)
        if isinstance(row, dict) and second in row:
            return row[second]
        if len(argument) > 3:
            return as_mapping(argument[3], "Fn::FindInMap default").get("DefaultValue")
        raise TemplateError(f"Fn::FindInMap finds nothing at {map_name}.{top}.{second}")

    def outputs(self) -> dict[str, str]:
        """The Outputs section resolved (placeholders stand in for unprovisioned resources)."""
        outputs = as_mapping(self.template.get("Outputs", {}), "Outputs")
        return {
            name: as_text(self.resolve(as_mapping(output, name).get("Value")), f"Outputs.{name}")
            for name, output in outputs.items()
            # an output whose Condition is false does not exist, as in CloudFormation
            if "Condition" not in as_mapping(output, name)
            or self.condition(as_text(as_mapping(output, name)["Condition"], f"Outputs.{name}"))
        }

    # -- provisioning bookkeeping --------------------------------------------------------

    def record(self, logical_id: str, physical_id: str, attributes: Mapping[str, str]) -> None:
        """Remember a created resource's physical id and its GetAtt attributes."""
        self.resources[logical_id] = physical_id
        for attribute, value in attributes.items():
            self._attributes[logical_id, attribute] = value

    def key_arn(self, key: str) -> str:
        """The ARN of a provisioned KMS key given its id (anything else passes through)."""
        for (logical_id, attribute), value in self._attributes.items():
            if attribute == "KeyId" and value == key:
                return self._attributes[logical_id, "Arn"]
        return key
