"""The README's 30-second tour, over real HTTP against `mqless dev`."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import DevServer


def test_create_send_receive_ack_over_http(mqless_dev: DevServer) -> None:
    # Given a running `mqless dev`
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # When a queue is created, a message sent, received and acked with plain HTTP
        created = http.put("/queues/tour", json={"visibility_timeout": 30})
        sent = http.post("/queues/tour/messages", json={"body": "hello", "attributes": {"k": "v"}})
        received = http.post("/queues/tour/receive", json={"wait_seconds": 5})
        message = received.json()["messages"][0]
        acked = http.post("/queues/tour/ack", json={"receipts": [message["receipt"]]})
        stats = http.get("/queues/tour").json()

    # Then each step answers as the README shows and the queue ends empty
    assert created.status_code == 201
    assert sent.status_code == 201
    assert message["message_id"] == sent.json()["message_id"]
    assert message["body"] == "hello"
    assert message["attributes"] == {"k": "v"}
    assert acked.status_code == 200
    assert acked.json()["acked"] == [message["receipt"]]
    assert stats["counts"] == {"visible": 0, "in_flight": 0, "delayed": 0, "approximate": False}


def test_long_poll_returns_as_soon_as_a_message_arrives(mqless_dev: DevServer) -> None:
    import threading
    import time

    # Given a consumer long-polling an empty queue
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        http.put("/queues/longpoll", json={})
        result: dict[str, object] = {}

        def consume() -> None:
            start = time.monotonic()
            response = http.post("/queues/longpoll/receive", json={"wait_seconds": 10})
            result["elapsed"] = time.monotonic() - start
            result["messages"] = response.json()["messages"]

        consumer = threading.Thread(target=consume)
        consumer.start()
        time.sleep(0.5)
        # When a producer sends
        with httpx.Client(
            base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
        ) as producer:
            producer.post("/queues/longpoll/messages", json={"body": "wake up"})
        consumer.join(timeout=15)

    # Then the poll returns with the message well before its 10 s wait is over
    messages = result["messages"]
    assert isinstance(messages, list) and [m["body"] for m in messages] == ["wake up"]
    assert float(result["elapsed"]) < 5  # type: ignore[arg-type]


def test_errors_are_json_problems_over_the_wire(mqless_dev: DevServer) -> None:
    # Given `mqless dev` and a client with its token
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # When a client sends malformed JSON and asks for an unknown queue and route
        bad_json = http.post(
            "/queues/tour/messages",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        unknown_queue = http.post("/queues/never-made/receive", json={})
        unknown_route = http.get("/nowhere")

    # Then API Gateway-like answers come back: JSON problems from the API, 404 from routing
    assert bad_json.status_code == 400
    assert bad_json.json()["error"] == "invalid_request"
    assert unknown_queue.status_code == 404
    assert unknown_queue.json()["error"] == "queue_not_found"
    assert unknown_route.status_code == 404


def test_console_prints_one_line_per_invocation(mqless_dev: DevServer) -> None:
    # Given `mqless dev` printing its console
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # When a client lists queues
        http.get("/queues")
    # Then the console prints a line for the HTTP function's invocation: GET /queues -> 200
    line = mqless_dev.wait_for_output("GET /queues -> 200")
    assert "HttpApiFunction" in line


def test_topic_publish_reaches_a_durable_subscription_through_the_stream(
    mqless_dev: DevServer,
) -> None:
    import time

    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        # Given a queue subscribed to every `shop.` topic whose region is eu
        http.put("/queues/eu-orders", json={})
        subscribed = http.put(
            "/topics/shop.%3E/subscriptions/eu",
            json={"queue": "eu-orders", "filter_policy": {"region": ["eu"]}},
        )
        # When two messages are published, one for eu and one for us
        start = time.monotonic()
        http.post(
            "/topics/shop.orders/messages", json={"body": "eu", "attributes": {"region": "eu"}}
        )
        http.post(
            "/topics/shop.orders/messages", json={"body": "us", "attributes": {"region": "us"}}
        )
        # Then the stream poller and dispatch function deliver only the eu one to the queue
        received = http.post("/queues/eu-orders/receive", json={"wait_seconds": 10}).json()
        elapsed = time.monotonic() - start
        time.sleep(0.5)
        rest = http.post("/queues/eu-orders/receive", json={}).json()

    assert subscribed.status_code == 201, subscribed.text
    assert [m["body"] for m in received["messages"]] == ["eu"]
    assert rest["messages"] == []
    assert elapsed < 5
