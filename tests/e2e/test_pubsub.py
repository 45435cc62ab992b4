"""Pub/Sub end to end on Google's official emulator: a topic, a push subscription whose
endpoint is `delete_track_event` on loopback, and deletion requests published with
`google-cloud-pubsub`.

The emulator pushes the legacy envelope (`{"message": {...}, "subscription"}`), which
functions-framework turns into a Pub/Sub CloudEvent; it redelivers any non-2xx answer.
A small loopback front (`PushFront`) sits between the emulator and the function to
count the pushes and, when a test asks, to answer 500/503 in the function's place.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from tests.conftest import PUBSUB_PROJECT
from tests.e2e.test_events import accepted_for, delete_path, deliveries_for, new_request
from tests.e2e.waiting import stays_unchanged, wait_until

pytestmark = pytest.mark.xdist_group("pubsub")


@dataclass
class PushFront:
    """A loopback HTTP server in front of `target`: records each push's messageId, and answers
    the first pushes from `script` ("forward-then-500": the function runs but the emulator is
    told it failed; "503": the function is not called), then forwards."""

    target: str
    script: list[str] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = front.push(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def push(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            message_id = str(json.loads(body)["message"]["messageId"])
        except (ValueError, KeyError, TypeError):
            message_id = "?"
        with self._lock:
            self.pushes.append(message_id)
            step = self.script.pop(0) if self.script else "forward"
        if step == "503":
            return 503
        forwarded = requests.post(
            self.target,
            data=body,
            headers={"Content-Type": headers.get("Content-Type", "application/json")},
            timeout=30,
        )
        return 500 if step == "forward-then-500" else forwarded.status_code

    def count(self, message_id: str) -> int:
        with self._lock:
            return self.pushes.count(message_id)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class PubSub:
    """Topics and push subscriptions on the emulator, and publishing with the real client."""

    publisher: Any
    subscriber: Any

    def push_topic(self, endpoint: str) -> str:
        """A new topic with a push subscription to `endpoint`; its path."""
        from google.cloud import pubsub_v1

        suffix = secrets.token_hex(4)
        topic = self.publisher.topic_path(PUBSUB_PROJECT, f"deletions-{suffix}")
        self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(
            name=self.subscriber.subscription_path(PUBSUB_PROJECT, f"delete-track-{suffix}"),
            topic=topic,
            push_config=pubsub_v1.types.PushConfig(push_endpoint=endpoint),
            ack_deadline_seconds=10,
        )
        return topic

    def publish(self, topic: str, data: bytes) -> str:
        """Publish `data`; the message id the emulator gave it."""
        message_id: str = self.publisher.publish(topic, data).result(timeout=10)
        return message_id


@pytest.fixture(scope="module")
def pubsub(pubsub_emulator_host: str) -> Iterator[PubSub]:
    from google.cloud import pubsub_v1

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator_host)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
    try:
        yield PubSub(publisher, subscriber)
    finally:
        subscriber.close()
        publisher.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(with_event_function=True) as running:
        yield running


@pytest.fixture
def front(stack: LocalStack) -> Iterator[PushFront]:
    pushed = PushFront(stack.functions["delete_track_event"].url)
    try:
        yield pushed
    finally:
        pushed.stop()


def event_logs(stack: LocalStack, message_id: str) -> list[dict[str, Any]]:
    """What `delete_track_event` logged about the message (its event id is the messageId)."""
    function = stack.functions["delete_track_event"]
    return [entry for entry in function.logs() if entry.get("event_id") == message_id]


def test_a_published_request_leads_to_one_deletion_and_one_verified_callback(
    stack: LocalStack, pubsub: PubSub, front: PushFront
) -> None:
    topic = pubsub.push_topic(front.start())
    request = new_request(stack)

    message_id = pubsub.publish(topic, json.dumps(request).encode())
    wait_until("an accepted callback", lambda: accepted_for(stack, request["upload_track_id"]))
    attempts = stays_unchanged(lambda: len(deliveries_for(stack, request["upload_track_id"])))

    assert attempts == 1
    [delivery] = accepted_for(stack, request["upload_track_id"])
    assert delivery.payload["data"]["status"] == "deleted"
    assert stack.simulator.count("DELETE", delete_path(request)) == 1
    assert front.count(message_id) == 1
    [accepted] = [e for e in event_logs(stack, message_id) if e.get("event") == "request_accepted"]
    assert accepted["logging.googleapis.com/operation"]["first"] is True


def test_a_poison_message_is_acknowledged_logged_at_error_and_not_redelivered(
    stack: LocalStack, pubsub: PubSub, front: PushFront
) -> None:
    topic = pubsub.push_topic(front.start())
    calls_before = len(stack.simulator.requests)

    message_id = pubsub.publish(topic, b"\xff delete everything, please")
    logged = wait_until("the dropped event's log line", lambda: event_logs(stack, message_id))
    pushes = stays_unchanged(lambda: front.count(message_id), seconds=2.0)

    assert pushes == 1
    assert [(e["severity"], e["message"]) for e in logged] == [
        ("ERROR", "event dropped: it can never succeed")
    ]
    assert len(stack.simulator.requests) == calls_before


def test_a_request_published_twice_is_deleted_once_and_called_back_once(
    stack: LocalStack, pubsub: PubSub, front: PushFront
) -> None:
    topic = pubsub.push_topic(front.start())
    request = new_request(stack)
    raw = json.dumps(request).encode()

    first, second = pubsub.publish(topic, raw), pubsub.publish(topic, raw)
    wait_until("an accepted callback", lambda: accepted_for(stack, request["upload_track_id"]))
    wait_until("both pushes", lambda: front.count(first) and front.count(second))
    attempts = stays_unchanged(lambda: len(deliveries_for(stack, request["upload_track_id"])))

    assert first != second
    assert attempts == 1
    assert stack.simulator.count("DELETE", delete_path(request)) == 1
    messages = [e["message"] for m in (first, second) for e in event_logs(stack, m)]
    assert messages.count("duplicate request") == 1


def test_a_push_answered_500_then_503_is_redelivered_and_deleted_once(
    stack: LocalStack, pubsub: PubSub, front: PushFront
) -> None:
    front.script = ["forward-then-500", "503"]
    topic = pubsub.push_topic(front.start())
    request = new_request(stack)

    message_id = pubsub.publish(topic, json.dumps(request).encode())
    wait_until("the third push", lambda: front.count(message_id) >= 3, timeout=30)
    wait_until("an accepted callback", lambda: accepted_for(stack, request["upload_track_id"]))
    pushes = stays_unchanged(lambda: front.count(message_id))
    attempts = stays_unchanged(lambda: len(deliveries_for(stack, request["upload_track_id"])))

    assert pushes == 3  # acknowledged on the third: no more redeliveries
    assert attempts == 1
    assert stack.simulator.count("DELETE", delete_path(request)) == 1
    messages = [e["message"] for e in event_logs(stack, message_id)]
    assert messages.count("duplicate request") == 1  # the redelivery after the lost 500
