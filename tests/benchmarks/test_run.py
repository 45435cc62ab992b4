"""`make bench` notes how much CPU the host stole during each benchmark."""

from __future__ import annotations

import pytest

from benchmarks import run
from benchmarks.run import Steps, stolen


def test_steal_is_the_eighth_field_of_the_cpu_time_spent_in_between() -> None:
    before = [100, 0, 10, 500, 0, 0, 0, 40, 0, 0]
    after = [130, 0, 20, 540, 0, 0, 0, 60, 0, 0]  # 30 user, 10 system, 40 idle, 20 steal
    assert stolen(before, after) == 0.2
    assert stolen(None, after) is None
    assert stolen(before, before) is None  # no time passed


def test_each_step_records_the_steal_of_the_one_before(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([[0] * 8, [80, 0, 0, 0, 0, 0, 0, 20], [90, 0, 0, 0, 0, 0, 0, 30]])
    monkeypatch.setattr(run, "cpu_ticks", lambda: next(readings))
    step = Steps(0.0)
    step("1/6 first")
    step("2/6 second")
    step("done")
    assert step.steal == {"1/6": 0.2, "2/6": 0.5}
