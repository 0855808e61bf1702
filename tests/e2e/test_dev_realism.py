"""`mqless dev --realism aws`: the runtime says which AWS behaviours it reproduces, and the
broker still serves a send and a receive under them."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.e2e.conftest import ROOT, DevServer


def test_mqless_dev_realism_aws_prints_what_it_reproduces_and_serves(
    dev_server: Callable[..., DevServer],
) -> None:
    # Given `mqless dev --realism aws` (the last --realism wins over $MQLESS_REALISM's)
    server = dev_server(ROOT / "template.yaml", "--realism", "aws")

    # When it starts
    # Then it says which behaviours are on
    line = server.wait_for_output("realism", timeout=10)
    assert "read-lag-ms=500.0" in line and "throttle=True" in line and "ttl=random" in line

    # And a message sent is received once the stream poller (every 250 ms) has indexed it
    with httpx.Client(base_url=server.http_url, headers=server.auth_headers(), timeout=30) as http:
        assert http.post("/queues/real/messages", json={"body": "hello"}).status_code == 201
        received = http.post("/queues/real/receive", json={"wait_seconds": 10}).json()
    assert [m["body"] for m in received["messages"]] == ["hello"]
