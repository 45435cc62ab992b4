"""When to ask DatoCMS again: pure functions of counts, bounds and a jitter value.

Polls start `initial` seconds after the deletion was accepted, then the wait
grows geometrically up to `maximum`, each wait spread by ±`jitter` so that many
requests accepted together do not poll in lockstep. A `planner` (for instance
`core.learning.PollLearner.plan`, learned from the jobs seen finishing) may
replace that schedule; its waits are spread and capped the same way. Errors
(429, 5xx, timeouts) back off exponentially, never sooner than the wait DatoCMS
announced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

#: Learned knowledge: given the seconds since the deletion was accepted and the
#: polls made so far, the next delay, or None to fall back on the fixed schedule.
Planner = Callable[[float, int], float | None]


@dataclass(frozen=True)
class PollPolicy:
    """The polling schedule and the deadline of one request."""

    initial: float
    maximum: float
    timeout: float
    growth: float = 1.5
    jitter: float = 0.1
    planner: Planner | None = None

    @classmethod
    def from_settings(cls, settings: Settings, planner: Planner | None = None) -> PollPolicy:
        """The policy the `POLL_*` settings describe, with an optional learned `planner`."""
        return cls(
            initial=settings.poll_initial_delay,
            maximum=settings.poll_max_delay,
            timeout=settings.poll_timeout,
            planner=planner,
        )

    def delay_after(self, polls: int, rand: float, *, elapsed: float = 0.0) -> float:
        """Seconds to wait before the next poll, after `polls` answers saying "pending",
        `elapsed` seconds after the deletion was accepted."""
        if self.planner is not None:
            planned = self.planner(elapsed, polls)
            if planned is not None:
                return min(self._spread(max(planned, 0.0), rand), self.maximum)
        base = min(self.initial * self.growth ** max(polls - 1, 0), self.maximum)
        return self._spread(base, rand)

    def retry_delay(self, failures: int, retry_after: float | None, rand: float) -> float:
        """Seconds to wait after the `failures`-th consecutive retryable error."""
        base = min(max(self.initial, 1.0) * 2 ** max(failures - 1, 0), max(self.maximum, 1.0))
        spread = self._spread(base, rand)
        return max(spread, retry_after or 0.0)

    def _spread(self, base: float, rand: float) -> float:
        return max(0.0, base * (1.0 + self.jitter * (2.0 * rand - 1.0)))
