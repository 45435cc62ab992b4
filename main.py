"""Entry points (one per deployed function): a switchboard, nothing more.

Each entry point gets the process's `Service` (built on the first request, never
at import), calls one handler, and turns its `Reply` into a response. A missing
setting answers `500 misconfigured` and logs the variable's name.

    functions-framework --target=delete_track        # HTTP intake
    functions-framework --target=poll_job            # every task's target
    functions-framework --target=delete_track_event  # CloudEvent / Pub/Sub intake
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent  # imported by functions_framework already
from werkzeug.exceptions import InternalServerError, ServiceUnavailable

from adapters.log import Log, error_report
from adapters.service import Service, build_service
from core.errors import Misconfigured, ServiceError
from core.headers import Headers
from core.settings import Settings
from handlers import intake
from handlers.responses import Reply, error, reply_for

_LOG = Log()
_LOCK = threading.Lock()
_SERVICE: Service | None = None


def service() -> Service:
    """The process's `Service`, built once. Raises `Misconfigured`."""
    global _SERVICE  # noqa: PLW0603 (one per process, by design)
    with _LOCK:
        if _SERVICE is None:
            _SERVICE = build_service(Settings.from_env(os.environ), _LOG)
        return _SERVICE


def _respond(reply: Reply) -> flask.Response:
    return flask.Response(
        json.dumps(reply.body, ensure_ascii=True),
        status=reply.status,
        headers=reply.headers,
        mimetype="application/json",
    )


def _guarded(entry: str, handle: Callable[[Service], Reply]) -> flask.Response:
    try:
        return _respond(handle(service()))
    except Misconfigured as missing:
        _LOG.error(
            "misconfigured: " + missing.reason, function=entry, variables=list(missing.variables)
        )
        return _respond(reply_for(missing))
    except Exception as crash:  # the answer must never carry a stack trace
        _LOG.error("unexpected error", function=entry, **_crash_fields(crash, entry))
        return _respond(error(500, "internal", "The request could not be processed."))


def _crash_fields(crash: BaseException, entry: str) -> dict[str, Any]:
    """Error Reporting's fields: the exception's type and frames, never its text."""
    return error_report(crash, entry)


@functions_framework.http
def delete_track(request: flask.Request) -> flask.Response:
    """Intake of deletion requests (CMS webhooks, scripts)."""
    return _guarded(
        "delete_track",
        lambda svc: intake.handle_http(
            svc,
            method=request.method,
            headers=Headers(request.headers.items()),
            content_length=request.content_length,
            stream=request.stream,
            path=request.path,
            query=request.args.to_dict(flat=False),
        ),
    )


@functions_framework.http
def poll_job(request: flask.Request) -> flask.Response:
    """Target of every task the service enqueues."""
    # Imported here: the intake's first request (a cold start) compiles less.
    from handlers import steps  # noqa: PLC0415

    return _guarded(
        "poll_job",
        lambda svc: steps.handle_http(
            svc,
            method=request.method,
            headers=Headers(request.headers.items()),
            stream=request.stream,
            path=request.path,
        ),
    )


@functions_framework.cloud_event
def delete_track_event(event: CloudEvent) -> None:
    """The same intake for Pub/Sub (Eventarc) and other CloudEvent triggers.

    An event that can never succeed is logged and acknowledged (2xx). What a
    redelivery can fix (a misconfiguration, DatoCMS or the queue unavailable)
    answers 500 or 503 after a structured log line, so the event comes back.
    """
    try:
        intake.handle_event(service(), event.get("id"), event.get_data())
    except Misconfigured as missing:
        _LOG.error(
            "misconfigured: " + missing.reason,
            function="delete_track_event",
            variables=list(missing.variables),
        )
        raise InternalServerError() from None
    except ServiceError as failure:
        _LOG.warning(
            "event not processed; it will be redelivered",
            function="delete_track_event",
            reason=type(failure).__name__,
        )
        raise ServiceUnavailable() from None
