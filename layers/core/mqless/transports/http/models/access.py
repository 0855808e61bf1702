"""Bodies of the access-control routes: principals and API keys."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from mqless.domain.access.api_keys import MAX_TTL_SECONDS, ApiKeyView
from mqless.domain.access.principals import MAX_GRANTS, Grant
from mqless.domain.access.users import PrincipalView
from mqless.transports.http.models.body import Body


class PrincipalRequest(Body):
    model_config = ConfigDict(extra="forbid")

    grants: list[Grant] = Field(
        max_length=MAX_GRANTS,
        description="What the principal may do: destination patterns and actions.",
    )


class PrincipalList(Body):
    principals: list[PrincipalView]


class KeyRequest(Body):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=MAX_TTL_SECONDS,
        description="Seconds until the key stops working; omit for a key that lasts until revoked.",
    )


class KeyList(Body):
    keys: list[ApiKeyView]
