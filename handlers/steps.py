"""`poll_job`: the target of every task the service enqueues.

A task body is opened (signature, then schema) before anything else; a body
the service did not sign gets `401` and causes no outbound call. Then one step
runs: a retried DELETE, a poll, a finish, or one callback delivery attempt.
Answers 2xx when the step is done (including "not final yet, next poll
scheduled"), non-2xx only when the queue should retry it.
"""

from __future__ import annotations

from typing import IO

from adapters.log import Log, trace_field
from adapters.service import Service
from core import validation
from core.datocms import Done, Job
from core.errors import DatoCMSAuthError, DatoCMSBadResponse, DatoCMSError, TaskRejected
from core.flow import Action, Finish, after_delete, after_poll
from core.headers import Headers
from core.model import Step, encode
from core.signing import MAX_TASK_BODY, open_task, webhook_signature
from core.urlpolicy import parse_callback_url
from handlers import chain
from handlers.responses import Reply, error, reply_for


def handle_http(service: Service, *, method: str, headers: Headers, stream: IO[bytes]) -> Reply:
    """Open the task, run its step, answer for the queue."""
    settings = service.settings
    keys = settings.task_keys()
    if method != "POST":
        return error(405, "method_not_allowed", "Only POST is allowed.", headers={"Allow": "POST"})
    try:
        step = open_step(stream.read(MAX_TASK_BODY + 1), keys)
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
    if not service.spent.claim(step.identity, now):  # claimed before running: one at a time
        log.info("task already carried out (or running); ignored", step=step.kind)
        return Reply(200, {"status": "already_done"})
    try:
        if step.kind == "callback":
            reply = deliver_callback(service, step, headers, log)
        else:
            reply = run_step(service, step, log)
    except BaseException:
        service.spent.release(step.identity)
        raise
    if not 200 <= reply.status < 300:
        service.spent.release(step.identity)  # the queue retries it: let the retry run
    return reply


def open_step(body: bytes, keys: tuple[bytes, ...]) -> Step:
    """The `Step` in a task body, if the service signed it and it has the task schema's shape."""
    payload = open_task(body, keys)
    if validation.errors("task", payload):
        raise TaskRejected("signed task payload does not match the task schema")
    return Step.from_json(payload)


def run_step(service: Service, step: Step, log: Log) -> Reply:
    """Run a delete, poll or finish step and enqueue what follows."""
    if step.kind == "finish":
        assert step.outcome is not None  # noqa: S101 (the task schema requires it)
        chain.report(service, step, Finish(step.outcome, step.polls), log)
        return Reply(200, {"status": "finished"})
    action = _poll(service, step, log) if step.kind == "poll" else _delete(service, step, log)
    chain.carry_out(service, step, action, log)
    return Reply(200, {"status": "done", "next": type(action).__name__.lower()})


def _delete(service: Service, step: Step, log: Log) -> Action:
    result: Job | DatoCMSError
    try:
        result = service.datocms.delete_track(
            step.request.upload_id, step.request.upload_track_id, step.environment, log=log
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
    """Tell this instance's learner what a poll saw: still running, or done by now."""
    if service.learner is None or step.job_id is None:
        return
    if result is None:
        service.learner.saw_pending(step.job_id, elapsed)
    elif isinstance(result, Done):
        service.learner.saw_done(step.job_id, elapsed)


def _log_failure(log: Log, failure: DatoCMSError) -> None:
    serious = isinstance(failure, DatoCMSAuthError | DatoCMSBadResponse)
    (log.error if serious else log.warning)(
        "DatoCMS call failed; will retry",
        http_status=failure.http_status,
        code=failure.code,
        retry_after=failure.retry_after,
    )


def deliver_callback(service: Service, step: Step, headers: Headers, log: Log) -> Reply:
    """One delivery attempt; the last allowed attempt dead-letters instead of failing."""
    settings = service.settings
    url = step.request.callback_url
    assert url is not None and step.callback is not None  # noqa: S101 (schema and chain)
    attempt = _retry_count(headers) + 1
    target = _redacted(url, settings.callback_allow_private_networks)
    if not settings.callback_signing_keys and attempt >= settings.callback_max_attempts:
        # Nothing can be signed, and the queue will not try again: keep the callback.
        log.error(
            "callback dead-lettered",
            attempt=attempt,
            reason="CALLBACK_SIGNING_SECRET is missing",
            target=target,
            callback=step.callback,
        )
        return Reply(200, {"status": "dead_lettered", "attempt": attempt})
    keys = settings.callback_keys()
    body = encode(step.callback)
    timestamp = int(service.wall())
    signed_headers = {
        "webhook-id": step.request_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(keys, step.request_id, timestamp, body),
        "Content-Type": "application/json",
    }
    result = service.sender.deliver(url, body, signed_headers)
    if result.delivered:
        log.info("callback delivered", attempt=attempt, http_status=result.status, target=target)
        return Reply(200, {"status": "delivered", "attempt": attempt})
    # The contract: retried until 2xx or the budget is spent, whatever the failure
    # (410 Gone and a host refused at send time included).
    last = attempt >= settings.callback_max_attempts
    if last:
        log.error(
            "callback dead-lettered",
            attempt=attempt,
            http_status=result.status,
            reason=result.reason,
            target=target,
            callback=step.callback,
        )
        return Reply(200, {"status": "dead_lettered", "attempt": attempt})
    log.warning(
        "callback attempt failed; the queue will retry",
        attempt=attempt,
        http_status=result.status,
        reason=result.reason,
        target=target,
    )
    return error(502, "callback_failed", "The callback receiver did not accept the callback.")


def _retry_count(headers: Headers) -> int:
    raw = headers.get("x-cloudtasks-taskretrycount", "0")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 0


def _redacted(url: str, allow_private: bool) -> str:
    try:
        return parse_callback_url(url, allow_private=allow_private).redacted
    except ValueError:
        return "(invalid)"
