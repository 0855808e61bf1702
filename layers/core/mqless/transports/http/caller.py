"""The caller of an HTTP API request: the Lambda authorizer's principal, or an IAM caller's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mqless.domain.access.principals import ANONYMOUS, Principal
from mqless.domain.errors import Unauthorized
from mqless.transports.authorizer import principal_from_context


def http_caller(
    event: Mapping[str, Any],
    *,
    required: bool,
    iam: Callable[[str], Principal],
    now_s: float,
) -> Principal:
    """The caller of an HTTP API request, from its authorizer context (at `now_s`)."""
    if not required:
        return ANONYMOUS
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if "lambda" in authorizer:
        return principal_from_context(authorizer["lambda"] or {}, now_s=now_s)
    user_arn = (authorizer.get("iam") or {}).get("userArn")
    if isinstance(user_arn, str) and user_arn:
        return iam(user_arn)
    raise Unauthorized("authentication required: send Authorization: Bearer <token>")
