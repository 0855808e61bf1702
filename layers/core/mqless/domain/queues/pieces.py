"""The pieces that hold the queue operations, each built (and its module imported) on its
first use.

A function's request uses a few of them (a send: the sender and admin; the sweeper:
sweeping and dead letters), and a cold start pays for every module it imports (issue 18).
Each is built once per service (`cached_property`, locked on Python 3.11; a race on a later
Python would build a piece twice and keep one, which holds nothing the other needs), so
pieces that share one (dead letters and the receiver, the same admin) share the object.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqless.domain.access.quotas import Quotas
    from mqless.domain.queues.admin import QueueAdmin
    from mqless.domain.queues.browsing import Browser
    from mqless.domain.queues.counting import MessageCounter
    from mqless.domain.queues.dead_letters import DeadLetters
    from mqless.domain.queues.moving import Mover
    from mqless.domain.queues.opening import Opener
    from mqless.domain.queues.parts import QueueParts
    from mqless.domain.queues.receiving import Receiver
    from mqless.domain.queues.redriving import Redriver
    from mqless.domain.queues.sending import Sender
    from mqless.domain.queues.settling import Settler
    from mqless.domain.queues.sweeping import Sweeper
    from mqless.storage.dedup_records import DedupRecords


class OperationPieces:
    """The operations' pieces over one `QueueParts`, made when first asked for."""

    def __init__(self, parts: QueueParts, *, dedup_records: DedupRecords, quotas: Quotas) -> None:
        self._parts = parts
        self._dedup_records = dedup_records
        self._quotas = quotas

    @cached_property
    def _counter(self) -> MessageCounter:
        from mqless.domain.queues.counting import MessageCounter

        return MessageCounter(self._parts)

    @cached_property
    def _admin(self) -> QueueAdmin:
        from mqless.domain.queues.admin import QueueAdmin

        return QueueAdmin(
            self._parts,
            dedup_records=self._dedup_records,
            quotas=self._quotas,
            counter=self._counter,
        )

    @cached_property
    def _browser(self) -> Browser:
        from mqless.domain.queues.browsing import Browser

        return Browser(self._parts)

    @cached_property
    def _mover(self) -> Mover:
        from mqless.domain.queues.moving import Mover

        return Mover(self._parts, admin=self._admin, browser=self._browser)

    @cached_property
    def _settler(self) -> Settler:
        from mqless.domain.queues.settling import Settler

        return Settler(self._parts)

    @cached_property
    def _dead_letters(self) -> DeadLetters:
        from mqless.domain.queues.dead_letters import DeadLetters

        return DeadLetters(self._parts, admin=self._admin, mover=self._mover, settler=self._settler)

    @cached_property
    def _opener(self) -> Opener:
        from mqless.domain.queues.opening import Opener

        return Opener(self._parts, dead_letters=self._dead_letters)

    @cached_property
    def _sender(self) -> Sender:
        from mqless.domain.queues.sending import Sender

        return Sender(self._parts, admin=self._admin, dedup_records=self._dedup_records)

    @cached_property
    def _receiver(self) -> Receiver:
        from mqless.domain.queues.receiving import Receiver

        return Receiver(
            self._parts,
            admin=self._admin,
            counter=self._counter,
            settler=self._settler,
            opener=self._opener,
        )

    @cached_property
    def _redriver(self) -> Redriver:
        from mqless.domain.queues.redriving import Redriver

        return Redriver(
            self._parts, admin=self._admin, mover=self._mover, dead_letters=self._dead_letters
        )

    @cached_property
    def _sweeper(self) -> Sweeper:
        from mqless.domain.queues.sweeping import Sweeper

        return Sweeper(self._parts, counter=self._counter, dead_letters=self._dead_letters)
