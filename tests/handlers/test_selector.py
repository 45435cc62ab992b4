"""Deleting by selector in-process: intake, listing, per-track chains, the summary callback."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from core import validation
from core.headers import Headers
from devstack.datocms_simulator import DEMO_UPLOAD_ID, DatoCMSSimulator
from handlers import intake, steps
from handlers.responses import Reply
from tests.conftest import Harness

UPLOAD = DEMO_UPLOAD_ID
HOOK = "https://hooks.example.com/tracks"
ITALIAN = {"language_code": "it-IT", "type": "subtitles"}


def call(harness: Harness, method: str, path: str, body: Any = None) -> Reply:
    data = json.dumps(body).encode() if body is not None else b""
    token = harness.service.settings.intake_tokens()[0]
    return intake.handle_http(
        harness.service,
        method=method,
        headers=Headers({"content-type": "application/json", "authorization": f"Bearer {token}"}),
        content_length=len(data),
        stream=io.BytesIO(data),
        path=path,
        query={},
    )


def submit(harness: Harness, tracks: Any = None, **extra: Any) -> Reply:
    body = {"upload_id": UPLOAD, "tracks": ITALIAN if tracks is None else tracks}
    return call(harness, "POST", "/", {"callback_url": HOOK, **body, **extra})


def run_tasks(harness: Harness, *, seen: list[tuple[bytes, float, str]] | None = None) -> None:
    """Deliver every enqueued task to poll_job, in order, until none is left."""
    while harness.queue.enqueued:
        task, delay, name = harness.queue.enqueued.pop(0)
        if seen is not None:
            seen.append((task.body, delay, name))
        deliver(harness, task.body)


def payload_of(body: bytes) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.loads(body)["payload"])
    return payload


def deliver(harness: Harness, body: bytes) -> Reply:
    return steps.handle_http(
        harness.service, method="POST", headers=Headers(), stream=io.BytesIO(body)
    )


def callbacks(harness: Harness) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body, _ in harness.sender.sent]


def status(harness: Harness, request_id: str) -> dict[str, Any]:
    answer = call(harness, "GET", f"/requests/{request_id}")
    assert answer.status == 200
    assert validation.errors("request_status", answer.body) == []
    return answer.body


def add(simulator: DatoCMSSimulator, track_id: str, **attributes: Any) -> None:
    simulator.add_track(UPLOAD, track_id, job_seconds=0, **attributes)


@pytest.fixture
def harness(make_harness: Callable[..., Harness], simulator: DatoCMSSimulator) -> Harness:
    add(simulator, "itSubs1", language_code="it-IT", name="Italiano")
    add(simulator, "itSubs2", language_code="it-it", name="Italiano (auto)", closed_captions=True)
    add(simulator, "itAudio", type="audio", language_code="it-IT")
    add(simulator, "enSubs", language_code="en-US", name="English")
    return make_harness()


def test_a_selector_is_queued_at_intake_without_calling_datocms(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    accepted = submit(harness)
    assert accepted.status == 202
    assert accepted.body == {"request_id": accepted.body["request_id"], "status": "queued"}
    assert accepted.headers["Location"] == f"/requests/{accepted.body['request_id']}"
    assert simulator.count() == 0
    ((task, delay, name),) = harness.queue.enqueued
    assert payload_of(task.body)["kind"] == "list" and delay == 0
    assert name.endswith("-1")
    view = status(harness, accepted.body["request_id"])
    assert view["status"] == "queued" and view["selector"] == {
        "language_code": "it-it",
        "type": "subtitles",
    }
    assert view["upload_track_id"] is None and view["tracks"] is None and view["matched"] is None


def test_every_matched_track_is_deleted_and_one_summary_callback_is_sent(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    accepted = submit(harness, metadata={"ticket": "SUB-42"})
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert validation.errors("callback", body) == []
    assert body["type"] == "upload_tracks.deleted"
    data = body["data"]
    assert data["request_id"] == accepted.body["request_id"]
    assert data["status"] == "deleted" and data["matched"] == 2 and data["error"] is None
    assert data["selector"] == {"language_code": "it-it", "type": "subtitles"}
    assert data["metadata"] == {"ticket": "SUB-42"} and data["upload_id"] == UPLOAD
    assert [t["upload_track_id"] for t in data["tracks"]] == ["itSubs1", "itSubs2"]
    assert {t["status"] for t in data["tracks"]} == {"deleted"}
    assert all(t["job_id"] and t["track"]["language_code"] for t in data["tracks"])
    assert data["polls"] == simulator.count("GET", "/job-results/") == 2
    assert simulator.count("DELETE") == 2 and simulator.count("GET", "/uploads/") == 1
    assert [t["id"] for t in simulator.tracks(UPLOAD)] == ["itAudio", "enSubs"]
    view = status(harness, accepted.body["request_id"])
    assert view["status"] == "deleted" and view["done"] is True and view["matched"] == 2
    assert view["outcome"] == data and view["polls"] == 2
    assert view["tracks"] == data["tracks"] and view["callback"]["state"] == "delivered"


def test_all_deletes_every_track_of_the_upload(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    submit(harness, {"all": True})
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted" and body["data"]["matched"] == 4
    assert simulator.tracks(UPLOAD) == []


@pytest.mark.parametrize(
    ("tracks", "matched"),
    [
        ({"type": "audio"}, ["itAudio"]),
        ({"name": "English"}, ["enSubs"]),
        ({"name": "english"}, []),
        ({"closed_captions": True}, ["itSubs2"]),
        ({"language_code": "IT-it", "closed_captions": False}, ["itSubs1", "itAudio"]),
    ],
)
def test_each_selector_field_matches_as_the_contract_says(
    harness: Harness, tracks: dict[str, Any], matched: list[str]
) -> None:
    submit(harness, tracks)
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert [t["upload_track_id"] for t in body["data"]["tracks"]] == matched


def test_no_match_is_none_matched_and_deletes_nothing(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    accepted = submit(harness, {"language_code": "de"})
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert validation.errors("callback", body) == []
    assert body["type"] == "upload_tracks.none_matched"
    assert body["data"]["status"] == "none_matched" and body["data"]["matched"] == 0
    assert body["data"]["tracks"] == [] and body["data"]["polls"] == 0
    assert simulator.count("DELETE") == 0
    assert status(harness, accepted.body["request_id"])["status"] == "none_matched"


def test_an_unknown_upload_is_deletion_failed_not_found(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    submit(harness, {"all": True}, upload_id="nosuchupload")
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert validation.errors("callback", body) == []
    assert body["type"] == "upload_tracks.deletion_failed"
    assert body["data"]["status"] == "failed" and body["data"]["error"]["code"] == "NOT_FOUND"
    assert body["data"]["error"]["http_status"] == 404 and body["data"]["matched"] == 0
    assert simulator.count("DELETE") == 0


def test_more_than_100_matches_is_too_many_tracks_and_deletes_nothing(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    for n in range(101):
        add(simulator, f"bulk{n}", type="audio")
    accepted = submit(harness, {"type": "audio"})
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert validation.errors("callback", body) == []
    assert body["type"] == "upload_tracks.deletion_failed"
    assert body["data"]["error"]["code"] == "too_many_tracks"
    assert body["data"]["matched"] == 102 and body["data"]["tracks"] == []
    assert simulator.count("DELETE") == 0
    assert status(harness, accepted.body["request_id"])["matched"] == 102


def test_exactly_100_matches_are_all_deleted(harness: Harness, simulator: DatoCMSSimulator) -> None:
    for n in range(99):
        add(simulator, f"bulk{n}", type="audio")
    submit(harness, {"type": "audio"})
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted" and body["data"]["matched"] == 100
    assert simulator.count("DELETE") == 100


def test_some_failing_is_partially_failed_with_each_tracks_error(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    add(simulator, "itSubs2", language_code="it-IT", outcome=(422, "MUX_ERROR"))
    submit(harness)
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert validation.errors("callback", body) == []
    assert body["type"] == "upload_tracks.partially_failed"
    by_id = {t["upload_track_id"]: t for t in body["data"]["tracks"]}
    assert by_id["itSubs1"]["status"] == "deleted" and by_id["itSubs1"]["error"] is None
    assert by_id["itSubs2"]["status"] == "failed"
    assert by_id["itSubs2"]["error"]["code"] == "MUX_ERROR"


def test_all_failing_is_deletion_failed(harness: Harness, simulator: DatoCMSSimulator) -> None:
    add(simulator, "itSubs1", language_code="it-IT", outcome=(422, "MUX_ERROR"))
    add(simulator, "itSubs2", language_code="it-IT", outcome=(422, "NOT_A_VIDEO"))
    submit(harness)
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deletion_failed" and body["data"]["status"] == "failed"
    assert body["data"]["error"] is None


def test_a_track_already_gone_counts_as_deleted(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    submit(harness)
    list_task = harness.queue.enqueued.pop(0)
    deliver(harness, list_task[0].body)
    simulator.remove_track(UPLOAD, "itSubs2")  # gone between the listing and its DELETE
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted"
    by_id = {t["upload_track_id"]: t for t in body["data"]["tracks"]}
    assert by_id["itSubs2"]["status"] == "not_found"


def test_a_track_added_after_the_listing_is_never_deleted(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    submit(harness)
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)
    add(simulator, "itSubsLate", language_code="it-IT")
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["data"]["matched"] == 2
    assert "itSubsLate" in [t["id"] for t in simulator.tracks(UPLOAD)]


def test_an_undocumented_listing_is_deletion_failed_invalid_answer(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.inject("undocumented", match=("GET", "/uploads/"))
    submit(harness)
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deletion_failed"
    assert body["data"]["error"]["code"] == "invalid_answer"
    assert simulator.count("DELETE") == 0


@pytest.mark.parametrize("fault", ["503", "html_502", "drop", ("429", 0)])
def test_an_unavailable_listing_is_tried_again(
    harness: Harness, simulator: DatoCMSSimulator, fault: Any
) -> None:
    simulator.inject(fault, match=("GET", "/uploads/"))
    submit(harness)
    seen: list[tuple[bytes, float, str]] = []
    run_tasks(harness, seen=seen)
    kinds = [payload_of(body)["kind"] for body, _, _ in seen]
    assert kinds[:2] == ["list", "list"]
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted" and body["data"]["matched"] == 2
    assert simulator.count("GET", "/uploads/") == 2


def test_a_listing_unavailable_past_the_deadline_is_deletion_failed(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.inject("503", times=2, match=("GET", "/uploads/"))
    submit(harness)
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)
    harness.clock[0] += harness.service.settings.poll_timeout + 1
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deletion_failed"
    assert body["data"]["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_a_track_whose_job_outlives_the_deadline_times_out_in_the_summary(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    simulator.add_track(UPLOAD, "itSubs2", language_code="it-IT", job_seconds=3600)
    submit(harness)
    seen: list[tuple[bytes, float, str]] = []
    while harness.queue.enqueued and not callbacks(harness):
        harness.clock[0] += 60
        run_tasks_once = harness.queue.enqueued.pop(0)
        seen.append((run_tasks_once[0].body, run_tasks_once[1], run_tasks_once[2]))
        deliver(harness, run_tasks_once[0].body)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.partially_failed"
    by_id = {t["upload_track_id"]: t for t in body["data"]["tracks"]}
    assert by_id["itSubs2"]["status"] == "timed_out" and by_id["itSubs1"]["status"] == "deleted"
    assert body["data"]["polls"] == simulator.count("GET", "/job-results/")


def test_the_fan_out_is_spread_and_each_track_has_its_own_task_names(harness: Harness) -> None:
    submit(harness, {"all": True})
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)
    firsts = list(harness.queue.enqueued)
    payloads = [payload_of(task.body) for task, _, _ in firsts]
    assert [p["track_index"] for p in payloads] == [0, 1, 2, 3]
    assert [p["request"]["upload_track_id"] for p in payloads] == [
        "itSubs1", "itSubs2", "itAudio", "enSubs",
    ]  # fmt: skip
    assert [name.rsplit("-", 2)[1:] for _, _, name in firsts] == [
        ["t0", "1"], ["t1", "1"], ["t2", "1"], ["t3", "1"],
    ]  # fmt: skip
    delays = [delay for _, delay, _ in firsts]
    assert delays == sorted(delays) and delays[0] == 0
    assert min(b - a for a, b in itertools.pairwise(delays)) >= 3.0 / 60 - 1e-9


def test_a_tracks_first_poll_is_planned_from_its_own_delete(harness: Harness) -> None:
    submit(harness, {"all": True})
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)  # the listing
    deletes = [task.body for task, _, _ in harness.queue.enqueued]
    harness.queue.enqueued.clear()
    harness.clock[0] += 2.5  # the cold schedule from the acceptance would poll at 3 s
    deliver(harness, deletes[3])
    ((task, delay, _),) = harness.queue.enqueued
    assert payload_of(task.body)["kind"] == "poll"
    assert delay == harness.service.settings.poll_initial_delay


def test_a_redelivered_delete_task_never_deletes_twice(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    submit(harness)
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)  # the listing
    first_delete = harness.queue.enqueued.pop(0)[0].body
    deliver(harness, first_delete)
    assert simulator.count("DELETE") == 1
    harness.service.spent = type(harness.service.spent)(3600.0)  # another instance
    assert deliver(harness, first_delete).body == {"status": "superseded"}
    assert simulator.count("DELETE") == 1
    seen: list[tuple[bytes, float, str]] = []
    run_tasks(harness, seen=seen)
    harness.service.spent = type(harness.service.spent)(3600.0)
    for body, _, _ in seen:
        deliver(harness, body)
    run_tasks(harness)
    assert simulator.count("DELETE") == 2 and len(callbacks(harness)) == 1


def test_a_listing_run_again_after_a_crash_fans_out_without_listing_again(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    submit(harness)
    listing = harness.queue.enqueued.pop(0)[0].body
    deliver(harness, listing)
    harness.queue.enqueued.clear()  # the fan-out was lost (a crash)
    harness.queue.names.clear()
    harness.service.spent = type(harness.service.spent)(3600.0)
    deliver(harness, listing)
    assert len(harness.queue.enqueued) == 2
    run_tasks(harness)
    assert simulator.count("GET", "/uploads/") == 1 and simulator.count("DELETE") == 2
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted"


def test_the_same_selector_again_is_a_duplicate(harness: Harness) -> None:
    first = submit(harness)
    again = submit(harness, {"type": "subtitles", "language_code": "IT-it"})
    assert again.status == 200 and again.body["status"] == "duplicate"
    assert again.body["request_id"] == first.body["request_id"]


def test_the_status_resource_shows_each_tracks_progress(harness: Harness) -> None:
    accepted = submit(harness)
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)
    view = status(harness, accepted.body["request_id"])
    assert view["status"] == "pending" and view["matched"] == 2
    assert [t["status"] for t in view["tracks"]] == ["queued", "queued"]
    assert set(view["tracks"][0]) == {"upload_track_id", "status", "job_id", "track", "error"}
    deliver(harness, harness.queue.enqueued.pop(0)[0].body)
    view = status(harness, accepted.body["request_id"])
    assert view["tracks"][0]["status"] == "pending" and view["tracks"][0]["job_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"upload_id": UPLOAD, "upload_track_id": "t1", "tracks": {"all": True}}, "tracks"),
        ({"upload_id": UPLOAD}, "upload_track_id"),
        ({"upload_id": UPLOAD, "tracks": {}}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"all": True, "type": "audio"}}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"lang": "it"}}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"language_code": "it IT"}}, "tracks.language_code"),
        ({"upload_id": UPLOAD, "tracks": {"language_code": "a" * 40}}, "tracks.language_code"),
    ],
)
def test_a_bad_selector_is_400_naming_the_field_and_sends_nothing(
    harness: Harness, simulator: DatoCMSSimulator, body: dict[str, Any], field: str
) -> None:
    answer = call(harness, "POST", "/", body)
    assert answer.status == 400 and answer.body["error"]["code"] == "invalid_request"
    assert [d["field"] for d in answer.body["error"]["details"]] == [field]
    assert simulator.count() == 0 and harness.queue.enqueued == []


def test_the_event_intake_takes_the_same_selector(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    data = {"upload_id": UPLOAD, "tracks": ITALIAN, "callback_url": HOOK}
    reply = intake.handle_event(harness.service, "evt-1", data)
    assert reply is not None and reply.status == 202 and reply.body["status"] == "queued"
    assert simulator.count() == 0
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted" and body["data"]["matched"] == 2
    assert intake.handle_event(harness.service, "evt-1", data).status == 200  # type: ignore[union-attr]


def test_a_resume_of_a_selector_whose_intake_died_lists_and_deletes(
    harness: Harness, simulator: DatoCMSSimulator
) -> None:
    from dataclasses import replace

    from core.model import Step
    from handlers import chain, records

    service = harness.service
    request = intake.validate(
        {"upload_id": UPLOAD, "tracks": ITALIAN, "callback_url": HOOK}, allow_private=True
    )
    request_id = request.request_id(None)
    now = harness.clock[0]
    fresh = records.new_record(service, request, request_id, None, now)
    records.claim(service, fresh, now)  # the intake died here: nothing enqueued
    harness.clock[0] += 60  # its lease ran out
    resume = Step(
        "resume", request_id, records.request_of(service, fresh), None, now, 1, now + 10_000
    )
    chain.enqueue(service, replace(resume), 0.0)
    run_tasks(harness)
    (body,) = callbacks(harness)
    assert body["type"] == "upload_tracks.deleted" and body["data"]["matched"] == 2
    assert simulator.count("DELETE") == 2
