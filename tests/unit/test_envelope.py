"""Envelope encryption of messages, against an in-memory key provider (no network)."""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from mqless.domain.clock import ManualClock
from mqless.domain.errors import IntegrityError, Throttled
from mqless.storage.data_keys import DataKey, encryption_context
from mqless.storage.envelope import (
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    EnvelopeCipher,
    Opened,
    Sealed,
)

DEST = "orders"
MSG = "m-0001"
BODY = b'{"order": 42, "items": ["widget", "gadget"], "note": "sixty-four bytes of body"}'


class FakeKeyProvider:
    """KMS in miniature: data keys wrapped under a master key with the context as AAD."""

    def __init__(self, *, delay_seconds: float = 0.0) -> None:
        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self._delay = delay_seconds
        self._lock = threading.Lock()
        self.generate_calls = 0
        self.decrypt_calls = 0
        self.fail_next: Exception | None = None

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        with self._lock:
            self.generate_calls += 1
            failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure
        time.sleep(self._delay)
        plaintext = os.urandom(32)
        nonce = os.urandom(12)
        blob = nonce + self._master.encrypt(nonce, plaintext, _canonical(context))
        return DataKey(plaintext=plaintext, encrypted_key=blob)

    def decrypt_data_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        with self._lock:
            self.decrypt_calls += 1
        time.sleep(self._delay)
        try:
            return self._master.decrypt(blob[:12], blob[12:], _canonical(context))
        except (InvalidTag, ValueError):
            raise IntegrityError("data key does not open under this context") from None


def _canonical(context: Mapping[str, str]) -> bytes:
    return repr(sorted(context.items())).encode()


def make_cipher(
    provider: FakeKeyProvider | None = None, clock: ManualClock | None = None, **options: int
) -> tuple[EnvelopeCipher, FakeKeyProvider, ManualClock]:
    provider = provider or FakeKeyProvider()
    clock = clock or ManualClock()
    return EnvelopeCipher(provider, clock, **options), provider, clock


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[position] ^= mask
    return bytes(out)


def documented_aad(version: int, destination: str, message_id: str) -> bytes:
    """The associated data exactly as envelope.py's docstring gives it."""
    dest, mid = destination.encode(), message_id.encode()
    return (
        bytes((version,)) + struct.pack(">I", len(dest)) + dest + struct.pack(">I", len(mid)) + mid
    )


def hand_sealed(
    provider: FakeKeyProvider, version: int, plaintext: bytes, destination: str, message_id: str
) -> Sealed:
    """A ciphertext built by hand from the documented format (how format 0x01 was written)."""
    data_key = provider.generate_data_key(encryption_context(destination))
    nonce = os.urandom(12)
    aad = documented_aad(version, destination, message_id)
    body = AESGCM(data_key.plaintext).encrypt(nonce, plaintext, aad)
    return Sealed(bytes((version,)) + nonce + body, data_key.encrypted_key)


# --- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", os.urandom(256 * 1024), bytes(range(256)) * 4, "zß水🐍".encode()],
    ids=["empty", "256KiB", "every-byte-value", "utf8"],
)
def test_decrypt_returns_the_body_that_was_encrypted(body: bytes) -> None:
    # Given a cipher
    cipher, _, _ = make_cipher()
    # When a body is sealed and opened with the same destination and message id
    sealed = cipher.encrypt(body, destination=DEST, message_id=MSG)
    opened = cipher.decrypt(sealed, destination=DEST, message_id=MSG)
    # Then the same bytes come back, with an empty header
    assert opened == Opened(FORMAT_VERSION, b"", body)
    assert opened.body == body


@pytest.mark.parametrize("header", [b"", b"{}", b'{"a":{"k":"v"}}', os.urandom(70_000)])
def test_a_header_travels_sealed_beside_the_body(header: bytes) -> None:
    # Given a cipher
    cipher, _, _ = make_cipher()
    # When a header and a body are sealed together and opened
    sealed = cipher.encrypt(BODY, destination=DEST, message_id=MSG, header=header)
    opened = cipher.decrypt(sealed, destination=DEST, message_id=MSG)
    # Then both come back apart, as they went in
    assert (opened.header, opened.body) == (header, BODY)


def test_ciphertext_is_laid_out_as_documented_and_hides_header_and_body() -> None:
    # Given a cipher
    cipher, provider, _ = make_cipher()
    header = b'{"a":{"colour":"teal"}}'
    # When a header and body are sealed
    sealed = cipher.encrypt(BODY, destination=DEST, message_id=MSG, header=header)
    # Then the stored bytes are version 0x02 || nonce || ciphertext || tag ...
    assert sealed.ciphertext[0] == FORMAT_VERSION == 0x02
    assert len(sealed.ciphertext) == 1 + 12 + 4 + len(header) + len(BODY) + 16
    # ... that open, with the documented associated data, to u32 BE length || header || body
    key = provider.decrypt_data_key(sealed.encrypted_key, encryption_context(DEST))
    plaintext = AESGCM(key).decrypt(
        sealed.ciphertext[1:13],
        sealed.ciphertext[13:],
        documented_aad(0x02, DEST, MSG),
    )
    assert plaintext == struct.pack(">I", len(header)) + header + BODY
    # ... and hold neither in the clear
    for secret in (BODY, b"widget", header, b"teal"):
        assert secret not in sealed.ciphertext


def test_the_same_body_sealed_twice_gives_different_ciphertexts() -> None:
    # Given a cipher and one body
    cipher, _, _ = make_cipher()
    # When it is sealed twice under the same data key
    first = cipher.encrypt(BODY, destination=DEST, message_id=MSG)
    second = cipher.encrypt(BODY, destination=DEST, message_id=MSG)
    # Then the nonces, and so the ciphertexts, differ
    assert first.encrypted_key == second.encrypted_key
    assert first.ciphertext[1:13] != second.ciphertext[1:13]
    assert first.ciphertext != second.ciphertext


# --- data key reuse and rotation ----------------------------------------------------------


def test_a_data_key_is_reused_within_its_age_and_count_bounds() -> None:
    # Given a cipher with the default bounds (300 s, 10,000 messages)
    cipher, provider, clock = make_cipher()
    # When 1,000 bodies are sealed for one destination over 299 seconds
    keys = set()
    for i in range(1000):
        keys.add(cipher.encrypt(BODY, destination=DEST, message_id=f"m-{i}").encrypted_key)
        if i % 100 == 99:
            clock.advance(33)
    # Then one data key was generated and used for all of them
    assert provider.generate_calls == 1
    assert len(keys) == 1
    assert cipher.stats.generate_calls == 1
    assert cipher.stats.encrypts == 1000


def test_a_data_key_is_replaced_once_it_reaches_max_age() -> None:
    # Given a cipher whose key for a destination was generated now
    cipher, provider, clock = make_cipher(max_key_age_seconds=300)
    old = cipher.encrypt(BODY, destination=DEST, message_id="m-1")
    # When the key is exactly max_key_age old and another body is sealed
    clock.advance(300)
    new = cipher.encrypt(BODY, destination=DEST, message_id="m-2")
    # Then a new data key was generated, and the old message still opens
    assert provider.generate_calls == 2
    assert new.encrypted_key != old.encrypted_key
    assert cipher.decrypt(old, destination=DEST, message_id="m-1").body == BODY


def test_a_data_key_is_replaced_after_sealing_max_messages() -> None:
    # Given a cipher that allows three messages per data key
    cipher, provider, _ = make_cipher(max_messages_per_key=3)
    # When seven bodies are sealed for one destination
    sealed = [cipher.encrypt(BODY, destination=DEST, message_id=f"m-{i}") for i in range(7)]
    # Then keys were used for 3, 3 and 1 messages, in that order
    per_key = Counter(s.encrypted_key for s in sealed)
    assert sorted(per_key.values(), reverse=True) == [3, 3, 1]
    assert sealed[2].encrypted_key != sealed[3].encrypted_key
    assert provider.generate_calls == 3


def test_each_destination_gets_its_own_data_key() -> None:
    # Given a cipher
    cipher, provider, _ = make_cipher()
    # When bodies are sealed for two destinations
    a = cipher.encrypt(BODY, destination="orders", message_id=MSG)
    b = cipher.encrypt(BODY, destination="invoices", message_id=MSG)
    # Then each destination's key was generated under its own KMS context
    assert a.encrypted_key != b.encrypted_key
    assert provider.generate_calls == 2


def test_a_failed_key_generation_is_not_cached_and_the_next_send_retries() -> None:
    # Given a provider that throttles the first GenerateDataKey
    cipher, provider, _ = make_cipher()
    provider.fail_next = Throttled("slow down")
    # When a send fails and another follows
    with pytest.raises(Throttled):
        cipher.encrypt(BODY, destination=DEST, message_id="m-1")
    sealed = cipher.encrypt(BODY, destination=DEST, message_id="m-2")
    # Then the second send generated a key and works
    assert provider.generate_calls == 2
    assert cipher.decrypt(sealed, destination=DEST, message_id="m-2").body == BODY


@pytest.mark.parametrize(
    "options",
    [
        {"max_messages_per_key": 0},
        {"max_messages_per_key": 2**32 + 1},
        {"max_key_age_seconds": 0},
        {"key_cache_size": 0},
    ],
)
def test_bounds_outside_the_safe_range_are_refused(options: dict[str, int]) -> None:
    # Given bounds that would disable caching or exceed the random-nonce limit
    # When a cipher is built with them / Then it is refused
    with pytest.raises(ValueError):
        EnvelopeCipher(FakeKeyProvider(), ManualClock(), **options)


# --- tampering --------------------------------------------------------------------------

_SENDER, _ = make_cipher()[:2]
_SEALED = _SENDER.encrypt(BODY, destination=DEST, message_id=MSG)


@given(position=st.integers(0, len(_SEALED.ciphertext) - 1), mask=st.integers(1, 255))
def test_changing_any_byte_of_the_ciphertext_fails_authentication(position: int, mask: int) -> None:
    # Given a sealed body
    tampered = Sealed(flip(_SEALED.ciphertext, position, mask), _SEALED.encrypted_key)
    # When any one byte of it is changed and it is opened / Then it fails authentication
    with pytest.raises(IntegrityError):
        _SENDER.decrypt(tampered, destination=DEST, message_id=MSG)


@given(length=st.integers(0, len(_SEALED.ciphertext) - 1))
def test_a_truncated_ciphertext_fails_authentication(length: int) -> None:
    # Given a sealed body cut short anywhere
    truncated = Sealed(_SEALED.ciphertext[:length], _SEALED.encrypted_key)
    # When it is opened / Then it fails authentication
    with pytest.raises(IntegrityError):
        _SENDER.decrypt(truncated, destination=DEST, message_id=MSG)


@pytest.mark.parametrize("version", [0x00, 0x03, 0xFF])
def test_an_unknown_format_version_fails_before_any_key_is_fetched(version: int) -> None:
    # Given a sealed body whose version byte is not one this code knows
    sender, _, _ = make_cipher()
    sealed = sender.encrypt(BODY, destination=DEST, message_id=MSG)
    unknown = Sealed(bytes((version,)) + sealed.ciphertext[1:], sealed.encrypted_key)
    receiver, provider, _ = make_cipher()
    # When a receiver opens it
    with pytest.raises(IntegrityError, match="unknown format version"):
        receiver.decrypt(unknown, destination=DEST, message_id=MSG)
    # Then no KMS call was spent on it
    assert provider.decrypt_calls == 0


def test_a_body_moved_to_another_message_id_fails_authentication() -> None:
    # Given a body sealed for one message id
    cipher, _, _ = make_cipher()
    sealed = cipher.encrypt(BODY, destination=DEST, message_id="m-1")
    # When it is opened as another message / Then it fails authentication
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.decrypt(sealed, destination=DEST, message_id="m-2")


def test_a_body_moved_to_another_destination_fails_authentication() -> None:
    # Given a body sealed for "orders" and opened there once (so its key is cached)
    cipher, _, _ = make_cipher()
    sealed = cipher.encrypt(BODY, destination="orders", message_id=MSG)
    assert cipher.decrypt(sealed, destination="orders", message_id=MSG).body == BODY
    # When it is opened as a message of "invoices" / Then it fails authentication
    with pytest.raises(IntegrityError):
        cipher.decrypt(sealed, destination="invoices", message_id=MSG)


class ContextBlindKeyProvider(FakeKeyProvider):
    """A provider that ignores the context, to show the AAD binds the destination alone."""

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        return super().generate_data_key({})

    def decrypt_data_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        return super().decrypt_data_key(blob, {})


_CONTEXT_BLIND = make_cipher(provider=ContextBlindKeyProvider())[0]


def test_the_destination_is_bound_by_the_body_itself_not_only_by_kms() -> None:
    # Given a provider that would hand the data key out under any context
    cipher, _, _ = make_cipher(provider=ContextBlindKeyProvider())
    sealed = cipher.encrypt(BODY, destination="orders", message_id=MSG)
    # When the body is opened as a message of "invoices" / Then GCM still refuses it
    with pytest.raises(IntegrityError, match="message body failed authentication"):
        cipher.decrypt(sealed, destination="invoices", message_id=MSG)


def test_a_cached_key_does_not_skip_the_context_check_for_another_destination() -> None:
    # Given a receiver that has opened a key for "orders"
    sender, provider, _ = make_cipher()
    receiver, _, _ = make_cipher(provider=provider)
    sealed = sender.encrypt(BODY, destination="orders", message_id=MSG)
    receiver.decrypt(sealed, destination="orders", message_id=MSG)
    # When the same encrypted key is presented for "invoices"
    with pytest.raises(IntegrityError):
        receiver.decrypt(sealed, destination="invoices", message_id=MSG)
    # Then the provider was asked (and refused) rather than the cache answering
    assert provider.decrypt_calls == 2


def test_a_swapped_encrypted_key_fails_authentication() -> None:
    # Given two bodies of one destination sealed under different data keys
    cipher, _, _ = make_cipher(max_messages_per_key=1)
    first = cipher.encrypt(BODY, destination=DEST, message_id="m-1")
    second = cipher.encrypt(BODY, destination=DEST, message_id="m-2")
    assert first.encrypted_key != second.encrypted_key
    # When the first body is stored with the second one's key / Then it fails authentication
    with pytest.raises(IntegrityError):
        cipher.decrypt(
            Sealed(first.ciphertext, second.encrypted_key), destination=DEST, message_id="m-1"
        )


@pytest.mark.parametrize("mutate", [lambda k: flip(k, 20), lambda k: k[:-1], lambda k: b""])
def test_a_damaged_encrypted_key_fails_authentication(mutate: object) -> None:
    # Given a body whose encrypted data key was altered in storage
    sender, provider, _ = make_cipher()
    receiver, _, _ = make_cipher(provider=provider)
    sealed = sender.encrypt(BODY, destination=DEST, message_id=MSG)
    damaged = Sealed(sealed.ciphertext, mutate(sealed.encrypted_key))  # type: ignore[operator]
    # When a receiver opens it / Then it fails authentication
    with pytest.raises(IntegrityError):
        receiver.decrypt(damaged, destination=DEST, message_id=MSG)


@given(text=st.text(min_size=2, max_size=30), cuts=st.tuples(st.integers(), st.integers()))
def test_where_destination_ends_and_message_id_begins_is_authenticated(
    text: str, cuts: tuple[int, int]
) -> None:
    # Given one string cut in two places: ("a.b", "c") and ("a", ".bc"), say
    first, second = (cut % (len(text) + 1) for cut in cuts)
    if first == second:
        return
    sealed = _CONTEXT_BLIND.encrypt(BODY, destination=text[:first], message_id=text[first:])
    # When a body sealed for one cut is opened with the other / Then it fails (the
    # associated data is length-prefixed, so no two pairs encode alike)
    with pytest.raises(IntegrityError):
        _CONTEXT_BLIND.decrypt(sealed, destination=text[:second], message_id=text[second:])


def test_a_header_length_that_runs_past_the_plaintext_fails_authentication() -> None:
    # Given a well-authenticated 0x02 ciphertext whose framing is wrong (a writer's bug)
    cipher, provider, _ = make_cipher()
    bad = hand_sealed(provider, 0x02, struct.pack(">I", 100) + b"short", DEST, MSG)
    # When it is opened / Then it is refused rather than split somewhere arbitrary
    with pytest.raises(IntegrityError, match="header runs past"):
        cipher.decrypt(bad, destination=DEST, message_id=MSG)


# --- format 0x01 (written by earlier versions, still opened) -----------------------------


def test_a_format_0x01_body_still_opens_under_its_old_rule() -> None:
    # Given a body sealed as version 0x01 wrote it: the bare body, bound to its origin
    sender, provider, _ = make_cipher()
    old = hand_sealed(provider, LEGACY_FORMAT_VERSION, BODY, "orders", MSG)
    receiver, _, _ = make_cipher(provider=provider)
    # When it is opened / Then the body comes back, with no header and its version
    assert receiver.decrypt(old, destination="orders", message_id=MSG) == Opened(0x01, b"", BODY)


@pytest.mark.parametrize(("written", "relabelled"), [(0x01, 0x02), (0x02, 0x01)])
def test_a_ciphertext_relabelled_as_the_other_version_fails_authentication(
    written: int, relabelled: int
) -> None:
    # Given a ciphertext of one format version whose version byte was changed to the other
    cipher, provider, _ = make_cipher()
    sealed = (
        hand_sealed(provider, 0x01, BODY, DEST, MSG)
        if written == 0x01
        else cipher.encrypt(BODY, destination=DEST, message_id=MSG)
    )
    relabelled_sealed = Sealed(bytes((relabelled,)) + sealed.ciphertext[1:], sealed.encrypted_key)
    # When it is opened / Then it fails (the version byte is in the associated data)
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.decrypt(relabelled_sealed, destination=DEST, message_id=MSG)


# --- the decrypted-key cache ------------------------------------------------------------


def test_a_receiver_opens_each_data_key_through_the_provider_once() -> None:
    # Given 50 bodies sealed under one data key by a sender in another process
    sender, provider, clock = make_cipher()
    receiver, _, _ = make_cipher(provider=provider, clock=clock)
    sealed = [sender.encrypt(BODY, destination=DEST, message_id=f"m-{i}") for i in range(50)]
    # When a receiver opens them all
    for i, s in enumerate(sealed):
        assert receiver.decrypt(s, destination=DEST, message_id=f"m-{i}").body == BODY
    # Then the provider decrypted the data key once
    assert provider.decrypt_calls == 1
    assert receiver.stats.decrypt_calls == 1
    assert receiver.stats.decrypt_cache_hits == 49


def test_a_sender_opens_its_own_messages_without_the_provider() -> None:
    # Given a process that sealed a body (as the local runtime does before delivering it)
    cipher, provider, _ = make_cipher()
    sealed = cipher.encrypt(BODY, destination=DEST, message_id=MSG)
    # When the same process opens it
    assert cipher.decrypt(sealed, destination=DEST, message_id=MSG).body == BODY
    # Then the key it generated was already known
    assert provider.decrypt_calls == 0


def test_a_decrypted_key_expires_after_max_key_age() -> None:
    # Given a receiver that opened a data key
    sender, provider, clock = make_cipher(max_key_age_seconds=300)
    receiver, _, _ = make_cipher(provider=provider, clock=clock, max_key_age_seconds=300)
    sealed = sender.encrypt(BODY, destination=DEST, message_id=MSG)
    receiver.decrypt(sealed, destination=DEST, message_id=MSG)
    # When the key has been cached for 299 s, then for 300 s
    clock.advance(299)
    receiver.decrypt(sealed, destination=DEST, message_id=MSG)
    calls_within_age = provider.decrypt_calls
    clock.advance(1)
    receiver.decrypt(sealed, destination=DEST, message_id=MSG)
    # Then it is reused within the age and fetched again after it
    assert calls_within_age == 1
    assert provider.decrypt_calls == 2


def test_the_decrypted_key_cache_evicts_the_least_recently_used_key() -> None:
    # Given a receiver that caches two keys and bodies under three keys
    sender, provider, _ = make_cipher()
    receiver, _, _ = make_cipher(provider=provider, key_cache_size=2)
    a, b, c = (sender.encrypt(BODY, destination=d, message_id=MSG) for d in ("a", "b", "c"))
    # When it opens a, b, a (a is now most recent), then c (evicting b), then a and b
    for sealed, dest in [(a, "a"), (b, "b"), (a, "a"), (c, "c"), (a, "a")]:
        receiver.decrypt(sealed, destination=dest, message_id=MSG)
    calls_before_b = provider.decrypt_calls
    receiver.decrypt(b, destination="b", message_id=MSG)
    # Then a stayed cached while b had to be fetched again
    assert calls_before_b == 3
    assert provider.decrypt_calls == 4


def test_kms_context_names_the_purpose_and_destination() -> None:
    # Given / When the context for a destination is built / Then it names both
    assert encryption_context("orders") == {
        "mqless:purpose": "message-body",
        "mqless:destination": "orders",
    }


# --- threads ----------------------------------------------------------------------------


def test_concurrent_senders_and_receivers_round_trip_and_respect_the_count_bound() -> None:
    # Given a sender and a receiver shared by 16 threads, a slow provider (so threads race
    # on cache misses) and a small per-key bound (so keys rotate under contention)
    provider = FakeKeyProvider(delay_seconds=0.002)
    sender, _, clock = make_cipher(provider=provider, max_messages_per_key=25)
    receiver, _, _ = make_cipher(provider=provider, clock=clock)
    jobs = [(f"q{i % 3}", f"m-{i}", os.urandom(i % 300)) for i in range(1600)]

    def seal(job: tuple[str, str, bytes]) -> Sealed:
        dest, mid, body = job
        return sender.encrypt(body, destination=dest, message_id=mid)

    def open_(pair: tuple[tuple[str, str, bytes], Sealed]) -> bytes:
        (dest, mid, _), sealed = pair
        return receiver.decrypt(sealed, destination=dest, message_id=mid).body

    # When they seal and then open all bodies concurrently
    with ThreadPoolExecutor(max_workers=16) as pool:
        sealed = list(pool.map(seal, jobs))
        opened = list(pool.map(open_, zip(jobs, sealed, strict=True)))

    # Then every body comes back intact
    assert opened == [body for _, _, body in jobs]
    # And no data key sealed more than 25 messages, and none was generated needlessly
    per_key = Counter(s.encrypted_key for s in sealed)
    per_destination = Counter(dest for dest, _, _ in jobs)
    assert max(per_key.values()) <= 25
    expected_keys = sum(-(-n // 25) for n in per_destination.values())
    assert sender.stats.generate_calls == len(per_key) == expected_keys
    # And the receiver fetched each distinct key exactly once despite the races
    assert receiver.stats.decrypt_calls == len(per_key)
    assert sender.stats.encrypts == receiver.stats.decrypts == 1600
