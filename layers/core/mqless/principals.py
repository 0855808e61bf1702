"""Who is calling, and the one place that decides what they may do."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict


class Action(StrEnum):
    SEND = "send"
    RECEIVE = "receive"
    ADMIN = "admin"


class Principal(BaseModel):
    """The authenticated caller; `anonymous` until authentication is configured."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str = "anonymous"


ANONYMOUS = Principal(id="anonymous", kind="anonymous")


class Policy(Protocol):
    def check(self, principal: Principal, action: Action, destination: str) -> None:
        """Return if allowed; raise mqless.errors.Forbidden if not."""


class AllowAll:
    """The policy while authentication is off: every principal may do everything."""

    def check(self, principal: Principal, action: Action, destination: str) -> None:
        return None
