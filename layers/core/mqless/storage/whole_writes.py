"""A standard segment's lease writes made whole: a claim, or a settlement of a whole
receive's leases, written as the lists `u t n` at once on one comparison per list, not as
an assignment and a condition per reference (`segment_writes.py`).

A receive of 10 takes a whole segment (a batch sent together fills one), and its ack
settles it whole: written per reference, the claim is 30 assignments and 10 conditions, the
ack 10 and 10, and the work of every UpdateItem (parsing, checking and running the
expression: moto's CPU, `mqless dev`'s largest cost per message) grows with those parts.
The item written is the same, so what DynamoDB bills is the same.

Each is made only where it is exactly the per-reference write:

- A claim (`whole_claim`), where the segment read is full (nothing is appended to it any
  more) and every reference of it not settled for good is leased or settled by the write:
  on the condition that `u`, `t` and `n` are still as read, each reference leased was read
  free and is still, and no other writer can change the segment without changing one of
  them. The one case where the per-reference write would be made and this one is not: the
  former holder of an expired lease on one of them releases it in between (it stays free,
  changed): a race lost by a hair, never a reference leased twice. What the write leaves
  is known without asking DynamoDB for it (the lists are what was compared, plus the write).
- A settlement (`whole_holds`), where the holds name every place of a segment of
  `MAX_REFS` (full: it never grows) under one token, as one claim's leases do: `t` is
  that token everywhere and no place is settled (`NOT contains(u, :done)`) exactly when
  each hold's own condition holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mqless.storage.segment_writes import SegmentUpdate
from mqless.storage.segments import MAX_REFS, SETTLED, Hold, Segment


def whole_claim(
    segment: Segment,
    slots: Sequence[int],
    settle: Sequence[int],
    now_ms: int,
    until_ms: int,
    token: int,
    acks: Sequence[Hold] = (),
) -> tuple[SegmentUpdate, Segment] | None:
    """The write that leases `slots` and settles `settle` and `acks` of `segment` (as
    read) whole, and the segment after it; None where a whole write would not be exactly
    the per-reference one (`segment_writes.claim_update`)."""
    if not segment.full:
        return None
    leased, settled = set(slots), set(settle) | {h.slot for h in acks}
    entries = list(segment.entries)
    if len(leased) != len(slots) or leased & settled:
        return None
    if any(not 0 <= slot < len(entries) for slot in leased | settled):
        return None
    tokens = {h.slot: h.token for h in acks}
    for entry in entries:
        if entry.slot in tokens:
            # an ack's own condition: its lease is the one named, not settled
            if entry.token != tokens[entry.slot] or entry.settled:
                return None
        elif entry.slot in leased or entry.slot in settled:
            if not entry.free_at(now_ms):
                return None
        elif not entry.settled:
            return None  # another's reference: its writes would fail this one
    after = tuple(
        replace(e, until=until_ms, token=token, count=e.count + 1)
        if e.slot in leased
        else replace(e, until=SETTLED)
        if e.slot in settled
        else e
        for e in entries
    )
    values: dict[str, Any] = {
        ":u": [e.until for e in after],
        ":t": [e.token for e in after],
        ":n": [e.count for e in after],
        ":ou": [e.until for e in entries],
        ":ot": [e.token for e in entries],
        ":on": [e.count for e in entries],
    }
    write = ("SET u = :u, t = :t, n = :n", "u = :ou AND t = :ot AND n = :on", values)
    return write, replace(segment, entries=after)


def whole_holds(
    holds: Sequence[Hold], until: int, *, release: bool = False, uncount: bool = False
) -> SegmentUpdate | None:
    """The write that sets every leased reference of a segment to `until` (`release`: its
    lease ended too) whole, if `holds` name each place of a full segment under one token;
    None otherwise (`segment_writes.holds_update` writes them)."""
    if uncount or sorted(h.slot for h in holds) != list(range(MAX_REFS)):
        return None
    if len({h.token for h in holds}) != 1:
        return None
    values: dict[str, Any] = {
        ":u": [until] * MAX_REFS,
        ":held": [holds[0].token] * MAX_REFS,
        ":done": SETTLED,
    }
    update = "SET u = :u"
    if release:
        update += ", t = :none"
        values[":none"] = [0] * MAX_REFS
    return update, "t = :held AND NOT contains(u, :done)", values
