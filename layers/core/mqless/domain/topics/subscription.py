"""A durable subscription (topic pattern -> queue, filtered), what a request may set on one,
and where a replay starts.

Stored by `storage/subscriptions.py`; managed by `subscriptions.py`; replayed by `replay.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mqless.domain.errors import InvalidRequest
from mqless.domain.models import MAX_SELECTOR_LENGTH

START_OLDEST = "oldest"
START_NOW = "now"


class Subscription(BaseModel):
    """A durable subscription: messages published to topics matching `topic` go to `queue`."""

    # built when first used, not at import: a function builds the models its requests use
    # (issue 18's cold start; the same in every model of this module)
    model_config = ConfigDict(defer_build=True)

    topic: str
    name: str
    queue: str
    filter_policy: dict[str, Any] | None = None
    selector: str | None = None
    created_at: int = 0
    owner: str | None = Field(
        default=None,
        description="The principal that created it: it may delete it without admin rights.",
    )
    replay_from: int | None = Field(
        default=None,
        description="Replay: messages the topic still held that were published at or after "
        "this time (epoch ms; 0: the oldest retained) were delivered to it when it was "
        "created; null: it gets what is published from its creation on.",
    )
    live_from: int | None = Field(
        default=None,
        description="Replay: messages published from this time (epoch ms) on are delivered "
        "as published; those before it were read from the topic's log.",
    )
    replaying: dict[str, int] = Field(
        default_factory=dict,
        description="Replay: the topic log shards whose retained messages are still to be "
        "delivered (empty once the replay is done).",
    )


class SubscriptionSettings(BaseModel):
    model_config = ConfigDict(defer_build=True)

    queue: str = Field(description="The standard queue that receives matching messages.")
    filter_policy: dict[str, Any] | None = Field(
        default=None,
        description="SNS-style attribute filter policy; null delivers every message.",
    )
    selector: str | None = Field(
        default=None,
        description="JMS message selector (SQL-92 subset, as ActiveMQ's) the messages "
        "must match, beside the filter policy; null delivers every message.",
        max_length=MAX_SELECTOR_LENGTH,
    )
    start: str | None = Field(
        default=None,
        description='Replay, for a new subscription of one topic: "oldest" delivers every '
        "message the topic's log still holds, an ISO-8601 time (with its zone, e.g. "
        '"2026-12-07T00:00:00Z") those published at or after it, before the ones published '
        'from now on; "now" or null: only those. Ignored when the subscription exists.',
        max_length=64,
    )


def parse_start(start: str | None, now_ms: int) -> int | None:
    """A subscription's start as epoch ms (0: the oldest retained), or None for "now"."""
    if start is None or start == START_NOW:
        return None
    if start == START_OLDEST:
        return 0
    try:
        when = datetime.fromisoformat(start)
        at = int(when.timestamp() * 1000) if when.tzinfo is not None else None
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(
            f"start {start[:64]!r} is not {START_OLDEST!r}, {START_NOW!r} or an ISO-8601 time "
            "such as '2026-12-07T00:00:00Z'"
        ) from exc
    if at is None:
        raise InvalidRequest(f"start {start!r} needs a time zone (Z or +hh:mm)")
    if at > now_ms:
        raise InvalidRequest(f"start {start!r} is in the future")
    return max(at, 0)


def describe(topic: str, name: str) -> str:
    """How a subscription is named in messages: `durable subscription 'n' of 't'`."""
    return f"durable subscription {name!r} of {topic!r}"
