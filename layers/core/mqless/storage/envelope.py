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

The data keys and their cache are `data_keys.py`; `KmsKeyProvider` opens and makes them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError, Throttled
from mqless.storage.data_keys import DataKey, DataKeyCache, EnvelopeStats, KeyProvider

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from mypy_boto3_kms import KMSClient

FORMAT_VERSION: Final = 0x02
LEGACY_FORMAT_VERSION: Final = 0x01
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_PREFIX_BYTES: Final = 1 + NONCE_BYTES
_HEADER_LENGTH: Final = struct.Struct(">I")

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
        self._keys = DataKeyCache(
            provider,
            clock,
            max_key_age_seconds=max_key_age_seconds,
            max_messages_per_key=max_messages_per_key,
            key_cache_size=key_cache_size,
        )

    @property
    def stats(self) -> EnvelopeStats:
        """A snapshot of the counters."""
        return self._keys.stats

    def encrypt(
        self, body: bytes, *, destination: str, message_id: str, header: bytes = b""
    ) -> Sealed:
        """Seal `header` and `body` (format 0x02) for message `message_id` on `destination`."""
        aead, encrypted_key = self._keys.key_for_sealing(destination)
        return _seal(aead, encrypted_key, body, destination, message_id, header)

    def encrypt_many(
        self, messages: Sequence[tuple[bytes, bytes, str]], *, destination: str
    ) -> list[Sealed]:
        """Seal several (body, header, message id) under one data key (they are stored in
        one item that names that key once)."""
        aead, encrypted_key = self._keys.key_for_sealing(destination, uses=len(messages))
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
        aead = self._keys.key_for_opening(sealed.encrypted_key, destination)
        from cryptography.exceptions import InvalidTag  # loaded with the key (data_keys._aead)

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
        self._keys.count_decrypt()
        if version == LEGACY_FORMAT_VERSION:
            return Opened(version, b"", plaintext)
        return _unframe(version, plaintext)


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
