"""Domain models: how queue settings resolve, and what a new message may hold."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from mqless.domain.errors import InvalidRequest
from mqless.domain.messages import Delivery, NewMessage
from mqless.domain.models import QueueConfig, QueueSettings

NOW = 1_800_000_000_000


# ---- queue settings ------------------------------------------------------------------


def test_a_queue_created_with_no_settings_gets_the_documented_defaults() -> None:
    # Given no settings at all
    # When a config is resolved for "orders"
    config = QueueConfig.from_settings("orders", QueueSettings(), NOW)
    # Then it is a standard queue with SQS-like defaults and a dead-letter queue named for it
    assert config.fifo is False
    assert config.visibility_timeout == 30
    assert config.max_receive_count == 10
    assert config.dead_letter_queue == "orders.dlq"
    assert config.retention_seconds == 4 * 24 * 60 * 60
    assert config.delay_seconds == 0
    assert config.created_at == config.updated_at == NOW


def test_a_fifo_queue_gets_a_fifo_dead_letter_queue() -> None:
    # Given a name with the .fifo suffix
    # When its config is resolved
    config = QueueConfig.from_settings("orders.fifo", QueueSettings(), NOW)
    # Then it is FIFO and so is its default dead-letter queue
    assert config.fifo is True
    assert config.dead_letter_queue == "orders.dlq.fifo"


def test_settings_given_are_kept() -> None:
    # Given explicit settings
    settings = QueueSettings(
        visibility_timeout=0,
        max_receive_count=3,
        dead_letter_queue="graveyard",
        retention_seconds=60,
        delay_seconds=900,
    )
    # When the config is resolved
    config = QueueConfig.from_settings("orders", settings, NOW)
    # Then each one is what was asked for (a zero visibility timeout included)
    assert config.visibility_timeout == 0
    assert config.max_receive_count == 3
    assert config.dead_letter_queue == "graveyard"
    assert config.retention_seconds == 60
    assert config.delay_seconds == 900


def test_no_max_receive_count_means_no_dead_letter_queue() -> None:
    # Given a queue that never gives up on a message
    # When its config is resolved
    config = QueueConfig.from_settings("orders", QueueSettings(max_receive_count=None), NOW)
    # Then it has no dead-letter queue either
    assert config.max_receive_count is None
    assert config.dead_letter_queue is None


@pytest.mark.parametrize("name", ["orders.dlq", "orders.dlq.fifo"])
def test_a_dead_letter_queue_by_default_keeps_what_it_is_given(name: str) -> None:
    # Given a name shaped like a default dead-letter queue
    # When its config is resolved with no explicit max_receive_count
    config = QueueConfig.from_settings(name, QueueSettings(), NOW)
    # Then it never dead-letters further (no chain of .dlq.dlq queues)
    assert config.max_receive_count is None
    assert config.dead_letter_queue is None


def test_a_dead_letter_named_queue_may_still_ask_for_a_limit() -> None:
    # Given a .dlq queue whose owner explicitly sets a limit
    # When its config is resolved
    config = QueueConfig.from_settings("orders.dlq", QueueSettings(max_receive_count=5), NOW)
    # Then the limit is kept and a dead-letter queue is derived for it
    assert config.max_receive_count == 5
    assert config.dead_letter_queue == "orders.dlq.dlq"


def test_a_name_too_long_for_a_derived_dead_letter_queue_is_refused() -> None:
    # Given a valid 80-character name, with the default max_receive_count
    # When its config is resolved
    with pytest.raises(InvalidRequest) as caught:
        QueueConfig.from_settings("x" * 80, QueueSettings(), NOW)
    # Then the caller is told how to make it work
    assert caught.value.code == "invalid_request"
    assert "dead_letter_queue" in caught.value.message


def test_a_long_name_is_fine_without_a_limit() -> None:
    # Given the same long name, but no max_receive_count
    # When its config is resolved
    config = QueueConfig.from_settings("x" * 80, QueueSettings(max_receive_count=None), NOW)
    # Then it is accepted
    assert config.name == "x" * 80


@pytest.mark.parametrize(
    "settings",
    [
        {"visibility_timeout": -1},
        {"visibility_timeout": 12 * 60 * 60 + 1},
        {"max_receive_count": 0},
        {"max_receive_count": 1001},
        {"retention_seconds": 59},
        {"retention_seconds": 14 * 24 * 60 * 60 + 1},
        {"delay_seconds": 901},
        {"colour": "blue"},
    ],
    ids=lambda s: next(iter(s)) + "=" + str(next(iter(s.values()))),
)
def test_out_of_range_queue_settings_are_rejected(settings: dict[str, object]) -> None:
    # Given a setting outside its documented range (or one that does not exist)
    # When the settings are parsed
    # Then validation fails
    with pytest.raises(ValidationError):
        QueueSettings.model_validate(settings)


def test_a_dead_letter_queue_with_an_invalid_name_is_an_invalid_request() -> None:
    # Given a dead-letter queue name with a space in it
    # When the settings are parsed
    with pytest.raises((InvalidRequest, ValidationError)) as caught:
        QueueSettings(dead_letter_queue="dead letters")
    # Then it is refused as bad input
    assert "invalid queue name" in str(caught.value)


# ---- new messages --------------------------------------------------------------------


def test_a_message_may_carry_fifty_attributes() -> None:
    # Given 50 attributes
    attributes = {f"k{i}": "v" for i in range(50)}
    # When a message is made with them
    message = NewMessage(body=b"x", attributes=attributes)
    # Then they are all kept
    assert message.attributes == attributes


@pytest.mark.parametrize(
    "fields",
    [
        {"attributes": {f"k{i}": "v" for i in range(51)}},
        {"attributes": {"": "v"}},
        {"attributes": {"k" * 257: "v"}},
        {"attributes": {"k": "v" * 4097}},
        {"delay_seconds": -1},
        {"delay_seconds": 901},
        {"ttl_seconds": 0},
        {"ttl_seconds": 14 * 24 * 60 * 60 + 1},
        {"group_id": ""},
        {"group_id": "g" * 129},
        {"dedup_id": ""},
        {"dedup_id": "d" * 129},
        {"priority": 10},
        {"priority": -1},
        {"importance": 9},
    ],
    ids=[
        "51-attributes",
        "empty-attribute-name",
        "long-attribute-name",
        "long-attribute-value",
        "negative-delay",
        "delay-over-900",
        "zero-ttl",
        "ttl-over-14-days",
        "empty-group",
        "long-group",
        "empty-dedup",
        "long-dedup",
        "priority-over-9",
        "negative-priority",
        "unknown-field",
    ],
)
def test_a_message_outside_the_limits_is_rejected(fields: dict[str, object]) -> None:
    # Given a message field past its limit
    # When the message is made
    # Then validation fails
    with pytest.raises(ValidationError):
        NewMessage.model_validate({"body": b"x", **fields})


def test_limits_are_inclusive() -> None:
    # Given every field at its largest allowed value
    # When the message is made
    message = NewMessage(
        body=b"x",
        attributes={"k" * 256: "v" * 4096},
        delay_seconds=900,
        ttl_seconds=14 * 24 * 60 * 60,
        group_id="g" * 128,
        dedup_id="d" * 128,
    )
    # Then it is accepted
    assert message.delay_seconds == 900


def test_a_text_body_must_be_utf8() -> None:
    # Given bytes that are not UTF-8, sent as text
    # When the message is made
    # Then validation fails and says to send binary
    with pytest.raises(ValidationError) as caught:
        NewMessage(body=b"\xff\xfe", binary=False)
    assert "binary" in str(caught.value)


def test_a_binary_body_may_hold_any_bytes() -> None:
    # Given bytes that are not UTF-8, flagged binary
    # When the message is made
    message = NewMessage(body=b"\xff\xfe\x00", binary=True)
    # Then the bytes are kept
    assert message.body == b"\xff\xfe\x00"


def test_size_counts_the_body_and_attribute_names_and_values_in_bytes() -> None:
    # Given a body of 10 bytes and an attribute of 2 + 3 UTF-8 bytes
    message = NewMessage(body=b"0123456789", attributes={"\u00e9": "abc"})
    # When its size is measured
    # Then all of it counts, in encoded bytes
    assert message.size() == 10 + 2 + 3


# ---- deliveries ----------------------------------------------------------------------


def _delivery(body: bytes, binary: bool) -> Delivery:
    return Delivery(
        message_id="m",
        receipt="r",
        queue="q",
        body=body,
        binary=binary,
        attributes={},
        receive_count=1,
        sent_at=NOW,
    )


def test_a_text_delivery_travels_as_its_text() -> None:
    # Given a delivered text message
    # When its body is shaped for JSON
    # Then it is the text itself
    assert _delivery("h\u00e9llo".encode(), binary=False).body_text() == "h\u00e9llo"


def test_a_binary_delivery_travels_as_base64() -> None:
    # Given a delivered binary message
    # When its body is shaped for JSON
    # Then it is base64 of the bytes
    text = _delivery(b"\x00\xff", binary=True).body_text()
    assert base64.b64decode(text) == b"\x00\xff"
