"""The one exception hierarchy of the core; each transport maps it to its own error shape once."""

from __future__ import annotations


class MqlessError(Exception):
    """Base of every error the core raises on purpose; `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(MqlessError):
    """The caller sent something malformed or out of range."""

    code = "invalid_request"


class NotFound(MqlessError):
    """A named thing (queue, message) does not exist."""

    code = "not_found"


class QueueNotFound(NotFound):
    code = "queue_not_found"


class MessageNotFound(NotFound):
    code = "message_not_found"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class Conflict(MqlessError):
    """The request clashes with the current state."""

    code = "conflict"


class NotADeadLetterQueue(Conflict):
    """Redrive was asked of a queue that holds no dead letters (it would lease live messages)."""

    code = "not_a_dead_letter_queue"


class StaleReceipt(Conflict):
    """The receipt's lease is gone: acked already, or expired and leased to someone else."""

    code = "stale_receipt"


class PayloadTooLarge(MqlessError):
    code = "payload_too_large"


class Throttled(MqlessError):
    """AWS throttled us; the caller should retry after a pause."""

    code = "throttled"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unauthorized(MqlessError):
    """No credentials, or credentials that do not prove who the caller is."""

    code = "unauthorized"


class Forbidden(MqlessError):
    """The principal may not do this to this destination."""

    code = "forbidden"


class QuotaExceeded(Forbidden):
    """The principal has created as many queues (or durable subscriptions) as it may.

    Refused like any other forbidden action (403, as SQS's `OverLimit` and RabbitMQ's
    queue limits are): waiting does not help, deleting or a higher quota does.
    """

    code = "quota_exceeded"

    def __init__(self, message: str, *, quota: str, limit: int) -> None:
        super().__init__(message)
        self.quota = quota
        self.limit = limit


class IntegrityError(MqlessError):
    """Stored data failed authentication (tampered ciphertext, wrong context)."""

    code = "integrity_error"
