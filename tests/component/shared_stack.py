"""template.yaml's stack in the module's shared moto, under the names of the per-test
fixtures of tests/conftest.py (`dynamodb`, `kms`, `stack`, `settings`).

Provisioning a new moto for each test costs ~45 ms; a module that imports these fixtures
shares one provisioned moto (tests/component/conftest.py: `shared_aws`) and starts each
test from empty tables instead (`aws`). Fixtures built on these (`function_env`, `service`,
`cipher`) work as before. Tests of provisioning itself keep the per-test fixtures.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqless.settings import Settings
from mqless_cli.cfn import Stack
from tests.component.conftest import Aws
from tests.inline_dispatch import INLINE_DISPATCH


@pytest.fixture(name="dynamodb")
def shared_dynamodb(aws: Aws) -> Any:
    return aws.dynamodb


@pytest.fixture(name="kms")
def shared_kms(aws: Aws) -> Any:
    return aws.kms


@pytest.fixture(name="stack")
def shared_stack(aws: Aws) -> Stack:
    assert aws.stack is not None
    INLINE_DISPATCH.serve(aws.settings)
    return aws.stack


@pytest.fixture(name="settings")
def shared_settings(aws: Aws) -> Settings:
    return aws.settings
