"""Benchmark 1's machinery on a few jobs: baselines, the service's real flow, the learner."""

from __future__ import annotations

import itertools
import random

from benchmarks import polling
from core.learning import LearnedDurations


def first(waits: polling.Waits, count: int, seed: int = 1) -> list[float]:
    return list(itertools.islice(waits(random.Random(seed)), count))


def test_baselines_wait_as_the_official_clients_do() -> None:
    assert first(polling.js_client, 4) == [1.0, 2.0, 3.0, 4.0]
    assert first(polling.ruby_client, 3) == [1.0, 1.0, 1.0]
    waits = first(polling.google_api_core, 12)
    ceilings = [min(1.5**n, 20.0) for n in range(12)]
    assert all(0.0 <= wait <= ceiling for wait, ceiling in zip(waits, ceilings, strict=True))


def test_a_baseline_polls_until_the_job_is_done_and_measures_the_lag() -> None:
    result = polling.baseline("every second", polling.ruby_client, [0.5, 2.5], seed=1)
    assert result.polls == (1 + 3) / 2
    assert result.mean_lag == (0.5 + 0.5) / 2
    assert result.cost == result.polls + result.mean_lag


def test_every_strategy_sees_every_job_done_and_runs_are_reproducible() -> None:
    report = polling.run_shape("lognormal 1", jobs=150, seed=5, lifetimes=(1, 20))
    again = polling.run_shape("lognormal 1", jobs=150, seed=5, lifetimes=(1, 20))
    assert report == again
    for result in [*report.baselines, report.cold, *(cell.service for cell in report.cells)]:
        assert result.polls >= 1
        assert result.mean_lag >= 0
        assert result.p95_lag >= 0
    assert [cell.lifetime for cell in report.cells] == [1, 20]
    assert report.cells[0].final_poll_times  # the shared value holds a plan


def test_every_finished_job_is_added_to_the_shared_value() -> None:
    jobs = polling.durations("exponential", 200, seed=2)
    starts = polling.arrivals(200, seed=2)
    store = polling.Store(LearnedDurations())
    polling.service("learned", jobs, starts, seed=2, lifetime=5, store=store)
    assert store.value.seen == store.writes == 200


def test_without_learning_the_service_costs_what_the_js_client_costs_at_most() -> None:
    for shape in polling.SHAPES:
        report = polling.run_shape(shape, jobs=100, seed=3, lifetimes=())
        # 1e-6: times are absolute (1.8e9 s), so sums carry rounding of about 1e-7 s.
        assert report.cold.cost <= report.baselines[0].cost + 1e-6, shape


def test_the_regime_change_happens_halfway() -> None:
    work = polling.durations("regime change", 400, seed=1)
    assert max(work[:200]) < 3.0 < min(work[200:])


def test_on_log_normal_jobs_shared_learning_beats_the_best_official_client() -> None:
    report = polling.run_shape("lognormal 0.5", jobs=600, seed=11, lifetimes=(1,))
    assert report.ratio(report.cells[0]) < 1.0
