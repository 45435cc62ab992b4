"""Carrying out the flow's decisions: enqueue the next step, or report an outcome.

Every task is named after its request and its place in the chain
(`<request_id>-<n>`, `<request_id>-cb`), so a step delivered twice cannot
start a second chain, and each request has exactly one callback sequence.
"""

from __future__ import annotations

from adapters.log import Log
from adapters.service import Service
from adapters.tasks import QueueRole, Task, callback_retry
from core.flow import Action, Finish, Schedule
from core.model import Outcome, Step, callback_body
from core.signing import seal_task

#: How long a step's signed body stays valid after its request's deadline
#: (room for the steps queue's own retries).
STEP_GRACE_SECONDS = 24 * 3600.0


def step_not_after(accepted_at: float, service: Service) -> float:
    return accepted_at + service.settings.poll_timeout + STEP_GRACE_SECONDS


def callback_not_after(now: float, service: Service) -> float:
    policy = callback_retry(service.settings)
    budget = sum(policy.backoff(n) for n in range(1, policy.max_attempts))
    return now + budget + STEP_GRACE_SECONDS


def enqueue(service: Service, step: Step, delay: float) -> bool:
    """Seal and enqueue `step`; False when a task of its name already exists."""
    role = QueueRole.CALLBACKS if step.kind == "callback" else QueueRole.STEPS
    body = seal_task(step.to_json(), service.settings.task_signing_keys[0])
    return service.queue.enqueue(Task(role, body), delay=delay, name=step.name)


def carry_out(service: Service, current: Step, action: Action, log: Log) -> bool:
    """Enqueue what `action` asks for after `current`. False when it was already enqueued."""
    if isinstance(action, Schedule):
        created = enqueue(service, action.step, action.delay)
        log.info(
            "scheduled" if created else "already scheduled",
            step=action.step.kind,
            next_task=action.step.name,
            delay_seconds=round(action.delay, 3),
            job_id=action.step.job_id,
        )
        return created
    return report(service, current, action, log)


def report(service: Service, current: Step, finish: Finish, log: Log) -> bool:
    """Queue the callback for `finish.outcome`, or log the outcome when nobody asked for one."""
    outcome: Outcome = finish.outcome
    log = log.bind(job_id=outcome.job_id)
    if current.request.callback_url is None:
        log.info("request finished", status=outcome.status, polls=finish.polls, error=outcome.error)
        return True
    now = service.wall()
    body = callback_body(current, outcome, polls=finish.polls, now=now)
    delivery = Step(
        kind="callback",
        request_id=current.request_id,
        request=current.request,
        environment=current.environment,
        accepted_at=current.accepted_at,
        number=current.number + 1,
        not_after=callback_not_after(now, service),
        polls=finish.polls,
        job_id=outcome.job_id,
        callback=body,
    )
    created = enqueue(service, delivery, 0.0)
    log.info(
        "request finished; callback queued" if created else "callback already queued",
        status=outcome.status,
        polls=finish.polls,
    )
    return created
