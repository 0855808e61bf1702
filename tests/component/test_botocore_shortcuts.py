"""`mqless dev`'s botocore shortcuts (cli/mqless_cli/local/botocore_shortcuts.py): the same
requests as botocore makes, for less work."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.context import start_as_current_context
from botocore.useragent import UserAgentString, register_feature_id

from mqless_cli.local.botocore_shortcuts import botocore_shortcuts


@pytest.fixture(autouse=True)
def _credentials(aws_env: None) -> None:
    """Fake credentials (tests/conftest.py): clients are made, no request leaves."""


def clients() -> list[Any]:
    """Clients whose User-Agent differs: services, client config, app id, extras."""
    return [
        boto3.client("dynamodb", region_name="us-east-1"),
        boto3.client("kms", region_name="us-east-1"),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(user_agent_extra="extra/1")
        ),
        boto3.client("dynamodb", region_name="us-east-1", config=Config(user_agent_appid="app")),
        boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(retries={"mode": "adaptive"})
        ),
        boto3.client("dynamodb", region_name="us-east-1", config=Config(user_agent="legacy/1")),
    ]


def user_agents(made: list[Any]) -> list[str]:
    """Each client's User-Agent, outside any request context and inside two contexts that
    recorded different features, asked twice each (the second may come from a cache)."""
    found = []
    for client in made:
        creator = client._user_agent_creator
        for feature in (None, "RETRY_MODE_STANDARD", "PAGINATOR"):
            with start_as_current_context():
                if feature is not None:
                    register_feature_id(feature)
                found += [creator.to_string(), creator.to_string()]
    return found


def test_user_agents_are_the_strings_botocore_builds() -> None:
    """Given clients of different services and configs, and request contexts with different
    features, when their User-Agent is asked with the shortcuts on,
    then every string is the one botocore builds without them."""
    made = clients()
    expected = user_agents(made)
    with botocore_shortcuts():
        found = user_agents(made)
    assert found == expected
    assert len(set(expected)) > len(made)  # the features made a difference


def test_a_clients_user_agent_is_built_once_per_set_of_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a client, when its User-Agent is asked for many requests with the shortcuts on,
    then botocore builds it once (not twice per request)."""
    builds = 0
    original = UserAgentString._build_os_metadata

    def counted(self: UserAgentString) -> Any:
        nonlocal builds
        builds += 1
        return original(self)

    client = boto3.client("dynamodb", region_name="us-east-1")
    monkeypatch.setattr(UserAgentString, "_build_os_metadata", counted)
    with botocore_shortcuts():
        for _ in range(10):
            with start_as_current_context():
                client._user_agent_creator.to_string()
    assert builds == 1


def test_the_shortcuts_come_off_with_the_last_block() -> None:
    """Given two overlapping blocks, when the first ends, the shortcuts stay on; when the
    last ends, botocore's own method is back."""
    original = UserAgentString.to_string
    first, second = botocore_shortcuts(), botocore_shortcuts()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert UserAgentString.to_string is not original
    second.__exit__(None, None, None)
    assert UserAgentString.to_string is original
