"""A callback attempt that outlives the queue's dispatch deadline still ends exactly once.

Cloud Tasks gives up waiting for an answer after its dispatch deadline and
retries the task, possibly on the same instance, while the first attempt is
still running there. That retry must not be acknowledged: the running attempt
may yet fail, and an acknowledged retry would leave the callback neither
delivered nor dead-lettered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import pytest

from adapters.callback_sender import DeliveryResult
from core.model import Step
from handlers import records
from handlers.responses import Reply
from tests.conftest import Harness
from tests.handlers.test_steps import FAILED, callback_step, deliver


class HangingSender:
    """The first attempt hangs until released, then answers `first`; later ones, `then`."""

    def __init__(self, first: DeliveryResult, then: list[DeliveryResult]) -> None:
        self.first = first
        self.entered = threading.Event()
        self.release = threading.Event()
        self.then = then
        self.calls = 0

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(timeout=10)
            return self.first
        return self.then.pop(0)


def hung_attempt(harness: Harness, step: Step) -> tuple[threading.Thread, list[Reply]]:
    replies: list[Reply] = []
    thread = threading.Thread(target=lambda: replies.append(deliver(harness, step)))
    thread.start()
    return thread, replies


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(CALLBACK_MAX_ATTEMPTS="2")


def test_a_retry_while_the_attempt_still_runs_is_not_acknowledged(harness: Harness) -> None:
    step = callback_step(harness)
    sender = HangingSender(FAILED, then=[FAILED])
    harness.service.sender = sender
    thread, first = hung_attempt(harness, step)
    assert sender.entered.wait(timeout=10)

    retry = deliver(harness, step)  # the queue's retry, after its dispatch deadline

    assert retry.status == 503
    assert retry.body["error"]["code"] == "in_progress"
    assert retry.headers["Retry-After"]
    sender.release.set()
    thread.join(timeout=10)
    assert [reply.status for reply in first] == [502]  # attempt 1 of 2 failed
    # The queue comes back once more: the last attempt fails too, and dead-letters.
    last = deliver(harness, step)
    assert last.body["status"] == "dead_lettered"
    record = records.load(harness.service, step.request_id, harness.clock[0])
    assert record is not None
    assert (record.callback.state, record.callback.attempts) == ("dead_letter", 2)
    assert sender.calls == 2


def test_a_hung_attempt_that_delivers_leaves_nothing_to_do_for_later_retries(
    harness: Harness,
) -> None:
    step = callback_step(harness)
    sender = HangingSender(DeliveryResult(True, 204, "delivered (HTTP 204)"), then=[])
    harness.service.sender = sender
    thread, first = hung_attempt(harness, step)
    assert sender.entered.wait(timeout=10)
    assert deliver(harness, step).status == 503
    sender.release.set()
    thread.join(timeout=10)

    assert [reply.body["status"] for reply in first] == ["delivered"]
    assert deliver(harness, step).body["status"] == "already_done"
