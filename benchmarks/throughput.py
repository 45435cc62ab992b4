"""Benchmark 4: intake overhead, as requests per second on one worker.

`delete_track` (one gunicorn worker, functions-framework's default threads)
against the DatoCMS simulator, run as its own process with no rate limit; the
baseline is `benchmarks.functions.loopback`, served the same way, which makes
one loopback request to the same simulator per call. Both are driven by the
same load: `clients` keep-alive connections sending back to back for
`duration` seconds, after a warm-up. Rounds alternate between the two; the
figure is the median, over rounds, of the ratio of the two rates in a round.

Every deletion names a new track; the simulator answers it with a job (its
"job_404" mode), so each call is the intake's full path: authenticate,
validate, DELETE, enqueue the first poll (due after the process is gone).
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from benchmarks.coldstart import service_env
from benchmarks.processes import FUNCTIONS_SOURCE, Function, base_env
from devstack.stack import ROOT, Secrets, free_port

UPLOAD_ID = "throughput_upload"


@dataclass
class ThroughputReport:
    duration: float
    clients: int
    service: list[float]  # requests per second, per round
    loopback: list[float]
    errors: int

    @property
    def service_median(self) -> float:
        return statistics.median(self.service)

    @property
    def loopback_median(self) -> float:
        return statistics.median(self.loopback)

    @property
    def pair_ratios(self) -> list[float]:
        """Each round's `delete_track` rate over the baseline's measured next to it."""
        return [s / b for s, b in zip(self.service, self.loopback, strict=True)]

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: load from elsewhere on the machine tends to
        move both sides of a round alike."""
        return statistics.median(self.pair_ratios)


@contextmanager
def simulator_process(token: str) -> Iterator[str]:
    """The DatoCMS simulator in a process of its own (so that it does not share the
    load generator's interpreter), without a rate limit."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.datocms_simulator",
            f"--port={port}",
            f"--token={token}",
            "--rate-limit=1000000000",
            "--missing-track-mode=job_404",
        ],
        cwd=ROOT,
        env=base_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/")
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


Request = Callable[[int, int], tuple[bytes, dict[str, str]]]


def load(port: int, request: Request, *, clients: int, duration: float) -> tuple[int, int]:
    """Send requests back to back from `clients` threads; (2xx answers, other outcomes)."""
    done = [0] * clients
    failed = [0] * clients
    stop = time.monotonic() + duration

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sequence = 0
        while time.monotonic() < stop:
            body, headers = request(number, sequence)
            sequence += 1
            try:
                connection.request("POST", "/", body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                if 200 <= answer.status < 300:
                    done[number] += 1
                else:
                    failed[number] += 1
            except (OSError, http.client.HTTPException):
                failed[number] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done), sum(failed)


def run(
    rounds: int = 6, duration: float = 2.5, clients: int = 8, warm_up: float = 0.5
) -> ThroughputReport:
    secrets = Secrets()
    service: list[float] = []
    loopback: list[float] = []
    errors = 0
    with simulator_process(secrets.datocms_token) as base_url:
        service_environment = service_env(secrets, base_url)
        loopback_environment = base_env()
        loopback_environment["LOOPBACK_URL"] = f"{base_url}/job-results/000000000000000000000000"
        intake_headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {secrets.intake_token}",
        }

        for index in range(rounds):

            def deletion(
                client: int, sequence: int, index: int = index
            ) -> tuple[bytes, dict[str, str]]:
                track = f"r{index}_c{client}_n{sequence}"
                body = json.dumps({"upload_id": UPLOAD_ID, "upload_track_id": track}).encode()
                return body, intake_headers

            def plain(client: int, sequence: int) -> tuple[bytes, dict[str, str]]:
                return b"{}", {"Content-Type": "application/json"}

            order = ("service", "loopback") if index % 2 == 0 else ("loopback", "service")
            for which in order:
                if which == "service":
                    function = Function("delete_track", service_environment)
                    request: Request = deletion
                else:
                    function = Function("loopback", loopback_environment, source=FUNCTIONS_SOURCE)
                    request = plain
                with function:
                    function.wait_ready()
                    load(function.port, _warm(request), clients=clients, duration=warm_up)
                    ok, bad = load(function.port, request, clients=clients, duration=duration)
                errors += bad
                (service if which == "service" else loopback).append(ok / duration)
    return ThroughputReport(duration, clients, service, loopback, errors)


def _warm(request: Request) -> Request:
    """The same requests, on tracks the measured round never uses."""

    def warm(client: int, sequence: int) -> tuple[bytes, dict[str, str]]:
        return request(client + 1000, sequence)

    return warm
