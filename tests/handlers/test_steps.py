"""`poll_job`'s handler: each step kind, callbacks, retries and dead letters."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from standardwebhooks.webhooks import Webhook

from adapters.callback_sender import DeliveryResult
from core.flow import Finish
from core.headers import Headers
from core.model import DeletionRequest, Outcome, Step
from core.signing import seal_task
from devstack.datocms_simulator import DEMO_UPLOAD_ID, DatoCMSSimulator
from devstack.stack import Secrets
from handlers import chain, records, steps
from handlers.responses import Reply
from tests.conftest import Harness, make_step

UPLOAD, TRACK = DEMO_UPLOAD_ID, "track1"
REQUEST = DeletionRequest(
    UPLOAD, TRACK, callback_url="https://hooks.example.com/done", metadata={"t": 1}
)
FAILED = DeliveryResult(delivered=False, status=500, reason="HTTP 500")


def deliver(harness: Harness, step: Step, *, retry_count: int = 0) -> Reply:
    body = seal_task(step.to_json(), harness.service.settings.task_signing_keys[0])
    return steps.handle_http(
        harness.service,
        method="POST",
        headers=Headers({"X-CloudTasks-TaskRetryCount": str(retry_count)}),
        stream=io.BytesIO(body),
    )


def callback_step(harness: Harness) -> Step:
    harness.service.queue = harness.queue
    chain.report(
        harness.service,
        make_step(harness, REQUEST, job_id="j"),
        chain.Finish(Outcome("deleted", job_id="j"), 3),
        harness.service.log,
    )
    [payload] = harness.queue.payloads()
    return Step.from_json(payload)


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


def test_poll_of_a_running_job_schedules_the_next_poll_and_answers_200(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK, job_seconds=60)
    job_id = simulator_job(simulator, harness)
    reply = deliver(harness, make_step(harness, REQUEST, job_id=job_id))
    assert reply.status == 200
    [payload] = harness.queue.payloads()
    assert payload["kind"] == "poll" and payload["polls"] == 1 and payload["number"] == 2


def simulator_job(simulator: DatoCMSSimulator, harness: Harness) -> str:
    result = harness.service.datocms.delete_track(UPLOAD, TRACK, None)
    return result.id  # type: ignore[union-attr]


def test_poll_of_a_finished_job_queues_one_callback(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK, job_seconds=0)
    job_id = simulator_job(simulator, harness)
    assert deliver(harness, make_step(harness, REQUEST, job_id=job_id, polls=4)).status == 200
    [(task, delay, name)] = harness.queue.enqueued
    payload = json.loads(json.loads(task.body)["payload"])
    assert task.role.value == "callbacks" and delay == 0 and name.endswith("-cb")
    assert payload["callback"]["type"] == "upload_track.deleted"
    assert payload["callback"]["data"]["polls"] == 5
    assert payload["callback"]["data"]["track"]["name"] == "Italiano"


def test_poll_of_a_failed_job_reports_the_datocms_code(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK, job_seconds=0, outcome=(422, "NOT_A_VIDEO"))
    job_id = simulator_job(simulator, harness)
    deliver(harness, make_step(harness, REQUEST, job_id=job_id))
    callback = harness.queue.payloads()[0]["callback"]
    assert callback["type"] == "upload_track.deletion_failed"
    assert callback["data"]["error"]["code"] == "NOT_A_VIDEO"
    assert callback["data"]["error"]["http_status"] == 422


def test_poll_past_the_deadline_reports_timed_out(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, TRACK, job_seconds=600)
    job_id = simulator_job(simulator, harness)
    step = make_step(harness, REQUEST, job_id=job_id, accepted_at=harness.clock[0] - 901)
    deliver(harness, step)
    assert harness.queue.payloads()[0]["callback"]["type"] == "upload_track.deletion_timed_out"


def test_poll_during_a_datocms_outage_reschedules_instead_of_failing(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.inject("html_502")
    reply = deliver(harness, make_step(harness, REQUEST, job_id="abc"))
    assert reply.status == 200
    [payload] = harness.queue.payloads()
    assert payload["kind"] == "poll" and payload["failures"] == 1


def test_retried_delete_step_starts_polling(harness: Harness, simulator: DatoCMSSimulator) -> None:
    simulator.add_track(UPLOAD, TRACK, job_seconds=5)
    assert deliver(harness, make_step(harness, REQUEST, "delete")).status == 200
    [payload] = harness.queue.payloads()
    assert payload["kind"] == "poll" and payload["job_id"]


def test_queue_outage_during_a_step_answers_503_so_the_task_is_retried(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    from core.errors import QueueUnavailable

    simulator.add_track(UPLOAD, TRACK, job_seconds=5)
    harness.queue.fail_with = QueueUnavailable("down")
    with pytest.raises(QueueUnavailable):
        deliver(harness, make_step(harness, REQUEST, "delete"))


def test_resume_of_a_request_final_at_intake_queues_the_callback_once(harness: Harness) -> None:
    resume = make_step(harness, REQUEST, "resume")
    now = harness.clock[0]
    records.mutate(
        harness.service,
        resume.request_id,
        lambda r: chain.concluded(r, resume, Finish(Outcome("not_found"), 0), now),
        now,
    )
    assert deliver(harness, resume).status == 200
    assert harness.queue.payloads()[0]["callback"]["type"] == "upload_track.already_deleted"
    harness.service.spent.release(resume.name)  # as if delivered again to another instance
    assert deliver(harness, resume).status == 200
    assert len(harness.queue.enqueued) == 1


def test_callback_is_signed_per_standard_webhooks(harness: Harness, secrets: Secrets) -> None:
    harness.clock[0] = time.time()  # receivers check the timestamp against their own clock
    step = callback_step(harness)
    assert deliver(harness, step).status == 200
    [(url, body, headers)] = harness.sender.sent
    assert url == "https://hooks.example.com/done"
    assert headers["webhook-id"] == step.request_id
    assert headers["Content-Type"] == "application/json"
    payload = Webhook(secrets.callback_secret).verify(body, headers)
    assert payload["data"]["metadata"] == {"t": 1}


def test_failed_callback_answers_non_2xx_so_the_queue_retries(harness: Harness) -> None:
    step = callback_step(harness)
    harness.sender.answers = [FAILED]
    reply = deliver(harness, step, retry_count=0)
    assert reply.status == 502
    assert reply.body["error"]["code"] == "callback_failed"


def test_retries_keep_the_webhook_id_and_sign_afresh(harness: Harness) -> None:
    step = callback_step(harness)
    harness.sender.answers = [FAILED]
    deliver(harness, step, retry_count=0)
    harness.clock[0] += 7
    deliver(harness, step, retry_count=1)
    first, second = (headers for _, _, headers in harness.sender.sent)
    assert first["webhook-id"] == second["webhook-id"]
    assert int(second["webhook-timestamp"]) == int(first["webhook-timestamp"]) + 7
    assert first["webhook-signature"] != second["webhook-signature"]


def test_last_attempt_dead_letters_with_the_whole_body_and_answers_200(harness: Harness) -> None:
    step = callback_step(harness)
    harness.sender.answers = [FAILED, FAILED, FAILED]
    assert [deliver(harness, step).status for _ in range(2)] == [502, 502]
    reply = deliver(harness, step)  # CALLBACK_MAX_ATTEMPTS=3: this is the third
    assert reply.status == 200 and reply.body["status"] == "dead_lettered"
    [entry] = [e for e in harness.logs.entries() if e["message"] == "callback dead-lettered"]
    assert entry["severity"] == "ERROR"
    assert entry["callback"] == step.callback
    assert entry["target"] == "https://hooks.example.com"
    assert "/done" not in json.dumps(entry)
    record = records.load(harness.service, step.request_id, harness.clock[0])
    assert record is not None and record.callback.state == "dead_letter"
    assert record.callback.attempts == 3 and record.callback.last_status == 500


def test_the_attempt_budget_is_counted_in_the_record_never_taken_from_the_header(
    harness: Harness,
) -> None:
    step = callback_step(harness)
    harness.sender.answers = [FAILED]
    reply = deliver(harness, step, retry_count=11)  # a replayed task claiming its last attempt
    assert reply.status == 502  # attempt 1 of 3: the queue retries, nothing dead-lettered
    assert deliver(harness, step, retry_count=11).body["status"] == "delivered"


def test_a_receiver_answering_410_dead_letters_at_once(harness: Harness) -> None:
    step = callback_step(harness)
    harness.sender.answers = [DeliveryResult(delivered=False, status=410, reason="gone")]
    assert deliver(harness, step).body["status"] == "dead_lettered"
    assert deliver(harness, step).body["status"] == "already_done"
    assert len(harness.sender.sent) == 1


def test_callback_without_a_signing_secret_is_misconfigured(
    make_harness: Callable[..., Harness],
) -> None:
    from core.errors import Misconfigured

    signing = make_harness()
    step = callback_step(signing)
    unsigned = make_harness(
        CALLBACK_SIGNING_SECRET="",
        TASK_SIGNING_SECRET=signing.service.settings.task_signing_keys[0].decode(),
    )
    unsigned.service.records = signing.service.records
    for _ in range(2):
        with pytest.raises(Misconfigured):
            deliver(unsigned, step)
        unsigned.service.spent.release(step.name)
    assert unsigned.sender.sent == []
    last = deliver(unsigned, step)  # CALLBACK_MAX_ATTEMPTS=3: the last attempt
    assert last.body["status"] == "dead_lettered"
    [letter] = [e for e in unsigned.logs.entries() if e["message"] == "callback dead-lettered"]
    assert letter["callback"] == step.callback and letter["severity"] == "ERROR"


def test_a_finished_job_is_shared_with_every_instance_with_the_interval_the_task_carried(
    harness: Harness, simulator: DatoCMSSimulator, make_harness: Callable[..., Harness]
) -> None:
    from adapters.shared_learning import SharedLearning

    def learning(of: Harness) -> SharedLearning:
        shared = SharedLearning(harness.service.shared, lambda: of.clock[0], of.service.log)
        of.service.learning = shared
        return shared

    mine = learning(harness)
    simulator.add_track(UPLOAD, TRACK, job_seconds=0)
    job_id = simulator_job(simulator, harness)
    harness.clock[0] += 4.0
    pending = make_step(
        harness,
        DeletionRequest(UPLOAD, "other-track"),
        job_id="0123456789abcdef01234567",  # a job still running: nothing to learn yet
        accepted_at=harness.clock[0] - 2.0,
    )
    deliver(harness, pending)
    [payload] = harness.queue.payloads()
    assert payload["pending_at"] == pytest.approx(2.0)  # carried to the next poll, signed
    done = make_step(
        harness,
        REQUEST,
        job_id=job_id,
        accepted_at=harness.clock[0] - 4.0,
        number=2,
        pending_at=1.5,
    )
    deliver(harness, done)
    assert mine.planner.value.recent == ((1.5, 4.0),)
    other = learning(make_harness())  # a new instance, reading the same shared store
    assert other.planner.value.seen == 0
    other.refresh()
    assert other.planner.value.recent == ((1.5, 4.0),)


def test_the_same_callback_task_delivered_twice_at_once_is_sent_once(harness: Harness) -> None:
    import threading

    step = callback_step(harness)
    entered, release = threading.Event(), threading.Event()
    original = harness.sender.deliver

    def slow_deliver(url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
        entered.set()
        release.wait(5)
        return original(url, body, headers)

    harness.sender.deliver = slow_deliver  # type: ignore[method-assign]
    first: list[Reply] = []
    worker = threading.Thread(target=lambda: first.append(deliver(harness, step)))
    worker.start()
    assert entered.wait(5)
    second = deliver(harness, step)
    release.set()
    worker.join(5)
    # Not acknowledged while the first may still fail: the queue comes back later.
    assert (second.status, second.body["error"]["code"]) == (503, "in_progress")
    assert first[0].body["status"] == "delivered"
    assert len(harness.sender.sent) == 1
    assert deliver(harness, step).body == {"status": "already_done"}


def test_a_failed_attempt_does_not_block_the_queues_retry(harness: Harness) -> None:
    step = callback_step(harness)
    harness.sender.answers = [FAILED]
    assert deliver(harness, step).status == 502
    assert deliver(harness, step, retry_count=1).body["status"] == "delivered"


def test_a_selectors_track_does_not_teach_the_shared_durations(harness: Harness) -> None:
    from adapters.shared_learning import SharedLearning
    from core.datocms import Done

    shared = SharedLearning(harness.service.shared, lambda: harness.clock[0], harness.service.log)
    harness.service.learning = shared
    single = make_step(harness, REQUEST, job_id="j", pending_at=1.0)
    done = Done(http_status=200, payload=None)
    steps._learn(harness.service, replace(single, track_index=3), done, elapsed=9.0)
    assert shared.planner.value.seen == 0  # the fan-out's delay would lengthen it
    steps._learn(harness.service, single, done, elapsed=2.0)
    assert shared.planner.value.recent == ((1.0, 2.0),)
