"""Reference MACs: every reference in a queue's index is one the broker put there.

A queue's index points at bodies in logs (its own, a topic's, another queue's after a dead
letter, a redrive or a move). Bodies are bound to the log that holds them (`sealing.py`),
so a body copied into another log does not open; but a reference is only a pointer, and
one written into a queue's index by someone with write access to the table would make that
queue's consumers open another queue's messages. So each reference carries a MAC (64 bits
of HMAC-SHA256 under the stack's secret) over the queue it is in and the body it names:
the dispatch function signs what it indexes, a reference item written for a move carries
the MAC its target will hold, and a consumer opens nothing whose MAC does not match.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from typing import Final

from mqless.storage.segments import Ref

MAC_BYTES: Final = 8

Mac = Callable[[bytes, bytes], bytes]
"""HMAC under the stack's secret for a domain (`dedup.DedupHasher.mac`)."""


def ref_mac(mac: Mac, queue: str, ref: Ref) -> str:
    """The MAC a reference to `ref`'s body carries in `queue`'s index."""
    message = "\x00".join((queue, ref.log, ref.item, str(ref.slot))).encode()
    return base64.urlsafe_b64encode(mac(b"ref", message)[:MAC_BYTES]).rstrip(b"=").decode()


def signed(mac: Mac, queue: str, ref: Ref) -> Ref:
    """`ref` with the MAC it carries in `queue`'s index."""
    return Ref(ref.log, ref.item, ref.slot, ref_mac(mac, queue, ref))


def genuine(mac: Mac, queue: str, ref: Ref) -> bool:
    """Whether `ref` was put in `queue`'s index by the broker."""
    return (
        bool(ref.mac)
        and ref.mac.isascii()
        and hmac.compare_digest(ref.mac.encode(), ref_mac(mac, queue, ref).encode())
    )
