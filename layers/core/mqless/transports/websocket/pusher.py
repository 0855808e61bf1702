"""Posting to WebSocket connections and closing them: the `Pusher` port (the push
domain's, `domain/push/pushes.py`, with `close`) and its API Gateway adapter.

On AWS a push is a call of API Gateway's @connections API; under `mqless dev` the local
gateway serves the same API. A connection found gone (GoneException) is cleaned up by
whoever noticed (`sessions.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError

from mqless.domain.push import pushes
from mqless.storage.dynamo import error_code

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class Pusher(pushes.Pusher, Protocol):
    """What the push domain posts through, and closing a connection (the transport's)."""

    def close(self, connection_id: str) -> None:
        """Close a connection (the client sees the socket close); gone ones are ignored."""


class ApiGatewayPusher:
    """Pushes through API Gateway's @connections API (boto3 client passed in)."""

    def __init__(self, client: ApiGatewayManagementApiClient) -> None:
        self._client = client

    def post(self, connection_id: str, data: bytes) -> bool:
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as exc:
            if error_code(exc) == "GoneException":
                return False
            raise
        return True

    def close(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except ClientError as exc:
            if error_code(exc) != "GoneException":
                raise
