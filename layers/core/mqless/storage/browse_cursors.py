"""Browse cursors: where a browse goes on, per index shard, as the opaque text the API
gives out and takes back.

A position is (segment number, slot) in a shard of a queue's index (a FIFO queue's: in its
one sequence); a shard read to its end is marked DONE. The text is base64url of a JSON
array of positions, one per index shard in `QueueConfig.index_shards` order; anything else
is a malformed cursor (InvalidRequest), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Final

from mqless.domain.errors import InvalidRequest
from mqless.domain.models import QueueConfig

DONE: Final = 10**10  # a browse cursor's mark for a shard read to its end
MAX_CURSOR_CHARS: Final = 2048


def encode_cursor(positions: Sequence[tuple[int, int]]) -> str:
    """Where a browse goes on, per shard (segment or group, slot), as an opaque string."""
    raw = json.dumps([list(p) for p in positions], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, config: QueueConfig) -> list[tuple[int, int]]:
    """A cursor this API gave out for this queue (one position per shard), or InvalidRequest."""
    if cursor is None:
        return [(0, 0)] * len(config.index_shards())
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidRequest("malformed cursor")
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidRequest("malformed cursor") from exc
    if (
        not isinstance(value, list)
        or len(value) != len(config.index_shards())
        or not all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= DONE for v in p)
            for p in value
        )
    ):
        raise InvalidRequest("malformed cursor")
    return [(p[0], p[1]) for p in value]
