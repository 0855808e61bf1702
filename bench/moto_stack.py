"""What every `make bench` script shares: moto's AWS variables, and template.yaml in moto.

Import it before boto3 clients are made (it sets the variables at import); call
`provisioned()` inside `mock_aws()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_LOG_LEVEL="WARNING",  # no audit lines for the setup
)

import boto3  # noqa: E402

from mqless.settings import Settings  # noqa: E402
from mqless_cli.cfn import load_template, provision  # noqa: E402


def provisioned() -> tuple[Any, Any, Settings]:
    """DynamoDB and KMS clients, and the functions' settings, over template.yaml's resources."""
    dynamodb = boto3.client("dynamodb")
    kms = boto3.client("kms")
    stack = provision(load_template(ROOT / "template.yaml"), dynamodb=dynamodb, kms=kms)
    return dynamodb, kms, Settings.from_env(stack.environment("HttpApiFunction"))
