"""A stored schedule's message: opened from its sealed body, tagged with ActiveMQ's
`scheduledJobId`, and sent by the broker in the sender's stead."""

from __future__ import annotations

from typing import Final

from mqless.domain import models
from mqless.domain.access.principals import Action, Grant, Principal
from mqless.domain.messages import NewMessage
from mqless.domain.scheduling.rules import Kind
from mqless.storage.schedules import StoredSchedule
from mqless.storage.sealing import BodyCipher, Holder, open_item

JOB_ID_ATTRIBUTE: Final = "scheduledJobId"  # ActiveMQ sets it on each scheduled delivery


def open_schedule(
    cipher: BodyCipher, kind: Kind, name: str, schedule: StoredSchedule, now_ms: int
) -> NewMessage:
    """The message a schedule delivers, tagged with its job id."""
    opened = open_item(
        cipher,
        {"id": schedule.schedule_id, "body": schedule.body, "dk": schedule.encrypted_key},
        holder=Holder(kind, name),
        now_ms=now_ms,
    )
    headers = opened.headers
    return tagged(
        NewMessage(
            body=opened.body,
            binary=headers.binary,
            attributes=headers.attributes,
            content_type=headers.content_type,
            correlation_id=headers.correlation_id,
            reply_to=headers.reply_to,
            group_id=schedule.group,
            ttl_seconds=schedule.ttl_seconds,
            priority=headers.priority,
        ),
        schedule.schedule_id,
    )


def tagged(message: NewMessage, schedule_id: str) -> NewMessage:
    """The message with ActiveMQ's `scheduledJobId` (room allowing: 50 attributes at most)."""
    if len(message.attributes) >= models.MAX_ATTRIBUTES:
        return message
    return message.model_copy(
        update={"attributes": {**message.attributes, JOB_ID_ATTRIBUTE: schedule_id}}
    )


def broker(name: str) -> Principal:
    """Who sends a schedule's deliveries: the broker, allowed to send there and nothing else
    (it does not create a queue deleted since)."""
    return Principal(
        id="scheduler", kind="broker", grants=(Grant(pattern=name, actions=(Action.SEND,)),)
    )
