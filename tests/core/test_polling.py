"""The cold schedule never costs more than the official JS client's, on any distribution.

A job of duration d costs polls + lag: the polls up to the first at or after d,
plus that poll's time minus d. The property is checked per duration (then it
holds for any mixture of durations, that is, any distribution), and as a mean
over samples of many distribution families, through the real code path:
`core.flow.after_delete` / `after_poll` with `PollPolicy.from_settings` and a
planner that has learned nothing yet. The jitter values are drawn too: the
cold schedule does not depend on them.

Tolerance: 1e-9 s (float rounding). Stated limit: the JS client has no cap on
its waits; the service caps them at `POLL_MAX_DELAY_SECONDS` (30 s) and has a
deadline, so the guarantee covers durations up to the poll where the JS wait
first exceeds the cap (465 s with the defaults), far past the 99.9th
percentile of what DatoCMS jobs take.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.datocms import Done, Job
from core.flow import Finish, Schedule, after_delete, after_poll
from core.learning import LearnedDurations, PollLearner, SharedPlanner
from core.model import DeletionRequest, Step
from core.polling import Planner, PollPolicy, cold_poll_times, next_cold_time
from core.settings import Settings

T0 = 1_800_000_000.0
DONE = Done(200, {"data": {"type": "upload_track", "id": "t", "attributes": {}}})
SETTINGS = Settings.from_env({})
#: The JS client's last wait within the cap lands here (1 + 2 + ... + 30 s).
COVERED = sum(range(1, int(SETTINGS.poll_max_delay) + 1))


def js_cost(duration: float) -> float:
    """Polls + lag of the JS client (waits 1, 2, 3, ... s) for one job."""
    at, polls = 1.0, 1
    while at < duration:
        polls += 1
        at += polls
    return polls + at - duration


def service_cost(
    duration: float, planner: Planner | None, rands: Callable[[], float], latency: float = 0.0
) -> float:
    """Polls + lag of the service's own flow for one job, the DELETE answering after `latency`."""
    policy = PollPolicy.from_settings(SETTINGS, planner)
    request = DeletionRequest("u1", "t1")
    step = Step(
        kind="delete",
        request_id=request.request_id(None),
        request=request,
        environment=None,
        accepted_at=T0,
        number=0,
        not_after=T0 + 10_000,
    )
    now = T0 + latency
    action = after_delete(step, Job("j1"), now, policy, rands())
    while isinstance(action, Schedule):
        now += action.delay
        done = now - T0 >= duration
        action = after_poll(action.step, DONE if done else None, now, policy, rands())
    assert isinstance(action, Finish)
    assert action.outcome.status == "deleted"
    return action.polls + (now - T0) - duration


def cold_planners() -> list[Planner | None]:
    """Every way the service may plan before it has learned anything."""
    return [
        None,
        PollLearner(max_delay=SETTINGS.poll_max_delay).plan,
        SharedPlanner().plan,
    ]


# --------------------------------------------------------------------------- distributions


def _bimodal(rng: random.Random, a: float, b: float) -> float:
    return rng.gauss(a, 0.05 * a) if rng.random() < 0.5 else rng.gauss(b, 0.05 * b)


FAMILIES: dict[str, Callable[[random.Random, float, float], float]] = {
    "constant": lambda rng, a, b: a,
    "uniform": lambda rng, a, b: rng.uniform(min(a, b), max(a, b)),
    "exponential": lambda rng, a, b: rng.expovariate(1.0 / a),
    "lognormal": lambda rng, a, b: a * math.exp(rng.gauss(0.0, min(b, 3.0) / 2)),
    "pareto": lambda rng, a, b: a * rng.paretovariate(1.0 + min(b, 4.0) / 2),
    "weibull": lambda rng, a, b: rng.weibullvariate(a, 0.3 + min(b, 6.0)),
    "gamma": lambda rng, a, b: rng.gammavariate(0.2 + min(b, 8.0), a / (0.2 + min(b, 8.0))),
    "bimodal": _bimodal,
    # Point masses on and around the JS client's poll times: its best case.
    "js_times": lambda rng, a, b: rng.choice([1.0, 3.0, 6.0, 10.0, 15.0, 21.0, 28.0, 36.0]),
    "just_after_js_times": lambda rng, a, b: rng.choice([1.0, 3.0, 6.0, 10.0, 15.0]) + 1e-6,
}


@settings(max_examples=300, deadline=None)
@given(
    family=st.sampled_from(sorted(FAMILIES)),
    a=st.floats(0.01, 60.0),
    b=st.floats(0.01, 60.0),
    seed=st.integers(0, 2**32 - 1),
    latency=st.floats(0.0, 0.5),
)
def test_cold_schedule_costs_no_more_than_the_js_client_on_any_distribution(
    family: str, a: float, b: float, seed: int, latency: float
) -> None:
    rng = random.Random(seed)
    durations = [FAMILIES[family](rng, a, b) for _ in range(40)]
    durations = [min(max(d, 0.0), COVERED) for d in durations]
    expected_js = sum(map(js_cost, durations)) / len(durations)
    for planner in cold_planners():
        ours = [service_cost(d, planner, rng.random, latency) for d in durations]
        for duration, cost in zip(durations, ours, strict=True):
            assert cost <= js_cost(duration) + 1e-9, (family, duration)
        assert sum(ours) / len(ours) <= expected_js + 1e-9


@settings(max_examples=300, deadline=None)
@given(duration=st.floats(0.0, COVERED), rands=st.lists(st.floats(0.0, 1.0), min_size=1))
def test_cold_schedule_costs_no_more_than_the_js_client_for_every_duration_and_jitter(
    duration: float, rands: list[float]
) -> None:
    draws = iter(rands * 100)
    assert service_cost(duration, None, lambda: next(draws)) <= js_cost(duration) + 1e-9


def test_cold_schedule_polls_at_the_js_client_times() -> None:
    assert cold_poll_times(1.0, 30.0, 40.0) == [1.0, 3.0, 6.0, 10.0, 15.0, 21.0, 28.0, 36.0, 45.0]


def test_cold_schedule_caps_each_wait_at_the_maximum() -> None:
    times = cold_poll_times(1.0, 2.5, 12.0)
    assert times == [1.0, 3.0, 5.5, 8.0, 10.5, 13.0]
    assert [next_cold_time(1.0, 2.5, t) for t in times[:-1]] == times[1:]


@pytest.mark.parametrize("late", [0.0, 0.1, 0.9, 1.7])
def test_a_late_poll_does_not_shift_the_cold_schedule(late: float) -> None:
    assert next_cold_time(1.0, 30.0, 3.0 + late) == 6.0


def test_a_poll_a_hair_early_counts_as_the_scheduled_one() -> None:
    assert next_cold_time(1.0, 30.0, 2.9) == 6.0


def test_cold_schedule_ignores_the_jitter_value() -> None:
    policy = PollPolicy.from_settings(SETTINGS)
    assert {policy.delay_after(2, rand, elapsed=3.0) for rand in (0.0, 0.3, 0.999)} == {3.0}


def test_an_empty_shared_value_plans_nothing() -> None:
    planner = SharedPlanner()
    planner.update(LearnedDurations())
    assert planner.plan(0.0, 0) is None


def test_the_property_catches_a_schedule_that_loses_somewhere() -> None:
    """The former fixed schedule (1 s, then x1.5, +-10 %) loses on some durations."""
    former = PollPolicy(SETTINGS.poll_initial_delay, SETTINGS.poll_max_delay, 900.0)
    rands = iter([0.5] * 1000)

    def cost(duration: float) -> float:
        at, polls = 0.0, 0
        while at < duration or polls == 0:
            at += former.delay_after(polls, next(rands), elapsed=at)
            polls += 1
        return polls + at - duration

    assert any(cost(d) > js_cost(d) for d in (2.9, 5.9, 9.9, 14.9, 20.9))
