"""The Cloud Tasks emulator (`gcloud-tasks-emulator` 0.6.2), made faithful where the
service depends on it, and served on loopback only.

`TasksEmulator` (parent side) runs `python -m devstack.tasks_emulator` (child side) with
the given queues and their `QueueConfig` (the values Terraform gives the real queues;
`service_queues(settings)` builds the service's two). The child keeps the package's
queue bookkeeping but replaces its task state and dispatcher with `FaithfulQueues`.
Not modelled: OIDC tokens, `max_retry_duration`, the dispatch-rate burst bucket,
`UpdateQueue`, persistence across a restart, duplicate deliveries of one task, App
Engine targets, schedule times more than 30 days ahead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import importlib
import itertools
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from adapters.tasks import STEPS_RETRY, RetryPolicy, callback_retry
from core.settings import Settings

LOOPBACK = "127.0.0.1"
_READY_PREFIX = "tasks-emulator-port="
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_QUEUE_PATH = re.compile(r"^projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]{1,100}$")

#: How long Cloud Tasks refuses a task name after the task ended (about an hour).
DEDUP_WINDOW = 3600.0
#: Cloud Tasks' default `dispatch_deadline` for HTTP targets.
DEFAULT_DISPATCH_DEADLINE = 600.0
#: What Terraform gives the queues beside their retry policy (`terraform/main.tf`:
#: `queue_concurrency`, `callback_queue_extra_attempts`; `queues.tf`: the rates, the
#: steps rate being `var.datocms_requests_per_second`'s default).
STEPS_MAX_CONCURRENT_DISPATCHES = 10
STEPS_MAX_DISPATCHES_PER_SECOND = 15.0
CALLBACKS_MAX_CONCURRENT_DISPATCHES = 20
CALLBACKS_MAX_DISPATCHES_PER_SECOND = 50.0
CALLBACK_QUEUE_EXTRA_ATTEMPTS = 5


#: Cloud Tasks' default retry_config (a queue created without one).
CLOUD_TASKS_DEFAULT_RETRY = RetryPolicy(max_attempts=100, min_backoff=0.1, max_backoff=3600.0)


@dataclass(frozen=True)
class QueueConfig:
    """One queue's `retry_config` and `rate_limits`; by default Cloud Tasks' defaults."""

    retry: RetryPolicy = CLOUD_TASKS_DEFAULT_RETRY
    max_concurrent_dispatches: int = 1000
    max_dispatches_per_second: float = 500.0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "retry": dataclasses.asdict(self.retry)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueueConfig:
        return cls(
            retry=RetryPolicy(**data["retry"]),
            max_concurrent_dispatches=int(data["max_concurrent_dispatches"]),
            max_dispatches_per_second=float(data["max_dispatches_per_second"]),
        )


#: The steps queue, as Terraform creates it.
STEPS_QUEUE = QueueConfig(
    retry=STEPS_RETRY,
    max_concurrent_dispatches=STEPS_MAX_CONCURRENT_DISPATCHES,
    max_dispatches_per_second=STEPS_MAX_DISPATCHES_PER_SECOND,
)


def callbacks_queue(settings: Settings) -> QueueConfig:
    """The callbacks queue, as Terraform creates it for functions given `settings`."""
    told = callback_retry(settings)
    attempts = -1 if told.max_attempts < 0 else told.max_attempts + CALLBACK_QUEUE_EXTRA_ATTEMPTS
    return QueueConfig(
        retry=dataclasses.replace(told, max_attempts=attempts),
        max_concurrent_dispatches=CALLBACKS_MAX_CONCURRENT_DISPATCHES,
        max_dispatches_per_second=CALLBACKS_MAX_DISPATCHES_PER_SECOND,
    )


def service_queues(
    settings: Settings, *, steps: QueueConfig = STEPS_QUEUE
) -> dict[str, QueueConfig]:
    """Both queues the service uses (`TASKS_*`, `CALLBACK_QUEUE`), configured as deployed.

    `steps` lets a test shorten the steps queue's backoff (its production minimum is 1 s).
    """
    project, location = settings.cloud_tasks_location()
    steps_name, callbacks_name = settings.queue_names()
    prefix = f"projects/{project}/locations/{location}/queues/"
    if steps_name == callbacks_name:
        return {prefix + steps_name: steps}
    return {prefix + steps_name: steps, prefix + callbacks_name: callbacks_queue(settings)}


def _check_queues(queues: Sequence[str] | Mapping[str, QueueConfig]) -> dict[str, QueueConfig]:
    if isinstance(queues, str):
        raise TypeError("queues must be a sequence of queue paths, not one string")
    if not queues:
        raise ValueError("at least one queue is needed")
    configs = (
        dict(queues) if isinstance(queues, Mapping) else {path: QueueConfig() for path in queues}
    )
    for path, config in configs.items():
        if not _QUEUE_PATH.match(path):
            raise ValueError(f"not a queue path (projects/P/locations/L/queues/Q): {path!r}")
        if config.max_concurrent_dispatches < 1 or config.max_dispatches_per_second <= 0:
            raise ValueError(f"{path}: concurrency and rate must be positive")
    return configs


class TasksEmulator:
    """A faithful Cloud Tasks emulator child process on 127.0.0.1, with the given queues.

    >>> with TasksEmulator({"projects/p/locations/l/queues/steps": STEPS_QUEUE}) as emulator:
    ...     emulator.host  # "127.0.0.1:PORT"
    """

    def __init__(
        self,
        queues: Sequence[str] | Mapping[str, QueueConfig],
        *,
        port: int = 0,
        dedup_window: float = DEDUP_WINDOW,
        max_dispatch_deadline: float | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        log_level: str = "WARNING",
    ) -> None:
        self.configs = _check_queues(queues)
        self.queues = tuple(self.configs)
        self.requested_port = port
        self.dedup_window = dedup_window
        self.max_dispatch_deadline = max_dispatch_deadline
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the tasks emulator is not running")
        return self._port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the value for `CLOUD_TASKS_EMULATOR_HOST`."""
        return f"{LOOPBACK}:{self.port}"

    def __enter__(self) -> TasksEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the child; a restart after `stop()` reuses the port it had (empty queues)."""
        if self._process is not None:
            raise RuntimeError("the tasks emulator is already running")
        command = [
            sys.executable,
            # The emulator package calls datetime.utcnow() (deprecated in 3.12).
            "-W",
            "ignore::DeprecationWarning",
            "-m",
            "devstack.tasks_emulator",
            "--port",
            str(self.requested_port),
            "--dedup-window",
            str(self.dedup_window),
            "--log-level",
            self.log_level,
            "--exit-on-stdin-eof",
        ]
        if self.max_dispatch_deadline is not None:
            command += ["--max-dispatch-deadline", str(self.max_dispatch_deadline)]
        for path, config in self.configs.items():
            command += ["--queue", f"{path}={json.dumps(config.to_json())}"]
        self._process = subprocess.Popen(
            command,
            cwd=_PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + self.startup_timeout
            self._port = self._read_port(deadline)
            self.requested_port = self._port
            self._wait_until_answering(deadline)
        except BaseException:
            self.stop()
            raise

    def _read_port(self, deadline: float) -> int:
        process = self._process
        if process is None or process.stdout is None:
            raise RuntimeError("the tasks emulator was not started")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the tasks emulator did not report its port in time")
            readable, _, _ = select.select([process.stdout], [], [], remaining)
            if not readable:
                continue
            line = process.stdout.readline().decode("utf-8", "replace").strip()
            if not line:
                code = process.wait(timeout=self.stop_timeout)
                raise RuntimeError(
                    f"the tasks emulator exited (code {code}) before it was ready; "
                    "is gcloud-tasks-emulator installed? (see its stderr above)"
                )
            if line.startswith(_READY_PREFIX):
                return int(line[len(_READY_PREFIX) :])

    def _wait_until_answering(self, deadline: float) -> None:
        while True:
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("the tasks emulator's port does not answer") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the emulator (SIGTERM), then kill it if it does not exit in time."""
        process, self._process, self._port = self._process, None, None
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


# --- child side: runs inside the emulator's process ------------------------------------

logger = logging.getLogger("gcloud-tasks-emulator")


@dataclass(order=True)
class _Entry:
    due: float  # time.monotonic()
    seq: int
    task: Any = field(compare=False)  # google.cloud.tasks_v2.Task
    responses: int = field(default=0, compare=False)
    previous: str | None = field(default=None, compare=False)  # status, or None
    reason: str | None = field(default=None, compare=False)
    deleted: bool = field(default=False, compare=False)
    running: bool = field(default=False, compare=False)


class _Queue:
    """One queue's tasks and dispatcher: a heap of due times, a bounded pool, a rate."""

    def __init__(self, owner: FaithfulQueues, path: str, config: QueueConfig) -> None:
        self.owner = owner
        self.path = path
        self.short_name = path.rsplit("/", 1)[-1]
        self.config = config
        self.entries: dict[str, _Entry] = {}  # full task name -> entry, until it ends
        self.heap: list[_Entry] = []
        self.in_flight = 0
        self.next_start = 0.0
        self.pool = ThreadPoolExecutor(
            max_workers=config.max_concurrent_dispatches, thread_name_prefix=self.short_name
        )


class FaithfulQueues:
    """The emulator's task state and dispatcher, with Cloud Tasks' semantics.

    A task name in use, or used within `dedup_window` seconds after its task ended, is
    `ALREADY_EXISTS`. A non-2xx, no answer, or an answer past the dispatch deadline is an
    attempt, retried after `RetryPolicy.backoff(n)` (at least `Retry-After` on 429 and
    503) and dropped after `max_attempts`. Each queue dispatches at most
    `max_concurrent_dispatches` at once, `max_dispatches_per_second` per second, with
    the `X-CloudTasks-*` headers Cloud Tasks sends.

    Plugs into `gcloud_tasks_emulator.server.Greeter` in place of its `QueueState`:
    the queue bookkeeping is the package's (`base`), the tasks are ours.
    """

    def __init__(
        self,
        base: Any,
        configs: Mapping[str, QueueConfig],
        *,
        dedup_window: float = DEDUP_WINDOW,
        max_dispatch_deadline: float | None = None,
    ) -> None:
        self._base = base
        tasks_v2 = importlib.import_module("google.cloud.tasks_v2")
        self._queue_cls, self._post_method = tasks_v2.Queue, tasks_v2.HttpMethod.POST
        self._exceptions = importlib.import_module("google.api_core.exceptions")
        self._dedup_window = dedup_window
        self._max_deadline = max_dispatch_deadline
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._reserved: dict[str, float] = {}  # ended task name -> refused until (monotonic)
        self._closed = False
        self._queues: dict[str, _Queue] = {}
        for path, config in configs.items():
            base.create_queue(path.rsplit("/", 2)[0], self._queue_cls(name=path))
            self._queues[path] = _Queue(self, path, config)
        self._threads = [
            threading.Thread(target=self._schedule, args=(q,), daemon=True, name="sched")
            for q in self._queues.values()
        ]
        self._opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for queue in self._queues.values():
            queue.pool.shutdown(wait=False, cancel_futures=True)

    # --- what Greeter calls ---------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Queue calls (create/get/list/pause/resume/update) go to the package's state.
        return getattr(self._base, name)

    def _queue(self, path: str) -> _Queue:
        queue = self._queues.get(path)
        if queue is None:
            raise self._exceptions.FailedPrecondition(f"Queue {path} does not exist.")
        return queue

    def create_task(self, parent: str, task: Any) -> Any:
        queue = self._queue(parent)
        now_wall, now = datetime.now(UTC), time.monotonic()
        if not task.name:
            task.name = f"{parent}/tasks/{next(self._seq)}{int(now_wall.timestamp() * 1e6)}"
        elif task.name.rsplit("/", 2)[0] != parent:
            raise self._exceptions.InvalidArgument("the task name is not in this queue")
        if not task.http_request.url:
            raise self._exceptions.InvalidArgument("only HTTP target tasks are emulated")
        task.http_request.http_method = task.http_request.http_method or self._post_method
        schedule = task.schedule_time or now_wall
        task.schedule_time = schedule
        task.create_time = now_wall
        if not task.dispatch_deadline:
            task.dispatch_deadline = timedelta(seconds=DEFAULT_DISPATCH_DEADLINE)
        with self._cond:
            if task.name in queue.entries or self._reserved.get(task.name, 0.0) > now:
                raise self._exceptions.AlreadyExists(
                    f"Requested entity already exists: {task.name}"
                )
            entry = _Entry(
                due=now + (schedule - now_wall).total_seconds(), seq=next(self._seq), task=task
            )
            queue.entries[task.name] = entry
            heapq.heappush(queue.heap, entry)
            self._cond.notify_all()
        logger.info("created %s", task.name)
        return task

    def get_task(self, name: str) -> Any:
        with self._cond:
            queue = self._queue(name.rsplit("/", 2)[0])
            entry = queue.entries.get(name)
            if entry is None:
                raise self._exceptions.NotFound(f"Task not found: {name}")
            return entry.task

    def delete_task(self, name: str) -> None:
        with self._cond:
            queue = self._queue(name.rsplit("/", 2)[0])
            entry = queue.entries.get(name)
            if entry is None:
                raise self._exceptions.NotFound(f"Task not found: {name}")
            self._end(queue, entry)

    def list_tasks(self, parent: str) -> list[Any]:
        with self._cond:
            return [entry.task for entry in self._queue(parent).entries.values()]

    def purge_queue(self, path: str) -> Any:
        with self._cond:
            queue = self._queue(path)
            for entry in list(queue.entries.values()):
                self._end(queue, entry)
        return self._base.queue(path)

    def submit_task(self, name: str, force_run: bool = False) -> Any:
        """RunTask: dispatch now, whatever the schedule time (and even if paused)."""
        with self._cond:
            queue = self._queue(name.rsplit("/", 2)[0])
            entry = queue.entries.get(name)
            if entry is None or entry.running:
                raise self._exceptions.NotFound(f"Task not found or running: {name}")
            queue.heap.remove(entry)
            heapq.heapify(queue.heap)
            self._start(queue, entry, time.monotonic())
            return entry.task

    # --- dispatching ------------------------------------------------------------------------

    def _end(self, queue: _Queue, entry: _Entry) -> None:
        """Forget the task; its name stays refused for the window. Holds the lock."""
        entry.deleted = True
        queue.entries.pop(entry.task.name, None)
        if entry in queue.heap:
            queue.heap.remove(entry)
            heapq.heapify(queue.heap)
        self._reserved[entry.task.name] = time.monotonic() + self._dedup_window

    def _paused(self, queue: _Queue) -> bool:
        state = self._base.queue(queue.path).state
        return bool(state != self._queue_cls.State.RUNNING)

    def _schedule(self, queue: _Queue) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                if self._paused(queue):
                    self._cond.wait(0.05)  # PauseQueue does not notify us
                    continue
                if not queue.heap or queue.in_flight >= queue.config.max_concurrent_dispatches:
                    self._cond.wait(0.5)
                    continue
                wake = max(queue.heap[0].due, queue.next_start)
                if wake > now:
                    self._cond.wait(wake - now)
                    continue
                self._start(queue, heapq.heappop(queue.heap), now)

    def _start(self, queue: _Queue, entry: _Entry, now: float) -> None:
        """Hand `entry` to the queue's pool. Holds the lock."""
        entry.running = True
        queue.in_flight += 1
        queue.next_start = max(queue.next_start, now) + 1.0 / queue.config.max_dispatches_per_second
        queue.pool.submit(self._dispatch, queue, entry)

    def _headers(self, queue: _Queue, entry: _Entry) -> dict[str, str]:
        task = entry.task
        headers = dict(task.http_request.headers)
        headers.update(
            {
                "User-Agent": "Google-Cloud-Tasks",
                "X-CloudTasks-QueueName": queue.short_name,
                "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
                "X-CloudTasks-TaskRetryCount": str(task.dispatch_count),
                "X-CloudTasks-TaskExecutionCount": str(entry.responses),
                "X-CloudTasks-TaskETA": f"{task.schedule_time.timestamp():.6f}",
            }
        )
        if entry.reason is not None:
            headers["X-CloudTasks-TaskRetryReason"] = entry.reason
            if entry.previous is not None:
                headers["X-CloudTasks-TaskPreviousResponse"] = entry.previous
        return headers

    def _deadline(self, task: Any) -> float:
        deadline = task.dispatch_deadline.total_seconds() or DEFAULT_DISPATCH_DEADLINE
        return min(deadline, self._max_deadline) if self._max_deadline else deadline

    def _post(self, queue: _Queue, entry: _Entry) -> tuple[int | None, float | None, str]:
        """One attempt: (status or None, Retry-After seconds, retry reason)."""
        task = entry.task
        request = urllib.request.Request(  # noqa: S310 (the task's URL: loopback in tests)
            task.http_request.url,
            data=task.http_request.body,
            method=task.http_request.http_method.name,
            headers=self._headers(queue, entry),
        )
        try:
            with self._opener.open(request, timeout=self._deadline(task)) as answer:
                return answer.status, None, "HTTP_ERROR"
        except urllib.error.HTTPError as error:
            retry_after = _retry_after(error.headers.get("Retry-After"), error.code)
            error.close()
            return error.code, retry_after, "HTTP_ERROR"
        except TimeoutError:
            return None, None, "DEADLINE_EXCEEDED"
        except (OSError, ValueError) as error:
            timed_out = isinstance(getattr(error, "reason", None), TimeoutError)
            return None, None, "DEADLINE_EXCEEDED" if timed_out else "UNREACHABLE"

    def _dispatch(self, queue: _Queue, entry: _Entry) -> None:
        task = entry.task
        status, retry_after, reason = self._post(queue, entry)
        logger.info("dispatched %s: %s", task.name, status or reason)
        with self._cond:
            queue.in_flight -= 1
            entry.running = False
            task.dispatch_count += 1
            task.response_count += status is not None
            self._cond.notify_all()
            if entry.deleted:
                return
            if status is not None and 200 <= status < 300:
                self._end(queue, entry)
                return
            entry.responses += status is not None
            entry.previous, entry.reason = (str(status) if status else None), reason
            policy = queue.config.retry
            if not policy.allows(task.dispatch_count + 1):
                logger.info("dropped %s after %d attempts", task.name, task.dispatch_count)
                self._end(queue, entry)
                return
            delay = max(policy.backoff(task.dispatch_count), retry_after or 0.0)
            entry.due = time.monotonic() + delay
            entry.seq = next(self._seq)
            task.schedule_time = datetime.now(UTC) + timedelta(seconds=delay)
            heapq.heappush(queue.heap, entry)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Cloud Tasks does not follow redirects: a 3xx is a failed attempt."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _retry_after(value: str | None, status: int) -> float | None:
    if status not in (429, 503) or not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _greeter(emulator: Any, grpc: Any, state: FaithfulQueues) -> Any:
    """The package's servicer, plus the GetTask and DeleteTask it lacks."""
    empty = importlib.import_module("google.protobuf.empty_pb2").Empty
    api_error = importlib.import_module("google.api_core.exceptions").GoogleAPICallError

    class Greeter(emulator.Greeter):  # type: ignore[misc]
        def GetTask(self, request: Any, context: Any) -> Any:
            try:
                return state.get_task(request.name)
            except api_error as err:
                context.abort(err.grpc_status_code, err.message)

        def DeleteTask(self, request: Any, context: Any) -> Any:
            try:
                state.delete_task(request.name)
                return empty()
            except api_error as err:
                context.abort(err.grpc_status_code, err.message)

    return Greeter(state)


def _serve(
    configs: Mapping[str, QueueConfig],
    *,
    port: int,
    dedup_window: float,
    max_dispatch_deadline: float | None,
    ready_stream: IO[str],
    exit_on_stdin_eof: bool,
) -> None:
    """Serve the emulator on 127.0.0.1:`port` until SIGTERM/SIGINT (or end of stdin)."""
    # Imported here: only the child process needs the emulator (and its imports).
    emulator = importlib.import_module("gcloud_tasks_emulator.server")
    grpc = importlib.import_module("grpc")

    base = emulator.QueueState(emulator.DEFAULT_TARGET_HOST, emulator.DEFAULT_TARGET_PORT, 0)
    state = FaithfulQueues(
        base, configs, dedup_window=dedup_window, max_dispatch_deadline=max_dispatch_deadline
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    emulator.add_CloudTasksServicer_to_server(_greeter(emulator, grpc, state), server)
    bound = server.add_insecure_port(f"{LOOPBACK}:{port}")
    if not bound:
        raise OSError(f"cannot bind {LOOPBACK}:{port}")
    server.start()
    state.start()

    stopping = threading.Event()
    stdin_fd = sys.stdin.fileno()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    def watch_stdin() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader
        # holds its lock and makes the interpreter abort at shutdown.
        with contextlib.suppress(OSError):
            while os.read(stdin_fd, 4096):
                pass
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if exit_on_stdin_eof:
        threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"{_READY_PREFIX}{bound}", file=ready_stream, flush=True)
    logger.info("serving %s on %s:%s", ", ".join(configs), LOOPBACK, bound)
    while not stopping.wait(0.5):
        pass
    server.stop(grace=0).wait(2)
    state.close()
    # Dispatch threads may be blocked on a hanging handler: do not wait for them.
    os._exit(0)


def _queue_argument(value: str) -> tuple[str, QueueConfig]:
    path, sep, config = value.partition("=")
    try:
        parsed = QueueConfig.from_json(json.loads(config)) if sep else QueueConfig()
    except (ValueError, KeyError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"bad queue config for {path}: {exc}") from exc
    return path, parsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.tasks_emulator",
        description="Run a faithful Cloud Tasks emulator on 127.0.0.1 only.",
    )
    parser.add_argument(
        "--queue",
        action="append",
        required=True,
        type=_queue_argument,
        help="projects/P/locations/L/queues/Q[=QueueConfig JSON] (repeatable)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--dedup-window", type=float, default=DEDUP_WINDOW)
    parser.add_argument("--max-dispatch-deadline", type=float, default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (set by TasksEmulator: the child dies with its parent)",
    )
    args = parser.parse_args(argv)
    try:
        configs = _check_queues(dict(args.queue))
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="tasks-emulator %(levelname)s %(message)s",
    )
    _serve(
        configs,
        port=args.port,
        dedup_window=args.dedup_window,
        max_dispatch_deadline=args.max_dispatch_deadline,
        ready_stream=sys.stdout,
        exit_on_stdin_eof=args.exit_on_stdin_eof,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
