"""In Lambda a function's clients come from its own boto3 session, whose loader finds a
service's model without listing every service botocore knows and reads botocore's files as
plain dicts; the models and data are the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from mqless.aws_session import ServiceLoader

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1"])
def test_a_service_s_model_is_the_one_botocore_loads(type_name: str) -> None:
    # Given botocore's loader and the function's one, over the same data path
    botocore_loader, own = Loader(), ServiceLoader()
    # When each loads DynamoDB's model of that type
    theirs = botocore_loader.load_service_model("dynamodb", type_name)
    ours = own.load_service_model("dynamodb", type_name)
    # Then the models are equal, and the function's loader listed no service to find it
    assert ours == theirs
    assert not any(key[0] == "list_available_services" for key in own._cache)


@pytest.mark.parametrize("name", ["endpoints", "partitions", "sdk-default-configuration"])
def test_botocore_s_data_files_read_the_same(name: str) -> None:
    # Given botocore's loader and the function's one
    botocore_loader, own = Loader(), ServiceLoader()
    # When each reads one of botocore's data files
    theirs, ours = botocore_loader.load_data(name), own.load_data(name)
    # Then the data are equal, in the same order, as plain dicts
    assert ours == theirs
    assert json.dumps(ours) == json.dumps(theirs)
    assert type(ours) is dict


def test_an_unknown_service_is_refused_as_botocore_refuses_it() -> None:
    # Given the function's loader
    own = ServiceLoader()
    # When a service that does not exist is asked for
    with pytest.raises(UnknownServiceError) as refused:
        own.load_service_model("no-such-service", "service-2")
    # Then botocore's own error says so, naming the services there are
    assert "no-such-service" in str(refused.value)
    assert "dynamodb" in str(refused.value)


_CLIENT_LOADER = """
import json
import botocore.session
from mqless import wiring
client = wiring.dynamodb_client()
loader = client._loader
plain = botocore.session.get_session().create_client("dynamodb")
model, plain_model = client.meta.service_model, plain.meta.service_model
same = all(getattr(client.meta, a) == getattr(plain.meta, a)
           for a in ("region_name", "endpoint_url", "partition")) and all(
    getattr(model, a) == getattr(plain_model, a)
    for a in ("metadata", "operation_names", "shape_names", "signing_name"))
print(json.dumps({"loader": type(loader).__name__, "region": client.meta.region_name,
                  "listed": any(key[0] == "list_available_services" for key in loader._cache),
                  "as_botocore_makes_it": same}))
"""


def _client_loader(*, runtime_api: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_LAMBDA_RUNTIME_API",)}
    env.update(PYTHONPATH=str(ROOT / "layers" / "core"), AWS_DEFAULT_REGION="eu-west-1")
    if runtime_api is not None:
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT_LOADER], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_in_lambda_the_function_s_first_client_lists_no_service() -> None:
    """Given Lambda's runtime (it sets AWS_LAMBDA_RUNTIME_API) and a new execution environment
    When the function makes its DynamoDB client
    Then it is made from the function's own session, in the configured region, without
    botocore listing every service it knows
    """
    made = _client_loader(runtime_api="127.0.0.1:9001")

    assert made == {
        "loader": "ServiceLoader",
        "region": "eu-west-1",
        "listed": False,
        "as_botocore_makes_it": True,
    }


def test_outside_lambda_clients_come_from_boto3_s_default_session_as_it_is() -> None:
    """Given no Lambda runtime (tests, `mqless dev`: moto and its handlers live in boto3's
    default session)
    When a client is made
    Then boto3's default session made it with botocore's own loader
    """
    made = _client_loader(runtime_api=None)

    assert made == {
        "loader": "Loader",
        "region": "eu-west-1",
        "listed": True,
        "as_botocore_makes_it": True,
    }
