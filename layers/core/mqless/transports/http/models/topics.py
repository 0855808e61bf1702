"""Bodies of the topic routes (besides a publish's: `sending`)."""

from __future__ import annotations

from pydantic import BaseModel

from mqless.domain.topics.subscription import Subscription


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]
