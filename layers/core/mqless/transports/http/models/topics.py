"""Bodies of the topic routes (besides a publish's: `sending`)."""

from __future__ import annotations

from mqless.domain.topics.subscription import Subscription
from mqless.transports.http.models.body import Body


class SubscriptionList(Body):
    subscriptions: list[Subscription]
