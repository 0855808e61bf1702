"""Receipt handles: which message, in which queue, under which lease.

Format: `r1.` + base64url(queue US item-key US lease-id), US being the unit
separator (0x1F), which no queue name, key or lease id may contain. The lease id is
128 random bits, so a receipt cannot be guessed; one whose lease has passed to another
consumer no longer matches the stored lease and is refused as stale.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from mqless.errors import InvalidRequest

_PREFIX = "r1."
_SEP = "\x1f"
MAX_RECEIPT_LENGTH = 1024


@dataclass(frozen=True)
class Receipt:
    queue: str
    key: str
    lease_id: str

    def encode(self) -> str:
        """The opaque string handed to consumers."""
        raw = _SEP.join((self.queue, self.key, self.lease_id)).encode()
        return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_receipt(text: str, *, queue: str) -> Receipt:
    """Parse a receipt for `queue`; anything else is an InvalidRequest, never a crash."""
    if not isinstance(text, str) or not text.startswith(_PREFIX) or len(text) > MAX_RECEIPT_LENGTH:
        raise InvalidRequest("malformed receipt")
    payload = text[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("malformed receipt") from exc
    parts = raw.split(_SEP)
    if len(parts) != 3 or not all(parts):
        raise InvalidRequest("malformed receipt")
    receipt = Receipt(*parts)
    if receipt.queue != queue:
        raise InvalidRequest(f"receipt belongs to queue {receipt.queue!r}, not {queue!r}")
    if not receipt.key.startswith("M#"):
        raise InvalidRequest("malformed receipt")
    return receipt
