"""The faithful Cloud Tasks emulator (`devstack.tasks_emulator`): its queues take the
policy Terraform gives the real ones, and it retries, backs off, drops, runs tasks
concurrently and cuts slow dispatches as Cloud Tasks does.

Driven through the real `google-cloud-tasks` client (`CloudTasksQueue.client`),
delivering to a loopback receiver whose answers each test scripts.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.api_core.exceptions import AlreadyExists, NotFound

from adapters.cloud_tasks import CloudTasksQueue
from adapters.tasks import STEPS_RETRY, RetryPolicy, callback_retry
from core.settings import Settings
from devstack.tasks_emulator import (
    CALLBACK_QUEUE_EXTRA_ATTEMPTS,
    CALLBACKS_MAX_CONCURRENT_DISPATCHES,
    CALLBACKS_MAX_DISPATCHES_PER_SECOND,
    STEPS_MAX_CONCURRENT_DISPATCHES,
    STEPS_MAX_DISPATCHES_PER_SECOND,
    STEPS_QUEUE,
    QueueConfig,
    TasksEmulator,
    service_queues,
)
from tests.terraform.test_terraform_config import MODULE, Module

PROJECT, LOCATION = "p", "l"
WAIT = 10.0


def path(queue: str) -> str:
    return f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue}"


# --- the configuration agrees with Terraform ------------------------------------------


@pytest.fixture(scope="module")
def tf() -> Module:
    return Module.load(MODULE)


def test_queue_rates_concurrency_and_extra_attempts_are_terraforms(tf: Module) -> None:
    steps = tf.resolve(tf.resource("google_cloud_tasks_queue", "steps")["rate_limits"][0])
    callbacks = tf.resolve(tf.resource("google_cloud_tasks_queue", "callbacks")["rate_limits"][0])

    assert steps["max_concurrent_dispatches"] == STEPS_MAX_CONCURRENT_DISPATCHES
    assert steps["max_dispatches_per_second"] == STEPS_MAX_DISPATCHES_PER_SECOND
    assert callbacks["max_concurrent_dispatches"] == CALLBACKS_MAX_CONCURRENT_DISPATCHES
    assert callbacks["max_dispatches_per_second"] == CALLBACKS_MAX_DISPATCHES_PER_SECOND
    assert tf.locals["callback_queue_extra_attempts"] == CALLBACK_QUEUE_EXTRA_ATTEMPTS


def test_service_queues_are_the_deployed_steps_and_callbacks_queues() -> None:
    settings = Settings.from_env(
        {
            "TASKS_PROJECT": PROJECT,
            "TASKS_LOCATION": LOCATION,
            "TASKS_QUEUE": "s",
            "CALLBACK_QUEUE": "c",
            "CALLBACK_MAX_ATTEMPTS": "4",
        }
    )

    queues = service_queues(settings)

    assert queues[path("s")] == STEPS_QUEUE
    assert queues[path("s")].retry == STEPS_RETRY
    told = callback_retry(settings)
    assert queues[path("c")].retry == dataclasses.replace(told, max_attempts=4 + 5)


# --- behaviour --------------------------------------------------------------------------


class Target:
    """A loopback receiver: records each delivery; answers from `script` (default 200),
    after `hold` seconds when a task's name is in `slow`."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, str]]] = []
        self.script: dict[str, list[int]] = {}
        self.slow: dict[str, float] = {}
        self.lock = threading.Condition()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                name = headers.get("x-cloudtasks-taskname", "")
                with target.lock:
                    target.seen.append((time.monotonic(), headers))
                    target.lock.notify_all()
                    answers = target.script.get(name) or [200]
                    status = answers.pop(0) if len(answers) > 1 else answers[0]
                    hold = target.slow.get(name, 0.0)
                time.sleep(hold)  # a slow handler, on purpose
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, name: str) -> list[tuple[float, dict[str, str]]]:
        with self.lock:
            return [s for s in self.seen if s[1].get("x-cloudtasks-taskname") == name]

    def wait(
        self, name: str, count: int, timeout: float = WAIT
    ) -> list[tuple[float, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.of(name)) < count and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return self.of(name)


FAST = RetryPolicy(max_attempts=3, min_backoff=0.2, max_backoff=0.8, max_doublings=2)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    running = Target()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    queues = {
        path("fast"): QueueConfig(retry=FAST, max_concurrent_dispatches=2),
        path("wide"): QueueConfig(retry=FAST, max_concurrent_dispatches=3),
        path("short"): QueueConfig(retry=FAST),
    }
    with TasksEmulator(queues, dedup_window=1.0, max_dispatch_deadline=0.5) as running:
        yield running


@pytest.fixture(scope="module")
def client(emulator: TasksEmulator) -> Iterator[Any]:
    queue = CloudTasksQueue(
        project=PROJECT,
        location=LOCATION,
        steps_queue="fast",
        callbacks_queue="wide",
        target_url="http://127.0.0.1:9/",
        service_account=None,
        emulator_host=emulator.host,
    )
    yield queue.client
    queue.close()


def create(client: Any, queue: str, name: str, url: str) -> Any:
    return client.create_task(
        parent=path(queue),
        task={
            "name": f"{path(queue)}/tasks/{name}",
            "http_request": {"url": url, "http_method": "POST", "body": b"{}"},
        },
    )


def test_failures_back_off_as_the_policy_says_and_stop_at_max_attempts(
    client: Any, target: Target
) -> None:
    target.script["t-drop"] = [503]

    create(client, "fast", "t-drop", target.url)
    seen = target.wait("t-drop", 3)
    time.sleep(FAST.backoff(3) + 0.3)  # where a 4th attempt would come

    assert len(target.of("t-drop")) == 3 == FAST.max_attempts
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    for retry, gap in enumerate(gaps, start=1):
        assert FAST.backoff(retry) - 0.05 <= gap < FAST.backoff(retry) + 0.5
    assert [h["x-cloudtasks-taskretrycount"] for _, h in seen] == ["0", "1", "2"]
    assert [h.get("x-cloudtasks-taskpreviousresponse") for _, h in seen] == [None, "503", "503"]
    with pytest.raises(NotFound):
        client.get_task(name=f"{path('fast')}/tasks/t-drop")


def test_a_name_is_refused_while_its_task_lives_and_for_the_window_after(
    client: Any, target: Target
) -> None:
    target.script["t-name"] = [500, 200]

    create(client, "fast", "t-name", target.url)
    with pytest.raises(AlreadyExists):
        create(client, "fast", "t-name", target.url)  # still retrying
    target.wait("t-name", 2)
    with pytest.raises(AlreadyExists):
        create(client, "fast", "t-name", target.url)  # ended, inside the window
    time.sleep(1.1)  # this emulator's window: 1 s
    create(client, "fast", "t-name", target.url)

    assert len(target.wait("t-name", 3)) == 3


def test_a_hanging_task_holds_one_slot_and_is_cut_at_the_dispatch_deadline(
    client: Any, target: Target
) -> None:
    target.slow["t-hang"] = 3.0

    started = time.monotonic()
    create(client, "wide", "t-hang", target.url)
    target.wait("t-hang", 1)
    create(client, "wide", "t-quick", target.url)
    [(quick_at, _)] = target.wait("t-quick", 1)
    hang = target.wait("t-hang", 2)

    assert quick_at - started < 1.0  # not behind the hanging one
    # Cut after 0.5 s, retried after the first backoff (0.2 s).
    assert 0.6 <= hang[1][0] - hang[0][0] < 1.5
    assert hang[1][1]["x-cloudtasks-taskretryreason"] == "DEADLINE_EXCEEDED"
    assert "x-cloudtasks-taskpreviousresponse" not in hang[1][1]
    client.delete_task(name=f"{path('wide')}/tasks/t-hang")


def test_no_more_than_max_concurrent_dispatches_run_at_once(client: Any, target: Target) -> None:
    names = [f"t-conc-{n}" for n in range(4)]
    for name in names:
        target.slow[name] = 0.3

    for name in names:
        create(client, "fast", name, target.url)
    starts = sorted(target.wait(name, 1)[0][0] for name in names)

    # Two slots: the third and fourth start only when the first two answered.
    assert starts[1] - starts[0] < 0.2
    assert starts[2] - starts[0] >= 0.25


def test_get_and_delete_task(client: Any, target: Target) -> None:
    name = f"{path('short')}/tasks/t-later"
    client.create_task(
        parent=path("short"),
        task={
            "name": name,
            "http_request": {"url": target.url, "body": b"{}"},
            "schedule_time": datetime.now(UTC) + timedelta(seconds=60),
        },
    )

    assert client.get_task(name=name).name == name
    client.delete_task(name=name)
    with pytest.raises(NotFound):
        client.get_task(name=name)
    with pytest.raises(AlreadyExists):
        client.create_task(
            parent=path("short"), task={"name": name, "http_request": {"url": target.url}}
        )
