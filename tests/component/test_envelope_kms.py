"""Envelope encryption against KMS as moto serves it, counting the real API calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from mqless.domain.clock import ManualClock
from mqless.domain.errors import IntegrityError, Throttled
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider, Sealed

BODY = b"x" * 1024


class KmsCalls:
    """Counts KMS operations as botocore sends them (not as our own code claims)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.kms.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def kms(aws: None) -> Any:
    return boto3.client("kms")


@pytest.fixture
def key_id(kms: Any) -> str:
    return str(kms.create_key(Description="mqless bodies")["KeyMetadata"]["KeyId"])


def test_a_body_round_trips_through_a_moto_kms_key(kms: Any, key_id: str) -> None:
    # Given a sender and a receiver (separate caches, as in two Lambda functions)
    sender = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    receiver = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    # When a body is sealed by one and opened by the other
    sealed = sender.encrypt(BODY, destination="orders", message_id="m-1")
    opened = receiver.decrypt(sealed, destination="orders", message_id="m-1")
    # Then the body comes back and the item holds only ciphertext
    assert opened.body == BODY
    assert BODY not in sealed.ciphertext


def test_a_thousand_sends_cost_at_most_one_generate_data_key(kms: Any, key_id: str) -> None:
    # Given a cipher over real (moto) KMS calls that are counted on the wire
    calls = KmsCalls(kms)
    cipher = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    # When 1,000 bodies are sealed for one destination
    for i in range(1000):
        cipher.encrypt(BODY, destination="orders", message_id=f"m-{i}")
    # Then KMS saw one GenerateDataKey and nothing else
    assert calls.counts == Counter({"GenerateDataKey": 1})


def test_a_receiver_makes_one_decrypt_call_per_data_key(kms: Any, key_id: str) -> None:
    # Given 200 bodies sealed under one data key
    sender = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    sealed = [sender.encrypt(BODY, destination="orders", message_id=f"m-{i}") for i in range(200)]
    calls = KmsCalls(kms)
    receiver = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    # When a warm receiver opens them all
    for i, s in enumerate(sealed):
        receiver.decrypt(s, destination="orders", message_id=f"m-{i}")
    # Then KMS saw one Decrypt
    assert calls.counts == Counter({"Decrypt": 1})


def test_kms_refuses_the_data_key_for_another_destination(kms: Any, key_id: str) -> None:
    # Given a body sealed for "orders"
    sender = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    sealed = sender.encrypt(BODY, destination="orders", message_id="m-1")
    provider = KmsKeyProvider(kms, key_id)
    # When the data key is opened with the context of "invoices" / Then KMS refuses it
    with pytest.raises(IntegrityError, match="InvalidCiphertextException"):
        provider.decrypt_data_key(
            sealed.encrypted_key,
            {"mqless:purpose": "message-body", "mqless:destination": "invoices"},
        )


def test_a_body_opened_as_another_destination_fails_authentication(kms: Any, key_id: str) -> None:
    # Given a body sealed for "orders" and a fresh receiver
    sender = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    sealed = sender.encrypt(BODY, destination="orders", message_id="m-1")
    receiver = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    # When it is opened as a message of "invoices" / Then it fails authentication
    with pytest.raises(IntegrityError):
        receiver.decrypt(sealed, destination="invoices", message_id="m-1")


def test_a_tampered_data_key_blob_fails_authentication(kms: Any, key_id: str) -> None:
    # Given a body whose KMS blob was altered in storage
    sender = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    sealed = sender.encrypt(BODY, destination="orders", message_id="m-1")
    blob = bytearray(sealed.encrypted_key)
    blob[-1] ^= 0x01
    receiver = EnvelopeCipher(KmsKeyProvider(kms, key_id), ManualClock())
    # When a receiver opens it / Then it fails authentication
    with pytest.raises(IntegrityError):
        receiver.decrypt(
            Sealed(sealed.ciphertext, bytes(blob)), destination="orders", message_id="m-1"
        )


# KMS cannot be made to throttle under moto, so the adapter's error map is checked with
# botocore's Stubber on a real client (no network, no moto).
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ThrottlingException", Throttled),
        ("LimitExceededException", Throttled),
        ("KMSInternalException", Throttled),
        ("DependencyTimeoutException", Throttled),
        ("InvalidCiphertextException", IntegrityError),
        ("IncorrectKeyException", IntegrityError),
    ],
)
@pytest.mark.parametrize("operation", ["generate_data_key", "decrypt"])
def test_kms_errors_map_to_the_core_exceptions(
    code: str, expected: type[Exception], operation: str
) -> None:
    # Given a KMS client whose next call fails with `code`
    client = boto3.client(
        "kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    provider = KmsKeyProvider(client, "alias/mqless")
    context = {"mqless:purpose": "message-body", "mqless:destination": "orders"}
    with Stubber(client) as stub:
        stub.add_client_error(operation, service_error_code=code)
        # When the provider makes that call / Then the core's exception comes out
        with pytest.raises(expected):
            if operation == "generate_data_key":
                provider.generate_data_key(context)
            else:
                provider.decrypt_data_key(b"blob", context)


def test_other_kms_errors_surface_unchanged() -> None:
    # Given a KMS client that denies access (a deployment fault, not the client's)
    client = boto3.client(
        "kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    provider = KmsKeyProvider(client, "alias/mqless")
    with Stubber(client) as stub:
        stub.add_client_error("generate_data_key", service_error_code="AccessDeniedException")
        # When the provider calls KMS / Then the botocore error is not disguised
        with pytest.raises(client.exceptions.ClientError, match="AccessDeniedException"):
            provider.generate_data_key({"mqless:purpose": "message-body"})


def test_the_adapter_sends_the_context_and_key_id_to_kms() -> None:
    # Given a KMS client that expects exact parameters
    client = boto3.client(
        "kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    provider = KmsKeyProvider(client, "alias/mqless")
    context = {"mqless:purpose": "message-body", "mqless:destination": "orders"}
    with Stubber(client) as stub:
        stub.add_response(
            "generate_data_key",
            {"Plaintext": b"k" * 32, "CiphertextBlob": b"blob", "KeyId": "k"},
            {"KeyId": "alias/mqless", "KeySpec": "AES_256", "EncryptionContext": context},
        )
        stub.add_response(
            "decrypt",
            {"Plaintext": b"k" * 32, "KeyId": "k"},
            {"CiphertextBlob": b"blob", "KeyId": "alias/mqless", "EncryptionContext": context},
        )
        # When it generates and then decrypts a data key
        data_key = provider.generate_data_key(context)
        plaintext = provider.decrypt_data_key(data_key.encrypted_key, context)
        # Then both calls carried the context (and Decrypt the key id), as Stubber checked
        stub.assert_no_pending_responses()
    assert plaintext == data_key.plaintext == b"k" * 32
