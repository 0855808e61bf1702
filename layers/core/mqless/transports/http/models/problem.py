"""The body of every error response (a JSON problem)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mqless.transports.http.models.body import Body


class Problem(Body):
    """Every error response: a stable code and a sentence saying what is wrong."""

    error: Annotated[str, Field(description="Machine-readable code, e.g. `queue_not_found`.")]
    message: Annotated[str, Field(description="What is wrong, for a person.")]
    details: list[dict[str, object]] | None = None
