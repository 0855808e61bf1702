"""A Jepsen-style record of what clients saw, and the checks a broker must pass over it.

Clients record every send, delivery and settle (ack, nack, extend) with the moments their
request went out (`asked`) and its answer came back (`got`), on one monotonic clock. The
broker's own clock is never read: each check below is one that no ordering of the server's
actions inside those windows could satisfy, so a violation it reports is certain.

- lost: a message whose send was accepted (201) and that was never acked (messages with a
  `ttl_seconds` may expire instead; an ack that got no answer counts as maybe done).
- two at once: two deliveries of one message whose leases must have overlapped. A lease
  starts inside its receive's window and lasts at least until `asked + visibility` (later if
  extended) unless a settle of it was asked earlier; two leases are disjoint only if one
  could have ended before the other's receive answered. Leases end by the clocks of the
  broker's instances: when those differ by up to `clock_skew` each way (`--realism
  clock-skew-ms`), an instance ahead may see a lease an instance behind made end up to
  twice that early, as any time-based lease would, so a lease is only certain to last
  until `asked + visibility - 2 × clock_skew`.
- stale receipt honoured: an ack, nack or extend that succeeded with the receipt of a
  delivery after the message had been leased again (asked after that delivery was
  answered, the next one asked after it and answered before the settle was asked).
- back after ack: a delivery asked after an ack of the same message succeeded.
- expired delivered: a message with `ttl_seconds` delivered more than a second after its
  lifetime (expiry is kept in whole seconds).
- FIFO: a delivery of a group's k-th message before each earlier message of the group was
  acked (asked before the delivery was answered): order, and one in flight per group.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field


def now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class Sent:
    queue: str
    body: str
    asked: float
    got: float
    message_id: str
    ttl_seconds: int | None = None
    group: str | None = None
    seq: int = 0


@dataclass(frozen=True)
class Delivered:
    """A message as a consumer got it. A push (STOMP) has no receive request: its `asked`
    is -inf (its lease began at some unknown moment before `got`)."""

    consumer: str
    queue: str
    message_id: str
    body: str
    receipt: str
    receive_count: int
    visibility: float
    asked: float
    got: float


@dataclass(frozen=True)
class Settled:
    kind: str  # ack | nack | extend
    receipt: str
    ok: bool | None  # None: no answer came (the client crashed first); it may have been done
    asked: float
    got: float
    visibility: float = 0.0  # extend: the new timeout


@dataclass
class History:
    """Everything clients did and saw; safe to record into from many threads."""

    sent: list[Sent] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send(self, event: Sent) -> None:
        with self._lock:
            self.sent.append(event)

    def deliver(self, event: Delivered) -> None:
        with self._lock:
            self.delivered.append(event)

    def settle(self, event: Settled) -> None:
        with self._lock:
            self.settled.append(event)

    def acked_bodies(self, *, maybe: bool = False) -> set[str]:
        """Bodies acked (`maybe`: or whose ack went out and got no answer)."""
        by_receipt = {d.receipt: d for d in self.delivered}
        with self._lock:
            return {
                by_receipt[s.receipt].body
                for s in self.settled
                if s.kind == "ack"
                and (s.ok or (maybe and s.ok is None))
                and s.receipt in by_receipt
            }


def violations(history: History, *, clock_skew: float = 0.0) -> list[str]:
    """What the history proves the broker did wrong (empty: nothing); `clock_skew`: how far
    (seconds, each way) the broker instances' clocks may be from true time."""
    found: list[str] = []
    by_receipt = {d.receipt: d for d in history.delivered}
    settles: dict[str, list[Settled]] = defaultdict(list)
    for s in history.settled:
        settles[s.receipt].append(s)
    by_message: dict[str, list[Delivered]] = defaultdict(list)
    for d in history.delivered:
        by_message[d.message_id].append(d)
    acked_at: dict[str, list[Settled]] = defaultdict(list)  # message id -> ok acks
    for s in history.settled:
        if s.kind == "ack" and s.ok and s.receipt in by_receipt:
            acked_at[by_receipt[s.receipt].message_id].append(s)

    def certain_end(d: Delivered) -> float:
        """The earliest moment the lease of `d` could have ended on the server."""
        if d.asked == float("-inf"):
            return d.asked  # a push: when its lease began is not known
        early = 2 * clock_skew  # another instance's clock may run ahead of the leaser's
        end = d.asked + d.visibility - early
        for s in settles[d.receipt]:
            if not s.ok:
                continue
            if s.kind == "extend":
                end = max(end, s.asked + s.visibility - early)
        for s in settles[d.receipt]:
            if s.ok and s.kind in ("ack", "nack"):
                end = min(end, s.asked)
        return end

    # lost
    acked = history.acked_bodies(maybe=True)
    for sent in history.sent:
        if sent.ttl_seconds is None and sent.body not in acked:
            trail = [
                f"{d.consumer}:" + "/".join(f"{s.kind}={s.ok}" for s in settles[d.receipt])
                for d in history.delivered
                if d.body == sent.body
            ]
            found.append(
                f"lost: {sent.queue} {sent.body} ({sent.message_id}) was never acked "
                f"(deliveries: {', '.join(trail) or 'none'})"
            )

    for message_id, deliveries in by_message.items():
        deliveries.sort(key=lambda d: d.got)
        # two at once
        for i, a in enumerate(deliveries):
            for b in deliveries[i + 1 :]:
                if certain_end(a) > b.got and certain_end(b) > a.got:
                    found.append(
                        f"two at once: {message_id} leased to {a.consumer} and {b.consumer} "
                        f"with overlapping leases ({a.got:.3f}, {b.got:.3f})"
                    )
        # stale receipt honoured
        for a in deliveries:
            for s in settles[a.receipt]:
                if not s.ok:
                    continue
                later = [b for b in deliveries if b.asked > a.got and b.got < s.asked]
                if later:
                    found.append(
                        f"stale receipt honoured: {s.kind} of {message_id} with the receipt "
                        f"{a.consumer} got at {a.got:.3f}, after {later[0].consumer} leased it "
                        f"at {later[0].got:.3f}"
                    )
        # back after ack
        for ack in acked_at.get(message_id, []):
            back = [d for d in deliveries if d.asked > ack.got]
            if back:
                found.append(
                    f"back after ack: {message_id} acked at {ack.got:.3f}, delivered again to "
                    f"{back[0].consumer} at {back[0].got:.3f}"
                )

    sent_by_id = {s.message_id: s for s in history.sent}
    for d in history.delivered:
        sent = sent_by_id.get(d.message_id)
        ttl = None if sent is None else sent.ttl_seconds
        if sent is not None and ttl is not None and d.asked > sent.got + ttl + 1.0:
            found.append(
                f"expired delivered: {d.message_id} (ttl {ttl} s) delivered "
                f"{d.asked - sent.got:.1f} s after it was sent"
            )

    # FIFO groups
    groups: dict[tuple[str, str], list[Sent]] = defaultdict(list)
    for sent in history.sent:
        if sent.group is not None:
            groups[(sent.queue, sent.group)].append(sent)
    for (queue, group), members in groups.items():
        members.sort(key=lambda s: s.seq)
        ids = [s.message_id for s in members]
        for k, message_id in enumerate(ids):
            for d in by_message.get(message_id, []):
                for earlier in ids[:k]:
                    if not any(a.asked < d.got for a in acked_at.get(earlier, [])):
                        found.append(
                            f"FIFO: {queue} group {group}: {message_id} (#{k}) delivered to "
                            f"{d.consumer} at {d.got:.3f} before {earlier} was acked"
                        )
                        break
    # what is most telling first: a run that ran out of time reports its unacked as lost
    return sorted(found, key=lambda v: v.startswith("lost"))
