"""Benchmark 2: a burst of deletions against DatoCMS's rate limit, through the local stack.

The DatoCMS simulator allows 60 requests per 3 s (a sliding window, like the
real API's), every deletion job takes 2 s. `delete_track` and `poll_job` run
as real `functions-framework` processes, each with its own DatoCMS client and
its own in-process task queue; a callback receiver verifies every callback.
300 deletion requests are sent at once (32 at a time).

The floor is the time DatoCMS's limit needs to admit the requests the service
made: (admitted DatoCMS requests) / (60 / 3 s). The ideal floor counts two
requests per deletion (the DELETE and one poll that finds the job done).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import LocalStack, Secrets

UPLOAD_ID = "bench_upload_0000000000"
RATE_LIMIT = 60
RATE_WINDOW = 3.0
#: The service's defaults for the poll schedule (the dev stack's own are shorter).
ENV = {"POLL_INITIAL_DELAY_SECONDS": "1", "POLL_MAX_DELAY_SECONDS": "30"}


@dataclass
class RateLimitReport:
    deletions: int
    job_seconds: float
    elapsed: float  # first request sent -> last callback received (s)
    complete: bool  # every request got its callback before the timeout
    requests: int  # DatoCMS requests, 429s included
    rate_limited: int
    early: int
    deletes: int
    polls: int
    intake_statuses: dict[int, int]
    intake_bodies: dict[str, int]
    callbacks_per_request: dict[int, int]  # how many requests got n accepted callbacks
    failed_deliveries: int  # callback deliveries answered non-2xx or unverified
    intake_seconds: list[float] = field(default_factory=list)  # each intake answer's time

    @property
    def rate(self) -> float:
        return RATE_LIMIT / RATE_WINDOW

    @property
    def admitted(self) -> int:
        return self.requests - self.rate_limited

    @property
    def floor(self) -> float:
        return self.admitted / self.rate

    @property
    def ideal_floor(self) -> float:
        return 2 * self.deletions / self.rate

    @property
    def ratio(self) -> float:
        return self.elapsed / self.floor if self.floor else float("inf")

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0

    @property
    def intake_latency_median(self) -> float:
        return statistics.median(self.intake_seconds) if self.intake_seconds else 0.0

    @property
    def intake_latency_max(self) -> float:
        return max(self.intake_seconds, default=0.0)

    @property
    def exactly_one_callback(self) -> bool:
        return self.complete and self.callbacks_per_request == {1: self.deletions}


def _track(index: int) -> str:
    return f"bench_track_{index:05d}"


def _warm(stack: LocalStack) -> None:
    """Build each function's `Service` before the clock starts (answers 401, calls nothing)."""
    stack.submit({}, token="wrong-token")  # noqa: S106 (a deliberately wrong token)
    requests.post(stack.functions["poll_job"].url, data=b"{}", timeout=10)


def run(
    deletions: int = 300,
    job_seconds: float = 2.0,
    *,
    timeout: float = 240.0,
    concurrency: int = 32,
    settle: float = 3.0,
    env: dict[str, str] | None = None,
) -> RateLimitReport:
    secrets = Secrets()
    simulator = DatoCMSSimulator(
        api_token=secrets.datocms_token,
        rate_limit=RATE_LIMIT,
        rate_window=RATE_WINDOW,
        default_job_seconds=job_seconds,
    )
    with LocalStack(env={**ENV, **(env or {})}, simulator=simulator, keys=secrets) as stack:
        for index in range(deletions):
            simulator.add_track(UPLOAD_ID, _track(index), job_seconds=job_seconds)
        _warm(stack)
        bodies = [
            {
                "upload_id": UPLOAD_ID,
                "upload_track_id": _track(index),
                "callback_url": stack.receiver.url,
                "idempotency_key": f"bench-{index}",
            }
            for index in range(deletions)
        ]

        def submit(body: dict[str, Any]) -> tuple[requests.Response, float]:
            sent = time.monotonic()
            answer = stack.submit(body, timeout=60)
            return answer, time.monotonic() - sent

        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            timed = list(pool.map(submit, bodies))
        answers = [answer for answer, _ in timed]
        accepted = stack.receiver.wait_for(deletions, timeout=max(timeout - settle, 1.0))
        complete = len(accepted) >= deletions
        if complete:
            time.sleep(settle)  # room for a duplicate callback to show up
        accepted = stack.receiver.accepted()
        elapsed = max((d.at for d in accepted), default=time.monotonic()) - started
        stats = simulator.stats()
        per_request = Counter(d.headers.get("webhook-id") for d in accepted)
        statuses = Counter(answer.status_code for answer in answers)
        kinds = Counter(_status_of(answer) for answer in answers)
        expected_ids = {_request_id(answer) for answer in answers}
        counts = Counter(per_request.get(request_id, 0) for request_id in expected_ids)
        failed = sum(1 for d in stack.receiver.deliveries if not (d.verified and d.answered < 300))
        return RateLimitReport(
            deletions=deletions,
            job_seconds=job_seconds,
            elapsed=elapsed,
            complete=complete,
            requests=stats["requests"],
            rate_limited=stats["rate_limited"],
            early=stats["early_requests"],
            deletes=simulator.count("DELETE"),
            polls=simulator.count("GET", "/job-results/"),
            intake_statuses=dict(statuses),
            intake_bodies=dict(kinds),
            callbacks_per_request=dict(counts),
            failed_deliveries=failed,
            intake_seconds=[seconds for _, seconds in timed],
        )


def _status_of(answer: requests.Response) -> str:
    try:
        body: Any = answer.json()
    except ValueError:
        return "not json"
    return str(body.get("status") or body.get("error", {}).get("code"))


def _request_id(answer: requests.Response) -> str | None:
    try:
        body: Any = answer.json()
    except ValueError:
        return None
    value = body.get("request_id")
    return value if isinstance(value, str) else None
