"""Deleting by selector end to end: the functions as processes, on the local queue and on the
Cloud Tasks emulator (which does not de-duplicate task names), with a verifying receiver."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from core import validation
from devstack.receiver import Delivery
from devstack.stack import LocalStack
from devstack.tasks_emulator import TasksEmulator
from tests.e2e.test_cloudtasks_pipeline import CALLBACKS, STEPS, cloud_tasks_env, queue_path
from tests.e2e.waiting import stays_unchanged

WAIT = 30.0
ITALIAN = {"language_code": "it-IT", "type": "subtitles"}


def upload(stack: LocalStack, *outcomes: tuple[int, str] | None) -> str:
    """A fresh upload with one Italian subtitle track per outcome and an English one."""
    upload_id = "up-" + secrets.token_hex(6)
    for n, outcome in enumerate(outcomes):
        stack.simulator.add_track(
            upload_id, f"it{n}", language_code="it-IT", job_seconds=0.3, outcome=outcome
        )
    stack.simulator.add_track(upload_id, "en0", language_code="en-US", job_seconds=0.3)
    return upload_id


def summary(stack: LocalStack, upload_id: str, tracks: Any = None) -> dict[str, Any]:
    body = {"upload_id": upload_id, "tracks": tracks or ITALIAN, "callback_url": stack.receiver.url}
    answer = stack.submit(body)
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    request_id = answer.json()["request_id"]
    delivery: Delivery | None = stack.receiver.wait_for_id(request_id, WAIT)
    assert delivery is not None and delivery.verified
    Webhook(stack.secrets.callback_secret).verify(delivery.body, delivery.headers)
    assert validation.errors("callback", delivery.payload) == []
    return delivery.payload


def deletes(stack: LocalStack, upload_id: str) -> int:
    return stack.simulator.count("DELETE", f"/uploads/{upload_id}/tracks/")


# --------------------------------------------------------------------------- local queue


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {"POLL_INITIAL_DELAY_SECONDS": "0.2", "POLL_MAX_DELAY_SECONDS": "0.4"}
    with LocalStack(env=env) as running:
        yield running


@pytest.mark.xdist_group("e2e-selector-local")
def test_local_stack_deletes_the_italian_subtitles_with_one_summary(stack: LocalStack) -> None:
    upload_id = upload(stack, None, None)
    payload = summary(stack, upload_id)
    assert payload["type"] == "upload_tracks.deleted" and payload["data"]["matched"] == 2
    assert deletes(stack, upload_id) == 2
    assert [t["id"] for t in stack.simulator.tracks(upload_id)] == ["en0"]
    assert payload["data"]["polls"] >= 2


@pytest.mark.xdist_group("e2e-selector-local")
def test_local_stack_reports_partially_failed(stack: LocalStack) -> None:
    upload_id = upload(stack, None, (422, "MUX_ERROR"))
    payload = summary(stack, upload_id)
    assert payload["type"] == "upload_tracks.partially_failed"
    assert sorted(t["status"] for t in payload["data"]["tracks"]) == ["deleted", "failed"]


@pytest.mark.xdist_group("e2e-selector-local")
def test_local_stack_reports_none_matched_and_unknown_uploads(stack: LocalStack) -> None:
    upload_id = upload(stack, None)
    assert summary(stack, upload_id, {"type": "audio"})["type"] == "upload_tracks.none_matched"
    failed = summary(stack, "no-such-upload", {"all": True})
    assert failed["type"] == "upload_tracks.deletion_failed"
    assert failed["data"]["error"]["code"] == "NOT_FOUND"
    assert deletes(stack, upload_id) == 0


@pytest.mark.xdist_group("e2e-selector-local")
def test_local_stack_refuses_a_bad_selector_with_400(stack: LocalStack) -> None:
    answer = stack.submit({"upload_id": "u1", "tracks": {"all": True, "type": "audio"}})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"][0]["field"] == "tracks"


# --------------------------------------------------------------------------- Cloud Tasks


@pytest.fixture(scope="module")
def tasks_stack() -> Iterator[LocalStack]:
    queues = [queue_path(STEPS), queue_path(CALLBACKS)]
    with TasksEmulator(queues) as emulator, LocalStack(env=cloud_tasks_env(emulator)) as running:
        yield running


@pytest.mark.xdist_group("e2e-selector-cloudtasks")
def test_cloud_tasks_emulator_deletes_every_match_once_with_exactly_one_callback(
    tasks_stack: LocalStack,
) -> None:
    upload_id = upload(tasks_stack, None, None, None, (422, "NOT_A_VIDEO"))
    payload = summary(tasks_stack, upload_id)
    request_id = payload["data"]["request_id"]
    assert payload["type"] == "upload_tracks.partially_failed"
    assert payload["data"]["matched"] == 4 and deletes(tasks_stack, upload_id) == 4
    attempts = stays_unchanged(lambda: len(tasks_stack.receiver.for_id(request_id)))
    assert attempts == 1
    assert tasks_stack.simulator.count("GET", f"/uploads/{upload_id}/tracks") == 1
