"""The composition root: the service's dependencies, built once per process from `Settings`.

`main.py` asks for the `Service` on the first request (never at import), and
every handler receives it. Every adapter is built the same way, from `Settings`.
Tests build a `Service` with fakes in place of the queue, the clocks or the sender.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import requests

from adapters.callback_sender import CallbackSender, DeliveryResult
from adapters.datocms import DatoCMSClient
from adapters.log import Log
from adapters.tasks import TaskQueue
from core.learning import PollLearner
from core.polling import PollPolicy
from core.recent import RecentKeys
from core.settings import Settings

DEDUP_SECONDS = 3600.0


class Sender(Protocol):
    """Delivers one signed callback (`adapters.callback_sender.CallbackSender`)."""

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult: ...


@dataclass
class Service:
    """Everything a handler needs; built once per process."""

    settings: Settings
    log: Log
    datocms: DatoCMSClient
    queue: TaskQueue
    sender: Sender
    wall: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    claims: RecentKeys = field(default_factory=lambda: RecentKeys(DEDUP_SECONDS))
    spent: RecentKeys = field(default_factory=lambda: RecentKeys(DEDUP_SECONDS * 24))

    #: What this process learned about job durations; None: the fixed schedule only.
    learner: PollLearner | None = None

    @property
    def policy(self) -> PollPolicy:
        planner = self.learner.plan if self.learner is not None else None
        return PollPolicy.from_settings(self.settings, planner)


def build_queue(settings: Settings, log: Log) -> TaskQueue:
    """The task queue adapter `TASKS_BACKEND` names."""
    if settings.tasks_backend == "cloudtasks":
        from adapters.cloud_tasks import CloudTasksQueue  # noqa: PLC0415 (keeps gRPC off the local path)

        return CloudTasksQueue.from_settings(settings)
    from adapters.local_queue import LocalTaskQueue  # noqa: PLC0415

    return LocalTaskQueue.from_settings(settings, log)


def build_service(settings: Settings, log: Log) -> Service:
    """Wire the real adapters. Raises `Misconfigured` when a backend setting is missing."""
    settings.require_backend()
    return Service(
        settings=settings,
        log=log,
        datocms=DatoCMSClient(
            base_url=settings.datocms_base_url,
            token=settings.api_token(),
            session=requests.Session(),
            log=log,
        ),
        queue=build_queue(settings, log),
        sender=CallbackSender(allow_private=settings.callback_allow_private_networks),
        learner=PollLearner(max_delay=settings.poll_max_delay),
    )
