"""moto's JSON-protocol errors made without first writing them out as XML
(`json_errors_written_once`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


@contextmanager
def json_errors_written_once() -> Iterator[None]:
    """Make a `JsonRESTError` without writing its XML body first.

    Upstream behaviour: `JsonRESTError.__init__` calls `_RESTError.__init__`, which writes the
    error out as an XML document with `xmltodict.unparse` (about 0.15 ms), then replaces that
    body and its content type with the JSON ones at once. DynamoDB raises such errors on
    every failed condition, and inside an UpdateItem whose ADD (or DELETE) reaches an
    attribute the item does not have yet (moto finds the attribute missing by raising
    `ProvidedKeyDoesNotExist`, and catches it). Here the error gets the same attributes
    (`error_type`, `message`, `description`, `content_type`, and werkzeug's `response`)
    with only the JSON body written.
    """
    from moto.core.exceptions import JsonRESTError
    from werkzeug.exceptions import HTTPException

    def init(self: Any, error_type: str, message: str, _: str = "", **__: Any) -> None:
        HTTPException.__init__(self)
        self.error_type = error_type
        self.message = message
        self.description = json.dumps({"__type": error_type, "message": message})
        self.content_type = "application/json"

    with patched(JsonRESTError, "__init__", init):
        yield
