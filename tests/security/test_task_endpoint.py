"""`poll_job` accepts only task bodies the service signed, and carries each out once.

In-process through `handlers.steps.handle_http`, with genuine task bodies made
as the service makes them: a real `Step` (built as `handlers/chain.py` builds
them, or by `chain.report` itself) sealed with `core.signing.seal_task`.

Every forgery gets `401 invalid_task` and causes no outbound call: the DatoCMS
simulator saw nothing, no task was enqueued, no callback was sent. A genuine
task delivered again after it was carried out is a no-op; an expired one is
acknowledged (2xx) and ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapters.callback_sender import DeliveryResult
from core.errors import TaskRejected
from core.headers import Headers
from core.model import DeletionRequest, Outcome, Step
from core.signing import MAX_TASK_BODY, _legacy_seal, open_task, seal_task
from core.validation import compact_json
from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import new_webhook_secret
from handlers import chain, records, steps
from handlers.responses import Reply
from tests.conftest import Harness
from tests.conftest import make_step as accepted_step
from tests.security import (
    NON_POST_METHODS,
    PUBLIC_CALLBACK,
    TRACK,
    UPLOAD,
    BoundedStream,
    Scene,
    assert_refused,
)

ATTACKER_KEY = b"attacker-chosen-key-0123456789"
METADATA_SERVER = "https://169.254.169.254/computeMetadata/v1/instance/service-accounts/"
FAILED = DeliveryResult(delivered=False, status=500, reason="HTTP 500")


@pytest.fixture
def scene(make_harness: Callable[..., Harness], simulator: DatoCMSSimulator) -> Scene:
    simulator.add_track(UPLOAD, TRACK, job_seconds=30)
    return Scene(make_harness(), simulator)


# --- genuine tasks, as the service makes them --------------------------------------------


def make_step(
    harness: Harness,
    kind: str = "delete",
    *,
    callback_url: str | None = PUBLIC_CALLBACK,
    **changes: Any,
) -> Step:
    """A step as `handlers/chain.py` builds it (here: a retried DELETE by default)."""
    request = DeletionRequest(
        UPLOAD, TRACK, callback_url=callback_url, metadata={"ticket": "SUB-42"}
    )
    return accepted_step(harness, request, kind, **{"failures": 1, **changes})


def callback_step(harness: Harness, **changes: Any) -> Step:
    """The callback step `chain.report` queues when a deletion finishes."""
    finished = make_step(harness, "poll", job_id="4235", polls=2)
    queue = harness.queue
    before = len(queue.enqueued)
    chain.report(
        harness.service,
        finished,
        chain.Finish(Outcome("deleted", job_id="4235"), 2),
        harness.service.log,
    )
    payload = queue.payloads()[before]
    del queue.enqueued[before:]
    queue.names.clear()
    step = Step.from_json(payload)
    if changes:
        fields = {**payload, **changes}
        step = Step.from_json(fields)
    return step


def key_of(harness: Harness) -> bytes:
    return harness.service.settings.task_signing_keys[0]


def seal(harness: Harness, step: Step, key: bytes | None = None) -> bytes:
    return seal_task(step.to_json(), key if key is not None else key_of(harness))


def deliver(
    harness: Harness,
    body: bytes,
    *,
    retry_count: int = 0,
    method: str = "POST",
    stream: io.RawIOBase | None = None,
) -> Reply:
    """poll_job's handler as main.py calls it; a raise here is a 500 there."""
    try:
        return steps.handle_http(
            harness.service,
            method=method,
            headers=Headers({"X-CloudTasks-TaskRetryCount": str(retry_count)}),
            stream=stream if stream is not None else io.BytesIO(body),
        )
    except Exception as crash:
        pytest.fail(f"poll_job's handler raised {crash!r}: main.py would answer 500")


# --- forgeries ---------------------------------------------------------------------


def _envelope(body: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(body)
    return envelope


def _with(body: bytes, **fields: Any) -> bytes:
    return json.dumps({**_envelope(body), **fields}).encode()


def _without_signature(body: bytes) -> bytes:
    return json.dumps({"payload": _envelope(body)["payload"]}).encode()


def _flip_one_byte(body: bytes) -> bytes:
    at = body.index(TRACK.encode()) + len(TRACK) - 1
    return body[:at] + (b"Y" if body[at : at + 1] != b"Y" else b"Z") + body[at + 1 :]


def _extend_not_after(body: bytes) -> bytes:
    match = re.search(rb'not_after\\?":(\d)', body)
    assert match is not None
    at = match.start(1)
    return body[:at] + (b"9" if body[at : at + 1] != b"9" else b"8") + body[at + 1 :]


def _resealed_with_a_duplicate(harness: Harness, body: bytes) -> bytes:
    """Correctly signed (with the real key), but the payload repeats `kind`, last one forged."""
    text = _envelope(body)["payload"]
    forged = text[:-1] + ',"kind":"finish"}'
    signature = (
        "v1="
        + base64.b64encode(
            hmac.new(key_of(harness), forged.encode(), hashlib.sha256).digest()
        ).decode()
    )
    return json.dumps({"payload": forged, "signature": signature}).encode()


def _swap_case(signature: str) -> str:
    return signature[:3] + signature[3:].swapcase()


Forgery = Callable[[Harness, Step, bytes], bytes]

FORGERIES: dict[str, Forgery] = {
    "signed-with-another-key": lambda h, s, b: seal(h, s, ATTACKER_KEY),
    "signed-with-an-empty-key": lambda h, s, b: seal(h, s, b""),
    "one-payload-byte-changed": lambda h, s, b: _flip_one_byte(b),
    "not-after-extended": lambda h, s, b: _extend_not_after(b),
    "kind-changed": lambda h, s, b: b.replace(b'kind\\":\\"delete', b'kind\\":\\"finish', 1),
    "utf-16": lambda h, s, b: b.decode().encode("utf-16"),
    "byte-order-mark": lambda h, s, b: b"\xef\xbb\xbf" + b,
    "payload-pretty-printed": lambda h, s, b: _with(
        b, payload=json.dumps(json.loads(_envelope(b)["payload"]), indent=2)
    ),
    "payload-as-an-object": lambda h, s, b: _with(b, payload=json.loads(_envelope(b)["payload"])),
    "forged-payload-key-before-the-signed-one": lambda h, s, b: (
        b'{"payload":'
        + json.dumps(compact_json(s.next("poll", job_id="j").to_json())).encode()
        + b","
        + b[1:]
    ),
    "duplicate-key-inside-the-signed-payload": lambda h, s, b: _resealed_with_a_duplicate(h, b),
    "truncated-by-one-byte": lambda h, s, b: b[:-1],
    "truncated-to-half": lambda h, s, b: b[: len(b) // 2],
    "signature-stripped": lambda h, s, b: _without_signature(b),
    "signature-empty": lambda h, s, b: _with(b, signature=""),
    "signature-prefix-only": lambda h, s, b: _with(b, signature="v1="),
    "signature-of-another-task": lambda h, s, b: _with(
        b, signature=_envelope(seal(h, s.next("poll", job_id="j")))["signature"]
    ),
    "signature-other-version": lambda h, s, b: _with(
        b, signature="v2=" + _envelope(b)["signature"][3:]
    ),
    "signature-case-swapped": lambda h, s, b: _with(
        b, signature=_swap_case(_envelope(b)["signature"])
    ),
    "signature-null": lambda h, s, b: _with(b, signature=None),
    "signature-a-list": lambda h, s, b: _with(b, signature=[_envelope(b)["signature"]]),
    "extra-envelope-field": lambda h, s, b: _with(b, note="x"),
    "payload-not-an-object": lambda h, s, b: _with(b, payload=[_envelope(b)["payload"]]),
    "duplicate-payload-key-after-the-signed-one": lambda h, s, b: (
        b[:-1] + b',"payload":' + json.dumps(s.next("poll", job_id="j").to_json()).encode() + b"}"
    ),
    "envelope-a-list": lambda h, s, b: b"[" + b + b"]",
    "envelope-null": lambda h, s, b: b"null",
    "empty-body": lambda h, s, b: b"",
    "not-json": lambda h, s, b: b"payload=x&signature=y",
    "invalid-utf8": lambda h, s, b: b'{"payload": {"a": "\xff"}, "signature": "v1=x"}',
    "nested-10000-levels": lambda h, s, b: (
        b'{"payload": {"a": ' + b"[" * 10_000 + b"]" * 10_000 + b'}, "signature": "v1=x"}'
    ),
    "non-finite-number": lambda h, s, b: b'{"payload": {"a": 1e400}, "signature": "v1=x"}',
    "nan": lambda h, s, b: b'{"payload": {"a": NaN}, "signature": "v1=x"}',
    "lone-surrogate": lambda h, s, b: b'{"payload": {"a": "\\ud800"}, "signature": "v1=x"}',
    "signed-but-not-a-task": lambda h, s, b: seal_task({"v": 1, "kind": "delete"}, key_of(h)),
    "signed-with-an-unknown-kind": lambda h, s, b: seal_task(
        {**s.to_json(), "kind": "exfiltrate"}, key_of(h)
    ),
    "signed-with-an-extra-field": lambda h, s, b: seal_task(
        {**s.to_json(), "url": METADATA_SERVER}, key_of(h)
    ),
    "oversize": lambda h, s, b: b + b" " * (MAX_TASK_BODY + 1 - len(b)),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_forged_or_tampered_delete_task_gets_401_and_causes_no_outbound_call(
    scene: Scene, forge: Forgery
) -> None:
    harness = scene.harness
    step = make_step(harness)
    body = forge(harness, step, seal(harness, step))
    reply = deliver(harness, body)
    assert_refused(reply, 401, "invalid_task")
    scene.assert_nothing_went_out()


@pytest.mark.parametrize(
    "forge",
    [FORGERIES["signed-with-another-key"], FORGERIES["signature-stripped"]],
    ids=["signed-with-another-key", "signature-stripped"],
)
def test_a_forged_callback_task_aimed_at_the_metadata_server_gets_401_and_sends_nothing(
    scene: Scene, forge: Forgery
) -> None:
    harness = scene.harness
    step = callback_step(harness)
    evil = Step.from_json(
        {
            **step.to_json(),
            "request": {**step.request.to_json(), "callback_url": METADATA_SERVER},
        }
    )
    reply = deliver(harness, forge(harness, evil, seal(harness, evil, ATTACKER_KEY)))
    assert_refused(reply, 401, "invalid_task")
    scene.assert_nothing_went_out()
    assert "169.254.169.254" not in harness.logs.getvalue()


def test_a_tampered_genuine_callback_task_gets_401_and_sends_nothing(scene: Scene) -> None:
    harness = scene.harness
    body = seal(harness, callback_step(harness))
    tampered = body.replace(b"hooks.example.com", b"hooks.example.org", 1)
    assert tampered != body
    assert_refused(deliver(harness, tampered), 401, "invalid_task")
    scene.assert_nothing_went_out()


def test_an_endless_task_body_gets_401_after_reading_at_most_the_limit_plus_one(
    scene: Scene,
) -> None:
    stream = BoundedStream(MAX_TASK_BODY + 1)
    reply = deliver(scene.harness, b"", stream=stream)
    assert_refused(reply, 401, "invalid_task")
    assert stream.given <= MAX_TASK_BODY + 1
    scene.assert_nothing_went_out()


@pytest.mark.parametrize("method", NON_POST_METHODS)
def test_a_genuine_task_sent_with_another_method_gets_405_and_is_not_run(
    scene: Scene, method: str
) -> None:
    harness = scene.harness
    reply = deliver(harness, seal(harness, make_step(harness)), method=method)
    assert_refused(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "POST"
    scene.assert_nothing_went_out()


def test_a_rejected_task_is_logged_without_its_body(scene: Scene) -> None:
    harness = scene.harness
    evil = make_step(harness, callback_url=METADATA_SERVER)
    deliver(harness, seal(harness, evil, ATTACKER_KEY))
    [entry] = [e for e in harness.logs.entries() if e["message"] == "task rejected"]
    assert entry["severity"] == "WARNING"
    text = harness.logs.getvalue()
    assert "169.254.169.254" not in text and TRACK not in text
    assert set(entry) <= {"severity", "message", "reason", "time"}


# --- replays and expiry --------------------------------------------------------------


def test_a_genuine_delete_task_delivered_twice_sends_one_delete(scene: Scene) -> None:
    harness = scene.harness
    body = seal(harness, make_step(harness))
    first = deliver(harness, body)
    assert first.status == 200 and first.body["status"] == "done"
    assert [r.method for r in scene.datocms_requests()] == ["DELETE"]
    assert len(harness.queue.enqueued) == 1

    again = deliver(harness, body)
    assert again.status == 200 and again.body == {"status": "already_done"}
    assert [r.method for r in scene.datocms_requests()] == ["DELETE"]
    assert len(harness.queue.enqueued) == 1


def test_a_genuine_callback_task_delivered_twice_makes_one_delivery(scene: Scene) -> None:
    harness = scene.harness
    body = seal(harness, callback_step(harness))
    first = deliver(harness, body)
    assert first.status == 200 and first.body["status"] == "delivered"
    again = deliver(harness, body, retry_count=0)
    assert again.status == 200 and again.body == {"status": "already_done"}
    assert len(harness.sender.sent) == 1
    assert scene.datocms_requests() == []


def test_a_callback_that_failed_once_is_retried_then_never_delivered_again(scene: Scene) -> None:
    harness = scene.harness
    harness.sender.answers = [FAILED]
    body = seal(harness, callback_step(harness))
    assert deliver(harness, body).status == 502  # the queue retries it
    assert deliver(harness, body, retry_count=1).body["status"] == "delivered"
    assert deliver(harness, body, retry_count=2).body == {"status": "already_done"}
    assert len(harness.sender.sent) == 2
    ids = {headers["webhook-id"] for _, _, headers in harness.sender.sent}
    assert len(ids) == 1


def test_a_genuine_resume_task_delivered_twice_sends_one_delete(scene: Scene) -> None:
    harness = scene.harness
    step = make_step(harness, "resume")  # its record says the DELETE is still to be retried
    records.mutate(
        harness.service, step.request_id, lambda r: r.touched(r.updated_at, status="queued"), 0.0
    )
    body = seal(harness, step)
    assert deliver(harness, body).status == 200
    assert deliver(harness, body).body == {"status": "already_done"}
    assert [r.method for r in scene.datocms_requests()] == ["DELETE"]
    assert harness.sender.sent == []


@pytest.mark.parametrize("kind", ["resume", "delete", "poll", "callback"])
def test_an_expired_genuine_task_is_acknowledged_and_causes_no_call(
    scene: Scene, kind: str
) -> None:
    harness = scene.harness
    past = harness.clock[0] - 1
    if kind == "callback":
        step = callback_step(harness, not_after=past)
    else:
        extra: dict[str, Any] = {"job_id": "4235"} if kind == "poll" else {}
        step = make_step(harness, kind, not_after=past, **extra)
    reply = deliver(harness, seal(harness, step))
    assert reply.status == 200 and reply.body == {"status": "expired"}
    scene.assert_nothing_went_out()


# --- key rotation -----------------------------------------------------------------


def test_during_a_task_key_rotation_old_tasks_verify_and_new_ones_use_the_new_key(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    old, new = "old-task-key-0123456789abcdef", "new-task-key-0123456789abcdef"
    before = make_harness(TASK_SIGNING_SECRET=old)
    during = make_harness(TASK_SIGNING_SECRET=f"{new} {old}")
    scene = Scene(during, simulator)
    body = seal(before, make_step(before))
    assert deliver(during, body).status == 200
    assert len(scene.datocms_requests()) == 1
    [(task, _, _)] = during.queue.enqueued
    assert open_task(task.body, [new.encode()])
    with pytest.raises(TaskRejected):
        open_task(task.body, [old.encode()])


def test_after_a_task_key_is_retired_tasks_signed_with_it_get_401(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    old, new = "old-task-key-0123456789abcdef", "new-task-key-0123456789abcdef"
    before = make_harness(TASK_SIGNING_SECRET=old)
    after = make_harness(TASK_SIGNING_SECRET=new)
    scene = Scene(after, simulator)
    assert_refused(deliver(after, seal(before, make_step(before))), 401, "invalid_task")
    scene.assert_nothing_went_out()


def test_during_a_callback_key_rotation_every_callback_verifies_with_either_secret(
    make_harness: Callable[..., Harness],
) -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    harness = make_harness(CALLBACK_SIGNING_SECRET=f"{new} {old}")
    harness.clock[0] = time.time()  # receivers allow 5 minutes of clock skew
    reply = deliver(harness, seal(harness, callback_step(harness)))
    assert reply.body["status"] == "delivered"
    [(_, body, headers)] = harness.sender.sent
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)


def test_task_bodies_nested_at_any_depth_get_401_not_a_crash(scene: Scene) -> None:
    for depth in range(1, 1201):
        raw = b'{"payload":{"a":' + b"[" * depth + b"]" * depth + b'},"signature":"v1=x"}'
        assert_refused(deliver(scene.harness, raw), 401, "invalid_task")
    scene.assert_nothing_went_out()


# --- DATOCMS_API_TOKEN rotation: what a task does while the token is refused ---------


def test_a_task_refused_by_datocms_for_its_token_is_retried_until_the_deadline(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    harness = make_harness(DATOCMS_API_TOKEN="revoked-token-0123456789")
    scene = Scene(harness, simulator)
    reply = deliver(harness, seal(harness, make_step(harness)))
    assert reply.status == 200 and reply.body["next"] == "schedule"
    assert [r.status for r in scene.datocms_requests()] == [401]
    [payload] = harness.queue.payloads()
    assert payload["kind"] == "delete" and payload["failures"] == 2  # the DELETE, again
    assert harness.sender.sent == []


def test_a_token_still_refused_after_the_deadline_ends_in_a_timed_out_callback(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> None:
    harness = make_harness(DATOCMS_API_TOKEN="revoked-token-0123456789")
    timeout = harness.service.settings.poll_timeout
    step = make_step(harness, "poll", job_id="4235", accepted_at=harness.clock[0] - timeout - 1)
    assert deliver(harness, seal(harness, step)).status == 200
    [payload] = harness.queue.payloads()
    assert payload["kind"] == "callback"
    assert payload["callback"]["type"] == "upload_track.deletion_timed_out"


def test_a_task_sealed_before_the_raw_payload_format_still_opens_only_byte_for_byte(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    payload = make_step(harness).to_json()
    legacy = _legacy_seal(payload, key_of(harness))
    assert open_task(legacy, [key_of(harness)]) == payload
    pretty = json.dumps(json.loads(legacy), indent=2).encode()
    for variant in (pretty, legacy.decode().encode("utf-16"), b"\xef\xbb\xbf" + legacy):
        with pytest.raises(TaskRejected):
            open_task(variant, [key_of(harness)])
