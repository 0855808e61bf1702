"""What the headers of a client's STOMP frame mean, checked: the headers each command
requires (`validate`, STOMP 1.0 to 1.2), a SEND's message and its
ActiveMQ scheduling headers, SUBSCRIBE's ack mode, prefetch, durable name and stream
offset, and the ids that become parts of storage keys. A header that breaks a rule is
refused with a StompError (or InvalidRequest) naming it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

from mqless.domain import models, names
from mqless.domain.errors import InvalidRequest
from mqless.domain.ids import check_client_id, is_ascii_digits
from mqless.domain.messages import NewMessage
from mqless.domain.push.consumer import DEFAULT_PREFETCH, MAX_PREFETCH, AckMode
from mqless.domain.scheduling import STOMP_NAMES, check_rule
from mqless.domain.topics.subscription import START_OLDEST
from mqless.storage.schedules import Rule
from mqless.transports.websocket.stomp_frames import (
    CLIENT_COMMANDS,
    Frame,
    StompError,
    check_version,
    clip,
)

_ACK_MODES: Final = frozenset({"auto", "client", "client-individual"})
# One entry per required header; an entry with several names is satisfied by any of them.
_Required = dict[str, tuple[tuple[str, ...], ...]]
_COMMON: Final[_Required] = {
    "SEND": (("destination",),),
    "SUBSCRIBE": (("destination",), ("id",)),
    "UNSUBSCRIBE": (("id",),),
    "BEGIN": (("transaction",),),
    "COMMIT": (("transaction",),),
    "ABORT": (("transaction",),),
}
_REQUIRED: Final[dict[str, _Required]] = {
    # 1.2 acks by the MESSAGE's `ack` value in `id`; 1.1 by message-id and subscription.
    "1.2": {**_COMMON, "ACK": (("id",),), "NACK": (("id",),)},
    "1.1": {
        **_COMMON,
        "ACK": (("message-id",), ("subscription",)),
        "NACK": (("message-id",), ("subscription",)),
    },
    # 1.0 had no subscription ids: UNSUBSCRIBE names the id or the destination.
    "1.0": {
        **_COMMON,
        "SUBSCRIBE": (("destination",),),
        "UNSUBSCRIBE": (("id", "destination"),),
        "ACK": (("message-id",),),
    },
}


# the headers a SEND's message takes its fields from (any other header is an attribute)
MESSAGE_HEADERS: Final = frozenset(
    {
        "destination",
        "receipt",
        "transaction",
        "content-type",
        "content-length",
        "correlation-id",
        "reply-to",
        "JMSXGroupID",
        "AMQ_SCHEDULED_DELAY",
        "AMQ_SCHEDULED_PERIOD",
        "AMQ_SCHEDULED_REPEAT",
        "AMQ_SCHEDULED_CRON",
        "expires",
        "persistent",
        "priority",
    }
)


def validate(frame: Frame, *, version: str = "1.2") -> None:
    """Check a client frame against the spec's required headers for `version`; StompError.

    CONNECT and STOMP need neither ``accept-version`` (absent means a 1.0 client) nor
    ``host``: the spec makes host REQUIRED for 1.2 clients, but @stomp/stompjs sends none
    unless the app adds it, and ActiveMQ accepts that, so requiring it would break them.
    """
    check_version(version)
    command = frame.command
    if command not in CLIENT_COMMANDS:
        raise StompError(f"{command} is not a frame a client may send")
    if version == "1.0" and command == "NACK":
        raise StompError("NACK is not part of STOMP 1.0")
    for alternatives in _REQUIRED[version].get(command, ()):
        if not any(frame.header(name) for name in alternatives):
            wanted = " or ".join(repr(name) for name in alternatives)
            raise StompError(f"{command} frame needs a non-empty {wanted} header")
    if command == "SUBSCRIBE":
        ack = frame.header("ack")
        if ack is not None and ack not in _ACK_MODES:
            raise StompError(
                f"SUBSCRIBE ack must be auto, client or client-individual, not {clip(ack)}"
            )
    if frame.body and command != "SEND":
        raise StompError(f"{command} frame must not have a body; only SEND may")


def check_key_headers(frame: Frame) -> None:
    """Refuse, naming the header, an id too long to be part of a storage key: subscription
    ids (STOMP 1.0 may name a subscription by its destination) and transaction names."""
    headers = ["transaction"]
    if frame.command in ("SUBSCRIBE", "UNSUBSCRIBE"):
        headers.append("id" if frame.header("id") else "destination")
    elif frame.command in ("ACK", "NACK"):
        headers.append("subscription")  # 1.2 acks by an ack id, which parse_ack_id bounds
    for name in headers:
        value = frame.header(name)
        if value is not None:
            check_client_id(value, f"{frame.command} header {name!r}")


def durable_name(frame: Frame) -> str | None:
    """A durable subscription's name (it names its queue too), checked as a queue name."""
    name = frame.header("activemq.subscriptionName")
    if name is None:
        return None
    try:
        return names.validate_queue_name(name)
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"{frame.command} header 'activemq.subscriptionName': {exc.message}"
        ) from exc


def stream_offset(frame: Frame) -> str | None:
    """Where a new durable subscription starts, as RabbitMQ's stream consumers say it
    (`x-stream-offset`): `first` (the oldest message the topic holds), `next` (what is
    published from now on: the default) or `timestamp=<epoch seconds>`."""
    offset = frame.header("x-stream-offset")
    if offset is None or offset == "next":
        return None
    if offset == "first":
        return START_OLDEST
    kind, _, value = offset.partition("=")
    if kind == "timestamp" and value.isdigit() and len(value) <= 12:
        return datetime.fromtimestamp(int(value), UTC).isoformat()
    raise InvalidRequest(
        f"{frame.command} header 'x-stream-offset': {offset[:64]!r} is not 'first', 'next' "
        "or 'timestamp=<epoch seconds>' (offsets and 'last' are not supported)"
    )


def required(frame: Frame, name: str) -> str:
    value = frame.header(name)
    if not value:
        raise StompError(f"{frame.command} frame needs a non-empty {name!r} header")
    return value


def ack_mode(value: str | None) -> AckMode:
    if value is None or value == "auto":
        return "auto"
    if value == "client":
        return "client"
    if value == "client-individual":
        return "client-individual"
    raise StompError(f"ack must be auto, client or client-individual, not {value[:50]!r}")


def prefetch(frame: Frame) -> int:
    for name in ("activemq.prefetchSize", "prefetch-count"):
        value = frame.header(name)
        if value is None:
            continue
        if not is_ascii_digits(value) or len(value) > 7 or not 1 <= int(value) <= MAX_PREFETCH:
            raise StompError(f"{name} must be a whole number from 1 to {MAX_PREFETCH}")
        return int(value)
    return DEFAULT_PREFETCH


def message_of(frame: Frame, now_ms: int) -> NewMessage:
    """The message a SEND frame carries."""
    attributes = {name: value for name, value in frame.headers if name not in MESSAGE_HEADERS}
    # frame.headers keeps repeats; the first occurrence of a header is the one that counts
    for name, value in reversed(frame.headers):
        if name in attributes:
            attributes[name] = value
    ttl: int | None = None
    raw_expires = frame.header("expires")
    if raw_expires is not None and raw_expires != "0":
        if not is_ascii_digits(raw_expires) or len(raw_expires) > 15:
            raise StompError("expires must be a time in epoch milliseconds (0: never)")
        ttl = max(1, math.ceil((int(raw_expires) - now_ms) / 1000))
        ttl = min(ttl, models.MAX_RETENTION_SECONDS)
    priority: int | None = None
    raw_priority = frame.header("priority")
    if raw_priority is not None:
        if not is_ascii_digits(raw_priority) or len(raw_priority) > 1:
            raise StompError(f"priority must be a whole number from 0 to {models.MAX_PRIORITY}")
        priority = int(raw_priority)
    try:
        message = NewMessage(
            body=frame.body,
            attributes=attributes,
            content_type=frame.header("content-type"),
            correlation_id=frame.header("correlation-id"),
            reply_to=frame.header("reply-to"),
            group_id=frame.header("JMSXGroupID"),
            ttl_seconds=ttl,
            priority=priority,
        )
    except ValueError as exc:
        raise InvalidRequest(f"SEND: {_first_error(exc)}") from exc
    message.check_size()
    return message


def schedule_of(frame: Frame) -> Rule | None:
    """The ActiveMQ scheduling headers of a SEND as a rule (None: deliver at once)."""
    numbers: dict[str, int] = {}
    for name in ("AMQ_SCHEDULED_DELAY", "AMQ_SCHEDULED_PERIOD", "AMQ_SCHEDULED_REPEAT"):
        raw = frame.header(name)
        if raw is None:
            continue
        if not is_ascii_digits(raw) or len(raw) > 12:
            what = "a count" if name == "AMQ_SCHEDULED_REPEAT" else "milliseconds"
            raise StompError(
                f"{name} must be a whole, non-negative number ({what}), not {raw[:40]!r}"
            )
        numbers[name] = int(raw)
    cron = frame.header("AMQ_SCHEDULED_CRON")
    if not numbers and cron is None:
        return None
    return check_rule(
        Rule(
            delay_ms=numbers.get("AMQ_SCHEDULED_DELAY", 0),
            period_ms=numbers.get("AMQ_SCHEDULED_PERIOD", 0),
            repeat=numbers.get("AMQ_SCHEDULED_REPEAT", 0),
            cron=cron,
        ),
        STOMP_NAMES,
    )


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        text = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return f"{where}: {text}"
    return str(exc)
