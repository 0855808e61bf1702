"""What pushing and acknowledging a queue's messages bills, per ack mode, as AWS bills it.

The meter (`mqless_cli.billing`) bills each DynamoDB request by the item sizes moto holds
before and after it. Sending and indexing are left out (they cost the same whoever
consumes); what is counted is leasing, recording, pushing and settling. Every write here
is of an item under 1 KB: one write unit each.

Where the units go (docs/storage-engine.md, `consumers.py`): the queue leases up to 10
messages per round with one write per index segment (10 references: a batch of 10
sent together fills one) the round touches,
and settles them with one write per segment; a push consumer in a client ack mode writes
one delivery record per push, and settles with one more write per cumulative ack (its
watermark) or per message (`client-individual`: the record's mark).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqless import assembly
from mqless.domain.access.principals import ANONYMOUS
from mqless.domain.messages import NewMessage
from mqless.domain.models import QueueSettings
from mqless.domain.push.pushes import Connection
from mqless.domain.queues.service import QueueService
from mqless.storage.deliveries import DeliveryRecords
from mqless.storage.index import IndexStore
from mqless.transports.websocket.json_protocol import handle_text
from mqless.transports.websocket.sessions import Sessions, Settle
from mqless_cli.billing import Meter, Usage
from tests.call_counts import count_calls
from tests.component.conftest import Aws, RecordingPusher

BODY = b"x" * 512


def _frame(sessions: Sessions, connection_id: str, **frame: Any) -> None:
    info = sessions.info(connection_id)
    assert info is not None
    handle_text(sessions, info, json.dumps(frame))


def _subscribe(sessions: Sessions, queue: str, ack: str, prefetch: int | None = None) -> None:
    """Connection c1 subscribes to `queue` as s1 (each test's consumer)."""
    frame: dict[str, Any] = {"destination": f"/queue/{queue}", "id": "s1", "ack": ack}
    if prefetch is not None:
        frame["prefetch"] = prefetch
    _frame(sessions, "c1", action="subscribe", **frame)


def _send_batches(broker: QueueService, queue: str, count: int) -> None:
    for start in range(0, count, 10):
        entries = [(f"e{i}", NewMessage(body=BODY)) for i in range(start, start + 10)]
        broker.send_batch(ANONYMOUS, queue, entries)


def _new_messages(pusher: RecordingPusher, seen: int) -> list[dict[str, Any]]:
    return [f for f in pusher.json_frames("c1") if f["type"] == "message"][seen:]


def _write_units(used: Usage, aws: Aws) -> tuple[float, float]:
    """(destinations table: the consumer's own, messages table: the queue's)."""
    return (
        used.write_units.get(aws.settings.destinations_table, 0),
        used.write_units.get(aws.settings.messages_table, 0),
    )


@pytest.mark.parametrize(
    ("ack", "consumer_units", "queue_units"),
    [
        # auto: no record; the queue's leases (5, below) and one ack per segment of the one
        # push (its 50 references sit in 5 segments): 5 + 5 = 10, 0.2 per message
        ("auto", 0, 10),
        # client: one record for the one push (its 50 leases in 5 runs), one cumulative ack
        # settling 5 segments and moving the watermark: 1 + 1 and 5 + 5, 12 in all, 0.24
        # per message
        ("client", 2, 10),
        # client-individual: the record, then per ack one mark of the record and one
        # segment write: 1 + 50 and 5 + 50, 106 in all, 2.1 per message
        ("client-individual", 51, 55),
    ],
)
def test_pushing_and_acking_50_messages_with_prefetch_100_bills_these_write_units(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    ack: str,
    consumer_units: int,
    queue_units: int,
) -> None:
    # Given 50 messages of 512 bytes, sent in batches of 10: their references fill 5 index
    # segments of 10, one batch each, so each lease round of 10 takes one: 5 writes
    queue = f"costs-{ack}"
    _send_batches(broker, queue, 50)
    sessions.open(Connection("c1"), ANONYMOUS)
    start = meter.usage()

    # When a consumer subscribes with prefetch 100 and acks what it is pushed as its mode
    # says: nothing (auto), the last message (client), each message (client-individual)
    _subscribe(sessions, queue, ack, prefetch=100)
    pushed = _new_messages(pusher, 0)
    if ack == "client":
        _frame(sessions, "c1", action="ack", id=pushed[-1]["ack"])
    elif ack == "client-individual":
        for message in pushed:
            _frame(sessions, "c1", action="ack", id=message["ack"])

    # Then all 50 were pushed in one pump and settled, with no error and no lost race
    assert len(pushed) == 50
    assert not [f for f in pusher.json_frames("c1") if f["type"] == "error"]
    _, counts = broker.get_queue(ANONYMOUS, queue)
    assert (counts.visible, counts.in_flight) == (0, 0)
    used = meter.usage() - start
    assert used.failed_conditions == {}
    # and beyond the subscription's own two writes (the consumer; the connection's record of
    # its subscription), the figures above
    assert _write_units(used, aws) == (2 + consumer_units, queue_units)


def test_a_stream_of_batches_acked_cumulatively_bills_0_4_write_units_per_message(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 10 (issue 13's push path: batches of 10
    # sent over HTTP, pushed 10 per frame, one cumulative ack per push) of a queue whose
    # one producer sends to shard 7 (every random draw is the highest)
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "stream", "client")
    counted = Usage()
    seen = 0

    # When six batches of 10 arrive one after the other, each pumped by the dispatch
    # function and acked by the consumer's ack of its last message
    for _ in range(6):
        _send_batches(broker, "stream", 10)
        before = meter.usage()
        sessions.pump("stream", indexed=frozenset({7}))  # as the dispatch function does
        pushed = _new_messages(pusher, seen)
        assert len(pushed) == 10
        seen += len(pushed)
        _frame(sessions, "c1", action="ack", id=pushed[-1]["ack"])
        counted = counted + (meter.usage() - before)

    # Then the 60 references fill 6 segments of 10, one batch each, so each lease and each
    # ack touches one: 6 + 6 queue writes (the floor stays: each pump's look begins past
    # the segments the one before found held, and the floor moves when a look begins there
    # again, `HELD_MEMORY_MS` later); the consumer writes a record per push and a watermark
    # per ack: 6 + 6. 24 units for 60 messages: 0.4 each (0.55 with segments of 12, which
    # split batches of 10 over two)
    _, counts = broker.get_queue(ANONYMOUS, "stream")
    assert (counts.visible, counts.in_flight) == (0, 0)
    assert counted.failed_conditions == {}
    assert _write_units(counted, aws) == (12, 12)


def test_an_ack_of_a_consumer_that_keeps_up_with_its_producer_pumps_nothing(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given issue 13's push path: a client-mode consumer with prefetch 10, and a batch of
    # 10 sent to shard 7 of the queue's 8, indexed and pushed by the dispatch function
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "kept", "client")
    _send_batches(broker, "kept", 10)
    sessions.pump("kept", indexed=frozenset({7}))
    pushed = _new_messages(pusher, 0)
    assert len(pushed) == 10
    start = meter.usage()

    # When the consumer acks the push cumulatively (nothing else waits)
    _frame(sessions, "c1", action="ack", id=pushed[-1]["ack"])
    used = meter.usage() - start

    # Then the ack settles the batch's segment and moves the watermark, and reads no index
    # shard: no pump follows (it read all 8 shards, 4 units, and the consumers, 1); its
    # reads are the subscription (which carries the consumer's settings) and the records,
    # one each (the consumer item is not read: the watermark write returns what it held)
    _, counts = broker.get_queue(ANONYMOUS, "kept")
    assert (counts.visible, counts.in_flight) == (0, 0)
    assert _write_units(used, aws) == (1, 1)
    index_reads = [p for p in used.partition_read_units if " I#kept#" in p]
    assert index_reads == []
    assert used.read_units.get(aws.settings.destinations_table) == 2


def test_each_individual_ack_bills_one_unit_however_many_messages_one_push_could_carry(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, meter: Meter, aws: Aws
) -> None:
    # Given 120 small messages waiting (one 32 KB push could carry them all), and a STOMP 1.1
    # consumer (it acks by message id, so its records keep a tag of each id)
    for start in range(0, 120, 10):
        entries = [(f"e{i}", NewMessage(body=b"tiny")) for i in range(start, start + 10)]
        broker.send_batch(ANONYMOUS, "many", entries)
    sessions.open(Connection("c1", "stomp", "1.1"), ANONYMOUS)
    info = sessions.info("c1")
    assert info is not None
    start = meter.usage()

    # When it subscribes in client-individual mode with prefetch 200 and acks each message
    queue = sessions.subscribe(info, "s1", "/queue/many", ack="client-individual", prefetch=200)
    assert queue is not None
    sessions.pump(queue)
    pushed = [f.header("message-id") or "" for f in pusher.stomp_frames("c1")]
    for message_id in pushed:
        sessions.settle(info, Settle(subscription="s1", message_id=message_id))

    # Then they went out in pushes of at most 50, whose records stay under 1 KB with every
    # mark: the consumer's writes are the subscription's 2, 3 records and 1 unit per ack
    assert len(pushed) == 120
    _, counts = broker.get_queue(ANONYMOUS, "many")
    assert (counts.visible, counts.in_flight) == (0, 0)
    assert _write_units(meter.usage() - start, aws)[0] == 2 + 3 + 120


def test_a_pump_after_new_messages_reads_the_shard_they_are_in_not_the_empty_ones(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a push consumer (issue 13's push path: prefetch 10, cumulative acks) of a queue
    # of 4 shards, fed once from the shard its one producer sends to (the last: every random
    # draw here is the highest) while the other three hold nothing, and acked
    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    broker.put_queue(ANONYMOUS, "spread", QueueSettings(shards=4))
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "spread", "client", prefetch=10)
    _send_batches(broker, "spread", 10)
    sessions.pump("spread")
    pushed = _new_messages(pusher, 0)
    assert len(pushed) == 10
    _frame(sessions, "c1", action="ack", id=pushed[-1]["ack"])
    [home] = {
        p.rsplit("#", 1)[1]
        for p in meter.usage().partition_write_units
        if p.startswith(f"{aws.settings.messages_table} L#spread#")
    }
    assert home == "3"

    # When the producer sends ten more and the dispatch function pumps the queue
    _send_batches(broker, "spread", 10)
    before = meter.usage()
    sessions.pump("spread")
    used = meter.usage() - before

    # Then the ten are pushed, and the pump read no shard but theirs (the three empty ones
    # cost 0.5 read units each, every pump)
    assert len(_new_messages(pusher, 10)) == 10
    index_reads = {
        p.split(" ", 1)[1]: units
        for p, units in used.partition_read_units.items()
        if p.startswith(f"{aws.settings.messages_table} I#spread#")
    }
    assert set(index_reads) == {f"I#spread#{home}"}


def _subscribe_and_count(
    sessions: Sessions,
    pusher: RecordingPusher,
    meter: Meter,
    connection_id: str,
    queue: str,
    selector: str | None,
) -> tuple[int, Usage]:
    """A push consumer in auto mode subscribes; (messages it was pushed, what that billed)."""
    sessions.open(Connection(connection_id), ANONYMOUS)
    start = meter.usage()
    frame: dict[str, Any] = {"destination": f"/queue/{queue}", "id": "s1", "prefetch": 100}
    if selector is not None:
        frame["selector"] = selector
    info = sessions.info(connection_id)
    assert info is not None
    handle_text(sessions, info, json.dumps({"action": "subscribe", **frame}))
    pushed = [f for f in pusher.json_frames(connection_id) if f["type"] == "message"]
    return len(pushed), meter.usage() - start


def test_a_selector_that_selects_every_message_bills_what_no_selector_bills(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, meter: Meter, aws: Aws
) -> None:
    # Given two queues of 50 messages of 512 bytes each, sent in batches of 10
    _send_batches(broker, "plain", 50)
    _send_batches(broker, "selected", 50)

    # When one is drained by a consumer without a selector, the other by one whose selector
    # every message matches
    plain_count, plain = _subscribe_and_count(sessions, pusher, meter, "c1", "plain", None)
    selected_count, selected = _subscribe_and_count(
        sessions, pusher, meter, "c2", "selected", "JMSDeliveryMode = 'PERSISTENT'"
    )

    # Then both got all 50 and the selector cost no extra write and no extra log item read:
    # its log items are read before the claim instead of after it (the index reads vary
    # from run to run with the shard a receive starts at, with or without a selector).
    # A lone consumer takes the 50 in one look: without a selector their 5 log items are
    # read in one request after the claims; with one, before each page's claims (a page of
    # the index is 4 segments of 10), the same items in two requests (billed by the item)
    assert (plain_count, selected_count) == (50, 50)
    assert _write_units(selected, aws) == _write_units(plain, aws) == (2, 10)
    log_reads = "dynamodb:BatchGetItem"
    assert plain.requests.get(log_reads) == 1
    assert selected.requests.get(log_reads) == 2


def test_messages_a_selector_passes_over_bill_no_write_and_are_read_once(
    sessions: Sessions, pusher: RecordingPusher, broker: QueueService, meter: Meter, aws: Aws
) -> None:
    # Given 50 messages of 512 bytes (5 log items: batches of 10) that a selector rejects
    _send_batches(broker, "others", 50)

    # When a selector consumer subscribes, then is fed again (a new message, say)
    count, first = _subscribe_and_count(sessions, pusher, meter, "c1", "others", "tier = 'gold'")
    start = meter.usage()
    sessions.pump("others")
    again = meter.usage() - start

    # Then it was pushed nothing and nothing in the messages table was written; the 5 log
    # items were read (BatchGetItem, eventually consistent, under 4 KB: 0.5 unit each), and
    # feeding it again reads no log item: the verdicts are remembered
    assert count == 0
    assert _write_units(first, aws) == (2, 0)
    assert 1 <= first.requests.get("dynamodb:BatchGetItem", 0) <= 5
    assert _write_units(again, aws)[1] == 0
    assert again.requests.get("dynamodb:BatchGetItem", 0) == 0


def _dispatch(aws: Aws, sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The dispatch function wired to these sessions: returns a function that hands it the
    INSERT records of the log items written since the last call (as the stream would)."""
    from mqless import wiring
    from mqless.domain.clock import SystemClock
    from mqless.storage.destinations import QueueRegistry
    from mqless.transports.dispatch import handle_batch
    from tests.lambda_support import FakeLambdaContext

    monkeypatch.setattr(wiring, "sessions", lambda: sessions)
    # `$connect` stores the connection through the store alone (no sessions built)
    monkeypatch.setattr(wiring, "connection_store", lambda: sessions.live)
    indexer = assembly.build_indexer(
        aws.settings,
        dynamodb=aws.dynamodb,
        kms=aws.kms,
        registry=QueueRegistry(aws.dynamodb, aws.settings.destinations_table, SystemClock()),
        topics=sessions._topics,
        time=SystemClock(),
    )
    monkeypatch.setattr(wiring, "indexer", lambda: indexer)
    seen: set[tuple[str, str]] = set()

    def run() -> dict[str, Any]:
        logged = [
            i
            for i in aws.dynamodb.scan(TableName=aws.settings.messages_table)["Items"]
            if i["pk"]["S"].startswith("L#") and (i["pk"]["S"], i["sk"]["S"]) not in seen
        ]
        seen.update((i["pk"]["S"], i["sk"]["S"]) for i in logged)
        records = [
            {
                "eventID": str(n),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"pk": i["pk"], "sk": i["sk"]},
                    "NewImage": i,
                    "SequenceNumber": str(n),
                    "StreamViewType": "NEW_IMAGE",
                },
            }
            for n, i in enumerate(logged)
        ]
        return dict(handle_batch({"Records": records}, FakeLambdaContext()))

    return run


def test_a_pushed_batch_is_indexed_and_leased_in_one_write(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given issue 13's push path: a client-mode consumer with prefetch 10 that was pushed
    # a batch and acked it, and a second batch of 10 sent that the dispatch function has
    # not indexed yet
    from tests.inline_dispatch import INLINE_DISPATCH

    dispatch = _dispatch(aws, sessions, monkeypatch)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "one", "client")
    with INLINE_DISPATCH.paused():
        _send_batches(broker, "one", 10)
    dispatch()
    _frame(sessions, "c1", action="ack", id=_new_messages(pusher, 0)[-1]["ack"])
    with INLINE_DISPATCH.paused():
        _send_batches(broker, "one", 10)
    start = meter.usage()

    # When the dispatch function gets the log item's stream record
    assert dispatch() == {"batchItemFailures": []}
    used = meter.usage() - start

    # Then the ten are pushed, each delivered once, and the messages table took one write:
    # the segment, appended with the ten already leased to the consumer (no lease write,
    # no read of the log item: its image came with the stream record); the consumer's
    # record is the other
    pushed = _new_messages(pusher, 10)
    assert len(pushed) == 10
    assert {m["receive_count"] for m in pushed} == {1}
    assert _write_units(used, aws) == (1, 1)
    assert used.requests.get("dynamodb:BatchGetItem", 0) == 0
    _, counts = broker.get_queue(ANONYMOUS, "one")
    assert (counts.visible, counts.in_flight) == (0, 10)
    # and the consumer's cumulative ack settles them
    _frame(sessions, "c1", action="ack", id=pushed[-1]["ack"])
    _, counts = broker.get_queue(ANONYMOUS, "one")
    assert (counts.visible, counts.in_flight) == (0, 0)


def test_a_stream_batch_for_a_full_consumer_counts_its_credit_once_and_reads_no_index_page(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-individual consumer with prefetch 10 of a queue whose one producer
    # sends to shard 7, pushed ten by the dispatch function and acking none (it is full)
    from tests.inline_dispatch import INLINE_DISPATCH

    monkeypatch.setattr("random.randrange", lambda n: n - 1)
    dispatch = _dispatch(aws, sessions, monkeypatch)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "full", "client-individual", prefetch=10)
    with INLINE_DISPATCH.paused():
        _send_batches(broker, "full", 10)
    dispatch()
    assert len(_new_messages(pusher, 0)) == 10
    with INLINE_DISPATCH.paused():
        _send_batches(broker, "full", 10)
    start = meter.usage()

    # When the dispatch function gets the next batch's stream record
    assert dispatch() == {"batchItemFailures": []}
    used = meter.usage() - start

    # Then nothing more is pushed, the ten wait, and the batch cost four queries: the
    # consumers before the append and after it (strongly, for one that just subscribed),
    # their credit once (the pump after the append takes the plan's count) and the index's
    # tail for the append, with no look at the index from its floor (the consumer could
    # lease nothing, whatever waits there)
    assert len(_new_messages(pusher, 10)) == 0
    _, counts = broker.get_queue(ANONYMOUS, "full")
    assert (counts.visible, counts.in_flight) == (10, 10)
    assert used.requests.get("dynamodb:Query", 0) == 4
    index = f"{aws.settings.messages_table} I#full#7"
    assert used.partition_read_units[index] == 1  # the tail, strongly consistent


def test_the_credit_of_a_consumer_fed_in_small_pushes_is_counted_in_one_query(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-individual consumer with prefetch 45, pushed two messages by each of
    # 20 stream batches (20 delivery records live: more than one first page of 16; with
    # room for 5 left, too little for the container's own count to stand in for a read,
    # `remembered_credit.py`)
    from tests.inline_dispatch import INLINE_DISPATCH

    dispatch = _dispatch(aws, sessions, monkeypatch)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "small", "client-individual", prefetch=45)
    two = [(f"e{i}", NewMessage(body=BODY)) for i in range(2)]
    for _ in range(20):
        with INLINE_DISPATCH.paused():
            broker.send_batch(ANONYMOUS, "small", two)
        dispatch()
    assert len(_new_messages(pusher, 0)) == 40
    with INLINE_DISPATCH.paused():
        broker.send_batch(ANONYMOUS, "small", two)
    start = meter.usage()

    # When the next stream batch of two arrives
    assert dispatch() == {"batchItemFailures": []}
    used = meter.usage() - start

    # Then the two are pushed, and the batch cost three queries: the consumers, their
    # records (one page as long as the last count needed, not a page of 16 and the rest)
    # and the index's tail
    assert len(_new_messages(pusher, 40)) == 2
    assert used.requests.get("dynamodb:Query", 0) == 3


def test_a_priority_queues_stream_batch_is_not_leased_in_the_append_its_highest_goes_first(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a queue with priority lanes and a client-mode consumer with room for one
    from tests.inline_dispatch import INLINE_DISPATCH

    dispatch = _dispatch(aws, sessions, monkeypatch)
    broker.put_queue(ANONYMOUS, "lanes", QueueSettings(max_priority=9))
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "lanes", "client", prefetch=1)
    # and one batch sent with a low-priority message before an urgent one, not yet indexed
    with INLINE_DISPATCH.paused():
        broker.send_batch(
            ANONYMOUS,
            "lanes",
            [
                ("low", NewMessage(body=b"low", priority=1)),
                ("urgent", NewMessage(body=b"urgent", priority=9)),
            ],
        )

    # When the dispatch function indexes that batch
    assert dispatch() == {"batchItemFailures": []}

    # Then the consumer's one place goes to the urgent message (a pump takes the highest lane
    # first; leasing in the append would have given it the first of the batch)
    assert [m["body"] for m in _new_messages(pusher, 0)] == ["urgent"]


def test_a_stream_batch_of_thirty_for_a_lone_consumer_is_leased_whole_in_the_append(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    meter: Meter,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a queue's only consumer, client-individual with prefetch 100, and 30 messages
    # sent in batches of ten that the dispatch function has not indexed yet
    from tests.inline_dispatch import INLINE_DISPATCH

    dispatch = _dispatch(aws, sessions, monkeypatch)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "lone", "client-individual", prefetch=100)
    with INLINE_DISPATCH.paused():
        _send_batches(broker, "lone", 30)
    start = meter.usage()

    # When the dispatch function gets their stream batch
    assert dispatch() == {"batchItemFailures": []}
    used = meter.usage() - start

    # Then all 30 are pushed, each delivered once, leased in the append itself: no pump
    # after it looked at the index for the 20 past a round's ten, leased them (a write
    # each segment) and read their log items
    pushed = _new_messages(pusher, 0)
    assert len(pushed) == 30
    assert {m["receive_count"] for m in pushed} == {1}
    assert used.requests.get("dynamodb:BatchGetItem", 0) == 0
    assert used.requests.get("dynamodb:UpdateItem", 0) == 0  # appends are puts here
    _, counts = broker.get_queue(ANONYMOUS, "lone")
    assert (counts.visible, counts.in_flight) == (0, 30)


@pytest.mark.parametrize("ack", ["client", "client-individual"])
def test_an_ack_that_refills_its_consumer_reads_the_consumers_delivery_records_once(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
    ack: str,
) -> None:
    # Given a consumer with STOMP's default prefetch of 10 holding 10 of 20 waiting messages
    _send_batches(broker, f"refill-{ack}", 20)
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, f"refill-{ack}", ack, prefetch=10)
    pushed = _new_messages(pusher, 0)
    assert len(pushed) == 10
    reads = count_calls(monkeypatch, DeliveryRecords, "recent")

    # When it acks: in client mode the push's last message (all ten), in client-individual
    # mode the first
    _frame(sessions, "c1", action="ack", id=pushed[-1 if ack == "client" else 0]["ack"])

    # Then the room it opened is filled at once
    assert len(_new_messages(pusher, 10)) == (10 if ack == "client" else 1)
    assert not [f for f in pusher.json_frames("c1") if f["type"] == "error"]
    # and its delivery records were read once (a strongly consistent query): by the ack,
    # whose count of what the consumer holds the pump after it takes, not counts again
    assert reads() == 1


def test_a_pump_that_lost_its_record_race_gives_back_a_segments_leases_in_one_write(
    sessions: Sessions,
    pusher: RecordingPusher,
    broker: QueueService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client-mode consumer with prefetch 3 and six messages sent together (one
    # index segment), and a second pump (another Lambda instance) that runs whole while the
    # first one is leasing: both counted the same free credit
    sessions.open(Connection("c1"), ANONYMOUS)
    _subscribe(sessions, "lost", "client", prefetch=3)
    broker.send_batch(ANONYMOUS, "lost", [(f"e{i}", NewMessage(body=BODY)) for i in range(6)])
    receive = broker.receive
    raced: list[bool] = []

    def receive_after_a_racing_pump(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            sessions.pump("lost")
        return receive(*args, **kwargs)

    monkeypatch.setattr(broker, "receive", receive_after_a_racing_pump)
    writes = count_calls(monkeypatch, IndexStore, "set_until")

    # When the first pump goes on after the second one pushed, and finds no room left
    sessions.pump("lost")

    # Then the consumer holds the second pump's three, the first pump's three are visible
    # again, and they went back in one index write, not one each
    assert len(_new_messages(pusher, 0)) == 3
    _, counts = broker.get_queue(ANONYMOUS, "lost")
    assert (counts.visible, counts.in_flight) == (3, 3)
    assert writes() == 1
