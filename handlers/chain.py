"""Carrying out the flow's decisions: enqueue the next step, record it, report an outcome.

Every task is named after its acceptance and its place in the chain
(`<request_id>-<acceptance>-<n>`, `…-cb`), so a step delivered twice cannot
fork the chain, and each request has exactly one callback sequence. The
request's record follows every step; the first final outcome recorded wins.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from adapters.log import LAST, Log
from adapters.service import Service
from adapters.tasks import QueueRole, Task
from core.flow import Action, Finish, Schedule
from core.model import DeletionRequest, Step, callback_body
from core.record import Record
from core.signing import seal_task
from core.urlpolicy import parse_callback_url
from handlers import records


def step_not_after(accepted_at: float, service: Service) -> float:
    return accepted_at + service.settings.poll_timeout + records.GRACE_SECONDS


def callback_not_after(now: float, service: Service) -> float:
    return now + records.callback_budget(service) + records.GRACE_SECONDS


def enqueue(service: Service, step: Step, delay: float) -> bool:
    """Seal and enqueue `step`; False when a task of its name already exists."""
    role = QueueRole.CALLBACKS if step.kind == "callback" else QueueRole.STEPS
    body = seal_task(step.to_json(), service.settings.task_keys()[0])
    return service.queue.enqueue(Task(role, body), delay=delay, name=step.name)


def ours(record: Record, step: Step) -> bool:
    """Whether `record` still belongs to the acceptance `step` is part of."""
    return record.accepted_at == step.accepted_at


def progressed(record: Record, step: Step, schedule: Schedule, now: float) -> Record:
    """`record` after `step` scheduled `schedule` (unchanged if the request moved on)."""
    if not ours(record, step) or record.done:
        return record
    following = schedule.step
    return record.touched(
        now,
        status="pending" if following.kind == "poll" else "queued",
        lease_until=None,
        job_id=following.job_id,
        polls=following.polls,
        unanswered=following.unanswered,
        next_at=now + schedule.delay,
    )


def concluded(record: Record, step: Step, finish: Finish, now: float) -> Record:
    """`record` with its final outcome; a request already final keeps its first outcome."""
    if not ours(record, step) or record.done:
        return record
    body = callback_body(step, finish.outcome, polls=finish.polls, now=now)
    return record.touched(
        now,
        status=finish.outcome.status,
        lease_until=None,
        job_id=finish.outcome.job_id or record.job_id,
        polls=finish.polls,
        next_at=None,
        outcome=body["data"],
        finished_at=now,
        callback=replace(record.callback, since=now),
    )


def recorded(record: Record, step: Step, action: Action, now: float) -> Record:
    """`record` after `step` decided `action`: its progress, or its final outcome."""
    if isinstance(action, Finish):
        return concluded(record, step, action, now)
    return progressed(record, step, action, now)


def carry_out(service: Service, current: Step, action: Action, log: Log) -> None:
    """Enqueue what `action` asks for after `current`, and record it."""
    if isinstance(action, Finish):
        report(service, current, action, log)
        return
    created = enqueue(service, action.step, action.delay)
    log.info(
        "scheduled" if created else "already scheduled",
        step=action.step.kind,
        next_task=action.step.name,
        delay_seconds=round(action.delay, 3),
        job_id=action.step.job_id,
    )
    now = service.wall()
    records.mutate(service, current.request_id, lambda r: progressed(r, current, action, now), now)


def report(service: Service, current: Step, finish: Finish, log: Log) -> None:
    """Record the final outcome, then queue its callback (or log it when nobody asked)."""
    now = service.wall()
    record = records.mutate(
        service, current.request_id, lambda r: concluded(r, current, finish, now), now
    )
    if record is None or not ours(record, current):
        log.warning("request record gone or superseded; outcome not reported")
        return
    queue_callback(service, current, record, log)


def callback_step(service: Service, record: Record, request: DeletionRequest) -> Step:
    """The callback task of the final `record`'s current delivery sequence."""
    return Step(
        kind="callback",
        request_id=record.request_id,
        request=request,
        environment=record.environment,
        accepted_at=record.accepted_at,
        number=1,
        not_after=callback_not_after(service.wall(), service),
        polls=record.polls,
        job_id=record.job_id,
        resend=record.callback.resends,
        callback=record.callback_body(),
    )


def dead_lettered(
    log: Log, callback: dict[str, Any], *, http_status: int | None, reason: str, **fields: Any
) -> None:
    """The one log line of a dead letter (an attempt's, or the sweep's): ERROR, with the whole
    body, the last line of the request's operation; the dead-letter metric counts it."""
    log.error(
        "callback dead-lettered",
        http_status=http_status,
        reason=reason,
        callback=callback,
        event="callback_attempt",
        callback_result="dead_letter",
        outcome=callback.get("data", {}).get("status"),
        operation=LAST,
        **fields,
    )


def redacted_target(url: str, allow_private: bool) -> str:
    """`scheme://host` of a callback URL, for the log."""
    try:
        target: str = parse_callback_url(url, allow_private=allow_private).redacted
    except ValueError:
        return "(invalid)"
    return target


def queue_callback(service: Service, current: Step, record: Record, log: Log) -> None:
    """Queue the callback of the final `record` (idempotent: the task name is fixed)."""
    outcome = record.outcome or {}
    log = log.bind(job_id=record.job_id)
    finished = {  # the deletion's outcome line: metrics count and measure it
        "event": "request_finished",
        "outcome": record.status,
        "elapsed_seconds": round((record.finished_at or service.wall()) - record.created_at, 3),
    }
    if current.request.callback_url is None:
        log.info(
            "request finished",
            status=record.status,
            polls=record.polls,
            error=outcome.get("error"),
            operation=LAST,  # nothing follows: no callback
            **finished,
        )
        return
    created = enqueue(service, callback_step(service, record, current.request), 0.0)
    log.info(
        "request finished; callback queued" if created else "callback already queued",
        status=record.status,
        polls=record.polls,
        **(finished if created else {}),
    )
