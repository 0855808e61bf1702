"""Envelope encryption throughput and KMS calls per message under moto."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import boto3
from moto import mock_aws

from mqless.domain.clock import SystemClock
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider, Sealed

SENDS = 10_000
SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024}
# Holding 10,000 sealed 64 KiB bodies would take 640 MB; the receive pass cycles over at
# most this much, which costs the same per message (same data key, same cache).
RETAINED_BYTES = 64 * 1024 * 1024
# KMS list price, us-east-1: $0.03 per 10,000 requests.
KMS_USD_PER_REQUEST = 0.03 / 10_000


def count_kms_calls(client: Any) -> Counter[str]:
    """Count KMS operations as botocore sends them, so the figures do not trust our counters."""
    calls: Counter[str] = Counter()

    def hook(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.kms.*", hook)
    return calls


def run(label: str, size: int, kms: Any, key_id: str) -> dict[str, float | str]:
    body = os.urandom(size)
    calls = count_kms_calls(kms)
    # Sender and receiver are separate, as the publishing and consuming functions are.
    sender = EnvelopeCipher(KmsKeyProvider(kms, key_id), SystemClock())
    receiver = EnvelopeCipher(KmsKeyProvider(kms, key_id), SystemClock())
    ids = [f"m-{i}" for i in range(SENDS)]
    keep = max(1, min(SENDS, RETAINED_BYTES // size))
    sealed: list[Sealed] = []

    started = time.perf_counter()
    for message_id in ids:
        s = sender.encrypt(body, destination="bench", message_id=message_id)
        if len(sealed) < keep:
            sealed.append(s)
    encrypt_s = time.perf_counter() - started
    sends_calls = sum(calls.values())

    started = time.perf_counter()
    for i in range(SENDS):
        opened = receiver.decrypt(sealed[i % keep], destination="bench", message_id=ids[i % keep])
    decrypt_s = time.perf_counter() - started
    assert opened.body == body
    receive_calls = sum(calls.values()) - sends_calls

    return {
        "body": label,
        "encrypt msg/s": SENDS / encrypt_s,
        "decrypt msg/s": SENDS / decrypt_s,
        "KMS calls/send": sends_calls / SENDS,
        "KMS calls/receive": receive_calls / SENDS,
        "KMS $/1M msgs": (sends_calls + receive_calls) / SENDS * 1_000_000 * KMS_USD_PER_REQUEST,
        "calls": f"{dict(calls)}",
    }


def main() -> None:
    """Print one row per body size."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with mock_aws():
        kms = boto3.client("kms")
        key_id = kms.create_key(Description="mqless bench")["KeyMetadata"]["KeyId"]
        rows = [run(label, size, kms, key_id) for label, size in SIZES.items()]

    print(f"envelope encryption, {SENDS:,} sends per size, moto KMS in-process, one thread")
    header = (
        "body",
        "encrypt msg/s",
        "decrypt msg/s",
        "KMS calls/send",
        "KMS calls/receive",
        "KMS $/1M msgs",
        "calls",
    )
    print(" | ".join(f"{h:>17}" for h in header))
    for row in rows:
        cells = []
        for h in header:
            value = row[h]
            if isinstance(value, float):
                cells.append(f"{value:>17,.0f}" if value >= 100 else f"{value:>17.5f}")
            else:
                cells.append(f"{value:>17}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
