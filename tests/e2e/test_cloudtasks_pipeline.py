"""The whole pipeline on the Cloud Tasks emulator: `delete_track` and `poll_job` as real
`functions-framework` processes with `TASKS_BACKEND=cloudtasks`, the DatoCMS simulator and
a callback receiver that verifies with `standardwebhooks`.

The emulator dispatches every task (steps and callbacks) to `POLL_URL` with the queues'
deployed policies (`devstack.tasks_emulator.service_queues`: the settings the functions
get, plus what Terraform adds) and refuses a reused task name. Cloud Tasks delivers at
least once: a duplicate delivery is made here as a task of the same signed body under
another name, and what keeps each request to one DELETE and one accepted callback is the
service itself.

Reading tasks back from the emulator (names, schedule times, headers, OIDC) is covered by
`tests/adapters/test_cloud_tasks_emulator.py`; here the emulator is only paused, resumed
and, once, fed a duplicate of a task the service created.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core.exceptions import AlreadyExists
from standardwebhooks.webhooks import Webhook

from adapters.cloud_tasks import CloudTasksQueue
from core.settings import Settings
from devstack.receiver import CallbackReceiver, Delivery
from devstack.stack import FunctionProcess, LocalStack
from devstack.tasks_emulator import QueueConfig, TasksEmulator, service_queues
from tests.e2e.waiting import stays_unchanged, wait_until

PROJECT = "P"
LOCATION = "L"
STEPS = "steps"
CALLBACKS = "callbacks"
INVOKER = "invoker@P.iam.gserviceaccount.com"


def queue_path(queue: str) -> str:
    return f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue}"


def cloud_tasks_env(emulator: TasksEmulator, **extra: str) -> dict[str, str]:
    """What the functions get on top of `LocalStack.environment` (which sets `POLL_URL`)."""
    return {"CLOUD_TASKS_EMULATOR_HOST": emulator.host, **cloud_tasks_env_values(**extra)}


def cloud_tasks_env_values(**extra: str) -> dict[str, str]:
    return {
        "TASKS_BACKEND": "cloudtasks",
        "TASKS_PROJECT": PROJECT,
        "TASKS_LOCATION": LOCATION,
        "TASKS_QUEUE": STEPS,
        "CALLBACK_QUEUE": CALLBACKS,
        "TASKS_SERVICE_ACCOUNT": INVOKER,
        "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
        "POLL_INITIAL_DELAY_SECONDS": "0.2",
        "POLL_MAX_DELAY_SECONDS": "0.4",
        **extra,
    }


# --------------------------------------------------------------------------- waiting


# --------------------------------------------------------------------------- helpers


def new_track(stack: LocalStack, *, job_seconds: float = 0.3) -> tuple[str, str]:
    """A fresh track in the simulator's primary environment."""
    upload_id = "up-" + secrets.token_hex(6)
    track_id = "tr-" + secrets.token_hex(8)
    stack.simulator.add_track(upload_id, track_id, job_seconds=job_seconds)
    return upload_id, track_id


def deletion(stack: LocalStack, upload_id: str, track_id: str) -> dict[str, Any]:
    return {
        "upload_id": upload_id,
        "upload_track_id": track_id,
        "callback_url": stack.receiver.url,
        "idempotency_key": "e2e-" + secrets.token_hex(8),
        "metadata": {"ticket": "SUB-42"},
    }


def submit_pending(stack: LocalStack, request: dict[str, Any]) -> str:
    """Submit; assert `202 pending`; return the request id."""
    answer = stack.submit(request)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "pending"
    assert body["job_id"]
    request_id: str = body["request_id"]
    return request_id


def deliveries_for(receiver: CallbackReceiver, request_id: str) -> list[Delivery]:
    """Every attempt the receiver got for `request_id`, accepted or not."""
    return [d for d in list(receiver.deliveries) if d.headers.get("webhook-id") == request_id]


def accepted_for(receiver: CallbackReceiver, request_id: str) -> list[Delivery]:
    return [d for d in receiver.accepted() if d.headers.get("webhook-id") == request_id]


def logs_for(function: FunctionProcess, request_id: str) -> list[dict[str, Any]]:
    return [entry for entry in function.logs() if entry.get("request_id") == request_id]


def delete_path(upload_id: str, track_id: str) -> str:
    return f"/uploads/{upload_id}/tracks/{track_id}"


def task_names(admin: CloudTasksQueue, queue: str, request_id: str) -> list[str]:
    """Short names of the tasks of `request_id` the emulator holds in `queue`."""
    names = [
        task.name.rsplit("/", 1)[-1] for task in admin.client.list_tasks(parent=queue_path(queue))
    ]
    return sorted(name for name in names if name.startswith(request_id + "-"))


@contextlib.contextmanager
def paused(admin: CloudTasksQueue, queue: str) -> Iterator[None]:
    """Hold `queue`'s tasks in the emulator (listed, not dispatched) for the block."""
    admin.client.pause_queue(name=queue_path(queue))
    try:
        yield
    finally:
        admin.client.resume_queue(name=queue_path(queue))


def listed_task(admin: CloudTasksQueue, queue: str, short_name: str) -> Any | None:
    """The task `short_name` as the emulator lists it in `queue` (paused), or None."""
    for task in admin.client.list_tasks(parent=queue_path(queue)):
        if task.name.rsplit("/", 1)[-1] == short_name:
            return task
    return None


def duplicate(admin: CloudTasksQueue, queue: str, short_name: str) -> None:
    """Create a copy of task `short_name` (same body and headers) named `<short_name>-again`."""
    task = listed_task(admin, queue, short_name)
    assert task is not None
    copy = type(task)(
        name=task.name + "-again", http_request=task.http_request, schedule_time=task.schedule_time
    )
    with pytest.raises(AlreadyExists):
        admin.client.create_task(parent=queue_path(queue), task=task)
    admin.client.create_task(parent=queue_path(queue), task=copy)


# --------------------------------------------------------------------------- fixtures


def deployed_queues(**extra: str) -> dict[str, QueueConfig]:
    """The two queues as Terraform would create them for functions given this environment."""
    # LocalStack.environment's callback backoff (0.2 s to 1 s), and what the tests add.
    env = {"CALLBACK_RETRY_MIN_SECONDS": "0.2", "CALLBACK_RETRY_MAX_SECONDS": "1"}
    return service_queues(Settings.from_env({**env, **cloud_tasks_env_values(**extra)}))


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator(deployed_queues()) as running:
        yield running


@pytest.fixture(scope="module")
def admin(emulator: TasksEmulator) -> Iterator[CloudTasksQueue]:
    """A Cloud Tasks client on the emulator, for pausing, resuming and listing queues."""
    queue = CloudTasksQueue(
        project=PROJECT,
        location=LOCATION,
        steps_queue=STEPS,
        callbacks_queue=CALLBACKS,
        target_url="http://127.0.0.1:9/",
        service_account=None,
        emulator_host=emulator.host,
    )
    yield queue
    queue.close()


@pytest.fixture(scope="module")
def stack(emulator: TasksEmulator) -> Iterator[LocalStack]:
    with LocalStack(env=cloud_tasks_env(emulator)) as running:
        yield running


@pytest.fixture(scope="module")
def dead_letter_stack(emulator: TasksEmulator) -> Iterator[LocalStack]:
    """A second pair of functions on the same emulator, with a two-attempt callback budget."""
    with LocalStack(env=cloud_tasks_env(emulator, CALLBACK_MAX_ATTEMPTS="2")) as running:
        yield running


# --------------------------------------------------------------------------- tests


def test_a_deletion_ends_in_exactly_one_verified_deleted_callback_and_one_delete(
    stack: LocalStack,
) -> None:
    upload_id, track_id = new_track(stack)
    request = deletion(stack, upload_id, track_id)

    request_id = submit_pending(stack, request)
    wait_until("an accepted callback", lambda: accepted_for(stack.receiver, request_id))
    # The emulator does not de-duplicate: make sure no second delivery follows.
    attempts = stays_unchanged(lambda: len(deliveries_for(stack.receiver, request_id)))

    assert attempts == 1
    [delivery] = accepted_for(stack.receiver, request_id)
    Webhook(stack.secrets.callback_secret).verify(delivery.body, delivery.headers)
    callback = delivery.payload
    assert callback["type"] == "upload_track.deleted"
    assert callback["data"]["request_id"] == request_id
    assert callback["data"]["status"] == "deleted"
    assert (callback["data"]["upload_id"], callback["data"]["upload_track_id"]) == (
        upload_id,
        track_id,
    )
    assert callback["data"]["metadata"] == {"ticket": "SUB-42"}
    assert callback["data"]["track"]["type"] == "subtitles"
    job_id = callback["data"]["job_id"]
    assert callback["data"]["polls"] == stack.simulator.count("GET", f"/job-results/{job_id}")
    assert stack.simulator.count("DELETE", delete_path(upload_id, track_id)) == 1


def test_tasks_of_one_request_are_named_request_id_dash_n_and_request_id_dash_cb(
    stack: LocalStack, admin: CloudTasksQueue
) -> None:
    poll_job = stack.functions["poll_job"]
    upload_id, track_id = new_track(stack, job_seconds=0.9)  # several polls

    with paused(admin, STEPS):
        request_id = submit_pending(stack, deletion(stack, upload_id, track_id))
        created_at_intake = task_names(admin, STEPS, request_id)
    [delivery] = wait_until(
        "an accepted callback", lambda: accepted_for(stack.receiver, request_id)
    )
    wait_until(
        "the delivery in the poll_job log",
        lambda: [e for e in logs_for(poll_job, request_id) if e["message"] == "callback delivered"],
    )
    entries = logs_for(poll_job, request_id)

    polls = delivery.payload["data"]["polls"]
    assert polls >= 2
    # Every task names the acceptance (`<request_id>-<accepted ms, hex>-<n>`), so a
    # repeat of this request after the duplicate window starts a chain of its own.
    [first] = created_at_intake
    chain = first.rsplit("-", 1)[0]
    assert re.fullmatch(re.escape(request_id) + r"-[0-9a-f]+", chain)
    assert first == f"{chain}-1"  # the resume, enqueued before the DELETE
    # Each poll that was not final scheduled the next one under the next number.
    scheduled = [e["next_task"] for e in entries if e["message"] == "scheduled"]
    assert scheduled == [f"{chain}-{n}" for n in range(2, polls + 1)]
    # Every task that ran is logged under its own name.
    names = {e["task"] for e in entries if "task" in e}
    assert names == {
        f"{chain}-1",
        *(f"{chain}-{n}" for n in range(2, polls + 1)),
        f"{chain}-cb",
    }


def test_a_receiver_failing_twice_gets_a_third_delivery_with_the_same_webhook_id(
    stack: LocalStack,
) -> None:
    upload_id, track_id = new_track(stack)
    stack.receiver.fail_next(500, 2)

    request_id = submit_pending(stack, deletion(stack, upload_id, track_id))
    wait_until("an accepted callback", lambda: accepted_for(stack.receiver, request_id))
    attempts = stays_unchanged(lambda: len(deliveries_for(stack.receiver, request_id)))

    assert attempts == 3
    deliveries = deliveries_for(stack.receiver, request_id)
    assert [d.answered for d in deliveries] == [500, 500, 204]
    assert all(d.verified for d in deliveries)
    assert {d.headers["webhook-id"] for d in deliveries} == {request_id}
    assert len({d.body for d in deliveries}) == 1
    logged = [
        e["attempt"]
        for e in logs_for(stack.functions["poll_job"], request_id)
        if str(e.get("task")).endswith("-cb") and "attempt" in e
    ]
    assert logged == [1, 2, 3]
    assert len(accepted_for(stack.receiver, request_id)) == 1


def test_an_exhausted_callback_is_dead_lettered_once_and_the_emulator_stops_retrying(
    dead_letter_stack: LocalStack, admin: CloudTasksQueue
) -> None:
    stack = dead_letter_stack
    poll_job = stack.functions["poll_job"]
    upload_id, track_id = new_track(stack)
    stack.receiver.fail_next(503, 1000)  # a receiver that always fails

    request_id = submit_pending(stack, deletion(stack, upload_id, track_id))
    wait_until(
        "the dead letter",
        lambda: [
            e for e in logs_for(poll_job, request_id) if e["message"] == "callback dead-lettered"
        ],
    )
    attempts = stays_unchanged(lambda: len(deliveries_for(stack.receiver, request_id)))
    cb_lines = stays_unchanged(
        lambda: [e for e in logs_for(poll_job, request_id) if str(e.get("task")).endswith("-cb")],
        seconds=0.3,
    )

    assert attempts == 2
    assert all(d.answered == 503 and d.verified for d in deliveries_for(stack.receiver, request_id))
    dead = [e for e in cb_lines if e["message"] == "callback dead-lettered"]
    assert len(dead) == 1
    assert dead[0]["severity"] == "ERROR"
    assert dead[0]["attempt"] == 2
    # The whole body, exactly as the receiver was sent it.
    assert dead[0]["callback"] == deliveries_for(stack.receiver, request_id)[-1].payload
    assert dead[0]["callback"]["type"] == "upload_track.deleted"
    assert dead[0]["target"] == "http://127.0.0.1"
    assert stack.receiver.url not in json.dumps(cb_lines)
    # poll_job answered 2xx to the last attempt: the emulator dropped the task.
    assert task_names(admin, CALLBACKS, request_id) == []
    assert stack.simulator.count("DELETE", delete_path(upload_id, track_id)) == 1


def test_step_and_callback_tasks_delivered_twice_still_give_one_delete_and_one_callback(
    stack: LocalStack, admin: CloudTasksQueue
) -> None:
    poll_job = stack.functions["poll_job"]
    upload_id, track_id = new_track(stack, job_seconds=0.1)

    with paused(admin, CALLBACKS):
        with paused(admin, STEPS):
            request_id = submit_pending(stack, deletion(stack, upload_id, track_id))
            # Delivered twice: the same signed body, again, under a name of its own
            # (the emulator, like Cloud Tasks, refuses the name itself).
            [first_name] = task_names(admin, STEPS, request_id)
            duplicate(admin, STEPS, first_name)
        [callback_name] = wait_until(
            "the callback task", lambda: task_names(admin, CALLBACKS, request_id)
        )
        duplicate(admin, CALLBACKS, callback_name)

    def ignored() -> list[str]:
        return [
            e["task"]
            for e in logs_for(poll_job, request_id)
            if e["message"].startswith("task already carried out")
        ]

    wait_until("both duplicates to be ignored", lambda: len(ignored()) >= 2)
    attempts = stays_unchanged(lambda: len(deliveries_for(stack.receiver, request_id)), 0.5)

    # Logged under the name signed into the body, whatever the delivery was called.
    assert sorted(ignored()) == sorted([first_name, callback_name])
    assert callback_name.endswith("-cb")
    assert attempts == 1
    assert accepted_for(stack.receiver, request_id)[0].payload["type"] == "upload_track.deleted"
    assert stack.simulator.count("DELETE", delete_path(upload_id, track_id)) == 1
    finished = [
        e["message"]
        for e in logs_for(poll_job, request_id)
        if e["message"].startswith("request finished")
    ]
    assert finished == ["request finished; callback queued"]
