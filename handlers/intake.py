"""The intake: `delete_track` (HTTP) and `delete_track_event` (CloudEvent).

Both validate a deletion request, then `submit` it: claim its idempotency key,
send the DELETE, and enqueue the first task, whose deterministic name is the
cross-instance proof that the request was accepted once.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import IO, Any

from adapters.log import Log, trace_field
from adapters.service import Service
from core import validation
from core.datocms import Job
from core.errors import (
    DatoCMSAuthError,
    DatoCMSBadResponse,
    DatoCMSError,
    Misconfigured,
    QueueUnavailable,
    RequestRejected,
    ServiceError,
)
from core.flow import Finish, Schedule, after_delete
from core.headers import Headers
from core.model import DeletionRequest, Step
from core.signing import constant_time_equal
from core.urlpolicy import CallbackURLRejected, parse_callback_url
from handlers import chain
from handlers.responses import Reply, error, reply_for

MAX_BODY = 64 * 1024


# ---------------------------------------------------------------------------
# HTTP


def authenticate(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, or HTTP Basic with `<token>` as the password."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return constant_time_equal(credentials, token)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return False
        _, colon, password = decoded.partition(":")
        return bool(colon) and constant_time_equal(password, token)
    return False


def _scheme(headers: Headers) -> str:
    """The authentication scheme presented, for the log: never any part of a credential."""
    scheme = (headers.get("authorization") or "").strip().partition(" ")[0].lower()
    return scheme if scheme in ("bearer", "basic") else ("none" if not scheme else "other")


def read_json_body(content_type: str | None, content_length: int | None, stream: IO[bytes]) -> Any:
    """The parsed JSON body, or `RequestRejected` (415, 413, 400). Reads at most 64 KiB + 1."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise RequestRejected(
            415, "unsupported_media_type", "Content-Type must be application/json."
        )
    too_large = RequestRejected(
        413, "payload_too_large", f"The body must be at most {MAX_BODY} bytes."
    )
    if content_length is not None and content_length > MAX_BODY:
        raise too_large
    raw = stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise too_large
    return parse_json(raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestRejected(400, "invalid_json", "The body is not valid UTF-8 JSON.") from None


def handle_http(
    service: Service,
    *,
    method: str,
    headers: Headers,
    content_length: int | None,
    stream: IO[bytes],
) -> Reply:
    """`delete_track`: authenticate, validate, submit, answer."""
    settings = service.settings
    tokens = settings.intake_tokens()  # several during a rotation
    if not any(authenticate(headers.get("authorization"), token) for token in tokens):
        service.log.warning("intake refused: missing or wrong credentials", scheme=_scheme(headers))
        return error(
            401,
            "unauthorized",
            "Missing or wrong credentials.",
            headers={"WWW-Authenticate": 'Bearer, Basic realm="delete_track"'},
        )
    if method != "POST":
        return error(405, "method_not_allowed", "Only POST is allowed.", headers={"Allow": "POST"})
    try:
        data = read_json_body(headers.get("content-type"), content_length, stream)
        request = validate(data, allow_private=settings.callback_allow_private_networks)
    except RequestRejected as rejected:
        return reply_for(rejected)
    log = service.log.bind(
        **trace_field(headers.get("x-cloud-trace-context"), settings.log_project)
    )
    return answer(service, request, log)


def answer(service: Service, request: DeletionRequest, log: Log) -> Reply:
    """Submit a valid request; an error raised on purpose becomes the contract's answer too."""
    request_id = request.request_id(service.settings.datocms_environment)
    try:
        return submit(service, request, log)
    except Misconfigured:
        raise  # main.py logs which variable is missing, and answers 500
    except ServiceError as failure:
        return reply_for(failure, request_id=request_id)


# ---------------------------------------------------------------------------
# Validation and submission, shared by HTTP and events


def validate(data: Any, *, allow_private: bool) -> DeletionRequest:
    """A `DeletionRequest`, or `RequestRejected(400)` listing every failing field."""
    problem = validation.json_problem(data)
    if problem is not None:
        raise RequestRejected(400, "invalid_json", f"The body {problem}.")
    failures = validation.errors("deletion_request", data)
    if failures:
        raise RequestRejected(
            400, "invalid_request", "The request does not match the schema.", details=failures
        )
    request = DeletionRequest.from_json(data)
    if request.callback_url is not None:
        try:
            parse_callback_url(request.callback_url, allow_private=allow_private)
        except CallbackURLRejected as rejected:
            raise RequestRejected(
                400,
                "invalid_request",
                "The callback_url is not allowed.",
                details=[{"field": "callback_url", "message": rejected.reason}],
            ) from None
    return request


def submit(service: Service, request: DeletionRequest, log: Log) -> Reply:
    """Claim, DELETE, enqueue the first task; the answer. Raises `ServiceError`s the caller maps."""
    settings = service.settings
    if request.callback_url is not None and not settings.callback_signing_keys:
        raise Misconfigured(["CALLBACK_SIGNING_SECRET"])
    environment = request.environment or settings.datocms_environment
    request_id = request.request_id(settings.datocms_environment)
    log = log.bind(
        request_id=request_id,
        upload_id=request.upload_id,
        upload_track_id=request.upload_track_id,
    )
    now = service.wall()
    if not service.claims.claim(request_id, now):
        log.info("duplicate request (same instance)")
        return _status(200, request_id, "duplicate")
    try:
        return _submit_claimed(
            service, request, request_id=request_id, environment=environment, now=now, log=log
        )
    except BaseException:
        service.claims.release(request_id)
        raise


def _submit_claimed(
    service: Service,
    request: DeletionRequest,
    *,
    request_id: str,
    environment: str | None,
    now: float,
    log: Log,
) -> Reply:
    intake = Step(
        kind="delete",
        request_id=request_id,
        request=request,
        environment=environment,
        accepted_at=now,
        number=0,
        not_after=chain.step_not_after(now, service),
    )
    result: Job | DatoCMSError
    try:
        result = service.datocms.delete_track(
            request.upload_id, request.upload_track_id, environment, log=log
        )
    except (DatoCMSAuthError, DatoCMSBadResponse) as failure:
        log.error(
            "DatoCMS rejected the deletion call", http_status=failure.http_status, code=failure.code
        )
        raise
    except DatoCMSError as failure:
        result = failure
    action = after_delete(intake, result, service.wall(), service.policy, service.rand())
    # A finish at the intake is still a task: the first task must land on the steps
    # queue as `<request_id>-1`, the name that proves the request was accepted once.
    first = (
        action.step
        if isinstance(action, Schedule)
        else intake.next("finish", outcome=action.outcome, polls=action.polls)
    )
    try:
        created = chain.enqueue(service, first, action.delay if isinstance(action, Schedule) else 0)
    except QueueUnavailable as failure:
        log.error("task queue unavailable; the deletion is not scheduled", reason=str(failure))
        raise
    if not created:
        log.info("duplicate request (task already exists)")
        return _status(200, request_id, "duplicate")
    return _accepted(request_id, action, log)


def _status(status: int, request_id: str, state: str, **extra: Any) -> Reply:
    return Reply(status, {"request_id": request_id, "status": state, **extra})


def _accepted(request_id: str, action: Schedule | Finish, log: Log) -> Reply:
    if isinstance(action, Schedule):
        if action.step.kind == "poll":
            log.info("deletion accepted; polling scheduled", job_id=action.step.job_id)
            return _status(202, request_id, "pending", job_id=action.step.job_id)
        log.warning("DatoCMS unavailable; deletion queued", delay_seconds=round(action.delay, 3))
        return _status(202, request_id, "queued")
    outcome = action.outcome  # at the intake: a refusal, or a track that does not exist
    log.info("deletion finished at intake", status=outcome.status, job_id=outcome.job_id)
    if outcome.error is not None:  # failed
        return error(
            422,
            "deletion_refused",
            outcome.error["message"],
            details={
                "datocms_code": outcome.error["code"],
                "http_status": outcome.error["http_status"],
            },
            request_id=request_id,
        )
    return _status(200, request_id, "not_found")


# ---------------------------------------------------------------------------
# CloudEvents


def event_request(data: Any) -> Any:
    """The deletion request inside a CloudEvent's data: direct, or a Pub/Sub push envelope."""
    if isinstance(data, bytes | bytearray):
        data = parse_json(bytes(data))
    if isinstance(data, dict) and isinstance(data.get("message"), dict) and "upload_id" not in data:
        encoded = data["message"].get("data")
        if not isinstance(encoded, str):
            raise RequestRejected(400, "invalid_event", "The Pub/Sub message has no data.")
        if len(encoded) > MAX_BODY * 4 // 3 + 4:
            raise RequestRejected(413, "payload_too_large", "The Pub/Sub message is too large.")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRejected(400, "invalid_event", "The Pub/Sub data is not base64.") from None
        return parse_json(raw)
    return data


def handle_event(service: Service, event_id: str | None, data: Any) -> Reply | None:
    """`delete_track_event`. Returns None for an event that can never succeed (logged at ERROR,
    acknowledged); raises for a failure worth a redelivery (misconfiguration, outages)."""
    settings = service.settings
    log = service.log.bind(event_id=event_id)
    try:
        request = validate(
            event_request(data), allow_private=settings.callback_allow_private_networks
        )
    except RequestRejected as rejected:
        log.error(
            "event dropped: it can never succeed", code=rejected.code, details=rejected.details
        )
        return None
    return submit(service, request, log)
