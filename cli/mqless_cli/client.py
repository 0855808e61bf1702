"""A small client of the mqless HTTP API over an `httpx.Client` the caller owns.

Every failure a user can expect comes out as a `ClientError` carrying one sentence:
`ApiError` for the API's JSON problems (and anything else that is not a 2xx),
`Unreachable` when nothing answers, `BadUrl` when the URL itself is wrong.
A refused credential (401/403, from API Gateway's authorizer or from mqless) reads the
same over HTTP and WebSocket: `auth_failure` words it in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx  # imported by the command that makes the `httpx.Client` (`context.run`)

# Receive may long-poll for up to 20 s; everything else answers well within API Gateway's 30 s.
TIMEOUT_SECONDS = 35.0
THROTTLE_RETRIES = 5
MAX_RETRY_AFTER_SECONDS = 10.0
DEV_HINT = "is `mqless dev` running? set --url or MQLESS_URL"
TOKEN_HINT = "set MQLESS_TOKEN or pass --token"


class ClientError(Exception):
    """A failure to report to the user as one sentence, without a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(ClientError):
    """The API answered with an error status (a JSON problem when it is the mqless API)."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        document: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.document = document or {}
        """The whole answer (a settle that failed for every receipt lists each failure)."""


class Unreachable(ClientError):
    """Nothing answered at the URL, or not in time."""


class BadUrl(ClientError):
    """The URL cannot be used at all (a usage mistake)."""


def segment(name: str) -> str:
    """One path segment: topic patterns carry `>` and `*`, which must be percent-encoded."""
    return quote(name, safe="")


def bearer(token: str | None) -> dict[str, str]:
    """The request headers that carry a token (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def auth_failure(status: int, *, authenticated: bool, detail: str | None = None) -> str:
    """One sentence for a refused credential (401/403), as an HTTP answer or a handshake.

    API Gateway answers 401 `Unauthorized` when no token came and 403 `Forbidden` when its
    authorizer turned the token down; mqless itself answers a problem whose `message`
    (`detail`) says which grant is missing.
    """
    if status == 401:
        if not authenticated:
            return f"not authenticated: {TOKEN_HINT}"
        return f"not authenticated: {detail or 'the token was not accepted'}"
    if detail:
        return f"forbidden: {detail}"
    if not authenticated:
        return f"forbidden: {TOKEN_HINT}"
    return "forbidden: the token was refused (unknown, revoked or expired?)"


class MqlessClient:
    """The HTTP API's operations, one method each; answers are the API's JSON documents."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._token = token
        self._sleep = sleep

    # ---- queues ----------------------------------------------------------------------------

    def queue(self, name: str) -> dict[str, Any]:
        """Settings and counts (`GET /queues/{name}`)."""
        return self._call("GET", f"/queues/{segment(name)}")

    def queue_stats(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/queues/{segment(name)}/stats")

    def overview(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """A page of the queues' stats, the topics and the connection count (`GET /stats`)."""
        params = {k: str(v) for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        return self._call("GET", "/stats", params=params)

    def purge(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/queues/{segment(name)}/purge")

    def queues(self) -> list[dict[str, Any]]:
        """Every queue's settings (`GET /queues`)."""
        queues: list[dict[str, Any]] = self._call("GET", "/queues").get("queues", [])
        return queues

    def put_queue(self, name: str, settings: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a queue, or replace every setting: (the queue, whether it was created)."""
        response = self._request("PUT", f"/queues/{segment(name)}", dict(settings))
        return _document(response), response.status_code == 201

    def update_queue(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change only the settings named (`PATCH`); the others keep their values."""
        return self._call("PATCH", f"/queues/{segment(name)}", dict(changes))

    def delete_queue(self, name: str) -> None:
        self._call("DELETE", f"/queues/{segment(name)}")

    def browse(self, name: str, *, limit: int | None, cursor: str | None) -> dict[str, Any]:
        """One page of messages, leasing none: `{messages, cursor}` (cursor None: the end)."""
        params = {"limit": str(limit)} if limit is not None else {}
        if cursor is not None:
            params["cursor"] = cursor
        return self._call("GET", f"/queues/{segment(name)}/messages", params=params)

    def move(self, name: str, message_id: str, *, to: str, copy: bool) -> dict[str, Any]:
        path = f"/queues/{segment(name)}/messages/{segment(message_id)}/move"
        return self._call("POST", path, {"to": to, "copy": copy})

    def redrive(
        self, name: str, *, max_messages: int, destination: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"max_messages": max_messages}
        if destination is not None:
            body["destination"] = destination
        return self._call("POST", f"/queues/{segment(name)}/redrive", body)

    # ---- messages --------------------------------------------------------------------------

    def send(self, queue: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/queues/{segment(queue)}/messages", dict(message))

    def send_batch(self, queue: str, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Up to 10 entries, each with its own `id`; each succeeds or fails on its own."""
        body = {"entries": [dict(entry) for entry in entries]}
        return self._call("POST", f"/queues/{segment(queue)}/messages/batch", body)

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        wait_seconds: float = 0,
        visibility_timeout: int | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"max_messages": max_messages, "wait_seconds": wait_seconds}
        if visibility_timeout is not None:
            body["visibility_timeout"] = visibility_timeout
        answer = self._call(
            "POST",
            f"/queues/{segment(queue)}/receive",
            body,
            timeout=max(TIMEOUT_SECONDS, wait_seconds + 15),
        )
        messages: list[dict[str, Any]] = answer.get("messages", [])
        return messages

    def ack(self, queue: str, receipts: Sequence[str]) -> dict[str, Any]:
        """`{acked, failed}`; see `_settle`."""
        return self._settle("ack", queue, {"receipts": list(receipts)})

    def nack(self, queue: str, receipts: Sequence[str], *, delay_seconds: int) -> dict[str, Any]:
        """`{released, failed}`; see `_settle`."""
        body = {"receipts": list(receipts), "delay_seconds": delay_seconds}
        return self._settle("nack", queue, body)

    def change_visibility(
        self, queue: str, receipts: Sequence[str], *, visibility_timeout: int
    ) -> dict[str, Any]:
        """`{changed, failed}`; see `_settle`."""
        body = {"receipts": list(receipts), "visibility_timeout": visibility_timeout}
        return self._settle("visibility", queue, body)

    def _settle(self, verb: str, queue: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Each receipt succeeds or fails on its own: the answer lists both. When every one
        failed the API answers that failure's status (409 stale, 400 bad) with the same
        lists, which come back here as an answer too."""
        try:
            return self._call("POST", f"/queues/{segment(queue)}/{verb}", body)
        except ApiError as exc:
            if exc.status not in (400, 409) or not isinstance(exc.document.get("failed"), list):
                raise
            return exc.document

    def publish(self, topic: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/topics/{segment(topic)}/messages", dict(message))

    # ---- durable subscriptions -------------------------------------------------------------

    def subscriptions(self, topic: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call(
            "GET", f"/topics/{segment(topic)}/subscriptions"
        ).get("subscriptions", [])
        return found

    def put_subscription(
        self, topic: str, name: str, settings: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace one: (the subscription, whether it was created)."""
        path = f"/topics/{segment(topic)}/subscriptions/{segment(name)}"
        response = self._request("PUT", path, dict(settings))
        return _document(response), response.status_code == 201

    def delete_subscription(self, topic: str, name: str) -> None:
        self._call("DELETE", f"/topics/{segment(topic)}/subscriptions/{segment(name)}")

    # ---- access: principals and API keys (admin on everything) -----------------------------

    def principals(self) -> list[dict[str, Any]]:
        principals: list[dict[str, Any]] = self._call("GET", "/access/principals").get(
            "principals", []
        )
        return principals

    def principal(self, principal_id: str) -> dict[str, Any]:
        return self._call("GET", f"/access/principals/{segment(principal_id)}")

    def put_principal(
        self, principal_id: str, grants: Sequence[Mapping[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace a principal's grants: (the principal, whether it was created)."""
        body = {"grants": [dict(grant) for grant in grants]}
        response = self._request("PUT", f"/access/principals/{segment(principal_id)}", body)
        return _document(response), response.status_code == 201

    def delete_principal(self, principal_id: str) -> None:
        """Delete a principal; its keys stop working."""
        self._call("DELETE", f"/access/principals/{segment(principal_id)}")

    def issue_key(self, principal_id: str, *, ttl_seconds: int | None = None) -> dict[str, Any]:
        """A new API key: `{key_id, token, principal, expires_at}`; the token is shown once."""
        body = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        return self._call("POST", f"/access/principals/{segment(principal_id)}/keys", body)

    def keys(self, principal_id: str | None = None) -> list[dict[str, Any]]:
        params = {} if principal_id is None else {"principal": principal_id}
        keys: list[dict[str, Any]] = self._call("GET", "/access/keys", params=params).get(
            "keys", []
        )
        return keys

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/access/keys/{segment(key_id)}")

    # ---- transport -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        return _document(self._request(method, path, body, params=params, timeout=timeout))

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> httpx.Response:
        """The API's 2xx answer; an `ApiError` for any other, after retrying throttling."""
        for attempt in range(THROTTLE_RETRIES + 1):
            response = self._send(method, path, body, params, timeout)
            if response.status_code == 429 and attempt < THROTTLE_RETRIES:
                # DynamoDB or KMS throttled the broker: nothing was stored; wait as asked
                self._sleep(_retry_after(response))
                continue
            break
        if response.is_success:
            return response
        raise _api_error(method, path, response, authenticated=self._token is not None)

    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        timeout: float,
    ) -> httpx.Response:
        import httpx  # already loaded: the caller made `self._http`

        base = str(self._http.base_url).rstrip("/") or "(no URL)"
        try:
            return self._http.request(
                method,
                path,
                json=body,
                params=params,
                headers=bearer(self._token),
                timeout=timeout,
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise BadUrl(f"cannot use the URL {base!r}: {exc}") from exc
        except httpx.ConnectTimeout as exc:
            raise Unreachable(f"cannot reach {base} (no answer to connect): {DEV_HINT}") from exc
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot reach {base} ({_reason(exc)}): {DEV_HINT}") from exc
        except httpx.TimeoutException as exc:
            raise Unreachable(
                f"{base} did not answer {method} {path} within {timeout:.0f} s"
            ) from exc
        except httpx.TransportError as exc:
            raise Unreachable(f"lost the connection to {base}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER_SECONDS)


def _document(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        document = response.json()
    except ValueError as exc:
        raise ApiError(
            response.status_code, None, f"{response.request.url} answered something not JSON"
        ) from exc
    if not isinstance(document, dict):
        raise ApiError(
            response.status_code, None, f"{response.request.url} answered an unexpected document"
        )
    return document


def _api_error(
    method: str, path: str, response: httpx.Response, *, authenticated: bool
) -> ApiError:
    """The API's problem as one sentence; a gateway's bare answer gets some context."""
    status = response.status_code
    try:
        problem = response.json()
    except ValueError:
        problem = None
    code = problem.get("error") if isinstance(problem, dict) else None
    text = problem.get("message") if isinstance(problem, dict) else None
    if not isinstance(text, str) or not text:
        text = f"HTTP {status} {response.reason_phrase}".rstrip()
    gateway_refusal = code is None and text in ("Unauthorized", "Forbidden")
    if status == 401 or (status == 403 and (code is not None or gateway_refusal)):
        detail = text if isinstance(code, str) else None
        text = auth_failure(status, authenticated=authenticated, detail=detail)
    elif code == "no_such_route" or (code is None and status in (403, 404)):
        # API Gateway answers an unknown route with {"message": "Not Found"} (or Forbidden)
        text = f"{text} ({method} {response.request.url}: is this an up-to-date mqless API?)"
    elif status == 429:
        text = f"{text} (still throttled after {THROTTLE_RETRIES} retries; try again later)"
    elif status >= 500:
        text = f"the broker failed: {text} (HTTP {status})"
    document = problem if isinstance(problem, dict) else None
    return ApiError(status, code if isinstance(code, str) else None, text, document)
