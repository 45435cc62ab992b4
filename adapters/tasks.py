"""The task queue port: what the service needs from Cloud Tasks, and nothing more.

Two adapters implement it: `adapters.local_queue.LocalTaskQueue` (in-process, for
development and tests) and `adapters.cloud_tasks.CloudTasksQueue` (production).
Both deliver a task as an HTTP `POST` of `body` to the poll URL with
`Content-Type: application/json` and the `X-CloudTasks-*` headers.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Protocol

from core.settings import Settings


class QueueRole(enum.Enum):
    """Which queue a task goes to: DatoCMS steps, or callback deliveries."""

    STEPS = "steps"
    CALLBACKS = "callbacks"


@dataclass(frozen=True)
class RetryPolicy:
    """A queue's retry configuration, with Cloud Tasks' meaning of each field.

    `max_attempts` counts the first attempt (-1: unlimited). Backoff starts at
    `min_backoff`, doubles `max_doublings` times, then grows linearly, capped at
    `max_backoff` (seconds).
    """

    max_attempts: int
    min_backoff: float
    max_backoff: float
    max_doublings: int = 16

    def backoff(self, retry_count: int) -> float:
        """Seconds to wait before retry number `retry_count` (1 = first retry)."""
        if retry_count <= 0:
            return 0.0
        doublings = min(retry_count - 1, self.max_doublings)
        delay = self.min_backoff * float(2**doublings)
        if retry_count - 1 > self.max_doublings:
            linear_steps = retry_count - 1 - self.max_doublings
            delay += linear_steps * self.min_backoff * float(2**self.max_doublings)
        return min(delay, self.max_backoff)

    def sequence_seconds(self) -> float:
        """Every backoff of the attempt budget: how long one whole sequence may wait."""
        return _sequence_seconds(self)

    def allows(self, attempt: int) -> bool:
        """Whether attempt number `attempt` (1 = first) may run."""
        return self.max_attempts < 0 or attempt <= self.max_attempts


#: The steps queue retries only what failed unexpectedly (a crash, a queue outage).
STEPS_RETRY = RetryPolicy(max_attempts=-1, min_backoff=1.0, max_backoff=60.0, max_doublings=6)


@functools.lru_cache(maxsize=16)  # asked at every record write; a policy never changes
def _sequence_seconds(policy: RetryPolicy) -> float:
    return sum(policy.backoff(n) for n in range(1, policy.max_attempts))


def callback_retry(settings: Settings) -> RetryPolicy:
    """The callbacks queue's retry policy: the `CALLBACK_*` settings, as Terraform sets them."""
    return RetryPolicy(
        max_attempts=settings.callback_max_attempts,
        min_backoff=settings.callback_retry_min,
        max_backoff=settings.callback_retry_max,
    )


@dataclass(frozen=True)
class Task:
    """One unit of work for `poll_job`: a signed JSON body, sent to one queue."""

    role: QueueRole
    body: bytes


class TaskQueue(Protocol):
    """Schedules tasks for delivery to `poll_job`."""

    def enqueue(self, task: Task, *, delay: float, name: str) -> bool:
        """Schedule `task` to be delivered after `delay` seconds.

        `name` is deterministic (`[A-Za-z0-9_-]`, at most 500 characters): a
        second task of the same name, within the de-duplication window, is not
        created. Returns True when the task was created, False when a task of
        that name already existed. Raises `core.errors.QueueUnavailable` when
        the queue could not be reached; nothing is scheduled then.
        """
        ...
