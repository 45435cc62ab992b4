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
nothing, and the fixed schedule of `core.polling.PollPolicy` applies. A plan
replaces that cold schedule only when expected to cost `margin` less, both on the
estimate it was fitted to and out of sample (cross-validation, `validated_saving`:
the estimate flatters the plan fitted to it, most with heavy tails and wide
spreads). Everything here is deterministic given the observations it was fed.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.polling import cold_poll_times

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


@functools.lru_cache(maxsize=8)
def _smoother(grid: tuple[float, ...], bandwidth: float) -> list[list[tuple[int, float]]]:
    """For each cell, where a Gaussian kernel in log time spreads its mass: (cell, share).

    Cached: planning estimates several distributions on one grid (`validated_saving`)."""
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
    weights: Iterable[float] | None = None,
) -> tuple[float, ...]:
    """S at each grid point: P(duration > grid[i]), from interval-censored observations.

    Starts from each observation's weight spread evenly over its interval, then
    runs `iterations` steps of Turnbull's EM on the grid's cells, each followed by
    a Gaussian smoothing in log time (`bandwidth`; 0 turns it off): the EMS
    algorithm. Smoothing fills in the shape of the distribution inside intervals
    that the polls alone cannot resolve (when every job is polled at the same times).
    `weights` (one per observation; 1 each by default) let recent jobs count more.
    """
    counts: dict[tuple[int, int], float] = {}
    each = itertools.repeat(1.0) if weights is None else weights
    for observation, weight in zip(observations, each, strict=False):
        span = _cells(observation, grid)
        counts[span] = counts.get(span, 0.0) + weight
    cells = len(grid)
    total = sum(counts.values())
    if total <= 0.0:
        return (1.0,) * cells
    mass = [0.0] * cells
    for (first, last), count in counts.items():
        width = grid[last] - grid[first - 1]
        for k in range(first, last + 1):
            mass[k] += count * (grid[k] - grid[k - 1]) / width
    rows = _smoother(tuple(grid), bandwidth) if bandwidth > 0 else None
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
    observations: Sequence[Observation],
    *,
    max_delay: float,
    poll_cost: float = 1.0,
    weights: Sequence[float] | None = None,
) -> Plan:
    """Estimate the durations from `observations` (optionally `weights`), then plan for them.

    Grid points are at most half the maximum delay apart, so that every wait the plan
    may choose is allowed; the grid stops after `MAX_STEPS` such steps (past it, waits
    grow with the elapsed time, see `Plan.delay`).
    """
    grid = _grid_for(observations, max_delay)
    survival = estimate_survival(observations, grid, weights=weights)
    return optimal_plan(grid, survival, max_delay=max_delay, poll_cost=poll_cost)


def _grid_for(observations: Sequence[Observation], max_delay: float) -> tuple[float, ...]:
    max_step = max(max_delay / 2, MIN_STEP)
    horizon = min(max(o.high for o in observations) * (1 + HORIZON_MARGIN), MAX_STEPS * max_step)
    return time_grid(horizon, max_step=max_step)


# --------------------------------------------------------------------------- expected costs


@dataclass(frozen=True)
class Curve:
    """A survival function on a grid, with its integral: S(t) and G(t) = integral of S."""

    grid: tuple[float, ...]
    survival: tuple[float, ...]
    integral: tuple[float, ...]

    @classmethod
    def of(cls, grid: Sequence[float], survival: Sequence[float]) -> Curve:
        integral = [0.0]
        for i in range(1, len(grid)):
            step = (grid[i] - grid[i - 1]) * (survival[i - 1] + survival[i]) / 2
            integral.append(integral[-1] + step)
        return cls(tuple(grid), tuple(survival), tuple(integral))

    def at(self, t: float) -> tuple[float, float]:
        """(S(t), G(t)), S linear between grid points and constant past the last."""
        grid, survival = self.grid, self.survival
        i = bisect.bisect_right(grid, t) - 1
        if i >= len(grid) - 1:
            return survival[-1], self.integral[-1] + (t - grid[-1]) * survival[-1]
        i = max(i, 0)
        share = (t - grid[i]) / (grid[i + 1] - grid[i])
        s = survival[i] + share * (survival[i + 1] - survival[i])
        return s, self.integral[i] + (t - grid[i]) * (survival[i] + s) / 2

    def cost(self, times: Iterable[float], poll_cost: float = 1.0) -> float:
        """E[poll_cost * polls + lag] of polling at `times` (increasing, reaching past the grid).

        Poll k happens when the job is pending at poll k - 1 (probability S(t_{k-1})); a job
        finishing in (t_{k-1}, t_k] waits t_k - its duration.
        """
        total, previous = 0.0, 0.0
        s_prev, g_prev = self.at(0.0)
        for t in times:
            if t <= previous:
                continue
            s, g = self.at(t)
            total += s_prev * (poll_cost + t - previous) - (g - g_prev)
            previous, s_prev, g_prev = t, s, g
            if t >= self.grid[-1] or s_prev <= 1e-12:
                break
        first = self.survival[0]
        return total / first if first > 0 else 0.0


def extend(times: Sequence[float], until: float, max_delay: float) -> list[float]:
    """`times`, then the waits past every job seen (`TAIL_FRACTION` of the elapsed time,
    at most `max_delay`), up to the first at or after `until`."""
    out = list(times)
    at = out[-1] if out else 0.0
    while at < until:
        at += min(max_delay, max(MIN_STEP, TAIL_FRACTION * at))
        out.append(at)
    return out


# --------------------------------------------------------------------------- shared knowledge


@dataclass(frozen=True)
class LearningConfig:
    """How observations are weighed and when a schedule is planned from them.

    `initial` and `max_delay` must be the poll settings (`POLL_INITIAL_DELAY_SECONDS`,
    `POLL_MAX_DELAY_SECONDS`): a plan is kept only if it is expected to cost less than
    the cold schedule they describe.
    """

    max_delay: float = 30.0
    initial: float = 1.0
    poll_cost: float = 1.0
    #: An observation weighs half as much after this many newer ones: a change in the
    #: durations shows in the plan within a few dozen jobs.
    half_life: float = 24.0
    #: The newest observations kept (the oldest then weigh 0.5 ** (keep / half_life)).
    keep: int = 120
    #: Below this many observations, the cold schedule applies.
    min_observations: int = 10
    #: Plan again once this many observations arrived since the last plan.
    refresh: int = 8
    #: Planned poll times kept (past them, waits grow with the elapsed time).
    max_times: int = 64
    #: A plan is kept only when expected to cost this much less than the cold schedule
    #: (a plan looks better on the observations it was fitted to than it will do).
    margin: float = 0.05
    #: Cross-validation folds for the check that the saving holds out of sample
    #: (`validated_saving`); 0 or 1, or fewer observations than folds: no such check.
    folds: int = 2


DEFAULT_CONFIG = LearningConfig()
JSON_VERSION = 1


def _ms(value: float) -> float:
    return round(value, 3)


@dataclass(frozen=True)
class LearnedDurations:
    """What every instance knows of job durations: a small value kept in one shared document.

    `recent`: the newest finished jobs as (low, high] intervals, oldest first; the
    newest weighs 1, each older one `0.5 ** (1 / half_life)` times the next.
    `seen`: how many were ever added. `schedule`: the poll times (seconds after
    acceptance) planned from them when `seen` was `planned_at`, or None when the
    cold schedule is expected to cost as little (or too few jobs were seen).

    Every change returns a new value (for a compare-and-set loop: read the document,
    `observe` or `observe_all`, write it back if nobody wrote meanwhile, else retry
    from the newer document). Planning runs there, every `refresh` observations
    (a few milliseconds), so that readers only look the next poll time up.
    """

    recent: tuple[tuple[float, float], ...] = ()
    seen: int = 0
    schedule: tuple[float, ...] | None = None
    planned_at: int = 0

    def observe(
        self, low: float, high: float, config: LearningConfig = DEFAULT_CONFIG
    ) -> LearnedDurations:
        """With one more job, finished after `low` and by `high` seconds after acceptance
        (`low`: the last poll that saw it pending, 0 if none; `high`: the poll that saw it
        done); planned again when due."""
        return self.observe_all([(low, high)], config)

    def observe_all(
        self, intervals: Iterable[tuple[float, float]], config: LearningConfig = DEFAULT_CONFIG
    ) -> LearnedDurations:
        """With several more jobs (a batch of writes), planned again when due."""
        added = self.add(intervals, config)
        return added.replan(config) if added.due(config) else added

    def add(
        self, intervals: Iterable[tuple[float, float]], config: LearningConfig = DEFAULT_CONFIG
    ) -> LearnedDurations:
        """With more jobs, without planning (see `due` and `replan`)."""
        new = []
        for low, high in intervals:
            o = Observation.of(low, high)
            new.append((_ms(o.low), _ms(o.high)))
        if not new:
            return self
        recent = (*self.recent, *new)[-max(config.keep, 1) :]
        return LearnedDurations(recent, self.seen + len(new), self.schedule, self.planned_at)

    def due(self, config: LearningConfig = DEFAULT_CONFIG) -> bool:
        """Whether enough arrived since the last plan to plan again."""
        if len(self.recent) < config.min_observations:
            return self.schedule is not None
        return self.planned_at == 0 or self.seen - self.planned_at >= config.refresh

    def replan(self, config: LearningConfig = DEFAULT_CONFIG) -> LearnedDurations:
        """The same observations with a schedule planned from them."""
        return LearnedDurations(self.recent, self.seen, plan_schedule(self, config), self.seen)

    def weights(self, config: LearningConfig = DEFAULT_CONFIG) -> list[float]:
        decay = 0.5 ** (1.0 / config.half_life)
        count = len(self.recent)
        return [decay ** (count - 1 - i) for i in range(count)]

    def to_json(self) -> str:
        """Compact JSON (a few KB at most)."""
        document: dict[str, object] = {
            "v": JSON_VERSION,
            "seen": self.seen,
            "recent": [list(pair) for pair in self.recent],
            "schedule": list(self.schedule) if self.schedule is not None else None,
            "planned_at": self.planned_at,
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> LearnedDurations:
        """The value `to_json` wrote; ValueError when it is not one (start afresh then)."""
        try:
            document = json.loads(text)
            if document["v"] != JSON_VERSION:
                raise ValueError(f"unknown version {document['v']!r}")
            recent = tuple((float(low), float(high)) for low, high in document["recent"])
            schedule = document["schedule"]
            times = tuple(float(t) for t in schedule) if schedule is not None else None
            seen, planned_at = int(document["seen"]), int(document["planned_at"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not learned durations: {error}") from error
        if any(not (0.0 <= low <= high < math.inf) for low, high in recent):
            raise ValueError("not learned durations: an interval is out of order")
        if times is not None and any(not (0.0 < t < math.inf) for t in times):
            raise ValueError("not learned durations: a poll time is out of range")
        if times is not None and any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("not learned durations: poll times are not increasing")
        return cls(recent, max(seen, len(recent)), times, max(planned_at, 0))


def plan_schedule(
    value: LearnedDurations, config: LearningConfig = DEFAULT_CONFIG
) -> tuple[float, ...] | None:
    """The poll times planned from `value`'s observations, or None (the cold schedule) when
    fewer than `min_observations` were seen or the plan is not expected to cost `margin`
    less than the cold schedule, both on the estimated distribution and out of sample
    (`validated_saving`)."""
    if len(value.recent) < config.min_observations:
        return None
    observations = [Observation(low, high) for low, high in value.recent]
    weights = value.weights(config)
    grid = _grid_for(observations, config.max_delay)
    survival = estimate_survival(observations, grid, weights=weights)
    times = _planned_times(grid, survival, config)
    curve = Curve.of(grid, survival)
    learned, cold = _costs(curve, times, config)
    if not times or learned >= cold * (1.0 - config.margin):
        return None
    if (
        2 <= config.folds <= len(observations)
        and validated_saving(observations, weights, config) < config.margin
    ):
        return None
    return tuple(times)


def _planned_times(
    grid: Sequence[float], survival: Sequence[float], config: LearningConfig
) -> list[float]:
    plan = optimal_plan(grid, survival, max_delay=config.max_delay, poll_cost=config.poll_cost)
    times = [_ms(t) for t in plan.poll_times(config.max_times)]
    return [t for t, before in zip(times, [0.0, *times], strict=False) if t > before]


def _costs(curve: Curve, times: Sequence[float], config: LearningConfig) -> tuple[float, float]:
    """The expected cost per job of `times` (extended past the grid) and of the cold schedule."""
    end = curve.grid[-1]
    learned = curve.cost(extend(times, end, config.max_delay), config.poll_cost)
    cold = curve.cost(cold_poll_times(config.initial, config.max_delay, end), config.poll_cost)
    return learned, cold


def validated_saving(
    observations: Sequence[Observation], weights: Sequence[float], config: LearningConfig
) -> float:
    """The saving over the cold schedule (a fraction of its cost) of plans learned from part
    of the observations, estimated on the rest: `folds`-fold cross-validation (observation i
    in fold i mod `folds`; 0 when there are fewer observations than folds).

    A plan looks better on the observations it was fitted to than it does on new jobs: it is
    tuned to their noise, and where its own long waits left the durations unresolved (all
    that is known is "between these two polls"), the estimate there is a guess that the
    plan's choices suit. Heavy tails and wide spreads make both worse. Out of sample,
    neither flatters the plan: a saving that survives is one to expect."""
    folds = max(config.folds, 2)
    count = len(observations)
    fits: dict[tuple[int, ...], Curve] = {}

    def fit(indices: tuple[int, ...]) -> Curve:
        """The estimate from these observations alone, on their own grid (with 2 folds, each
        half is fitted once: the training set of one fold is the test set of the other)."""
        if indices not in fits:
            chosen = [observations[i] for i in indices]
            grid = _grid_for(chosen, config.max_delay)
            survival = estimate_survival(chosen, grid, weights=[weights[i] for i in indices])
            fits[indices] = Curve.of(grid, survival)
        return fits[indices]

    learned_total = cold_total = 0.0
    for fold in range(folds):
        train = tuple(i for i in range(count) if i % folds != fold)
        test = tuple(i for i in range(count) if i % folds == fold)
        if not train or not test:
            return 0.0
        fitted = fit(train)
        # Planned as from the training observations alone: past the slowest of them, waits
        # grow with the elapsed time.
        times = _planned_times(fitted.grid, fitted.survival, config)
        learned, cold = _costs(fit(test), times, config)
        share = sum(weights[i] for i in test)
        learned_total += share * learned
        cold_total += share * cold
    return 1.0 - learned_total / cold_total if cold_total > 0 else 0.0


@dataclass(frozen=True)
class LearnedSchedule:
    """A planner (`core.polling.Planner`) reading poll times planned from shared knowledge."""

    times: tuple[float, ...] | None
    max_delay: float

    @classmethod
    def of(
        cls, value: LearnedDurations, config: LearningConfig = DEFAULT_CONFIG
    ) -> LearnedSchedule:
        return cls(value.schedule, config.max_delay)

    def delay(self, elapsed: float) -> float | None:
        """Seconds from `elapsed` to the next planned poll; None: the cold schedule applies."""
        times = self.times
        if not times:
            return None
        i = bisect.bisect_right(times, elapsed + TOLERANCE)
        if i < len(times):
            return times[i] - elapsed
        return min(self.max_delay, max(MIN_STEP, TAIL_FRACTION * elapsed))

    def plan(self, elapsed: float, polls: int) -> float | None:
        """The `core.polling.Planner`: it depends on the time a job has run, not on `polls`."""
        del polls
        return self.delay(elapsed)

    def poll_times(self, limit: int = 12) -> list[float]:
        return list(self.times[:limit]) if self.times else []


class SharedPlanner:
    """The planner of one instance, following the shared value it is given.

    Give `plan` to `PollPolicy(planner=...)`; call `update` with each value read from or
    written to the store (a cached copy: the store is not read here). A value that is not
    newer (by `seen`) than the one held is ignored; the schedule is rebuilt only when the
    value changed.
    """

    def __init__(self, config: LearningConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._value = LearnedDurations()
        self._schedule = LearnedSchedule.of(self._value, config)

    def update(self, value: LearnedDurations) -> None:
        current = self._value  # one reference read and one write: no lock needed
        if value == current or value.seen < current.seen:
            return
        self._value, self._schedule = value, LearnedSchedule.of(value, self.config)

    @property
    def value(self) -> LearnedDurations:
        return self._value

    def plan(self, elapsed: float, polls: int) -> float | None:
        return self._schedule.plan(elapsed, polls)


class PollLearner:
    """One process's knowledge of job durations, and the poll plan learned from it.

    Feed it what the polls saw (`saw_pending`, `saw_done`, or `observe` directly);
    give `plan` to `PollPolicy(planner=...)`. It keeps a `LearnedDurations` (`value`),
    which can also be shared (`adopt` a newer one read from a store). Thread-safe;
    memory is bounded by `window` observations and `tracked` pending jobs. Planning
    runs outside the lock, one at a time.
    """

    def __init__(
        self,
        *,
        max_delay: float,
        poll_cost: float = 1.0,
        window: int = DEFAULT_CONFIG.keep,
        min_observations: int = DEFAULT_CONFIG.min_observations,
        refresh: int = DEFAULT_CONFIG.refresh,
        tracked: int = 10_000,
        initial: float = DEFAULT_CONFIG.initial,
        half_life: float = DEFAULT_CONFIG.half_life,
    ) -> None:
        self.config = LearningConfig(
            max_delay=max_delay,
            initial=initial,
            poll_cost=poll_cost,
            half_life=half_life,
            keep=window,
            min_observations=min_observations,
            refresh=refresh,
        )
        self._value = LearnedDurations()
        self._schedule = LearnedSchedule.of(self._value, self.config)
        self._pending: OrderedDict[str, float] = OrderedDict()
        self._tracked = tracked
        self._computing = False
        self._lock = threading.Lock()

    def observe(self, low: float, high: float) -> None:
        """A job finished after `low` and by `high` seconds after its acceptance."""
        with self._lock:
            self._value = self._value.add([(low, high)], self.config)
            if self._computing or not self._value.due(self.config):
                return
            self._computing = True
            snapshot = self._value
        try:
            planned = snapshot.replan(self.config)
        finally:
            with self._lock:
                self._computing = False
        with self._lock:
            value = self._value
            self._value = LearnedDurations(
                value.recent, value.seen, planned.schedule, planned.planned_at
            )
            self._schedule = LearnedSchedule.of(self._value, self.config)

    def adopt(self, value: LearnedDurations) -> None:
        """Take `value` (read from a shared store) if it is newer than what is held."""
        with self._lock:
            if value.seen > self._value.seen:
                self._value = value
                self._schedule = LearnedSchedule.of(value, self.config)

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
        """The `core.polling.Planner`: the next delay, or None (the cold schedule applies)."""
        return self._schedule.plan(elapsed, polls)

    @property
    def current(self) -> LearnedSchedule | None:
        """The schedule in use (None: the cold schedule applies)."""
        with self._lock:
            schedule = self._schedule
        return schedule if schedule.times else None

    @property
    def value(self) -> LearnedDurations:
        with self._lock:
            return self._value

    @property
    def observations(self) -> int:
        """Observations kept (at most `window`)."""
        with self._lock:
            return len(self._value.recent)

    @property
    def seen(self) -> int:
        """Observations ever made."""
        with self._lock:
            return self._value.seen
