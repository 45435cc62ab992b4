"""Named attacks on `delete_track`, each answered without a crash and without an outbound call.

In-process, through `handlers.intake.handle_http` as `main.py` calls it, with the
harness of `tests/conftest.py` (DatoCMS simulator, recording queue and sender).
"Nothing went out" means: the simulator saw no request, no task was enqueued and
no callback was sent. The loopback guard makes sure that the private and metadata
addresses named below could not be reached even by a bug.
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket
from collections.abc import Callable
from typing import Any

import pytest

from adapters.callback_sender import CallbackSender
from adapters.callback_transport import PinnedRequest
from core.headers import Headers
from devstack.datocms_simulator import DatoCMSSimulator
from handlers import intake
from handlers.responses import Reply
from tests.conftest import Harness
from tests.security import (
    HOSTILE_CALLBACKS,
    HOSTILE_IDS,
    MAX_BODY,
    NON_POST_METHODS,
    PUBLIC_CALLBACK,
    TRACK,
    UPLOAD,
    BoundedStream,
    Scene,
    assert_error_shape,
    assert_refused,
    bearer,
    call_intake,
    post_json,
    request,
)


@pytest.fixture
def scene(make_harness: Callable[..., Harness], simulator: DatoCMSSimulator) -> Scene:
    simulator.add_track(UPLOAD, TRACK, job_seconds=30)
    return Scene(make_harness(CALLBACK_ALLOW_PRIVATE_NETWORKS="false"), simulator)


def compact_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def assert_accepted(reply: Reply) -> None:
    assert reply.status in (200, 202), reply.body
    assert reply.body["status"] in ("pending", "queued", "not_found"), reply.body


def assert_400_and_nothing_sent(reply: Reply, scene: Scene, field: str | None = None) -> None:
    assert_refused(reply, 400)
    assert reply.body["error"]["code"] in ("invalid_json", "invalid_request")
    if field is not None:
        assert field in {d["field"] for d in reply.body["error"].get("details", [])}, reply.body
    scene.assert_nothing_went_out()


# --- identifiers --------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_an_upload_id_that_is_not_plain_ascii_letters_digits_dash_underscore_gets_400(
    scene: Scene, hostile: str
) -> None:
    reply = post_json(scene.harness, request(upload_id=hostile))
    assert_400_and_nothing_sent(reply, scene, "upload_id")


@pytest.mark.parametrize("hostile", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_an_upload_track_id_that_is_not_plain_ascii_letters_digits_dash_underscore_gets_400(
    scene: Scene, hostile: str
) -> None:
    reply = post_json(scene.harness, request(upload_track_id=hostile))
    assert_400_and_nothing_sent(reply, scene, "upload_track_id")


@pytest.mark.parametrize(
    ("field", "value"),
    [("upload_id", "a" * 65), ("upload_track_id", "a" * 129)],
    ids=["upload_id-65", "upload_track_id-129"],
)
def test_an_id_one_character_over_its_limit_gets_400(scene: Scene, field: str, value: str) -> None:
    assert_400_and_nothing_sent(post_json(scene.harness, request(**{field: value})), scene)


def test_ids_at_their_length_limits_are_accepted_and_reach_datocms_unchanged(scene: Scene) -> None:
    upload, track = "u" * 64, "t" * 128
    reply = post_json(scene.harness, {"upload_id": upload, "upload_track_id": track})
    assert_accepted(reply)
    assert [r.path for r in scene.datocms_requests()] == [f"/uploads/{upload}/tracks/{track}"]


def test_an_id_written_with_a_json_unicode_escape_for_slash_gets_400(scene: Scene) -> None:
    raw = b'{"upload_id": "a\\u002f..\\u002fb", "upload_track_id": "t"}'
    assert_400_and_nothing_sent(post_json(scene.harness, raw=raw), scene, "upload_id")


def test_an_overlong_utf8_encoding_of_slash_is_not_json(scene: Scene) -> None:
    raw = b'{"upload_id": "a\xc0\xafb", "upload_track_id": "t"}'
    reply = post_json(scene.harness, raw=raw)
    assert_refused(reply, 400, "invalid_json")
    scene.assert_nothing_went_out()


@pytest.mark.parametrize(
    "environment",
    [
        "main\r\nX-Injected: 1",
        "main\n",
        "main ",
        "Main",
        "-main",
        "m\u0430in",
        "\uff4d\uff41\uff49\uff4e",
        "a" * 65,
        "",
        "../main",
    ],
    ids=[
        "cr-lf",
        "trailing-lf",
        "trailing-space",
        "uppercase",
        "leading-dash",
        "cyrillic-a",
        "fullwidth",
        "65-chars",
        "empty",
        "dot-dot",
    ],
)
def test_an_environment_that_could_inject_a_header_or_look_alike_gets_400(
    scene: Scene, environment: str
) -> None:
    reply = post_json(scene.harness, request(environment=environment))
    assert_400_and_nothing_sent(reply, scene, "environment")


@pytest.mark.parametrize(
    "key",
    ["k\n", "k\r\nx", "\x00", "caf\u00e9", "\x7f", "k" * 201, ""],
    ids=["lf", "cr-lf", "nul", "non-ascii", "del", "201-chars", "empty"],
)
def test_an_idempotency_key_outside_printable_ascii_or_too_long_gets_400(
    scene: Scene, key: str
) -> None:
    reply = post_json(scene.harness, request(idempotency_key=key))
    assert_400_and_nothing_sent(reply, scene, "idempotency_key")


# --- JSON tricks ------------------------------------------------------------------


def test_a_duplicate_key_cannot_smuggle_a_path_past_validation(scene: Scene) -> None:
    raw = b'{"upload_id": "a", "upload_id": "../x", "upload_track_id": "t"}'
    assert_400_and_nothing_sent(post_json(scene.harness, raw=raw), scene, "upload_id")


def test_with_duplicate_keys_the_value_validated_is_the_value_sent_to_datocms(scene: Scene) -> None:
    raw = b'{"upload_id": "../x", "upload_id": "a", "upload_track_id": "t"}'
    reply = post_json(scene.harness, raw=raw)
    assert_accepted(reply)
    assert [r.path for r in scene.datocms_requests()] == ["/uploads/a/tracks/t"]


def test_a_duplicate_callback_url_cannot_smuggle_the_metadata_server(scene: Scene) -> None:
    raw = (
        b'{"upload_id": "a", "upload_track_id": "t",'
        b' "callback_url": "https://hooks.example.com/",'
        b' "callback_url": "https://169.254.169.254/computeMetadata/v1/"}'
    )
    assert_400_and_nothing_sent(post_json(scene.harness, raw=raw), scene, "callback_url")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        (
            b'{"upload_id":"a","upload_track_id":"t","metadata":{"a":'
            + b"[" * 10_000
            + b"]" * 10_000
            + b"}}"
        ),
    ],
    ids=["arrays", "objects", "inside-metadata"],
)
def test_json_nested_10000_levels_deep_gets_400_not_500(scene: Scene, raw: bytes) -> None:
    assert len(raw) <= MAX_BODY
    reply = post_json(scene.harness, raw=raw)
    assert_refused(reply, 400, "invalid_json")
    scene.assert_nothing_went_out()


def _nested(depth: int) -> bytes:
    return (
        b'{"upload_id":"a","upload_track_id":"d%d","metadata":{"a":' % depth
        + b"[" * depth
        + b"]" * depth
        + b"}}"
    )


def _answer_or_crash(harness: Harness, raw: bytes) -> Reply | BaseException:
    headers = _authorized(harness)
    try:
        return intake.handle_http(
            harness.service,
            method="POST",
            headers=headers,
            content_length=len(raw),
            stream=io.BytesIO(raw),
        )
    except Exception as crash:
        return crash


def test_metadata_nested_just_under_the_parsers_depth_limit_gets_an_answer_not_a_crash(
    scene: Scene,
) -> None:
    harness = scene.harness

    # The parser gives up (400) beyond some depth P. Depths just under P parse, and
    # later stages that walk the value from a deeper stack must not crash on them.
    def rejected(depth: int) -> bool:
        answer = _answer_or_crash(harness, _nested(depth))
        return isinstance(answer, Reply) and answer.body.get("error", {}).get("code") == (
            "invalid_json"
        )

    low, high = 1, 1900
    assert not rejected(low) and rejected(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if rejected(middle) else (middle, high)
    crashes = {}
    for depth in range(max(1, high - 80), high + 2):
        answer = _answer_or_crash(harness, _nested(depth))
        if isinstance(answer, BaseException):
            crashes[depth] = repr(answer)[:80]
        else:
            assert answer.status in (200, 202, 400), (depth, answer.body)
    assert crashes == {}, f"handler raised (main.py: 500) at depths {crashes}"


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'"text"', b"1", b"null", b"true", b"", b" ", b"\xef\xbb\xbf{}", b"{}" * 2],
    ids=["array", "string", "number", "null", "true", "empty", "space", "bom", "two-objects"],
)
def test_a_body_that_is_not_one_json_object_gets_400(scene: Scene, raw: bytes) -> None:
    assert_400_and_nothing_sent(post_json(scene.harness, raw=raw), scene)


def test_an_unexpected_field_with_a_huge_name_is_refused_without_echoing_it_whole(
    scene: Scene,
) -> None:
    name = "x" * 10_000
    reply = post_json(scene.harness, request(**{name: 1}))
    assert_400_and_nothing_sent(reply, scene)
    assert name not in json.dumps(reply.body)
    assert len(json.dumps(reply.body)) < 1_000


# --- metadata -----------------------------------------------------------------------


def metadata_of(size: int, char: str = "x") -> dict[str, str]:
    """A metadata object of exactly `size` bytes as compact UTF-8 JSON."""
    width = len(char.encode("utf-8"))
    room = size - compact_size({"k": ""})
    value = char * (room // width) + "y" * (room % width)
    metadata = {"k": value}
    assert compact_size(metadata) == size
    return metadata


@pytest.mark.parametrize("char", ["x", "\u00e9", "\u20ac"], ids=["ascii", "2-byte", "3-byte"])
def test_metadata_of_exactly_4096_bytes_is_accepted_and_carried_unchanged(
    scene: Scene, char: str
) -> None:
    metadata = metadata_of(4096, char)
    reply = post_json(scene.harness, request(metadata=metadata, callback_url=PUBLIC_CALLBACK))
    assert_accepted(reply)
    [payload] = scene.harness.queue.payloads()
    assert payload["request"]["metadata"] == metadata


@pytest.mark.parametrize("char", ["x", "\u00e9", "\u20ac"], ids=["ascii", "2-byte", "3-byte"])
def test_metadata_of_4097_bytes_gets_400(scene: Scene, char: str) -> None:
    metadata = metadata_of(4097, char)
    assert len(metadata["k"]) < 4096 or char == "x"
    reply = post_json(scene.harness, request(metadata=metadata))
    assert_400_and_nothing_sent(reply, scene, "metadata")


@pytest.mark.parametrize(
    "raw_metadata",
    [b'{"n": 1e400}', b'{"n": -1e400}', b'{"n": [1E999]}', b'{"n": {"m": 123e456}}'],
    ids=["1e400", "minus-1e400", "in-array", "nested"],
)
def test_metadata_with_a_number_too_large_for_a_float_gets_400_not_500(
    scene: Scene, raw_metadata: bytes
) -> None:
    raw = b'{"upload_id": "a", "upload_track_id": "t", "metadata": ' + raw_metadata + b"}"
    assert_400_and_nothing_sent(post_json(scene.harness, raw=raw), scene)


@pytest.mark.parametrize(
    "raw_metadata",
    [b'{"s": "\\ud800"}', b'{"s": "a\\udfffb"}', b'{"\\udc00": 1}', b'{"s": ["\\ud83d"]}'],
    ids=["high-surrogate", "low-surrogate", "in-a-key", "in-array"],
)
def test_metadata_with_a_lone_utf16_surrogate_gets_400_not_500(
    scene: Scene, raw_metadata: bytes
) -> None:
    raw = b'{"upload_id": "a", "upload_track_id": "t", "metadata": ' + raw_metadata + b"}"
    assert_400_and_nothing_sent(post_json(scene.harness, raw=raw), scene)


@pytest.mark.parametrize(
    "metadata", [[], "text", 1, None, True], ids=["array", "string", "number", "null", "bool"]
)
def test_metadata_that_is_not_an_object_gets_400(scene: Scene, metadata: Any) -> None:
    reply = post_json(scene.harness, request(metadata=metadata))
    assert_400_and_nothing_sent(reply, scene, "metadata")


# --- size -------------------------------------------------------------------------


def _authorized(harness: Harness) -> Headers:
    return Headers({"Authorization": bearer(harness), "Content-Type": "application/json"})


def test_an_endless_body_without_a_length_gets_413_after_reading_at_most_64_kib_plus_one(
    scene: Scene,
) -> None:
    stream = BoundedStream(MAX_BODY + 1)
    reply = call_intake(
        scene.harness, headers=_authorized(scene.harness), content_length=None, stream=stream
    )
    assert_refused(reply, 413, "payload_too_large")
    assert stream.given <= MAX_BODY + 1
    scene.assert_nothing_went_out()


def test_a_declared_length_over_64_kib_gets_413_without_reading_the_body(scene: Scene) -> None:
    stream = BoundedStream(0)
    reply = call_intake(
        scene.harness,
        headers=_authorized(scene.harness),
        content_length=MAX_BODY + 1,
        stream=stream,
    )
    assert_refused(reply, 413, "payload_too_large")
    assert stream.given == 0
    scene.assert_nothing_went_out()


def test_an_understated_length_does_not_let_more_than_64_kib_plus_one_be_read(scene: Scene) -> None:
    stream = BoundedStream(MAX_BODY + 1)
    reply = call_intake(
        scene.harness, headers=_authorized(scene.harness), content_length=10, stream=stream
    )
    assert_refused(reply, 413, "payload_too_large")
    scene.assert_nothing_went_out()


def test_a_valid_request_padded_to_exactly_64_kib_is_accepted_and_one_byte_more_gets_413(
    scene: Scene,
) -> None:
    body = json.dumps(request()).encode()
    exact = body + b" " * (MAX_BODY - len(body))
    assert_accepted(post_json(scene.harness, raw=exact))
    over = post_json(scene.harness, raw=exact + b" ")
    assert_refused(over, 413, "payload_too_large")
    assert len(scene.datocms_requests()) == 1


# --- Content-Type and methods ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json-seq",
        "application/xml",
        "json",
        "application/ json",
        "*/*",
        "application/json\r\nX-Injected: 1",
    ],
    ids=[
        "missing",
        "empty",
        "text-plain",
        "text-json",
        "form",
        "multipart",
        "jsonx",
        "json-seq",
        "xml",
        "bare-json",
        "split",
        "any",
        "crlf-appended",
    ],
)
def test_a_content_type_that_is_not_application_json_gets_415(
    scene: Scene, content_type: str | None
) -> None:
    reply = post_json(scene.harness, request(), content_type=content_type)
    assert_refused(reply, 415, "unsupported_media_type")
    scene.assert_nothing_went_out()


@pytest.mark.parametrize("method", NON_POST_METHODS)
def test_every_method_but_post_gets_405(scene: Scene, method: str) -> None:
    reply = post_json(scene.harness, request(), method=method)
    assert_refused(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "POST"
    scene.assert_nothing_went_out()


# --- callback_url: SSRF -----------------------------------------------------------------


@pytest.mark.parametrize("url", HOSTILE_CALLBACKS.values(), ids=HOSTILE_CALLBACKS.keys())
def test_a_callback_url_that_could_reach_a_private_target_gets_400_and_nothing_is_sent(
    scene: Scene, url: str
) -> None:
    reply = post_json(scene.harness, request(callback_url=url))
    assert_400_and_nothing_sent(reply, scene, "callback_url")
    assert url not in json.dumps(reply.body, ensure_ascii=False)


@pytest.mark.parametrize(
    "url",
    [
        PUBLIC_CALLBACK,
        "https://hooks.example.com:8443/a/b?c=d&e=f",
        "https://93.184.215.14/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://b\u00fccher.example/hook",
        "https://hooks.example.com/" + "a" * (2048 - len("https://hooks.example.com/")),
    ],
    ids=["plain", "port-and-query", "public-ipv4", "public-ipv6", "idn", "2048-chars"],
)
def test_a_public_https_callback_url_is_accepted_without_contacting_it_at_intake(
    scene: Scene, url: str
) -> None:
    assert_accepted(post_json(scene.harness, request(callback_url=url)))
    assert scene.harness.sender.sent == []


def test_a_name_resolving_to_the_metadata_server_passes_intake_but_is_never_connected_to() -> None:
    # A DNS name cannot be judged at intake; the sender checks every answer at send time.
    asked: list[tuple[str, int]] = []
    connected: list[PinnedRequest] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.215.14", "169.254.169.254"]

    def transport(pinned: PinnedRequest) -> int:
        connected.append(pinned)
        return 204

    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)
    intake.validate(request(callback_url="https://rebind.example.com/x"), allow_private=False)
    result = sender.deliver("https://rebind.example.com/x", b"{}", {})
    assert not result.delivered
    assert asked == [("rebind.example.com", 443)]
    assert connected == []


def test_a_receiver_redirect_is_not_followed() -> None:
    connected: list[PinnedRequest] = []

    def transport(pinned: PinnedRequest) -> int:
        connected.append(pinned)
        return 302

    sender = CallbackSender(
        allow_private=False, resolve=lambda host, port: ["93.184.215.14"], transport=transport
    )
    result = sender.deliver(PUBLIC_CALLBACK, b"{}", {})
    assert not result.delivered and "redirect not followed" in result.reason
    assert len(connected) == 1


def test_the_guard_refuses_resolution_of_a_non_loopback_name(loopback_only: list[str]) -> None:
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("metadata.google.internal", 80)
    assert loopback_only == ["getaddrinfo('metadata.google.internal')"]
    loopback_only.clear()


def test_a_refusal_never_echoes_the_credentials_of_a_callback_url(scene: Scene) -> None:
    reply = post_json(
        scene.harness, request(callback_url="https://admin:hunter2@hooks.example.com/")
    )
    assert_400_and_nothing_sent(reply, scene, "callback_url")
    assert "hunter2" not in json.dumps(reply.body)
    assert_error_shape(reply)


# --- the same values through delete_track_event ----------------------------------------


def _pubsub(raw: bytes) -> dict[str, Any]:
    return {"message": {"data": base64.b64encode(raw).decode(), "messageId": "1"}}


UNUSABLE_EVENTS = {
    "metadata-infinity": {"upload_id": "a", "upload_track_id": "t", "metadata": {"n": math.inf}},
    "metadata-lone-surrogate": {
        "upload_id": "a",
        "upload_track_id": "t",
        "metadata": {"s": "\ud800"},
    },
    "pubsub-metadata-1e400": _pubsub(
        b'{"upload_id":"a","upload_track_id":"t","metadata":{"n":1e400}}'
    ),
    "pubsub-metadata-lone-surrogate": _pubsub(
        b'{"upload_id":"a","upload_track_id":"t","metadata":{"s":"\\ud800"}}'
    ),
    "pubsub-nested-10000": _pubsub(b"[" * 10_000 + b"]" * 10_000),
    "pubsub-path-in-id": _pubsub(b'{"upload_id":"../x","upload_track_id":"t"}'),
}


@pytest.mark.parametrize("data", UNUSABLE_EVENTS.values(), ids=UNUSABLE_EVENTS.keys())
def test_an_event_that_can_never_succeed_is_logged_and_acknowledged_not_crashed(
    scene: Scene, data: Any
) -> None:
    # Contract: logged at ERROR and acknowledged, so that it is not redelivered forever.
    # A raise here makes main.py answer 500, and Eventarc redelivers the event.
    try:
        result = intake.handle_event(scene.harness.service, "event-1", data)
    except Exception as crash:
        pytest.fail(f"handle_event raised {crash!r}: the event would be redelivered forever")
    assert result is None
    [entry] = [e for e in scene.harness.logs.entries() if e["message"].startswith("event dropped")]
    assert entry["severity"] == "ERROR"
    scene.assert_nothing_went_out()
