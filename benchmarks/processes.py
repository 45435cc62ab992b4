"""Start and stop `functions-framework` processes for the benchmarks (loopback only)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from devstack.stack import ROOT, free_port

FUNCTIONS_SOURCE = ROOT / "benchmarks" / "functions.py"


def base_env() -> dict[str, str]:
    """The current environment without the service's settings, plus PYTHONPATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATOCMS_", "CALLBACK_", "TASK", "POLL_", "INTAKE_", "FUNCTION_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Function:
    """One `functions-framework --target=NAME [--source=FILE]` process on 127.0.0.1."""

    def __init__(self, target: str, env: Mapping[str, str], *, source: Path | None = None) -> None:
        self.target = target
        self.source = source
        self.port = free_port()
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)

    def start(self) -> Function:
        command = [
            str(Path(sys.executable).parent / "functions-framework"),
            f"--target={self.target}",
            f"--port={self.port}",
            "--host=127.0.0.1",
        ]
        if self.source is not None:
            command.append(f"--source={self.source}")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def first_success(
        self, body: bytes, headers: Mapping[str, str], *, timeout: float = 30.0
    ) -> float:
        """POST `body` until the first 2xx answer; seconds since the process was started."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited:\n{self.output()}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("POST", "/", body=body, headers=dict(headers))
                status = connection.getresponse().status
                if 200 <= status < 300:
                    return time.monotonic() - self.started
                raise RuntimeError(f"{self.target} answered {status}:\n{self.output()}")
            except (ConnectionError, http.client.HTTPException, OSError):
                time.sleep(0.005)
            finally:
                connection.close()
        raise TimeoutError(f"{self.target} gave no 2xx answer in {timeout} s:\n{self.output()}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        import socket  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        raise TimeoutError(f"{self.target} did not start")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Function:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
