"""Request ids, the JSON round trips, and the schemas' rules."""

from __future__ import annotations

import json

import pytest

from core import validation
from core.model import DeletionRequest, Outcome, Step, callback_body
from devstack.datocms_simulator import DEMO_UPLOAD_ID

VALID = {"upload_id": DEMO_UPLOAD_ID, "upload_track_id": "xBe7u01029ipxBLQ"}


def fields(instance: object) -> list[str]:
    return [entry["field"] for entry in validation.errors("deletion_request", instance)]


def test_request_id_derives_from_the_idempotency_key_when_given() -> None:
    a = DeletionRequest("u1", "t1", idempotency_key="k")
    b = DeletionRequest("u2", "t2", idempotency_key="k")
    assert a.request_id(None) == b.request_id(None)
    assert a.request_id(None).startswith("req_")


def test_request_id_otherwise_derives_from_environment_upload_and_track() -> None:
    a = DeletionRequest("u1", "t1")
    assert a.request_id(None) == DeletionRequest("u1", "t1").request_id(None)
    assert a.request_id(None) != DeletionRequest("u1", "t1", environment="staging").request_id(None)
    assert DeletionRequest("u1", "t1", environment="main").request_id(None) == a.request_id("main")
    assert a.request_id(None) != DeletionRequest("u1t", "1").request_id(None)


def test_the_full_example_request_is_valid() -> None:
    example = {
        **VALID,
        "environment": "main",
        "callback_url": "https://hooks.example.com/track-deleted",
        "idempotency_key": "webhook-call-103216210",
        "metadata": {"ticket": "SUB-42"},
    }
    assert fields(example) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"upload_id": "a/b"}, "upload_id"),
        ({"upload_id": "x" * 65}, "upload_id"),
        ({"upload_id": "abc\n"}, "upload_id"),
        ({"upload_id": ""}, "upload_id"),
        ({"upload_track_id": "y" * 129}, "upload_track_id"),
        ({"upload_track_id": 12}, "upload_track_id"),
        ({"environment": "Main"}, "environment"),
        ({"environment": "-main"}, "environment"),
        ({"environment": "main\n"}, "environment"),
        ({"callback_url": "ftp://x/"}, "callback_url"),
        ({"callback_url": "https://user:pw@hooks.example.com/"}, "callback_url"),
        ({"callback_url": "https://hooks.example.com/" + "a" * 2048}, "callback_url"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"idempotency_key": "caf\u00e9"}, "idempotency_key"),
        ({"idempotency_key": "a\tb"}, "idempotency_key"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {"a": "x" * 4090}}, "metadata"),
        ({"extra": 1}, "(body)"),
    ],
)
def test_each_rule_of_the_schema_is_enforced_and_named(
    change: dict[str, object], field: str
) -> None:
    assert fields({**VALID, **change}) == [field]


def test_metadata_of_exactly_4096_bytes_is_accepted() -> None:
    filler = "x" * (4096 - len('{"a":""}'))
    assert len(validation.compact_json({"a": filler}).encode()) == 4096
    assert fields({**VALID, "metadata": {"a": filler}}) == []
    assert fields({**VALID, "metadata": {"a": filler + "x"}}) == ["metadata"]


def test_metadata_size_counts_utf8_bytes_not_characters() -> None:
    filler = "é" * 2045  # 4090 bytes, 2045 characters
    assert fields({**VALID, "metadata": {"a": filler}}) == ["metadata"]


def test_every_failing_field_is_listed_and_values_are_not_echoed() -> None:
    found = validation.errors("deletion_request", {"upload_id": "SECRET/VALUE", "zzz": 1})
    assert {entry["field"] for entry in found} == {"upload_id", "upload_track_id", "(body)"}
    assert "SECRET/VALUE" not in json.dumps(found)


def test_a_non_object_body_is_one_type_error() -> None:
    assert validation.errors("deletion_request", [1, 2]) == [
        {"field": "(body)", "message": "must be of type object"}
    ]


def test_step_round_trips_through_json_and_matches_the_task_schema() -> None:
    request = DeletionRequest("u", "t", callback_url="https://a.example/", metadata={"k": [1, 2]})
    step = Step(
        "poll",
        request.request_id(None),
        request,
        "main",
        1.5,
        3,
        99.0,
        polls=2,
        failures=1,
        job_id="j",
    )
    payload = json.loads(json.dumps(step.to_json()))
    assert validation.errors("task", payload) == []
    assert Step.from_json(payload) == step


def test_callback_body_matches_the_contract_and_its_schema() -> None:
    request = DeletionRequest("u", "t", environment="main", metadata={"ticket": "SUB-42"})
    step = Step("poll", request.request_id(None), request, "main", 0.0, 2, 9.0, job_id="4235")
    body = callback_body(
        step,
        Outcome("deleted", job_id="4235", track={"type": "subtitles"}),
        polls=2,
        now=1_795_000_000,
    )
    assert validation.errors("callback", body) == []
    assert body["type"] == "upload_track.deleted"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["polls"] == 2
    assert body["data"]["metadata"] == {"ticket": "SUB-42"}
    assert body["data"]["environment"] == "main"


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("deleted", "upload_track.deleted"),
        ("not_found", "upload_track.already_deleted"),
        ("failed", "upload_track.deletion_failed"),
        ("timed_out", "upload_track.deletion_timed_out"),
    ],
)
def test_each_outcome_maps_to_its_event_type(status: str, event: str) -> None:
    assert Outcome(status).event_type == event  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["deletion_request", "task", "callback"])
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads((validation.SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
