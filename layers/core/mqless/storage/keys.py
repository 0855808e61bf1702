"""Every key of the messages table, built and parsed in this one module.

Storage engine v2 (docs/storage-engine.md):
- logs       `pk = L#<queue>#<shard>` (a queue's sends) or `T#<topic>#<shard>` (a topic's
             publishes), `sk = <item id>`: bodies, written once.
- index      `pk = I#<queue>#<shard>`: segments `sk = S#<seq>` and the cursor `sk = C`.
             A queue with priorities has a lane per priority: lane L's shard s is index
             shard `L * 64 + s` (`lane_shard`; lane 0 is the plain shard numbers), and
             `pk = I#<queue>#0, sk = P` holds its lane marks (`storage.lane_marks`).
- FIFO       `pk = F#<queue>#<seq mod shards>`: a FIFO queue's segments `sk = S#<seq>`, one
             sequence for the whole queue (references tagged with their group), and, in
             shard 0, its cursor `sk = C`.
- dedup      `pk = D#<queue>#<h>`, `sk = <keyed hash>`: FIFO deduplication records.
- data keys  `pk = K#<destination>`, `sk = <key id>`: a KMS-encrypted data key, stored once.
- schedules  `pk = J#<destination>`, `sk = <due ms, 13 digits>#<schedule id>`: a message to
             send later (`storage/schedules.py`); `pk = J`, `sk = <destination>`: the
             destination's schedule cursor (what has been fired), one per destination.

Message ids are UUIDv7 (time-ordered). A log item holds up to 16 bodies; body `j` of the
item whose first id is `u` has the id `u + j` (the low 4 bits of `u` are zero), so an id
names its log item and slot. The item's sort key is the first id in Crockford base32:
26 characters that sort as the ids do.
"""

from __future__ import annotations

import os
import threading
import uuid
import zlib
from typing import Final

from mqless.domain.errors import InvalidRequest

QUEUE_LOG: Final = "L#"
TOPIC_LOG: Final = "T#"
INDEX: Final = "I#"
FIFO_INDEX: Final = "F#"
DEDUP: Final = "D#"
DATA_KEYS: Final = "K#"
SCHEDULES: Final = "J#"
SCHEDULE_CURSORS: Final = "J"
DUE_DIGITS: Final = 13  # epoch milliseconds until the year 2286
CURSOR: Final = "C"
LANE_MARKS: Final = "P"
SEGMENT: Final = "S#"
SEGMENT_DIGITS: Final = 10
MAX_SHARDS: Final = 64
QUARANTINE: Final = "quarantine"  # a log shard the dispatch function never indexes
SLOTS_PER_ITEM: Final = 16  # bodies one log item may hold (the low 4 bits of an id)

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: ASCII order = value order
_DECODE: Final = {c: i for i, c in enumerate(_ALPHABET)}
ITEM_ID_LENGTH: Final = 26


# ---- partitions ------------------------------------------------------------------------


def queue_log(queue: str, shard: int) -> str:
    return f"{QUEUE_LOG}{queue}#{shard}"


def quarantine_log(queue: str) -> str:
    """The log a queue with no dead-letter queue keeps failed messages in (never indexed)."""
    return f"{QUEUE_LOG}{queue}#{QUARANTINE}"


def topic_log(topic: str, shard: int) -> str:
    return f"{TOPIC_LOG}{topic}#{shard}"


def parse_log_partition(pk: str) -> tuple[str, str, int]:
    """("queue" or "topic", destination, shard) of a log partition key, or InvalidRequest."""
    for kind, prefix in (("queue", QUEUE_LOG), ("topic", TOPIC_LOG)):
        if pk.startswith(prefix):
            destination, sep, shard = pk[len(prefix) :].rpartition("#")
            if sep and destination and shard.isascii() and shard.isdigit():
                return kind, destination, int(shard)
    raise InvalidRequest(f"not a log partition: {pk[:100]!r}")


def index_partition(queue: str, shard: int) -> str:
    return f"{INDEX}{queue}#{shard}"


def lane_shard(lane: int, shard: int) -> int:
    """The index shard of a priority lane's shard: lanes never share a partition, and
    lane 0 (every queue without priorities) keeps the plain shard numbers."""
    return lane * MAX_SHARDS + shard


def fifo_partition(queue: str, shard: int) -> str:
    """A FIFO queue's segments rotate over its shards (segment `seq` in shard `seq mod
    shards`); shard 0 also holds the queue's cursor."""
    return f"{FIFO_INDEX}{queue}#{shard}"


def dedup_partition(queue: str, digest: str) -> str:
    # 16 partitions per queue: FIFO sends are not bounded by one partition's write rate
    return f"{DEDUP}{queue}#{digest[:1]}"


def data_key_partition(destination: str) -> str:
    return f"{DATA_KEYS}{destination}"


def schedule_partition(destination: str) -> str:
    """Where a destination's (`/queue/<name>`, `/topic/<name>`) schedules wait, by due time."""
    return f"{SCHEDULES}{destination}"


def schedule_key(due_ms: int, schedule_id: str) -> str:
    """Sorts by due time first, so "what falls due by then" is one key range."""
    return f"{due_ms:0{DUE_DIGITS}d}#{schedule_id}"


def parse_schedule_key(sk: str) -> tuple[int, str]:
    """(due ms, schedule id) of a schedule's sort key; InvalidRequest if it is not one."""
    due, sep, schedule_id = sk.partition("#")
    if not sep or len(due) != DUE_DIGITS or not due.isascii() or not due.isdigit():
        raise InvalidRequest(f"not a schedule key: {sk[:100]!r}")
    return int(due), schedule_id


def due_bound(due_ms: int) -> str:
    """The highest sort key of anything due at or before `due_ms` (ids sort below `~`)."""
    return f"{due_ms:0{DUE_DIGITS}d}#~"


def segment_key(seq: int) -> str:
    return f"{SEGMENT}{seq:0{SEGMENT_DIGITS}d}"


def segment_seq(sk: str) -> int:
    if not sk.startswith(SEGMENT) or not sk[len(SEGMENT) :].isdigit():
        raise InvalidRequest(f"not a segment key: {sk[:100]!r}")
    return int(sk[len(SEGMENT) :])


def shard_of(text: str, shards: int) -> int:
    """A stable shard for a name (a FIFO group, a source log): crc32, not Python's hash()."""
    return zlib.crc32(text.encode()) % shards


# ---- ids ----------------------------------------------------------------------------------


_last_id = 0
_id_lock = threading.Lock()


def new_item_id(now_ms: int) -> str:
    """The sort key of a new log item: a UUIDv7 with its low 4 bits free for slots.

    Monotonic within a process (RFC 9562's "monotonic random"): an id made in the same
    millisecond as the last one is that one plus one item, so a sender's messages sort in
    the order it sent them."""
    global _last_id
    rand = int.from_bytes(os.urandom(10), "big")
    value = (now_ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    value &= ~(SLOTS_PER_ITEM - 1)
    with _id_lock:
        # only within the last id's millisecond: a clock that went back gets its own time
        if value <= _last_id and value >> 80 == _last_id >> 80:
            value = _last_id + SLOTS_PER_ITEM
        _last_id = value
    return _encode(value)


_SEQUENCE_EPOCH_MS: Final = 1_577_836_800_000  # 2020-01-01: keeps sequences under 2**53
_last_sequence = 0


def next_sequence(now_ms: int) -> int:
    """What a FIFO send answers as `sequence`: grows with time and, within a process, with
    every send (1,024 per millisecond), and stays exact in JavaScript numbers."""
    global _last_sequence
    with _id_lock:
        _last_sequence = max((now_ms - _SEQUENCE_EPOCH_MS) * 1024, _last_sequence + 1)
        return _last_sequence


def message_id(item_id: str, slot: int) -> str:
    """The id of body `slot` of a log item, as clients see it (a UUID)."""
    if not 0 <= slot < SLOTS_PER_ITEM:
        raise ValueError(f"slot {slot} out of range")
    return str(uuid.UUID(int=_decode(item_id) + slot))


def locate(message_id_text: str) -> tuple[str, int]:
    """(log item id, slot) of a message id; InvalidRequest if it is not one of ours."""
    try:
        value = uuid.UUID(message_id_text).int
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidRequest(f"malformed message id {str(message_id_text)[:100]!r}") from exc
    slot = value & (SLOTS_PER_ITEM - 1)
    return _encode(value - slot), slot


def first_id_at(time_ms: int) -> str:
    """The lowest item id a log item written at `time_ms` or later can have (a Query's
    lower bound: item ids sort as their times do)."""
    return _encode(max(time_ms, 0) << 80)


def last_id_before(time_ms: int) -> str:
    """The highest item id a log item written before `time_ms` can have."""
    return _encode(max((time_ms << 80) - 1, 0))


def next_id(item_id: str) -> str:
    """The lowest item id above `item_id` (a Query's lower bound that leaves it out)."""
    return _encode(_decode(item_id) + 1)


def id_time_ms(item_id: str) -> int:
    """When a log item was written (its id's first 48 bits)."""
    return _decode(item_id) >> 80


def _encode(value: int) -> str:
    chars = []
    for _ in range(ITEM_ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    if len(text) != ITEM_ID_LENGTH:
        raise InvalidRequest(f"malformed item id {text[:100]!r}")
    value = 0
    for char in text:
        digit = _DECODE.get(char)
        if digit is None:
            raise InvalidRequest(f"malformed item id {text[:100]!r}")
        value = value << 5 | digit
    if value >> 128:
        raise InvalidRequest(f"malformed item id {text[:100]!r}")
    return value
