"""The sweep ends, from stored state alone, what the queue may have given up on."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace

import pytest

from adapters.callback_sender import DeliveryResult
from core.headers import Headers
from core.record import SWEEP_GRACE, Record, callback_deadline, due_at, sweep_action
from devstack.datocms_simulator import DEMO_UPLOAD_ID, DatoCMSSimulator
from handlers import intake, records, steps
from handlers.responses import Reply
from tests.conftest import Harness

UPLOAD, TRACK = DEMO_UPLOAD_ID, "track1"
HOOK = "https://hooks.example.com/done"
FAILED = DeliveryResult(delivered=False, status=500, reason="HTTP 500")


@pytest.fixture
def harness(make_harness: Callable[..., Harness], simulator: DatoCMSSimulator) -> Harness:
    simulator.add_track(UPLOAD, TRACK, job_seconds=0)
    return make_harness(CALLBACK_ALLOW_PRIVATE_NETWORKS="false")


def submit(harness: Harness) -> str:
    reply = intake.submit(
        harness.service,
        intake.validate(
            {"upload_id": UPLOAD, "upload_track_id": TRACK, "callback_url": HOOK},
            allow_private=False,
        ),
        harness.service.log,
    )
    request_id: str = reply.body["request_id"]
    return request_id


def run_one(harness: Harness) -> Reply:
    task, _, _ = harness.queue.enqueued.pop(0)
    return steps.handle_http(
        harness.service, method="POST", headers=Headers(), stream=io.BytesIO(task.body)
    )


def due(harness: Harness, record: Record) -> float:
    when = due_at(record, records.callback_budget(harness.service))
    assert when is not None
    return when


def sweep(harness: Harness) -> Reply:
    return steps.handle_http(
        harness.service, method="POST", headers=Headers(), stream=io.BytesIO(b"{}"), path="/sweep"
    )


def test_a_callback_the_queue_gave_up_on_is_dead_lettered_once_by_the_sweep(
    harness: Harness,
) -> None:
    request_id = submit(harness)
    harness.clock[0] += 2
    run_one(harness)  # resume: the job is done; the callback is queued
    harness.sender.answers = [FAILED]
    assert run_one(harness).status == 502  # attempt 1 failed; the queue then drops the task
    assert sweep(harness).body["dead_lettered"] == 0  # not due yet
    record = records.load(harness.service, request_id, harness.clock[0])
    assert record is not None
    harness.clock[0] = due(harness, record) + 1
    assert sweep(harness).body["dead_lettered"] == 1
    assert sweep(harness).body["dead_lettered"] == 0  # a sweep run twice does nothing more
    record = records.load(harness.service, request_id, harness.clock[0])
    assert record is not None and record.callback.state == "dead_letter"
    [letter] = [e for e in harness.logs.entries() if e["message"] == "callback dead-lettered"]
    assert letter["severity"] == "ERROR" and letter["callback"]["data"]["request_id"] == request_id
    # The same line an attempt writes: the dead-letter metric and alert count it.
    assert letter["event"] == "callback_attempt" and letter["callback_result"] == "dead_letter"
    assert letter["logging.googleapis.com/operation"]["last"] is True
    assert letter["target"] == "https://hooks.example.com"
    assert "/done" not in str(letter)


def test_an_acceptance_whose_intake_died_is_resumed_and_the_track_deleted(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    service = harness.service
    request = intake.validate(
        {"upload_id": UPLOAD, "upload_track_id": TRACK, "callback_url": HOOK}, allow_private=False
    )
    request_id = request.request_id(None)
    fresh = records.new_record(service, request, request_id, None, harness.clock[0])
    assert records.claim(service, fresh, harness.clock[0])[0] == "won"  # then the intake died
    harness.clock[0] += 30 + SWEEP_GRACE + 1
    assert sweep(harness).body["resumed"] == 1
    assert sweep(harness).body["resumed"] == 0  # leased again: not twice
    harness.clock[0] += 31
    while harness.queue.enqueued:
        run_one(harness)
        harness.clock[0] += 2
    assert simulator.count("DELETE") == 1
    record = records.load(service, request_id, harness.clock[0])
    assert record is not None and record.status == "deleted"
    assert record.callback.state == "delivered"
    [(_, body, _)] = harness.sender.sent
    assert b'"upload_track.deleted"' in body


def test_an_attempt_past_the_sequences_age_is_its_last(harness: Harness) -> None:
    request_id = submit(harness)
    harness.clock[0] += 2
    run_one(harness)
    harness.sender.answers = [FAILED]
    record = records.load(harness.service, request_id, harness.clock[0])
    assert record is not None
    deadline = callback_deadline(record, records.callback_budget(harness.service))
    assert deadline is not None
    harness.clock[0] = deadline + 0.5  # past the deadline, not yet due for a sweep
    reply = run_one(harness)  # attempt 1 of 3, but the sequence has outlived its budget
    assert reply.body == {"status": "dead_lettered"}
    record = records.load(harness.service, request_id, harness.clock[0])
    assert record is not None and record.callback.state == "dead_letter"


def test_due_times_follow_the_lease_and_the_callback_budget(harness: Harness) -> None:
    request_id = submit(harness)
    record = records.load(harness.service, request_id, harness.clock[0])
    assert record is not None and due_at(record, 100.0) is None  # pending, no callback yet
    harness.clock[0] += 2
    run_one(harness)
    final = records.load(harness.service, request_id, harness.clock[0])
    assert final is not None and final.callback.since == harness.clock[0]
    assert due_at(final, 100.0) == harness.clock[0] + SWEEP_GRACE  # never attempted yet
    attempted = replace(final, callback=replace(final.callback, attempts=1))
    deadline = callback_deadline(attempted, 100.0)
    assert deadline is not None and deadline >= harness.clock[0] + 100.0  # room for lateness
    assert due_at(attempted, 100.0) == deadline + SWEEP_GRACE  # a minute, at most
    assert sweep_action(attempted, deadline + SWEEP_GRACE, 100.0) == "dead_letter"
    assert sweep_action(attempted, deadline, 100.0) == "none"
    assert due_at(attempted, 0.5) == callback_deadline(attempted, 0.5) + 1.0  # at least 1 s


def test_a_callback_whose_task_was_lost_is_queued_again_then_delivered(harness: Harness) -> None:
    request_id = submit(harness)
    harness.clock[0] += 2
    run_one(harness)  # final; the callback task is queued ...
    harness.queue.enqueued.clear()  # ... and lost, its name forgotten by the queue
    harness.queue.names.clear()
    assert sweep(harness).body["requeued"] == 0  # not due yet
    record = records.load(harness.service, request_id, harness.clock[0])
    assert record is not None
    harness.clock[0] = due(harness, record) + 0.5
    assert sweep(harness).body["requeued"] == 1
    assert sweep(harness).body["requeued"] == 0  # the queue knows the name now
    assert run_one(harness).body["status"] == "delivered"
    delivered = records.load(harness.service, request_id, harness.clock[0])
    assert delivered is not None and delivered.callback.state == "delivered"
    assert len(harness.sender.sent) == 1
