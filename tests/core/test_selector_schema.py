"""The selector's rules in `schemas/deletion_request.json`, and its canonical form."""

from __future__ import annotations

from typing import Any

import pytest

from core import validation
from core.model import DeletionRequest, Step
from devstack.datocms_simulator import DEMO_UPLOAD_ID

UPLOAD = DEMO_UPLOAD_ID


def failures(instance: Any) -> list[dict[str, str]]:
    return validation.errors("deletion_request", instance)


def fields(instance: Any) -> list[str]:
    return [entry["field"] for entry in failures(instance)]


@pytest.mark.parametrize(
    "tracks",
    [
        {"language_code": "it-IT", "type": "subtitles"},
        {"language_code": "zh-Hant-TW"},
        {"language_code": "gsw"},
        {"type": "audio"},
        {"name": "Italiano (auto)"},
        {"name": "x" * 200},
        {"closed_captions": False},
        {"all": True},
        {"language_code": "en", "type": "subtitles", "name": "English", "closed_captions": True},
    ],
)
def test_a_valid_selector_is_accepted(tracks: dict[str, Any]) -> None:
    assert failures({"upload_id": UPLOAD, "tracks": tracks}) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"upload_id": UPLOAD, "upload_track_id": "t1", "tracks": {"type": "audio"}}, "tracks"),
        ({"upload_id": UPLOAD}, "upload_track_id"),
        ({"upload_id": UPLOAD, "tracks": {}}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"all": True, "type": "audio"}}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"all": False}}, "tracks.all"),
        ({"upload_id": UPLOAD, "tracks": {"colour": "red"}}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"language_code": "it IT"}}, "tracks.language_code"),
        ({"upload_id": UPLOAD, "tracks": {"language_code": "i" * 40}}, "tracks.language_code"),
        ({"upload_id": UPLOAD, "tracks": {"language_code": "it-IT\n"}}, "tracks.language_code"),
        ({"upload_id": UPLOAD, "tracks": {"type": "video"}}, "tracks.type"),
        ({"upload_id": UPLOAD, "tracks": {"name": ""}}, "tracks.name"),
        ({"upload_id": UPLOAD, "tracks": {"name": "x" * 201}}, "tracks.name"),
        ({"upload_id": UPLOAD, "tracks": {"closed_captions": "yes"}}, "tracks.closed_captions"),
        ({"upload_id": UPLOAD, "tracks": [{"type": "audio"}]}, "tracks"),
        ({"upload_id": UPLOAD, "tracks": {"type": "audio"}, "extra": 1}, "(body)"),
    ],
)
def test_each_selector_rule_is_enforced_and_names_the_failing_field(
    body: dict[str, Any], field: str
) -> None:
    assert fields(body) == [field]


def test_selector_errors_never_echo_the_offending_value() -> None:
    found = failures(
        {"upload_id": UPLOAD, "upload_track_id": "t1", "tracks": {"type": "SECRETVALUE"}}
    )
    assert found and "SECRETVALUE" not in str(found)
    assert "SECRETVALUE" not in str(
        failures({"upload_id": UPLOAD, "tracks": {"name": "SECRETVALUE", "all": True}})
    )


def test_the_same_selector_in_another_order_or_case_is_the_same_request() -> None:
    a = DeletionRequest.from_json(
        {"upload_id": UPLOAD, "tracks": {"type": "subtitles", "language_code": "it-IT"}}
    )
    b = DeletionRequest.from_json(
        {"upload_id": UPLOAD, "tracks": {"language_code": "IT-it", "type": "subtitles"}}
    )
    assert a.tracks == b.tracks == {"language_code": "it-it", "type": "subtitles"}
    assert list(a.tracks or {}) == ["language_code", "type"]
    assert a.request_id(None) == b.request_id(None)


def test_a_selector_request_id_differs_from_other_selectors_uploads_and_environments() -> None:
    base = DeletionRequest(UPLOAD, None, tracks={"type": "audio"})
    ids = {
        base.request_id(None),
        DeletionRequest(UPLOAD, None, tracks={"type": "subtitles"}).request_id(None),
        DeletionRequest("other", None, tracks={"type": "audio"}).request_id(None),
        DeletionRequest(UPLOAD, None, tracks={"type": "audio"}, environment="s").request_id(None),
        DeletionRequest(UPLOAD, "audio").request_id(None),
    }
    assert len(ids) == 5


def test_a_selector_request_round_trips_through_json_and_the_task_schema() -> None:
    request = DeletionRequest.from_json(
        {"upload_id": UPLOAD, "tracks": {"language_code": "it-IT"}, "metadata": {"a": 1}}
    )
    assert DeletionRequest.from_json(request.to_json()) == request
    step = Step("list", "req_" + "0" * 32, request, None, 1.5, 1, 100.0)
    assert validation.errors("task", step.to_json()) == []
    assert Step.from_json(step.to_json()) == step


def test_a_matched_tracks_steps_have_their_own_names_and_validate() -> None:
    request = DeletionRequest(UPLOAD, "track-7")
    step = Step("delete", "req_" + "0" * 32, request, None, 1.5, 1, 100.0, track_index=7)
    assert step.name.endswith("-t7-1") and step.next("poll", job_id="j").name.endswith("-t7-2")
    assert step.next("callback").name.endswith("-cb")
    assert validation.errors("task", step.to_json()) == []
    assert Step.from_json(step.to_json()) == step
