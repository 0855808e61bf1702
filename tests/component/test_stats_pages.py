"""The overview (`GET /stats`) a page at a time: what it lists, and what a poll reads, by
DynamoDB's rules (the console polls it every 2 s while it is open)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from conftest_http import HttpApi

from mqless import wiring
from mqless.domain.models import DEFAULT_SHARDS
from mqless.storage.index import IndexStore
from mqless_cli.billing import Meter
from mqless_cli.cfn import Stack
from tests.component.shared_stack import (  # noqa: F401 - fixtures: one moto for the module
    shared_dynamodb,
    shared_kms,
    shared_settings,
    shared_stack,
)

NO_DEAD_LETTERS = {"max_receive_count": None}


@pytest.fixture
def api(function_env: dict[str, str], stack: Stack) -> HttpApi:
    return HttpApi(stack.http_routes())


def _queues(api: HttpApi, *names: str, settings: dict[str, Any] = NO_DEAD_LETTERS) -> None:
    for name in names:
        assert api.put(f"/queues/{name}", settings).status in (200, 201)
        assert api.post(f"/queues/{name}/messages", {"body": "x"}).status == 201


def _segment_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, int]]:
    """Index reads (Queries of a shard's segments) from now on, by (queue, shard)."""
    reads: Counter[tuple[str, int]] = Counter()
    original = IndexStore.segments

    def counted(self: IndexStore, queue: str, shard: int, *args: Any, **kwargs: Any) -> Any:
        reads[(queue, shard)] += 1
        return original(self, queue, shard, *args, **kwargs)

    monkeypatch.setattr(IndexStore, "segments", counted)
    return reads


def test_the_overview_pages_through_the_queues_by_name(api: HttpApi) -> None:
    # Given five queues
    _queues(api, "e", "c", "a", "d", "b")

    # When the overview is read two queues a page, each page from the last one's cursor
    pages = [api.get("/stats?limit=2").json]
    while pages[-1]["cursor"]:
        pages.append(api.get(f"/stats?limit=2&cursor={pages[-1]['cursor']}").json)

    # Then the pages list them by name, say more follow but on the last, and count all five
    assert [[q["name"] for q in p["queues"]] for p in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert [(p["truncated"], p["total"]) for p in pages] == [(True, 5), (True, 5), (False, 5)]
    assert [q["visible"] for p in pages for q in p["queues"]] == [1] * 5


def test_the_overview_without_a_page_asked_lists_the_first_hundred_as_before(
    api: HttpApi,
) -> None:
    # Given three queues
    _queues(api, "a", "b", "c")
    # When the overview is read as a client of the first version reads it
    overview = api.get("/stats").json
    # Then it lists all three, not truncated, with the topics and connections as before
    assert [q["name"] for q in overview["queues"]] == ["a", "b", "c"]
    assert (overview["truncated"], overview["cursor"], overview["topics"]) == (False, None, [])


def test_a_search_lists_the_queues_whose_name_contains_it_and_counts_only_those(
    api: HttpApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three queues, two of them orders'
    _queues(api, "eu-orders", "payments", "US-ORDERS")
    reads = _segment_reads(monkeypatch)
    # When the overview is searched for "orders"
    overview = api.get("/stats?name=orders").json
    # Then it lists those two (any case), and reads only their indexes
    assert [q["name"] for q in overview["queues"]] == ["US-ORDERS", "eu-orders"]
    assert overview["total"] == 2
    assert {queue for queue, _ in reads} == {"US-ORDERS", "eu-orders"}


def test_topics_and_connections_alone_read_no_queue(
    api: HttpApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue
    _queues(api, "orders")
    reads = _segment_reads(monkeypatch)
    # When the overview is read with no queue a page (the console's topics view)
    overview = api.get("/stats?limit=0").json
    # Then it lists no queue, says more exist, and reads no index
    assert (overview["queues"], overview["truncated"], overview["total"]) == ([], True, 1)
    assert not reads


def test_each_shard_of_a_queue_and_of_its_dead_letter_queue_is_read_once_a_poll(
    api: HttpApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue with its dead-letter queue, both on the overview's page
    _queues(api, "orders", settings={"max_receive_count": 3})
    reads = _segment_reads(monkeypatch)

    # When the overview is read
    overview = api.get("/stats").json

    # Then both are listed, the dead-letter queue's depth beside its source, and every shard
    # of each was read once (not again for the oldest message, nor for the source's row)
    assert [q["name"] for q in overview["queues"]] == ["orders", "orders.dlq"]
    assert overview["queues"][0]["dead_letter_visible"] == 0
    assert overview["queues"][0]["oldest_age_seconds"] is not None
    assert set(reads.values()) == {1}
    assert len(reads) == 2 * DEFAULT_SHARDS


def test_a_polls_requests_do_not_grow_with_the_queues_beyond_its_page(
    api: HttpApi, meter: Meter
) -> None:
    # Given three queues, read two a page (the first poll: configs cached, as when polling)
    _queues(api, "a", "b", "c")
    api.get("/stats?limit=2")

    def poll() -> float:
        before = meter.usage()
        assert len(api.get("/stats?limit=2").json["queues"]) == 2
        return (meter.usage() - before).count("dynamodb", "Query")

    few = poll()

    # When there are twenty more queues, and the same page is read again
    _queues(api, *(f"z{i:02d}" for i in range(20)))
    api.get("/stats?limit=2")
    many = poll()

    # Then the poll made as many queries: per queue on the page, one per index shard and one
    # for its consumers; the queue list, the topics' subscriptions and live subscribers, and
    # the connection count
    assert many == few <= 2 * (DEFAULT_SHARDS + 1) + 4


def test_a_polls_consumer_counts_bill_half_a_read_unit_a_queue(api: HttpApi, meter: Meter) -> None:
    # Given two queues
    _queues(api, "a", "b")

    # When the overview is read
    before = meter.usage()
    api.get("/stats")
    usage = meter.usage() - before

    # Then each queue's consumers were read eventually consistent: half a unit each (a count
    # the console shows for 2 s; GET /queues/{name}/stats still reads it strongly consistent)
    consumers = {
        key.rpartition(" ")[2]: units
        for key, units in usage.partition_read_units.items()
        if key.rpartition(" ")[2].startswith("QC#")
    }
    assert consumers == {"QC#a": 0.5, "QC#b": 0.5}


def test_a_poll_reads_a_dead_letter_queues_settings_from_the_list_not_again(
    api: HttpApi, meter: Meter
) -> None:
    # Given a queue with its dead-letter queue, their settings no longer cached (the cache
    # keeps them 5 s; the console polls every 2 s or so)
    _queues(api, "orders", settings={"max_receive_count": 3})
    for name in ("orders", "orders.dlq"):
        wiring.registry().forget(name)

    # When the overview is read
    before = meter.usage()
    overview = api.get("/stats").json
    usage = meter.usage() - before

    # Then the source names its dead-letter queue's depth, from the one query listing the
    # queues: no queue's settings were read on their own
    assert overview["queues"][0]["dead_letter_visible"] == 0
    assert usage.count("dynamodb", "GetItem") == 0
