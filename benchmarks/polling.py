"""Benchmark 1: polling cost of the real scheduling code where it runs, against official clients.

A grid of job-duration shapes x instance lifetimes. Jobs arrive one per second
on average (Poisson). The service's own code decides every wait:
`core.flow.after_delete` and `core.flow.after_poll`, with
`PollPolicy.from_settings` and a `core.learning.SharedPlanner`.

The deployment is modelled as it runs with scale to zero: instances are
replaced every `lifetime` accepted jobs (1, 5, 20, 100); the steps that run
while an instance lives use it. Learning is shared through one value (the
state store's document, a `core.learning.LearnedDurations`): every finished
job adds its interval (last poll that saw it pending, poll that saw it done]
at the moment the poll saw it done. An instance reads the value when it
starts and again when its copy is older than `CACHE_SECONDS` (its own writes do
not refresh its copy: the conservative case). Nothing else crosses instances.

Per job: polls (job-result requests), and lag = time between the job finishing
and the poll that saw it finished. Cost = polls + mean lag in seconds.

Baselines on the same durations: the official JS client (waits 1, 2, 3 s, ...
before each poll), the Ruby client (every 1 s); google-api-core's operation
polling (a random wait in [0, d], d from 1 s growing x1.5 up to 20 s) for
comparison. "Best official" is the cheaper of JS and Ruby, per cell.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from core.datocms import Done, Job
from core.flow import Finish, Schedule, after_delete, after_poll
from core.learning import LearnedDurations, LearningConfig, SharedPlanner
from core.model import DeletionRequest, Step
from core.polling import PollPolicy
from core.settings import Settings

LIFETIMES: tuple[int, ...] = (1, 5, 20, 100)
MEAN_ARRIVAL_GAP = 1.0
#: How long an instance uses its copy of the shared value before reading it again.
CACHE_SECONDS = 30.0
#: The deadline is lifted: the baselines have none, and a timed-out job has no lag to measure.
TIMEOUT = 86_400.0
DONE = Done(200, {"data": {"type": "upload_track", "id": "t", "attributes": {}}})
START = 1_800_000_000.0

Sampler = Callable[[random.Random, int, int], float]  # (rng, index, jobs) -> seconds


def _lognormal(median: float, sigma: float) -> Sampler:
    return lambda rng, i, n: median * math.exp(rng.gauss(0.0, sigma))


def _bimodal(rng: random.Random, i: int, n: int) -> float:
    median = 1.5 if rng.random() < 0.6 else 12.0
    return median * math.exp(rng.gauss(0.0, 0.2))


def _regime(rng: random.Random, i: int, n: int) -> float:
    return (1.0 if i < n // 2 else 10.0) * math.exp(rng.gauss(0.0, 0.25))


#: name -> (description, sampler)
SHAPES: dict[str, tuple[str, Sampler]] = {
    "constant": ("4 s every time", lambda rng, i, n: 4.0),
    "uniform": ("uniform in [1, 10] s", lambda rng, i, n: rng.uniform(1.0, 10.0)),
    "exponential": ("exponential, mean 4 s", lambda rng, i, n: rng.expovariate(0.25)),
    "bimodal": ("60 % near 1.5 s, 40 % near 12 s (log-normal sigma 0.2)", _bimodal),
    "pareto": ("Pareto, minimum 1 s, alpha 1.5", lambda rng, i, n: rng.paretovariate(1.5)),
    "lognormal 0.5": ("log-normal, median 3 s, sigma 0.5", _lognormal(3.0, 0.5)),
    "lognormal 1": ("log-normal, median 3 s, sigma 1", _lognormal(3.0, 1.0)),
    "lognormal 2": ("log-normal, median 3 s, sigma 2", _lognormal(3.0, 2.0)),
    "regime change": ("median 1 s, then 10 s from the middle (sigma 0.25)", _regime),
}


@dataclass(frozen=True)
class Result:
    """Per-job averages of one strategy over one set of jobs."""

    name: str
    polls: float
    mean_lag: float
    p95_lag: float

    @property
    def cost(self) -> float:
        return self.polls + self.mean_lag


def durations(shape: str, jobs: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    sampler = SHAPES[shape][1]
    return [max(sampler(rng, i, jobs), 0.0) for i in range(jobs)]


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


def config() -> LearningConfig:
    s = settings()
    return LearningConfig(max_delay=s.poll_max_delay, initial=s.poll_initial_delay)


@dataclass
class Store:
    """The shared state store: one value, updated by every finished job."""

    value: LearnedDurations
    writes: int = 0


@dataclass
class Instance:
    planner: SharedPlanner
    policy: PollPolicy
    read_at: float


def service(  # noqa: PLR0915 (one event loop: deliveries, polls, instance recycling)
    name: str,
    jobs: list[float],
    starts: list[float],
    seed: int,
    *,
    lifetime: int | None,
    store: Store | None = None,
) -> Result:
    """Run every job through `after_delete` / `after_poll`, in time order.

    `lifetime` None: no learning (the cold schedule). Otherwise a new instance every
    `lifetime` accepted jobs, each starting from the value in `store`.
    """
    learning = config()
    shared = store if store is not None else Store(LearnedDurations())
    rand = random.Random(seed + 3).random
    events: list[tuple[float, int, Step]] = []
    sequence = itertools.count()
    polls: list[int] = [0] * len(jobs)
    lags: list[float] = [0.0] * len(jobs)
    last_pending: list[float] = [0.0] * len(jobs)
    accepted = 0
    instance: Instance | None = None

    def start_instance(now: float) -> Instance:
        planner = SharedPlanner(learning)
        planner.update(shared.value)
        return Instance(planner, PollPolicy.from_settings(settings(), planner.plan), now)

    def policy_at(now: float) -> PollPolicy:
        nonlocal instance
        if lifetime is None:
            return PollPolicy.from_settings(settings())
        if instance is None:
            instance = start_instance(now)
        elif now - instance.read_at >= CACHE_SECONDS:
            instance.planner.update(shared.value)
            instance.read_at = now
        return instance.policy

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
            if lifetime is not None and accepted % lifetime == 0:
                instance = None  # scaled to zero; the next step starts a new instance
            accepted += 1
            act(after_delete(step, Job(f"j{index}"), now, policy_at(now), rand()), now, index)
            continue
        policy = policy_at(now)
        elapsed = now - step.accepted_at
        done = elapsed >= jobs[index]
        if lifetime is not None:
            if done:
                shared.value = shared.value.observe(last_pending[index], elapsed, learning)
                shared.writes += 1
            else:
                last_pending[index] = elapsed
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


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    """One shape with one instance lifetime: the service's result, and the plan it ended with."""

    lifetime: int
    service: Result
    final_poll_times: tuple[float, ...]


@dataclass(frozen=True)
class ShapeReport:
    shape: str
    description: str
    jobs: int
    baselines: tuple[Result, ...]  # JS, Ruby, google-api-core
    cold: Result  # the service without learning
    cells: tuple[Cell, ...]

    @property
    def best_official(self) -> Result:
        return min(self.baselines[:2], key=lambda r: r.cost)

    def ratio(self, cell: Cell) -> float:
        return cell.service.cost / self.best_official.cost


@dataclass(frozen=True)
class GridReport:
    shapes: tuple[ShapeReport, ...]
    lifetimes: tuple[int, ...]

    @property
    def ratios(self) -> list[float]:
        return [shape.ratio(cell) for shape in self.shapes for cell in shape.cells]

    @property
    def average_saving(self) -> float:
        """How much lower the service's cost is than the best official client's, on average
        over every cell (a fraction)."""
        return 1.0 - statistics.fmean(self.ratios)

    @property
    def every_cell_no_costlier(self) -> bool:
        return all(ratio <= 1.0 for ratio in self.ratios)


def run_shape(
    shape: str, jobs: int, seed: int, lifetimes: tuple[int, ...] = LIFETIMES
) -> ShapeReport:
    work = durations(shape, jobs, seed)
    starts = arrivals(jobs, seed)
    results = (
        baseline("JS client (1, 2, 3 s, ...)", js_client, work, seed),
        baseline("Ruby client (every 1 s)", ruby_client, work, seed),
        baseline("google-api-core (random, x1.5 to 20 s)", google_api_core, work, seed),
    )
    cold = service("service, cold schedule (nothing learned)", work, starts, seed, lifetime=None)
    cells = []
    for lifetime in lifetimes:
        store = Store(LearnedDurations())
        result = service(
            f"service, shared learning, {lifetime} job(s) per instance",
            work,
            starts,
            seed,
            lifetime=lifetime,
            store=store,
        )
        times = tuple(store.value.schedule or ())[:8]
        cells.append(Cell(lifetime, result, times))
    return ShapeReport(shape, SHAPES[shape][0], jobs, results, cold, tuple(cells))


def _run_one(args: tuple[str, int, int]) -> ShapeReport:
    return run_shape(*args)


def run(jobs: int = 2_000, seed: int = 20261128, workers: int = 2) -> GridReport:
    tasks = [(shape, jobs, seed + index) for index, shape in enumerate(SHAPES)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            shapes = tuple(pool.map(_run_one, tasks))
    else:
        shapes = tuple(map(_run_one, tasks))
    return GridReport(shapes, LIFETIMES)


if __name__ == "__main__":
    import sys
    import time

    began = time.monotonic()
    grid = run(jobs=int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
    for report in grid.shapes:
        best = report.best_official
        cells = "  ".join(
            f"L{c.lifetime}: {c.service.cost:6.2f} ({report.ratio(c):.3f})" for c in report.cells
        )
        print(
            f"{report.shape:14} JS {report.baselines[0].cost:6.2f} Ruby "
            f"{report.baselines[1].cost:6.2f} cold {report.cold.cost / best.cost:.3f} | {cells}"
        )
        print(f"{'':14} final plan: {report.cells[-1].final_poll_times}")
    print(
        f"average saving {grid.average_saving:.1%}; every cell <= 1: "
        f"{grid.every_cell_no_costlier}; {time.monotonic() - began:.0f} s"
    )
