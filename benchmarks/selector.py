"""Benchmark: one selector matching 50 tracks, through the local stack, at 60 requests / 3 s.

The floor is the time DatoCMS's limit needs to admit the requests the service made
(admitted requests / 20 per second); the target is the summary callback within
1.25 x that floor of the first request, with no 429, 50 DELETEs and one callback.

    python -m benchmarks.selector
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import LocalStack, Secrets

UPLOAD_ID = "bench_selector_upload00"
RATE_LIMIT, RATE_WINDOW = 60, 3.0
ENV = {"POLL_INITIAL_DELAY_SECONDS": "1", "POLL_MAX_DELAY_SECONDS": "30"}


@dataclass
class SelectorReport:
    tracks: int
    elapsed: float  # first request sent -> summary callback received (s)
    requests: int
    rate_limited: int
    deletes: int
    polls: int
    callbacks: int
    callback_type: str | None

    @property
    def floor(self) -> float:
        return (self.requests - self.rate_limited) / (RATE_LIMIT / RATE_WINDOW)

    @property
    def ratio(self) -> float:
        return self.elapsed / self.floor if self.floor else float("inf")

    def render(self) -> str:
        return "\n".join(
            [
                "## Deleting by selector",
                "",
                f"One selector matching {self.tracks} tracks, jobs of 1 s, the simulator at "
                f"{RATE_LIMIT} requests / {RATE_WINDOW:g} s.",
                "",
                "| figure | value |",
                "| --- | --- |",
                f"| first request to summary callback | {self.elapsed:.2f} s |",
                f"| floor (admitted requests / 20 per s) | {self.floor:.2f} s |",
                f"| ratio (target at most 1.25) | {self.ratio:.2f} |",
                f"| DatoCMS requests / 429 answers | {self.requests} / {self.rate_limited} |",
                f"| DELETEs / polls | {self.deletes} / {self.polls} |",
                f"| callbacks | {self.callbacks} ({self.callback_type}) |",
                "",
            ]
        )


def run(tracks: int = 50, job_seconds: float = 1.0, *, timeout: float = 120.0) -> SelectorReport:
    secrets = Secrets()
    simulator = DatoCMSSimulator(
        api_token=secrets.datocms_token,
        rate_limit=RATE_LIMIT,
        rate_window=RATE_WINDOW,
        default_job_seconds=job_seconds,
    )
    with LocalStack(env=ENV, simulator=simulator, keys=secrets) as stack:
        for index in range(tracks):
            simulator.add_track(UPLOAD_ID, f"sel_track_{index:03d}", language_code="it-IT")
        stack.submit({}, token="wrong-token")  # noqa: S106 (warms delete_track, calls nothing)
        started = time.monotonic()
        answer = stack.submit(
            {
                "upload_id": UPLOAD_ID,
                "tracks": {"language_code": "it-IT"},
                "callback_url": stack.receiver.url,
            }
        )
        request_id = answer.json()["request_id"]
        delivery = stack.receiver.wait_for_id(request_id, timeout)
        elapsed = (delivery.at if delivery else time.monotonic()) - started
        time.sleep(2.0)  # room for a second callback to show up
        stats = simulator.stats()
        return SelectorReport(
            tracks=tracks,
            elapsed=elapsed,
            requests=stats["requests"],
            rate_limited=stats["rate_limited"],
            deletes=simulator.count("DELETE"),
            polls=simulator.count("GET", "/job-results/"),
            callbacks=len(stack.receiver.for_id(request_id)),
            callback_type=delivery.payload["type"] if delivery else None,
        )


if __name__ == "__main__":
    print(run().render())
