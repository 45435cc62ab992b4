"""`CloudTasksQueue` with the real `google-cloud-tasks` client, over gRPC, against the
Cloud Tasks emulator (`devstack.tasks_emulator`), delivering to a loopback receiver.

The emulator proves the wire format and the real client's code path, and (made
faithful by the wrapper) refuses a task name in use or used within the hour. It
sends no OIDC token: `test_cloud_tasks.py` covers that with a fake client. Its
retry policy, concurrency and dispatch deadline are tested in
`tests/devstack/test_tasks_emulator.py`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.cloud_tasks import CloudTasksQueue
from adapters.tasks import QueueRole, Task
from core.errors import QueueUnavailable
from devstack.tasks_emulator import TasksEmulator

PROJECT = "proj"
LOCATION = "europe-west1"
ACCOUNT = "tasks-invoker@proj.iam.gserviceaccount.com"
QUEUES = ("steps", "callbacks", "held-steps", "held-callbacks")
WAIT = 10.0  # upper bound for any delivery; a delivery normally takes ~0.1-0.3 s


def queue_path(queue: str) -> str:
    return f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue}"


@dataclass(frozen=True)
class Delivery:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: datetime


class Receiver:
    """A loopback HTTP server that records every request and answers 200.

    A task name in `fail_once` gets one 500 first.
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_once: set[str] = set()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                task_name = headers.get("x-cloudtasks-taskname", "")
                with receiver._changed:
                    receiver.deliveries.append(
                        Delivery("POST", self.path, headers, body, datetime.now(UTC))
                    )
                    failing = task_name in receiver.fail_once
                    receiver.fail_once.discard(task_name)
                    receiver._changed.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/poll_job"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def for_task(self, name: str) -> list[Delivery]:
        with self._changed:
            return [d for d in self.deliveries if d.headers.get("x-cloudtasks-taskname") == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = WAIT) -> list[Delivery]:
        """The deliveries of task `name` once there are `count`, or what came by `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [
                    d for d in self.deliveries if d.headers.get("x-cloudtasks-taskname") == name
                ]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator([queue_path(q) for q in QUEUES]) as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def make_queue(
    emulator: TasksEmulator, receiver: Receiver
) -> Iterator[Callable[..., CloudTasksQueue]]:
    made: list[CloudTasksQueue] = []

    def make(**overrides: Any) -> CloudTasksQueue:
        options: dict[str, Any] = {
            "project": PROJECT,
            "location": LOCATION,
            "steps_queue": "steps",
            "callbacks_queue": "callbacks",
            "target_url": receiver.url,
            "service_account": None,
            "emulator_host": emulator.host,
            **overrides,
        }
        queue = CloudTasksQueue(**options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()


@pytest.fixture(scope="module")
def held(emulator: TasksEmulator) -> Iterator[None]:
    """Pause the held-* queues, so that their tasks stay listed (nothing is dispatched)."""
    queue = CloudTasksQueue(
        project=PROJECT,
        location=LOCATION,
        steps_queue="held-steps",
        callbacks_queue="held-callbacks",
        target_url="http://127.0.0.1:9/",
        service_account=None,
        emulator_host=emulator.host,
    )
    for name in ("held-steps", "held-callbacks"):
        queue.client.pause_queue(name=queue_path(name))
    yield
    queue.close()


def list_tasks(queue: CloudTasksQueue, name: str) -> dict[str, Any]:
    return {task.name: task for task in queue.client.list_tasks(parent=queue_path(name))}


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on `port`."""
    found: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_emulator_listens_on_loopback_only(emulator: TasksEmulator) -> None:
    host, _, port = emulator.host.partition(":")

    with socket.create_connection((host, int(port)), timeout=2):
        pass

    assert host == "127.0.0.1"
    # 127.0.0.1 as IPv4 or IPv4-mapped IPv6 (gRPC's choice); never 0.0.0.0 or [::].
    addresses = listening_addresses(int(port))
    assert addresses
    assert addresses <= {"0100007F", "0000000000000000FFFF00000100007F"}
    assert emulator.queues == tuple(queue_path(q) for q in QUEUES)


def test_task_is_posted_to_the_target_with_its_body_and_cloud_tasks_headers(
    make_queue: Callable[..., CloudTasksQueue], receiver: Receiver
) -> None:
    body = b'{"kind":"poll","job_id":"4235","n":1,"text":"\xc3\xa9"}'

    created = make_queue().enqueue(Task(QueueRole.STEPS, body), delay=0, name="wire-poll-1")
    [delivery] = receiver.wait_for("wire-poll-1")

    assert created is True
    assert delivery.method == "POST"
    assert delivery.path == "/poll_job"
    assert delivery.body == body
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["x-cloudtasks-taskname"] == "wire-poll-1"
    assert delivery.headers["x-cloudtasks-taskretrycount"] == "0"
    assert delivery.headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert delivery.headers["x-cloudtasks-queuename"] == "steps"
    assert delivery.headers["user-agent"] == "Google-Cloud-Tasks"
    assert "x-cloudtasks-taskpreviousresponse" not in delivery.headers
    assert "authorization" not in delivery.headers


def test_callback_tasks_are_delivered_from_the_callbacks_queue(
    make_queue: Callable[..., CloudTasksQueue], receiver: Receiver
) -> None:
    make_queue().enqueue(Task(QueueRole.CALLBACKS, b"{}"), delay=0, name="wire-callback-1")

    [delivery] = receiver.wait_for("wire-callback-1")

    assert delivery.headers["x-cloudtasks-queuename"] == "callbacks"
    assert delivery.body == b"{}"


def test_a_delayed_task_is_not_dispatched_before_its_schedule_time(
    make_queue: Callable[..., CloudTasksQueue], receiver: Receiver
) -> None:
    before = datetime.now(UTC)

    make_queue().enqueue(Task(QueueRole.STEPS, b"{}"), delay=1.0, name="wire-delayed-1")
    early = receiver.wait_for("wire-delayed-1", timeout=0.7)
    [delivery] = receiver.wait_for("wire-delayed-1")

    due = before + timedelta(seconds=1.0)
    assert early == []
    assert delivery.received_at >= due
    assert delivery.received_at < due + timedelta(seconds=WAIT)
    eta = datetime.fromtimestamp(float(delivery.headers["x-cloudtasks-tasketa"]), UTC)
    assert due <= eta < due + timedelta(seconds=1)


def test_created_tasks_read_back_with_full_names_schedule_times_and_http_requests(
    make_queue: Callable[..., CloudTasksQueue], receiver: Receiver, held: None
) -> None:
    now = datetime(2031, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    queue = make_queue(
        steps_queue="held-steps",
        callbacks_queue="held-callbacks",
        service_account=ACCOUNT,
        dispatch_deadline=90.0,
        clock=lambda: now,
    )
    step_body, callback_body = b'{"kind":"poll"}', b'{"kind":"callback"}'

    queue.enqueue(Task(QueueRole.STEPS, step_body), delay=30, name="held-poll-1")
    queue.enqueue(Task(QueueRole.CALLBACKS, callback_body), delay=0.5, name="held-callback-1")
    steps = list_tasks(queue, "held-steps")
    callbacks = list_tasks(queue, "held-callbacks")

    step = steps[queue_path("held-steps") + "/tasks/held-poll-1"]
    callback = callbacks[queue_path("held-callbacks") + "/tasks/held-callback-1"]
    assert step.schedule_time == now + timedelta(seconds=30)
    assert callback.schedule_time == now + timedelta(seconds=0.5)
    for task, body in ((step, step_body), (callback, callback_body)):
        assert task.http_request.url == receiver.url
        assert task.http_request.http_method.name == "POST"
        assert dict(task.http_request.headers) == {"Content-Type": "application/json"}
        assert task.http_request.body == body
        assert task.http_request.oidc_token.service_account_email == ACCOUNT
        assert task.http_request.oidc_token.audience == receiver.url
        assert task.dispatch_deadline == timedelta(seconds=90)
    assert receiver.for_task("held-poll-1") == []


def test_tasks_without_a_service_account_carry_no_oidc_token(
    make_queue: Callable[..., CloudTasksQueue], held: None
) -> None:
    queue = make_queue(steps_queue="held-steps", callbacks_queue="held-callbacks")

    queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="held-no-oidc-1")

    task = list_tasks(queue, "held-steps")[queue_path("held-steps") + "/tasks/held-no-oidc-1"]
    assert "oidc_token" not in task.http_request
    assert "oauth_token" not in task.http_request


def test_a_second_task_of_the_same_name_is_not_created(
    make_queue: Callable[..., CloudTasksQueue], held: None
) -> None:
    queue = make_queue(steps_queue="held-steps", callbacks_queue="held-callbacks")
    task = Task(QueueRole.STEPS, b"{}")

    first = queue.enqueue(task, delay=0, name="held-twice-1")
    second = queue.enqueue(task, delay=0, name="held-twice-1")

    names = [t.name for t in queue.client.list_tasks(parent=queue_path("held-steps"))]
    assert (first, second) == (True, False)
    assert names.count(queue_path("held-steps") + "/tasks/held-twice-1") == 1


def test_a_name_stays_refused_after_its_task_was_delivered(
    make_queue: Callable[..., CloudTasksQueue], receiver: Receiver
) -> None:
    queue = make_queue()
    task = Task(QueueRole.STEPS, b"{}")

    first = queue.enqueue(task, delay=0, name="wire-once-1")
    receiver.wait_for("wire-once-1")
    again = queue.enqueue(task, delay=0, name="wire-once-1")

    assert (first, again) == (True, False)
    assert len(receiver.wait_for("wire-once-1", count=2, timeout=0.5)) == 1


def test_a_non_2xx_answer_is_redelivered_with_retry_count_1(
    make_queue: Callable[..., CloudTasksQueue], receiver: Receiver
) -> None:
    receiver.fail_once.add("wire-retry-1")

    make_queue().enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="wire-retry-1")
    first, second = receiver.wait_for("wire-retry-1", count=2)

    assert first.headers["x-cloudtasks-taskretrycount"] == "0"
    assert second.headers["x-cloudtasks-taskretrycount"] == "1"
    assert second.headers["x-cloudtasks-taskexecutioncount"] == "1"
    assert second.headers["x-cloudtasks-taskpreviousresponse"] == "500"
    assert second.headers["x-cloudtasks-taskretryreason"] == "HTTP_ERROR"
    assert second.body == first.body


def test_a_queue_the_emulator_lacks_raises_queue_unavailable(
    make_queue: Callable[..., CloudTasksQueue],
) -> None:
    queue = make_queue(steps_queue="missing")

    with pytest.raises(QueueUnavailable, match=r"queue missing \(FailedPrecondition, 1 attempt\)"):
        queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="wire-missing-1")


def test_an_emulator_that_does_not_listen_raises_queue_unavailable_after_retries(
    make_queue: Callable[..., CloudTasksQueue],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sleeps: list[float] = []
    queue = make_queue(emulator_host=f"127.0.0.1:{closed_port}", sleep=sleeps.append)

    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match=r"ServiceUnavailable, 3 attempts"):
        queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="wire-down-1")

    assert sleeps == [0.1, 0.4]
    assert time.monotonic() - started < 5


def test_the_first_enqueue_after_the_queue_came_back_succeeds(receiver: Receiver) -> None:
    outage = TasksEmulator([queue_path("steps")])
    outage.start()
    queue = CloudTasksQueue(
        project=PROJECT,
        location=LOCATION,
        steps_queue="steps",
        callbacks_queue="steps",
        target_url=receiver.url,
        service_account=None,
        emulator_host=outage.host,
    )
    try:
        assert queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="back-1") is True
        outage.stop()
        for n in range(2):  # the channel sees the outage and starts backing off
            with pytest.raises(QueueUnavailable):
                queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name=f"back-down-{n}")
        outage.start()  # the same port

        started = time.monotonic()
        created = queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="back-2")

        assert created is True
        assert time.monotonic() - started < 1.0
        assert receiver.wait_for("back-2")
    finally:
        queue.close()
        outage.stop()
