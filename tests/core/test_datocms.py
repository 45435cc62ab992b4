"""The meaning of DatoCMS answers, from recorded and documented samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import datocms
from core.errors import (
    DatoCMSAuthError,
    DatoCMSBadResponse,
    DatoCMSNotFound,
    DatoCMSRateLimited,
    DatoCMSRefused,
    DatoCMSUnavailable,
)
from core.headers import Headers

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "datocms"
JSON = Headers({"Content-Type": "application/json"})


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def api_error(code: str, *, transient: bool = False) -> bytes:
    attributes: dict[str, object] = {"code": code, "details": {}}
    if transient:
        attributes["transient"] = True
    return json.dumps(
        {"data": [{"id": "1", "type": "api_error", "attributes": attributes}]}
    ).encode()


def test_delete_answered_202_with_a_job_is_a_job() -> None:
    assert datocms.interpret_delete(202, JSON, sample("delete-track-202.json")) == datocms.Job(
        "4235"
    )


def test_pending_job_result_sample_means_still_running() -> None:
    assert datocms.interpret_job_result(404, JSON, sample("job-result-pending-404.json")) is None


def test_done_job_result_sample_yields_the_deleted_track() -> None:
    done = datocms.interpret_job_result(200, JSON, sample("job-result-done-200.json"))
    assert isinstance(done, datocms.Done)
    outcome = datocms.outcome_of(done, "34")
    assert outcome.status == "deleted"
    assert outcome.track == {
        "type": "subtitles",
        "name": "Italiano",
        "language_code": "it-IT",
        "closed_captions": False,
        "status": "ready",
        "error": None,
    }


def test_job_result_with_undocumented_status_text_is_tolerated() -> None:
    done = datocms.interpret_job_result(
        200, JSON, sample("job-result-done-with-statustext-200.json")
    )
    assert (
        done == datocms.Done(201, done.payload)
        and datocms.outcome_of(done, "x").status == "deleted"
    )  # type: ignore[union-attr]


def test_failed_job_result_keeps_the_datocms_code_exactly() -> None:
    done = datocms.interpret_job_result(200, JSON, sample("job-result-failed-200.json"))
    assert isinstance(done, datocms.Done)
    outcome = datocms.outcome_of(done, "j")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["code"] == "NOT_A_VIDEO"
    assert outcome.error["http_status"] == 422
    assert outcome.error["message"]


def test_job_result_with_status_404_means_already_deleted() -> None:
    done = datocms.Done(404, {"data": [{"type": "api_error", "attributes": {"code": "NOT_FOUND"}}]})
    assert datocms.outcome_of(done, "j").status == "not_found"


def test_a_202_job_from_the_job_result_endpoint_is_followed() -> None:
    assert datocms.interpret_job_result(
        202, JSON, b'{"data": {"type": "job", "id": "77"}}'
    ) == datocms.Job("77")


@pytest.mark.parametrize("status", [200, 204])
def test_a_synchronous_2xx_to_the_delete_is_not_the_documented_shape(status: int) -> None:
    body = b'{"data": {"type": "upload_track", "id": "t", "attributes": {"type": "audio"}}}'
    with pytest.raises(DatoCMSBadResponse):
        datocms.interpret_delete(status, JSON, body if status == 200 else b"")


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "code"),
    [
        (
            429,
            {"X-RateLimit-Reset": "7"},
            api_error("RATE_LIMIT_EXCEEDED"),
            DatoCMSRateLimited,
            "RATE_LIMIT_EXCEEDED",
        ),
        (500, JSON, api_error("INTERNAL"), DatoCMSUnavailable, "INTERNAL"),
        (
            502,
            {"Content-Type": "text/html"},
            b"<html><body>Bad gateway</body></html>",
            DatoCMSUnavailable,
            "HTTP_502",
        ),
        (503, JSON, api_error("MAINTENANCE_MODE"), DatoCMSUnavailable, "MAINTENANCE_MODE"),
        (
            422,
            JSON,
            api_error("SERVICE_UNAVAILABLE", transient=True),
            DatoCMSUnavailable,
            "SERVICE_UNAVAILABLE",
        ),
        (
            401,
            JSON,
            api_error("INVALID_AUTHORIZATION_HEADER"),
            DatoCMSAuthError,
            "INVALID_AUTHORIZATION_HEADER",
        ),
        (
            403,
            JSON,
            api_error("INSUFFICIENT_PERMISSIONS"),
            DatoCMSAuthError,
            "INSUFFICIENT_PERMISSIONS",
        ),
        (404, JSON, sample("job-result-pending-404.json"), DatoCMSNotFound, "NOT_FOUND"),
        (
            422,
            JSON,
            api_error("IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT"),
            DatoCMSRefused,
            "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT",
        ),
        (422, JSON, sample("error-invalid-field-422.json"), DatoCMSRefused, "INVALID_FIELD"),
    ],
)
def test_delete_errors_are_typed_by_status_and_code(
    status: int, headers: Headers, body: bytes, kind: type, code: str
) -> None:
    with pytest.raises(kind) as raised:
        datocms.interpret_delete(status, headers, body)
    assert type(raised.value) is kind
    assert raised.value.code == code
    assert raised.value.http_status == status


def test_rate_limit_wait_is_the_announced_reset_in_seconds() -> None:
    error = datocms.error_from(429, Headers({"X-RateLimit-Reset": "12"}), b"")
    assert error.retry_after == 12.0


@pytest.mark.parametrize("reset", [None, "soon", "-4", "nan"])
def test_rate_limit_without_a_usable_reset_waits_one_window(reset: str | None) -> None:
    headers = Headers({} if reset is None else {"X-RateLimit-Reset": reset})
    assert datocms.error_from(429, headers, b"").retry_after == datocms.DEFAULT_RESET_SECONDS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"data": {"type": "job"}}',
        b'{"data": {"type": "job", "id": "../x"}}',
        b'{"meta": 1}',
    ],
)
def test_delete_2xx_with_an_undocumented_body_is_a_bad_response(body: bytes) -> None:
    with pytest.raises(DatoCMSBadResponse):
        datocms.interpret_delete(202, JSON, body)


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"data": {"attributes": {}}}',
        b'{"data": {"attributes": {"status": "200"}}}',
        b'{"data": {"attributes": {"status": true}}}',
    ],
)
def test_job_result_without_a_status_is_a_bad_response(body: bytes) -> None:
    with pytest.raises(DatoCMSBadResponse):
        datocms.interpret_job_result(200, JSON, body)


def test_job_result_404_with_another_error_code_is_not_pending() -> None:
    with pytest.raises(DatoCMSNotFound):
        datocms.interpret_job_result(404, JSON, api_error("UNKNOWN_JOB"))


def test_an_error_code_that_is_not_an_identifier_is_not_trusted() -> None:
    body = b'{"data": [{"type": "api_error", "attributes": {"code": "<script>"}}]}'
    with pytest.raises(DatoCMSRefused) as raised:
        datocms.interpret_delete(422, JSON, body)
    assert raised.value.code == "HTTP_422"
