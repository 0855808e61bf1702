"""The WebSocket API: connections, the JSON protocol and STOMP, frames out."""
