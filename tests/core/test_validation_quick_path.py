"""The quick proof of validity (no jsonschema on a cold start) never disagrees with jsonschema."""

from __future__ import annotations

import random
from typing import Any

from core import validation

STRINGS = [
    "a",
    "A_b-9",
    "x" * 64,
    "x" * 65,
    "x" * 128,
    "x" * 129,
    "",
    "a\n",
    "a b",
    "é",
    "-main",
    "main",
    "en",
    "en-US",
    "english",
    "subtitles",
    "audio",
    "https://e.x/cb",
    "http://e.x/",
    "https://u@e/",
    "ftp://x",
    "~",
    "\x7f",
    "a" * 200,
    "a" * 201,
]
VALUES: list[Any] = [
    *STRINGS,
    None,
    True,
    False,
    0,
    1,
    1.5,
    [],
    {},
    {"a": 1},
    {"all": True},
    {"all": 1},
    {"all": True, "type": "audio"},
    {"type": "audio"},
    {"type": "video"},
    {"name": ""},
    {"name": "n"},
    {"closed_captions": True},
    {"closed_captions": 1},
    {"language_code": "en"},
    {"language_code": "e"},
    {"x": 1},
    {"k": "x" * 5000},
]
KEYS = [
    "upload_id",
    "upload_track_id",
    "tracks",
    "environment",
    "callback_url",
    "idempotency_key",
    "metadata",
    "other",
]


def _instances(count: int) -> list[Any]:
    rng = random.Random(7)
    found: list[Any] = []
    for _ in range(count):
        instance: Any = {key: rng.choice(VALUES) for key in rng.sample(KEYS, rng.randint(0, 5))}
        if rng.random() < 0.6:
            instance["upload_id"] = rng.choice(STRINGS[:4])
        if rng.random() < 0.5:
            instance["upload_track_id"] = rng.choice(STRINGS[:6])
        if rng.random() < 0.02:
            instance = rng.choice(VALUES)
        found.append(instance)
    return found


def test_the_quick_path_only_passes_what_jsonschema_passes() -> None:
    schema = validation._schema("deletion_request.json")
    full = validation.validator("deletion_request")
    passed = 0
    for instance in _instances(4000):
        verdict = validation._surely_valid(schema, instance)
        assert verdict in (True, None)
        if verdict:
            passed += 1
            assert list(full.iter_errors(instance)) == [], instance
    assert passed > 50  # the quick path does answer


def test_the_usual_requests_take_the_quick_path() -> None:
    schema = validation._schema("deletion_request.json")
    for instance in (
        {"upload_id": "u", "upload_track_id": "t"},
        {"upload_id": "u", "tracks": {"all": True}},
        {"upload_id": "u", "tracks": {"type": "audio", "language_code": "en-US"}},
        {
            "upload_id": "u",
            "upload_track_id": "t",
            "callback_url": "https://example.com/cb",
            "metadata": {"a": [1, 2]},
            "environment": "main",
            "idempotency_key": "key 1",
        },
    ):
        assert validation._surely_valid(schema, instance) is True
        assert validation.errors("deletion_request", instance) == []


def test_schemas_with_rules_it_does_not_know_go_to_jsonschema() -> None:
    assert validation._surely_valid({"$ref": "task.json"}, {}) is None
    assert validation._surely_valid({"type": "integer"}, 1) is None
    assert validation._surely_valid({"properties": {"a": {"not": {}}}}, {"a": 1}) is None
