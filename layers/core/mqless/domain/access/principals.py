"""Who is calling, and the one place that decides what they may do.

A principal carries grants: a destination pattern with the same wildcards as topic
subscriptions (`.` separates segments, `*` is one segment, a final `>` the rest, so `>`
alone is every destination) and the actions it allows: `send`, `receive` (consume,
subscribe, ack), `create` (make a queue on first use, a durable subscription) and `admin`
(configure, purge, redrive, browse, move, delete; it implies `create`, as ActiveMQ's admin
and RabbitMQ's configure do). Grants only add: what no grant allows is refused, as in
ActiveMQ's authorization map and RabbitMQ's permission patterns. Queue and topic names
share one namespace here.
A queue's dead letters belong to whoever may act on the queue: a grant reaches a
dead-letter name (`orders.dlq`, `orders.dlq.fifo`) if it reaches its source queue
(`orders`, `orders.fifo`), or if its pattern names the `dlq` segment itself (`orders.dlq`,
`*.dlq`: dead letters granted on purpose). A wildcard never reaches a `dlq` segment on its
own: `orders.*` covers `orders.eu` but not `orders.dlq`, `orders.>` covers both.
A subscription to a topic pattern is allowed only where a grant covers every topic the
pattern can match (`orders.*` does not cover `orders.>`).
Managing principals and keys is `admin` on `ACCESS_CONTROL` (`$access`), which no
destination can be named, so only a grant of `>` reaches it.
`AllowAll` is the policy while authentication is off; `GrantPolicy` when it is on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqless.domain import names, wildcards
from mqless.domain.errors import Forbidden, InvalidRequest
from mqless.domain.wildcards import ANY_SEGMENT, ANY_TAIL, Fault

MAX_GRANTS = 100
MAX_PATTERN = 200
ACCESS_CONTROL = "$access"
"""The pseudo-destination that managing principals and API keys needs `admin` on."""
EVERY_DESTINATION = "*"
"""What an action on no one destination (listing every subscription) is checked against."""
PRINCIPAL_ID = re.compile(r"[A-Za-z0-9_.@:+=,-]{1,128}")
JWT_PREFIX = "jwt:"
"""Principals proven by a JWT: `jwt:<claim value>`, never a key's principal or a group."""
GROUP_PREFIX = "group:"
"""Groups of a JWT's groups claim; their grants apply to every member."""
IAM_PREFIX = "iam:"
"""Callers of the IAM-authorized API (`auth.iam_principal_id`)."""


class Action(StrEnum):
    SEND = "send"
    RECEIVE = "receive"
    CREATE = "create"
    ADMIN = "admin"


IMPLIED: dict[Action, frozenset[Action]] = {Action.CREATE: frozenset({Action.ADMIN})}
"""The actions that also allow an action: who may administer a destination may create it."""


class Grant(BaseModel):
    """Actions allowed on the destinations a pattern matches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_PATTERN,
            description="Destinations: `orders`, `orders.*`, `shop.>`, or `>` for all.",
        ),
    ]
    actions: Annotated[
        tuple[Action, ...],
        Field(min_length=1, description="Any of send, receive, create, admin."),
    ]

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, pattern: str) -> str:
        validate_grant_pattern(pattern)
        return pattern

    def allows(self, action: Action, destination: str) -> bool:
        """Whether this grant allows `action` on a destination or on every destination a
        subscription pattern can match. Access control and "every destination" (`*`, as
        in listing all subscriptions) are reached by `>` alone."""
        if action not in self.actions and IMPLIED.get(action, frozenset()).isdisjoint(self.actions):
            return False
        if destination in (ACCESS_CONTROL, EVERY_DESTINATION):
            return self.pattern == ANY_TAIL
        return grant_covers(self.pattern, destination)


class Principal(BaseModel):
    """The authenticated caller; `anonymous` until authentication is configured."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str = "anonymous"
    grants: tuple[Grant, ...] = ()
    expires_at: int | None = None
    """When the credential that proved it stops working (epoch seconds); None: never.
    Whoever holds on to a principal (API Gateway's authorizer cache, a WebSocket
    connection) must stop acting as it from then on."""
    key_id: str | None = None
    """The API key that proved it (None: a JWT, IAM or no credential): a connection keeps
    it so that revoking the key closes the connection (`live.py`)."""

    def expired(self, now_s: float) -> bool:
        """Whether the credential that proved this principal has stopped working."""
        return self.expires_at is not None and self.expires_at <= now_s


ANONYMOUS = Principal(id="anonymous", kind="anonymous")


class Policy(Protocol):
    def check(self, principal: Principal, action: Action, destination: str) -> None:
        """Return if allowed; raise mqless.domain.errors.Forbidden if not."""

    def permits(self, principal: Principal, action: Action, destination: str) -> bool:
        """Whether `check` would allow it (for filtering listings)."""


class AllowAll:
    """The policy while authentication is off: every principal may do everything."""

    def check(self, principal: Principal, action: Action, destination: str) -> None:
        return None

    def permits(self, principal: Principal, action: Action, destination: str) -> bool:
        return True


class GrantPolicy:
    """Allow exactly what the principal's grants allow; refuse with a clear message."""

    def permits(self, principal: Principal, action: Action, destination: str) -> bool:
        return any(g.allows(action, destination) for g in principal.grants)

    def check(self, principal: Principal, action: Action, destination: str) -> None:
        if self.permits(principal, action, destination):
            return
        if destination == ACCESS_CONTROL:
            raise Forbidden(
                f"{principal.id!r} may not manage principals and keys (that needs admin on '>')"
            )
        if destination == EVERY_DESTINATION:
            raise Forbidden(
                f"{principal.id!r} may not {action.value} every destination "
                "(that needs a grant on '>')"
            )
        raise Forbidden(f"{principal.id!r} may not {action.value} {destination!r}")


def validate_principal_id(principal_id: str) -> None:
    """InvalidRequest unless `principal_id` is a usable principal id."""
    if not PRINCIPAL_ID.fullmatch(principal_id):
        raise InvalidRequest(
            f"principal id {principal_id[:80]!r}: 1-128 of A-Z a-z 0-9 _ . @ : + = , -"
        )


def jwt_principal_id(claim_value: str) -> str:
    """The principal a JWT proves: its claim's value, in the JWT namespace."""
    return JWT_PREFIX + claim_value


def group_principal_id(group: str) -> str:
    """The principal that holds a group's grants."""
    return GROUP_PREFIX + group


def proven_by_api_key(principal_id: str) -> bool:
    """Whether an API key may be issued to this principal: not to a group (no one calls as
    a group) nor to the ids that JWTs and IAM callers prove, which are theirs alone."""
    return not principal_id.startswith((JWT_PREFIX, GROUP_PREFIX, IAM_PREFIX))


def validate_grant_pattern(pattern: str) -> None:
    """InvalidRequest unless `pattern` is a well-formed destination pattern."""
    segments = wildcards.segments(pattern)
    for position, segment in enumerate(segments):
        fault = wildcards.fault(segment, position, len(segments))
        if fault is Fault.EMPTY:
            raise InvalidRequest(f"pattern {pattern[:100]!r} has an empty segment")
        if fault is Fault.TAIL_NOT_LAST:
            raise InvalidRequest(f"in pattern {pattern[:100]!r}, '>' may only come last")
        if fault is Fault.PARTIAL_WILDCARD:
            raise InvalidRequest(
                f"in pattern {pattern[:100]!r}, wildcards stand alone in their segment"
            )


def pattern_covers(pattern: str, wanted: str) -> bool:
    """Whether a grant pattern covers every destination `wanted` can name (never raises).

    `wanted` is a destination name or a subscription pattern. For a name this is topic
    matching (`topics.topic_matches`: a final `>` matches zero or more further segments);
    a wildcard in `wanted` is covered only by a wildcard at least as wide.
    """
    return wildcards.covers(pattern, wanted)


def grant_covers(pattern: str, destination: str) -> bool:
    """Whether a grant pattern reaches `destination` (a name, or a subscription pattern).

    As `pattern_covers`, except for dead-letter names (`names.dead_letter_source`): those
    are reached through their source queue, or by a pattern whose segment at the `dlq`
    mark is `dlq` itself, never by a wildcard alone. Subscription patterns are matched as
    patterns: dead letters are never published to topics.
    """
    source = names.dead_letter_source(destination)
    if source is None or ANY_SEGMENT in destination or ANY_TAIL in destination:
        return pattern_covers(pattern, destination)
    if pattern_covers(pattern, destination) and _names_dead_letters(pattern, destination):
        return True
    return grant_covers(pattern, source)


def _names_dead_letters(pattern: str, dead_letter_name: str) -> bool:
    """Whether `pattern` has the literal `dlq` segment where `dead_letter_name` has its mark."""
    segments = dead_letter_name.split(".")
    mark = len(segments) - (2 if names.is_fifo(dead_letter_name) else 1)
    granted = pattern.split(".")
    return mark < len(granted) and granted[mark] == segments[mark]


def parse_grants(raw: Sequence[object]) -> tuple[Grant, ...]:
    """Grants from JSON (a list of {"pattern", "actions"}); InvalidRequest if malformed."""
    if len(raw) > MAX_GRANTS:
        raise InvalidRequest(f"at most {MAX_GRANTS} grants")
    try:
        return tuple(Grant.model_validate(g) for g in raw)
    except ValueError as exc:
        raise InvalidRequest(f"malformed grant: {exc}") from exc
