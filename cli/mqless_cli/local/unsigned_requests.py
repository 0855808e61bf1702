"""`requests_unsigned`: clients of boto3's default session send requests unsigned while it
holds. moto checks no signature, and signing is about a fifth of an in-process call. It is
apart from `botocore_shortcuts` because it changes the request: only for clients whose every
request moto answers (`LocalCloud`, and the test suite's `moto_aws` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _unsigned(**_: Any) -> Any:
    """botocore `choose-signer`: send the request unsigned."""
    import botocore

    return botocore.UNSIGNED


@contextmanager
def requests_unsigned() -> Iterator[None]:
    """Clients of boto3's default session (made before or during the block) send their
    requests unsigned while the block runs: for clients whose every request moto answers."""
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    events.register("choose-signer", _unsigned)
    try:
        yield
    finally:
        events.unregister("choose-signer", _unsigned)
