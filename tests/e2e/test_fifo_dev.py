"""A FIFO queue under `mqless dev`: sends indexed from the stream (its pollers, the dispatch
function), received and acked over real HTTP."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import DevServer

GROUPS = 10
ROUNDS = 5


def test_batches_of_ten_groups_are_delivered_in_order_one_in_flight_per_group(
    mqless_dev: DevServer,
) -> None:
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # Given a FIFO queue sent five batches, each holding the next message of ten groups
        assert http.put("/queues/ledger.fifo", json={}).status_code in (200, 201)
        for round in range(ROUNDS):
            entries = [
                {"id": f"e{g}", "body": f"g{g}-{round}", "group_id": f"g{g}"} for g in range(GROUPS)
            ]
            sent = http.post("/queues/ledger.fifo/messages/batch", json={"entries": entries})
            assert sent.status_code == 200 and not sent.json()["failed"], sent.text

        # When a consumer receives up to ten at a time and acks what it got
        seen: dict[str, list[str]] = {}
        batches: list[list[str]] = []
        while sum(len(v) for v in seen.values()) < GROUPS * ROUNDS:
            got = http.post(
                "/queues/ledger.fifo/receive", json={"max_messages": 10, "wait_seconds": 5}
            ).json()["messages"]
            assert got, f"stopped after {seen}"
            batches.append([m["group_id"] for m in got])
            for m in got:
                seen.setdefault(m["group_id"], []).append(m["body"])
            acked = http.post(
                "/queues/ledger.fifo/ack", json={"receipts": [m["receipt"] for m in got]}
            )
            assert acked.status_code == 200 and len(acked.json()["acked"]) == len(got)

        # Then every group came in the order sent, once each, never two of a group at once
        assert seen == {f"g{g}": [f"g{g}-{r}" for r in range(ROUNDS)] for g in range(GROUPS)}
        assert all(len(set(b)) == len(b) for b in batches)
        assert http.get("/queues/ledger.fifo").json()["counts"]["visible"] == 0
