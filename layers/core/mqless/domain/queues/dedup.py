"""FIFO deduplication records keyed by HMAC-SHA256 under a stack-wide secret held by KMS.

A FIFO send without a `dedup_id` is deduplicated on its body. Keying the dedup record by
SHA-256(body) would let anyone who reads the table, its stream or a backup confirm a
guessed low-entropy body ("yes", an amount): so the record key is
``HMAC-SHA256(secret, len(holder) (u32 BE) || holder || dedup id)``, base64url, for the
client's dedup id and for the body's SHA-256 alike (the dedup semantics stay SQS's). The
holder (`/queue/<name>`) keeps equal bodies in two queues from sharing a record key.

The secret is a 256-bit KMS data key generated once per stack (KMS encryption context
``{"mqless:purpose": "dedup-key"}``); only its KMS blob is stored, as one item of the
destinations table (`storage.dedup_secret`), created with a conditional put so that
concurrent first senders agree on one secret. Each process decrypts it once and keeps it
for its lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import threading
from typing import Final

from mqless.storage.data_keys import KeyProvider
from mqless.storage.dedup_secret import DedupSecretStore

PURPOSE: Final = "dedup-key"


def encryption_context() -> dict[str, str]:
    """The KMS encryption context of the dedup secret (a purpose of its own in the IAM policy)."""
    return {"mqless:purpose": PURPOSE}


class DedupHasher:
    """Turns a dedup id into the opaque key of its dedup record."""

    def __init__(self, provider: KeyProvider, store: DedupSecretStore) -> None:
        self._provider = provider
        self._store = store
        self._lock = threading.Lock()
        self._secret: bytes | None = None

    def record_id(self, holder: str, dedup_id: str) -> str:
        """The dedup record's id for `dedup_id` on `holder`: reveals neither."""
        place = holder.encode()
        message = b"".join((struct.pack(">I", len(place)), place, dedup_id.encode()))
        mac = hmac.digest(self._key(), message, hashlib.sha256)
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, message: bytes) -> bytes:
        """HMAC-SHA256 of a receipt's fields (`receipts.py`): a domain of its own, so no
        receipt MAC is ever a dedup record id or the other way round."""
        return self.mac(b"receipt", message)

    def mac(self, domain: bytes, message: bytes) -> bytes:
        """HMAC-SHA256 under the stack's secret, `domain` keeping each use apart."""
        return hmac.digest(self._key(), domain + b"\x00" + message, hashlib.sha256)

    def _key(self) -> bytes:
        # Held under the lock while KMS answers: this happens once per process.
        with self._lock:
            if self._secret is None:
                self._secret = self._load_or_create()
            return self._secret

    def _load_or_create(self) -> bytes:
        for _ in range(3):
            blob = self._store.blob()
            if blob is not None:
                return self._provider.decrypt_data_key(blob, encryption_context())
            data_key = self._provider.generate_data_key(encryption_context())
            if not self._store.put_if_absent(data_key.encrypted_key):
                continue  # another process stored its secret first: all must use that one
            return data_key.plaintext
        raise RuntimeError("the dedup secret could not be read or stored")
