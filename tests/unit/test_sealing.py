"""Sealed messages: headers sealed with the body, bound to the destination holding them."""

from __future__ import annotations

import hashlib

import pytest

from mqless.domain.errors import IntegrityError
from mqless.domain.ids import new_message_id
from mqless.domain.messages import NewMessage
from mqless.storage.dynamo import Item
from mqless.storage.envelope import FORMAT_VERSION, LEGACY_FORMAT_VERSION, EnvelopeCipher
from mqless.storage.sealing import LEGACY_FIELDS, Headers, Holder, open_item, reseal, seal
from tests.unit.test_envelope import hand_sealed, make_cipher

NOW = 1_800_000_000_000
DAY_MS = 86_400_000
MESSAGE = NewMessage(
    body=b"pay 10 EUR",
    attributes={"region": "eu"},
    content_type="text/plain",
    correlation_id="c-1",
    reply_to="replies",
)


def _sealed_with(
    cipher: EnvelopeCipher, message: NewMessage, *, holder: Holder, content_dedup: bool = False
) -> Item:
    """A stored message's id and sealed fields, as a send to `holder` writes them."""
    message_id = new_message_id(NOW)
    headers = Headers.of(message, content_dedup=content_dedup)
    return {
        "id": message_id,
        **seal(cipher, headers, message.body, holder=holder, message_id=message_id),
    }


def test_headers_are_compact_json_without_defaults() -> None:
    # Given a message with no headers, and one with some
    bare = Headers.of(NewMessage(body=b"x"))
    some = Headers.of(NewMessage(body=b"x", attributes={"k": "v"}, content_type="text/plain"))
    # When they are encoded / Then defaults take no bytes at all, and keys are one letter
    assert bare.encode() == b""
    assert some.encode() == b'{"a":{"k":"v"},"t":"text/plain"}'
    assert Headers.decode(some.encode()) == some


def test_a_sealed_message_opens_only_in_the_destination_that_holds_it() -> None:
    # Given a message sealed for queue "orders"
    cipher, _, _ = make_cipher()
    item = _sealed_with(cipher, MESSAGE, holder=Holder.queue("orders"))
    # When it is opened there / Then body, headers and origin come back
    opened = open_item(cipher, item, holder=Holder.queue("orders"), now_ms=NOW)
    assert (opened.body, opened.headers, opened.origin) == (
        MESSAGE.body,
        Headers.of(MESSAGE),
        "orders",
    )
    # And as another queue, or as the topic of the same name, it fails authentication
    for elsewhere in (Holder.queue("payroll"), Holder.topic("orders")):
        with pytest.raises(IntegrityError):
            open_item(cipher, item, holder=elsewhere, now_ms=NOW)


def test_no_stored_field_can_name_another_holder() -> None:
    # Given a message sealed for "payroll", copied into "orders" with an `origin` that says
    # "payroll" (the field format 0x01 used to bind the body to)
    cipher, _, _ = make_cipher()
    item = dict(_sealed_with(cipher, MESSAGE, holder=Holder.queue("payroll")), origin="payroll")
    # When "orders" opens it / Then the field is ignored and it fails authentication
    with pytest.raises(IntegrityError):
        open_item(cipher, item, holder=Holder.queue("orders"), now_ms=NOW)


def test_sealing_again_moves_a_message_to_its_new_holder_and_keeps_its_origin() -> None:
    # Given a message published to topic "shop.paid"
    cipher, _, _ = make_cipher()
    topic, queue = Holder.topic("shop.paid"), Holder.queue("audit")
    item = _sealed_with(cipher, MESSAGE, holder=topic)
    opened = open_item(cipher, item, holder=topic, now_ms=NOW)
    # When it is sealed again for a subscription's queue
    copy = reseal(cipher, dict(item, receive_count=0), opened, target=queue)
    # Then it opens there, headers intact and the topic as its origin; not in the topic
    moved = open_item(cipher, copy, holder=queue, now_ms=NOW)
    assert (moved.body, moved.headers.attributes, moved.origin) == (
        MESSAGE.body,
        MESSAGE.attributes,
        "shop.paid",
    )
    assert (copy["id"], copy["receive_count"]) == (item["id"], 0)
    with pytest.raises(IntegrityError):
        open_item(cipher, copy, holder=topic, now_ms=NOW)


def test_a_message_sealed_back_where_it_was_first_sent_stores_no_origin() -> None:
    # Given a message of "orders" dead-lettered to "orders.dlq"
    cipher, _, _ = make_cipher()
    source, dlq = Holder.queue("orders"), Holder.queue("orders.dlq")
    item = _sealed_with(cipher, MESSAGE, holder=source)
    dead = reseal(cipher, item, open_item(cipher, item, holder=source, now_ms=NOW), target=dlq)
    in_dlq = open_item(cipher, dead, holder=dlq, now_ms=NOW)
    # When it is redriven back
    back = reseal(cipher, dead, in_dlq, target=source)
    # Then the dead letter named its origin, and back home the message needs no such header
    assert (in_dlq.headers.origin, in_dlq.origin) == ("orders", "orders")
    home = open_item(cipher, back, holder=source, now_ms=NOW)
    assert (home.headers.origin, home.origin) == (None, "orders")
    assert len(back["body"]) == len(item["body"])


def test_sealing_again_uses_cached_keys_not_a_provider_call_per_message() -> None:
    # Given 50 messages of one queue, sealed by this process
    cipher, provider, _ = make_cipher()
    source, target = Holder.queue("orders"), Holder.queue("orders.dlq")
    items = [_sealed_with(cipher, MESSAGE, holder=source) for _ in range(50)]
    calls = (provider.generate_calls, provider.decrypt_calls)
    # When all 50 move to another queue
    for item in items:
        reseal(cipher, item, open_item(cipher, item, holder=source, now_ms=NOW), target=target)
    # Then one data key was made for the target, and nothing was decrypted through KMS
    assert (provider.generate_calls, provider.decrypt_calls) == (calls[0] + 1, calls[1])


def test_content_dedup_shows_the_body_hash_as_the_dedup_id_without_storing_it() -> None:
    # Given a FIFO message deduplicated on its body, and one with a dedup id of its own
    cipher, _, _ = make_cipher()
    fifo = Holder.queue("jobs.fifo")
    hashed = _sealed_with(cipher, MESSAGE, holder=fifo, content_dedup=True)
    given = NewMessage(body=b"x", dedup_id="d-7")
    named = _sealed_with(cipher, given, holder=fifo, content_dedup=True)
    # When they are opened / Then the first's dedup id is its body's SHA-256, the second's its own
    assert open_item(cipher, hashed, holder=fifo, now_ms=NOW).dedup_id == (
        hashlib.sha256(MESSAGE.body).hexdigest()
    )
    assert open_item(cipher, named, holder=fifo, now_ms=NOW).dedup_id == "d-7"


def test_malformed_headers_fail_authentication() -> None:
    # Given a well-sealed message whose header block is not what sealing writes
    cipher, _, _ = make_cipher()
    message_id = new_message_id(NOW)
    sealed = cipher.encrypt(b"x", destination="/queue/q", message_id=message_id, header=b'{"a": 5}')
    item = {"id": message_id, "body": sealed.ciphertext, "dk": sealed.encrypted_key}
    # When it is opened / Then it is refused as unreadable
    with pytest.raises(IntegrityError, match="malformed headers"):
        open_item(cipher, item, holder=Holder.queue("q"), now_ms=NOW)


# --- format 0x01 --------------------------------------------------------------------------


def _legacy_item(sent_ms: int) -> tuple[Item, EnvelopeCipher]:
    """A message as version 0x01 stored it: bare body bound to `origin`, headers in the clear."""
    cipher, provider, _ = make_cipher()
    message_id = new_message_id(sent_ms)
    sealed = hand_sealed(provider, LEGACY_FORMAT_VERSION, b"old body", "orders", message_id)
    item = {
        "id": message_id,
        "origin": "orders",
        "body": sealed.ciphertext,
        "dk": sealed.encrypted_key,
        "bin": False,
        "attrs": {"k": "v"},
        "ctype": "text/plain",
        "corr": "c-9",
        "reply": "back",
        "dedup": "d-9",
        "sent_at": sent_ms,
    }
    return item, cipher


def test_a_format_0x01_message_opens_with_its_clear_headers_and_moves_as_0x02() -> None:
    # Given a message stored by the previous version, dead-lettered before the upgrade
    item, cipher = _legacy_item(NOW - DAY_MS)
    dlq = Holder.queue("orders.dlq")
    # When the queue holding it opens it (the old rule: bound to its `origin`)
    opened = open_item(cipher, item, holder=dlq, now_ms=NOW)
    # Then body and headers come back as they were sent
    assert (opened.body, opened.origin, opened.dedup_id) == (b"old body", "orders", "d-9")
    assert opened.headers.attributes == {"k": "v"}
    assert (opened.headers.correlation_id, opened.headers.reply_to) == ("c-9", "back")
    # And once it moves it is format 0x02, bound to its new holder, with no clear headers
    moved = reseal(cipher, item, opened, target=Holder.queue("orders"))
    assert moved["body"][0] == FORMAT_VERSION
    assert not LEGACY_FIELDS & set(moved)
    back = open_item(cipher, moved, holder=Holder.queue("orders"), now_ms=NOW)
    assert (back.body, back.headers, back.origin) == (b"old body", opened.headers, "orders")


@pytest.mark.parametrize(("age_days", "opens"), [(27, True), (29, False)])
def test_format_0x01_opens_only_within_28_days_of_its_authenticated_send_time(
    age_days: int, opens: bool
) -> None:
    # Given a 0x01 message sent `age_days` ago (its expiry field rewritten to look fresh)
    item, cipher = _legacy_item(NOW - age_days * DAY_MS)
    item["expires_at"] = NOW // 1000 + 3600
    # When it is opened
    try:
        open_item(cipher, item, holder=Holder.queue("orders"), now_ms=NOW)
        opened = True
    except IntegrityError as exc:
        assert "format 0x01" in exc.message
        opened = False
    # Then it opens within the window and is refused after it
    assert opened is opens
