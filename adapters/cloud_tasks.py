"""The Cloud Tasks adapter of the `TaskQueue` port (production).

The only module that imports `google.cloud.tasks_v2`, lazily, when the client is
first needed: importing it costs nothing. Every task is an HTTP target task
(`POST target_url`, the body unchanged, an `oidc_token` when a service account is
configured) under the caller's deterministic name. A name already taken → `False`;
gRPC UNAVAILABLE (typically a channel gone stale while the instance idled) is
retried twice on a new channel; anything else → `QueueUnavailable` at once, so the
caller's step is retried later under the same name. Programming errors (a bad name,
a delay beyond 30 days, a naive clock) raise `ValueError`.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from adapters.tasks import QueueRole, Task
from core.errors import QueueUnavailable
from core.settings import Settings

TASK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
#: Cloud Tasks refuses a `schedule_time` further ahead than this.
MAX_DELAY_SECONDS = 30 * 24 * 3600.0
#: Cloud Tasks accepts a `dispatch_deadline` of 15 s to 30 min for HTTP targets.
DISPATCH_DEADLINE_RANGE = (15.0, 1800.0)
#: Pauses before each retry of a gRPC UNAVAILABLE answer (one retry per pause).
TRANSIENT_BACKOFF = (0.1, 0.4)
#: How long one `create_task` call may take.
RPC_TIMEOUT = 10.0
#: gRPC reconnect backoff: try again 0.1 s after a lost connection, never wait over 1 s.
#: (gRPC's default, 1 s growing 1.6-fold up to 2 min, failed every call for seconds
#: after an outage ended.)
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Channels to one address otherwise share gRPC's global subchannel pool: a new
    # channel would inherit the old one's failed connection and its backoff.
    ("grpc.use_local_subchannel_pool", 1),
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _required(value: str | None, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is required")
    return value


class CloudTasksQueue:
    """`TaskQueue` on Google Cloud Tasks (or its emulator, over plain gRPC)."""

    def __init__(  # noqa: PLR0913 (keyword-only settings and injected test seams)
        self,
        *,
        project: str,
        location: str,
        steps_queue: str,
        callbacks_queue: str,
        target_url: str,
        service_account: str | None,
        emulator_host: str | None = None,
        dispatch_deadline: float = 60.0,
        client: Any | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.project = _required(project, "project")
        self.location = _required(location, "location")
        self.steps_queue = _required(steps_queue, "steps_queue")
        self.callbacks_queue = _required(callbacks_queue, "callbacks_queue")
        parts = urlsplit(_required(target_url, "target_url"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("target_url must be an absolute http(s) URL")
        self.target_url = target_url
        self.service_account = service_account or None
        self.emulator_host = emulator_host or None
        low, high = DISPATCH_DEADLINE_RANGE
        if not low <= dispatch_deadline <= high:
            raise ValueError(f"dispatch_deadline must be {low:g} to {high:g} seconds")
        self.dispatch_deadline = dispatch_deadline
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._client: Any | None = client
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudTasksQueue:
        """The queue configured by `TASKS_*`, `CALLBACK_QUEUE`, `POLL_URL` and friends.

        Raises `Misconfigured` naming every required variable that is missing.
        """
        project, location = settings.cloud_tasks_location()
        steps_queue, callbacks_queue = settings.queue_names()
        return cls(
            project=project,
            location=location,
            steps_queue=steps_queue,
            callbacks_queue=callbacks_queue,
            target_url=settings.poll_url,
            service_account=settings.tasks_service_account,
            emulator_host=settings.cloud_tasks_emulator_host,
        )

    # --- the client ------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The `CloudTasksClient`, created on first use. Raises `QueueUnavailable`."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create_client()
                client = self._client
        return client

    def warm(self) -> None:
        """Create the client in a background thread (imports, channel), so that a first
        request overlaps that work with its own; a failure here is left to the first call."""
        if self._client is not None:
            return
        threading.Thread(target=self._warm, name="cloud-tasks-warm", daemon=True).start()

    def _warm(self) -> None:
        # A failure is left to the first call: it creates the client again, and says why.
        with contextlib.suppress(Exception):
            self.client  # noqa: B018 (the property creates it)

    def _create_client(self) -> Any:
        # Imported lazily (PLC0415): `import adapters.cloud_tasks` must stay cheap.
        import grpc  # noqa: PLC0415
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415
        from google.cloud import tasks_v2  # noqa: PLC0415
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (  # noqa: PLC0415
            CloudTasksGrpcTransport,
        )

        if self.emulator_host is None:

            def channel(*args: Any, **kwargs: Any) -> Any:
                options = [*(kwargs.pop("options", None) or ()), *CHANNEL_OPTIONS]
                return CloudTasksGrpcTransport.create_channel(*args, options=options, **kwargs)

            def transport(**kwargs: Any) -> Any:
                return CloudTasksGrpcTransport(**kwargs, channel=channel)

            try:
                return tasks_v2.CloudTasksClient(transport=transport)
            except GoogleAuthError as exc:
                raise QueueUnavailable(
                    f"no usable Google credentials for Cloud Tasks ({type(exc).__name__})"
                ) from exc

        insecure = grpc.insecure_channel(self.emulator_host, options=list(CHANNEL_OPTIONS))
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=insecure))

    def close(self) -> None:
        """Close the client's channel if this queue created it (a later call reopens)."""
        if not self._owns_client:
            return
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.transport.close()

    def _drop_client(self, stale: Any) -> None:
        """Forget `stale` if this queue built it, so that the next call connects anew.

        Not closed here: another thread may be in a call on it; its channel closes
        when the last reference goes.
        """
        if not self._owns_client:
            return
        with self._lock:
            if self._client is stale:
                self._client = None

    # --- the port ----------------------------------------------------------------------

    def queue_name(self, role: QueueRole) -> str:
        """The short name of the queue that takes tasks of `role`."""
        return self.callbacks_queue if role is QueueRole.CALLBACKS else self.steps_queue

    def enqueue(self, task: Task, *, delay: float, name: str) -> bool:
        """Create `task` as Cloud Tasks task `name`, due in `delay` seconds.

        True: created. False: a task of that name already exists. Raises
        `QueueUnavailable` when Cloud Tasks did not take it; `ValueError` for a
        bad name or delay.
        """
        if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
            raise ValueError("task name must be 1 to 500 characters of [A-Za-z0-9_-]")
        if not math.isfinite(delay):
            raise ValueError("delay must be a finite number of seconds")
        if delay > MAX_DELAY_SECONDS:
            raise ValueError("delay must be at most 30 days")
        queue = self.queue_name(task.role)
        client = self.client
        parent = client.queue_path(self.project, self.location, queue)
        request = self._build_task(client, queue, task, delay=max(delay, 0.0), name=name)
        return self._create(client, parent, request, queue=queue, name=name)

    def _build_task(
        self, client: Any, queue: str, task: Task, *, delay: float, name: str
    ) -> dict[str, Any]:
        from google.protobuf import duration_pb2, timestamp_pb2  # noqa: PLC0415

        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the clock must return an aware datetime")
        schedule_time = timestamp_pb2.Timestamp()
        schedule_time.FromDatetime(now + timedelta(seconds=delay))
        dispatch_deadline = duration_pb2.Duration()
        dispatch_deadline.FromTimedelta(timedelta(seconds=self.dispatch_deadline))

        http_request: dict[str, Any] = {
            "url": self.target_url,
            "http_method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": task.body,
        }
        if self.service_account:
            http_request["oidc_token"] = {
                "service_account_email": self.service_account,
                "audience": self.target_url,
            }
        return {
            "name": client.task_path(self.project, self.location, queue, name),
            "http_request": http_request,
            "schedule_time": schedule_time,
            "dispatch_deadline": dispatch_deadline,
        }

    def _create(
        self, client: Any, parent: str, request: dict[str, Any], *, queue: str, name: str
    ) -> bool:
        import grpc  # noqa: PLC0415
        from google.api_core import exceptions as api_exceptions  # noqa: PLC0415
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415

        retries = 0
        while True:
            try:
                client.create_task(parent=parent, task=request, timeout=RPC_TIMEOUT)
            except api_exceptions.AlreadyExists:
                return False
            except api_exceptions.ServiceUnavailable as exc:
                # Safe to retry: the task is named, so an attempt that did land
                # makes the retry answer AlreadyExists.
                if retries < len(TRANSIENT_BACKOFF):
                    self._drop_client(client)
                    self._sleep(TRANSIENT_BACKOFF[retries])
                    retries += 1
                    client = self.client
                    continue
                raise self._unavailable(exc, queue=queue, name=name, attempts=retries + 1) from exc
            except (
                api_exceptions.GoogleAPICallError,
                api_exceptions.RetryError,
                grpc.RpcError,
                GoogleAuthError,
            ) as exc:
                # DeadlineExceeded included: the attempt may have landed, and waiting
                # again would hold the caller for another RPC_TIMEOUT.
                raise self._unavailable(exc, queue=queue, name=name, attempts=retries + 1) from exc
            return True

    @staticmethod
    def _unavailable(
        exc: BaseException, *, queue: str, name: str, attempts: int
    ) -> QueueUnavailable:
        # The class name only: the server's text may quote resources or addresses.
        plural = "s" if attempts > 1 else ""
        return QueueUnavailable(
            f"Cloud Tasks did not create task {name} on queue {queue} "
            f"({type(exc).__name__}, {attempts} attempt{plural})"
        )
