"""End to end with `STATE_BACKEND=firestore`, on Google's official Firestore emulator.

The functions run as real processes and keep their records in the emulator;
the same deletion, duplicate and status resource as on SQLite.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from devstack.datocms_simulator import DEMO_UPLOAD_ID
from devstack.stack import LocalStack
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.xdist_group("firestore")

UPLOAD = DEMO_UPLOAD_ID


@pytest.fixture(scope="module")
def stack(firestore_emulator_host: str) -> Iterator[LocalStack]:
    env = {
        "STATE_BACKEND": "firestore",
        "FIRESTORE_EMULATOR_HOST": firestore_emulator_host,
        "FIRESTORE_PROJECT": "e2e-" + secrets.token_hex(4),
        "DATOCMS_ENVIRONMENT": "",
    }
    with LocalStack(env=env) as running:
        yield running


def test_a_deletion_is_recorded_in_firestore_from_acceptance_to_delivered_callback(
    stack: LocalStack,
) -> None:
    stack.simulator.add_track(UPLOAD, "fs-track-1", job_seconds=0.5)
    request = {
        "upload_id": UPLOAD,
        "upload_track_id": "fs-track-1",
        "callback_url": stack.receiver.url,
    }
    answer = stack.submit(request)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]
    assert answer.headers["Location"].endswith(f"/requests/{request_id}")
    delivery = stack.receiver.wait_for_id(request_id, 20)
    assert delivery is not None and delivery.payload["type"] == "upload_track.deleted"
    status = wait_until(
        "the delivery to be recorded",
        lambda: (
            (view := stack.status(request_id).json())["callback"]["state"] == "delivered" and view
        ),
    )
    assert status["status"] == "deleted" and status["done"] is True
    again = stack.submit(request)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert stack.simulator.count("DELETE") == 1


def test_the_production_configuration_cloud_tasks_and_firestore_ends_in_one_callback(
    firestore_emulator_host: str,
) -> None:
    from devstack.tasks_emulator import TasksEmulator
    from tests.e2e.test_cloudtasks_pipeline import cloud_tasks_env, deployed_queues

    with TasksEmulator(deployed_queues()) as emulator:
        env = {
            **cloud_tasks_env(emulator),
            "STATE_BACKEND": "firestore",
            "FIRESTORE_EMULATOR_HOST": firestore_emulator_host,
            "FIRESTORE_PROJECT": "e2e-" + secrets.token_hex(4),
        }
        with LocalStack(env=env) as stack:
            stack.simulator.add_track(UPLOAD, "fs-ct-track", job_seconds=0.3)
            request = {
                "upload_id": UPLOAD,
                "upload_track_id": "fs-ct-track",
                "callback_url": stack.receiver.url,
                "idempotency_key": "fs-ct-1",
            }
            first, again = stack.submit(request), stack.submit(request)
            assert first.status_code == 202, first.text
            assert again.status_code in (200, 409) and again.json().get("status") != "pending"
            request_id = first.json()["request_id"]
            delivery = stack.receiver.wait_for_id(request_id, 20)
            assert delivery is not None and delivery.payload["data"]["status"] == "deleted"
            view = wait_until(
                "the delivery to be recorded",
                lambda: (
                    (v := stack.status(request_id).json())["callback"]["state"] == "delivered" and v
                ),
            )
            assert view["done"] is True and view["polls"] >= 1
            assert stack.simulator.count("DELETE") == 1
            assert len([d for d in stack.receiver.deliveries if d.answered < 300]) == 1
