"""Job durations learned by every instance, kept in one shared document of the state store.

`poll_job` adds each finished job's interval (the last poll that saw it running, the
poll that saw it done: both carried on the signed task) by compare-and-set. Every
instance plans from a cached copy, refreshed in the background at most every
`REFRESH_SECONDS`: no request ever waits for the store on its account. `core.learning`
is first imported by that refresh (or by `poll_job` sharing an observation), never by
the intake's first request, which plans with the cold schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.log import Log
from core.errors import StateUnavailable
from core.state import Document, StateStore, upsert

if TYPE_CHECKING:
    from core.learning import LearnedDurations, SharedPlanner

KEY = "job-durations"
REFRESH_SECONDS = 30.0
#: A new instance's first refresh waits this long: its first request (a cold start) would
#: otherwise share the CPU with importing `core.learning` and reading the store, for a
#: planner that cannot serve that request anyway (it plans before any refresh ends).
FIRST_REFRESH_DELAY = 0.5
KEEP_SECONDS = 30 * 86400.0  # an unused estimate ages out with the store's TTL


class SharedLearning:
    """The planner of this instance, following the shared estimate of job durations."""

    def __init__(
        self,
        store: StateStore,
        wall: Callable[[], float],
        log: Log,
        *,
        max_delay: float | None = None,
        initial: float | None = None,
    ) -> None:
        self._store, self._wall, self._log = store, wall, log
        self._limits = (max_delay, initial)
        self._planner: SharedPlanner | None = None
        self._making = threading.Lock()  # the planner (not `_lock`: `plan` never waits on it)
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def planner(self) -> SharedPlanner:
        """This instance's planner, made on first use."""
        with self._making:
            if self._planner is None:
                from core.learning import LearningConfig, SharedPlanner  # noqa: PLC0415

                default = LearningConfig()
                max_delay, initial = self._limits
                self._planner = SharedPlanner(
                    LearningConfig(
                        max_delay=default.max_delay if max_delay is None else max_delay,
                        initial=default.initial if initial is None else initial,
                    )
                )
            return self._planner

    def plan(self, elapsed: float, polls: int) -> float | None:
        """The learned wait (or None: the cold schedule); starts a refresh when stale."""
        self._refresh_in_background()
        planner = self._planner
        return planner.plan(elapsed, polls) if planner is not None else None

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing or self._wall() - self._read_at < REFRESH_SECONDS:
                return
            self._refreshing = True
            first = self._read_at == float("-inf")
        worker = threading.Timer(FIRST_REFRESH_DELAY if first else 0.0, self.refresh)
        worker.name, worker.daemon = "learning-refresh", True
        worker.start()

    def refresh(self) -> None:
        """Read the shared estimate now (a failure keeps the cached one until next time)."""
        now = self._wall()
        try:
            planner = self.planner
            stored = self._store.get(KEY, now=now)
            if stored is not None:
                planner.update(_value(stored.document))
        except (StateUnavailable, ValueError) as failure:
            self._log.warning("shared job durations not read", reason=str(failure))
        finally:
            with self._lock:
                self._read_at, self._refreshing = now, False

    def observe(self, low: float, high: float) -> None:
        """Add one finished job (seconds after acceptance) to the shared estimate."""
        from core.learning import LearnedDurations  # noqa: PLC0415

        now = self._wall()
        planner = self.planner

        def observed(value: LearnedDurations) -> Document:
            return _document(value.observe(low, high, planner.config), now)

        def added(document: Document) -> Document:
            try:
                return observed(_value(document))
            except ValueError:  # not ours, or an older format: start afresh
                return observed(LearnedDurations())

        try:
            stored = upsert(self._store, KEY, added, lambda: observed(LearnedDurations()), now=now)
            if stored is not None:
                planner.update(_value(stored.document))
        except (StateUnavailable, ValueError) as failure:
            # Under heavy contention (one shared document) an observation may be lost:
            # the estimate decays anyway, and the next job adds its own.
            self._log.info("job duration not shared", reason=str(failure))


def _value(document: Document) -> LearnedDurations:
    from core.learning import LearnedDurations  # noqa: PLC0415

    text = document.data.get("learned")
    if not isinstance(text, str):
        raise ValueError("no learned durations in the document")
    return LearnedDurations.from_json(text)


def _document(value: LearnedDurations, now: float) -> Document:
    return Document(key=KEY, data={"learned": value.to_json()}, expires_at=now + KEEP_SECONDS)
