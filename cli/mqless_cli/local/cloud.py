"""moto as the embedded AWS: start it in-process and create what template.yaml declares."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from mqless_cli.cfn import Stack, load_template, provision
from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
from mqless_cli.local.moto_fixes import fixed_moto
from mqless_cli.local.unsigned_requests import requests_unsigned

REGION = "us-east-1"
# Requests to loopback (our own gateways' @connections API) must reach the real socket,
# not moto's stand-in, which accepts every connection id and never answers 410.
_PASSTHROUGH = {
    "core": {"passthrough": {"urls": [r"https?://(127\.\d+\.\d+\.\d+|localhost)(:\d+)?/.*"]}}
}

_AWS_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "mqless-local",
    "AWS_SECRET_ACCESS_KEY": "mqless-local",
    # boto3 >= 1.36 sends DynamoDB Streams calls to account endpoints moto cannot match
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


@dataclass
class LocalCloud:
    """An in-process AWS (moto, with `moto_fixes` applied) holding the template's tables,
    streams, key and alias."""

    template_path: Path
    stack: Stack
    _mock: Any
    _fixes: Any = None
    _handlers: list[tuple[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, template_path: Path, *, stack_name: str = "mqless") -> LocalCloud:
        """Start moto and provision the template; sets the AWS variables for this process."""
        for name, value in _AWS_ENV.items():
            os.environ[name] = value
        os.environ.pop("AWS_PROFILE", None)
        mock = mock_aws(config=_PASSTHROUGH)  # type: ignore[call-overload]
        mock.start()
        fixes = ExitStack()
        fixes.enter_context(fixed_moto())
        fixes.enter_context(botocore_shortcuts())  # requests moto answers: less client work
        # Clients made from now on (the functions') share this session's event handlers.
        boto3.setup_default_session()
        # moto checks no signature: signing (about a fifth of an in-process call) is skipped
        fixes.enter_context(requests_unsigned())
        try:
            stack = provision(
                load_template(template_path),
                dynamodb=cls.client("dynamodb"),
                kms=cls.client("kms"),
                stack_name=stack_name,
                region=REGION,
            )
        except BaseException:
            fixes.__exit__(None, None, None)
            mock.stop()
            raise
        return cls(template_path=template_path, stack=stack, _mock=mock, _fixes=fixes)

    def handle(self, event_name: str, handler: Any) -> None:
        """Register a botocore event handler for every client made from now on (until stop)."""
        events = boto3.DEFAULT_SESSION.events if boto3.DEFAULT_SESSION else None
        if events is None:
            boto3.setup_default_session()
            events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
        events.register(event_name, handler)
        self._handlers.append((event_name, handler))

    @staticmethod
    def client(service: str) -> Any:
        """A boto3 client for the embedded AWS."""
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]

    def stop(self) -> None:
        if boto3.DEFAULT_SESSION is not None:
            for event_name, handler in self._handlers:
                boto3.DEFAULT_SESSION.events.unregister(event_name, handler)
        self._handlers.clear()
        if self._fixes is not None:
            self._fixes.__exit__(None, None, None)
            self._fixes = None
        self._mock.stop()
