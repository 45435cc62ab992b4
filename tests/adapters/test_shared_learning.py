"""Job durations shared through the state store: compare-and-set, cached reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters import shared_learning
from adapters.log import Log
from adapters.shared_learning import FIRST_REFRESH_DELAY, KEY, REFRESH_SECONDS, SharedLearning
from adapters.state_sqlite import SQLiteStateStore
from core.errors import StateUnavailable
from core.state import Document
from tests.conftest import LogCapture

NOW = 1_800_000_000.0


def instance(path: Path, clock: list[float]) -> SharedLearning:
    store = SQLiteStateStore(path, "shared")
    return SharedLearning(store, lambda: clock[0], Log(LogCapture()))


def test_observations_from_many_threads_all_reach_the_shared_document(tmp_path: Path) -> None:
    clock = [NOW]
    learners = [instance(tmp_path / "s.db", clock) for _ in range(4)]
    threads = [
        threading.Thread(target=lambda lr=lr, n=n: lr.observe(n, n + 1.0))
        for n, lr in enumerate(learners * 3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reader = instance(tmp_path / "s.db", clock)
    reader.refresh()
    assert reader.planner.value.seen == 12


def test_a_new_instance_starts_from_the_shared_estimate(tmp_path: Path) -> None:
    clock = [NOW]
    first = instance(tmp_path / "s.db", clock)
    for n in range(12):
        first.observe(0.0, 2.0 + n % 3 * 0.1)
    fresh = instance(tmp_path / "s.db", clock)
    fresh.refresh()
    assert fresh.planner.value == first.planner.value
    assert fresh.planner.plan(0.0, 0) == first.planner.plan(0.0, 0)


def test_planning_never_reads_the_store_on_the_callers_thread(tmp_path: Path) -> None:
    clock = [NOW]
    learner = instance(tmp_path / "s.db", clock)
    seen: list[str] = []
    original = learner._store.get

    def recording_get(key: str, *, now: float) -> object:
        seen.append(threading.current_thread().name)
        return original(key, now=now)

    learner._store.get = recording_get  # type: ignore[method-assign,assignment]
    learner.plan(0.0, 0)  # stale: a background refresh starts
    for thread in threading.enumerate():
        if thread.name == "learning-refresh":
            thread.join()
    learner.plan(0.0, 0)  # fresh: nothing read
    assert seen == ["learning-refresh"]
    clock[0] += REFRESH_SECONDS + 1
    learner.plan(0.0, 0)
    for thread in threading.enumerate():
        if thread.name == "learning-refresh":
            thread.join()
    assert seen == ["learning-refresh", "learning-refresh"]


def test_a_store_outage_or_a_foreign_document_never_breaks_planning(tmp_path: Path) -> None:
    clock = [NOW]
    learner = instance(tmp_path / "s.db", clock)
    learner._store.create(Document(KEY, {"learned": "not json"}, expires_at=NOW + 60), now=NOW)
    learner.refresh()  # a document that is not ours: the cached estimate stays
    learner.observe(1.0, 2.0)  # ... and an observation starts afresh
    assert learner.planner.value.seen == 1

    def down(*args: object, **kwargs: object) -> None:
        raise StateUnavailable("down")

    learner._store.get = down  # type: ignore[method-assign,assignment]
    learner.refresh()
    learner.observe(1.0, 2.0)
    assert learner.planner.value.seen == 1
    assert learner.planner.plan(0.0, 0) is None  # the cold schedule


def test_the_planner_is_made_on_first_use_with_the_service_limits(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.db", "shared")
    learner = SharedLearning(store, lambda: NOW, Log(LogCapture()), max_delay=12.0, initial=2.5)
    assert learner._planner is None  # a cold start's first request does not build it
    assert learner.planner.config.max_delay == 12.0
    assert learner.planner.config.initial == 2.5


def test_a_new_instance_waits_before_its_first_refresh_and_not_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    intervals: list[float] = []

    class Recorded(threading.Timer):
        def __init__(self, interval: float, function: Callable[[], None]) -> None:
            intervals.append(interval)
            super().__init__(0.0, function)  # at once: the test does not wait

    monkeypatch.setattr(shared_learning.threading, "Timer", Recorded)
    clock = [NOW]
    learner = instance(tmp_path / "s.db", clock)
    learner.plan(0.0, 0)
    for thread in threading.enumerate():
        if thread.name == "learning-refresh":
            thread.join()
    clock[0] += REFRESH_SECONDS + 1
    learner.plan(0.0, 0)
    assert intervals == [FIRST_REFRESH_DELAY, 0.0]  # the cold start's request goes first
    assert FIRST_REFRESH_DELAY > 0
