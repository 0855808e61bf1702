"""What each principal has created, counted against per-principal quotas.

Queues (a dead-letter queue is a queue too) and durable subscriptions live until someone
deletes them, and each one costs the broker on every round: the sweeper walks every
queue, a publish writes once per matching durable subscription. So a principal that
creates them (on first send, on subscribe, with PUT) is charged for each on a counter
item in the destinations table (`storage/quotas.py`, one number per kind).

Creating and charging are one DynamoDB transaction whose condition keeps the counter at
or under the limit: concurrent creators cannot pass it together, and a refused creation
writes nothing. A created item records whom it was charged to (`charged_to`), so deleting
it credits that principal, whoever deletes it. Admins of everything (`admin` on `>`) are
not charged, nor is the broker itself when dead-lettering creates a declared dead-letter
queue that is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mqless.domain.access.limits import DEFAULT_QUEUES, DEFAULT_SUBSCRIPTIONS
from mqless.domain.access.principals import EVERY_DESTINATION, Action, Policy, Principal
from mqless.domain.errors import QuotaExceeded


class Quota(StrEnum):
    QUEUES = "queues"
    SUBSCRIPTIONS = "durable_subscriptions"


_PARAMETER = {
    Quota.QUEUES: "QueuesPerPrincipal",
    Quota.SUBSCRIPTIONS: "DurableSubscriptionsPerPrincipal",
}
_NOUN = {Quota.QUEUES: "queues", Quota.SUBSCRIPTIONS: "durable subscriptions"}


@dataclass(frozen=True)
class Limits:
    """How many of each a principal may create (template parameters, through Settings)."""

    queues: int = DEFAULT_QUEUES
    durable_subscriptions: int = DEFAULT_SUBSCRIPTIONS

    def of(self, quota: Quota) -> int:
        return self.queues if quota is Quota.QUEUES else self.durable_subscriptions


@dataclass(frozen=True)
class Charge:
    """`count` more of `quota` for a principal, `what` being created (for the refusal)."""

    principal_id: str
    quota: Quota
    count: int
    limit: int
    what: str

    def refused(self) -> QuotaExceeded:
        noun = _NOUN[self.quota]
        return QuotaExceeded(
            f"creating {self.what} would take {self.principal_id!r} past its quota of "
            f"{self.limit} {noun}: delete some it created, or ask an operator to raise "
            f"{_PARAMETER[self.quota]}",
            quota=self.quota.value,
            limit=self.limit,
        )


class Quotas:
    """Who is charged for a creation: every principal but the admins of everything."""

    def __init__(self, policy: Policy, limits: Limits | None = None) -> None:
        self._policy = policy
        self._limits = limits or Limits()

    def charge(
        self, principal: Principal | None, quota: Quota, count: int, what: str
    ) -> Charge | None:
        """The charge for `principal` creating `count` things; None if it is not charged
        (the broker itself, or an admin of everything)."""
        if principal is None or self._policy.permits(principal, Action.ADMIN, EVERY_DESTINATION):
            return None
        return Charge(principal.id, quota, count, self._limits.of(quota), what)
