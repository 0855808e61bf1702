"""Receivers of one standard queue that share a process (`mqless dev` serves every consumer
from one; a WebSocket function's pumps share theirs): their looks at a shard take turns
(`domain/queues/turns.py`), so they never race one another. Measured as AWS bills it
(`mqless_cli.billing`, as in test_costs.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.claiming import Claims
from mqless.domain.queues.service import QueueService
from mqless.storage import keys
from mqless_cli.billing import Meter
from tests.component.conftest import Aws
from tests.component.receivers_at_once import meet_between_look_and_claim, receive_at_once

P = ANONYMOUS
QUEUE = "turns"


def test_receivers_of_one_process_that_look_at_once_lose_no_race(
    broker: QueueService, aws: Aws, meter: Meter, raw_items: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a standard queue of one shard holding ten messages sent together (one segment)
    broker.put_queue(P, QUEUE, QueueSettings(shards=1))
    entries = [(f"e{i}", NewMessage(body=b"m%d" % i)) for i in range(10)]
    assert broker.send_batch(P, QUEUE, entries)[1] == []
    # ... and two receivers of one process whose looks would overlap: each, having read the
    # segment and chosen its messages, waits (a second at most) for the other to have too
    meet_between_look_and_claim(monkeypatch, Claims, "claim_from", after=False)
    before = meter.usage()

    # When both receive up to ten at the same moment
    received = receive_at_once(broker, P, QUEUE)
    used = meter.usage() - before

    # Then the ten messages are delivered once each, leased in one write (1 unit); no write
    # was refused, and no ticket was taken: the second look came after the first one's claim
    assert sorted(d.body for d in received) == sorted(b"m%d" % i for i in range(10))
    assert used.failed_conditions.get(aws.settings.messages_table, 0) == 0
    assert used.write_units.get(aws.settings.messages_table, 0) == 1
    cursor = [i for i in raw_items(QUEUE) if i["sk"] == keys.CURSOR]
    assert all("d" not in i and "k" not in i for i in cursor)
