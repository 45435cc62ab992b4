"""`delete_track_event` as a real `functions-framework` process, fed CloudEvents over HTTP
the way Eventarc delivers them: binary mode, structured mode, and Pub/Sub push envelopes.

An event that can never succeed is acknowledged (2xx) and logged at ERROR; a
misconfigured function answers non-2xx so that Eventarc redelivers.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from devstack.receiver import Delivery
from devstack.stack import FunctionProcess, LocalStack
from tests.e2e.waiting import stays_unchanged, wait_until

PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
PUBSUB_SOURCE = "//pubsub.googleapis.com/projects/P/topics/track-deletions"


# --------------------------------------------------------------------------- waiting


# --------------------------------------------------------------------------- events


def new_event_id() -> str:
    return "evt-" + secrets.token_hex(8)


def binary_event(
    url: str, data: bytes, *, event_id: str, content_type: str = "application/json"
) -> requests.Response:
    """A binary-mode CloudEvent: attributes in `ce-*` headers, the data as the body."""
    return requests.post(
        url,
        data=data,
        headers={
            "ce-id": event_id,
            "ce-source": "//e2e/tests",
            "ce-specversion": "1.0",
            "ce-type": "com.example.track.deletion.requested",
            "ce-time": "2026-11-28T15:04:05Z",
            "Content-Type": content_type,
        },
        timeout=30,
    )


def structured_event(url: str, data: Any, *, event_id: str) -> requests.Response:
    """A structured-mode CloudEvent: attributes and data in one JSON document."""
    document = {
        "specversion": "1.0",
        "id": event_id,
        "source": "//e2e/tests",
        "type": "com.example.track.deletion.requested",
        "datacontenttype": "application/json",
        "data": data,
    }
    return requests.post(
        url,
        data=json.dumps(document),
        headers={"Content-Type": "application/cloudevents+json"},
        timeout=30,
    )


def pubsub_envelope(message_data: str) -> dict[str, Any]:
    return {
        "message": {"data": message_data, "messageId": "1", "attributes": {}},
        "subscription": "projects/P/subscriptions/S",
    }


def pubsub_event(url: str, raw: bytes, *, event_id: str) -> requests.Response:
    """An Eventarc Pub/Sub event (binary mode) carrying `raw` as the message data."""
    envelope = pubsub_envelope(base64.b64encode(raw).decode())
    return requests.post(
        url,
        data=json.dumps(envelope),
        headers={
            "ce-id": event_id,
            "ce-source": PUBSUB_SOURCE,
            "ce-specversion": "1.0",
            "ce-type": PUBSUB_TYPE,
            "Content-Type": "application/json",
        },
        timeout=30,
    )


# --------------------------------------------------------------------------- helpers


def new_request(stack: LocalStack) -> dict[str, Any]:
    """A deletion request for a fresh track of the simulator, calling back the receiver."""
    upload_id = "up-" + secrets.token_hex(6)
    track_id = "tr-" + secrets.token_hex(8)
    stack.simulator.add_track(upload_id, track_id, job_seconds=0.2)
    return {
        "upload_id": upload_id,
        "upload_track_id": track_id,
        "callback_url": stack.receiver.url,
        "metadata": {"source": "event"},
    }


def deliveries_for(stack: LocalStack, track_id: str) -> list[Delivery]:
    """Every callback attempt the receiver got about `track_id`."""
    return [
        d
        for d in list(stack.receiver.deliveries)
        if d.verified and d.payload["data"]["upload_track_id"] == track_id
    ]


def accepted_for(stack: LocalStack, track_id: str) -> list[Delivery]:
    return [d for d in deliveries_for(stack, track_id) if 200 <= d.answered < 300]


def delete_path(request: dict[str, Any]) -> str:
    return f"/uploads/{request['upload_id']}/tracks/{request['upload_track_id']}"


def event_logs(function: FunctionProcess, event_id: str) -> list[dict[str, Any]]:
    return [entry for entry in function.logs() if entry.get("event_id") == event_id]


def send_binary(url: str, request: dict[str, Any]) -> requests.Response:
    return binary_event(url, json.dumps(request).encode(), event_id=new_event_id())


def send_structured(url: str, request: dict[str, Any]) -> requests.Response:
    return structured_event(url, request, event_id=new_event_id())


def send_pubsub(url: str, request: dict[str, Any]) -> requests.Response:
    return pubsub_event(url, json.dumps(request).encode(), event_id=new_event_id())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(with_event_function=True) as running:
        yield running


@pytest.fixture(scope="module")
def event_url(stack: LocalStack) -> str:
    return stack.functions["delete_track_event"].url


@pytest.fixture(scope="module")
def tokenless(stack: LocalStack) -> Iterator[dict[str, FunctionProcess]]:
    """`delete_track_event` started with `DATOCMS_API_TOKEN` unset, and set but empty."""
    functions: dict[str, FunctionProcess] = {}
    for missing in ("unset", "empty"):
        env = stack.environment(stack.simulator.base_url, stack.functions["poll_job"].port)
        if missing == "unset":
            del env["DATOCMS_API_TOKEN"]
        else:
            env["DATOCMS_API_TOKEN"] = ""
        functions[missing] = FunctionProcess("delete_track_event", env)
    try:
        for function in functions.values():
            function.start()
        for function in functions.values():
            function.wait_ready()
        yield functions
    finally:
        for function in functions.values():  # stop both at once: each takes ~2 s to exit
            if function.process is not None and function.process.poll() is None:
                function.process.terminate()
        for function in functions.values():
            function.stop()


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "send",
    [send_binary, send_structured, send_pubsub],
    ids=["binary-mode", "structured-mode", "eventarc-pubsub"],
)
def test_an_event_leads_to_one_verified_deleted_callback(
    stack: LocalStack,
    event_url: str,
    send: Callable[[str, dict[str, Any]], requests.Response],
) -> None:
    request = new_request(stack)

    answer = send(event_url, request)
    wait_until("an accepted callback", lambda: accepted_for(stack, request["upload_track_id"]))
    attempts = stays_unchanged(lambda: len(deliveries_for(stack, request["upload_track_id"])))

    assert 200 <= answer.status_code < 300, answer.text
    assert attempts == 1
    [delivery] = accepted_for(stack, request["upload_track_id"])
    Webhook(stack.secrets.callback_secret).verify(delivery.body, delivery.headers)
    callback = delivery.payload
    assert callback["type"] == "upload_track.deleted"
    assert callback["data"]["status"] == "deleted"
    assert callback["data"]["upload_id"] == request["upload_id"]
    assert callback["data"]["metadata"] == {"source": "event"}
    assert delivery.headers["webhook-id"] == callback["data"]["request_id"]
    assert stack.simulator.count("DELETE", delete_path(request)) == 1


def schema_violation_binary(url: str, event_id: str) -> requests.Response:
    body = {"upload_id": "up-bad", "upload_track_id": "tr bad!", "unexpected": True}
    return binary_event(url, json.dumps(body).encode(), event_id=event_id)


def schema_violation_structured(url: str, event_id: str) -> requests.Response:
    return structured_event(url, {"upload_track_id": "tr-no-upload"}, event_id=event_id)


def schema_violation_pubsub(url: str, event_id: str) -> requests.Response:
    body = {"upload_id": "up-bad", "upload_track_id": "tr-bad", "callback_url": "ftp://x"}
    return pubsub_event(url, json.dumps(body).encode(), event_id=event_id)


def not_json_binary(url: str, event_id: str) -> requests.Response:
    return binary_event(url, b"delete please", event_id=event_id, content_type="text/plain")


def broken_json_binary(url: str, event_id: str) -> requests.Response:
    return binary_event(url, b'{"upload_id": ', event_id=event_id)


def not_json_pubsub(url: str, event_id: str) -> requests.Response:
    return pubsub_event(url, b"\xff\xfe not json", event_id=event_id)


def not_base64_pubsub(url: str, event_id: str) -> requests.Response:
    return binary_event(
        url, json.dumps(pubsub_envelope("%%% not base64 %%%")).encode(), event_id=event_id
    )


@pytest.mark.parametrize(
    "send",
    [
        schema_violation_binary,
        schema_violation_structured,
        schema_violation_pubsub,
        not_json_binary,
        broken_json_binary,
        not_json_pubsub,
        not_base64_pubsub,
    ],
    ids=[
        "schema-binary",
        "schema-structured",
        "schema-pubsub",
        "text-binary",
        "broken-json-binary",
        "not-json-pubsub",
        "not-base64-pubsub",
    ],
)
def test_an_event_that_can_never_succeed_is_acknowledged_logged_at_error_and_not_sent(
    stack: LocalStack, event_url: str, send: Callable[[str, str], requests.Response]
) -> None:
    event_id = new_event_id()
    calls_before = len(stack.simulator.requests)

    answer = send(event_url, event_id)
    # The event is handled synchronously: anything it logs is written before the answer.
    logged = wait_until(
        "the event's log line",
        lambda: event_logs(stack.functions["delete_track_event"], event_id),
        timeout=5,
    )

    assert 200 <= answer.status_code < 300, answer.text
    assert [entry["severity"] for entry in logged] == ["ERROR"]
    assert logged[0]["message"] == "event dropped: it can never succeed"
    assert len(stack.simulator.requests) == calls_before


def test_a_duplicate_event_leads_to_one_delete_and_one_callback(
    stack: LocalStack, event_url: str
) -> None:
    request = new_request(stack)
    raw = json.dumps(request).encode()
    event_id = new_event_id()

    first = pubsub_event(event_url, raw, event_id=event_id)
    again = pubsub_event(event_url, raw, event_id=event_id)  # an Eventarc redelivery
    wait_until("an accepted callback", lambda: accepted_for(stack, request["upload_track_id"]))
    attempts = stays_unchanged(lambda: len(deliveries_for(stack, request["upload_track_id"])))

    assert 200 <= first.status_code < 300, first.text
    assert 200 <= again.status_code < 300, again.text
    assert attempts == 1
    assert stack.simulator.count("DELETE", delete_path(request)) == 1
    messages = [e["message"] for e in event_logs(stack.functions["delete_track_event"], event_id)]
    assert messages == [
        "DatoCMS answered",
        "deletion accepted; polling scheduled",
        "duplicate request",
    ]


@pytest.mark.parametrize("missing", ["unset", "empty"])
def test_an_event_function_without_datocms_api_token_answers_non_2xx_and_names_only_the_variable(
    stack: LocalStack, tokenless: dict[str, FunctionProcess], missing: str
) -> None:
    function = tokenless[missing]
    request = new_request(stack)

    answer = send_pubsub(function.url, request)
    errors = wait_until(
        "the misconfiguration in the log",
        lambda: [e for e in function.logs() if e.get("severity") == "ERROR"],
        timeout=5,
    )
    output = function.output()  # the structured log and whatever else the process wrote

    assert not 200 <= answer.status_code < 300  # Eventarc redelivers
    assert answer.status_code >= 500
    assert [(e["message"], e["variables"]) for e in errors] == [
        ("misconfigured: missing", ["DATOCMS_API_TOKEN"])
    ]
    for value in (
        stack.secrets.intake_token,
        stack.secrets.task_secret,
        stack.secrets.callback_secret,
        stack.secrets.datocms_token,
    ):
        assert value not in output
    assert stack.simulator.count("DELETE", delete_path(request)) == 0
