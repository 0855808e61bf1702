"""The stack-wide FIFO dedup secret: made once under KMS, shared by every process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.queues.dedup import DedupHasher
from mqless.domain.queues.service import QueueService
from mqless.storage.data_keys import DataKey
from mqless.storage.dedup_secret import SECRET_KEY, SECRET_PARTITION, DedupSecretStore
from mqless.storage.destinations import QueueRegistry
from mqless.storage.dynamo import from_wire, to_wire
from mqless.storage.envelope import KmsKeyProvider
from mqless_cli.billing import Meter, observing_moto
from tests.component.conftest import Aws

P = ANONYMOUS


def _hasher(aws: Aws) -> DedupHasher:
    """A dedup hasher as a fresh process builds it."""
    return DedupHasher(
        KmsKeyProvider(aws.kms, aws.settings.kms_key_id),
        DedupSecretStore(aws.dynamodb, aws.settings.destinations_table),
    )


def _process(aws: Aws, clock: ManualClock) -> QueueService:
    """A broker with caches of its own, as another Lambda instance has."""
    return assembly.build_queue_service(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, clock),
        time=clock,
    )


def _stored_secret(aws: Aws) -> dict[str, Any]:
    found = aws.dynamodb.get_item(
        TableName=aws.settings.destinations_table,
        Key=to_wire({"pk": SECRET_PARTITION, "sk": SECRET_KEY}),
    )
    return from_wire(found["Item"])


def test_a_retry_through_another_process_is_still_a_duplicate(aws: Aws, clock: ManualClock) -> None:
    # Given a FIFO message sent (content-based dedup) through one process
    first = _process(aws, clock).send(P, "pay.fifo", NewMessage(body=b"10 EUR", group_id="g"))
    # When the client retries the same body through another process
    retry = _process(aws, clock).send(P, "pay.fifo", NewMessage(body=b"10 EUR", group_id="g"))
    # Then the retry is recognised as the first message
    assert (retry.duplicate, retry.message_id) == (True, first.message_id)


def test_two_first_senders_in_a_race_agree_on_one_secret(aws: Aws) -> None:
    # Given two processes that both found no secret, the second of which stores its own
    # secret just after the first read the table (a race, made to happen deterministically)
    first = _hasher(aws)
    other = _hasher(aws)

    class LateProvider(KmsKeyProvider):
        def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
            other.record_id("/queue/q.fifo", "d-1")  # the other one wins meanwhile
            return super().generate_data_key(context)

    late = DedupHasher(
        LateProvider(aws.kms, aws.settings.kms_key_id),
        DedupSecretStore(aws.dynamodb, aws.settings.destinations_table),
    )
    # When the first one, too late to store its own, asks for a record id
    mine = late.record_id("/queue/q.fifo", "d-1")
    # Then it uses the secret that was stored, like every later process
    assert (
        mine == other.record_id("/queue/q.fifo", "d-1") == first.record_id("/queue/q.fifo", "d-1")
    )


def test_a_dedup_id_gives_different_records_in_different_queues(aws: Aws) -> None:
    # Given one hasher / When the same dedup id is hashed for two queues
    hasher = _hasher(aws)
    a = hasher.record_id("/queue/a.fifo", "same")
    b = hasher.record_id("/queue/b.fifo", "same")
    # Then the record ids differ (equal bodies in two queues cannot be linked)
    assert a != b


def test_the_secret_is_stored_only_as_a_kms_blob_for_its_own_purpose(aws: Aws) -> None:
    # Given a secret that a first FIFO sender made
    _hasher(aws).record_id("/queue/q.fifo", "d")
    blob = bytes(_stored_secret(aws)["blob"])
    # When the blob is opened as if it were a message's data key / Then KMS refuses it
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        aws.kms.decrypt(
            CiphertextBlob=blob,
            EncryptionContext={"mqless:purpose": "message-body", "mqless:destination": "q"},
        )
    # And under its own purpose it opens to a 256-bit key
    plain = aws.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"mqless:purpose": "dedup-key"})
    assert len(plain["Plaintext"]) == 32


def test_the_secret_costs_one_kms_call_per_process(aws: Aws, clock: ManualClock) -> None:
    # Given a first process that made the secret, and a second, fresh one
    _process(aws, clock).send(P, "warm.fifo", NewMessage(body=b"warm", group_id="g"))
    second = _process(aws, clock)
    # When the second sends twenty FIFO messages deduplicated on their bodies
    meter = Meter()
    with observing_moto(meter):
        for i in range(20):
            second.send(P, "many.fifo", NewMessage(body=str(i).encode(), group_id="g"))
    # Then KMS was asked for one data key (the bodies') and one Decrypt (the secret)
    kms = {k: v for k, v in meter.usage().requests.items() if k.startswith("kms:")}
    assert kms == {"kms:GenerateDataKey": 1, "kms:Decrypt": 1}
