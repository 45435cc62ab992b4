"""`poll_job`: the target of every task the service enqueues.

A task body is opened (signature, then schema) before anything else; a body
the service did not sign gets `401` and causes no outbound call. Then, if the
request's record says it is still this chain's turn, one step runs: a resume
(task 1), a retried DELETE, a poll, or one callback delivery attempt.
Answers 2xx when the step is done (including "not final yet, next poll
scheduled"), non-2xx only when the queue should retry it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import IO

from adapters.log import LAST, Log, trace_field
from adapters.service import Service
from core import validation
from core.datocms import Done, Job
from core.errors import (
    DatoCMSAuthError,
    DatoCMSBadResponse,
    DatoCMSError,
    StateUnavailable,
    TaskRejected,
)
from core.flow import Action, Schedule, after_delete, after_poll
from core.headers import Headers
from core.model import Step, encode
from core.record import CallbackState, Record, callback_deadline
from core.signing import MAX_TASK_BODY, open_task, webhook_signature
from handlers import chain, fanout, records, sweep
from handlers.body import BodyUnreadable, read_at_most
from handlers.responses import Reply, error, reply_for


def handle_http(
    service: Service, *, method: str, headers: Headers, stream: IO[bytes], path: str = "/"
) -> Reply:
    """Open the task, run its step, answer for the queue (`/sweep`: the sweep)."""
    settings = service.settings
    keys = settings.task_keys()
    if method != "POST":
        return error(405, "method_not_allowed", "Only POST is allowed.", headers={"Allow": "POST"})
    if path == "/sweep":
        try:
            return sweep.sweep(service, service.log.bind(function="sweep"))
        except StateUnavailable as failure:
            service.log.warning("sweep: state store unavailable", reason=str(failure))
            return error(503, "state_unavailable", "The state store is unavailable.")
    try:
        step = open_step(_read(stream), keys)
    except TaskRejected as rejected:
        service.log.warning("task rejected", reason=str(rejected))
        return reply_for(rejected)
    log = service.log.bind(
        request_id=step.request_id,
        upload_id=step.request.upload_id,
        upload_track_id=step.request.upload_track_id,
        job_id=step.job_id,
        task=step.name,
        **trace_field(headers.get("x-cloud-trace-context"), settings.log_project),
    )
    now = service.wall()
    if step.not_after < now:
        log.warning("task expired; ignored", step=step.kind)
        return Reply(200, {"status": "expired"})
    if not service.running.claim(step.name, now):
        # Still running here (e.g. a callback attempt that outlived the queue's dispatch
        # deadline). It may yet fail, so this retry must not be acknowledged: come back.
        log.info("task still running on this instance; the queue will retry", step=step.kind)
        return error(
            503, "in_progress", "This task is still running.", headers={"Retry-After": "15"}
        )
    try:
        return _run_once(service, step, log, now)
    finally:
        service.running.release(step.name)


def _run_once(service: Service, step: Step, log: Log, now: float) -> Reply:
    """Run `step` unless this process already carried it out (2xx); remember it if done."""
    if not service.spent.claim(step.name, now):
        log.info("task already carried out; ignored", step=step.kind)
        return Reply(200, {"status": "already_done"})
    try:
        reply = _run(service, step, log, now)
    except BaseException:
        service.spent.release(step.name)
        raise
    if not 200 <= reply.status < 300:
        service.spent.release(step.name)  # the queue retries it: let the retry run
    return reply


def _read(stream: IO[bytes]) -> bytes:
    """The task body; a body that cannot be read (broken framing) is not a task: 401."""
    try:
        return read_at_most(stream, MAX_TASK_BODY + 1)
    except BodyUnreadable as unreadable:
        raise TaskRejected(f"task body could not be read ({unreadable.kind})") from None


def open_step(body: bytes, keys: tuple[bytes, ...]) -> Step:
    """The `Step` in a task body, if the service signed it and it has the task schema's shape."""
    payload = open_task(body, keys)
    if validation.errors("task", payload):
        raise TaskRejected("signed task payload does not match the task schema")
    return Step.from_json(payload)


def _run(service: Service, step: Step, log: Log, now: float) -> Reply:
    """The step, if the request's record says it is still this chain's turn."""
    try:
        record = records.load(service, step.request_id, now)
        if record is None or not chain.ours(record, step):
            log.info("request record gone or superseded; task ignored", step=step.kind)
            return Reply(200, {"status": "superseded"})
        if step.kind == "callback":
            return deliver_callback(service, step, record, log)
        if record.done and step.kind != "resume":
            log.info("request already final; task ignored", step=step.kind)
            return Reply(200, {"status": "already_final"})
        if step.kind == "list" or (step.kind == "resume" and fanout.lists(record)):
            return fanout.run_list(service, replace(step, kind="list"), record, log, now)
        if step.track_index is not None and not fanout.still_running(record, step):
            log.info("track final or further along; task ignored", step=step.kind)
            return Reply(200, {"status": "superseded"})
        return run_step(service, step, record, log, now)
    except StateUnavailable as failure:
        log.warning("state store unavailable; the queue will retry", reason=str(failure))
        return error(503, "state_unavailable", "The state store is unavailable.")


def run_step(service: Service, step: Step, record: Record, log: Log, now: float) -> Reply:
    """Run a resume, delete or poll step and carry out what follows."""
    action: Action
    if step.kind == "resume":
        resumed = _resume(service, step, record, log, now)
        if isinstance(resumed, Reply):
            return resumed
        if isinstance(resumed, Schedule):
            chain.carry_out(service, step, resumed, log)
            return Reply(200, {"status": "done", "next": "schedule"})
        step = resumed
    action = _poll(service, step, log) if step.kind == "poll" else _delete(service, step, log)
    carry_out = fanout.carry_out if step.track_index is not None else chain.carry_out
    carry_out(service, step, action, log)
    return Reply(200, {"status": "done", "next": type(action).__name__.lower()})


def _resume(
    service: Service, step: Step, record: Record, log: Log, now: float
) -> Step | Schedule | Reply:
    """Task 1, enqueued before the intake's DELETE: continue from what the record says."""
    if record.done:
        chain.queue_callback(service, step, record, log)
        return Reply(200, {"status": "finished"})
    if record.status == "pending" and record.job_id is not None:
        return replace(step, kind="poll", job_id=record.job_id, polls=record.polls)
    if record.status == "accepting":
        if (record.lease_until or 0.0) > now:
            log.info("the intake is still deciding; the queue will retry")
            return error(503, "in_progress", "The intake has not finished yet.")
        # The intake died around its DELETE: whether it went out is unknown.
        log.warning("the intake did not record its DELETE; deleting again")
        return replace(step, kind="delete", unanswered=True, failures=1)
    retry = replace(step, kind="delete", unanswered=record.unanswered, failures=1)
    if record.next_at is not None and record.next_at > now:  # e.g. an announced rate-limit reset
        return Schedule(retry.next("delete"), record.next_at - now)
    return retry


def _delete(service: Service, step: Step, log: Log) -> Action:
    result: Job | DatoCMSError
    try:
        result = service.datocms.delete_track(
            step.request.upload_id, step.request.track_id, step.environment, log=log
        )
    except DatoCMSError as failure:
        _log_failure(log, failure)
        result = failure
    return after_delete(step, result, service.wall(), service.policy, service.rand())


def _poll(service: Service, step: Step, log: Log) -> Action:
    assert step.job_id is not None  # noqa: S101 (the task schema requires it)
    result: Job | Done | DatoCMSError | None
    try:
        result = service.datocms.job_result(step.job_id, step.environment, log=log)
    except DatoCMSError as failure:
        _log_failure(log, failure)
        result = failure
    now = service.wall()
    _learn(service, step, result, elapsed=now - step.accepted_at)
    return after_poll(step, result, now, service.policy, service.rand())


def _learn(service: Service, step: Step, result: object, *, elapsed: float) -> None:
    """Share a finished job's duration: after the last poll that saw it running, by now.

    Only single-track requests teach: a selector's track was deleted some time after the
    request's acceptance (the fan-out), which would lengthen every duration it reports.
    """
    if service.learning is not None and isinstance(result, Done) and step.track_index is None:
        service.learning.observe(step.pending_at or 0.0, elapsed)


def _log_failure(log: Log, failure: DatoCMSError) -> None:
    serious = isinstance(failure, DatoCMSAuthError | DatoCMSBadResponse)
    (log.error if serious else log.warning)(
        "DatoCMS call failed; will retry",
        http_status=failure.http_status,
        code=failure.code,
        retry_after=failure.retry_after,
    )


def deliver_callback(service: Service, step: Step, record: Record, log: Log) -> Reply:
    """One delivery attempt, counted in the record (never taken from a header).

    The budget's last attempt, or a receiver answering 410 Gone, dead-letters.
    """
    settings = service.settings
    url = step.request.callback_url
    assert url is not None and step.callback is not None  # noqa: S101 (schema and chain)
    if not _open(record, step):
        log.info("callback already ended; task ignored", state=record.callback.state)
        return Reply(200, {"status": "already_done"})
    now = service.wall()
    record = records.mutate(service, step.request_id, lambda r: _attempted(r, step, now), now) or (
        record
    )
    attempt = record.callback.attempts
    log = log.bind(
        attempt=attempt, target=chain.redacted_target(url, settings.callback_allow_private_networks)
    )
    deadline = callback_deadline(record, records.callback_budget(service))
    last = attempt >= settings.callback_max_attempts or (deadline is not None and now >= deadline)
    if not settings.callback_signing_keys:
        if not last:
            settings.callback_keys()  # raises Misconfigured: 500, and the queue retries
        # Nothing can be signed, and no attempt is left: keep the callback.
        return _dead_letter(service, step, None, "CALLBACK_SIGNING_SECRET is missing", log)
    body = encode(step.callback)
    timestamp = int(service.wall())
    signed_headers = {
        "webhook-id": step.request_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(
            settings.callback_keys(), step.request_id, timestamp, body
        ),
        "Content-Type": "application/json",
    }
    result = service.sender.deliver(url, body, signed_headers)
    if result.delivered:
        _end(service, step, "delivered", result.status)
        log.info(
            "callback delivered",
            http_status=result.status,
            event="callback_attempt",
            callback_result="delivered",
            outcome=record.status,
            operation=LAST,
        )
        return Reply(200, {"status": "delivered", "attempt": attempt})
    if last or result.status == 410:  # 410 Gone: Standard Webhooks' "stop sending"
        return _dead_letter(service, step, result.status, result.reason, log)
    _end(service, step, "pending", result.status)
    log.warning(
        "callback attempt failed; the queue will retry",
        http_status=result.status,
        reason=result.reason,
        event="callback_attempt",
        callback_result="retry",
    )
    return error(502, "callback_failed", "The callback receiver did not accept the callback.")


def _open(record: Record, step: Step) -> bool:
    """Whether the callback sequence `step` belongs to is still going on."""
    return record.callback.resends == step.resend and record.callback.state == "pending"


def _attempted(record: Record, step: Step, now: float) -> Record:
    if not _open(record, step):
        return record
    return record.with_callback(now, attempts=record.callback.attempts + 1)


def _end(service: Service, step: Step, state: CallbackState, status: int | None) -> None:
    now = service.wall()

    def ended(record: Record) -> Record:
        if not _open(record, step):
            return record
        if state == "delivered":
            return record.with_callback(now, state=state, last_status=status, delivered_at=now)
        return record.with_callback(now, state=state, last_status=status, failed_at=now)

    records.mutate(service, step.request_id, ended, now)


def _dead_letter(service: Service, step: Step, status: int | None, reason: str, log: Log) -> Reply:
    _end(service, step, "dead_letter", status)
    chain.dead_lettered(log, step.callback or {}, http_status=status, reason=reason)
    return Reply(200, {"status": "dead_lettered"})
