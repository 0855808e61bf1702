"""Envelope encryption of messages: AES-256-GCM under cached KMS data keys.

A message is sealed under a 256-bit data key from KMS GenerateDataKey. The item stores two
binary attributes, never the plaintext key:

* ``dk``: the KMS ciphertext blob of the data key, bound by the KMS encryption context
  ``{"mqless:purpose": "message-body", "mqless:destination": <destination>}``;
* ``body``: ``version (1 byte, 0x02) || nonce (12 bytes) || AES-GCM ciphertext || tag (16)``.

The plaintext of format 0x02 carries the message's headers with its body, so that tables,
streams and backups hold only ciphertext for both:
``len(header) (u32 BE) || header || body``. What the header holds is the caller's business
(`sealing.py` puts a compact JSON block there); this module only frames it.

The AES-GCM associated data authenticates the message's place in the broker:
``version (1 byte) || len(destination) (u32 BE) || destination (UTF-8)
|| len(message_id) (u32 BE) || message_id (UTF-8)``. Under 0x02 the destination is the one
that holds the item (`sealing.Holder`), and moving a message means sealing it again. A
ciphertext copied to another message id or destination, or a changed version byte, fails
authentication.

Format 0x01 (before headers were sealed) has the same framing and associated data, with the
bare body as plaintext and the destination the message was first sent to; it is opened,
never written (see `sealing.py` for how long, and why).

The message id lives in the AAD rather than in the KMS context because the KMS context is
fixed per data key, and a data key is shared by up to ``max_messages_per_key`` messages of
one destination: that sharing is what makes a send cost well under 0.01 KMS calls.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError, Throttled

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

FORMAT_VERSION: Final = 0x02
LEGACY_FORMAT_VERSION: Final = 0x01
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_PREFIX_BYTES: Final = 1 + NONCE_BYTES
_DATA_KEY_BYTES: Final = 32
_HEADER_LENGTH: Final = struct.Struct(">I")
# NIST SP 800-38D caps random 96-bit nonces at 2**32 messages per key; the default of
# 10,000 sits far below it, but a deployment parameter must not be able to pass it.
_MAX_MESSAGES_CEILING: Final = 2**32

PURPOSE: Final = "message-body"

# KMS says these are transient and safe to retry; botocore already retried them, so the
# caller gets Throttled (a 429/503 with Retry-After) rather than a 500.
_KMS_TRANSIENT_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "LimitExceededException",
        "KMSInternalException",
        "DependencyTimeoutException",
    }
)
# The blob does not open under this key and context: tampered, moved to another
# destination, or sealed under another CMK. All of them mean the stored data is not ours.
_KMS_INTEGRITY_CODES: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key: plaintext for this process only, encrypted blob for storage."""

    plaintext: bytes = field(repr=False)
    encrypted_key: bytes


@dataclass(frozen=True, slots=True)
class Sealed:
    """An encrypted message as stored: the framed ciphertext and the KMS-encrypted data key."""

    ciphertext: bytes
    encrypted_key: bytes

    @property
    def version(self) -> int | None:
        """The format version byte (None for an empty ciphertext); not yet authenticated."""
        return self.ciphertext[0] if self.ciphertext else None


@dataclass(frozen=True, slots=True)
class Opened:
    """An authenticated plaintext: its format version, header block and body."""

    version: int
    header: bytes
    body: bytes = field(repr=False)


@dataclass(slots=True)
class EnvelopeStats:
    """Counters of a cipher: calls made to the key provider and cache outcomes."""

    generate_calls: int = 0
    decrypt_calls: int = 0
    encrypts: int = 0
    decrypts: int = 0
    decrypt_cache_hits: int = 0


class KeyProvider(Protocol):
    """Issues data keys and opens their encrypted blobs (KMS on AWS and under moto)."""

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        """Return a fresh 256-bit data key bound to `context`."""
        ...

    def decrypt_data_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        """Return the plaintext of `blob`; IntegrityError if it does not open under `context`."""
        ...


class KmsKeyProvider:
    """KeyProvider over a KMS symmetric key, with KMS errors mapped to the core's."""

    def __init__(self, kms_client: KMSClient, key_id: str) -> None:
        self._kms = kms_client
        self._key_id = key_id

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        """Call GenerateDataKey (AES_256) with `context` as the encryption context."""
        try:
            response = self._kms.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context
            )
        except ClientError as exc:
            raise _map_kms_error(exc) from exc
        return DataKey(plaintext=response["Plaintext"], encrypted_key=response["CiphertextBlob"])

    def decrypt_data_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        """Call Decrypt pinned to our key id, with `context` as the encryption context."""
        try:
            # KeyId pins the CMK: a blob sealed under some other key is refused, not opened.
            response = self._kms.decrypt(
                CiphertextBlob=blob, KeyId=self._key_id, EncryptionContext=context
            )
        except ClientError as exc:
            raise _map_kms_error(exc) from exc
        return response["Plaintext"]


def _map_kms_error(exc: ClientError) -> Exception:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _KMS_TRANSIENT_CODES:
        return Throttled(f"KMS is throttling or unavailable ({code}); retry shortly")
    if code in _KMS_INTEGRITY_CODES:
        return IntegrityError(
            f"message data key failed authentication ({code}): wrong destination or tampered"
        )
    # Anything else (access denied, disabled key, bad key id) is a deployment fault, not
    # something the client can fix; let it surface as is.
    return exc


def encryption_context(destination: str) -> dict[str, str]:
    """The KMS encryption context of data keys that seal messages held by `destination`
    (`sealing.Holder`: `/queue/<name>` or `/topic/<name>`; format 0x01 used the bare name)."""
    return {"mqless:purpose": PURPOSE, "mqless:destination": destination}


def _associated_data(version: int, destination: str, message_id: str) -> bytes:
    # Binds a body to its format version, destination and message id.
    dest = destination.encode("utf-8")
    mid = message_id.encode("utf-8")
    # Length prefixes make the encoding injective: ("a.b", "c") and ("a", "b.c") differ.
    return b"".join(
        (
            bytes((version,)),
            struct.pack(">I", len(dest)),
            dest,
            struct.pack(">I", len(mid)),
            mid,
        )
    )


@dataclass(slots=True)
class _ActiveKey:
    aead: AESGCM
    encrypted_key: bytes
    created_ms: int
    uses: int


@dataclass(frozen=True, slots=True)
class _OpenedKey:
    aead: AESGCM
    opened_ms: int


_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")


class EnvelopeCipher:
    """Seals and opens message bodies, caching data keys so KMS is rarely called."""

    def __init__(
        self,
        provider: KeyProvider,
        clock: Clock,
        *,
        max_key_age_seconds: float = 300,
        max_messages_per_key: int = 10_000,
        key_cache_size: int = 256,
    ) -> None:
        if max_key_age_seconds <= 0:
            raise ValueError("max_key_age_seconds must be positive")
        if not 1 <= max_messages_per_key <= _MAX_MESSAGES_CEILING:
            raise ValueError(f"max_messages_per_key must be in 1..{_MAX_MESSAGES_CEILING}")
        if key_cache_size < 1:
            raise ValueError("key_cache_size must be at least 1")
        self._provider = provider
        self._clock = clock
        self._max_age_ms = int(max_key_age_seconds * 1000)
        self._max_messages = max_messages_per_key
        self._cache_size = key_cache_size
        # One lock guards both caches, the in-flight table and the counters. Provider calls
        # happen outside it, so one slow KMS call never stalls cache hits in other threads.
        self._lock = threading.Lock()
        self._active: OrderedDict[str, _ActiveKey] = OrderedDict()
        self._opened: OrderedDict[tuple[bytes, str], _OpenedKey] = OrderedDict()
        # Single flight: concurrent misses on one key wait for one provider call, so a
        # batch received in parallel on a cold process costs one Decrypt, not one each.
        self._in_flight: dict[Hashable, threading.Event] = {}
        self._stats = EnvelopeStats()

    @property
    def stats(self) -> EnvelopeStats:
        """A snapshot of the counters."""
        with self._lock:
            return replace(self._stats)

    def encrypt(
        self, body: bytes, *, destination: str, message_id: str, header: bytes = b""
    ) -> Sealed:
        """Seal `header` and `body` (format 0x02) for message `message_id` on `destination`."""
        aead, encrypted_key = self._key_for_sealing(destination)
        return _seal(aead, encrypted_key, body, destination, message_id, header)

    def encrypt_many(
        self, messages: Sequence[tuple[bytes, bytes, str]], *, destination: str
    ) -> list[Sealed]:
        """Seal several (body, header, message id) under one data key (they are stored in
        one item that names that key once)."""
        aead, encrypted_key = self._key_for_sealing(destination, uses=len(messages))
        return [
            _seal(aead, encrypted_key, body, destination, message_id, header)
            for body, header, message_id in messages
        ]

    def decrypt(self, sealed: Sealed, *, destination: str, message_id: str) -> Opened:
        """Open a sealed message (format 0x02 or 0x01); IntegrityError if altered or moved."""
        ciphertext = sealed.ciphertext
        # Reject malformed input before spending a KMS call on it.
        if len(ciphertext) < _PREFIX_BYTES + TAG_BYTES:
            raise IntegrityError("message body failed authentication: ciphertext is truncated")
        version = ciphertext[0]
        if version not in (FORMAT_VERSION, LEGACY_FORMAT_VERSION):
            raise IntegrityError(
                f"message body failed authentication: unknown format version {version}"
            )
        if not sealed.encrypted_key:
            raise IntegrityError("message body failed authentication: data key is missing")
        aead = self._key_for_opening(sealed.encrypted_key, destination)
        nonce = ciphertext[1:_PREFIX_BYTES]
        try:
            plaintext = aead.decrypt(
                nonce,
                ciphertext[_PREFIX_BYTES:],
                _associated_data(version, destination, message_id),
            )
        except InvalidTag:
            raise IntegrityError(
                "message body failed authentication: altered, or stored under another "
                "message id or destination"
            ) from None
        with self._lock:
            self._stats.decrypts += 1
        if version == LEGACY_FORMAT_VERSION:
            return Opened(version, b"", plaintext)
        return _unframe(version, plaintext)

    # -- caches ------------------------------------------------------------------------------

    def _key_for_sealing(self, destination: str, uses: int = 1) -> tuple[AESGCM, bytes]:
        def lookup() -> tuple[AESGCM, bytes] | None:
            active = self._active.get(destination)
            if (
                active is None
                or not self._fresh(active.created_ms)
                or (active.uses + uses > self._max_messages)
            ):
                return None
            # Counted under the lock, before sealing, so threads never overrun the bound.
            active.uses += uses
            self._active.move_to_end(destination)
            self._stats.encrypts += uses
            return active.aead, active.encrypted_key

        def load() -> tuple[AESGCM, bytes]:
            with self._lock:
                self._stats.generate_calls += 1
            context = encryption_context(destination)
            data_key = self._provider.generate_data_key(context)
            aead = AESGCM(_checked_key(data_key.plaintext))
            now = self._clock.now_ms()
            with self._lock:
                self._active[destination] = _ActiveKey(aead, data_key.encrypted_key, now, uses=uses)
                self._active.move_to_end(destination)
                _trim(self._active, self._cache_size)
                # The sender already knows this key: a receiver in the same warm process
                # (the local runtime, or a function that does both) needs no Decrypt.
                self._remember_opened(data_key.encrypted_key, destination, aead, now)
                self._stats.encrypts += uses
            return aead, data_key.encrypted_key

        return self._single_flight(("seal", destination), lookup, load)

    def _key_for_opening(self, encrypted_key: bytes, destination: str) -> AESGCM:
        # Keyed by destination too: a cached key must never vouch for a KMS context that
        # KMS itself did not check for this blob.
        cache_key = (encrypted_key, destination)

        def lookup() -> AESGCM | None:
            opened = self._opened.get(cache_key)
            if opened is None:
                return None
            if not self._fresh(opened.opened_ms):
                # Expiry bounds how long a plaintext key lives here and how long a revoked
                # grant or disabled CMK still decrypts on a warm process.
                del self._opened[cache_key]
                return None
            self._opened.move_to_end(cache_key)
            self._stats.decrypt_cache_hits += 1
            return opened.aead

        def load() -> AESGCM:
            with self._lock:
                self._stats.decrypt_calls += 1
            plaintext = self._provider.decrypt_data_key(
                encrypted_key, encryption_context(destination)
            )
            aead = AESGCM(_checked_key(plaintext))
            with self._lock:
                self._remember_opened(encrypted_key, destination, aead, self._clock.now_ms())
            return aead

        return self._single_flight(("open", *cache_key), lookup, load)

    def _single_flight(
        self, flight: Hashable, lookup: Callable[[], _T | None], load: Callable[[], _T]
    ) -> _T:
        while True:
            with self._lock:
                found = lookup()
                if found is not None:
                    return found
                leader = flight not in self._in_flight
                if leader:
                    self._in_flight[flight] = threading.Event()
                done = self._in_flight[flight]
            if not leader:
                # Another thread is loading this key; look again once it finishes (if it
                # failed, or the key is already used up, this thread loads next).
                done.wait()
                continue
            try:
                return load()
            finally:
                with self._lock:
                    del self._in_flight[flight]
                done.set()

    def _remember_opened(
        self, encrypted_key: bytes, destination: str, aead: AESGCM, now: int
    ) -> None:
        cache_key = (encrypted_key, destination)
        self._opened[cache_key] = _OpenedKey(aead, now)
        self._opened.move_to_end(cache_key)
        _trim(self._opened, self._cache_size)

    def _fresh(self, since_ms: int) -> bool:
        return self._clock.now_ms() - since_ms < self._max_age_ms


def _unframe(version: int, plaintext: bytes) -> Opened:
    # Authenticated, so malformed framing means a writer's bug, not an attack; still refused.
    if len(plaintext) < _HEADER_LENGTH.size:
        raise IntegrityError("message failed authentication: plaintext has no header length")
    (length,) = _HEADER_LENGTH.unpack_from(plaintext)
    end = _HEADER_LENGTH.size + length
    if end > len(plaintext):
        raise IntegrityError("message failed authentication: header runs past the plaintext")
    return Opened(version, plaintext[_HEADER_LENGTH.size : end], plaintext[end:])


def _seal(
    aead: AESGCM,
    encrypted_key: bytes,
    body: bytes,
    destination: str,
    message_id: str,
    header: bytes,
) -> Sealed:
    plaintext = b"".join((_HEADER_LENGTH.pack(len(header)), header, body))
    # A fresh random 96-bit nonce per message. With at most max_messages_per_key
    # (10,000 by default) messages per key, the chance that two nonces collide is
    # about n**2 / 2**97 ~ 1e-21, far below NIST's 2**-32 bound for random nonces.
    nonce = os.urandom(NONCE_BYTES)
    sealed = aead.encrypt(
        nonce, plaintext, _associated_data(FORMAT_VERSION, destination, message_id)
    )
    return Sealed(
        ciphertext=b"".join((bytes((FORMAT_VERSION,)), nonce, sealed)),
        encrypted_key=encrypted_key,
    )


def _checked_key(plaintext: bytes) -> bytes:
    # A provider that hands back anything but 32 bytes would silently weaken AES-256.
    if len(plaintext) != _DATA_KEY_BYTES:
        raise IntegrityError(f"data key has {len(plaintext)} bytes, expected {_DATA_KEY_BYTES}")
    return plaintext


def _trim(cache: OrderedDict[_K, _V], size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)
