"""The base of every HTTP request and response body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    """A body model built (its validator and serializer) when a request first uses it, not
    when the module is imported: the HTTP function has some forty of these, and a request
    uses one or two (issue 18's cold start). The OpenAPI document builds them all, as it
    did before."""

    model_config = ConfigDict(defer_build=True)
