"""`delete_track`'s handler against the DatoCMS simulator, with a recording queue."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import Misconfigured, QueueUnavailable
from core.headers import Headers
from devstack.datocms_simulator import DEMO_TRACK_ID, DEMO_UPLOAD_ID, DatoCMSSimulator
from devstack.stack import Secrets
from handlers import intake, records
from handlers.responses import Reply
from tests.conftest import Harness

UPLOAD, TRACK = DEMO_UPLOAD_ID, DEMO_TRACK_ID


def post(
    harness: Harness,
    body: Any = None,
    *,
    raw: bytes | None = None,
    method: str = "POST",
    authorization: str | None = "default",
    content_type: str | None = "application/json",
    content_length: int | None = None,
) -> Reply:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {}
    if authorization == "default":
        token = harness.service.settings.intake_token
        assert token is not None
        authorization = f"Bearer {token.reveal()}"
    if authorization is not None:
        headers["authorization"] = authorization
    if content_type is not None:
        headers["content-type"] = content_type
    return intake.handle_http(
        harness.service,
        method=method,
        headers=Headers(headers),
        content_length=len(data) if content_length is None else content_length,
        stream=io.BytesIO(data),
    )


def request(**extra: Any) -> dict[str, Any]:
    return {"upload_id": UPLOAD, "upload_track_id": TRACK, **extra}


@pytest.fixture
def harness(make_harness: Callable[..., Harness], simulator: DatoCMSSimulator) -> Harness:
    simulator.add_track(UPLOAD, TRACK, job_seconds=30)
    return make_harness(CALLBACK_ALLOW_PRIVATE_NETWORKS="false")


def record_of(harness: Harness, request_id: str, *, missing: bool = False) -> Any:
    found = records.load(harness.service, request_id, harness.clock[0])
    assert (found is None) == missing
    return found


def test_accepted_deletion_answers_202_pending_with_the_job_and_schedules_a_poll(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    reply = post(harness, request(callback_url="https://hooks.example.com/x"))
    assert reply.status == 202
    assert reply.body["status"] == "pending"
    assert reply.body["request_id"].startswith("req_")
    assert reply.body["job_id"]
    [(_, delay, name)] = harness.queue.enqueued
    payload = harness.queue.payloads()[0]
    assert payload["kind"] == "resume"  # enqueued before the DELETE went out
    assert delay == harness.service.settings.poll_initial_delay
    assert name == f"{reply.body['request_id']}-{int(harness.clock[0] * 1000):x}-1"
    assert simulator.count("DELETE") == 1
    record = record_of(harness, reply.body["request_id"])
    assert record.status == "pending" and record.job_id == reply.body["job_id"]
    assert reply.headers["Location"] == f"/requests/{reply.body['request_id']}"


def test_basic_auth_with_the_token_as_password_is_accepted(
    harness: Harness, secrets: Secrets
) -> None:
    basic = base64.b64encode(f"datocms:{secrets.intake_token}".encode()).decode()
    assert post(harness, request(), authorization=f"Basic {basic}").status == 202


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        "Basic !!!",
        "Basic " + base64.b64encode(b"user-only").decode(),
        "Token x",
    ],
)
def test_missing_or_wrong_credentials_get_401_and_nothing_happens(
    harness: Harness, simulator: DatoCMSSimulator, authorization: str | None
) -> None:
    reply = post(harness, request(), authorization=authorization)
    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"
    assert simulator.count() == 0 and harness.queue.enqueued == []


def test_wrong_basic_password_gets_401(harness: Harness) -> None:
    basic = base64.b64encode(b"datocms:not-the-token").decode()
    assert post(harness, request(), authorization=f"Basic {basic}").status == 401


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_content_type_that_is_not_json_gets_415(harness: Harness, content_type: str | None) -> None:
    assert post(harness, request(), content_type=content_type).status == 415


def test_content_type_parameters_are_allowed(harness: Harness) -> None:
    assert post(harness, request(), content_type="application/json; charset=utf-8").status == 202


def test_body_over_64_kib_gets_413_from_the_declared_length_without_reading(
    harness: Harness,
) -> None:
    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the body was read")

    reply = intake.handle_http(
        harness.service,
        method="POST",
        headers=Headers(
            {
                "Authorization": f"Bearer {harness.service.settings.intake_token.reveal()}",  # type: ignore[union-attr]
                "Content-Type": "application/json",
            }
        ),
        content_length=64 * 1024 + 1,
        stream=Unreadable(),
    )
    assert reply.status == 413


def test_body_over_64_kib_without_a_length_is_refused_after_64_kib_plus_one(
    harness: Harness,
) -> None:
    big = json.dumps(request(metadata={"a": "x" * 70_000})).encode()
    assert post(harness, raw=big, content_length=None).status == 413


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b"NaN", b'{"upload_id": NaN}', b"[" * 5000 + b"]" * 5000]
)
def test_body_that_is_not_json_gets_400(harness: Harness, raw: bytes) -> None:
    reply = post(harness, raw=raw)
    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_json"


def test_schema_violations_get_400_listing_each_field(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    reply = post(harness, {"upload_id": "../x", "environment": "UPPER", "extra": True})
    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_request"
    assert {d["field"] for d in reply.body["error"]["details"]} == {
        "upload_id",
        "upload_track_id",
        "environment",
        "(body)",
    }
    assert simulator.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://[::1]/",
        "https://169.254.169.254/",
        "https://2130706433/",
    ],
)
def test_callback_urls_that_are_not_public_https_get_400(
    harness: Harness, simulator: DatoCMSSimulator, url: str
) -> None:
    reply = post(harness, request(callback_url=url))
    assert reply.status == 400
    assert reply.body["error"]["details"][0]["field"] == "callback_url"
    assert simulator.count() == 0


def test_same_idempotency_key_twice_is_a_duplicate_with_one_delete(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    first = post(harness, request(idempotency_key="k-1"))
    second = post(harness, request(idempotency_key="k-1"))
    assert first.status == 202
    assert second.status == 200
    assert second.body == {"request_id": first.body["request_id"], "status": "duplicate"}
    assert simulator.count("DELETE") == 1
    assert len(harness.queue.enqueued) == 1


def test_a_duplicate_seen_only_by_the_queue_is_answered_duplicate(
    harness: Harness, make_harness: Callable[..., Harness]
) -> None:
    first = post(harness, request())
    other_instance = make_harness()
    other_instance.queue.names = harness.queue.names  # the queue is shared, the memory is not
    second = post(other_instance, request())
    assert second.status == 200 and second.body["status"] == "duplicate"
    assert second.body["request_id"] == first.body["request_id"]


def test_missing_track_answers_200_not_found_and_queues_the_finish(harness: Harness) -> None:
    reply = post(
        harness,
        {
            "upload_id": UPLOAD,
            "upload_track_id": "gone",
            "callback_url": "https://hooks.example.com/",
        },
    )
    assert reply.status == 200
    assert reply.body["status"] == "not_found"
    [payload] = harness.queue.payloads()
    assert payload["kind"] == "resume"  # it queues the callback from the record
    outcome = record_of(harness, reply.body["request_id"]).outcome
    assert outcome is not None and outcome["status"] == "not_found"


def test_sandbox_refusal_answers_422_with_the_request_id_and_queues_a_failure(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK, environment="sandbox")
    reply = post(harness, request(environment="sandbox", callback_url="https://hooks.example.com/"))
    assert reply.status == 422
    assert reply.body["request_id"].startswith("req_")
    assert (
        reply.body["error"]["details"]["datocms_code"]
        == "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT"
    )
    outcome = record_of(harness, reply.body["request_id"]).outcome
    assert outcome is not None and outcome["status"] == "failed"
    assert simulator.requests[0].environment == "sandbox"


@pytest.mark.parametrize("fault", ["500", "503", "html_502", "drop", ("429", 4)])
def test_datocms_unavailable_answers_202_queued_and_schedules_the_delete(
    harness: Harness, simulator: DatoCMSSimulator, fault: Any
) -> None:
    simulator.inject(fault)
    reply = post(harness, request())
    assert reply.status == 202
    assert reply.body["status"] == "queued"
    assert [payload["kind"] for payload in harness.queue.payloads()] == ["resume"]
    record = record_of(harness, reply.body["request_id"])
    assert record.status == "queued"
    assert record.unanswered == (fault == "drop")  # a dropped answer: the DELETE may have worked
    if isinstance(fault, tuple):
        assert record.next_at is not None and record.next_at - harness.clock[0] >= 4


def test_datocms_rejecting_the_service_token_answers_502_and_queues_nothing(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    harness = make_harness(DATOCMS_API_TOKEN="a-wrong-token")
    reply = post(harness, request())
    assert reply.status == 502
    assert reply.body["error"]["code"] == "upstream_auth_failed"
    assert reply.body["request_id"].startswith("req_")
    assert record_of(harness, reply.body["request_id"], missing=True) is None  # a retry is free
    assert "a-wrong-token" not in harness.logs.getvalue()


def test_callback_url_without_a_signing_secret_is_misconfigured_and_sends_nothing(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK)
    harness = make_harness(CALLBACK_SIGNING_SECRET="")
    with pytest.raises(Misconfigured) as raised:
        post(harness, request(callback_url="https://hooks.example.com/"))
    assert raised.value.variables == ("CALLBACK_SIGNING_SECRET",)
    assert simulator.count() == 0
    assert post(harness, request()).status == 202  # without callback_url it still works


def test_missing_intake_token_is_misconfigured_before_credentials_are_checked(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(INTAKE_TOKEN="")
    with pytest.raises(Misconfigured) as raised:
        post(harness, request(), authorization=None)
    assert raised.value.variables == ("INTAKE_TOKEN",)


def test_queue_outage_answers_503_and_releases_the_claim(harness: Harness) -> None:
    harness.queue.fail_with = QueueUnavailable("down")
    assert post(harness, request()).status == 503
    harness.queue.fail_with = None
    assert post(harness, request()).status in (200, 202)  # a retry is not taken for a duplicate


def test_a_refusal_is_logged_with_the_scheme_only_never_the_credential(harness: Harness) -> None:
    post(harness, request(), authorization="s3cr3t-token-without-scheme")
    post(harness, request(), authorization="Bearer wrong-but-secret")
    entries = [e for e in harness.logs.entries() if e["message"].startswith("intake refused")]
    assert [e["scheme"] for e in entries] == ["other", "bearer"]
    assert entries[0]["severity"] == "WARNING"
    assert "s3cr3t" not in harness.logs.getvalue()
    assert "wrong-but-secret" not in harness.logs.getvalue()


def test_the_datocms_call_is_logged_with_the_requests_ids(harness: Harness) -> None:
    reply = post(harness, request())
    [entry] = [e for e in harness.logs.entries() if e["message"] == "DatoCMS answered"]
    assert entry["request_id"] == reply.body["request_id"]
    assert (entry["upload_id"], entry["upload_track_id"]) == (UPLOAD, TRACK)
    assert entry["http_status"] == 202
