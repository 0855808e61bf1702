"""Receipt handles: they round-trip, and anything malformed is an InvalidRequest, nothing else."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqless.errors import InvalidRequest
from mqless.receipts import MAX_RECEIPT_LENGTH, Receipt, decode_receipt

LEASE = "0123456789abcdef0123456789abcdef"
KEY = "M#01a21adf-d866-7ee5-bab4-c568653afcfe"

# what the broker itself puts in a receipt: no unit separator, never empty
parts = st.text(
    alphabet=st.characters(blacklist_characters="\x1f", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=60,
)
queue_names = st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True)


def _forge(raw: bytes) -> str:
    """A receipt-shaped string around arbitrary bytes."""
    return "r1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_receipt_decodes_to_what_was_encoded() -> None:
    # Given a receipt for a message of queue "orders"
    receipt = Receipt("orders", KEY, LEASE)
    # When it is encoded and decoded for the same queue
    decoded = decode_receipt(receipt.encode(), queue="orders")
    # Then the queue, key and lease come back
    assert decoded == receipt


@given(queue=queue_names, key=parts, lease=parts)
def test_any_receipt_the_broker_makes_round_trips(queue: str, key: str, lease: str) -> None:
    # Given any queue, a message key (they all start with M#) and a lease id
    receipt = Receipt(queue, "M#" + key, lease)
    # When it is encoded and decoded
    decoded = decode_receipt(receipt.encode(), queue=queue)
    # Then it is the same receipt
    assert decoded == receipt


def test_an_encoded_receipt_is_opaque_url_safe_text() -> None:
    # Given a receipt whose parts hold characters that URLs treat specially
    receipt = Receipt("a.b-c_d", "M#5:x/y+z#00000000000000000001", LEASE)
    # When it is encoded
    text = receipt.encode()
    # Then it is one URL-safe token with a version prefix
    assert text.startswith("r1.")
    assert all(c.isalnum() or c in "-_." for c in text)


def test_a_receipt_for_another_queue_is_refused() -> None:
    # Given a receipt from queue "orders"
    text = Receipt("orders", KEY, LEASE).encode()
    # When it is presented to queue "invoices"
    with pytest.raises(InvalidRequest) as caught:
        decode_receipt(text, queue="invoices")
    # Then the error names the queue it belongs to
    assert caught.value.code == "invalid_request"
    assert "orders" in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "r1.",
        "r2." + Receipt("orders", KEY, LEASE).encode()[3:],
        "not a receipt",
        "r1.!!!!",
        "r1.\u00e9\u00e9\u00e9\u00e9",
        _forge(b"orders\x1f" + KEY.encode()),  # no lease
        _forge(b"orders\x1f" + KEY.encode() + b"\x1f" + LEASE.encode() + b"\x1fextra"),
        _forge(b"orders\x1f\x1f" + LEASE.encode()),  # empty key
        _forge(b"orders\x1fG#group\x1f" + LEASE.encode()),  # not a message key
        _forge(b"orders\x1f" + KEY.encode() + b"\x1f\xff\xfe"),  # not UTF-8
        "r1." + "A" * MAX_RECEIPT_LENGTH,
    ],
    ids=[
        "empty",
        "prefix-only",
        "other-version",
        "free-text",
        "bad-base64",
        "non-ascii",
        "two-parts",
        "four-parts",
        "empty-part",
        "group-key",
        "not-utf8",
        "too-long",
    ],
)
def test_a_malformed_receipt_is_an_invalid_request(text: str) -> None:
    # Given a string that is not a receipt this broker made
    # When it is decoded
    with pytest.raises(InvalidRequest) as caught:
        decode_receipt(text, queue="orders")
    # Then the caller is told it is malformed
    assert caught.value.code == "invalid_request"


@given(text=st.text(max_size=2000))
def test_arbitrary_text_decodes_or_is_an_invalid_request(text: str) -> None:
    # Given any string at all
    # When it is decoded as a receipt
    try:
        receipt = decode_receipt(text, queue="orders")
    except InvalidRequest:
        return
    # Then, if it was accepted, it names a message of that queue
    assert receipt.queue == "orders"
    assert receipt.key.startswith("M#")


@given(raw=st.binary(max_size=700))
def test_arbitrary_bytes_in_receipt_shape_decode_or_are_an_invalid_request(raw: bytes) -> None:
    # Given any bytes wrapped the way receipts are wrapped
    text = _forge(raw)
    # When it is decoded
    try:
        receipt = decode_receipt(text, queue="orders")
    except InvalidRequest:
        return
    # Then, if accepted, it has three non-empty parts and names a message of "orders"
    assert receipt.queue == "orders"
    assert receipt.key.startswith("M#")
    assert receipt.lease_id


@given(suffix=st.text(max_size=400))
def test_arbitrary_text_after_the_prefix_decodes_or_is_an_invalid_request(suffix: str) -> None:
    # Given the receipt prefix followed by anything
    # When it is decoded
    # Then it is either accepted or refused with InvalidRequest; nothing else escapes
    try:
        receipt = decode_receipt("r1." + suffix, queue="orders")
    except InvalidRequest:
        return
    assert receipt.key.startswith("M#")
