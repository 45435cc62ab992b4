"""The composition root: the service's dependencies, built once per process from `Settings`.

`main.py` asks for the `Service` on the first request (never at import), and
every handler receives it. Every adapter is built the same way, from `Settings`.
Tests build a `Service` with fakes in place of the queue, the clocks or the sender.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import requests

from adapters.datocms import DatoCMSClient
from adapters.log import Log
from adapters.shared_hold import SharedHold
from adapters.shared_learning import SharedLearning
from adapters.state_store import open_state_store
from adapters.tasks import TaskQueue
from core.polling import PollPolicy
from core.recent import RecentKeys
from core.settings import Settings
from core.state import StateStore

if TYPE_CHECKING:
    from adapters.callback_sender import CallbackSender, DeliveryResult

DEDUP_SECONDS = 3600.0
#: How long a step may be remembered as running; every step is bounded far below this
#: (a callback attempt by 15 s, a DatoCMS call by its 25 s timeouts).
RUNNING_SECONDS = 900.0


class Sender(Protocol):
    """Delivers one signed callback (`adapters.callback_sender.CallbackSender`)."""

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult: ...


class LazySender:
    """A `CallbackSender` built on the first delivery: the intake never sends a callback,
    and its first request (a cold start) need not import the callback transport."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._lock = threading.Lock()
        self._sender: CallbackSender | None = None

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        sender = self._sender
        if sender is None:
            with self._lock:
                if self._sender is None:
                    from adapters.callback_sender import CallbackSender  # noqa: PLC0415

                    self._sender = CallbackSender(allow_private=self._allow_private)
                sender = self._sender
        return sender.deliver(url, body, headers)


@dataclass
class Service:
    """Everything a handler needs; built once per process."""

    settings: Settings
    log: Log
    datocms: DatoCMSClient
    queue: TaskQueue
    sender: Sender
    #: Request records, and the small documents every instance shares.
    records: StateStore
    shared: StateStore
    wall: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    nonce: Callable[[int], bytes] = secrets.token_bytes
    #: Steps carried out by this process (a task delivered again is acknowledged, not rerun).
    spent: RecentKeys = field(default_factory=lambda: RecentKeys(DEDUP_SECONDS * 24))
    #: Steps running in this process right now (a retry meanwhile answers 503: it may fail).
    running: RecentKeys = field(default_factory=lambda: RecentKeys(RUNNING_SECONDS))

    #: Job durations every instance learned; None: the cold schedule only.
    learning: SharedLearning | None = None

    @property
    def policy(self) -> PollPolicy:
        planner = self.learning.plan if self.learning is not None else None
        return PollPolicy.from_settings(self.settings, planner)


def build_queue(settings: Settings, log: Log) -> TaskQueue:
    """The task queue adapter `TASKS_BACKEND` names."""
    if settings.tasks_backend == "cloudtasks":
        from adapters.cloud_tasks import CloudTasksQueue  # noqa: PLC0415 (keeps gRPC off the local path)

        queue = CloudTasksQueue.from_settings(settings)
        queue.warm()  # the gRPC client is made while the first request does other work
        return queue
    from adapters.local_queue import LocalTaskQueue  # noqa: PLC0415

    return LocalTaskQueue.from_settings(settings, log)


def build_store(settings: Settings, collection: str) -> StateStore:
    """The state store adapter `STATE_BACKEND` names, for `collection`."""
    return open_state_store(
        backend=settings.state_backend,
        collection=collection,
        sqlite_path=settings.state_path,
        firestore_project=settings.firestore_project,
        firestore_database=settings.firestore_database,
        firestore_emulator_host=settings.firestore_emulator_host,
    )


def build_service(settings: Settings, log: Log) -> Service:
    """Wire the real adapters. Raises `Misconfigured` when a backend setting is missing."""
    settings.require_backend()
    shared = build_store(settings, "shared")
    service = Service(
        settings=settings,
        log=log,
        datocms=DatoCMSClient(
            base_url=settings.datocms_base_url,
            token=settings.api_token(),
            session=requests.Session(),
            log=log,
            hold=SharedHold(shared, time.time),
        ),
        queue=build_queue(settings, log),
        sender=LazySender(allow_private=settings.callback_allow_private_networks),
        records=build_store(settings, "requests"),
        shared=shared,
    )
    service.learning = SharedLearning(
        service.shared,
        service.wall,
        log,
        max_delay=settings.poll_max_delay,
        initial=settings.poll_initial_delay,
    )
    return service
