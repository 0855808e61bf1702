"""Create the stateful resources a template declares (``AWS::KMS::Key``, ``AWS::KMS::Alias``,
``AWS::DynamoDB::Table``) through boto3 clients (moto or AWS).

The local runtime and the tests build their tables, streams, key and alias from the template
itself, so there is no second, hand-written copy of the infrastructure to drift out of date.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
from mqless_cli.cfn.loader import (
    Json,
    Template,
    as_flag,
    as_integer,
    as_mapping,
    as_sequence,
    as_text,
)
from mqless_cli.cfn.sam import Stack


def _properties(stack: Stack, logical_id: str, resource: dict[str, Json]) -> dict[str, Json]:
    """A resource's Properties with every intrinsic resolved."""
    resolved = stack.resolve(resource.get("Properties", {}))
    return as_mapping(resolved, f"{logical_id}.Properties")


def _tags(value: Json, key: str = "Key", text: str = "Value") -> list[dict[str, str]]:
    """CloudFormation ``[{Key, Value}]`` tags in the key names an API wants."""
    return [
        {key: as_text(tag["Key"], "Tag.Key"), text: as_text(tag["Value"], "Tag.Value")}
        for tag in (as_mapping(item, "Tags") for item in as_sequence(value, "Tags"))
    ]


def _create_key(
    stack: Stack, logical_id: str, resource: dict[str, Json], clients: _Clients
) -> None:
    """Create an AWS::KMS::Key, its policy and rotation as declared."""
    properties = _properties(stack, logical_id, resource)
    kwargs: dict[str, Any] = {
        key: properties[key]
        for key in ("Description", "KeySpec", "KeyUsage", "MultiRegion", "Origin")
        if key in properties
    }
    if "KeyPolicy" in properties:
        policy = properties["KeyPolicy"]
        kwargs["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
    if "Tags" in properties:
        kwargs["Tags"] = _tags(properties["Tags"], key="TagKey", text="TagValue")
    metadata = clients.kms.create_key(**kwargs)["KeyMetadata"]
    key_id = metadata["KeyId"]
    if as_flag(properties.get("EnableKeyRotation", False)):
        if "RotationPeriodInDays" in properties:
            days = as_integer(properties["RotationPeriodInDays"], "RotationPeriodInDays")
            clients.kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=days)
        else:
            clients.kms.enable_key_rotation(KeyId=key_id)
    if not as_flag(properties.get("Enabled", True)):
        clients.kms.disable_key(KeyId=key_id)
    stack.record(logical_id, key_id, {"Arn": metadata["Arn"], "KeyId": key_id})


def _create_alias(
    stack: Stack, logical_id: str, resource: dict[str, Json], clients: _Clients
) -> None:
    """Create an AWS::KMS::Alias pointing at its key."""
    properties = _properties(stack, logical_id, resource)
    alias = as_text(properties.get("AliasName"), f"{logical_id}.AliasName")
    target = as_text(properties.get("TargetKeyId"), f"{logical_id}.TargetKeyId")
    clients.kms.create_alias(AliasName=alias, TargetKeyId=target)
    stack.record(logical_id, alias, {})


def _throughput(value: Json, where: str) -> dict[str, int]:
    """Provisioned/on-demand throughput settings as the integers the API wants."""
    return {
        key: as_integer(units, f"{where}.{key}") for key, units in as_mapping(value, where).items()
    }


def _index(value: Json, where: str, *, is_global: bool) -> dict[str, Any]:
    """A GlobalSecondaryIndexes/LocalSecondaryIndexes entry in create_table's shape."""
    index = as_mapping(value, where)
    kwargs: dict[str, Any] = {
        "IndexName": index["IndexName"],
        "KeySchema": index["KeySchema"],
        "Projection": index["Projection"],
    }
    if is_global:
        for key in ("ProvisionedThroughput", "OnDemandThroughput"):
            if key in index:
                kwargs[key] = _throughput(index[key], f"{where}.{key}")
    return kwargs


def _create_table(
    stack: Stack, logical_id: str, resource: dict[str, Json], clients: _Clients
) -> None:
    """Create an AWS::DynamoDB::Table with its indexes, stream, encryption, TTL and PITR."""
    properties = _properties(stack, logical_id, resource)
    name = as_text(properties.get("TableName", f"{stack.stack_name}-{logical_id}"), "TableName")
    dynamodb = clients.dynamodb
    dynamodb.create_table(**_create_table_request(stack, logical_id, name, properties))
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    _set_time_to_live_and_recovery(dynamodb, name, properties)
    description = dynamodb.describe_table(TableName=name)["Table"]
    attributes = {"Arn": description["TableArn"]}
    if "LatestStreamArn" in description:
        attributes["StreamArn"] = description["LatestStreamArn"]
    stack.record(logical_id, name, attributes)


def _create_table_request(
    stack: Stack, logical_id: str, name: str, properties: dict[str, Json]
) -> dict[str, Any]:
    """CreateTable's arguments from a table's resolved properties."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    for key in ("ProvisionedThroughput", "OnDemandThroughput"):
        if key in properties:
            kwargs[key] = _throughput(properties[key], f"{logical_id}.{key}")
    for key, is_global in (("GlobalSecondaryIndexes", True), ("LocalSecondaryIndexes", False)):
        if key in properties:
            where = f"{logical_id}.{key}"
            indexes = as_sequence(properties[key], where)
            kwargs[key] = [_index(index, where, is_global=is_global) for index in indexes]
    if "StreamSpecification" in properties:
        stream = as_mapping(properties["StreamSpecification"], "StreamSpecification")
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    if "SSESpecification" in properties:
        kwargs["SSESpecification"] = _sse(stack, name, properties["SSESpecification"])
    for key in ("TableClass", "DeletionProtectionEnabled"):
        if key in properties:
            kwargs[key] = properties[key]
    if "Tags" in properties:
        kwargs["Tags"] = _tags(properties["Tags"])
    return kwargs


def _sse(stack: Stack, name: str, value: Json) -> dict[str, Any]:
    """A table's SSESpecification as CreateTable takes it."""
    sse = as_mapping(value, "SSESpecification")
    specification: dict[str, Any] = {"Enabled": as_flag(sse.get("SSEEnabled", False))}
    if "SSEType" in sse:
        specification["SSEType"] = sse["SSEType"]
    if "KMSMasterKeyId" in sse:
        # DynamoDB reports the key by ARN whatever form it was given in; so do we.
        specification["KMSMasterKeyId"] = stack.key_arn(as_text(sse["KMSMasterKeyId"], name))
    return specification


def _set_time_to_live_and_recovery(
    dynamodb: DynamoDBClient, name: str, properties: dict[str, Json]
) -> None:
    """What CreateTable cannot set: the TTL attribute and point-in-time recovery."""
    if "TimeToLiveSpecification" in properties:
        ttl = as_mapping(properties["TimeToLiveSpecification"], "TimeToLiveSpecification")
        if as_flag(ttl.get("Enabled", False)):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": as_text(ttl["AttributeName"], "TTL AttributeName"),
                },
            )
    recovery = properties.get("PointInTimeRecoverySpecification")
    if isinstance(recovery, dict) and as_flag(recovery.get("PointInTimeRecoveryEnabled", False)):
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


@dataclass(frozen=True)
class _Clients:
    """The boto3 clients provisioning uses."""

    dynamodb: DynamoDBClient
    kms: KMSClient


_Provisioner: TypeAlias = Callable[[Stack, str, dict[str, Json], _Clients], None]


# Creation order: keys before the aliases and tables that name them.
_PROVISIONERS: tuple[tuple[str, _Provisioner], ...] = (
    ("AWS::KMS::Key", _create_key),
    ("AWS::KMS::Alias", _create_alias),
    ("AWS::DynamoDB::Table", _create_table),
)


def provision(
    template: Template,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    stack_name: str = "mqless",
    region: str = "us-east-1",
    account_id: str = "123456789012",
    parameter_overrides: Mapping[str, object] | None = None,
) -> Stack:
    """Create the template's keys, aliases and tables with the given clients; return the Stack."""
    stack = Stack(
        template,
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameter_overrides=dict(parameter_overrides or {}),
    )
    clients = _Clients(dynamodb=dynamodb, kms=kms)
    for resource_type, create in _PROVISIONERS:
        for logical_id, resource in stack.declared(resource_type):
            create(stack, logical_id, resource, clients)
    return stack
