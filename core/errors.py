"""Every error the service raises on purpose, in one tree.

    ServiceError
    ├── Misconfigured            a required setting is missing or malformed      → 500
    ├── RequestRejected          the caller's request is unusable (4xx at intake) → its status
    ├── TaskRejected             a task body the service did not sign             → 401
    ├── QueueUnavailable         the task queue could not take a task (transient) → 503
    ├── StateUnavailable         the state store could not be read or written     → 503
    └── DatoCMSError             DatoCMS answered something other than success
        ├── DatoCMSUnavailable   429, 5xx, HTML page, timeout, dropped connection (transient)
        │   └── DatoCMSRateLimited   429, or a call held back (below)
        │       └── DatoCMSHeldBack  the client sent nothing: rate-limit reset or no room left
        ├── DatoCMSAuthError     401/403: the service's own token is wrong          → 502
        ├── DatoCMSBadResponse   2xx whose body is not the documented shape         → 502
        └── DatoCMSRefused       a permanent refusal (4xx, e.g. 422)                → 422
            └── DatoCMSNotFound  404: the track (or job) does not exist

Errors carry data, not prose to parse: DatoCMS errors keep `http_status`, the
DatoCMS `code` exactly as sent, `transient` and `retry_after` (seconds).
`handlers.responses` is the one place that maps them to HTTP answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class Misconfigured(ServiceError):
    """A required setting is missing or malformed; `variables` names them."""

    def __init__(self, variables: Sequence[str], reason: str = "missing") -> None:
        self.variables = tuple(variables)
        self.reason = reason
        super().__init__(f"{reason} setting(s): {', '.join(self.variables)}")


class RequestRejected(ServiceError):
    """The caller's request cannot be accepted; maps to a 4xx answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        super().__init__(message)


class StateUnavailable(ServiceError):
    """The state store could not be reached or answered an error; retrying later may work."""


class TaskRejected(ServiceError):
    """A task body that the service did not create and sign (or one already spent)."""


class QueueUnavailable(ServiceError):
    """The task queue did not accept a task; retrying later may work."""


class DatoCMSError(ServiceError):
    """DatoCMS answered with something other than the expected success."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.code = code
        self.retry_after = retry_after
        super().__init__(message)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(http_status={self.http_status!r}, code={self.code!r}, "
            f"retry_after={self.retry_after!r})"
        )


class DatoCMSUnavailable(DatoCMSError):
    """Rate-limited or unavailable for now: the same call may succeed later."""

    transient = True


class DatoCMSRateLimited(DatoCMSUnavailable):
    """429, or a call held back because an announced rate-limit reset has not passed."""


class DatoCMSHeldBack(DatoCMSRateLimited):
    """The client sent nothing: an announced rate-limit reset has not passed, or no room is left.

    Such a try is not a poll (`core.flow.after_poll` does not count it).
    """


class DatoCMSAuthError(DatoCMSError):
    """DatoCMS refused the service's own credentials (401/403)."""


class DatoCMSBadResponse(DatoCMSError):
    """A 2xx answer whose body is not the documented shape."""


class DatoCMSRefused(DatoCMSError):
    """DatoCMS refused for good (a permanent 4xx)."""


class DatoCMSNotFound(DatoCMSRefused):
    """404: what was asked for does not exist."""
