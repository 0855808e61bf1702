"""In Lambda, the function's own boto3 default session: a service's model is found without
botocore first listing every service it knows, and its data files are read as plain dicts.

botocore checks that a service exists before loading its model by listing every service
directory of its data path (~900, each listed again for the versions holding the file), once
for the service model and once for the endpoint rule set: ~12 ms CPU of a cold function's
first client, to find the one service it names. `ServiceLoader` asks for that service's own
versions instead, which is the same test: a service is listed exactly when one of its
versions holds the file. A name that is not there is handed to botocore's own search,
which raises what it always raises.

botocore reads its JSON files into `OrderedDict`s (`object_pairs_hook`), which takes json's
decoder off its fast path: about twice the time, 7-9 ms of a cold function's first client
for endpoints.json alone, ~12 ms with DynamoDB's and KMS's models. Dicts keep their order
since Python 3.7 and botocore uses no OrderedDict-only behaviour on what it loads (it builds
its own OrderedDicts from it), so `PlainJSONFileLoader` reads them as dicts: equal data.

Only where Lambda's runtime runs the function (`mqless.start_up`): the process is the
function's own. `mqless dev` and tests keep boto3's default session as it is (moto, the
local runtime's event handlers and every other service they use live there).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import botocore.session
from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader, instance_cache


class PlainJSONFileLoader(JSONFileLoader):
    """botocore's JSON file loader, reading objects as dicts rather than OrderedDicts."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as file:
            return json.loads(file.read().decode("utf-8"))


class ServiceLoader(Loader):
    """botocore's loader, finding a service's model through that service's versions alone,
    and reading its files as dicts."""

    FILE_LOADER_CLASS = PlainJSONFileLoader

    @instance_cache
    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        try:
            versions = self.list_api_versions(service_name, type_name)
        except DataNotFoundError:
            # not a service this data path holds: botocore's search says so, as ever
            return super().load_service_model(service_name, type_name, api_version)
        # the rest as botocore does it: the latest version, then the model with its extras
        version = api_version if api_version is not None else max(versions)
        model = self.load_data(os.path.join(service_name, version, type_name))
        extras = self._find_extras(service_name, type_name, version)  # type: ignore[attr-defined]
        self._extras_processor.process(model, extras)  # type: ignore[attr-defined]
        return model


def use_own_default_session() -> None:
    """Make boto3's default session (unless one is made already) with a `ServiceLoader`
    over botocore's data path (AWS_DATA_PATH and its own), as botocore would make it."""
    if boto3.DEFAULT_SESSION is not None:
        return
    core = botocore.session.get_session()
    data_path = core.get_config_variable("data_path")
    extra = None
    if data_path is not None:
        extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    core.register_component("data_loader", ServiceLoader(extra_search_paths=extra))
    boto3.setup_default_session(botocore_session=core)
