"""Faults on the faithful Cloud Tasks emulator: the real functions (`functions-framework`
processes, `TASKS_BACKEND=cloudtasks`), the real client, the DatoCMS simulator and a
verifying callback receiver, while things break.

The emulator's queues are configured as Terraform deploys them for these functions
(`service_queues`): names refused for an hour, the callbacks queue's attempt budget
(`CALLBACK_MAX_ATTEMPTS` + 5) and backoff, concurrency, a dispatch deadline. Only the
time scale is small (callback backoff 0.1-0.4 s, steps backoff 0.2-1 s, three callback
attempts) so that each test takes a few seconds.

What every test counts, whatever broke: each accepted request ends with exactly one
accepted callback or exactly one dead letter (`end_of_sequence`); a 503 at intake leaves
no deletion behind; no DatoCMS call arrives before a reset DatoCMS announced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.cloud_tasks import CloudTasksQueue
from adapters.tasks import STEPS_RETRY
from core.settings import Settings
from devstack.stack import FunctionProcess, LocalStack
from devstack.tasks_emulator import QueueConfig, TasksEmulator, service_queues
from tests.e2e.waiting import stays_unchanged, wait_until

pytestmark = pytest.mark.xdist_group("e2e-cloudtasks-faults")

PROJECT, LOCATION, STEPS, CALLBACKS = "P", "L", "steps", "callbacks"
#: The steps queue as deployed, on a shorter clock (its production minimum is 1 s).
FAST_STEPS = dataclasses.replace(
    QueueConfig(), retry=dataclasses.replace(STEPS_RETRY, min_backoff=0.2, max_backoff=1.0)
)
SETTINGS = {
    "TASKS_BACKEND": "cloudtasks",
    "TASKS_PROJECT": PROJECT,
    "TASKS_LOCATION": LOCATION,
    "TASKS_QUEUE": STEPS,
    "CALLBACK_QUEUE": CALLBACKS,
    "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
    "POLL_INITIAL_DELAY_SECONDS": "0.2",
    "POLL_MAX_DELAY_SECONDS": "0.4",
    "CALLBACK_MAX_ATTEMPTS": "3",
    "CALLBACK_RETRY_MIN_SECONDS": "0.1",
    "CALLBACK_RETRY_MAX_SECONDS": "0.4",
}


def queue_path(queue: str) -> str:
    return f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue}"


def deployed_queues(settings: dict[str, str] = SETTINGS) -> dict[str, QueueConfig]:
    steps = dataclasses.replace(
        service_queues(Settings.from_env(settings))[queue_path(STEPS)], retry=FAST_STEPS.retry
    )
    return service_queues(Settings.from_env(settings), steps=steps)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator(deployed_queues(), max_dispatch_deadline=15.0) as running:
        yield running


@pytest.fixture
def make_stack() -> Iterator[Callable[..., LocalStack]]:
    stacks: list[LocalStack] = []

    def make(emulator: TasksEmulator, settings: dict[str, str] = SETTINGS) -> LocalStack:
        env = {**settings, "CLOUD_TASKS_EMULATOR_HOST": emulator.host}
        stack = LocalStack(env=env).start()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def admin_queue(emulator: TasksEmulator) -> CloudTasksQueue:
    """A Cloud Tasks client on `emulator`, for pausing, resuming and listing queues."""
    return CloudTasksQueue(
        project=PROJECT,
        location=LOCATION,
        steps_queue=STEPS,
        callbacks_queue=CALLBACKS,
        target_url="http://127.0.0.1:9/",
        service_account=None,
        emulator_host=emulator.host,
    )


@pytest.fixture
def admin(emulator: TasksEmulator) -> Iterator[CloudTasksQueue]:
    queue = admin_queue(emulator)
    yield queue
    queue.close()


# --------------------------------------------------------------------------- helpers


def new_request(stack: LocalStack, *, job_seconds: float = 0.3) -> tuple[dict[str, Any], str]:
    upload_id, track_id = "up-" + secrets.token_hex(6), "tr-" + secrets.token_hex(8)
    stack.simulator.add_track(upload_id, track_id, job_seconds=job_seconds)
    request = {
        "upload_id": upload_id,
        "upload_track_id": track_id,
        "callback_url": stack.receiver.url,
        "idempotency_key": "fault-" + secrets.token_hex(8),
    }
    return request, f"/uploads/{upload_id}/tracks/{track_id}"


def accepted(stack: LocalStack, request_id: str) -> list[Any]:
    return [d for d in stack.receiver.accepted() if d.headers.get("webhook-id") == request_id]


def dead_letters(logs: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in logs
        if e.get("request_id") == request_id and e.get("message") == "callback dead-lettered"
    ]


def record(stack: LocalStack, request_id: str) -> dict[str, Any]:
    answer = stack.status(request_id)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def end_of_sequence(
    stack: LocalStack, request_id: str, *, logs: Callable[[], list[dict[str, Any]]] | None = None
) -> str:
    """Wait until the request's callback sequence ended; check it ended exactly once.

    Returns the record's `callback.state` (`delivered` or `dead_letter`).
    """
    every_log = logs or stack.logs

    def ended() -> str | None:
        state = record(stack, request_id)["callback"]["state"]
        return state if state in ("delivered", "dead_letter") else None

    state = wait_until("the end of the callback sequence", ended, timeout=10.0)
    # Nothing more may follow: no second acceptance, no second dead letter.
    counts = stays_unchanged(
        lambda: (len(accepted(stack, request_id)), len(dead_letters(every_log(), request_id))),
        seconds=0.8,
    )
    assert counts == ((1, 0) if state == "delivered" else (0, 1))
    assert record(stack, request_id)["done"] is True
    return state


def kill(function: FunctionProcess) -> None:
    """SIGKILL the process and its gunicorn workers: no graceful end, as when an
    instance is lost (killing the master alone leaves a worker serving the port)."""
    assert function.process is not None
    for pid in [*descendants(function.process.pid), function.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    function.process.wait()
    wait_until("the port to close", lambda: not listening(function.port), timeout=5.0)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), deepest first."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found = [*descendants(int(child)), int(child), *found]
    return found


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def restart_poll_job(stack: LocalStack, graveyard: list[FunctionProcess]) -> None:
    """A new `poll_job` process on the same port and environment (the old one is killed)."""
    old = stack.functions["poll_job"]
    kill(old)
    graveyard.append(old)
    env = stack.environment(stack.simulator.base_url, old.port)
    stack.functions["poll_job"] = FunctionProcess("poll_job", env, port=old.port).start()
    stack.functions["poll_job"].wait_ready()


@pytest.fixture
def graveyard() -> Iterator[list[FunctionProcess]]:
    """Killed processes, kept until the test ends so that their logs can be read."""
    dead: list[FunctionProcess] = []
    yield dead
    for function in dead:
        function.stop()


def all_logs(stack: LocalStack, graveyard: list[FunctionProcess]) -> list[dict[str, Any]]:
    return stack.logs() + [e for f in graveyard for e in f.logs()]


# --------------------------------------------------------------------------- tests


def test_poll_job_killed_mid_chain_and_restarted_ends_in_one_callback_and_one_delete(
    emulator: TasksEmulator,
    make_stack: Callable[..., LocalStack],
    graveyard: list[FunctionProcess],
) -> None:
    stack = make_stack(emulator)
    request, delete_path = new_request(stack, job_seconds=1.5)

    answer = stack.submit(request)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]
    job = answer.json()["job_id"]
    wait_until("a first poll", lambda: stack.simulator.count("GET", f"/job-results/{job}"))
    restart_poll_job(stack, graveyard)  # mid-chain: the job runs for 1.5 s

    state = end_of_sequence(stack, request_id, logs=lambda: all_logs(stack, graveyard))

    assert state == "delivered"
    [delivery] = accepted(stack, request_id)
    assert delivery.payload["type"] == "upload_track.deleted"
    assert delivery.payload["data"]["track"] is not None
    assert stack.simulator.count("DELETE", delete_path) == 1


#: A steadier callback clock for the outage test: 0.5 s between attempts, so that
#: poll_job can be killed between the first and the second.
STEADY = {**SETTINGS, "CALLBACK_RETRY_MIN_SECONDS": "0.5", "CALLBACK_RETRY_MAX_SECONDS": "0.5"}


def test_poll_job_down_across_the_callback_queues_last_attempts_still_ends_the_sequence(
    make_stack: Callable[..., LocalStack], graveyard: list[FunctionProcess]
) -> None:
    with TasksEmulator(deployed_queues(STEADY)) as emulator:
        stack = make_stack(emulator, STEADY)
        stack.receiver.fail_next(503, 1000)  # the receiver never accepts
        request, _ = new_request(stack)

        answer = stack.submit(request)
        assert answer.status_code == 202, answer.text
        request_id = answer.json()["request_id"]
        wait_until(
            "a first callback attempt",
            lambda: [
                d for d in stack.receiver.deliveries if d.headers.get("webhook-id") == request_id
            ],
        )
        kill(stack.functions["poll_job"])  # down for every attempt the queue has left
        admin = admin_queue(emulator)

        def gone() -> bool:
            tasks = admin.client.list_tasks(parent=queue_path(CALLBACKS))
            return not [t for t in tasks if t.name.rsplit("/", 1)[-1].startswith(request_id)]

        # 3 + 5 attempts, 0.5 s apart: the queue gives up about 3.5 s later.
        wait_until("the queue to give up on the callback task", gone, timeout=10.0)
        admin.close()
        assert (
            len([d for d in stack.receiver.deliveries if d.headers.get("webhook-id") == request_id])
            == 1
        )
        restart_poll_job(stack, graveyard)

        # Nothing is left in the queue: the local stack's sweep (Cloud Scheduler's part)
        # ends the sequence from the record, as a dead letter.
        assert end_of_sequence(stack, request_id, logs=lambda: all_logs(stack, graveyard)) == (
            "dead_letter"
        )


def test_queue_down_at_intake_answers_503_deletes_nothing_and_recovers_at_once(
    make_stack: Callable[..., LocalStack],
) -> None:
    with TasksEmulator(deployed_queues()) as outage:
        stack = make_stack(outage)
        request, delete_path = new_request(stack)
        warm, _ = new_request(stack)
        assert stack.submit(warm).status_code == 202  # the intake's channel is connected
        outage.stop()

        down = stack.submit(request)
        outage.start()  # the same port, empty queues
        started = time.monotonic()
        back = stack.submit(request)
        answered_in = time.monotonic() - started

        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "queue_unavailable"
        assert back.status_code == 202, back.text
        assert answered_in < 1.0  # reconnected promptly
        request_id = back.json()["request_id"]
        assert end_of_sequence(stack, request_id) == "delivered"
        # The 503 sent nothing: the one DELETE is the retry's.
        assert stack.simulator.count("DELETE", delete_path) == 1


def test_a_delete_whose_answer_was_dropped_after_it_took_effect_ends_in_one_deleted_callback(
    emulator: TasksEmulator, make_stack: Callable[..., LocalStack]
) -> None:
    stack = make_stack(emulator)
    request, delete_path = new_request(stack)
    stack.simulator.inject("drop_after", match=("DELETE", delete_path))

    answer = stack.submit(request)

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued"
    request_id = answer.json()["request_id"]
    assert end_of_sequence(stack, request_id) == "delivered"
    [delivery] = accepted(stack, request_id)
    assert delivery.payload["type"] == "upload_track.deleted"
    assert delivery.payload["data"]["status"] == "deleted"
    assert delivery.payload["data"]["track"] is None  # the answer that held it was lost
    upload_id = request["upload_id"]
    assert stack.simulator.tracks(upload_id) == []


def test_no_datocms_call_arrives_before_an_announced_reset(
    emulator: TasksEmulator, make_stack: Callable[..., LocalStack]
) -> None:
    stack = make_stack(emulator)
    request, delete_path = new_request(stack)
    stack.simulator.inject(("429", 1), match=("DELETE", delete_path))

    answer = stack.submit(request)

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued"
    request_id = answer.json()["request_id"]
    assert end_of_sequence(stack, request_id) == "delivered"
    assert stack.simulator.stats()["early_requests"] == 0
    calls = [r for r in stack.simulator.requests if r.path == delete_path]
    assert [r.status for r in calls] == [429, 202]
    assert calls[1].time - calls[0].time >= 1.0
