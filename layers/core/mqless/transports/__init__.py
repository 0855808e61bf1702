"""How requests reach the broker: HTTP, WebSocket (JSON and STOMP), the stream dispatcher."""
