"""The decisions of the deletion flow, as pure functions of values.

Every step of a request (the intake's DELETE, a retried DELETE, each poll)
ends in one `Action`: schedule the next step after a delay, or finish with an
`Outcome`. The handlers carry actions out; nothing here does I/O.

    intake ──DELETE──► 202 job ──────────► poll ─┬─► pending: poll again (growing delay)
       │                                         ├─► final:   finish (deleted/failed/not_found)
       ├─► 404 / 4xx: finish                     └─► deadline passed: finish (timed_out)
       └─► 429 / 5xx / timeout: delete again later (until the deadline)
"""

from __future__ import annotations

from dataclasses import dataclass

from core.datocms import Done, Job, outcome_of, outcome_of_refusal
from core.errors import DatoCMSError, DatoCMSHeldBack, DatoCMSNotFound, DatoCMSRefused
from core.model import Outcome, Step
from core.polling import PollPolicy


@dataclass(frozen=True)
class Schedule:
    """Enqueue `step` to run after `delay` seconds."""

    step: Step
    delay: float


@dataclass(frozen=True)
class Finish:
    """The request is over: report `outcome`, after `polls` job-result requests."""

    outcome: Outcome
    polls: int


Action = Schedule | Finish


def deadline(step: Step, policy: PollPolicy) -> float:
    return step.accepted_at + policy.timeout


def _later(step: Step, delay: float, now: float, policy: PollPolicy, polls: int) -> Action:
    """Schedule `step`, unless the deadline has passed; the last try lands on the deadline."""
    remaining = deadline(step, policy) - now
    if remaining <= 0:
        return Finish(Outcome("timed_out", job_id=step.job_id), polls)
    return Schedule(step, min(delay, remaining))


def _retry(
    current: Step, error: DatoCMSError, *, now: float, policy: PollPolicy, rand: float, polls: int
) -> Action:
    """After a retryable error: the same kind of step again, backing off."""
    failures = current.failures + 1
    delay = policy.retry_delay(failures, error.retry_after, rand)
    retry = current.next(current.kind, polls=polls, failures=failures)
    return _later(retry, delay, now, policy, polls)


#: A DELETE that ended this way may have taken effect: its answer was lost.
ANSWER_LOST = frozenset({"TIMEOUT", "CONNECTION_ERROR"})


def after_delete(
    current: Step, result: Job | DatoCMSError, now: float, policy: PollPolicy, rand: float
) -> Action:
    """What follows a DELETE: poll its job, finish, or try the DELETE again.

    At the intake (step 0) the next step is always scheduled: only a task can
    find the deadline passed, so the intake's answer is one of the contract's.
    A track found gone after a DELETE of this request went unanswered was
    deleted by that DELETE (`deleted`, without the track's attributes).
    """
    if isinstance(result, DatoCMSNotFound) and current.unanswered:
        return Finish(Outcome("deleted", job_id=current.job_id), current.polls)
    if isinstance(result, DatoCMSRefused):
        return Finish(outcome_of_refusal(result), current.polls)
    if isinstance(result, Job):
        first_poll = current.next("poll", job_id=result.id, failures=0)
        delay = policy.delay_after(0, rand, elapsed=now - current.accepted_at)
    else:
        lost = current.unanswered or result.code in ANSWER_LOST
        first_poll = current.next("delete", failures=current.failures + 1, unanswered=lost)
        delay = policy.retry_delay(first_poll.failures, result.retry_after, rand)
    if current.number == 0:
        return Schedule(first_poll, delay)
    return _later(first_poll, delay, now, policy, current.polls)


def after_poll(
    current: Step,
    result: Job | Done | DatoCMSError | None,
    now: float,
    policy: PollPolicy,
    rand: float,
) -> Action:
    """What follows a job-result request: poll again, follow a new job, or finish.

    `result` is None while the job runs. A `DatoCMSHeldBack` (no request went
    out) is not counted as a poll.
    """
    polls = current.polls + (0 if isinstance(result, DatoCMSHeldBack) else 1)
    if result is None:
        seen = now - current.accepted_at
        pending = current.next("poll", polls=polls, failures=0, pending_at=max(seen, 0.0))
        delay = policy.delay_after(polls, rand, elapsed=now - current.accepted_at)
        return _later(pending, delay, now, policy, polls)
    if isinstance(result, Job):
        follow = current.next("poll", polls=polls, job_id=result.id, failures=0, pending_at=None)
        return _later(follow, policy.initial, now, policy, polls)
    if isinstance(result, Done):
        return Finish(outcome_of(result, current.job_id), polls)
    return _retry(current, result, now=now, policy=policy, rand=rand, polls=polls)
