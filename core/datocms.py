"""What DatoCMS's answers mean: pure functions of (status, headers, body).

The HTTP adapter (`adapters.datocms`) sends requests and hands the answers
here; nothing in this module does I/O. Facts from the reference:

- success of `DELETE /uploads/{id}/tracks/{id}` is `202` + `{"data": {"type": "job", "id"}}`;
  any endpoint may turn asynchronous, so a `202` + job is understood everywhere
  (a job result may itself hand over a new job);
- `GET /job-results/{id}` answers `404` while the job runs, `200` + `job_result`
  (`status`, `payload`, unknown attributes tolerated) when it is final;
- errors are `{"data": [{"type": "api_error", "attributes": {"code", "transient"?}}]}`,
  but a CDN may answer 502/503 with HTML: a body is never assumed to be JSON;
- `429` carries `X-RateLimit-Reset`: whole seconds to wait.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from core.errors import (
    DatoCMSAuthError,
    DatoCMSBadResponse,
    DatoCMSError,
    DatoCMSNotFound,
    DatoCMSRateLimited,
    DatoCMSRefused,
    DatoCMSUnavailable,
)
from core.headers import Headers
from core.model import Outcome, failure

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
TRACK_ATTRIBUTES = ("type", "name", "language_code", "closed_captions", "status", "error")
TRANSIENT_CODES = frozenset(
    {"SERVICE_UNAVAILABLE", "MAINTENANCE_MODE", "PLATFORM_SCHEDULED_MAINTENANCE"}
)
DEFAULT_RESET_SECONDS = 3.0  # one rate-limit window, when a 429 names no reset

#: Human sentences for the codes that concern tracks; others get a generic one.
MESSAGES = {
    "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT": (
        "DatoCMS does not allow upload tracks to change in a sandbox environment."
    ),
    "NOT_A_VIDEO": "The upload is not a video, so it has no tracks to delete.",
    "NO_PRIMARY_AUDIO_TRACK": "The video has no primary audio track.",
    "MUX_ERROR": "DatoCMS's video provider failed to delete the track.",
    "NOT_FOUND": "The upload track does not exist.",
}


@dataclass(frozen=True)
class Job:
    """DatoCMS accepted the call and runs it as job `id`."""

    id: str


@dataclass(frozen=True)
class Done:
    """A final result: what the original call answered (synchronously or from a job)."""

    http_status: int
    payload: Any


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _error_code(document: Any) -> tuple[str | None, bool]:
    """The first api_error's code, and whether DatoCMS flagged it transient."""
    if not isinstance(document, dict):
        return None, False
    errors = document.get("data")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, False
    attributes = errors[0].get("attributes")
    if not isinstance(attributes, dict):
        return None, False
    code = attributes.get("code")
    if not isinstance(code, str) or not re.fullmatch(r"[A-Z0-9_]{1,100}", code):
        return None, False
    return code, attributes.get("transient") is True


def message_for(code: str, http_status: int | None) -> str:
    known = MESSAGES.get(code)
    if known:
        return known
    suffix = f" (HTTP {http_status})" if http_status else ""
    return f"DatoCMS refused the deletion with {code}{suffix}."


def reset_seconds(headers: Headers) -> float:
    """Seconds to wait after a 429, from `X-RateLimit-Reset` (whole seconds to wait)."""
    raw = headers.get("x-ratelimit-reset")
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        return DEFAULT_RESET_SECONDS
    return min(value, 3600.0)


def error_from(status: int, headers: Headers, body: bytes) -> DatoCMSError:
    """The typed error for a non-2xx answer."""
    document = _json(body)
    code, transient = _error_code(document)
    if status == 429 or code == "RATE_LIMIT_EXCEEDED":
        return DatoCMSRateLimited(
            "DatoCMS rate limit reached",
            http_status=status,
            code=code or "RATE_LIMIT_EXCEEDED",
            retry_after=reset_seconds(headers),
        )
    if status in (401, 403):
        return DatoCMSAuthError(
            "DatoCMS refused the service's API token",
            http_status=status,
            code=code or f"HTTP_{status}",
        )
    if status >= 500 or document is None or transient or code in TRANSIENT_CODES:
        return DatoCMSUnavailable(
            f"DatoCMS is unavailable (HTTP {status})",
            http_status=status,
            code=code or f"HTTP_{status}",
        )
    if status in (408, 425):
        return DatoCMSUnavailable(
            f"DatoCMS timed out (HTTP {status})", http_status=status, code=code or f"HTTP_{status}"
        )
    if status == 404:
        return DatoCMSNotFound(MESSAGES["NOT_FOUND"], http_status=404, code=code or "NOT_FOUND")
    code = code or f"HTTP_{status}"
    return DatoCMSRefused(message_for(code, status), http_status=status, code=code)


def _job(document: Any) -> Job | None:
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, dict) and data.get("type") == "job":
        job_id = data.get("id")
        if isinstance(job_id, str) and JOB_ID.match(job_id):
            return Job(job_id)
        raise DatoCMSBadResponse("DatoCMS answered a job with an unusable id", http_status=202)
    return None


def interpret_delete(status: int, headers: Headers, body: bytes) -> Job:
    """The meaning of the answer to `DELETE /uploads/{id}/tracks/{id}`: its job.

    The documented success is `202` + job; any other 2xx is not the documented
    shape (the contract answers it `502`).
    """
    if not 200 <= status < 300:
        raise error_from(status, headers, body)
    job = _job(_json(body))
    if job is None:
        raise DatoCMSBadResponse(
            "DatoCMS answered the deletion with an undocumented body", http_status=status
        )
    return job


def interpret_job_result(status: int, headers: Headers, body: bytes) -> Job | Done | None:
    """The meaning of the answer to `GET /job-results/{id}`: pending (None), final, or a new job."""
    if status == 404:
        code, _ = _error_code(_json(body))
        if code in (None, "NOT_FOUND"):
            return None  # still running (or an unknown id: the deadline handles that)
    if not 200 <= status < 300:
        raise error_from(status, headers, body)
    document = _json(body)
    job = _job(document)
    if job is not None:
        return job
    data = document.get("data") if isinstance(document, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict):
        raise DatoCMSBadResponse(
            "DatoCMS answered a job result with an undocumented body", http_status=status
        )
    inner = attributes.get("status")
    if isinstance(inner, bool) or not isinstance(inner, int) or not 100 <= inner <= 599:
        raise DatoCMSBadResponse(
            "DatoCMS answered a job result without a status", http_status=status
        )
    return Done(inner, attributes.get("payload"))


def track_of(payload: Any) -> dict[str, Any] | None:
    """The deleted track's attributes, from a success payload `{"data": <upload_track>}`."""
    data = payload.get("data") if isinstance(payload, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict):
        return None
    return {key: attributes.get(key) for key in TRACK_ATTRIBUTES}


def outcome_of(done: Done, job_id: str | None) -> Outcome:
    """What a final result means for the requester."""
    if 200 <= done.http_status < 300:
        return Outcome("deleted", job_id=job_id, track=track_of(done.payload))
    if done.http_status == 404:
        return Outcome("not_found", job_id=job_id)
    code, _ = _error_code(done.payload)
    code = code or f"HTTP_{done.http_status}"
    return Outcome(
        "failed",
        job_id=job_id,
        error=failure(code, message_for(code, done.http_status), done.http_status),
    )


def outcome_of_refusal(error: DatoCMSRefused, job_id: str | None = None) -> Outcome:
    """What a synchronous refusal of the DELETE means for the requester."""
    if isinstance(error, DatoCMSNotFound):
        return Outcome("not_found", job_id=job_id)
    code = error.code or f"HTTP_{error.http_status}"
    return Outcome("failed", job_id=job_id, error=failure(code, error.message, error.http_status))


# ---------------------------------------------------------------------------
# Listing an upload's tracks (`GET /uploads/{id}/tracks`)

TRACK_ID = JOB_ID
INVALID_ANSWER = "invalid_answer"


@dataclass(frozen=True)
class ListedTrack:
    """One track of an upload, as listed: its id and its known attributes."""

    id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Listing:
    """One page of an upload's tracks; `total` when DatoCMS says how many there are in all."""

    tracks: tuple[ListedTrack, ...]
    total: int | None = None


def _listed(item: Any) -> ListedTrack | None:
    """An `upload_track` resource with a usable id and documented attributes, else None."""
    if not isinstance(item, dict) or item.get("type") != "upload_track":
        return None
    track_id, attributes = item.get("id"), item.get("attributes")
    if not isinstance(track_id, str) or not TRACK_ID.match(track_id):
        return None
    if not isinstance(attributes, dict) or attributes.get("type") not in ("subtitles", "audio"):
        return None
    closed = attributes.get("closed_captions")
    if closed is not None and not isinstance(closed, bool):
        return None
    for text in ("name", "language_code", "status"):
        value = attributes.get(text)
        if value is not None and not isinstance(value, str):
            return None
    return ListedTrack(track_id, {key: attributes.get(key) for key in TRACK_ATTRIBUTES})


def interpret_list(status: int, headers: Headers, body: bytes) -> Listing:
    """The meaning of the answer to `GET /uploads/{id}/tracks`: the listed tracks.

    The documented answer is `200` `{"data": [upload_track, ...]}`; unknown attributes
    are dropped; anything else that is 2xx is `DatoCMSBadResponse` (`invalid_answer`).
    A JSON:API `meta.total_count` is kept, should DatoCMS ever page this list.
    """
    if not 200 <= status < 300:
        raise error_from(status, headers, body)
    document = _json(body)
    data = document.get("data") if isinstance(document, dict) else None
    bad = DatoCMSBadResponse(
        "DatoCMS answered the track listing with an undocumented body",
        http_status=status,
        code=INVALID_ANSWER,
    )
    if not isinstance(data, list):
        raise bad
    tracks = tuple(_listed(item) for item in data)
    if any(track is None for track in tracks):
        raise bad
    meta = document.get("meta") if isinstance(document, dict) else None
    total = meta.get("total_count") if isinstance(meta, dict) else None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None
    return Listing(tuple(track for track in tracks if track is not None), total)
