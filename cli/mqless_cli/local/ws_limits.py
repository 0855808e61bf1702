"""The WebSocket API's quotas and timeouts, as API Gateway sets them.

websockets enforces the frame and message limits while parsing (`max_size=(message,
fragment)`): a frame over 32 KB or a message over 128 KB closes the connection with 1009.
"""

from __future__ import annotations

MAX_FRAME_BYTES = 32 * 1024
"""API Gateway's WebSocket frame size quota (32 KB)."""
MAX_MESSAGE_BYTES = 128 * 1024
"""API Gateway's WebSocket message payload quota (128 KB), also the @connections POST limit."""
IDLE_TIMEOUT_SECONDS = 10 * 60.0
"""An idle connection closes after 10 minutes (1001)."""
MAX_CONNECTION_SECONDS = 2 * 60 * 60.0
"""Any connection closes after 2 hours (1001)."""
INTEGRATION_TIMEOUT_SECONDS = 29.0
"""The longest a route may wait for its function on AWS (29 s)."""
