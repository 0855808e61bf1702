"""The local HTTP gateway answers keep-alive requests without Nagle's delay, and bursts of clients.

A response leaves as two writes (headers, then body); with Nagle's algorithm on, the body
waits for the client's delayed ACK, about 40 ms on Linux, on every request of a kept-alive
connection: the SDKs' and `make bench`'s clients keep connections alive.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqless_cli.local.cloud import LocalCloud
from mqless_cli.local.functions import FunctionHost
from mqless_cli.local.http_gateway import LOCAL_BILL_PATH, HttpGateway

APP = Path(__file__).resolve().parents[2] / "tests" / "e2e" / "fixtures" / "ws_app"


@pytest.fixture
def gateway() -> Iterator[HttpGateway]:
    cloud = LocalCloud.start(APP / "template.yaml")
    served = HttpGateway(
        cloud.stack, FunctionHost(cloud.stack, APP), port=0, bill=lambda: {"dollars": 0}
    )
    served.start()
    try:
        yield served
    finally:
        served.stop()
        cloud.stop()


def test_keep_alive_requests_are_answered_without_a_delayed_ack_stall(
    gateway: HttpGateway,
) -> None:
    # Given one kept-alive connection
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)

    # When it makes 20 requests in a row
    took = []
    for _ in range(20):
        start = time.perf_counter()
        connection.request("GET", LOCAL_BILL_PATH)
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b'{"dollars": 0}'
        took.append(time.perf_counter() - start)

    # Then a typical answer takes far less than the 40 ms a delayed ACK costs
    assert statistics.median(took) < 0.02, took


def test_fifty_clients_connecting_at_once_are_all_answered(gateway: HttpGateway) -> None:
    # Given 50 clients that connect at the same moment (competing consumers starting up)
    host, port = gateway.url.removeprefix("http://").split(":")
    start = threading.Barrier(50)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            start.wait()
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("GET", LOCAL_BILL_PATH)
            statuses.append(connection.getresponse().status)
        except BaseException as error:  # a reset connection is the failure looked for
            errors.append(error)

    # When they all connect and ask for the bill
    threads = [threading.Thread(target=client) for _ in range(50)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every one gets its answer at once: none is reset, none waits for its connection
    # attempt to be retried (Linux retries a dropped SYN after 1, then 3 seconds)
    assert errors == []
    assert statuses == [200] * 50
    assert time.perf_counter() - began < 1.0
