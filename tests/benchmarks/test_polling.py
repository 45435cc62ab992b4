"""Benchmark 1's machinery on a few jobs: baselines, the service's real flow, the learner."""

from __future__ import annotations

import itertools
import random

from benchmarks import polling
from core.learning import PollLearner


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
    report = polling.run_mix(3.0, jobs=300, seed=5)
    again = polling.run_mix(3.0, jobs=300, seed=5)
    assert report == again
    for result in [*report.baselines, report.fixed, report.learned]:
        assert result.polls >= 1
        assert result.mean_lag >= 0
        assert result.p95_lag >= 0
    assert report.learned_poll_times  # the learner made a plan


def test_the_learner_only_hears_of_jobs_that_finished() -> None:
    jobs = polling.durations(3.0, 200, seed=2)
    starts = polling.arrivals(200, seed=2)
    learner = PollLearner(max_delay=30.0)
    polling.service("learned", jobs, starts, seed=2, learner=learner)
    assert learner.seen == 200


def test_on_long_jobs_the_learned_schedule_beats_the_best_official_client() -> None:
    report = polling.run_mix(20.0, jobs=1500, seed=11)
    assert report.learned.cost < report.best_baseline.cost
    assert report.learned.cost < report.fixed.cost
