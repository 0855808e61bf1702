"""Receipts: they round-trip, cannot be forged or altered, and anything malformed is an
InvalidRequest, nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqless.domain.errors import InvalidRequest
from mqless.domain.queues.receipts import MAX_RECEIPT_LENGTH, Lease, decode_receipt

SECRET = b"s" * 32


def sign(message: bytes) -> bytes:
    return hmac.digest(SECRET, message, hashlib.sha256)


def other_sign(message: bytes) -> bytes:
    return hmac.digest(b"another broker's secret", message, hashlib.sha256)


queue_names = st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True)
groups = st.text(
    alphabet=st.characters(blacklist_characters="\x1f", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=128,
)
numbers = st.integers(min_value=0, max_value=2**31 - 1)


def _forge(raw: bytes) -> str:
    """A receipt-shaped string around arbitrary bytes."""
    return "r2." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_receipt_decodes_to_the_lease_it_names() -> None:
    # Given a lease on slot 3 of segment 12 of shard 1 of queue "orders"
    lease = Lease("orders", 1, "s", "12", 3, 987654321)
    # When its receipt is decoded for the same queue
    decoded = decode_receipt(lease.encode(sign), queue="orders", sign=sign)
    # Then the same lease comes back
    assert decoded == lease


@given(
    queue=queue_names, shard=st.integers(0, 63), seq=numbers, slot=st.integers(0, 15), token=numbers
)
def test_any_standard_receipt_round_trips(
    queue: str, shard: int, seq: int, slot: int, token: int
) -> None:
    """Given any lease of a standard queue (queue name, shard, segment, slot, token)
    When its receipt is encoded and decoded for the same queue
    Then the same lease comes back
    """
    lease = Lease(queue, shard, "s", str(seq), slot, token)
    assert decode_receipt(lease.encode(sign), queue=queue, sign=sign) == lease


@given(queue=queue_names, group=groups, position=st.integers(0, 11), token=numbers)
def test_any_fifo_receipt_round_trips(queue: str, group: str, position: int, token: int) -> None:
    """Given any lease of a FIFO queue's group (any group id but the separator), position and token
    When its receipt is encoded and decoded for the same queue
    Then the same lease comes back
    """
    lease = Lease(queue, 0, "g", group, position, token)
    assert decode_receipt(lease.encode(sign), queue=queue, sign=sign) == lease


def test_an_encoded_receipt_is_opaque_url_safe_text() -> None:
    """Given a lease whose queue and group hold ".", "-", "_", "/" and "+"
    When its receipt is encoded
    Then it starts with the r2. version and holds only URL-safe characters
    """
    text = Lease("a.b-c_d", 0, "g", "acct/7+x", 0, 1).encode(sign)
    assert text.startswith("r2.")
    assert all(c.isalnum() or c in "-_." for c in text)


def test_a_receipt_another_broker_signed_is_refused() -> None:
    # Given a receipt made with another secret
    text = Lease("orders", 0, "s", "0", 0, 5).encode(other_sign)
    # When it is decoded
    # Then it is refused before anything is looked up
    with pytest.raises(InvalidRequest, match="not one this broker gave out"):
        decode_receipt(text, queue="orders", sign=sign)


def test_a_receipt_forged_without_a_mac_is_refused() -> None:
    # Given a genuine receipt's fields, re-encoded without its MAC
    genuine = Lease("orders", 0, "s", "4", 2, 1111).encode(sign)
    payload = genuine[3:]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    forged = _forge("\x1f".join(raw.split("\x1f")[:-1]).encode())
    # When it is decoded
    # Then it is refused
    with pytest.raises(InvalidRequest):
        decode_receipt(forged, queue="orders", sign=sign)


def test_a_receipt_whose_token_was_changed_is_refused() -> None:
    # Given a genuine receipt, decoded, its token changed and its old MAC kept
    genuine = Lease("orders", 0, "s", "4", 2, 1111).encode(sign)
    payload = genuine[3:]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    fields = raw.split("\x1f")
    fields[5] = "1112"
    forged = _forge("\x1f".join(fields).encode())
    # When it is decoded
    # Then the MAC no longer matches, and it is refused
    with pytest.raises(InvalidRequest):
        decode_receipt(forged, queue="orders", sign=sign)


def test_a_receipt_for_another_queue_is_refused() -> None:
    """Given a genuine receipt of queue orders
    When it is decoded for queue payments
    Then it is refused, saying it belongs to queue 'orders'
    """
    text = Lease("orders", 0, "s", "0", 0, 5).encode(sign)
    with pytest.raises(InvalidRequest, match="belongs to queue 'orders'"):
        decode_receipt(text, queue="payments", sign=sign)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "r2.",
        "r1.abc",
        "r2.!!!",
        "r2." + "A" * MAX_RECEIPT_LENGTH,
        _forge(b"\xff\xfe"),
        _forge(b"s\x1forders\x1f0"),
    ],
)
def test_malformed_receipts_are_invalid_requests(text: str) -> None:
    """Given a receipt that is empty, an old or bare version prefix, not base64, over the length
    limit, not UTF-8, or short of fields
    When it is decoded
    Then it is refused with InvalidRequest
    """
    with pytest.raises(InvalidRequest):
        decode_receipt(text, queue="orders", sign=sign)


@given(raw=st.binary(max_size=300))
def test_any_bytes_in_a_receipt_are_refused_cleanly(raw: bytes) -> None:
    """Given any bytes wrapped as an r2. receipt
    When it is decoded
    Then it is refused with InvalidRequest, nothing else
    """
    with pytest.raises(InvalidRequest):
        decode_receipt(_forge(raw), queue="orders", sign=sign)


def test_a_receipt_whose_mac_is_not_ascii_is_refused_cleanly() -> None:
    """Given a genuine receipt whose MAC field has an "é" typed into it (fuzzing found a TypeError)
    When it is decoded
    Then it is refused with InvalidRequest
    """
    # Reproduction (fuzzing): hmac.compare_digest refuses non-ASCII str; a receipt whose
    # MAC field had an é typed into it raised TypeError instead of InvalidRequest
    genuine = Lease("orders", 0, "s", "0", 0, 1).encode(sign)
    payload = genuine[3:]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    fields = raw.split("\x1f")
    fields[6] = "é" + fields[6][1:]
    with pytest.raises(InvalidRequest):
        decode_receipt(_forge("\x1f".join(fields).encode()), queue="orders", sign=sign)
