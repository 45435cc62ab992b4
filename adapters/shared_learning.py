"""Job durations learned by every instance, kept in one shared document of the state store.

`poll_job` adds each finished job's interval (the last poll that saw it running, the
poll that saw it done: both carried on the signed task) by compare-and-set. Every
instance plans from a cached copy, refreshed in the background at most every
`REFRESH_SECONDS`: no request ever waits for the store on its account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from adapters.log import Log
from core.errors import StateUnavailable
from core.learning import LearnedDurations, LearningConfig, SharedPlanner
from core.state import Document, StateStore, upsert

KEY = "job-durations"
REFRESH_SECONDS = 30.0
KEEP_SECONDS = 30 * 86400.0  # an unused estimate ages out with the store's TTL


class SharedLearning:
    """The planner of this instance, following the shared estimate of job durations."""

    def __init__(
        self, store: StateStore, config: LearningConfig, wall: Callable[[], float], log: Log
    ) -> None:
        self.planner = SharedPlanner(config)
        self._store, self._config, self._wall, self._log = store, config, wall, log
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self._refreshing = False

    def plan(self, elapsed: float, polls: int) -> float | None:
        """The learned wait (or None: the cold schedule); starts a refresh when stale."""
        self._refresh_in_background()
        return self.planner.plan(elapsed, polls)

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing or self._wall() - self._read_at < REFRESH_SECONDS:
                return
            self._refreshing = True
        threading.Thread(target=self.refresh, name="learning-refresh", daemon=True).start()

    def refresh(self) -> None:
        """Read the shared estimate now (a failure keeps the cached one until next time)."""
        now = self._wall()
        try:
            stored = self._store.get(KEY, now=now)
            if stored is not None:
                self.planner.update(_value(stored.document))
        except (StateUnavailable, ValueError) as failure:
            self._log.warning("shared job durations not read", reason=str(failure))
        finally:
            with self._lock:
                self._read_at, self._refreshing = now, False

    def observe(self, low: float, high: float) -> None:
        """Add one finished job (seconds after acceptance) to the shared estimate."""
        now = self._wall()

        def observed(value: LearnedDurations) -> Document:
            return _document(value.observe(low, high, self._config), now)

        def added(document: Document) -> Document:
            try:
                return observed(_value(document))
            except ValueError:  # not ours, or an older format: start afresh
                return observed(LearnedDurations())

        try:
            stored = upsert(self._store, KEY, added, lambda: observed(LearnedDurations()), now=now)
            if stored is not None:
                self.planner.update(_value(stored.document))
        except (StateUnavailable, ValueError) as failure:
            # Under heavy contention (one shared document) an observation may be lost:
            # the estimate decays anyway, and the next job adds its own.
            self._log.info("job duration not shared", reason=str(failure))


def _value(document: Document) -> LearnedDurations:
    text = document.data.get("learned")
    if not isinstance(text, str):
        raise ValueError("no learned durations in the document")
    return LearnedDurations.from_json(text)


def _document(value: LearnedDurations, now: float) -> Document:
    return Document(key=KEY, data={"learned": value.to_json()}, expires_at=now + KEEP_SECONDS)
