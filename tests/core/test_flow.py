"""The flow's decisions: plain values in, actions out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.datocms import Done, Job
from core.errors import (
    DatoCMSAuthError,
    DatoCMSHeldBack,
    DatoCMSNotFound,
    DatoCMSRateLimited,
    DatoCMSRefused,
    DatoCMSUnavailable,
)
from core.flow import Finish, Schedule, after_delete, after_poll
from core.model import DeletionRequest, Step
from core.polling import PollPolicy

POLICY = PollPolicy(initial=1.0, maximum=30.0, timeout=900.0)
T0 = 1_800_000_000.0


def step(kind: str = "delete", **changes: object) -> Step:
    request = DeletionRequest("u1", "t1")
    base = Step(
        kind=kind,  # type: ignore[arg-type]
        request_id=request.request_id(None),
        request=request,
        environment=None,
        accepted_at=T0,
        number=1,
        not_after=T0 + 10_000,
        job_id="j1" if kind == "poll" else None,
    )
    if "accepted_at" in changes:
        base = replace(base, accepted_at=changes.pop("accepted_at"))  # type: ignore[arg-type]
    return base.next(kind, **changes) if changes else base  # type: ignore[arg-type]


def test_delete_accepted_as_a_job_schedules_the_first_poll_after_the_initial_delay() -> None:
    action = after_delete(step(), Job("42"), T0, POLICY, 0.5)
    assert isinstance(action, Schedule)
    assert action.step.kind == "poll"
    assert action.step.job_id == "42"
    assert action.step.number == 2
    assert action.delay == POLICY.initial


def test_delete_refused_for_good_finishes_failed_with_the_code() -> None:
    refusal = DatoCMSRefused(
        "no", http_status=422, code="IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT"
    )
    action = after_delete(step(), refusal, T0, POLICY, 0.5)
    assert isinstance(action, Finish)
    assert action.outcome.status == "failed"
    assert action.outcome.error == {
        "code": "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT",
        "message": "no",
        "http_status": 422,
    }


def test_delete_of_a_missing_track_finishes_not_found() -> None:
    action = after_delete(
        step(), DatoCMSNotFound("gone", http_status=404, code="NOT_FOUND"), T0, POLICY, 0.5
    )
    assert isinstance(action, Finish) and action.outcome.status == "not_found"


def test_the_intake_always_schedules_even_past_the_deadline() -> None:
    intake = replace(step(), number=0)
    late = T0 + POLICY.timeout + 5
    queued = after_delete(intake, DatoCMSUnavailable("503"), late, POLICY, 0.5)
    pending = after_delete(intake, Job("1"), late, POLICY, 0.5)
    assert isinstance(queued, Schedule) and queued.step.kind == "delete"
    assert isinstance(pending, Schedule) and pending.step.kind == "poll"


def test_rate_limited_delete_is_retried_no_sooner_than_the_reset() -> None:
    action = after_delete(
        step(), DatoCMSRateLimited("429", http_status=429, retry_after=17), T0, POLICY, 0.0
    )
    assert isinstance(action, Schedule)
    assert action.step.kind == "delete"
    assert action.delay >= 17
    assert action.step.failures == 1


def test_unavailable_delete_backs_off_exponentially() -> None:
    delays = []
    current = step()
    for _ in range(4):
        action = after_delete(current, DatoCMSUnavailable("503"), T0, POLICY, 0.5)
        assert isinstance(action, Schedule)
        delays.append(action.delay)
        current = action.step
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_auth_errors_in_a_task_are_retried_until_the_deadline() -> None:
    action = after_delete(step(), DatoCMSAuthError("401", http_status=401), T0 + 899.5, POLICY, 0.5)
    assert isinstance(action, Schedule)
    assert action.delay == pytest.approx(0.5)  # lands exactly on the deadline
    final = after_delete(
        action.step, DatoCMSAuthError("401", http_status=401), T0 + 900, POLICY, 0.5
    )
    assert isinstance(final, Finish) and final.outcome.status == "timed_out"


def test_pending_poll_schedules_the_next_with_a_growing_delay() -> None:
    current = step("poll")
    delays = []
    for _ in range(12):
        action = after_poll(current, None, T0, POLICY, 0.5)
        assert isinstance(action, Schedule)
        delays.append(action.delay)
        current = action.step
    assert delays == sorted(delays)
    assert delays[0] == POLICY.initial
    assert max(delays) == POLICY.maximum
    assert current.polls == 12


def test_poll_jitter_spreads_the_delay_within_ten_percent() -> None:
    low = after_poll(step("poll", polls=3), None, T0, POLICY, 0.0)
    high = after_poll(step("poll", polls=3), None, T0, POLICY, 0.999)
    assert isinstance(low, Schedule) and isinstance(high, Schedule)
    assert low.delay < high.delay
    assert high.delay / low.delay == pytest.approx(1.1 / 0.9, rel=0.01)


def test_poll_after_the_deadline_finishes_timed_out_with_the_poll_count() -> None:
    action = after_poll(step("poll", polls=7), None, T0 + 901, POLICY, 0.5)
    assert isinstance(action, Finish)
    assert action.outcome.status == "timed_out"
    assert action.outcome.job_id == "j1"
    assert action.polls == 8


def test_the_last_poll_is_scheduled_at_the_deadline_not_after_it() -> None:
    action = after_poll(step("poll", polls=20), None, T0 + 895, POLICY, 0.5)
    assert isinstance(action, Schedule)
    assert action.delay == pytest.approx(5.0)


def test_final_result_finishes_with_the_outcome_and_counts_the_poll() -> None:
    done = Done(200, {"data": {"attributes": {"type": "subtitles", "name": "It"}}})
    action = after_poll(step("poll", polls=2), done, T0, POLICY, 0.5)
    assert isinstance(action, Finish)
    assert action.outcome.status == "deleted"
    assert action.outcome.job_id == "j1"
    assert action.polls == 3


def test_a_poll_held_back_by_the_rate_limit_is_not_counted() -> None:
    held = DatoCMSHeldBack("held", retry_after=2.0)
    action = after_poll(step("poll", polls=2), held, T0, POLICY, 0.5)
    assert isinstance(action, Schedule)
    assert action.step.polls == 2
    assert action.delay >= 2.0


def test_a_new_job_from_the_poll_is_followed() -> None:
    action = after_poll(step("poll"), Job("99"), T0, POLICY, 0.5)
    assert isinstance(action, Schedule)
    assert action.step.job_id == "99"


def test_step_names_are_deterministic_and_distinct_per_step() -> None:
    first = step()
    second = first.next("poll", job_id="j")
    assert first.name == f"{first.request_id}-{int(T0 * 1000):x}-1"
    assert first.name == step().name
    assert second.name != first.name and second.name == first.next("poll", job_id="j").name
    assert second.next("callback").name.endswith("-cb")
    assert replace(second.next("callback"), resend=2).name.endswith("-cb-r2")
    assert second.next("callback").name.startswith(first.request_id)


def test_a_later_acceptance_of_the_same_request_never_reuses_the_old_chains_names() -> None:
    old, new = step(), step(accepted_at=T0 + 7200)
    for kind in ("poll", "callback"):
        assert old.next(kind).name != new.next(kind).name
    assert old.name != new.name


def test_a_track_found_gone_after_an_unanswered_delete_was_deleted_by_it() -> None:
    gone = DatoCMSNotFound("not found", http_status=404, code="NOT_FOUND")
    answered = after_delete(step(), gone, T0, POLICY, 0.5)
    unanswered = after_delete(step(unanswered=True), gone, T0, POLICY, 0.5)
    assert isinstance(answered, Finish) and answered.outcome.status == "not_found"
    assert isinstance(unanswered, Finish) and unanswered.outcome.status == "deleted"
    assert unanswered.outcome.track is None


def test_a_delete_whose_answer_was_lost_marks_the_retry_unanswered() -> None:
    lost = DatoCMSUnavailable("timed out", code="TIMEOUT")
    refused = DatoCMSUnavailable("busy", http_status=503, code="HTTP_503")
    after_lost = after_delete(step(), lost, T0, POLICY, 0.5)
    after_503 = after_delete(step(), refused, T0, POLICY, 0.5)
    assert isinstance(after_lost, Schedule) and after_lost.step.unanswered
    assert isinstance(after_503, Schedule) and not after_503.step.unanswered
