"""Runtime settings, read from the function's environment (template.yaml sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, Field

from mqless import quotas


class Settings(BaseModel):
    """What every function needs to find its tables and key."""

    messages_table: str = Field(min_length=1)
    destinations_table: str = Field(min_length=1)
    kms_key_id: str = Field(min_length=1)
    data_key_max_age_seconds: float = Field(default=300, gt=0)
    data_key_max_messages: int = Field(default=10_000, ge=1)
    queues_per_principal: int = Field(default=quotas.DEFAULT_QUEUES, ge=0)
    durable_subscriptions_per_principal: int = Field(default=quotas.DEFAULT_SUBSCRIPTIONS, ge=0)

    @property
    def limits(self) -> quotas.Limits:
        """What each principal may create (admins of everything are not counted)."""
        return quotas.Limits(
            queues=self.queues_per_principal,
            durable_subscriptions=self.durable_subscriptions_per_principal,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read MESSAGES_TABLE, DESTINATIONS_TABLE, KMS_KEY_ID, the data-key bounds and the
        per-principal quotas (QUEUES_PER_PRINCIPAL, DURABLE_SUBSCRIPTIONS_PER_PRINCIPAL)."""
        source = os.environ if env is None else env
        values: dict[str, str] = {}
        for field_name in cls.model_fields:
            raw = source.get(field_name.upper())
            if raw is not None:
                values[field_name] = raw
        return cls.model_validate(values)
