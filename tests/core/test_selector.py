"""The selector's decisions: the listing's meaning, matching, the summary; plain values."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from core import selector, validation
from core.datocms import Job, ListedTrack, interpret_list
from core.errors import (
    DatoCMSAuthError,
    DatoCMSBadResponse,
    DatoCMSHeldBack,
    DatoCMSNotFound,
    DatoCMSRefused,
    DatoCMSUnavailable,
)
from core.flow import Finish, Schedule, after_delete, after_poll
from core.headers import Headers
from core.model import DeletionRequest, Outcome, Step
from core.polling import PollPolicy
from core.record import Callback, Record, status_resource

POLICY = PollPolicy(initial=1.0, maximum=30.0, timeout=900.0)
COLD = PollPolicy(initial=1.0, maximum=30.0, timeout=900.0, linear=True)
T0 = 1_800_000_000.0


def resource(track_id: str, **attributes: Any) -> dict[str, Any]:
    base = {"type": "subtitles", "name": "Italiano", "language_code": "it-IT",
            "closed_captions": False, "status": "ready", "error": None}  # fmt: skip
    return {"type": "upload_track", "id": track_id, "attributes": {**base, **attributes}}


def listed(track_id: str, **attributes: Any) -> ListedTrack:
    (track,) = interpret_list(
        200, Headers(), json.dumps({"data": [resource(track_id, **attributes)]}).encode()
    ).tracks
    return track


def listing(tracks: dict[str, Any], number: int = 1) -> Step:
    request = DeletionRequest.from_json({"upload_id": "u1", "tracks": tracks})
    return Step("list", request.request_id(None), request, None, T0, number, T0 + 10_000)


def record_for(step: Step) -> Record:
    return Record(
        request_id=step.request_id, status="queued", created_at=T0, updated_at=T0,
        accepted_at=T0, upload_id="u1", upload_track_id=None, environment=None,
        callback=Callback(host=None, sealed_url=None, state="none"),
        selector=step.request.tracks,
    )  # fmt: skip


# --------------------------------------------------------------------------- the listing


def test_the_documented_list_is_read_and_unknown_attributes_are_dropped() -> None:
    body = {"data": [resource("a", brand_new="x"), resource("b", type="audio")], "links": {}}
    page = interpret_list(200, Headers(), json.dumps(body).encode())
    assert [t.id for t in page.tracks] == ["a", "b"] and page.total is None
    assert "brand_new" not in page.tracks[0].attributes
    assert page.tracks[1].attributes["type"] == "audio"


def test_a_paged_list_keeps_its_total() -> None:
    body = {"data": [resource("a")], "meta": {"total_count": 3}}
    assert interpret_list(200, Headers(), json.dumps(body).encode()).total == 3


@pytest.mark.parametrize(
    "body",
    [
        b"<html>ok</html>",
        b'{"data": {"type": "upload_track"}}',
        b'{"data": null}',
        b"[]",
        json.dumps({"data": [{"type": "upload", "id": "a", "attributes": {}}]}).encode(),
        json.dumps({"data": [resource("a/../b")]}).encode(),
        json.dumps({"data": [resource("a", type="video")]}).encode(),
        json.dumps({"data": [resource("a", language_code=7)]}).encode(),
        json.dumps({"data": [resource("a", closed_captions="no")]}).encode(),
        json.dumps({"data": [{"type": "upload_track", "id": "a"}]}).encode(),
    ],
)
def test_a_list_that_is_not_the_documented_shape_is_an_invalid_answer(body: bytes) -> None:
    with pytest.raises(DatoCMSBadResponse) as raised:
        interpret_list(200, Headers(), body)
    assert raised.value.code == "invalid_answer"


def test_an_unknown_upload_is_not_found() -> None:
    body = b'{"data": [{"type": "api_error", "attributes": {"code": "NOT_FOUND"}}]}'
    with pytest.raises(DatoCMSNotFound):
        interpret_list(404, Headers(), body)


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("tracks", "attributes", "expected"),
    [
        ({"language_code": "it-IT"}, {"language_code": "IT-it"}, True),
        ({"language_code": "it"}, {"language_code": "it-IT"}, False),
        ({"language_code": "it-IT"}, {"language_code": None}, False),
        ({"type": "audio"}, {"type": "subtitles"}, False),
        ({"name": "Italiano"}, {"name": "italiano"}, False),
        ({"closed_captions": False}, {"closed_captions": None}, True),
        ({"closed_captions": True}, {"closed_captions": None}, False),
        ({"all": True}, {"type": "audio", "language_code": None}, True),
        (
            {"language_code": "it-IT", "type": "subtitles"},
            {"language_code": "it-IT", "type": "audio"},
            False,
        ),
    ],
)
def test_a_track_matches_when_every_selector_field_does(
    tracks: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    request = DeletionRequest.from_json({"upload_id": "u1", "tracks": tracks})
    assert selector.matches(request.tracks or {}, attributes) is expected


def test_a_track_listed_twice_is_matched_once() -> None:
    track = listed("a")
    assert selector.match({"all": True}, (track, track)) == (track,)


# --------------------------------------------------------------------------- after the listing


def test_matched_tracks_fan_out_in_listing_order() -> None:
    tracks = (listed("a"), listed("b", language_code="en"), listed("c"))
    action = selector.after_list(listing({"language_code": "it-IT"}), tracks, T0, POLICY, 0.5)
    assert action == selector.FanOut((tracks[0], tracks[2]))


def test_nothing_matched_concludes_none_matched() -> None:
    action = selector.after_list(listing({"type": "audio"}), (listed("a"),), T0, POLICY, 0.5)
    assert action == selector.Conclude("none_matched", 0)


def test_over_100_matches_concludes_failed_too_many_tracks() -> None:
    tracks = tuple(listed(f"t{n}") for n in range(101))
    action = selector.after_list(listing({"all": True}), tracks, T0, POLICY, 0.5)
    assert isinstance(action, selector.Conclude) and action.matched == 101
    assert action.error is not None and action.error["code"] == "too_many_tracks"
    tracks = tracks[:100]
    assert isinstance(
        selector.after_list(listing({"all": True}), tracks, T0, POLICY, 0.5), selector.FanOut
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DatoCMSNotFound("gone", http_status=404, code="NOT_FOUND"), "NOT_FOUND"),
        (DatoCMSBadResponse("odd", http_status=200, code="invalid_answer"), "invalid_answer"),
        (DatoCMSRefused("no", http_status=422, code="NOT_A_VIDEO"), "NOT_A_VIDEO"),
    ],
)
def test_a_permanent_listing_error_concludes_failed(error: Exception, code: str) -> None:
    action = selector.after_list(listing({"all": True}), error, T0, POLICY, 0.5)  # type: ignore[arg-type]
    assert isinstance(action, selector.Conclude) and action.status == "failed"
    assert action.error is not None and action.error["code"] == code


@pytest.mark.parametrize(
    "error",
    [
        DatoCMSUnavailable("down", http_status=503, code="SERVICE_UNAVAILABLE"),
        DatoCMSAuthError("token", http_status=401, code="INVALID_AUTHORIZATION_HEADER"),
    ],
)
def test_a_transient_listing_error_lists_again_until_the_deadline(error: Exception) -> None:
    current = listing({"all": True})
    action = selector.after_list(current, error, T0 + 1, POLICY, 0.5)  # type: ignore[arg-type]
    assert isinstance(action, Schedule)
    assert action.step.kind == "list" and action.step.number == 2 and action.step.failures == 1
    late = selector.after_list(current, error, T0 + 901, POLICY, 0.5)  # type: ignore[arg-type]
    assert isinstance(late, selector.Conclude) and late.status == "failed"


def test_a_rate_limit_reset_is_waited_for_before_listing_again() -> None:
    error = DatoCMSUnavailable("429", http_status=429, code="RATE_LIMIT_EXCEEDED", retry_after=7.0)
    action = selector.after_list(listing({"all": True}), error, T0, POLICY, 0.5)
    assert isinstance(action, Schedule) and action.delay >= 7.0


# --------------------------------------------------------------------------- the record


def fanned_out(count: int = 2) -> tuple[Step, Record]:
    current = listing({"language_code": "it-IT"})
    tracks = tuple(listed(f"t{n}") for n in range(count))
    return current, selector.listed(record_for(current), current, tracks, T0 + 1)


def finish(record: Record, current: Step, index: int, outcome: Outcome, polls: int = 1) -> Record:
    first, _ = selector.track_step(current, index, (record.tracks or [])[index])
    return selector.track_concluded(record, first, Finish(outcome, polls), T0 + 5)


def test_the_summary_comes_once_every_track_is_final_and_sums_the_polls() -> None:
    current, record = fanned_out()
    record = finish(record, current, 0, Outcome("deleted", job_id="j0"), polls=2)
    assert not record.done and record.polls == 2
    record = finish(record, current, 1, Outcome("not_found", job_id="j1"), polls=3)
    assert record.done and record.status == "deleted" and record.polls == 5
    body = replace(record, finished_at=T0 + 5).callback_body()
    assert body["type"] == "upload_tracks.deleted" and body["data"]["polls"] == 5
    assert validation.errors("callback", body) == []
    assert validation.errors("request_status", status_resource(record)) == []


@pytest.mark.parametrize(
    ("statuses", "summary"),
    [
        (("deleted", "failed"), "partially_failed"),
        (("timed_out", "not_found"), "partially_failed"),
        (("failed", "timed_out"), "failed"),
        (("not_found", "not_found"), "deleted"),
    ],
)
def test_the_summary_status_follows_the_tracks(statuses: tuple[str, str], summary: str) -> None:
    current, record = fanned_out()
    for index, status in enumerate(statuses):
        record = finish(record, current, index, Outcome(status))  # type: ignore[arg-type]
    assert record.status == summary


def test_a_track_already_final_is_not_changed_again() -> None:
    current, record = fanned_out()
    once = finish(record, current, 0, Outcome("deleted"))
    assert finish(once, current, 0, Outcome("failed")) is once


def test_a_listing_recorded_before_is_kept() -> None:
    current, record = fanned_out()
    assert selector.listed(record, current, (listed("other"),), T0 + 2) is record


def test_a_step_behind_its_tracks_chain_is_stale() -> None:
    current, record = fanned_out()
    first, _ = selector.track_step(current, 0, (record.tracks or [])[0])
    polling = first.next("poll", job_id="j0")
    moved = selector.track_progressed(record, first, Schedule(polling, 1.0), T0 + 2)
    assert selector.entry_of(moved, first) is None and selector.entry_of(moved, polling)
    assert status_resource(moved)["tracks"][0] == {
        "upload_track_id": "t0", "status": "pending", "job_id": "j0",
        "track": listed("t0").attributes, "error": None,
    }  # fmt: skip


def test_another_acceptances_steps_change_nothing() -> None:
    current, record = fanned_out()
    other = replace(current, accepted_at=T0 + 99)
    assert finish(record, other, 0, Outcome("deleted")) is record


# --------------------------------------------------------------------------- the fan-out's pace


def first_deletes(count: int) -> list[float]:
    current, record = fanned_out(count)
    return [
        selector.track_step(current, index, entry)[1]
        for index, entry in enumerate(record.tracks or [])
    ]


def test_the_first_deletes_go_one_per_request_the_rate_limit_admits() -> None:
    delays = first_deletes(selector.MAX_TRACKS)
    assert delays[0] == 0.0
    assert all(b - a == pytest.approx(3.0 / 60) for a, b in itertools.pairwise(delays))


def test_no_window_of_the_rate_limit_holds_more_first_deletes_than_it_admits() -> None:
    delays = first_deletes(selector.MAX_TRACKS)
    for start in delays:
        inside = [d for d in delays if start <= d < start + selector.RATE_WINDOW - 1e-9]
        assert len(inside) <= selector.RATE_LIMIT


def track_delete(offset: float, index: int = 1) -> Step:
    """Track `index`'s DELETE step, run `offset` seconds after the request's acceptance."""
    current, record = fanned_out(index + 1)
    first, _ = selector.track_step(current, index, (record.tracks or [])[index])
    return first


@pytest.mark.parametrize("offset", [0.0, 0.1, 2.45, 2.6, 4.9])
def test_a_tracks_first_poll_waits_after_its_delete_as_long_as_a_single_tracks(
    offset: float,
) -> None:
    single = replace(track_delete(0.0), track_index=None, number=0)
    alone = after_delete(single, Job("j0"), T0, COLD, 0.5)
    deleting = track_delete(offset)
    now = T0 + offset
    planned = selector.from_own_delete(
        deleting, after_delete(deleting, Job("j1"), now, COLD, 0.5), now, COLD, 0.5
    )
    assert isinstance(alone, Schedule) and isinstance(planned, Schedule)
    assert planned.delay == alone.delay == COLD.initial
    assert planned.step == deleting.next("poll", job_id="j1", failures=0)


def test_a_learned_plan_sets_a_tracks_first_poll_from_its_delete() -> None:
    seen: list[tuple[float, int]] = []

    def plan(elapsed: float, polls: int) -> float:
        seen.append((elapsed, polls))
        return 2.0

    learned = replace(COLD, planner=plan, jitter=0.0)
    deleting = track_delete(3.0)
    planned = selector.from_own_delete(
        deleting, after_delete(deleting, Job("j1"), T0 + 3, learned, 0.5), T0 + 3, learned, 0.5
    )
    assert isinstance(planned, Schedule) and planned.delay == 2.0
    assert seen[-1] == (0.0, 0)


def test_a_tracks_first_poll_never_goes_past_the_deadline() -> None:
    deleting = track_delete(0.0)
    now = T0 + COLD.timeout - 0.25
    planned = selector.from_own_delete(
        deleting, Schedule(deleting.next("poll", job_id="j1"), 0.25), now, COLD, 0.5
    )
    assert isinstance(planned, Schedule) and planned.delay == pytest.approx(0.25)


def test_every_other_action_is_kept_as_it_is() -> None:
    deleting = track_delete(2.5)
    now = T0 + 2.5
    polling = deleting.next("poll", job_id="j1")
    kept = [
        (polling, after_poll(polling, None, now, COLD, 0.5)),  # a poll that saw it running
        (
            deleting,
            after_delete(deleting, DatoCMSHeldBack("held", retry_after=0.2), now, COLD, 0.5),
        ),
        (deleting, Finish(Outcome("not_found"), 0)),
        (replace(deleting, track_index=None), after_delete(deleting, Job("j1"), now, COLD, 0.5)),
    ]
    for current, action in kept:
        assert selector.from_own_delete(current, action, now, COLD, 0.5) is action
