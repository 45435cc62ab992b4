"""The intake: `delete_track` (HTTP) and `delete_track_event` (CloudEvent).

Both validate a deletion request, then `submit` it: claim its record in the state
store (create-if-absent, so one instance wins; a repeat within
`IDEMPOTENCY_WINDOW_SECONDS` is answered from the record as a duplicate), enqueue
the first task, then send the DELETE.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import IO, Any

from adapters.log import FIRST, Log, trace_field
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
    StateUnavailable,
)
from core.flow import Finish, Schedule, after_delete
from core.headers import Headers
from core.model import DeletionRequest, Step
from core.record import Record
from core.signing import constant_time_equal
from core.urlpolicy import CallbackURLRejected, parse_callback_url
from handlers import chain, records
from handlers.body import BodyUnreadable, read_at_most
from handlers.responses import Reply, error, reply_for

MAX_BODY = 64 * 1024


# ---------------------------------------------------------------------------
# HTTP


def authenticate(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, or HTTP Basic with `<token>` as the password
    (base64 with or without its `=` padding)."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return constant_time_equal(credentials, token)
    if scheme.lower() == "basic":
        if "=" not in credentials:  # some clients leave the base64 padding out
            credentials += "=" * (-len(credentials) % 4)
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


def read_json_body(
    content_type: str | None,
    content_length: int | None,
    stream: IO[bytes],
    log: Log | None = None,
) -> Any:
    """The parsed JSON body, or `RequestRejected` (415, 413, 400). Reads at most 64 KiB + 1.

    A body whose framing is broken (a bad chunk size, a chunk cut short) is a
    `400 invalid_body`, logged at WARNING without a stack."""
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
    try:
        raw = read_at_most(stream, MAX_BODY + 1)
    except BodyUnreadable as unreadable:
        if log is not None:
            log.warning("intake refused: the body could not be read", error=unreadable.kind)
        raise RequestRejected(400, "invalid_body", "The body could not be read.") from None
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
    path: str = "/",
    query: Mapping[str, list[str]] | None = None,
) -> Reply:
    """`delete_track`: authenticate, then route: `POST /` submits a deletion request;
    `handlers.requests_api` serves the status resource and the dead-letter operations."""
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
    if path not in ("", "/"):
        from handlers import requests_api  # noqa: PLC0415 (not on the deletion's cold path)

        answer_ = requests_api.route(
            service,
            method,
            path,
            query or {},
            lambda: read_json_body(
                headers.get("content-type"), content_length, stream, service.log
            ),
        )
        return answer_ if answer_ is not None else requests_api.not_found()
    if method != "POST":
        return error(405, "method_not_allowed", "Only POST is allowed.", headers={"Allow": "POST"})
    try:
        data = read_json_body(headers.get("content-type"), content_length, stream, service.log)
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
    """Record, enqueue the follow-up, then DELETE; the answer. Raises `ServiceError`s.

    Nothing goes to DatoCMS before the request is recorded and its first task
    (`resume`, task 1) is enqueued: a `503` always means no DELETE was sent.
    """
    settings = service.settings
    if request.callback_url is not None:
        settings.callback_keys()  # Misconfigured before anything happens
    environment = request.environment or settings.datocms_environment
    request_id = request.request_id(settings.datocms_environment)
    log = log.bind(
        request_id=request_id,
        upload_id=request.upload_id,
        upload_track_id=request.upload_track_id,
    )
    now = service.wall()
    verdict, record, version = records.claim(
        service, records.new_record(service, request, request_id, environment, now), now
    )
    if verdict == "duplicate":
        log.info("duplicate request", first_accepted=record.created_at)
        return records.accepted(service, 200, request_id, "duplicate")
    if verdict == "in_progress":
        log.info("request with this id is being decided right now")
        return error(
            409,
            "in_progress",
            "A request with this id is being accepted right now; retry shortly.",
            request_id=request_id,
            headers={"Retry-After": "1"},
        )
    intake = Step(
        kind="delete",
        request_id=request_id,
        request=request,
        environment=environment,
        accepted_at=record.accepted_at,
        number=0,
        not_after=chain.step_not_after(record.accepted_at, service),
        unanswered=record.unanswered,
    )
    if request.tracks is not None:  # a selector: listed and deleted from tasks
        from handlers import fanout  # noqa: PLC0415 (not on a single deletion's cold path)

        return fanout.accept(service, intake, record, log)
    try:
        # The follow-up first: if the intake dies after this, task 1 carries on.
        delay = service.policy.delay_after(0, service.rand(), elapsed=0.0)
        chain.enqueue(service, intake.next("resume"), delay)
    except QueueUnavailable as failure:
        log.error("task queue unavailable; nothing was sent to DatoCMS", reason=str(failure))
        records.abandon(service, record, service.wall())
        raise
    return _delete(service, intake, record, version, log)


def _delete(service: Service, intake: Step, record: Record, version: str | None, log: Log) -> Reply:
    """Send the intake's DELETE, record what it means, and answer."""
    request = intake.request
    result: Job | DatoCMSError
    try:
        result = service.datocms.delete_track(
            request.upload_id, request.track_id, intake.environment, log=log
        )
    except (DatoCMSAuthError, DatoCMSBadResponse) as failure:
        log.error(
            "DatoCMS rejected the deletion call", http_status=failure.http_status, code=failure.code
        )
        records.abandon(service, record, service.wall())
        raise
    except DatoCMSError as failure:
        result = failure
    now = service.wall()
    action = after_delete(intake, result, now, service.policy, service.rand())
    known = (record, version) if version is not None else None
    try:
        records.mutate(
            service,
            intake.request_id,
            lambda r: chain.recorded(r, intake, action, now),
            now,
            known=known,
        )
    except StateUnavailable as failure:
        # The DELETE went out: task 1 finds the lease expired and carries on.
        log.warning("could not record the DELETE's answer", reason=str(failure))
    return _accepted(service, intake.request_id, action, log)


def _accepted(service: Service, request_id: str, action: Schedule | Finish, log: Log) -> Reply:
    if isinstance(action, Schedule):
        if action.step.kind == "poll":
            log.info(
                "deletion accepted; polling scheduled",
                job_id=action.step.job_id,
                event="request_accepted",
                operation=FIRST,
            )
            return records.accepted(service, 202, request_id, "pending", job_id=action.step.job_id)
        log.warning(
            "DatoCMS unavailable; deletion queued",
            delay_seconds=round(action.delay, 3),
            event="request_accepted",
            operation=FIRST,
        )
        return records.accepted(service, 202, request_id, "queued")
    outcome = action.outcome  # at the intake: a refusal, or a track that does not exist
    log.info(
        "deletion finished at intake",
        status=outcome.status,
        job_id=outcome.job_id,
        event="request_accepted",
        operation=FIRST,
        outcome=outcome.status,
    )
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
    if outcome.status == "deleted":  # an earlier, unanswered DELETE of this request did it
        return records.accepted(service, 200, request_id, "deleted")
    return records.accepted(service, 200, request_id, "not_found")


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
            "event dropped: it can never succeed",
            code=rejected.code,
            details=rejected.details,
            event="event_dropped",
        )
        return None
    reply = submit(service, request, log)
    if reply.status == 409:  # being decided by another delivery: come back
        raise StateUnavailable("a request with this id is being accepted")
    return reply
