"""A poll schedule learned from the jobs already seen finishing: pure computation, no I/O.

What one job costs is the number of polls it takes plus the seconds between the
moment it finished and the poll that saw it done (`poll_cost` seconds of lag
weigh as much as one poll). Given the distribution of job durations, the
schedule that minimises the expected cost is found by dynamic programming over
a time grid, conditional on "still pending at t" (an optimal stopping problem):

    W(t) = min over t < s <= t + max_delay of
           S(t) * (poll_cost + s - t) - (G(s) - G(t)) + W(s)

where S(t) = P(duration > t), G(s) = integral of S from 0 to s, and
W(t) = S(t) * (expected remaining cost when still pending at t). The argmin is
the time of the next poll.

The durations are not known exactly: a job finished somewhere between the last
poll that saw it pending (`low`, 0 when none did) and the poll that saw it done
(`high`). `estimate_survival` turns such interval-censored observations into a
distribution with a few steps of Turnbull's EM (the nonparametric maximum
likelihood estimate; stopping early keeps it smooth).

`PollLearner` holds the state of one process: the last `window` observations,
the jobs it saw pending, and a cached `Plan` that it recomputes after every
`refresh` new observations. Until `min_observations` jobs were seen it plans
nothing, and the fixed schedule of `core.polling.PollPolicy` applies. Everything
here is deterministic given the observations it was fed.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Finest spacing of the time grid (seconds) and its relative spacing further out.
MIN_STEP = 0.05
RELATIVE_STEP = 0.025
#: How far past the longest observation the grid reaches (a fraction of it).
HORIZON_MARGIN = 0.1
EM_ITERATIONS = 8
#: Standard deviation, in log time, of the smoothing kernel (0.15: about +-15 %).
BANDWIDTH = 0.15
#: The grid spans at most this many of its largest steps (half the maximum delay).
MAX_STEPS = 400
#: Seconds within which two times count as the same.
TOLERANCE = 1e-3
#: Past the grid (a job slower than every one seen), wait this fraction of the elapsed time.
TAIL_FRACTION = 0.25


@dataclass(frozen=True)
class Observation:
    """A finished job: it was done after `low` and by `high` seconds after acceptance."""

    low: float
    high: float

    @classmethod
    def of(cls, low: float, high: float) -> Observation:
        high = max(high, 0.0)
        return cls(min(max(low, 0.0), high), high)


def time_grid(
    horizon: float,
    *,
    min_step: float = MIN_STEP,
    relative_step: float = RELATIVE_STEP,
    max_step: float = math.inf,
) -> tuple[float, ...]:
    """Grid points from 0 to at least `horizon`: `min_step` apart near 0, then geometric,
    never more than `max_step` apart."""
    points = [0.0]
    while points[-1] < horizon:
        points.append(points[-1] + min(max(min_step, relative_step * points[-1]), max_step))
    if len(points) == 1:
        points.append(min_step)
    return tuple(points)


def _cells(observation: Observation, grid: Sequence[float]) -> tuple[int, int]:
    """The grid cells (k: the span (grid[k-1], grid[k]]) an observation covers: [first, last]."""
    last_index = len(grid) - 1
    first = min(max(bisect.bisect_right(grid, observation.low + 1e-9), 1), last_index)
    last = min(max(bisect.bisect_left(grid, observation.high - 1e-9), first), last_index)
    return first, last


def _smoother(grid: Sequence[float], bandwidth: float) -> list[list[tuple[int, float]]]:
    """For each cell, where a Gaussian kernel in log time spreads its mass: (cell, share)."""
    cells = len(grid)
    centre = [0.0] + [math.log((grid[k - 1] + grid[k]) / 2) for k in range(1, cells)]
    width = [0.0] * cells
    for k in range(1, cells):
        left = centre[max(k - 1, 1)]
        right = centre[min(k + 1, cells - 1)]
        width[k] = max(right - left, 1e-9) / max(min(k + 1, cells - 1) - max(k - 1, 1), 1)
    rows: list[list[tuple[int, float]]] = [[]]
    for k in range(1, cells):
        first = max(bisect.bisect_left(centre, centre[k] - 3 * bandwidth, 1), 1)
        last = min(bisect.bisect_right(centre, centre[k] + 3 * bandwidth, 1), cells)
        weights = [
            (j, math.exp(-0.5 * ((centre[j] - centre[k]) / bandwidth) ** 2) * width[j])
            for j in range(first, last)
        ]
        total = sum(weight for _, weight in weights) or 1.0
        rows.append([(j, weight / total) for j, weight in weights])
    return rows


def estimate_survival(  # noqa: PLR0912 (one estimator, read top to bottom)
    observations: Iterable[Observation],
    grid: Sequence[float],
    *,
    iterations: int = EM_ITERATIONS,
    bandwidth: float = BANDWIDTH,
) -> tuple[float, ...]:
    """S at each grid point: P(duration > grid[i]), from interval-censored observations.

    Starts from each observation's weight spread evenly over its interval, then
    runs `iterations` steps of Turnbull's EM on the grid's cells, each followed by
    a Gaussian smoothing in log time (`bandwidth`; 0 turns it off): the EMS
    algorithm. Smoothing fills in the shape of the distribution inside intervals
    that the polls alone cannot resolve (when every job is polled at the same times).
    """
    counts: dict[tuple[int, int], int] = {}
    for observation in observations:
        span = _cells(observation, grid)
        counts[span] = counts.get(span, 0) + 1
    cells = len(grid)
    total = sum(counts.values())
    if total == 0:
        return (1.0,) * cells
    mass = [0.0] * cells
    for (first, last), count in counts.items():
        width = grid[last] - grid[first - 1]
        for k in range(first, last + 1):
            mass[k] += count * (grid[k] - grid[k - 1]) / width
    rows = _smoother(grid, bandwidth) if bandwidth > 0 else None
    for _ in range(iterations):
        updated = [0.0] * cells
        for (first, last), count in counts.items():
            covered = sum(mass[first : last + 1])
            if covered <= 0.0:
                continue
            share = count / covered
            for k in range(first, last + 1):
                updated[k] += mass[k] * share
        if rows is not None:
            smoothed = [0.0] * cells
            for k in range(1, cells):
                if updated[k] > 0.0:
                    for j, weight in rows[k]:
                        smoothed[j] += updated[k] * weight
            updated = smoothed
        mass = updated
    survival = [1.0] * cells
    remaining = float(total)
    for i in range(cells):
        remaining -= mass[i]
        survival[i] = min(max(remaining / total, 0.0), 1.0)
    return tuple(survival)


@dataclass(frozen=True)
class Plan:
    """For each grid point t (still pending at t), the grid index of the next poll."""

    grid: tuple[float, ...]
    next_index: tuple[int, ...]
    expected_cost: float  # polls + lag per job, as the estimate predicts
    max_delay: float

    def delay(self, elapsed: float) -> float:
        """Seconds from `elapsed` to the next planned poll."""
        last = len(self.grid) - 1
        if elapsed >= self.grid[last]:
            return min(self.max_delay, max(MIN_STEP, TAIL_FRACTION * elapsed))
        # A poll that ran a hair early (clock rounding) counts as on time.
        i = max(bisect.bisect_right(self.grid, elapsed + TOLERANCE) - 1, 0)
        return max(self.grid[self.next_index[i]] - elapsed, TOLERANCE)

    def poll_times(self, limit: int = 12) -> list[float]:
        """The planned poll times of a job, in seconds after acceptance (the first `limit`)."""
        times: list[float] = []
        i = 0
        while len(times) < limit and i < len(self.grid) - 1:
            i = self.next_index[i]
            times.append(self.grid[i])
        return times


def optimal_plan(
    grid: Sequence[float],
    survival: Sequence[float],
    *,
    max_delay: float,
    poll_cost: float = 1.0,
) -> Plan:
    """The schedule minimising E[poll_cost * polls + lag], by dynamic programming on `grid`."""
    n = len(grid)
    integral = [0.0] * n  # G: the integral of S from 0 to grid[i] (trapezoids)
    for i in range(1, n):
        integral[i] = (
            integral[i - 1] + (grid[i] - grid[i - 1]) * (survival[i - 1] + survival[i]) / 2
        )
    value = [0.0] * n  # W
    next_index = [n - 1] * n
    reach = n - 1  # the furthest index within max_delay of grid[i]; moves left with i
    for i in range(n - 2, -1, -1):
        while reach > i + 1 and grid[reach] - grid[i] > max_delay + 1e-9:
            reach -= 1
        s_i = survival[i]
        best, best_j = math.inf, i + 1
        for j in range(i + 1, reach + 1):
            candidate = s_i * grid[j] - integral[j] + value[j]
            if candidate < best:
                best, best_j = candidate, j
        value[i] = best + s_i * (poll_cost - grid[i]) + integral[i]
        next_index[i] = best_j
    cost = value[0] / survival[0] if survival[0] > 0 else 0.0
    return Plan(tuple(grid), tuple(next_index), cost, max_delay)


def learn_plan(
    observations: Sequence[Observation], *, max_delay: float, poll_cost: float = 1.0
) -> Plan:
    """Estimate the durations from `observations`, then plan for them.

    Grid points are at most half the maximum delay apart, so that every wait the plan
    may choose is allowed; the grid stops after `MAX_STEPS` such steps (past it, waits
    grow with the elapsed time, see `Plan.delay`).
    """
    max_step = max(max_delay / 2, MIN_STEP)
    horizon = min(max(o.high for o in observations) * (1 + HORIZON_MARGIN), MAX_STEPS * max_step)
    grid = time_grid(horizon, max_step=max_step)
    survival = estimate_survival(observations, grid)
    return optimal_plan(grid, survival, max_delay=max_delay, poll_cost=poll_cost)


class PollLearner:
    """One process's knowledge of job durations, and the poll plan learned from it.

    Feed it what the polls saw (`saw_pending`, `saw_done`, or `observe` directly);
    give `plan` to `PollPolicy(planner=...)`. Thread-safe; memory is bounded by
    `window` observations and `tracked` pending jobs.
    """

    def __init__(
        self,
        *,
        max_delay: float,
        poll_cost: float = 1.0,
        window: int = 1000,
        min_observations: int = 20,
        refresh: int = 250,
        tracked: int = 10_000,
    ) -> None:
        self.max_delay = max_delay
        self.poll_cost = poll_cost
        self.min_observations = min_observations
        self.refresh = refresh
        self._observations: deque[Observation] = deque(maxlen=window)
        self._pending: OrderedDict[str, float] = OrderedDict()
        self._tracked = tracked
        self._fresh = 0
        self._plan: Plan | None = None
        self._computing = False
        self._lock = threading.Lock()

    def observe(self, low: float, high: float) -> None:
        """A job finished after `low` and by `high` seconds after its acceptance.

        Every `refresh` observations the plan is computed again, outside the lock (one
        computation at a time; calls to `plan` meanwhile use the previous one).
        """
        with self._lock:
            self._observations.append(Observation.of(low, high))
            self._fresh += 1
            if self._computing or not self._due():
                return
            self._computing = True
            self._fresh = 0
            snapshot = list(self._observations)
        try:
            plan = learn_plan(snapshot, max_delay=self.max_delay, poll_cost=self.poll_cost)
        finally:
            with self._lock:
                self._computing = False
        with self._lock:
            self._plan = plan

    def _due(self) -> bool:
        seen = len(self._observations)
        if seen < self.min_observations:
            return False
        if self._plan is None:
            return True
        # Early on every `min_observations`, then every quarter of the window, at most `refresh`.
        return self._fresh >= max(self.min_observations, min(seen // 4, self.refresh))

    def saw_pending(self, job_id: str, elapsed: float) -> None:
        """A poll `elapsed` seconds after acceptance found job `job_id` still running."""
        with self._lock:
            self._pending[job_id] = max(elapsed, self._pending.pop(job_id, 0.0))
            while len(self._pending) > self._tracked:
                self._pending.popitem(last=False)

    def saw_done(self, job_id: str, elapsed: float) -> None:
        """A poll `elapsed` seconds after acceptance found job `job_id` final.

        The job finished after the last pending poll this process saw (0 if none).
        """
        with self._lock:
            low = self._pending.pop(job_id, 0.0)
        self.observe(low, elapsed)

    def plan(self, elapsed: float, polls: int) -> float | None:
        """The `core.polling.Planner`: the next delay, or None before enough was learned."""
        del polls  # the plan depends on the time a job has run, not on how often it was polled
        with self._lock:
            plan = self._plan
        return plan.delay(elapsed) if plan is not None else None

    @property
    def current(self) -> Plan | None:
        """The plan in use (None: the fixed schedule applies)."""
        with self._lock:
            return self._plan

    @property
    def observations(self) -> int:
        with self._lock:
            return len(self._observations)
