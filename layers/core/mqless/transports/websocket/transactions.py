"""STOMP transactions (BEGIN/COMMIT/ABORT): the SEND, ACK and NACK frames they hold.

A transaction holds its frames as items of the connection (`storage/transactions.py`); a
held SEND is sealed like a stored message, its fields (attributes and the rest) with its
body (AES-GCM under a KMS data key, the connection, transaction and position bound in its
associated data), so the table holds no plaintext. COMMIT applies the held frames in
order (`Sessions.commit`); ABORT and disconnecting drop them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from mqless.domain.errors import Conflict, InvalidRequest
from mqless.domain.ids import check_client_id
from mqless.domain.messages import NewMessage
from mqless.storage.connections import ConnectionInfo, held_frame_id
from mqless.storage.dynamo import Item
from mqless.storage.envelope import LEGACY_FORMAT_VERSION, Sealed
from mqless.storage.sealing import BodyCipher
from mqless.storage.transactions import HeldFrames

MAX_OPEN_TRANSACTIONS: Final = 10
MAX_TRANSACTION_FRAMES: Final = 100
TRANSACTION_KEY_DESTINATION: Final = "mqless.transactions"  # one data key for held frames


class UnknownTransaction(Conflict):
    code = "unknown_transaction"


@dataclass(frozen=True)
class HeldSend:
    destination: str
    message: NewMessage


@dataclass(frozen=True)
class HeldSettle:
    fields: dict[str, Any]
    """An ack or nack as the client gave it (`sessions.Settle`'s fields)."""


class Transactions:
    """Begin, hold frames in, read back and end a connection's transactions."""

    def __init__(self, store: HeldFrames, cipher: BodyCipher) -> None:
        self._store = store
        self._cipher = cipher

    def begin(self, info: ConnectionInfo, transaction: str) -> None:
        check_client_id(transaction, "transaction name")  # no longer name reaches a key
        connection_id = info.connection.id
        if self._store.open_count(connection_id) >= MAX_OPEN_TRANSACTIONS:
            raise InvalidRequest(
                f"a connection may have at most {MAX_OPEN_TRANSACTIONS} open transactions"
            )
        if not self._store.begin(connection_id, transaction):
            raise Conflict(f"transaction {transaction!r} has already begun")

    def hold_send(
        self, info: ConnectionInfo, transaction: str, destination: str, message: NewMessage
    ) -> None:
        """Hold a SEND (checked already: a COMMIT applies all or nothing)."""
        position = self._next_position(info, transaction)
        sealed = self._cipher.encrypt(
            message.body,
            destination=TRANSACTION_KEY_DESTINATION,
            message_id=held_frame_id(info.connection.id, transaction, position),
            header=message.model_dump_json(exclude={"body"}, exclude_none=True).encode(),
        )
        fields = {
            "op": "send",
            "destination": destination,
            "body": sealed.ciphertext,
            "dk": sealed.encrypted_key,
        }
        self._store.hold(info.connection.id, transaction, position, fields)

    def hold_settle(self, info: ConnectionInfo, transaction: str, settle: dict[str, Any]) -> None:
        position = self._next_position(info, transaction)
        fields = {"op": "settle", "settle": settle}
        self._store.hold(info.connection.id, transaction, position, fields)

    def held(self, info: ConnectionInfo, transaction: str) -> list[Item]:
        """The transaction's held items, in order (`open` each); UnknownTransaction if it
        has not begun."""
        check_client_id(transaction, "transaction name")
        if not self._store.exists(info.connection.id, transaction):
            raise UnknownTransaction(
                f"transaction {transaction!r} has not begun on this connection"
            )
        return self._store.held(info.connection.id, transaction)

    def end(self, info: ConnectionInfo, transaction: str, held: list[Item]) -> None:
        self._store.end(info.connection.id, transaction, held)

    def open(self, info: ConnectionInfo, transaction: str, item: Item) -> HeldSend | HeldSettle:
        """A held frame as it was held (a SEND's body and fields unsealed)."""
        if item["op"] != "send":
            fields = dict(item["settle"])
            fields["delay_seconds"] = int(fields.get("delay_seconds") or 0)
            return HeldSettle(fields)
        position = int(item["position"])
        opened = self._cipher.decrypt(
            Sealed(ciphertext=item["body"], encrypted_key=item["dk"]),
            destination=TRANSACTION_KEY_DESTINATION,
            message_id=held_frame_id(info.connection.id, transaction, position),
        )
        # format 0x01 held the fields in the clear, beside the sealed body
        fields = (
            dict(item.get("message") or {})
            if opened.version == LEGACY_FORMAT_VERSION
            else json.loads(opened.header)
        )
        message = NewMessage.model_validate({**fields, "body": opened.body})
        return HeldSend(str(item["destination"]), message)

    def _next_position(self, info: ConnectionInfo, transaction: str) -> int:
        check_client_id(transaction, "transaction name")
        connection_id = info.connection.id
        position = self._store.next_position(connection_id, transaction, MAX_TRANSACTION_FRAMES)
        if position is not None:
            return position
        if self._store.exists(connection_id, transaction):
            raise InvalidRequest(
                f"transaction {transaction!r} holds {MAX_TRANSACTION_FRAMES} frames, "
                "the most one may hold"
            )
        raise UnknownTransaction(f"transaction {transaction!r} has not begun on this connection")
