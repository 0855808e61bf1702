"""The broker's time is its `Clock`, everywhere: the TTLs it stamps on items follow the clock
it is given (so a function instance's skew under `--realism` reaches them, as on AWS)."""

from __future__ import annotations

from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.clock import ManualClock
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.queues.service import QueueService
from mqless.storage import keys
from mqless.storage.dynamo import from_wire
from mqless.storage.fifo_segments import SEGMENT_LIFETIME_SECONDS
from mqless.storage.log import KEY_SECONDS
from tests.component.conftest import Aws

Q = "clocked.fifo"


def _items(aws: Aws) -> list[dict[str, object]]:
    pages = aws.dynamodb.get_paginator("scan").paginate(
        TableName=aws.settings.messages_table, ConsistentRead=True
    )
    return [from_wire(i) for page in pages for i in page["Items"]]


def test_item_ttls_are_counted_from_the_broker_clock_not_the_host_wall_clock(
    aws: Aws, broker: QueueService, clock: ManualClock
) -> None:
    # Given a broker whose clock is a day ahead of the host's wall clock
    clock.advance(24 * 60 * 60)
    broker.put_queue(ANONYMOUS, Q, QueueSettings(visibility_timeout=30, max_receive_count=None))

    # When a message is sent to a FIFO queue (a data key item and a FIFO segment are written)
    broker.send(ANONYMOUS, Q, NewMessage(body=b"tick", group_id="g"))

    # Then both items expire counted from the broker's clock
    items = _items(aws)
    now_s = clock.now_ms() // 1000
    [data_key] = [i for i in items if i["pk"] == keys.data_key_partition(f"/queue/{Q}")]
    segments = [i for i in items if str(i["pk"]).startswith(keys.fifo_partition(Q, 0)) and "r" in i]
    assert data_key["x"] == now_s + KEY_SECONDS
    assert segments
    assert all(s["x"] == now_s + SEGMENT_LIFETIME_SECONDS for s in segments)
