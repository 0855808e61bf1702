"""Moving messages between queues: the operator's move, copy and delete of one message,
and the reference item every move writes (dead letter, redrive, move, copy) — a pointer
to the body, signed for its target, never the body again.
"""

from __future__ import annotations

import random

from mqless.domain import names
from mqless.domain.access.principals import Action, Principal
from mqless.domain.errors import Conflict, IntegrityError, InvalidRequest, MessageNotFound
from mqless.domain.models import QueueConfig
from mqless.domain.queues.admin import QueueAdmin
from mqless.domain.queues.browsing import Browser, Found
from mqless.domain.queues.parts import QueueParts
from mqless.domain.queues.refs import ref_mac
from mqless.observability import audit
from mqless.storage import keys
from mqless.storage.log import LogItem, Source
from mqless.storage.segments import Ref


class Mover:
    """Writes references to bodies into other queues' logs, and the operator's moves."""

    def __init__(self, parts: QueueParts, *, admin: QueueAdmin, browser: Browser) -> None:
        self._parts = parts
        self._registry = parts.registry
        self._log = parts.log
        self._index = parts.index
        self._fifo = parts.fifo
        self._clock = parts.clock
        self._policy = parts.policy
        self._admin = admin
        self._browser = browser

    def refer(
        self,
        source: QueueConfig,
        ref: Ref,
        target: QueueConfig,
        item: LogItem,
        *,
        count: int = 0,
        reason: str = "",
    ) -> None:
        """Write a reference item into `target`'s log: its stream record indexes the body
        there, with the MAC it will hold in `target`'s index (`refs.py`). It lives the shorter
        of the body's own lifetime and `target`'s retention.

        Every move (dead letter, redrive, move, copy) comes through here, so this is where a
        reference the broker did not put in `source` is stopped: signing it for `target`
        would make a forged pointer genuine."""
        if not self._parts.genuine(source.name, ref):
            raise IntegrityError(f"a reference the broker did not put in {source.name!r}")
        sources = [
            Source(
                ref.log,
                ref.item,
                ref.slot,
                count,
                reason,
                ref_mac(self._parts.secret.mac, target.name, Ref(ref.log, ref.item, ref.slot)),
                # the body's, kept where it goes: indexed in its lane there (if it has lanes)
                priority=item.priority(ref.slot),
            )
        ]
        group = item.group_of(ref.slot) if target.fifo else None
        shard = (
            keys.shard_of(group, target.shards)
            if group is not None
            else random.randrange(target.shards)
        )
        now = self._clock.now_ms()
        self._log.append_references(
            keys.queue_log(target.name, shard),
            sources,
            now_ms=now,
            # the body is there until its own expiry; the target may keep it for less
            expires_at=min(item.expires_at, now // 1000 + target.retention_seconds),
            group=group,
        )

    def delete_message(self, principal: Principal, name: str, message_id: str) -> None:
        """Delete one message, whatever its state (a consumer's late ack is then stale)."""
        names.validate_queue_name(name)
        self._policy.check(principal, Action.ADMIN, name)
        config = self._registry.get(name)
        found = self._browser.find(config, message_id)
        if found is None or not self._settle_found(config, found):
            raise MessageNotFound(f"no message {message_id[:100]!r} in queue {name!r}")
        audit("message.delete", principal.id, name, message_id=message_id)

    def move_message(
        self, principal: Principal, name: str, message_id: str, *, to: str, copy: bool = False
    ) -> str:
        """Move (or copy) one message to another queue; it keeps its id and body."""
        names.validate_queue_name(name)
        names.validate_queue_name(to)
        self._policy.check(principal, Action.ADMIN, name)
        self._policy.check(principal, Action.SEND, to)
        if to == name:
            raise InvalidRequest("the target queue must differ from the source")
        config = self._registry.get(name)
        target = self._admin.ensure_queue(to, principal)
        found = self._browser.find(config, message_id)
        if found is None:
            raise MessageNotFound(f"no message {message_id[:100]!r} in queue {name!r}")
        item = self._parts.log_item(found.ref)
        if item is None:
            raise MessageNotFound(f"message {message_id[:100]!r} has expired")
        if target.fifo and not item.group_of(found.ref.slot):
            raise InvalidRequest(f"queue {to!r} is FIFO and the message has no group")
        try:
            if not self._parts.genuine(config.name, found.ref):
                raise IntegrityError("a reference the broker did not put in this queue")
            self._parts.open(item, found.ref)
        except IntegrityError as exc:
            raise Conflict(
                f"message {message_id[:100]!r} cannot be moved: integrity: {exc.message}"
            ) from exc
        self.refer(config, found.ref, target, item)
        if not copy and not self._settle_found(config, found):
            raise MessageNotFound(f"message {message_id[:100]!r} was taken meanwhile")
        audit(
            "message.copy" if copy else "message.move",
            principal.id,
            name,
            message_id=message_id,
            to=to,
        )
        return message_id

    def _settle_found(self, config: QueueConfig, found: Found) -> bool:
        if config.fifo:
            return self._fifo.settle_any(
                config.name, config.shards, int(found.place), [found.position]
            )
        return (
            self._index.settle_any(config.name, found.shard, int(found.place), [found.position])
            is not None
        )
