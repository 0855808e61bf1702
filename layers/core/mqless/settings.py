"""Runtime settings, read from the function's environment (template.yaml sets them).

Every environment variable the core and the handlers read is a field here, read once per
process (`wiring.settings()`, and its sections `wiring.access_settings()` and
`wiring.websocket_settings()` for handlers that need only those), so that one variable
has one rule wherever it is used. Powertools reads its own (POWERTOOLS_*), as Lambda's
runtime does AWS_*.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from mqless.domain.access.limits import DEFAULT_QUEUES, DEFAULT_SUBSCRIPTIONS

if TYPE_CHECKING:
    # the quotas and the principals' models load where a service charges (~2 ms CPU cold)
    from mqless.domain.access.quotas import Limits

DEFAULT_PRINCIPAL_CLAIM = "sub"
DEFAULT_GROUPS_CLAIM = "cognito:groups"


class SettingsError(RuntimeError):
    """The function's environment is wrong: a deployment fault, never the caller's."""


class _FromEnvironment(BaseModel):
    """Settings read from environment variables named as their fields, in capitals."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read each field from the environment variable of its name in capitals
        (MESSAGES_TABLE, AUTH_MODE, JWT_ISSUER, ...); SettingsError names the ones that
        are wrong, by their variable names."""
        source = os.environ if env is None else env
        values: dict[str, str] = {}
        for field_name in cls.model_fields:
            raw = source.get(field_name.upper())
            if raw is not None:
                values[field_name] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_described(exc)) from exc


class AccessSettings(_FromEnvironment):
    """Who must authenticate, and how JWTs are checked: what every handler needs first."""

    auth_mode: Annotated[
        Literal["required", "off"],
        Field(description="`required` (template.yaml's) or `off` (`mqless dev --no-auth`)"),
    ] = "required"
    jwt_issuer: Annotated[str, Field(description="an OIDC issuer whose JWTs are accepted")] = ""
    jwt_audience: Annotated[str, Field(description="the audience JWTs must name")] = ""
    jwt_principal_claim: Annotated[
        str, Field(description="the JWT claim that names the principal (empty: `sub`)")
    ] = DEFAULT_PRINCIPAL_CLAIM
    jwt_groups_claim: Annotated[
        str, Field(description="the JWT claim that lists groups (empty: `cognito:groups`)")
    ] = DEFAULT_GROUPS_CLAIM

    @field_validator("jwt_principal_claim", "jwt_groups_claim", mode="before")
    @classmethod
    def _empty_claim_is_the_default(cls, value: object, info: ValidationInfo) -> object:
        # the template passes its parameters through: an emptied one means the default
        if value != "":
            return value
        if info.field_name == "jwt_principal_claim":
            return DEFAULT_PRINCIPAL_CLAIM
        return DEFAULT_GROUPS_CLAIM

    @property
    def auth_required(self) -> bool:
        """Every request needs a principal (AUTH_MODE=required)."""
        return self.auth_mode == "required"


class WebSocketSettings(_FromEnvironment):
    """Where the WebSocket API is: for pushing to its clients, and for the web console."""

    connections_endpoint: Annotated[
        str, Field(description="the @connections endpoint that pushes to WebSocket clients")
    ] = ""
    websocket_url: Annotated[
        str, Field(description="the WebSocket API's URL, as the web console connects to it")
    ] = ""
    loopback_websocket_port: Annotated[
        int,
        Field(
            ge=1,
            le=65535,
            description="the port the web console offers a browser on 127.0.0.1 or localhost "
            "when WEBSOCKET_URL is unset (`mqless dev`'s default --ws-port)",
        ),
    ] = 8081

    @field_validator("websocket_url", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class Settings(AccessSettings, WebSocketSettings):
    """Everything a function reads from its environment: its tables and key, the data-key
    cache, quotas, and the access and WebSocket settings. Each variable is one field with
    one rule; the sections (AccessSettings, WebSocketSettings) read the same fields alone
    where a handler needs only them."""

    messages_table: str = Field(min_length=1)
    destinations_table: str = Field(min_length=1)
    kms_key_id: str = Field(min_length=1)
    data_key_max_age_seconds: float = Field(default=300, gt=0)
    data_key_max_messages: int = Field(default=10_000, ge=1)
    queues_per_principal: int = Field(default=DEFAULT_QUEUES, ge=0)
    durable_subscriptions_per_principal: int = Field(default=DEFAULT_SUBSCRIPTIONS, ge=0)
    # how far ahead each sweep fires scheduled messages (a queue's are sent with the rest of
    # their delay): the sweep period plus room for a late sweep; `mqless dev --schedule-rate`
    # shortens it with the period
    schedule_lookahead_seconds: int = Field(default=75, ge=1, le=600)

    @property
    def limits(self) -> Limits:
        """What each principal may create (admins of everything are not counted)."""
        from mqless.domain.access.quotas import Limits

        return Limits(
            queues=self.queues_per_principal,
            durable_subscriptions=self.durable_subscriptions_per_principal,
        )


def _described(exc: ValidationError) -> str:
    """`AUTH_MODE must be 'required' or 'off', not 'OFF '`: one clause per wrong variable."""
    clauses = []
    for error in exc.errors():
        variable = ".".join(str(part) for part in error["loc"]).upper()
        if error["type"] == "missing":
            clauses.append(f"{variable} is not set")
        elif error["type"] == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            clauses.append(f"{variable} must be {expected}, not {error['input']!r}")
        else:
            clauses.append(f"{variable}: {error['msg']} (not {error['input']!r})")
    return "the function's environment is wrong: " + "; ".join(clauses)
