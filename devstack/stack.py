"""The local stack: the functions as real `functions-framework` processes, on loopback.

`LocalStack` starts the DatoCMS simulator, a callback receiver, and the
`delete_track` and `poll_job` functions (and, on request, `delete_track_event`)
with an environment that points them at each other. Used by the demo, the
end-to-end tests and the benchmarks. Nothing here is deployed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import requests

from devstack.datocms_simulator import DatoCMSSimulator
from devstack.receiver import CallbackReceiver

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Secrets:
    """Fresh secrets for one stack."""

    datocms_token: str = field(default_factory=lambda: "dato-" + secrets.token_hex(16))
    intake_token: str = field(default_factory=lambda: "intake-" + secrets.token_hex(16))
    task_secret: str = field(default_factory=lambda: "task-" + secrets.token_hex(24))
    callback_secret: str = field(default_factory=new_webhook_secret)

    def all(self) -> list[str]:
        return [self.datocms_token, self.intake_token, self.task_secret, self.callback_secret]


def service_free_environment() -> dict[str, str]:
    """This process's environment without any of the service's own settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATOCMS_", "CALLBACK_", "TASK", "POLL_", "INTAKE_", "FUNCTION_"))
    }


#: gunicorn threads per local function process. functions-framework serves with one
#: worker and `THREADS` threads (default 4 x CPUs), and a gunicorn thread that has
#: seen the first bytes of a request blocks until its headers are complete: that
#: many slow clients stall the function. Cloud Run's front end buffers requests;
#: the local stack has nothing in front, so it runs with many more threads (an
#: explicit `THREADS` in the environment wins). More threads raise the bar, they do
#: not remove it: anything exposed must run behind a buffering proxy (SECURITY.md).
LOCAL_THREADS = max(64, (os.cpu_count() or 1) * 16)


class FunctionProcess:
    """One `functions-framework --target=NAME [--source=FILE]` process, stdout to a file."""

    def __init__(
        self,
        target: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        source: Path | None = None,
    ) -> None:
        self.target = target
        self.source = source
        self.started = 0.0  # time.monotonic() when the process was started
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._env = {"THREADS": str(LOCAL_THREADS), **env}
        self._log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept open for the process)
            prefix=f"{target}-", suffix=".log", delete=False
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> FunctionProcess:
        executable = Path(sys.executable).parent / "functions-framework"
        command = [
            str(executable),
            f"--target={self.target}",
            f"--port={self.port}",
            "--host=127.0.0.1",
        ]
        if self.source is not None:
            command.append(f"--source={self.source}")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self._env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 20.0) -> float:
        """Wait until the process accepts connections; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"{self.target} did not start:\n{self.output()}")

    def output(self) -> str:
        return Path(self._log_file.name).read_text(encoding="utf-8", errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """The structured log lines the function wrote (other lines are skipped)."""
        entries = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue
        return entries

    def terminate(self) -> None:
        """Ask the process to stop, without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        Path(self._log_file.name).unlink(missing_ok=True)  # read what you need before stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalStack:
    """Simulator, receiver and functions, wired together on loopback.

    `keys` are the stack's secrets (fresh ones by default).
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        simulator: DatoCMSSimulator | None = None,
        with_event_function: bool = False,
        sweep_every: float | None = 2.0,
        keys: Secrets | None = None,
    ) -> None:
        self.secrets = keys or Secrets()
        self.simulator = simulator or DatoCMSSimulator(api_token=self.secrets.datocms_token)
        self.receiver = CallbackReceiver(self.secrets.callback_secret)
        self._extra_env = dict(env or {})
        self._with_event = with_event_function
        self._state_dir = tempfile.TemporaryDirectory(prefix="track-deleter-state-")
        self._sweep_every = sweep_every
        self._sweeping = threading.Event()
        self.functions: dict[str, FunctionProcess] = {}

    def environment(self, base_url: str, poll_port: int) -> dict[str, str]:
        env = service_free_environment()
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "DATOCMS_API_TOKEN": self.secrets.datocms_token,
                "DATOCMS_BASE_URL": base_url,
                "INTAKE_TOKEN": self.secrets.intake_token,
                "TASK_SIGNING_SECRET": self.secrets.task_secret,
                "CALLBACK_SIGNING_SECRET": self.secrets.callback_secret,
                "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
                "TASKS_BACKEND": "local",
                "STATE_PATH": str(Path(self._state_dir.name) / "state.sqlite3"),
                "POLL_URL": f"http://127.0.0.1:{poll_port}/",
                "POLL_INITIAL_DELAY_SECONDS": "0.2",
                "POLL_MAX_DELAY_SECONDS": "1",
                "CALLBACK_RETRY_MIN_SECONDS": "0.2",
                "CALLBACK_RETRY_MAX_SECONDS": "1",
            }
        )
        env.update(self._extra_env)
        return env

    def start(self) -> LocalStack:
        try:
            base_url = self.simulator.start()
            self.receiver.start()
            poll_port = free_port()
            env = self.environment(base_url, poll_port)
            targets: dict[str, int | None] = {"poll_job": poll_port, "delete_track": None}
            if self._with_event:
                targets["delete_track_event"] = None
            for target, port in targets.items():
                self.functions[target] = FunctionProcess(target, env, port=port).start()
            for function in self.functions.values():
                function.wait_ready()
            if self._sweep_every is not None:
                threading.Thread(target=self._sweep, name="sweep-timer", daemon=True).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _sweep(self) -> None:
        """The local stand-in for Cloud Scheduler: `POST /sweep` to poll_job, periodically."""
        assert self._sweep_every is not None  # noqa: S101 (started only then)
        url = self.functions["poll_job"].url + "sweep"
        while not self._sweeping.wait(self._sweep_every):
            with contextlib.suppress(requests.RequestException):
                requests.post(url, json={}, timeout=10)

    def stop(self) -> None:
        self._sweeping.set()
        for function in self.functions.values():
            function.terminate()
        for function in self.functions.values():
            function.stop()
        self.receiver.stop()
        self.simulator.stop()
        self._state_dir.cleanup()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def intake_url(self) -> str:
        return self.functions["delete_track"].url

    def submit(
        self, body: Mapping[str, Any], *, token: str | None = None, timeout: float = 30.0
    ) -> requests.Response:
        """POST a deletion request to `delete_track` with the intake token."""
        return requests.post(
            self.intake_url,
            json=dict(body),
            headers={"Authorization": f"Bearer {token or self.secrets.intake_token}"},
            timeout=timeout,
        )

    def status(self, request_id: str, *, timeout: float = 10.0) -> requests.Response:
        """`GET /requests/{request_id}` on `delete_track` (the status resource)."""
        return requests.get(
            f"{self.intake_url.rstrip('/')}/requests/{request_id}",
            headers={"Authorization": f"Bearer {self.secrets.intake_token}"},
            timeout=timeout,
        )

    def logs(self) -> list[dict[str, Any]]:
        return [entry for function in self.functions.values() for entry in function.logs()]
