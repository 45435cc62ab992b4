"""When to ask DatoCMS again: pure functions of counts, bounds, elapsed time and a jitter value.

The cold schedule (`PollPolicy.from_settings`, nothing learned yet) polls when
the official JS client would: after waits of `initial`, 2 x `initial`,
3 x `initial`, ... (polls at 1, 3, 6, 10, ... s after acceptance with the
default 1 s), each wait capped at `maximum`. It is the schedule that never loses
to that client: a job of duration d costs polls + lag = (the number of polls
up to the first at or after d) + (that poll's time - d). A schedule that costs
no more than the JS client's for every d must poll exactly at the JS times: at
d = T_1 the JS client pays 1, so a first poll must land at T_1; then at d = T_2
it pays 2, so the second must land at T_2, and so on. Any earlier poll is a
wasted poll for some d, any later one is lag for some d; what holds for every d
holds for every distribution of d. So the cold schedule is not jittered: its
polls are anchored on each request's own acceptance time (requests accepted
together still poll together; the DatoCMS client paces its calls), and they are
computed from the elapsed time, so a late poll does not shift the ones after it.

A `planner` (for instance `core.learning.PollLearner.plan`, learned from the
jobs seen finishing) may replace the cold schedule; its waits are spread late
only, by up to `jitter` (a few percent of lag, never a poll before the planned
time), and capped at `maximum`.

`PollPolicy(...)` built directly, with `linear=False`, keeps the former fixed
schedule: `initial`, then x`growth`, spread by +-`jitter`.

Errors (429, 5xx, timeouts) back off exponentially, never sooner than the wait
DatoCMS announced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

#: Learned knowledge: given the seconds since the deletion was accepted and the
#: polls made so far, the next delay, or None to fall back on the cold schedule.
Planner = Callable[[float, int], float | None]

#: A poll that ran up to this fraction of `initial` before a cold-schedule time
#: counts as that poll (clock skew between the queue and the function).
COLD_TOLERANCE = 0.25


def cold_poll_times(initial: float, maximum: float, until: float) -> list[float]:
    """The cold schedule's poll times (seconds after acceptance) up to the first at or after
    `until`: waits `initial`, 2 x `initial`, ... each capped at `maximum`."""
    times: list[float] = []
    at, wait = 0.0, 0
    while not times or times[-1] < until:
        wait += 1
        at += min(wait * initial, maximum)
        times.append(at)
    return times


def next_cold_time(initial: float, maximum: float, elapsed: float) -> float:
    """The first cold-schedule poll time after `elapsed` (within `COLD_TOLERANCE`)."""
    if initial <= 0.0:
        return max(elapsed, 0.0)
    after = elapsed + COLD_TOLERANCE * initial
    # Uncapped part: T_k = initial * k (k + 1) / 2 for waits k * initial <= maximum.
    uncapped = max(int(maximum // initial), 1) if maximum >= initial else 0
    if uncapped:
        k = max(math.ceil((math.sqrt(1.0 + 8.0 * after / initial) - 1.0) / 2.0), 1)
        while initial * k * (k + 1) / 2 <= after:
            k += 1
        while k > 1 and initial * (k - 1) * k / 2 > after:
            k -= 1
        if k <= uncapped:
            return initial * k * (k + 1) / 2
    last = initial * uncapped * (uncapped + 1) / 2
    step = min(maximum, initial) if not uncapped else maximum
    steps = math.floor((after - last) / step) + 1
    return last + max(steps, 1) * step


@dataclass(frozen=True)
class PollPolicy:
    """The polling schedule and the deadline of one request."""

    initial: float
    maximum: float
    timeout: float
    growth: float = 1.5
    jitter: float = 0.1
    planner: Planner | None = None
    #: The cold schedule: the JS client's linear waits, unjittered (see the module docstring).
    linear: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, planner: Planner | None = None) -> PollPolicy:
        """The policy the `POLL_*` settings describe, with an optional learned `planner`;
        without a plan, the cold schedule (the JS client's poll times)."""
        return cls(
            initial=settings.poll_initial_delay,
            maximum=settings.poll_max_delay,
            timeout=settings.poll_timeout,
            planner=planner,
            linear=True,
        )

    def delay_after(self, polls: int, rand: float, *, elapsed: float = 0.0) -> float:
        """Seconds to wait before the next poll, after `polls` answers saying "pending",
        `elapsed` seconds after the deletion was accepted."""
        if self.planner is not None:
            planned = self.planner(elapsed, polls)
            if planned is not None:
                late = max(planned, 0.0) * (1.0 + self.jitter * min(max(rand, 0.0), 1.0))
                return min(late, self.maximum)
        if self.linear:
            return max(next_cold_time(self.initial, self.maximum, elapsed) - elapsed, 0.0)
        base = min(self.initial * self.growth ** max(polls - 1, 0), self.maximum)
        return self._spread(base, rand)

    def retry_delay(self, failures: int, retry_after: float | None, rand: float) -> float:
        """Seconds to wait after the `failures`-th consecutive retryable error."""
        base = min(max(self.initial, 1.0) * 2 ** max(failures - 1, 0), max(self.maximum, 1.0))
        spread = self._spread(base, rand)
        return max(spread, retry_after or 0.0)

    def _spread(self, base: float, rand: float) -> float:
        return max(0.0, base * (1.0 + self.jitter * (2.0 * rand - 1.0)))
