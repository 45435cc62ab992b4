"""Benchmark 5: the state store under the intake, on Google's Firestore emulator.

1. Idempotency under concurrency: `requests` distinct deletions, each sent `copies`
   times at once with the same idempotency key, to the local stack with
   `STATE_BACKEND=firestore`: counted are the DELETEs DatoCMS saw, the verified
   callbacks and the requests that ended with neither (lost).
2. Intake throughput with `STATE_BACKEND=firestore` against the same service with
   `sqlite` (rounds alternate), by `benchmarks.throughput`'s load.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from benchmarks.coldstart import service_env
from benchmarks.processes import Function
from benchmarks.throughput import load, simulator_process
from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import LocalStack, Secrets
from tests.emulators import firestore_emulator

UPLOAD_ID = "state_bench_upload"


@dataclass(frozen=True)
class StateReport:
    requests: int
    copies: int
    deletes: int
    callbacks: int
    lost: int
    answers: dict[str, int]  # status code -> count, over every copy sent
    firestore: list[float]  # intake requests per second, per round
    sqlite: list[float]

    @property
    def ratio(self) -> float:
        """Median over rounds of the Firestore rate over the SQLite rate measured next to it."""
        return statistics.median(f / s for f, s in zip(self.firestore, self.sqlite, strict=True))


def firestore_env(host: str) -> dict[str, str]:
    return {
        "STATE_BACKEND": "firestore",
        "FIRESTORE_EMULATOR_HOST": host,
        "FIRESTORE_PROJECT": "bench-" + secrets.token_hex(4),
    }


def concurrent_duplicates(
    host: str, requests_: int, copies: int, timeout: float
) -> tuple[int, int, int, dict[str, int]]:
    """(DELETEs, callbacks, lost requests, answers by status)."""
    keys = Secrets()
    simulator = DatoCMSSimulator(api_token=keys.datocms_token, rate_limit=1_000_000_000)
    env = {
        **firestore_env(host),
        "POLL_INITIAL_DELAY_SECONDS": "0.2",
        "POLL_MAX_DELAY_SECONDS": "1",
    }
    answers: dict[str, int] = {}
    with LocalStack(env=env, simulator=simulator, keys=keys) as stack:
        bodies = []
        for index in range(requests_):
            track = f"dup_{index}"
            stack.simulator.add_track(UPLOAD_ID, track, job_seconds=0.5)
            bodies.append(
                {
                    "upload_id": UPLOAD_ID,
                    "upload_track_id": track,
                    "callback_url": stack.receiver.url,
                    "idempotency_key": f"bench-{index}",
                }
            )

        def send(body: dict[str, object]) -> str:
            try:
                return str(stack.submit(body, timeout=60).status_code)
            except requests.RequestException:
                return "error"

        with ThreadPoolExecutor(max_workers=32) as pool:
            for status in pool.map(send, [b for b in bodies for _ in range(copies)]):
                answers[status] = answers.get(status, 0) + 1
        # A copy answered 409 (being decided) is a client's cue to retry: retry them once.
        deadline = time.monotonic() + timeout
        ids = {b["idempotency_key"] for b in bodies}
        while time.monotonic() < deadline:
            delivered = {d.headers.get("webhook-id") for d in stack.receiver.deliveries}
            if len(delivered) >= len(ids):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything late would show now
        deletes = stack.simulator.count("DELETE")
        accepted = [d for d in stack.receiver.deliveries if d.verified and 200 <= d.answered < 300]
        per_id: dict[str, int] = {}
        for delivery in accepted:
            key = delivery.headers.get("webhook-id", "")
            per_id[key] = per_id.get(key, 0) + 1
        lost = requests_ - len(per_id)
        return deletes, len(accepted), lost, answers


#: An unmeasured Firestore round first: the emulator's JVM needs thousands of operations
#: before each costs what it will (Firestore itself is never cold).
WARM_UP_SECONDS = 5.0


def throughput(
    host: str, rounds: int, duration: float, clients: int = 8
) -> tuple[list[float], list[float]]:
    keys = Secrets()
    firestore: list[float] = []
    sqlite: list[float] = []
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {keys.intake_token}"}
    with simulator_process(keys.datocms_token) as base_url:

        def requests_per_second(which: str, tag: str, seconds: float) -> float:
            env = service_env(keys, base_url)
            if which == "firestore":
                env.update(firestore_env(host))

            def deletion(client: int, sequence: int) -> tuple[bytes, dict[str, str]]:
                track = f"{tag}_c{client}_n{sequence}"
                body = json.dumps({"upload_id": UPLOAD_ID, "upload_track_id": track})
                return body.encode(), headers

            with Function("delete_track", env) as function:
                function.wait_ready()
                load(
                    function.port, lambda c, s: deletion(c + 1000, s), clients=clients, duration=0.5
                )
                ok, _ = load(function.port, deletion, clients=clients, duration=seconds)
            return ok / seconds

        requests_per_second("firestore", "warm", WARM_UP_SECONDS)
        for index in range(rounds):
            for which in ("firestore", "sqlite") if index % 2 == 0 else ("sqlite", "firestore"):
                rate = requests_per_second(which, f"{which}{index}", duration)
                (firestore if which == "firestore" else sqlite).append(rate)
    return firestore, sqlite


def run(
    requests_: int = 200, copies: int = 5, rounds: int = 4, duration: float = 2.5
) -> StateReport:
    with firestore_emulator() as host:
        deletes, callbacks, lost, answers = concurrent_duplicates(host, requests_, copies, 120.0)
        fs, sq = throughput(host, rounds, duration)
    return StateReport(requests_, copies, deletes, callbacks, lost, answers, fs, sq)
