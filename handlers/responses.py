"""The one place where outcomes and errors become HTTP answers.

Chosen for the callers and for Cloud Tasks: a retryable failure is a non-2xx
(the queue retries it), a permanent one is a 2xx once its failure callback is
queued, a forged task is a 401.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import (
    DatoCMSAuthError,
    DatoCMSBadResponse,
    Misconfigured,
    QueueUnavailable,
    RequestRejected,
    ServiceError,
    StateUnavailable,
    TaskRejected,
)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, before any web framework sees it."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """`{"error": {"code", "message", "details"?}, "request_id"?}`."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    if request_id is not None:
        body["request_id"] = request_id
    return Reply(status, body, headers or {})


#: Errors raised on purpose that answer the same way every time: status, code, message.
_FIXED: tuple[tuple[type[ServiceError], int, str, str], ...] = (
    (Misconfigured, 500, "misconfigured", "The service is not configured correctly."),
    (TaskRejected, 401, "invalid_task", "The task body is not one this service signed."),
    (DatoCMSAuthError, 502, "upstream_auth_failed", "DatoCMS refused the service's credentials."),
    (DatoCMSBadResponse, 502, "upstream_bad_response", "DatoCMS answered with an unexpected body."),
    (
        StateUnavailable,
        503,
        "state_unavailable",
        "The state store is unavailable; try again shortly.",
    ),
    (
        QueueUnavailable,
        503,
        "queue_unavailable",
        "The task queue is unavailable; try again shortly.",
    ),
)


def reply_for(exc: ServiceError, request_id: str | None = None) -> Reply:
    """The answer for an error raised on purpose (`request_id` once the request is valid)."""
    if isinstance(exc, RequestRejected):
        return error(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)
    for kind, status, code, message in _FIXED:
        if isinstance(exc, kind):
            retry = {"Retry-After": "5"} if status == 503 else None
            known = request_id if status >= 502 else None
            return error(status, code, message, request_id=known, headers=retry)
    return error(500, "internal", "The request could not be processed.", request_id=request_id)
