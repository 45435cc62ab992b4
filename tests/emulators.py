"""Google's official emulators for the tests: Firestore and Pub/Sub, on loopback.

`firestore_emulator()` starts `gcloud emulators firestore start` (and
`pubsub_emulator()` `gcloud beta emulators pubsub start`, with a temporary
`--data-dir`) on a free 127.0.0.1 port in its own process group, waits until it
answers, yields `"127.0.0.1:PORT"` and kills the whole group (gcloud starts a
Java child). Where it cannot run, `EmulatorMissing` says why; `unavailable()`
turns that into a skip, or a failure when `CI=true`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import requests

from devstack.stack import free_port

INSTALL_HINT = (
    "the Firestore emulator is unavailable: install the Google Cloud CLI with the "
    "cloud-firestore-emulator component and Java 17+"
)
PUBSUB_INSTALL_HINT = (
    "the Pub/Sub emulator is unavailable: install the Google Cloud CLI with the "
    "pubsub-emulator and beta components and Java 17+"
)


class EmulatorMissing(Exception):
    """The emulator could not be started here."""


def unavailable(reason: str, hint: str = INSTALL_HINT) -> NoReturn:
    """Skip the test (fail it when `CI=true`) with the install hint and `reason`."""
    message = f"{hint} ({reason})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def firestore_emulator(startup_timeout: float = 30.0) -> Iterator[str]:
    with _emulator(
        "firestore-emulator-", ["emulators", "firestore", "start"], startup_timeout
    ) as host:
        yield host


@contextmanager
def pubsub_emulator(project: str, startup_timeout: float = 30.0) -> Iterator[str]:
    """The Pub/Sub emulator for `project`, its data in a temporary directory."""
    with _emulator(
        "pubsub-emulator-",
        ["beta", "emulators", "pubsub", "start", f"--project={project}"],
        startup_timeout,
        data_dir=True,
    ) as host:
        yield host


@contextmanager
def _emulator(
    prefix: str, command: list[str], startup_timeout: float, *, data_dir: bool = False
) -> Iterator[str]:
    gcloud, java = shutil.which("gcloud"), shutil.which("java")
    if gcloud is None or java is None:
        raise EmulatorMissing("gcloud or java is not on PATH")
    host = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        log_path = Path(workdir) / "emulator.log"
        arguments = [gcloud, *command, f"--host-port={host}"]
        if data_dir:
            (Path(workdir) / "data").mkdir()
            arguments.append(f"--data-dir={Path(workdir) / 'data'}")
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                arguments,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
            )
        try:
            _wait_until_ready(host, process, startup_timeout, log_path)
            yield host
        finally:
            _stop(process)


def _wait_until_ready(
    host: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:]
            raise EmulatorMissing(f"the emulator exited with {process.returncode}: {tail}")
        try:
            if requests.get(f"http://{host}/", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    _stop(process)
    raise EmulatorMissing(f"the emulator did not answer within {timeout:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (gcloud and its Java child), then kill what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
