"""End to end on the local stack: the functions as real processes, over HTTP.

One stack serves the module: the DatoCMS simulator, a receiver verifying
callbacks with `standardwebhooks`, `delete_track` and `poll_job` as
`functions-framework` processes, and the `local` task queue inside them.
Each test uses its own track, so tests do not see each other's callbacks.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.datocms_simulator import DEMO_UPLOAD_ID
from devstack.receiver import Delivery
from devstack.stack import FunctionProcess, LocalStack, Secrets

pytestmark = pytest.mark.xdist_group("e2e-local")

UPLOAD = DEMO_UPLOAD_ID
_tracks = itertools.count()
WAIT = 20.0


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {"POLL_TIMEOUT_SECONDS": "4", "CALLBACK_MAX_ATTEMPTS": "3", "DATOCMS_ENVIRONMENT": ""}
    with LocalStack(env=env) as running:
        yield running


def new_track(stack: LocalStack, **options: Any) -> str:
    track = f"track-{next(_tracks)}-{int(time.time() * 1000) % 100000}"
    stack.simulator.add_track(UPLOAD, track, **options)
    return track


def body(stack: LocalStack, track: str, **extra: Any) -> dict[str, Any]:
    return {
        "upload_id": UPLOAD,
        "upload_track_id": track,
        "callback_url": stack.receiver.url,
        **extra,
    }


def callback(stack: LocalStack, request_id: str) -> Delivery:
    delivery = stack.receiver.wait_for_id(request_id, WAIT)
    assert delivery is not None, f"no verified callback for {request_id}"
    assert delivery.verified
    return delivery


def deletes(stack: LocalStack, track: str) -> int:
    return stack.simulator.count("DELETE", f"/uploads/{UPLOAD}/tracks/{track}")


def test_accepted_deletion_ends_in_one_verified_deleted_callback(stack: LocalStack) -> None:
    track = new_track(stack, job_seconds=0.6)
    answer = stack.submit(body(stack, track, metadata={"ticket": "SUB-42"}))
    assert answer.status_code == 202
    assert answer.json()["status"] == "pending" and answer.json()["job_id"]
    payload = callback(stack, answer.json()["request_id"]).payload
    assert payload["type"] == "upload_track.deleted"
    data = payload["data"]
    assert data["status"] == "deleted" and data["job_id"] == answer.json()["job_id"]
    assert data["track"]["language_code"] == "it-IT"
    assert data["metadata"] == {"ticket": "SUB-42"}
    assert data["environment"] is None
    assert data["polls"] >= 1 and data["error"] is None
    assert data["polls"] == stack.simulator.count("GET", f"/job-results/{data['job_id']}")
    assert deletes(stack, track) == 1


def test_duplicate_request_changes_nothing_and_gets_no_second_callback(stack: LocalStack) -> None:
    track = new_track(stack, job_seconds=0.3)
    first = stack.submit(body(stack, track, idempotency_key=f"dup-{track}"))
    second = stack.submit(body(stack, track, idempotency_key=f"dup-{track}"))
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"request_id": first.json()["request_id"], "status": "duplicate"}
    callback(stack, first.json()["request_id"])
    third = stack.submit(body(stack, track, idempotency_key=f"dup-{track}"))
    assert third.json()["status"] == "duplicate"
    time.sleep(1.0)  # give a wrongly forked chain the time to show itself
    assert len(stack.receiver.for_id(first.json()["request_id"])) == 1
    assert deletes(stack, track) == 1


def test_missing_track_answers_not_found_and_calls_back_already_deleted(stack: LocalStack) -> None:
    answer = stack.submit(body(stack, "never-existed"))
    assert answer.status_code == 200 and answer.json()["status"] == "not_found"
    payload = callback(stack, answer.json()["request_id"]).payload
    assert payload["type"] == "upload_track.already_deleted"
    assert payload["data"]["status"] == "not_found"


def test_sandbox_refusal_answers_422_and_calls_back_deletion_failed(stack: LocalStack) -> None:
    track = f"sandboxed-{next(_tracks)}"
    stack.simulator.add_track(UPLOAD, track, environment="sandbox")
    answer = stack.submit(body(stack, track, environment="sandbox"))
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "deletion_refused"
    payload = callback(stack, answer.json()["request_id"]).payload
    assert payload["type"] == "upload_track.deletion_failed"
    assert payload["data"]["environment"] == "sandbox"
    assert payload["data"]["error"]["code"] == "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT"
    assert payload["data"]["error"]["http_status"] == 422


def test_job_that_fails_calls_back_deletion_failed_with_the_datocms_code(stack: LocalStack) -> None:
    track = new_track(stack, job_seconds=0.3, outcome=(422, "NOT_A_VIDEO"))
    answer = stack.submit(body(stack, track))
    payload = callback(stack, answer.json()["request_id"]).payload
    assert payload["type"] == "upload_track.deletion_failed"
    assert payload["data"]["error"]["code"] == "NOT_A_VIDEO"
    assert payload["data"]["error"]["message"]


def test_job_not_final_before_the_timeout_calls_back_timed_out(stack: LocalStack) -> None:
    track = new_track(stack, job_seconds=120)
    answer = stack.submit(body(stack, track))
    assert answer.status_code == 202
    payload = callback(stack, answer.json()["request_id"]).payload
    assert payload["type"] == "upload_track.deletion_timed_out"
    assert payload["data"]["status"] == "timed_out"
    assert payload["data"]["job_id"] == answer.json()["job_id"]


@pytest.mark.parametrize("fault", ["500", "html_502", "drop", ("429", 1)])
def test_flaky_datocms_is_queued_then_deleted(stack: LocalStack, fault: Any) -> None:
    track = new_track(stack, job_seconds=0.2)
    stack.simulator.inject(fault, match=("DELETE", f"/uploads/{UPLOAD}/tracks/{track}"))
    answer = stack.submit(body(stack, track))
    assert answer.status_code == 202
    assert answer.json()["status"] == "queued"
    payload = callback(stack, answer.json()["request_id"]).payload
    assert payload["type"] == "upload_track.deleted"
    assert stack.simulator.stats()["early_requests"] == 0


def test_rejected_callbacks_are_retried_with_the_same_id_and_fresh_signatures(
    stack: LocalStack,
) -> None:
    track = new_track(stack, job_seconds=0.2)
    stack.receiver.fail_next(503, 2)
    answer = stack.submit(body(stack, track))
    request_id = answer.json()["request_id"]
    accepted = callback(stack, request_id)
    attempts = stack.receiver.for_id(request_id)
    assert [a.answered for a in attempts] == [503, 503, accepted.answered]
    assert all(a.verified for a in attempts)  # each signed with a timestamp the receiver accepts
    stamps = [int(a.headers["webhook-timestamp"]) for a in attempts]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 60


def test_callbacks_refused_every_time_are_dead_lettered_in_the_log(stack: LocalStack) -> None:
    track = new_track(stack, job_seconds=0.2)
    stack.receiver.fail_next(500, 3)  # CALLBACK_MAX_ATTEMPTS=3
    answer = stack.submit(body(stack, track))
    request_id = answer.json()["request_id"]
    deadline = time.monotonic() + WAIT
    letters: list[dict[str, Any]] = []
    while not letters and time.monotonic() < deadline:
        letters = [
            e
            for e in stack.functions["poll_job"].logs()
            if e["message"] == "callback dead-lettered" and e.get("request_id") == request_id
        ]
        time.sleep(0.1)
    [letter] = letters
    assert letter["severity"] == "ERROR"
    assert letter["callback"]["data"]["request_id"] == request_id
    assert letter["callback"]["type"] == "upload_track.deleted"
    assert len(stack.receiver.for_id(request_id)) == 3


def test_http_errors_of_the_intake_follow_the_contract(stack: LocalStack) -> None:
    url, token = stack.intake_url, stack.secrets.intake_token
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.post(url, json={}, timeout=5).status_code == 401
    assert requests.get(url, headers=auth, timeout=5).status_code == 405
    assert requests.post(url, data=b"{}", headers=auth, timeout=5).status_code == 415
    too_big = b'{"metadata": "' + b"x" * 70_000 + b'"}'
    assert (
        requests.post(
            url, data=too_big, headers={**auth, "Content-Type": "application/json"}, timeout=5
        ).status_code
        == 413
    )
    bad = requests.post(
        url, data=b"{nope", headers={**auth, "Content-Type": "application/json"}, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    invalid = requests.post(url, json={"upload_id": "a/b"}, headers=auth, timeout=5)
    assert invalid.status_code == 400
    assert {d["field"] for d in invalid.json()["error"]["details"]} == {
        "upload_id",
        "upload_track_id",
    }
    basic = base64.b64encode(f"datocms:{token}".encode()).decode()
    missing = requests.post(
        url, json=body(stack, "nope-basic"), headers={"Authorization": f"Basic {basic}"}, timeout=5
    )
    assert missing.status_code == 200


def test_poll_job_refuses_a_task_it_did_not_sign(stack: LocalStack) -> None:
    before = stack.simulator.stats()["requests"]
    forged = json.dumps({"payload": {"kind": "delete"}, "signature": "v1=AAAA"})
    answer = requests.post(
        stack.functions["poll_job"].url,
        data=forged,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 401
    assert stack.simulator.stats()["requests"] == before


def start_intake(env: dict[str, str]) -> FunctionProcess:
    process = FunctionProcess("delete_track", env).start()
    process.wait_ready()
    return process


def test_wrong_datocms_token_answers_502_with_a_request_id(stack: LocalStack) -> None:
    env = stack.environment(stack.simulator.base_url, 9)
    env["DATOCMS_API_TOKEN"] = "not-the-simulator-token"
    process = start_intake(env)
    try:
        answer = requests.post(
            process.url,
            json=body(stack, "t502"),
            headers={"Authorization": f"Bearer {stack.secrets.intake_token}"},
            timeout=10,
        )
    finally:
        process.stop()
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_auth_failed"
    assert answer.json()["request_id"].startswith("req_")


def test_missing_intake_token_answers_500_misconfigured_and_logs_the_name(
    stack: LocalStack,
) -> None:
    secrets = Secrets()
    env = stack.environment(stack.simulator.base_url, 9)
    env["INTAKE_TOKEN"] = ""
    process = start_intake(env)
    try:
        answer = requests.post(
            process.url,
            json={},
            headers={"Authorization": f"Bearer {secrets.intake_token}"},
            timeout=10,
        )
        time.sleep(0.2)
        logs = process.logs()
    finally:
        process.stop()
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "misconfigured"
    [entry] = [e for e in logs if e["severity"] == "ERROR"]
    assert entry["variables"] == ["INTAKE_TOKEN"]
