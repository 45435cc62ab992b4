"""The Cloud Tasks emulator (`gcloud-tasks-emulator` 0.6.2), served on loopback only.

The emulator's own command line binds every interface (`[::]:PORT`). This module
is both halves of a small wrapper around it:

- `TasksEmulator` (parent side): a context manager that starts the child below
  with the given queues, waits until its port answers, exposes `host`
  (`"127.0.0.1:PORT"`, the value for `CLOUD_TASKS_EMULATOR_HOST`), and stops it
  (terminate, then kill) on exit.
- `python -m devstack.tasks_emulator --queue projects/P/locations/L/queues/Q ...`
  (child side): reuses the emulator's in-memory state, gRPC servicer and
  dispatcher, but builds its own gRPC server bound to 127.0.0.1 (port 0 = a free
  port chosen by the OS, so there is no race for it), then prints
  `tasks-emulator-port=PORT` on stdout. It exits on SIGTERM or SIGINT; started
  by `TasksEmulator` (`--exit-on-stdin-eof`) also when its stdin closes, so it
  never outlives a parent that died without stopping it.

What the emulator does (observed): keeps queues and tasks in memory; dispatches
HTTP target tasks to `http_request.url` once `schedule_time` has passed (its
dispatcher wakes every 0.1 s; one thread per queue, one task at a time); sends the
task's own headers plus `X-CloudTasks-QueueName` (the *full* queue path, where
Cloud Tasks sends the short name), `-TaskName` (short name), `-TaskRetryCount`
and `-TaskExecutionCount` (both 0 on the first attempt) and `-TaskETA`; retries a
non-2xx answer about 0.1 s later, forever unless `max_retries` is set;
implements CreateTask, ListTasks, RunTask and the queue calls.

What it does not do: de-duplicate task names (both tasks run), send OIDC tokens
(it keeps `oidc_token` on the stored task, nothing more), back off between
retries, honour `dispatch_deadline` or rate limits (a hanging handler blocks its
queue), implement GetTask or DeleteTask, or keep a dispatched task visible to
ListTasks (a task leaves the list once it got a 2xx).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

LOOPBACK = "127.0.0.1"
_READY_PREFIX = "tasks-emulator-port="
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_QUEUE_PATH = re.compile(r"^projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]{1,100}$")


def _check_queue_paths(queues: Sequence[str]) -> tuple[str, ...]:
    if isinstance(queues, str):
        raise TypeError("queues must be a sequence of queue paths, not one string")
    if not queues:
        raise ValueError("at least one queue is needed")
    for path in queues:
        if not _QUEUE_PATH.match(path):
            raise ValueError(f"not a queue path (projects/P/locations/L/queues/Q): {path!r}")
    return tuple(dict.fromkeys(queues))


class TasksEmulator:
    """A `gcloud-tasks-emulator` child process on 127.0.0.1, with the given queues.

    >>> with TasksEmulator(["projects/p/locations/l/queues/steps"]) as emulator:
    ...     emulator.host  # "127.0.0.1:PORT"
    """

    def __init__(
        self,
        queues: Sequence[str],
        *,
        max_retries: int = -1,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        log_level: str = "WARNING",
    ) -> None:
        self.queues = _check_queue_paths(queues)
        self.max_retries = max_retries
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
        if self._process is not None:
            raise RuntimeError("the tasks emulator is already running")
        command = [
            sys.executable,
            # The emulator calls datetime.utcnow() in its dispatch loop (deprecated in 3.12).
            "-W",
            "ignore::DeprecationWarning",
            "-m",
            "devstack.tasks_emulator",
            "--port",
            "0",
            "--max-retries",
            str(self.max_retries),
            "--log-level",
            self.log_level,
            "--exit-on-stdin-eof",
        ]
        for path in self.queues:
            command += ["--queue", path]
        self._process = subprocess.Popen(
            command,
            cwd=_PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + self.startup_timeout
            self._port = self._read_port(deadline)
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


def _serve(
    queues: Sequence[str],
    *,
    port: int,
    max_retries: int,
    ready_stream: IO[str],
    exit_on_stdin_eof: bool,
) -> None:
    """Serve the emulator on 127.0.0.1:`port` until SIGTERM/SIGINT (or end of stdin)."""
    # Imported here: only the child process needs the emulator (and its imports).
    emulator = importlib.import_module("gcloud_tasks_emulator.server")
    grpc = importlib.import_module("grpc")

    state = emulator.QueueState(
        emulator.DEFAULT_TARGET_HOST, emulator.DEFAULT_TARGET_PORT, max_retries
    )
    for path in queues:
        state.create_queue(path.rsplit("/", 2)[0], emulator.Queue(name=path))

    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    emulator.add_CloudTasksServicer_to_server(emulator.Greeter(state), server)
    bound = server.add_insecure_port(f"{LOOPBACK}:{port}")
    if not bound:
        raise OSError(f"cannot bind {LOOPBACK}:{port}")
    server.start()

    # Daemon threads (the per-queue threads inherit it): a dispatch stuck on a
    # hanging handler must not keep the process alive after a stop.
    processor = emulator.Processor(state)
    processor.daemon = True
    processor.start()

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
    logging.getLogger("gcloud-tasks-emulator").info(
        "serving %s on %s:%s", ", ".join(queues), LOOPBACK, bound
    )
    while not stopping.wait(0.5):
        pass
    server.stop(grace=0).wait(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.tasks_emulator",
        description="Run gcloud-tasks-emulator on 127.0.0.1 only.",
    )
    parser.add_argument(
        "--queue",
        action="append",
        required=True,
        help="a queue to create: projects/P/locations/L/queues/Q (repeatable)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument(
        "--max-retries", type=int, default=-1, help="retries of a failing task (-1: forever)"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (set by TasksEmulator: the child dies with its parent)",
    )
    args = parser.parse_args(argv)
    try:
        queues = _check_queue_paths(args.queue)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="tasks-emulator %(levelname)s %(message)s",
    )
    _serve(
        queues,
        port=args.port,
        max_retries=args.max_retries,
        ready_stream=sys.stdout,
        exit_on_stdin_eof=args.exit_on_stdin_eof,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
