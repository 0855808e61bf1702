"""A message to send as JSON clients write it: the HTTP API's send and publish bodies and
the WebSocket JSON protocol's `publish` frame share these fields."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqless.domain import models
from mqless.domain.errors import InvalidRequest, PayloadTooLarge
from mqless.domain.messages import NewMessage
from mqless.domain.scheduling import check_rule
from mqless.storage.schedules import Rule

_SCHEDULE_FIELDS = frozenset({"period_seconds", "repeat", "cron"})


class SendMessageRequest(BaseModel):
    """A message to send; only `body` is required."""

    # built with the first request that sends (as the HTTP bodies: `http/models/body.py`)
    model_config = ConfigDict(extra="forbid", defer_build=True)

    body: Annotated[
        str, Field(description="Text (UTF-8), or base64 when `binary` is true. Up to 256 KiB.")
    ]
    binary: Annotated[bool, Field(description="`body` is base64-encoded bytes.")] = False
    attributes: Annotated[
        dict[str, str], Field(description="String headers (at most 50), delivered as sent.")
    ] = Field(default_factory=dict)
    content_type: Annotated[str | None, Field(max_length=256)] = None
    correlation_id: Annotated[str | None, Field(max_length=256)] = None
    reply_to: Annotated[str | None, Field(max_length=256)] = None
    delay_seconds: Annotated[
        int | None,
        Field(
            ge=0,
            le=models.MAX_RETENTION_SECONDS,
            description="Hold back delivery: up to 900 s as a delayed message, longer (up to "
            "the queue's retention) as a scheduled one; with `cron`, after each time it fires.",
        ),
    ] = None
    period_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=models.MAX_RETENTION_SECONDS,
            description="Scheduled: seconds between the deliveries `repeat` asks for.",
        ),
    ] = None
    repeat: Annotated[
        int | None,
        Field(
            ge=0,
            le=1_000_000,
            description="Scheduled: deliver this many times more, `period_seconds` apart "
            "(ActiveMQ's AMQ_SCHEDULED_REPEAT).",
        ),
    ] = None
    cron: Annotated[
        str | None,
        Field(
            max_length=120,
            description="Scheduled: a 5-field cron expression (UTC); each time it fires, the "
            "delay, period and repeat apply (ActiveMQ's AMQ_SCHEDULED_CRON).",
        ),
    ] = None
    ttl_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=models.MAX_RETENTION_SECONDS,
            description="Drop the message if not delivered within this time (of each "
            "delivery, for a scheduled one).",
        ),
    ] = None
    group_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=models.MAX_GROUP_ID,
            description="FIFO queues: messages of a group are delivered in order, one at a time.",
        ),
    ] = None
    dedup_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=models.MAX_DEDUP_ID,
            description="FIFO queues: a repeat within 5 minutes is accepted but not stored again "
            "(default: SHA-256 of the body).",
        ),
    ] = None
    priority: Annotated[
        int | None,
        Field(
            ge=0,
            le=models.MAX_PRIORITY,
            strict=True,
            description="JMS priority 0-9 (default 4). A queue with `max_priority` delivers "
            "higher priorities first; any other queue keeps it on the message only.",
        ),
    ] = None

    @field_validator("attributes")
    @classmethod
    def _attributes_are_text(cls, value: dict[str, str]) -> dict[str, str]:
        # JSON can carry lone surrogates ("\ud800"); they are not text and cannot be stored.
        for text in (*value.keys(), *value.values()):
            if not _is_unicode(text):
                raise ValueError("attribute names and values must be valid Unicode text")
        return value

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_rule(Rule(cron=value))
            except InvalidRequest as exc:
                raise ValueError(exc.message) from None
        return value

    def rule(self) -> Rule | None:
        """The schedule asked for, if any (a delay alone is one)."""
        plain = self.period_seconds is None and self.repeat is None and self.cron is None
        if plain and (self.delay_seconds or 0) <= models.MAX_DELAY_SECONDS:
            return None
        return check_rule(
            Rule(
                delay_ms=(self.delay_seconds or 0) * 1000,
                period_ms=(self.period_seconds or 0) * 1000,
                repeat=self.repeat or 0,
                cron=self.cron,
            )
        )

    def to_scheduled(self) -> tuple[NewMessage, Rule | None]:
        """The message, and the schedule to send it on (None: send it now, or after
        `delay_seconds` as a delayed message)."""
        rule = self.rule()
        return self._message(with_delay=rule is None), rule

    def to_message(self) -> NewMessage:
        """Decode the body and check the limits the model itself cannot express (no
        schedule: batches take none)."""
        if self.rule() is not None:
            raise InvalidRequest(
                "period_seconds, repeat, cron and delays over 900 s schedule a message: send "
                "it alone, not in a batch"
            )
        return self._message(with_delay=True)

    def _message(self, *, with_delay: bool) -> NewMessage:
        if len(self.body) > 2 * models.MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body is over the {models.MAX_BODY_BYTES}-byte limit")
        if self.binary:
            try:
                raw = base64.b64decode(self.body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest("body is not valid base64 (binary is true)") from exc
        else:
            raw = self.body.encode("utf-8", errors="surrogatepass")
        try:
            # this model's own fields only: a batch entry's `id` is not the message's
            fields = self.model_dump(include=_MESSAGE_FIELDS)
            if not with_delay:
                fields["delay_seconds"] = None
            return NewMessage(body=raw, **fields)
        except ValueError as exc:
            raise InvalidRequest(_first_error(exc)) from exc


_MESSAGE_FIELDS = set(SendMessageRequest.model_fields) - {"body", *_SCHEDULE_FIELDS}
"""What a send request hands its message besides the body (not its schedule)."""


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            first = found[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            text = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
            return f"{where}: {text}" if where else text
    return str(exc)
