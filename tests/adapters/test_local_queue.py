"""The `local` task queue against a loopback HTTP server: delivery, names, retries, headers.

Delays are tiny; nothing asserts how long anything took. Backoffs and
`Retry-After` are checked through `X-CloudTasks-TaskETA`, which the queue
computes from an injected wall clock.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from adapters.local_queue import LocalTaskQueue
from adapters.log import Log
from adapters.tasks import QueueRole, RetryPolicy, Task

WALL = 1_800_000_000.0
FAST = RetryPolicy(max_attempts=-1, min_backoff=0.01, max_backoff=0.05, max_doublings=2)
WAIT = 10.0


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Target:
    """A loopback server that records every delivery and answers from a script."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        with self.cond:
            self.received.append(Received(body, headers))
            self.cond.notify_all()
            return self.answers.pop(0) if self.answers else (200, {})

    def wait_for(self, count: int) -> list[Received]:
        deadline = time.monotonic() + WAIT
        with self.cond:
            while len(self.received) < count and time.monotonic() < deadline:
                self.cond.wait(0.05)
            return list(self.received)


@pytest.fixture
def target() -> Iterator[Target]:
    state = Target()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, extra = state.answer(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def make_queue(
    url: str, *, policy: RetryPolicy = FAST, logs: io.StringIO | None = None, **options: Any
) -> LocalTaskQueue:
    return LocalTaskQueue(
        target_url=url,
        policies={QueueRole.STEPS: policy, QueueRole.CALLBACKS: policy},
        queue_names={QueueRole.STEPS: "steps", QueueRole.CALLBACKS: "callbacks"},
        log=Log(logs or io.StringIO()),
        wall=lambda: WALL,
        **options,
    )


@pytest.fixture
def queues() -> Iterator[list[LocalTaskQueue]]:
    made: list[LocalTaskQueue] = []
    yield made
    for queue in made:
        queue.close()


def wait_idle(queue: LocalTaskQueue) -> None:
    deadline = time.monotonic() + WAIT
    while queue.pending() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_task_is_posted_with_the_headers_cloud_tasks_sends(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    queue = make_queue(target.url)
    queues.append(queue)
    assert queue.enqueue(Task(QueueRole.STEPS, b'{"a":1}'), delay=0.02, name="req_1-2")
    [delivery] = target.wait_for(1)
    assert delivery.body == b'{"a":1}'
    headers = delivery.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Google-Cloud-Tasks"
    assert headers["x-cloudtasks-queuename"] == "steps"
    assert headers["x-cloudtasks-taskname"] == "req_1-2"
    assert headers["x-cloudtasks-taskretrycount"] == "0"
    assert headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(headers["x-cloudtasks-tasketa"]) == pytest.approx(WALL + 0.02)
    assert "x-cloudtasks-taskpreviousresponse" not in headers


def test_each_role_goes_to_its_own_queue_name(target: Target, queues: list[LocalTaskQueue]) -> None:
    queue = make_queue(target.url)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.CALLBACKS, b"{}"), delay=0, name="req_1-cb")
    [delivery] = target.wait_for(1)
    assert delivery.headers["x-cloudtasks-queuename"] == "callbacks"


def test_a_name_is_taken_once_while_pending_and_after_delivery(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    queue = make_queue(target.url)
    queues.append(queue)
    task = Task(QueueRole.STEPS, b"{}")
    assert queue.enqueue(task, delay=0.05, name="same")
    assert not queue.enqueue(task, delay=0, name="same")
    target.wait_for(1)
    wait_idle(queue)
    assert not queue.enqueue(task, delay=0, name="same")
    assert queue.enqueue(Task(QueueRole.CALLBACKS, b"{}"), delay=0, name="same")  # other queue
    assert len(target.wait_for(2)) == 2
    wait_idle(queue)
    assert len(target.received) == 2


def test_a_name_is_free_again_after_the_deduplication_window(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    now = [100.0]
    queue = make_queue(target.url, clock=lambda: now[0], dedup_window=60.0)
    queues.append(queue)
    task = Task(QueueRole.STEPS, b"{}")
    assert queue.enqueue(task, delay=0, name="n")
    target.wait_for(1)
    wait_idle(queue)
    now[0] += 59.0
    assert not queue.enqueue(task, delay=0, name="n")
    now[0] += 2.0
    assert queue.enqueue(task, delay=0, name="n")
    assert len(target.wait_for(2)) == 2


def test_a_failed_delivery_is_retried_with_growing_backoff_and_retry_headers(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    target.answers = [(500, {}), (502, {}), (500, {})]
    queue = make_queue(target.url)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="retried")
    deliveries = target.wait_for(4)
    assert len(deliveries) == 4
    counts = [d.headers["x-cloudtasks-taskretrycount"] for d in deliveries]
    assert counts == ["0", "1", "2", "3"]
    assert [d.headers["x-cloudtasks-taskexecutioncount"] for d in deliveries] == counts
    previous = [d.headers.get("x-cloudtasks-taskpreviousresponse") for d in deliveries]
    assert previous == [None, "500", "502", "500"]
    assert deliveries[1].headers["x-cloudtasks-taskretryreason"] == "HTTP_ERROR"
    etas = [float(d.headers["x-cloudtasks-tasketa"]) - WALL for d in deliveries[1:]]
    assert etas == pytest.approx([FAST.backoff(1), FAST.backoff(2), FAST.backoff(3)])
    wait_idle(queue)
    assert queue.pending() == 0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_and_503_delays_the_retry(
    target: Target, queues: list[LocalTaskQueue], status: int
) -> None:
    target.answers = [(status, {"Retry-After": "0.3"})]
    queue = make_queue(target.url)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="later")
    _, retry = target.wait_for(2)
    assert float(retry.headers["x-cloudtasks-tasketa"]) == pytest.approx(WALL + 0.3)


@pytest.mark.parametrize(
    ("status", "value"), [(500, "0.3"), (503, "soon"), (503, "-1"), (429, "99999")]
)
def test_retry_after_is_ignored_when_not_429_or_503_or_not_a_sane_number(
    target: Target, queues: list[LocalTaskQueue], status: int, value: str
) -> None:
    target.answers = [(status, {"Retry-After": value})]
    queue = make_queue(target.url)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="x")
    _, retry = target.wait_for(2)
    assert float(retry.headers["x-cloudtasks-tasketa"]) == pytest.approx(WALL + FAST.backoff(1))


def test_a_task_is_dropped_and_logged_after_its_last_attempt(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    target.answers = [(500, {})] * 10
    logs = io.StringIO()
    policy = RetryPolicy(max_attempts=2, min_backoff=0.01, max_backoff=0.01)
    queue = make_queue(target.url, policy=policy, logs=logs)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.CALLBACKS, b"{}"), delay=0, name="doomed")
    target.wait_for(2)
    wait_idle(queue)
    assert len(target.received) == 2
    assert queue.pending() == 0
    assert "dropped a task after its last attempt" in logs.getvalue()
    assert not queue.enqueue(Task(QueueRole.CALLBACKS, b"{}"), delay=0, name="doomed")


def test_an_unreachable_target_counts_attempts_but_not_executions(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    policy = RetryPolicy(max_attempts=2, min_backoff=0.01, max_backoff=0.01)
    logs = io.StringIO()
    queue = make_queue(f"http://127.0.0.1:{closed_port}/", policy=policy, logs=logs)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=0, name="nowhere")
    wait_idle(queue)
    assert queue.pending() == 0
    assert "could not deliver a task" in logs.getvalue()
    assert "dropped a task after its last attempt" in logs.getvalue()


def test_tasks_are_delivered_in_the_order_they_are_due(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    queue = make_queue(target.url, workers=1)
    queues.append(queue)
    queue.enqueue(Task(QueueRole.STEPS, b"late"), delay=0.3, name="late")
    queue.enqueue(Task(QueueRole.STEPS, b"early"), delay=0.1, name="early")
    deliveries = target.wait_for(2)
    assert [d.body for d in deliveries] == [b"early", b"late"]


def test_a_closed_queue_stops_its_scheduler_and_delivers_nothing_more(
    target: Target, queues: list[LocalTaskQueue]
) -> None:
    now = [100.0]
    queue = make_queue(target.url, clock=lambda: now[0])
    queue.enqueue(Task(QueueRole.STEPS, b"{}"), delay=5.0, name="never")
    queue.close()
    queue._thread.join(WAIT)
    assert not queue._thread.is_alive()
    now[0] += 10.0  # the task is due now, but nothing is left to deliver it
    assert target.received == []
