"""Receipts: which lease of which message a consumer holds, as an opaque, unforgeable string.

A lease is named by where its message's state is and the lease's token:
- standard queues: (queue, shard, segment, slot in the segment, token);
- FIFO queues: (queue, shard, group, position in the group, token).

Format: `r2.` + base64url(kind US queue US shard US place US position US token US mac),
US being the unit separator (0x1F), which no queue name, group id or number contains.
`place` is the segment number (standard) or the group id (FIFO). The token is 31 random
bits, enough to tell one lease from the next; `mac` (HMAC-SHA256 under the broker's
secret, 16 bytes) makes a receipt impossible to forge or alter, so only receipts this
broker gave out ever reach the table. A stale receipt (its lease ended and the message was
leased again, or it was settled) no longer matches the stored token and settles nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from mqless.domain.errors import InvalidRequest

_PREFIX: Final = "r2."
_SEP: Final = "\x1f"
MAX_RECEIPT_LENGTH: Final = 1024
MAC_BYTES: Final = 16

Signer = Callable[[bytes], bytes]
"""HMAC of a receipt's fields under the broker's secret (`dedup.DedupHasher.sign`)."""


@dataclass(frozen=True)
class Lease:
    """A lease on one message, wherever its state is kept."""

    queue: str
    shard: int
    kind: Literal["s", "g"]
    place: str  # the segment number (standard), or the group id (FIFO)
    position: int  # the slot in the segment, or the position in the group
    token: int

    @property
    def segment(self) -> int:
        return int(self.place)

    def encode(self, sign: Signer) -> str:
        """The opaque string handed to consumers."""
        fields = self._fields()
        mac = sign(fields.encode())[:MAC_BYTES]
        raw = fields.encode() + _SEP.encode() + base64.urlsafe_b64encode(mac).rstrip(b"=")
        return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _fields(self) -> str:
        return _SEP.join(
            (
                self.kind,
                self.queue,
                str(self.shard),
                self.place,
                str(self.position),
                str(self.token),
            )
        )


def decode_receipt(text: str, *, queue: str, sign: Signer) -> Lease:
    """Parse a receipt for `queue`; anything else is an InvalidRequest, never a crash."""
    if not isinstance(text, str) or not text.startswith(_PREFIX) or len(text) > MAX_RECEIPT_LENGTH:
        raise InvalidRequest("malformed receipt")
    payload = text[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("malformed receipt") from exc
    parts = raw.split(_SEP)
    if len(parts) != 7:
        raise InvalidRequest("malformed receipt")
    kind, owner, shard, place, position, token, mac = parts
    fields = _SEP.join(parts[:6])
    expected = base64.urlsafe_b64encode(sign(fields.encode())[:MAC_BYTES]).rstrip(b"=").decode()
    if not mac.isascii() or not hmac.compare_digest(expected.encode(), mac.encode()):
        raise InvalidRequest("malformed receipt: not one this broker gave out")
    if owner != queue:
        raise InvalidRequest(f"receipt belongs to queue {owner!r}, not {queue!r}")
    if kind not in ("s", "g") or not all(_digits(v) for v in (shard, position, token)):
        raise InvalidRequest("malformed receipt")
    if kind == "s" and not _digits(place):
        raise InvalidRequest("malformed receipt")
    return Lease(owner, int(shard), "s" if kind == "s" else "g", place, int(position), int(token))


def _digits(text: str) -> bool:
    return 0 < len(text) <= 12 and text.isascii() and text.isdigit()
