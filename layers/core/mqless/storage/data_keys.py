"""Data keys: what a key provider (KMS) hands out, and the cache an `EnvelopeCipher` keeps
them in (`envelope.py` is the byte format).

A destination seals under one active data key until it has sealed `max_messages_per_key`
messages or is `max_key_age_seconds` old; opened keys are kept (least recently used out)
for as long, keyed by their blob *and* destination. Concurrent misses on one key wait for
one provider call (single flight), so a batch received in parallel on a cold process costs
one Decrypt, not one each.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_DATA_KEY_BYTES: Final = 32
# NIST SP 800-38D caps random 96-bit nonces at 2**32 messages per key; the default of
# 10,000 sits far below it, but a deployment parameter must not be able to pass it.
_MAX_MESSAGES_CEILING: Final = 2**32

PURPOSE: Final = "message-body"


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key: plaintext for this process only, encrypted blob for storage."""

    plaintext: bytes = field(repr=False)
    encrypted_key: bytes


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


def encryption_context(destination: str) -> dict[str, str]:
    """The KMS encryption context of data keys that seal messages held by `destination`
    (`sealing.Holder`: `/queue/<name>` or `/topic/<name>`; format 0x01 used the bare name)."""
    return {"mqless:purpose": PURPOSE, "mqless:destination": destination}


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


class DataKeyCache:
    """The data keys of one cipher: one active key per destination for sealing, opened keys
    for opening, each fetched from the provider once."""

    def __init__(
        self,
        provider: KeyProvider,
        clock: Clock,
        *,
        max_key_age_seconds: float,
        max_messages_per_key: int,
        key_cache_size: int,
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

    def count_decrypt(self) -> None:
        """Count a message opened."""
        with self._lock:
            self._stats.decrypts += 1

    def key_for_sealing(self, destination: str, uses: int = 1) -> tuple[AESGCM, bytes]:
        """The active data key of `destination` (a new one when it is used up or too old),
        counted as used `uses` times more; and its encrypted blob."""

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
            aead = _aead(data_key.plaintext)
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

    def key_for_opening(self, encrypted_key: bytes, destination: str) -> AESGCM:
        """The data key of `encrypted_key` for `destination`, opened by the provider once."""
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
            aead = _aead(plaintext)
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


def _aead(plaintext: bytes) -> AESGCM:
    """AES-256-GCM under a data key. cryptography is imported with the first key made or
    opened, not at import: a request that seals and opens no body (an admin call, an
    authorizer's, a stream batch with no push consumer) does without it (issue 18)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    # A provider that hands back anything but 32 bytes would silently weaken AES-256.
    if len(plaintext) != _DATA_KEY_BYTES:
        raise IntegrityError(f"data key has {len(plaintext)} bytes, expected {_DATA_KEY_BYTES}")
    return AESGCM(plaintext)


def _trim(cache: OrderedDict[_K, _V], size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)
