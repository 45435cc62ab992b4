"""The `local` task queue: Cloud Tasks' semantics in one process, for development.

Each task is delivered as an HTTP `POST` of its body to the target URL at its
scheduled time, by a small pool of threads, with what Cloud Tasks would send:
`Content-Type: application/json`, `User-Agent: Google-Cloud-Tasks` and the
`X-CloudTasks-*` headers. Like Cloud Tasks it

- de-duplicates names per queue, while the task exists and for an hour after
  (here: within this process only);
- retries any non-2xx answer (or none) under the queue's `RetryPolicy`,
  honouring `Retry-After` on 429 and 503, and drops the task after the last
  attempt (the service dead-letters callbacks itself before that happens).

Tasks live in memory: a process that stops loses what it had not delivered.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from adapters.log import Log
from adapters.tasks import STEPS_RETRY, QueueRole, RetryPolicy, Task, callback_retry
from core.settings import Settings

DEDUP_WINDOW = 3600.0


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    task: Task = field(compare=False)
    name: str = field(compare=False)
    eta_wall: float = field(compare=False)
    attempts: int = field(default=0, compare=False)
    executions: int = field(default=0, compare=False)
    previous_response: int | None = field(default=None, compare=False)


class LocalTaskQueue:
    """In-process scheduler implementing the `TaskQueue` port."""

    def __init__(  # noqa: PLR0913 (keyword-only settings and injected test seams)
        self,
        *,
        target_url: str,
        policies: Mapping[QueueRole, RetryPolicy],
        queue_names: Mapping[QueueRole, str],
        log: Log,
        session: requests.Session | None = None,
        workers: int = 8,
        dispatch_deadline: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        dedup_window: float = DEDUP_WINDOW,
    ) -> None:
        self._target = target_url
        self._policies = dict(policies)
        self._names = dict(queue_names)
        self._log = log
        self._session = session or _loopback_session()
        self._deadline = dispatch_deadline
        self._clock = clock
        self._wall = wall
        self._window = dedup_window
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._reserved: dict[tuple[QueueRole, str], float] = {}  # name -> reserved until
        self._pending: set[tuple[QueueRole, str]] = set()
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local-task")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="local-queue", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, log: Log) -> LocalTaskQueue:
        """The queue `POLL_URL`, the queue names and the `CALLBACK_*` settings describe."""
        steps_queue, callbacks_queue = settings.queue_names()
        return cls(
            target_url=settings.poll_url,
            policies={QueueRole.STEPS: STEPS_RETRY, QueueRole.CALLBACKS: callback_retry(settings)},
            queue_names={QueueRole.STEPS: steps_queue, QueueRole.CALLBACKS: callbacks_queue},
            log=log,
        )

    def enqueue(self, task: Task, *, delay: float, name: str) -> bool:
        key = (task.role, name)
        with self._cond:
            now = self._clock()
            if key in self._pending or self._reserved.get(key, -1.0) > now:
                return False
            self._prune(now)
            self._pending.add(key)
            self._reserved[key] = now + self._window
            due = now + max(delay, 0.0)
            entry = _Entry(due, next(self._seq), task, name, self._wall() + max(delay, 0.0))
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # the scheduler sleeps until the earliest task: wake it
                self._cond.notify()
        return True

    def pending(self) -> int:
        """How many tasks wait for delivery or a retry."""
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _prune(self, now: float) -> None:
        if len(self._reserved) > 10_000:
            for key in [k for k, until in self._reserved.items() if until <= now]:
                del self._reserved[key]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0].due > self._clock()):
                    timeout = self._heap[0].due - self._clock() if self._heap else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                entry = heapq.heappop(self._heap)
            self._pool.submit(self._deliver, entry)

    def _headers(self, entry: _Entry) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": self._names[entry.task.role],
            "X-CloudTasks-TaskName": entry.name,
            "X-CloudTasks-TaskRetryCount": str(entry.attempts),
            "X-CloudTasks-TaskExecutionCount": str(entry.executions),
            "X-CloudTasks-TaskETA": f"{entry.eta_wall:.6f}",
        }
        if entry.previous_response is not None:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(entry.previous_response)
            headers["X-CloudTasks-TaskRetryReason"] = "HTTP_ERROR"
        return headers

    def _deliver(self, entry: _Entry) -> None:
        status: int | None = None
        retry_after: float | None = None
        try:
            answer = self._session.post(
                self._target,
                data=entry.task.body,
                headers=self._headers(entry),
                timeout=self._deadline,
                allow_redirects=False,
            )
            status = answer.status_code
            answer.close()
            if status in (429, 503):
                retry_after = _retry_after(answer.headers.get("Retry-After"))
        except requests.RequestException as error:
            self._log.warning(
                "local queue could not deliver a task",
                task=entry.name,
                reason=type(error).__name__,
            )
        key = (entry.task.role, entry.name)
        if status is not None and 200 <= status < 300:
            self._finish(key)
            return
        policy = self._policies[entry.task.role]
        entry.attempts += 1
        entry.executions += status is not None
        entry.previous_response = status
        if not policy.allows(entry.attempts + 1):
            self._log.error(
                "local queue dropped a task after its last attempt",
                task=entry.name,
                attempts=entry.attempts,
            )
            self._finish(key)
            return
        delay = max(policy.backoff(entry.attempts), retry_after or 0.0)
        with self._cond:
            entry.due = self._clock() + delay
            entry.eta_wall = self._wall() + delay
            entry.seq = next(self._seq)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()

    def _finish(self, key: tuple[QueueRole, str]) -> None:
        with self._cond:
            self._pending.discard(key)
            self._reserved[key] = self._clock() + self._window


def _loopback_session() -> requests.Session:
    """A session that does not read proxy settings from the environment on every task
    (the target is the local `poll_job`, never behind a proxy)."""
    session = requests.Session()
    session.trust_env = False
    return session


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None
