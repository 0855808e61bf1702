"""The WebSocket JSON protocol against `mqless dev`: topic subscribers, queue consumers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.e2e.conftest import DevServer


async def _next(ws: Any, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next server frame of type `kind`, batches opened up; frames of other types are
    kept for later calls (a pushed message may overtake the receipt of its publish)."""
    if not hasattr(ws, "mqless_pending"):
        ws.mqless_pending = []
    pending: list[dict[str, Any]] = ws.mqless_pending
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for index, frame in enumerate(pending):
            if frame.get("type") == kind:
                return pending.pop(index)
        remaining = deadline - asyncio.get_running_loop().time()
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(remaining, 0.001)))
        pending.extend(frame["frames"] if frame.get("type") == "batch" else [frame])


async def _quiet(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Frames that arrive within `seconds` (none expected)."""
    try:
        return [json.loads(await asyncio.wait_for(ws.recv(), seconds))]
    except TimeoutError:
        return []


def test_live_subscribers_get_matching_topic_messages(mqless_dev: DevServer) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with (
            websockets.connect(mqless_dev.authed_ws_url) as first,
            # (this one sends its token in a header, not in the URL)
            websockets.connect(
                mqless_dev.ws_url, additional_headers=mqless_dev.auth_headers()
            ) as second,
        ):
            # Given two clients subscribed to a wildcard and an exact topic
            await first.send(
                json.dumps({"action": "subscribe", "destination": "/topic/news.*", "id": "a"})
            )
            await second.send(
                json.dumps({"action": "subscribe", "destination": "/topic/news.eu", "id": "b"})
            )
            await _next(first, "subscribed")
            await _next(second, "subscribed")
            # When a message is published over HTTP
            async with httpx.AsyncClient(
                base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
            ) as http:
                published = await http.post(
                    "/topics/news.eu/messages",
                    json={"body": "hello", "attributes": {"lang": "en"}},
                )
            # Then both receive it, each under its own subscription id
            return published.json(), await _next(first, "message"), await _next(second, "message")

    published, got_first, got_second = asyncio.run(scenario())
    assert got_first["message_id"] == got_second["message_id"] == published["message_id"]
    assert (got_first["subscription"], got_second["subscription"]) == ("a", "b")
    assert got_first["body"] == "hello"
    assert got_first["attributes"] == {"lang": "en"}
    assert got_first["destination"] == "/topic/news.eu"


def test_publish_over_websocket_with_a_receipt(mqless_dev: DevServer) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with websockets.connect(mqless_dev.authed_ws_url) as ws:
            # Given a JSON client subscribed to /topic/chat.>
            await ws.send(
                json.dumps({"action": "subscribe", "destination": "/topic/chat.>", "id": "s"})
            )
            # When it publishes to /topic/chat.room1, asking for receipt r-1
            await _next(ws, "subscribed")
            await ws.send(
                json.dumps(
                    {
                        "action": "publish",
                        "destination": "/topic/chat.room1",
                        "body": "hi all",
                        "receipt": "r-1",
                    }
                )
            )
            return await _next(ws, "receipt"), await _next(ws, "message")

    # Then it gets the receipt, naming the message id, and the message itself
    receipt, message = asyncio.run(scenario())
    assert receipt["receipt"] == "r-1"
    assert message["message_id"] == receipt["message_id"]
    assert message["body"] == "hi all"


def test_publish_to_a_queue_over_websocket_lands_in_the_queue(mqless_dev: DevServer) -> None:
    # Given a JSON WebSocket client
    async def scenario() -> dict[str, Any]:
        async with websockets.connect(mqless_dev.authed_ws_url) as ws:
            # When it publishes to /queue/ws-jobs, asking for a receipt
            await ws.send(
                json.dumps(
                    {
                        "action": "publish",
                        "destination": "/queue/ws-jobs",
                        "body": "job",
                        "receipt": "q",
                    }
                )
            )
            return await _next(ws, "receipt")

    receipt = asyncio.run(scenario())
    # Then a receive over HTTP gets the message the receipt names
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        got = http.post("/queues/ws-jobs/receive", json={"wait_seconds": 2}).json()
    assert [m["message_id"] for m in got["messages"]] == [receipt["message_id"]]


def test_bad_frames_get_error_frames_and_the_connection_stays_usable(
    mqless_dev: DevServer,
) -> None:
    # Given a JSON WebSocket client
    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(mqless_dev.authed_ws_url) as ws:
            errors = []
            # When it sends five bad frames (no JSON, an unknown action, a pattern with > inside, a
            # prefetch of 0, an unsubscribe of nothing), then a good subscribe
            for frame in (
                "not json",
                json.dumps({"action": "dance"}),
                json.dumps({"action": "subscribe", "destination": "/topic/a.>.b", "id": "x"}),
                json.dumps(
                    {"action": "subscribe", "destination": "/queue/jobs", "id": "q", "prefetch": 0}
                ),
                json.dumps({"action": "unsubscribe", "id": "never"}),
            ):
                await ws.send(frame)
                errors.append(await _next(ws, "error"))
            await ws.send(
                json.dumps({"action": "subscribe", "destination": "/topic/ok", "id": "fine"})
            )
            await _next(ws, "subscribed")
            return errors

    # Then each bad frame got an invalid_request error frame saying why (prefetch named), and the
    # subscribe still worked
    errors = asyncio.run(scenario())
    assert [e["error"] for e in errors] == ["invalid_request"] * 5
    assert all(e["message"] for e in errors)
    assert "prefetch" in errors[3]["message"]


def test_a_closed_subscriber_is_forgotten(mqless_dev: DevServer) -> None:
    # Given a JSON client that subscribed to /topic/gone.x and left
    subscribed_at = mqless_dev.mark()

    async def subscribe_and_leave() -> None:
        async with websockets.connect(mqless_dev.authed_ws_url) as ws:
            await ws.send(
                json.dumps({"action": "subscribe", "destination": "/topic/gone.x", "id": "g"})
            )
            await _next(ws, "subscribed")

    asyncio.run(subscribe_and_leave())
    mqless_dev.wait_for_output("$disconnect", after=subscribed_at)
    # When a message is published to that topic over HTTP
    published_at = mqless_dev.mark()
    with httpx.Client(
        base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
    ) as http:
        published = http.post("/topics/gone.x/messages", json={"body": "anyone?"})
    # Then the publish is accepted, and:
    assert published.status_code == 201
    # the dispatch function finds no subscriber and fails nothing
    line = mqless_dev.wait_for_output("DispatchFunction", after=published_at)
    assert "ERROR" not in line


def test_queue_consumers_get_pushed_messages_ack_nack_and_share(mqless_dev: DevServer) -> None:
    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with (
            websockets.connect(mqless_dev.authed_ws_url) as first,
            websockets.connect(mqless_dev.authed_ws_url) as second,
            httpx.AsyncClient(
                base_url=mqless_dev.http_url, headers=mqless_dev.auth_headers(), timeout=30
            ) as http,
        ):
            # Given a consumer with client-individual acks and prefetch 1
            await first.send(
                json.dumps(
                    {
                        "action": "subscribe",
                        "destination": "/queue/push-e2e",
                        "id": "w1",
                        "ack": "client-individual",
                        "prefetch": 1,
                    }
                )
            )
            await _next(first, "subscribed")
            # When two messages are sent over HTTP, the stream pushes the first one
            for body in ("one", "two"):
                sent = await http.post("/queues/push-e2e/messages", json={"body": body})
                assert sent.status_code == 201
            got = await _next(first, "message")
            seen["first"] = got
            seen["held_back"] = await _quiet(first, 1.0)  # prefetch 1: nothing more yet
            # A nack gives it back at once; the consumer's credit takes the next one
            await first.send(json.dumps({"action": "nack", "id": got["ack"]}))
            seen["after_nack"] = await _next(first, "message")
            # A second consumer joins and gets the nacked one, redelivered
            await second.send(
                json.dumps(
                    {
                        "action": "subscribe",
                        "destination": "/queue/push-e2e",
                        "id": "w2",
                        "ack": "client-individual",
                        "prefetch": 5,
                    }
                )
            )
            await _next(second, "subscribed")
            seen["second_first"] = await _next(second, "message")
            # When the first consumer's connection closes, what it held moves over at once
            await first.close()
            seen["second_next"] = await _next(second, "message")
            for frame in (seen["second_first"], seen["second_next"]):
                await second.send(
                    json.dumps({"action": "ack", "id": frame["ack"], "receipt": frame["body"]})
                )
                await _next(second, "receipt")
            queue = await http.get("/queues/push-e2e")
            seen["counts"] = queue.json()["counts"]
        return seen

    # Then the first consumer got "one" and nothing more, then "two" after its nack; the second got
    # "one" redelivered and, once the first closed, "two" redelivered; their acks emptied the queue
    seen = asyncio.run(scenario())
    assert seen["first"]["body"] == "one" and seen["first"]["redelivered"] is False
    assert seen["held_back"] == []
    assert seen["after_nack"]["body"] == "two"
    assert (seen["second_first"]["body"], seen["second_first"]["redelivered"]) == ("one", True)
    assert (seen["second_next"]["body"], seen["second_next"]["redelivered"]) == ("two", True)
    assert seen["counts"]["visible"] == seen["counts"]["in_flight"] == 0
