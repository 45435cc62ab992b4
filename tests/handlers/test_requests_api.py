"""The status resource, idempotency on the store, and the dead-letter operations."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from adapters.callback_sender import DeliveryResult
from core import validation
from core.errors import StateUnavailable
from core.headers import Headers
from core.model import Step, rfc3339
from devstack.datocms_simulator import DEMO_UPLOAD_ID, DatoCMSSimulator
from handlers import intake, records, steps
from handlers.responses import Reply
from tests.conftest import Harness

UPLOAD, TRACK = DEMO_UPLOAD_ID, "track1"
HOOK = "https://hooks.example.com/done?secret=query"
GONE = DeliveryResult(delivered=False, status=410, reason="HTTP 410")


def call(
    harness: Harness,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: dict[str, list[str]] | None = None,
    token: str | None = "default",  # noqa: S107 (the harness's own token)
) -> Reply:
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": "application/json"}
    if token == "default":
        token = harness.service.settings.intake_tokens()[0]
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return intake.handle_http(
        harness.service,
        method=method,
        headers=Headers(headers),
        content_length=len(data),
        stream=io.BytesIO(data),
        path=path,
        query=query or {},
    )


def run_tasks(harness: Harness) -> None:
    """Deliver every enqueued task to poll_job, in order, until none is left."""
    while harness.queue.enqueued:
        task, _, _ = harness.queue.enqueued.pop(0)
        steps.handle_http(
            harness.service, method="POST", headers=Headers(), stream=io.BytesIO(task.body)
        )


@pytest.fixture
def harness(make_harness: Callable[..., Harness], simulator: DatoCMSSimulator) -> Harness:
    simulator.add_track(UPLOAD, TRACK, job_seconds=0)
    return make_harness(CALLBACK_ALLOW_PRIVATE_NETWORKS="false", INTAKE_URL="https://in.example/")


def submit(harness: Harness, **extra: Any) -> Reply:
    body = {"upload_id": UPLOAD, "upload_track_id": TRACK, "callback_url": HOOK, **extra}
    return call(harness, "POST", "/", body)


def test_accepted_request_has_a_status_resource_matching_its_schema(harness: Harness) -> None:
    accepted = submit(harness)
    request_id = accepted.body["request_id"]
    assert accepted.headers["Location"] == f"https://in.example/requests/{request_id}"
    pending = call(harness, "GET", f"/requests/{request_id}")
    assert pending.status == 200 and validation.errors("request_status", pending.body) == []
    assert pending.body["status"] == "pending" and pending.body["done"] is False
    assert int(pending.headers["Retry-After"]) >= 1
    assert pending.body["callback"] == {
        "host": "hooks.example.com",
        "state": "pending",
        "attempts": 0,
        "last_status": None,
        "delivered_at": None,
    }
    harness.clock[0] += 5
    run_tasks(harness)
    final = call(harness, "GET", f"/requests/{request_id}")
    assert validation.errors("request_status", final.body) == []
    assert final.body["status"] == "deleted" and final.body["done"] is True
    assert final.body["outcome"]["request_id"] == request_id
    assert final.body["callback"]["state"] == "delivered"
    assert final.body["callback"]["delivered_at"] == rfc3339(harness.clock[0])
    assert "Retry-After" not in final.headers
    kept = harness.service.records.get(request_id, now=harness.clock[0])
    assert kept is not None
    stored = json.dumps(kept.document.data)
    assert "secret=query" not in stored and "/done" not in stored  # only the host, in clear


def test_the_same_request_within_the_window_is_a_duplicate_then_a_new_acceptance(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    first = submit(harness, idempotency_key="k-1")
    harness.clock[0] += 5
    run_tasks(harness)
    again = submit(harness, idempotency_key="k-1")
    assert again.status == 200 and again.body["status"] == "duplicate"
    assert again.headers["Location"].endswith(first.body["request_id"])
    assert simulator.count("DELETE") == 1
    harness.clock[0] += harness.service.settings.idempotency_window + 1
    assert submit(harness, idempotency_key="k-1").status in (200, 202)
    assert simulator.count("DELETE") == 2  # past the window: accepted anew


def test_a_request_being_decided_answers_409_in_progress(harness: Harness) -> None:
    service = harness.service
    request = intake.validate({"upload_id": UPLOAD, "upload_track_id": TRACK}, allow_private=False)
    request_id = request.request_id(None)
    fresh = records.new_record(service, request, request_id, None, harness.clock[0])
    assert records.claim(service, fresh, harness.clock[0])[0] == "won"
    busy = call(harness, "POST", "/", {"upload_id": UPLOAD, "upload_track_id": TRACK})
    assert busy.status == 409 and busy.body["error"]["code"] == "in_progress"
    assert busy.headers["Retry-After"] == "1" and busy.body["request_id"] == request_id
    harness.clock[0] += 31  # the lease of an intake that died has run out: taken over
    taken = call(harness, "POST", "/", {"upload_id": UPLOAD, "upload_track_id": TRACK})
    assert taken.status == 202


def test_the_store_unavailable_at_intake_answers_503_and_sends_nothing(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    class Down:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise StateUnavailable("down")

            return fail

    harness.service.records = Down()  # type: ignore[assignment]
    reply = submit(harness)
    assert reply.status == 503 and reply.body["error"]["code"] == "state_unavailable"
    assert reply.headers["Retry-After"] and reply.body["request_id"].startswith("req_")
    assert simulator.count() == 0 and harness.queue.enqueued == []


def test_the_queue_unavailable_at_intake_sends_no_delete_and_leaves_nothing_behind(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    from core.errors import QueueUnavailable

    harness.queue.fail_with = QueueUnavailable("down")
    reply = submit(harness)
    assert reply.status == 503 and reply.body["error"]["code"] == "queue_unavailable"
    assert simulator.count() == 0
    harness.queue.fail_with = None
    assert submit(harness).status == 202  # the retry starts clean


def dead_letter(harness: Harness, **extra: Any) -> str:
    harness.sender.answers = [GONE]
    request_id: str = submit(harness, **extra).body["request_id"]
    harness.clock[0] += 5
    run_tasks(harness)
    return request_id


def test_a_dead_letter_is_listed_and_can_be_sent_again_with_the_same_webhook_id(
    harness: Harness,
) -> None:
    request_id = dead_letter(harness)
    status = call(harness, "GET", f"/requests/{request_id}").body
    assert status["callback"]["state"] == "dead_letter" and status["callback"]["last_status"] == 410
    listed = call(harness, "GET", "/requests", query={"callback": ["dead_letter"]})
    assert [r["request_id"] for r in listed.body["requests"]] == [request_id]
    assert listed.body["next"] is None
    resend = call(harness, "POST", f"/requests/{request_id}/callback")
    assert resend.status == 202 and resend.body == {"request_id": request_id, "status": "resending"}
    run_tasks(harness)
    first, second = harness.sender.sent
    assert first[2]["webhook-id"] == second[2]["webhook-id"] == request_id
    assert first[1] == second[1] and second[0] == HOOK  # the same body, to the sealed URL
    after = call(harness, "GET", f"/requests/{request_id}").body["callback"]
    assert after["state"] == "delivered" and after["attempts"] == 1


def test_recover_sends_again_every_dead_letter_of_a_range(harness: Harness) -> None:
    ids = [dead_letter(harness, idempotency_key=f"k{n}") for n in range(3)]
    since = rfc3339(harness.clock[0] - 3600)
    reply = call(harness, "POST", "/callbacks/recover", {"since": since})
    assert reply.status == 202 and reply.body == {"resending": 3}
    run_tasks(harness)
    for request_id in ids:
        state = call(harness, "GET", f"/requests/{request_id}").body["callback"]["state"]
        assert state == "delivered"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"since": "yesterday"},
        {"since": "2026-11-29T10:00:00"},  # no time zone
        {"since": "2026-11-29T10:00:00Z", "until": "2026-11-29T09:00:00Z"},
        {"since": "2026-11-29T10:00:00Z", "extra": 1},
        [1],
    ],
)
def test_recover_refuses_a_bad_or_reversed_range(harness: Harness, body: Any) -> None:
    reply = call(harness, "POST", "/callbacks/recover", body)
    assert reply.status == 400 and reply.body["error"]["code"] == "invalid_request"


def test_resend_answers_404_409_and_422_as_the_contract_says(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK, job_seconds=30)
    harness = make_harness()
    unknown = "req_" + "0" * 32
    assert call(harness, "POST", f"/requests/{unknown}/callback").status == 404
    running = submit(harness).body["request_id"]
    assert call(harness, "POST", f"/requests/{running}/callback").body["error"]["code"] == (
        "not_done"
    )
    simulator.add_track(UPLOAD, "plain", job_seconds=0)
    plain = call(harness, "POST", "/", {"upload_id": UPLOAD, "upload_track_id": "plain"})
    harness.clock[0] += 5
    run_tasks(harness)
    no_callback = call(harness, "POST", f"/requests/{plain.body['request_id']}/callback")
    assert no_callback.status == 422 and no_callback.body["error"]["code"] == "no_callback"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/requests/req_" + "0" * 32, 404),
        ("GET", "/requests/req_<script>", 404),
        ("GET", "/requests/req_" + "0" * 32 + "/x", 404),
        ("GET", "/nothing", 404),
        ("DELETE", "/requests/req_" + "0" * 32, 405),
        ("GET", "/requests/req_" + "0" * 32 + "/callback", 405),
        ("GET", "/callbacks/recover", 405),
        ("POST", "/requests", 405),
        ("GET", "/", 405),
    ],
)
def test_unknown_paths_are_404_and_known_paths_with_another_method_405(
    harness: Harness, method: str, path: str, status: int
) -> None:
    reply = call(harness, method, path)
    assert reply.status == status
    assert "<script>" not in json.dumps(reply.body)
    if status == 405:
        assert reply.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/requests/req_" + "0" * 32), ("POST", "/callbacks/recover"), ("GET", "/requests")],
)
def test_every_route_needs_the_intake_token(harness: Harness, method: str, path: str) -> None:
    assert call(harness, method, path, token=None).status == 401
    assert call(harness, method, path, token="x" * 20).status == 401


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"callback": ["delivered"]},
        {"callback": ["dead_letter"], "limit": ["0"]},
        {"callback": ["dead_letter"], "limit": ["101"]},
        {"callback": ["dead_letter"], "limit": ["²"]},
        {"callback": ["dead_letter"], "after": ["not-a-cursor!"]},
        {"callback": ["dead_letter"], "other": ["1"]},
    ],
)
def test_the_dead_letter_listing_refuses_bad_queries(
    harness: Harness, query: dict[str, list[str]]
) -> None:
    assert call(harness, "GET", "/requests", query=query).status == 400


def test_a_step_of_a_superseded_acceptance_is_ignored(harness: Harness) -> None:
    reply = submit(harness)
    [(task, _, _)] = harness.queue.enqueued
    payload = json.loads(json.loads(task.body)["payload"])
    stale = Step.from_json({**payload, "accepted_at": payload["accepted_at"] - 10})
    from core.signing import seal_task

    body = seal_task(stale.to_json(), harness.service.settings.task_keys()[0])
    answer = steps.handle_http(
        harness.service, method="POST", headers=Headers(), stream=io.BytesIO(body)
    )
    assert answer.body == {"status": "superseded"}
    assert reply.status == 202
