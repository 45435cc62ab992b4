"""Carrying out a selector request (`core.selector`): accept, list, fan out, summarise.

The intake records the request and enqueues its listing (task 1); nothing goes to
DatoCMS before. The listing writes the matched tracks into the record before it
enqueues their chains (`<request_id>-<acceptance>-t<i>-<n>`), so a listing task
run again re-enqueues the same names and never lists anew. The chain that makes
the last track final queues the one summary callback.
"""

from __future__ import annotations

from adapters.log import Log
from adapters.service import Service
from core import selector
from core.datocms import ListedTrack
from core.errors import DatoCMSError, QueueUnavailable, StateUnavailable
from core.flow import Action, Finish
from core.model import Step
from core.record import Record
from handlers import chain, records
from handlers.responses import Reply


def accept(service: Service, intake: Step, record: Record, log: Log) -> Reply:
    """Enqueue the listing, mark the request queued, answer `202 queued`."""
    try:
        chain.enqueue(service, intake.next("list"), 0.0)
    except QueueUnavailable as failure:
        log.error("task queue unavailable; nothing was sent to DatoCMS", reason=str(failure))
        records.abandon(service, record, service.wall())
        raise
    now = service.wall()

    def queued(current: Record) -> Record:
        if current.accepted_at != intake.accepted_at or current.status != "accepting":
            return current
        return current.touched(now, status="queued", lease_until=None, next_at=now)

    try:
        records.mutate(service, intake.request_id, queued, now)
    except StateUnavailable as failure:  # the listing task carries on regardless
        log.warning("could not record the acceptance", reason=str(failure))
    log.info("selector request accepted; listing queued", selector=intake.request.tracks)
    return records.accepted(service, 202, intake.request_id, "queued")


def run_list(service: Service, step: Step, record: Record, log: Log, now: float) -> Reply:
    """The listing step: list and match once, then (re-)enqueue every matched track's chain."""
    if record.tracks is not None:  # listed by an earlier run of this task: never list anew
        _fan_out(service, step, record, log)
        return Reply(200, {"status": "done", "next": "fanout"})
    result: tuple[ListedTrack, ...] | DatoCMSError
    try:
        result = service.datocms.list_tracks(step.request.upload_id, step.environment, log=log)
    except DatoCMSError as failure:
        log.warning(
            "DatoCMS track listing failed",
            http_status=failure.http_status,
            code=failure.code,
            retry_after=failure.retry_after,
        )
        result = failure
    now = service.wall()
    action = selector.after_list(step, result, now, service.policy, service.rand())
    if isinstance(action, selector.Conclude):
        _conclude(service, step, lambda r: selector.concluded(r, step, action, now), log)
        return Reply(200, {"status": "done", "next": "finish"})
    if isinstance(action, selector.FanOut):
        stored = records.mutate(
            service, step.request_id, lambda r: selector.listed(r, step, action.tracks, now), now
        )
        if stored is None or stored.accepted_at != step.accepted_at or stored.done:
            log.info("request record gone or superseded; fan-out dropped")
            return Reply(200, {"status": "superseded"})
        log.info("tracks matched", matched=len(action.tracks))
        _fan_out(service, step, stored, log)
        return Reply(200, {"status": "done", "next": "fanout"})
    chain.enqueue(service, action.step, action.delay)
    log.info("listing scheduled again", delay_seconds=round(action.delay, 3))
    records.mutate(
        service, step.request_id, lambda r: selector.relisting(r, step, action, now), now
    )
    return Reply(200, {"status": "done", "next": "schedule"})


def _fan_out(service: Service, listing: Step, record: Record, log: Log) -> None:
    """Enqueue the first step of every matched track not yet past it (names make it once)."""
    for index, entry in enumerate(record.tracks or []):
        if entry["step"] != 1 or entry["status"] in selector.TRACK_FINAL:
            continue
        first, delay = selector.track_step(listing, index, entry)
        chain.enqueue(service, first, delay)
    log.info("track deletions scheduled", matched=len(record.tracks or []))


def lists(record: Record) -> bool:
    """Whether a `resume` of `record` (the sweep's, after a dead intake) is its listing."""
    return record.selector is not None and not record.done


def still_running(record: Record, step: Step) -> bool:
    """Whether `step` is the current step of its track's chain (else: redelivered or late)."""
    return selector.entry_of(record, step) is not None


def carry_out(service: Service, current: Step, action: Action, log: Log) -> None:
    """`chain.carry_out` for the chain of one matched track: its entry, not the record."""
    now = service.wall()
    action = selector.from_own_delete(current, action, now, service.policy, service.rand())
    if isinstance(action, Finish):
        log.info("track finished", status=action.outcome.status, job_id=action.outcome.job_id)
        _conclude(
            service, current, lambda r: selector.track_concluded(r, current, action, now), log
        )
        return
    created = chain.enqueue(service, action.step, action.delay)
    log.info(
        "scheduled" if created else "already scheduled",
        step=action.step.kind,
        next_task=action.step.name,
        delay_seconds=round(action.delay, 3),
        job_id=action.step.job_id,
    )
    records.mutate(
        service,
        current.request_id,
        lambda r: selector.track_progressed(r, current, action, now),
        now,
    )


def _conclude(service: Service, step: Step, change: selector.Change, log: Log) -> None:
    """Apply `change`; if it made the request final, queue the one summary callback."""
    ended: list[bool] = []

    def changed(record: Record) -> Record:
        after = change(record)
        ended.append(after.done and not record.done)
        return after

    now = service.wall()
    record = records.mutate(service, step.request_id, changed, now)
    if record is None or not ended or not ended[-1]:
        return
    chain.queue_callback(service, selector.summary_step(step, record), record, log)
