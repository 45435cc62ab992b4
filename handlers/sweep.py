"""The sweep: end what the queue may have given up on, from stored state alone.

Cloud Scheduler calls `POST /sweep` on `poll_job` every few minutes (the local stack
runs a timer). Each record past its due time is ended or carried on: a callback
sequence that outlived its budget becomes a dead letter (log and record), a callback
never attempted is queued again, and an acceptance whose intake died holding the
lease is resumed by its task 1. Nothing here calls DatoCMS
or a receiver; a sweep run twice does nothing more.
"""

from __future__ import annotations

from adapters.log import Log
from adapters.service import Service
from core.model import Step
from core.record import LEASE_SECONDS, Record, sweep_action
from handlers import chain, records
from handlers.responses import Reply

BATCH = 100


def sweep(service: Service, log: Log) -> Reply:
    """One pass over the records that are due."""
    now = service.wall()
    budget = records.callback_budget(service)
    ended = resumed = requeued = 0
    for document in service.records.due(now=now, limit=BATCH):
        record = Record.from_json(document.data)
        action = sweep_action(record, now, budget)
        if action == "dead_letter" and _dead_letter(service, record, now, budget, log):
            ended += 1
        elif action == "resume" and _resume(service, record, now, budget, log):
            resumed += 1
        elif action == "requeue" and _requeue(service, record, log):
            requeued += 1
    counts = {"dead_lettered": ended, "resumed": resumed, "requeued": requeued}
    if ended or resumed or requeued:
        log.info("sweep done", **counts)
    return Reply(200, {"status": "swept", **counts})


def _requeue(service: Service, record: Record, log: Log) -> bool:
    """Queue again a callback no attempt was made of (its task may be lost; the task's
    fixed name keeps a second copy out while the first is known to the queue)."""
    request = records.request_of(service, record)
    if request.callback_url is None:
        return False  # the URL cannot be opened any more: the deadline dead-letters it
    created = chain.enqueue(service, chain.callback_step(service, record, request), 0.0)
    if created:
        log.bind(request_id=record.request_id).warning("a callback never attempted; queued again")
    return created


def _dead_letter(service: Service, record: Record, now: float, budget: float, log: Log) -> bool:
    def ended(current: Record) -> Record:
        if sweep_action(current, now, budget) != "dead_letter":
            return current
        return current.with_callback(now, state="dead_letter", failed_at=now)

    updated = records.mutate(service, record.request_id, ended, now)
    if updated is None or updated.callback.state != "dead_letter" or updated.updated_at != now:
        return False
    url = records.callback_url(service, updated)
    chain.dead_lettered(
        log.bind(request_id=record.request_id, upload_id=record.upload_id),
        updated.callback_body(),
        http_status=updated.callback.last_status,
        reason="the callback's budget ran out (the queue gave up on it)",
        attempt=updated.callback.attempts,
        target=chain.redacted_target(url, service.settings.callback_allow_private_networks)
        if url is not None
        else None,
    )
    return True


def _resume(service: Service, record: Record, now: float, budget: float, log: Log) -> bool:
    def leased(current: Record) -> Record:
        if sweep_action(current, now, budget) != "resume":
            return current
        return current.touched(now, lease_until=now + LEASE_SECONDS)

    updated = records.mutate(service, record.request_id, leased, now)
    if updated is None or updated.lease_until != now + LEASE_SECONDS:
        return False
    first = Step(
        kind="resume",
        request_id=updated.request_id,
        request=records.request_of(service, updated),
        environment=updated.environment,
        accepted_at=updated.accepted_at,
        number=1,
        not_after=chain.step_not_after(updated.accepted_at, service),
    )
    chain.enqueue(service, first, LEASE_SECONDS)  # after the new lease: then it may act
    log.bind(request_id=record.request_id).warning("an intake died mid-acceptance; resumed")
    return True
