"""Published topic messages pushed to live WebSocket subscribers, packed per connection.

The dispatch function hands over the log items that topics' publishes wrote; each body
is opened, matched against the live subscriptions' patterns and selectors (one query of
the `LIVE` partition per batch), rendered in each connection's protocol (`render.py`)
and posted. Live pushes are at most once: nothing is leased, nothing is acked.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from aws_lambda_powertools import Logger

from mqless.domain.clock import Clock
from mqless.domain.errors import IntegrityError
from mqless.domain.push.ack_ids import AckId
from mqless.domain.push.pushes import Connection, Push
from mqless.observability import metrics
from mqless.storage import keys
from mqless.storage.connection_store import ConnectionStore
from mqless.storage.connections import LiveTarget
from mqless.storage.dynamo import Item
from mqless.storage.log import LogStore
from mqless.storage.sealing import BodyCipher, open_logged
from mqless.transports.websocket.pusher import Pusher
from mqless.transports.websocket.render import render

logger = Logger(service="mqless", child=True)


class LivePushes:
    """Push published messages to the live topic subscriptions that match them."""

    def __init__(
        self,
        connections: ConnectionStore,
        log: LogStore,
        cipher: BodyCipher,
        pusher: Pusher,
        clock: Clock,
    ) -> None:
        self._connections = connections
        self._log = log
        self._cipher = cipher
        self._pusher = pusher
        self._clock = clock

    def push(self, items: Sequence[Item]) -> tuple[int, set[str]]:
        """Push published topic messages to live subscribers, packed per connection.

        Live pushes are at most once, and each message and each connection stands alone:
        a message that cannot be read, a subscriber that cannot be sent a message (logged
        and counted as `Undeliverable`) or a connection whose post fails costs no other
        subscriber any message. Returns how many were sent and the connections found gone
        (closed without `$disconnect` reaching us: the caller tidies them up).
        """
        # the topic service's module comes with the first published message: a queue's
        # batch (dispatch) or a sweep never loads it (issue 18)
        from mqless.domain.topics.service import published_topic

        by_connection: dict[Connection, list[Push]] = {}
        index = self._connections.index() if items else None
        for item in items:
            assert index is not None
            try:
                topic = published_topic(item)
                targets = index.match(topic)
                prepared = self._live_pushes(item, topic, targets) if targets else []
            except IntegrityError as exc:
                logger.error(
                    "published message failed authentication; not pushed",
                    extra={"message_id": str(item.get("id")), "reason": exc.message},
                )
                continue
            except Exception:
                logger.exception(
                    "a published message could not be prepared for live subscribers",
                    extra={"message_id": str(item.get("id"))},
                )
                continue
            for target, push in prepared:
                by_connection.setdefault(target.connection, []).append(push)
        sent = 0
        gone: set[str] = set()
        for connection, pushes in by_connection.items():
            try:
                sent += self._push_live(connection, pushes, gone)
            except Exception:
                logger.exception(
                    "pushing to a live subscriber failed",
                    extra={"connection_id": connection.id, "messages": len(pushes)},
                )
        return sent, gone

    def _live_pushes(
        self, image: Item, topic: str, targets: Sequence[LiveTarget]
    ) -> list[tuple[LiveTarget, Push]]:
        """The pushes of every body of a published log item (one that fails authentication
        is logged and skipped alone)."""
        item = self._log.log_item(image)
        now = self._clock.now_ms()
        pushes: list[tuple[LiveTarget, Push]] = []
        for slot in range(len(item.bodies)):
            message_id = keys.message_id(item.item, slot)
            try:
                opened = open_logged(self._cipher, item, slot, now_ms=now)
            except IntegrityError as exc:
                logger.error(
                    "published message failed authentication; not pushed",
                    extra={"topic": topic, "message_id": message_id, "reason": exc.message},
                )
                continue
            headers = opened.headers
            selected = _selectors().message_lookup(
                message_id=message_id,
                sent_at=keys.id_time_ms(item.item),
                attributes=headers.attributes,
                correlation_id=headers.correlation_id,
                group_id=item.group,
                priority=headers.priority,
            )
            pushes.extend(
                (
                    target,
                    Push(
                        subscription=target.subscription,
                        destination=f"/topic/{topic}",
                        message_id=message_id,
                        body=opened.body,
                        binary=headers.binary,
                        # live topic messages need no ack; one is accepted (and ignored)
                        ack=None if target.ack == "auto" else str(AckId(target.subscription)),
                        attributes=dict(headers.attributes),
                        content_type=headers.content_type,
                        correlation_id=headers.correlation_id,
                        reply_to=headers.reply_to,
                        sent_at=keys.id_time_ms(item.item),
                        priority=headers.priority,
                    ),
                )
                for target in targets
                if _selectors().matches(target.selector, selected)
            )
        return pushes

    def _push_live(self, connection: Connection, pushes: list[Push], gone: set[str]) -> int:
        """Post one connection's live messages; a message it cannot be sent is skipped."""
        rendered = render(connection, pushes)
        for position, reason in rendered.refused.items():
            push = pushes[position]
            topic = push.destination[len("/topic/") :]
            metrics.count("Undeliverable", topic=topic)
            logger.warning(
                "a live subscriber cannot be sent a message; it skips that one",
                extra={
                    "topic": topic,
                    "message_id": push.message_id,
                    "connection_id": connection.id,
                    "subscription": push.subscription,
                    "reason": reason,
                },
            )
        for text in rendered.messages:
            if not self._pusher.post(connection.id, text.encode()):
                gone.add(connection.id)
                return 0
        now = self._clock.now_ms()
        delivered = [p for i, p in enumerate(pushes) if i not in rendered.refused]
        for push in delivered:
            topic = push.destination[len("/topic/") :]
            metrics.count("Delivered", topic=topic)
            metrics.latency(now - push.sent_at, topic=topic)
        return len(delivered)


def _selectors() -> ModuleType:
    """The selector module, loaded with the first published message: the functions that
    only feed queues (the dispatch function's queue batches) never need it."""
    from mqless.domain import selectors

    return selectors
