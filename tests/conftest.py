"""Shared fixtures: fresh secrets, settings from a mapping, and a `Service` with fakes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.callback_sender import DeliveryResult
from adapters.datocms import DatoCMSClient
from adapters.log import Log
from adapters.service import Service
from adapters.state_sqlite import SQLiteStateStore
from adapters.tasks import Task
from core.model import DeletionRequest, Step
from core.record import RecordStatus
from core.settings import Settings
from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import Secrets
from handlers import chain, records


@dataclass
class RecordingQueue:
    """A `TaskQueue` that records what it was asked to enqueue and de-duplicates names."""

    enqueued: list[tuple[Task, float, str]] = field(default_factory=list)
    names: set[tuple[str, str]] = field(default_factory=set)
    fail_with: Exception | None = None

    def enqueue(self, task: Task, *, delay: float, name: str) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        key = (task.role.value, name)
        if key in self.names:
            return False
        self.names.add(key)
        self.enqueued.append((task, delay, name))
        return True

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(json.loads(task.body)["payload"]) for task, _, _ in self.enqueued]


@dataclass
class RecordingSender:
    """A callback sender that records deliveries and answers from a script."""

    answers: list[DeliveryResult] = field(default_factory=list)
    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        self.sent.append((url, body, dict(headers)))
        if self.answers:
            return self.answers.pop(0)
        return DeliveryResult(delivered=True, status=204, reason="delivered")


class LogCapture(io.StringIO):
    """A stream for `Log` that parses what was written."""

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line]


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def simulator(secrets: Secrets) -> Iterator[DatoCMSSimulator]:
    with DatoCMSSimulator(api_token=secrets.datocms_token) as sim:
        yield sim


def base_env(secrets: Secrets, datocms_url: str) -> dict[str, str]:
    return {
        "DATOCMS_API_TOKEN": secrets.datocms_token,
        "DATOCMS_BASE_URL": datocms_url,
        "INTAKE_TOKEN": secrets.intake_token,
        "TASK_SIGNING_SECRET": secrets.task_secret,
        "CALLBACK_SIGNING_SECRET": secrets.callback_secret,
        "CALLBACK_MAX_ATTEMPTS": "3",
    }


@dataclass
class Harness:
    """A `Service` wired to the simulator, with recording fakes for the queue and sender."""

    service: Service
    queue: RecordingQueue
    sender: RecordingSender
    logs: LogCapture
    clock: list[float]


@pytest.fixture
def make_harness(
    secrets: Secrets, simulator: DatoCMSSimulator, tmp_path: Path
) -> Callable[..., Harness]:
    def make(**overrides: str) -> Harness:
        env = base_env(secrets, simulator.base_url)
        env.update(overrides)
        settings = Settings.from_env(env)
        logs = LogCapture()
        log = Log(logs)
        queue = RecordingQueue()
        sender = RecordingSender()
        clock = [1_800_000_000.0]
        token = settings.datocms_api_token
        assert token is not None
        service = Service(
            settings=settings,
            log=log,
            datocms=DatoCMSClient(
                base_url=settings.datocms_base_url,
                token=token,
                session=requests.Session(),
                log=log,
            ),
            queue=queue,
            sender=sender,
            records=SQLiteStateStore(tmp_path / "state.sqlite3", "requests"),
            shared=SQLiteStateStore(tmp_path / "state.sqlite3", "shared"),
            wall=lambda: clock[0],
            rand=lambda: 0.5,
        )
        return Harness(service, queue, sender, logs, clock)

    return make


@pytest.fixture(scope="session")
def firestore_emulator_host() -> Iterator[str]:
    """`host:port` of one Firestore emulator per test session (per xdist worker)."""
    from tests.emulators import EmulatorMissing, firestore_emulator, unavailable

    try:
        with firestore_emulator() as host:
            yield host
    except EmulatorMissing as exc:
        unavailable(str(exc))


#: The project the Pub/Sub emulator serves (any name works on the emulator).
PUBSUB_PROJECT = "track-deleter-e2e"


@pytest.fixture(scope="session")
def pubsub_emulator_host() -> Iterator[str]:
    """`host:port` of one Pub/Sub emulator (project `PUBSUB_PROJECT`) per test session
    (per xdist worker)."""
    from tests.emulators import PUBSUB_INSTALL_HINT, EmulatorMissing, pubsub_emulator, unavailable

    try:
        with pubsub_emulator(PUBSUB_PROJECT) as host:
            yield host
    except EmulatorMissing as exc:
        unavailable(str(exc), PUBSUB_INSTALL_HINT)


def accept(harness: Harness, step: Step, status: RecordStatus = "pending") -> None:
    """The record that `step`'s acceptance left, as the intake writes it (if none yet)."""
    service = harness.service
    fresh = records.new_record(
        service, step.request, step.request_id, step.environment, step.accepted_at
    )
    record = replace(fresh, status=status, lease_until=None, job_id=step.job_id)
    service.records.create(records.document(service, record), now=harness.clock[0])


def make_step(
    harness: Harness, request: DeletionRequest, kind: str = "poll", **changes: Any
) -> Step:
    """Task 1 of `request`, accepted now, as `handlers/chain.py` builds it; its record written."""
    now = harness.clock[0]
    fields: dict[str, Any] = {
        "kind": kind,
        "request_id": request.request_id(None),
        "request": request,
        "environment": None,
        "accepted_at": now,
        "number": 1,
        "not_after": chain.step_not_after(now, harness.service),
    }
    fields.update(changes)
    made = Step(**fields)
    accept(harness, made)
    return made
