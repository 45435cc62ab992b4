"""Benchmark 1: polling efficiency of the real scheduling code, against the official clients.

Jobs arrive one per second on average (Poisson) with log-normal durations
(sigma 1). The service's own code decides every wait: `core.flow.after_delete`
and `core.flow.after_poll`, with the `PollPolicy` the settings describe and
(for "service, learned") the `core.learning.PollLearner` planner. The learner is
fed only what the polls saw, at the moment they saw it: a job's duration is
known once the poll that found it done has happened, never before, exactly as a
warm instance would learn it. An event queue runs everything in time order, so
jobs in flight overlap as they would in production.

Per job: polls (job-result requests), and lag = time between the job finishing
and the poll that saw it finished. Cost = polls + mean lag in seconds.

Baselines use the same durations: the official JS client (waits 1, 2, 3 s, ...
before each poll), the Ruby client (every 1 s), google-api-core's operation
polling (a random wait in [0, d], d from 1 s growing x1.5 up to 20 s).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.datocms import Done, Job
from core.flow import Finish, Schedule, after_delete, after_poll
from core.learning import PollLearner
from core.model import DeletionRequest, Step
from core.polling import PollPolicy
from core.settings import Settings

MIXES: tuple[float, ...] = (1.0, 3.0, 20.0)  # median job duration, seconds
SIGMA = 1.0
MEAN_ARRIVAL_GAP = 1.0
#: The deadline is lifted (the default 900 s would end ~1 job in 10,000 of the 20 s mix):
#: the baselines have none, and a timed-out job has no lag to measure.
TIMEOUT = 86_400.0
DONE = Done(200, {"data": {"type": "upload_track", "id": "t", "attributes": {}}})
START = 1_800_000_000.0


@dataclass(frozen=True)
class Result:
    """Per-job averages of one strategy over one mix."""

    name: str
    polls: float
    mean_lag: float
    p95_lag: float

    @property
    def cost(self) -> float:
        return self.polls + self.mean_lag


def durations(median: float, jobs: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [median * math.exp(rng.gauss(0.0, SIGMA)) for _ in range(jobs)]


def arrivals(jobs: int, seed: int) -> list[float]:
    rng = random.Random(seed + 1)
    times, now = [], 0.0
    for _ in range(jobs):
        now += rng.expovariate(1.0 / MEAN_ARRIVAL_GAP)
        times.append(now)
    return times


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def summarise(name: str, polls: list[int], lags: list[float]) -> Result:
    return Result(name, statistics.fmean(polls), statistics.fmean(lags), _p95(lags))


# --------------------------------------------------------------------------- baselines


Waits = Callable[[random.Random], Iterator[float]]


def js_client(_: random.Random) -> Iterator[float]:
    """@datocms/cma-client: waits 1 s, 2 s, 3 s, ... before each poll."""
    return (float(n) for n in itertools.count(1))


def ruby_client(_: random.Random) -> Iterator[float]:
    """The Ruby client: every second."""
    return itertools.repeat(1.0)


def google_api_core(rng: random.Random) -> Iterator[float]:
    """google-api-core operation polling: a random wait in [0, d], d = 1 s x1.5 up to 20 s."""
    ceiling = 1.0
    while True:
        yield rng.uniform(0.0, ceiling)
        ceiling = min(ceiling * 1.5, 20.0)


def baseline(name: str, waits: Waits, jobs: list[float], seed: int) -> Result:
    rng = random.Random(seed + 2)
    polls, lags = [], []
    for duration in jobs:
        elapsed, count = 0.0, 0
        for wait in waits(rng):
            elapsed += wait
            count += 1
            if elapsed >= duration:
                break
        polls.append(count)
        lags.append(elapsed - duration)
    return summarise(name, polls, lags)


# --------------------------------------------------------------------------- the service


def settings() -> Settings:
    """The service's settings: defaults (first poll 1 s, at most 30 s apart), no deadline."""
    return Settings.from_env({"POLL_TIMEOUT_SECONDS": str(TIMEOUT)})


def service(
    name: str, jobs: list[float], starts: list[float], seed: int, learner: PollLearner | None
) -> Result:
    """Run every job through `after_delete` / `after_poll`, in time order."""
    policy = PollPolicy.from_settings(settings(), learner.plan if learner else None)
    rand = random.Random(seed + 3).random
    events: list[tuple[float, int, Step]] = []
    sequence = itertools.count()
    polls: list[int] = [0] * len(jobs)
    lags: list[float] = [0.0] * len(jobs)

    def act(action: Schedule | Finish, now: float, index: int) -> None:
        if isinstance(action, Schedule):
            heapq.heappush(events, (now + action.delay, next(sequence), action.step))
            return
        if action.outcome.status != "deleted":
            raise RuntimeError(f"job {index} ended {action.outcome.status}")
        polls[index] = action.polls
        lags[index] = now - (START + starts[index] + jobs[index])

    for index, start in enumerate(starts):
        heapq.heappush(events, (START + start, next(sequence), _intake(index, START + start)))
    while events:
        now, _, step = heapq.heappop(events)
        index = int(step.request.upload_id.removeprefix("u"))
        if step.kind == "delete":
            act(after_delete(step, Job(f"j{index}"), now, policy, rand()), now, index)
            continue
        elapsed = now - step.accepted_at
        done = elapsed >= jobs[index]
        if learner is not None and step.job_id is not None:
            if done:
                learner.saw_done(step.job_id, elapsed)
            else:
                learner.saw_pending(step.job_id, elapsed)
        act(after_poll(step, DONE if done else None, now, policy, rand()), now, index)
    return summarise(name, polls, lags)


def _intake(index: int, now: float) -> Step:
    request = DeletionRequest(f"u{index}", f"t{index}")
    return Step(
        kind="delete",
        request_id=request.request_id(None),
        request=request,
        environment=None,
        accepted_at=now,
        number=1,
        not_after=now + TIMEOUT * 2,
    )


# --------------------------------------------------------------------------- one mix


@dataclass(frozen=True)
class MixReport:
    median: float
    jobs: int
    baselines: list[Result]
    fixed: Result
    learned: Result
    learned_poll_times: list[float]

    @property
    def best_baseline(self) -> Result:
        return min(self.baselines, key=lambda r: r.cost)

    @property
    def saving(self) -> float:
        """How much lower the learned cost is than the best baseline's (a fraction)."""
        return 1.0 - self.learned.cost / self.best_baseline.cost


def run_mix(median: float, jobs: int, seed: int) -> MixReport:
    work = durations(median, jobs, seed)
    starts = arrivals(jobs, seed)
    results = [
        baseline("JS client (1, 2, 3 s, ...)", js_client, work, seed),
        baseline("Ruby client (every 1 s)", ruby_client, work, seed),
        baseline("google-api-core (random, x1.5 to 20 s)", google_api_core, work, seed),
    ]
    fixed = service("service, fixed schedule (no learner)", work, starts, seed, None)
    learner = PollLearner(max_delay=settings().poll_max_delay)
    learned = service("service, learned planner", work, starts, seed, learner)
    plan = learner.current
    times = plan.poll_times(6) if plan is not None else []
    return MixReport(median, jobs, results, fixed, learned, times)


def run(jobs: int = 10_000, seed: int = 20261128) -> list[MixReport]:
    return [run_mix(median, jobs, seed + index) for index, median in enumerate(MIXES)]
